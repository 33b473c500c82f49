//! The study commands of the command line: `analyze`, `draft` and `export`.
//!
//! They share how a study is given ([`StudyArgs`]: the current radiograph, its priors by file
//! or found in a folder, the prior's signed report, the packs) and how it is loaded and
//! analysed ([`load_study`]); each then writes its own output.

use clap::{Args, ValueEnum};
use radassist::analysis::{self, overlay, AnalysisPacks, Analyzer, PriorInput, StudyAnalysis};
use radassist::config::Config;
use radassist::dicom::{self, DecodeLimits};
use radassist::draft::objects::{self, ResultObject, StudyResults};
use radassist::draft::writer::{ReportWriter, WriterRequest};
use radassist::draft::{dataset, fhir, Draft, FinalRead, ImageReference};
use radassist::imaging::Radiograph;
use radassist::inference::session::{Provider, SessionSettings};
use radassist::priors;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How a study is given on the command line.
#[derive(Args)]
pub struct StudyArgs {
    /// The current radiograph.
    pub current: PathBuf,
    /// A prior radiograph of the same patient (repeat for several); refused if it is another
    /// patient's, not earlier, not a chest or not frontal.
    #[arg(long = "prior")]
    pub priors: Vec<PathBuf>,
    /// Find the priors in this folder (recursively): the frontal chest images of the same
    /// patient from earlier studies, one per study, most recent first (files that are not
    /// DICOM, or not priors, are passed over).
    #[arg(long, value_name = "DIR")]
    pub priors_from: Option<PathBuf>,
    /// The signed report of the most recent prior (a text file), matched sentence by sentence
    /// to the new results.
    #[arg(long)]
    pub prior_report: Option<PathBuf>,
    /// Findings pack folder (overrides the configuration).
    #[arg(long)]
    pub findings_pack: Option<PathBuf>,
    /// Landmarks or segmentation pack folder (overrides the configuration; give it again for
    /// several, e.g. a tube-tip detector and an anatomy segmentation).
    #[arg(long)]
    pub landmarks_pack: Vec<PathBuf>,
    /// Text-embedding pack folder (overrides the configuration).
    #[arg(long)]
    pub text_pack: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub provider: Option<Provider>,
}

/// Who writes the draft's text.
#[derive(Args)]
pub struct WriterArgs {
    /// A vision-language report pack writes the text (the structured results stay as its
    /// evidence); without one, the structured renderer writes it.
    #[arg(long)]
    pub report_pack: Option<PathBuf>,
    /// The clinical indication, for the report pack's prompt (default: the header's Reason for
    /// the Requested Procedure, as the service takes it).
    #[arg(long)]
    pub indication: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// The report: DICOM Comprehensive SR, TID 2000 (draft, or signed with --final).
    Sr,
    /// The measurement report: DICOM Comprehensive SR, TID 1500 (IHE AI Results).
    Measurements,
    /// The marks on the film: DICOM Grayscale Softcopy Presentation State.
    PresentationState,
    /// The film with the marks, verdicts and findings burned in: DICOM Secondary Capture.
    SummaryImage,
    /// FHIR R4 DiagnosticReport (JSON).
    Fhir,
}

/// The signed read given to `export`.
pub struct Signer {
    pub text: PathBuf,
    pub radiologist: String,
    pub organization: String,
}

/// A study read from disk and analysed.
pub struct LoadedStudy {
    pub current: Radiograph,
    /// Most recent first.
    pub priors: Vec<Radiograph>,
    pub prior_report: Option<String>,
    pub analysis: StudyAnalysis,
}

/// The priors of `current` among the DICOM files under `dir` (most recent study first).
fn find_priors(current: &Path, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let limits = DecodeLimits::default();
    let header =
        dicom::read_header(current, &limits).map_err(|e| format!("{}: {e}", current.display()))?;
    let files = super::image::list_files(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (paths, headers): (Vec<PathBuf>, Vec<_>) = files
        .into_iter()
        .filter_map(|f| dicom::read_header(&f, &limits).ok().map(|h| (f, h)))
        .unzip();
    let chosen = priors::choose_priors(&header, &headers);
    eprintln!(
        "{}: {} prior(s) of {} among {} DICOM files",
        dir.display(),
        chosen.len(),
        current.display(),
        headers.len()
    );
    Ok(chosen.into_iter().map(|i| paths[i].clone()).collect())
}

/// The current image and its priors, each checked as a prior of it, most recent first.
fn read_images(
    current_file: &Path,
    prior_files: &[PathBuf],
) -> Result<(Radiograph, Vec<Radiograph>), String> {
    let limits = DecodeLimits::default();
    let read = |f: &Path| dicom::read_file(f, &limits).map_err(|e| format!("{}: {e}", f.display()));
    let current = read(current_file)?;
    let mut priors = prior_files
        .iter()
        .map(|f| {
            let image = read(f)?;
            priors::check_prior(&current.header, &image.header).map_err(|reason| {
                format!(
                    "{}: not a prior of {}: {reason}",
                    f.display(),
                    current_file.display()
                )
            })?;
            Ok(image)
        })
        .collect::<Result<Vec<_>, String>>()?;
    // Most recent first: the prior report and the subtraction belong to it.
    let headers: Vec<_> = priors.iter().map(|p| p.header.clone()).collect();
    let order = priors::choose_priors(&current.header, &headers);
    if order.len() < priors.len() {
        return Err(
            "two priors given are images of the same study: give one image per study".into(),
        );
    }
    let mut taken: Vec<Option<_>> = priors.drain(..).map(Some).collect();
    let priors: Vec<Radiograph> = order
        .iter()
        .map(|&i| taken[i].take().expect("each once"))
        .collect();
    Ok((current, priors))
}

/// Reads the current image and its priors (checked, most recent first) and analyses them.
pub fn load_study(
    config: &Config,
    args: &StudyArgs,
    settings: &SessionSettings,
) -> Result<LoadedStudy, String> {
    let mut prior_files = args.priors.clone();
    if let Some(dir) = &args.priors_from {
        prior_files.extend(find_priors(&args.current, dir)?);
    }
    let (current, priors) = read_images(&args.current, &prior_files)?;
    if priors.is_empty() && args.prior_report.is_some() {
        return Err("--prior-report needs a prior (--prior or --priors-from)".into());
    }
    let prior_report = args
        .prior_report
        .as_ref()
        .map(|f| std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display())))
        .transpose()?;
    let inputs: Vec<PriorInput> = priors
        .iter()
        .enumerate()
        .map(|(i, radiograph)| PriorInput {
            radiograph,
            report: if i == 0 {
                prior_report.as_deref()
            } else {
                None
            },
        })
        .collect();
    let mut packs: AnalysisPacks = config.analysis_packs();
    packs.findings = args.findings_pack.clone().or(packs.findings);
    if !args.landmarks_pack.is_empty() {
        packs.landmarks = args.landmarks_pack.clone();
    }
    packs.text = args.text_pack.clone().or(packs.text);
    let analyzer = Analyzer::new(
        &packs,
        settings,
        config.placement.clone(),
        config.analysis.change,
        config.inference.batching(),
        None,
    )
    .and_then(|a| a.with_thresholds(&config.analysis.thresholds))
    .map_err(|e| e.to_string())?;
    let analysis = analyzer
        .analyze(&current, &inputs)
        .map_err(|e| e.to_string())?;
    Ok(LoadedStudy {
        current,
        priors,
        prior_report,
        analysis,
    })
}

pub fn analyze(
    config: &Config,
    args: &StudyArgs,
    settings: &SessionSettings,
    json: bool,
    overlay_png: Option<&Path>,
    subtraction_png: Option<&Path>,
) -> Result<(), String> {
    let study = load_study(config, args, settings)?;
    if subtraction_png.is_some() && study.priors.is_empty() {
        return Err("--subtraction needs a prior (--prior or --priors-from)".into());
    }
    if let Some(path) = overlay_png {
        overlay::draw(analysis::display(&study.current).view(), &study.analysis)
            .save(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let (Some(path), Some(comparison), Some(prior)) = (
        subtraction_png,
        study.analysis.comparisons.first(),
        study.priors.first(),
    ) {
        let difference = analysis::subtraction_image(&study.current, prior, comparison);
        overlay::subtraction_png(&difference, path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&study.analysis).expect("serialises")
        );
    } else {
        print!("{}", analysis::text::render(&study.analysis));
    }
    Ok(())
}

fn reference(r: &Radiograph, what: &str) -> Result<ImageReference, String> {
    let id = &r.header.identity;
    let need = |v: &Option<String>, name: &str| {
        v.clone()
            .ok_or_else(|| format!("the {what} has no {name}: it cannot be referenced"))
    };
    Ok(ImageReference {
        sop_class_uid: need(&id.sop_class_uid, "SOP Class UID")?,
        sop_instance_uid: need(&id.sop_instance_uid, "SOP Instance UID")?,
        series_instance_uid: need(&id.series_instance_uid, "Series Instance UID")?,
        study_instance_uid: need(&id.study_instance_uid, "Study Instance UID")?,
    })
}

/// The study's draft: rendered, or written by a report pack.
fn make_draft(
    config: &Config,
    study: &LoadedStudy,
    writer: &WriterArgs,
    settings: &SessionSettings,
) -> Result<Draft, String> {
    let draft = Draft::from_analysis(
        &study.analysis,
        vec![reference(&study.current, "current image")?],
    );
    let Some(pack) = &writer.report_pack else {
        return Ok(draft);
    };
    let writer_model = ReportWriter::load(
        pack,
        settings,
        config.analysis.generation,
        config.inference.batching(),
        None,
    )
    .map_err(|e| e.to_string())?;
    // The prior slot takes the most recent prior's image with its signed report.
    let prior = match (study.priors.first(), &study.prior_report) {
        (Some(image), Some(report)) => Some((Arc::new(image.clone()), report.clone())),
        _ => None,
    };
    let generated = writer_model
        .write(WriterRequest {
            image: Arc::new(study.current.clone()),
            indication: writer
                .indication
                .clone()
                .or_else(|| study.current.header.acquisition.indication.clone())
                .unwrap_or_default(),
            prior,
        })
        .map_err(|e| e.to_string())?;
    Ok(draft.with_generated_text(&generated.text, writer_model.model()))
}

pub fn draft(
    config: &Config,
    args: &StudyArgs,
    writer: &WriterArgs,
    settings: &SessionSettings,
    json: bool,
) -> Result<(), String> {
    let study = load_study(config, args, settings)?;
    let draft = make_draft(config, &study, writer, settings)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&draft).expect("serialises")
        );
    } else {
        if let Some(warning) = &draft.warning {
            println!("*** {warning}: this draft shows the flow, not a diagnosis ***\n");
        }
        println!(
            "PRELIMINARY DRAFT (by {}; not read by a radiologist)\n",
            draft.author
        );
        println!("{}", draft.text);
    }
    Ok(())
}

/// The current image's file as a DICOM object (its attributes go into what is exported).
fn read_source(path: &Path) -> Result<dicom::DicomInstance, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    dicom::parse_dicom(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn export(
    config: &Config,
    format: ExportFormat,
    args: &StudyArgs,
    writer: &WriterArgs,
    settings: &SessionSettings,
    output: &Path,
    signer: Option<&Signer>,
) -> Result<(), String> {
    let signed = signer
        .map(|s| -> Result<FinalRead, String> {
            let text = std::fs::read_to_string(&s.text)
                .map_err(|e| format!("{}: {e}", s.text.display()))?;
            if text.trim().is_empty() || s.radiologist.trim().is_empty() {
                return Err("a signed read needs its text and the radiologist's name".into());
            }
            Ok(FinalRead {
                text,
                radiologist: s.radiologist.clone(),
                organization: s.organization.clone(),
                signed_at: chrono::Utc::now().format("%Y%m%d%H%M%S").to_string(),
                replaces: None,
            })
        })
        .transpose()?;
    let study = load_study(config, args, settings)?;
    let draft = make_draft(config, &study, writer, settings)?;
    match format {
        ExportFormat::Sr
        | ExportFormat::Measurements
        | ExportFormat::PresentationState
        | ExportFormat::SummaryImage => {
            let object = match format {
                ExportFormat::Sr => ResultObject::Report,
                ExportFormat::Measurements => ResultObject::Measurements,
                ExportFormat::PresentationState => ResultObject::PresentationState,
                _ => ResultObject::SummaryImage,
            };
            let source = read_source(&args.current)?;
            let priors = study
                .priors
                .iter()
                .map(|p| reference(p, "prior"))
                .collect::<Result<Vec<_>, _>>()?;
            let results = StudyResults {
                draft: &draft,
                signed: signed.as_ref(),
                analysis: &study.analysis,
                source: &source,
                film: Some(&study.current),
                priors: &priors,
            };
            let built = objects::build(object, &results, &DecodeLimits::default())
                .map_err(|e| e.to_string())?;
            dataset::write(&built, output).map_err(|e| e.to_string())
        }
        ExportFormat::Fhir => {
            let patient = study.current.header.identity.patient_id.as_deref();
            let report = fhir::diagnostic_report(&draft, signed.as_ref(), &study.analysis, patient);
            std::fs::write(
                output,
                serde_json::to_string_pretty(&report).expect("serialises") + "\n",
            )
            .map_err(|e| format!("{}: {e}", output.display()))
        }
    }
}

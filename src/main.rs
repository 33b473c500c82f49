//! The `radassist` command line: each stage of the flow runs alone, so a problem can be cornered
//! without the server. This file only parses arguments and prints; the work is in the library.

mod cli;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use radassist::config::Config;
use radassist::dicom::{self, DecodeLimits};
use radassist::imaging::display::{choose_voi, display_values, VoiChoice};
use radassist::imaging::output::{write_npy, write_png, PngDepth};
use radassist::imaging::resize::{fit_longest_side, resize};
use radassist::inference::manifest::{Manifest, Task};
use radassist::inference::report::{PriorStudy, ReportModel, ReportRequest};
use radassist::inference::session::{Provider, SessionSettings};
use radassist::inference::{pack_folders, ModelPack, TEST_MODEL_WARNING};
use radassist::labeler::Labeler;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "radassist",
    version,
    about = "Chest X-ray assistant beside a PACS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The configuration file (TOML; see src/config.rs for every key). Environment overrides:
    /// RADASSIST_PROVIDER, RADASSIST_MODELS.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Show the canonical metadata of a DICOM file (no pixel decoding).
    Inspect {
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Decode modality values (after the Modality LUT, before VOI) to float32 .npy.
    ///
    /// With a folder, decodes every file in it (recursively) into OUT as a folder, goes on past
    /// bad files, and lists them with their reasons at the end.
    Decode {
        /// A DICOM file, or a folder of them.
        input: PathBuf,
        /// The .npy file (or, for a folder, the output folder).
        #[arg(short, long)]
        output: PathBuf,
        /// Worker threads for a folder (default: all cores).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Render what a radiologist would see (VOI applied, MONOCHROME1 inverted) as a grey PNG.
    Render {
        file: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Fit the longer side to this many pixels (area averaging when shrinking).
        #[arg(long)]
        size: Option<usize>,
        /// Bits per PNG sample.
        #[arg(long, value_enum, default_value = "8")]
        bits: Bits,
        /// Use the header's window number N (1-based) instead of the first.
        #[arg(long, conflicts_with_all = ["voi_lut", "window"])]
        window_index: Option<usize>,
        /// Use the header's VOI LUT number N (1-based).
        #[arg(long, conflicts_with = "window")]
        voi_lut: Option<usize>,
        /// Use this window, as CENTER,WIDTH in modality values.
        #[arg(long, value_parser = parse_window, allow_hyphen_values = true)]
        window: Option<(f64, f64)>,
    },
    /// Check that the ONNX Runtime library loads, and say where it came from.
    Runtime,
    /// Model packs: list them, or load and warm up each one.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
        /// The folder of model packs (default: the configuration's, "models").
        #[arg(long, global = true)]
        models: Option<PathBuf>,
        /// Execution provider (default: the configuration's, auto).
        #[arg(long, global = true, value_enum)]
        provider: Option<Provider>,
    },
    /// Run an image pack (findings, embedding or landmarks) on radiographs, as JSON lines.
    Predict {
        files: Vec<PathBuf>,
        /// The pack folder.
        #[arg(long)]
        pack: PathBuf,
        #[arg(long, value_enum)]
        provider: Option<Provider>,
    },
    /// Write a draft with a vision-language (report) pack, as JSON.
    Report {
        file: PathBuf,
        /// The clinical indication that fills the prompt.
        #[arg(long, default_value = "")]
        indication: String,
        /// Beam search with this many beams (1: greedy).
        #[arg(long, default_value_t = 1)]
        beams: usize,
        /// A prior study's image, for the template's prior slot.
        #[arg(long)]
        prior: Option<PathBuf>,
        /// The prior study's signed report.
        #[arg(long, default_value = "", requires = "prior")]
        prior_report: String,
        #[arg(long, default_value = "models/test-report")]
        pack: PathBuf,
        #[arg(long, value_enum)]
        provider: Option<Provider>,
    },
    /// Analyse a study: findings, tube and line checks with measurements, and comparison with
    /// priors (alignment, changes, subtraction). Packs come from the configuration's
    /// [analysis] section unless given here.
    Analyze {
        #[command(flatten)]
        study: cli::StudyArgs,
        /// Print the structured result as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Draw landmarks, callipers, reference levels and verdicts on the image (PNG).
        #[arg(long)]
        overlay: Option<PathBuf>,
        /// The temporal subtraction against the most recent prior (PNG).
        #[arg(long)]
        subtraction: Option<PathBuf>,
    },
    /// Write the draft report of a study: Findings and Impression, every sentence with its
    /// evidence; preliminary until signed.
    Draft {
        #[command(flatten)]
        study: cli::StudyArgs,
        #[command(flatten)]
        writer: cli::WriterArgs,
        /// Print the draft with its evidence as JSON instead of its text.
        #[arg(long)]
        json: bool,
    },
    /// Write a study's report as DICOM SR (TID 2000) or FHIR R4 DiagnosticReport: the draft
    /// (preliminary, UNVERIFIED), or with --final the radiologist's signed read (VERIFIED).
    Export {
        #[arg(value_enum)]
        format: cli::ExportFormat,
        #[command(flatten)]
        study: cli::StudyArgs,
        #[command(flatten)]
        writer: cli::WriterArgs,
        /// The output file (.dcm for SR, .json for FHIR).
        #[arg(short, long)]
        output: PathBuf,
        /// The signed final read (a text file with FINDINGS: and IMPRESSION:).
        #[arg(long = "final", value_name = "TEXT_FILE", requires = "radiologist")]
        final_read: Option<PathBuf>,
        /// The radiologist who signed it ("Family^Given" for DICOM).
        #[arg(long)]
        radiologist: Option<String>,
        /// The radiologist's organisation.
        #[arg(long, default_value = "")]
        organization: String,
    },
    /// Label report text for the 14 CheXpert observations (positive, negative, uncertain,
    /// absent), as JSON lines.
    Label {
        /// Report texts to label (each one report).
        texts: Vec<String>,
        /// Read lines {"id": ..., "text": ...} from this file ("-": standard input) and write
        /// lines {"id": ..., "labels": {...}}.
        #[arg(long, value_name = "IN", conflicts_with = "texts")]
        jsonl: Option<PathBuf>,
        /// Also write each mention: its sentence, words, label and the rule that gave it.
        #[arg(long)]
        mentions: bool,
    },
    /// Run the gRPC service (ingest, worklist, quality, models; health and reflection) with the
    /// configuration's [service] section. Stops cleanly on SIGINT or SIGTERM.
    Serve,
    /// Query the service's audit log: who read which patient data, when, from where.
    Audit {
        /// Only entries at or after this time (RFC 3339, e.g. 2026-11-25T08:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Only this caller's entries (the token's name).
        #[arg(long)]
        who: Option<String>,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Quality: the model's drafts against the radiologists' signed reads.
    Qa {
        #[command(subcommand)]
        action: QaAction,
    },
    /// Sentence embeddings from a text-embedding pack, as JSON lines.
    EmbedText {
        sentences: Vec<String>,
        /// The text-embedding pack.
        #[arg(long, default_value = "models/minilm")]
        pack: PathBuf,
        #[arg(long, value_enum)]
        provider: Option<Provider>,
    },
}

#[derive(Subcommand)]
enum ModelsAction {
    /// The packs and what their manifests say (no graph is loaded).
    List,
    /// Load every pack, check its manifest against its graph, run a warm-up, and print the
    /// execution provider each session really got. Exit 1 if any pack fails.
    Check,
}

#[derive(Subcommand)]
enum QaAction {
    /// Compare drafts with final reads: per observation TP/FP/FN/TN, sensitivity, PPV, F1 and
    /// Cohen's kappa with 95 % intervals, device verdict agreement and edit distance; per
    /// group (all, model version, or month).
    Compare {
        /// JSON lines {"id", "draft", "final", "model_version"?, "date"?, "draft_devices"?,
        /// "final_devices"?}.
        #[arg(long, value_name = "PAIRS")]
        jsonl: PathBuf,
        #[arg(long, value_enum, default_value = "all")]
        by: cli::GroupBy,
        /// What an uncertain label counts as.
        #[arg(long, value_enum, default_value = "positive")]
        uncertain: radassist::qa::UncertainPolicy,
        /// Text-embedding pack for sentence matching (default: the configuration's).
        #[arg(long)]
        text_pack: Option<PathBuf>,
        /// Skip sentence matching (no text model needed).
        #[arg(long, conflicts_with = "text_pack")]
        no_sentences: bool,
        /// Also write each study's comparison, as JSON lines.
        #[arg(long)]
        per_study: bool,
        /// Write the summary as JSON.
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum)]
        provider: Option<Provider>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Bits {
    #[value(name = "8")]
    Eight,
    #[value(name = "16")]
    Sixteen,
}

fn parse_window(text: &str) -> Result<(f64, f64), String> {
    let (c, w) = text
        .split_once(',')
        .ok_or("expected CENTER,WIDTH, for example 550,1024")?;
    let parse = |s: &str| s.trim().parse::<f64>().map_err(|e| format!("{s:?}: {e}"));
    Ok((parse(c)?, parse(w)?))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Output piped into `head` and the like: end quietly when the reader goes away, as command
    // line tools do, instead of panicking on a broken pipe. Not for `serve`: a client that
    // goes away must cost its connection (EPIPE), never the server.
    if !matches!(cli.command, Command::Serve) {
        // SAFETY: restoring the default action of a signal before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // Logs go to stderr: RADASSIST_LOG sets the level (warn by default), RADASSIST_LOG_FORMAT=json
    // makes them one JSON object per line for a log collector.
    let filter = tracing_subscriber::EnvFilter::try_from_env("RADASSIST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("RADASSIST_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("radassist: {message}");
            return ExitCode::FAILURE;
        }
    };
    // Session settings from the configuration, with a --provider flag on top.
    let settings = |provider: Option<Provider>| SessionSettings {
        provider: provider.unwrap_or(config.inference.provider),
        ..config.inference.session_settings()
    };
    let outcome = match cli.command {
        Command::Inspect { file, json } => inspect(&file, json),
        Command::Decode {
            input,
            output,
            jobs,
        } => decode(&input, &output, jobs),
        Command::Render {
            file,
            output,
            size,
            bits,
            window_index,
            voi_lut,
            window,
        } => {
            let choice = match (window_index, voi_lut, window) {
                (Some(0), _, _) | (_, Some(0), _) => {
                    Err("window and VOI LUT numbers start at 1".to_string())
                }
                (Some(n), _, _) => Ok(VoiChoice::Window(n - 1)),
                (_, Some(n), _) => Ok(VoiChoice::VoiLut(n - 1)),
                (_, _, Some((center, width))) => Ok(VoiChoice::Explicit { center, width }),
                _ => Ok(VoiChoice::Default),
            };
            choice.and_then(|choice| render(&file, &output, size, bits, &choice))
        }
        Command::Runtime => runtime(),
        Command::Models {
            action,
            models,
            provider,
        } => {
            let models = models.unwrap_or_else(|| config.inference.models.clone());
            match action {
                ModelsAction::List => models_list(&models),
                ModelsAction::Check => models_check(&models, &settings(provider)),
            }
        }
        Command::EmbedText {
            sentences,
            pack,
            provider,
        } => embed_text(&pack, &settings(provider), &sentences),
        Command::Serve => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("the async runtime: {e}"))
            .and_then(|runtime| runtime.block_on(radassist::service::serve(config.clone()))),
        Command::Audit { since, who, json } => {
            audit(&config, since.as_deref(), who.as_deref(), json)
        }
        Command::Qa {
            action:
                QaAction::Compare {
                    jsonl,
                    by,
                    uncertain,
                    text_pack,
                    no_sentences,
                    per_study,
                    json,
                    provider,
                },
        } => {
            let text_pack = match (no_sentences, text_pack) {
                (true, _) => None,
                (false, Some(pack)) => Some(pack),
                (false, None) => config.analysis_packs().text,
            };
            cli::qa_compare(
                &jsonl,
                by,
                uncertain,
                text_pack.as_deref(),
                &settings(provider),
                per_study,
                json,
            )
        }
        Command::Label {
            texts,
            jsonl,
            mentions,
        } => label(&texts, jsonl.as_deref(), mentions),
        Command::Analyze {
            study,
            json,
            overlay,
            subtraction,
        } => cli::analyze(
            &config,
            &study,
            &settings(study.provider),
            json,
            overlay.as_deref(),
            subtraction.as_deref(),
        ),
        Command::Draft {
            study,
            writer,
            json,
        } => cli::draft(&config, &study, &writer, &settings(study.provider), json),
        Command::Export {
            format,
            study,
            writer,
            output,
            final_read,
            radiologist,
            organization,
        } => {
            let signer = final_read.map(|text| cli::Signer {
                text,
                radiologist: radiologist.unwrap_or_default(),
                organization,
            });
            cli::export(
                &config,
                format,
                &study,
                &writer,
                &settings(study.provider),
                &output,
                signer.as_ref(),
            )
        }
        Command::Predict {
            files,
            pack,
            provider,
        } => predict(&pack, &settings(provider), &files),
        Command::Report {
            file,
            indication,
            beams,
            prior,
            prior_report,
            pack,
            provider,
        } => {
            let prior = prior.map(|image| (image, prior_report));
            report(
                &pack,
                &settings(provider),
                &file,
                &indication,
                prior.as_ref(),
                beams,
            )
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("radassist: {message}");
            ExitCode::FAILURE
        }
    }
}

fn inspect(file: &Path, json: bool) -> Result<(), String> {
    let header = dicom::read_header(file, &DecodeLimits::default()).map_err(|e| e.to_string())?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&header).expect("headers serialise")
        );
        return Ok(());
    }
    let p = &header.pixels;
    let a = &header.acquisition;
    let g = &header.geometry;
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!(
        "transfer syntax      {} ({})",
        p.transfer_syntax, p.transfer_syntax_uid
    );
    println!("photometric          {:?}", p.photometric_interpretation);
    println!("rows x columns       {} x {}", p.rows, p.columns);
    println!(
        "bits                 allocated {}, stored {}, high bit {}, {}",
        p.bits_allocated,
        p.bits_stored,
        p.high_bit,
        if p.signed { "signed" } else { "unsigned" }
    );
    match g.patient_spacing {
        Some(s) => println!(
            "spacing (patient)    {:.4} x {:.4} mm, from {:?}",
            s.row_mm, s.column_mm, g.spacing_source
        ),
        None => println!("spacing (patient)    none: measurements are uncalibrated"),
    }
    if let Some(s) = g.detector_spacing {
        println!(
            "spacing (detector)   {:.4} x {:.4} mm",
            s.row_mm, s.column_mm
        );
    }
    println!(
        "modality             {}{}",
        or_dash(&a.modality),
        if a.secondary_capture {
            " (secondary capture)"
        } else {
            ""
        }
    );
    println!(
        "view                 {:?}{}",
        a.view,
        a.view_source
            .map(|s| format!(" from {s}"))
            .unwrap_or_default()
    );
    println!("laterality           {}", or_dash(&a.laterality));
    println!("body part            {}", or_dash(&a.body_part));
    match &a.patient_age {
        Some(age) => println!(
            "age                  {:.1} years, from {}",
            age.years, age.source
        ),
        None => println!("age                  -"),
    }
    println!(
        "modality LUT         {}",
        serde_json::to_string(&header.modality_lut).expect("serialises")
    );
    println!(
        "windows              {}",
        serde_json::to_string(&header.display.windows).expect("serialises")
    );
    let i = &header.identity;
    println!(
        "study                {} {} {}",
        or_dash(&i.study_instance_uid),
        or_dash(&i.study_date),
        or_dash(&i.study_time)
    );
    println!("series               {}", or_dash(&i.series_instance_uid));
    println!("instance             {}", or_dash(&i.sop_instance_uid));
    for warning in &header.warnings {
        println!("warning              {warning}");
    }
    Ok(())
}

fn decode(input: &Path, output: &Path, jobs: Option<usize>) -> Result<(), String> {
    let limits = DecodeLimits::default();
    if !input.is_dir() {
        let radiograph =
            dicom::read_file(input, &limits).map_err(|e| format!("{}: {e}", input.display()))?;
        return write_npy(output, radiograph.values.view())
            .map_err(|e| format!("{}: {e}", output.display()));
    }
    let files = list_files(input).map_err(|e| format!("{}: {e}", input.display()))?;
    std::fs::create_dir_all(output).map_err(|e| format!("{}: {e}", output.display()))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.unwrap_or(0))
        .build()
        .map_err(|e| e.to_string())?;
    let progress = ProgressBar::new(files.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} files, {elapsed} {msg}")
            .expect("valid template"),
    );
    let failures: Vec<(PathBuf, String)> = pool.install(|| {
        files
            .par_iter()
            .filter_map(|file| {
                let relative = file.strip_prefix(input).unwrap_or(file);
                let target = npy_path_for(&output.join(relative));
                let outcome = dicom::read_file(file, &limits)
                    .map_err(|e| e.to_string())
                    .and_then(|r| {
                        if let Some(parent) = target.parent() {
                            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                        }
                        write_npy(&target, r.values.view())
                            .map_err(|e| format!("writing {}: {e}", target.display()))
                    });
                progress.inc(1);
                outcome.err().map(|reason| (file.clone(), reason))
            })
            .collect()
    });
    progress.finish();
    let decoded = files.len() - failures.len();
    eprintln!(
        "decoded {decoded} of {} files into {}",
        files.len(),
        output.display()
    );
    if failures.is_empty() {
        return Ok(());
    }
    for (file, reason) in &failures {
        eprintln!("  failed {}: {reason}", file.display());
    }
    Err(format!(
        "{} of {} files could not be decoded",
        failures.len(),
        files.len()
    ))
}

/// OUT/a.dcm -> OUT/a.npy, but OUT/1.2.840.99 (files named by UID) -> OUT/1.2.840.99.npy, so
/// that names differing only after their last dot do not collide.
fn npy_path_for(target: &Path) -> PathBuf {
    let is_dicom_extension = target
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("dcm") || e.eq_ignore_ascii_case("dicom"));
    if is_dicom_extension {
        target.with_extension("npy")
    } else {
        let mut name = target.as_os_str().to_owned();
        name.push(".npy");
        PathBuf::from(name)
    }
}

/// Every regular file under `dir`, sorted, skipping hidden entries.
pub(crate) fn list_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

fn render(
    file: &Path,
    output: &Path,
    size: Option<usize>,
    bits: Bits,
    choice: &VoiChoice,
) -> Result<(), String> {
    let radiograph = dicom::read_file(file, &DecodeLimits::default())
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let voi = choose_voi(&radiograph, choice).map_err(|e| e.to_string())?;
    let mut display = display_values(&radiograph, &voi);
    if let Some(longest) = size {
        if longest == 0 {
            return Err("--size must be at least 1".into());
        }
        let (rows, columns) = fit_longest_side(radiograph.rows(), radiograph.columns(), longest);
        display = resize(display.view(), rows, columns);
    }
    let depth = match bits {
        Bits::Eight => PngDepth::Eight,
        Bits::Sixteen => PngDepth::Sixteen,
    };
    write_png(output, display.view(), depth).map_err(|e| format!("{}: {e}", output.display()))
}

fn runtime() -> Result<(), String> {
    let runtime = radassist::runtime::load().map_err(|e| e.to_string())?;
    println!("ONNX Runtime loaded from {}", runtime.library.display());
    println!("{}", runtime.build_info);
    Ok(())
}

fn models_list(models: &Path) -> Result<(), String> {
    let folders = pack_folders(models).map_err(|e| format!("{}: {e}", models.display()))?;
    if folders.is_empty() {
        return Err(format!(
            "no model packs (folders with a model.toml) in {}",
            models.display()
        ));
    }
    for folder in folders {
        match Manifest::read(&folder.join("model.toml")) {
            Ok(m) => println!(
                "{:<16} {:<15} {:<40} {}{}",
                m.name,
                serde_json::to_value(m.task)
                    .expect("serialises")
                    .as_str()
                    .unwrap_or("?"),
                m.version,
                m.licence,
                if m.test_model {
                    format!(" ({TEST_MODEL_WARNING})")
                } else {
                    String::new()
                }
            ),
            Err(e) => println!("{:<16} invalid: {e}", folder.display()),
        }
    }
    Ok(())
}

fn models_check(models: &Path, settings: &SessionSettings) -> Result<(), String> {
    let folders = pack_folders(models).map_err(|e| format!("{}: {e}", models.display()))?;
    if folders.is_empty() {
        return Err(format!(
            "no model packs (folders with a model.toml) in {}",
            models.display()
        ));
    }
    let mut failed = 0;
    for folder in &folders {
        let is_report =
            Manifest::read(&folder.join("model.toml")).is_ok_and(|m| m.task == Task::Report);
        let outcome = if is_report {
            ReportModel::load(folder, settings).and_then(|mut model| {
                let warm_up = model.warm_up()?;
                Ok((model.manifest.clone(), model.provider, warm_up))
            })
        } else {
            ModelPack::load(folder, settings).and_then(|mut pack| {
                let warm_up = pack.warm_up()?;
                Ok((pack.manifest.clone(), pack.provider, warm_up))
            })
        };
        match outcome {
            Ok((manifest, provider, warm_up)) => println!(
                "ok      {:<16} provider {:?}, warm-up {:.1} ms{}",
                manifest.name,
                provider,
                warm_up.as_secs_f64() * 1e3,
                if manifest.test_model {
                    format!(" ({TEST_MODEL_WARNING})")
                } else {
                    String::new()
                }
            ),
            Err(e) => {
                failed += 1;
                println!("FAILED  {}: {e}", folder.display());
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(format!(
            "{n} of {} model packs failed the check",
            folders.len()
        )),
    }
}

fn embed_text(pack: &Path, settings: &SessionSettings, sentences: &[String]) -> Result<(), String> {
    let pack = ModelPack::load(pack, settings).map_err(|e| e.to_string())?;
    let mut embedder =
        radassist::inference::text::TextEmbedder::new(pack).map_err(|e| e.to_string())?;
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let embeddings = embedder.embed(&refs).map_err(|e| e.to_string())?;
    let test_model = embedder.pack().manifest.test_model;
    for (sentence, row) in sentences.iter().zip(embeddings.rows()) {
        let mut line = serde_json::json!({ "text": sentence, "embedding": row.to_vec() });
        if test_model {
            line["warning"] = TEST_MODEL_WARNING.into();
        }
        println!("{line}");
    }
    Ok(())
}

fn predict(pack: &Path, settings: &SessionSettings, files: &[PathBuf]) -> Result<(), String> {
    use radassist::inference::vision::ImageModel;
    let pack = ModelPack::load(pack, settings).map_err(|e| e.to_string())?;
    let (task, test_model) = (pack.manifest.task, pack.manifest.test_model);
    let mut model = ImageModel::new(pack).map_err(|e| e.to_string())?;
    let limits = DecodeLimits::default();
    let radiographs = files
        .iter()
        .map(|f| dicom::read_file(f, &limits).map_err(|e| format!("{}: {e}", f.display())))
        .collect::<Result<Vec<_>, _>>()?;
    let batch: Vec<_> = radiographs.iter().collect();
    let results: Vec<serde_json::Value> = match task {
        Task::Findings => model.findings(&batch).map(|r| {
            r.iter()
                .map(|f| serde_json::json!({ "findings": f }))
                .collect()
        }),
        Task::Landmarks => model.landmarks(&batch).map(|r| {
            r.iter()
                .map(|l| serde_json::json!({ "landmarks": l }))
                .collect()
        }),
        _ => model.embeddings(&batch).map(|e| {
            e.rows()
                .into_iter()
                .map(|row| serde_json::json!({ "embedding": row.to_vec() }))
                .collect()
        }),
    }
    .map_err(|e| e.to_string())?;
    for (file, mut result) in files.iter().zip(results) {
        result["file"] = file.display().to_string().into();
        if test_model {
            result["warning"] = TEST_MODEL_WARNING.into();
        }
        println!("{result}");
    }
    Ok(())
}

fn report(
    pack: &Path,
    settings: &SessionSettings,
    file: &Path,
    indication: &str,
    prior: Option<&(PathBuf, String)>,
    beams: usize,
) -> Result<(), String> {
    let mut model = ReportModel::load(pack, settings).map_err(|e| e.to_string())?;
    let read = |f: &Path| {
        dicom::read_file(f, &DecodeLimits::default()).map_err(|e| format!("{}: {e}", f.display()))
    };
    let image = read(file)?;
    let prior_image = prior.map(|(path, _)| read(path)).transpose()?;
    let prior = prior_image
        .as_ref()
        .zip(prior)
        .map(|(image, (_, report))| PriorStudy { image, report });
    let request = [ReportRequest {
        image: &image,
        indication,
        prior,
    }];
    let draft = match beams {
        0 => return Err("--beams must be at least 1".into()),
        1 => model.generate_greedy(&request, true),
        n => model.generate_beam(&request, n),
    }
    .map_err(|e| e.to_string())?
    .remove(0);
    let mut out = serde_json::json!({ "file": file.display().to_string(), "draft": draft, "preliminary": true });
    if model.manifest.test_model {
        out["warning"] = TEST_MODEL_WARNING.into();
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&out).expect("serialises")
    );
    Ok(())
}

fn label(texts: &[String], jsonl: Option<&Path>, mentions: bool) -> Result<(), String> {
    use std::io::{BufRead, Write};
    let labeler = Labeler::new();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut write = |id: serde_json::Value, text: &str| -> Result<(), String> {
        let found = labeler.label(text);
        let mut line = serde_json::json!({ "id": id, "labels": found.labels });
        if mentions {
            line["mentions"] = serde_json::to_value(&found.mentions).expect("serialises");
            line["sentences"] = serde_json::to_value(&found.sentences).expect("serialises");
        }
        writeln!(out, "{line}").map_err(|e| format!("writing the labels: {e}"))
    };
    let Some(input) = jsonl else {
        if texts.is_empty() {
            return Err("give report texts, or --jsonl FILE (- for standard input)".into());
        }
        for (i, text) in texts.iter().enumerate() {
            write(serde_json::json!(i + 1), text)?;
        }
        return Ok(());
    };
    let (reader, total): (Box<dyn BufRead>, Option<u64>) = if input == Path::new("-") {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let file = std::fs::File::open(input).map_err(|e| format!("{}: {e}", input.display()))?;
        let size = file.metadata().map(|m| m.len()).ok();
        (Box::new(std::io::BufReader::new(file)), size)
    };
    // Progress by bytes read, on a terminal only, for large inputs.
    let progress = match total {
        Some(bytes) if bytes > 1 << 20 => ProgressBar::new(bytes).with_style(
            ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {per_sec} eta {eta}")
                .expect("valid template"),
        ),
        _ => ProgressBar::hidden(),
    };
    for (number, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("{}: line {}: {e}", input.display(), number + 1))?;
        progress.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        let record: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| format!("{}: line {}: not JSON: {e}", input.display(), number + 1))?;
        let (Some(id), Some(text)) = (
            record.get("id"),
            record.get("text").and_then(|t| t.as_str()),
        ) else {
            return Err(format!(
                "{}: line {}: needs \"id\" and a string \"text\"",
                input.display(),
                number + 1
            ));
        };
        write(id.clone(), text)?;
    }
    progress.finish_and_clear();
    Ok(())
}

fn audit(
    config: &Config,
    since: Option<&str>,
    who: Option<&str>,
    json: bool,
) -> Result<(), String> {
    let since_ms = match since {
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|e| {
                format!("--since {text:?}: {e} (use RFC 3339, e.g. 2026-11-25T08:00:00Z)")
            })?
            .timestamp_millis(),
        None => 0,
    };
    use radassist::service::store::Store;
    // Read-only: no crash recovery, so it is safe beside a live server.
    let store = radassist::service::store::SqliteStore::open_read_only(&config.service.data_dir)
        .map_err(|e| format!("{}: {e}", config.service.data_dir.display()))?;
    for row in store
        .audit_log(since_ms, who.unwrap_or(""))
        .map_err(|e| e.to_string())?
    {
        if json {
            println!("{}", serde_json::to_string(&row).expect("serialises"));
        } else {
            let at = chrono::DateTime::from_timestamp_millis(row.at_ms)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default();
            println!(
                "{at}  {:<16} {:<12} {:<20} {:<60} {}",
                row.who, row.role, row.action, row.resource, row.peer
            );
        }
    }
    Ok(())
}

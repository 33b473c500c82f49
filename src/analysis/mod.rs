//! One study's analysis: what `radassist analyze` prints and the service's workers store.
//!
//! For the current radiograph, the [`Analyzer`] runs the findings model (per-observation
//! probabilities) and the landmarks model, and turns the landmarks into tube and line checks
//! ([`crate::placement`]). For each prior it checks that the prior really is one (same
//! patient, earlier, chest, frontal), analyses it the same way, aligns it to the current image
//! ([`crate::priors::registration`]), classifies what changed per finding and per device, and,
//! when the prior's signed report is given, matches its sentences to the new results with the
//! MiniLM text model. [`text::render`] writes the result as text; [`overlay`] draws it on the
//! image, and [`overlay::subtraction_png`] renders the temporal subtraction.

pub mod marks;
pub mod overlay;
pub mod text;
pub mod thresholds;

use crate::dicom::{ProjectionView, Spacing, SpacingSource};
use crate::imaging::display::{choose_voi, display_values, VoiChoice};
use crate::imaging::Radiograph;
use crate::inference::batcher::{Batcher, BatchingConfig};
use crate::inference::preprocess::{prepare, ImageSpec, Prepared};
use crate::inference::session::{ProviderUsed, SessionSettings};
use crate::inference::text::TextEmbedder;
use crate::inference::vision::{Finding, ImageModel, Landmark};
use crate::inference::{InferenceError, ModelPack};
use crate::placement::geometry::PatientFrame;
use crate::placement::rules::RuleTable;
use crate::placement::{assess, PlacementResult};
use crate::priors::registration::{register, subtraction, Field, Registration};
use crate::priors::{
    check_prior, compare_devices, compare_findings, match_sentences, ChangeThresholds,
    DeviceChange, FindingChange, SentenceMatch,
};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use thresholds::FindingThresholds;

/// Longer side, in pixels, of the finest level that priors are aligned at.
pub const REGISTRATION_SIZE: usize = 512;

/// Which model packs the analysis uses (None: that part is skipped, and the result says so).
#[derive(Debug, Clone, Default)]
pub struct AnalysisPacks {
    pub findings: Option<PathBuf>,
    /// Landmarks and segmentation packs; each landmark is taken from the most confident.
    pub landmarks: Vec<PathBuf>,
    /// The MiniLM `text-embedding` pack, for matching a prior report's sentences.
    pub text: Option<PathBuf>,
}

/// A model the analysis used, so every result names its source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelUsed {
    pub task: String,
    pub name: String,
    pub version: String,
    pub test_model: bool,
    /// The SHA-256 of the pack's files (empty in results stored before packs had one).
    #[serde(default)]
    pub digest: String,
}

/// The image a result is about (no patient identifiers: UIDs, date and geometry only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageSummary {
    pub sop_instance_uid: Option<String>,
    pub study_instance_uid: Option<String>,
    pub study_date: Option<String>,
    pub view: ProjectionView,
    pub rows: u32,
    pub columns: u32,
    pub spacing: Option<Spacing>,
    pub spacing_source: SpacingSource,
}

impl ImageSummary {
    fn of(r: &Radiograph) -> ImageSummary {
        let h = &r.header;
        ImageSummary {
            sop_instance_uid: h.identity.sop_instance_uid.clone(),
            study_instance_uid: h.identity.study_instance_uid.clone(),
            study_date: h.identity.study_date.clone(),
            view: h.acquisition.view.clone(),
            rows: h.pixels.rows,
            columns: h.pixels.columns,
            spacing: h.geometry.patient_spacing,
            spacing_source: h.geometry.spacing_source,
        }
    }
}

/// What was found on one radiograph.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageAnalysis {
    pub image: ImageSummary,
    pub findings: Vec<Finding>,
    pub landmarks: Vec<Landmark>,
    pub placement: PlacementResult,
}

/// The prior's alignment to the current image, in a radiologist's units.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alignment {
    /// How far the anatomy at the current image's centre lies from the centre on the prior:
    /// x (columns), y (rows), in mm at the current image's spacing (None when uncalibrated).
    pub translation_mm: Option<[f64; 2]>,
    pub translation_px: [f64; 2],
    pub rotation_degrees: f64,
    pub scale: f64,
    pub registration: Registration,
}

/// The comparison with one prior.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PriorComparison {
    pub prior: ImageAnalysis,
    pub alignment: Alignment,
    pub findings: Vec<FindingChange>,
    pub devices: Vec<DeviceChange>,
    /// The prior's signed report, sentence by sentence, against the new results.
    pub prior_report: Vec<SentenceMatch>,
    pub thresholds: ChangeThresholds,
}

/// The whole analysis of a study.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudyAnalysis {
    pub current: ImageAnalysis,
    pub comparisons: Vec<PriorComparison>,
    pub models: Vec<ModelUsed>,
    /// Set when any model is a test model: the results show the flow, not a diagnosis.
    pub warning: Option<String>,
    /// The thresholds the findings were stated at (an analysis stored before they were
    /// recorded was made at the defaults).
    #[serde(default)]
    pub thresholds: FindingThresholds,
}

impl StudyAnalysis {
    /// The sentences the results state (devices present, findings present), for matching.
    pub fn statements(&self) -> Vec<String> {
        text::statements(&self.current, &self.thresholds)
    }
}

/// A prior handed to the analysis: its radiograph and, when signed, its report text.
pub struct PriorInput<'a> {
    pub radiograph: &'a Radiograph,
    pub report: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Inference(#[from] InferenceError),
    #[error("prior {index} ({sop}) cannot be compared: {reason}")]
    NotAPrior {
        index: usize,
        sop: String,
        reason: String,
    },
    #[error("a prior report was given but no text-embedding pack is configured to match it")]
    NoTextModel,
    /// `[analysis.thresholds]` that do not fit the findings pack.
    #[error("{0}")]
    Thresholds(String),
}

pub use crate::inference::batcher::BatchObserver;

/// An image model behind its batching thread ([`Batcher`]): callers on any thread prepare their
/// image (the pack's preprocessing, in parallel on the callers' threads) and submit it; the
/// thread runs whatever has queued as one batch, so studies analysed at the same time share
/// the model's calls.
struct BatchedImageModel<R> {
    spec: ImageSpec,
    batcher: Batcher<Prepared, R>,
}

impl<R> Clone for BatchedImageModel<R> {
    fn clone(&self) -> Self {
        BatchedImageModel {
            spec: self.spec.clone(),
            batcher: self.batcher.clone(),
        }
    }
}

impl<R: Send + 'static> BatchedImageModel<R> {
    fn spawn(
        mut model: ImageModel,
        task: &str,
        batching: BatchingConfig,
        observer: BatchObserver,
        run: fn(&mut ImageModel, &[Prepared]) -> Result<Vec<R>, InferenceError>,
    ) -> Self {
        let name = format!("{task}:{}", model.pack().manifest.name);
        let spec = model.spec().clone();
        let batcher = Batcher::spawn_observed(
            &name,
            batching,
            Some(observer),
            move |prepared: Vec<Prepared>| run(&mut model, &prepared),
        );
        BatchedImageModel { spec, batcher }
    }

    fn run(&self, radiograph: &Radiograph) -> Result<R, InferenceError> {
        self.batcher.submit(prepare(radiograph, &self.spec))
    }
}

/// The models of an analysis, loaded once and shared: cloning an analyzer shares its models
/// (one batching thread per image model, the text model behind a lock), so a pool of workers
/// analyses several studies at once and the models see them as batches.
#[derive(Clone)]
pub struct Analyzer {
    findings: Option<BatchedImageModel<Vec<Finding>>>,
    /// The findings pack's labels, which the site's thresholds must name.
    findings_labels: Vec<String>,
    landmarks: Vec<BatchedImageModel<Vec<Landmark>>>,
    text: Option<Arc<Mutex<TextEmbedder>>>,
    rules: RuleTable,
    change: ChangeThresholds,
    thresholds: FindingThresholds,
    models: Vec<ModelUsed>,
    providers: Vec<ProviderUsed>,
    observer: BatchObserver,
}

fn used(pack: &ModelPack) -> ModelUsed {
    let m = &pack.manifest;
    ModelUsed {
        task: serde_json::to_value(m.task)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        name: m.name.clone(),
        version: m.version.clone(),
        test_model: m.test_model,
        digest: pack.digest.clone(),
    }
}

impl Analyzer {
    /// Loads the packs; `batching` sets each image model's batches, `observer` (if any) is told
    /// of every batch.
    pub fn new(
        packs: &AnalysisPacks,
        settings: &SessionSettings,
        rules: RuleTable,
        change: ChangeThresholds,
        batching: BatchingConfig,
        observer: Option<BatchObserver>,
    ) -> Result<Analyzer, AnalysisError> {
        let observer = observer.unwrap_or_else(|| Arc::new(|_: &str, _: usize, _: f64| {}));
        let mut models = Vec::new();
        let mut providers = Vec::new();
        let mut load = |folder: &PathBuf| -> Result<ModelPack, AnalysisError> {
            let pack = ModelPack::load(folder, settings)?;
            models.push(used(&pack));
            providers.push(pack.provider);
            Ok(pack)
        };
        let mut findings_labels = Vec::new();
        let findings = match &packs.findings {
            Some(folder) => Some(BatchedImageModel::spawn(
                ImageModel::new({
                    let pack = load(folder)?;
                    findings_labels = pack
                        .manifest
                        .findings
                        .as_ref()
                        .map(|f| f.names.clone())
                        .unwrap_or_default();
                    pack
                })?,
                "findings",
                batching,
                observer.clone(),
                |model, prepared| model.findings_of(prepared),
            )),
            None => None,
        };
        let mut landmarks = Vec::new();
        for folder in &packs.landmarks {
            landmarks.push(BatchedImageModel::spawn(
                ImageModel::new(load(folder)?)?,
                "landmarks",
                batching,
                observer.clone(),
                crate::segmentation::landmarks_of,
            ));
        }
        let text = match &packs.text {
            Some(folder) => Some(Arc::new(Mutex::new(TextEmbedder::new(load(folder)?)?))),
            None => None,
        };
        Ok(Analyzer {
            findings,
            findings_labels,
            landmarks,
            text,
            rules,
            change,
            thresholds: FindingThresholds::default(),
            models,
            providers,
            observer,
        })
    }

    /// The site's present thresholds per finding (`[analysis.thresholds]`), checked against the
    /// findings pack's labels.
    pub fn with_thresholds(
        mut self,
        present: &std::collections::BTreeMap<String, f32>,
    ) -> Result<Analyzer, AnalysisError> {
        self.thresholds = FindingThresholds::new(present, &self.findings_labels)
            .map_err(AnalysisError::Thresholds)?;
        Ok(self)
    }

    /// The models this analyzer runs.
    pub fn models(&self) -> &[ModelUsed] {
        &self.models
    }

    /// The execution provider each model's session really got (in the order of [`Self::models`]).
    pub fn providers(&self) -> &[ProviderUsed] {
        &self.providers
    }

    /// Findings, landmarks and device checks of one radiograph.
    pub fn analyze_image(&self, radiograph: &Radiograph) -> Result<ImageAnalysis, AnalysisError> {
        let findings = match &self.findings {
            Some(model) => model.run(radiograph)?,
            None => vec![],
        };
        let mut landmarks = Vec::new();
        for model in &self.landmarks {
            landmarks.extend(model.run(radiograph)?);
        }
        let frame = PatientFrame::from_header(&radiograph.header);
        let age = radiograph
            .header
            .acquisition
            .patient_age
            .as_ref()
            .map(|a| a.years);
        let placement = assess(&landmarks, &frame, age, &self.rules);
        Ok(ImageAnalysis {
            image: ImageSummary::of(radiograph),
            findings,
            landmarks,
            placement,
        })
    }

    /// The prior report's sentences matched to the new statements (the text model's turn).
    fn match_prior_report(
        &self,
        report: &str,
        statements: &[String],
    ) -> Result<Vec<SentenceMatch>, AnalysisError> {
        let Some(embedder) = &self.text else {
            return Ok(vec![]);
        };
        let mut embedder = embedder.lock().unwrap_or_else(|p| p.into_inner());
        let name = format!("text-embedding:{}", embedder.pack().manifest.name);
        let started = Instant::now();
        let matches = match_sentences(&mut embedder, report, statements)?;
        (self.observer)(&name, 1, started.elapsed().as_secs_f64());
        Ok(matches)
    }

    /// The current radiograph, compared with each prior (most recent first, as given).
    pub fn analyze(
        &self,
        current: &Radiograph,
        priors: &[PriorInput],
    ) -> Result<StudyAnalysis, AnalysisError> {
        for (index, prior) in priors.iter().enumerate() {
            check_prior(&current.header, &prior.radiograph.header).map_err(|reason| {
                AnalysisError::NotAPrior {
                    index: index + 1,
                    sop: prior
                        .radiograph
                        .header
                        .identity
                        .sop_instance_uid
                        .clone()
                        .unwrap_or_default(),
                    reason,
                }
            })?;
            if prior.report.is_some() && self.text.is_none() {
                return Err(AnalysisError::NoTextModel);
            }
        }
        let analysis = self.analyze_image(current)?;
        let statements = text::statements(&analysis, &self.thresholds);
        let current_display = display(current);
        let mut comparisons = Vec::new();
        for prior in priors {
            let prior_analysis = self.analyze_image(prior.radiograph)?;
            let prior_display = display(prior.radiograph);
            let registration = register(
                field(current, &current_display),
                field(prior.radiograph, &prior_display),
                initial_scale(current, prior.radiograph),
                REGISTRATION_SIZE,
            );
            let spacing = current.header.geometry.patient_spacing;
            let t = registration.transform;
            let (sx, sy) = t.shift();
            let alignment = Alignment {
                translation_mm: spacing.map(|s| [sx * s.column_mm, sy * s.row_mm]),
                translation_px: [sx, sy],
                rotation_degrees: t.rotation_degrees(),
                scale: t.scale(),
                registration,
            };
            let findings =
                compare_findings(&prior_analysis.findings, &analysis.findings, &self.change);
            let devices = compare_devices(
                &prior_analysis.placement.devices,
                &analysis.placement.devices,
                &t,
                spacing.map(|s| (s.row_mm, s.column_mm)),
                &self.change,
            );
            let prior_report = match prior.report {
                Some(report) => self.match_prior_report(report, &statements)?,
                None => vec![],
            };
            comparisons.push(PriorComparison {
                prior: prior_analysis,
                alignment,
                findings,
                devices,
                prior_report,
                thresholds: self.change,
            });
        }
        let warning = self
            .models
            .iter()
            .any(|m| m.test_model)
            .then(|| crate::inference::TEST_MODEL_WARNING.to_string());
        Ok(StudyAnalysis {
            current: analysis,
            comparisons,
            models: self.models.clone(),
            warning,
            thresholds: self.thresholds.clone(),
        })
    }
}

/// The display image (default VOI) that registration and drawing work on.
pub fn display(radiograph: &Radiograph) -> Array2<f32> {
    let voi = choose_voi(radiograph, &VoiChoice::Default).expect("the default VOI always exists");
    display_values(radiograph, &voi)
}

/// A radiograph's display values with its padding mask.
pub fn field<'a>(radiograph: &'a Radiograph, display: &'a Array2<f32>) -> Field<'a> {
    Field {
        display: display.view(),
        padding: radiograph.padding.as_ref().map(|p| p.view()),
    }
}

/// The size ratio to start from: current spacing / prior spacing when both are calibrated.
fn initial_scale(current: &Radiograph, prior: &Radiograph) -> f64 {
    match (
        current.header.geometry.patient_spacing,
        prior.header.geometry.patient_spacing,
    ) {
        (Some(c), Some(p)) if p.column_mm > 0.0 => c.column_mm / p.column_mm,
        _ => 1.0,
    }
}

/// The temporal subtraction of a comparison, at the current image's size.
pub fn subtraction_image(
    current: &Radiograph,
    prior: &Radiograph,
    comparison: &PriorComparison,
) -> Array2<Option<f32>> {
    let (a, b) = (display(current), display(prior));
    subtraction(
        field(current, &a),
        field(prior, &b),
        &comparison.alignment.registration,
    )
}

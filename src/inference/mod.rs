//! Inference: model packs and the ONNX Runtime sessions that run them.
//!
//! A model pack is a folder under `models/` with a manifest ([`manifest::Manifest`], the
//! `model.toml`) and its ONNX graph. [`ModelPack::load`] reads the manifest, opens the graph on
//! the configured execution provider ([`session`]), and refuses a graph whose inputs or outputs
//! disagree with the manifest. Task-specific runners sit on top: [`text::TextEmbedder`] for the
//! `text-embedding` task (MiniLM sentence embeddings for report matching).

pub mod batcher;
pub mod digest;
pub mod manifest;
pub mod preprocess;
pub mod report;
pub mod session;
pub mod text;
pub mod vision;

use manifest::Manifest;
use session::{ProviderUsed, SessionSettings};
use std::path::{Path, PathBuf};

/// What every output of a test model says (DESIGN.md section 3).
pub const TEST_MODEL_WARNING: &str = "test model, not for clinical use";

/// Why a model pack could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("model pack {pack}: {reason}")]
    Pack { pack: String, reason: String },
    #[error("model pack {pack}: the manifest disagrees with the ONNX graph at {field}: {detail}")]
    ManifestMismatch {
        pack: String,
        field: String,
        detail: String,
    },
    #[error("provider = cuda, but CUDA cannot be used: {reason}. CUDA needs radassist built with \
             `--features cuda`, ORT_DYLIB_PATH pointing at the onnxruntime-gpu library, and the CUDA \
             13 and cuDNN 9 libraries on an NVIDIA GPU machine; otherwise use provider auto or cpu")]
    CudaUnavailable { reason: String },
    #[error("ONNX Runtime could not open {file}: {reason}")]
    Session { file: PathBuf, reason: String },
    #[error("inference failed: {0}")]
    Run(String),
    #[error("the model's queue is full: retry shortly")]
    Busy,
}

/// A loaded model pack: its manifest, folder, session and the provider it really got.
pub struct ModelPack {
    pub manifest: Manifest,
    pub folder: PathBuf,
    pub session: ort::session::Session,
    pub provider: ProviderUsed,
    /// The SHA-256 of the pack's files ([`digest::pack_digest`]).
    pub digest: String,
}

impl ModelPack {
    /// Loads the pack in `folder` and checks its graph against its manifest.
    pub fn load(folder: &Path, settings: &SessionSettings) -> Result<ModelPack, InferenceError> {
        let pack_error = |reason: String| InferenceError::Pack {
            pack: folder.display().to_string(),
            reason,
        };
        let manifest = Manifest::read(&folder.join("model.toml")).map_err(pack_error)?;
        if manifest.task == manifest::Task::Report {
            return Err(pack_error(
                "a report pack has three graphs: load it with report::ReportModel".into(),
            ));
        }
        let (session, provider) = open_pack_graph(
            &manifest.name,
            folder,
            "graph.file",
            &manifest.graph().file,
            settings,
        )?;
        session::check_graph(&manifest, &session)?;
        let digest = digest::pack_digest(folder)
            .map_err(|e| pack_error(format!("reading its files for their digest: {e}")))?;
        Ok(ModelPack {
            manifest,
            folder: folder.to_path_buf(),
            session,
            provider,
            digest,
        })
    }
}

impl ModelPack {
    /// The pack as results name it: "name version".
    pub fn model_name(&self) -> String {
        format!("{} {}", self.manifest.name, self.manifest.version)
    }

    /// Runs the graph once on zeros shaped as the manifest says (named dimensions as 1), so that
    /// the first real request does not pay for ONNX Runtime's lazy initialisation; returns the
    /// time it took.
    pub fn warm_up(&mut self) -> Result<std::time::Duration, InferenceError> {
        use ort::value::{DynValue, Tensor};
        let run = |e: ort::Error| InferenceError::Run(e.to_string());
        let mut inputs: Vec<(String, DynValue)> = Vec::new();
        for spec in &self.manifest.graph().inputs {
            let shape: Vec<usize> = spec
                .shape
                .iter()
                .map(|d| match d {
                    manifest::Dimension::Fixed(n) => (*n).max(1) as usize,
                    manifest::Dimension::Named(_) => 1,
                })
                .collect();
            let shape = ndarray::IxDyn(&shape);
            let value: DynValue = match manifest::canonical_dtype(&spec.dtype) {
                Some("f32") => Tensor::from_array(ndarray::ArrayD::<f32>::zeros(shape))
                    .map_err(run)?
                    .into_dyn(),
                Some("i64") => Tensor::from_array(ndarray::ArrayD::<i64>::zeros(shape))
                    .map_err(run)?
                    .into_dyn(),
                Some("i32") => Tensor::from_array(ndarray::ArrayD::<i32>::zeros(shape))
                    .map_err(run)?
                    .into_dyn(),
                Some("u8") => Tensor::from_array(ndarray::ArrayD::<u8>::zeros(shape))
                    .map_err(run)?
                    .into_dyn(),
                other => {
                    return Err(InferenceError::Run(format!(
                        "warm-up cannot make {} input {:?}",
                        other.unwrap_or("?"),
                        spec.name
                    )))
                }
            };
            inputs.push((spec.name.clone(), value));
        }
        let started = std::time::Instant::now();
        self.session.run(inputs).map_err(run)?;
        Ok(started.elapsed())
    }
}

/// Opens one ONNX graph of a pack; a missing file is refused naming the manifest field.
pub(crate) fn open_pack_graph(
    pack: &str,
    folder: &Path,
    field: &str,
    file: &str,
    settings: &SessionSettings,
) -> Result<(ort::session::Session, ProviderUsed), InferenceError> {
    let path = folder.join(file);
    if !path.is_file() {
        return Err(InferenceError::Pack {
            pack: pack.to_string(),
            reason: format!("{field} {} does not exist", path.display()),
        });
    }
    session::open_session(&path, settings)
}

/// The pack folders under `models_dir` (those with a model.toml), sorted.
pub fn pack_folders(models_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(models_dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("model.toml").is_file())
        .collect();
    folders.sort();
    Ok(folders)
}

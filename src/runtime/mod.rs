//! ONNX Runtime: finding and loading the shared library that model inference runs on.
//!
//! radassist links ONNX Runtime dynamically (`ort` with `load-dynamic`), so the binary starts
//! without it and only inference needs it. The library is the one `ORT_DYLIB_PATH` names when
//! that is set (and only that one); otherwise the copy that `scripts/setup` puts in the project
//! (`.radassist/onnxruntime/`), else one next to the executable. When it is missing, the error
//! says how to get it, and nothing panics.

use std::path::{Path, PathBuf};

/// The ONNX Runtime release the project is built and tested against.
pub const ONNXRUNTIME_VERSION: &str = "1.31.1";
const LIBRARY_NAME: &str = "libonnxruntime.so";

#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "the ONNX Runtime library was not found (looked at: {looked}). Run `scripts/setup` \
             in the radassist checkout, which fetches onnxruntime=={ONNXRUNTIME_VERSION} from \
             PyPI into .radassist/onnxruntime/, or set ORT_DYLIB_PATH to a {LIBRARY_NAME} of \
             ONNX Runtime {ONNXRUNTIME_VERSION}"
    )]
    LibraryNotFound { looked: String },
    #[error(
        "the ONNX Runtime library at {path} could not be loaded: {reason}. It must be ONNX \
             Runtime {ONNXRUNTIME_VERSION} for Linux x86_64; run `scripts/setup` to fetch it"
    )]
    LoadFailed { path: PathBuf, reason: String },
}

/// Where the library is looked for, in order.
pub fn candidate_paths() -> Vec<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        return vec![PathBuf::from(path)];
    }
    let mut paths = Vec::new();
    let project_copy = Path::new(".radassist/onnxruntime").join(LIBRARY_NAME);
    paths.push(project_copy.clone());
    if let Some(root) = option_env!("CARGO_MANIFEST_DIR") {
        paths.push(Path::new(root).join(&project_copy));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        paths.push(dir.join(LIBRARY_NAME));
    }
    paths
}

/// ONNX Runtime, loaded and with its process-wide environment created.
pub struct Runtime {
    /// The library file it was loaded from.
    pub library: PathBuf,
    /// ONNX Runtime's own build description (version, commit).
    pub build_info: String,
    environment: ort::environment::Environment,
}

impl Runtime {
    /// The process-wide environment that sessions are created in.
    pub fn environment(&self) -> &ort::environment::Environment {
        &self.environment
    }
}

/// Loads ONNX Runtime once per process.
pub fn load() -> Result<&'static Runtime, RuntimeError> {
    static LOADED: std::sync::OnceLock<Result<Runtime, RuntimeError>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(load_from_candidates)
        .as_ref()
        .map_err(Clone::clone)
}

fn load_from_candidates() -> Result<Runtime, RuntimeError> {
    let candidates = candidate_paths();
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        let looked = candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>();
        return Err(RuntimeError::LibraryNotFound {
            looked: looked.join(", "),
        });
    };
    let load_failed = |reason: String| RuntimeError::LoadFailed {
        path: path.clone(),
        reason,
    };
    let environment = ort::init_from(path)
        .map_err(|err| load_failed(err.to_string()))?
        .with_name("radassist")
        .build()
        .map_err(|err| load_failed(err.to_string()))?;
    Ok(Runtime {
        library: path.clone(),
        build_info: ort::info().to_string(),
        environment,
    })
}

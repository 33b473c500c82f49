//! ONNX Runtime sessions for model packs: execution provider choice and the manifest check.
//!
//! `provider = cpu` uses the CPU; `cuda` registers the CUDA execution provider and fails loudly
//! when it cannot be used; `auto` tries CUDA and falls back to the CPU, logging why. The provider
//! a session really got is recorded, because ONNX Runtime otherwise falls back silently.

use super::manifest::{canonical_dtype, Dimension, Manifest, TensorSpec};
use super::InferenceError;
use ort::ep::{ExecutionProviderDispatch, CPU};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::ValueType;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Which execution provider to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// CUDA when it can be used, otherwise the CPU (and a log line saying why).
    #[default]
    Auto,
    /// CUDA, or an error.
    Cuda,
    Cpu,
}

/// Session settings (threads, graph optimisation, memory arena).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionSettings {
    pub provider: Provider,
    /// Threads inside one operator (0: ONNX Runtime's default, one per core).
    pub intra_threads: usize,
    /// Graph optimisation level, 0 (none) to 3 (all).
    pub optimization_level: u8,
    /// Whether the CPU memory arena is used (faster, holds memory).
    pub cpu_arena: bool,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            provider: Provider::Auto,
            intra_threads: 0,
            optimization_level: 3,
            cpu_arena: true,
        }
    }
}

/// The provider a session really runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderUsed {
    Cuda,
    Cpu,
}

fn session_error(path: &Path, err: impl std::fmt::Display) -> InferenceError {
    InferenceError::Session {
        file: path.to_path_buf(),
        reason: err.to_string(),
    }
}

/// Builds a session for `file` with the settings' provider.
pub fn open_session(
    file: &Path,
    settings: &SessionSettings,
) -> Result<(Session, ProviderUsed), InferenceError> {
    let runtime = crate::runtime::load()?;
    let cpu = || {
        CPU::default()
            .with_arena_allocator(settings.cpu_arena)
            .build()
            .error_on_failure()
    };
    let build =
        |providers: Result<Vec<ExecutionProviderDispatch>, String>| -> Result<Session, String> {
            let providers = providers?;
            let level = match settings.optimization_level {
                0 => GraphOptimizationLevel::Disable,
                1 => GraphOptimizationLevel::Level1,
                2 => GraphOptimizationLevel::Level2,
                _ => GraphOptimizationLevel::Level3,
            };
            let mut builder = Session::builder(runtime.environment())
                .map_err(|e| e.to_string())?
                .with_optimization_level(level)
                .map_err(|e| e.to_string())?
                .with_intra_threads(settings.intra_threads)
                .map_err(|e| e.to_string())?
                .with_execution_providers(providers)
                .map_err(|e| e.to_string())?;
            builder.commit_from_file(file).map_err(|e| e.to_string())
        };
    match settings.provider {
        Provider::Cpu => build(Ok(vec![cpu()]))
            .map(|s| (s, ProviderUsed::Cpu))
            .map_err(|e| session_error(file, e)),
        Provider::Cuda => build(cuda_provider())
            .map(|s| (s, ProviderUsed::Cuda))
            .map_err(|reason| InferenceError::CudaUnavailable { reason }),
        Provider::Auto => match build(cuda_provider()) {
            Ok(session) => Ok((session, ProviderUsed::Cuda)),
            Err(reason) => {
                tracing::warn!(file = %file.display(), %reason, "CUDA cannot be used; running on the CPU");
                build(Ok(vec![cpu()]))
                    .map(|s| (s, ProviderUsed::Cpu))
                    .map_err(|e| session_error(file, e))
            }
        },
    }
}

#[cfg(feature = "cuda")]
fn cuda_provider() -> Result<Vec<ExecutionProviderDispatch>, String> {
    Ok(vec![ort::ep::CUDA::default().build().error_on_failure()])
}

#[cfg(not(feature = "cuda"))]
fn cuda_provider() -> Result<Vec<ExecutionProviderDispatch>, String> {
    Err("this radassist was built without the `cuda` feature".into())
}

/// Compares the graph's real inputs and outputs with the manifest; the error names the field.
pub fn check_graph(manifest: &Manifest, session: &Session) -> Result<(), InferenceError> {
    let mismatch = |field: String, detail: String| InferenceError::ManifestMismatch {
        pack: manifest.name.clone(),
        field,
        detail,
    };
    for (kind, specs, outlets) in [
        ("inputs", &manifest.graph().inputs, session.inputs()),
        ("outputs", &manifest.graph().outputs, session.outputs()),
    ] {
        let graph_names: Vec<&str> = outlets.iter().map(|o| o.name()).collect();
        for (i, spec) in specs.iter().enumerate() {
            let field = format!("graph.{kind}[{i}]");
            let Some(outlet) = outlets.iter().find(|o| o.name() == spec.name) else {
                return Err(mismatch(
                    format!("{field}.name"),
                    format!(
                        "{:?} is not among the graph's {kind} {graph_names:?}",
                        spec.name
                    ),
                ));
            };
            check_tensor(spec, outlet.dtype())
                .map_err(|(part, detail)| mismatch(format!("{field}.{part}"), detail))?;
        }
        if kind == "inputs" {
            if let Some(extra) = graph_names
                .iter()
                .find(|n| !specs.iter().any(|s| s.name == **n))
            {
                return Err(mismatch(
                    format!("graph.{kind}"),
                    format!("the graph also needs input {extra:?}, which the manifest lacks"),
                ));
            }
        }
    }
    Ok(())
}

fn check_tensor(spec: &TensorSpec, actual: &ValueType) -> Result<(), (String, String)> {
    let ValueType::Tensor { ty, shape, .. } = actual else {
        return Err((
            "dtype".into(),
            format!("the graph's {:?} is not a tensor", spec.name),
        ));
    };
    let declared = canonical_dtype(&spec.dtype).unwrap_or("?");
    if ty.to_string() != declared {
        return Err((
            "dtype".into(),
            format!(
                "{:?} is {}, but the graph's {:?} is {ty}",
                spec.name, spec.dtype, spec.name
            ),
        ));
    }
    if shape.len() != spec.shape.len() {
        return Err((
            "shape".into(),
            format!(
                "{:?} has {} dimensions in the manifest, {} in the graph ({:?})",
                spec.name,
                spec.shape.len(),
                shape.len(),
                &shape[..]
            ),
        ));
    }
    for (d, (declared, &real)) in spec.shape.iter().zip(shape.iter()).enumerate() {
        if let Dimension::Fixed(n) = declared {
            if real >= 0 && real != *n {
                return Err((
                    format!("shape[{d}]"),
                    format!(
                        "{:?} dimension {d} is {n} in the manifest, {real} in the graph",
                        spec.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

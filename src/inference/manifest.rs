//! The model pack manifest (`model.toml`): what a pack is for, which ONNX graph it runs, the
//! graph's inputs and outputs as the pack promises them, and how to prepare its input.
//!
//! A site drops its own exported model into `models/NAME/` with a manifest; radassist checks
//! the manifest against the graph when it loads the pack and refuses a mismatch, naming the field.

pub use super::preprocess::ImageSpec;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What a pack does (DESIGN.md section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    Findings,
    Landmarks,
    Embedding,
    TextEmbedding,
    Report,
}

/// One dimension of a tensor: a fixed size, or a named dynamic one ("batch", "sequence").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dimension {
    Fixed(i64),
    Named(String),
}

impl std::fmt::Display for Dimension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dimension::Fixed(n) => write!(f, "{n}"),
            Dimension::Named(name) => write!(f, "{name:?}"),
        }
    }
}

/// A graph input or output as the manifest declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    /// Element type: float32, float16, int64, int32, uint8, bool.
    pub dtype: String,
    pub shape: Vec<Dimension>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSpec {
    /// The ONNX file, relative to the pack folder.
    pub file: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

/// How text is turned into model input and embeddings out of it (text-embedding packs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextSpec {
    /// tokenizer.json, relative to the pack folder.
    pub tokenizer: String,
    /// Longest input in tokens (special tokens included); longer text is truncated.
    pub max_tokens: usize,
    /// "mean": the mean of the last hidden state over the attention mask.
    pub pooling: String,
    /// L2-normalise the pooled embedding.
    pub normalize: bool,
}

/// A model pack's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub task: Task,
    pub version: String,
    pub licence: String,
    pub intended_use: String,
    /// A test model (random or hand-built): every output it touches says so.
    #[serde(default)]
    pub test_model: bool,
    pub graph: GraphSpec,
    pub text: Option<TextSpec>,
    pub image: Option<ImageSpec>,
    pub findings: Option<FindingsSpec>,
    pub landmarks: Option<LandmarksSpec>,
    pub embedding: Option<EmbeddingSpec>,
}

/// `findings` packs: probabilities [N, K] for K named observations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindingsSpec {
    pub output: String,
    pub labels: Vec<String>,
    /// "none" when the graph gives probabilities, "sigmoid" when it gives logits.
    #[serde(default = "no_activation")]
    pub activation: String,
}

/// `landmarks` packs: heatmaps [N, L, h, w] for L named landmarks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandmarksSpec {
    pub output: String,
    pub names: Vec<String>,
    /// "none" when heatmap values are confidences in [0, 1], "sigmoid" for logits.
    #[serde(default = "no_activation")]
    pub activation: String,
}

/// `embedding` packs: one vector [N, D] per image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingSpec {
    pub output: String,
}

fn no_activation() -> String {
    "none".into()
}

/// Element type names as ONNX Runtime prints them.
pub(crate) fn canonical_dtype(dtype: &str) -> Option<&'static str> {
    Some(match dtype {
        "float32" | "float" | "f32" => "f32",
        "float16" | "f16" => "f16",
        "float64" | "double" | "f64" => "f64",
        "int64" | "i64" => "i64",
        "int32" | "i32" => "i32",
        "uint8" | "u8" => "u8",
        "int8" | "i8" => "i8",
        "bool" => "bool",
        _ => return None,
    })
}

impl Manifest {
    /// Reads and checks `model.toml` on its own (the graph is checked when it is loaded).
    pub fn read(path: &Path) -> Result<Manifest, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        manifest.check().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(manifest)
    }

    fn check(&self) -> Result<(), String> {
        for (kind, specs) in [("inputs", &self.graph.inputs), ("outputs", &self.graph.outputs)] {
            if specs.is_empty() {
                return Err(format!("graph.{kind} is empty"));
            }
            for (i, spec) in specs.iter().enumerate() {
                if canonical_dtype(&spec.dtype).is_none() {
                    return Err(format!("graph.{kind}[{i}].dtype {:?} is not a known element type", spec.dtype));
                }
            }
        }
        let output_exists = |section: &str, name: &str| {
            if self.graph.outputs.iter().any(|o| o.name == name) {
                Ok(())
            } else {
                Err(format!("{section}.output {name:?} is not among graph.outputs"))
            }
        };
        let activation = |section: &str, a: &str| match a {
            "none" | "sigmoid" => Ok(()),
            other => Err(format!("{section}.activation {other:?} must be \"none\" or \"sigmoid\"")),
        };
        if let Some(image) = &self.image {
            image.check()?;
            if !self.graph.inputs.iter().any(|i| i.name == image.input) {
                return Err(format!("image.input {:?} is not among graph.inputs", image.input));
            }
        }
        let needs_image = || self.image.as_ref().map(|_| ()).ok_or_else(|| format!("a {:?} pack needs an [image] section", self.task));
        match self.task {
            Task::TextEmbedding => match &self.text {
                None => Err("a text-embedding pack needs a [text] section".into()),
                Some(text) if text.pooling != "mean" => Err(format!("text.pooling {:?} is not supported (use \"mean\")", text.pooling)),
                Some(text) if text.max_tokens == 0 => Err("text.max_tokens must be positive".into()),
                Some(_) => Ok(()),
            },
            Task::Findings => {
                needs_image()?;
                let f = self.findings.as_ref().ok_or("a findings pack needs a [findings] section")?;
                if f.labels.is_empty() {
                    return Err("findings.labels is empty".into());
                }
                activation("findings", &f.activation)?;
                output_exists("findings", &f.output)
            }
            Task::Landmarks => {
                needs_image()?;
                let l = self.landmarks.as_ref().ok_or("a landmarks pack needs a [landmarks] section")?;
                if l.names.is_empty() {
                    return Err("landmarks.names is empty".into());
                }
                activation("landmarks", &l.activation)?;
                output_exists("landmarks", &l.output)
            }
            Task::Embedding => {
                needs_image()?;
                let e = self.embedding.as_ref().ok_or("an embedding pack needs an [embedding] section")?;
                output_exists("embedding", &e.output)
            }
            Task::Report => Err("report packs (vision-language generation) are not supported yet".into()),
        }
    }
}

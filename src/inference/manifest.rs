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
    /// Masks of named structures, from which radassist derives landmarks.
    Segmentation,
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
    /// The ONNX graph of single-graph tasks (all but `report`, which names three in `[report]`).
    pub graph: Option<GraphSpec>,
    pub text: Option<TextSpec>,
    pub image: Option<ImageSpec>,
    pub findings: Option<NamedOutputSpec>,
    pub landmarks: Option<NamedOutputSpec>,
    pub segmentation: Option<SegmentationSpec>,
    pub embedding: Option<EmbeddingSpec>,
    pub report: Option<ReportSpec>,
}

/// `report` packs: the three-graph layout of LLaVA-style exports (DESIGN.md section 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    /// pixel_values [N, C, H, W] -> image_features [N, image_tokens, hidden].
    pub vision_encoder: String,
    /// input_ids [N, S] -> inputs_embeds [N, S, hidden].
    pub embed_tokens: String,
    /// inputs_embeds, attention_mask, position_ids, past_key_values.{i}.key/value ->
    /// logits, present.{i}.key/value.
    pub decoder: String,
    pub tokenizer: String,
    /// The prompt: `<s>` is the BOS id, `<image>` the image's tokens, `{indication}` the
    /// clinical indication, and `{prior}` where `prior_template` goes when there is a prior study.
    pub template: String,
    /// Inserted at `{prior}` for a request with a prior study: `<prior_image>` is the prior
    /// image's tokens, `{prior_report}` its signed report.
    #[serde(default)]
    pub prior_template: Option<String>,
    pub image_token_id: i64,
    /// How many ids one `<image>` expands to (one per image feature).
    pub image_tokens: usize,
    pub bos_id: i64,
    pub eos_ids: Vec<i64>,
    pub pad_id: i64,
    pub layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub max_new_tokens: usize,
}
/// `findings` packs (probabilities [N, K] for K named observations) and `landmarks` packs
/// (heatmaps [N, L, h, w] for L named landmarks): an output with one entry per name along
/// dimension 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedOutputSpec {
    pub output: String,
    /// The observations (`labels` in a `[findings]` section) or landmarks, in output order.
    #[serde(alias = "labels")]
    pub names: Vec<String>,
    /// "none" when the graph gives probabilities or confidences, "sigmoid" when it gives logits.
    #[serde(default = "no_activation")]
    pub activation: String,
    /// Landmarks only: "heatmaps" ([N, L, h, w], the default) or "points" ([N, L, 3]: x, y in
    /// model-input pixels, and a confidence).
    #[serde(default)]
    pub form: Option<String>,
}

/// `segmentation` packs: masks [N, C, h, w], one channel per named structure (over the model's
/// input, at any resolution), and which channels are the structures radassist derives the
/// placement landmarks from (`crate::segmentation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentationSpec {
    pub output: String,
    /// Every channel's name, in output order.
    pub channels: Vec<String>,
    /// "sigmoid" when the graph gives logits per channel, "none" when it gives probabilities.
    #[serde(default = "no_activation")]
    pub activation: String,
    /// A pixel belongs to a structure at this probability and above.
    #[serde(default = "half")]
    pub threshold: f32,
    /// Which channel (by name) is each structure landmarks are derived from; structures not
    /// named are not derived.
    pub structures: std::collections::BTreeMap<Structure, String>,
}

/// The structures radassist derives placement landmarks from, and what it derives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Structure {
    /// The region of the tracheal bifurcation: the carina at its centre.
    TrachealBifurcation,
    /// The trachea (with or without the main bronchi): the carina where it splits, else at its
    /// lower end (when no bifurcation channel is given).
    Trachea,
    /// The left hemidiaphragm: its dome, the highest point.
    LeftHemidiaphragm,
    /// The right atrium: the cavoatrial junction at its upper border (where the superior vena
    /// cava enters).
    RightAtrium,
    /// Device masks: each tip at the end of the device's skeleton farthest along its course.
    EndotrachealTube,
    EnteralTube,
    CentralVenousCatheter,
    ChestTube,
}

fn half() -> f32 {
    0.5
}

impl SegmentationSpec {
    /// Whether the section is coherent: an activation known, a threshold in (0, 1], channel
    /// names unique, and every structure naming a channel.
    fn check(&self) -> Result<(), String> {
        if !matches!(self.activation.as_str(), "none" | "sigmoid") {
            return Err(format!(
                "segmentation.activation {:?} must be \"none\" or \"sigmoid\"",
                self.activation
            ));
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(format!(
                "segmentation.threshold {} must be above 0 and at most 1",
                self.threshold
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(twice) = self.channels.iter().find(|c| !seen.insert(c.as_str())) {
            return Err(format!("segmentation.channels names {twice:?} twice"));
        }
        if self.structures.is_empty() {
            return Err(
                "segmentation.structures names no structure to derive landmarks from".into(),
            );
        }
        for (structure, channel) in &self.structures {
            if !seen.contains(channel.as_str()) {
                let key = serde_json::to_value(structure).unwrap_or_default();
                return Err(format!(
                    "segmentation.structures: {} names channel {channel:?}, which is not in segmentation.channels",
                    key.as_str().unwrap_or_default()
                ));
            }
        }
        Ok(())
    }

    /// The channel index of each structure named.
    pub fn channel_of(&self, structure: Structure) -> Option<usize> {
        let name = self.structures.get(&structure)?;
        self.channels.iter().position(|c| c == name)
    }
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
    /// The graph of a single-graph pack.
    pub fn graph(&self) -> &GraphSpec {
        self.graph
            .as_ref()
            .expect("checked when the manifest was read")
    }

    pub fn read(path: &Path) -> Result<Manifest, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let manifest: Manifest =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        manifest
            .check()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(manifest)
    }

    fn check(&self) -> Result<(), String> {
        if self.task == Task::Report {
            let report = self
                .report
                .as_ref()
                .ok_or("a report pack needs a [report] section")?;
            self.image
                .as_ref()
                .ok_or("a report pack needs an [image] section")?
                .check()?;
            if report.template.matches("<image>").count() != 1 {
                return Err("report.template must hold <image> exactly once".into());
            }
            if let Some(prior) = &report.prior_template {
                if !report.template.contains("{prior}")
                    || prior.matches("<prior_image>").count() != 1
                {
                    return Err("report.prior_template needs {prior} in report.template and <prior_image> once in itself".into());
                }
            }
            if report.eos_ids.is_empty()
                || report.layers == 0
                || report.image_tokens == 0
                || report.max_new_tokens == 0
            {
                return Err("report.eos_ids, layers, image_tokens and max_new_tokens must not be empty or 0".into());
            }
            return Ok(());
        }
        let graph = self
            .graph
            .as_ref()
            .ok_or("the [graph] section is missing")?;
        for (kind, specs) in [("inputs", &graph.inputs), ("outputs", &graph.outputs)] {
            if specs.is_empty() {
                return Err(format!("graph.{kind} is empty"));
            }
            for (i, spec) in specs.iter().enumerate() {
                if canonical_dtype(&spec.dtype).is_none() {
                    return Err(format!(
                        "graph.{kind}[{i}].dtype {:?} is not a known element type",
                        spec.dtype
                    ));
                }
            }
        }
        let output_exists = |section: &str, name: &str| {
            if graph.outputs.iter().any(|o| o.name == name) {
                Ok(())
            } else {
                Err(format!(
                    "{section}.output {name:?} is not among graph.outputs"
                ))
            }
        };
        // One name per entry along dimension 1 of the output (which exists).
        let one_name_per_entry = |names: &str, output: &str, count: usize| {
            let declared = graph.outputs.iter().find(|o| o.name == output);
            match declared.and_then(|o| o.shape.get(1)) {
                Some(Dimension::Fixed(n)) if *n as usize != count => Err(format!(
                    "{names} lists {count} names, but output {output:?} has {n} along dimension 1"
                )),
                _ => Ok(()),
            }
        };
        let activation = |section: &str, a: &str| match a {
            "none" | "sigmoid" => Ok(()),
            other => Err(format!(
                "{section}.activation {other:?} must be \"none\" or \"sigmoid\""
            )),
        };
        if let Some(image) = &self.image {
            image.check()?;
            if !graph.inputs.iter().any(|i| i.name == image.input) {
                return Err(format!(
                    "image.input {:?} is not among graph.inputs",
                    image.input
                ));
            }
        }
        let needs_image = || {
            self.image
                .as_ref()
                .map(|_| ())
                .ok_or_else(|| format!("a {:?} pack needs an [image] section", self.task))
        };
        match self.task {
            Task::TextEmbedding => match &self.text {
                None => Err("a text-embedding pack needs a [text] section".into()),
                Some(text) if text.pooling != "mean" => Err(format!(
                    "text.pooling {:?} is not supported (use \"mean\")",
                    text.pooling
                )),
                Some(text) if text.max_tokens == 0 => {
                    Err("text.max_tokens must be positive".into())
                }
                Some(_) => Ok(()),
            },
            Task::Findings | Task::Landmarks => {
                needs_image()?;
                let (section, spec) = match self.task {
                    Task::Findings => ("findings", &self.findings),
                    _ => ("landmarks", &self.landmarks),
                };
                let spec = spec
                    .as_ref()
                    .ok_or_else(|| format!("a {section} pack needs a [{section}] section"))?;
                if spec.names.is_empty() {
                    return Err(format!("{section}.names is empty"));
                }
                activation(section, &spec.activation)?;
                output_exists(section, &spec.output)?;
                match (self.task, spec.form.as_deref()) {
                    (_, None) | (Task::Landmarks, Some("heatmaps" | "points")) => {}
                    (_, Some(other)) => return Err(format!("{section}.form {other:?} must be \"heatmaps\" or \"points\" (landmarks only)")),
                }
                one_name_per_entry(&format!("{section}.names"), &spec.output, spec.names.len())
            }
            Task::Segmentation => {
                needs_image()?;
                let spec = self
                    .segmentation
                    .as_ref()
                    .ok_or("a segmentation pack needs a [segmentation] section")?;
                spec.check()?;
                output_exists("segmentation", &spec.output)?;
                one_name_per_entry("segmentation.channels", &spec.output, spec.channels.len())?;
                let declared = graph.outputs.iter().find(|o| o.name == spec.output);
                match declared.map(|o| o.shape.len()) {
                    Some(4) => Ok(()),
                    _ => Err(format!(
                        "segmentation output {:?} must be [batch, channels, rows, columns]",
                        spec.output
                    )),
                }
            }
            Task::Embedding => {
                needs_image()?;
                let e = self
                    .embedding
                    .as_ref()
                    .ok_or("an embedding pack needs an [embedding] section")?;
                output_exists("embedding", &e.output)
            }
            Task::Report => unreachable!("handled above"),
        }
    }
}

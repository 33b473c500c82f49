//! The `report` task: a vision-language model writes the draft, token by token.
//!
//! The pack holds the three graphs of LLaVA-style exports: the vision encoder (image to image
//! features), the token embedding, and the decoder that takes embeddings, the attention mask,
//! position ids and the past keys and values of every layer, and returns logits and the new
//! keys and values. radassist's own loop runs them: the prompt template with its `<image>` slot
//! expanded to one id per image feature (those embeddings replaced, in order, by the features),
//! several prompts in one batch (left-padded, positions from the mask), a KV cache (or, for
//! checking, recomputation from scratch), greedy decoding, and EOS and max-token stops.

use super::manifest::{Manifest, ReportSpec, Task};
use super::preprocess::{prepare, ImageSpec};
use super::session::{open_session, ProviderUsed, SessionSettings};
use super::InferenceError;
use crate::imaging::Radiograph;
use ndarray::{concatenate, s, Array2, Array3, Array4, ArrayD, Axis, Ix3};
use ort::session::Session;
use ort::value::{DynValue, Tensor, TensorRef};
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

fn run_error(e: impl std::fmt::Display) -> InferenceError {
    InferenceError::Run(e.to_string())
}

/// One prompt: the image and the clinical indication that fill the template.
pub struct ReportRequest<'a> {
    pub image: &'a Radiograph,
    pub indication: &'a str,
}

/// A generated draft: its token ids (EOS excluded) and text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GeneratedText {
    pub token_ids: Vec<i64>,
    pub text: String,
    /// Whether generation stopped at EOS (rather than at the token limit).
    pub stopped_at_eos: bool,
}

pub struct ReportModel {
    pub manifest: Manifest,
    pub folder: PathBuf,
    pub provider: ProviderUsed,
    spec: ReportSpec,
    image: ImageSpec,
    tokenizer: Tokenizer,
    vision: Session,
    embed: Session,
    decoder: Session,
}

/// The names a graph must have; the error names the first missing one.
fn require_names(pack: &str, file: &str, session: &Session, inputs: &[String], outputs: &[String]) -> Result<(), InferenceError> {
    for (kind, wanted, present) in [
        ("input", inputs, session.inputs().iter().map(|o| o.name().to_string()).collect::<Vec<_>>()),
        ("output", outputs, session.outputs().iter().map(|o| o.name().to_string()).collect::<Vec<_>>()),
    ] {
        if let Some(missing) = wanted.iter().find(|w| !present.contains(w)) {
            return Err(InferenceError::ManifestMismatch {
                pack: pack.to_string(),
                field: format!("report ({file})"),
                detail: format!("the graph has no {kind} {missing:?} (it has {present:?})"),
            });
        }
    }
    Ok(())
}

impl ReportModel {
    pub fn load(folder: &Path, settings: &SessionSettings) -> Result<ReportModel, InferenceError> {
        let pack_error = |reason: String| InferenceError::Pack { pack: folder.display().to_string(), reason };
        let manifest = Manifest::read(&folder.join("model.toml")).map_err(pack_error)?;
        if manifest.task != Task::Report {
            return Err(pack_error(format!("task is {:?}, not report", manifest.task)));
        }
        let spec = manifest.report.clone().expect("checked");
        let image = manifest.image.clone().expect("checked");
        let name = manifest.name.clone();
        let open = |file: &str| -> Result<(Session, ProviderUsed), InferenceError> {
            let path = folder.join(file);
            if !path.is_file() {
                return Err(InferenceError::Pack { pack: name.clone(), reason: format!("{} does not exist", path.display()) });
            }
            open_session(&path, settings)
        };
        let (vision, provider) = open(&spec.vision_encoder)?;
        let (embed, _) = open(&spec.embed_tokens)?;
        let (decoder, _) = open(&spec.decoder)?;
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        require_names(&name, &spec.vision_encoder, &vision, &[image.input.clone()], &strings(&["image_features"]))?;
        require_names(&name, &spec.embed_tokens, &embed, &strings(&["input_ids"]), &strings(&["inputs_embeds"]))?;
        let mut decoder_inputs = strings(&["inputs_embeds", "attention_mask", "position_ids"]);
        let mut decoder_outputs = strings(&["logits"]);
        for layer in 0..spec.layers {
            for kv in ["key", "value"] {
                decoder_inputs.push(format!("past_key_values.{layer}.{kv}"));
                decoder_outputs.push(format!("present.{layer}.{kv}"));
            }
        }
        require_names(&name, &spec.decoder, &decoder, &decoder_inputs, &decoder_outputs)?;
        let tokenizer = Tokenizer::from_file(folder.join(&spec.tokenizer))
            .map_err(|e| InferenceError::Pack { pack: name.clone(), reason: format!("report.tokenizer: {e}") })?;
        Ok(ReportModel { manifest, folder: folder.to_path_buf(), provider, spec, image, tokenizer, vision, embed, decoder })
    }

    /// The prompt's token ids: BOS, the image's ids, then the text after `<image>`.
    pub fn prompt_ids(&self, indication: &str) -> Result<Vec<i64>, InferenceError> {
        let (before, after) = self.spec.template.split_once("<image>").expect("checked");
        let encode = |text: &str| -> Result<Vec<i64>, InferenceError> {
            if text.is_empty() {
                return Ok(Vec::new());
            }
            let encoding = self.tokenizer.encode(text, false).map_err(run_error)?;
            Ok(encoding.get_ids().iter().map(|&id| i64::from(id)).collect())
        };
        let mut ids = match before.strip_prefix("<s>") {
            Some(rest) => [vec![self.spec.bos_id], encode(rest)?].concat(),
            None => encode(before)?,
        };
        ids.extend(std::iter::repeat_n(self.spec.image_token_id, self.spec.image_tokens));
        ids.extend(encode(&after.replace("{indication}", indication))?);
        Ok(ids)
    }

    fn embed_ids(&mut self, ids: &Array2<i64>) -> Result<Array3<f32>, InferenceError> {
        let outputs = self.embed.run(ort::inputs!["input_ids" => TensorRef::from_array_view(ids.view()).map_err(run_error)?]).map_err(run_error)?;
        let embeds = outputs["inputs_embeds"].try_extract_array::<f32>().map_err(run_error)?;
        embeds.to_owned().into_dimensionality::<Ix3>().map_err(run_error)
    }

    /// The prompts' embeddings [N, L, hidden] with image features in place, and the mask.
    fn prompt_embeddings(&mut self, requests: &[ReportRequest]) -> Result<(Array3<f32>, Array2<i64>), InferenceError> {
        let prompts = requests.iter().map(|r| self.prompt_ids(r.indication)).collect::<Result<Vec<_>, _>>()?;
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let n = prompts.len();
        let mut ids = Array2::from_elem((n, longest), self.spec.pad_id);
        let mut mask = Array2::<i64>::zeros((n, longest));
        for (row, prompt) in prompts.iter().enumerate() {
            let start = longest - prompt.len(); // left padding
            for (j, &id) in prompt.iter().enumerate() {
                ids[(row, start + j)] = id;
                mask[(row, start + j)] = 1;
            }
        }
        let (c, h, w) = (self.image.channels, self.image.rows, self.image.columns);
        let mut pixels = Array4::<f32>::zeros((n, c, h, w));
        for (mut slot, request) in pixels.outer_iter_mut().zip(requests) {
            slot.assign(&prepare(request.image, &self.image).tensor);
        }
        let features = {
            let input = TensorRef::from_array_view(pixels.view()).map_err(run_error)?;
            let outputs = self.vision.run(ort::inputs![self.image.input.as_str() => input]).map_err(run_error)?;
            outputs["image_features"].try_extract_array::<f32>().map_err(run_error)?.to_owned().into_dimensionality::<Ix3>().map_err(run_error)?
        };
        let mut embeds = self.embed_ids(&ids)?;
        for row in 0..n {
            let slots: Vec<usize> = (0..longest).filter(|&j| ids[(row, j)] == self.spec.image_token_id).collect();
            if slots.len() != features.dim().1 {
                return Err(run_error(format!("the prompt has {} image slots, the vision encoder gave {} features", slots.len(), features.dim().1)));
            }
            for (k, &j) in slots.iter().enumerate() {
                embeds.slice_mut(s![row, j, ..]).assign(&features.slice(s![row, k, ..]));
            }
        }
        Ok((embeds, mask))
    }

    /// Runs the decoder; returns the last position's logits [N, V] and the new keys and values.
    fn decode(&mut self, embeds: &Array3<f32>, mask: &Array2<i64>, past: &[ArrayD<f32>]) -> Result<(Array2<f32>, Vec<ArrayD<f32>>), InferenceError> {
        let (n, steps, _) = embeds.dim();
        // Positions count only real tokens: cumsum(mask) - 1, padding at 1 (as transformers does).
        let total = mask.ncols();
        let mut positions = Array2::<i64>::zeros((n, steps));
        for row in 0..n {
            let mut count = 0;
            for j in 0..total {
                count += mask[(row, j)];
                if j >= total - steps {
                    positions[(row, j - (total - steps))] = if mask[(row, j)] == 0 { 1 } else { count - 1 };
                }
            }
        }
        let mut inputs: Vec<(String, DynValue)> = vec![
            ("inputs_embeds".into(), Tensor::from_array(embeds.clone()).map_err(run_error)?.into_dyn()),
            ("attention_mask".into(), Tensor::from_array(mask.clone()).map_err(run_error)?.into_dyn()),
            ("position_ids".into(), Tensor::from_array(positions).map_err(run_error)?.into_dyn()),
        ];
        for (i, tensor) in past.iter().enumerate() {
            let name = format!("past_key_values.{}.{}", i / 2, if i % 2 == 0 { "key" } else { "value" });
            inputs.push((name, Tensor::from_array(tensor.clone()).map_err(run_error)?.into_dyn()));
        }
        let outputs = self.decoder.run(inputs).map_err(run_error)?;
        let logits = outputs["logits"].try_extract_array::<f32>().map_err(run_error)?;
        let last = logits.index_axis(Axis(1), steps - 1).to_owned().into_dimensionality::<ndarray::Ix2>().map_err(run_error)?;
        let mut present = Vec::with_capacity(past.len());
        for i in 0..past.len() {
            let name = format!("present.{}.{}", i / 2, if i % 2 == 0 { "key" } else { "value" });
            present.push(outputs[name.as_str()].try_extract_array::<f32>().map_err(run_error)?.to_owned());
        }
        Ok((last, present))
    }

    /// Greedy decoding of every prompt in one batch. With `use_cache`, each step feeds only the
    /// new token and the cached keys and values; without it, the whole sequence is recomputed
    /// every step (slower; the two must agree).
    pub fn generate_greedy(&mut self, requests: &[ReportRequest], use_cache: bool) -> Result<Vec<GeneratedText>, InferenceError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let (prompt_embeds, mut mask) = self.prompt_embeddings(requests)?;
        let n = requests.len();
        let (kv_heads, head_dim, layers) = (self.spec.kv_heads, self.spec.head_dim, self.spec.layers);
        // Keys and values are [N, kv_heads, length, head_dim]; the first step has length 0.
        let empty_past = || -> Vec<ArrayD<f32>> {
            (0..2 * layers).map(|_| ArrayD::<f32>::zeros(ndarray::IxDyn(&[n, kv_heads, 0, head_dim]))).collect()
        };
        let mut past = empty_past();
        let mut all_embeds = prompt_embeds.clone();
        let mut step_embeds = prompt_embeds;
        let mut generated: Vec<Vec<i64>> = vec![Vec::new(); n];
        let mut finished = vec![false; n];
        for _ in 0..self.spec.max_new_tokens {
            let (logits, present) = if use_cache {
                self.decode(&step_embeds, &mask, &past)?
            } else {
                self.decode(&all_embeds, &mask, &empty_past())?
            };
            past = present;
            let mut next = Array2::<i64>::from_elem((n, 1), self.spec.pad_id);
            for row in 0..n {
                if finished[row] {
                    continue;
                }
                // The first of equal maxima, as torch.argmax picks.
                let (best, _) = logits.row(row).iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) });
                let token = best as i64;
                next[(row, 0)] = token;
                generated[row].push(token);
                if self.spec.eos_ids.contains(&token) {
                    finished[row] = true;
                }
            }
            if finished.iter().all(|&f| f) {
                break;
            }
            step_embeds = self.embed_ids(&next)?;
            all_embeds = concatenate(Axis(1), &[all_embeds.view(), step_embeds.view()]).map_err(run_error)?;
            mask = concatenate(Axis(1), &[mask.view(), Array2::<i64>::ones((n, 1)).view()]).map_err(run_error)?;
        }
        Ok(generated.into_iter().map(|ids| self.finish(ids)).collect())
    }

    fn finish(&self, mut ids: Vec<i64>) -> GeneratedText {
        let stopped_at_eos = ids.last().is_some_and(|t| self.spec.eos_ids.contains(t));
        if stopped_at_eos {
            ids.pop();
        }
        let text = self.tokenizer.decode(&ids.iter().map(|&i| i as u32).collect::<Vec<_>>(), true).unwrap_or_default();
        GeneratedText { token_ids: ids, text, stopped_at_eos }
    }
}


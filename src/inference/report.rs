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
use super::session::{ProviderUsed, SessionSettings};
use super::{open_pack_graph, InferenceError};
use crate::imaging::Radiograph;
use ndarray::{concatenate, s, Array2, Array3, Array4, ArrayD, Axis, Ix3};
use ort::session::Session;
use ort::session::SessionInputValue;
use ort::value::TensorRef;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

fn run_error(e: impl std::fmt::Display) -> InferenceError {
    InferenceError::Run(e.to_string())
}

/// One prompt: the image and the clinical indication that fill the template, and the prior
/// study when there is one.
pub struct ReportRequest<'a> {
    pub image: &'a Radiograph,
    pub indication: &'a str,
    pub prior: Option<PriorStudy<'a>>,
}

/// A prior study of the patient: its frontal image and its signed report.
#[derive(Clone, Copy)]
pub struct PriorStudy<'a> {
    pub image: &'a Radiograph,
    pub report: &'a str,
}

/// A generated draft: its token ids (EOS excluded) and text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GeneratedText {
    pub token_ids: Vec<i64>,
    pub text: String,
    /// Whether generation stopped at EOS (rather than at the token limit).
    pub stopped_at_eos: bool,
}

/// Prompts ready for the decoder: embeddings with image features in place, the attention
/// mask (0 for left padding), and token types (1 for image tokens).
struct Prompts {
    embeds: Array3<f32>,
    mask: Array2<i64>,
    types: Array2<i64>,
}

pub struct ReportModel {
    pub manifest: Manifest,
    pub folder: PathBuf,
    pub provider: ProviderUsed,
    /// The SHA-256 of the pack's files ([`super::digest::pack_digest`]).
    pub digest: String,
    spec: ReportSpec,
    image: ImageSpec,
    tokenizer: Tokenizer,
    vision: Session,
    embed: Session,
    decoder: Session,
    /// Whether the decoder takes `token_type_ids` (Gemma 3's image attention).
    takes_token_types: bool,
}

/// An empty KV cache for `rows` sequences: keys and values of every layer,
/// [rows, kv_heads, 0, head_dim] (the first step has no past).
fn empty_cache(spec: &ReportSpec, rows: usize) -> Vec<ArrayD<f32>> {
    (0..2 * spec.layers)
        .map(|_| ArrayD::<f32>::zeros(ndarray::IxDyn(&[rows, spec.kv_heads, 0, spec.head_dim])))
        .collect()
}

/// The names a graph must have; the error names the first missing one.
fn require_names(
    pack: &str,
    file: &str,
    session: &Session,
    inputs: &[String],
    outputs: &[String],
) -> Result<(), InferenceError> {
    for (kind, wanted, present) in [
        (
            "input",
            inputs,
            session
                .inputs()
                .iter()
                .map(|o| o.name().to_string())
                .collect::<Vec<_>>(),
        ),
        (
            "output",
            outputs,
            session
                .outputs()
                .iter()
                .map(|o| o.name().to_string())
                .collect::<Vec<_>>(),
        ),
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
        let pack_error = |reason: String| InferenceError::Pack {
            pack: folder.display().to_string(),
            reason,
        };
        let manifest = Manifest::read(&folder.join("model.toml")).map_err(pack_error)?;
        if manifest.task != Task::Report {
            return Err(pack_error(format!(
                "task is {:?}, not report",
                manifest.task
            )));
        }
        let spec = manifest.report.clone().expect("checked");
        let image = manifest.image.clone().expect("checked");
        let name = manifest.name.clone();
        let open = |field: &str, file: &str| open_pack_graph(&name, folder, field, file, settings);
        let (vision, provider) = open("report.vision_encoder", &spec.vision_encoder)?;
        let (embed, _) = open("report.embed_tokens", &spec.embed_tokens)?;
        let (decoder, _) = open("report.decoder", &spec.decoder)?;
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        require_names(
            &name,
            &spec.vision_encoder,
            &vision,
            std::slice::from_ref(&image.input),
            &strings(&["image_features"]),
        )?;
        require_names(
            &name,
            &spec.embed_tokens,
            &embed,
            &strings(&["input_ids"]),
            &strings(&["inputs_embeds"]),
        )?;
        let mut decoder_inputs = strings(&["inputs_embeds", "attention_mask", "position_ids"]);
        let mut decoder_outputs = strings(&["logits"]);
        for layer in 0..spec.layers {
            for kv in ["key", "value"] {
                decoder_inputs.push(format!("past_key_values.{layer}.{kv}"));
                decoder_outputs.push(format!("present.{layer}.{kv}"));
            }
        }
        require_names(
            &name,
            &spec.decoder,
            &decoder,
            &decoder_inputs,
            &decoder_outputs,
        )?;
        let tokenizer = Tokenizer::from_file(folder.join(&spec.tokenizer)).map_err(|e| {
            InferenceError::Pack {
                pack: name.clone(),
                reason: format!("report.tokenizer: {e}"),
            }
        })?;
        let takes_token_types = decoder
            .inputs()
            .iter()
            .any(|i| i.name() == "token_type_ids");
        let digest = super::digest::pack_digest(folder)
            .map_err(|e| pack_error(format!("reading its files for their digest: {e}")))?;
        Ok(ReportModel {
            manifest,
            folder: folder.to_path_buf(),
            provider,
            digest,
            spec,
            image,
            tokenizer,
            vision,
            embed,
            decoder,
            takes_token_types,
        })
    }

    /// Runs the three graphs once (a blank image, one new token), so the first real request does
    /// not pay for ONNX Runtime's lazy initialisation; returns the time it took.
    /// Generates at most `tokens` new tokens (the manifest's max_new_tokens otherwise).
    pub fn set_max_new_tokens(&mut self, tokens: usize) {
        self.spec.max_new_tokens = tokens.max(1);
    }

    pub fn warm_up(&mut self) -> Result<std::time::Duration, InferenceError> {
        let started = std::time::Instant::now();
        let prompt = self.prompt_ids("", None)?;
        let pixels =
            Array4::<f32>::zeros((1, self.image.channels, self.image.rows, self.image.columns));
        let prompts = self.prompt_embeddings_from(&[prompt], &pixels)?;
        let past = empty_cache(&self.spec, 1);
        self.decode(&prompts.embeds, &prompts.mask, &prompts.types, &past)?;
        Ok(started.elapsed())
    }

    /// The prompt's token ids: the template filled in, `<s>` as the BOS id, and each image slot
    /// (`<image>`, then `<prior_image>` when there is a prior) as `image_tokens` image ids.
    /// Text between slots is tokenised piece by piece.
    pub fn prompt_ids(
        &self,
        indication: &str,
        prior_report: Option<&str>,
    ) -> Result<Vec<i64>, InferenceError> {
        let prior = match (prior_report, &self.spec.prior_template) {
            (Some(report), Some(template)) => template.replace("{prior_report}", report),
            (Some(_), None) => {
                return Err(run_error(
                    "this pack's template has no place for a prior study",
                ))
            }
            (None, _) => String::new(),
        };
        let filled = self
            .spec
            .template
            .replace("{prior}", &prior)
            .replace("{indication}", indication);
        let mut ids = Vec::new();
        let mut rest = filled.as_str();
        if let Some(after) = rest.strip_prefix("<s>") {
            ids.push(self.spec.bos_id);
            rest = after;
        }
        loop {
            let slot = ["<image>", "<prior_image>"]
                .iter()
                .filter_map(|tag| rest.find(tag).map(|at| (at, tag.len())))
                .min();
            let (text, next) = match slot {
                Some((at, len)) => (&rest[..at], Some(&rest[at + len..])),
                None => (rest, None),
            };
            if !text.is_empty() {
                let encoding = self.tokenizer.encode(text, false).map_err(run_error)?;
                ids.extend(encoding.get_ids().iter().map(|&id| i64::from(id)));
            }
            match next {
                Some(after) => {
                    ids.extend(std::iter::repeat_n(
                        self.spec.image_token_id,
                        self.spec.image_tokens,
                    ));
                    rest = after;
                }
                None => return Ok(ids),
            }
        }
    }

    fn embed_ids(&mut self, ids: &Array2<i64>) -> Result<Array3<f32>, InferenceError> {
        let outputs = self.embed.run(ort::inputs!["input_ids" => TensorRef::from_array_view(ids.view()).map_err(run_error)?]).map_err(run_error)?;
        let embeds = outputs["inputs_embeds"]
            .try_extract_array::<f32>()
            .map_err(run_error)?;
        embeds
            .to_owned()
            .into_dimensionality::<Ix3>()
            .map_err(run_error)
    }

    /// The prompts' embeddings [N, L, hidden] with image features in place, the attention mask,
    /// and the token types (1 for image tokens).
    fn prompt_embeddings(&mut self, requests: &[ReportRequest]) -> Result<Prompts, InferenceError> {
        let prompts = requests
            .iter()
            .map(|r| self.prompt_ids(r.indication, r.prior.map(|p| p.report)))
            .collect::<Result<Vec<_>, _>>()?;
        // Every image in prompt order: each request's image, then its prior's.
        let images: Vec<&Radiograph> = requests
            .iter()
            .flat_map(|r| std::iter::once(r.image).chain(r.prior.map(|p| p.image)))
            .collect();
        let (c, h, w) = (self.image.channels, self.image.rows, self.image.columns);
        let mut pixels = Array4::<f32>::zeros((images.len(), c, h, w));
        for (mut slot, image) in pixels.outer_iter_mut().zip(&images) {
            slot.assign(&prepare(image, &self.image).tensor);
        }
        self.prompt_embeddings_from(&prompts, &pixels)
    }

    /// Left-pads the prompts, embeds them, and puts the images' features in the image slots, in
    /// order (the images of all prompts, in the order their slots appear).
    fn prompt_embeddings_from(
        &mut self,
        prompts: &[Vec<i64>],
        pixels: &Array4<f32>,
    ) -> Result<Prompts, InferenceError> {
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
        let features = {
            let input = TensorRef::from_array_view(pixels.view()).map_err(run_error)?;
            let outputs = self
                .vision
                .run(ort::inputs![self.image.input.as_str() => input])
                .map_err(run_error)?;
            outputs["image_features"]
                .try_extract_array::<f32>()
                .map_err(run_error)?
                .to_owned()
                .into_dimensionality::<Ix3>()
                .map_err(run_error)?
        };
        let mut embeds = self.embed_ids(&ids)?;
        let (images, per_image, _) = features.dim();
        let mut feature_rows = (0..images).flat_map(|i| (0..per_image).map(move |k| (i, k)));
        for row in 0..n {
            for j in (0..longest).filter(|&j| ids[(row, j)] == self.spec.image_token_id) {
                let (i, k) = feature_rows
                    .next()
                    .ok_or_else(|| run_error("more image slots than image features"))?;
                embeds
                    .slice_mut(s![row, j, ..])
                    .assign(&features.slice(s![i, k, ..]));
            }
        }
        if feature_rows.next().is_some() {
            return Err(run_error("more image features than image slots"));
        }
        let types = ids.mapv(|id| i64::from(id == self.spec.image_token_id));
        Ok(Prompts {
            embeds,
            mask,
            types,
        })
    }

    /// Runs the decoder; returns the last position's logits [N, V] and the new keys and values.
    /// `types` marks the chunk's image tokens (1), for decoders that take `token_type_ids`
    /// (Gemma 3 attends within an image in both directions).
    fn decode(
        &mut self,
        embeds: &Array3<f32>,
        mask: &Array2<i64>,
        types: &Array2<i64>,
        past: &[ArrayD<f32>],
    ) -> Result<(Array2<f32>, Vec<ArrayD<f32>>), InferenceError> {
        let (n, steps, _) = embeds.dim();
        // Positions count only real tokens: cumsum(mask) - 1, padding at 1 (as transformers does).
        let total = mask.ncols();
        let mut positions = Array2::<i64>::zeros((n, steps));
        for row in 0..n {
            let mut count = 0;
            for j in 0..total {
                count += mask[(row, j)];
                if j >= total - steps {
                    positions[(row, j - (total - steps))] =
                        if mask[(row, j)] == 0 { 1 } else { count - 1 };
                }
            }
        }
        // Views, not copies (the cache grows every step); copied only if not row-major.
        let embeds = embeds.as_standard_layout();
        let mask = mask.as_standard_layout();
        let past: Vec<_> = past.iter().map(|t| t.as_standard_layout()).collect();
        let mut inputs: Vec<(Cow<str>, SessionInputValue)> = vec![
            (
                "inputs_embeds".into(),
                TensorRef::from_array_view(embeds.view())
                    .map_err(run_error)?
                    .into(),
            ),
            (
                "attention_mask".into(),
                TensorRef::from_array_view(mask.view())
                    .map_err(run_error)?
                    .into(),
            ),
            (
                "position_ids".into(),
                TensorRef::from_array_view(positions.view())
                    .map_err(run_error)?
                    .into(),
            ),
        ];
        if self.takes_token_types {
            inputs.push((
                "token_type_ids".into(),
                TensorRef::from_array_view(types.view())
                    .map_err(run_error)?
                    .into(),
            ));
        }
        for (i, tensor) in past.iter().enumerate() {
            let name = format!(
                "past_key_values.{}.{}",
                i / 2,
                if i % 2 == 0 { "key" } else { "value" }
            );
            inputs.push((
                name.into(),
                TensorRef::from_array_view(tensor.view())
                    .map_err(run_error)?
                    .into(),
            ));
        }
        let outputs = self.decoder.run(inputs).map_err(run_error)?;
        let logits = outputs["logits"]
            .try_extract_array::<f32>()
            .map_err(run_error)?;
        let last = logits
            .index_axis(Axis(1), steps - 1)
            .to_owned()
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(run_error)?;
        let mut present = Vec::with_capacity(past.len());
        for i in 0..past.len() {
            let name = format!(
                "present.{}.{}",
                i / 2,
                if i % 2 == 0 { "key" } else { "value" }
            );
            present.push(
                outputs[name.as_str()]
                    .try_extract_array::<f32>()
                    .map_err(run_error)?
                    .to_owned(),
            );
        }
        Ok((last, present))
    }

    /// The logits that follow each prompt (the first step of generation), [N, vocabulary]: for
    /// checking an export against its source model.
    pub fn prompt_logits(
        &mut self,
        requests: &[ReportRequest],
    ) -> Result<Array2<f32>, InferenceError> {
        let prompts = self.prompt_embeddings(requests)?;
        let past = empty_cache(&self.spec, requests.len());
        Ok(self
            .decode(&prompts.embeds, &prompts.mask, &prompts.types, &past)?
            .0)
    }

    /// Greedy decoding of every prompt in one batch. With `use_cache`, each step feeds only the
    /// new token and the cached keys and values; without it, the whole sequence is recomputed
    /// every step (slower; the two must agree).
    pub fn generate_greedy(
        &mut self,
        requests: &[ReportRequest],
        use_cache: bool,
    ) -> Result<Vec<GeneratedText>, InferenceError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let Prompts {
            embeds: prompt_embeds,
            mut mask,
            types: prompt_types,
        } = self.prompt_embeddings(requests)?;
        let n = requests.len();
        let mut past = empty_cache(&self.spec, n);
        let mut all_embeds = prompt_embeds.clone();
        let mut step_embeds = prompt_embeds;
        // Generated tokens are text (type 0); only the prompt has image tokens.
        let mut all_types = prompt_types.clone();
        let mut step_types = prompt_types;
        let mut generated: Vec<Vec<i64>> = vec![Vec::new(); n];
        let mut finished = vec![false; n];
        for _ in 0..self.spec.max_new_tokens {
            let (logits, present) = if use_cache {
                self.decode(&step_embeds, &mask, &step_types, &past)?
            } else {
                self.decode(&all_embeds, &mask, &all_types, &empty_cache(&self.spec, n))?
            };
            past = present;
            let mut next = Array2::<i64>::from_elem((n, 1), self.spec.pad_id);
            for row in 0..n {
                if finished[row] {
                    continue;
                }
                // The first of equal maxima, as torch.argmax picks.
                let (best, _) = logits.row(row).iter().enumerate().fold(
                    (0, f32::NEG_INFINITY),
                    |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
                );
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
            all_embeds = concatenate(Axis(1), &[all_embeds.view(), step_embeds.view()])
                .map_err(run_error)?;
            step_types = Array2::zeros((n, 1));
            all_types =
                concatenate(Axis(1), &[all_types.view(), step_types.view()]).map_err(run_error)?;
            mask = concatenate(Axis(1), &[mask.view(), Array2::<i64>::ones((n, 1)).view()])
                .map_err(run_error)?;
        }
        Ok(generated.into_iter().map(|ids| self.finish(ids)).collect())
    }

    /// Beam search with `beams` beams per prompt, as transformers' generate() does it by default
    /// (length penalty 1, early_stopping False and its stopping heuristic, top 2 x beams
    /// candidates per step, finished hypotheses normalised by their generated length). Every
    /// prompt of the batch runs as `beams` rows of the decoder; the KV cache is reordered as
    /// beams are chosen.
    pub fn generate_beam(
        &mut self,
        requests: &[ReportRequest],
        beams: usize,
    ) -> Result<Vec<GeneratedText>, InferenceError> {
        const NEG: f32 = -1.0e9;
        let length_penalty = 1.0f32;
        if requests.is_empty() || beams == 0 {
            return Ok(Vec::new());
        }
        let prompt = self.prompt_embeddings(requests)?;
        let (prompt_embeds, prompt_mask) = (&prompt.embeds, &prompt.mask);
        let (items, prompt_len, hidden) = prompt_embeds.dim();
        let rows = items * beams;
        // Each prompt repeated `beams` times, as rows b * beams + k.
        let repeat = |i: usize| i / beams;
        let mut embeds = Array3::<f32>::zeros((rows, prompt_len, hidden));
        let mut mask = Array2::<i64>::zeros((rows, prompt_len));
        let mut types = Array2::<i64>::zeros((rows, prompt_len));
        for r in 0..rows {
            embeds
                .slice_mut(s![r, .., ..])
                .assign(&prompt_embeds.slice(s![repeat(r), .., ..]));
            mask.row_mut(r).assign(&prompt_mask.row(repeat(r)));
            types.row_mut(r).assign(&prompt.types.row(repeat(r)));
        }
        let mut past = empty_cache(&self.spec, rows);
        let max_new = self.spec.max_new_tokens;
        // Candidates kept per step: enough that `beams` of them can go on even if every EOS is among them.
        let keep = 2.max(1 + self.spec.eos_ids.len()) * beams;
        struct Item {
            running: Vec<Vec<i64>>,
            running_scores: Vec<f32>,
            finished: Vec<Vec<i64>>,
            finished_scores: Vec<f32>,
            finished_flags: Vec<bool>,
            improvable: bool,
        }
        let mut state: Vec<Item> = (0..items)
            .map(|_| Item {
                running: vec![Vec::new(); beams],
                running_scores: (0..beams).map(|k| if k == 0 { 0.0 } else { NEG }).collect(),
                finished: vec![Vec::new(); beams],
                finished_scores: vec![NEG; beams],
                finished_flags: vec![false; beams],
                improvable: true,
            })
            .collect();
        // Indices of the top `k` values, highest first (earlier index first on ties).
        let top = |values: &[f32], k: usize| -> Vec<usize> {
            let mut order: Vec<usize> = (0..values.len()).collect();
            order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
            order.truncate(k);
            order
        };
        for step in 0..max_new {
            let (logits, present) = self.decode(&embeds, &mask, &types, &past)?;
            let vocab = logits.ncols();
            let generated_len = (step + 1) as f32; // tokens generated once this step's is appended
            let at_max_length = step + 1 >= max_new;
            let mut next_tokens = Array2::<i64>::zeros((rows, 1));
            let mut source_rows = vec![0usize; rows];
            let mut all_candidates_stop = true;
            for (b, item) in state.iter_mut().enumerate() {
                // Accumulated log-probabilities of every (beam, token) continuation.
                let mut accumulated = Vec::with_capacity(beams * vocab);
                for k in 0..beams {
                    let row = logits.row(b * beams + k);
                    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    let log_sum = row.iter().map(|&v| (v - max).exp()).sum::<f32>().ln();
                    accumulated.extend(
                        row.iter()
                            .map(|&v| item.running_scores[k] + (v - max - log_sum)),
                    );
                }
                let candidates = top(&accumulated, keep);
                let stops: Vec<bool> = candidates
                    .iter()
                    .map(|&c| at_max_length || self.spec.eos_ids.contains(&((c % vocab) as i64)))
                    .collect();
                all_candidates_stop &= stops.iter().all(|&s| s);
                let sequence = |c: usize| -> Vec<i64> {
                    let mut seq = item.running[c / vocab].clone();
                    seq.push((c % vocab) as i64);
                    seq
                };
                // Finished hypotheses: the top `beams` candidates that stop, normalised by length.
                let mut merged_scores = item.finished_scores.clone();
                let mut merged_seqs = item.finished.clone();
                let mut merged_flags = item.finished_flags.clone();
                for (i, (&c, &stop)) in candidates.iter().zip(&stops).enumerate() {
                    let just_finished = stop && i < beams;
                    let mut score = accumulated[c] / generated_len.powf(length_penalty);
                    if !item.improvable {
                        score += NEG;
                    }
                    if !just_finished {
                        score += NEG;
                    }
                    merged_scores.push(score);
                    merged_seqs.push(sequence(c));
                    merged_flags.push(just_finished);
                }
                let chosen = top(&merged_scores, beams);
                item.finished = chosen.iter().map(|&i| merged_seqs[i].clone()).collect();
                item.finished_scores = chosen.iter().map(|&i| merged_scores[i]).collect();
                item.finished_flags = chosen.iter().map(|&i| merged_flags[i]).collect();
                // Running beams: the best candidates that do not stop.
                let running_scores: Vec<f32> = candidates
                    .iter()
                    .zip(&stops)
                    .map(|(&c, &stop)| accumulated[c] + if stop { NEG } else { 0.0 })
                    .collect();
                let next = top(&running_scores, beams);
                item.running = next.iter().map(|&i| sequence(candidates[i])).collect();
                item.running_scores = next.iter().map(|&i| running_scores[i]).collect();
                for (k, &i) in next.iter().enumerate() {
                    source_rows[b * beams + k] = b * beams + candidates[i] / vocab;
                    next_tokens[(b * beams + k, 0)] = (candidates[i] % vocab) as i64;
                }
                // transformers' heuristic (early_stopping False): stop improving once the best
                // running beam, at its current length, cannot beat the worst finished one.
                let best_running = item.running_scores[0] / generated_len.powf(length_penalty);
                let worst_finished = item
                    .finished_scores
                    .iter()
                    .fold(f32::INFINITY, |m, &v| m.min(v));
                item.improvable &= item
                    .finished_flags
                    .iter()
                    .any(|&finished| best_running > if finished { worst_finished } else { NEG });
            }
            if all_candidates_stop || !state.iter().any(|item| item.improvable) {
                break;
            }
            // Reorder the cache to the chosen beams, then feed their new tokens.
            past = present
                .into_iter()
                .map(|tensor| tensor.select(Axis(0), &source_rows))
                .collect();
            mask = mask.select(Axis(0), &source_rows);
            mask = concatenate(
                Axis(1),
                &[mask.view(), Array2::<i64>::ones((rows, 1)).view()],
            )
            .map_err(run_error)?;
            embeds = self.embed_ids(&next_tokens)?;
            types = Array2::zeros((rows, 1));
        }
        Ok(state
            .into_iter()
            .map(|item| {
                let mut best = item.finished.into_iter().next().unwrap_or_default();
                if let Some(end) = best.iter().position(|t| self.spec.eos_ids.contains(t)) {
                    best.truncate(end + 1);
                }
                self.finish(best)
            })
            .collect())
    }

    fn finish(&self, mut ids: Vec<i64>) -> GeneratedText {
        let stopped_at_eos = ids.last().is_some_and(|t| self.spec.eos_ids.contains(t));
        if stopped_at_eos {
            ids.pop();
        }
        let text = self
            .tokenizer
            .decode(&ids.iter().map(|&i| i as u32).collect::<Vec<_>>(), true)
            .unwrap_or_default();
        GeneratedText {
            token_ids: ids,
            text,
            stopped_at_eos,
        }
    }
}

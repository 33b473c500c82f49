//! The `text-embedding` task: sentences to unit vectors (all-MiniLM-L6-v2 by default).
//!
//! Text is tokenised with the pack's tokenizer.json (the `tokenizers` crate, the same ids as the
//! Python library), run as one padded batch, mean-pooled over the attention mask and
//! L2-normalised, as sentence-transformers does. Used to match the sentences of a draft with a
//! final read or a prior report.

use super::manifest::{Task, TextSpec};
use super::{InferenceError, ModelPack};
use ndarray::{Array2, Axis};
use ort::value::TensorRef;
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

pub struct TextEmbedder {
    pack: ModelPack,
    tokenizer: Tokenizer,
    spec: TextSpec,
}

impl TextEmbedder {
    pub fn new(pack: ModelPack) -> Result<TextEmbedder, InferenceError> {
        let pack_error = |reason: String| InferenceError::Pack {
            pack: pack.manifest.name.clone(),
            reason,
        };
        if pack.manifest.task != Task::TextEmbedding {
            return Err(pack_error(format!(
                "task is {:?}, not text-embedding",
                pack.manifest.task
            )));
        }
        let spec = pack
            .manifest
            .text
            .clone()
            .expect("checked when the manifest was read");
        let mut tokenizer = Tokenizer::from_file(pack.folder.join(&spec.tokenizer))
            .map_err(|e| pack_error(format!("text.tokenizer {}: {e}", spec.tokenizer)))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: spec.max_tokens,
                ..Default::default()
            }))
            .map_err(|e| pack_error(e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        Ok(TextEmbedder {
            pack,
            tokenizer,
            spec,
        })
    }

    pub fn pack(&self) -> &ModelPack {
        &self.pack
    }

    /// One embedding per sentence, rows of the result, in order.
    pub fn embed(&mut self, sentences: &[&str]) -> Result<Array2<f32>, InferenceError> {
        if sentences.is_empty() {
            return Ok(Array2::zeros((0, 0)));
        }
        let encodings = self
            .tokenizer
            .encode_batch(sentences.to_vec(), true)
            .map_err(|e| InferenceError::Run(format!("tokenising: {e}")))?;
        let (batch, length) = (encodings.len(), encodings[0].get_ids().len());
        let column = |get: fn(&tokenizers::Encoding) -> &[u32]| {
            let values = encodings
                .iter()
                .flat_map(|e| get(e).iter().map(|&v| i64::from(v)))
                .collect();
            Array2::from_shape_vec((batch, length), values).expect("padded to one length")
        };
        let ids = column(|e| e.get_ids());
        let mask = column(|e| e.get_attention_mask());
        let types = column(|e| e.get_type_ids());
        let run = |e: ort::Error| InferenceError::Run(e.to_string());
        let inputs = ort::inputs![
            "input_ids" => TensorRef::from_array_view(ids.view()).map_err(run)?,
            "attention_mask" => TensorRef::from_array_view(mask.view()).map_err(run)?,
            "token_type_ids" => TensorRef::from_array_view(types.view()).map_err(run)?,
        ];
        let output_name = self.pack.manifest.graph().outputs[0].name.clone();
        let outputs = self.pack.session.run(inputs).map_err(run)?;
        let hidden = outputs[output_name.as_str()]
            .try_extract_array::<f32>()
            .map_err(run)?;
        let hidden = hidden
            .into_dimensionality::<ndarray::Ix3>()
            .map_err(|e| InferenceError::Run(e.to_string()))?;
        // Mean over the tokens the mask keeps, then unit length.
        let mask = mask.mapv(|m| m as f32);
        let summed = (&hidden * &mask.view().insert_axis(Axis(2))).sum_axis(Axis(1));
        let counts = mask
            .sum_axis(Axis(1))
            .mapv(|c| c.max(1e-9))
            .insert_axis(Axis(1));
        let mut pooled = summed / counts;
        if self.spec.normalize {
            for mut row in pooled.axis_iter_mut(Axis(0)) {
                let norm = row.dot(&row).sqrt().max(1e-12);
                row /= norm;
            }
        }
        Ok(pooled)
    }
}

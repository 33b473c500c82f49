//! A report pack as the writer of drafts: the vision-language model behind one batching thread,
//! so that the prompts of studies drafted at the same time are generated as one batch.
//!
//! The CLI (`radassist draft --report-pack`) and the service's workers both write through
//! [`ReportWriter`], with the same [`GenerationSettings`], so the service's text for a study
//! is the CLI's for the same inputs. Greedy decoding with `beams = 1`, beam search otherwise.

use crate::analysis::{BatchObserver, ModelUsed};
use crate::imaging::Radiograph;
use crate::inference::batcher::{Batcher, BatchingConfig};
use crate::inference::report::{GeneratedText, PriorStudy, ReportModel, ReportRequest};
use crate::inference::session::{ProviderUsed, SessionSettings};
use crate::inference::InferenceError;
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;

/// How drafts are generated (`[analysis.generation]`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerationSettings {
    /// 1: greedy decoding; more: beam search with this many beams per prompt.
    pub beams: usize,
    /// At most this many new tokens (0: the pack's max_new_tokens).
    pub max_new_tokens: usize,
}

impl Default for GenerationSettings {
    fn default() -> Self {
        GenerationSettings {
            beams: 1,
            max_new_tokens: 0,
        }
    }
}

/// One draft to write: the current frontal image, the indication, and the prior image with
/// its signed report when there is one.
pub struct WriterRequest {
    pub image: Arc<Radiograph>,
    pub indication: String,
    pub prior: Option<(Arc<Radiograph>, String)>,
}

/// The report pack, loaded once; clones share its batching thread.
#[derive(Clone)]
pub struct ReportWriter {
    batcher: Batcher<WriterRequest, GeneratedText>,
    model: ModelUsed,
    provider: ProviderUsed,
}

impl ReportWriter {
    pub fn load(
        folder: &Path,
        settings: &SessionSettings,
        generation: GenerationSettings,
        batching: BatchingConfig,
        observer: Option<BatchObserver>,
    ) -> Result<ReportWriter, InferenceError> {
        let mut model = ReportModel::load(folder, settings)?;
        if generation.max_new_tokens > 0 {
            model.set_max_new_tokens(generation.max_new_tokens);
        }
        let m = &model.manifest;
        let used = ModelUsed {
            task: "report".into(),
            name: m.name.clone(),
            version: m.version.clone(),
            test_model: m.test_model,
            digest: model.digest.clone(),
        };
        let provider = model.provider;
        let name = format!("report:{}", used.name);
        let beams = generation.beams.max(1);
        let batcher = Batcher::spawn_observed(
            &name,
            batching,
            observer,
            move |batch: Vec<WriterRequest>| {
                let requests: Vec<ReportRequest> = batch
                    .iter()
                    .map(|r| ReportRequest {
                        image: &r.image,
                        indication: &r.indication,
                        prior: r.prior.as_ref().map(|(image, report)| PriorStudy {
                            image: image.as_ref(),
                            report,
                        }),
                    })
                    .collect();
                if beams == 1 {
                    model.generate_greedy(&requests, true)
                } else {
                    model.generate_beam(&requests, beams)
                }
            },
        );
        Ok(ReportWriter {
            batcher,
            model: used,
            provider,
        })
    }

    /// Writes one draft's text (waits for its batch).
    pub fn write(&self, request: WriterRequest) -> Result<GeneratedText, InferenceError> {
        self.batcher.submit(request)
    }

    /// The pack, as the draft names it.
    pub fn model(&self) -> &ModelUsed {
        &self.model
    }

    pub fn provider(&self) -> ProviderUsed {
        self.provider
    }
}

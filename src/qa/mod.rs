//! QA: the model's drafts against the radiologists' signed reads.
//!
//! Per study ([`compare_study`]): both texts labeled for the 14 CheXpert observations by the
//! [`crate::labeler`], the label of each observation in both, the device verdicts of the draft
//! against the radiologist's, the word-level edit distance (how much the radiologist changed),
//! and, with the MiniLM text model, which sentences of the final read have a match in the
//! draft and the other way round. Over many studies ([`Agreement`]): per observation, the 2x2
//! table of draft against final read (the final read is the reference), sensitivity, positive
//! predictive value and F1, each with a 95 % interval, and Cohen's kappa with its interval;
//! grouped by model version or by month so drift shows.
//!
//! Uncertain labels are the awkward case: by default they count as positive (the CheXpert
//! "U-Ones" policy, since a radiologist who writes "possible pneumonia" wants it flagged);
//! `UncertainPolicy` makes them negative or leaves those studies out of that observation.

use crate::inference::text::TextEmbedder;
use crate::inference::InferenceError;
use crate::labeler::{Label, Labeler, Observation};
use crate::sentences::split_sentences;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What an uncertain label counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum UncertainPolicy {
    Positive,
    Negative,
    Exclude,
}

/// One study's draft and signed read, as `qa compare` reads them (one JSON line each).
#[derive(Debug, Clone, Deserialize)]
pub struct StudyPair {
    pub id: serde_json::Value,
    pub draft: String,
    #[serde(rename = "final")]
    pub final_read: String,
    /// The model version that wrote the draft (for grouping).
    #[serde(default)]
    pub model_version: Option<String>,
    /// The study or signing date, YYYY-MM-DD or YYYYMMDD (for grouping by month).
    #[serde(default)]
    pub date: Option<String>,
    /// Device verdicts: the draft's and the radiologist's (device name -> verdict).
    #[serde(default)]
    pub draft_devices: BTreeMap<String, String>,
    #[serde(default)]
    pub final_devices: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObservationAgreement {
    pub draft: Label,
    #[serde(rename = "final")]
    pub final_read: Label,
    pub agree: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceAgreement {
    pub device: String,
    pub draft: Option<String>,
    #[serde(rename = "final")]
    pub final_read: Option<String>,
    pub agree: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SentenceMatches {
    /// Sentences of the final read with a draft sentence at cosine >= the threshold.
    pub final_matched: usize,
    pub final_sentences: usize,
    /// Sentences of the draft with a final-read sentence at cosine >= the threshold.
    pub draft_matched: usize,
    pub draft_sentences: usize,
    pub threshold: f32,
}

/// One study's comparison (kept as JSON by the service, computed once when a read is signed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudyComparison {
    pub id: serde_json::Value,
    pub labels: BTreeMap<Observation, ObservationAgreement>,
    pub devices: Vec<DeviceAgreement>,
    /// Word-level Levenshtein distance from draft to final read, and that over the longer
    /// text's word count (0: unchanged, 1: rewritten).
    pub edit_distance: usize,
    pub edit_fraction: f64,
    pub sentences: Option<SentenceMatches>,
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Levenshtein distance over words (insertions, deletions, substitutions of one word).
pub fn word_edit_distance(a: &str, b: &str) -> (usize, f64) {
    let (a, b) = (words(a), words(b));
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, wa) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, wb) in b.iter().enumerate() {
            current[j + 1] = (previous[j] + usize::from(wa != wb))
                .min(previous[j + 1] + 1)
                .min(current[j] + 1);
        }
        previous = current;
    }
    let distance = previous[b.len()];
    let longest = a.len().max(b.len());
    (
        distance,
        if longest == 0 {
            0.0
        } else {
            distance as f64 / longest as f64
        },
    )
}

/// Cosine at which a draft sentence and a final-read sentence say the same thing.
pub const SENTENCE_MATCH: f32 = 0.6;

fn sentence_matches(
    embedder: &mut TextEmbedder,
    draft: &str,
    final_read: &str,
) -> Result<SentenceMatches, InferenceError> {
    let (d, f) = (split_sentences(draft), split_sentences(final_read));
    let mut result = SentenceMatches {
        final_matched: 0,
        final_sentences: f.len(),
        draft_matched: 0,
        draft_sentences: d.len(),
        threshold: SENTENCE_MATCH,
    };
    if d.is_empty() || f.is_empty() {
        return Ok(result);
    }
    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let (ed, ef) = (embedder.embed(&refs(&d))?, embedder.embed(&refs(&f))?);
    let similarity = ef.dot(&ed.t());
    result.final_matched = similarity
        .rows()
        .into_iter()
        .filter(|r| r.iter().any(|&s| s >= SENTENCE_MATCH))
        .count();
    result.draft_matched = similarity
        .columns()
        .into_iter()
        .filter(|c| c.iter().any(|&s| s >= SENTENCE_MATCH))
        .count();
    Ok(result)
}

/// Compares one study's draft with its signed read.
pub fn compare_study(
    labeler: &Labeler,
    pair: &StudyPair,
    embedder: Option<&mut TextEmbedder>,
) -> Result<StudyComparison, InferenceError> {
    let (draft, final_read) = (labeler.label(&pair.draft), labeler.label(&pair.final_read));
    let labels = Observation::ALL
        .into_iter()
        .map(|o| {
            let (d, f) = (draft.get(o), final_read.get(o));
            (
                o,
                ObservationAgreement {
                    draft: d,
                    final_read: f,
                    agree: d == f,
                },
            )
        })
        .collect();
    let mut names: Vec<&String> = pair
        .draft_devices
        .keys()
        .chain(pair.final_devices.keys())
        .collect();
    names.sort();
    names.dedup();
    let devices = names
        .into_iter()
        .map(|name| {
            let (d, f) = (
                pair.draft_devices.get(name).cloned(),
                pair.final_devices.get(name).cloned(),
            );
            DeviceAgreement {
                device: name.clone(),
                agree: d == f,
                draft: d,
                final_read: f,
            }
        })
        .collect();
    let (edit_distance, edit_fraction) = word_edit_distance(&pair.draft, &pair.final_read);
    let sentences = embedder
        .map(|e| sentence_matches(e, &pair.draft, &pair.final_read))
        .transpose()?;
    Ok(StudyComparison {
        id: pair.id.clone(),
        labels,
        devices,
        edit_distance,
        edit_fraction,
        sentences,
    })
}

/// A proportion with its 95 % Wilson score interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub value: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

const Z95: f64 = 1.959_963_984_540_054;

/// k successes out of n, with the Wilson score interval.
pub fn wilson(k: u64, n: u64) -> Estimate {
    if n == 0 {
        return Estimate {
            value: None,
            low: None,
            high: None,
        };
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = Z95 * Z95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    Estimate {
        value: Some(p),
        low: Some((centre - half).max(0.0)),
        high: Some((centre + half).min(1.0)),
    }
}

/// The 2x2 table of one observation: draft against final read (the reference).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Table {
    pub true_positive: u64,
    pub false_positive: u64,
    pub false_negative: u64,
    pub true_negative: u64,
}

impl Table {
    pub fn n(&self) -> u64 {
        self.true_positive + self.false_positive + self.false_negative + self.true_negative
    }

    pub fn sensitivity(&self) -> Estimate {
        wilson(self.true_positive, self.true_positive + self.false_negative)
    }

    pub fn ppv(&self) -> Estimate {
        wilson(self.true_positive, self.true_positive + self.false_positive)
    }

    pub fn f1(&self) -> Option<f64> {
        let denominator = 2 * self.true_positive + self.false_positive + self.false_negative;
        (denominator > 0).then(|| 2.0 * self.true_positive as f64 / denominator as f64)
    }

    /// Cohen's kappa with a 95 % interval from its large-sample standard error
    /// (Cohen 1960: se = sqrt(po (1 - po) / (n (1 - pe)^2))).
    pub fn kappa(&self) -> Estimate {
        let n = self.n() as f64;
        if n == 0.0 {
            return Estimate {
                value: None,
                low: None,
                high: None,
            };
        }
        let (a, b, c, d) = (
            self.true_positive as f64,
            self.false_positive as f64,
            self.false_negative as f64,
            self.true_negative as f64,
        );
        let po = (a + d) / n;
        let pe = ((a + b) * (a + c) + (c + d) * (b + d)) / (n * n);
        if (1.0 - pe).abs() < 1e-12 {
            // Both raters gave one label to every study: kappa is undefined.
            return Estimate {
                value: None,
                low: None,
                high: None,
            };
        }
        let kappa = (po - pe) / (1.0 - pe);
        let se = (po * (1.0 - po) / (n * (1.0 - pe) * (1.0 - pe))).sqrt();
        Estimate {
            value: Some(kappa),
            low: Some(kappa - Z95 * se),
            high: Some(kappa + Z95 * se),
        }
    }
}

/// An observation's agreement over a group of studies.
#[derive(Debug, Clone, Serialize)]
pub struct ObservationStatistics {
    pub observation: Observation,
    pub table: Table,
    /// Studies left out (uncertain under `exclude`).
    pub excluded: u64,
    pub sensitivity: Estimate,
    pub ppv: Estimate,
    pub f1: Option<f64>,
    pub kappa: Estimate,
    /// The labeler's own F1 for this observation on real reports
    /// ([`crate::labeler::trust`]): how far the labels behind these figures can be trusted.
    pub labeler_f1: Option<f64>,
}

/// Agreement over a group of studies (a model version, a month, or all).
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    pub group: String,
    pub studies: u64,
    pub observations: Vec<ObservationStatistics>,
    /// Device verdicts the radiologist agreed with, out of those both gave.
    pub device_agreement: Estimate,
    pub mean_edit_fraction: Option<f64>,
}

/// Accumulates study comparisons into per-observation tables.
#[derive(Debug, Clone)]
pub struct AgreementBuilder {
    group: String,
    policy: UncertainPolicy,
    tables: BTreeMap<Observation, (Table, u64)>,
    studies: u64,
    devices: (u64, u64),
    edit_sum: f64,
}

impl AgreementBuilder {
    pub fn new(group: &str, policy: UncertainPolicy) -> AgreementBuilder {
        AgreementBuilder {
            group: group.into(),
            policy,
            tables: BTreeMap::new(),
            studies: 0,
            devices: (0, 0),
            edit_sum: 0.0,
        }
    }

    /// Positive, negative, or None (left out).
    fn binary(&self, label: Label) -> Option<bool> {
        match label {
            Label::Positive => Some(true),
            Label::Negative | Label::Absent => Some(false),
            Label::Uncertain => match self.policy {
                UncertainPolicy::Positive => Some(true),
                UncertainPolicy::Negative => Some(false),
                UncertainPolicy::Exclude => None,
            },
        }
    }

    pub fn add(&mut self, study: &StudyComparison) {
        self.studies += 1;
        self.edit_sum += study.edit_fraction;
        for (&observation, a) in &study.labels {
            let (d, f) = (self.binary(a.draft), self.binary(a.final_read));
            let entry = self.tables.entry(observation).or_default();
            match (d, f) {
                (Some(true), Some(true)) => entry.0.true_positive += 1,
                (Some(true), Some(false)) => entry.0.false_positive += 1,
                (Some(false), Some(true)) => entry.0.false_negative += 1,
                (Some(false), Some(false)) => entry.0.true_negative += 1,
                _ => entry.1 += 1,
            }
        }
        for d in study
            .devices
            .iter()
            .filter(|d| d.draft.is_some() && d.final_read.is_some())
        {
            self.devices.1 += 1;
            self.devices.0 += u64::from(d.agree);
        }
    }

    pub fn finish(&self) -> Agreement {
        let observations = Observation::ALL
            .into_iter()
            .map(|o| {
                let (table, excluded) = self.tables.get(&o).copied().unwrap_or_default();
                ObservationStatistics {
                    observation: o,
                    table,
                    excluded,
                    sensitivity: table.sensitivity(),
                    ppv: table.ppv(),
                    f1: table.f1(),
                    kappa: table.kappa(),
                    labeler_f1: crate::labeler::trust::labeler_f1(o),
                }
            })
            .collect();
        Agreement {
            group: self.group.clone(),
            studies: self.studies,
            observations,
            device_agreement: wilson(self.devices.0, self.devices.1),
            mean_edit_fraction: (self.studies > 0).then(|| self.edit_sum / self.studies as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kappa_and_intervals_match_hand_computation() {
        let t = Table {
            true_positive: 20,
            false_positive: 5,
            false_negative: 10,
            true_negative: 65,
        };
        // po = 0.85, pe = (25 * 30 + 75 * 70) / 100^2 = 0.6, kappa = 0.25 / 0.4.
        let k = t.kappa();
        assert!((k.value.unwrap() - 0.625).abs() < 1e-12);
        let se = (0.85f64 * 0.15 / (100.0 * 0.4 * 0.4)).sqrt();
        assert!((k.low.unwrap() - (0.625 - Z95 * se)).abs() < 1e-12);
        // Wilson interval of 20/30 (Newcombe 1998, method 3): 0.4878 to 0.8077.
        let s = t.sensitivity();
        assert!((s.value.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!(
            (s.low.unwrap() - 0.4878).abs() < 1e-4 && (s.high.unwrap() - 0.8077).abs() < 1e-4,
            "{s:?}"
        );
        assert!((t.ppv().value.unwrap() - 0.8).abs() < 1e-12);
        assert!((t.f1().unwrap() - 40.0 / 55.0).abs() < 1e-12);
        // Degenerate tables: no positives anywhere, kappa undefined.
        let none = Table {
            true_negative: 10,
            ..Table::default()
        };
        assert_eq!(none.kappa().value, None);
        assert_eq!(none.sensitivity().value, None);
    }

    #[test]
    fn word_edit_distance_counts_words() {
        assert_eq!(
            word_edit_distance("No pneumothorax.", "No pneumothorax"),
            (0, 0.0)
        );
        assert_eq!(
            word_edit_distance("Small left effusion.", "Small right effusion."),
            (1, 1.0 / 3.0)
        );
        assert_eq!(word_edit_distance("", "New text here"), (3, 1.0));
    }
}

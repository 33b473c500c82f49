//! Comparison with the patient's prior studies.
//!
//! [`check_prior`] refuses an image that is not a prior of the current one (another patient,
//! not earlier, not a chest, not frontal), so patients are never mixed up; [`choose_priors`]
//! picks, from candidates (the store's, or files given on the command line), the comparable
//! frontal image of each earlier study, most recent first. [`registration`] aligns the prior
//! to the current image. [`compare_findings`] and [`compare_devices`] classify what changed,
//! with the thresholds in [`ChangeThresholds`]; [`match_sentences`] pairs the sentences of the
//! prior's signed report with the new results by MiniLM sentence embeddings.

pub mod registration;

use crate::dicom::ProjectionView;
use crate::imaging::ImageHeader;
use crate::inference::text::TextEmbedder;
use crate::inference::vision::Finding;
use crate::inference::InferenceError;
use crate::placement::{Device, DeviceCheck, Verdict};
use registration::Similarity;
use serde::{Deserialize, Serialize};

/// Why an image cannot serve as a prior of the current one.
pub fn check_prior(current: &ImageHeader, prior: &ImageHeader) -> Result<(), String> {
    let id = |h: &ImageHeader| {
        h.identity
            .patient_id
            .clone()
            .filter(|p| !p.trim().is_empty())
    };
    match (id(current), id(prior)) {
        (Some(a), Some(b)) if a.trim() == b.trim() => {}
        (None, _) | (_, None) => {
            return Err(
                "Patient ID is missing, so it cannot be the same patient: not compared".into(),
            )
        }
        _ => return Err("it belongs to another patient (Patient ID differs): not compared".into()),
    }
    if current.identity.study_instance_uid.is_some()
        && current.identity.study_instance_uid == prior.identity.study_instance_uid
    {
        return Err("it is part of the current study, not a prior".into());
    }
    match (study_moment(current), study_moment(prior)) {
        (Some(now), Some(then)) if then < now => {}
        (Some(_), Some(_)) => {
            return Err("its Study Date/Time is not earlier than the current study's".into())
        }
        _ => return Err("Study Date is missing, so it cannot be shown to be earlier".into()),
    }
    if let Some(part) = &prior.acquisition.body_part {
        if !part.eq_ignore_ascii_case("CHEST") {
            return Err(format!("Body Part Examined is {part:?}, not CHEST"));
        }
    }
    if matches!(
        prior.acquisition.view,
        ProjectionView::Ll | ProjectionView::Rl | ProjectionView::Other(_)
    ) {
        return Err("it is not a frontal (PA or AP) view".into());
    }
    Ok(())
}

/// (StudyDate, StudyTime) as comparable text (the header gives them in ISO 8601 form); None
/// without a full Study Date.
fn study_moment(h: &ImageHeader) -> Option<(String, String)> {
    let date = h.identity.study_date.clone()?;
    let digits = date.chars().filter(char::is_ascii_digit).count();
    if digits != 8 {
        return None;
    }
    Some((date, h.identity.study_time.clone().unwrap_or_default()))
}

/// The candidates that are priors of `current`, one image per earlier study (the one whose
/// view matches the current view, else PA, else AP, else unknown), most recent study first.
pub fn choose_priors(current: &ImageHeader, candidates: &[ImageHeader]) -> Vec<usize> {
    let view_rank = |h: &ImageHeader| {
        if h.acquisition.view == current.acquisition.view {
            0
        } else {
            match h.acquisition.view {
                ProjectionView::Pa => 1,
                ProjectionView::Ap => 2,
                _ => 3,
            }
        }
    };
    let mut eligible: Vec<usize> = (0..candidates.len())
        .filter(|&i| check_prior(current, &candidates[i]).is_ok())
        .collect();
    eligible.sort_by(|&a, &b| {
        study_moment(&candidates[b])
            .cmp(&study_moment(&candidates[a]))
            .then(view_rank(&candidates[a]).cmp(&view_rank(&candidates[b])))
    });
    let mut seen = std::collections::HashSet::new();
    eligible.retain(|&i| seen.insert(candidates[i].identity.study_instance_uid.clone()));
    eligible
}

/// When a finding counts as present, and how large a change in probability counts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChangeThresholds {
    /// A finding is present at or above this probability.
    pub present: f32,
    /// Present on both: increased or decreased when the probability changed by at least this.
    pub change: f32,
    /// A device tip moved when it lies at least this far (mm) from where the aligned prior
    /// puts it.
    pub tip_moved_mm: f64,
}

impl Default for ChangeThresholds {
    fn default() -> Self {
        ChangeThresholds {
            present: 0.5,
            change: 0.15,
            tip_moved_mm: 10.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingChangeKind {
    New,
    Resolved,
    Increased,
    Decreased,
    Unchanged,
    /// Absent on both.
    Absent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingChange {
    pub label: String,
    pub prior_probability: f32,
    pub current_probability: f32,
    pub change: FindingChangeKind,
}

/// Per finding: new, resolved, increased, decreased, unchanged or absent.
pub fn compare_findings(
    prior: &[Finding],
    current: &[Finding],
    t: &ChangeThresholds,
) -> Vec<FindingChange> {
    current
        .iter()
        .filter_map(|now| {
            let then = prior.iter().find(|f| f.label == now.label)?;
            let (p, c) = (then.probability, now.probability);
            // Probabilities are f32: allow for their rounding at the change threshold itself.
            let reached = |delta: f32| delta >= t.change - 1e-6;
            let change = match (p >= t.present, c >= t.present) {
                (false, true) => FindingChangeKind::New,
                (true, false) => FindingChangeKind::Resolved,
                (false, false) => FindingChangeKind::Absent,
                (true, true) if reached(c - p) => FindingChangeKind::Increased,
                (true, true) if reached(p - c) => FindingChangeKind::Decreased,
                (true, true) => FindingChangeKind::Unchanged,
            };
            Some(FindingChange {
                label: now.label.clone(),
                prior_probability: p,
                current_probability: c,
                change,
            })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChangeKind {
    Placed,
    Removed,
    Moved,
    Unchanged,
    /// Absent on both.
    Absent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceChange {
    pub device: Device,
    pub change: DeviceChangeKind,
    /// How far the tip lies from where it was on the aligned prior, mm (px when uncalibrated).
    pub tip_moved: Option<f64>,
    pub statement: String,
}

fn present(check: &DeviceCheck) -> bool {
    check.verdict != Verdict::Absent
}

/// Per device: placed, removed, moved (by how much) or unchanged. Tips on the prior are
/// carried onto the current image through the registration, and measured there with
/// `current_mm_per_px` (row, column; None when uncalibrated).
pub fn compare_devices(
    prior: &[DeviceCheck],
    current: &[DeviceCheck],
    transform: &Similarity,
    current_mm_per_px: Option<(f64, f64)>,
    t: &ChangeThresholds,
) -> Vec<DeviceChange> {
    current
        .iter()
        .filter_map(|now| {
            let then = prior.iter().find(|d| d.device == now.device)?;
            let name = now.device.title();
            let (change, tip_moved, statement) = match (present(then), present(now)) {
                (false, false) => (DeviceChangeKind::Absent, None, String::new()),
                (false, true) => (
                    DeviceChangeKind::Placed,
                    None,
                    format!("{name} has been placed since the prior study."),
                ),
                (true, false) => (
                    DeviceChangeKind::Removed,
                    None,
                    format!("{name} has been removed since the prior study."),
                ),
                (true, true) => {
                    // The tip is the first landmark each check lists.
                    let (Some(a), Some(b)) = (then.landmarks.first(), now.landmarks.first()) else {
                        return None;
                    };
                    let (x, y) = transform.invert(a.x, a.y);
                    let (row_mm, column_mm) = current_mm_per_px.unwrap_or((1.0, 1.0));
                    let moved = ((b.x - x) * column_mm).hypot((b.y - y) * row_mm);
                    let unit = if current_mm_per_px.is_some() {
                        "mm"
                    } else {
                        "px (uncalibrated)"
                    };
                    if current_mm_per_px.is_some() && moved < t.tip_moved_mm {
                        (
                            DeviceChangeKind::Unchanged,
                            Some(moved),
                            format!("{name} tip is unchanged in position ({moved:.0} {unit})."),
                        )
                    } else {
                        (
                            DeviceChangeKind::Moved,
                            Some(moved),
                            format!(
                                "{name} tip has moved by {moved:.0} {unit} since the prior study."
                            ),
                        )
                    }
                }
            };
            Some(DeviceChange {
                device: now.device,
                change,
                tip_moved,
                statement,
            })
        })
        .collect()
}

/// A sentence of the prior's report and the new result closest to it in meaning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentenceMatch {
    pub prior_sentence: String,
    pub best_match: Option<String>,
    /// Cosine similarity of the MiniLM sentence embeddings.
    pub similarity: f32,
    /// At or above `SENTENCE_MATCH_THRESHOLD`: the new results speak to this sentence.
    pub matched: bool,
}

/// Cosine similarity of MiniLM embeddings at which two sentences are taken to say the same
/// thing (paraphrases score about 0.7 to 0.9, unrelated sentences under 0.3).
pub const SENTENCE_MATCH_THRESHOLD: f32 = 0.6;

/// Pairs each sentence of the prior report with the most similar of `statements`.
pub fn match_sentences(
    embedder: &mut TextEmbedder,
    prior_report: &str,
    statements: &[String],
) -> Result<Vec<SentenceMatch>, InferenceError> {
    let prior = crate::sentences::split_sentences(prior_report);
    if prior.is_empty() {
        return Ok(vec![]);
    }
    let prior_refs: Vec<&str> = prior.iter().map(String::as_str).collect();
    let a = embedder.embed(&prior_refs)?;
    let b = if statements.is_empty() {
        None
    } else {
        let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
        Some(embedder.embed(&refs)?)
    };
    Ok(prior
        .iter()
        .enumerate()
        .map(|(i, sentence)| {
            // Embeddings are L2-normalised: the dot product is the cosine.
            let best = b.as_ref().and_then(|b| {
                b.outer_iter()
                    .enumerate()
                    .map(|(j, e)| (j, e.dot(&a.row(i))))
                    .max_by(|x, y| x.1.total_cmp(&y.1))
            });
            let (best_match, similarity) = match best {
                Some((j, s)) => (Some(statements[j].clone()), s),
                None => (None, 0.0),
            };
            SentenceMatch {
                prior_sentence: sentence.clone(),
                best_match,
                similarity,
                matched: similarity >= SENTENCE_MATCH_THRESHOLD,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(label: &str, p: f32) -> Finding {
        Finding {
            label: label.into(),
            probability: p,
        }
    }

    #[test]
    fn finding_changes_at_their_thresholds() {
        let t = ChangeThresholds::default();
        let cases = [
            (0.49, 0.5, FindingChangeKind::New),
            (0.5, 0.49, FindingChangeKind::Resolved),
            (0.1, 0.45, FindingChangeKind::Absent),
            (0.5, 0.65, FindingChangeKind::Increased),
            (0.5, 0.64, FindingChangeKind::Unchanged),
            (0.8, 0.65, FindingChangeKind::Decreased),
            (0.8, 0.66, FindingChangeKind::Unchanged),
        ];
        for (p, c, kind) in cases {
            let changes = compare_findings(&[finding("Edema", p)], &[finding("Edema", c)], &t);
            assert_eq!(changes[0].change, kind, "{p} -> {c}");
        }
    }
}

//! What the reading page shows, built from the work item and its analysis: the draft's
//! sentences with their evidence and image points, the devices with measurements, thresholds
//! and landmarks, the findings, the signed read, and the overlay the viewer draws.

use super::{Agreements, VERDICTS};
use crate::analysis::StudyAnalysis;
use crate::app::work_item::evidence_note;
use crate::draft::{Draft, Evidence};
use crate::store::documents::{device_name, verdict_name};
use crate::store::WorkItemRow;
use crate::web::page;
use crate::web::worklist::{badge, Badge};
use serde::Serialize;

/// A sentence of the draft with its evidence and, when it has one, its place on the image.
#[derive(Serialize)]
pub struct StatementView {
    pub section: &'static str,
    pub text: String,
    pub critical: bool,
    pub evidence: Vec<String>,
    /// Image points (source pixels) the sentence is about.
    pub points: Vec<[f64; 2]>,
}

pub struct DeviceView {
    pub key: String,
    pub title: String,
    pub badge: Badge,
    pub statement: String,
    pub measurements: Vec<String>,
    pub thresholds: Vec<String>,
    pub landmarks: Vec<String>,
    pub agreement: String,
    /// What the radiologist can answer ("agree" or a verdict), and which they chose.
    pub options: Vec<(&'static str, bool)>,
}

pub struct FindingView {
    pub observation: String,
    pub probability: String,
    pub stated: bool,
    /// "", "agree" or "disagree".
    pub agreement: &'static str,
}

/// A draft made again after the radiologist's saved edit of the earlier one.
pub struct Redrafted {
    /// When the new draft was made.
    pub at: String,
    pub text: String,
}

pub struct FinalView {
    pub text: String,
    pub radiologist: String,
    pub signed_at: String,
    /// 0: as first signed; n: the n-th amendment.
    pub amendment: u32,
    pub reason: String,
    /// Its sign time (ms), which an amendment names.
    pub sign_time_ms: i64,
    /// When images that came after this read were analysed ("" if none did).
    pub images_after: String,
}

/// The image points a piece of evidence is about.
fn points(evidence: &Evidence, analysis: &StudyAnalysis) -> Vec<[f64; 2]> {
    match evidence {
        Evidence::Landmark { x, y, .. } => vec![[*x, *y]],
        Evidence::Measurement { device, .. } => analysis
            .current
            .placement
            .devices
            .iter()
            .filter(|d| d.device == *device)
            .flat_map(|d| d.landmarks.iter().map(|l| [l.x, l.y]))
            .collect(),
        _ => vec![],
    }
}

/// A piece of evidence in words: the API's description, with a measurement's thresholds and
/// their sources, which the reviewer needs beside the number.
fn describe(e: &Evidence) -> String {
    let description = evidence_note(e).description;
    match e {
        Evidence::Measurement { thresholds, .. } if !thresholds.is_empty() => {
            let t: Vec<String> = thresholds
                .iter()
                .map(|t| format!("{} {:.0} mm ({})", t.name, t.value_mm, t.source))
                .collect();
            format!("{description}; thresholds: {}", t.join("; "))
        }
        _ => description,
    }
}

/// What the viewer draws over the image: each device's landmarks and callipers.
#[derive(Serialize)]
pub struct OverlayDevice {
    title: String,
    verdict: String,
    critical: bool,
    landmarks: Vec<(String, f64, f64, f32)>,
    callipers: Vec<([f64; 2], [f64; 2], String)>,
}

pub fn overlay(analysis: &StudyAnalysis) -> Vec<OverlayDevice> {
    analysis
        .current
        .placement
        .devices
        .iter()
        .filter(|d| !d.landmarks.is_empty())
        .map(|d| {
            let at = |name: &str| {
                d.landmarks
                    .iter()
                    .find(|l| l.name == name)
                    .map(|l| [l.x, l.y])
            };
            OverlayDevice {
                title: d.device.title().to_string(),
                verdict: d.verdict.as_str().to_string(),
                critical: d.critical,
                landmarks: d
                    .landmarks
                    .iter()
                    .map(|l| (l.name.replace('_', " "), l.x, l.y, l.confidence))
                    .collect(),
                callipers: d
                    .measurements
                    .iter()
                    .filter_map(|m| {
                        Some((
                            at(&m.from)?,
                            at(&m.to)?,
                            format!("{:.0} {}", m.value, m.unit.symbol()),
                        ))
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The draft's sentences, findings first, each with its evidence in words and its points.
pub fn statements(draft: &Draft, analysis: &StudyAnalysis) -> Vec<StatementView> {
    draft
        .findings
        .iter()
        .map(|s| ("Findings", s))
        .chain(draft.impression.iter().map(|s| ("Impression", s)))
        .map(|(section, s)| StatementView {
            section,
            text: s.text.clone(),
            critical: s.critical,
            evidence: s.evidence.iter().map(describe).collect(),
            points: s
                .evidence
                .iter()
                .flat_map(|e| points(e, analysis))
                .collect(),
        })
        .collect()
}

/// Each device's check, with what the radiologist said of it so far.
pub fn devices(analysis: &StudyAnalysis, agreements: &Agreements) -> Vec<DeviceView> {
    analysis
        .current
        .placement
        .devices
        .iter()
        .map(|d| {
            let key = device_name(d.device);
            let verdict = verdict_name(d.verdict);
            DeviceView {
                title: d.device.title().to_string(),
                badge: badge(d.device.title(), &verdict, d.critical),
                statement: d.statement.clone(),
                measurements: d
                    .measurements
                    .iter()
                    .map(|m| {
                        format!(
                            "{}: {:.1} {} ({} → {}){}",
                            m.name,
                            m.value,
                            m.unit.symbol(),
                            m.from.replace('_', " "),
                            m.to.replace('_', " "),
                            if m.calibrated { "" } else { ", not calibrated" }
                        )
                    })
                    .collect(),
                thresholds: d
                    .thresholds
                    .iter()
                    .map(|t| format!("{}: {:.0} mm — {}", t.name, t.value_mm, t.source))
                    .collect(),
                landmarks: d
                    .landmarks
                    .iter()
                    .map(|l| {
                        format!(
                            "{} (confidence {:.2})",
                            l.name.replace('_', " "),
                            l.confidence
                        )
                    })
                    .collect(),
                options: std::iter::once("agree")
                    .chain(VERDICTS)
                    .map(|v| (v, agreements.devices.get(&key).is_some_and(|a| a == v)))
                    .collect(),
                agreement: agreements.devices.get(&key).cloned().unwrap_or_default(),
                key,
            }
        })
        .collect()
}

/// Each finding's probability, whether the draft states it, and the radiologist's agreement.
pub fn findings(
    draft: &Draft,
    analysis: &StudyAnalysis,
    agreements: &Agreements,
) -> Vec<FindingView> {
    let stated: Vec<String> = draft
        .findings
        .iter()
        .chain(&draft.impression)
        .flat_map(|s| &s.evidence)
        .filter_map(|e| match e {
            Evidence::ModelOutput { observation, .. } => Some(observation.clone()),
            _ => None,
        })
        .collect();
    analysis
        .current
        .findings
        .iter()
        .map(|f| FindingView {
            observation: f.label.clone(),
            probability: format!("{:.2}", f.probability),
            stated: stated.contains(&f.label),
            agreement: match agreements.findings.get(&f.label) {
                Some(true) => "agree",
                Some(false) => "disagree",
                None => "",
            },
        })
        .collect()
}

/// The prior's Study Date, "undated", or "" when there is no prior.
pub fn prior_date(analysis: &StudyAnalysis) -> String {
    analysis
        .comparisons
        .first()
        .map(|c| {
            c.prior
                .image
                .study_date
                .as_deref()
                .map(page::dicom_date)
                .unwrap_or_else(|| "undated".into())
        })
        .unwrap_or_default()
}

/// The signed read, when there is one.
pub fn final_read(row: &WorkItemRow) -> Option<FinalView> {
    row.final_read.as_ref().map(|f| FinalView {
        text: f.text.clone(),
        radiologist: f.radiologist.clone(),
        signed_at: page::when(f.signed_at),
        amendment: f.amendment,
        reason: f.amendment_reason.clone(),
        sign_time_ms: f.signed_at,
        images_after: row.images_after_signing.map(page::when).unwrap_or_default(),
    })
}

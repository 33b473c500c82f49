//! The draft report: Findings and Impression built from a study's analysis, every sentence
//! with its evidence.
//!
//! [`Draft::from_analysis`] is the deterministic renderer: device statements with their
//! measurements, findings present (and pertinent negatives) with the model output that gave
//! them, changes since the prior; the Impression puts critical results first (malpositioned
//! tubes, pneumothorax). Its sentences are written so that the labeler reads them back as they
//! were meant ("There is a pleural effusion.", "No pneumothorax."), which keeps QA of drafts
//! against final reads honest. When a vision-language pack writes the text instead
//! ([`Draft::with_generated_text`]), the structured sentences stay alongside as the evidence. A
//! draft is preliminary until a radiologist signs it ([`FinalRead`]); [`sr`] writes either as
//! DICOM Structured Reporting (TID 2000) and [`fhir`] as a FHIR R4 DiagnosticReport.

pub mod codes;
pub mod content;
pub mod dataset;
pub mod fhir;
pub mod measurement_report;
pub mod objects;
pub mod presentation_state;
pub mod sr;
pub mod sr_text;
pub mod summary_image;
pub mod writer;

use crate::analysis::{ModelUsed, StudyAnalysis};
use crate::placement::geometry::LengthUnit;
use crate::placement::{Device, Threshold, Verdict};
use crate::priors::{DeviceChangeKind, FindingChangeKind};
use serde::Serialize;

use crate::analysis::thresholds::Presence;
pub use crate::analysis::thresholds::{ABSENT, PRESENT};

/// Findings whose absence a chest radiograph report states (pertinent negatives).
const PERTINENT_NEGATIVES: &[&str] =
    &["Pneumothorax", "Pleural Effusion", "Consolidation", "Edema"];

/// Why a sentence is in the draft.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    /// A findings model's probability for one observation, and the threshold it crossed.
    ModelOutput {
        model: String,
        observation: String,
        probability: f32,
        threshold: f32,
    },
    /// A device measurement and the rule it was judged by.
    Measurement {
        device: Device,
        name: String,
        value: f64,
        unit: LengthUnit,
        verdict: Verdict,
        thresholds: Vec<Threshold>,
    },
    /// A landmark a landmarks model found (or derived from a segmentation pack's mask).
    Landmark {
        model: String,
        name: String,
        x: f64,
        y: f64,
        confidence: f32,
        /// How it was derived from a mask.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        derivation: Option<String>,
    },
    /// A change since a prior study.
    Comparison {
        prior_study_date: Option<String>,
        prior_sop_instance_uid: Option<String>,
        subject: String,
        change: String,
        prior_value: Option<f64>,
        current_value: Option<f64>,
    },
    /// The search for a prior at the PACS, when it failed: which peers, and why.
    PriorSearch { peers: Vec<String>, reason: String },
}

/// One sentence and why it is there.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Statement {
    pub text: String,
    pub evidence: Vec<Evidence>,
    /// A critical result (the radiologist must be told now).
    pub critical: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportStatus {
    /// A draft: not read by a radiologist.
    Preliminary,
    /// Signed by a radiologist.
    Final,
}

/// A source image the report is about.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ImageReference {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub series_instance_uid: String,
    pub study_instance_uid: String,
}

/// The draft of one study.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Draft {
    pub status: ReportStatus,
    /// The report text the radiologist edits: Findings and Impression.
    pub text: String,
    /// Who wrote `text`: "radassist structured renderer", or the report pack.
    pub author: String,
    pub findings: Vec<Statement>,
    pub impression: Vec<Statement>,
    pub critical: bool,
    pub source_images: Vec<ImageReference>,
    pub models: Vec<ModelUsed>,
    /// Set when a test model contributed.
    pub warning: Option<String>,
}

/// A radiologist's signed read of a study.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FinalRead {
    pub text: String,
    pub radiologist: String,
    pub organization: String,
    /// When it was signed: YYYYMMDDHHMMSS (DICOM DT, UTC).
    pub signed_at: String,
    /// For an amended read: the SR of the read it replaces (its Predecessor Document).
    #[serde(default)]
    pub replaces: Option<ImageReference>,
}

fn sentence_for(observation: &str) -> Option<&'static str> {
    Some(match observation {
        "Enlarged Cardiomediastinum" => "The cardiomediastinal silhouette is enlarged.",
        "Cardiomegaly" => "There is cardiomegaly.",
        "Lung Lesion" => "There is a lung nodule or mass.",
        "Lung Opacity" => "There is a lung opacity.",
        "Edema" => "There is pulmonary edema.",
        "Consolidation" => "There is consolidation.",
        "Pneumonia" => "There is pneumonia.",
        "Atelectasis" => "There is atelectasis.",
        "Pneumothorax" => "There is a pneumothorax.",
        "Pleural Effusion" => "There is a pleural effusion.",
        "Pleural Other" => "There is pleural thickening.",
        "Fracture" => "There is a fracture.",
        _ => return None,
    })
}

/// The observation as a report's sentence subject ("Pleural effusion").
fn subject(observation: &str) -> String {
    let phrase = match observation {
        "Enlarged Cardiomediastinum" => "enlargement of the cardiomediastinal silhouette",
        "Lung Lesion" => "lung nodule or mass",
        "Edema" => "pulmonary edema",
        "Pleural Other" => "pleural thickening",
        other => return sentence_case(other),
    };
    sentence_case(phrase)
}

fn sentence_case(text: &str) -> String {
    let lower = text.to_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

fn negative_for(observation: &str) -> Option<&'static str> {
    Some(match observation {
        "Pneumothorax" => "No pneumothorax.",
        "Pleural Effusion" => "No pleural effusion.",
        "Consolidation" => "No focal consolidation.",
        "Edema" => "No pulmonary edema.",
        _ => return None,
    })
}

/// A model's output as evidence.
fn model_output(model: &str, observation: &str, probability: f32, threshold: f32) -> Evidence {
    Evidence::ModelOutput {
        model: model.to_string(),
        observation: observation.to_string(),
        probability,
        threshold,
    }
}

/// The devices' sentences (findings; a critical or malpositioned one in the impression too):
/// what was measured, and how it was judged.
fn device_statements(
    study: &StudyAnalysis,
    landmarks_model: &str,
) -> (Vec<Statement>, Vec<Statement>) {
    let current = &study.current;
    let mut findings = Vec::new();
    let mut impression = Vec::new();
    for d in current
        .placement
        .devices
        .iter()
        .filter(|d| d.verdict != Verdict::Absent)
    {
        let mut evidence: Vec<Evidence> = d
            .measurements
            .iter()
            .map(|m| Evidence::Measurement {
                device: d.device,
                name: m.name.clone(),
                value: m.value,
                unit: m.unit,
                verdict: d.verdict,
                thresholds: d.thresholds.clone(),
            })
            .collect();
        evidence.extend(d.landmarks.iter().map(|l| Evidence::Landmark {
            model: match l.model.is_empty() {
                true => landmarks_model.to_string(),
                false => l.model.clone(),
            },
            name: l.name.clone(),
            x: l.x,
            y: l.y,
            confidence: l.confidence,
            derivation: l.derivation.clone(),
        }));
        let statement = Statement {
            text: d.statement.clone(),
            evidence,
            critical: d.critical,
        };
        if d.critical || d.verdict == Verdict::Malpositioned {
            impression.push(statement.clone());
        }
        findings.push(statement);
    }
    (findings, impression)
}

/// The findings present (in the findings and the impression), then the pertinent negatives;
/// how many were present.
fn finding_statements(
    study: &StudyAnalysis,
    findings_model: &str,
    findings: &mut Vec<Statement>,
    impression: &mut Vec<Statement>,
) -> usize {
    let current = &study.current;
    let thresholds = &study.thresholds;
    let output = |observation: &str, probability: f32, threshold: f32| {
        model_output(findings_model, observation, probability, threshold)
    };
    let mut present: Vec<_> = current
        .findings
        .iter()
        .filter(|f| thresholds.presence(f) == Presence::Present && sentence_for(&f.label).is_some())
        .collect();
    present.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    for f in &present {
        let critical = f.label == "Pneumothorax";
        let statement = Statement {
            text: sentence_for(&f.label).unwrap().to_string(),
            evidence: vec![output(
                &f.label,
                f.probability,
                thresholds.present(&f.label),
            )],
            critical,
        };
        impression.push(statement.clone());
        findings.push(statement);
    }
    for f in current
        .findings
        .iter()
        .filter(|f| thresholds.presence(f) == Presence::Absent)
    {
        if let (true, Some(text)) = (
            PERTINENT_NEGATIVES.contains(&f.label.as_str()),
            negative_for(&f.label),
        ) {
            findings.push(Statement {
                text: text.to_string(),
                evidence: vec![output(&f.label, f.probability, thresholds.absent(&f.label))],
                critical: false,
            });
        }
    }
    present.len()
}

/// The changes since each prior, as findings.
fn change_statements(study: &StudyAnalysis) -> Vec<Statement> {
    let mut findings = Vec::new();
    for c in &study.comparisons {
        let date = c.prior.image.study_date.clone();
        let since = date.as_deref().unwrap_or("the prior study");
        let comparison =
            |subject: &str, change: &str, p: Option<f64>, q: Option<f64>| Evidence::Comparison {
                prior_study_date: date.clone(),
                prior_sop_instance_uid: c.prior.image.sop_instance_uid.clone(),
                subject: subject.to_string(),
                change: change.to_string(),
                prior_value: p,
                current_value: q,
            };
        for f in &c.findings {
            let name = subject(&f.label);
            let text = match f.change {
                FindingChangeKind::New => format!("{name} is new since {since}."),
                FindingChangeKind::Resolved => format!("{name} has resolved since {since}."),
                FindingChangeKind::Increased => format!("{name} has increased since {since}."),
                FindingChangeKind::Decreased => format!("{name} has decreased since {since}."),
                _ => continue,
            };
            if sentence_for(&f.label).is_none() {
                continue;
            }
            let change = serde_json::to_value(f.change)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string));
            findings.push(Statement {
                text,
                evidence: vec![comparison(
                    &f.label,
                    &change.unwrap_or_default(),
                    Some(f64::from(f.prior_probability)),
                    Some(f64::from(f.current_probability)),
                )],
                critical: false,
            });
        }
        for d in &c.devices {
            if matches!(d.change, DeviceChangeKind::Absent) || d.statement.is_empty() {
                continue;
            }
            let change = serde_json::to_value(d.change)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string));
            findings.push(Statement {
                text: d.statement.replace("the prior study", since),
                evidence: vec![comparison(
                    d.device.title(),
                    &change.unwrap_or_default(),
                    None,
                    d.tip_moved,
                )],
                critical: false,
            });
        }
    }
    findings
}

impl Draft {
    /// The deterministic draft of an analysis.
    pub fn from_analysis(study: &StudyAnalysis, sources: Vec<ImageReference>) -> Draft {
        let current = &study.current;
        let model_of = |task: &str| {
            study
                .models
                .iter()
                .find(|m| m.task == task)
                .map(|m| format!("{} {}", m.name, m.version))
                .unwrap_or_default()
        };
        let findings_model = model_of("findings");
        let (mut findings, mut impression) = device_statements(study, &model_of("landmarks"));
        let present = finding_statements(study, &findings_model, &mut findings, &mut impression);
        findings.extend(change_statements(study));
        // Critical results first; then the rest; a normal study says so.
        impression.sort_by_key(|s| !s.critical);
        let devices_ok = current.placement.devices.iter().any(|d| {
            matches!(
                d.verdict,
                Verdict::Appropriate | Verdict::Borderline | Verdict::NotAssessable
            )
        });
        if devices_ok {
            impression.push(Statement {
                text: "Support devices as described.".into(),
                evidence: vec![],
                critical: false,
            });
        }
        if present == 0 && !impression.iter().any(|s| s.critical) {
            let evidence = current
                .findings
                .iter()
                .map(|f| {
                    let threshold = study.thresholds.present(&f.label);
                    model_output(&findings_model, &f.label, f.probability, threshold)
                })
                .collect();
            impression.push(Statement {
                text: "No acute cardiopulmonary abnormality.".into(),
                evidence,
                critical: false,
            });
        }
        let critical = findings.iter().chain(&impression).any(|s| s.critical);
        let mut draft = Draft {
            status: ReportStatus::Preliminary,
            text: String::new(),
            author: "radassist structured renderer".into(),
            findings,
            impression,
            critical,
            source_images: sources,
            models: study.models.clone(),
            warning: study.warning.clone(),
        };
        draft.text = draft.rendered_sections();
        draft
    }

    /// A vision-language pack's text replaces the rendered one; the structured sentences stay
    /// as the evidence.
    pub fn with_generated_text(mut self, text: &str, pack: &ModelUsed) -> Draft {
        self.text = text.trim().to_string();
        self.author = format!("report pack {} {}", pack.name, pack.version);
        if pack.test_model {
            self.warning = Some(crate::inference::TEST_MODEL_WARNING.into());
        }
        self.models.push(pack.clone());
        self
    }

    /// Says, first in the Findings, that no prior could be retrieved from `peers` (and why,
    /// in the evidence): the radiologist knows the draft was written without a comparison
    /// the PACS may hold. A report pack's text gets the sentence in front.
    pub fn with_prior_unavailable(mut self, peers: Vec<String>, reason: &str) -> Draft {
        let sentence = "No prior study could be retrieved from the PACS for comparison.";
        self.findings.insert(
            0,
            Statement {
                text: sentence.into(),
                evidence: vec![Evidence::PriorSearch {
                    peers,
                    reason: reason.to_string(),
                }],
                critical: false,
            },
        );
        self.text = if self.author == "radassist structured renderer" {
            self.rendered_sections()
        } else {
            let (findings, impression) = split_sections(&self.text);
            let findings = format!("FINDINGS: {sentence} {findings}");
            if impression.is_empty() {
                findings
            } else {
                format!("{findings}\n\nIMPRESSION: {impression}")
            }
        };
        self
    }

    /// FINDINGS: ... IMPRESSION: ... from the structured sentences.
    pub fn rendered_sections(&self) -> String {
        let join = |s: &[Statement]| {
            s.iter()
                .map(|s| s.text.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!(
            "FINDINGS: {}\n\nIMPRESSION: {}",
            join(&self.findings),
            join(&self.impression)
        )
    }
}

/// Splits report text into (findings, impression) by its section titles; text without an
/// IMPRESSION title is all findings.
pub fn split_sections(text: &str) -> (String, String) {
    let strip = |s: &str| {
        let s = s.trim();
        match find_ascii_case_insensitive(s, "FINDINGS:") {
            Some(0) => s["FINDINGS:".len()..].trim().to_string(),
            _ => s.to_string(),
        }
    };
    match find_ascii_case_insensitive(text, "IMPRESSION:") {
        Some(at) => (
            strip(&text[..at]),
            text[at + "IMPRESSION:".len()..].trim().to_string(),
        ),
        None => (strip(text), String::new()),
    }
}

/// The byte offset of the first match of an ASCII `title` in `text`, ignoring ASCII case.
/// Searching the text itself (not an upper-cased copy, whose offsets differ once "ß" becomes
/// "SS" or "ﬁ" becomes "FI") gives offsets that are char boundaries of `text`: a match is
/// ASCII, and no UTF-8 continuation byte is ASCII.
fn find_ascii_case_insensitive(text: &str, title: &str) -> Option<usize> {
    let (haystack, needle) = (text.as_bytes(), title.as_bytes());
    (0..=haystack.len().checked_sub(needle.len())?)
        .find(|&at| haystack[at..at + needle.len()].eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::split_sections;

    #[test]
    fn sections_of_non_ascii_text() {
        assert_eq!(
            split_sections("FINDINGS: ﬁﬁ IMPRESSION: none"),
            ("ﬁﬁ".into(), "none".into())
        );
        assert_eq!(
            split_sections("Findings: İİ Straße ß. Impression: ok 🫁"),
            ("İİ Straße ß.".into(), "ok 🫁".into())
        );
        assert_eq!(
            split_sections("e\u{301} only findings"),
            ("e\u{301} only findings".into(), String::new())
        );
        assert_eq!(split_sections("impression: İ"), (String::new(), "İ".into()));
    }

    proptest::proptest! {
        #[test]
        fn any_text_splits_without_panic(prefix in "\\PC{0,40}", middle in "\\PC{0,40}", rest in "\\PC{0,40}") {
            let text = format!("{prefix}FINDINGS:{middle}IMPRESSION:{rest}");
            let (findings, impression) = split_sections(&text);
            proptest::prop_assert!(text.contains(findings.as_str()) || findings.is_empty());
            proptest::prop_assert!(text.contains(impression.as_str()));
            let _ = split_sections(&prefix);
        }
    }
}

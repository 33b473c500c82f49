//! The documents a work item keeps, as the catalogue stores them (JSON, typed here): what the
//! analysis drafted for the radiologist ([`WorkItemContent`]) and what the radiologist signed
//! ([`SignedRead`]).
//!
//! They are radassist's own record, not any API's message: gRPC and the reading room each
//! build their views from them, so a change to an API is not a change to stored data. Stores
//! written before these documents existed kept the gRPC messages' bytes; the migration that
//! brings them here is in `store/legacy.rs`.

use crate::placement::{Device, Verdict};
use serde::{Deserialize, Serialize};

/// What the worker made of a study for the worklist: the study as its image's header names it,
/// the draft with the evidence of each sentence, and the device checks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkItemContent {
    /// Patient's Name as the image's header holds it (DICOM PN: "FAMILY^GIVEN^MIDDLE").
    pub patient_name: String,
    pub patient_id: String,
    pub accession_number: String,
    /// YYYY-MM-DD.
    pub study_date: String,
    pub draft: DraftContent,
    pub devices: Vec<DeviceCheck>,
}

/// The draft report: its text as the radiologist will edit it, and each sentence's evidence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DraftContent {
    /// FINDINGS and IMPRESSION.
    pub text: String,
    /// "radassist structured renderer", or the report pack that wrote the text.
    pub author: String,
    pub findings: Vec<Statement>,
    pub impression: Vec<Statement>,
    /// The models that contributed ("task name version").
    pub models: Vec<String>,
    /// Set when a test model contributed: "test model, not for clinical use".
    pub warning: Option<String>,
}

/// A sentence of the draft and why it is there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    pub text: String,
    pub critical: bool,
    pub evidence: Vec<EvidenceNote>,
}

/// What a piece of evidence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    ModelOutput,
    Measurement,
    Landmark,
    Comparison,
    /// No prior could be retrieved from the PACS: which peers, and why.
    PriorSearch,
}

impl EvidenceKind {
    /// Its name in the APIs: "model_output", "prior_search".
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::ModelOutput => "model_output",
            EvidenceKind::Measurement => "measurement",
            EvidenceKind::Landmark => "landmark",
            EvidenceKind::Comparison => "comparison",
            EvidenceKind::PriorSearch => "prior_search",
        }
    }

    /// The kind an API name stands for.
    pub fn from_name(name: &str) -> Option<EvidenceKind> {
        [
            EvidenceKind::ModelOutput,
            EvidenceKind::Measurement,
            EvidenceKind::Landmark,
            EvidenceKind::Comparison,
            EvidenceKind::PriorSearch,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// A number as a document keeps it: JSON has no NaN or infinity, so those are None.
pub fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

/// A piece of evidence as a reader sees it: "test-findings 1: Pleural Effusion 0.87 (threshold
/// 0.50)", and the number it rests on with its unit ("probability", "mm", "px").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceNote {
    pub kind: EvidenceKind,
    pub description: String,
    /// None when it rests on no number (a prior search that found nothing).
    pub value: Option<f64>,
    pub unit: String,
}

/// The check of one tube or line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceCheck {
    pub device: Device,
    pub verdict: Verdict,
    pub critical: bool,
    pub statement: String,
    pub measurements: Vec<MeasurementNote>,
}

/// A measurement a verdict rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasurementNote {
    pub name: String,
    /// None when it was not a finite number (JSON has no NaN or infinity).
    pub value: Option<f64>,
    /// "mm", or "px" when the image has no spacing (uncalibrated).
    pub unit: String,
}

/// A read as the radiologist signed it (or amended it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SignedRead {
    pub text: String,
    /// Who signed this read (for an amendment: who amended it).
    pub radiologist: String,
    /// When, ms since the epoch (an amendment names the read it replaces by this).
    pub signed_at: i64,
    pub findings: Vec<FindingAgreement>,
    pub devices: Vec<DeviceAgreement>,
    /// 0 for the read as first signed; n for its n-th amendment.
    pub amendment: u32,
    /// Why it was amended (empty for the first signature).
    pub amendment_reason: String,
}

/// The radiologist's judgement of one finding the draft stated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingAgreement {
    /// A CheXpert observation name, e.g. "Pleural Effusion".
    pub observation: String,
    pub agrees: bool,
}

/// The radiologist's verdict on one device, in the words of [`DeviceCheck`]'s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceAgreement {
    pub device: String,
    pub verdict: String,
    pub agrees: bool,
}

/// A device as the documents and the APIs name it: `endotracheal_tube`.
pub fn device_name(device: Device) -> String {
    serde_name(device)
}

/// A verdict as the documents and the APIs name it: `not_assessable`.
pub fn verdict_name(verdict: Verdict) -> String {
    serde_name(verdict)
}

fn serde_name(value: impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A stored document that does not read back: the catalogue was edited by hand, or is damaged.
#[derive(Debug, thiserror::Error)]
#[error("the stored {what} of study {study} does not read: {source}")]
pub struct DocumentError {
    pub what: &'static str,
    pub study: String,
    #[source]
    pub source: serde_json::Error,
}

/// A document as the catalogue keeps it.
pub(crate) fn to_json(document: &impl Serialize) -> String {
    serde_json::to_string(document).expect("documents are plain data: they always serialise")
}

/// A document read back from the catalogue.
pub(crate) fn from_json<T: for<'de> Deserialize<'de>>(
    json: &str,
    what: &'static str,
    study: &str,
) -> Result<T, DocumentError> {
    serde_json::from_str(json).map_err(|source| DocumentError {
        what,
        study: study.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_work_item_reads_back_as_written() {
        let content = WorkItemContent {
            patient_name: "DOE^JANE".into(),
            patient_id: "P1".into(),
            accession_number: "A1".into(),
            study_date: "2024-01-02".into(),
            draft: DraftContent {
                text: "FINDINGS: ...".into(),
                author: "radassist structured renderer".into(),
                findings: vec![Statement {
                    text: "Small left effusion.".into(),
                    critical: false,
                    evidence: vec![
                        EvidenceNote {
                            kind: EvidenceKind::ModelOutput,
                            description: "m: Pleural Effusion 0.87 (threshold 0.50)".into(),
                            value: Some(0.87),
                            unit: "probability".into(),
                        },
                        EvidenceNote {
                            kind: EvidenceKind::PriorSearch,
                            description: "no prior".into(),
                            value: None,
                            unit: String::new(),
                        },
                    ],
                }],
                impression: vec![],
                models: vec!["findings m 1".into()],
                warning: Some("test model, not for clinical use".into()),
            },
            devices: vec![DeviceCheck {
                device: Device::EndotrachealTube,
                verdict: Verdict::NotAssessable,
                critical: false,
                statement: "ETT seen.".into(),
                measurements: vec![MeasurementNote {
                    name: "tip to carina".into(),
                    value: Some(41.5),
                    unit: "mm".into(),
                }],
            }],
        };
        let json = to_json(&content);
        assert!(json.contains("\"not_assessable\""), "{json}");
        let back: WorkItemContent = from_json(&json, "work item", "1.2").unwrap();
        assert_eq!(back, content);
    }

    #[test]
    fn a_damaged_document_says_which_and_whose() {
        let error = from_json::<SignedRead>("{\"text\": 3}", "signed read", "1.2.3").unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("signed read") && message.contains("1.2.3"),
            "{message}"
        );
    }
}

//! Work items as stores written before [`super::documents`] kept them: the gRPC API's
//! `radassist.v1.WorkItem` and `FinalRead` messages, serialised as protobuf bytes.
//!
//! The messages are frozen here as they were (the fields a work item's bytes carried, with
//! their tags), so the migration that turns them into documents does not depend on the API as
//! it is now. Every field is kept; a byte string that does not decode, or names a device or
//! verdict radassist never wrote, stops the migration with the study's UID rather than losing
//! a read.

use super::documents::{
    finite, DeviceAgreement, DeviceCheck, DraftContent, EvidenceKind, EvidenceNote,
    FindingAgreement, MeasurementNote, SignedRead, Statement, WorkItemContent,
};
use prost::Message;

#[derive(Clone, PartialEq, Message)]
struct WorkItem {
    #[prost(string, tag = "8")]
    accession_number: String,
    #[prost(string, tag = "9")]
    patient_id: String,
    #[prost(string, tag = "10")]
    study_date: String,
    #[prost(message, optional, tag = "11")]
    draft: Option<Draft>,
    #[prost(message, repeated, tag = "12")]
    devices: Vec<Device>,
    #[prost(string, tag = "14")]
    patient_name: String,
}

#[derive(Clone, PartialEq, Message)]
struct Draft {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(string, tag = "2")]
    author: String,
    #[prost(message, repeated, tag = "4")]
    findings: Vec<Sentence>,
    #[prost(message, repeated, tag = "5")]
    impression: Vec<Sentence>,
    #[prost(string, repeated, tag = "6")]
    models: Vec<String>,
    #[prost(string, tag = "7")]
    warning: String,
}

#[derive(Clone, PartialEq, Message)]
struct Sentence {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(bool, tag = "2")]
    critical: bool,
    #[prost(message, repeated, tag = "3")]
    evidence: Vec<Evidence>,
}

#[derive(Clone, PartialEq, Message)]
struct Evidence {
    #[prost(string, tag = "1")]
    kind: String,
    #[prost(string, tag = "2")]
    description: String,
    #[prost(double, tag = "3")]
    value: f64,
    #[prost(string, tag = "4")]
    unit: String,
}

#[derive(Clone, PartialEq, Message)]
struct Device {
    #[prost(string, tag = "1")]
    device: String,
    #[prost(string, tag = "2")]
    verdict: String,
    #[prost(bool, tag = "3")]
    critical: bool,
    #[prost(string, tag = "4")]
    statement: String,
    #[prost(message, repeated, tag = "5")]
    measurements: Vec<Measurement>,
}

#[derive(Clone, PartialEq, Message)]
struct Measurement {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(double, tag = "2")]
    value: f64,
    #[prost(string, tag = "3")]
    unit: String,
}

#[derive(Clone, PartialEq, Message)]
struct FinalRead {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(string, tag = "2")]
    radiologist: String,
    #[prost(message, optional, tag = "3")]
    sign_time: Option<prost_types::Timestamp>,
    #[prost(message, repeated, tag = "4")]
    findings: Vec<Finding>,
    #[prost(message, repeated, tag = "5")]
    devices: Vec<DeviceRead>,
    #[prost(int32, tag = "6")]
    amendment: i32,
    #[prost(string, tag = "7")]
    amendment_reason: String,
}

#[derive(Clone, PartialEq, Message)]
struct Finding {
    #[prost(string, tag = "1")]
    observation: String,
    #[prost(bool, tag = "2")]
    agrees: bool,
}

#[derive(Clone, PartialEq, Message)]
struct DeviceRead {
    #[prost(string, tag = "1")]
    device: String,
    #[prost(string, tag = "2")]
    verdict: String,
    #[prost(bool, tag = "3")]
    agrees: bool,
}

/// Why a work item's old bytes could not become a document.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error(
        "the stored {what} of study {study} is not the protobuf message radassist wrote: {source}"
    )]
    Decode {
        what: &'static str,
        study: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error(
        "the stored work item of study {study} names {value:?}, which is no {what} radassist knows"
    )]
    Unknown {
        what: &'static str,
        study: String,
        value: String,
    },
}

/// A name as serde writes the enum (`endotracheal_tube`, `not_assessable`).
fn named<T: for<'de> serde::Deserialize<'de>>(
    value: &str,
    what: &'static str,
    study: &str,
) -> Result<T, LegacyError> {
    serde_json::from_value(serde_json::Value::String(value.to_string())).map_err(|_| {
        LegacyError::Unknown {
            what,
            study: study.to_string(),
            value: value.to_string(),
        }
    })
}

/// The document a work item's `template` bytes stood for.
pub fn work_item_content(bytes: &[u8], study: &str) -> Result<WorkItemContent, LegacyError> {
    let item = WorkItem::decode(bytes).map_err(|source| LegacyError::Decode {
        what: "work item",
        study: study.to_string(),
        source,
    })?;
    let sentences = |list: Vec<Sentence>| -> Result<Vec<Statement>, LegacyError> {
        list.into_iter()
            .map(|s| {
                Ok(Statement {
                    text: s.text,
                    critical: s.critical,
                    evidence: s
                        .evidence
                        .into_iter()
                        .map(|e| {
                            Ok(EvidenceNote {
                                kind: EvidenceKind::from_name(&e.kind).ok_or_else(|| {
                                    LegacyError::Unknown {
                                        what: "kind of evidence",
                                        study: study.to_string(),
                                        value: e.kind.clone(),
                                    }
                                })?,
                                description: e.description,
                                value: finite(e.value),
                                unit: e.unit,
                            })
                        })
                        .collect::<Result<_, LegacyError>>()?,
                })
            })
            .collect()
    };
    let draft = item.draft.unwrap_or_default();
    Ok(WorkItemContent {
        patient_name: item.patient_name,
        patient_id: item.patient_id,
        accession_number: item.accession_number,
        study_date: item.study_date,
        draft: DraftContent {
            text: draft.text,
            author: draft.author,
            findings: sentences(draft.findings)?,
            impression: sentences(draft.impression)?,
            models: draft.models,
            warning: (!draft.warning.is_empty()).then_some(draft.warning),
        },
        devices: item
            .devices
            .into_iter()
            .map(|d| {
                Ok(DeviceCheck {
                    device: named(&d.device, "device", study)?,
                    verdict: named(&d.verdict, "verdict", study)?,
                    critical: d.critical,
                    statement: d.statement,
                    measurements: d
                        .measurements
                        .into_iter()
                        .map(|m| MeasurementNote {
                            name: m.name,
                            value: finite(m.value),
                            unit: m.unit,
                        })
                        .collect(),
                })
            })
            .collect::<Result<_, LegacyError>>()?,
    })
}

/// The document a `final_read` column's bytes stood for.
pub fn signed_read(bytes: &[u8], study: &str) -> Result<SignedRead, LegacyError> {
    let read = FinalRead::decode(bytes).map_err(|source| LegacyError::Decode {
        what: "signed read",
        study: study.to_string(),
        source,
    })?;
    let signed_at = read
        .sign_time
        .map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000);
    Ok(SignedRead {
        text: read.text,
        radiologist: read.radiologist,
        signed_at,
        findings: read
            .findings
            .into_iter()
            .map(|f| FindingAgreement {
                observation: f.observation,
                agrees: f.agrees,
            })
            .collect(),
        devices: read
            .devices
            .into_iter()
            .map(|d| DeviceAgreement {
                device: d.device,
                verdict: d.verdict,
                agrees: d.agrees,
            })
            .collect(),
        amendment: read.amendment.max(0) as u32,
        amendment_reason: read.amendment_reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::{Device as Tube, Verdict};

    /// Bytes as the gRPC message of the time wrote them (fields the documents drop, such as the
    /// name, included) read back into the document, NaN evidence values as no value.
    #[test]
    fn old_work_item_bytes_become_the_document() {
        #[derive(Clone, PartialEq, Message)]
        struct Written {
            #[prost(string, tag = "1")]
            name: String,
            #[prost(bool, tag = "4")]
            critical: bool,
            #[prost(string, tag = "8")]
            accession_number: String,
            #[prost(message, optional, tag = "11")]
            draft: Option<Draft>,
            #[prost(message, repeated, tag = "12")]
            devices: Vec<Device>,
            #[prost(string, tag = "14")]
            patient_name: String,
        }
        let bytes = Written {
            name: "workItems/1.2".into(),
            critical: true,
            accession_number: "A7".into(),
            draft: Some(Draft {
                text: "FINDINGS: x".into(),
                author: "renderer".into(),
                findings: vec![Sentence {
                    text: "x".into(),
                    critical: true,
                    evidence: vec![Evidence {
                        kind: "prior_search".into(),
                        description: "no prior".into(),
                        value: f64::NAN,
                        unit: String::new(),
                    }],
                }],
                impression: vec![],
                models: vec!["findings m 1".into()],
                warning: String::new(),
            }),
            devices: vec![Device {
                device: "chest_tube".into(),
                verdict: "malpositioned".into(),
                critical: true,
                statement: "s".into(),
                measurements: vec![Measurement {
                    name: "n".into(),
                    value: 3.5,
                    unit: "px".into(),
                }],
            }],
            patient_name: "DOE^J".into(),
        }
        .encode_to_vec();
        let content = work_item_content(&bytes, "1.2").unwrap();
        assert_eq!(content.accession_number, "A7");
        assert_eq!(content.patient_name, "DOE^J");
        assert_eq!(content.draft.warning, None);
        let evidence = &content.draft.findings[0].evidence[0];
        assert_eq!(
            (evidence.kind, evidence.value),
            (EvidenceKind::PriorSearch, None)
        );
        assert_eq!(content.devices[0].device, Tube::ChestTube);
        assert_eq!(content.devices[0].verdict, Verdict::Malpositioned);
        assert_eq!(content.devices[0].measurements[0].value, Some(3.5));
    }

    #[test]
    fn old_read_bytes_become_the_document() {
        let bytes = FinalRead {
            text: "No acute disease.".into(),
            radiologist: "dr-a".into(),
            sign_time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 250_000_000,
            }),
            findings: vec![Finding {
                observation: "Edema".into(),
                agrees: false,
            }],
            devices: vec![DeviceRead {
                device: "endotracheal_tube".into(),
                verdict: "appropriate".into(),
                agrees: true,
            }],
            amendment: 2,
            amendment_reason: "typo".into(),
        }
        .encode_to_vec();
        let read = signed_read(&bytes, "1.2").unwrap();
        assert_eq!(read.signed_at, 1_700_000_000_250);
        assert_eq!(
            (read.amendment, read.amendment_reason.as_str()),
            (2, "typo")
        );
        assert_eq!(read.findings[0].observation, "Edema");
        assert!(read.devices[0].agrees);
    }

    #[test]
    fn bytes_that_are_not_the_message_stop_with_the_study() {
        let error = signed_read(b"\xff\xff\xff", "1.2.9").unwrap_err();
        assert!(error.to_string().contains("1.2.9"), "{error}");
        let unknown = Device {
            device: "pacemaker".into(),
            verdict: "appropriate".into(),
            ..Default::default()
        };
        let bytes = WorkItem {
            devices: vec![unknown],
            ..Default::default()
        }
        .encode_to_vec();
        let error = work_item_content(&bytes, "1.2.9").unwrap_err();
        assert!(error.to_string().contains("pacemaker"), "{error}");
    }
}

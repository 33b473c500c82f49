//! One received instance: validated, stored durably, answered, the same for every way in
//! (gRPC's IngestService and the DICOM C-STORE listener).
//!
//! Validation is the structure walk and header read of [`crate::dicom`] (no pixel decoding:
//! that is the worker's job, and a failure there fails the job with its reason): the instance
//! must parse, carry its UIDs, be an image, and be CR or DX, or a secondary capture of a chest.

use super::durable_file::AlignedBuffer;
use super::metrics::Metrics;
use super::proto::{instance_result::Outcome, InstanceResult};
use super::store::{hex, IncomingInstance, Store, StoreOutcome};
use crate::dicom::{parse_dicom, ImageHeader};
use sha2::{Digest, Sha256};

/// An instance the store answered for: stored now, already held with the same bytes, or a
/// conflict (held before with other bytes; the new bytes are kept for review).
#[derive(Debug, Clone)]
pub struct Received {
    pub outcome: StoreOutcome,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub sha256: String,
}

/// Why an instance was not taken, in the words PS3.4's C-STORE statuses distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It does not parse as DICOM, or lacks what every instance must carry.
    Unreadable,
    /// It parses, but is not what the sender said it is (the command's SOP Class or Instance).
    DoesNotMatch,
    /// A well-formed instance radassist does not take (not a chest CR/DX radiograph).
    NotTaken,
    /// The server could not store it now: send it again.
    StoreFailed,
}

#[derive(Debug, Clone)]
pub struct Refused {
    pub refusal: Refusal,
    pub reason: String,
    pub sha256: String,
}

/// What the sender said the instance is (a C-STORE request's Affected SOP Class and Instance
/// UIDs), checked against its data set.
pub struct Declared<'a> {
    pub sop_class_uid: &'a str,
    pub sop_instance_uid: &'a str,
}

/// Why a conflict's bytes were not taken as the instance.
pub const CONFLICT: &str = "this SOP Instance UID was stored before with different bytes: kept for review, the stored instance is unchanged";

pub fn rejected(index: u32, reason: &str) -> InstanceResult {
    InstanceResult {
        instance_index: index,
        outcome: Outcome::Rejected as i32,
        reason: reason.to_string(),
        ..Default::default()
    }
}

/// The gRPC answer for one instance.
pub fn instance_result(index: u32, stored: Result<Received, Refused>) -> InstanceResult {
    match stored {
        Ok(a) => InstanceResult {
            instance_index: index,
            outcome: match a.outcome {
                StoreOutcome::Stored => Outcome::Stored,
                StoreOutcome::Duplicate => Outcome::Duplicate,
                StoreOutcome::Conflict => Outcome::Conflict,
            } as i32,
            sop_instance_uid: a.sop_instance_uid,
            study: format!("studies/{}", a.study_instance_uid),
            reason: if a.outcome == StoreOutcome::Conflict {
                CONFLICT.into()
            } else {
                String::new()
            },
            sha256: a.sha256,
        },
        Err(r) => InstanceResult {
            sha256: r.sha256,
            ..rejected(index, &r.reason)
        },
    }
}

/// Why an instance is not a chest radiograph radassist takes, if it is not.
fn not_accepted(header: &ImageHeader) -> Option<String> {
    let a = &header.acquisition;
    let modality = a.modality.as_deref().unwrap_or("");
    let chest = a
        .body_part
        .as_deref()
        .is_none_or(|b| b.eq_ignore_ascii_case("CHEST"));
    match modality {
        "CR" | "DX" if chest => None,
        "CR" | "DX" => Some(format!(
            "Body Part Examined is {:?}, not CHEST",
            a.body_part.as_deref().unwrap_or("")
        )),
        _ if a.secondary_capture
            && a.body_part
                .as_deref()
                .is_some_and(|b| b.eq_ignore_ascii_case("CHEST")) =>
        {
            None
        }
        "" => Some(
            "no Modality: only CR and DX radiographs (or chest secondary captures) are taken"
                .into(),
        ),
        other => Some(format!(
            "Modality {other}: only CR and DX radiographs (or chest secondary captures) are taken"
        )),
    }
}

/// Assembly buffers kept for the next instances, at most this many bytes in all: reused memory
/// is much cheaper to fill than fresh pages, and the bound holds however many threads store.
const KEPT_ASSEMBLY_BYTES: usize = 64 << 20;

static ASSEMBLY_BUFFERS: std::sync::Mutex<Vec<AlignedBuffer>> = std::sync::Mutex::new(Vec::new());

/// Validates and stores one instance received as `chunks` (gathered into one buffer first).
pub fn store_received(
    store: &dyn Store,
    metrics: &Metrics,
    chunks: &[bytes::Bytes],
    declared: Option<&Declared>,
) -> Result<Received, Refused> {
    let kept = || ASSEMBLY_BUFFERS.lock().unwrap_or_else(|p| p.into_inner());
    let mut buffer = kept().pop().unwrap_or_default();
    let result = store_instance(store, metrics, buffer.assemble(chunks), declared);
    let mut kept = kept();
    if kept.iter().map(AlignedBuffer::capacity).sum::<usize>() + buffer.capacity()
        <= KEPT_ASSEMBLY_BYTES
    {
        kept.push(buffer);
    }
    result
}

/// Validates and stores one Part 10 instance: answered only once it is durable.
pub fn store_instance(
    store: &dyn Store,
    metrics: &Metrics,
    bytes: &[u8],
    declared: Option<&Declared>,
) -> Result<Received, Refused> {
    let sha = hex(&Sha256::digest(bytes));
    let fail = |refusal: Refusal, reason: String| {
        metrics.ingest_rejected.inc();
        Err(Refused {
            refusal,
            reason,
            sha256: sha.clone(),
        })
    };
    let header = match parse_dicom(bytes).and_then(|instance| ImageHeader::from_instance(&instance))
    {
        Ok(header) => header,
        Err(e) => return fail(Refusal::Unreadable, e.to_string()),
    };
    let id = &header.identity;
    if let Some(declared) = declared {
        let pairs = [
            (
                "SOP Instance UID",
                &id.sop_instance_uid,
                declared.sop_instance_uid,
            ),
            ("SOP Class UID", &id.sop_class_uid, declared.sop_class_uid),
        ];
        for (name, in_data_set, in_command) in pairs {
            let in_data_set = in_data_set.as_deref().unwrap_or("");
            if in_data_set != in_command {
                return fail(
                    Refusal::DoesNotMatch,
                    format!(
                        "{name} {in_data_set:?} in the data set, {in_command:?} in the command"
                    ),
                );
            }
        }
    }
    if let Some(reason) = not_accepted(&header) {
        return fail(Refusal::NotTaken, reason);
    }
    let (Some(sop), Some(study), Some(series)) = (
        &id.sop_instance_uid,
        &id.study_instance_uid,
        &id.series_instance_uid,
    ) else {
        return fail(
            Refusal::Unreadable,
            "SOP Instance, Study Instance and Series Instance UIDs are required".into(),
        );
    };
    let incoming = IncomingInstance {
        bytes,
        sha256: &sha,
        sop_instance_uid: sop,
        study_instance_uid: study,
        series_instance_uid: series,
        patient_id: id.patient_id.as_deref().unwrap_or(""),
        accession_number: id.accession_number.as_deref().unwrap_or(""),
        study_date: id.study_date.as_deref().unwrap_or(""),
    };
    let outcome = match store.put_instance(&incoming) {
        Ok((outcome, _)) => outcome,
        Err(e) => {
            tracing::error!("storing an instance: {e}");
            return fail(
                Refusal::StoreFailed,
                format!("the server could not store it ({e}): send it again"),
            );
        }
    };
    match outcome {
        StoreOutcome::Stored => {
            metrics.ingest_instances.inc();
            metrics.ingest_bytes.inc_by(bytes.len() as u64);
        }
        StoreOutcome::Conflict => {
            metrics.ingest_rejected.inc();
        }
        StoreOutcome::Duplicate => {}
    }
    Ok(Received {
        outcome,
        sop_instance_uid: sop.clone(),
        study_instance_uid: study.clone(),
        sha256: sha,
    })
}

//! One received instance: validated, stored durably, answered.
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

pub fn rejected(index: u32, reason: &str) -> InstanceResult {
    InstanceResult {
        instance_index: index,
        outcome: Outcome::Rejected as i32,
        reason: reason.to_string(),
        ..Default::default()
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

/// Validates, stores and answers one instance received as `chunks`.
pub fn store_received(
    store: &dyn Store,
    metrics: &Metrics,
    index: u32,
    chunks: &[bytes::Bytes],
) -> InstanceResult {
    let kept = || ASSEMBLY_BUFFERS.lock().unwrap_or_else(|p| p.into_inner());
    let mut buffer = kept().pop().unwrap_or_default();
    let result = store_one(store, metrics, index, buffer.assemble(chunks));
    let mut kept = kept();
    if kept.iter().map(AlignedBuffer::capacity).sum::<usize>() + buffer.capacity()
        <= KEPT_ASSEMBLY_BYTES
    {
        kept.push(buffer);
    }
    result
}

fn store_one(store: &dyn Store, metrics: &Metrics, index: u32, bytes: &[u8]) -> InstanceResult {
    let sha = hex(&Sha256::digest(bytes));
    let fail = |reason: String| {
        metrics.ingest_rejected.inc();
        InstanceResult {
            sha256: sha.clone(),
            ..rejected(index, &reason)
        }
    };
    let header = match parse_dicom(bytes).and_then(|instance| ImageHeader::from_instance(&instance))
    {
        Ok(header) => header,
        Err(e) => return fail(e.to_string()),
    };
    if let Some(reason) = not_accepted(&header) {
        return fail(reason);
    }
    let id = &header.identity;
    let (Some(sop), Some(study), Some(series)) = (
        &id.sop_instance_uid,
        &id.study_instance_uid,
        &id.series_instance_uid,
    ) else {
        return fail("SOP Instance, Study Instance and Series Instance UIDs are required".into());
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
    let mut result = InstanceResult {
        instance_index: index,
        sop_instance_uid: sop.clone(),
        study: format!("studies/{study}"),
        sha256: sha.clone(),
        ..Default::default()
    };
    match store.put_instance(&incoming) {
        Ok((StoreOutcome::Stored, _)) => {
            metrics.ingest_instances.inc();
            metrics.ingest_bytes.inc_by(bytes.len() as u64);
            result.outcome = Outcome::Stored as i32;
        }
        Ok((StoreOutcome::Duplicate, _)) => result.outcome = Outcome::Duplicate as i32,
        Ok((StoreOutcome::Conflict, _)) => {
            metrics.ingest_rejected.inc();
            result.outcome = Outcome::Conflict as i32;
            result.reason = "this SOP Instance UID was stored before with different bytes: kept for review, the stored instance is unchanged".into();
        }
        Err(e) => {
            tracing::error!("storing an instance: {e}");
            return fail(format!(
                "the server could not store it ({e}): send it again"
            ));
        }
    }
    result
}

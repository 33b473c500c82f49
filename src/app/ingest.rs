//! One received instance: validated, stored durably, answered, the same for every way in
//! (gRPC's IngestService and the DICOM C-STORE listener).
//!
//! Validation is the structure walk and header read of [`crate::dicom`] (no pixel decoding:
//! that is the worker's job, and a failure there fails the job with its reason): the instance
//! must parse, carry its UIDs, each a valid DICOM UID (PS3.5 9.1; see [`crate::dicom::uid`]),
//! be an image, and be CR or DX, or a secondary capture of a chest.
//! The one exception comes by the listener: while a study is retrieved as a prior (see
//! [`super::expected_priors`]), its images are kept as that prior's and a text SR of it is
//! taken as the prior's report.

use super::archive::attributes::searchable;
use super::expected_priors::ExpectedPriors;
use super::metrics::Metrics;
use crate::dicom::uid::check_uid;
use crate::dicom::{parse_dicom, DicomInstance, ImageHeader};
use crate::draft::sr_text::{content_date_time, report_text, TEXT_SR_SOP_CLASSES};
use crate::excerpt::excerpt;
use crate::store::durable_file::AlignedBuffer;
use crate::store::{hex, IncomingInstance, PriorReport, Store, StoreOutcome};
use sha2::{Digest, Sha256};

/// The storage SOP classes radassist takes: the radiographs it analyses.
pub const STORAGE_SOP_CLASSES: &[(&str, &str)] = &[
    ("1.2.840.10008.5.1.4.1.1.1", "CR Image Storage"),
    (
        "1.2.840.10008.5.1.4.1.1.1.1",
        "Digital X-Ray Image Storage - For Presentation",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.1.1.1",
        "Digital X-Ray Image Storage - For Processing",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.7",
        "Secondary Capture Image Storage",
    ),
];

/// An instance the store answered for: stored now, already held with the same bytes, or a
/// conflict (held before with other bytes; the new bytes are kept for review).
#[derive(Debug, Clone)]
pub struct Received {
    pub outcome: StoreOutcome,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
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
    /// An instance of a SOP class radassist takes only in a retrieval (an SR that is not the
    /// report of a prior being retrieved).
    SopClassNotTaken,
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
/// UIDs), checked against its data set; and the studies radassist is retrieving as priors
/// now (a C-STORE may be a sub-operation of radassist's own C-MOVE).
pub struct Declared<'a> {
    pub sop_class_uid: &'a str,
    pub sop_instance_uid: &'a str,
    pub expected: Option<&'a ExpectedPriors>,
}

/// Why a conflict's bytes were not taken as the instance.
pub const CONFLICT: &str = "this SOP Instance UID was stored before with different bytes: kept for review, the stored instance is unchanged";

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

/// The first of `uids` (name, value) that is present and not a DICOM UID, as a reason for the
/// sender: a value that is not a UID could change the path of a link built from it.
fn check_uids(uids: &[(&str, Option<&str>)]) -> Result<(), String> {
    for (name, value) in uids {
        if let Some(value) = value {
            check_uid(value).map_err(|e| {
                format!(
                    "{name} is not a DICOM UID ({e}; PS3.5 9.1): {}: fix the instance before sending it again",
                    excerpt(value)
                )
            })?;
        }
    }
    Ok(())
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
    reserve: u64,
) -> Result<Received, Refused> {
    let kept = || ASSEMBLY_BUFFERS.lock().unwrap_or_else(|p| p.into_inner());
    let mut buffer = kept().pop().unwrap_or_default();
    let result = store_instance(store, metrics, buffer.assemble(chunks), declared, reserve);
    let mut kept = kept();
    if kept.iter().map(AlignedBuffer::capacity).sum::<usize>() + buffer.capacity()
        <= KEPT_ASSEMBLY_BYTES
    {
        kept.push(buffer);
    }
    result
}

/// A refusal, counted: "retry later" ones apart from the rejected.
fn refuse(
    metrics: &Metrics,
    sha256: &str,
    refusal: Refusal,
    reason: String,
) -> Result<Received, Refused> {
    if refusal == Refusal::StoreFailed {
        metrics.ingest_retry_later.inc();
    } else {
        metrics.ingest_rejected.inc();
    }
    Err(Refused {
        refusal,
        reason,
        sha256: sha256.to_string(),
    })
}

/// Why the data disk cannot take `bytes` more now, when it cannot: less than `reserve` would be
/// left (`[service] min_free_bytes`, kept for signing and the outbox).
pub fn below_reserve(store: &dyn Store, bytes: u64, reserve: u64) -> Option<String> {
    let free = store.blobs().free_bytes()?;
    (free < reserve.saturating_add(bytes)).then(|| {
        format!(
            "the server's data disk has {:.1} MB free and keeps {:.1} MB in reserve \
             ([service] min_free_bytes): send it again later",
            free as f64 / 1e6,
            reserve as f64 / 1e6
        )
    })
}

/// Validates and stores one Part 10 instance: answered only once it is durable. An instance
/// that would take the data disk below `reserve` bytes free is refused for now
/// ([`Refusal::StoreFailed`]: send it again).
pub fn store_instance(
    store: &dyn Store,
    metrics: &Metrics,
    bytes: &[u8],
    declared: Option<&Declared>,
    reserve: u64,
) -> Result<Received, Refused> {
    let sha = hex(&Sha256::digest(bytes));
    let fail = |refusal: Refusal, reason: String| refuse(metrics, &sha, refusal, reason);
    if let Some(declared) = declared.filter(|d| {
        TEXT_SR_SOP_CLASSES
            .iter()
            .any(|(uid, _)| *uid == d.sop_class_uid)
    }) {
        return match parse_dicom(bytes) {
            Ok(sr) => store_prior_report(store, bytes, &sha, &sr, declared)
                .or_else(|(refusal, reason)| fail(refusal, reason)),
            Err(e) => fail(Refusal::Unreadable, e.to_string()),
        };
    }
    let (header, attributes) = match parse_dicom(bytes).and_then(|instance| {
        let header = ImageHeader::from_instance(&instance)?;
        Ok((header, searchable(&instance)))
    }) {
        Ok(read) => read,
        Err(e) => return fail(Refusal::Unreadable, e.to_string()),
    };
    let (sop, study, series) = match admissible(&header, declared) {
        Ok(uids) => uids,
        Err((refusal, reason)) => return fail(refusal, reason),
    };
    let id = &header.identity;
    let incoming = IncomingInstance {
        bytes,
        sha256: &sha,
        sop_instance_uid: sop,
        study_instance_uid: study,
        series_instance_uid: series,
        patient_id: id.patient_id.as_deref().unwrap_or(""),
        accession_number: id.accession_number.as_deref().unwrap_or(""),
        study_date: id.study_date.as_deref().unwrap_or(""),
        attributes: &attributes,
        prior: declared
            .and_then(|d| d.expected)
            .is_some_and(|expected| expected.expects(study)),
    };
    if let Some(reason) = below_reserve(store, bytes.len() as u64, reserve) {
        return fail(Refusal::StoreFailed, reason);
    }
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
        sop_class_uid: id.sop_class_uid.clone().unwrap_or_default(),
        sop_instance_uid: sop.to_string(),
        study_instance_uid: study.to_string(),
        series_instance_uid: series.to_string(),
        sha256: sha,
    })
}

/// Whether an instance with `header` may be stored: its UIDs are DICOM UIDs, it is what the
/// sender declared, and it is a chest radiograph radassist takes. Its (SOP Instance, Study
/// Instance, Series Instance) UIDs when it may; the refusal and why when not.
fn admissible<'h>(
    header: &'h ImageHeader,
    declared: Option<&Declared>,
) -> Result<(&'h str, &'h str, &'h str), (Refusal, String)> {
    let id = &header.identity;
    check_uids(&[
        ("SOP Class UID", id.sop_class_uid.as_deref()),
        ("SOP Instance UID", id.sop_instance_uid.as_deref()),
        ("Study Instance UID", id.study_instance_uid.as_deref()),
        ("Series Instance UID", id.series_instance_uid.as_deref()),
    ])
    .map_err(|reason| (Refusal::Unreadable, reason))?;
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
                return Err((
                    Refusal::DoesNotMatch,
                    format!(
                        "{name} {} in the data set, {} in the command",
                        excerpt(in_data_set),
                        excerpt(in_command)
                    ),
                ));
            }
        }
    }
    if let Some(reason) = not_accepted(header) {
        return Err((Refusal::NotTaken, reason));
    }
    match (
        &id.sop_instance_uid,
        &id.study_instance_uid,
        &id.series_instance_uid,
    ) {
        (Some(sop), Some(study), Some(series)) => Ok((sop, study, series)),
        _ => Err((
            Refusal::Unreadable,
            "SOP Instance, Study Instance and Series Instance UIDs are required".into(),
        )),
    }
}

/// An SR received while its study is being retrieved as a prior: its text becomes the prior's
/// report (the SR itself kept as a blob). Any other SR is refused: radassist sends its own
/// reports and takes others' only as priors' reports.
fn store_prior_report(
    store: &dyn Store,
    bytes: &[u8],
    sha: &str,
    sr: &DicomInstance,
    declared: &Declared,
) -> Result<Received, (Refusal, String)> {
    let attrs = crate::dicom::Attributes(sr);
    let uid = |tag| attrs.text(tag).unwrap_or_default();
    let (sop, study) = (
        uid(dicom_dictionary_std::tags::SOP_INSTANCE_UID),
        uid(dicom_dictionary_std::tags::STUDY_INSTANCE_UID),
    );
    check_uids(&[
        ("SOP Instance UID", Some(&sop)),
        ("Study Instance UID", Some(&study)),
    ])
    .map_err(|reason| (Refusal::Unreadable, reason))?;
    if sop != declared.sop_instance_uid {
        return Err((
            Refusal::DoesNotMatch,
            format!(
                "SOP Instance UID {} in the data set, {} in the command",
                excerpt(&sop),
                excerpt(declared.sop_instance_uid)
            ),
        ));
    }
    if !declared.expected.is_some_and(|e| e.expects(&study)) {
        return Err((
            Refusal::SopClassNotTaken,
            "an SR is taken only as the report of a prior radassist retrieves".into(),
        ));
    }
    let text = report_text(sr).map_err(|e| (Refusal::NotTaken, e))?;
    let kept = store
        .blobs()
        .put(sha, bytes)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            store
                .put_prior_report(&PriorReport {
                    study_instance_uid: &study,
                    sop_instance_uid: &sop,
                    sha256: sha,
                    content_date_time: &content_date_time(sr),
                    text: &text,
                })
                .map_err(|e| e.to_string())
        })
        .map_err(|e| {
            (
                Refusal::StoreFailed,
                format!("the server could not store it ({e}): send it again"),
            )
        })?;
    Ok(Received {
        outcome: if kept {
            StoreOutcome::Stored
        } else {
            StoreOutcome::Duplicate
        },
        sop_class_uid: declared.sop_class_uid.to_string(),
        sop_instance_uid: sop,
        study_instance_uid: study,
        series_instance_uid: uid(dicom_dictionary_std::tags::SERIES_INSTANCE_UID),
        sha256: sha.to_string(),
    })
}

//! What radassist sends back to the PACS: the SR of each draft (preliminary), of each signed
//! read (final, verified) and of each amendment (verified, naming the SR it replaces in its
//! Predecessor Documents Sequence), in the original study, queued for every DICOM peer with
//! `send_results` in the same transaction that commits the draft or the signature (so a crash
//! cannot lose one), and sent by [`crate::dimse::sender`].
//!
//! A work item keeps what its SRs are built from ([`ReportSource`]: the draft, the source
//! image's blob and the priors it was compared with), so the final SR is built at signing from
//! the same draft the radiologist read.

use crate::draft::{sr, Draft, FinalRead, ImageReference};
use crate::store::lifecycle::ResultKind;
use crate::store::{hex, OutgoingResult, Store};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why an SR could not be made, stored or read back.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("reading {what}: {source}")]
    Blob {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} does not parse: {source}")]
    Parse {
        what: &'static str,
        #[source]
        source: Box<crate::dicom::DecodeError>,
    },
    #[error(transparent)]
    Sr(#[from] Box<crate::draft::dataset::ObjectError>),
    #[error("encoding the SR: {0}")]
    Encode(#[source] Box<dicom_object::WriteError>),
    #[error("storing the SR: {0}")]
    Store(#[source] std::io::Error),
    #[error("the SR being amended: {0}")]
    Outbox(#[from] crate::store::StoreError),
    #[error("the SR has no {0}")]
    MissingUid(Tag),
}

/// What a work item's SRs are built from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportSource {
    pub draft: Draft,
    /// The blob of the image the draft is about (its patient and study attributes go into the
    /// SR).
    pub source_sha256: String,
    pub priors: Vec<ImageReference>,
}

/// The SR that an amendment of study `uid` replaces: the newest signed SR made for it, as
/// its Predecessor Documents Sequence references it (None when none was made).
pub fn predecessor(store: &dyn Store, uid: &str) -> Result<Option<ImageReference>, ResultsError> {
    let Some((sop_instance_uid, sha256)) = store.latest_signed_sr(uid)? else {
        return Ok(None);
    };
    let what = "the SR being amended";
    let bytes = store
        .blobs()
        .get(&sha256)
        .map_err(|source| ResultsError::Blob { what, source })?;
    let sr = crate::dicom::parse_dicom(&bytes).map_err(|source| ResultsError::Parse {
        what,
        source: Box::new(source),
    })?;
    Ok(Some(ImageReference {
        sop_class_uid: uid_in(&sr, tags::SOP_CLASS_UID)?,
        sop_instance_uid,
        series_instance_uid: uid_in(&sr, tags::SERIES_INSTANCE_UID)?,
        study_instance_uid: uid_in(&sr, tags::STUDY_INSTANCE_UID)?,
    }))
}

/// A UID of an SR radassist made (its value without the padding NUL).
fn uid_in(sr: &InMemDicomObject, tag: Tag) -> Result<String, ResultsError> {
    sr.element(tag)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches('\0').trim().to_string())
        .ok_or(ResultsError::MissingUid(tag))
}

/// The draft's SR, stored as a blob and queued for each of `peers` (none: nothing is built).
pub fn draft_results(
    store: &dyn Store,
    peers: &[String],
    source: &ReportSource,
) -> Result<Vec<OutgoingResult>, ResultsError> {
    sr_results(store, peers, source, None)
}

/// The signed read's SR, likewise.
pub fn final_results(
    store: &dyn Store,
    peers: &[String],
    source: &ReportSource,
    read: &FinalRead,
) -> Result<Vec<OutgoingResult>, ResultsError> {
    sr_results(store, peers, source, Some(read))
}

fn sr_results(
    store: &dyn Store,
    peers: &[String],
    source: &ReportSource,
    signed: Option<&FinalRead>,
) -> Result<Vec<OutgoingResult>, ResultsError> {
    if peers.is_empty() {
        return Ok(vec![]);
    }
    let what = "the source image of the SR";
    let image = store
        .blobs()
        .get(&source.source_sha256)
        .map_err(|source| ResultsError::Blob { what, source })?;
    let image = crate::dicom::parse_dicom(&image).map_err(|source| ResultsError::Parse {
        what,
        source: Box::new(source),
    })?;
    let document = sr::build(&source.draft, signed, &image, &source.priors).map_err(Box::new)?;
    let mut bytes = Vec::new();
    document
        .write_all(&mut bytes)
        .map_err(|e| ResultsError::Encode(Box::new(e)))?;
    let sha256 = hex(&Sha256::digest(&bytes));
    store
        .blobs()
        .put(&sha256, &bytes)
        .map_err(ResultsError::Store)?;
    let sop_instance_uid = uid_in(&document, tags::SOP_INSTANCE_UID)?;
    let study_instance_uid = uid_in(&document, tags::STUDY_INSTANCE_UID)?;
    let kind = match signed {
        Some(read) if read.replaces.is_some() => ResultKind::Amended,
        Some(_) => ResultKind::Final,
        None => ResultKind::Draft,
    };
    Ok(peers
        .iter()
        .map(|peer| OutgoingResult {
            study_instance_uid: study_instance_uid.clone(),
            sop_instance_uid: sop_instance_uid.clone(),
            kind,
            peer: peer.clone(),
            sha256: sha256.clone(),
        })
        .collect())
}

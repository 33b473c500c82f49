//! What radassist sends back into the study (IHE AI Results): for every analysed study the
//! draft report SR, the TID 1500 measurement report, the presentation state with the marks and
//! the summary image, made when the draft is committed; the signed report SR at signing and
//! at each amendment (verified, naming the SR it replaces in its Predecessor Documents
//! Sequence). Each object is a durable blob, recorded in the results catalogue (what the reading
//! room and the API offer for download) and queued for every DICOM peer with `send_results`
//! that takes that kind of object (`results`), in the same transaction that commits the draft
//! or the signature (so a crash cannot lose one), and sent by [`crate::dimse::sender`].
//!
//! A work item keeps what its SRs are built from ([`ReportSource`]: the draft, the source
//! image's blob and the priors it was compared with), so the final SR is built at signing from
//! the same draft the radiologist read.

use super::archive::attributes::searchable;
use crate::analysis::StudyAnalysis;
use crate::dicom::{DecodeLimits, DicomInstance};
use crate::draft::objects::{self, BuildError, ResultObject, StudyResults};
use crate::draft::{sr, Draft, FinalRead, ImageReference};
use crate::imaging::Radiograph;
use crate::store::lifecycle::ResultKind;
use crate::store::{hex, MadeResult, OutgoingResult, ResultBatch, Store};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a result could not be made, stored or read back.
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
    Build(Box<BuildError>),
    #[error("encoding the result: {0}")]
    Encode(#[source] Box<dicom_object::WriteError>),
    #[error("storing the result: {0}")]
    Store(#[source] std::io::Error),
    #[error("the SR being amended: {0}")]
    Outbox(#[from] crate::store::StoreError),
    #[error("the result has no {0}")]
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

/// A UID of an object radassist made (its value without the padding NUL).
fn uid_in(sr: &InMemDicomObject, tag: Tag) -> Result<String, ResultsError> {
    crate::dicom::Attributes(sr)
        .text(tag)
        .ok_or(ResultsError::MissingUid(tag))
}

/// A DICOM peer that takes results, and which objects it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultPeer {
    pub ae_title: String,
    pub objects: Vec<ResultObject>,
}

/// What the draft of a study is: its source, its analysis and the film, decoded.
pub struct DraftInputs<'a> {
    pub source: &'a ReportSource,
    pub analysis: &'a StudyAnalysis,
    pub film: Option<&'a Radiograph>,
}

/// The film's stored instance (its attributes go into every object).
fn source_instance(store: &dyn Store, sha256: &str) -> Result<DicomInstance, ResultsError> {
    let what = "the source image of the results";
    let image = store
        .blobs()
        .get(sha256)
        .map_err(|source| ResultsError::Blob { what, source })?;
    crate::dicom::parse_dicom(&image).map_err(|source| ResultsError::Parse {
        what,
        source: Box::new(source),
    })
}

/// Stores `document` as a blob and adds it to `batch`: made, and queued for each of `peers`
/// that takes `object`.
fn add(
    store: &dyn Store,
    batch: &mut ResultBatch,
    peers: &[ResultPeer],
    object: ResultObject,
    kind: ResultKind,
    document: &dicom_object::DefaultDicomObject,
) -> Result<(), ResultsError> {
    let mut bytes = Vec::new();
    document
        .write_all(&mut bytes)
        .map_err(|e| ResultsError::Encode(Box::new(e)))?;
    let sha256 = hex(&Sha256::digest(&bytes));
    store
        .blobs()
        .put(&sha256, &bytes)
        .map_err(ResultsError::Store)?;
    let sop_instance_uid = uid_in(document, tags::SOP_INSTANCE_UID)?;
    let study_instance_uid = uid_in(document, tags::STUDY_INSTANCE_UID)?;
    batch.queued.extend(
        peers
            .iter()
            .filter(|p| p.objects.contains(&object))
            .map(|p| OutgoingResult {
                study_instance_uid: study_instance_uid.clone(),
                sop_instance_uid: sop_instance_uid.clone(),
                kind,
                peer: p.ae_title.clone(),
                sha256: sha256.clone(),
            }),
    );
    batch.made.push(MadeResult {
        study_instance_uid,
        sop_instance_uid,
        object,
        kind,
        sha256,
        created_at: 0,
        attributes: searchable(document),
    });
    Ok(())
}

/// The draft's results: every object, made, stored and queued for the peers that take it.
pub fn draft_results(
    store: &dyn Store,
    peers: &[ResultPeer],
    draft: &DraftInputs,
) -> Result<ResultBatch, ResultsError> {
    let source = source_instance(store, &draft.source.source_sha256)?;
    let study = StudyResults {
        draft: &draft.source.draft,
        signed: None,
        analysis: draft.analysis,
        source: &source,
        film: draft.film,
        priors: &draft.source.priors,
    };
    let mut batch = ResultBatch::default();
    for object in ResultObject::ALL {
        let document = objects::build(object, &study, &DecodeLimits::default())
            .map_err(|e| ResultsError::Build(Box::new(e)))?;
        add(
            store,
            &mut batch,
            peers,
            object,
            ResultKind::Draft,
            &document,
        )?;
    }
    Ok(batch)
}

/// The signed read's report SR (final, or amended when it replaces one), made, stored and
/// queued for the peers that take reports.
pub fn final_results(
    store: &dyn Store,
    peers: &[ResultPeer],
    source: &ReportSource,
    read: &FinalRead,
) -> Result<ResultBatch, ResultsError> {
    let image = source_instance(store, &source.source_sha256)?;
    let document = sr::build(&source.draft, Some(read), &image, &source.priors)
        .map_err(|e| ResultsError::Build(Box::new(e.into())))?;
    let kind = if read.replaces.is_some() {
        ResultKind::Amended
    } else {
        ResultKind::Final
    };
    let mut batch = ResultBatch::default();
    add(
        store,
        &mut batch,
        peers,
        ResultObject::Report,
        kind,
        &document,
    )?;
    Ok(batch)
}

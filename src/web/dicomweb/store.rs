//! STOW-RS (PS3.18 10.5): instances stored from a `multipart/related; type="application/dicom"`
//! body, each part through the same durable ingest as gRPC's and C-STORE's, and answered with
//! PS3.18's Store Instances Response (DICOM JSON).
//!
//! The body is read as it arrives, one part at a time: a part is held in memory (at most
//! `max_instance_bytes`, counted against the ingest memory all streams share), stored, and
//! answered before the next is read, so an instance is acknowledged only once durable and a
//! large request never sits whole in memory. Each chunk must arrive within
//! `web.request_timeout_seconds`. Each instance gets its own outcome: stored, or held before
//! with the same bytes (a duplicate is not a second copy), in the Referenced SOP Sequence;
//! refused, with its Failure Reason (PS3.4's C-STORE statuses, as the DICOM listener answers),
//! in the Failed SOP Sequence. The answer's status: 200 all stored; 202 some; 409 none; 503
//! (with Retry-After) none, because the server could not store them now (a full disk, the
//! ingest memory full): send them again later, as Failure Reason A700 says of each. A body
//! that breaks off (truncated, a part over the limit, a wrong boundary) is refused with what
//! went wrong; the instances of its earlier parts are stored, and come back as duplicates when
//! sent again.

use super::{authorize, base_url, multipart, Operation};
use crate::app::ingest::{self, Received, Refusal, Refused};
use crate::app::State as Service;
use crate::store::StoreOutcome;
use crate::web::serving::RequestTimeout;
use crate::web::{App, WebError, RETRY_AFTER_SECONDS};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// Failure Reason (0008,1197) of a refused instance: PS3.4's C-STORE status.
fn failure_reason(refusal: Refusal) -> u16 {
    match refusal {
        Refusal::Unreadable => 0xC000,
        Refusal::DoesNotMatch => 0xA900,
        Refusal::NotTaken => 0xC001,
        Refusal::SopClassNotTaken => 0x0122,
        Refusal::StoreFailed => 0xA700,
    }
}

/// Duplicate SOP Instance: held before with other bytes (kept for review).
const CONFLICT_REASON: u16 = 0x0111;

/// One part's outcome.
enum Outcome {
    Stored(Received),
    Failed {
        sop_class_uid: String,
        sop_instance_uid: String,
        reason: u16,
        why: String,
    },
}

pub async fn stow(State(app): State<App>, request: Request<Body>) -> Result<Response, WebError> {
    receive(app, request, None).await
}

pub async fn stow_into(
    State(app): State<App>,
    Path(study): Path<String>,
    request: Request<Body>,
) -> Result<Response, WebError> {
    receive(app, request, Some(study)).await
}

/// Why the body broke off, as the client is told.
fn broken(e: multer::Error, part: usize, limit: usize) -> WebError {
    use multer::Error as E;
    let stored = "the instances of the parts before it are stored (they come back as duplicates when sent again)";
    match e {
        E::FieldSizeExceeded { .. } => WebError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("part {part} is larger than max_instance_bytes ({limit} bytes); {stored}"),
        ),
        E::StreamReadFailed(cause) => WebError::new(
            StatusCode::BAD_REQUEST,
            format!("reading the body failed at part {part} ({cause}); {stored}"),
        ),
        other => WebError::new(
            StatusCode::BAD_REQUEST,
            format!("the multipart body is malformed at part {part} ({other}): check its boundary and that it is complete; {stored}"),
        ),
    }
}

/// The body's chunks, each within `timeout` of the last (a silent client is cut off).
fn timed_chunks(
    body: Body,
    timeout: Duration,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures_util::stream::unfold(Some(body.into_data_stream()), move |stream| async move {
        let mut stream = stream?;
        match tokio::time::timeout(timeout, stream.next()).await {
            Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(stream))),
            Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e.to_string())), None)),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no data for {timeout:?}"),
                )),
                None,
            )),
        }
    })
}

async fn receive(
    app: App,
    request: Request<Body>,
    study: Option<String>,
) -> Result<Response, WebError> {
    let (request, body) = request.into_parts();
    let caller = authorize(&app, &request, Operation::Store).await?;
    if let Some(study) = &study {
        crate::dicom::uid::check_uid(study).map_err(|e| {
            WebError::new(
                StatusCode::BAD_REQUEST,
                format!("the path's Study Instance UID is not a DICOM UID ({e})"),
            )
        })?;
    }
    let boundary = dicom_boundary(&request)?;
    let state = app.state.clone();
    let Ok(_slot) = state.ingest.slots.clone().try_acquire_owned() else {
        state.metrics.ingest_refused_streams.inc();
        return Err(WebError::retry_later(
            format!(
                "{} ingest streams are open, the most this server takes: send it again after Retry-After",
                state.config.max_concurrent_streams
            ),
            RETRY_AFTER_SECONDS,
        ));
    };
    let timeout = request
        .extensions
        .get::<RequestTimeout>()
        .map_or(Duration::from_secs(20), |t| t.0);
    let limit = state.config.max_instance_bytes;
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().per_field(limit as u64));
    let mut parts = multer::Multipart::with_constraints(
        timed_chunks(body, timeout),
        boundary.clone(),
        constraints,
    );
    let outcomes = store_parts(&state, &mut parts, study.as_deref()).await?;
    if outcomes.is_empty() {
        return Err(WebError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the body holds no part delimited by the boundary {} its Content-Type names",
                crate::excerpt::excerpt(&boundary)
            ),
        ));
    }
    state
        .audit(
            &caller,
            "dicomweb-store",
            &format!("{} instances", outcomes.len()),
        )
        .await?;
    Ok(answer(&outcomes, &base_url(&app, &request)))
}

/// The boundary of a store's body, which must be `multipart/related` of DICOM parts.
fn dicom_boundary(request: &Parts) -> Result<String, WebError> {
    let content_type = request
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let related = multipart::related(content_type)?;
    if related
        .part_type
        .as_deref()
        .is_some_and(|t| t != "application/dicom")
    {
        return Err(WebError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "radassist stores application/dicom parts only (not the metadata and bulk data form): send type=\"application/dicom\"",
        ));
    }
    Ok(related.boundary)
}

/// Reads and stores the body's parts, one at a time; their outcomes, in order.
async fn store_parts<'r>(
    state: &Arc<Service>,
    parts: &mut multer::Multipart<'r>,
    study: Option<&str>,
) -> Result<Vec<Outcome>, WebError> {
    let limit = state.config.max_instance_bytes;
    let mut outcomes = Vec::new();
    loop {
        let part = outcomes.len() + 1;
        let mut field = match parts.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return Ok(outcomes),
            Err(e) => return Err(broken(e, part, limit)),
        };
        if let Some(refused) = refused_part(&field, limit) {
            if refused.status == StatusCode::PAYLOAD_TOO_LARGE {
                return Err(refused);
            }
            // Read past it, then answer it as failed.
            while field
                .chunk()
                .await
                .map_err(|e| broken(e, part, limit))?
                .is_some()
            {}
            outcomes.push(Outcome::Failed {
                sop_class_uid: String::new(),
                sop_instance_uid: String::new(),
                reason: 0xC000,
                why: refused.message,
            });
            continue;
        }
        let mut chunks = Vec::new();
        let mut memory: Option<tokio::sync::OwnedSemaphorePermit> = None;
        while let Some(chunk) = field.chunk().await.map_err(|e| broken(e, part, limit))? {
            let room = state
                .ingest
                .room_for(&state.metrics, &state.config, chunk.len(), part as u32)
                .await?;
            match &mut memory {
                Some(held) => held.merge(room),
                None => memory = Some(room),
            }
            chunks.push(chunk);
        }
        outcomes.push(store_part(state, chunks, study).await?);
        drop(memory);
    }
}

/// A part refused before its bytes are read: one declared larger than the limit (413), or of
/// a media type other than DICOM's.
fn refused_part(field: &multer::Field<'_>, limit: usize) -> Option<WebError> {
    let declared = field
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|d| d > limit as u64) {
        return Some(WebError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a part declares {} bytes, more than max_instance_bytes ({limit} bytes); the instances of the parts before it are stored",
                declared.unwrap_or(0)
            ),
        ));
    }
    match field.content_type() {
        Some(m) if m.essence_str() != "application/dicom" => Some(WebError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("a part is {m}, not application/dicom"),
        )),
        _ => None,
    }
}

/// Stores one part's instance on a blocking thread; its outcome.
async fn store_part(
    state: &Arc<Service>,
    chunks: Vec<bytes::Bytes>,
    study: Option<&str>,
) -> Result<Outcome, WebError> {
    let state = state.clone();
    let study = study.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let bytes: Vec<u8> = if chunks.len() == 1 {
            chunks[0].to_vec()
        } else {
            chunks.concat()
        };
        if let Some(study) = &study {
            if let Some(failed) = outside_study(&bytes, study) {
                return failed;
            }
        }
        let stored = ingest::store_instance(
            state.store.as_ref(),
            &state.metrics,
            &bytes,
            None,
            state.config.min_free_bytes,
        );
        match stored {
            Ok(received) => {
                if received.outcome == StoreOutcome::Stored {
                    state.study_changed(&received.study_instance_uid, false);
                }
                if received.outcome == StoreOutcome::Conflict {
                    return Outcome::Failed {
                        sop_class_uid: received.sop_class_uid,
                        sop_instance_uid: received.sop_instance_uid,
                        reason: CONFLICT_REASON,
                        why: ingest::CONFLICT.into(),
                    };
                }
                Outcome::Stored(received)
            }
            Err(Refused {
                refusal, reason, ..
            }) => {
                let [sop_class_uid, sop_instance_uid, _] = uids_of(&bytes).unwrap_or_default();
                Outcome::Failed {
                    sop_class_uid,
                    sop_instance_uid,
                    reason: failure_reason(refusal),
                    why: reason,
                }
            }
        }
    })
    .await
    .map_err(|e| WebError::internal(format!("storing an instance: {e}")))
}

/// The SOP Class, SOP Instance and Study Instance UIDs of `bytes`, where it parses.
fn uids_of(bytes: &[u8]) -> Option<[String; 3]> {
    let instance = crate::dicom::parse_dicom(bytes).ok()?;
    let text = |tag| {
        crate::dicom::Attributes(&instance)
            .text(tag)
            .unwrap_or_default()
    };
    Some([
        text(tags::SOP_CLASS_UID),
        text(tags::SOP_INSTANCE_UID),
        text(tags::STUDY_INSTANCE_UID),
    ])
}

/// A failure when the instance in `bytes` is not of `study` (a store into one study).
fn outside_study(bytes: &[u8], study: &str) -> Option<Outcome> {
    let [sop_class_uid, sop_instance_uid, its_study] = uids_of(bytes)?;
    (its_study != study).then(|| Outcome::Failed {
        sop_class_uid,
        sop_instance_uid,
        reason: 0xA900,
        why: format!(
            "its Study Instance UID is {}, not the study it was stored into",
            crate::excerpt::excerpt(&its_study)
        ),
    })
}

fn ui(tag: dicom_core::Tag, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::UI, value)
}

/// The Referenced and Failed SOP Sequences' items of `outcomes`, and whether a failure was one
/// to try again later (A700).
fn sequences(
    outcomes: &[Outcome],
    base: &str,
) -> (Vec<InMemDicomObject>, Vec<InMemDicomObject>, bool) {
    let mut referenced = Vec::new();
    let mut failed = Vec::new();
    let mut retry = false;
    for outcome in outcomes {
        match outcome {
            Outcome::Stored(r) => referenced.push(InMemDicomObject::from_element_iter([
                ui(tags::REFERENCED_SOP_CLASS_UID, &r.sop_class_uid),
                ui(tags::REFERENCED_SOP_INSTANCE_UID, &r.sop_instance_uid),
                DataElement::new(
                    tags::RETRIEVE_URL,
                    VR::UR,
                    format!(
                        "{base}/studies/{}/series/{}/instances/{}",
                        r.study_instance_uid, r.series_instance_uid, r.sop_instance_uid
                    ),
                ),
            ])),
            Outcome::Failed {
                sop_class_uid,
                sop_instance_uid,
                reason,
                why,
            } => {
                retry |= *reason == 0xA700;
                tracing::info!(sop = %sop_instance_uid, reason, "DICOMweb store refused: {why}");
                failed.push(InMemDicomObject::from_element_iter([
                    ui(tags::REFERENCED_SOP_CLASS_UID, sop_class_uid),
                    ui(tags::REFERENCED_SOP_INSTANCE_UID, sop_instance_uid),
                    DataElement::new(tags::FAILURE_REASON, VR::US, PrimitiveValue::from(*reason)),
                ]));
            }
        }
    }
    (referenced, failed, retry)
}

/// Each failure's instance and reason, on one line of printable ASCII (for a header).
fn reasons(outcomes: &[Outcome]) -> String {
    outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Failed {
                why,
                sop_instance_uid,
                ..
            } => Some(format!("{sop_instance_uid}: {why}")),
            Outcome::Stored(_) => None,
        })
        .collect::<Vec<_>>()
        .join("; ")
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                ' '
            }
        })
        .take(2000)
        .collect()
}

/// The Store Instances Response (PS3.18 10.5.3), with its status.
fn answer(outcomes: &[Outcome], base: &str) -> Response {
    let (referenced, failed, retry) = sequences(outcomes, base);
    let status = match (referenced.is_empty(), failed.is_empty()) {
        (false, true) => StatusCode::OK,
        (false, false) => StatusCode::ACCEPTED,
        (true, _) if retry => StatusCode::SERVICE_UNAVAILABLE,
        (true, _) => StatusCode::CONFLICT,
    };
    let mut data_set = InMemDicomObject::new_empty();
    for (tag, items) in [
        (tags::FAILED_SOP_SEQUENCE, failed),
        (tags::REFERENCED_SOP_SEQUENCE, referenced),
    ] {
        if !items.is_empty() {
            data_set.put(DataElement::new(
                tag,
                VR::SQ,
                dicom_core::value::DataSetSequence::from(items),
            ));
        }
    }
    let body = serde_json::Value::Object(super::json::data_set(&data_set)).to_string();
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/dicom+json")],
        body,
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    let reason = reasons(outcomes);
    if let Ok(value) = HeaderValue::from_str(&reason) {
        if !reason.is_empty() {
            response.headers_mut().insert("x-error-message", value);
        }
    }
    response
}

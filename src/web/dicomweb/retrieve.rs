//! WADO-RS (PS3.18 10.4): a study, a series or an instance retrieved as stored
//! (`multipart/related; type="application/dicom"`, each instance's bytes exactly as received
//! or made, in the transfer syntax it is held in), their metadata as DICOM JSON, with the
//! pixel data named by the URL of its frames, and an instance's frames as held (native frames
//! as `application/octet-stream`, compressed ones as their codec's media type).
//!
//! An Accept header that asks for another transfer syntax than an instance is held in gets
//! 406 with the syntax it is held in: radassist does not transcode (`transfer-syntax=*`, or
//! none, takes it as held).

use super::{authorize, base_url, json, multipart, Operation};
use crate::app::archive::{self, Held, Scope};
use crate::dicom::parse_dicom;
use crate::web::{App, WebError};
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use dicom_dictionary_std::tags;

/// One option of an Accept header: its media type, its `type` parameter and its
/// `transfer-syntax` parameter (lower case but for the syntax).
struct AcceptOption {
    media: String,
    part_type: Option<String>,
    syntax: Option<String>,
}

fn options(accept: &str) -> Vec<AcceptOption> {
    accept
        .split(',')
        .map(|option| {
            let mut params = option.split(';').map(str::trim);
            let media = params.next().unwrap_or("").to_ascii_lowercase();
            let (mut part_type, mut syntax) = (None, None);
            for param in params {
                if let Some((name, value)) = param.split_once('=') {
                    let value = value.trim().trim_matches('"').to_string();
                    match name.trim().to_ascii_lowercase().as_str() {
                        "type" => part_type = Some(value.to_ascii_lowercase()),
                        "transfer-syntax" => syntax = Some(value),
                        _ => {}
                    }
                }
            }
            AcceptOption {
                media,
                part_type,
                syntax,
            }
        })
        .collect()
}

/// Whether an option takes a multipart answer at all, and with parts of which type.
fn takes_multipart(option: &AcceptOption) -> bool {
    matches!(
        option.media.as_str(),
        "*/*" | "multipart/*" | "multipart/related"
    )
}

/// What an Accept header asks of a multipart answer of `part_type` parts: whether it takes it
/// at all, and the transfer syntax it asks for (None: any).
fn accepts(accept: Option<&str>, part_type: &str) -> Result<Option<String>, WebError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(None);
    };
    let mut wanted: Option<Option<String>> = None;
    for option in options(accept) {
        if takes_multipart(&option) && option.part_type.as_deref().is_none_or(|k| k == part_type) {
            let syntax = option.syntax.filter(|s| s != "*");
            // Any syntax wins over a named one.
            wanted = Some(match wanted {
                Some(None) => None,
                _ => syntax,
            });
        }
    }
    wanted.ok_or_else(|| {
        WebError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "this resource is served as multipart/related; type=\"{part_type}\", which the Accept header does not take"
            ),
        )
    })
}

/// Whether an Accept header takes frames served as `media` in `syntax` (`encapsulated`: a
/// compressed syntax). `application/octet-stream` without a transfer syntax asks for
/// uncompressed frames (PS3.18 8.7.3.5.2); `transfer-syntax=*` takes them as held.
fn accepts_frames(accept: Option<&str>, media: &str, syntax: &str, encapsulated: bool) -> bool {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return true;
    };
    options(accept).iter().any(|option| {
        if !takes_multipart(option) {
            return false;
        }
        let syntax_ok = |default_ok: bool| match option.syntax.as_deref() {
            None => default_ok,
            Some("*") => true,
            Some(asked) => asked == syntax,
        };
        match option.part_type.as_deref() {
            None | Some("*/*") => true,
            Some("application/octet-stream") => syntax_ok(!encapsulated),
            Some(t) => t == media && syntax_ok(true),
        }
    })
}

/// The media type of frames held in `syntax` (PS3.18 table 8.7.3-2).
fn frame_media(syntax: &str) -> &'static str {
    match syntax {
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => "image/jpeg",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "image/jls",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "image/jp2",
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => {
            "image/jphc"
        }
        "1.2.840.10008.1.2.5" => "image/dicom-rle",
        _ => "application/octet-stream",
    }
}

fn accept_header(request: &Parts) -> Option<String> {
    request
        .headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .map(str::to_string)
}

/// The transfer syntax `held` is stored in.
fn transfer_syntax(held: &Held) -> String {
    held.attributes
        .element(tags::AVAILABLE_TRANSFER_SYNTAX_UID)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The instances of `scope`, as stored, in one multipart answer.
async fn instances(app: App, request: Parts, scope: Scope) -> Result<Response, WebError> {
    let caller = authorize(&app, &request, Operation::Retrieve).await?;
    check_scope(&scope)?;
    let wanted = accepts(accept_header(&request).as_deref(), "application/dicom")?;
    if let Some(wanted) = &wanted {
        // Checked before any bytes are read.
        for held in archive::instances(&app.state, &scope).await? {
            let held_in = transfer_syntax(&held);
            if held_in != *wanted {
                return Err(WebError::new(
                    StatusCode::NOT_ACCEPTABLE,
                    format!(
                        "instance {} is held in transfer syntax {held_in}, and radassist does not transcode: ask for transfer-syntax=* or {held_in}",
                        held.entry.sop_instance_uid
                    ),
                ));
            }
        }
    }
    let read = archive::retrieve(&app.state, &caller, &scope).await?;
    let parts = read
        .into_iter()
        .map(|(held, bytes)| {
            let syntax = transfer_syntax(&held);
            let media = if syntax.is_empty() {
                "application/dicom".to_string()
            } else {
                format!("application/dicom; transfer-syntax={syntax}")
            };
            (media, Bytes::from(bytes))
        })
        .collect();
    let (content_type, body) = multipart::response("application/dicom", parts);
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// The scope's UIDs must be DICOM UIDs.
pub(super) fn check_scope(scope: &Scope) -> Result<(), WebError> {
    for uid in std::iter::once(&scope.study)
        .chain(&scope.series)
        .chain(&scope.instance)
    {
        crate::dicom::uid::check_uid(uid).map_err(|e| {
            WebError::new(
                StatusCode::BAD_REQUEST,
                format!("the path's UID is not a DICOM UID ({e})"),
            )
        })?;
    }
    Ok(())
}

/// The metadata of the instances of `scope`, as a DICOM JSON array.
async fn metadata(app: App, request: Parts, scope: Scope) -> Result<Response, WebError> {
    let caller = authorize(&app, &request, Operation::Retrieve).await?;
    check_scope(&scope)?;
    let base = base_url(&app, &request);
    let read = archive::retrieve(&app.state, &caller, &scope).await?;
    let json = tokio::task::spawn_blocking(move || {
        let mut answers = Vec::with_capacity(read.len());
        for (held, bytes) in read {
            let data_set = parse_dicom(&bytes).map_err(|e| {
                WebError::internal(format!(
                    "instance {} does not parse as it is stored ({e})",
                    held.entry.sop_instance_uid
                ))
            })?;
            let url = json::retrieve_url(
                &base,
                &whole_uids(&held),
                crate::app::archive::Level::Instance,
            );
            let frames = data_set
                .element(tags::NUMBER_OF_FRAMES)
                .ok()
                .and_then(|e| e.to_int::<u32>().ok())
                .unwrap_or(1);
            answers.push(json::metadata(&data_set, &url, frames));
        }
        Ok::<_, WebError>(serde_json::Value::Array(answers).to_string())
    })
    .await
    .map_err(|e| WebError::internal(format!("writing metadata: {e}")))??;
    Ok(([(header::CONTENT_TYPE, "application/dicom+json")], json).into_response())
}

/// `held`'s study, series and instance UIDs (for its URL).
fn whole_uids(held: &Held) -> dicom_object::InMemDicomObject {
    let mut uids = dicom_object::InMemDicomObject::new_empty();
    for tag in [
        tags::STUDY_INSTANCE_UID,
        tags::SERIES_INSTANCE_UID,
        tags::SOP_INSTANCE_UID,
    ] {
        if let Ok(e) = held.attributes.element(tag) {
            uids.put(e.clone());
        }
    }
    uids
}

pub async fn study(
    State(app): State<App>,
    Path(study): Path<String>,
    request: Parts,
) -> Result<Response, WebError> {
    instances(app, request, Scope::new(study, None, None)).await
}

pub async fn series(
    State(app): State<App>,
    Path((study, series)): Path<(String, String)>,
    request: Parts,
) -> Result<Response, WebError> {
    instances(app, request, Scope::new(study, Some(series), None)).await
}

pub async fn instance(
    State(app): State<App>,
    Path((study, series, instance)): Path<(String, String, String)>,
    request: Parts,
) -> Result<Response, WebError> {
    instances(
        app,
        request,
        Scope::new(study, Some(series), Some(instance)),
    )
    .await
}

pub async fn study_metadata(
    State(app): State<App>,
    Path(study): Path<String>,
    request: Parts,
) -> Result<Response, WebError> {
    metadata(app, request, Scope::new(study, None, None)).await
}

pub async fn series_metadata(
    State(app): State<App>,
    Path((study, series)): Path<(String, String)>,
    request: Parts,
) -> Result<Response, WebError> {
    metadata(app, request, Scope::new(study, Some(series), None)).await
}

pub async fn instance_metadata(
    State(app): State<App>,
    Path((study, series, instance)): Path<(String, String, String)>,
    request: Parts,
) -> Result<Response, WebError> {
    metadata(
        app,
        request,
        Scope::new(study, Some(series), Some(instance)),
    )
    .await
}

/// The frame numbers of a path (`1`, `1,3,5`), each counting from 1.
fn frame_list(text: &str) -> Result<Vec<u32>, WebError> {
    let bad = || {
        WebError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{} is not a list of frame numbers (1, or 1,2,3: they count from 1)",
                crate::excerpt::excerpt(text)
            ),
        )
    };
    let list: Vec<u32> = text
        .split(',')
        .map(|f| f.trim().parse::<u32>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    if list.is_empty() || list.len() > 1000 || list.contains(&0) {
        return Err(bad());
    }
    Ok(list)
}

/// Frames of an instance as held (PS3.18 10.4.1.1.3), one part each.
pub async fn frames(
    State(app): State<App>,
    Path((study, series, instance, list)): Path<(String, String, String, String)>,
    request: Parts,
) -> Result<Response, WebError> {
    let caller = authorize(&app, &request, Operation::Retrieve).await?;
    let scope = Scope::new(study, Some(series), Some(instance));
    check_scope(&scope)?;
    let wanted = frame_list(&list)?;
    let accept = accept_header(&request);
    let (_, bytes) = archive::retrieve(&app.state, &caller, &scope)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| WebError::not_found("no such instance"))?;
    let held = tokio::task::spawn_blocking(move || {
        let instance = parse_dicom(&bytes)
            .map_err(|e| WebError::internal(format!("the instance does not parse ({e})")))?;
        crate::dicom::frames::frames(&instance, &wanted).map_err(|e| {
            use crate::dicom::frames::FramesError;
            let status = match e {
                FramesError::NoPixelData | FramesError::NoSuchFrame { .. } => StatusCode::NOT_FOUND,
                FramesError::BigEndian | FramesError::Unsplittable(_) => StatusCode::NOT_ACCEPTABLE,
            };
            WebError::new(status, e.to_string())
        })
    })
    .await
    .map_err(|e| WebError::internal(format!("reading frames: {e}")))??;
    let (media, syntax) = if held.encapsulated {
        (
            frame_media(&held.transfer_syntax),
            held.transfer_syntax.clone(),
        )
    } else {
        // Native frames are the same bytes in either little-endian syntax.
        (
            "application/octet-stream",
            EXPLICIT_LITTLE_ENDIAN.to_string(),
        )
    };
    if !accepts_frames(accept.as_deref(), media, &syntax, held.encapsulated) {
        return Err(WebError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "the frames are held as {media} in transfer syntax {syntax}, and radassist does not transcode: ask for type=\"{media}\" or transfer-syntax=*"
            ),
        ));
    }
    let parts = held
        .frames
        .into_iter()
        .map(|frame| {
            (
                format!("{media}; transfer-syntax={syntax}"),
                Bytes::from(frame),
            )
        })
        .collect();
    let (content_type, body) = multipart::response(media, parts);
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

const EXPLICIT_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_served_as_held_to_whoever_takes_them() {
        let jpeg = "1.2.840.10008.1.2.4.50";
        let ohif = "multipart/related; type=application/octet-stream; transfer-syntax=*";
        assert!(accepts_frames(Some(ohif), "image/jpeg", jpeg, true));
        assert!(accepts_frames(None, "image/jpeg", jpeg, true));
        assert!(accepts_frames(
            Some("multipart/related; type=\"image/jpeg\""),
            "image/jpeg",
            jpeg,
            true
        ));
        assert!(!accepts_frames(
            Some("multipart/related; type=application/octet-stream"),
            "image/jpeg",
            jpeg,
            true
        ));
        assert!(accepts_frames(
            Some("multipart/related; type=application/octet-stream"),
            "application/octet-stream",
            EXPLICIT_LITTLE_ENDIAN,
            false
        ));
        assert!(!accepts_frames(
            Some("multipart/related; type=\"image/jp2\""),
            "image/jpeg",
            jpeg,
            true
        ));
        assert_eq!(frame_list("1,3").unwrap(), vec![1, 3]);
        for bad in ["0", "", "x", "1,,2"] {
            assert_eq!(
                frame_list(bad).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }

    #[test]
    fn accept_headers_are_read_as_ps3_18_writes_them() {
        let dicom = "application/dicom";
        assert_eq!(accepts(None, dicom).unwrap(), None);
        assert_eq!(accepts(Some("*/*"), dicom).unwrap(), None);
        assert_eq!(
            accepts(
                Some("multipart/related; type=\"application/dicom\"; transfer-syntax=*"),
                dicom
            )
            .unwrap(),
            None
        );
        assert_eq!(
            accepts(Some("multipart/related; type=application/dicom; transfer-syntax=1.2.840.10008.1.2.1"), dicom).unwrap(),
            Some("1.2.840.10008.1.2.1".to_string())
        );
        assert_eq!(
            accepts(
                Some("multipart/related; type=\"application/octet-stream\""),
                dicom
            )
            .unwrap_err()
            .status,
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            accepts(Some("application/json"), dicom).unwrap_err().status,
            StatusCode::NOT_ACCEPTABLE
        );
    }
}

//! PS3.18's `multipart/related` bodies (RFC 2387): the media types a request names, and a
//! response of parts written around a fresh boundary.
//!
//! Reading a request's parts is `multer`'s (axum's own multipart reader), given the boundary
//! read here: multer's own reader of the header takes only `multipart/form-data`.

use super::WebError;
use axum::body::Body;
use axum::http::StatusCode;
use bytes::Bytes;

/// The longest boundary taken.
const MAX_BOUNDARY: usize = 200;

/// A `multipart/related` Content-Type header read: its boundary and its `type` parameter
/// (the media type of the parts, lower case).
#[derive(Debug, Clone, PartialEq)]
pub struct Related {
    pub boundary: String,
    pub part_type: Option<String>,
}

/// The boundary and part type of a request's Content-Type, or why it is not one this server
/// reads (415).
pub fn related(content_type: Option<&str>) -> Result<Related, WebError> {
    let unsupported = |why: String| WebError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, why);
    let value = content_type.ok_or_else(|| {
        unsupported(
            "no Content-Type: send multipart/related; type=\"application/dicom\"; boundary=..."
                .into(),
        )
    })?;
    let mime: mime::Mime = value.parse().map_err(|e| {
        unsupported(format!(
            "the Content-Type {} does not parse ({e}): send multipart/related; type=\"application/dicom\"; boundary=...",
            crate::excerpt::excerpt(value)
        ))
    })?;
    if mime.type_() != mime::MULTIPART || mime.subtype() != "related" {
        return Err(unsupported(format!(
            "the Content-Type is {}/{}: a store takes multipart/related; type=\"application/dicom\"",
            mime.type_(),
            mime.subtype()
        )));
    }
    let boundary = mime
        .get_param(mime::BOUNDARY)
        .map(|b| b.as_str().to_string())
        // RFC 2046 says at most 70 characters; Orthanc's are 73.
        .filter(|b| !b.is_empty() && b.len() <= MAX_BOUNDARY)
        .ok_or_else(|| {
            WebError::new(
                StatusCode::BAD_REQUEST,
                format!("the multipart/related Content-Type has no boundary (or one longer than {MAX_BOUNDARY} characters)"),
            )
        })?;
    Ok(Related {
        boundary,
        part_type: mime
            .get_param("type")
            .map(|t| t.as_str().to_ascii_lowercase()),
    })
}

/// A body of `parts` (each its media type and bytes, sent as they are, not copied) as
/// `multipart/related` with `part_type`, and its Content-Type header.
pub fn response(part_type: &str, parts: Vec<(String, Bytes)>) -> (String, Body) {
    let boundary = uuid::Uuid::new_v4().simple().to_string();
    let mut chunks: Vec<Bytes> = Vec::with_capacity(parts.len() * 2 + 1);
    for (media_type, bytes) in parts {
        chunks.push(Bytes::from(format!(
            "--{boundary}\r\nContent-Type: {media_type}\r\nContent-Length: {}\r\n\r\n",
            bytes.len()
        )));
        chunks.push(bytes);
        chunks.push(Bytes::from_static(b"\r\n"));
    }
    chunks.push(Bytes::from(format!("--{boundary}--\r\n")));
    let content_type = format!("multipart/related; type=\"{part_type}\"; boundary={boundary}");
    let stream = tokio_stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    (content_type, Body::from_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_s_content_type_is_read_and_others_are_refused() {
        let read = related(Some(
            "multipart/related; type=\"application/dicom\"; boundary=abc123",
        ))
        .unwrap();
        assert_eq!(read.boundary, "abc123");
        assert_eq!(read.part_type.as_deref(), Some("application/dicom"));
        let status = |ct: Option<&str>| related(ct).unwrap_err().status;
        assert_eq!(status(None), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(
            status(Some("application/dicom")),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(
            status(Some("multipart/form-data; boundary=x")),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(status(Some("multipart/related")), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(Some(&format!(
                "multipart/related; boundary={}",
                "x".repeat(201)
            ))),
            StatusCode::BAD_REQUEST
        );
    }
}

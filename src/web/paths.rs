//! The app's paths that carry an identifier: the study UIDs read from them, and the links and
//! redirects built from them.
//!
//! A study's pages live under `/studies/{uid}`. A UID read from a path must be a DICOM UID
//! (PS3.5 9.1, [`crate::dicom::uid`]), else the request is refused (400) before anything is
//! looked up. A link or redirect is built only for a study whose UID is one: such a UID is
//! digits and periods, never a whole `.` or `..` segment, so it cannot change the path it sits
//! in (`/studies/9.9.9/../1.2` would lead a browser to another study). A store written before
//! ingest checked UIDs may hold one that is not: its row is shown, without a link, and
//! `radassist audit --uids` lists it.

use super::WebError;
use crate::dicom::uid::{check_uid, is_uid};
use crate::excerpt::excerpt;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;

/// A study's UID from the request path (`/studies/{uid}/...`), checked.
pub struct StudyUid(pub String);

impl<S: Send + Sync> FromRequestParts<S> for StudyUid {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<StudyUid, WebError> {
        let Path(uid) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| WebError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
        checked_study_uid(uid).map(StudyUid)
    }
}

/// `uid`, from a path, if it is a DICOM UID; else the 400 that says so.
pub fn checked_study_uid(uid: String) -> Result<String, WebError> {
    check_uid(&uid).map_err(|e| {
        WebError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{} is not a study's UID: {e}; open the study from the worklist",
                excerpt(&uid)
            ),
        )
    })?;
    Ok(uid)
}

/// `/studies/{uid}`, the study's reading page; None when `uid` is not a DICOM UID.
pub fn study(uid: &str) -> Option<String> {
    is_uid(uid).then(|| format!("/studies/{uid}"))
}

/// `/qa/studies/{uid}`, the study's QA page; None when `uid` is not a DICOM UID.
pub fn qa_study(uid: &str) -> Option<String> {
    is_uid(uid).then(|| format!("/qa/studies/{uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_built_only_from_uids() {
        assert_eq!(study("1.2.3").as_deref(), Some("/studies/1.2.3"));
        assert_eq!(study("9.9.9/../1.2.3"), None);
        assert_eq!(study(".."), None);
        assert_eq!(qa_study("1.2\r\n3"), None);
    }
}

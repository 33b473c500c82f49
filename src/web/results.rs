//! The study's result objects in the reading room: the list the reading page shows ("Results
//! in the PACS") and their download, byte for byte as stored and sent
//! ([`crate::app::downloads`]).
//!
//! `GET /studies/{uid}/results/{sop_instance_uid}` answers the DICOM file
//! (`application/dicom`, as an attachment named after the object), audited; the SOP Instance
//! UID is checked as a UID before anything is looked up.

use super::session::Viewer;
use super::{App, WebError};
use crate::app::downloads;
use crate::dicom::uid::is_uid;
use crate::roles::Role;
use crate::store::MadeResult;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// One result object as the reading page lists it.
#[derive(Debug, Clone)]
pub struct ResultView {
    /// "Measurement report (TID 1500)", ...
    pub title: &'static str,
    /// "draft", "final", "amended".
    pub kind: &'static str,
    pub made: String,
    pub href: String,
}

fn title(made: &MadeResult) -> &'static str {
    use crate::draft::objects::ResultObject;
    match made.object {
        ResultObject::Report => "Report (SR, TID 2000)",
        ResultObject::Measurements => "Measurement report (SR, TID 1500)",
        ResultObject::PresentationState => "Marks on the film (presentation state)",
        ResultObject::SummaryImage => "Summary image (secondary capture)",
    }
}

/// The result objects of study `uid`, for its reading page.
pub async fn views(app: &App, uid: &str) -> Result<Vec<ResultView>, WebError> {
    Ok(downloads::list(&app.state, uid)
        .await?
        .iter()
        .filter(|r| is_uid(&r.sop_instance_uid))
        .map(|r| ResultView {
            title: title(r),
            kind: r.kind.as_str(),
            made: super::page::when(r.created_at),
            href: format!("/studies/{uid}/results/{}", r.sop_instance_uid),
        })
        .collect())
}

/// The DICOM file of one result object.
pub async fn download(
    State(app): State<App>,
    viewer: Viewer,
    Path((uid, sop_instance_uid)): Path<(String, String)>,
) -> Result<Response, WebError> {
    viewer.require(&[Role::Radiologist, Role::Qa])?;
    let uid = super::paths::checked_study_uid(uid)?;
    if !is_uid(&sop_instance_uid) {
        return Err(WebError::new(
            StatusCode::BAD_REQUEST,
            "that is not a result's SOP Instance UID: open the result from the study's page",
        ));
    }
    let (made, bytes) = downloads::fetch(
        &app.state,
        &viewer.caller(),
        &uid,
        &sop_instance_uid,
        "web: download result",
    )
    .await?;
    let name = format!(
        "{}-{}-{}.dcm",
        made.object.as_str(),
        made.kind.as_str(),
        made.sop_instance_uid
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/dicom".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        bytes,
    )
        .into_response())
}

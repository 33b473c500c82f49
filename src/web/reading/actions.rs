//! The actions on a study: claim, release, save the edit (as the radiologist types), sign, and
//! amend a signed read. Each is the core's ([`crate::app::reading`]), as the gRPC API's is.

use super::{Agreements, VERDICTS};
use crate::app::reading::{self as core, DeviceSaid, Read, Signing};
use crate::roles::Role;
use crate::store::documents::FindingAgreement;
use crate::store::now_ms;
use crate::store::reading_room::DraftEdit;
use crate::web::page;
use crate::web::paths::StudyUid;
use crate::web::session::Viewer;
use crate::web::{App, WebError};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde::Deserialize;

/// Where a claim or release came from: the worklist's rows go back to it.
#[derive(Deserialize, Default)]
pub struct ClaimForm {
    #[serde(default)]
    back: String,
}

/// Claims (or releases) the study for the viewer, then shows it (or the worklist).
async fn change_claim(
    app: App,
    viewer: Viewer,
    uid: String,
    claim: bool,
    back_to_worklist: bool,
) -> Result<Response, WebError> {
    viewer.require(&[Role::Radiologist])?;
    let caller = viewer.caller();
    if claim {
        core::claim(&app.state, &caller, &uid, "web: claim").await?;
    } else {
        core::release(&app.state, &caller, &uid, "web: release").await?;
    }
    if back_to_worklist {
        return Ok(Redirect::to("/worklist").into_response());
    }
    Ok(Redirect::to(&format!("/studies/{uid}")).into_response())
}

pub async fn claim(
    State(app): State<App>,
    viewer: Viewer,
    StudyUid(uid): StudyUid,
    Form(form): Form<ClaimForm>,
) -> Result<Response, WebError> {
    change_claim(app, viewer, uid, true, form.back == "worklist").await
}

pub async fn release(
    State(app): State<App>,
    viewer: Viewer,
    StudyUid(uid): StudyUid,
    Form(form): Form<ClaimForm>,
) -> Result<Response, WebError> {
    change_claim(app, viewer, uid, false, form.back == "worklist").await
}

/// What the editor sends as the radiologist types.
#[derive(Deserialize)]
pub struct DraftForm {
    text: String,
    #[serde(default)]
    agreements: Agreements,
}

/// The longest report text accepted.
const MAX_TEXT: usize = 64 << 10;

fn check_text(text: &str) -> Result<(), WebError> {
    if text.len() > MAX_TEXT {
        return Err(WebError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the report is longer than {MAX_TEXT} bytes"),
        ));
    }
    Ok(())
}

fn check_agreements(a: &Agreements) -> Result<(), WebError> {
    if let Some((device, v)) = a
        .devices
        .iter()
        .find(|(_, v)| *v != "agree" && !VERDICTS.contains(&v.as_str()))
    {
        return Err(WebError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{device}: {v:?} is not a verdict (agree, or one of {})",
                VERDICTS.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Saves the edit in progress (only the radiologist holding the claim can).
pub async fn save_draft(
    State(app): State<App>,
    viewer: Viewer,
    StudyUid(uid): StudyUid,
    Json(form): Json<DraftForm>,
) -> Result<Response, WebError> {
    viewer.require(&[Role::Radiologist])?;
    check_text(&form.text)?;
    check_agreements(&form.agreements)?;
    let edit = DraftEdit {
        study_instance_uid: uid.clone(),
        radiologist: viewer.name.clone(),
        text: form.text,
        agreements: serde_json::to_string(&form.agreements)
            .map_err(|e| WebError::internal(e.to_string()))?,
        saved_at: now_ms(),
    };
    let saved_at = edit.saved_at;
    app.state
        .store_call(move |s| s.save_draft_edit(&edit))
        .await?;
    Ok(Json(serde_json::json!({ "saved": page::when(saved_at) })).into_response())
}

/// The sign form: the text and the agreements (JSON) as the editor holds them.
#[derive(Deserialize)]
pub struct SignForm {
    text: String,
    #[serde(default)]
    agreements: String,
}

pub async fn sign(
    State(app): State<App>,
    viewer: Viewer,
    StudyUid(uid): StudyUid,
    Form(form): Form<SignForm>,
) -> Result<Response, WebError> {
    viewer.require(&[Role::Radiologist])?;
    check_text(&form.text)?;
    let agreements: Agreements = if form.agreements.trim().is_empty() {
        Agreements::default()
    } else {
        serde_json::from_str(&form.agreements).map_err(|e| {
            WebError::new(
                StatusCode::BAD_REQUEST,
                format!("the agreements are not valid: {e}"),
            )
        })?
    };
    check_agreements(&agreements)?;
    let row = app.work_item(&uid).await?;
    let findings = agreements
        .findings
        .iter()
        .map(|(observation, &agrees)| FindingAgreement {
            observation: observation.clone(),
            agrees,
        })
        .collect();
    let said: Vec<DeviceSaid> = agreements
        .devices
        .iter()
        .map(|(device, said)| DeviceSaid { device, said })
        .collect();
    let read = Read {
        text: form.text,
        findings,
        devices: core::device_agreements(&row.content, &said),
    };
    core::sign(
        app.state.clone(),
        &viewer.caller(),
        &uid,
        read,
        Signing::First,
        "web: sign",
    )
    .await?;
    Ok(Redirect::to(&format!("/studies/{uid}")).into_response())
}

/// The amendment form: the new text, why, and which read it was written against.
#[derive(Deserialize)]
pub struct AmendForm {
    text: String,
    reason: String,
    replaces: i64,
}

/// Amends the signed read: the text changes, the agreements stay the read's.
pub async fn amend(
    State(app): State<App>,
    viewer: Viewer,
    StudyUid(uid): StudyUid,
    Form(form): Form<AmendForm>,
) -> Result<Response, WebError> {
    viewer.require(&[Role::Radiologist])?;
    check_text(&form.text)?;
    let row = app.work_item(&uid).await?;
    let current = row.final_read.ok_or_else(|| {
        WebError::new(
            StatusCode::CONFLICT,
            "this study is not signed: sign it first",
        )
    })?;
    let read = Read {
        text: form.text,
        findings: current.findings,
        devices: current.devices,
    };
    let signing = Signing::Amendment {
        reason: form.reason,
        replaces: Some(form.replaces),
    };
    core::sign(
        app.state.clone(),
        &viewer.caller(),
        &uid,
        read,
        signing,
        "web: amend",
    )
    .await?;
    Ok(Redirect::to(&format!("/studies/{uid}")).into_response())
}

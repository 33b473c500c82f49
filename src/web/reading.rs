//! Reading one study: the page with the viewer, the draft in its editor with each sentence's
//! evidence, the devices with their measurements and thresholds, agreement per finding and
//! device; and the actions on it: claim, release, save the edit (as the radiologist types),
//! sign, and amend a signed read.
//!
//! Every action is the core's, as the gRPC API's is ([`crate::app::reading`]: claim and release
//! are conditional updates, signing and amending one path), so a rule holds whichever way a
//! radiologist works.

use super::page::{self, Chrome};
use super::paths::StudyUid;
use super::session::Viewer;
use super::worklist::{badge, Badge};
use super::{App, WebError};
use crate::analysis::StudyAnalysis;
use crate::app::reading::{self as core, DeviceSaid, Read, Signing};
use crate::app::results::ReportSource;
use crate::app::work_item::evidence_note;
use crate::draft::Evidence;
use crate::roles::Role;
use crate::store::documents::{device_name, verdict_name, FindingAgreement};
use crate::store::lifecycle::WorkItemStatus;
use crate::store::reading_room::DraftEdit;
use crate::store::{now_ms, WorkItemRow};
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The radiologist's agreement with the draft: per finding (observation -> agrees) and per
/// device (device -> "agree" or the verdict they give instead).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Agreements {
    #[serde(default)]
    pub findings: BTreeMap<String, bool>,
    #[serde(default)]
    pub devices: BTreeMap<String, String>,
}

/// The verdicts a radiologist may give a device instead of the draft's (the API's words).
pub const VERDICTS: [&str; 5] = [
    "appropriate",
    "borderline",
    "malpositioned",
    "not_assessable",
    "absent",
];

/// A sentence of the draft with its evidence and, when it has one, its place on the image.
#[derive(Serialize)]
pub struct StatementView {
    pub section: &'static str,
    pub text: String,
    pub critical: bool,
    pub evidence: Vec<String>,
    /// Image points (source pixels) the sentence is about.
    pub points: Vec<[f64; 2]>,
}

pub struct DeviceView {
    pub key: String,
    pub title: String,
    pub badge: Badge,
    pub statement: String,
    pub measurements: Vec<String>,
    pub thresholds: Vec<String>,
    pub landmarks: Vec<String>,
    pub agreement: String,
    /// What the radiologist can answer ("agree" or a verdict), and which they chose.
    pub options: Vec<(&'static str, bool)>,
}

pub struct FindingView {
    pub observation: String,
    pub probability: String,
    pub stated: bool,
    /// "", "agree" or "disagree".
    pub agreement: &'static str,
}

/// A draft made again after the radiologist's saved edit of the earlier one.
pub struct Redrafted {
    /// When the new draft was made.
    pub at: String,
    pub text: String,
}

pub struct FinalView {
    pub text: String,
    pub radiologist: String,
    pub signed_at: String,
    /// 0: as first signed; n: the n-th amendment.
    pub amendment: u32,
    pub reason: String,
    /// Its sign time (ms), which an amendment names.
    pub sign_time_ms: i64,
    /// When images that came after this read were analysed ("" if none did).
    pub images_after: String,
}

#[derive(Template)]
#[template(path = "reading.html")]
struct ReadingPage {
    chrome: Chrome,
    uid: String,
    patient: String,
    patient_id: String,
    accession: String,
    study_date: String,
    status: &'static str,
    claimed_by: String,
    mine: bool,
    critical: bool,
    warning: String,
    text: String,
    saved: String,
    /// Set when the saved edit is older than the current draft (the study was analysed again
    /// after it, from new images): the new draft's text, to check the edit against.
    redrafted: Option<Redrafted>,
    statements: Vec<StatementView>,
    devices: Vec<DeviceView>,
    findings: Vec<FindingView>,
    prior: String,
    final_read: Option<FinalView>,
    /// What the viewer and editor scripts need (JSON, escaped as an attribute).
    data: String,
}

/// What a work item's SRs are built from: the draft with its typed evidence, the image it is
/// about, the priors.
pub fn report_source(row: &WorkItemRow) -> Result<ReportSource, WebError> {
    let json = row
        .report_json
        .as_deref()
        .ok_or_else(|| WebError::internal("the work item has no report source"))?;
    serde_json::from_str(json).map_err(|e| WebError::internal(format!("the stored report: {e}")))
}

/// The analysis stored with a work item.
pub fn analysis(row: &WorkItemRow) -> Result<StudyAnalysis, WebError> {
    serde_json::from_str(&row.analysis_json)
        .map_err(|e| WebError::internal(format!("the stored analysis: {e}")))
}

/// The image points a piece of evidence is about.
fn points(evidence: &Evidence, analysis: &StudyAnalysis) -> Vec<[f64; 2]> {
    match evidence {
        Evidence::Landmark { x, y, .. } => vec![[*x, *y]],
        Evidence::Measurement { device, .. } => analysis
            .current
            .placement
            .devices
            .iter()
            .filter(|d| d.device == *device)
            .flat_map(|d| d.landmarks.iter().map(|l| [l.x, l.y]))
            .collect(),
        _ => vec![],
    }
}

/// A piece of evidence in words: the API's description, with a measurement's thresholds and
/// their sources, which the reviewer needs beside the number.
fn describe(e: &Evidence) -> String {
    let description = evidence_note(e).description;
    match e {
        Evidence::Measurement { thresholds, .. } if !thresholds.is_empty() => {
            let t: Vec<String> = thresholds
                .iter()
                .map(|t| format!("{} {:.0} mm ({})", t.name, t.value_mm, t.source))
                .collect();
            format!("{description}; thresholds: {}", t.join("; "))
        }
        _ => description,
    }
}

/// What the viewer draws over the image: each device's landmarks and callipers.
#[derive(Serialize)]
struct OverlayDevice {
    title: String,
    verdict: String,
    critical: bool,
    landmarks: Vec<(String, f64, f64, f32)>,
    callipers: Vec<([f64; 2], [f64; 2], String)>,
}

fn overlay(analysis: &StudyAnalysis) -> Vec<OverlayDevice> {
    analysis
        .current
        .placement
        .devices
        .iter()
        .filter(|d| !d.landmarks.is_empty())
        .map(|d| {
            let at = |name: &str| {
                d.landmarks
                    .iter()
                    .find(|l| l.name == name)
                    .map(|l| [l.x, l.y])
            };
            OverlayDevice {
                title: d.device.title().to_string(),
                verdict: d.verdict.as_str().to_string(),
                critical: d.critical,
                landmarks: d
                    .landmarks
                    .iter()
                    .map(|l| (l.name.replace('_', " "), l.x, l.y, l.confidence))
                    .collect(),
                callipers: d
                    .measurements
                    .iter()
                    .filter_map(|m| {
                        Some((
                            at(&m.from)?,
                            at(&m.to)?,
                            format!("{:.0} {}", m.value, m.unit.symbol()),
                        ))
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The agreements saved with the edit in progress (none when there is no edit; a saved edit
/// whose agreements do not read is logged, and the page starts them afresh).
fn saved_agreements(edit: Option<&DraftEdit>) -> Agreements {
    let Some(edit) = edit else {
        return Agreements::default();
    };
    serde_json::from_str(&edit.agreements).unwrap_or_else(|e| {
        tracing::warn!(
            "the saved agreements of study {} do not read ({e}): the page starts them afresh",
            edit.study_instance_uid
        );
        Agreements::default()
    })
}

pub async fn page(
    State(app): State<App>,
    viewer: Viewer,
    StudyUid(uid): StudyUid,
) -> Result<Response, WebError> {
    viewer.require(&[Role::Radiologist])?;
    let row = app.work_item(&uid).await?;
    let edit = {
        let uid = uid.clone();
        app.state.store_call(move |s| s.draft_edit(&uid)).await?
    };
    let (analysis, source) = (analysis(&row)?, report_source(&row)?);
    let draft = &source.draft;
    let agreements = saved_agreements(edit.as_ref());
    let statements: Vec<StatementView> = draft
        .findings
        .iter()
        .map(|s| ("Findings", s))
        .chain(draft.impression.iter().map(|s| ("Impression", s)))
        .map(|(section, s)| StatementView {
            section,
            text: s.text.clone(),
            critical: s.critical,
            evidence: s.evidence.iter().map(describe).collect(),
            points: s
                .evidence
                .iter()
                .flat_map(|e| points(e, &analysis))
                .collect(),
        })
        .collect();
    let devices = analysis
        .current
        .placement
        .devices
        .iter()
        .map(|d| {
            let key = device_name(d.device);
            let verdict = verdict_name(d.verdict);
            DeviceView {
                title: d.device.title().to_string(),
                badge: badge(d.device.title(), &verdict, d.critical),
                statement: d.statement.clone(),
                measurements: d
                    .measurements
                    .iter()
                    .map(|m| {
                        format!(
                            "{}: {:.1} {} ({} → {}){}",
                            m.name,
                            m.value,
                            m.unit.symbol(),
                            m.from.replace('_', " "),
                            m.to.replace('_', " "),
                            if m.calibrated { "" } else { ", not calibrated" }
                        )
                    })
                    .collect(),
                thresholds: d
                    .thresholds
                    .iter()
                    .map(|t| format!("{}: {:.0} mm — {}", t.name, t.value_mm, t.source))
                    .collect(),
                landmarks: d
                    .landmarks
                    .iter()
                    .map(|l| {
                        format!(
                            "{} (confidence {:.2})",
                            l.name.replace('_', " "),
                            l.confidence
                        )
                    })
                    .collect(),
                options: std::iter::once("agree")
                    .chain(VERDICTS)
                    .map(|v| (v, agreements.devices.get(&key).is_some_and(|a| a == v)))
                    .collect(),
                agreement: agreements.devices.get(&key).cloned().unwrap_or_default(),
                key,
            }
        })
        .collect();
    let stated: Vec<String> = draft
        .findings
        .iter()
        .chain(&draft.impression)
        .flat_map(|s| &s.evidence)
        .filter_map(|e| match e {
            Evidence::ModelOutput { observation, .. } => Some(observation.clone()),
            _ => None,
        })
        .collect();
    let findings = analysis
        .current
        .findings
        .iter()
        .map(|f| FindingView {
            observation: f.label.clone(),
            probability: format!("{:.2}", f.probability),
            stated: stated.contains(&f.label),
            agreement: match agreements.findings.get(&f.label) {
                Some(true) => "agree",
                Some(false) => "disagree",
                None => "",
            },
        })
        .collect();
    let prior = analysis
        .comparisons
        .first()
        .map(|c| {
            c.prior
                .image
                .study_date
                .as_deref()
                .map(page::dicom_date)
                .unwrap_or_else(|| "undated".into())
        })
        .unwrap_or_default();
    let final_read = row.final_read.as_ref().map(|f| FinalView {
        text: f.text.clone(),
        radiologist: f.radiologist.clone(),
        signed_at: page::when(f.signed_at),
        amendment: f.amendment,
        reason: f.amendment_reason.clone(),
        sign_time_ms: f.signed_at,
        images_after: row.images_after_signing.map(page::when).unwrap_or_default(),
    });
    let mine = row.status == WorkItemStatus::Claimed
        && row.claimed_by.as_deref() == Some(viewer.name.as_str());
    let data = serde_json::json!({
        "uid": uid,
        "editable": mine,
        "prior": !prior.is_empty(),
        "overlay": overlay(&analysis),
        "statements": &statements,
        "source": [analysis.current.image.columns, analysis.current.image.rows],
    })
    .to_string();
    viewer
        .audit(&app, "web: view study", &format!("studies/{uid}"))
        .await?;
    let content = &row.content;
    Ok(page::render(&ReadingPage {
        chrome: Chrome::of(&viewer, "worklist"),
        patient: page::person_name(&content.patient_name),
        patient_id: content.patient_id.clone(),
        accession: content.accession_number.clone(),
        study_date: page::dicom_date(&content.study_date),
        status: page::status_word(row.status),
        claimed_by: row.claimed_by.clone().unwrap_or_default(),
        mine,
        critical: row.critical,
        warning: content.draft.warning.clone().unwrap_or_default(),
        text: edit
            .as_ref()
            .map(|e| e.text.clone())
            .unwrap_or_else(|| draft.text.clone()),
        saved: edit
            .as_ref()
            .map(|e| page::when(e.saved_at))
            .unwrap_or_default(),
        redrafted: edit
            .as_ref()
            .filter(|e| e.saved_at < row.created_at && row.final_read.is_none())
            .map(|_| Redrafted {
                at: page::when(row.created_at),
                text: draft.text.clone(),
            }),
        statements,
        devices,
        findings,
        prior,
        final_read,
        data,
        uid,
    }))
}

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

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
use super::{App, WebError};
use crate::analysis::StudyAnalysis;
use crate::app::results::ReportSource;
use crate::roles::Role;
use crate::store::lifecycle::WorkItemStatus;
use crate::store::reading_room::DraftEdit;
use crate::store::WorkItemRow;
mod actions;
mod views;

use views::{DeviceView, FinalView, FindingView, Redrafted, StatementView};

pub use actions::{amend, claim, release, save_draft, sign};

use askama::Template;
use axum::extract::State;
use axum::response::Response;
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
    /// The study in the OHIF viewer ("" when none is set up).
    viewer_link: String,
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
    /// The DICOM objects radassist made for the study (as sent to the PACS), to download.
    results: Vec<super::results::ResultView>,
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
    let statements = views::statements(draft, &analysis);
    let devices = views::devices(&analysis, &agreements);
    let findings = views::findings(draft, &analysis, &agreements);
    let prior = views::prior_date(&analysis);
    let final_read = views::final_read(&row);
    let results = super::results::views(&app, &uid).await?;
    let mine = row.status == WorkItemStatus::Claimed
        && row.claimed_by.as_deref() == Some(viewer.name.as_str());
    let data = serde_json::json!({
        "uid": uid,
        "editable": mine,
        "prior": !prior.is_empty(),
        "overlay": views::overlay(&analysis),
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
        viewer_link: app
            .viewer
            .as_ref()
            .map(|_| super::ohif::study_link(&uid))
            .unwrap_or_default(),
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
        results,
        data,
        uid,
    }))
}

//! Between the domain and the wire: the one place where stored rows, drafts, analyses and QA
//! comparisons become protobuf messages (and resource names become UIDs).

use super::proto::{self, study, work_item, FinalRead, WorkItem};
use crate::analysis::StudyAnalysis;
use crate::dicom::uid::check_uid;
use crate::draft::{Draft, Evidence};
use crate::excerpt::excerpt;
use crate::store::lifecycle::{StudyState, WorkItemStatus};
use crate::store::{StoreError, StudyRow, WorkItemRow};
use prost::Message;
use tonic::Status;

pub fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::NotFound(m) => Status::not_found(m),
        StoreError::Precondition(m) => Status::failed_precondition(m),
        other => {
            tracing::error!("store: {other}");
            Status::internal("the store failed; the operation was not done: retry, and tell the administrator if it persists")
        }
    }
}

/// "studies/{uid}" or "workItems/{uid}" -> uid, the uid a DICOM UID (PS3.5 9.1).
pub fn uid_of(name: &str, collection: &str) -> Result<String, Status> {
    let Some(uid) = name
        .strip_prefix(collection)
        .and_then(|rest| rest.strip_prefix('/'))
    else {
        return Err(Status::invalid_argument(format!(
            "name {} is not \"{collection}/{{uid}}\"",
            excerpt(name)
        )));
    };
    check_uid(uid).map_err(|e| {
        Status::invalid_argument(format!(
            "name {} is not \"{collection}/{{uid}}\": its uid is not a DICOM UID: {e}",
            excerpt(name)
        ))
    })?;
    Ok(uid.to_string())
}

pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn millis(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

pub fn study_state(state: StudyState) -> study::State {
    match state {
        StudyState::Receiving => study::State::Receiving,
        StudyState::Queued => study::State::Queued,
        StudyState::Analyzing => study::State::Analyzing,
        StudyState::DraftReady => study::State::DraftReady,
        StudyState::Failed => study::State::Failed,
        StudyState::Signed => study::State::Signed,
        StudyState::Prior => study::State::Prior,
    }
}

pub fn work_item_status(status: WorkItemStatus) -> work_item::Status {
    match status {
        WorkItemStatus::Unclaimed => work_item::Status::Unclaimed,
        WorkItemStatus::Claimed => work_item::Status::Claimed,
        WorkItemStatus::Signed => work_item::Status::Signed,
    }
}

pub fn study_message(row: StudyRow) -> proto::Study {
    proto::Study {
        name: format!("studies/{}", row.study_instance_uid),
        state: study_state(row.state) as i32,
        instance_count: row.instance_count,
        last_instance_time: Some(timestamp(row.last_instance_at)),
        attempts: row.attempts,
        failure_reason: row.failure_reason,
    }
}

pub fn work_item_message(row: &WorkItemRow) -> Result<WorkItem, Status> {
    let mut item = WorkItem::decode(row.template.as_slice())
        .map_err(|e| Status::internal(format!("stored work item: {e}")))?;
    item.status = work_item_status(row.status) as i32;
    item.claimed_by = row.claimed_by.clone().unwrap_or_default();
    item.priority = row.priority as i32;
    item.critical = row.critical;
    item.create_time = Some(timestamp(row.created_at));
    item.images_after_signing_time = row.images_after_signing.map(timestamp);
    item.final_read = match &row.final_read {
        Some(bytes) => Some(
            FinalRead::decode(bytes.as_slice())
                .map_err(|e| Status::internal(format!("stored final read: {e}")))?,
        ),
        None => None,
    };
    Ok(item)
}

/// The QA pair of a work item's draft and a final read.
pub fn study_pair(row: &WorkItemRow, read: &FinalRead) -> Result<crate::qa::StudyPair, Status> {
    let item = work_item_message(row)?;
    let draft = item.draft.unwrap_or_default();
    Ok(crate::qa::StudyPair {
        id: serde_json::Value::String(row.study_instance_uid.clone()),
        draft: draft.text,
        final_read: read.text.clone(),
        model_version: Some(row.model_version.clone()),
        date: None,
        draft_devices: item
            .devices
            .iter()
            .filter(|d| d.verdict != "absent")
            .map(|d| (d.device.clone(), d.verdict.clone()))
            .collect(),
        final_devices: read
            .devices
            .iter()
            .map(|d| (d.device.clone(), d.verdict.clone()))
            .collect(),
    })
}

pub fn comparison_message(
    uid: &str,
    comparison: &crate::qa::StudyComparison,
) -> proto::StudyComparison {
    proto::StudyComparison {
        study: format!("studies/{uid}"),
        observations: comparison
            .labels
            .iter()
            .map(|(o, a)| proto::ObservationComparison {
                observation: o.to_string(),
                draft_label: a.draft.as_str().into(),
                final_label: a.final_read.as_str().into(),
                agrees: a.agree,
            })
            .collect(),
        devices: comparison
            .devices
            .iter()
            .map(|d| proto::DeviceComparison {
                device: d.device.clone(),
                draft_verdict: d.draft.clone().unwrap_or_default(),
                final_verdict: d.final_read.clone().unwrap_or_default(),
                agrees: d.agree,
            })
            .collect(),
        edit_distance: comparison.edit_distance as u32,
        edit_fraction: comparison.edit_fraction,
    }
}

pub fn agreement_message(a: &crate::qa::Agreement) -> proto::Agreement {
    let interval = |e: &crate::qa::Estimate| proto::Interval {
        value: e.value.unwrap_or(f64::NAN),
        low: e.low.unwrap_or(f64::NAN),
        high: e.high.unwrap_or(f64::NAN),
    };
    proto::Agreement {
        studies: a.studies as u32,
        observations: a
            .observations
            .iter()
            .map(|o| proto::ObservationStatistics {
                observation: o.observation.name().into(),
                true_positive: o.table.true_positive as u32,
                false_positive: o.table.false_positive as u32,
                false_negative: o.table.false_negative as u32,
                true_negative: o.table.true_negative as u32,
                sensitivity: Some(interval(&o.sensitivity)),
                ppv: Some(interval(&o.ppv)),
                f1: o.f1.unwrap_or(f64::NAN),
                kappa: Some(interval(&o.kappa)),
            })
            .collect(),
        device_agreement: a.device_agreement.value.unwrap_or(f64::NAN),
    }
}
/// An enum's name as the API writes it (its serde name: `endotracheal_tube`, `not_assessable`).
pub fn api_name(value: impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A piece of evidence as the API (and the reading room) describes it.
pub fn evidence(e: &Evidence) -> proto::Evidence {
    let (kind, description, value, unit) = match e {
        Evidence::ModelOutput {
            model,
            observation,
            probability,
            threshold,
        } => (
            "model_output",
            format!("{model}: {observation} {probability:.2} (threshold {threshold:.2})"),
            f64::from(*probability),
            "probability".to_string(),
        ),
        Evidence::Measurement {
            name,
            value,
            unit,
            verdict,
            ..
        } => (
            "measurement",
            format!("{name} {value:.1} ({})", verdict.as_str()),
            *value,
            unit.symbol().to_string(),
        ),
        Evidence::Landmark {
            model,
            name,
            x,
            y,
            confidence,
        } => (
            "landmark",
            format!("{model}: {name} at ({x:.1}, {y:.1}) px, confidence {confidence:.2}"),
            f64::from(*confidence),
            "confidence".to_string(),
        ),
        Evidence::Comparison {
            prior_study_date,
            subject,
            change,
            current_value,
            ..
        } => (
            "comparison",
            format!(
                "{subject}: {change} since {}",
                prior_study_date.as_deref().unwrap_or("the prior")
            ),
            current_value.unwrap_or(f64::NAN),
            String::new(),
        ),
        Evidence::PriorSearch { peers, reason } => (
            "prior_search",
            format!("no prior retrieved from {}: {reason}", peers.join(", ")),
            f64::NAN,
            String::new(),
        ),
    };
    proto::Evidence {
        kind: kind.into(),
        description,
        value,
        unit,
    }
}

fn statements(s: &[crate::draft::Statement]) -> Vec<proto::Statement> {
    s.iter()
        .map(|s| proto::Statement {
            text: s.text.clone(),
            critical: s.critical,
            evidence: s.evidence.iter().map(evidence).collect(),
        })
        .collect()
}

/// The work item the worker stores for a study: its fields, the draft with the evidence of each
/// sentence, and the device checks.
pub fn work_item_template(
    uid: &str,
    study: &StudyRow,
    patient_name: &str,
    draft: &Draft,
    analysis: &StudyAnalysis,
) -> WorkItem {
    WorkItem {
        patient_name: patient_name.to_string(),
        name: format!("workItems/{uid}"),
        study: format!("studies/{uid}"),
        critical: draft.critical,
        accession_number: study.accession_number.clone(),
        patient_id: study.patient_id.clone(),
        study_date: study.study_date.clone(),
        draft: Some(proto::Draft {
            text: draft.text.clone(),
            author: draft.author.clone(),
            preliminary: true,
            findings: statements(&draft.findings),
            impression: statements(&draft.impression),
            models: draft
                .models
                .iter()
                .map(|m| format!("{} {} {}", m.task, m.name, m.version))
                .collect(),
            warning: draft.warning.clone().unwrap_or_default(),
        }),
        devices: analysis
            .current
            .placement
            .devices
            .iter()
            .map(|d| proto::DeviceCheck {
                device: api_name(d.device),
                verdict: api_name(d.verdict),
                critical: d.critical,
                statement: d.statement.clone(),
                measurements: d
                    .measurements
                    .iter()
                    .map(|m| proto::Measurement {
                        name: m.name.clone(),
                        value: m.value,
                        unit: m.unit.symbol().to_string(),
                    })
                    .collect(),
            })
            .collect(),
        ..Default::default()
    }
}

//! Between the domain and the wire: the one place where stored rows, drafts, analyses and QA
//! comparisons become protobuf messages (and resource names become UIDs).

use super::proto::{self, study, work_item, FinalRead, StudyResult, WorkItem};
use crate::app;
use crate::dicom::uid::check_uid;
use crate::excerpt::excerpt;
use crate::store::documents::{
    device_name, verdict_name, DeviceAgreement, EvidenceNote, FindingAgreement, SignedRead,
    Statement,
};
use crate::store::lifecycle::{StudyState, WorkItemStatus};
use crate::store::{StudyRow, WorkItemRow};
use tonic::Status;

impl From<app::Error> for Status {
    fn from(e: app::Error) -> Status {
        match e {
            app::Error::NotFound(m) => Status::not_found(m),
            app::Error::Precondition(m) => Status::failed_precondition(m),
            app::Error::Invalid(m) => Status::invalid_argument(m),
            app::Error::Unavailable(m) => retry_later(m),
            internal @ app::Error::Internal { .. } => {
                tracing::error!("{}", internal.with_causes());
                Status::internal(app::INTERNAL)
            }
        }
    }
}

/// RESOURCE_EXHAUSTED with a `retry-after-ms` trailer: come back in a second.
pub fn retry_later(message: String) -> Status {
    let mut status = Status::resource_exhausted(message);
    status
        .metadata_mut()
        .insert("retry-after-ms", "1000".parse().expect("ascii"));
    status
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

/// A result object radassist made, as the API lists it.
pub fn study_result_message(made: &crate::store::MadeResult) -> StudyResult {
    StudyResult {
        sop_instance_uid: made.sop_instance_uid.clone(),
        object: made.object.as_str().into(),
        kind: made.kind.as_str().into(),
        sop_class_uid: made.object.sop_class_uid().into(),
        create_time: Some(timestamp(made.created_at)),
    }
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

/// A work item as the API shows it.
pub fn work_item_message(row: &WorkItemRow) -> WorkItem {
    let uid = &row.study_instance_uid;
    let content = &row.content;
    let statements = |list: &[Statement]| -> Vec<proto::Statement> {
        list.iter()
            .map(|s| proto::Statement {
                text: s.text.clone(),
                critical: s.critical,
                evidence: s.evidence.iter().map(evidence).collect(),
            })
            .collect()
    };
    WorkItem {
        name: format!("workItems/{uid}"),
        study: format!("studies/{uid}"),
        status: work_item_status(row.status) as i32,
        critical: row.critical,
        priority: row.priority as i32,
        claimed_by: row.claimed_by.clone().unwrap_or_default(),
        create_time: Some(timestamp(row.created_at)),
        accession_number: content.accession_number.clone(),
        patient_id: content.patient_id.clone(),
        study_date: content.study_date.clone(),
        draft: Some(proto::Draft {
            text: content.draft.text.clone(),
            author: content.draft.author.clone(),
            preliminary: true,
            findings: statements(&content.draft.findings),
            impression: statements(&content.draft.impression),
            models: content.draft.models.clone(),
            warning: content.draft.warning.clone().unwrap_or_default(),
        }),
        devices: content
            .devices
            .iter()
            .map(|d| proto::DeviceCheck {
                device: device_name(d.device),
                verdict: verdict_name(d.verdict),
                critical: d.critical,
                statement: d.statement.clone(),
                measurements: d
                    .measurements
                    .iter()
                    .map(|m| proto::Measurement {
                        name: m.name.clone(),
                        value: m.value.unwrap_or(f64::NAN),
                        unit: m.unit.clone(),
                    })
                    .collect(),
            })
            .collect(),
        final_read: row.final_read.as_ref().map(final_read_message),
        patient_name: content.patient_name.clone(),
        images_after_signing_time: row.images_after_signing.map(timestamp),
    }
}

/// A piece of evidence as the API describes it (NaN where it rests on no number).
fn evidence(e: &EvidenceNote) -> proto::Evidence {
    proto::Evidence {
        kind: e.kind.as_str().into(),
        description: e.description.clone(),
        value: e.value.unwrap_or(f64::NAN),
        unit: e.unit.clone(),
    }
}

/// A signed read as the API shows it.
pub fn final_read_message(read: &SignedRead) -> FinalRead {
    FinalRead {
        text: read.text.clone(),
        radiologist: read.radiologist.clone(),
        sign_time: Some(timestamp(read.signed_at)),
        findings: read
            .findings
            .iter()
            .map(|f| proto::FindingAgreement {
                observation: f.observation.clone(),
                agrees: f.agrees,
            })
            .collect(),
        devices: read
            .devices
            .iter()
            .map(|d| proto::DeviceAgreement {
                device: d.device.clone(),
                verdict: d.verdict.clone(),
                agrees: d.agrees,
            })
            .collect(),
        amendment: read.amendment as i32,
        amendment_reason: read.amendment_reason.clone(),
    }
}

/// The radiologist's agreements as a call sent them.
pub fn agreements(
    findings: Vec<proto::FindingAgreement>,
    devices: Vec<proto::DeviceAgreement>,
) -> (Vec<FindingAgreement>, Vec<DeviceAgreement>) {
    (
        findings
            .into_iter()
            .map(|f| FindingAgreement {
                observation: f.observation,
                agrees: f.agrees,
            })
            .collect(),
        devices
            .into_iter()
            .map(|d| DeviceAgreement {
                device: d.device,
                verdict: d.verdict,
                agrees: d.agrees,
            })
            .collect(),
    )
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

//! The QA comparison of a study's draft with its signed read: computed once when the read is
//! signed ([`super::reading`]) and kept with it; a study signed by an earlier version without
//! one is compared when asked.

use super::state::State;
use super::Error;
use crate::placement::Verdict;
use crate::qa::{compare_study, StudyComparison, StudyPair};
use crate::store::documents::{device_name, verdict_name, SignedRead};
use crate::store::WorkItemRow;

/// The QA pair of a work item's draft and a signed read.
pub fn study_pair(row: &WorkItemRow, read: &SignedRead) -> StudyPair {
    StudyPair {
        id: serde_json::Value::String(row.study_instance_uid.clone()),
        draft: row.content.draft.text.clone(),
        final_read: read.text.clone(),
        model_version: Some(row.model_version.clone()),
        date: None,
        draft_devices: row
            .content
            .devices
            .iter()
            .filter(|d| d.verdict != Verdict::Absent)
            .map(|d| (device_name(d.device), verdict_name(d.verdict)))
            .collect(),
        final_devices: read
            .devices
            .iter()
            .map(|d| (d.device.clone(), d.verdict.clone()))
            .collect(),
    }
}

/// The comparison of a signed item (None: not signed). Blocks (labelling is CPU work).
pub fn comparison(state: &State, row: &WorkItemRow) -> Result<Option<StudyComparison>, Error> {
    let Some(read) = &row.final_read else {
        return Ok(None);
    };
    if let Some(stored) = &row.comparison {
        return serde_json::from_str(stored).map(Some).map_err(|e| {
            Error::internal(
                format!("the stored comparison of study {}", row.study_instance_uid),
                e,
            )
        });
    }
    compare_study(&state.labeler, &study_pair(row, read), None)
        .map(Some)
        .map_err(|e| Error::internal("comparing the read with the draft", e))
}

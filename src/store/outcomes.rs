//! What a conditional update's row count means for its caller, the same for every backend: the
//! changed row, or the reason the change was refused (another caller won, or the state is wrong).

use super::{StoreError, WorkItemRow};
use crate::store::lifecycle::WorkItemStatus;

/// A claim: won, already held by the same radiologist, or refused with who holds it.
pub(super) fn claim_outcome(
    changed: u64,
    item: WorkItemRow,
    who: &str,
) -> Result<WorkItemRow, StoreError> {
    if changed == 1 {
        return Ok(item);
    }
    match (item.status, item.claimed_by.as_deref()) {
        (WorkItemStatus::Claimed, Some(holder)) if holder == who => Ok(item),
        (WorkItemStatus::Claimed, Some(holder)) => {
            Err(StoreError::Precondition(format!("claimed by {holder}")))
        }
        (status, _) => Err(StoreError::Precondition(format!(
            "the work item is {status}"
        ))),
    }
}

pub(super) fn release_outcome(changed: u64, item: WorkItemRow) -> Result<WorkItemRow, StoreError> {
    if changed == 1 {
        Ok(item)
    } else {
        Err(StoreError::Precondition(
            "you do not hold this work item's claim".into(),
        ))
    }
}

pub(super) fn sign_outcome(changed: u64, item: WorkItemRow) -> Result<WorkItemRow, StoreError> {
    if changed == 1 {
        return Ok(item);
    }
    Err(StoreError::Precondition(format!(
        "sign only a work item you have claimed (it is {}{})",
        item.status,
        item.claimed_by
            .map(|h| format!(" by {h}"))
            .unwrap_or_default()
    )))
}

pub(super) fn amend_outcome(changed: u64, item: WorkItemRow) -> Result<WorkItemRow, StoreError> {
    if changed == 1 {
        return Ok(item);
    }
    Err(StoreError::Precondition(
        if item.status != WorkItemStatus::Signed {
            format!(
                "only a signed read can be amended (this one is {})",
                item.status
            )
        } else {
            "the read was amended by someone else meanwhile: reload it and amend the new one".into()
        },
    ))
}

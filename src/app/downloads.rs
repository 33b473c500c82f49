//! The result objects of a study, for download: what the reading room and the gRPC API offer
//! (the report SR in each of its versions, the measurement report, the presentation state and
//! the summary image), listed from the results catalogue and fetched as stored. A fetch hands
//! out patient data, so it is audited as the caller's.

use super::state::State;
use super::{Caller, Error};
use crate::store::MadeResult;

/// The objects made for study `uid`, oldest first; NotFound when the study has no work item.
pub async fn list(state: &State, uid: &str) -> Result<Vec<MadeResult>, Error> {
    state.work_item(uid).await?;
    let uid = uid.to_string();
    state.store_call(move |s| s.results_of(&uid)).await
}

/// The object `sop_instance_uid` of study `uid` and its bytes as stored (audited as `action`).
pub async fn fetch(
    state: &State,
    caller: &Caller,
    uid: &str,
    sop_instance_uid: &str,
    action: &str,
) -> Result<(MadeResult, Vec<u8>), Error> {
    let made = list(state, uid)
        .await?
        .into_iter()
        .find(|r| r.sop_instance_uid == sop_instance_uid)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "study {uid} has no result {sop_instance_uid}: list its results for their UIDs"
            ))
        })?;
    let sha256 = made.sha256.clone();
    let store = state.store.clone();
    let bytes = tokio::task::spawn_blocking(move || store.blobs().get(&sha256))
        .await
        .map_err(|e| Error::internal("reading the result", e))?
        .map_err(|e| Error::internal("reading the result", e))?;
    state
        .audit(
            caller,
            action,
            &format!("workItems/{uid}/results/{sop_instance_uid}"),
        )
        .await?;
    Ok((made, bytes))
}

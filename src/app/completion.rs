//! Completing studies: a PACS says a study is complete (gRPC's CompleteStudy), or it goes
//! quiet for `stable_study_seconds` and the timer here completes it. Either way the store's
//! conditional update queues its analysis once, however many front ends race for it.

use super::state::State;
use super::Error;
use crate::store::lifecycle::StudyState;
use crate::store::StudyRow;
use std::sync::Arc;
use std::time::Duration;

/// Completes study `uid` now: its analysis is queued when it has instances not analysed yet.
pub async fn complete(state: &State, uid: &str) -> Result<StudyRow, Error> {
    let row = {
        let uid = uid.to_string();
        state.store_call(move |s| s.complete_study(&uid)).await?
    };
    state.study_changed(uid, row.state == StudyState::Queued);
    Ok(row)
}

/// Completes the studies that have gone quiet, every half second, for ever.
pub async fn stable_study_timer(state: Arc<State>) {
    let quiet_ms = (state.config.stable_study_seconds * 1000) as i64;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let Ok(uids) = state.store_call(move |s| s.stable_studies(quiet_ms)).await else {
            continue;
        };
        for uid in uids {
            let completed = {
                let uid = uid.clone();
                state
                    .store_call(move |s| s.complete_stable_study(&uid, quiet_ms))
                    .await
            };
            if let Ok(Some(row)) = completed {
                state.study_changed(&uid, row.state == StudyState::Queued);
            }
        }
    }
}

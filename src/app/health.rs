//! Whether the service can do its work now: the catalogue and the blob store answer (the
//! metrics say so too), and the gauges that are read off other parts.

use super::state::State;

/// Whether the catalogue and the blob store answer now (a count, and the blob store's own
/// check), with the metrics set; why not, when they do not.
pub async fn store_health(state: &State) -> Result<(), String> {
    let catalogue = state.store_call(|s| s.queue_depth()).await;
    state.metrics.store_up.set(catalogue.is_ok() as i64);
    let blobs = {
        let store = state.store.clone();
        tokio::task::spawn_blocking(move || store.blobs().check())
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|checked| checked)
    };
    state.metrics.blobs_up.set(blobs.is_ok() as i64);
    catalogue.map_err(|e| format!("the catalogue does not answer: {e}"))?;
    blobs.map_err(|e| format!("the blob store does not answer: {e}"))
}

/// Whether ingest has room: the data disk is above its reserve (`[service] min_free_bytes`);
/// why not, when it is not (new instances are then answered "retry later").
pub async fn ingest_room(state: &State) -> Result<(), String> {
    let reserve = state.config.min_free_bytes;
    let store = state.store.clone();
    let full = tokio::task::spawn_blocking(move || {
        crate::app::ingest::below_reserve(store.as_ref(), 0, reserve)
    })
    .await
    .unwrap_or(None);
    match full {
        Some(reason) => Err(format!(
            "new instances are refused for now (RETRY_LATER, C-STORE A700): {reason}"
        )),
        None => Ok(()),
    }
}

/// Sets the gauges that are read off other parts (the queue, the outbox, the ingest memory).
pub async fn refresh_gauges(state: &State) {
    let depth = state.store_call(|s| s.queue_depth()).await.unwrap_or(-1);
    state.metrics.queue_depth.set(depth);
    let pending = state
        .store_call(|s| s.pending_results())
        .await
        .unwrap_or(-1);
    state.metrics.results_pending.set(pending);
    state
        .metrics
        .ingest_memory_bytes
        .set(state.ingest.memory_in_use() as i64);
    let store = state.store.clone();
    let free = tokio::task::spawn_blocking(move || store.blobs().free_bytes())
        .await
        .unwrap_or(None);
    state
        .metrics
        .store_free_bytes
        .set(free.map_or(-1, |f| f.min(i64::MAX as u64) as i64));
}

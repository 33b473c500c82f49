//! `grpc.health.v1` in step with what the service can do: while no analysis worker can run, or
//! the catalogue or the blob store does not answer ([`crate::app::health`]), the server (and
//! IngestService: do not send studies that cannot be stored or analysed) is NOT_SERVING; and
//! IngestService alone while the data disk is at its reserve (`[service] min_free_bytes`).

use super::proto;
use crate::app::worker::AnalysisHealth;
use crate::app::State;
use std::sync::Arc;
use std::time::Duration;

/// How often the store and the blob store are looked at.
const STORE_CHECK: Duration = Duration::from_secs(5);

/// Sets `service`'s status when it changed since `was`, and logs why.
async fn report(
    reporter: &tonic_health::server::HealthReporter,
    service: &str,
    was: &mut Option<Result<(), String>>,
    now: Result<(), String>,
) {
    if was.as_ref() == Some(&now) {
        return;
    }
    let status = if now.is_ok() {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    reporter.set_service_status(service, status).await;
    let name = if service.is_empty() {
        "the server"
    } else {
        service
    };
    match &now {
        Err(reason) => tracing::error!("health NOT_SERVING ({name}): {reason}"),
        Ok(()) if was.is_some() => tracing::info!("health SERVING again ({name})"),
        Ok(()) => {}
    }
    *was = Some(now);
}

/// Follows the workers' health and the store's until the workers' channel closes. IngestService
/// is also NOT_SERVING while the data disk is at its reserve (the rest of the server serves on:
/// signing and the outbox still write).
pub async fn follow(
    reporter: tonic_health::server::HealthReporter,
    mut health: tokio::sync::watch::Receiver<AnalysisHealth>,
    state: Arc<State>,
) {
    let mut tick = tokio::time::interval(STORE_CHECK);
    let (mut server_was, mut ingest_was) = (None, None);
    loop {
        let analysis = match health.borrow_and_update().clone() {
            AnalysisHealth::Unavailable(reason) => Err(reason),
            _ => Ok(()),
        };
        let server = match analysis {
            Ok(()) => crate::app::health::store_health(&state).await,
            Err(reason) => Err(reason),
        };
        let ingest = match &server {
            Ok(()) => crate::app::health::ingest_room(&state).await,
            Err(reason) => Err(reason.clone()),
        };
        report(&reporter, "", &mut server_was, server).await;
        let ingest_service = proto::ingest_service_server::SERVICE_NAME;
        report(&reporter, ingest_service, &mut ingest_was, ingest).await;
        tokio::select! {
            changed = health.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
        }
    }
}

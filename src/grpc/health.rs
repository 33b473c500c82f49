//! `grpc.health.v1` in step with what the service can do: while no analysis worker can run, or
//! the catalogue or the blob store does not answer ([`crate::app::health`]), the server (and
//! IngestService: do not send studies that cannot be stored or analysed) is NOT_SERVING.

use super::proto;
use crate::app::worker::AnalysisHealth;
use crate::app::State;
use std::sync::Arc;
use std::time::Duration;

/// How often the store and the blob store are looked at.
const STORE_CHECK: Duration = Duration::from_secs(5);

/// Follows the workers' health and the store's until the workers' channel closes.
pub async fn follow(
    reporter: tonic_health::server::HealthReporter,
    mut health: tokio::sync::watch::Receiver<AnalysisHealth>,
    state: Arc<State>,
) {
    let mut tick = tokio::time::interval(STORE_CHECK);
    let mut was: Option<Result<(), String>> = None;
    loop {
        let analysis = match health.borrow_and_update().clone() {
            AnalysisHealth::Unavailable(reason) => Err(reason),
            _ => Ok(()),
        };
        let now = match analysis {
            Ok(()) => crate::app::health::store_health(&state).await,
            Err(reason) => Err(reason),
        };
        if was.as_ref() != Some(&now) {
            let status = if now.is_ok() {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            reporter
                .set_service_status(proto::ingest_service_server::SERVICE_NAME, status)
                .await;
            match &now {
                Err(reason) => tracing::error!("health NOT_SERVING: {reason}"),
                Ok(()) if was.is_some() => tracing::info!("health SERVING again"),
                Ok(()) => {}
            }
            was = Some(now);
        }
        tokio::select! {
            changed = health.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
        }
    }
}

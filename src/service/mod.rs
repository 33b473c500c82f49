//! The gRPC service: where PACS, radiologists and QA meet radassist.
//!
//! `radassist serve` runs [`serve`]. The parts, in the order a study meets them:
//! - [`auth`]: one tower layer checks every call's bearer token against the table of RPC ->
//!   roles, and puts the [`auth::Caller`] in the request; [`rpc_limits`] caps what a call
//!   may send (4 MiB, but for the instance upload);
//! - [`ingest_service`] and [`ingest`]: instances received, validated, stored durably
//!   ([`crate::store`]: the catalogue in SQLite, the blobs in a [`store::BlobStore`]) and
//!   acknowledged;
//! - [`crate::dimse`]: the DICOM node (listener, sender, queries) takes instances into the
//!   same path;
//! - the stable-study timer here completes studies that went quiet;
//! - [`worker`] and [`job`]: a pool of analysis workers sharing batched models turns each
//!   queued study into its work item (analysis, prior comparison, draft);
//! - [`worklist_service`], [`quality_service`], [`model_service`]: the worklist, QA, and the
//!   admin's view of models and jobs; [`signing`]: signing and amending a read;
//! - [`lifecycle`] (in the store): every state and change; [`convert`]: domain <-> proto; [`state`]: what the
//!   parts share; [`metrics`]: Prometheus text at `/metrics`; [`watch`]: server streams.
//!
//! Health (`grpc.health.v1`) and reflection are served too, so grpcurl and grpcui work. On
//! SIGINT or SIGTERM the service stops taking calls, lets those in flight finish
//! (acknowledgements included), lets each worker finish its current job, and exits.

pub mod auth;
pub mod convert;
pub mod expected_priors;
pub mod ingest;
pub mod ingest_limits;
pub mod ingest_service;
pub mod job;
pub mod metrics;
pub mod model_service;
pub mod process_role;
pub mod quality_service;
pub mod relay;
pub mod results;
pub mod rpc_limits;
pub mod signing;
pub mod state;
pub mod watch;
pub mod worker;
pub mod worklist_service;

pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("radassist.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("radassist_descriptor");
}

use crate::config::{Config, StoreBackend};
use crate::store::{self, lifecycle};
use ingest_service::IngestApi;
use metrics::Metrics;
use model_service::ModelApi;
pub use process_role::ProcessRole;
use proto::ingest_service_server::IngestServiceServer;
use proto::model_service_server::ModelServiceServer;
use proto::quality_service_server::QualityServiceServer;
use proto::worklist_service_server::WorklistServiceServer;
use quality_service::QualityApi;
use state::State;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use worker::{AnalysisHealth, WorkerPool};
use worklist_service::WorklistApi;

/// Writes a line for the operator on stderr. Unlike `eprintln!`, a closed stderr (the
/// terminal or the supervisor's pipe gone) is ignored: it must never stop the service.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// How long in-flight calls get to finish after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Largest gRPC message (a chunk of an instance, or a rendered image).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// SIGINT or SIGTERM, the handlers installed now (before the service says it listens, so a
/// signal that follows that line at once is a clean stop, not the default kill).
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| format!("handling SIGTERM: {e}"))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| format!("handling SIGINT: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// Sets the gauges that are read off other parts (the queue, the ingest memory).
async fn refresh_gauges(state: &State) {
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
}

/// Serves /metrics on `service.metrics_listen` (unless it is "").
async fn start_metrics(state: &Arc<State>) -> Result<(), String> {
    let listen = &state.config.metrics_listen;
    if listen.is_empty() {
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("metrics_listen {listen}: {e}"))?;
    say!(
        "radassist: metrics on http://{}/metrics",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    tokio::spawn(serve_metrics(listener, state.clone()));
    Ok(())
}

async fn serve_metrics(listener: tokio::net::TcpListener, state: Arc<State>) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors (EMFILE) and the like: accepting again at once
                // would spin; wait for connections to close.
                tracing::warn!("metrics: accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let state = state.clone();
                    async move {
                        if request.uri().path() == "/metrics" {
                            refresh_gauges(&state).await;
                            hyper::Response::builder()
                                .header(
                                    "content-type",
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                )
                                .body(Full::new(Bytes::from(state.metrics.text())))
                        } else {
                            hyper::Response::builder()
                                .status(404)
                                .body(Full::new(Bytes::from("see /metrics\n")))
                        }
                    }
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Completes the studies that have gone quiet, every half second.
async fn stable_study_timer(state: Arc<State>) {
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
                state.study_changed(&uid, row.state == lifecycle::StudyState::Queued);
            }
        }
    }
}

/// How often the store and the blob store are looked at for health.
const STORE_CHECK: Duration = Duration::from_secs(5);

/// Whether the catalogue and the blob store answer now (a count, and the blob store's own
/// check), with the metrics set; why not, when they do not.
async fn store_health(state: &State) -> Result<(), String> {
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
    catalogue.map_err(|e| format!("the catalogue does not answer: {}", e.message()))?;
    blobs.map_err(|e| format!("the blob store does not answer: {e}"))
}

/// Keeps gRPC health in step with what the service can do: while no analysis worker can run,
/// or the catalogue or the blob store does not answer, the server (and IngestService: do not
/// send studies that cannot be stored or analysed) is NOT_SERVING.
async fn follow_health(
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
            Ok(()) => store_health(&state).await,
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

/// Whether `listen` may serve in plain text: loopback always; elsewhere only when the site
/// says a TLS-terminating proxy is in front.
pub(crate) fn check_plaintext(
    address: std::net::SocketAddr,
    tls: bool,
    allow_plaintext: bool,
) -> Result<(), String> {
    if tls || address.ip().is_loopback() {
        return Ok(());
    }
    if allow_plaintext {
        tracing::warn!("serving without TLS on {address} (allow_plaintext = true): a TLS-terminating proxy must be in front");
        return Ok(());
    }
    Err(format!(
        "listen {address} is not loopback and TLS is not configured: bearer tokens and patient data would cross the network in clear text. Set service.tls_cert and service.tls_key, or, behind a TLS-terminating proxy, service.allow_plaintext = true"
    ))
}

/// Runs the service in `role` until SIGINT or SIGTERM.
pub async fn serve(config: Config, role: ProcessRole) -> Result<(), String> {
    let sc = config.service.clone();
    role.check(&config)?;
    if role.serves() && sc.tokens.is_empty() {
        return Err(
            "no [[service.tokens]] in the configuration: nobody could call the service".into(),
        );
    }
    if role == ProcessRole::All {
        if let Some(peer) = config.dicom.peers.iter().find(|p| p.query_priors) {
            if config.dicom.listen.is_empty() {
                return Err(format!(
                    "dicom.peers {:?} has query_priors, but dicom.listen is empty: priors arrive by C-MOVE to radassist's own listener, so set dicom.listen",
                    peer.ae_title
                ));
            }
        }
    }
    let store: Arc<dyn store::Store> = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || store::open_store(&config, store::Recovery::Owner))
            .await
            .map_err(|e| e.to_string())??
    };
    let metrics = Arc::new(Metrics::new());
    // Every TLS peer's certificates are read now: a wrong path stops the start, not a send.
    let client_tls = crate::dimse::tls::client_configs(&config.dicom, &sc)?;
    let state = Arc::new(State::new(
        store,
        sc.clone(),
        metrics,
        &config.dicom,
        &client_tls,
    ));
    if config.store.backend == StoreBackend::Postgres {
        let relay = relay::start(&config.store, &state)?;
        let _ = state.relay.set(relay);
    }
    if role == ProcessRole::Worker {
        return work(state, config).await;
    }
    let tls = match (&sc.tls_cert, &sc.tls_key) {
        (Some(cert), Some(key)) => {
            let read =
                |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
            Some(tonic::transport::Identity::from_pem(
                read(cert)?,
                read(key)?,
            ))
        }
        _ => None,
    };
    // Checked before anything is bound: every address the name stands for.
    for address in tokio::net::lookup_host(&sc.listen)
        .await
        .map_err(|e| format!("listen {}: {e}", sc.listen))?
    {
        check_plaintext(address, tls.is_some(), sc.allow_plaintext)?;
    }
    let stop_signal = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(&sc.listen)
        .await
        .map_err(|e| format!("listen {}: {e}", sc.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;

    let stop = Arc::new(AtomicBool::new(false));
    let (health_tx, health_rx) = tokio::sync::watch::channel(AnalysisHealth::Loading);
    let workers = if role.analyses() {
        Some(WorkerPool::start(
            state.clone(),
            config.clone(),
            stop.clone(),
            health_tx,
        )?)
    } else {
        // The workers are other processes: this one takes studies for them.
        let _ = health_tx.send(AnalysisHealth::Serving { workers: 0 });
        None
    };
    tokio::spawn(stable_study_timer(state.clone()));
    start_metrics(&state).await?;

    if let Some(dicom) = crate::dimse::Listener::bind(&config.dicom, &sc, state.clone()).await? {
        say!(
            "radassist: DICOM listener on {} (AE title {}{})",
            dicom.local_addr()?,
            config.dicom.ae_title,
            if config.dicom.tls { ", TLS" } else { "" }
        );
        tokio::spawn(dicom.run());
    }
    if let Some((url, web)) = crate::web::bind(&config, state.clone()).await? {
        say!("radassist: web app on {url}");
        tokio::spawn(web);
    }
    tokio::spawn(crate::dimse::sender::supervise(
        state.clone(),
        config.dicom.peers.clone(),
        client_tls,
        config.dicom.ae_title.clone(),
    ));

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<IngestServiceServer<IngestApi>>().await;
    health
        .set_serving::<WorklistServiceServer<WorklistApi>>()
        .await;
    health
        .set_serving::<QualityServiceServer<QualityApi>>()
        .await;
    health.set_serving::<ModelServiceServer<ModelApi>>().await;
    tokio::spawn(follow_health(health, health_rx, state.clone()));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| format!("reflection: {e}"))?;
    // Large receive windows: an instance is megabytes, and the default 64 KiB HTTP/2 window
    // would make every instance wait on flow-control round trips. Large frames: with the
    // default 16 KiB, a 2 MB instance is 128 DATA frames, each handled on its own by both ends.
    let mut builder = tonic::transport::Server::builder()
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(32 << 20))
        .max_frame_size(Some(1 << 20));
    if let Some(identity) = tls.clone() {
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| format!("TLS: {e}"))?;
    }
    say!(
        "radassist: listening on {address}{}",
        if tls.is_some() { " (TLS)" } else { "" }
    );
    // On SIGINT/SIGTERM: stop taking calls, let those in flight finish, but not forever (an idle
    // client connection must not hold the process).
    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    let signal = async move {
        stop_signal.await;
        say!("radassist: stopping: finishing the calls in flight (at most {SHUTDOWN_GRACE:?})");
        let _ = stopping_tx.send(true);
    };
    let grace = async move {
        let _ = stopping.wait_for(|s| *s).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let serving = builder
        .layer(metrics::RpcMetricsLayer(state.metrics.clone()))
        .layer(auth::AuthLayer::new(&sc.tokens))
        .layer(rpc_limits::RpcLimitsLayer)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            IngestServiceServer::new(IngestApi(state.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            WorklistServiceServer::new(WorklistApi(state.clone()))
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(QualityServiceServer::new(QualityApi(state.clone())))
        .add_service(ModelServiceServer::new(ModelApi(state.clone())))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            signal,
        );
    let result = tokio::select! {
        served = serving => served.map_err(|e| format!("serving: {e}")),
        _ = grace => {
            say!("radassist: calls still open after {SHUTDOWN_GRACE:?}: closing them");
            Ok(())
        }
    };
    say!("radassist: shutting down: the workers finish their current jobs");
    stop.store(true, Ordering::Relaxed);
    state.jobs.notify();
    if let Some(workers) = workers {
        let _ = tokio::task::spawn_blocking(move || workers.join()).await;
    }
    result
}

/// A worker process: analysis and metrics only, until SIGINT or SIGTERM; then the jobs in
/// hand are finished.
async fn work(state: Arc<State>, config: Config) -> Result<(), String> {
    let stop_signal = shutdown_signal()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (health_tx, mut health) = tokio::sync::watch::channel(AnalysisHealth::Loading);
    let workers = WorkerPool::start(state.clone(), config.clone(), stop.clone(), health_tx)?;
    let sc = &config.service;
    start_metrics(&state).await?;
    say!(
        "radassist: worker taking jobs ({} analysis workers)",
        sc.analysis_workers
    );
    tokio::spawn(async move {
        while health.changed().await.is_ok() {
            if let AnalysisHealth::Unavailable(reason) = &*health.borrow() {
                tracing::error!("analysis unavailable: {reason}");
            }
        }
    });
    stop_signal.await;
    say!("radassist: shutting down: the workers finish their current jobs");
    stop.store(true, Ordering::Relaxed);
    state.jobs.notify();
    let _ = tokio::task::spawn_blocking(move || workers.join()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_plaintext;

    #[test]
    fn plaintext_is_refused_outside_loopback_unless_allowed() {
        let loopback = "127.0.0.1:50051".parse().unwrap();
        let v6_loopback = "[::1]:50051".parse().unwrap();
        let everywhere = "0.0.0.0:50051".parse().unwrap();
        assert!(check_plaintext(loopback, false, false).is_ok());
        assert!(check_plaintext(v6_loopback, false, false).is_ok());
        let refused = check_plaintext(everywhere, false, false).unwrap_err();
        assert!(refused.contains("allow_plaintext"), "{refused}");
        assert!(check_plaintext(everywhere, true, false).is_ok());
        assert!(check_plaintext(everywhere, false, true).is_ok());
    }
}

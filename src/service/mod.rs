//! The gRPC service: where PACS, radiologists and QA meet radassist.
//!
//! `radassist serve` runs [`serve`]: the store ([`store`]: blobs and SQLite) opened (jobs a
//! crash interrupted are queued again), the analysis worker thread ([`worker`]), a timer that
//! completes studies that have gone quiet, the gRPC services ([`server`]: ingest, worklist,
//! quality, models; `grpc.health.v1` health and server reflection, so grpcurl and grpcui work),
//! TLS when configured, and Prometheus metrics over HTTP. On SIGINT or SIGTERM it stops taking
//! calls, lets those in flight finish (acknowledgements included), stops the worker after its
//! current job, and exits.

mod durable_file;
pub mod ingest;
pub mod server;
pub mod store;
pub mod worker;

pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("radassist.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("radassist_descriptor");
}

use crate::config::Config;
use proto::ingest_service_server::IngestServiceServer;
use proto::model_service_server::ModelServiceServer;
use proto::quality_service_server::QualityServiceServer;
use proto::worklist_service_server::WorklistServiceServer;
use server::{Metrics, Services, State};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long in-flight calls get to finish after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Largest gRPC message (a chunk of an instance, or a rendered image).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

async fn serve_metrics(listener: tokio::net::TcpListener, state: Arc<State>) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let state = state.clone();
                    async move {
                        let response = if request.uri().path() == "/metrics" {
                            hyper::Response::builder()
                                .header("content-type", "text/plain; version=0.0.4")
                                .body(Full::new(Bytes::from(server::metrics_text(&state))))
                        } else {
                            hyper::Response::builder()
                                .status(404)
                                .body(Full::new(Bytes::from("see /metrics\n")))
                        };
                        response
                    }
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Runs the service until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> Result<(), String> {
    let sc = config.service.clone();
    if sc.tokens.is_empty() {
        return Err(
            "no [[service.tokens]] in the configuration: nobody could call the service".into(),
        );
    }
    let store = Arc::new(
        store::SqliteStore::open(&sc.data_dir)
            .map_err(|e| format!("{}: {e}", sc.data_dir.display()))?,
    );
    let metrics = Arc::new(Metrics::default());
    let state = Arc::new(State::new(store.clone(), sc.clone(), metrics));

    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (state, config, stop) = (state.clone(), config.clone(), stop.clone());
        std::thread::Builder::new()
            .name("analysis-worker".into())
            .spawn(move || worker::run(state, config, stop))
            .map_err(|e| format!("starting the worker: {e}"))?
    };
    // Studies that went quiet are complete.
    {
        let state = state.clone();
        let quiet_ms = (sc.stable_study_seconds * 1000) as i64;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                if let Ok(uids) = state.store.stable_studies(quiet_ms) {
                    for uid in uids {
                        if state.store.complete_study(&uid).is_ok() {
                            let _ = state.events.send(server::Event::Study(uid));
                        }
                    }
                }
            }
        });
    }
    if !sc.metrics_listen.is_empty() {
        let listener = tokio::net::TcpListener::bind(&sc.metrics_listen)
            .await
            .map_err(|e| format!("metrics_listen {}: {e}", sc.metrics_listen))?;
        eprintln!(
            "radassist: metrics on http://{}/metrics",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        tokio::spawn(serve_metrics(listener, state.clone()));
    }

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<IngestServiceServer<Services>>().await;
    health
        .set_serving::<WorklistServiceServer<Services>>()
        .await;
    health.set_serving::<QualityServiceServer<Services>>().await;
    health.set_serving::<ModelServiceServer<Services>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| format!("reflection: {e}"))?;
    let services = Services(state.clone());
    // Large receive windows: an instance is megabytes, and the default 64 KiB HTTP/2 window
    // would make every instance wait on flow-control round trips. Large frames: with the
    // default 16 KiB, a 2 MB instance is 128 DATA frames, each handled on its own by both ends.
    let mut builder = tonic::transport::Server::builder()
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(32 << 20))
        .max_frame_size(Some(1 << 20));
    let tls = match (&sc.tls_cert, &sc.tls_key) {
        (Some(cert), Some(key)) => {
            let read =
                |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
            let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
            builder = builder
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .map_err(|e| format!("TLS: {e}"))?;
            true
        }
        _ => false,
    };
    let listener = tokio::net::TcpListener::bind(&sc.listen)
        .await
        .map_err(|e| format!("listen {}: {e}", sc.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    if !tls && !address.ip().is_loopback() {
        tracing::warn!("serving without TLS on {address}, which is not loopback: set service.tls_cert and tls_key");
    }
    eprintln!(
        "radassist: listening on {address}{}",
        if tls { " (TLS)" } else { "" }
    );
    // On SIGINT/SIGTERM: stop taking calls, let those in flight finish, but not forever (an idle
    // client connection must not hold the process).
    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown_signal().await;
        eprintln!(
            "radassist: stopping: finishing the calls in flight (at most {SHUTDOWN_GRACE:?})"
        );
        let _ = stopping_tx.send(true);
    };
    let grace = async move {
        let _ = stopping.wait_for(|s| *s).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let serving = builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            IngestServiceServer::new(services.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            WorklistServiceServer::new(services.clone())
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(QualityServiceServer::new(services.clone()))
        .add_service(ModelServiceServer::new(services))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            signal,
        );
    let result = tokio::select! {
        served = serving => served.map_err(|e| format!("serving: {e}")),
        _ = grace => {
            eprintln!("radassist: calls still open after {SHUTDOWN_GRACE:?}: closing them");
            Ok(())
        }
    };
    eprintln!("radassist: shutting down: the worker finishes its current job");
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || worker.join()).await;
    result
}

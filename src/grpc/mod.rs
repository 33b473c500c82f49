//! The gRPC API: where PACS, radiologists, QA and admins call radassist.
//!
//! [`auth`]: one tower layer checks every call's bearer token against the table of RPC ->
//! roles and puts the [`crate::app::Caller`] in the request; [`rpc_limits`] caps what a call
//! may send (4 MiB, but for the instance upload); [`rpc_metrics`] times every call. Each service
//! has its file ([`ingest_service`], [`worklist_service`], [`quality_service`],
//! [`model_service`]) and calls the core ([`crate::app`]); [`convert`] turns rows into messages
//! and the core's errors into statuses; [`watch`] feeds server streams; [`health`] keeps
//! `grpc.health.v1` in step with what the service can do. Reflection is served too, so grpcurl
//! and grpcui work.

pub(crate) mod auth;
pub mod convert;
pub(crate) mod health;
pub(crate) mod ingest_service;
pub(crate) mod model_service;
pub(crate) mod quality_service;
pub(crate) mod rpc_limits;
pub(crate) mod rpc_metrics;
pub(crate) mod watch;
pub(crate) mod worklist_service;

pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("radassist.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("radassist_descriptor");
}

use crate::app::worker::AnalysisHealth;
use crate::app::State;
use crate::config::ServiceConfig;
use ingest_service::IngestApi;
use model_service::ModelApi;
use proto::ingest_service_server::IngestServiceServer;
use proto::model_service_server::ModelServiceServer;
use proto::quality_service_server::QualityServiceServer;
use proto::worklist_service_server::WorklistServiceServer;
use quality_service::QualityApi;
use std::future::Future;
use std::sync::Arc;
use worklist_service::WorklistApi;

/// Largest gRPC message (a chunk of an instance, or a rendered image).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The server's TLS identity, read from `tls_cert` and `tls_key` (None: plain text).
pub fn identity(config: &ServiceConfig) -> Result<Option<tonic::transport::Identity>, String> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let read =
                |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
            Ok(Some(tonic::transport::Identity::from_pem(
                read(cert)?,
                read(key)?,
            )))
        }
        _ => Ok(None),
    }
}

/// Serves the API on `listener` until `stop` resolves and the calls in flight have finished.
pub async fn serve(
    state: Arc<State>,
    listener: tokio::net::TcpListener,
    tls: Option<tonic::transport::Identity>,
    analysis: tokio::sync::watch::Receiver<AnalysisHealth>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<IngestServiceServer<IngestApi>>()
        .await;
    reporter
        .set_serving::<WorklistServiceServer<WorklistApi>>()
        .await;
    reporter
        .set_serving::<QualityServiceServer<QualityApi>>()
        .await;
    reporter.set_serving::<ModelServiceServer<ModelApi>>().await;
    tokio::spawn(health::follow(reporter, analysis, state.clone()));
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
    if let Some(identity) = tls {
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| format!("TLS: {e}"))?;
    }
    builder
        .layer(rpc_metrics::RpcMetricsLayer(state.metrics.clone()))
        .layer(auth::AuthLayer::new(&state.config.tokens))
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
            stop,
        )
        .await
        .map_err(|e| format!("serving: {e}"))
}

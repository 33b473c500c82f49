//! `/metrics` on `service.metrics_listen`: the core's [`crate::app::metrics::Metrics`] as
//! OpenMetrics text, the gauges read off the store when asked.

use crate::app::State;
use std::sync::Arc;
use std::time::Duration;

/// Serves /metrics on `service.metrics_listen` (unless it is "").
pub async fn start(state: &Arc<State>) -> Result<(), String> {
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
    tokio::spawn(serve(listener, state.clone()));
    Ok(())
}

async fn serve(listener: tokio::net::TcpListener, state: Arc<State>) {
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
                            crate::app::health::refresh_gauges(&state).await;
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

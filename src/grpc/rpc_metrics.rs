//! Every gRPC call timed into [`Metrics::rpc_seconds`], labelled by method and status code.

use crate::app::metrics::Metrics;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// Times every gRPC call into [`Metrics::rpc_seconds`].
#[derive(Clone)]
pub struct RpcMetricsLayer(pub std::sync::Arc<Metrics>);

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = Timed<S>;

    fn layer(&self, inner: S) -> Timed<S> {
        Timed {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Timed<S> {
    inner: S,
    metrics: std::sync::Arc<Metrics>,
}

impl<S, B, R> tower::Service<http::Request<B>> for Timed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();
        let started = Instant::now();
        Box::pin(async move {
            let response = inner.call(request).await;
            // Unary errors come back as a grpc-status header; streams may end with a trailer.
            let code = response
                .as_ref()
                .ok()
                .and_then(|r| r.headers().get("grpc-status"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("0")
                .to_string();
            metrics
                .rpc_seconds
                .get_or_create(&vec![("method", method), ("code", code)])
                .observe(started.elapsed().as_secs_f64());
            response
        })
    }
}

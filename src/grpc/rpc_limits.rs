//! How much a gRPC call may send: one tower layer in front of every service.
//!
//! Each service has tonic's limit on one message (`IngestService` 64 MiB, for an instance's
//! chunks; the others tonic's default, 4 MiB). But the limit is per service, not per method,
//! so `CompleteStudy`, `GetStudy` and `WatchStudy` would take 64 MiB names. [`RpcLimitsLayer`]
//! caps the whole request body of every call but `StoreInstances` at [`MAX_REQUEST_BYTES`]:
//! a call past it is answered RESOURCE_EXHAUSTED before its message is decoded.

use http_body_util::BodyExt;
use std::task::{Context, Poll};
use tonic::Status;

/// The most a call other than `StoreInstances` may send, all its messages together.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// The one streaming upload, limited per message and by the ingest memory instead.
const UNCAPPED: &str = "/radassist.v1.IngestService/StoreInstances";

#[derive(Debug, Clone, Copy, Default)]
pub struct RpcLimitsLayer;

impl<S> tower::Layer<S> for RpcLimitsLayer {
    type Service = RpcLimits<S>;

    fn layer(&self, inner: S) -> RpcLimits<S> {
        RpcLimits { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RpcLimits<S> {
    inner: S,
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for RpcLimits<S>
where
    S: tower::Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() == UNCAPPED {
            return self.inner.call(request);
        }
        let request = request.map(|body| {
            tonic::body::Body::new(http_body_util::Limited::new(body, MAX_REQUEST_BYTES).map_err(
                |e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        Status::resource_exhausted(format!(
                            "the request is larger than {MAX_REQUEST_BYTES} bytes, the most this call takes"
                        ))
                    } else {
                        Status::from_error(e)
                    }
                },
            ))
        });
        self.inner.call(request)
    }
}

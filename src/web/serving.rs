//! Accepting the reading room's connections: TCP, or TLS over TCP, then HTTP/1.1, each stage
//! under a deadline so that a client that connects and stalls cannot hold a connection open.
//!
//! A TLS handshake gets [`HANDSHAKE_TIMEOUT`]; a request's headers (and, on a kept-alive
//! connection, the next request's) get `web.request_timeout_seconds` (hyper's header read
//! timeout); its body gets the same, read in full before any handler runs ([`read_body`]),
//! at most [`MAX_BODY`] bytes ([`LOGIN_MAX_BODY`] for the login form). Written here rather than
//! through `axum::serve`, which sets no timer and so no header deadline at all; hyper and
//! tokio-rustls, which do the work, are the ones axum and tonic use already.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

use super::WebError;

/// A TLS handshake gets this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest form or JSON body a page sends (a report is a few KB).
pub const MAX_BODY: usize = 256 << 10;

/// The largest login form: a name of at most 64 characters and a password of at most 1,024
/// bytes ([`super::passwords::MAX_LENGTH`]), each percent-encoded, and the page to go to next.
pub const LOGIN_MAX_BODY: usize = 8 << 10;

/// How long a request's headers, and then its body, may take to arrive.
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeout(pub Duration);

/// Serves `router` on `tcp` (with TLS when `tls` is given) until the process ends.
pub async fn serve(
    tcp: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    timeout: Duration,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, remote) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors (EMFILE) and the like: accepting again at once would
                // spin; wait for connections to close.
                tracing::warn!("web: accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        match acceptor.clone() {
            None => {
                tokio::spawn(serve_connection(stream, remote, router, timeout));
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve_connection(tls, remote, router, timeout).await,
                        Ok(Err(e)) => tracing::debug!("web: TLS handshake with {remote}: {e}"),
                        Err(_) => tracing::debug!("web: TLS handshake with {remote} timed out"),
                    }
                });
            }
        }
    }
}

/// One connection's requests, each told where it came from (axum's [`ConnectInfo`]) and how
/// long its body may take.
async fn serve_connection<I>(io: I, remote: SocketAddr, router: Router, timeout: Duration)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = router.map_request(move |request: Request<hyper::body::Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(remote));
        request.extensions_mut().insert(RequestTimeout(timeout));
        request
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .serve_connection(
            TokioIo::new(io),
            hyper_util::service::TowerToHyperService::new(service),
        )
        .await;
    if let Err(e) = served {
        tracing::debug!("web: connection from {remote}: {e}");
    }
}

/// Runs before every route: the request's body read in full, within the request timeout and
/// the size limit, so that no handler waits on a client that sends a body slowly or never.
pub async fn read_body(request: Request<Body>, next: Next) -> Response {
    let limit = if request.uri().path() == "/login" {
        LOGIN_MAX_BODY
    } else {
        MAX_BODY
    };
    let timeout = request
        .extensions()
        .get::<RequestTimeout>()
        .map_or(Duration::from_secs(20), |t| t.0);
    let (parts, body) = request.into_parts();
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return WebError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request's body is larger than {limit} bytes, the most this page takes"
                ),
            )
            .into_response()
        }
        Err(_) => {
            let mut response = WebError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request's body did not arrive within {timeout:?}: send it again"),
            )
            .into_response();
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            return response;
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

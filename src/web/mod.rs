//! The reading room: the web app that radiologists, QA staff and IT open in a browser.
//!
//! `radassist serve` serves it beside the gRPC API (`[web] listen`), over HTTPS with the
//! service's certificate when TLS is configured. Pages are rendered on the server (axum and
//! askama templates, every value escaped) with a little JavaScript of our own for what must be
//! interactive: the image viewer, the editor's autosave, live worklist updates. Its assets are
//! compiled into the binary; nothing is fetched from anywhere at run time.
//!
//! The parts: [`session`] (login, cookies, CSRF), [`worklist`], [`reading`] (one study: the
//! draft, the devices, signing) with [`image`] (pixels for the viewer) and [`results`] (the
//! DICOM objects made for the study, to download), [`quality`] (QA, with [`chart`]),
//! [`admin`], [`dicomweb`] (PS3.18's search, retrieve and store, for PACS and viewers),
//! [`events`] (server-sent events), [`page`] (the templates), [`assets`] (stylesheet
//! and scripts) and [`passwords`]. Every response carries a strict Content-Security-Policy: no
//! inline script, nothing from another origin.

pub(crate) mod admin;
pub(crate) mod assets;
pub(crate) mod chart;
pub(crate) mod dicomweb;
pub(crate) mod events;
pub(crate) mod image;
pub(crate) mod ohif;
pub(crate) mod origins;
pub(crate) mod page;
pub mod passwords;
pub(crate) mod paths;
pub(crate) mod quality;
pub(crate) mod reading;
pub(crate) mod results;
pub(crate) mod serving;
pub mod session;
pub(crate) mod worklist;

use crate::app::State;
use crate::config::Config;
use crate::store::reading_room::SessionLimits;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// What every handler shares.
pub struct WebApp {
    pub state: Arc<State>,
    pub limits: SessionLimits,
    /// Served over TLS: cookies are Secure.
    pub secure: bool,
    /// Where the pages are served from: a login form from anywhere else is refused.
    pub origins: origins::Origins,
    /// The OHIF viewer, when `[web] viewer` names it.
    pub viewer: Option<Arc<ohif::ViewerApp>>,
    /// The origins whose pages may call DICOMweb (CORS).
    pub dicomweb_cors: Vec<String>,
    /// Where clients reach the listener (`[web] public_url`), without a trailing slash.
    pub public_url: Option<String>,
}

pub type App = Arc<WebApp>;

impl WebApp {
    /// The work item of study `uid` (NotFound says so).
    pub async fn work_item(&self, uid: &str) -> Result<crate::store::WorkItemRow, WebError> {
        Ok(self.state.work_item(uid).await?)
    }
}

/// How long a client told "not now" (503) waits before sending the same request again.
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// An error a page shows: its status and a sentence saying what was wrong and what to do.
#[derive(Debug)]
pub struct WebError {
    pub status: StatusCode,
    pub message: String,
    /// Where to send a browser that must log in first.
    login: Option<String>,
    /// Seconds after which the same request may succeed (a Retry-After header).
    retry_after: Option<u32>,
}

impl WebError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> WebError {
        WebError {
            status,
            message: message.into(),
            login: None,
            retry_after: None,
        }
    }

    /// Not now (503): the same request may succeed after `seconds`.
    pub fn retry_later(message: impl Into<String>, seconds: u32) -> WebError {
        WebError {
            retry_after: Some(seconds),
            ..WebError::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    pub fn internal(message: impl Into<String>) -> WebError {
        WebError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub fn not_found(message: impl Into<String>) -> WebError {
        WebError::new(StatusCode::NOT_FOUND, message)
    }

    /// Not logged in: a page redirects to the login, anything else gets 401.
    pub fn login_required(path: &str) -> WebError {
        WebError {
            status: StatusCode::UNAUTHORIZED,
            message: "you are not logged in (or your session has expired): log in again".into(),
            login: Some(path.to_string()),
            retry_after: None,
        }
    }
}

impl From<crate::app::Error> for WebError {
    fn from(e: crate::app::Error) -> WebError {
        use crate::app::Error;
        let status = match &e {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::Precondition(_) => StatusCode::CONFLICT,
            Error::Unavailable(_) => {
                return WebError::retry_later(e.to_string(), RETRY_AFTER_SECONDS)
            }
            Error::Internal { .. } => {
                tracing::error!("web: {}", e.with_causes());
                return WebError::internal(crate::app::INTERNAL);
            }
        };
        WebError::new(status, e.to_string())
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let Some(path) = &self.login {
            // Pages (and the worklist's fragments) go to the login page; the rest get 401.
            if !path.starts_with("/api/") {
                let to = format!("/login?next={}", session::percent_encode(path));
                return Redirect::to(&to).into_response();
            }
        }
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, "web: {}", self.message);
        }
        let mut response = page::error(self.status, &self.message).into_response();
        *response.status_mut() = self.status;
        // For scripts: the reason without parsing the page (newlines and non-ASCII dropped).
        let reason: String = self
            .message
            .chars()
            .map(|c| {
                if c.is_ascii() && !c.is_ascii_control() {
                    c
                } else {
                    ' '
                }
            })
            .collect();
        if let Ok(value) = HeaderValue::from_str(&reason) {
            response.headers_mut().insert("x-error-message", value);
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The headers every response carries: what the browser may load and run, that patient data
/// is neither cached nor leaked in a Referer, and how long the server took (Server-Timing).
async fn security_headers(
    axum::extract::State(app): axum::extract::State<App>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let mut response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    app.state
        .metrics
        .web_request(&route, response.status().as_u16(), seconds);
    let h = response.headers_mut();
    // The server's own time for this response (headers ready), for browsers' dev tools and
    // the benchmark (benches/web.rs).
    let ms = seconds * 1000.0;
    if let Ok(value) = HeaderValue::from_str(&format!("app;dur={ms:.2}")) {
        h.insert("server-timing", value);
    }
    // The OHIF viewer's routes set their own (ohif.rs).
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
                 connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on form
    // posts, and the login checks the Origin.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Every route of the app.
pub fn router(app: App) -> Router {
    let pages = Router::new()
        .route("/", get(|| async { Redirect::to("/worklist") }))
        .route("/logout", post(session::logout))
        .route("/worklist", get(worklist::page))
        .route("/worklist/rows", get(worklist::rows))
        .route("/events", get(events::stream))
        .route("/studies/{uid}", get(reading::page))
        .route("/studies/{uid}/claim", post(reading::claim))
        .route("/studies/{uid}/release", post(reading::release))
        .route("/studies/{uid}/draft", post(reading::save_draft))
        .route("/studies/{uid}/sign", post(reading::sign))
        .route("/studies/{uid}/amend", post(reading::amend))
        .route("/studies/{uid}/pixels", get(image::pixels))
        .route("/studies/{uid}/subtraction.png", get(image::subtraction))
        .route("/studies/{uid}/results/{sop}", get(results::download))
        .route("/qa", get(quality::page))
        .route("/qa/export.csv", get(quality::export))
        .route("/qa/studies/{uid}", get(quality::study))
        .route("/admin", get(admin::page))
        .route("/admin/jobs/{uid}/retry", post(admin::retry_job))
        .route("/admin/users/{name}/disabled", post(admin::set_disabled))
        .route_layer(middleware::from_fn_with_state(app.clone(), session::guard));
    // The reading room's requests are read whole before their handler runs; DICOMweb's stores
    // read theirs as they arrive, a part at a time.
    let reading_room = Router::new()
        .route("/login", get(session::login_page).post(session::login))
        .route("/assets/{name}", get(assets::serve))
        .merge(pages)
        .fallback(|| async { WebError::not_found("there is no such page in radassist") })
        .layer(middleware::from_fn(serving::read_body));
    Router::new()
        .nest(dicomweb::PREFIX, dicomweb::router(&app.dicomweb_cors))
        .nest(ohif::PREFIX, ohif::router(app.viewer.clone(), app.clone()))
        .route(&format!("{}/", ohif::PREFIX), get(ohif::to_app))
        .merge(reading_room)
        .layer(middleware::from_fn_with_state(
            app.clone(),
            security_headers,
        ))
        .with_state(app)
}

/// Binds the web app (None when `web.listen` is ""), and returns its address and the task that
/// serves it.
pub async fn bind(
    config: &Config,
    state: Arc<State>,
) -> Result<Option<(String, impl std::future::Future<Output = ()>)>, String> {
    let web = &config.web;
    if web.listen.is_empty() {
        return Ok(None);
    }
    let sc = &config.service;
    let tls = sc.tls_cert.is_some() && sc.tls_key.is_some();
    for address in tokio::net::lookup_host(&web.listen)
        .await
        .map_err(|e| format!("web.listen {}: {e}", web.listen))?
    {
        crate::config::check_plaintext(address, tls, sc.allow_plaintext)
            .map_err(|e| format!("web.{e}"))?;
    }
    let tcp = tokio::net::TcpListener::bind(&web.listen)
        .await
        .map_err(|e| format!("web.listen {}: {e}", web.listen))?;
    let local = tcp.local_addr().map_err(|e| e.to_string())?;
    if web.request_timeout_seconds == 0 {
        return Err("web.request_timeout_seconds must be at least 1".into());
    }
    let origins = origins::Origins::new(local, tls, &web.origins)?;
    if web.origins.is_empty() && !local.ip().is_loopback() {
        tracing::warn!(
            "[web] origins is empty: logins are taken only from pages opened at {local}; list the addresses people open the reading room at (https://radassist.example.org)"
        );
    }
    let app = Arc::new(WebApp {
        state,
        limits: SessionLimits {
            idle_ms: (web.session_idle_minutes * 60_000) as i64,
            absolute_ms: (web.session_hours * 3_600_000) as i64,
        },
        secure: tls,
        origins,
        viewer: match web.viewer.as_str() {
            "" => None,
            folder => Some(Arc::new(ohif::ViewerApp::open(std::path::Path::new(
                folder,
            ))?)),
        },
        dicomweb_cors: origins::parse_all(&web.dicomweb_cors_origins, "web.dicomweb_cors_origins")?,
        public_url: origins::public_url(&web.public_url)?,
    });
    let metrics = app.state.metrics.clone();
    let url = format!("{}://{local}", if tls { "https" } else { "http" });
    let tls_config = if tls {
        Some(crate::pem::server_config(sc, "the reading room's TLS")?)
    } else {
        None
    };
    let timeout = std::time::Duration::from_secs(web.request_timeout_seconds);
    let serving = serving::serve(tcp, tls_config, router(app), timeout);
    // Serving never ends while the process runs: the gauge says it is up.
    let watched = async move {
        metrics.web_serving.set(1);
        serving.await;
        metrics.web_serving.set(0);
    };
    Ok(Some((url, watched)))
}

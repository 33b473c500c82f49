//! DICOMweb (PS3.18) on the web listener, under `/dicomweb`: search (QIDO-RS, [`search`]),
//! retrieve (WADO-RS, [`retrieve`], and pictures, [`rendered`]) and store (STOW-RS, [`store`]),
//! for PACS, routers and viewers that speak HTTP rather than DIMSE.
//!
//! Searches, retrievals and pictures are the archive's ([`crate::app::archive`]; pictures are
//! its radiographs decoded as the analysis decodes them); a store is the same durable ingest as
//! gRPC's and C-STORE's ([`crate::app::ingest`]). Who may do what is [`ROLES`]: a bearer token
//! of `[service] tokens` (`Authorization: Bearer ...`), or the reading room's session cookie
//! for searches and retrievals from a browser (a store needs a token: a cookie alone never
//! changes anything here). Every search, retrieval and store is audited. Errors answer with
//! their status, a plain-text reason in the body and in the `x-error-message` header, as the
//! reading room's do. No CORS headers are sent unless `[web] dicomweb_cors_origins` names
//! origins (then for a bearer token only): a page of any other origin cannot read these
//! answers. [`multipart`] reads and writes PS3.18's `multipart/related` bodies; [`json`]
//! writes DICOM JSON with this server's URLs in it.

pub(crate) mod json;
pub(crate) mod multipart;
pub(crate) mod rendered;
pub(crate) mod retrieve;
pub(crate) mod search;
pub(crate) mod store;

use super::{App, WebError};
use crate::app::Caller;
use crate::roles::Role;
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::routing::get;
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// What a request does, for the roles table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Search,
    Retrieve,
    Store,
}

/// Which roles may do each operation (admin may do all).
pub const ROLES: &[(Operation, &[Role])] = &[
    (Operation::Search, &[Role::Radiologist, Role::Qa]),
    (Operation::Retrieve, &[Role::Radiologist, Role::Qa]),
    (Operation::Store, &[Role::Pacs]),
];

/// The caller of `request`, if allowed to do `operation`: by bearer token, or (not for a
/// store) by the reading room's session.
pub async fn authorize(
    app: &App,
    request: &Parts,
    operation: Operation,
) -> Result<Caller, WebError> {
    let peer = super::session::peer(&request.extensions);
    let bearer = request
        .headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("").to_string());
    let caller = match bearer {
        Some(value) => {
            let token = value.strip_prefix("Bearer ").ok_or_else(|| {
                WebError::new(
                    StatusCode::UNAUTHORIZED,
                    "the Authorization header must be \"Bearer <token>\"",
                )
            })?;
            let known = app
                .state
                .config
                .tokens
                .iter()
                .find(|t| super::session::same_secret(&t.token, token.trim()))
                .ok_or_else(|| WebError::new(StatusCode::UNAUTHORIZED, "unknown token"))?;
            Caller {
                name: known.name.clone(),
                role: known.role,
                peer,
            }
        }
        None if operation == Operation::Store => {
            return Err(WebError::new(
                StatusCode::UNAUTHORIZED,
                "a store needs a bearer token: send \"Authorization: Bearer <token>\" (a PACS role's, from [service] tokens)",
            ))
        }
        None => super::session::viewer_of(app, &request.headers, peer)
            .await?
            .map(|viewer| viewer.caller())
            .ok_or_else(|| {
                WebError::new(
                    StatusCode::UNAUTHORIZED,
                    "no bearer token and no reading-room session: send \"Authorization: Bearer <token>\", or log in to the reading room first",
                )
            })?,
    };
    let allowed = ROLES
        .iter()
        .find(|(op, _)| *op == operation)
        .map_or(&[][..], |(_, roles)| *roles);
    if caller.role != Role::Admin && !allowed.contains(&caller.role) {
        tracing::warn!(caller = %caller.name, role = caller.role.as_str(), ?operation, "DICOMweb: permission denied");
        return Err(WebError::new(
            StatusCode::FORBIDDEN,
            format!(
                "role {} may not {} here (allowed: {})",
                caller.role.as_str(),
                match operation {
                    Operation::Search => "search",
                    Operation::Retrieve => "retrieve",
                    Operation::Store => "store",
                },
                Role::allowed(allowed)
            ),
        ));
    }
    Ok(caller)
}

/// The address of this DICOMweb service for the URLs its answers carry: `[web] public_url`'s,
/// else as the client named it (`http://host:port/dicomweb`).
pub fn base_url(app: &App, request: &Parts) -> String {
    if let Some(public) = &app.public_url {
        return format!("{public}{PREFIX}");
    }
    let host = request
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = if app.secure { "https" } else { "http" };
    format!("{scheme}://{host}{PREFIX}")
}

/// Where DICOMweb is served on the web listener.
pub const PREFIX: &str = "/dicomweb";

/// Every DICOMweb route (nested under [`PREFIX`]); with `cors_origins`, pages of those origins
/// may call them with a bearer token (never with the session cookie: credentials are not
/// allowed across origins).
pub fn router(cors_origins: &[String]) -> Router<App> {
    let routes = routes();
    if cors_origins.is_empty() {
        return routes;
    }
    let origins: Vec<HeaderValue> = cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    routes.layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::ACCEPT, header::CONTENT_TYPE])
            .expose_headers([
                header::CONTENT_TYPE,
                header::WARNING,
                header::RETRY_AFTER,
                HeaderName::from_static("x-error-message"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

fn routes() -> Router<App> {
    Router::new()
        .route("/studies", get(search::studies).post(store::stow))
        .route("/studies/{study}", get(retrieve::study).post(store::stow_into))
        .route("/studies/{study}/metadata", get(retrieve::study_metadata))
        .route("/studies/{study}/series", get(search::series_of_study))
        .route("/studies/{study}/instances", get(search::instances_of_study))
        .route("/studies/{study}/series/{series}", get(retrieve::series))
        .route(
            "/studies/{study}/series/{series}/metadata",
            get(retrieve::series_metadata),
        )
        .route(
            "/studies/{study}/series/{series}/instances",
            get(search::instances_of_series),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}",
            get(retrieve::instance),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/metadata",
            get(retrieve::instance_metadata),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
            get(retrieve::frames),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered",
            get(rendered::frame),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/rendered",
            get(rendered::instance),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/thumbnail",
            get(rendered::instance_thumbnail),
        )
        .route(
            "/studies/{study}/series/{series}/thumbnail",
            get(rendered::series_thumbnail),
        )
        .route("/studies/{study}/thumbnail", get(rendered::study_thumbnail))
        .route("/series", get(search::all_series))
        .route("/instances", get(search::all_instances))
        .fallback(|| async {
            WebError::not_found("there is no such DICOMweb resource in radassist (PS3.18: /dicomweb/studies, /series, /instances)")
        })
}

//! Who is at the browser: login with backoff, sessions in cookies, CSRF on every
//! state-changing request, logout.
//!
//! A login (`POST /login`, form fields `username` and `password`) checks the argon2id hash,
//! refuses a cross-site form (its Origin), and after [`FREE_FAILURES`] failures in a row for a
//! name makes that name wait, doubling up to [`MAX_WAIT`]. A session is a random 256-bit
//! token in a cookie (HttpOnly, SameSite=Strict, Secure under TLS), kept in the store as its
//! SHA-256, with an idle and an absolute expiry. [`guard`] runs before every route: it finds
//! the session and puts the [`Viewer`] in the request, and refuses a POST whose CSRF token
//! (header `x-csrf-token`, or form field `csrf`) is not the session's. Every login, failed
//! or not, is in the audit log.

use super::{page, App, WebError};
use crate::roles::Role;
use crate::service::auth::Caller;
use crate::service::store::reading_room::SessionRow;
use crate::service::store::{hex, now_ms};
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::{header, request::Parts, HeaderMap, Method, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;

pub const COOKIE: &str = "radassist_session";
/// Failures in a row a name may have before it must wait.
pub const FREE_FAILURES: u32 = 3;
/// The longest wait after failed logins.
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// The largest form or JSON body a page sends (a report is a few KB).
pub const MAX_BODY: usize = 256 << 10;

/// The person logged in at this browser.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub name: String,
    pub role: Role,
    pub csrf: String,
    pub peer: String,
    token_sha256: String,
}

impl Viewer {
    /// Refuses unless the viewer has one of `roles` (admin has every role).
    pub fn require(&self, roles: &[Role]) -> Result<(), WebError> {
        if self.role == Role::Admin || roles.contains(&self.role) {
            Ok(())
        } else {
            Err(WebError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this page is for {}: you are logged in as {} ({})",
                    roles
                        .iter()
                        .map(|r| r.as_str())
                        .chain(["admin"])
                        .collect::<Vec<_>>()
                        .join(" or "),
                    self.name,
                    self.role.as_str()
                ),
            ))
        }
    }

    /// The viewer as the audit log and the service's calls know callers.
    pub fn caller(&self) -> Caller {
        Caller {
            name: self.name.clone(),
            role: self.role,
            peer: self.peer.clone(),
        }
    }

    /// Records that the viewer did `action` on `resource`.
    pub async fn audit(&self, app: &App, action: &str, resource: &str) -> Result<(), WebError> {
        Ok(app.state.audit(&self.caller(), action, resource).await?)
    }
}

impl FromRequestParts<App> for Viewer {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, _: &App) -> Result<Viewer, WebError> {
        parts
            .extensions
            .get::<Viewer>()
            .cloned()
            .ok_or_else(|| WebError::login_required(parts.uri.path()))
    }
}

fn random_token() -> Result<String, WebError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| WebError::internal(format!("the system's random source: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn token_sha256(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn peer(request: &Request<Body>) -> String {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default()
}

/// Runs before every route but the login page and the assets: the session's [`Viewer`] into
/// the request; a state-changing request without the session's CSRF token refused.
pub async fn guard(State(app): State<App>, request: Request<Body>, next: Next) -> Response {
    match guarded(app, request, next).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn guarded(app: App, mut request: Request<Body>, next: Next) -> Result<Response, WebError> {
    let path = request.uri().path().to_string();
    let viewer = match session_token(request.headers()) {
        Some(token) => {
            let hash = token_sha256(token);
            let limits = app.limits;
            let peer = peer(&request);
            app.state
                .store_call(move |s| s.session(&hash, now_ms(), limits))
                .await?
                .map(|(session, user)| Viewer {
                    name: user.name,
                    role: user.role,
                    csrf: session.csrf_token,
                    peer,
                    token_sha256: session.token_sha256,
                })
        }
        None => None,
    };
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD);
    if changes_state {
        let Some(viewer) = &viewer else {
            return Err(WebError::login_required(&path));
        };
        // The body is read here (bounded) to find the form's token, then handed on.
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
            WebError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request is larger than {MAX_BODY} bytes"),
            )
        })?;
        let from_header = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let from_form = || {
            serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
                .ok()
                .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "csrf"))
                .map(|(_, v)| v)
        };
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        let token = from_header.or_else(|| if is_form { from_form() } else { None });
        if !token.is_some_and(|t| same_secret(&t, &viewer.csrf)) {
            tracing::warn!(who = %viewer.name, path, "refused: no valid CSRF token");
            return Err(WebError::new(
                StatusCode::FORBIDDEN,
                "the request carried no valid CSRF token (it did not come from a radassist page): reload the page and try again",
            ));
        }
        request = Request::from_parts(parts, Body::from(bytes));
    }
    if let Some(viewer) = viewer {
        request.extensions_mut().insert(viewer);
    }
    Ok(next.run(request).await)
}

#[derive(serde::Deserialize, Default)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
    #[serde(default)]
    failed: String,
}

/// Where to go after login: a path of this site, never another site.
fn local_path(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") {
        next
    } else {
        "/"
    }
}

pub async fn login_page(State(app): State<App>, Query(q): Query<LoginQuery>) -> Response {
    page::login(&app, local_path(&q.next), &q.failed)
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    next: String,
}

/// Whether the form came from this site (browsers send Origin on every cross-site POST).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest == host)
}

pub async fn login(
    State(app): State<App>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, WebError> {
    if !same_origin(&headers) {
        return Err(WebError::new(
            StatusCode::FORBIDDEN,
            "this login form was sent from another site",
        ));
    }
    let username = form.username.trim().to_string();
    let next = local_path(&form.next).to_string();
    let peer = from.to_string();
    let audit = |who: &str, role: &str, action: &str| crate::service::store::AuditRow {
        at_ms: now_ms(),
        who: who.into(),
        role: role.into(),
        action: action.into(),
        resource: "web".into(),
        peer: peer.clone(),
    };
    let (failures, last) = {
        let u = username.clone();
        app.state.store_call(move |s| s.login_failures(&u)).await?
    };
    if failures >= FREE_FAILURES {
        let wait = std::time::Duration::from_secs(1 << (failures - FREE_FAILURES).min(12))
            .min(MAX_WAIT)
            .as_millis() as i64;
        let left = last + wait - now_ms();
        if left > 0 {
            app.state.metrics.web_login("backoff");
            let row = audit(&username, "", "login refused (backoff)");
            app.state.store_call(move |s| s.audit(&row)).await?;
            return Err(WebError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{failures} failed logins in a row for this name: wait {} s before the next try",
                    (left + 999) / 1000
                ),
            ));
        }
    }
    let user = {
        let u = username.clone();
        app.state.store_call(move |s| s.user(&u)).await?
    };
    // The hash is checked even for an unknown or disabled name (the decoy), so that the time a
    // login takes does not tell which names exist.
    let (phc, user) = match user {
        Some(u) if !u.disabled => (u.password_hash.clone(), Some(u)),
        _ => (super::passwords::decoy().to_string(), None),
    };
    let password = form.password;
    let matches = tokio::task::spawn_blocking(move || super::passwords::verify(&phc, &password))
        .await
        .map_err(|e| WebError::internal(e.to_string()))?;
    let Some(user) = user.filter(|_| matches) else {
        let (u, row) = (username.clone(), audit(&username, "", "login failed"));
        app.state
            .store_call(move |s| {
                s.record_login_failure(&u, now_ms())?;
                s.audit(&row)
            })
            .await?;
        app.state.metrics.web_login("failed");
        tracing::warn!(username, peer, "web login failed");
        let to = format!("/login?failed=1&next={}", percent_encode(&next));
        return Ok(Redirect::to(&to).into_response());
    };
    let token = random_token()?;
    let session = SessionRow {
        token_sha256: token_sha256(&token),
        user_name: user.name.clone(),
        csrf_token: random_token()?,
        created_at: now_ms(),
        last_seen_at: now_ms(),
        peer: peer.clone(),
    };
    app.state.metrics.web_login("success");
    let row = audit(&user.name, user.role.as_str(), "login");
    app.state
        .store_call(move |s| {
            s.clear_login_failures(&session.user_name)?;
            s.create_session(&session)?;
            s.audit(&row)
        })
        .await?;
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{}",
        if app.secure { "; Secure" } else { "" }
    );
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response())
}

pub async fn logout(State(app): State<App>, viewer: Viewer) -> Result<Response, WebError> {
    let hash = viewer.token_sha256.clone();
    app.state.store_call(move |s| s.end_session(&hash)).await?;
    viewer.audit(&app, "logout", "web").await?;
    let cookie = format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if app.secure { "; Secure" } else { "" }
    );
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response())
}

/// `text` fit for a query value.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(local_path("/studies/1.2"), "/studies/1.2");
        assert_eq!(local_path("//evil.example"), "/");
        assert_eq!(local_path("https://evil.example"), "/");
        assert_eq!(local_path("/\\evil.example"), "/");
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; radassist_session=tok; b=2".parse().unwrap(),
        );
        assert_eq!(session_token(&h), Some("tok"));
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("a", "ab"));
    }
}

//! Who is at the browser: login with backoff, sessions in cookies, CSRF on every
//! state-changing request, logout.
//!
//! A login (`POST /login`, form fields `username` and `password`) refuses a form from another
//! origin (one not in [`super::origins`]), a `next` that is not a path of this site and a name
//! that breaks the login-name rule, before anything is hashed, logged or recorded; then checks
//! the argon2id hash. After [`FREE_FAILURES`] failures in a row for a name, that name waits,
//! doubling up to [`MAX_WAIT`]; the wait is checked and the attempt counted in one store step.
//! A session is a random 256-bit token in a cookie (HttpOnly, SameSite=Strict, Secure under
//! TLS), kept in the store as its SHA-256, with an idle and an absolute expiry. [`guard`] runs
//! before every route: it finds the session and puts the [`Viewer`] in the request, and
//! refuses a POST whose CSRF token (header `x-csrf-token`, or form field `csrf`) is not the
//! session's. Every login, and every failed login of a user's name, is in the audit log.

use super::serving::MAX_BODY;
use super::{page, App, WebError};
use crate::app::Caller;
use crate::roles::Role;
use crate::store::reading_room::{LoginBackoff, LoginGate, SessionRow};
use crate::store::{hex, now_ms};
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
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub(crate) fn peer(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default()
}

/// The viewer whose session cookie `request` carries, if it carries a live one.
pub(crate) async fn viewer_of(
    app: &App,
    headers: &HeaderMap,
    peer: String,
) -> Result<Option<Viewer>, WebError> {
    let Some(token) = session_token(headers) else {
        return Ok(None);
    };
    let hash = token_sha256(token);
    let limits = app.limits;
    Ok(app
        .state
        .store_call(move |s| s.session(&hash, now_ms(), limits))
        .await?
        .map(|(session, user)| Viewer {
            name: user.name,
            role: user.role,
            csrf: session.csrf_token,
            peer,
            token_sha256: session.token_sha256,
        }))
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
    let viewer = viewer_of(&app, request.headers(), peer(request.extensions())).await?;
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD);
    if changes_state {
        let Some(viewer) = &viewer else {
            return Err(WebError::login_required(&path));
        };
        // The body (read in full already, see serving::read_body) searched for the form's
        // token, then handed on.
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

/// Where to go after login, if `next` may be that: a path of this site (one `/`, then no
/// second `/` or `\\`, which browsers read as another host), of printable ASCII only (browsers
/// drop tabs and line breaks from a URL, so `/\t/host` would become `//host`; a line break
/// would end the Location header).
fn local_path(next: &str) -> Option<&str> {
    let after = next.strip_prefix('/')?;
    let safe = !after.starts_with(['/', '\\'])
        && !next.contains('\\')
        && next.bytes().all(|b| b.is_ascii_graphic());
    safe.then_some(next)
}

pub async fn login_page(State(app): State<App>, Query(q): Query<LoginQuery>) -> Response {
    page::login(&app, local_path(&q.next).unwrap_or("/"), &q.failed)
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    next: String,
}

/// Whether `name` can be a login name: 1 to 64 letters, digits, '.', '_' or '-', at least one
/// a letter or digit (it appears in URLs and the audit log as it is, so never `.` or `..`).
pub fn check_login_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name.chars().any(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} cannot be a login name: use 1 to 64 letters, digits, '.', '_' or '-'",
            crate::excerpt::excerpt(name)
        ))
    }
}

/// The name a login's backoff is counted under: its SHA-256, so that what was typed (a
/// password in the name field, say) is not kept in the store.
fn backoff_key(name: &str) -> String {
    format!("sha256:{}", hex(&Sha256::digest(name.as_bytes())))
}

/// How failed logins slow the next try.
const BACKOFF: LoginBackoff = LoginBackoff {
    free: FREE_FAILURES,
    max_wait_ms: MAX_WAIT.as_millis() as i64,
};

/// What must hold of a login form before it costs anything: sent from one of radassist's own
/// origins, going on to a path of this site, with a name that can be a login name. The path
/// and the name when it holds.
fn admissible_login(
    app: &App,
    headers: &HeaderMap,
    form: &LoginForm,
) -> Result<(String, String), WebError> {
    let origin = headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("?"));
    if !app.origins.allow(origin) {
        app.state.metrics.web_login("refused");
        return Err(WebError::new(
            StatusCode::FORBIDDEN,
            "this login form was sent from another site (its Origin is not one of web.origins): open radassist at its own address",
        ));
    }
    let next = if form.next.is_empty() {
        "/"
    } else {
        &form.next
    };
    let Some(next) = local_path(next).map(str::to_string) else {
        app.state.metrics.web_login("refused");
        return Err(WebError::new(
            StatusCode::BAD_REQUEST,
            "the page to go to after login is not a path of this site: open the login page again",
        ));
    };
    let username = form.username.trim().to_string();
    if let Err(why) = check_login_name(&username) {
        app.state.metrics.web_login("refused");
        return Err(WebError::new(StatusCode::BAD_REQUEST, why));
    }
    Ok((next, username))
}

/// The user whose password `password` is (None: wrong password, unknown or disabled name), and
/// whether the name is a user's. The hash is checked even for an unknown or disabled name (the
/// decoy), so that the time a login takes does not tell which names exist.
async fn check_password(
    app: &App,
    username: &str,
    password: String,
) -> Result<(Option<crate::store::reading_room::UserRow>, bool), WebError> {
    let user = {
        let u = username.to_string();
        app.state.store_call(move |s| s.user(&u)).await?
    };
    let known = user.is_some();
    let (phc, user) = match user {
        Some(u) if !u.disabled => (u.password_hash.clone(), Some(u)),
        _ => (super::passwords::decoy().to_string(), None),
    };
    let matches = tokio::task::spawn_blocking(move || super::passwords::verify(&phc, &password))
        .await
        .map_err(|e| WebError::internal(e.to_string()))?;
    Ok((user.filter(|_| matches), known))
}

/// `POST /login`. In this order, so that what cannot be a login costs nothing: the form's
/// origin, `next` and the name's form are checked (refused before any hashing, logging or
/// recording); the attempt is counted in the same store step that checks the name's backoff
/// (concurrent guesses cannot all pass one check); then the password. A failed name is logged
/// only when it is a user's (a password typed into the name field stays out of the log).
pub async fn login(
    State(app): State<App>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, WebError> {
    let (next, username) = admissible_login(&app, &headers, &form)?;
    let peer = from.to_string();
    let audit = |who: &str, role: &str, action: &str| crate::store::AuditRow {
        at_ms: now_ms(),
        who: who.into(),
        role: role.into(),
        action: action.into(),
        resource: "web".into(),
        peer: peer.clone(),
    };
    let gate = {
        let key = backoff_key(&username);
        app.state
            .store_call(move |s| s.begin_login_attempt(&key, now_ms(), BACKOFF))
            .await?
    };
    if let LoginGate::Wait { attempts, wait_ms } = gate {
        app.state.metrics.web_login("backoff");
        return Err(WebError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{attempts} failed logins in a row for this name: wait {} s before the next try",
                (wait_ms + 999) / 1000
            ),
        ));
    }
    let (user, known) = check_password(&app, &username, form.password).await?;
    let Some(user) = user else {
        // A name that is no user's may be a password typed in the wrong field: not recorded.
        let who = if known { username.as_str() } else { "" };
        let row = audit(
            who,
            "",
            if known {
                "login failed"
            } else {
                "login failed (unknown name)"
            },
        );
        app.state.store_call(move |s| s.audit(&row)).await?;
        app.state.metrics.web_login("failed");
        if known {
            tracing::warn!(username, peer, "web login failed");
        } else {
            tracing::warn!(peer, "web login failed: not a user's name");
        }
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
            s.clear_login_failures(&backoff_key(&session.user_name))?;
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
        assert_eq!(local_path("/studies/1.2"), Some("/studies/1.2"));
        assert_eq!(
            local_path("/worklist?status=open&q=%20x"),
            Some("/worklist?status=open&q=%20x")
        );
        for refused in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "/\t/127.0.0.1:9/x",
            "/studies\r\nSet-Cookie: x=1",
            "/a\\b",
            "/é",
            "",
        ] {
            assert_eq!(local_path(refused), None, "{refused:?}");
        }
    }

    #[test]
    fn login_names_are_checked_before_anything_else() {
        assert!(check_login_name("dr.osei-2").is_ok());
        for refused in ["", "..", ".", "a b", "x".repeat(65).as_str(), "<b>"] {
            assert!(check_login_name(refused).is_err(), "{refused:?}");
        }
        let huge = check_login_name(&"n".repeat(1_500_000)).unwrap_err();
        assert!(
            huge.len() < 200,
            "the error repeats at most a short prefix: {huge}"
        );
    }

    #[test]
    fn the_backoff_doubles_after_the_free_attempts() {
        assert_eq!(BACKOFF.wait_ms(FREE_FAILURES - 1), 0);
        assert_eq!(BACKOFF.wait_ms(FREE_FAILURES), 1000);
        assert_eq!(BACKOFF.wait_ms(FREE_FAILURES + 3), 8000);
        assert_eq!(
            BACKOFF.wait_ms(FREE_FAILURES + 40),
            MAX_WAIT.as_millis() as i64
        );
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

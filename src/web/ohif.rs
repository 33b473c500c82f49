//! The OHIF viewer beside the reading room: the full zero-footprint viewer (measurement tools,
//! hanging protocols, every series of the study) for a radiologist who wants more than the
//! reading room's own image pane.
//!
//! radassist serves the app OHIF builds (the npm package `@ohif/app`, which `scripts/setup`
//! unpacks into `.radassist/ohif`; `[web] viewer` names the folder) at `/viewer/`, on the
//! reading room's own origin, with a configuration of our own whose only data source is this
//! service's [`super::dicomweb`]: the reading room's session cookie covers every request the
//! viewer makes, and no study leaves the origin. The app is built to live at `/`: its page is
//! rewritten once at start to live at `/viewer/` (its links, its `PUBLIC_URL`), and the
//! scripts and stylesheet that name the root (webpack's public path, where chunks, codecs and
//! workers load from; the font's URL) are moved when first asked for and kept in memory. Its
//! service worker and install manifest are left out, and its inline scripts are allowed by
//! their SHA-256 hashes in this route's Content-Security-Policy, which otherwise permits what
//! the app needs and no more (WebAssembly codecs, workers from its own files, its inline
//! styles). Its configuration turns the guided tour off and passes over a measurement report's
//! groups without an image region, which OHIF 3.13 cannot load.
//!
//! Who may open it: [`ROLES`], as the reading room's study page (the viewer shows the same
//! films). Everything under `/viewer/` needs a session of one of them: without one the browser
//! goes to the login page and comes back. The study to open is OHIF's own route,
//! `/viewer/viewer?StudyInstanceUIDs=...`, which the reading room links to ([`study_link`]).

use super::{session, App, WebError};
use crate::roles::Role;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tower_http::services::ServeDir;

/// Where the viewer is served.
pub const PREFIX: &str = "/viewer";

/// Who may open the viewer (admin may too): the readers of films.
pub const ROLES: &[Role] = &[Role::Radiologist];

/// The viewer's files and its page, rewritten to live at [`PREFIX`].
#[derive(Debug)]
pub struct ViewerApp {
    root: PathBuf,
    index: String,
    policy: HeaderValue,
    /// The app's top-level scripts and stylesheets as served, by name, once first asked for:
    /// moved to [`PREFIX`] (Some), or served as they are (None).
    moved: Mutex<HashMap<String, Option<Bytes>>>,
}

/// The page of study `uid` in the viewer.
pub fn study_link(uid: &str) -> String {
    format!("{PREFIX}/viewer?StudyInstanceUIDs={uid}")
}

impl ViewerApp {
    /// The app in folder `root` (the one holding OHIF's `index.html`), or why it cannot be.
    pub fn open(root: &Path) -> Result<ViewerApp, String> {
        let page = root.join("index.html");
        let original = std::fs::read_to_string(&page).map_err(|e| {
            format!(
                "web.viewer: {} cannot be read ({e}): name the folder scripts/setup unpacks the OHIF viewer into (.radassist/ohif), or set viewer = \"\"",
                page.display()
            )
        })?;
        let index = relocate(&original).ok_or_else(|| {
            format!(
                "web.viewer: {} is not the page of an OHIF viewer build (no window.PUBLIC_URL in it)",
                page.display()
            )
        })?;
        let policy = HeaderValue::from_str(&content_security_policy(&index))
            .map_err(|e| format!("web.viewer: the page's script hashes: {e}"))?;
        Ok(ViewerApp {
            root: root.to_path_buf(),
            index,
            policy,
            moved: Mutex::new(HashMap::new()),
        })
    }

    /// The top-level script or stylesheet `name` moved to [`PREFIX`], or None when it is
    /// served as it is (it names nothing at the root, or is not such a file).
    async fn moved_file(&self, name: &str) -> Result<Option<Bytes>, WebError> {
        let simple = !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !simple || !(name.ends_with(".js") || name.ends_with(".css")) {
            return Ok(None);
        }
        if let Some(known) = self
            .moved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(known.clone());
        }
        let path = self.root.join(name);
        let read = tokio::task::spawn_blocking(move || std::fs::read(path))
            .await
            .map_err(|e| WebError::internal(format!("reading the viewer's {name}: {e}")))?;
        let moved = match read {
            Ok(bytes) => relocate_file(name, &bytes).map(Bytes::from),
            // Not there: ServeDir answers 404 (or the page, for the app's routes).
            Err(_) => return Ok(None),
        };
        self.moved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), moved.clone());
        Ok(moved)
    }
}

/// A script or stylesheet of the app moved from `/` to [`PREFIX`]: webpack's public path
/// (where a script loads its chunks, codecs and workers from) and a stylesheet's root URLs
/// (its fonts). None when it names nothing at the root.
fn relocate_file(name: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (from, to) = if name.ends_with(".css") {
        ("url(/".to_string(), format!("url({PREFIX}/"))
    } else {
        (
            "__webpack_require__.p = \"/\"".to_string(),
            format!("__webpack_require__.p = \"{PREFIX}/\""),
        )
    };
    text.contains(&from)
        .then(|| text.replace(&from, &to).into_bytes())
}

/// OHIF's page moved from `/` to `/viewer/`: its links and `PUBLIC_URL` (which the app loads
/// its chunks, codecs and workers from) point there, and the service worker's loader is left
/// out (nothing is cached outside the browser's own cache). None when the page has no
/// `PUBLIC_URL`, so it is not an OHIF build this knows how to move.
fn relocate(page: &str) -> Option<String> {
    if !page.contains("window.PUBLIC_URL=\"/\"") {
        return None;
    }
    let base = format!("{PREFIX}/");
    let page = page
        .replace(
            "<script rel=\"preload\" as=\"script\" type=\"module\" src=\"/init-service-worker.js\"></script>",
            "",
        )
        // An installable app's manifest: browsers fetch it without the session's cookie.
        .replace("<link rel=\"manifest\" href=\"/manifest.json\">", "")
        .replace("window.PUBLIC_URL=\"/\"", &format!("window.PUBLIC_URL=\"{base}\""))
        .replace("href=\"/", &format!("href=\"{base}"))
        .replace("src=\"/", &format!("src=\"{base}"));
    Some(page)
}

/// The SHA-256 hashes (CSP's `'sha256-...'`) of the page's inline scripts: `<script>` elements
/// without a `src`.
fn inline_script_hashes(page: &str) -> Vec<String> {
    let mut hashes = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find("<script") {
        let after = &rest[start..];
        let Some(open_end) = after.find('>') else {
            break;
        };
        let Some(close) = after.find("</script>") else {
            break;
        };
        let tag = &after[..open_end];
        if !tag.contains(" src=") && open_end < close {
            let body = &after[open_end + 1..close];
            let digest = Sha256::digest(body.as_bytes());
            hashes.push(format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ));
        }
        rest = &after[close + "</script>".len()..];
    }
    hashes
}

/// The viewer's policy: scripts from this origin and the page's own inline ones (by hash),
/// WebAssembly (the image codecs), workers from this origin and from `blob:` (cornerstone's
/// decoders), inline styles (the app's components set them), images and fonts from this
/// origin and `data:`/`blob:`, requests to this origin only; no frames, no plugins, no form
/// posting elsewhere.
fn content_security_policy(page: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval' {}; worker-src 'self' blob:; \
         style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; font-src 'self' data:; \
         connect-src 'self' blob: data:; manifest-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'self'",
        inline_script_hashes(page).join(" ")
    )
}

/// The viewer's configuration (OHIF's `window.config`): one DICOMweb data source, this
/// service's `/dicomweb` on the same origin, searched by QIDO-RS and read by WADO-RS.
fn app_config() -> String {
    let root = super::dicomweb::PREFIX;
    format!(
        r#"/* radassist: the OHIF viewer's configuration, served by radassist (src/web/ohif.rs). */
window.config = {{
  routerBasename: '{PREFIX}',
  extensions: [],
  modes: [],
  customizationService: {{
    // No guided tour over a radiologist's first study.
    'ohif.tours': {{ $set: [] }},
    // OHIF 3.13 stops loading a TID 1500 report at the first measurement group without an
    // image region (radassist's finding groups: the findings are not localised); such a group
    // is passed over, as one whose image is not shown, instead.
    onBeforeSRAddMeasurement: {{
      $set: ({{ measurement }}) =>
        measurement.coords && measurement.coords.length ? measurement : {{ ...measurement, coords: [{{}}] }},
    }},
  }},
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  investigationalUseDialog: {{ option: 'never' }},
  maxNumRequests: {{ interaction: 100, thumbnail: 5, prefetch: 10 }},
  showErrorDetails: 'always',
  defaultDataSourceName: 'radassist',
  dataSources: [
    {{
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'radassist',
      configuration: {{
        friendlyName: 'radassist',
        name: 'radassist',
        wadoUriRoot: window.location.origin + '{root}',
        qidoRoot: window.location.origin + '{root}',
        wadoRoot: window.location.origin + '{root}',
        qidoSupportsIncludeField: true,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        staticWado: false,
        singlepart: 'bulkdata,video',
        bulkDataURI: {{ enabled: true }},
        omitQuotationForMultipartRequest: true,
        dicomUploadEnabled: false,
      }},
    }},
  ],
}};
"#
    )
}

/// The viewer's routes (under [`PREFIX`]): its page for every route of the app, its
/// configuration, and its files; all for [`ROLES`] only. Without `[web] viewer`, a page that
/// says how to set it.
pub fn router(viewer: Option<Arc<ViewerApp>>, app: App) -> Router<App> {
    let Some(viewer) = viewer else {
        return Router::new().fallback(|| async {
            WebError::not_found(
                "the OHIF viewer is not set up here: run scripts/setup and set [web] viewer = \".radassist/ohif\"",
            )
        });
    };
    let page = {
        let viewer = viewer.clone();
        move || {
            let viewer = viewer.clone();
            async move { page(&viewer) }
        }
    };
    let files = ServeDir::new(&viewer.root)
        .append_index_html_on_directories(false)
        .fallback(get(page.clone()));
    let file = {
        let viewer = viewer.clone();
        move |request: Request| {
            let (viewer, files) = (viewer.clone(), files.clone());
            async move { file(&viewer, files, request).await }
        }
    };
    Router::new()
        .route("/", get(page.clone()))
        .route("/index.html", get(page))
        .route("/app-config.js", get(config))
        .route("/sw.js", get(no_service_worker))
        .fallback(file)
        .layer(middleware::from_fn_with_state(app, readers_only))
        .layer(middleware::from_fn(move |request, next| {
            with_policy(viewer.policy.clone(), request, next)
        }))
}

/// `/viewer/` (the nested routes answer `/viewer` and what lies below): to the app.
pub async fn to_app() -> Redirect {
    Redirect::permanent(PREFIX)
}

fn page(viewer: &ViewerApp) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        viewer.index.clone(),
    )
        .into_response()
}

/// One of the app's files: a script or stylesheet moved to [`PREFIX`] from memory, anything
/// else from its folder (ServeDir keeps every path inside it); a path that is no file is one
/// of the app's routes, answered with its page.
async fn file<F>(viewer: &ViewerApp, files: ServeDir<F>, request: Request) -> Response
where
    ServeDir<F>: tower::Service<Request, Error = std::convert::Infallible>,
    <ServeDir<F> as tower::Service<Request>>::Response: IntoResponse,
{
    use tower::ServiceExt;
    let name = request.uri().path().trim_start_matches('/').to_string();
    if name.is_empty() {
        return page(viewer);
    }
    match viewer.moved_file(&name).await {
        Ok(Some(bytes)) => {
            let content_type = if name.ends_with(".css") {
                "text/css; charset=utf-8"
            } else {
                "text/javascript; charset=utf-8"
            };
            ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        Ok(None) => match files.oneshot(request).await {
            Ok(response) => response.into_response(),
            Err(never) => match never {},
        },
        Err(error) => error.into_response(),
    }
}

/// The app's service worker is not served: it would cache the app's files (and fetch its
/// library from elsewhere), and nothing of radassist's is kept outside the browser's cache.
async fn no_service_worker() -> WebError {
    WebError::not_found("radassist serves the viewer without its service worker")
}

async fn config() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        app_config(),
    )
        .into_response()
}

/// Only a session of [`ROLES`] gets anything of the viewer; without one, the login page and
/// back here after it.
async fn readers_only(State(app): State<App>, request: Request, next: Next) -> Response {
    let peer = session::peer(request.extensions());
    let viewer = match session::viewer_of(&app, request.headers(), peer).await {
        Ok(viewer) => viewer,
        Err(error) => return error.into_response(),
    };
    let Some(viewer) = viewer else {
        let here = request
            .uri()
            .path_and_query()
            .map_or(PREFIX.to_string(), |p| format!("{PREFIX}{p}"));
        return WebError::login_required(&here).into_response();
    };
    if let Err(error) = viewer.require(ROLES) {
        tracing::warn!(who = %viewer.name, role = viewer.role.as_str(), "refused: the OHIF viewer");
        return error.into_response();
    }
    next.run(request).await
}

/// The viewer's Content-Security-Policy on each of its responses (the app's files are not
/// patient data: the browser may keep them, revalidating each time).
async fn with_policy(policy: HeaderValue, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let ok = response.status() == StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    if ok && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<html><head><script>console.time("scriptToView"),window.PUBLIC_URL="/"</script><link rel="manifest" href="/manifest.json"><script rel="preload" as="script" src="/app-config.js"></script><script rel="preload" as="script" type="module" src="/init-service-worker.js"></script><script>function browserImportFunction(n){return import(n)}window.PUBLIC_URL="/"</script><script defer src="/app.bundle.js"></script></head><body></body></html>"#;

    #[test]
    fn the_page_moves_to_the_prefix_without_its_service_worker() {
        let page = relocate(PAGE).unwrap();
        assert!(page.contains(r#"window.PUBLIC_URL="/viewer/""#));
        assert!(!page.contains(r#"window.PUBLIC_URL="/""#));
        assert!(!page.contains("manifest.json"));
        assert!(page.contains(r#"src="/viewer/app-config.js""#));
        assert!(page.contains(r#"src="/viewer/app.bundle.js""#));
        assert!(!page.contains("init-service-worker"));
        assert!(relocate("<html>not OHIF</html>").is_none());
    }

    #[test]
    fn scripts_load_their_chunks_and_stylesheets_their_fonts_from_the_prefix() {
        let script =
            b"__webpack_require__.p = \"/\";\nnew Worker(__webpack_require__.p + \"x.js\")";
        let moved = String::from_utf8(relocate_file("app.bundle.1.js", script).unwrap()).unwrap();
        assert!(moved.starts_with("__webpack_require__.p = \"/viewer/\";"));
        let css = b"@font-face{src:url(/a.woff2)}";
        let moved = relocate_file("app.bundle.css", css).unwrap();
        assert_eq!(moved, b"@font-face{src:url(/viewer/a.woff2)}");
        assert!(relocate_file("other.js", b"console.log(1)").is_none());
    }

    #[test]
    fn only_inline_scripts_are_hashed_and_as_the_browser_hashes_them() {
        let page = relocate(PAGE).unwrap();
        let hashes = inline_script_hashes(&page);
        assert_eq!(hashes.len(), 2);
        let body = r#"console.time("scriptToView"),window.PUBLIC_URL="/viewer/""#;
        let expected = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body));
        assert_eq!(hashes[0], format!("'sha256-{expected}'"));
        let policy = content_security_policy(&page);
        assert!(policy.contains(&hashes[1]));
        assert!(
            !policy.contains("'unsafe-inline' 'sha")
                && !policy.contains("script-src 'unsafe-inline'")
        );
    }
}

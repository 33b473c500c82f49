//! The app's stylesheet and scripts, compiled into the binary (nothing is fetched at run
//! time). They are our own, written for this app without a framework: the pages are rendered
//! on the server, and these scripts add only what must run in the browser (the viewer, the
//! editor's autosave and evidence, the worklist's live rows and keys).

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
    (
        "worklist.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/worklist.js"),
    ),
    (
        "viewer.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/viewer.js"),
    ),
    (
        "editor.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/editor.js"),
    ),
];

pub async fn serve(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                // Revalidated on every load: a new binary's assets are seen at once.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => {
            super::WebError::not_found(format!("there is no asset named {name:?}")).into_response()
        }
    }
}

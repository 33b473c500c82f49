//! QIDO-RS (PS3.18 10.6): studies, series and instances searched, all of them or within a
//! study (and series), answered as DICOM JSON.
//!
//! A query's parameters are its keys (`PatientName=DOE*`, `00100020=123`, `StudyDate=
//! 20240101-20241231`; see [`crate::app::archive::matching`]), `includefield` (attributes, or
//! `all`), `limit` and `offset`. At most [`MAX_ANSWERS`] answers are returned at once; when more
//! matched, a `Warning: 299` header says so, and `offset` pages on. `fuzzymatching=true` is
//! answered with literal matching and a warning saying so, as PS3.18 asks.

use super::{authorize, base_url, json, Operation};
use crate::app::archive::matching::{attribute, Key};
use crate::app::archive::{self, Include, Level, Search};
use crate::web::{App, WebError};
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The most answers one search returns.
pub const MAX_ANSWERS: usize = 1000;

/// What a query string asks, besides the level and scope.
struct Query {
    keys: Vec<Key>,
    include: Include,
    offset: usize,
    limit: Option<usize>,
    fuzzy: bool,
}

fn bad(message: String) -> WebError {
    WebError::new(StatusCode::BAD_REQUEST, message)
}

/// Reads a query string's parameters.
fn query(raw: &str) -> Result<Query, WebError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
        .map_err(|e| bad(format!("the query string does not parse ({e})")))?;
    let mut q = Query {
        keys: Vec::new(),
        include: Include::Default,
        offset: 0,
        limit: None,
        fuzzy: false,
    };
    let number = |name: &str, value: &str| {
        value.trim().parse::<usize>().map_err(|_| {
            bad(format!(
                "{name}={} is not a whole number",
                crate::excerpt::excerpt(value)
            ))
        })
    };
    for (name, value) in pairs {
        match name.as_str() {
            "limit" => q.limit = Some(number("limit", &value)?),
            "offset" => q.offset = number("offset", &value)?,
            "fuzzymatching" => q.fuzzy = value.trim().eq_ignore_ascii_case("true"),
            "includefield" => {
                for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                    if field.eq_ignore_ascii_case("all") {
                        q.include = Include::All;
                        continue;
                    }
                    let (tag, _) = attribute(field).map_err(|e| bad(e.to_string()))?;
                    match &mut q.include {
                        Include::All => {}
                        Include::Also(tags) => tags.push(tag),
                        Include::Default => q.include = Include::Also(vec![tag]),
                    }
                }
            }
            _ => q
                .keys
                .push(Key::parse(&name, &value).map_err(|e| bad(e.to_string()))?),
        }
    }
    Ok(q)
}

/// Runs a search at `level` within `study` (and `series`), and answers it.
async fn answer(
    app: App,
    request: Parts,
    level: Level,
    study: Option<String>,
    series: Option<String>,
) -> Result<Response, WebError> {
    let caller = authorize(&app, &request, Operation::Search).await?;
    for uid in study.iter().chain(&series) {
        crate::dicom::uid::check_uid(uid)
            .map_err(|e| bad(format!("the path's UID is not a DICOM UID ({e})")))?;
    }
    let raw = request.uri.query().unwrap_or("").to_string();
    let q = query(&raw)?;
    let limit = q.limit.unwrap_or(MAX_ANSWERS).min(MAX_ANSWERS);
    let search = Search {
        level,
        study,
        series,
        keys: q.keys,
        include: q.include,
        offset: q.offset,
        limit,
    };
    let found = archive::search(
        &app.state,
        &caller,
        search,
        &format!("{}?{raw}", request.uri.path()),
    )
    .await?;
    let base = base_url(&app, &request);
    let mut warnings = Vec::new();
    if q.fuzzy {
        warnings.push("299 radassist \"The fuzzymatching parameter is not supported. Only literal matching has been performed.\"".to_string());
    }
    if found.matched > q.offset + found.answers.len() && q.limit.is_none_or(|l| l > MAX_ANSWERS) {
        warnings.push(format!("299 radassist \"The number of results exceeded the maximum supported by the server ({MAX_ANSWERS}). Additional results can be requested with offset.\""));
    }
    let body = json::answers(&found.answers, &base, level);
    let mut response = (
        [(header::CONTENT_TYPE, "application/dicom+json")],
        body.to_string(),
    )
        .into_response();
    for warning in warnings {
        if let Ok(value) = HeaderValue::from_str(&warning) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    Ok(response)
}

pub async fn studies(State(app): State<App>, request: Parts) -> Result<Response, WebError> {
    answer(app, request, Level::Study, None, None).await
}

pub async fn all_series(State(app): State<App>, request: Parts) -> Result<Response, WebError> {
    answer(app, request, Level::Series, None, None).await
}

pub async fn all_instances(State(app): State<App>, request: Parts) -> Result<Response, WebError> {
    answer(app, request, Level::Instance, None, None).await
}

pub async fn series_of_study(
    State(app): State<App>,
    Path(study): Path<String>,
    request: Parts,
) -> Result<Response, WebError> {
    answer(app, request, Level::Series, Some(study), None).await
}

pub async fn instances_of_study(
    State(app): State<App>,
    Path(study): Path<String>,
    request: Parts,
) -> Result<Response, WebError> {
    answer(app, request, Level::Instance, Some(study), None).await
}

pub async fn instances_of_series(
    State(app): State<App>,
    Path((study, series)): Path<(String, String)>,
    request: Parts,
) -> Result<Response, WebError> {
    answer(app, request, Level::Instance, Some(study), Some(series)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_string_is_read_into_keys_fields_and_paging() {
        let q = query("PatientName=DOE*&includefield=StudyDescription,00080060&limit=5&offset=10&fuzzymatching=true").unwrap();
        assert_eq!(q.keys.len(), 1);
        assert_eq!(q.limit, Some(5));
        assert_eq!(q.offset, 10);
        assert!(q.fuzzy);
        assert!(matches!(q.include, Include::Also(ref t) if t.len() == 2));
        assert_eq!(query("includefield=all").unwrap().include, Include::All);
        for bad in [
            "limit=-1",
            "offset=x",
            "Nonsense=1",
            "StudyDate=2024-01-02",
            "includefield=Nope",
        ] {
            assert_eq!(
                query(bad).err().unwrap().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }
}

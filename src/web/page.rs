//! The pages: one askama template per page (in `templates/`), each a struct of the values it
//! shows. askama escapes every value for HTML unless a template says otherwise, and no template
//! says otherwise but for the QA charts, which [`super::chart`] builds with their own escaping.

use super::session::Viewer;
use super::App;
use crate::roles::Role;
use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// What every page's frame shows: who is logged in, the menu their role allows, the token
/// the page's forms carry.
pub struct Chrome {
    pub name: String,
    pub role: &'static str,
    pub csrf: String,
    pub worklist: bool,
    pub qa: bool,
    pub admin: bool,
    /// The menu entry of this page.
    pub here: &'static str,
}

impl Chrome {
    pub fn of(viewer: &Viewer, here: &'static str) -> Chrome {
        let admin = viewer.role == Role::Admin;
        Chrome {
            name: viewer.name.clone(),
            role: viewer.role.as_str(),
            csrf: viewer.csrf.clone(),
            worklist: admin || viewer.role == Role::Radiologist,
            qa: admin || viewer.role == Role::Qa,
            admin,
            here,
        }
    }
}

/// A template rendered as a page (a template error is ours: 500 with its reason).
pub fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!("web: rendering a page: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct Login<'a> {
    next: &'a str,
    failed: bool,
    secure: bool,
}

pub fn login(app: &App, next: &str, failed: &str) -> Response {
    render(&Login {
        next,
        failed: !failed.is_empty(),
        secure: app.secure,
    })
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

pub fn error(status: StatusCode, message: &str) -> Response {
    render(&ErrorPage {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or(""),
        message,
    })
}

/// A Patient's Name (DICOM PN, "FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX") as people write it:
/// "FAMILY, Given Middle".
pub fn person_name(pn: &str) -> String {
    // The first component group is the alphabetic one; ideographic and phonetic follow '='.
    let alphabetic = pn.split('=').next().unwrap_or("");
    let parts: Vec<&str> = alphabetic.split('^').map(str::trim).collect();
    let family = parts.first().copied().unwrap_or("");
    let given: Vec<&str> = parts
        .iter()
        .skip(1)
        .take(2)
        .copied()
        .filter(|p| !p.is_empty())
        .collect();
    match (family.is_empty(), given.is_empty()) {
        (true, true) => String::new(),
        (false, true) => family.to_string(),
        (true, false) => given.join(" "),
        (false, false) => format!("{family}, {}", given.join(" ")),
    }
}

/// A work item's status in the reading room's words.
pub fn status_word(status: crate::store::lifecycle::WorkItemStatus) -> &'static str {
    use crate::store::lifecycle::WorkItemStatus::*;
    match status {
        Unclaimed => "unclaimed",
        Claimed => "claimed",
        Signed => "signed",
    }
}

/// A DICOM date (YYYYMMDD) as YYYY-MM-DD; anything else as it is.
pub fn dicom_date(date: &str) -> String {
    let d = date.trim();
    if d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..])
    } else {
        d.to_string()
    }
}

/// A time in ms since the epoch as the reading room shows it (UTC, to the minute).
pub fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// How long ago `ms` was, in a worklist's words ("4 min", "3 h", "2 d").
pub fn age(ms: i64, now_ms: i64) -> String {
    let minutes = (now_ms - ms).max(0) / 60_000;
    match minutes {
        0 => "now".into(),
        m if m < 60 => format!("{m} min"),
        m if m < 48 * 60 => format!("{} h", m / 60),
        m => format!("{} d", m / (24 * 60)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_dates_read_as_people_write_them() {
        assert_eq!(person_name("DOE^JANE^Q"), "DOE, JANE Q");
        assert_eq!(person_name("DOE"), "DOE");
        assert_eq!(person_name("Yamada^Tarou=山田^太郎"), "Yamada, Tarou");
        assert_eq!(person_name(""), "");
        assert_eq!(dicom_date("20240301"), "2024-03-01");
        assert_eq!(dicom_date("2024"), "2024");
        assert_eq!(age(0, 5 * 60_000), "5 min");
        assert_eq!(age(0, 3 * 3_600_000), "3 h");
    }

    #[test]
    fn a_hostile_value_is_escaped() {
        let html = ErrorPage {
            status: 400,
            reason: "Bad Request",
            message: "<img src=x onerror=alert(1)>",
        }
        .render()
        .unwrap();
        assert!(
            html.contains("&#60;img src=x onerror=alert(1)&#62;") || html.contains("&lt;img"),
            "{html}"
        );
        assert!(!html.contains("<img src=x"));
    }
}

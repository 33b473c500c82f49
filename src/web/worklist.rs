//! The worklist: the studies waiting for a radiologist, critical results first, then
//! priority, then age, with filters (status, critical, study date, mine). The page renders its
//! rows on the server; `worklist.js` fetches them again (`/worklist/rows`, the same query)
//! whenever [`super::events`] says a study changed, and raises an alert for a new critical one.

use super::page::{self, Chrome};
use super::paths;
use super::session::Viewer;
use super::{App, WebError};
use crate::placement::Verdict;
use crate::roles::Role;
use crate::store::documents::{device_name, verdict_name};
use crate::store::lifecycle::WorkItemStatus;
use crate::store::{now_ms, WorkItemFilter, WorkItemRow};
use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;

/// Rows a page shows; "more" pages on.
pub const PAGE_ROWS: i64 = 200;

/// Which statuses the worklist shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    /// Unclaimed and claimed: what still needs a read; and signed reads with images that came
    /// after them.
    #[default]
    Open,
    Unclaimed,
    Claimed,
    Signed,
    All,
}

impl StatusFilter {
    fn statuses(self) -> Vec<WorkItemStatus> {
        use WorkItemStatus::*;
        match self {
            StatusFilter::Open => vec![Unclaimed, Claimed],
            StatusFilter::Unclaimed => vec![Unclaimed],
            StatusFilter::Claimed => vec![Claimed],
            StatusFilter::Signed => vec![Signed],
            StatusFilter::All => vec![Unclaimed, Claimed, Signed],
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            StatusFilter::Open => "open",
            StatusFilter::Unclaimed => "unclaimed",
            StatusFilter::Claimed => "claimed",
            StatusFilter::Signed => "signed",
            StatusFilter::All => "all",
        }
    }
}

/// The worklist's query string (checkboxes send "on" or nothing).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Filters {
    #[serde(default)]
    pub status: StatusFilter,
    #[serde(default)]
    pub critical: String,
    #[serde(default)]
    pub date: String,
    #[serde(default)]
    pub mine: String,
    #[serde(default)]
    pub offset: i64,
}

impl Filters {
    fn store_filter(&self, viewer: &Viewer) -> Result<WorkItemFilter, WebError> {
        let date = self.date.trim();
        if !date.is_empty() && chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_err() {
            return Err(WebError::new(
                axum::http::StatusCode::BAD_REQUEST,
                format!("the date {date:?} is not a date: use YYYY-MM-DD"),
            ));
        }
        Ok(WorkItemFilter {
            statuses: self.status.statuses(),
            critical_only: !self.critical.is_empty(),
            claimed_by: (!self.mine.is_empty()).then(|| viewer.name.clone()),
            // The catalogue keeps the Study Date as YYYY-MM-DD.
            study_date: (!date.is_empty()).then(|| date.to_string()),
            // Images that came after a signed read need a look: they are open work.
            signed_with_new_images: self.status == StatusFilter::Open,
        })
    }

    /// This query as a query string (for the "more" link and the live refresh).
    fn query(&self, offset: i64) -> String {
        let mut q = format!("status={}", self.status.as_str());
        if !self.critical.is_empty() {
            q.push_str("&critical=on");
        }
        if !self.date.trim().is_empty() {
            q.push_str(&format!(
                "&date={}",
                super::session::percent_encode(self.date.trim())
            ));
        }
        if !self.mine.is_empty() {
            q.push_str("&mine=on");
        }
        if offset > 0 {
            q.push_str(&format!("&offset={offset}"));
        }
        q
    }
}

/// A device's verdict as a badge.
pub struct Badge {
    pub device: String,
    pub verdict: String,
    /// The badge's CSS class: critical, warn, ok or na.
    pub class: &'static str,
}

pub fn badge(device: &str, verdict: &str, critical: bool) -> Badge {
    let class = match verdict {
        _ if critical => "critical",
        "malpositioned" | "borderline" => "warn",
        "appropriate" => "ok",
        _ => "na",
    };
    Badge {
        device: device.replace('_', " "),
        verdict: verdict.replace('_', " "),
        class,
    }
}

/// One row of the worklist.
pub struct Row {
    pub uid: String,
    /// The study's page; None when its UID is not a DICOM UID (stored before ingest checked
    /// UIDs): the row is shown without a link or a claim button.
    pub href: Option<String>,
    pub patient: String,
    pub patient_id: String,
    pub accession: String,
    pub study_date: String,
    pub age: String,
    pub status: &'static str,
    pub claimed_by: String,
    pub critical: bool,
    pub priority: i64,
    pub impression: String,
    pub badges: Vec<Badge>,
    pub test_model: bool,
    /// A signed read with images that came after it.
    pub new_images: bool,
}

fn row(item: &WorkItemRow, now: i64) -> Result<Row, WebError> {
    let content = &item.content;
    let impression = content
        .draft
        .impression
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Row {
        uid: item.study_instance_uid.clone(),
        href: paths::study(&item.study_instance_uid),
        patient: page::person_name(&content.patient_name),
        patient_id: content.patient_id.clone(),
        accession: content.accession_number.clone(),
        study_date: page::dicom_date(&content.study_date),
        age: page::age(item.created_at, now),
        status: page::status_word(item.status),
        claimed_by: item.claimed_by.clone().unwrap_or_default(),
        critical: item.critical,
        priority: item.priority,
        impression,
        badges: content
            .devices
            .iter()
            .filter(|d| d.verdict != Verdict::Absent)
            .map(|d| badge(&device_name(d.device), &verdict_name(d.verdict), d.critical))
            .collect(),
        test_model: content.draft.warning.is_some(),
        new_images: item.images_after_signing.is_some(),
    })
}

#[derive(Template)]
#[template(path = "worklist.html")]
struct WorklistPage {
    chrome: Chrome,
    filters: Filters,
    status: &'static str,
    rows: Vec<Row>,
    more: Option<String>,
    refresh: String,
    me: String,
    csrf: String,
}

#[derive(Template)]
#[template(path = "worklist_rows.html")]
struct RowsFragment {
    rows: Vec<Row>,
    more: Option<String>,
    /// The viewer's name and CSRF token, for each row's claim and release.
    me: String,
    csrf: String,
}

/// The rows of `filters`, and the query of the next page when there is one.
async fn rows_of(
    app: &App,
    viewer: &Viewer,
    filters: &Filters,
) -> Result<(Vec<Row>, Option<String>), WebError> {
    viewer.require(&[Role::Radiologist])?;
    let filter = filters.store_filter(viewer)?;
    let offset = filters.offset.max(0);
    let items = app
        .state
        .store_call(move |s| s.work_items(&filter, offset, PAGE_ROWS + 1))
        .await?;
    let more = (items.len() as i64 > PAGE_ROWS).then(|| filters.query(offset + PAGE_ROWS));
    let now = now_ms();
    let rows = items
        .iter()
        .take(PAGE_ROWS as usize)
        .map(|item| row(item, now))
        .collect::<Result<_, _>>()?;
    viewer
        .audit(
            app,
            "web: worklist",
            &format!("{} work items", filters.query(offset)),
        )
        .await?;
    Ok((rows, more))
}

pub async fn page(
    State(app): State<App>,
    viewer: Viewer,
    Query(filters): Query<Filters>,
) -> Result<Response, WebError> {
    let (rows, more) = rows_of(&app, &viewer, &filters).await?;
    Ok(page::render(&WorklistPage {
        chrome: Chrome::of(&viewer, "worklist"),
        status: filters.status.as_str(),
        refresh: filters.query(0),
        filters,
        rows,
        more,
        me: viewer.name.clone(),
        csrf: viewer.csrf.clone(),
    }))
}

/// The rows alone, for the page's live refresh.
pub async fn rows(
    State(app): State<App>,
    viewer: Viewer,
    Query(filters): Query<Filters>,
) -> Result<Response, WebError> {
    let (rows, more) = rows_of(&app, &viewer, &filters).await?;
    Ok(page::render(&RowsFragment {
        rows,
        more,
        me: viewer.name.clone(),
        csrf: viewer.csrf.clone(),
    }))
}

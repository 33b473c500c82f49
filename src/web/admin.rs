//! The administrator's page: jobs (failed ones with their reason, and a retry), the model
//! packs with their versions and the execution provider each really got, the results outbox,
//! the audit log (searchable by person and date), and the people who may log in.

use super::page::{self, Chrome};
use super::paths::StudyUid;
use super::session::Viewer;
use super::{App, WebError};
use crate::dicom::uid::is_uid;
use crate::store::lifecycle::JobState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;

/// Audit rows the page shows (the newest).
const AUDIT_ROWS: usize = 300;

#[derive(Debug, Default, serde::Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    who: String,
    /// YYYY-MM-DD
    #[serde(default)]
    since: String,
}

pub struct JobView {
    pub uid: String,
    pub state: &'static str,
    pub attempts: u32,
    pub error: String,
    pub failed: bool,
    /// Failed, and its UID can be put in the retry form's path.
    pub retry: bool,
}

pub struct ModelView {
    pub name: String,
    pub task: String,
    pub version: String,
    pub provider: String,
    pub test_model: bool,
    pub healthy: bool,
    pub error: String,
}

pub struct OutboxView {
    pub study: String,
    pub kind: String,
    pub peer: String,
    pub state: String,
    pub attempts: u32,
    pub error: String,
    pub since: String,
}

pub struct AuditView {
    pub at: String,
    pub who: String,
    pub role: String,
    pub action: String,
    pub resource: String,
    pub peer: String,
}

pub struct UserView {
    pub name: String,
    pub role: &'static str,
    pub disabled: bool,
    pub created: String,
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    chrome: Chrome,
    jobs: Vec<JobView>,
    models: Vec<ModelView>,
    outbox: Vec<OutboxView>,
    audit: Vec<AuditView>,
    audit_total: usize,
    who: String,
    since: String,
    users: Vec<UserView>,
}

/// Midnight (UTC) of a YYYY-MM-DD date, ms since the epoch; 0 for no date.
fn since_ms(text: &str) -> Result<i64, WebError> {
    match text.trim() {
        "" => Ok(0),
        text => Ok(chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| {
                WebError::new(
                    StatusCode::BAD_REQUEST,
                    format!("since {text:?} is not a date: use YYYY-MM-DD"),
                )
            })?
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
            .timestamp_millis()),
    }
}

impl From<crate::store::JobRow> for JobView {
    fn from(j: crate::store::JobRow) -> JobView {
        JobView {
            failed: j.state == JobState::Failed,
            retry: j.state == JobState::Failed && is_uid(&j.study_instance_uid),
            uid: j.study_instance_uid,
            state: j.state.as_str(),
            attempts: j.attempts,
            error: j.last_error,
        }
    }
}

impl From<crate::app::state::ModelStatus> for ModelView {
    fn from(m: crate::app::state::ModelStatus) -> ModelView {
        ModelView {
            name: m.name,
            task: m.task,
            version: m.version,
            provider: m.provider,
            test_model: m.test_model,
            healthy: m.healthy,
            error: m.error,
        }
    }
}

impl From<crate::store::OutboxRow> for OutboxView {
    fn from(o: crate::store::OutboxRow) -> OutboxView {
        OutboxView {
            study: o.result.study_instance_uid,
            kind: o.result.kind.as_str().to_string(),
            peer: o.result.peer,
            state: o.state.as_str().to_string(),
            attempts: o.attempts,
            error: o.last_error,
            since: page::when(o.created_at),
        }
    }
}

impl From<crate::store::AuditRow> for AuditView {
    fn from(a: crate::store::AuditRow) -> AuditView {
        AuditView {
            at: page::when(a.at_ms),
            who: a.who,
            role: a.role,
            action: a.action,
            resource: a.resource,
            peer: a.peer,
        }
    }
}

impl From<crate::store::reading_room::UserRow> for UserView {
    fn from(u: crate::store::reading_room::UserRow) -> UserView {
        UserView {
            role: u.role.as_str(),
            disabled: u.disabled,
            created: page::when(u.created_at),
            name: u.name,
        }
    }
}

pub async fn page(
    State(app): State<App>,
    viewer: Viewer,
    Query(q): Query<AuditQuery>,
) -> Result<Response, WebError> {
    viewer.require(&[])?;
    let since_ms = since_ms(&q.since)?;
    let who = q.who.trim().to_string();
    let (jobs, outbox, audit, users) = {
        let who = who.clone();
        app.state
            .store_call(move |s| {
                Ok((
                    s.jobs(None)?,
                    s.outbox(50)?,
                    s.audit_log(since_ms, &who)?,
                    s.users()?,
                ))
            })
            .await?
    };
    let mut jobs: Vec<JobView> = jobs.into_iter().map(JobView::from).collect();
    jobs.sort_by_key(|j| !j.failed);
    let models = app
        .state
        .models
        .read()
        .map(|m| m.clone())
        .unwrap_or_default()
        .into_iter()
        .map(ModelView::from)
        .collect();
    let outbox = outbox.into_iter().map(OutboxView::from).collect();
    let audit_total = audit.len();
    let audit = audit
        .into_iter()
        .rev()
        .take(AUDIT_ROWS)
        .map(AuditView::from)
        .collect();
    let users = users.into_iter().map(UserView::from).collect();
    viewer
        .audit(&app, "web: admin", "jobs, models, audit, users")
        .await?;
    Ok(page::render(&AdminPage {
        chrome: Chrome::of(&viewer, "admin"),
        jobs,
        models,
        outbox,
        audit,
        audit_total,
        who,
        since: q.since,
        users,
    }))
}

/// Queues a failed job again.
pub async fn retry_job(
    State(app): State<App>,
    viewer: Viewer,
    StudyUid(uid): StudyUid,
) -> Result<Response, WebError> {
    viewer.require(&[])?;
    {
        let uid = uid.clone();
        app.state.store_call(move |s| s.retry_job(&uid)).await?;
    }
    viewer
        .audit(&app, "web: retry job", &format!("studies/{uid}"))
        .await?;
    app.state.study_changed(&uid, true);
    Ok(Redirect::to("/admin").into_response())
}

#[derive(serde::Deserialize)]
pub struct DisabledForm {
    disabled: String,
}

/// Disables (ending their sessions) or enables a person.
pub async fn set_disabled(
    State(app): State<App>,
    viewer: Viewer,
    Path(name): Path<String>,
    Form(form): Form<DisabledForm>,
) -> Result<Response, WebError> {
    viewer.require(&[])?;
    let disabled = match form.disabled.as_str() {
        "true" => true,
        "false" => false,
        other => {
            return Err(WebError::new(
                StatusCode::BAD_REQUEST,
                format!("disabled must be true or false, not {other:?}"),
            ))
        }
    };
    if disabled && name == viewer.name {
        return Err(WebError::new(
            StatusCode::CONFLICT,
            "you cannot disable yourself: ask another administrator",
        ));
    }
    {
        let name = name.clone();
        app.state
            .store_call(move |s| s.set_user_disabled(&name, disabled))
            .await?;
    }
    let action = if disabled {
        "web: disable user"
    } else {
        "web: enable user"
    };
    viewer.audit(&app, action, &format!("users/{name}")).await?;
    Ok(Redirect::to("/admin").into_response())
}

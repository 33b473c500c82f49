//! QA in the browser: the model's drafts against the signed reads over a chosen period and
//! model version: per observation the 2×2 table, sensitivity, PPV and kappa with their 95 %
//! intervals and the labeler's own F1 beside them; device-verdict agreement and edit distance;
//! the same by month and by model version as SVG charts; each study's draft and final read
//! side by side with their word differences; and the rows as CSV.
//!
//! The comparisons are the ones computed when each read was signed (read back, never
//! recomputed here, so the figures do not move when the labeler changes).

use super::page::{self, Chrome};
use super::session::Viewer;
use super::{App, WebError};
use crate::labeler::Observation;
use crate::qa::{
    AgreementBuilder, Estimate, ObservationStatistics, StudyComparison, UncertainPolicy,
};
use crate::roles::Role;
use crate::store::WorkItemRow;
mod charts;
mod study;

pub use study::study;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Period {
    /// First day, YYYY-MM-DD (signing date, UTC).
    #[serde(default)]
    pub from: String,
    /// Last day, YYYY-MM-DD, included.
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub version: String,
    /// The observation whose sensitivity and PPV are charted (default: Pneumothorax).
    #[serde(default)]
    pub observation: String,
}

impl Period {
    fn bounds(&self) -> Result<(Option<i64>, Option<i64>), WebError> {
        let day = |text: &str, name: &str| -> Result<Option<i64>, WebError> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(|d| {
                    Some(
                        d.and_hms_opt(0, 0, 0)
                            .expect("midnight")
                            .and_utc()
                            .timestamp_millis(),
                    )
                })
                .map_err(|_| {
                    WebError::new(
                        StatusCode::BAD_REQUEST,
                        format!("{name} {text:?} is not a date: use YYYY-MM-DD"),
                    )
                })
        };
        let from = day(&self.from, "from")?;
        let to = day(&self.to, "to")?.map(|t| t + 86_400_000);
        Ok((from, to))
    }

    /// The observation to chart; an unknown name is refused when the page is built.
    fn charted(&self) -> Observation {
        Observation::parse(self.observation.trim()).unwrap_or(Observation::Pneumothorax)
    }

    fn query(&self) -> String {
        use super::session::percent_encode as e;
        format!(
            "from={}&to={}&version={}&observation={}",
            e(self.from.trim()),
            e(self.to.trim()),
            e(self.version.trim()),
            e(self.charted().name())
        )
    }
}

/// A signed study with its comparison.
struct Signed {
    uid: String,
    accession: String,
    study_date: String,
    signed_at: i64,
    radiologist: String,
    model_version: String,
    comparison: StudyComparison,
}

async fn signed(app: &App, period: &Period) -> Result<Vec<Signed>, WebError> {
    let (from, to) = period.bounds()?;
    let version = period.version.trim().to_string();
    let rows: Vec<WorkItemRow> = app
        .state
        .store_call(move |s| s.signed_items(from, to, &version))
        .await?;
    rows.iter()
        .filter_map(|row| {
            let comparison = row.comparison.as_deref()?;
            Some((row, comparison))
        })
        .map(|(row, comparison)| {
            Ok(Signed {
                uid: row.study_instance_uid.clone(),
                accession: row.content.accession_number.clone(),
                study_date: page::dicom_date(&row.content.study_date),
                signed_at: row.signed_at.unwrap_or(row.created_at),
                radiologist: row
                    .final_read
                    .as_ref()
                    .map(|f| f.radiologist.clone())
                    .unwrap_or_default(),
                model_version: row.model_version.clone(),
                comparison: serde_json::from_str(comparison)
                    .map_err(|e| WebError::internal(format!("a stored comparison: {e}")))?,
            })
        })
        .collect()
}

fn percent(e: &Estimate) -> String {
    match (e.value, e.low, e.high) {
        (Some(v), Some(l), Some(h)) => {
            format!("{:.0}% ({:.0}–{:.0})", v * 100.0, l * 100.0, h * 100.0)
        }
        _ => "—".into(),
    }
}

fn kappa(e: &Estimate) -> String {
    match (e.value, e.low, e.high) {
        (Some(v), Some(l), Some(h)) => format!("{v:.2} ({l:.2} to {h:.2})"),
        _ => "—".into(),
    }
}

pub struct ObservationRow {
    pub observation: String,
    pub n: u64,
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
    pub sensitivity: String,
    pub ppv: String,
    pub f1: String,
    pub kappa: String,
    pub labeler_f1: String,
    pub labeler_weak: bool,
}

pub struct StudyRowView {
    pub uid: String,
    /// The study's QA page; None when its UID is not a DICOM UID.
    pub href: Option<String>,
    pub accession: String,
    pub study_date: String,
    pub signed_at: String,
    pub radiologist: String,
    pub model_version: String,
    pub disagreements: usize,
    pub edit: String,
}

impl From<&ObservationStatistics> for ObservationRow {
    fn from(o: &ObservationStatistics) -> ObservationRow {
        let two_places =
            |f: Option<f64>| f.map(|f| format!("{f:.2}")).unwrap_or_else(|| "—".into());
        ObservationRow {
            observation: o.observation.to_string(),
            n: o.table.n(),
            tp: o.table.true_positive,
            fp: o.table.false_positive,
            fn_: o.table.false_negative,
            tn: o.table.true_negative,
            sensitivity: percent(&o.sensitivity),
            ppv: percent(&o.ppv),
            f1: two_places(o.f1),
            kappa: kappa(&o.kappa),
            labeler_f1: two_places(o.labeler_f1),
            labeler_weak: o.labeler_f1.is_some_and(|f| f < 0.8),
        }
    }
}

impl From<&Signed> for StudyRowView {
    fn from(s: &Signed) -> StudyRowView {
        StudyRowView {
            uid: s.uid.clone(),
            href: super::paths::qa_study(&s.uid),
            accession: s.accession.clone(),
            study_date: s.study_date.clone(),
            signed_at: page::when(s.signed_at),
            radiologist: s.radiologist.clone(),
            model_version: s.model_version.clone(),
            disagreements: s.comparison.labels.values().filter(|a| !a.agree).count()
                + s.comparison.devices.iter().filter(|d| !d.agree).count(),
            edit: format!(
                "{} words ({:.0}%)",
                s.comparison.edit_distance,
                s.comparison.edit_fraction * 100.0
            ),
        }
    }
}

#[derive(Template)]
#[template(path = "qa.html")]
struct QaPage {
    chrome: Chrome,
    period: Period,
    query: String,
    studies: u64,
    observations: Vec<ObservationRow>,
    device_agreement: String,
    mean_edit: String,
    by_month: String,
    by_version: String,
    observation_by_month: String,
    observation_by_version: String,
    /// The observations to chart, and which one is.
    choices: Vec<(String, bool)>,
    rows: Vec<StudyRowView>,
}

pub async fn page(
    State(app): State<App>,
    viewer: Viewer,
    Query(period): Query<Period>,
) -> Result<Response, WebError> {
    viewer.require(&[Role::Qa])?;
    let studies = signed(&app, &period).await?;
    let mut builder = AgreementBuilder::new("period", UncertainPolicy::Positive);
    for s in &studies {
        builder.add(&s.comparison);
    }
    let agreement = builder.finish();
    let observations = agreement
        .observations
        .iter()
        .map(ObservationRow::from)
        .collect();
    if !period.observation.trim().is_empty()
        && Observation::parse(period.observation.trim()).is_none()
    {
        return Err(WebError::new(
            StatusCode::BAD_REQUEST,
            format!("{:?} is not one of the 14 observations", period.observation),
        ));
    }
    let charted = period.charted();
    let charts = charts::Charts::of(&studies, charted);
    let choices = Observation::ALL
        .iter()
        .map(|o| (o.name().to_string(), *o == charted))
        .collect();
    let rows = studies.iter().map(StudyRowView::from).collect();
    viewer
        .audit(
            &app,
            "web: QA",
            &format!("{} signed studies ({})", studies.len(), period.query()),
        )
        .await?;
    Ok(page::render(&QaPage {
        chrome: Chrome::of(&viewer, "qa"),
        query: period.query(),
        studies: agreement.studies,
        observations,
        device_agreement: percent(&agreement.device_agreement),
        mean_edit: agreement
            .mean_edit_fraction
            .map(|f| format!("{:.0}%", f * 100.0))
            .unwrap_or_else(|| "—".into()),
        by_month: charts.by_month,
        by_version: charts.by_version,
        observation_by_month: charts.observation_by_month,
        observation_by_version: charts.observation_by_version,
        choices,
        rows,
        period,
    }))
}

/// A CSV field: quoted, and a leading = + - @ made inert for spreadsheets.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    format!("\"{}\"", text.replace('"', "\"\""))
}

pub async fn export(
    State(app): State<App>,
    viewer: Viewer,
    Query(period): Query<Period>,
) -> Result<Response, WebError> {
    viewer.require(&[Role::Qa])?;
    let studies = signed(&app, &period).await?;
    let observations = Observation::ALL;
    let mut csv = String::from(
        "study_instance_uid,accession_number,study_date,signed_at,radiologist,model_version,edit_distance_words,edit_fraction,devices_agreeing,devices_compared",
    );
    for o in observations {
        csv.push_str(&format!(",{}", csv_field(&format!("{o} (draft/final)"))));
    }
    csv.push('\n');
    for s in &studies {
        let c = &s.comparison;
        let compared: Vec<_> = c
            .devices
            .iter()
            .filter(|d| d.draft.is_some() && d.final_read.is_some())
            .collect();
        let fields = [
            csv_field(&s.uid),
            csv_field(&s.accession),
            csv_field(&s.study_date),
            csv_field(&page::when(s.signed_at)),
            csv_field(&s.radiologist),
            csv_field(&s.model_version),
            c.edit_distance.to_string(),
            format!("{:.4}", c.edit_fraction),
            compared.iter().filter(|d| d.agree).count().to_string(),
            compared.len().to_string(),
        ];
        csv.push_str(&fields.join(","));
        for o in observations {
            let cell = c
                .labels
                .get(&o)
                .map(|a| format!("{}/{}", a.draft.as_str(), a.final_read.as_str()))
                .unwrap_or_default();
            csv.push(',');
            csv.push_str(&csv_field(&cell));
        }
        csv.push('\n');
    }
    viewer
        .audit(
            &app,
            "web: QA export",
            &format!("{} signed studies", studies.len()),
        )
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"radassist-qa.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_formulas_made_inert() {
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
    }
}

//! QA in the browser: the model's drafts against the signed reads over a chosen period and
//! model version: per observation the 2×2 table, sensitivity, PPV and kappa with their 95 %
//! intervals and the labeler's own F1 beside them; device-verdict agreement and edit distance;
//! the same by month and by model version as SVG charts; each study's draft and final read
//! side by side with their word differences; and the rows as CSV.
//!
//! The comparisons are the ones computed when each read was signed (read back, never
//! recomputed here, so the figures do not move when the labeler changes).

use super::chart::{line_chart, Series};
use super::page::{self, Chrome};
use super::paths::StudyUid;
use super::session::Viewer;
use super::{App, WebError};
use crate::labeler::Observation;
use crate::qa::{wilson, AgreementBuilder, Estimate, StudyComparison, UncertainPolicy};
use crate::roles::Role;
use crate::store::WorkItemRow;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;

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

/// Label agreement (study × observation pairs that agree), device agreement, and mean edit
/// fraction of a group of studies.
fn group_series(groups: &BTreeMap<String, Vec<&Signed>>) -> Vec<Series> {
    let mut labels = vec![];
    let mut devices = vec![];
    let mut edits = vec![];
    for members in groups.values() {
        let pairs: Vec<bool> = members
            .iter()
            .flat_map(|s| s.comparison.labels.values().map(|a| a.agree))
            .collect();
        let agree = pairs.iter().filter(|a| **a).count() as u64;
        let label = wilson(agree, pairs.len() as u64);
        labels.push(label.value.map(|v| (v, label.low.zip(label.high))));
        let both: Vec<bool> = members
            .iter()
            .flat_map(|s| &s.comparison.devices)
            .filter(|d| d.draft.is_some() && d.final_read.is_some())
            .map(|d| d.agree)
            .collect();
        let device = wilson(
            both.iter().filter(|a| **a).count() as u64,
            both.len() as u64,
        );
        devices.push(device.value.map(|v| (v, device.low.zip(device.high))));
        let mean = members
            .iter()
            .map(|s| s.comparison.edit_fraction)
            .sum::<f64>()
            / members.len().max(1) as f64;
        edits.push((!members.is_empty()).then_some((mean, None)));
    }
    vec![
        Series {
            name: "Finding labels agree".into(),
            class: "s1",
            points: labels,
        },
        Series {
            name: "Device verdicts agree".into(),
            class: "s2",
            points: devices,
        },
        Series {
            name: "Words edited (mean)".into(),
            class: "s3",
            points: edits,
        },
    ]
}

/// One observation's sensitivity and PPV in each group, with their intervals.
fn observation_series(groups: &BTreeMap<String, Vec<&Signed>>, o: Observation) -> Vec<Series> {
    let (mut sensitivity, mut ppv) = (vec![], vec![]);
    for members in groups.values() {
        let mut builder = AgreementBuilder::new("group", UncertainPolicy::Positive);
        for s in members {
            builder.add(&s.comparison);
        }
        let agreement = builder.finish();
        let stats = agreement.observations.iter().find(|x| x.observation == o);
        let point = |e: Option<Estimate>| e.and_then(|e| e.value.map(|v| (v, e.low.zip(e.high))));
        sensitivity.push(point(stats.map(|x| x.sensitivity)));
        ppv.push(point(stats.map(|x| x.ppv)));
    }
    vec![
        Series {
            name: format!("{o}: sensitivity"),
            class: "s1",
            points: sensitivity,
        },
        Series {
            name: format!("{o}: PPV"),
            class: "s2",
            points: ppv,
        },
    ]
}

/// Studies grouped by `key` (a month, a model version), charted by `series`.
fn chart_by(
    id: &str,
    title: &str,
    studies: &[Signed],
    key: impl Fn(&Signed) -> String,
    series: impl Fn(&BTreeMap<String, Vec<&Signed>>) -> Vec<Series>,
) -> String {
    let mut groups: BTreeMap<String, Vec<&Signed>> = BTreeMap::new();
    for s in studies {
        groups.entry(key(s)).or_default().push(s);
    }
    let names: Vec<String> = groups.keys().cloned().collect();
    line_chart(id, title, &names, &series(&groups))
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
        .map(|o| ObservationRow {
            observation: o.observation.to_string(),
            n: o.table.n(),
            tp: o.table.true_positive,
            fp: o.table.false_positive,
            fn_: o.table.false_negative,
            tn: o.table.true_negative,
            sensitivity: percent(&o.sensitivity),
            ppv: percent(&o.ppv),
            f1: o
                .f1
                .map(|f| format!("{f:.2}"))
                .unwrap_or_else(|| "—".into()),
            kappa: kappa(&o.kappa),
            labeler_f1: o
                .labeler_f1
                .map(|f| format!("{f:.2}"))
                .unwrap_or_else(|| "—".into()),
            labeler_weak: o.labeler_f1.is_some_and(|f| f < 0.8),
        })
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
    let month = |s: &Signed| page::when(s.signed_at).get(..7).unwrap_or("").to_string();
    let version = |s: &Signed| s.model_version.clone();
    let by_month = chart_by(
        "chart-month",
        "By month of signing",
        &studies,
        month,
        group_series,
    );
    let by_version = chart_by(
        "chart-version",
        "By model version",
        &studies,
        version,
        group_series,
    );
    let observation_series =
        |groups: &BTreeMap<String, Vec<&Signed>>| observation_series(groups, charted);
    let observation_by_month = chart_by(
        "chart-observation-month",
        &format!("{charted} by month of signing"),
        &studies,
        month,
        observation_series,
    );
    let observation_by_version = chart_by(
        "chart-observation-version",
        &format!("{charted} by model version"),
        &studies,
        version,
        observation_series,
    );
    let choices = Observation::ALL
        .iter()
        .map(|o| (o.name().to_string(), *o == charted))
        .collect();
    let rows = studies
        .iter()
        .map(|s| StudyRowView {
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
        })
        .collect();
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
        by_month,
        by_version,
        observation_by_month,
        observation_by_version,
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

/// A word of the diff: its text and whether it was removed, added or kept.
pub struct Word {
    pub text: String,
    pub class: &'static str,
}

/// The words of draft → final, marked.
pub fn word_diff(draft: &str, final_read: &str) -> (Vec<Word>, Vec<Word>) {
    use similar::{ChangeTag, TextDiff};
    let diff = TextDiff::from_words(draft, final_read);
    let (mut left, mut right) = (vec![], vec![]);
    for change in diff.iter_all_changes() {
        let text = change.value().to_string();
        match change.tag() {
            ChangeTag::Equal => {
                left.push(Word {
                    text: text.clone(),
                    class: "same",
                });
                right.push(Word {
                    text,
                    class: "same",
                });
            }
            ChangeTag::Delete => left.push(Word { text, class: "del" }),
            ChangeTag::Insert => right.push(Word { text, class: "ins" }),
        }
    }
    (left, right)
}

pub struct LabelRow {
    pub observation: String,
    pub draft: String,
    pub final_read: String,
    pub agree: bool,
}

pub struct DeviceRow {
    pub device: String,
    pub draft: String,
    pub final_read: String,
    pub agree: bool,
}

#[derive(Template)]
#[template(path = "qa_study.html")]
struct QaStudy {
    chrome: Chrome,
    uid: String,
    accession: String,
    study_date: String,
    radiologist: String,
    model_version: String,
    draft: Vec<Word>,
    final_read: Vec<Word>,
    edit: String,
    labels: Vec<LabelRow>,
    devices: Vec<DeviceRow>,
}

pub async fn study(
    State(app): State<App>,
    viewer: Viewer,
    StudyUid(uid): StudyUid,
) -> Result<Response, WebError> {
    viewer.require(&[Role::Qa])?;
    let row = app.work_item(&uid).await?;
    let (Some(read), Some(stored)) = (&row.final_read, &row.comparison) else {
        return Err(WebError::new(
            StatusCode::CONFLICT,
            "this study is not signed yet: there is no final read to compare with",
        ));
    };
    let comparison: StudyComparison = serde_json::from_str(stored)
        .map_err(|e| WebError::internal(format!("the stored comparison: {e}")))?;
    let (draft, final_read) = word_diff(&row.content.draft.text, &read.text);
    viewer
        .audit(&app, "web: QA study", &format!("studies/{uid}"))
        .await?;
    Ok(page::render(&QaStudy {
        chrome: Chrome::of(&viewer, "qa"),
        accession: row.content.accession_number.clone(),
        study_date: page::dicom_date(&row.content.study_date),
        radiologist: read.radiologist.clone(),
        model_version: row.model_version.clone(),
        draft,
        final_read,
        edit: format!(
            "{} words changed ({:.0}% of the longer text)",
            comparison.edit_distance,
            comparison.edit_fraction * 100.0
        ),
        labels: comparison
            .labels
            .iter()
            .map(|(o, a)| LabelRow {
                observation: o.to_string(),
                draft: a.draft.as_str().into(),
                final_read: a.final_read.as_str().into(),
                agree: a.agree,
            })
            .collect(),
        devices: comparison
            .devices
            .iter()
            .map(|d| DeviceRow {
                device: d.device.replace('_', " "),
                draft: d.draft.clone().unwrap_or_else(|| "—".into()),
                final_read: d.final_read.clone().unwrap_or_else(|| "—".into()),
                agree: d.agree,
            })
            .collect(),
        uid,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_made_inert() {
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
    }

    #[test]
    fn the_word_diff_marks_what_the_radiologist_changed() {
        let (l, r) = word_diff(
            "No pneumothorax. Tube in place.",
            "Small pneumothorax. Tube in place.",
        );
        assert!(l.iter().any(|w| w.class == "del" && w.text == "No"));
        assert!(r.iter().any(|w| w.class == "ins" && w.text == "Small"));
    }
}

//! Acceptance testing of a pack on a site's own studies (`radassist models validate`): the
//! site's films go through the same decode, preprocessing and inference as the service, each
//! film's outputs are kept in a predictions file (so a long run resumes where it stopped), and
//! compared with the site's truth. A findings pack: study-level probabilities against per-study
//! labels ([`truth`]), per finding its discrimination, operating points and calibration
//! ([`metrics`]). A landmarks pack: the landmarks found against annotated points ([`points`]),
//! in mm, with the verdicts they lead to ([`landmarks`]). Every figure overall and by subgroup
//! (manufacturer, view, age band, sex); then the site's acceptance criteria ([`criteria`])
//! decide, and [`report`] and [`landmark_report`] write the figures as HTML and JSON.
//!
//! A study is the films of one Study Instance UID; its probability for a finding is the highest
//! of its films' (a finding seen on one view is seen in the study). A study is matched to the
//! truth by its Study Instance UID, else by its Accession Number.

pub mod criteria;
pub mod landmark_report;
pub mod landmarks;
pub mod metrics;
pub mod points;
pub mod report;
pub mod truth;

use crate::dicom::{self, Attributes, DecodeLimits};
use crate::imaging::header::ProjectionView;
use crate::imaging::Radiograph;
use crate::inference::vision::Landmark;
use crate::placement::geometry::PatientFrame;
use metrics::{CalibrationBin, Case, OperatingPoint, RocPoint};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The subgroups every figure is also given by.
pub const SUBGROUPS: [&str; 4] = ["manufacturer", "view", "age band", "sex"];

/// Reliability-diagram bins.
pub const CALIBRATION_BINS: usize = 10;

/// One film the pack ran on (or could not), as a line of the predictions file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub file: String,
    #[serde(default)]
    pub study_instance_uid: String,
    #[serde(default)]
    pub accession_number: String,
    #[serde(default)]
    pub sop_instance_uid: String,
    /// Each of [`SUBGROUPS`]: the film's value ("unknown" when its header has none).
    #[serde(default)]
    pub subgroups: BTreeMap<String, String>,
    /// The pack's probability per finding label.
    #[serde(default)]
    pub probabilities: BTreeMap<String, f64>,
    /// A landmarks pack: the landmarks it found, in image pixels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub landmarks: Vec<Landmark>,
    /// A landmarks pack: the film's size, pixel spacing and orientation (what mm are measured
    /// with) and the patient's age (which rules apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<PatientFrame>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_years: Option<f64>,
    /// Why the film was refused (it did not decode, or is not a radiograph the service takes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// `items` grouped by the value of each of [`SUBGROUPS`] (the attribute, its value, the items
/// with it; "unknown" where a film's header has none), in that order and by value.
pub fn by_subgroup<'a, T: Clone>(
    items: &[T],
    groups_of: impl Fn(&T) -> &'a BTreeMap<String, String>,
) -> Vec<(&'static str, String, Vec<T>)> {
    let mut grouped = Vec::new();
    for attribute in SUBGROUPS {
        let mut values: BTreeMap<&str, Vec<T>> = BTreeMap::new();
        for item in items {
            let value = groups_of(item)
                .get(attribute)
                .map_or("unknown", String::as_str);
            values.entry(value).or_default().push(item.clone());
        }
        for (value, group) in values {
            grouped.push((attribute, value.to_string(), group));
        }
    }
    grouped
}

/// (file, reason) of each film refused.
pub fn refused(records: &[Record]) -> Vec<(String, String)> {
    records
        .iter()
        .filter_map(|r| Some((r.file.clone(), r.refused.clone()?)))
        .collect()
}

/// The files under `dir` (every level), in name order: the films to run.
pub fn films(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let path = entry?.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.is_file() {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// A film read as the service reads it, and its record (without probabilities yet); Err with
/// the film's refusal when it cannot be.
pub fn read_film(path: &Path, limits: &DecodeLimits) -> Result<(Radiograph, Record), Box<Record>> {
    let mut record = Record {
        file: path.display().to_string(),
        ..Record::default()
    };
    let refuse = |mut record: Record, reason: String| {
        record.refused = Some(reason);
        Box::new(record)
    };
    let bytes = match dicom::read_limited(path, limits.max_file_bytes) {
        Ok(bytes) => bytes,
        Err(e) => return Err(refuse(record, e.to_string())),
    };
    let instance = match dicom::parse_dicom(&bytes) {
        Ok(instance) => instance,
        Err(e) => return Err(refuse(record, e.to_string())),
    };
    let manufacturer = Attributes(&instance)
        .text(dicom_dictionary_std::tags::MANUFACTURER)
        .filter(|m| !m.trim().is_empty());
    let radiograph = match dicom::decode_instance(&instance, limits) {
        Ok(radiograph) => radiograph,
        Err(e) => return Err(refuse(record, e.to_string())),
    };
    let identity = &radiograph.header.identity;
    let acquisition = &radiograph.header.acquisition;
    record.study_instance_uid = identity.study_instance_uid.clone().unwrap_or_default();
    record.accession_number = identity.accession_number.clone().unwrap_or_default();
    record.sop_instance_uid = identity.sop_instance_uid.clone().unwrap_or_default();
    record.frame = Some(PatientFrame::from_header(&radiograph.header));
    record.age_years = acquisition.patient_age.as_ref().map(|a| a.years);
    let unknown = || "unknown".to_string();
    let values = [
        manufacturer.map(|m| m.trim().to_string()),
        Some(view_name(&acquisition.view)),
        Some(age_band(acquisition.patient_age.as_ref().map(|a| a.years))),
        acquisition.patient_sex.clone().filter(|s| !s.is_empty()),
    ];
    for (name, value) in SUBGROUPS.iter().zip(values) {
        record
            .subgroups
            .insert(name.to_string(), value.unwrap_or_else(unknown));
    }
    Ok((radiograph, record))
}

fn view_name(view: &ProjectionView) -> String {
    match view {
        ProjectionView::Pa => "PA".into(),
        ProjectionView::Ap => "AP".into(),
        ProjectionView::Ll => "LL".into(),
        ProjectionView::Rl => "RL".into(),
        ProjectionView::Other(other) => other.clone(),
        ProjectionView::Unknown => "unknown".into(),
    }
}

/// The age band of a patient `years` old.
pub fn age_band(years: Option<f64>) -> String {
    match years {
        None => "unknown",
        Some(y) if y < 18.0 => "under 18",
        Some(y) if y < 40.0 => "18-39",
        Some(y) if y < 65.0 => "40-64",
        Some(_) => "65 and over",
    }
    .to_string()
}

/// How a run is judged: the pack's threshold for "present" and the sensitivity a site wants
/// the threshold for.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub pack: String,
    pub threshold: f64,
    pub target_sensitivity: f64,
}

/// A finding's figures over a set of studies.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub studies: usize,
    pub positives: usize,
    pub prevalence: Option<f64>,
    pub auroc: Option<f64>,
    /// DeLong's 95 % interval.
    pub auroc_95: Option<(f64, f64)>,
    pub at_threshold: OperatingPoint,
    pub threshold_for_target: Option<f64>,
    pub at_target: Option<OperatingPoint>,
    pub ece: Option<f64>,
    pub calibration: Vec<CalibrationBin>,
    pub roc: Vec<RocPoint>,
    /// Why a figure is missing ("one class only: AUROC undefined").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One subgroup's figures (without the curves).
#[derive(Debug, Clone, Serialize)]
pub struct SubgroupFigures {
    pub attribute: String,
    pub value: String,
    pub figures: Figures,
}

#[derive(Debug, Clone, Serialize)]
pub struct FindingFigures {
    pub finding: String,
    pub overall: Figures,
    pub subgroups: Vec<SubgroupFigures>,
}

/// A run's evaluation: what was measured, and everything left out with its reason.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub settings: Settings,
    pub films: usize,
    pub studies: usize,
    pub findings: Vec<FindingFigures>,
    /// (file, reason) of each film refused.
    pub refused: Vec<(String, String)>,
    /// The truth file's rows left out, and its findings the pack does not have.
    pub truth_problems: Vec<String>,
    /// Studies with films and no truth row, and truth rows with no films.
    pub unmatched: Vec<String>,
}

/// The figures of `cases` at `settings`' operating points; `curves`: with ROC and reliability
/// points.
pub fn figures(cases: &[Case], settings: &Settings, curves: bool) -> Figures {
    let positives = cases.iter().filter(|c| c.positive).count();
    let area = metrics::auroc(cases);
    let target = metrics::threshold_for_sensitivity(cases, settings.target_sensitivity);
    let (calibration, ece) = metrics::calibration(cases, CALIBRATION_BINS);
    let note = match (cases.len(), positives) {
        (0, _) => Some("no studies".to_string()),
        (_, 0) => Some("no positive study: AUROC undefined".to_string()),
        (n, p) if n == p => Some("no negative study: AUROC undefined".to_string()),
        _ => None,
    };
    Figures {
        studies: cases.len(),
        positives,
        prevalence: (!cases.is_empty()).then(|| positives as f64 / cases.len() as f64),
        auroc: area.map(|a| a.0),
        auroc_95: area.map(|a| (a.1, a.2)),
        at_threshold: metrics::operating_point(cases, settings.threshold),
        threshold_for_target: target,
        at_target: target.map(|t| metrics::operating_point(cases, t)),
        ece,
        calibration: if curves { calibration } else { Vec::new() },
        roc: if curves {
            metrics::roc_curve(cases)
        } else {
            Vec::new()
        },
        note,
    }
}

/// One study: its probabilities (each finding's highest over its films), subgroups (its first
/// film's), and truth labels.
struct Study<'a> {
    probabilities: BTreeMap<&'a str, f64>,
    subgroups: &'a BTreeMap<String, String>,
    labels: &'a [Option<bool>],
}

/// The studies of `records` with a truth row, and what could not be matched.
fn studies<'a>(records: &'a [Record], truth: &'a truth::Truth) -> (Vec<Study<'a>>, Vec<String>) {
    let mut by_study: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for record in records.iter().filter(|r| r.refused.is_none()) {
        let key = if record.study_instance_uid.is_empty() {
            record.file.as_str()
        } else {
            record.study_instance_uid.as_str()
        };
        by_study.entry(key).or_default().push(record);
    }
    let mut studies = Vec::new();
    let mut unmatched = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    for (key, films) in &by_study {
        let first = films[0];
        let row = [*key, first.accession_number.as_str()]
            .into_iter()
            .find(|id| !id.is_empty() && truth.labels.contains_key(*id));
        let Some(id) = row else {
            unmatched.push(format!(
                "study {key} ({} film(s), first {}): no truth row names its Study Instance UID or Accession Number {:?}",
                films.len(),
                first.file,
                first.accession_number
            ));
            continue;
        };
        used.insert(id);
        let mut probabilities: BTreeMap<&str, f64> = BTreeMap::new();
        for film in films {
            for (label, &p) in &film.probabilities {
                let best = probabilities.entry(label.as_str()).or_insert(p);
                *best = best.max(p);
            }
        }
        studies.push(Study {
            probabilities,
            subgroups: &first.subgroups,
            labels: &truth.labels[id],
        });
    }
    for id in truth.labels.keys().filter(|id| !used.contains(id.as_str())) {
        unmatched.push(format!("truth row {id}: no film of that study was found"));
    }
    (studies, unmatched)
}

/// Evaluates `records` against `truth` for the findings both the truth and the pack (`labels`)
/// have.
pub fn evaluate(
    records: &[Record],
    truth: &truth::Truth,
    labels: &[String],
    settings: Settings,
) -> Evaluation {
    let (studies, unmatched) = studies(records, truth);
    let mut truth_problems = truth.problems.clone();
    let mut findings = Vec::new();
    for (column, finding) in truth.findings.iter().enumerate() {
        if !labels.contains(finding) {
            truth_problems.push(format!(
                "{finding}: the pack has no such finding (it has {}); the column is left out",
                labels.join(", ")
            ));
            continue;
        }
        let cases: Vec<(Case, &BTreeMap<String, String>)> = studies
            .iter()
            .filter_map(|s| {
                let positive = s.labels[column]?;
                let score = *s.probabilities.get(finding.as_str())?;
                Some((Case { score, positive }, s.subgroups))
            })
            .collect();
        let all: Vec<Case> = cases.iter().map(|c| c.0).collect();
        let subgroups = by_subgroup(&cases, |c| c.1)
            .into_iter()
            .map(|(attribute, value, group)| {
                let group: Vec<Case> = group.iter().map(|c| c.0).collect();
                SubgroupFigures {
                    attribute: attribute.to_string(),
                    value,
                    figures: figures(&group, &settings, false),
                }
            })
            .collect();
        findings.push(FindingFigures {
            finding: finding.clone(),
            overall: figures(&all, &settings, true),
            subgroups,
        });
    }
    Evaluation {
        films: records.len(),
        studies: studies.len(),
        refused: refused(records),
        findings,
        truth_problems,
        unmatched,
        settings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_fall_in_their_bands() {
        assert_eq!(age_band(None), "unknown");
        assert_eq!(age_band(Some(17.9)), "under 18");
        assert_eq!(age_band(Some(18.0)), "18-39");
        assert_eq!(age_band(Some(64.5)), "40-64");
        assert_eq!(age_band(Some(90.0)), "65 and over");
    }

    fn record(study: &str, accession: &str, p: f64) -> Record {
        Record {
            file: format!("{study}.dcm"),
            study_instance_uid: study.into(),
            accession_number: accession.into(),
            probabilities: BTreeMap::from([("Edema".to_string(), p)]),
            ..Record::default()
        }
    }

    #[test]
    fn a_study_takes_its_highest_film_and_is_matched_by_uid_or_accession() {
        let records = vec![
            record("1.1", "A1", 0.2),
            record("1.1", "A1", 0.7),
            record("1.2", "A2", 0.1),
            record("1.3", "", 0.9),
        ];
        let truth = truth::Truth {
            findings: vec!["Edema".into(), "Fracture".into()],
            labels: BTreeMap::from([
                ("1.1".to_string(), vec![Some(true), None]),
                ("A2".to_string(), vec![Some(false), None]),
                ("9.9".to_string(), vec![Some(true), None]),
            ]),
            problems: vec![],
        };
        let settings = Settings {
            pack: "p".into(),
            threshold: 0.5,
            target_sensitivity: 0.9,
        };
        let evaluation = evaluate(&records, &truth, &["Edema".to_string()], settings);
        assert_eq!(evaluation.studies, 2);
        let edema = &evaluation.findings[0].overall;
        assert_eq!(edema.auroc, Some(1.0));
        assert_eq!(edema.at_threshold.true_positives, 1);
        assert!(evaluation
            .unmatched
            .iter()
            .any(|u| u.starts_with("study 1.3")));
        assert!(evaluation
            .unmatched
            .iter()
            .any(|u| u.starts_with("truth row 9.9")));
        assert!(evaluation.truth_problems[0].starts_with("Fracture: the pack has no such finding"));
    }
}

//! A site's acceptance criteria (a TOML file), checked against an evaluation: what each
//! finding (of a findings pack) or landmark (of a landmarks pack) must reach before the pack is
//! switched on. `[default]` applies to every finding and `[findings."NAME"]` adds to or
//! overrides it for one; `[landmark_default]` and `[landmarks."NAME"]` do the same for
//! landmarks.
//!
//! ```toml
//! [default]
//! min_auroc = 0.80
//! [findings."Pneumothorax"]
//! min_auroc = 0.90
//! min_sensitivity = 0.90      # at the pack's threshold
//! max_ece = 0.10
//!
//! [landmark_default]
//! min_detection_rate = 0.95
//! max_median_error_mm = 5.0
//! [landmarks."ett_tip"]
//! max_p95_error_mm = 10.0
//! [ett_distance]              # the tip's height above the carina, against the annotated one
//! max_median_error_mm = 5.0
//! [verdicts]                  # every device's verdict against the annotated points'
//! min_agreement = 0.90
//! ```
//!
//! A figure that cannot be measured (AUROC with one class in the truth, an error with no
//! detection) does not hold.

use super::landmarks::{LandmarkEvaluation, PointFigures};
use super::{Evaluation, Figures};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What one finding must reach; each unset bound is not checked.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    pub min_auroc: Option<f64>,
    /// The lower end of AUROC's 95 % interval.
    pub min_auroc_lower_95: Option<f64>,
    pub min_sensitivity: Option<f64>,
    pub min_specificity: Option<f64>,
    pub min_ppv: Option<f64>,
    pub max_ece: Option<f64>,
}

/// What one landmark must reach; each unset bound is not checked.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PointBounds {
    pub min_detection_rate: Option<f64>,
    pub max_false_detection_rate: Option<f64>,
    pub max_median_error_mm: Option<f64>,
    pub max_p95_error_mm: Option<f64>,
    pub min_within_5_mm: Option<f64>,
    pub min_within_10_mm: Option<f64>,
}

/// What the endotracheal tube tip's height above the carina must reach.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DistanceBounds {
    pub max_median_error_mm: Option<f64>,
    pub max_p95_error_mm: Option<f64>,
}

/// What every device's verdict agreement must reach.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VerdictBounds {
    pub min_agreement: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criteria {
    #[serde(default)]
    pub default: Bounds,
    #[serde(default)]
    pub findings: BTreeMap<String, Bounds>,
    #[serde(default)]
    pub landmark_default: PointBounds,
    #[serde(default)]
    pub landmarks: BTreeMap<String, PointBounds>,
    #[serde(default)]
    pub ett_distance: DistanceBounds,
    #[serde(default)]
    pub verdicts: VerdictBounds,
}

/// One criterion checked.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    /// What it is about: a finding, a landmark, "ett_distance" or a device.
    pub finding: String,
    pub criterion: String,
    pub required: f64,
    pub measured: Option<f64>,
    pub holds: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CriteriaError {
    #[error("the criteria file {path} cannot be read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the criteria file {path} is not valid: {source} (keys: min_auroc, min_auroc_lower_95, min_sensitivity, min_specificity, min_ppv, max_ece under [default] or [findings.\"NAME\"]; min_detection_rate, max_false_detection_rate, max_median_error_mm, max_p95_error_mm, min_within_5_mm, min_within_10_mm under [landmark_default] or [landmarks.\"NAME\"]; max_median_error_mm, max_p95_error_mm under [ett_distance]; min_agreement under [verdicts])")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
}

/// Reads the criteria file at `path`.
pub fn read(path: &std::path::Path) -> Result<Criteria, CriteriaError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CriteriaError::Read {
        path: shown.clone(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| CriteriaError::Parse {
        path: shown,
        source,
    })
}

/// Each criterion of `criteria` checked on `evaluation`; a finding named in the criteria that
/// the evaluation lacks fails with nothing measured.
pub fn check(criteria: &Criteria, evaluation: &Evaluation) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut names: Vec<&str> = evaluation
        .findings
        .iter()
        .map(|f| f.finding.as_str())
        .collect();
    for named in criteria.findings.keys() {
        if !names.contains(&named.as_str()) {
            names.push(named);
        }
    }
    for name in names {
        let bounds = merged(criteria.default, criteria.findings.get(name));
        let figures = evaluation
            .findings
            .iter()
            .find(|f| f.finding == name)
            .map(|f| &f.overall);
        checks.extend(check_one(name, &bounds, figures));
    }
    checks
}

fn merged(default: Bounds, own: Option<&Bounds>) -> Bounds {
    let Some(own) = own else { return default };
    Bounds {
        min_auroc: own.min_auroc.or(default.min_auroc),
        min_auroc_lower_95: own.min_auroc_lower_95.or(default.min_auroc_lower_95),
        min_sensitivity: own.min_sensitivity.or(default.min_sensitivity),
        min_specificity: own.min_specificity.or(default.min_specificity),
        min_ppv: own.min_ppv.or(default.min_ppv),
        max_ece: own.max_ece.or(default.max_ece),
    }
}

fn check_one(name: &str, bounds: &Bounds, figures: Option<&Figures>) -> Vec<Check> {
    let at = figures.map(|f| &f.at_threshold);
    let rows: [Row; 6] = [
        (
            "AUROC",
            bounds.min_auroc,
            figures.and_then(|f| f.auroc),
            true,
        ),
        (
            "AUROC 95 % lower bound",
            bounds.min_auroc_lower_95,
            figures.and_then(|f| f.auroc_95.map(|ci| ci.0)),
            true,
        ),
        (
            "sensitivity",
            bounds.min_sensitivity,
            at.and_then(|a| a.sensitivity),
            true,
        ),
        (
            "specificity",
            bounds.min_specificity,
            at.and_then(|a| a.specificity),
            true,
        ),
        ("PPV", bounds.min_ppv, at.and_then(|a| a.ppv), true),
        (
            "expected calibration error",
            bounds.max_ece,
            figures.and_then(|f| f.ece),
            false,
        ),
    ];
    checked(name, &rows)
}

/// A criterion: its name, the bound (None: not set), the figure measured, and whether the
/// figure must be at least (else at most) the bound.
type Row<'a> = (&'a str, Option<f64>, Option<f64>, bool);

fn checked(name: &str, rows: &[Row]) -> Vec<Check> {
    rows.iter()
        .filter_map(|&(criterion, required, measured, at_least)| {
            let required = required?;
            let holds = measured.is_some_and(|m| {
                if at_least {
                    m >= required
                } else {
                    m <= required
                }
            });
            Some(Check {
                finding: name.to_string(),
                criterion: format!(
                    "{} {criterion}",
                    if at_least { "minimum" } else { "maximum" }
                ),
                required,
                measured,
                holds,
            })
        })
        .collect()
}

fn merged_points(default: PointBounds, own: Option<&PointBounds>) -> PointBounds {
    let Some(own) = own else { return default };
    PointBounds {
        min_detection_rate: own.min_detection_rate.or(default.min_detection_rate),
        max_false_detection_rate: own
            .max_false_detection_rate
            .or(default.max_false_detection_rate),
        max_median_error_mm: own.max_median_error_mm.or(default.max_median_error_mm),
        max_p95_error_mm: own.max_p95_error_mm.or(default.max_p95_error_mm),
        min_within_5_mm: own.min_within_5_mm.or(default.min_within_5_mm),
        min_within_10_mm: own.min_within_10_mm.or(default.min_within_10_mm),
    }
}

fn point_rows(bounds: &PointBounds, f: Option<&PointFigures>) -> [Row<'static>; 6] {
    [
        (
            "detection rate",
            bounds.min_detection_rate,
            f.and_then(|f| f.detection_rate),
            true,
        ),
        (
            "false detection rate",
            bounds.max_false_detection_rate,
            f.and_then(|f| f.false_detection_rate),
            false,
        ),
        (
            "median position error (mm)",
            bounds.max_median_error_mm,
            f.and_then(|f| f.median_error_mm),
            false,
        ),
        (
            "95th percentile position error (mm)",
            bounds.max_p95_error_mm,
            f.and_then(|f| f.p95_error_mm),
            false,
        ),
        (
            "share within 5 mm",
            bounds.min_within_5_mm,
            f.and_then(|f| f.within_5_mm),
            true,
        ),
        (
            "share within 10 mm",
            bounds.min_within_10_mm,
            f.and_then(|f| f.within_10_mm),
            true,
        ),
    ]
}

/// Each landmark criterion of `criteria` checked on `evaluation`: `[landmark_default]` for
/// every landmark annotated on some film, `[landmarks."NAME"]` for its own (a landmark named
/// that the pack does not find, or that no film annotates, fails with nothing measured).
pub fn check_landmarks(criteria: &Criteria, evaluation: &LandmarkEvaluation) -> Vec<Check> {
    let overall = &evaluation.overall;
    // The default holds for the landmarks the site annotated; a landmark named holds always.
    let mut names: Vec<&str> = overall
        .landmarks
        .iter()
        .filter(|l| l.figures.annotated + l.figures.annotated_absent > 0)
        .map(|l| l.landmark.as_str())
        .collect();
    for named in criteria.landmarks.keys() {
        if !names.contains(&named.as_str()) {
            names.push(named);
        }
    }
    let mut checks = Vec::new();
    for name in names {
        let bounds = merged_points(criteria.landmark_default, criteria.landmarks.get(name));
        let figures = overall
            .landmarks
            .iter()
            .find(|l| l.landmark == name)
            .map(|l| &l.figures);
        checks.extend(checked(name, &point_rows(&bounds, figures)));
    }
    let ett = &overall.ett_distance;
    checks.extend(checked(
        "ett_distance",
        &[
            (
                "median tip-to-carina error (mm)",
                criteria.ett_distance.max_median_error_mm,
                ett.median_abs_error_mm,
                false,
            ),
            (
                "95th percentile tip-to-carina error (mm)",
                criteria.ett_distance.max_p95_error_mm,
                ett.p95_abs_error_mm,
                false,
            ),
        ],
    ));
    for verdicts in &overall.verdicts {
        checks.extend(checked(
            verdicts.device.title(),
            &[(
                "verdict agreement",
                criteria.verdicts.min_agreement,
                verdicts.agreement,
                true,
            )],
        ));
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finding_s_own_bounds_override_the_default_and_unknown_keys_are_refused() {
        let criteria: Criteria = toml::from_str(
            "[default]\nmin_auroc = 0.8\nmax_ece = 0.2\n[findings.\"Edema\"]\nmin_auroc = 0.9\n",
        )
        .unwrap();
        let edema = merged(criteria.default, criteria.findings.get("Edema"));
        assert_eq!(edema.min_auroc, Some(0.9));
        assert_eq!(edema.max_ece, Some(0.2));
        assert!(toml::from_str::<Criteria>("[default]\nmin_aucroc = 0.8\n").is_err());
    }

    #[test]
    fn an_unmeasurable_figure_does_not_hold() {
        let checks = check_one(
            "Edema",
            &Bounds {
                min_auroc: Some(0.5),
                ..Bounds::default()
            },
            None,
        );
        assert_eq!(checks.len(), 1);
        assert!(!checks[0].holds);
    }
}

//! A site's acceptance criteria (a TOML file), checked against an evaluation: what each
//! finding must reach before the pack is switched on. `[default]` applies to every finding;
//! `[findings."NAME"]` adds to or overrides it for one.
//!
//! ```toml
//! [default]
//! min_auroc = 0.80
//! [findings."Pneumothorax"]
//! min_auroc = 0.90
//! min_sensitivity = 0.90      # at the pack's threshold
//! max_ece = 0.10
//! ```
//!
//! A figure that cannot be measured (AUROC with one class in the truth) does not hold.

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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criteria {
    #[serde(default)]
    pub default: Bounds,
    #[serde(default)]
    pub findings: BTreeMap<String, Bounds>,
}

/// One criterion checked.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
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
    #[error("the criteria file {path} is not valid: {source} (keys: min_auroc, min_auroc_lower_95, min_sensitivity, min_specificity, min_ppv, max_ece, under [default] or [findings.\"NAME\"])")]
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
    let rows: [(&str, Option<f64>, Option<f64>, bool); 6] = [
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
    rows.into_iter()
        .filter_map(|(criterion, required, measured, at_least)| {
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

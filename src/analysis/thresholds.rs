//! Where a finding's probability makes the draft state it: present at or above its threshold,
//! a pertinent negative below the absent one, nothing between. The defaults are the draft's;
//! a site sets its own operating point per finding (`[analysis.thresholds]`, typically the
//! threshold `radassist models validate` found on its own studies). Every analysis records the
//! thresholds it was made with, so each draft, SR and FHIR resource says what it used.

use crate::inference::vision::Finding;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A finding is stated as present at or above this probability (unless the site sets its own)...
pub const PRESENT: f32 = 0.5;
/// ...and a pertinent negative is stated below this one (or below the finding's own present
/// threshold when a site sets that lower).
pub const ABSENT: f32 = 0.2;

/// What the draft says of a finding at its probability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// At or above its present threshold: stated present.
    Present,
    /// Between the two: nothing is said.
    Indeterminate,
    /// Below its absent threshold: a pertinent negative may be stated.
    Absent,
}

/// The site's present thresholds, by finding label; a finding not named has [`PRESENT`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FindingThresholds {
    #[serde(default)]
    pub present: BTreeMap<String, f32>,
}

impl FindingThresholds {
    /// The probability at and above which `label` is present.
    pub fn present(&self, label: &str) -> f32 {
        self.present.get(label).copied().unwrap_or(PRESENT)
    }

    /// The probability below which `label` is stated absent.
    pub fn absent(&self, label: &str) -> f32 {
        ABSENT.min(self.present(label))
    }

    /// Where `finding`'s probability lies against its thresholds.
    pub fn presence(&self, finding: &Finding) -> Presence {
        if finding.probability >= self.present(&finding.label) {
            Presence::Present
        } else if finding.probability < self.absent(&finding.label) {
            Presence::Absent
        } else {
            Presence::Indeterminate
        }
    }

    /// The site's thresholds, checked against the findings pack's `labels`: each names one of
    /// them and lies in (0, 1].
    pub fn new(present: &BTreeMap<String, f32>, labels: &[String]) -> Result<Self, String> {
        for (label, &threshold) in present {
            if !labels.contains(label) {
                return Err(format!(
                    "analysis.thresholds names {label:?}, which the findings pack does not have (it has {})",
                    labels.join(", ")
                ));
            }
            if !(threshold > 0.0 && threshold <= 1.0) {
                return Err(format!(
                    "analysis.thresholds.{label:?} is {threshold}: a threshold is a probability above 0 and at most 1"
                ));
            }
        }
        Ok(FindingThresholds {
            present: present.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_threshold_moves_present_and_never_leaves_absent_above_it() {
        let labels = vec!["Edema".to_string(), "Pneumothorax".to_string()];
        let site = FindingThresholds::new(
            &BTreeMap::from([
                ("Edema".to_string(), 0.15),
                ("Pneumothorax".to_string(), 0.8),
            ]),
            &labels,
        )
        .unwrap();
        assert_eq!((site.present("Edema"), site.absent("Edema")), (0.15, 0.15));
        assert_eq!(
            (site.present("Pneumothorax"), site.absent("Pneumothorax")),
            (0.8, ABSENT)
        );
        assert_eq!(site.present("Fracture"), PRESENT);
        let at = |label: &str, probability| {
            site.presence(&Finding {
                label: label.into(),
                probability,
            })
        };
        assert_eq!(at("Edema", 0.15), Presence::Present);
        assert_eq!(at("Edema", 0.149), Presence::Absent);
        assert_eq!(at("Pneumothorax", 0.5), Presence::Indeterminate);
        assert_eq!(at("Pneumothorax", 0.19), Presence::Absent);
        let unknown =
            FindingThresholds::new(&BTreeMap::from([("Nodule".to_string(), 0.5)]), &labels);
        assert!(unknown.unwrap_err().contains("does not have"));
        let zero = FindingThresholds::new(&BTreeMap::from([("Edema".to_string(), 0.0)]), &labels);
        assert!(zero.unwrap_err().contains("above 0"));
    }
}

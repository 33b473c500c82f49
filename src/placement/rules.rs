//! The placement rules: thresholds, with the source of each, in one table.
//!
//! Two populations (adult and paediatric, chosen by the patient's age from the header) each
//! carry a full set of thresholds. A site overrides any of them in its configuration
//! (`[placement.adult]`, `[placement.paediatric]`); what it does not set keeps the default
//! below. Every verdict names the threshold it compared against and where that number comes
//! from, so a reviewer can check the rule as well as the measurement.

use serde::{Deserialize, Serialize};

/// Which rule set applies to the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Population {
    Adult,
    Paediatric,
}

/// Endotracheal tube: height of the tip above the carina, craniocaudal, in mm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndotrachealTubeRule {
    /// Below this the tip is too low (risk of right main bronchus intubation): critical.
    pub min_safe_mm: f64,
    /// The normal range: at least `ideal_low_mm` and at most `ideal_high_mm` above the carina.
    /// Between `min_safe_mm` and `ideal_low_mm` the tip is low but safe: borderline.
    pub ideal_low_mm: f64,
    pub ideal_high_mm: f64,
    /// Above `ideal_high_mm` and up to this: borderline high; beyond it: too high.
    pub max_mm: f64,
    pub source: String,
}

/// Nasogastric / enteric tube: depth of the tip below the dome of the left hemidiaphragm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnteralTubeRule {
    /// The tip at least this far below the diaphragm is in the stomach; between the diaphragm
    /// and this depth it is at the gastro-oesophageal junction (side holes may lie above it):
    /// borderline. Above the diaphragm: in the oesophagus, critical.
    pub min_below_diaphragm_mm: f64,
    pub source: String,
}

/// Central venous catheter / PICC: depth of the tip below the carina.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CentralVenousCatheterRule {
    /// Where the cavoatrial junction is taken to be, below the carina, when the landmark pack
    /// does not find it.
    pub junction_below_carina_mm: f64,
    /// Half the width of the band around the junction that counts as "at the junction":
    /// readers disagree by up to about 4 cm on where it is.
    pub junction_band_half_width_mm: f64,
    /// A tip more than this far above the carina is in a brachiocephalic or subclavian vein.
    pub max_above_carina_mm: f64,
    /// Past the junction band by up to this much: in the right atrium, borderline; further:
    /// deep in the atrium or beyond, malpositioned.
    pub atrium_depth_mm: f64,
    /// A tip this far or further from the midline (the carina) is outside the central veins.
    pub max_from_midline_mm: f64,
    pub source: String,
}

/// One population's thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementRules {
    pub population: Population,
    pub endotracheal_tube: EndotrachealTubeRule,
    pub enteral_tube: EnteralTubeRule,
    pub central_venous_catheter: CentralVenousCatheterRule,
}

/// Landmark handling and the choice of population.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleTable {
    /// Patients younger than this (years) get the paediatric set.
    pub paediatric_below_years: f64,
    /// Landmarks found with less confidence than this count as not found.
    pub min_confidence: f32,
    /// A device tip closer than this to the image edge may continue beyond the field: the
    /// device is then "not assessable" (incompletely imaged).
    pub edge_margin_mm: f64,
    /// Site values for the adult set, as in `[placement.adult.endotracheal_tube]`: only the
    /// keys given change; the rest keep the defaults.
    pub adult: toml::Table,
    pub paediatric: toml::Table,
}

const GOODMAN_1976: &str = "Goodman LR et al., Radiographic evaluation of endotracheal tube \
    position, AJR 1976;127:433-434: tip 5 +/- 2 cm above the carina with the neck neutral; \
    under 2 cm risks right main bronchus intubation (DESIGN.md section 4)";
const PAEDIATRIC_ETT: &str = "DESIGN.md section 4: in children the tip about 1.5 cm above the \
    carina; a site should confirm these values for its neonatal and paediatric population";
const NPSA_2011: &str = "NPSA Patient Safety Alert NPSA/2011/PSA002 (nasogastric tube position \
    on X-ray): the tube crosses the diaphragm in the midline and the tip lies clearly below the \
    left hemidiaphragm; tip above the diaphragm is oesophageal (DESIGN.md section 4)";
const BASKIN_2008: &str = "Baskin KM et al., Cavoatrial junction and central venous anatomy: \
    implications for central venous access tip position, JVIR 2008;19:359-365: the junction lies \
    about two vertebral bodies (3-4 cm) below the carina, and readers disagree on it by up to \
    about 4 cm, hence a band (DESIGN.md section 4)";
const PAEDIATRIC_CVC: &str = "adult band scaled to a child's mediastinum (DESIGN.md section 4 \
    gives no paediatric value): a site should confirm it";

impl Default for EndotrachealTubeRule {
    fn default() -> Self {
        EndotrachealTubeRule {
            min_safe_mm: 20.0,
            ideal_low_mm: 30.0,
            ideal_high_mm: 70.0,
            max_mm: 70.0,
            source: GOODMAN_1976.into(),
        }
    }
}

impl Default for EnteralTubeRule {
    fn default() -> Self {
        EnteralTubeRule {
            min_below_diaphragm_mm: 10.0,
            source: NPSA_2011.into(),
        }
    }
}

impl Default for CentralVenousCatheterRule {
    fn default() -> Self {
        CentralVenousCatheterRule {
            junction_below_carina_mm: 35.0,
            junction_band_half_width_mm: 20.0,
            max_above_carina_mm: 20.0,
            atrium_depth_mm: 30.0,
            max_from_midline_mm: 40.0,
            source: BASKIN_2008.into(),
        }
    }
}

impl PlacementRules {
    pub fn adult() -> PlacementRules {
        PlacementRules {
            population: Population::Adult,
            endotracheal_tube: EndotrachealTubeRule::default(),
            enteral_tube: EnteralTubeRule::default(),
            central_venous_catheter: CentralVenousCatheterRule::default(),
        }
    }

    pub fn paediatric() -> PlacementRules {
        PlacementRules {
            population: Population::Paediatric,
            endotracheal_tube: EndotrachealTubeRule {
                min_safe_mm: 5.0,
                ideal_low_mm: 10.0,
                ideal_high_mm: 20.0,
                max_mm: 30.0,
                source: PAEDIATRIC_ETT.into(),
            },
            enteral_tube: EnteralTubeRule {
                min_below_diaphragm_mm: 5.0,
                source: NPSA_2011.into(),
            },
            central_venous_catheter: CentralVenousCatheterRule {
                junction_below_carina_mm: 20.0,
                junction_band_half_width_mm: 10.0,
                max_above_carina_mm: 10.0,
                atrium_depth_mm: 15.0,
                max_from_midline_mm: 25.0,
                source: PAEDIATRIC_CVC.into(),
            },
        }
    }

    /// These rules with a site's values laid over them (key by key).
    fn with(self, site: &toml::Table) -> Result<PlacementRules, String> {
        let mut merged = toml::Table::try_from(&self).map_err(|e| e.to_string())?;
        for (device, values) in site {
            match (merged.get_mut(device), values) {
                (Some(toml::Value::Table(rule)), toml::Value::Table(values)) => {
                    for (key, value) in values {
                        if !rule.contains_key(key) {
                            return Err(format!("unknown key {device}.{key}"));
                        }
                        rule.insert(key.clone(), value.clone());
                    }
                }
                _ => return Err(format!("unknown device section {device:?}")),
            }
        }
        merged
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())
    }
}

impl Default for RuleTable {
    fn default() -> Self {
        RuleTable {
            paediatric_below_years: 18.0,
            min_confidence: 0.5,
            edge_margin_mm: 3.0,
            adult: toml::Table::new(),
            paediatric: toml::Table::new(),
        }
    }
}

impl RuleTable {
    /// The rule set for a patient of this age; adults when the age is unknown (the header
    /// carries neither Patient's Age nor a birth date), which the result says.
    pub fn for_age(&self, age_years: Option<f64>) -> PlacementRules {
        self.try_for_age(age_years)
            .expect("the rule table was checked when the configuration was read")
    }

    fn try_for_age(&self, age_years: Option<f64>) -> Result<PlacementRules, String> {
        match age_years {
            Some(age) if age < self.paediatric_below_years => PlacementRules::paediatric()
                .with(&self.paediatric)
                .map_err(|e| format!("placement.paediatric: {e}")),
            _ => PlacementRules::adult()
                .with(&self.adult)
                .map_err(|e| format!("placement.adult: {e}")),
        }
    }

    /// Refuses thresholds that contradict each other, naming the key.
    pub fn check(&self) -> Result<(), String> {
        for age in [None, Some(0.0)] {
            let rules = self.try_for_age(age)?;
            let name = match rules.population {
                Population::Adult => "placement.adult",
                Population::Paediatric => "placement.paediatric",
            };
            let e = &rules.endotracheal_tube;
            if !(0.0 <= e.min_safe_mm
                && e.min_safe_mm <= e.ideal_low_mm
                && e.ideal_low_mm <= e.ideal_high_mm
                && e.ideal_high_mm <= e.max_mm)
            {
                return Err(format!(
                    "{name}.endotracheal_tube: need 0 <= min_safe_mm <= ideal_low_mm <= \
                     ideal_high_mm <= max_mm"
                ));
            }
            let c = &rules.central_venous_catheter;
            if c.junction_band_half_width_mm < 0.0
                || c.atrium_depth_mm < 0.0
                || c.max_above_carina_mm < 0.0
                || c.max_from_midline_mm <= 0.0
            {
                return Err(format!(
                    "{name}.central_venous_catheter: widths, depths and distances must not be \
                     negative"
                ));
            }
            if rules.enteral_tube.min_below_diaphragm_mm < 0.0 {
                return Err(format!(
                    "{name}.enteral_tube.min_below_diaphragm_mm must not be negative"
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err("placement.min_confidence must be between 0 and 1".into());
        }
        Ok(())
    }
}

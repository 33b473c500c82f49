//! Tube and line placement: landmarks -> geometry in mm -> placement rules -> verdicts.
//!
//! A `landmarks` model finds device tips and anatomical references (carina, left
//! hemidiaphragm, cavoatrial junction) on the radiograph, in image pixels with a confidence.
//! [`assess`] turns them into one [`DeviceCheck`] per device: endotracheal tube, enteral
//! (nasogastric) tube, central venous catheter / PICC and chest tube. Each check carries its
//! verdict, whether it is a critical result, the distances it measured (mm at the patient
//! plane, or pixels marked uncalibrated), the threshold each was compared against and where
//! that threshold comes from ([`rules`]), and the landmarks it used with their confidences.
//! Measurements are craniocaudal and left-right in the patient's own directions
//! ([`geometry`]), so a mirrored or rescaled image gets the same verdicts.

pub mod geometry;
pub mod rules;

use crate::inference::vision::Landmark;
use geometry::{ImagePoint, LengthUnit, PatientFrame};
use rules::{PlacementRules, Population, RuleTable};
use serde::{Deserialize, Serialize};

/// The landmark names the placement rules read (the `landmarks` contract's vocabulary).
pub mod names {
    pub const ETT_TIP: &str = "ett_tip";
    pub const CARINA: &str = "carina";
    pub const NGT_TIP: &str = "ngt_tip";
    pub const NGT_COURSE: &str = "ngt_course";
    pub const LEFT_HEMIDIAPHRAGM: &str = "left_hemidiaphragm";
    pub const CVC_TIP: &str = "cvc_tip";
    pub const CAVOATRIAL_JUNCTION: &str = "cavoatrial_junction";
    pub const CHEST_TUBE_TIP: &str = "chest_tube_tip";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    EndotrachealTube,
    EnteralTube,
    CentralVenousCatheter,
    ChestTube,
}

impl Device {
    /// The device as a report names it.
    pub fn title(self) -> &'static str {
        match self {
            Device::EndotrachealTube => "Endotracheal tube",
            Device::EnteralTube => "Enteric (nasogastric) tube",
            Device::CentralVenousCatheter => "Central venous catheter",
            Device::ChestTube => "Chest tube",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Appropriate,
    Borderline,
    Malpositioned,
    NotAssessable,
    Absent,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Appropriate => "appropriate",
            Verdict::Borderline => "borderline",
            Verdict::Malpositioned => "malpositioned",
            Verdict::NotAssessable => "not assessable",
            Verdict::Absent => "absent",
        }
    }
}

/// The patient's side, from Patient Orientation (or the usual hanging, when assumed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Left,
    Right,
}

/// One distance a verdict used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// What was measured, e.g. "ett_tip_above_carina".
    pub name: String,
    pub value: f64,
    pub unit: LengthUnit,
    /// False when the image has no spacing: the value is in pixels and no rule applies to it.
    pub calibrated: bool,
    /// The two landmarks measured between.
    pub from: String,
    pub to: String,
    /// The direction on the film the distance is taken along. An analysis stored before this
    /// was recorded reads as craniocaudal, which every distance but `cvc_tip_from_midline` is.
    #[serde(default)]
    pub axis: Axis,
}

/// The direction on the film a distance is measured along: the tube rules measure heights
/// (how far a tip lies above the carina or below the hemidiaphragm) and sideways offsets from
/// the midline, not straight lines between the landmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    /// Head to feet: the difference in rows.
    #[default]
    Craniocaudal,
    /// Right to left: the difference in columns.
    Lateral,
}

/// One threshold a verdict compared against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    pub name: String,
    pub value_mm: f64,
    pub source: String,
}

/// A landmark the check used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LandmarkUsed {
    pub name: String,
    pub x: f64,
    pub y: f64,
    pub confidence: f32,
    /// The pack that found it, and how it was derived from a mask ([`Landmark`]'s).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derivation: Option<String>,
}

/// The placement check of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceCheck {
    pub device: Device,
    pub verdict: Verdict,
    /// A critical result: the radiologist must be told now (the worklist puts it first).
    pub critical: bool,
    /// One sentence for the report, with the numbers.
    pub statement: String,
    pub measurements: Vec<Measurement>,
    pub thresholds: Vec<Threshold>,
    pub landmarks: Vec<LandmarkUsed>,
    pub side: Option<Side>,
    pub population: Population,
}

/// The placement checks of one radiograph, with what they rest on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlacementResult {
    pub devices: Vec<DeviceCheck>,
    pub population: Population,
    /// Why this population: the age used, or that it was unknown.
    pub population_basis: String,
    pub frame: PatientFrame,
}

impl PlacementResult {
    pub fn any_critical(&self) -> bool {
        self.devices.iter().any(|d| d.critical)
    }
}

/// Checks every device on one radiograph from the landmarks found on it.
pub fn assess(
    landmarks: &[Landmark],
    frame: &PatientFrame,
    age_years: Option<f64>,
    table: &RuleTable,
) -> PlacementResult {
    let rules = table.for_age(age_years);
    let found = Found {
        landmarks,
        frame,
        table,
    };
    let population_basis = match age_years {
        Some(age) => format!(
            "patient age {age:.1} years; paediatric below {} years",
            table.paediatric_below_years
        ),
        None => "patient age unknown: adult thresholds".to_string(),
    };
    PlacementResult {
        devices: vec![
            endotracheal_tube(&found, &rules),
            enteral_tube(&found, &rules),
            central_venous_catheter(&found, &rules),
            chest_tube(&found, &rules),
        ],
        population: rules.population,
        population_basis,
        frame: frame.clone(),
    }
}

/// The landmarks found with enough confidence, and how to measure between them.
struct Found<'a> {
    landmarks: &'a [Landmark],
    frame: &'a PatientFrame,
    table: &'a RuleTable,
}

impl Found<'_> {
    fn get(&self, name: &str) -> Option<&Landmark> {
        self.landmarks
            .iter()
            .filter(|l| l.name == name && l.confidence >= self.table.min_confidence)
            .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
    }

    /// Why `name` was not found, when a segmentation pack's derivation says: the structure was
    /// not identified (confidence 0), or was with too little confidence.
    fn why_not_found(&self, name: &str) -> Option<String> {
        let l = self
            .landmarks
            .iter()
            .filter(|l| l.name == name && l.derivation.is_some())
            .max_by(|a, b| a.confidence.total_cmp(&b.confidence))?;
        let how = l.derivation.as_deref()?;
        Some(match l.confidence {
            c if c <= 0.0 => how.to_string(),
            c => format!(
                "found with confidence {c:.2}, under the minimum {:.2} ({how})",
                self.table.min_confidence
            ),
        })
    }

    fn near_edge(&self, l: &Landmark) -> bool {
        self.frame.calibrated() && self.frame.distance_to_edge(point(l)) < self.table.edge_margin_mm
    }

    fn measurement(
        &self,
        name: &str,
        value: f64,
        (from, to): (&Landmark, &Landmark),
        axis: Axis,
    ) -> Measurement {
        Measurement {
            name: name.into(),
            value,
            unit: self.frame.unit(),
            calibrated: self.frame.calibrated(),
            from: from.name.clone(),
            to: to.name.clone(),
            axis,
        }
    }

    fn side(&self, l: &Landmark, midline: Option<&Landmark>) -> Side {
        // Left-right from the carina when found, else from the image's centre column.
        let reference = midline.map(point).unwrap_or(ImagePoint {
            x: f64::from(self.frame.columns.max(1) - 1) / 2.0,
            y: l.y,
        });
        if self.frame.left_of(point(l), reference) >= 0.0 {
            Side::Left
        } else {
            Side::Right
        }
    }
}

fn point(l: &Landmark) -> ImagePoint {
    ImagePoint { x: l.x, y: l.y }
}

fn used(landmarks: &[&Landmark]) -> Vec<LandmarkUsed> {
    landmarks
        .iter()
        .map(|l| LandmarkUsed {
            name: l.name.clone(),
            x: l.x,
            y: l.y,
            confidence: l.confidence,
            model: l.model.clone(),
            derivation: l.derivation.clone(),
        })
        .collect()
}

fn threshold(name: &str, value_mm: f64, source: &str) -> Threshold {
    Threshold {
        name: name.into(),
        value_mm,
        source: source.into(),
    }
}

/// A check with no measurement: absent, or not assessable for the reason given.
fn unmeasured(
    device: Device,
    verdict: Verdict,
    statement: String,
    landmarks: &[&Landmark],
    rules: &PlacementRules,
) -> DeviceCheck {
    DeviceCheck {
        device,
        verdict,
        critical: false,
        statement,
        measurements: vec![],
        thresholds: vec![],
        landmarks: used(landmarks),
        side: None,
        population: rules.population,
    }
}

fn cm(mm: f64) -> String {
    format!("{:.1} cm", mm / 10.0)
}

/// What every tube and line check does first: the tip must be there, inside the field, and
/// (for a rule in mm) the image calibrated. Gives the tip, or the finished check.
fn tip_or_check<'a>(
    found: &'a Found,
    device: Device,
    tip_name: &str,
    rules: &PlacementRules,
) -> Result<&'a Landmark, DeviceCheck> {
    let Some(tip) = found.get(tip_name) else {
        // A device mask with pixels that are not a device is not "no device".
        if let Some(why) = found.why_not_found(tip_name) {
            return Err(unmeasured(
                device,
                Verdict::NotAssessable,
                format!("{}: cannot be assessed: {why}.", device.title()),
                &[],
                rules,
            ));
        }
        return Err(unmeasured(
            device,
            Verdict::Absent,
            format!("No {} is seen.", device.title().to_lowercase()),
            &[],
            rules,
        ));
    };
    if found.near_edge(tip) {
        return Err(unmeasured(
            device,
            Verdict::NotAssessable,
            format!(
                "{}: the tip lies at the edge of the image and may continue beyond it \
                 (incompletely imaged).",
                device.title()
            ),
            &[tip],
            rules,
        ));
    }
    Ok(tip)
}

/// The reference landmark, or the "not assessable" check that its absence (or an
/// uncalibrated image) makes.
fn reference_or_check<'a>(
    found: &'a Found,
    device: Device,
    tip: &Landmark,
    reference_name: &str,
    rules: &PlacementRules,
) -> Result<&'a Landmark, DeviceCheck> {
    let Some(reference) = found.get(reference_name) else {
        let why = found
            .why_not_found(reference_name)
            .map(|why| format!(" ({why})"))
            .unwrap_or_default();
        return Err(unmeasured(
            device,
            Verdict::NotAssessable,
            format!(
                "{} is present; its position cannot be assessed because the {} is not \
                 identified{why}.",
                device.title(),
                reference_name.replace('_', " ")
            ),
            &[tip],
            rules,
        ));
    };
    if !found.frame.calibrated() {
        return Err(unmeasured(
            device,
            Verdict::NotAssessable,
            format!(
                "{} is present; the image carries no pixel spacing, so its position cannot \
                 be measured (uncalibrated).",
                device.title()
            ),
            &[tip, reference],
            rules,
        ));
    }
    Ok(reference)
}

fn endotracheal_tube(found: &Found, rules: &PlacementRules) -> DeviceCheck {
    let device = Device::EndotrachealTube;
    let tip = match tip_or_check(found, device, names::ETT_TIP, rules) {
        Ok(tip) => tip,
        Err(check) => return check,
    };
    let carina = match reference_or_check(found, device, tip, names::CARINA, rules) {
        Ok(carina) => carina,
        Err(check) => return check,
    };
    let rule = &rules.endotracheal_tube;
    let above = -found.frame.below(point(tip), point(carina));
    let (verdict, critical, statement) = if above <= 0.0 {
        (
            Verdict::Malpositioned,
            true,
            format!(
                "Endotracheal tube tip is {} below the carina, in a main bronchus: reposition.",
                cm(-above)
            ),
        )
    } else if above < rule.min_safe_mm {
        (
            Verdict::Malpositioned,
            true,
            format!(
                "Endotracheal tube tip is {} above the carina, too low (under {}): risk of \
                 right main bronchus intubation.",
                cm(above),
                cm(rule.min_safe_mm)
            ),
        )
    } else if above < rule.ideal_low_mm {
        (
            Verdict::Borderline,
            false,
            format!(
                "Endotracheal tube tip is {} above the carina, low (normal {} to {}).",
                cm(above),
                cm(rule.ideal_low_mm),
                cm(rule.ideal_high_mm)
            ),
        )
    } else if above <= rule.ideal_high_mm {
        (
            Verdict::Appropriate,
            false,
            format!(
                "Endotracheal tube tip is {} above the carina, appropriately positioned.",
                cm(above)
            ),
        )
    } else if above <= rule.max_mm {
        (
            Verdict::Borderline,
            false,
            format!(
                "Endotracheal tube tip is {} above the carina, high (normal up to {}).",
                cm(above),
                cm(rule.ideal_high_mm)
            ),
        )
    } else {
        (
            Verdict::Malpositioned,
            false,
            format!(
                "Endotracheal tube tip is {} above the carina, too high (over {}): risk of \
                 extubation.",
                cm(above),
                cm(rule.max_mm)
            ),
        )
    };
    DeviceCheck {
        device,
        verdict,
        critical,
        statement,
        measurements: vec![found.measurement(
            "ett_tip_above_carina",
            above,
            (tip, carina),
            Axis::Craniocaudal,
        )],
        thresholds: vec![
            threshold("min_safe_mm", rule.min_safe_mm, &rule.source),
            threshold("ideal_low_mm", rule.ideal_low_mm, &rule.source),
            threshold("ideal_high_mm", rule.ideal_high_mm, &rule.source),
            threshold("max_mm", rule.max_mm, &rule.source),
        ],
        landmarks: used(&[tip, carina]),
        side: None,
        population: rules.population,
    }
}

fn enteral_tube(found: &Found, rules: &PlacementRules) -> DeviceCheck {
    let device = Device::EnteralTube;
    let tip = match tip_or_check(found, device, names::NGT_TIP, rules) {
        Ok(tip) => tip,
        Err(mut check) => {
            // A course without a tip: the tube is there, its tip is not seen.
            if let Some(course) = found.get(names::NGT_COURSE) {
                check.verdict = Verdict::NotAssessable;
                check.statement = "Enteric tube is present; its tip is not seen on this image \
                                   (incompletely imaged)."
                    .into();
                check.landmarks = used(&[course]);
            }
            return check;
        }
    };
    let diaphragm = match reference_or_check(found, device, tip, names::LEFT_HEMIDIAPHRAGM, rules) {
        Ok(diaphragm) => diaphragm,
        Err(check) => return check,
    };
    let rule = &rules.enteral_tube;
    let below = found.frame.below(point(tip), point(diaphragm));
    let (verdict, critical, statement) = if below < 0.0 {
        (
            Verdict::Malpositioned,
            true,
            format!(
                "Enteric tube tip is {} above the left hemidiaphragm, in the oesophagus: do not \
                 use; reposition.",
                cm(-below)
            ),
        )
    } else if below < rule.min_below_diaphragm_mm {
        (
            Verdict::Borderline,
            false,
            format!(
                "Enteric tube tip is {} below the left hemidiaphragm, near the \
                 gastro-oesophageal junction: consider advancing.",
                cm(below)
            ),
        )
    } else {
        (
            Verdict::Appropriate,
            false,
            format!(
                "Enteric tube tip is {} below the left hemidiaphragm, in the stomach.",
                cm(below)
            ),
        )
    };
    DeviceCheck {
        device,
        verdict,
        critical,
        statement,
        measurements: vec![found.measurement(
            "ngt_tip_below_left_hemidiaphragm",
            below,
            (tip, diaphragm),
            Axis::Craniocaudal,
        )],
        thresholds: vec![
            threshold("diaphragm_mm", 0.0, &rule.source),
            threshold(
                "min_below_diaphragm_mm",
                rule.min_below_diaphragm_mm,
                &rule.source,
            ),
        ],
        landmarks: used(&[tip, diaphragm]),
        side: None,
        population: rules.population,
    }
}

fn central_venous_catheter(found: &Found, rules: &PlacementRules) -> DeviceCheck {
    let device = Device::CentralVenousCatheter;
    let tip = match tip_or_check(found, device, names::CVC_TIP, rules) {
        Ok(tip) => tip,
        Err(check) => return check,
    };
    let carina = match reference_or_check(found, device, tip, names::CARINA, rules) {
        Ok(carina) => carina,
        Err(check) => return check,
    };
    let rule = &rules.central_venous_catheter;
    let below = found.frame.below(point(tip), point(carina));
    let from_midline = found.frame.left_of(point(tip), point(carina)).abs();
    let junction = found.get(names::CAVOATRIAL_JUNCTION);
    let junction_below = junction
        .map(|j| found.frame.below(point(j), point(carina)))
        .unwrap_or(rule.junction_below_carina_mm);
    let junction_basis = if junction.is_some() {
        "the cavoatrial junction found on the image"
    } else {
        "the cavoatrial junction estimated below the carina"
    };
    let band_low = junction_below - rule.junction_band_half_width_mm;
    let band_high = junction_below + rule.junction_band_half_width_mm;
    let position = format!(
        "{} {} the carina",
        cm(below.abs()),
        if below >= 0.0 { "below" } else { "above" }
    );
    let (verdict, statement) = if from_midline >= rule.max_from_midline_mm {
        (
            Verdict::Malpositioned,
            format!(
                "Central venous catheter tip is {} from the midline, outside the central veins \
                 (likely subclavian or brachiocephalic): reposition.",
                cm(from_midline)
            ),
        )
    } else if -below > rule.max_above_carina_mm {
        (
            Verdict::Malpositioned,
            format!("Central venous catheter tip is {position}, likely in a brachiocephalic vein."),
        )
    } else if below <= band_high {
        (
            Verdict::Appropriate,
            format!(
                "Central venous catheter tip is {position}, {} ({junction_basis} at {}, band \
                 {} to {} below the carina).",
                if below >= band_low {
                    "at the cavoatrial junction or lower superior vena cava"
                } else {
                    "in the superior vena cava"
                },
                cm(junction_below),
                cm(band_low),
                cm(band_high)
            ),
        )
    } else if below <= band_high + rule.atrium_depth_mm {
        (
            Verdict::Borderline,
            format!(
                "Central venous catheter tip is {position}, in the right atrium (past the \
                 cavoatrial junction band ending {} below the carina).",
                cm(band_high)
            ),
        )
    } else {
        (
            Verdict::Malpositioned,
            format!(
                "Central venous catheter tip is {position}, deep in the right atrium or \
                 beyond: withdraw."
            ),
        )
    };
    let mut measurements = vec![
        found.measurement(
            "cvc_tip_below_carina",
            below,
            (tip, carina),
            Axis::Craniocaudal,
        ),
        found.measurement(
            "cvc_tip_from_midline",
            from_midline,
            (tip, carina),
            Axis::Lateral,
        ),
    ];
    let mut landmarks = vec![tip, carina];
    if let Some(j) = junction {
        measurements.push(found.measurement(
            "cavoatrial_junction_below_carina",
            junction_below,
            (j, carina),
            Axis::Craniocaudal,
        ));
        landmarks.push(j);
    }
    DeviceCheck {
        device,
        verdict,
        critical: false,
        statement,
        measurements,
        thresholds: vec![
            threshold(
                "max_above_carina_mm",
                rule.max_above_carina_mm,
                &rule.source,
            ),
            threshold("junction_band_low_mm", band_low, &rule.source),
            threshold("junction_band_high_mm", band_high, &rule.source),
            threshold(
                "atrium_limit_mm",
                band_high + rule.atrium_depth_mm,
                &rule.source,
            ),
            threshold(
                "max_from_midline_mm",
                rule.max_from_midline_mm,
                &rule.source,
            ),
        ],
        landmarks: used(&landmarks),
        side: None,
        population: rules.population,
    }
}

fn chest_tube(found: &Found, rules: &PlacementRules) -> DeviceCheck {
    let device = Device::ChestTube;
    let Some(tip) = found.get(names::CHEST_TUBE_TIP) else {
        return match found.why_not_found(names::CHEST_TUBE_TIP) {
            Some(why) => unmeasured(
                device,
                Verdict::NotAssessable,
                format!("Chest tube: cannot be assessed: {why}."),
                &[],
                rules,
            ),
            None => unmeasured(
                device,
                Verdict::Absent,
                "No chest tube is seen.".into(),
                &[],
                rules,
            ),
        };
    };
    let carina = found.get(names::CARINA);
    let side = found.side(tip, carina);
    let side_name = match side {
        Side::Left => "left",
        Side::Right => "right",
    };
    let mut landmarks = vec![tip];
    landmarks.extend(carina);
    DeviceCheck {
        device,
        verdict: Verdict::NotAssessable,
        critical: false,
        statement: format!(
            "A {side_name} chest tube is present; whether its side holes lie inside the pleural \
             cavity needs more than a frontal view."
        ),
        measurements: vec![],
        thresholds: vec![],
        landmarks: used(&landmarks),
        side: Some(side),
        population: rules.population,
    }
}

#[cfg(test)]
mod tests;

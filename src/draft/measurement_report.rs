//! The analysis as a TID 1500 Imaging Measurement Report (Comprehensive SR), as the IHE AI
//! Results profile sends AI results back into the study: what viewers such as OHIF list as
//! measurements, and what highdicom parses.
//!
//! The tree: the report container (DCM 126000, TID 1500) with its language, radassist as the
//! device observer, the procedure reported (a plain chest X-ray), an Image Library holding the
//! film, and Imaging Measurements with
//! - one group per device found (TID 1410, Planar ROI): tracking identifier and UID, the device
//!   coded as the finding, the algorithm (TID 4019: the landmarks pack's name, version and
//!   digest), the tip as an Image Region (SCOORD POINT on the film), the distance its verdict
//!   rests on (UCUM mm, or pixels when the film is uncalibrated) with the landmark it is taken
//!   to as its finding site and the line it was measured along (INFERRED FROM a SCOORD
//!   POLYLINE), the tip's landmark confidence, and the verdict as a qualitative evaluation. A
//!   group with a distance names its tip after Cornerstone3D's length tag
//!   (`Cornerstone3DTools@^0.1.0:Length:Endotracheal tube tip`): OHIF then tracks the distance
//!   as a length, listed in its measurement panel and drawn along that line;
//! - one group per observation of the findings pack (TID 1501): the finding coded, its
//!   probability, its presence at the analysis' thresholds (by default present at 0.5 and
//!   above, absent below 0.2, indeterminate between; a site's `[analysis.thresholds]` move a
//!   finding's), and, when a prior was compared, its change since then.
//!
//! Points are in the film's pixel coordinates with the top left corner of the top left pixel
//! at 0,0 (PS3.3 C.18.6.1.2): a landmark at pixel centre (x, y) is written as (x + 0.5, y + 0.5).
//! The findings packs radassist runs do not localise findings, so finding groups carry the film
//! as their source and no region.

use super::codes::{self, Code};
use super::content::{
    code_item, container, image_item, item, num_item, point_item, polyline_item, text_item,
    uid_item, with_children, Relationship,
};
use super::dataset::{self, new_uid, sequence, Created, Item, NewInstance, ObjectError};
use super::ImageReference;
use crate::analysis::thresholds::{FindingThresholds, Presence};
use crate::analysis::{ModelUsed, StudyAnalysis};
use crate::dicom::DicomInstance;
use crate::inference::vision::Finding;
use crate::placement::geometry::LengthUnit;
use crate::placement::{names, Axis, DeviceCheck, Measurement, Verdict};
use crate::priors::{FindingChange, FindingChangeKind};
use dicom_dictionary_std::tags;

use super::sr::COMPREHENSIVE_SR;

/// The series number of the measurement reports radassist makes.
pub const SERIES_NUMBER: u32 = 9002;

/// Algorithm Identification (TID 4019) for the pack `task`, when the analysis used one.
fn algorithm(model: Option<&ModelUsed>) -> Vec<Item> {
    let Some(model) = model else {
        return vec![];
    };
    let modifier = Relationship::HasConceptMod;
    let mut parameters = format!("{} pack", model.task);
    if !model.digest.is_empty() {
        parameters.push_str(&format!(", sha256 {}", model.digest));
    }
    if model.test_model {
        parameters.push_str(", test model, not for clinical use");
    }
    vec![
        text_item(modifier, &codes::ALGORITHM_NAME, &model.name),
        text_item(modifier, &codes::ALGORITHM_VERSION, &model.version),
        text_item(modifier, &codes::ALGORITHM_PARAMETERS, &parameters),
    ]
}

/// Tracking identifier and UID: how a viewer follows one group.
fn tracking(identifier: &str) -> Vec<Item> {
    let context = Relationship::HasObsContext;
    vec![
        text_item(context, &codes::TRACKING_IDENTIFIER, identifier),
        uid_item(context, &codes::TRACKING_UNIQUE_IDENTIFIER, &new_uid()),
    ]
}

/// The landmark a distance is taken to, as a finding site (a distance from the midline has
/// none).
fn reference_site(measurement: &Measurement) -> Option<Code> {
    if measurement.name.ends_with(names::CARINA) {
        Some(codes::CARINA)
    } else if measurement.name.ends_with(names::LEFT_HEMIDIAPHRAGM) {
        Some(codes::DIAPHRAGM)
    } else {
        None
    }
}

fn distance(measurement: &Measurement, check: &DeviceCheck, film: &ImageReference) -> Item {
    let units = match measurement.unit {
        LengthUnit::Mm => &codes::MILLIMETER,
        LengthUnit::Px => &codes::PIXELS,
    };
    let num = num_item(
        Relationship::Contains,
        &codes::DISTANCE,
        measurement.value,
        units,
    );
    let mut children = vec![text_item(
        Relationship::HasConceptMod,
        &codes::EQUIVALENT_MEANING,
        &measurement.name.replace('_', " "),
    )];
    if let Some(site) = reference_site(measurement) {
        children.push(code_item(
            Relationship::HasConceptMod,
            &codes::FINDING_SITE,
            &site,
        ));
    }
    if let Some(line) = measured_line(measurement, check) {
        children.push(polyline_item(
            Relationship::InferredFrom,
            &codes::IMAGE_REGION,
            &line,
            film,
        ));
    }
    with_children(num, children)
}

/// The line a distance was measured along, as SCOORD points (pixel centres at +0.5): from its
/// first landmark straight along its axis to the second's level, so that the line's length is
/// the distance (an ETT's height above the carina is vertical, not the slant from tip to
/// carina). None when either landmark is not among those the check recorded.
fn measured_line(measurement: &Measurement, check: &DeviceCheck) -> Option<[(f64, f64); 2]> {
    let find = |name: &str| check.landmarks.iter().find(|l| l.name == name);
    let (from, to) = (find(&measurement.from)?, find(&measurement.to)?);
    let end = match measurement.axis {
        Axis::Craniocaudal => (from.x, to.y),
        Axis::Lateral => (to.x, from.y),
    };
    Some([(from.x + 0.5, from.y + 0.5), (end.0 + 0.5, end.1 + 0.5)])
}

/// The tracking identifier of a device's group: the tip as a person names it; a group with a
/// distance carries it after Cornerstone3D's tag for a length, the form in which OHIF (its
/// measurement tracking) recognises a measurement it can list and draw as a length.
fn device_tracking_identifier(check: &DeviceCheck) -> String {
    let tip = format!("{} tip", check.device.title());
    if check.measurements.is_empty() {
        tip
    } else {
        format!("{OHIF_LENGTH}:{tip}")
    }
}

/// The tracking identifier prefix of a length in Cornerstone3D's (OHIF's) SR adapters.
pub const OHIF_LENGTH: &str = "Cornerstone3DTools@^0.1.0:Length";

/// One device's group (TID 1410).
fn device_group(check: &DeviceCheck, models: &[ModelUsed], film: &ImageReference) -> Option<Item> {
    let verdict = codes::verdict(check.verdict)?;
    let device = codes::device(check.device);
    let mut children = tracking(&device_tracking_identifier(check));
    children.push(code_item(Relationship::Contains, &codes::FINDING, &device));
    // The pack that found the tip ("name version"), else the first landmarks pack.
    let tip = check.landmarks.first();
    let by_tip = tip.and_then(|t| {
        models
            .iter()
            .find(|m| format!("{} {}", m.name, m.version) == t.model)
    });
    children.extend(algorithm(
        by_tip.or_else(|| models.iter().find(|m| m.task == "landmarks")),
    ));
    if let Some(tip) = tip {
        children.push(point_item(
            Relationship::Contains,
            &codes::IMAGE_REGION,
            tip.x + 0.5,
            tip.y + 0.5,
            film,
        ));
    }
    children.extend(check.measurements.iter().map(|m| distance(m, check, film)));
    if let Some(tip) = tip {
        children.push(num_item(
            Relationship::Contains,
            &codes::LANDMARK_CONFIDENCE,
            f64::from(tip.confidence),
            &codes::NO_UNITS,
        ));
    }
    children.push(code_item(
        Relationship::Contains,
        &codes::PLACEMENT,
        &verdict,
    ));
    Some(container(
        Some(Relationship::Contains),
        &codes::MEASUREMENT_GROUP,
        Some("1410"),
        children,
    ))
}

/// A finding's presence at the analysis' thresholds for it, coded.
fn presence(finding: &Finding, thresholds: &FindingThresholds) -> Code {
    match thresholds.presence(finding) {
        Presence::Present => codes::PRESENT,
        Presence::Absent => codes::ABSENT,
        Presence::Indeterminate => codes::INDETERMINATE,
    }
}

fn change(kind: FindingChangeKind) -> Option<Code> {
    match kind {
        FindingChangeKind::New => Some(codes::NEW),
        FindingChangeKind::Resolved => Some(codes::RESOLVED),
        FindingChangeKind::Increased => Some(codes::INCREASED),
        FindingChangeKind::Decreased => Some(codes::DECREASED),
        FindingChangeKind::Unchanged => Some(codes::UNCHANGED),
        FindingChangeKind::Absent => None,
    }
}

/// One observation's group (TID 1501).
fn finding_group(
    finding: &Finding,
    since_prior: Option<&FindingChange>,
    (models, thresholds): (&[ModelUsed], &FindingThresholds),
    film: &ImageReference,
) -> Item {
    let mut children = tracking(&finding.label);
    children.push(code_item(
        Relationship::Contains,
        &codes::FINDING,
        &codes::finding(&finding.label),
    ));
    children.extend(algorithm(models.iter().find(|m| m.task == "findings")));
    children.push(image_item(
        Relationship::Contains,
        Some(&codes::SOURCE),
        film,
    ));
    children.push(num_item(
        Relationship::Contains,
        &codes::PROBABILITY,
        f64::from(finding.probability),
        &codes::NO_UNITS,
    ));
    children.push(code_item(
        Relationship::Contains,
        &codes::PRESENCE,
        &presence(finding, thresholds),
    ));
    if let Some(value) = since_prior.and_then(|c| change(c.change)) {
        children.push(code_item(
            Relationship::Contains,
            &codes::CHANGE_SINCE_PRIOR,
            &value,
        ));
    }
    container(
        Some(Relationship::Contains),
        &codes::MEASUREMENT_GROUP,
        Some("1501"),
        children,
    )
}

/// The device observer: radassist, with the packs it ran as its model.
fn observer(study: &StudyAnalysis) -> Vec<Item> {
    let packs: Vec<String> = study
        .models
        .iter()
        .filter(|m| m.task == "findings" || m.task == "landmarks")
        .map(|m| format!("{} {} {}", m.task, m.name, m.version))
        .collect();
    super::sr::device_observer(&format!(
        "radassist {} ({})",
        env!("CARGO_PKG_VERSION"),
        packs.join("; ")
    ))
}

/// The content tree (TID 1500).
fn content_tree(study: &StudyAnalysis, film: &ImageReference) -> Item {
    let mut content = vec![code_item(
        Relationship::HasConceptMod,
        &codes::LANGUAGE,
        &codes::ENGLISH_US,
    )];
    content.extend(observer(study));
    content.push(code_item(
        Relationship::HasConceptMod,
        &codes::PROCEDURE_REPORTED,
        &codes::PLAIN_CHEST_XRAY,
    ));
    let mut library_entry = item(Some(Relationship::Contains), "IMAGE", None);
    library_entry.put(sequence(
        tags::REFERENCED_SOP_SEQUENCE,
        vec![dataset::referenced_sop(film)],
    ));
    content.push(container(
        Some(Relationship::Contains),
        &codes::IMAGE_LIBRARY,
        None,
        vec![container(
            Some(Relationship::Contains),
            &codes::IMAGE_LIBRARY_GROUP,
            None,
            vec![library_entry],
        )],
    ));
    let models = &study.models;
    let mut groups: Vec<Item> = study
        .current
        .placement
        .devices
        .iter()
        .filter(|c| c.verdict != Verdict::Absent)
        .filter_map(|c| device_group(c, models, film))
        .collect();
    let changes = study.comparisons.first().map(|c| &c.findings);
    groups.extend(study.current.findings.iter().map(|f| {
        let since = changes.and_then(|c| c.iter().find(|c| c.label == f.label));
        finding_group(f, since, (models, &study.thresholds), film)
    }));
    content.push(container(
        Some(Relationship::Contains),
        &codes::IMAGING_MEASUREMENTS,
        None,
        groups,
    ));
    container(
        None,
        &codes::IMAGING_MEASUREMENT_REPORT,
        Some("1500"),
        content,
    )
}

/// The measurement report of `study`, in the study of `source` (the film analysed): a
/// preliminary Comprehensive SR in a series of its own.
pub fn build(
    study: &StudyAnalysis,
    source: &DicomInstance,
) -> Result<dicom_object::DefaultDicomObject, ObjectError> {
    let created = Created::now();
    let film = dataset::source_reference(source)?;
    let mut sr = dataset::new_object(
        source,
        &NewInstance {
            sop_class_uid: COMPREHENSIVE_SR,
            modality: "SR",
            series_number: SERIES_NUMBER,
            series_description: "radassist measurements",
        },
        &created,
    )?;
    super::sr::put_sr_document(&mut sr, &created, None, std::slice::from_ref(&film));
    dataset::put_contributing_equipment(
        &mut sr,
        &study.models,
        "tube and line placement and findings measured by radassist",
        &created,
    );
    for element in content_tree(study, &film).into_iter() {
        sr.put(element);
    }
    dataset::with_meta(sr)
}

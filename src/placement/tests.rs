//! Rule tests at every threshold, and properties: mirrored or rescaled images get the same
//! verdicts.

use super::geometry::PatientFrame;
use super::rules::{Population, RuleTable};
use super::*;
use crate::dicom::{Spacing, SpacingSource};
use proptest::prelude::*;

const SPACING: f64 = 0.25;
const CARINA: (f64, f64) = (400.0, 400.0);

fn frame(spacing: Option<f64>, left_sign: f64) -> PatientFrame {
    PatientFrame {
        spacing: spacing.map(|s| Spacing {
            row_mm: s,
            column_mm: s,
        }),
        spacing_source: if spacing.is_some() {
            SpacingSource::PixelSpacing
        } else {
            SpacingSource::Uncalibrated
        },
        // 1201 x 801: the last row and column scale exactly with the image (see below).
        rows: 1201,
        columns: 801,
        feet_sign: 1.0,
        left_sign,
        orientation_assumed: false,
    }
}

fn landmark(name: &str, x: f64, y: f64) -> Landmark {
    Landmark {
        name: name.into(),
        x,
        y,
        confidence: 0.9,
        ..Landmark::default()
    }
}

/// A landmark `below_mm` under the carina and `left_mm` to the patient's left of it.
fn from_carina(name: &str, below_mm: f64, left_mm: f64) -> Landmark {
    landmark(
        name,
        CARINA.0 + left_mm / SPACING,
        CARINA.1 + below_mm / SPACING,
    )
}

fn check(device: Device, landmarks: &[Landmark], age: Option<f64>) -> DeviceCheck {
    let result = assess(
        landmarks,
        &frame(Some(SPACING), 1.0),
        age,
        &RuleTable::default(),
    );
    result
        .devices
        .into_iter()
        .find(|d| d.device == device)
        .expect("every device is checked")
}

fn ett(above_mm: f64, age: Option<f64>) -> DeviceCheck {
    let carina = landmark(names::CARINA, CARINA.0, CARINA.1);
    check(
        Device::EndotrachealTube,
        &[carina, from_carina(names::ETT_TIP, -above_mm, 0.0)],
        age,
    )
}

#[test]
fn endotracheal_tube_thresholds_adult() {
    use Verdict::*;
    for (above, verdict, critical) in [
        (-5.0, Malpositioned, true),
        (0.0, Malpositioned, true),
        (19.75, Malpositioned, true),
        (20.0, Borderline, false),
        (29.75, Borderline, false),
        (30.0, Appropriate, false),
        (50.0, Appropriate, false),
        (70.0, Appropriate, false),
        (70.25, Malpositioned, false),
    ] {
        let c = ett(above, Some(60.0));
        assert_eq!(
            (c.verdict, c.critical),
            (verdict, critical),
            "{above} mm: {c:?}"
        );
        assert_eq!(c.measurements[0].value, above);
        assert_eq!(c.population, Population::Adult);
    }
    assert!(ett(45.0, None)
        .statement
        .contains("4.5 cm above the carina"));
}

#[test]
fn endotracheal_tube_thresholds_paediatric() {
    use Verdict::*;
    for (above, verdict, critical) in [
        (4.75, Malpositioned, true),
        (5.0, Borderline, false),
        (9.75, Borderline, false),
        (10.0, Appropriate, false),
        (20.0, Appropriate, false),
        (20.25, Borderline, false),
        (30.0, Borderline, false),
        (30.25, Malpositioned, false),
    ] {
        let c = ett(above, Some(4.0));
        assert_eq!(
            (c.verdict, c.critical),
            (verdict, critical),
            "{above} mm: {c:?}"
        );
        assert_eq!(c.population, Population::Paediatric);
    }
    // The population boundary: 18 years is adult.
    assert_eq!(ett(15.0, Some(18.0)).population, Population::Adult);
    assert_eq!(ett(15.0, Some(17.99)).population, Population::Paediatric);
}

#[test]
fn enteral_tube_thresholds() {
    use Verdict::*;
    let diaphragm = landmark(names::LEFT_HEMIDIAPHRAGM, 500.0, 800.0);
    for (below_mm, verdict, critical) in [
        (-0.25, Malpositioned, true),
        (-40.0, Malpositioned, true),
        (0.0, Borderline, false),
        (9.75, Borderline, false),
        (10.0, Appropriate, false),
        (60.0, Appropriate, false),
    ] {
        let tip = landmark(names::NGT_TIP, 480.0, 800.0 + below_mm / SPACING);
        let c = check(Device::EnteralTube, &[diaphragm.clone(), tip], None);
        assert_eq!(
            (c.verdict, c.critical),
            (verdict, critical),
            "{below_mm} mm: {c:?}"
        );
        assert_eq!(c.measurements[0].value, below_mm);
    }
    // A course without a tip: present, incompletely imaged.
    let c = check(
        Device::EnteralTube,
        &[diaphragm, landmark(names::NGT_COURSE, 420.0, 500.0)],
        None,
    );
    assert_eq!(c.verdict, NotAssessable);
    assert!(c.statement.contains("incompletely imaged"));
}

#[test]
fn central_venous_catheter_thresholds() {
    use Verdict::*;
    let carina = landmark(names::CARINA, CARINA.0, CARINA.1);
    // Junction estimated 35 mm below the carina, band +/- 20 mm, atrium 30 mm past it.
    for (below, left, verdict) in [
        (-20.25, 0.0, Malpositioned),
        (-20.0, 0.0, Appropriate),
        (14.75, 0.0, Appropriate),
        (15.0, 0.0, Appropriate),
        (55.0, 0.0, Appropriate),
        (55.25, 0.0, Borderline),
        (85.0, 0.0, Borderline),
        (85.25, 0.0, Malpositioned),
        (30.0, -39.75, Appropriate),
        (30.0, -40.0, Malpositioned),
        (30.0, 40.0, Malpositioned),
    ] {
        let tip = from_carina(names::CVC_TIP, below, left);
        let c = check(Device::CentralVenousCatheter, &[carina.clone(), tip], None);
        assert_eq!(
            c.verdict, verdict,
            "{below} mm below, {left} mm left: {c:?}"
        );
        assert!(!c.critical);
        assert_eq!(c.measurements[0].value, below);
    }
    // A junction found on the image moves the band: 60 mm below the carina, band 40 to 80.
    let junction = from_carina(names::CAVOATRIAL_JUNCTION, 60.0, 0.0);
    for (below, verdict) in [(80.0, Appropriate), (80.25, Borderline)] {
        let tip = from_carina(names::CVC_TIP, below, 0.0);
        let c = check(
            Device::CentralVenousCatheter,
            &[carina.clone(), junction.clone(), tip],
            None,
        );
        assert_eq!(c.verdict, verdict, "{below}: {c:?}");
        assert_eq!(c.measurements[2].value, 60.0);
    }
}

#[test]
fn chest_tube_presence_and_side() {
    let carina = landmark(names::CARINA, CARINA.0, CARINA.1);
    let tube = from_carina(names::CHEST_TUBE_TIP, 20.0, 60.0);
    let c = check(Device::ChestTube, &[carina.clone(), tube.clone()], None);
    assert_eq!(
        (c.verdict, c.side),
        (Verdict::NotAssessable, Some(Side::Left))
    );
    assert!(c.statement.contains("left chest tube"));
    // Patient Orientation "R\F": the image's right is the patient's right.
    let flipped = assess(
        &[carina, tube],
        &frame(Some(SPACING), -1.0),
        None,
        &RuleTable::default(),
    );
    assert_eq!(flipped.devices[3].side, Some(Side::Right));
    assert_eq!(check(Device::ChestTube, &[], None).verdict, Verdict::Absent);
}

#[test]
fn missing_references_low_confidence_edges_and_no_spacing() {
    let tip = from_carina(names::ETT_TIP, -45.0, 0.0);
    // No carina: not assessable.
    let c = check(Device::EndotrachealTube, std::slice::from_ref(&tip), None);
    assert_eq!(c.verdict, Verdict::NotAssessable);
    assert!(
        c.statement.contains("carina is not identified"),
        "{}",
        c.statement
    );
    // A tip found with low confidence does not count.
    let mut faint = tip.clone();
    faint.confidence = 0.3;
    assert_eq!(
        check(Device::EndotrachealTube, &[faint], None).verdict,
        Verdict::Absent
    );
    // A tip at the edge of the field: incompletely imaged.
    let edge = landmark(names::NGT_TIP, 300.0, 1196.0);
    let diaphragm = landmark(names::LEFT_HEMIDIAPHRAGM, 500.0, 800.0);
    let c = check(Device::EnteralTube, &[edge, diaphragm], None);
    assert_eq!(c.verdict, Verdict::NotAssessable);
    // No spacing: nothing is measured in mm.
    let carina = landmark(names::CARINA, CARINA.0, CARINA.1);
    let result = assess(
        &[tip, carina],
        &frame(None, 1.0),
        None,
        &RuleTable::default(),
    );
    assert_eq!(result.devices[0].verdict, Verdict::NotAssessable);
    assert!(result.devices[0].statement.contains("uncalibrated"));
}

#[test]
fn site_overrides_change_only_what_they_name() {
    let table: RuleTable = toml::from_str(
        "[adult.endotracheal_tube]\nmin_safe_mm = 25.0\n[paediatric.enteral_tube]\nmin_below_diaphragm_mm = 8.0\n",
    )
    .unwrap();
    table.check().unwrap();
    let adult = table.for_age(Some(40.0));
    assert_eq!(adult.endotracheal_tube.min_safe_mm, 25.0);
    assert_eq!(adult.endotracheal_tube.ideal_low_mm, 30.0);
    let child = table.for_age(Some(3.0));
    assert_eq!(child.enteral_tube.min_below_diaphragm_mm, 8.0);
    assert_eq!(child.endotracheal_tube.min_safe_mm, 5.0);
    for bad in [
        "[adult.endotracheal_tube]\nmin_safe_mm = 40.0\n",
        "[adult.endotracheal_tube]\nminimum = 1.0\n",
        "[adult.bronchoscope]\nx = 1.0\n",
        "min_confidence = 2.0\n",
    ] {
        let table: RuleTable = toml::from_str(bad).unwrap();
        assert!(table.check().is_err(), "{bad}");
    }
}

fn all_landmarks(offsets: &[(f64, f64); 6]) -> Vec<Landmark> {
    let names = [
        names::ETT_TIP,
        names::NGT_TIP,
        names::LEFT_HEMIDIAPHRAGM,
        names::CVC_TIP,
        names::CAVOATRIAL_JUNCTION,
        names::CHEST_TUBE_TIP,
    ];
    let mut found: Vec<Landmark> = names
        .iter()
        .zip(offsets)
        .map(|(name, &(below, left))| from_carina(name, below, left))
        .collect();
    found.push(landmark(names::CARINA, CARINA.0, CARINA.1));
    found
}

fn offsets() -> impl Strategy<Value = [(f64, f64); 6]> {
    // Quarter-mm steps, so every value is exact and boundaries are hit, not straddled.
    let one = (-400i32..=400, -300i32..=300).prop_map(|(b, l)| (b as f64 * 0.25, l as f64 * 0.25));
    [
        one.clone(),
        one.clone(),
        one.clone(),
        one.clone(),
        one.clone(),
        one,
    ]
}

proptest! {
    #[test]
    fn mirrored_images_get_the_same_verdicts(offsets in offsets(), age in prop::option::of(0.0f64..90.0)) {
        let table = RuleTable::default();
        let original = frame(Some(SPACING), 1.0);
        let found = all_landmarks(&offsets);
        let before = assess(&found, &original, age, &table);
        // The same film mirrored left to right, with Patient Orientation saying so.
        let mirrored_frame = frame(Some(SPACING), -1.0);
        let mirrored: Vec<Landmark> = found
            .iter()
            .map(|l| {
                let p = original.mirrored(ImagePoint { x: l.x, y: l.y });
                Landmark { x: p.x, ..l.clone() }
            })
            .collect();
        let after = assess(&mirrored, &mirrored_frame, age, &table);
        for (a, b) in before.devices.iter().zip(&after.devices) {
            prop_assert_eq!(a.verdict, b.verdict);
            prop_assert_eq!(a.critical, b.critical);
            prop_assert_eq!(a.side, b.side);
            prop_assert_eq!(&a.statement, &b.statement);
            for (m, n) in a.measurements.iter().zip(&b.measurements) {
                prop_assert!((m.value - n.value).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn rescaled_images_get_the_same_verdicts(offsets in offsets(), k in prop::sample::select(vec![0.5, 2.0, 4.0])) {
        let table = RuleTable::default();
        let found = all_landmarks(&offsets);
        let before = assess(&found, &frame(Some(SPACING), 1.0), None, &table);
        // The same film at k times the pixels per mm.
        let mut fine = frame(Some(SPACING / k), 1.0);
        fine.rows = (f64::from(fine.rows - 1) * k) as u32 + 1;
        fine.columns = (f64::from(fine.columns - 1) * k) as u32 + 1;
        let scaled: Vec<Landmark> = found
            .iter()
            .map(|l| Landmark { x: l.x * k, y: l.y * k, ..l.clone() })
            .collect();
        let after = assess(&scaled, &fine, None, &table);
        for (a, b) in before.devices.iter().zip(&after.devices) {
            prop_assert_eq!(a.verdict, b.verdict, "{:?} vs {:?}", a, b);
            prop_assert_eq!(&a.statement, &b.statement);
            for (m, n) in a.measurements.iter().zip(&b.measurements) {
                prop_assert!((m.value - n.value).abs() < 1e-9);
            }
        }
    }
}

#[test]
fn a_structure_a_mask_could_not_identify_makes_the_check_not_assessable_with_its_reason() {
    let unidentified = |name: &str, why: &str| Landmark {
        name: name.into(),
        confidence: 0.0,
        derivation: Some(why.into()),
        ..Landmark::default()
    };
    let tip = from_carina(names::ETT_TIP, -45.0, 0.0);
    let no_carina = unidentified(
        names::CARINA,
        "the tracheal bifurcation is not identified: its mask is scattered",
    );
    let c = check(Device::EndotrachealTube, &[tip, no_carina], None);
    assert_eq!(c.verdict, Verdict::NotAssessable);
    assert!(
        c.statement
            .contains("carina is not identified (the tracheal bifurcation is not identified: its mask is scattered)"),
        "{}",
        c.statement
    );
    // A device mask that is noise is not "no device".
    let noisy = unidentified(names::ETT_TIP, "the endotracheal tube is not identified");
    let c = check(Device::EndotrachealTube, &[noisy], None);
    assert_eq!(c.verdict, Verdict::NotAssessable, "{c:?}");
    assert!(!c.critical);
    // Nothing at all: absent.
    let c = check(Device::EndotrachealTube, &[], None);
    assert_eq!(c.verdict, Verdict::Absent);
}

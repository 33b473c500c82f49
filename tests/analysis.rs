//! `radassist analyze` end to end on a real radiograph: markers drawn at chosen mm positions
//! are measured back through decoding, preprocessing, the ONNX graph and the geometry; and a
//! moved copy of the film is aligned back, as a prior.

use crate::common;

use common::{
    analyze_json, device, marked_film, sample, sample_values, stored, write_derived, Derived,
    SAMPLE, SPACING, STORED_SCALE,
};
use ndarray::Array2;
use radassist::priors::registration::{warp, Similarity};
use std::process::Command;

fn measurement(device: &serde_json::Value, name: &str) -> f64 {
    device["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {device}"))["value"]
        .as_f64()
        .unwrap()
}

#[test]
fn drawn_markers_are_measured_within_a_millimetre() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Carina near the real one on this film; the left hemidiaphragm dome is on the image's
    // right (the patient's left on a PA film).
    let carina = (544.0, 396.0);
    let film = marked_film(
        dir.path(),
        "markers-appropriate",
        carina,
        &[
            ("carina", 0.0, 0.0),
            ("ett_tip", -3.5, -45.0),
            ("left_hemidiaphragm", 36.2, 51.4),
            ("ngt_tip", 26.8, 81.4),
            ("cvc_tip", -12.0, 25.0),
            ("chest_tube_tip", 56.5, 12.5),
        ],
    );
    let overlay = dir.path().join("overlay.png");
    let result = analyze_json(&[
        film.to_str().unwrap(),
        "--overlay",
        overlay.to_str().unwrap(),
    ]);
    let expect = [
        (
            "endotracheal_tube",
            "ett_tip_above_carina",
            45.0,
            "appropriate",
        ),
        (
            "enteral_tube",
            "ngt_tip_below_left_hemidiaphragm",
            30.0,
            "appropriate",
        ),
        (
            "central_venous_catheter",
            "cvc_tip_below_carina",
            25.0,
            "appropriate",
        ),
        (
            "central_venous_catheter",
            "cvc_tip_from_midline",
            12.0,
            "appropriate",
        ),
    ];
    for (name, what, mm, verdict) in expect {
        let d = device(&result, name);
        let found = measurement(d, what);
        eprintln!("{what}: put {mm} mm, measured {found:.3} mm");
        assert!(
            (found - mm).abs() < 1.0,
            "{what}: put {mm} mm, measured {found} mm"
        );
        assert_eq!(d["verdict"], verdict, "{d}");
        assert_eq!(d["critical"], false);
    }
    let tube = device(&result, "chest_tube");
    assert_eq!(tube["side"], "left", "{tube}");
    assert_eq!(result["current"]["placement"]["population"], "adult");
    assert_eq!(result["warning"], "test model, not for clinical use");
    let png = image::open(&overlay).unwrap();
    assert_eq!((png.width(), png.height()), (1024, 1024));

    // The same film with a low tube and a tube in the oesophagus: critical results.
    let film = marked_film(
        dir.path(),
        "markers-critical",
        carina,
        &[
            ("carina", 0.0, 0.0),
            ("ett_tip", -0.7, -15.0),
            ("left_hemidiaphragm", 36.2, 51.4),
            ("ngt_tip", 2.7, 31.4),
        ],
    );
    let result = analyze_json(&[film.to_str().unwrap()]);
    let ett = device(&result, "endotracheal_tube");
    let found = measurement(ett, "ett_tip_above_carina");
    assert!((found - 15.0).abs() < 1.0, "{found}");
    assert_eq!(
        (ett["verdict"].as_str(), ett["critical"].as_bool()),
        (Some("malpositioned"), Some(true))
    );
    let ngt = device(&result, "enteral_tube");
    let found = measurement(ngt, "ngt_tip_below_left_hemidiaphragm");
    assert!((found + 20.0).abs() < 1.0, "{found}");
    assert_eq!(
        (ngt["verdict"].as_str(), ngt["critical"].as_bool()),
        (Some("malpositioned"), Some(true))
    );
    for absent in ["central_venous_catheter", "chest_tube"] {
        assert_eq!(device(&result, absent)["verdict"], "absent");
    }
}

/// Mean |subtraction| over two boxes inside the lung fields of the sample film (image pixels:
/// right lung x 220..420, y 260..620; left lung x 640..820, y 220..560), in display units.
fn lung_difference(difference: &Array2<Option<f32>>) -> (f64, usize) {
    let (mut sum, mut n) = (0.0, 0usize);
    for (x0, x1, y0, y1) in [(220, 420, 260, 620), (640, 820, 220, 560)] {
        for y in y0..y1 {
            for x in x0..x1 {
                if let Some(d) = difference[(y, x)] {
                    sum += f64::from(d.abs());
                    n += 1;
                }
            }
        }
    }
    (sum / n as f64, n)
}

#[test]
fn a_moved_copy_is_aligned_as_a_prior_and_subtracts_to_near_zero() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let values = sample_values();
    let (rows, cols) = values.dim();
    let (cx, cy) = ((cols as f64 - 1.0) / 2.0, (rows as f64 - 1.0) / 2.0);
    // Anatomy at p on the current film lands at truth.apply(p) on the prior.
    let (shift_x, shift_y, degrees, scale) = (23.4, -17.8, 3.0f64, 1.05);
    let truth = Similarity {
        a: scale * degrees.to_radians().cos(),
        b: scale * degrees.to_radians().sin(),
        tx: cx + shift_x,
        ty: cy + shift_y,
        centre_x: cx,
        centre_y: cy,
    };
    let moved = warp(values.view(), &truth);
    // Outside the original field: Pixel Padding Value, as a real detector's unexposed border.
    const PADDING: u16 = 65535;
    let prior_values = moved.mapv(|v| match v {
        Some(v) => (v * STORED_SCALE).round().clamp(0.0, 65534.0) as u16,
        None => PADDING,
    });
    let prior = dir.path().join("prior.dcm");
    write_derived(
        &sample(SAMPLE),
        &prior_values,
        &Derived {
            label: "moved-prior",
            new_study_date: Some("20180101"),
            padding_value: Some(PADDING),
            patient_id: None,
        },
        &prior,
    );
    let current = dir.path().join("current.dcm");
    write_derived(
        &sample(SAMPLE),
        &stored(&values),
        &Derived {
            label: "current",
            new_study_date: Some("20240315"),
            padding_value: None,
            patient_id: None,
        },
        &current,
    );
    let subtraction_png = dir.path().join("subtraction.png");
    let result = analyze_json(&[
        current.to_str().unwrap(),
        "--prior",
        prior.to_str().unwrap(),
        "--subtraction",
        subtraction_png.to_str().unwrap(),
    ]);
    let comparison = &result["comparisons"][0];
    let alignment = &comparison["alignment"];
    let t: Similarity = {
        let t = &alignment["registration"]["transform"];
        let f = |k: &str| t[k].as_f64().unwrap();
        Similarity {
            a: f("a"),
            b: f("b"),
            tx: f("tx"),
            ty: f("ty"),
            centre_x: f("centre_x"),
            centre_y: f("centre_y"),
        }
    };
    // Every corner and the centre of the film maps to within 1 pixel of where it truly is.
    let mut worst: f64 = 0.0;
    for (x, y) in [
        (0.0, 0.0),
        (cols as f64 - 1.0, 0.0),
        (0.0, rows as f64 - 1.0),
        (cols as f64 - 1.0, rows as f64 - 1.0),
        (cx, cy),
    ] {
        let (a, b) = (t.apply(x, y), truth.apply(x, y));
        worst = worst.max((a.0 - b.0).hypot(a.1 - b.1));
    }
    let rotation = alignment["rotation_degrees"].as_f64().unwrap();
    let found_scale = alignment["scale"].as_f64().unwrap();
    eprintln!(
        "alignment: worst point error {worst:.3} px, rotation {rotation:.4} deg (true 3), scale {found_scale:.5} (true 1.05), \
         translation {} mm, correlation {}",
        alignment["translation_mm"], alignment["registration"]["correlation"]
    );
    assert!(worst < 1.0, "worst point error {worst} px");
    assert!((rotation - degrees).abs() < 0.5, "{rotation}");
    let mm = alignment["translation_mm"].as_array().unwrap();
    assert!((mm[0].as_f64().unwrap() - shift_x * SPACING).abs() < SPACING);
    assert!((mm[1].as_f64().unwrap() - shift_y * SPACING).abs() < SPACING);

    // The subtraction of the film against its own moved copy is near zero inside the lungs
    // (read from the PNG: grey 128 is no change, 1 display unit is 255 levels, 0 is outside).
    let png = image::open(&subtraction_png).unwrap().to_luma8();
    let difference = Array2::from_shape_fn((rows, cols), |(y, x)| {
        let v = png.get_pixel(x as u32, y as u32)[0];
        (v != 0).then(|| (f32::from(v) - 128.0) / 255.0)
    });
    let (mean, n) = lung_difference(&difference);
    eprintln!(
        "subtraction inside the lungs: mean |difference| {mean:.4} display units over {n} pixels"
    );
    assert!(n > 100_000 && mean < 0.01, "{mean} over {n}");
    let png = image::open(&subtraction_png).unwrap();
    assert_eq!((png.width(), png.height()), (1024, 1024));

    // Another patient's earlier film, or the current film itself, is refused as a prior.
    // (Written here, before the folder search below, so the folder holds all three.)
    let other = dir.path().join("other-patient.dcm");
    write_derived(
        &sample(SAMPLE),
        &prior_values,
        &Derived {
            label: "other",
            new_study_date: Some("20180101"),
            padding_value: Some(PADDING),
            patient_id: Some("OTHER-PATIENT"),
        },
        &other,
    );
    for (prior, reason) in [
        (&other, "another patient"),
        (&current, "part of the current study"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_radassist"))
            .args([
                "analyze",
                current.to_str().unwrap(),
                "--prior",
                prior.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("not a prior") && stderr.contains(reason),
            "{stderr}"
        );
    }
}

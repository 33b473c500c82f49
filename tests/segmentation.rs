//! Landmarks derived from a segmentation pack's masks, end to end: the test segmentation pack
//! (models/make-marker-segmentation-pack.py) on films with ring markers drawn at known mm
//! positions, through `radassist analyze`, alone and beside a landmarks pack; the noise pack's
//! empty, scattered and flooding masks give no landmark and say why; and the derived points
//! equal an independent computation (tests/python/derive_landmarks.py: scipy's labelling and
//! numpy) on the same masks.

use crate::common::{self, analyze_json, device, marked_film, root, SPACING};

use radassist::dicom::{read_file, DecodeLimits};
use radassist::inference::session::{Provider, SessionSettings};
use radassist::inference::vision::{ImageModel, Masks};
use radassist::inference::ModelPack;
use radassist::segmentation;
use serde_json::{json, Value};
use std::process::Command;

const CARINA: (f64, f64) = (544.0, 396.0);

fn pack(name: &str) -> String {
    root().join("models").join(name).display().to_string()
}

#[test]
fn the_ett_is_measured_from_landmarks_derived_from_masks() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let film = marked_film(
        dir.path(),
        "segmented",
        CARINA,
        &[
            ("carina", 0.0, 0.0),
            ("ett_tip", -3.5, -45.0),
            ("left_hemidiaphragm", 36.2, 51.4),
            ("cavoatrial_junction", -10.0, 30.0),
        ],
    );
    let result = analyze_json(&[
        film.to_str().unwrap(),
        "--landmarks-pack",
        &pack("test-marker-segmentation"),
    ]);
    let tube = device(&result, "endotracheal_tube");
    assert_eq!(tube["verdict"], "appropriate", "{tube}");
    let above = tube["measurements"][0]["value"].as_f64().unwrap();
    eprintln!("ett_tip_above_carina from masks: put 45 mm, measured {above:.3} mm");
    // Each derived point lies within about a model-input pixel (4 image pixels, 0.7 mm) of the
    // marker's centre.
    assert!((above - 45.0).abs() < 1.5, "{above} mm");
    let landmarks = tube["landmarks"].as_array().unwrap();
    let carina = landmarks.iter().find(|l| l["name"] == "carina").unwrap();
    assert_eq!(carina["model"], "test-marker-segmentation 1");
    let how = carina["derivation"].as_str().unwrap();
    assert!(
        how.starts_with("the centre of the tracheal bifurcation mask ("),
        "{how}"
    );
    let tip = landmarks.iter().find(|l| l["name"] == "ett_tip").unwrap();
    assert!(tip["derivation"]
        .as_str()
        .unwrap()
        .contains("farthest along its course"));
    let px = |mm: f64| mm / SPACING;
    assert!(
        (carina["x"].as_f64().unwrap() - CARINA.0).abs() < 4.0,
        "{carina}"
    );
    assert!(
        (tip["y"].as_f64().unwrap() - (CARINA.1 - px(45.0))).abs() < 6.0,
        "{tip}"
    );
    // The draft's evidence names the pack and the derivation.
    let draft = common::run_radassist(&[
        "draft",
        film.to_str().unwrap(),
        "--landmarks-pack",
        &pack("test-marker-segmentation"),
        "--json",
        "--provider",
        "cpu",
    ]);
    let draft = String::from_utf8_lossy(&draft.stdout);
    assert!(
        draft.contains("the centre of the tracheal bifurcation mask"),
        "{draft}"
    );
}

#[test]
fn noise_and_empty_masks_give_no_landmark_and_the_check_says_why() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A tube the marker pack finds; no carina on the film for it.
    let film = marked_film(dir.path(), "noise", CARINA, &[("ett_tip", -3.5, -45.0)]);
    let result = analyze_json(&[
        film.to_str().unwrap(),
        "--landmarks-pack",
        &pack("test-marker-landmarks"),
        "--landmarks-pack",
        &pack("test-noise-segmentation"),
    ]);
    let tube = device(&result, "endotracheal_tube");
    assert_eq!(tube["verdict"], "not_assessable", "{tube}");
    assert_eq!(tube["critical"], false);
    let statement = tube["statement"].as_str().unwrap();
    assert!(
        statement.contains("the carina is not identified (the tracheal bifurcation is not identified: its mask is scattered"),
        "{statement}"
    );
    // The noise pack alone: its tube mask is noise, not "no tube".
    let alone = analyze_json(&[
        film.to_str().unwrap(),
        "--landmarks-pack",
        &pack("test-noise-segmentation"),
    ]);
    let tube = device(&alone, "endotracheal_tube");
    assert_eq!(tube["verdict"], "not_assessable", "{tube}");
    assert!(tube["statement"]
        .as_str()
        .unwrap()
        .contains("the endotracheal tube is not identified"));
    let landmarks = alone["current"]["landmarks"].as_array().unwrap();
    let why = |name: &str| {
        let l = landmarks.iter().find(|l| l["name"] == name).unwrap();
        assert_eq!(l["confidence"], 0.0, "{l}");
        l["derivation"].as_str().unwrap().to_string()
    };
    assert!(why("left_hemidiaphragm").contains("its mask is empty"));
    assert!(why("cavoatrial_junction").contains("more than a right atrium can"));
}

/// The masks as the independent computation reads them: per structure its probabilities.
fn masks_json(masks: &Masks) -> Value {
    let structures: serde_json::Map<String, Value> = masks
        .structures
        .iter()
        .map(|(s, m)| {
            let name = serde_json::to_value(s)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string();
            let rows: Vec<Vec<f32>> = m.outer_iter().map(|r| r.to_vec()).collect();
            (name, json!(rows))
        })
        .collect();
    let p = &masks.placement;
    json!({
        "structures": structures,
        "threshold": masks.threshold,
        "feet_sign": masks.feet_sign,
        "input": [masks.input.0, masks.input.1],
        "placement": [p.scale_x, p.scale_y, p.offset_x, p.offset_y],
    })
}

#[test]
fn derived_landmarks_equal_an_independent_computation_on_the_same_masks() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let film = marked_film(
        dir.path(),
        "derive",
        CARINA,
        &[
            ("carina", 0.0, 0.0),
            ("ett_tip", -3.5, -45.0),
            ("left_hemidiaphragm", 36.2, 51.4),
            ("cavoatrial_junction", -10.0, 30.0),
        ],
    );
    let settings = SessionSettings {
        provider: Provider::Cpu,
        ..SessionSettings::default()
    };
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for name in ["test-marker-segmentation", "test-noise-segmentation"] {
        let pack = ModelPack::load(&root().join("models").join(name), &settings).unwrap();
        let mut model = ImageModel::new(pack).unwrap();
        let radiograph = read_file(&film, &DecodeLimits::default()).unwrap();
        let prepared = model.prepare(&[&radiograph]);
        let masks = model.masks_of(&prepared).unwrap().remove(0);
        cases.push(masks_json(&masks));
        ours.push(segmentation::derive(&masks));
    }
    let input = dir.path().join("masks.json");
    std::fs::write(&input, serde_json::to_vec(&cases).unwrap()).unwrap();
    let python = root().join(".radassist/test-venv/bin/python");
    let run = Command::new(&python)
        .arg(root().join("tests/python/derive_landmarks.py"))
        .arg(&input)
        .output()
        .expect("the test venv (scripts/setup) has numpy and scipy");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let theirs: Vec<Value> = serde_json::from_slice(&run.stdout).unwrap();
    for (case, (ours, theirs)) in ours.iter().zip(&theirs).enumerate() {
        let theirs = theirs.as_object().unwrap();
        let identified: Vec<&str> = ours
            .iter()
            .filter(|l| l.confidence > 0.0)
            .map(|l| l.name.as_str())
            .collect();
        let mut named: Vec<&str> = theirs.keys().map(String::as_str).collect();
        let mut found = identified.clone();
        named.sort();
        found.sort();
        assert_eq!(found, named, "case {case}: which landmarks are identified");
        for l in ours.iter().filter(|l| l.confidence > 0.0) {
            let t = &theirs[&l.name];
            // A tip is the far end of the skeleton here, of the mask there: within a mask pixel
            // (4 image pixels); the rest are the same arithmetic.
            let tolerance = if l.name.ends_with("_tip") { 4.5 } else { 1e-9 };
            let (x, y) = (t["x"].as_f64().unwrap(), t["y"].as_f64().unwrap());
            assert!(
                (l.x - x).abs() <= tolerance && (l.y - y).abs() <= tolerance,
                "case {case} {}: radassist ({}, {}) vs ({x}, {y})",
                l.name,
                l.x,
                l.y
            );
            assert!((f64::from(l.confidence) - t["confidence"].as_f64().unwrap()).abs() < 1e-5);
        }
    }
}

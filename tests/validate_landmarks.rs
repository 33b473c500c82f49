//! `radassist models validate` with the marker landmarks pack on films with ring markers drawn
//! at known mm positions, against annotations that agree, are off by a known amount, say a
//! tube is absent where one is drawn, and hostile rows. The mm figures are compared with an
//! independent computation (tests/python/validate_landmarks.py: pydicom's pixel spacing and
//! numpy's percentiles from the annotations and the predictions file) to 1e-9; the detections
//! themselves with the positions drawn.

use crate::common::{self, marked_film, root, uid_for, SPACING};

use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The carina on this sample (pixels); marks are placed in mm from it.
const CARINA: (f64, f64) = (544.0, 396.0);

/// One film: its label, the marks drawn (mm from the carina), and the annotation rows (mm
/// from the carina; None: annotated as not on the film).
type Film = (
    &'static str,
    Vec<(&'static str, f64, f64)>,
    Vec<(&'static str, Option<(f64, f64)>)>,
);

fn films() -> Vec<Film> {
    let exact = |marks: &[(&'static str, f64, f64)]| -> Vec<(&'static str, Option<(f64, f64)>)> {
        marks.iter().map(|&(n, x, y)| (n, Some((x, y)))).collect()
    };
    let appropriate = vec![("carina", 0.0, 0.0), ("ett_tip", -3.5, -45.0)];
    let borderline = vec![("carina", 0.0, 0.0), ("ett_tip", 2.0, -25.0)];
    let lines = vec![
        ("carina", 0.0, 0.0),
        ("ett_tip", 0.0, -50.0),
        ("left_hemidiaphragm", 36.2, 51.4),
        ("ngt_tip", 26.8, 81.4),
        ("cvc_tip", -12.0, 25.0),
        ("chest_tube_tip", 56.5, 12.5),
    ];
    vec![
        // Annotated where drawn.
        ("lm-exact", appropriate.clone(), exact(&appropriate)),
        ("lm-lines", lines.clone(), exact(&lines)),
        // The annotator puts the tip 3 mm lower and 4 mm to the side: a 5 mm error, the same
        // verdict, the height 3 mm less.
        (
            "lm-offset",
            borderline.clone(),
            vec![
                ("carina", Some((0.0, 0.0))),
                ("ett_tip", Some((6.0, -22.0))),
            ],
        ),
        // No tube drawn, none annotated.
        (
            "lm-no-tube",
            vec![("carina", 0.0, 0.0)],
            vec![("carina", Some((0.0, 0.0))), ("ett_tip", None)],
        ),
        // A tube drawn where the annotator says none: a false detection, verdicts differ.
        (
            "lm-false",
            appropriate.clone(),
            vec![("carina", Some((0.0, 0.0))), ("ett_tip", None)],
        ),
        // The annotator puts the tip 20 mm lower (25 mm above the carina): borderline against
        // the pack's appropriate.
        (
            "lm-disagree",
            appropriate.clone(),
            vec![
                ("carina", Some((0.0, 0.0))),
                ("ett_tip", Some((-3.5, -25.0))),
            ],
        ),
        // The carina annotated but not drawn: missed.
        (
            "lm-missed",
            vec![("ett_tip", -3.5, -45.0)],
            vec![
                ("carina", Some((0.0, 0.0))),
                ("ett_tip", Some((-3.5, -45.0))),
            ],
        ),
    ]
}

fn pixel(mm: (f64, f64)) -> (f64, f64) {
    (CARINA.0 + mm.0 / SPACING, CARINA.1 + mm.1 / SPACING)
}

/// The films, drawn, and the annotations file (with hostile rows).
fn studies(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let folder = dir.join("films");
    std::fs::create_dir_all(&folder).unwrap();
    let mut csv = String::from("image,landmark,x,y\n");
    for (label, marks, annotated) in films() {
        marked_film(&folder, label, CARINA, &marks);
        let sop = uid_for(&format!("{label}/sop"));
        for (name, at) in annotated {
            match at {
                Some(mm) => {
                    let (x, y) = pixel(mm);
                    csv.push_str(&format!("{sop},{name},{x},{y}\n"));
                }
                None => csv.push_str(&format!("{sop},{name},,\n")),
            }
        }
    }
    let exact = uid_for("lm-exact/sop");
    csv.push_str(&format!("{exact},carina,1,1\n")); // again
    csv.push_str(&format!("{exact},cvc_tip,5000,20\n")); // outside the image
    csv.push_str(&format!("{exact},ngt_tip,ten,20\n")); // not a number
    csv.push_str(&format!("{exact},<img src=x onerror=alert(1)>,1,1\n")); // not a landmark
    csv.push_str("9.9.9,carina,10,10\n"); // no such film
    let truth = dir.join("points.csv");
    std::fs::write(&truth, csv).unwrap();
    (folder, truth)
}

/// `radassist models validate` of the shipped pack `pack` on the films against the points.
fn validate(
    pack: &str,
    (films, truth): (&Path, &Path),
    out: &Path,
    criteria: Option<&Path>,
) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_radassist"));
    command
        .args(["models", "validate", "--provider", "cpu", "--studies"])
        .arg(films)
        .arg("--truth")
        .arg(truth)
        .arg("--out")
        .arg(out);
    if let Some(criteria) = criteria {
        command.arg("--criteria").arg(criteria);
    }
    command
        .arg(root().join("models").join(pack))
        .output()
        .unwrap()
}

fn figure<'a>(set: &'a Value, landmark: &str) -> &'a Value {
    set["landmarks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["landmark"] == landmark)
        .map(|l| &l["figures"])
        .unwrap_or_else(|| panic!("{landmark} in {set}"))
}

fn close(ours: &Value, theirs: &Value, what: &str) {
    match (ours.as_f64(), theirs.as_f64()) {
        (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-9, "{what}: radassist {a} vs {b}"),
        _ => assert_eq!(ours, theirs, "{what}"),
    }
}

#[test]
fn landmark_errors_equal_an_independent_computation_and_verdicts_are_compared() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (folder, truth) = studies(dir.path());
    let criteria = dir.path().join("criteria.toml");
    std::fs::write(
        &criteria,
        "[landmark_default]\nmin_detection_rate = 0.5\n[landmarks.\"carina\"]\nmax_median_error_mm = 1.0\n[ett_distance]\nmax_median_error_mm = 2.0\n[verdicts]\nmin_agreement = 0.9\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let run = validate(
        "test-marker-landmarks",
        (&folder, &truth),
        &out,
        Some(&criteria),
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!("{stdout}");
    // The ETT verdicts agree on 4 of 7 films: that criterion fails, exit 1.
    assert!(!run.status.success(), "{stderr}");
    for expected in [
        "validate: 7/7 films",
        "line 20: carina on",
        "is annotated again",
        "cvc_tip at (5000, 20) lies outside the 1024 x 1024 image",
        "x is \"ten\"",
        "<img src=x onerror=alert(1)> (1 row(s)): the pack finds no such landmark",
        "annotated 9.9.9: no such film was found",
        "the acceptance criteria are not met: 1 of",
    ] {
        assert!(stderr.contains(expected), "{expected} not in\n{stderr}");
    }
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let overall = &report["evaluation"]["overall"];
    assert_eq!(overall["films"], 7);

    // What was designed into the films.
    let carina = figure(overall, "carina");
    assert_eq!(
        (carina["annotated"].as_u64(), carina["detected"].as_u64()),
        (Some(7), Some(6))
    );
    let tip = figure(overall, "ett_tip");
    assert_eq!(
        (tip["annotated"].as_u64(), tip["detected"].as_u64()),
        (Some(5), Some(5))
    );
    assert_eq!(tip["annotated_absent"], 2);
    assert_eq!(tip["false_detections"], 1);
    let errors: Vec<f64> = tip["errors_mm"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_f64().unwrap())
        .collect();
    // Three tips where drawn, one 5 mm off, one 20 mm off (within the detection's 0.5 px).
    let expected = [0.0, 0.0, 0.0, 5.0, 20.0];
    for (e, want) in errors.iter().zip(expected) {
        assert!((e - want).abs() < SPACING, "{errors:?}");
    }
    let ett = &overall["ett_distance"];
    assert_eq!(ett["films"], 4, "{ett}");
    let verdicts = overall["verdicts"].as_array().unwrap();
    let tube = verdicts
        .iter()
        .find(|v| v["device"] == "endotracheal_tube")
        .unwrap();
    assert_eq!(
        (tube["films"].as_u64(), tube["agreeing"].as_u64()),
        (Some(7), Some(4)),
        "{tube}"
    );
    let confusion = tube["confusion"].to_string();
    assert!(
        confusion.contains("[\"absent\",\"appropriate\",1]"),
        "{confusion}"
    );
    assert!(
        confusion.contains("[\"borderline\",\"appropriate\",1]"),
        "{confusion}"
    );
    assert!(
        confusion.contains("[\"appropriate\",\"not_assessable\",1]"),
        "{confusion}"
    );
    for device in ["enteral_tube", "central_venous_catheter", "chest_tube"] {
        let v = verdicts.iter().find(|v| v["device"] == device).unwrap();
        assert_eq!(
            (v["films"].as_u64(), v["agreeing"].as_u64()),
            (Some(1), Some(1)),
            "{v}"
        );
    }

    // Every mm figure against numpy and pydicom on the same detections and annotations.
    let python = root().join(".radassist/test-venv/bin/python");
    let theirs = Command::new(&python)
        .arg(root().join("tests/python/validate_landmarks.py"))
        .arg(out.join("predictions.jsonl"))
        .arg(&truth)
        .output()
        .expect("the test venv (scripts/setup) has numpy and pydicom");
    assert!(
        theirs.status.success(),
        "{}",
        String::from_utf8_lossy(&theirs.stderr)
    );
    let theirs: Value = serde_json::from_slice(&theirs.stdout).unwrap();
    for (landmark, figures) in theirs["landmarks"].as_object().unwrap() {
        let ours = figure(overall, landmark);
        for (key, value) in figures.as_object().unwrap() {
            close(&ours[key], value, &format!("{landmark} {key}"));
        }
    }
    for (key, value) in theirs["ett_distance"].as_object().unwrap() {
        close(&ett[key], value, &format!("ett_distance {key}"));
    }
    // The detections are where the markers were drawn.
    for line in std::fs::read_to_string(out.join("predictions.jsonl"))
        .unwrap()
        .lines()
    {
        let record: Value = serde_json::from_str(line).unwrap();
        let label = Path::new(record["file"].as_str().unwrap())
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let (_, marks, _) = films().into_iter().find(|f| f.0 == label).unwrap();
        for (name, x_mm, y_mm) in marks {
            let found = record["landmarks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["name"] == name)
                .unwrap();
            let (x, y) = pixel((x_mm, y_mm));
            let off = (found["x"].as_f64().unwrap() - x).hypot(found["y"].as_f64().unwrap() - y);
            assert!(
                off < 0.5,
                "{label} {name}: {off} px from where it was drawn"
            );
        }
    }
    // The same annotations against the segmentation pack's derived landmarks.
    let segmented = dir.path().join("segmented");
    let run = validate(
        "test-marker-segmentation",
        (&folder, &truth),
        &segmented,
        None,
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(segmented.join("report.json")).unwrap()).unwrap();
    let derived = figure(&report["evaluation"]["overall"], "carina");
    assert_eq!(
        (derived["annotated"].as_u64(), derived["detected"].as_u64()),
        (Some(7), Some(6))
    );
    assert!(
        derived["median_error_mm"].as_f64().unwrap() < 1.0,
        "{derived}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!html.contains("<img src=x"));
    assert!(html.contains("share of films within"));
    let _ = std::fs::create_dir_all(root().join("target/validate"));
    let _ = std::fs::write(root().join("target/validate/landmarks.html"), html);
}

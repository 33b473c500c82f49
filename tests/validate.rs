//! `radassist models validate` with the test findings pack on studies made from a sample film
//! (each film's pixels changed so that the pack scores them differently, each with its own
//! manufacturer, view, age and sex), a truth file with hostile rows, and acceptance criteria
//! that hold and fail. Every figure is compared with scikit-learn's on the same predictions
//! (tests/python/validate_metrics.py) to 1e-9; a run cut off part way resumes.

use crate::common::{self, root, uid_for};

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const FILM: &str = "sample-dicom/derived/CR-MONO1-10-chest_EXPLICIT_LE.dcm";
const FILMS: usize = 40;

/// Film `i`: the sample with its rows rolled and its contrast changed by `i`, in study `i`
/// (two films for study 0), with header values that vary by `i`.
fn film(i: usize, study: usize) -> Vec<u8> {
    let mut obj = dicom_object::open_file(root().join(FILM)).unwrap();
    let pixels = obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
    let values: Vec<u16> = pixels
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    let (rows, columns) = (440, 440);
    let gain = 0.4 + 0.03 * (i % 20) as f64;
    let shift = (i * 37) % rows;
    let mut changed = vec![0u16; values.len()];
    for r in 0..rows {
        for c in 0..columns {
            let from = ((r + shift) % rows) * columns + c;
            changed[r * columns + c] = ((values[from] as f64 * gain) as u16).min(1023);
        }
    }
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(changed.into()),
    ));
    let text = |obj: &mut dicom_object::DefaultDicomObject, tag: Tag, vr: VR, value: String| {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    };
    let sop = uid_for(&format!("validate/film-{i}"));
    text(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, sop.clone());
    obj.meta_mut().media_storage_sop_instance_uid = sop;
    text(
        &mut obj,
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        uid_for(&format!("validate/study-{study}")),
    );
    text(
        &mut obj,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        uid_for(&format!("validate/series-{i}")),
    );
    text(
        &mut obj,
        tags::ACCESSION_NUMBER,
        VR::SH,
        format!("ACC{study:03}"),
    );
    text(
        &mut obj,
        tags::MANUFACTURER,
        VR::LO,
        ["ACME", "Other <b>Co</b>"][i % 2].into(),
    );
    text(
        &mut obj,
        tags::VIEW_POSITION,
        VR::CS,
        ["PA", "AP", "PA"][i % 3].into(),
    );
    text(
        &mut obj,
        tags::PATIENT_AGE,
        VR::AS,
        ["035Y", "070Y", "010Y"][i % 3].into(),
    );
    text(
        &mut obj,
        tags::PATIENT_SEX,
        VR::CS,
        ["F", "M"][(i / 2) % 2].into(),
    );
    obj.meta_mut().update_information_group_length();
    let mut bytes = Vec::new();
    obj.write_all(&mut bytes).unwrap();
    bytes
}

/// The studies folder (a bad file among the films) and the truth file.
fn studies(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let films = dir.join("films");
    std::fs::create_dir_all(films.join("more")).unwrap();
    for i in 0..FILMS {
        let study = if i == FILMS - 1 { 0 } else { i };
        let folder = if i % 4 == 0 {
            films.join("more")
        } else {
            films.clone()
        };
        std::fs::write(folder.join(format!("film-{i:02}.dcm")), film(i, study)).unwrap();
    }
    std::fs::write(films.join("notes.txt"), "not a DICOM file").unwrap();
    // Truth: Edema and Cardiomegaly labelled by a pattern (both classes), Fracture positive
    // everywhere (AUROC undefined), a column the pack lacks, and hostile rows.
    let mut truth = String::from("study,Edema,Cardiomegaly,Fracture,<script>alert(1)</script>\n");
    for study in 0..FILMS - 1 {
        // Half the studies named by their accession number.
        let id = if study % 2 == 0 {
            uid_for(&format!("validate/study-{study}"))
        } else {
            format!("ACC{study:03}")
        };
        let edema = (study * 7 % 5 < 2) as u8;
        let cardio = if study == 5 {
            String::new()
        } else {
            ((study % 3 == 0) as u8).to_string()
        };
        truth.push_str(&format!("{id},{edema},{cardio},1,0\n"));
    }
    truth.push_str("ACC001,1,1,1,1\n"); // again
    truth.push_str("ACC900,yes,0,1,0\n"); // not a label
    truth.push_str("9.9.9,1,0,1,0\n"); // no such study
    let truth_path = dir.join("truth.csv");
    std::fs::write(&truth_path, truth).unwrap();
    (films, truth_path)
}

fn validate(dir: &Path, films: &Path, truth: &Path, out: &Path) -> std::process::Output {
    let criteria = dir.join("criteria.toml");
    std::fs::write(
        &criteria,
        "[default]\nmin_auroc = 0.0\n[findings.\"Edema\"]\nmin_auroc = 0.99\nmax_ece = 1.0\n",
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args(["models", "validate", "--provider", "cpu", "--studies"])
        .arg(films)
        .arg("--truth")
        .arg(truth)
        .arg("--out")
        .arg(out)
        .arg("--criteria")
        .arg(&criteria)
        .arg(root().join("models/test-findings"))
        .current_dir(dir)
        .output()
        .unwrap()
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-9,
        "{what}: radassist {a} vs scikit-learn {b}"
    );
}

/// radassist's figures (report.json) against scikit-learn's for one set of studies.
fn compare(ours: &Value, theirs: &Value, what: &str) {
    assert_eq!(ours["studies"], theirs["studies"], "{what}");
    assert_eq!(ours["positives"], theirs["positives"], "{what}");
    let at = &ours["at_threshold"];
    let counts: Vec<u64> = [
        "true_positives",
        "false_positives",
        "true_negatives",
        "false_negatives",
    ]
    .iter()
    .map(|k| at[k].as_u64().unwrap())
    .collect();
    let expected: Vec<u64> = theirs["at_threshold"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(counts, expected, "{what}: operating point");
    match theirs.get("auroc") {
        Some(auroc) => {
            close(
                ours["auroc"].as_f64().unwrap(),
                auroc.as_f64().unwrap(),
                what,
            );
            for k in 0..2 {
                close(
                    ours["auroc_95"][k].as_f64().unwrap(),
                    theirs["auroc_95"][k].as_f64().unwrap(),
                    &format!("{what} DeLong"),
                );
            }
            close(
                ours["threshold_for_target"].as_f64().unwrap(),
                theirs["threshold_for_target"].as_f64().unwrap(),
                &format!("{what} threshold for the target"),
            );
        }
        None => {
            assert!(ours["auroc"].is_null(), "{what}: AUROC should be undefined");
            assert!(ours["note"].as_str().unwrap().contains("AUROC undefined"));
        }
    }
    close(
        ours["ece"].as_f64().unwrap(),
        theirs["ece"].as_f64().unwrap(),
        &format!("{what} ECE"),
    );
}

#[test]
fn validate_s_figures_equal_scikit_learn_s_and_a_cut_off_run_resumes() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (films, truth) = studies(dir.path());
    let out = dir.path().join("out");
    let run = validate(dir.path(), &films, &truth, &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    // Edema must reach an AUROC of 0.99 on a test model's noise, and Fracture's AUROC cannot be
    // measured (every study positive): those fail, exit 1; Cardiomegaly's default holds.
    assert!(!run.status.success(), "{stderr}");
    assert!(
        stderr.contains("the acceptance criteria are not met: 2 of 4 fail"),
        "{stderr}"
    );
    for expected in [
        "validate: 41/41 films",
        "line 41: study ACC001 is labelled again",
        "line 42: Edema is \"yes\"",
        "<script>alert(1)</script>: the pack has no such finding",
        "truth row 9.9.9: no film of that study was found",
    ] {
        assert!(stderr.contains(expected), "{expected} not in\n{stderr}");
    }
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let evaluation = &report["evaluation"];
    let verdicts: Vec<(String, String, bool)> = report["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let finding = c["finding"].as_str().unwrap().to_string();
            let criterion = c["criterion"].as_str().unwrap().to_string();
            (finding, criterion, c["holds"].as_bool().unwrap())
        })
        .collect();
    for (finding, criterion, holds) in [
        ("Edema", "minimum AUROC", false),
        ("Edema", "maximum expected calibration error", true),
        ("Cardiomegaly", "minimum AUROC", true),
        ("Fracture", "minimum AUROC", false),
    ] {
        let wanted = (finding.to_string(), criterion.to_string(), holds);
        assert!(verdicts.contains(&wanted), "{wanted:?} not in {verdicts:?}");
    }
    assert_eq!(evaluation["films"], FILMS + 1);
    assert_eq!(evaluation["studies"], FILMS - 1);
    assert_eq!(evaluation["refused"].as_array().unwrap().len(), 1);
    assert!(evaluation["refused"][0][0]
        .as_str()
        .unwrap()
        .ends_with("notes.txt"));

    // scikit-learn on the same predictions.
    let python = root().join(".radassist/test-venv/bin/python");
    let sklearn = Command::new(&python)
        .arg(root().join("tests/python/validate_metrics.py"))
        .arg(out.join("predictions.jsonl"))
        .arg(&truth)
        .args(["0.5", "0.9"])
        .output()
        .expect("the test venv (scripts/setup) has scikit-learn");
    assert!(
        sklearn.status.success(),
        "{}",
        String::from_utf8_lossy(&sklearn.stderr)
    );
    let theirs: Value = serde_json::from_slice(&sklearn.stdout).unwrap();
    let findings = evaluation["findings"].as_array().unwrap();
    let names: Vec<&str> = findings
        .iter()
        .map(|f| f["finding"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Edema", "Cardiomegaly", "Fracture"]);
    for finding in findings {
        let name = finding["finding"].as_str().unwrap();
        compare(&finding["overall"], &theirs[name]["overall"], name);
        // Every ROC point and reliability bin.
        let roc = finding["overall"]["roc"].as_array().unwrap();
        let their_roc = theirs[name]["overall"]["roc"]
            .as_array()
            .map_or(&[][..], |r| r);
        assert_eq!(roc.len(), their_roc.len(), "{name} ROC");
        for (p, q) in roc.iter().zip(their_roc) {
            close(p["fpr"].as_f64().unwrap(), q[0].as_f64().unwrap(), "fpr");
            close(p["tpr"].as_f64().unwrap(), q[1].as_f64().unwrap(), "tpr");
        }
        let bins = finding["overall"]["calibration"].as_array().unwrap();
        let their_bins = theirs[name]["overall"]["calibration"].as_array().unwrap();
        assert_eq!(bins.len(), their_bins.len(), "{name} reliability bins");
        for (b, q) in bins.iter().zip(their_bins) {
            close(
                b["mean_predicted"].as_f64().unwrap(),
                q[0].as_f64().unwrap(),
                "predicted",
            );
            close(
                b["observed"].as_f64().unwrap(),
                q[1].as_f64().unwrap(),
                "observed",
            );
            assert_eq!(b["count"], q[2]);
        }
        for group in finding["subgroups"].as_array().unwrap() {
            let key = format!(
                "{}: {}",
                group["attribute"].as_str().unwrap(),
                group["value"].as_str().unwrap()
            );
            compare(
                &group["figures"],
                &theirs[name]["subgroups"][&key],
                &format!("{name} {key}"),
            );
        }
    }
    let edema = &findings[0]["subgroups"];
    for expected in [
        "manufacturer: Other <b>Co</b>",
        "view: AP",
        "age band: under 18",
        "age band: 65 and over",
        "sex: F",
    ] {
        assert!(
            edema.as_array().unwrap().iter().any(|g| format!(
                "{}: {}",
                g["attribute"].as_str().unwrap(),
                g["value"].as_str().unwrap()
            ) == expected),
            "no subgroup {expected}"
        );
    }
    // The page: every text from the files shown as text.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(!html.contains("<script>alert") && !html.contains("<b>Co</b>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("<svg") && html.contains("ROC curve"));

    // The operating points found, as the service's configuration: the analysis then records
    // them (round trip through the file, exactly).
    let thresholds = out.join("thresholds.toml");
    let analysis = Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args([
            "--config",
            thresholds.to_str().unwrap(),
            "analyze",
            "--json",
            "--provider",
            "cpu",
            FILM,
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        analysis.status.success(),
        "{}",
        String::from_utf8_lossy(&analysis.stderr)
    );
    let analysis: Value = serde_json::from_slice(&analysis.stdout).unwrap();
    for finding in &findings[..2] {
        let name = finding["finding"].as_str().unwrap();
        let found = finding["overall"]["threshold_for_target"].as_f64().unwrap();
        let recorded = analysis["thresholds"]["present"][name].as_f64().unwrap();
        assert_eq!(recorded as f32, found as f32, "{name}");
    }
    let written = std::fs::read_to_string(&thresholds).unwrap();
    assert!(
        written.contains("# \"Fracture\": no threshold (no negative study: AUROC undefined)"),
        "{written}"
    );

    // Cut off: the last films' lines lost (one half-written), then the run again.
    let predictions = std::fs::read_to_string(out.join("predictions.jsonl")).unwrap();
    let lines: Vec<&str> = predictions.lines().collect();
    let kept = lines[..lines.len() - 5].join("\n") + "\n" + &lines[lines.len() - 5][..20];
    std::fs::write(out.join("predictions.jsonl"), kept).unwrap();
    let again = validate(dir.path(), &films, &truth, &out);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("validate: 41/41 films (5 this run"),
        "{stderr}"
    );
    let resumed: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(resumed["evaluation"]["findings"], evaluation["findings"]);
}

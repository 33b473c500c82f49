//! The export recipes of real architectures, on randomly initialised copies (the packages'
//! network code from PyPI, no weights): CarinaNet to a landmarks pack and CXAS to a
//! segmentation pack, each with its `--check` against PyTorch on a sample (points and
//! confidences within 1e-4, masks within 1e-4); then `radassist analyze` with both packs
//! measures the endotracheal tube from CarinaNet's points (the distance equal to the points'
//! own arithmetic), and CXAS's noise masks, beside a tube found by the marker pack, leave the
//! tube not assessable with the reason.
//!
//! Needs .radassist/export-venv (scripts/setup); skipped without it unless
//! RADASSIST_REQUIRE_EXPORT is set (scripts/test sets it).

use crate::common::{self, analyze_json, device, marked_film, root, sample, SAMPLE};

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn export_python() -> Option<PathBuf> {
    let python = root().join(".radassist/export-venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    if std::env::var_os("RADASSIST_REQUIRE_EXPORT").is_some() {
        panic!(
            "RADASSIST_REQUIRE_EXPORT is set but {} is missing: run scripts/setup",
            python.display()
        );
    }
    eprintln!("skipped: no export environment (scripts/setup makes .radassist/export-venv)");
    None
}

/// Runs an export recipe with `--check` on the sample; its output.
fn export(python: &Path, recipe: &str, out: &Path) -> String {
    let run = Command::new(python)
        .arg(root().join("models/export").join(recipe))
        .arg(out)
        .arg("--check")
        .arg(sample(SAMPLE))
        .arg("--radassist")
        .arg(env!("CARGO_BIN_EXE_radassist"))
        .env("CXAS_NO_WELCOME", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(
        run.status.success(),
        "{recipe}:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
}

#[test]
fn carinanet_and_cxas_export_with_parity_and_drive_the_tube_check() {
    if !common::onnx_runtime_available() {
        return;
    }
    let Some(python) = export_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (carinanet, cxas) = (dir.path().join("carinanet"), dir.path().join("cxas"));
    let said = export(&python, "carinanet_onnx.py", &carinanet);
    assert!(said.contains("(within 0.0001)"), "{said}");
    let said = export(&python, "cxas_onnx.py", &cxas);
    assert!(said.contains("(within 0.0001)"), "{said}");

    // CarinaNet's points drive the tube check; the distance is their own arithmetic.
    let film = sample(SAMPLE);
    let predicted = common::run_radassist(&[
        "predict",
        "--provider",
        "cpu",
        "--pack",
        carinanet.to_str().unwrap(),
        film.to_str().unwrap(),
    ]);
    let line: Value = serde_json::from_slice(&predicted.stdout).unwrap();
    let point = |name: &str| {
        let l = line["landmarks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap()
            .clone();
        assert!(l["confidence"].as_f64().unwrap() >= 0.5, "{l}");
        l
    };
    let (tip, carina) = (point("ett_tip"), point("carina"));
    let result = analyze_json(&[
        film.to_str().unwrap(),
        "--landmarks-pack",
        carinanet.to_str().unwrap(),
        "--landmarks-pack",
        cxas.to_str().unwrap(),
    ]);
    let tube = device(&result, "endotracheal_tube");
    let measured = &tube["measurements"][0];
    assert_eq!(measured["name"], "ett_tip_above_carina", "{tube}");
    let spacing = result["current"]["placement"]["frame"]["spacing"]["row_mm"]
        .as_f64()
        .unwrap();
    let above = (carina["y"].as_f64().unwrap() - tip["y"].as_f64().unwrap()) * spacing;
    assert!(
        (measured["value"].as_f64().unwrap() - above).abs() < 1e-9,
        "{measured} vs {above}"
    );
    assert!(
        ["appropriate", "borderline", "malpositioned"].contains(&tube["verdict"].as_str().unwrap())
    );
    // CXAS's random masks flood the film: nothing is derived from them, and each says why.
    let landmarks = result["current"]["landmarks"].as_array().unwrap();
    for name in ["left_hemidiaphragm", "cavoatrial_junction"] {
        let l = landmarks.iter().find(|l| l["name"] == name).unwrap();
        assert_eq!(l["confidence"], 0.0, "{l}");
        assert!(
            l["derivation"]
                .as_str()
                .unwrap()
                .contains("is not identified"),
            "{l}"
        );
    }

    // A tube the marker pack finds, the carina left to CXAS: not assessable, with the reason.
    let marked = marked_film(
        dir.path(),
        "tube-only",
        (544.0, 396.0),
        &[("ett_tip", -3.5, -45.0)],
    );
    let result = analyze_json(&[
        marked.to_str().unwrap(),
        "--landmarks-pack",
        root()
            .join("models/test-marker-landmarks")
            .to_str()
            .unwrap(),
        "--landmarks-pack",
        cxas.to_str().unwrap(),
    ]);
    let tube = device(&result, "endotracheal_tube");
    assert_eq!(tube["verdict"], "not_assessable", "{tube}");
    let statement = tube["statement"].as_str().unwrap();
    assert!(
        statement.contains(
            "the carina is not identified (the trachea is not identified: its mask covers"
        ),
        "{statement}"
    );
}

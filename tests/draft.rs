//! Draft reports, and their DICOM SR and FHIR forms, checked by independent tools: dcmtk's
//! dsrdump, dicom3tools' dciodvfy, the FHIR R4 model of fhir.resources, and radassist's own
//! labeler reading the draft back.

use crate::common;

use common::{dciodvfy, dsrdump, marked_film, root, run_radassist};
use radassist::labeler::{Label, Labeler, Observation};
use std::path::Path;
use std::process::Command;

const STUDY: &[&str] = &[
    "sample-dicom/derived/siim_chest_pa_devices.dcm",
    "--prior",
    "sample-dicom/derived/siim_chest_pa_prior.dcm",
    "--prior-report",
    "sample-dicom/derived/siim_chest_pa_prior_report.txt",
    "--provider",
    "cpu",
];

fn with(command: &[&str], extra: &[&str]) -> Vec<String> {
    command
        .iter()
        .chain(STUDY)
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

fn run(args: Vec<String>) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_radassist(&args)
}

#[test]
fn every_sentence_has_its_evidence_and_the_labeler_reads_the_draft_as_meant() {
    if !common::onnx_runtime_available() {
        return;
    }
    let draft: serde_json::Value =
        serde_json::from_slice(&run(with(&["draft", "--json"], &[])).stdout).unwrap();
    assert_eq!(draft["status"], "preliminary");
    assert_eq!(draft["warning"], "test model, not for clinical use");
    let findings = draft["findings"].as_array().unwrap();
    for s in findings {
        assert!(
            !s["evidence"].as_array().unwrap().is_empty(),
            "no evidence: {s}"
        );
    }
    let ett = findings
        .iter()
        .find(|s| {
            s["text"]
                .as_str()
                .unwrap()
                .starts_with("Endotracheal tube tip is 4.5 cm")
        })
        .unwrap();
    let kinds: Vec<&str> = ett["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"measurement") && kinds.contains(&"landmark"),
        "{kinds:?}"
    );
    assert!(findings
        .iter()
        .any(|s| s["text"] == "Endotracheal tube tip has moved by 20 mm since 2024-03-01."));
    assert!(findings
        .iter()
        .any(|s| s["text"] == "Central venous catheter has been placed since 2024-03-01."));
    // Each finding sentence, labeled alone, says what its evidence says.
    let labeler = Labeler::new();
    for s in findings {
        for e in s["evidence"].as_array().unwrap() {
            if e["kind"] != "model_output" {
                continue;
            }
            let observation = Observation::parse(e["observation"].as_str().unwrap()).unwrap();
            let expect = if e["probability"].as_f64().unwrap() >= 0.5 {
                Label::Positive
            } else {
                Label::Negative
            };
            let text = s["text"].as_str().unwrap();
            assert_eq!(labeler.label(text).get(observation), expect, "{text}");
        }
    }
    // The text is the two sections, critical results first in the Impression.
    let text = draft["text"].as_str().unwrap();
    assert!(text.starts_with("FINDINGS: ") && text.contains("\n\nIMPRESSION: "));
    let impression = draft["impression"].as_array().unwrap();
    let first_plain = impression
        .iter()
        .position(|s| s["critical"] == false)
        .unwrap_or(impression.len());
    assert!(impression[first_plain..]
        .iter()
        .all(|s| s["critical"] == false));
}

#[test]
fn a_misplaced_tube_leads_the_impression() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let film = marked_film(
        dir.path(),
        "draft-critical",
        (544.0, 396.0),
        &[("carina", 0.0, 0.0), ("ett_tip", -0.7, -15.0)],
    );
    let out = run_radassist(&[
        "draft",
        "--json",
        film.to_str().unwrap(),
        "--provider",
        "cpu",
    ]);
    let draft: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(draft["critical"], true);
    let first = &draft["impression"][0];
    assert_eq!(first["critical"], true);
    assert!(
        first["text"]
            .as_str()
            .unwrap()
            .starts_with("Endotracheal tube tip is 1.5 cm above the carina, too low"),
        "{first}"
    );
}

#[test]
fn sr_of_a_draft_and_of_a_signed_read_pass_dciodvfy_and_dsrdump_shows_the_tree() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let draft = dir.path().join("draft.dcm");
    run(with(&["export", "sr"], &["-o", draft.to_str().unwrap()]));
    let (errors, warnings) = dciodvfy(&draft);
    eprintln!(
        "dciodvfy, draft: {} errors, warnings: {warnings:#?}",
        errors.len()
    );
    assert!(errors.is_empty(), "{errors:#?}");
    let tree = dsrdump(&draft);
    for expected in [
        "Comprehensive SR Document",
        "Completion Flag     : PARTIAL",
        "Verification Flag   : UNVERIFIED",
        "Preliminary Flag    : PRELIMINARY",
        "<CONTAINER:(,,\"Diagnostic Imaging Report\")=SEPARATE>",
        "<has obs context CODE:(,,\"Observer Type\")=(121007,DCM,\"Device\")>",
        "<contains CONTAINER:(,,\"Findings\")=SEPARATE>",
        "<inferred from NUM:(,,\"Distance\")=\"45.0\" (mm,UCUM,\"millimeter\")>",
        "<contains CONTAINER:(,,\"Impression\")=SEPARATE>",
    ] {
        assert!(tree.contains(expected), "{expected} not in\n{tree}");
    }
    // The SR lands in the original study.
    let sr = dicom_object::open_file(&draft).unwrap();
    let source = dicom_object::open_file(root().join(STUDY[0])).unwrap();
    for tag in [
        dicom_dictionary_std::tags::STUDY_INSTANCE_UID,
        dicom_dictionary_std::tags::PATIENT_ID,
    ] {
        assert_eq!(
            sr.element(tag).unwrap().to_str().unwrap(),
            source.element(tag).unwrap().to_str().unwrap()
        );
    }

    let text = dir.path().join("final.txt");
    std::fs::write(&text, "FINDINGS: Endotracheal tube tip 4.5 cm above the carina. No pneumothorax.\nIMPRESSION: Tubes in satisfactory position.\n").unwrap();
    let signed = dir.path().join("final.dcm");
    run(with(
        &["export", "sr"],
        &[
            "-o",
            signed.to_str().unwrap(),
            "--final",
            text.to_str().unwrap(),
            "--radiologist",
            "Smith^Jane",
            "--organization",
            "General Hospital",
        ],
    ));
    let (errors, warnings) = dciodvfy(&signed);
    eprintln!(
        "dciodvfy, signed: {} errors, warnings: {warnings:#?}",
        errors.len()
    );
    assert!(errors.is_empty(), "{errors:#?}");
    // Without --organization (and none configured) the Verifying Organization (Type 1) is the
    // image's institution, or "not recorded": never empty.
    let unnamed = dir.path().join("final-unnamed.dcm");
    run(with(
        &["export", "sr"],
        &[
            "-o",
            unnamed.to_str().unwrap(),
            "--final",
            text.to_str().unwrap(),
            "--radiologist",
            "Smith^Jane",
        ],
    ));
    let (errors, _) = dciodvfy(&unnamed);
    assert!(errors.is_empty(), "{errors:#?}");
    let sr = dicom_object::open_file(&unnamed).unwrap();
    let observer = sr
        .element(dicom_dictionary_std::tags::VERIFYING_OBSERVER_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()[0]
        .element(dicom_dictionary_std::tags::VERIFYING_ORGANIZATION)
        .unwrap()
        .to_str()
        .unwrap()
        .trim()
        .to_string();
    assert!(!observer.is_empty());
    let tree = dsrdump(&signed);
    for expected in [
        "Completion Flag     : COMPLETE",
        "Verification Flag   : VERIFIED",
        "Verifying Observers : ",
        "Smith^Jane, General Hospital",
        "<has obs context PNAME:(,,\"Person Observer Name\")=\"Smith^Jane\">",
        "<contains TEXT:(,,\"Finding\")=\"No pneumothorax.\">",
        "<contains TEXT:(,,\"Impression\")=\"Tubes in satisfactory posi",
    ] {
        assert!(tree.contains(expected), "{expected} not in\n{tree}");
    }
}

fn validate_fhir(path: &Path) {
    let python = root().join(".radassist/test-venv/bin/python");
    if !python.exists() {
        assert!(
            std::env::var_os("RADASSIST_REQUIRE_ORT").is_none(),
            "run scripts/setup: the FHIR checker is missing"
        );
        eprintln!("no .radassist/test-venv: FHIR validation skipped");
        return;
    }
    let out = Command::new(python)
        .arg(root().join("scripts/validate_fhir.py"))
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn fhir_diagnostic_report_is_valid_r4_with_coded_observations() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let draft = dir.path().join("draft.json");
    run(with(&["export", "fhir"], &["-o", draft.to_str().unwrap()]));
    validate_fhir(&draft);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&draft).unwrap()).unwrap();
    assert_eq!(report["status"], "preliminary");
    assert_eq!(report["code"]["coding"][0]["code"], "18748-4");
    let contained = report["contained"].as_array().unwrap();
    assert_eq!(report["result"].as_array().unwrap().len(), contained.len());
    let ett = contained
        .iter()
        .find(|o| o["code"]["coding"][0]["code"] == "26412008")
        .expect("the endotracheal tube observation");
    assert_eq!(ett["valueQuantity"]["value"], 45.0);
    assert_eq!(ett["valueQuantity"]["code"], "mm");
    assert_eq!(ett["interpretation"][0]["coding"][0]["code"], "N");
    let text = base64_decode(report["presentedForm"][0]["data"].as_str().unwrap());
    assert!(text.starts_with("FINDINGS: "));
    assert!(text.ends_with(report["conclusion"].as_str().unwrap()));

    let read = dir.path().join("final.txt");
    std::fs::write(
        &read,
        "FINDINGS: No pneumothorax.\nIMPRESSION: No acute disease.\n",
    )
    .unwrap();
    let signed = dir.path().join("final.json");
    run(with(
        &["export", "fhir"],
        &[
            "-o",
            signed.to_str().unwrap(),
            "--final",
            read.to_str().unwrap(),
            "--radiologist",
            "Smith^Jane",
        ],
    ));
    validate_fhir(&signed);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&signed).unwrap()).unwrap();
    assert_eq!(report["status"], "final");
    assert_eq!(report["conclusion"], "No acute disease.");
    assert_eq!(report["resultsInterpreter"][0]["display"], "Smith^Jane");
}

fn base64_decode(text: &str) -> String {
    use base64::Engine;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn a_report_pack_writes_the_text_and_the_structured_results_stay_as_evidence() {
    if !common::onnx_runtime_available() {
        return;
    }
    let out = run(with(
        &["draft", "--json"],
        &[
            "--report-pack",
            "models/test-report",
            "--indication",
            "line placement",
        ],
    ));
    let draft: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(draft["author"], "report pack test-report 1");
    assert!(
        !draft["text"].as_str().unwrap().starts_with("FINDINGS:"),
        "the pack's text, not the renderer's"
    );
    assert!(draft["findings"].as_array().unwrap().len() > 3);
    assert!(draft["models"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["task"] == "report"));
    let dir = tempfile::tempdir().unwrap();
    let sr = dir.path().join("vlm.dcm");
    run(with(
        &["export", "sr"],
        &[
            "--report-pack",
            "models/test-report",
            "-o",
            sr.to_str().unwrap(),
        ],
    ));
    let (errors, _) = dciodvfy(&sr);
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(dsrdump(&sr).contains("Device Observer Model Name\")=\"report pack test-report 1\""));
}

/// The draft's evidence of the findings model for `observation`, in every sentence: the
/// thresholds it was stated at.
fn thresholds_of(draft: &serde_json::Value, observation: &str) -> Vec<f64> {
    ["findings", "impression"]
        .iter()
        .flat_map(|section| draft[section].as_array().unwrap())
        .flat_map(|s| s["evidence"].as_array().unwrap())
        .filter(|e| e["observation"] == observation)
        .map(|e| e["threshold"].as_f64().unwrap())
        .collect()
}

#[test]
fn a_site_s_thresholds_decide_what_the_draft_states_and_are_recorded() {
    if !common::onnx_runtime_available() {
        return;
    }
    let analysis: serde_json::Value =
        serde_json::from_slice(&run(with(&["analyze", "--json"], &[])).stdout).unwrap();
    let pneumothorax = analysis["current"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["label"] == "Pneumothorax")
        .unwrap()["probability"]
        .as_f64()
        .unwrap();
    let draft: serde_json::Value =
        serde_json::from_slice(&run(with(&["draft", "--json"], &[])).stdout).unwrap();
    assert!(
        pneumothorax >= 0.5,
        "the test pack calls it: {pneumothorax}"
    );
    assert!(thresholds_of(&draft, "Pneumothorax").contains(&0.5));
    assert!(draft["critical"].as_bool().unwrap());

    // The site's operating point above the film's probability: no longer stated present.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("site.toml");
    let site = ((pneumothorax + 1.0) / 2.0) as f32;
    std::fs::write(
        &config,
        format!("[analysis.thresholds]\nPneumothorax = {site}\n"),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let draft: serde_json::Value = serde_json::from_slice(
        &run(with(&["--config", config_arg, "draft", "--json"], &[])).stdout,
    )
    .unwrap();
    assert!(
        !draft["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["text"].as_str().unwrap().contains("pneumothorax")),
        "{draft:#}"
    );
    for threshold in thresholds_of(&draft, "Pneumothorax") {
        assert!((threshold - f64::from(site)).abs() < 1e-6, "{threshold}");
    }
    let analysis: serde_json::Value = serde_json::from_slice(
        &run(with(&["--config", config_arg, "analyze", "--json"], &[])).stdout,
    )
    .unwrap();
    let recorded = analysis["thresholds"]["present"]["Pneumothorax"]
        .as_f64()
        .unwrap();
    assert!((recorded - f64::from(site)).abs() < 1e-6);

    // A threshold for a finding the pack does not have is refused, saying so.
    std::fs::write(&config, "[analysis.thresholds]\nNodule = 0.4\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args(["--config", config_arg, "draft"])
        .args(STUDY)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "analysis.thresholds names \"Nodule\", which the findings pack does not have"
        ),
        "{stderr}"
    );
}

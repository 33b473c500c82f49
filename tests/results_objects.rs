//! The objects radassist sends back into the study (IHE AI Results), checked by independent
//! readers: dicom3tools' dciodvfy (every object), dcmtk's dsrdump and highdicom's TID 1500
//! parser (the measurement report), dcmtk's dcmp2pgm (the presentation state: its rendering,
//! and the marks and overlay as dcmtk reads them), and hostile text in what goes into them.

use crate::common;

use common::{analyze_json, dciodvfy, dsrdump, root, run_radassist};
use radassist::analysis::StudyAnalysis;
use radassist::draft::objects::{self, ResultObject, StudyResults};
use radassist::draft::Draft;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const CURRENT: &str = "sample-dicom/derived/siim_chest_pa_devices.dcm";
const PRIOR: &str = "sample-dicom/derived/siim_chest_pa_prior.dcm";

fn export(object: &str, out: &Path) {
    run_radassist(&[
        "export",
        object,
        CURRENT,
        "--prior",
        PRIOR,
        "--provider",
        "cpu",
        "-o",
        out.to_str().unwrap(),
    ]);
}

fn assert_valid(path: &Path) {
    let (errors, warnings) = dciodvfy(path);
    eprintln!("dciodvfy {}: {} warnings", path.display(), warnings.len());
    assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
}

/// The devices `analyze --json` found (not absent), with their tip (first landmark).
fn devices(analysis: &Value) -> Vec<&Value> {
    analysis["current"]["placement"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["verdict"] != "absent")
        .collect()
}

fn test_python() -> Option<PathBuf> {
    let python = root().join(".radassist/test-venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    assert!(
        std::env::var_os("RADASSIST_REQUIRE_ORT").is_none(),
        "run scripts/setup: the test Python environment (highdicom) is missing"
    );
    None
}

#[test]
fn the_measurement_report_reads_in_highdicom_as_analyze_found_it() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("measurements.dcm");
    export("measurements", &report);
    assert_valid(&report);
    let tree = dsrdump(&report);
    for expected in [
        "Comprehensive SR Document",
        "Preliminary Flag    : PRELIMINARY",
        "<CONTAINER:(,,\"Imaging Measurement Report\")=SEPARATE>",
        "<has concept mod CODE:(,,\"Procedure reported\")=(399208008,SCT,\"Plain chest X-ray\")>",
        "<contains CODE:(,,\"Finding\")=(26412008,SCT,\"Endotracheal tube\")>",
        "<contains SCOORD:(,,\"Image Region\")=(POINT,",
        "<contains NUM:(,,\"Distance\")=\"45.0\" (mm,UCUM,\"millimeter\")>",
        "<has concept mod CODE:(,,\"Finding Site\")=(28700002,SCT,\"Carina\")>",
        // The line the distance was measured along: from the tip straight to the carina's level.
        "<inferred from SCOORD:(,,\"Image Region\")=(POLYLINE,",
        "<contains CODE:(,,\"Device placement\")=(APPROPRIATE,99RADASSIST,",
        "<contains CODE:(,,\"Finding\")=(36118008,SCT,\"Pneumothorax\")>",
    ] {
        assert!(tree.contains(expected), "{expected} not in\n{tree}");
    }

    let Some(python) = test_python() else { return };
    let out = Command::new(python)
        .arg(root().join("tests/python/measurement_report.py"))
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let analysis = analyze_json(&[CURRENT, "--prior", PRIOR]);
    let source = dicom_object::open_file(root().join(CURRENT)).unwrap();
    let film_uid = source
        .element(dicom_dictionary_std::tags::SOP_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches('\0')
        .to_string();
    let groups = parsed["groups"].as_array().unwrap();
    let landmarks = analysis["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["task"] == "landmarks")
        .unwrap();
    let found = devices(&analysis);
    assert_eq!(found.len(), 4, "the sample has four devices");
    for device in found {
        let tip = &device["landmarks"][0];
        let title = match device["device"].as_str().unwrap() {
            "endotracheal_tube" => "Endotracheal tube tip",
            "enteral_tube" => "Enteric (nasogastric) tube tip",
            "central_venous_catheter" => "Central venous catheter tip",
            _ => "Chest tube tip",
        };
        // A group with a distance carries its tip after Cornerstone3D's length tag (what
        // OHIF tracks as a length); one without, the tip alone.
        let group = groups
            .iter()
            .find(|g| {
                let id = g["tracking_identifier"].as_str().unwrap();
                id == title || id == format!("Cornerstone3DTools@^0.1.0:Length:{title}")
            })
            .unwrap_or_else(|| panic!("no group {title} in {parsed:#}"));
        assert_eq!(group["kind"], "planar-roi");
        assert_eq!(group["referenced_sop_instance_uid"], film_uid.as_str());
        let point = &group["region"]["points"][0];
        assert_eq!(group["region"]["graphic_type"], "POINT");
        // SCOORD puts a pixel's centre at +0.5.
        for (axis, i) in [("x", 0), ("y", 1)] {
            let expected = tip[axis].as_f64().unwrap() + 0.5;
            let got = point[i].as_f64().unwrap();
            assert!(
                (got - expected).abs() < 0.01,
                "{title} {axis}: {got} vs {expected}"
            );
        }
        if let Some(m) = device["measurements"].as_array().unwrap().first() {
            let mm = m["value"].as_f64().unwrap();
            let distance = group["measurements"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["name"] == "Distance")
                .unwrap();
            assert_eq!(distance["unit"], "mm");
            assert!(
                (distance["value"].as_f64().unwrap() - mm).abs() < 0.051,
                "{title}: {distance} vs {mm}"
            );
        }
        let verdict = group["evaluations"][0]["value"]
            .as_str()
            .unwrap()
            .to_lowercase();
        let expected = device["verdict"].as_str().unwrap().replace('_', " ");
        assert!(
            verdict.contains(&expected),
            "{title}: {verdict} vs {expected}"
        );
        assert_eq!(group["algorithm"]["Algorithm Name"], landmarks["name"]);
        assert_eq!(
            group["algorithm"]["Algorithm Version"],
            landmarks["version"]
        );
        let digest = landmarks["digest"].as_str().unwrap();
        assert_eq!(digest.len(), 64);
        assert!(group["algorithm"]["Algorithm Parameters"]
            .as_str()
            .unwrap()
            .contains(digest));
    }
    // A group per observation of the findings pack, with its probability.
    for finding in analysis["current"]["findings"].as_array().unwrap() {
        let label = finding["label"].as_str().unwrap();
        let group = groups
            .iter()
            .find(|g| g["tracking_identifier"] == label)
            .unwrap_or_else(|| panic!("no group for {label}"));
        assert_eq!(group["kind"], "image");
        let p = group["measurements"][0]["value"].as_f64().unwrap();
        assert!(
            (p - finding["probability"].as_f64().unwrap()).abs() < 1e-4,
            "{label}"
        );
    }
    assert_eq!(parsed["observer"]["Observer Type"], "Device");
}

/// A binary PGM (P5, 8-bit): width, height, pixels.
fn read_pgm(path: &Path) -> (usize, usize, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while !bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        fields.push(String::from_utf8_lossy(&bytes[start..at]).to_string());
    }
    assert_eq!(fields[0], "P5");
    let (w, h) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    (w, h, bytes[at + 1..at + 1 + w * h].to_vec())
}

/// A graphic object's points, as dcmtk read them.
type Polyline = Vec<(f64, f64)>;

/// dcmp2pgm's dump of a presentation state: each layer's graphic objects.
fn graphics_by_layer(dump: &str) -> Vec<(String, Vec<Polyline>)> {
    let mut layers: Vec<(String, Vec<Polyline>)> = Vec::new();
    for line in dump.lines() {
        let line = line.trim_start_matches("I:").trim();
        if let Some(rest) = line.strip_prefix("Graphic Layer #") {
            let name = rest.split('[').nth(1).unwrap().trim_end_matches(']');
            layers.push((name.to_string(), vec![]));
        } else if let Some(points) = line.strip_prefix("coordinates:") {
            let points = points
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| {
                    let (x, y) = p.trim().split_once('\\').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect();
            layers.last_mut().unwrap().1.push(points);
        }
    }
    layers
}

#[test]
fn dcmtk_reads_the_presentation_state_marks_where_the_landmarks_are() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pr = dir.path().join("pr.dcm");
    export("presentation-state", &pr);
    assert_valid(&pr);
    let out = Command::new("dcmp2pgm")
        .args(["-v", "-p"])
        .arg(&pr)
        .arg(root().join(CURRENT))
        .arg("rendered.pgm")
        .current_dir(dir.path())
        .output()
        .expect("dcmp2pgm (dcmtk) is installed by scripts/setup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let layers = graphics_by_layer(&dump);
    let names: Vec<&str> = layers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "REFERENCE LEVELS",
            "LANDMARKS",
            "MEASUREMENTS",
            "DEVICES",
            "LEGEND",
            "MARKS BITMAP"
        ],
        "{dump}"
    );
    for label in [
        "4.5 cm",
        "ETT tip",
        "carina",
        "cavoatrial junction band",
        "ETT: appropriate",
    ] {
        assert!(
            dump.contains(label),
            "{label} not in the presentation state:\n{dump}"
        );
    }
    let analysis = analyze_json(&[CURRENT, "--prior", PRIOR]);
    let tips = &layers.iter().find(|(n, _)| n == "DEVICES").unwrap().1;
    let callipers = &layers.iter().find(|(n, _)| n == "MEASUREMENTS").unwrap().1;
    for device in devices(&analysis) {
        let tip = &device["landmarks"][0];
        let (x, y) = (
            tip["x"].as_f64().unwrap() + 0.5,
            tip["y"].as_f64().unwrap() + 0.5,
        );
        // A cross: four arms whose inner ends surround the tip.
        let arms = tips
            .iter()
            .filter(|arm| {
                arm.iter()
                    .all(|&(ax, ay)| (ax - x).abs() < 12.0 && (ay - y).abs() < 12.0)
            })
            .count();
        assert_eq!(arms, 4, "the cross of {device} in {tips:?}");
        if let Some(m) = device["measurements"].as_array().unwrap().first() {
            if device["device"] == "chest_tube" {
                continue;
            }
            // The calliper: a vertical line from the tip to the reference's level.
            let reference = device["landmarks"][1]["y"].as_f64().unwrap() + 0.5;
            let line = callipers.iter().find(|l| {
                l.len() == 2
                    && (l[0].0 - x).abs() < 0.01
                    && (l[1].0 - x).abs() < 0.01
                    && (l[0].1 - y).abs() < 0.01
                    && (l[1].1 - reference).abs() < 0.01
            });
            assert!(line.is_some(), "no calliper for {m} in {callipers:?}");
        }
    }
    // The picture: dcmtk's rendering (the presentation state's window) with its overlay bitmap.
    let (w, h, mut film) = read_pgm(&dir.path().join("rendered.pgm"));
    // dcmp2pgm writes each activated overlay as ovl_*.pgm.
    let overlay_file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("ovl_"))
        .expect("dcmp2pgm wrote the activated overlay");
    let (ow, oh, overlay) = read_pgm(&overlay_file);
    assert_eq!((ow, oh), (w, h));
    let marked = overlay.iter().filter(|&&v| v > 0).count();
    assert!(
        marked > 1000,
        "the overlay bitmap holds the marks ({marked} pixels)"
    );
    for (p, o) in film.iter_mut().zip(&overlay) {
        if *o > 0 {
            *p = 255;
        }
    }
    let picture = Path::new(env!("CARGO_TARGET_TMPDIR")).join("presentation-state-dcmp2pgm.png");
    image::GrayImage::from_raw(w as u32, h as u32, film)
        .unwrap()
        .save(&picture)
        .unwrap();
    eprintln!(
        "dcmp2pgm's rendering with the overlay: {}",
        picture.display()
    );
}

#[test]
fn the_summary_image_is_a_secondary_capture_of_the_overlay_with_the_warning() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sc = dir.path().join("summary.dcm");
    export("summary-image", &sc);
    assert_valid(&sc);
    let object = dicom_object::open_file(&sc).unwrap();
    let source = dicom_object::open_file(root().join(CURRENT)).unwrap();
    use dicom_dictionary_std::tags;
    let text = |o: &dicom_object::DefaultDicomObject, tag| {
        o.element(tag)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .trim()
            .to_string()
    };
    assert_eq!(
        text(&object, tags::STUDY_INSTANCE_UID),
        text(&source, tags::STUDY_INSTANCE_UID)
    );
    assert_ne!(
        text(&object, tags::SERIES_INSTANCE_UID),
        text(&source, tags::SERIES_INSTANCE_UID)
    );
    assert_eq!(text(&object, tags::BURNED_IN_ANNOTATION), "YES");
    assert_eq!(text(&object, tags::PHOTOMETRIC_INTERPRETATION), "RGB");
    // Every model is named, with its digest, in the Contributing Equipment Sequence.
    let equipment = object
        .element(tags::CONTRIBUTING_EQUIPMENT_SEQUENCE)
        .unwrap();
    let items = equipment.items().unwrap();
    assert_eq!(items.len(), 1 + 3, "radassist and its three packs");
    let names: Vec<String> = items
        .iter()
        .map(|i| {
            i.element(tags::MANUFACTURER_MODEL_NAME)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        names.iter().any(|n| n == "test-marker-landmarks"),
        "{names:?}"
    );
    // The footer below the film says what it is, in red.
    let rows: usize = text(&object, tags::ROWS).parse().unwrap();
    let columns: usize = text(&object, tags::COLUMNS).parse().unwrap();
    assert!(rows > 1024 && columns == 1024, "{rows} x {columns}");
    let pixels = object
        .element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap();
    let red = (1024..rows)
        .flat_map(|y| (0..columns).map(move |x| (y * columns + x) * 3))
        .filter(|&i| pixels[i] > 200 && pixels[i + 1] < 90 && pixels[i + 2] < 90)
        .count();
    assert!(
        red > 200,
        "the warning's red text below the film ({red} pixels)"
    );
}

/// A copy of the sample whose patient name is markup and non-ASCII, and whose institution is
/// long, UTF-8.
fn hostile_source(dir: &Path) -> PathBuf {
    let mut object = dicom_object::open_file(root().join(CURRENT)).unwrap();
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    object.put(DataElement::new(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        PrimitiveValue::from("ISO_IR 192"),
    ));
    object.put(DataElement::new(
        tags::PATIENT_NAME,
        VR::PN,
        PrimitiveValue::from("<script>alert(1)</script>^Zoë Ångström"),
    ));
    object.put(DataElement::new(
        tags::INSTITUTION_NAME,
        VR::LO,
        PrimitiveValue::from("Hôpital «Saint-Éloi» & <b>Clinique</b>"),
    ));
    let path = dir.join("hostile.dcm");
    object.write_to_file(&path).unwrap();
    path
}

#[test]
fn hostile_text_gives_valid_objects_not_a_panic() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source_path = hostile_source(dir.path());
    let mut analysis = analyze_json(&[source_path.to_str().unwrap()]);
    // A 10,000-character finding name with markup and non-ASCII text, and a device statement
    // likewise.
    let long = format!(
        "<img src=x onerror=alert(1)> épanchement «pleural» {}",
        "x".repeat(10_000)
    );
    analysis["current"]["findings"][0]["label"] = Value::String(long.clone());
    analysis["current"]["placement"]["devices"][0]["statement"] = Value::String(long.clone());
    let analysis: StudyAnalysis = serde_json::from_value(analysis).unwrap();
    let bytes = std::fs::read(&source_path).unwrap();
    let source = radassist::dicom::parse_dicom(&bytes).unwrap();
    let film = radassist::draft::dataset::source_reference(&source).unwrap();
    let draft = Draft::from_analysis(&analysis, vec![film]);
    let study = StudyResults {
        draft: &draft,
        signed: None,
        analysis: &analysis,
        source: &source,
        film: None,
        priors: &[],
    };
    for object in ResultObject::ALL {
        let started = std::time::Instant::now();
        let built = objects::build(object, &study, &radassist::dicom::DecodeLimits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", object.as_str()));
        eprintln!(
            "{}: built in {} ms (the film decoded for it where it needs pixels)",
            object.as_str(),
            started.elapsed().as_millis()
        );
        let path = dir.path().join(format!("{}.dcm", object.as_str()));
        built.write_to_file(&path).unwrap();
        assert_valid(&path);
        // The patient's name survives byte for byte (UTF-8).
        let back = dicom_object::open_file(&path).unwrap();
        let name = back
            .element(dicom_dictionary_std::tags::PATIENT_NAME)
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(
            name.trim_end_matches(['\0', ' ']),
            "<script>alert(1)</script>^Zoë Ångström"
        );
    }
}

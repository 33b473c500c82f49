//! The image test packs (findings, embedding, landmarks) against the Python reference of
//! models/make-test-packs.py: pydicom display values, OpenCV INTER_AREA resizing, numpy fitting,
//! onnxruntime and numpy peak finding, on a batch of four real radiographs.

use crate::common;

use common::*;
use radassist::dicom::{read_file, DecodeLimits};
use radassist::imaging::Radiograph;
use radassist::inference::session::{Provider, SessionSettings};
use radassist::inference::vision::ImageModel;
use radassist::inference::ModelPack;

#[derive(serde::Deserialize)]
struct Reference {
    samples: Vec<String>,
    #[serde(rename = "test-findings")]
    findings: Vec<Vec<f32>>,
    #[serde(rename = "test-embedding")]
    embedding: Vec<Vec<f32>>,
    #[serde(rename = "test-landmarks")]
    landmarks: Vec<Vec<[f64; 3]>>,
    #[serde(rename = "test-landmark-points")]
    landmark_points: Vec<Vec<[f64; 3]>>,
}

fn setup(pack: &str) -> Option<(ImageModel, Vec<Radiograph>, Reference)> {
    if !onnx_runtime_available() {
        return None;
    }
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/test_packs_reference.json")).unwrap();
    let reference: Reference = serde_json::from_str(&text).unwrap();
    let radiographs = reference
        .samples
        .iter()
        .map(|s| read_file(&sample(s), &DecodeLimits::default()).unwrap())
        .collect();
    let settings = SessionSettings {
        provider: Provider::Cpu,
        ..SessionSettings::default()
    };
    let model =
        ImageModel::new(ModelPack::load(&root().join("models").join(pack), &settings).unwrap())
            .unwrap();
    Some((model, radiographs, reference))
}

fn max_difference(a: impl IntoIterator<Item = f32>, b: &[f32]) -> f32 {
    a.into_iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn findings_probabilities_match_the_reference() {
    let Some((mut model, radiographs, reference)) = setup("test-findings") else {
        return;
    };
    assert!(model.pack().manifest.test_model);
    let batch: Vec<&Radiograph> = radiographs.iter().collect();
    let findings = model.findings(&batch).unwrap();
    for (i, (found, expected)) in findings.iter().zip(&reference.findings).enumerate() {
        assert_eq!(found.len(), 14);
        assert_eq!(found[9].label, "Pneumothorax");
        let max = max_difference(found.iter().map(|f| f.probability), expected);
        assert!(max <= 1e-5, "{}: differs by {max}", reference.samples[i]);
    }
    // One at a time gives the same as in a batch.
    let single = model.findings(&batch[2..3]).unwrap();
    assert_eq!(single[0], findings[2]);
}

#[test]
fn embeddings_match_the_reference() {
    let Some((mut model, radiographs, reference)) = setup("test-embedding") else {
        return;
    };
    let batch: Vec<&Radiograph> = radiographs.iter().collect();
    let embeddings = model.embeddings(&batch).unwrap();
    assert_eq!(embeddings.dim(), (4, 32));
    for (i, expected) in reference.embedding.iter().enumerate() {
        let max = max_difference(embeddings.row(i).iter().copied(), expected);
        assert!(max <= 1e-4, "{}: differs by {max}", reference.samples[i]);
    }
}

#[test]
fn landmarks_match_the_reference_in_image_pixels() {
    let Some((mut model, radiographs, reference)) = setup("test-landmarks") else {
        return;
    };
    let batch: Vec<&Radiograph> = radiographs.iter().collect();
    let landmarks = model.landmarks(&batch).unwrap();
    for (i, (found, expected)) in landmarks.iter().zip(&reference.landmarks).enumerate() {
        assert_eq!(found.len(), 4);
        assert_eq!(found[0].name, "ett_tip");
        for (landmark, [x, y, confidence]) in found.iter().zip(expected) {
            let what = format!("{} {}", reference.samples[i], landmark.name);
            assert!(
                (landmark.x - x).abs() < 1e-2 && (landmark.y - y).abs() < 1e-2,
                "{what}: ({}, {}) vs ({x}, {y})",
                landmark.x,
                landmark.y
            );
            assert!(
                (f64::from(landmark.confidence) - confidence).abs() < 1e-5,
                "{what}"
            );
            // Points lie on the image (crop fit: inside the kept part).
            assert!(
                landmark.x >= -0.5 && landmark.x <= radiographs[i].columns() as f64 - 0.5,
                "{what}"
            );
        }
    }
}

#[test]
fn landmark_points_map_back_to_image_pixels() {
    let Some((mut model, radiographs, reference)) = setup("test-landmark-points") else {
        return;
    };
    let batch: Vec<&Radiograph> = radiographs.iter().collect();
    let landmarks = model.landmarks(&batch).unwrap();
    for (i, (found, expected)) in landmarks.iter().zip(&reference.landmark_points).enumerate() {
        for (landmark, [x, y, confidence]) in found.iter().zip(expected) {
            let what = format!("{} {}", reference.samples[i], landmark.name);
            assert!(
                (landmark.x - x).abs() < 1e-2 && (landmark.y - y).abs() < 1e-2,
                "{what}: ({}, {}) vs ({x}, {y})",
                landmark.x,
                landmark.y
            );
            assert!(
                (f64::from(landmark.confidence) - confidence).abs() < 1e-5,
                "{what}"
            );
        }
    }
}

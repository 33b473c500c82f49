//! The vision-language test pack against transformers' own generate() on the same tiny LLaVA
//! (models/make-test-report-pack.py): prompt ids, greedy token ids one prompt at a time and
//! batched with left padding, and the KV-cache path against recomputing without the cache.

use crate::common;

use common::*;
use radassist::dicom::{read_file, DecodeLimits};
use radassist::inference::report::{PriorStudy, ReportModel, ReportRequest};
use radassist::inference::session::{Provider, SessionSettings};

#[derive(serde::Deserialize)]
struct Case {
    sample: String,
    indication: String,
    prompt_ids: Vec<i64>,
    greedy: Vec<i64>,
    beam3: Vec<i64>,
}

#[derive(serde::Deserialize)]
struct PriorCase {
    sample: String,
    prior: String,
    prior_report: String,
    indication: String,
    prompt_ids: Vec<i64>,
    greedy: Vec<i64>,
    beam3: Vec<i64>,
}

#[derive(serde::Deserialize)]
struct Reference {
    cases: Vec<Case>,
    batched_greedy: Vec<Vec<i64>>,
    with_prior: PriorCase,
}

const EOS: i64 = 2;

/// Reference ids up to (not including) EOS, and whether EOS ended them.
fn until_eos(ids: &[i64]) -> (Vec<i64>, bool) {
    match ids.iter().position(|&t| t == EOS) {
        Some(end) => (ids[..end].to_vec(), true),
        None => (ids.to_vec(), false),
    }
}

fn setup() -> Option<(ReportModel, Reference, Vec<radassist::imaging::Radiograph>)> {
    if !onnx_runtime_available() {
        return None;
    }
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/report_reference.json")).unwrap();
    let reference: Reference = serde_json::from_str(&text).unwrap();
    let images = reference
        .cases
        .iter()
        .map(|c| read_file(&sample(&c.sample), &DecodeLimits::default()).unwrap())
        .collect();
    let settings = SessionSettings {
        provider: Provider::Cpu,
        ..SessionSettings::default()
    };
    let model = ReportModel::load(&root().join("models/test-report"), &settings).unwrap();
    Some((model, reference, images))
}

#[test]
fn prompts_are_tokenised_as_the_reference() {
    let Some((model, reference, _)) = setup() else {
        return;
    };
    for case in &reference.cases {
        assert_eq!(
            model.prompt_ids(&case.indication, None).unwrap(),
            case.prompt_ids,
            "{}",
            case.indication
        );
    }
}

#[test]
fn greedy_ids_equal_transformers_with_and_without_the_cache() {
    let Some((mut model, reference, images)) = setup() else {
        return;
    };
    for (case, image) in reference.cases.iter().zip(&images) {
        let request = [ReportRequest {
            image,
            indication: &case.indication,
            prior: None,
        }];
        let (expected, stopped) = until_eos(&case.greedy);
        for use_cache in [true, false] {
            let out = model
                .generate_greedy(&request, use_cache)
                .unwrap()
                .remove(0);
            assert_eq!(
                out.token_ids, expected,
                "{} (cache {use_cache})",
                case.sample
            );
            assert_eq!(out.stopped_at_eos, stopped, "{}", case.sample);
        }
    }
}

#[test]
fn batched_greedy_with_left_padding_equals_transformers() {
    let Some((mut model, reference, images)) = setup() else {
        return;
    };
    let requests: Vec<_> = reference
        .cases
        .iter()
        .zip(&images)
        .map(|(c, image)| ReportRequest {
            image,
            indication: &c.indication,
            prior: None,
        })
        .collect();
    let out = model.generate_greedy(&requests, true).unwrap();
    for (row, expected) in out.iter().zip(&reference.batched_greedy) {
        assert_eq!(row.token_ids, until_eos(expected).0);
    }
}

#[test]
fn beam_search_ids_equal_transformers() {
    let Some((mut model, reference, images)) = setup() else {
        return;
    };
    for (case, image) in reference.cases.iter().zip(&images) {
        let out = model
            .generate_beam(
                &[ReportRequest {
                    image,
                    indication: &case.indication,
                    prior: None,
                }],
                3,
            )
            .unwrap()
            .remove(0);
        let (expected, stopped) = until_eos(&case.beam3);
        assert_eq!(out.token_ids, expected, "{}", case.sample);
        assert_eq!(out.stopped_at_eos, stopped, "{}", case.sample);
    }
    // Several prompts at once give each its own result.
    let requests: Vec<_> = reference
        .cases
        .iter()
        .zip(&images)
        .map(|(c, image)| ReportRequest {
            image,
            indication: &c.indication,
            prior: None,
        })
        .collect();
    let batched = model.generate_beam(&requests, 3).unwrap();
    for (out, case) in batched.iter().zip(&reference.cases) {
        assert_eq!(
            out.token_ids,
            until_eos(&case.beam3).0,
            "{} in a batch",
            case.sample
        );
    }
}

#[test]
fn a_prior_image_and_report_fill_their_slots() {
    let Some((mut model, reference, images)) = setup() else {
        return;
    };
    let case = &reference.with_prior;
    assert_eq!(
        model
            .prompt_ids(&case.indication, Some(&case.prior_report))
            .unwrap(),
        case.prompt_ids
    );
    let current = read_file(&sample(&case.sample), &DecodeLimits::default()).unwrap();
    let prior = read_file(&sample(&case.prior), &DecodeLimits::default()).unwrap();
    let request = ReportRequest {
        image: &current,
        indication: &case.indication,
        prior: Some(PriorStudy {
            image: &prior,
            report: &case.prior_report,
        }),
    };
    let greedy = model
        .generate_greedy(std::slice::from_ref(&request), true)
        .unwrap()
        .remove(0);
    assert_eq!(greedy.token_ids, until_eos(&case.greedy).0);
    assert!(greedy.stopped_at_eos);
    let beam = model
        .generate_beam(std::slice::from_ref(&request), 3)
        .unwrap()
        .remove(0);
    assert_eq!(beam.token_ids, until_eos(&case.beam3).0);
    // In a batch beside a request without a prior, each keeps its own images.
    let other = ReportRequest {
        image: &images[0],
        indication: &reference.cases[0].indication,
        prior: None,
    };
    let both = model.generate_greedy(&[other, request], true).unwrap();
    assert_eq!(both[0].token_ids, until_eos(&reference.cases[0].greedy).0);
    assert_eq!(both[1].token_ids, until_eos(&case.greedy).0);
}

#[derive(serde::Deserialize)]
struct GemmaCase {
    sample: String,
    indication: String,
    prompt_ids: Vec<i64>,
    prompt_logits: Vec<f32>,
    greedy: Vec<i64>,
    beam3: Vec<i64>,
}

#[derive(serde::Deserialize)]
struct GemmaReference {
    cases: Vec<GemmaCase>,
}

/// The Gemma 3 (MedGemma architecture) test pack, exported by models/export/gemma3_onnx.py:
/// bidirectional attention within the image, sliding and full attention layers.
#[test]
fn gemma3_greedy_and_beam_ids_equal_transformers() {
    if !onnx_runtime_available() {
        return;
    }
    let text = std::fs::read_to_string(root().join("tests/fixtures/report_gemma3_reference.json"))
        .unwrap();
    let reference: GemmaReference = serde_json::from_str(&text).unwrap();
    let settings = SessionSettings {
        provider: Provider::Cpu,
        ..SessionSettings::default()
    };
    let mut model =
        ReportModel::load(&root().join("models/test-report-gemma3"), &settings).unwrap();
    for case in &reference.cases {
        assert_eq!(
            model.prompt_ids(&case.indication, None).unwrap(),
            case.prompt_ids
        );
        let image = read_file(&sample(&case.sample), &DecodeLimits::default()).unwrap();
        let request = [ReportRequest {
            image: &image,
            indication: &case.indication,
            prior: None,
        }];
        // Logits after the prompt: bidirectional attention within the image changes them by
        // about 1e-2, so this catches a decoder that ignores token_type_ids.
        let logits = model.prompt_logits(&request).unwrap();
        let max = logits
            .row(0)
            .iter()
            .zip(&case.prompt_logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max < 1e-4, "{}: prompt logits differ by {max}", case.sample);
        for use_cache in [true, false] {
            let greedy = model
                .generate_greedy(&request, use_cache)
                .unwrap()
                .remove(0);
            assert_eq!(
                greedy.token_ids,
                until_eos(&case.greedy).0,
                "{} greedy (cache {use_cache})",
                case.sample
            );
        }
        let beam = model.generate_beam(&request, 3).unwrap().remove(0);
        assert_eq!(
            beam.token_ids,
            until_eos(&case.beam3).0,
            "{} beam",
            case.sample
        );
    }
}

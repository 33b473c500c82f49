//! Model packs: `radassist models check` on the shipped packs, refusal of a manifest that
//! disagrees with its graph (naming the field), provider choice, and MiniLM parity with the
//! Python reference (onnxruntime + tokenizers + numpy) to 1e-4.

use crate::common;

use common::*;
use radassist::inference::session::{Provider, SessionSettings};
use radassist::inference::text::TextEmbedder;
use radassist::inference::ModelPack;
use std::path::Path;
use std::process::Command;

fn radassist(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

fn cpu() -> SessionSettings {
    SessionSettings {
        provider: Provider::Cpu,
        ..SessionSettings::default()
    }
}

#[test]
fn models_check_passes_on_the_shipped_packs() {
    if !onnx_runtime_available() {
        return;
    }
    let (code, stdout, stderr) = radassist(&["models", "check", "--provider", "cpu"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("ok      minilm") && stdout.contains("provider Cpu"),
        "{stdout}"
    );
    let (code, stdout, _) = radassist(&["models", "list"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("minilm") && stdout.contains("text-embedding"),
        "{stdout}"
    );
}

/// A copy of the MiniLM pack whose manifest has `from` replaced by `to`.
fn pack_with_manifest_edit(dir: &Path, from: &str, to: &str) -> std::path::PathBuf {
    let pack = dir.join("pack");
    std::fs::create_dir_all(&pack).unwrap();
    for file in ["model.onnx", "tokenizer.json"] {
        std::fs::hard_link(root().join("models/minilm").join(file), pack.join(file))
            .or_else(|_| {
                std::fs::copy(root().join("models/minilm").join(file), pack.join(file)).map(|_| ())
            })
            .unwrap();
    }
    let manifest = std::fs::read_to_string(root().join("models/minilm/model.toml")).unwrap();
    assert!(manifest.contains(from), "{from} not in the manifest");
    std::fs::write(pack.join("model.toml"), manifest.replacen(from, to, 1)).unwrap();
    pack
}

#[test]
fn a_manifest_that_disagrees_with_its_graph_is_refused_naming_the_field() {
    if !onnx_runtime_available() {
        return;
    }
    let cases = [
        (
            r#"name = "input_ids""#,
            r#"name = "token_ids""#,
            "graph.inputs[0].name",
        ),
        (
            r#"dtype = "int64", shape = ["batch", "sequence"] },"#,
            r#"dtype = "int32", shape = ["batch", "sequence"] },"#,
            "graph.inputs[0].dtype",
        ),
        (
            r#"shape = ["batch", "sequence", 384]"#,
            r#"shape = ["batch", "sequence", 512]"#,
            "graph.outputs[0].shape[2]",
        ),
        (
            r#"shape = ["batch", "sequence", 384]"#,
            r#"shape = ["batch", 384]"#,
            "graph.outputs[0].shape",
        ),
        (
            r#"  { name = "token_type_ids", dtype = "int64", shape = ["batch", "sequence"] },"#,
            "",
            "graph.inputs",
        ),
        (
            r#"file = "model.onnx""#,
            r#"file = "missing.onnx""#,
            "graph.file",
        ),
        (
            r#"task = "text-embedding""#,
            r#"task = "detection""#,
            "unknown variant",
        ),
    ];
    for (from, to, field) in cases {
        let dir = tempfile::tempdir().unwrap();
        let pack = pack_with_manifest_edit(dir.path(), from, to);
        let err = ModelPack::load(&pack, &cpu())
            .err()
            .unwrap_or_else(|| panic!("{field}: loaded"))
            .to_string();
        assert!(err.contains(field), "expected {field} in: {err}");
        // The command line says the same and exits 1.
        let (code, stdout, _) = radassist(&[
            "models",
            "check",
            "--provider",
            "cpu",
            "--models",
            dir.path().to_str().unwrap(),
        ]);
        assert_eq!(code, 1, "{stdout}");
        assert!(
            stdout.contains("FAILED") && stdout.contains(field),
            "{stdout}"
        );
    }
}

/// The pack in `from` with each (from, to) edit of its manifest in turn must fail to load with
/// an error containing the expected text.
fn each_edit_is_refused(from: &Path, cases: &[(&str, &str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("pack");
    std::fs::create_dir_all(&pack).unwrap();
    std::fs::copy(from.join("model.onnx"), pack.join("model.onnx")).unwrap();
    let manifest = std::fs::read_to_string(from.join("model.toml")).unwrap();
    for &(edit, to, expected) in cases {
        assert!(manifest.contains(edit), "{edit}");
        std::fs::write(pack.join("model.toml"), manifest.replacen(edit, to, 1)).unwrap();
        let err = ModelPack::load(&pack, &cpu())
            .err()
            .unwrap_or_else(|| panic!("{expected}: loaded"))
            .to_string();
        assert!(err.contains(expected), "expected {expected} in: {err}");
    }
}

#[test]
fn image_pack_manifests_are_checked_too() {
    if !onnx_runtime_available() {
        return;
    }
    let from = root().join("models/test-findings");
    let cases = [
        (
            r#""Support Devices"]"#,
            "]",
            "findings.names lists 13 names",
        ),
        (
            r#"input = "pixel_values""#,
            r#"input = "image""#,
            "image.input",
        ),
        (r#"std = [0.25]"#, r#"std = [0.0]"#, "image.std"),
        (
            r#"output = "probabilities""#,
            r#"output = "logits""#,
            "findings.output",
        ),
        (
            r#"fit = "letterbox""#,
            r#"fit = "squash""#,
            "unknown variant",
        ),
    ];
    each_edit_is_refused(&from, &cases);
}

#[test]
fn cuda_without_cuda_fails_loudly_and_auto_falls_back() {
    if !onnx_runtime_available() {
        return;
    }
    let settings = SessionSettings {
        provider: Provider::Cuda,
        ..SessionSettings::default()
    };
    match ModelPack::load(&root().join("models/minilm"), &settings) {
        // A machine with a GPU, the CUDA build and the cuda feature: nothing to refuse.
        Ok(pack) => assert_eq!(
            pack.provider,
            radassist::inference::session::ProviderUsed::Cuda
        ),
        Err(err) => assert!(err.to_string().contains("CUDA cannot be used"), "{err}"),
    }
    let auto = SessionSettings {
        provider: Provider::Auto,
        ..SessionSettings::default()
    };
    assert!(ModelPack::load(&root().join("models/minilm"), &auto).is_ok());
}

#[derive(serde::Deserialize)]
struct MiniLmReference {
    sentences: Vec<String>,
    embeddings: Vec<Vec<f32>>,
}

#[test]
fn minilm_embeddings_match_the_python_reference() {
    if !onnx_runtime_available() {
        return;
    }
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/minilm_reference.json")).unwrap();
    let reference: MiniLmReference = serde_json::from_str(&text).unwrap();
    let pack = ModelPack::load(&root().join("models/minilm"), &cpu()).unwrap();
    let mut embedder = TextEmbedder::new(pack).unwrap();
    let sentences: Vec<&str> = reference.sentences.iter().map(String::as_str).collect();
    // All at once (padded to the longest, as the reference did) and one by one (no padding).
    let batched = embedder.embed(&sentences).unwrap();
    for (i, expected) in reference.embeddings.iter().enumerate() {
        let single = embedder.embed(&sentences[i..=i]).unwrap();
        for (label, row) in [("batched", batched.row(i)), ("single", single.row(0))] {
            assert_eq!(row.len(), 384);
            let max = row
                .iter()
                .zip(expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                max <= 1e-4,
                "{label} sentence {i} ({:?}) differs by {max}",
                &sentences[i][..sentences[i].len().min(40)]
            );
            let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5);
        }
    }
    // Similar findings sit closer than unrelated ones.
    let e = embedder
        .embed(&[
            "No pneumothorax.",
            "There is no pneumothorax.",
            "Nasogastric tube tip is in the stomach.",
        ])
        .unwrap();
    assert!(e.row(0).dot(&e.row(1)) > e.row(0).dot(&e.row(2)) + 0.2);
}

#[test]
fn segmentation_manifests_are_checked_naming_the_field() {
    if !onnx_runtime_available() {
        return;
    }
    let from = root().join("models/test-marker-segmentation");
    let cases = [
        (
            r#""heart atrium right", "endotracheal tube"]"#,
            r#""heart atrium right", "endotracheal tube", "stomach"]"#,
            "segmentation.channels lists 5 names, but output \"masks\" has 4",
        ),
        (
            r#""heart atrium right", "endotracheal tube"]"#,
            r#""heart atrium right", "heart atrium right"]"#,
            "segmentation.channels names \"heart atrium right\" twice",
        ),
        (
            r#"right_atrium = "heart atrium right""#,
            r#"right_atrium = "right atrium""#,
            "names channel \"right atrium\", which is not in segmentation.channels",
        ),
        (
            r#"right_atrium = "heart atrium right""#,
            r#"superior_vena_cava = "heart atrium right""#,
            "unknown variant `superior_vena_cava`",
        ),
        (
            "threshold = 0.5",
            "threshold = 1.5",
            "segmentation.threshold 1.5",
        ),
        (
            r#"activation = "none""#,
            r#"activation = "softmax""#,
            "segmentation.activation \"softmax\"",
        ),
    ];
    each_edit_is_refused(&from, &cases);
}

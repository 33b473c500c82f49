//! The command line as a user runs it: `radassist inspect`, `decode`, `render`, `runtime`.

use crate::common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};

fn radassist(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args(args)
        .output()
        .expect("runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn inspect_prints_the_canonical_header_as_json() {
    let out = radassist(&[
        "inspect",
        path(&sample("siim_chest_pa_jpeg_baseline.dcm")),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let header: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        header["pixels"]["transfer_syntax_uid"],
        "1.2.840.10008.1.2.4.50"
    );
    assert_eq!(
        header["pixels"]["photometric_interpretation"],
        "MONOCHROME2"
    );
    assert_eq!(header["pixels"]["rows"], 1024);
    assert_eq!(header["geometry"]["patient_spacing"]["row_mm"], 0.168);
    assert_eq!(header["geometry"]["spacing_source"], "pixel_spacing");
    assert_eq!(header["acquisition"]["view"], "PA");
    assert_eq!(header["acquisition"]["patient_age"]["years"], 62.0);
    let plain = radassist(&["inspect", path(&sample("CR-MONO1-10-chest.dcm"))]);
    assert!(
        text(&plain.stdout).contains("uncalibrated"),
        "{}",
        text(&plain.stdout)
    );
}

#[test]
fn decode_writes_the_modality_values_as_npy() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("chest.npy");
    let out = radassist(&[
        "decode",
        path(&sample("derived/CR-MONO1-10-chest_JLSL.dcm")),
        "-o",
        path(&target),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (values, shape) = read_npy(&std::fs::read(&target).unwrap());
    assert_eq!(shape, vec![440, 440]);
    let (expected, _) = read_npy_gz(&reference_dir().join("CR-MONO1-10-chest.values.npy.gz"));
    assert_eq!(values, expected);
}

#[test]
fn decode_of_a_folder_goes_on_past_bad_files_and_lists_them() {
    let input = tempfile::tempdir().unwrap();
    let nested = input.path().join("series");
    std::fs::create_dir(&nested).unwrap();
    for file in [
        "derived/CR-MONO1-10-chest_RLE.dcm",
        "siim_chest_pa_jpeg_baseline.dcm",
    ] {
        let name = Path::new(file).file_name().unwrap();
        std::fs::copy(sample(file), nested.join(name)).unwrap();
    }
    std::fs::write(input.path().join("broken.dcm"), b"not a dicom file at all").unwrap();
    std::fs::copy(
        sample("derived/basic_text_sr.dcm"),
        input.path().join("report.dcm"),
    )
    .unwrap();
    // Files named by UID keep their whole name.
    std::fs::copy(
        sample("CR-MONO1-10-chest.dcm"),
        input.path().join("1.2.392.7"),
    )
    .unwrap();
    std::fs::copy(
        sample("CR-MONO1-10-chest.dcm"),
        input.path().join("1.2.392.8"),
    )
    .unwrap();
    let output = tempfile::tempdir().unwrap();
    let out = radassist(&[
        "decode",
        path(input.path()),
        "-o",
        path(output.path()),
        "--jobs",
        "2",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("decoded 4 of 6 files"), "{stderr}");
    assert!(
        output.path().join("1.2.392.7.npy").is_file()
            && output.path().join("1.2.392.8.npy").is_file()
    );
    assert!(
        stderr.contains("broken.dcm: not a DICOM instance"),
        "{stderr}"
    );
    assert!(
        stderr.contains("report.dcm: this instance holds no image"),
        "{stderr}"
    );
    assert!(output
        .path()
        .join("series/CR-MONO1-10-chest_RLE.npy")
        .is_file());
    assert!(output
        .path()
        .join("series/siim_chest_pa_jpeg_baseline.npy")
        .is_file());
    assert!(!stderr.contains("panicked"));
}

#[test]
fn render_writes_the_display_png_at_the_asked_size_and_depth() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.png");
    let file = sample("orthanc_Issue44_Monochrome1-Jpeg.dcm");
    let out = radassist(&["render", path(&file), "-o", path(&full)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (pixels, width, height) = read_png8(&full);
    assert_eq!((width, height), (2010, 2446));
    let (expected, _, _) =
        read_png8(&reference_dir().join("orthanc_Issue44_Monochrome1-Jpeg.display.png"));
    assert!(compare(&pixels, &expected).0 <= 1.0);

    let small = dir.path().join("small.png");
    let out = radassist(&["render", path(&file), "-o", path(&small), "--size", "512"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (_, width, height) = read_png8(&small);
    assert_eq!((width, height), (421, 512));

    let deep = dir.path().join("deep.png");
    let out = radassist(&[
        "render",
        path(&file),
        "-o",
        path(&deep),
        "--bits",
        "16",
        "--size",
        "300",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let info = png::Decoder::new(std::fs::File::open(&deep).unwrap())
        .read_info()
        .unwrap()
        .info()
        .clone();
    assert_eq!(
        (info.bit_depth, info.width, info.height),
        (png::BitDepth::Sixteen, 247, 300)
    );
}

#[test]
fn render_refuses_a_window_the_header_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("x.png");
    let out = radassist(&[
        "render",
        path(&sample("CR-MONO1-10-chest.dcm")),
        "-o",
        path(&target),
        "--window-index",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("window 3 was asked for, but the header has 1"),
        "{}",
        text(&out.stderr)
    );
    let out = radassist(&[
        "render",
        path(&sample("CR-MONO1-10-chest.dcm")),
        "-o",
        path(&target),
        "--window",
        "500,-3",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("width must be at least 1"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_missing_onnx_runtime_is_explained_not_a_panic() {
    let run = |library: &str| {
        Command::new(env!("CARGO_BIN_EXE_radassist"))
            .arg("runtime")
            .env("ORT_DYLIB_PATH", library)
            .output()
            .unwrap()
    };
    let missing = run("/nonexistent/libonnxruntime.so");
    let stderr = text(&missing.stderr);
    assert_eq!(missing.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("was not found") && stderr.contains("scripts/setup"),
        "{stderr}"
    );
    let not_a_library = run(path(&sample("CR-MONO1-10-chest.dcm")));
    let stderr = text(&not_a_library.stderr);
    assert_eq!(not_a_library.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("could not be loaded"), "{stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn onnx_runtime_loads_from_the_project_copy() {
    let library = root().join(".radassist/onnxruntime/libonnxruntime.so");
    if !library.exists() && std::env::var_os("RADASSIST_REQUIRE_ORT").is_none() {
        eprintln!("ONNX Runtime is not set up here (run scripts/setup); scripts/test requires it");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_radassist"))
        .arg("runtime")
        .env_remove("ORT_DYLIB_PATH")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("ORT Build Info"),
        "{}",
        text(&out.stdout)
    );
}

//! Shared helpers for the integration tests: the reference fixtures written by
//! scripts/make-fixtures.py (pydicom / dcmtk values), and readers for `.npy.gz` and PNG.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn sample(relative: &str) -> PathBuf {
    root().join("sample-dicom").join(relative)
}

#[derive(Debug, serde::Deserialize)]
pub struct Reference {
    pub file: String,
    pub decodes: bool,
    #[serde(default)]
    pub rows: usize,
    #[serde(default)]
    pub columns: usize,
    #[serde(default)]
    pub values_array: bool,
    #[serde(default)]
    pub values_sha256: String,
    #[serde(default)]
    pub transfer_syntax: String,
    #[serde(default)]
    pub lossy: bool,
}

pub fn reference_dir() -> PathBuf {
    root().join("tests/fixtures/reference")
}

pub fn manifest() -> BTreeMap<String, Reference> {
    let text = std::fs::read_to_string(reference_dir().join("manifest.json")).expect("manifest");
    serde_json::from_str(&text).expect("manifest parses")
}

/// Reads a gzip-compressed `.npy` of dtype u1, <u2, <i2, <i4 or <f4 as f32, with its shape.
pub fn read_npy_gz(path: &Path) -> (Vec<f32>, Vec<usize>) {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("fixture exists"))
        .read_to_end(&mut bytes)
        .expect("gzip");
    read_npy(&bytes)
}

pub fn read_npy(bytes: &[u8]) -> (Vec<f32>, Vec<usize>) {
    assert_eq!(&bytes[..6], b"\x93NUMPY", "npy magic");
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).expect("ascii header");
    assert!(
        header.contains("'fortran_order': False"),
        "C order expected: {header}"
    );
    let descr = header
        .split("'descr': '")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("descr");
    let shape: Vec<usize> = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("shape")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let data = &bytes[start + header_len..];
    let values = match descr {
        "|u1" => data.iter().map(|&b| b as f32).collect(),
        "<u2" => data
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as f32)
            .collect(),
        "<i2" => data
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32)
            .collect(),
        "<i4" => data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        "<f4" => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        other => panic!("unexpected npy dtype {other}"),
    };
    (values, shape)
}

/// Reads an 8-bit greyscale PNG: (pixels, width, height).
pub fn read_png8(path: &Path) -> (Vec<u8>, u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(path).expect("png exists"),
    ));
    let mut reader = decoder.read_info().expect("png header");
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).expect("png data");
    assert_eq!(
        info.color_type,
        png::ColorType::Grayscale,
        "{}",
        path.display()
    );
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "{}", path.display());
    buffer.truncate(info.buffer_size());
    (buffer, info.width, info.height)
}

pub fn sha256_f32(values: impl Iterator<Item = f32>) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for v in values {
        hasher.update(v.to_le_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Largest absolute difference and how many elements differ.
pub fn compare<T: Copy + Into<f64>>(a: &[T], b: &[T]) -> (f64, usize) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).fold((0.0, 0), |(max, count), (&x, &y)| {
        let d = (x.into() - y.into()).abs();
        (max.max(d), count + usize::from(d > 0.0))
    })
}

/// Whether ONNX Runtime is set up here. scripts/test sets RADASSIST_REQUIRE_ORT, so there a
/// missing library fails the test instead of skipping it.
pub fn onnx_runtime_available() -> bool {
    let present = root()
        .join(".radassist/onnxruntime/libonnxruntime.so")
        .exists()
        || std::env::var_os("ORT_DYLIB_PATH").is_some();
    if !present {
        assert!(
            std::env::var_os("RADASSIST_REQUIRE_ORT").is_none(),
            "ONNX Runtime is required here: run scripts/setup"
        );
        eprintln!("ONNX Runtime is not set up (run scripts/setup): skipping");
    }
    present
}

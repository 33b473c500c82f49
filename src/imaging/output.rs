//! Writing images out: display values to 8- or 16-bit greyscale PNG, and modality values to
//! NumPy `.npy` (format 1.0, little-endian float32, C order), the format the reference tools and
//! the Python side of the project read directly.

use ndarray::ArrayView2;
use std::io::{self, Write};
use std::path::Path;

/// PNG sample depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PngDepth {
    Eight,
    Sixteen,
}

/// Quantises display values in [0, 1] to `depth`, rounding half up to the nearest level
/// (adding 0.5 and truncating, which vectorises where `f32::round` is a library call).
pub fn quantise(display: ArrayView2<f32>, depth: PngDepth) -> Vec<u8> {
    let standard = display.as_standard_layout();
    let values = standard.as_slice().expect("standard layout is contiguous");
    match depth {
        PngDepth::Eight => values
            .iter()
            .map(|&y| (y.clamp(0.0, 1.0) * 255.0 + 0.5) as u8)
            .collect(),
        PngDepth::Sixteen => {
            let mut out = vec![0u8; values.len() * 2];
            for (pair, &y) in out.chunks_exact_mut(2).zip(values) {
                pair.copy_from_slice(&((y.clamp(0.0, 1.0) * 65535.0 + 0.5) as u16).to_be_bytes());
            }
            out
        }
    }
}

/// Writes display values in [0, 1] as a greyscale PNG.
pub fn write_png(path: &Path, display: ArrayView2<f32>, depth: PngDepth) -> io::Result<()> {
    let (rows, columns) = display.dim();
    let file = io::BufWriter::new(std::fs::File::create(path)?);
    let mut encoder = png::Encoder::new(file, columns as u32, rows as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(match depth {
        PngDepth::Eight => png::BitDepth::Eight,
        PngDepth::Sixteen => png::BitDepth::Sixteen,
    });
    let mut writer = encoder.write_header().map_err(io::Error::other)?;
    writer
        .write_image_data(&quantise(display, depth))
        .map_err(io::Error::other)?;
    writer.finish().map_err(io::Error::other)
}

/// Writes a 2-D float32 array as `.npy`.
pub fn write_npy(path: &Path, values: ArrayView2<f32>) -> io::Result<()> {
    let mut out = io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(&npy_header(values.dim()))?;
    let mut buffer = Vec::with_capacity(values.len() * 4);
    for v in values.iter() {
        buffer.extend_from_slice(&v.to_le_bytes());
    }
    out.write_all(&buffer)?;
    out.flush()
}

/// The `.npy` 1.0 preamble: magic, version, header length, and a dict padded with spaces so
/// that the data starts on a 64-byte boundary.
fn npy_header((rows, columns): (usize, usize)) -> Vec<u8> {
    let mut dict =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {columns}), }}");
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut header = b"\x93NUMPY\x01\x00".to_vec();
    header.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    header.extend_from_slice(dict.as_bytes());
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_parseable() {
        let header = npy_header((440, 512));
        assert_eq!(header.len() % 64, 0);
        let text = String::from_utf8_lossy(&header[10..]);
        assert!(text.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (440, 512), }"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn quantising_rounds_to_nearest_level() {
        let display = ndarray::array![[0.0f32, 0.5, 1.0, 1.2]];
        assert_eq!(
            quantise(display.view(), PngDepth::Eight),
            vec![0, 128, 255, 255]
        );
        assert_eq!(
            quantise(display.view(), PngDepth::Sixteen)[2..4],
            [0x80, 0x00]
        );
    }
}

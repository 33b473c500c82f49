//! DICOM decoding: from the bytes a PACS sends to the canonical [`Radiograph`].
//!
//! This is the first stage of the flow. [`read_file`] and [`read_bytes`] parse a DICOM instance
//! (Part 10 with or without the 128-byte preamble, or a bare data set), read the header into an
//! [`ImageHeader`] (identity, acquisition, geometry, pixel encoding and display attributes), decode
//! the one frame of pixel data through the codec its transfer syntax needs, keep only the bits
//! that Bits Stored says are meaningful, apply the Modality LUT, and hand back a [`Radiograph`].
//! Anything that cannot be decoded exactly is refused with a [`DecodeError`] that says what was
//! wrong and what to do; no input may cause a panic, a hang, a giant allocation or a wrong image.

mod attributes;
pub(crate) use attributes::Attributes;
mod codestream;
mod error;
mod file;
pub mod frames;
mod header;
pub mod identifier;
mod jpeg;
mod pixels;
mod rle;
mod structure;
pub mod uid;

pub use error::DecodeError;
pub(crate) use file::read_limited;
pub use file::{parse_dicom, read_data_set, DicomInstance};
pub use header::{
    Acquisition, Age, Geometry, Identity, ImageHeader, PixelEncoding, ProjectionView, Spacing,
    SpacingSource,
};
pub use pixels::decode_frame_bytes;

use crate::imaging::lut::ModalityLut;
use crate::imaging::Radiograph;
use std::path::Path;

/// Bounds that keep hostile or absurd input from exhausting memory.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest file read, in bytes.
    pub max_file_bytes: u64,
    /// Largest frame accepted, in pixels (Rows x Columns).
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        // The largest real CR/DX frames (43 x 43 cm at 0.1 mm, or stitched long-length images)
        // are about 25 megapixels; 64 leaves room without letting a header ask for gigabytes.
        DecodeLimits {
            max_file_bytes: 1 << 30,
            max_pixels: 64 * 1024 * 1024,
        }
    }
}

/// Reads a DICOM file and decodes it to the canonical radiograph.
pub fn read_file(path: &Path, limits: &DecodeLimits) -> Result<Radiograph, DecodeError> {
    let bytes = file::read_limited(path, limits.max_file_bytes)?;
    read_bytes(&bytes, limits)
}

/// Decodes a DICOM instance held in memory to the canonical radiograph.
pub fn read_bytes(bytes: &[u8], limits: &DecodeLimits) -> Result<Radiograph, DecodeError> {
    let instance = parse_dicom(bytes)?;
    decode_instance(&instance, limits)
}

/// Reads only the header of a DICOM file (no pixel decoding): what `radassist inspect` shows.
pub fn read_header(path: &Path, limits: &DecodeLimits) -> Result<ImageHeader, DecodeError> {
    let bytes = file::read_limited(path, limits.max_file_bytes)?;
    read_header_bytes(&bytes)
}

/// The header of a DICOM instance held in memory (no pixel decoding).
pub fn read_header_bytes(bytes: &[u8]) -> Result<ImageHeader, DecodeError> {
    let instance = parse_dicom(bytes)?;
    ImageHeader::from_instance(&instance)
}

/// Decodes an already parsed instance.
pub fn decode_instance(
    instance: &DicomInstance,
    limits: &DecodeLimits,
) -> Result<Radiograph, DecodeError> {
    let header = ImageHeader::from_instance(instance)?;
    let raw = pixels::decode_frame_bytes(instance, &header, limits)?;
    let encoding = &header.pixels;
    let values = match &header.modality_lut {
        lut if lut.is_identity() => pixels::map_stored_values(&raw, encoding, |v| v as f32),
        ModalityLut::Rescale { slope, intercept } => {
            pixels::map_stored_values(&raw, encoding, |v| (v as f64 * slope + intercept) as f32)
        }
        ModalityLut::Table(table) => {
            pixels::map_stored_values(&raw, encoding, |v| table.lookup(v as f64) as f32)
        }
    };
    let padding = header.padding.map(|range| {
        pixels::map_stored_values(&raw, encoding, |v| (range.low..=range.high).contains(&v))
    });
    Ok(Radiograph::new(header, values, padding))
}

//! Pixel data to stored values: the one frame of a radiograph as integers.
//!
//! Native (uncompressed) pixel data is read in place; encapsulated pixel data goes to its codec:
//! the JPEG family (baseline, extended 12-bit, lossless) to libjpeg-turbo (see [`super::jpeg`]),
//! RLE to radassist's own strict decoder ([`super::rle`]), JPEG-LS and JPEG 2000 to dicom-rs's
//! registered decoders (CharLS and OpenJPEG). Either way the result is then
//! reduced to the bits that Bits Stored and High Bit call meaningful, sign-extended when Pixel
//! Representation says two's complement. Sizes are checked before anything is allocated, a
//! codec's panic is caught and reported, and a codestream without its end marker is refused
//! (progressive codecs would otherwise return a blurred image of a truncated file).

use super::header::{ImageHeader, PixelEncoding};
use super::{codestream, jpeg, rle, DecodeError, DecodeLimits, DicomInstance};
use dicom_core::value::Value;
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::transfer_syntax::Codec;
use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Transfer syntaxes of the JPEG family that libjpeg-turbo decodes.
const JPEG_SYNTAXES: [&str; 4] = [
    uids::JPEG_BASELINE8_BIT,
    uids::JPEG_EXTENDED12_BIT,
    uids::JPEG_LOSSLESS,
    uids::JPEG_LOSSLESS_SV1,
];

/// Codestreams whose end marker (EOI for JPEG-LS, EOC for JPEG 2000) is checked.
const MARKER_TERMINATED_SYNTAXES: [&str; 6] = [
    uids::JPEGLS_LOSSLESS,
    uids::JPEGLS_NEAR_LOSSLESS,
    uids::JPEG2000_LOSSLESS,
    uids::JPEG2000,
    uids::HTJ2K_LOSSLESS,
    uids::HTJ2K,
];

/// The codec step alone: the frame's samples as little-endian bytes of Bits Allocated, exactly
/// one frame long (native data is borrowed, not copied). The benchmark times this against the
/// whole decode to measure what radassist adds around the codec.
pub fn decode_frame_bytes<'a>(
    instance: &'a DicomInstance,
    header: &ImageHeader,
    limits: &DecodeLimits,
) -> Result<std::borrow::Cow<'a, [u8]>, DecodeError> {
    let encoding = &header.pixels;
    if encoding.number_of_frames > 1 {
        return Err(DecodeError::MultiFrame {
            frames: encoding.number_of_frames,
        });
    }
    let pixels = encoding.rows as u64 * encoding.columns as u64;
    if pixels > limits.max_pixels {
        return Err(DecodeError::ImageTooLarge {
            rows: encoding.rows,
            columns: encoding.columns,
            limit: limits.max_pixels,
        });
    }
    let frame_bytes = pixels * (encoding.bits_allocated as u64 / 8);
    let element = instance
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .ok_or_else(|| DecodeError::NotAnImage {
            sop_class: "unknown".into(),
        })?;
    let raw = match element.value() {
        Value::Primitive(value) => {
            let bytes = value.to_bytes();
            if (bytes.len() as u64) < frame_bytes {
                return Err(DecodeError::PixelDataTooShort {
                    expected: frame_bytes,
                    actual: bytes.len() as u64,
                });
            }
            match bytes {
                std::borrow::Cow::Borrowed(b) => {
                    std::borrow::Cow::Borrowed(&b[..frame_bytes as usize])
                }
                std::borrow::Cow::Owned(mut b) => {
                    b.truncate(frame_bytes as usize);
                    std::borrow::Cow::Owned(b)
                }
            }
        }
        Value::PixelSequence(sequence) => {
            let fragments = sequence.fragments();
            let decoded = decode_encapsulated(instance, encoding, fragments)?;
            if (decoded.len() as u64) < frame_bytes {
                return Err(DecodeError::codec(
                    &encoding.transfer_syntax,
                    format!(
                        "the codec returned {} bytes for a frame of {frame_bytes}",
                        decoded.len()
                    ),
                ));
            }
            let mut decoded = decoded;
            decoded.truncate(frame_bytes as usize);
            std::borrow::Cow::Owned(decoded)
        }
        Value::Sequence(_) => Err(DecodeError::malformed(
            "Pixel Data is encoded as a sequence of items",
        ))?,
    };
    Ok(raw)
}

fn decode_encapsulated(
    instance: &DicomInstance,
    encoding: &PixelEncoding,
    fragments: &[Vec<u8>],
) -> Result<Vec<u8>, DecodeError> {
    let uid = encoding.transfer_syntax_uid.as_str();
    let syntax = encoding.transfer_syntax.as_str();
    if fragments.is_empty() || fragments.iter().all(|f| f.is_empty()) {
        return Err(DecodeError::codec(
            syntax,
            "the encapsulated pixel data has no fragments",
        ));
    }
    if JPEG_SYNTAXES.contains(&uid) {
        let codestream = fragments.concat();
        return jpeg::decode_frame(&codestream, encoding);
    }
    if uid == uids::RLE_LOSSLESS {
        // One frame is one fragment (PS3.5 A.4.2).
        let [frame] = fragments else {
            return Err(DecodeError::codec(
                syntax,
                format!("{} fragments for one RLE frame", fragments.len()),
            ));
        };
        let pixels = encoding.rows as usize * encoding.columns as usize;
        return rle::decode_frame(frame, pixels, encoding.bits_allocated as usize / 8)
            .map_err(|reason| DecodeError::codec(syntax, reason));
    }
    if MARKER_TERMINATED_SYNTAXES.contains(&uid) {
        if !ends_with_end_marker(fragments) {
            return Err(DecodeError::codec(
                syntax,
                "the codestream does not end with its end marker: the pixel data is truncated",
            ));
        }
        check_codestream_size(uid, syntax, &fragments[0], encoding)?;
    }
    let unsupported = |reason: &str| DecodeError::UnsupportedTransferSyntax {
        uid: uid.to_string(),
        name: syntax.to_string(),
        reason: reason.to_string(),
    };
    let ts = TransferSyntaxRegistry
        .get(uid)
        .ok_or_else(|| unsupported("unknown syntax"))?;
    let Codec::EncapsulatedPixelData(Some(decoder), _) = ts.codec() else {
        return Err(unsupported("no decoder is built into radassist for it"));
    };
    let mut data = Vec::new();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        decoder.decode_frame(instance, 0, &mut data)
    }));
    match outcome {
        Ok(Ok(())) => Ok(data),
        Ok(Err(err)) => Err(DecodeError::codec(syntax, err)),
        Err(_) => Err(DecodeError::codec(
            syntax,
            "the codec failed on corrupt data",
        )),
    }
}

/// Compares the image size in the codestream's own header with Rows and Columns.
fn check_codestream_size(
    uid: &str,
    syntax: &str,
    first: &[u8],
    encoding: &PixelEncoding,
) -> Result<(), DecodeError> {
    let size = if uid.starts_with("1.2.840.10008.1.2.4.8") {
        codestream::jpeg_ls(first)
    } else {
        codestream::jpeg2000(first)
    };
    let Some(size) = size else {
        return Err(DecodeError::codec(
            syntax,
            "the codestream has no readable frame header",
        ));
    };
    if size.components != 1 {
        return Err(DecodeError::codec(
            syntax,
            format!("the codestream has {} components, not 1", size.components),
        ));
    }
    if (size.rows, size.columns) != (encoding.rows, encoding.columns) {
        return Err(DecodeError::FrameSizeMismatch {
            rows: encoding.rows,
            columns: encoding.columns,
            actual_rows: size.rows,
            actual_columns: size.columns,
        });
    }
    Ok(())
}

/// Whether the last fragment ends with 0xFFD9 (JPEG EOI and JPEG 2000 EOC share the code),
/// allowing the byte that pads a fragment to even length (0x00, or 0xFF from some encoders).
fn ends_with_end_marker(fragments: &[Vec<u8>]) -> bool {
    let Some(last) = fragments.iter().rev().find(|f| !f.is_empty()) else {
        return false;
    };
    let trimmed = match last.as_slice() {
        [rest @ .., 0x00 | 0xFF] => rest,
        all => all,
    };
    trimmed.ends_with(&[0xFF, 0xD9])
}

/// Reads little-endian samples of Bits Allocated, keeps bits
/// `high_bit - bits_stored + 1 ..= high_bit`, sign-extends two's complement values, and
/// collects `f` of each stored value, in one pass over the frame.
pub(crate) fn map_stored_values<T>(
    raw: &[u8],
    encoding: &PixelEncoding,
    f: impl Fn(i32) -> T,
) -> Vec<T> {
    let shift = (encoding.high_bit + 1 - encoding.bits_stored) as u32;
    let bits = encoding.bits_stored as u32;
    let mask: u32 = if bits == 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    };
    let sign_bit: u32 = 1u32 << (bits - 1);
    let signed = encoding.signed;
    let stored = move |sample: u32| -> i32 {
        let v = (sample >> shift) & mask;
        if signed && v & sign_bit != 0 {
            (v as i64 - (1i64 << bits)) as i32
        } else {
            v as i32
        }
    };
    let every_bit_stored = !signed && shift == 0 && bits == u32::from(encoding.bits_allocated);
    match encoding.bits_allocated {
        // The common case (8 or 16 of 8 or 16 bits, unsigned) needs no masking: a loop the
        // compiler can vectorise.
        8 if every_bit_stored => raw.iter().map(|&b| f(i32::from(b))).collect(),
        16 if every_bit_stored => raw
            .chunks_exact(2)
            .map(|c| f(i32::from(u16::from_le_bytes([c[0], c[1]]))))
            .collect(),
        8 => raw.iter().map(|&b| f(stored(b as u32))).collect(),
        16 => raw
            .chunks_exact(2)
            .map(|c| f(stored(u16::from_le_bytes([c[0], c[1]]) as u32)))
            .collect(),
        _ => raw
            .chunks_exact(4)
            .map(|c| f(stored(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicom::header::Photometric;

    fn unpack_stored_values(raw: &[u8], encoding: &PixelEncoding) -> Vec<i32> {
        map_stored_values(raw, encoding, |v| v)
    }

    fn encoding(
        bits_allocated: u16,
        bits_stored: u16,
        high_bit: u16,
        signed: bool,
    ) -> PixelEncoding {
        PixelEncoding {
            transfer_syntax_uid: uids::EXPLICIT_VR_LITTLE_ENDIAN.into(),
            transfer_syntax: "Explicit VR Little Endian".into(),
            photometric_interpretation: Photometric::Monochrome2,
            rows: 1,
            columns: 1,
            number_of_frames: 1,
            bits_allocated,
            bits_stored,
            high_bit,
            signed,
        }
    }

    #[test]
    fn unused_high_bits_are_masked() {
        // 12 bits stored in 16: 0xF123 carries garbage in the top nibble.
        let raw = 0xF123u16.to_le_bytes();
        assert_eq!(
            unpack_stored_values(&raw, &encoding(16, 12, 11, false)),
            vec![0x123]
        );
    }

    #[test]
    fn signed_values_are_sign_extended_from_bits_stored() {
        // 12-bit two's complement 0xFFF is -1, 0x800 is -2048, 0x7FF is 2047.
        let raw: Vec<u8> = [0x0FFFu16, 0x0800, 0x07FF]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            unpack_stored_values(&raw, &encoding(16, 12, 11, true)),
            vec![-1, -2048, 2047]
        );
        assert_eq!(
            unpack_stored_values(&[0x80, 0x7F], &encoding(8, 8, 7, true)),
            vec![-128, 127]
        );
    }

    #[test]
    fn high_bit_above_bits_stored_shifts_the_samples() {
        // 12 bits stored with High Bit 15: the value sits in the top 12 bits.
        let raw = (0xABCu16 << 4).to_le_bytes();
        assert_eq!(
            unpack_stored_values(&raw, &encoding(16, 12, 15, false)),
            vec![0xABC]
        );
    }

    #[test]
    fn end_markers_tolerate_fragment_padding() {
        assert!(ends_with_end_marker(&[vec![1, 2], vec![0xFF, 0xD9]]));
        assert!(ends_with_end_marker(&[vec![0xFF, 0xD9, 0]]));
        assert!(ends_with_end_marker(&[vec![0xFF, 0xD9, 0xFF]]));
        assert!(!ends_with_end_marker(&[vec![0xFF, 0xD9], vec![1, 2]]));
        assert!(!ends_with_end_marker(&[]));
    }
}

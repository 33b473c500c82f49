//! DICOM RLE Lossless (PS3.5 Annex G), decoded strictly.
//!
//! A frame is a 64-byte header (the number of segments and up to 15 segment offsets) followed by
//! PackBits-compressed segments, one per byte of a sample, most significant byte first. dicom-rs's
//! adapter panics (index out of bounds) when a segment decodes short, which fuzzing found; this
//! decoder instead refuses any frame whose segments do not decode to exactly one byte plane each,
//! and writes the planes straight into little-endian samples.

/// Decodes one RLE frame of `pixels` samples of `bytes_per_sample` bytes to little-endian bytes.
pub(crate) fn decode_frame(
    frame: &[u8],
    pixels: usize,
    bytes_per_sample: usize,
) -> Result<Vec<u8>, String> {
    if frame.len() < 64 {
        return Err(format!(
            "the RLE header needs 64 bytes, the frame has {}",
            frame.len()
        ));
    }
    let word = |i: usize| {
        u32::from_le_bytes(frame[4 * i..4 * i + 4].try_into().expect("4 bytes")) as usize
    };
    let segments = word(0);
    if segments != bytes_per_sample {
        return Err(format!(
            "the RLE header lists {segments} segments, but {bytes_per_sample}-byte greyscale samples need {bytes_per_sample}"
        ));
    }
    let mut out = vec![0u8; pixels * bytes_per_sample];
    for segment in 0..segments {
        let start = word(1 + segment);
        let end = if segment + 1 < segments {
            word(2 + segment)
        } else {
            frame.len()
        };
        if start < 64 || start > end || end > frame.len() {
            return Err(format!(
                "RLE segment {} has invalid offsets {start}..{end}",
                segment + 1
            ));
        }
        // Segment 0 holds the most significant byte, which is the last byte of a little-endian sample.
        let byte_in_sample = bytes_per_sample - 1 - segment;
        unpack_bits(
            &frame[start..end],
            &mut out,
            byte_in_sample,
            bytes_per_sample,
        )
        .map_err(|reason| format!("RLE segment {}: {reason}", segment + 1))?;
    }
    Ok(out)
}

/// PackBits: a header byte n in 0..=127 copies the next n + 1 bytes, n in -127..=-1 repeats the
/// next byte 1 - n times, -128 does nothing. Writes every `stride`-th byte of `out` from
/// `offset`, and stops once the plane is full (trailing padding is allowed).
fn unpack_bits(segment: &[u8], out: &mut [u8], offset: usize, stride: usize) -> Result<(), String> {
    let needed = out.len() / stride;
    let mut written = 0;
    let mut at = 0;
    while written < needed {
        let Some(&header) = segment.get(at) else {
            return Err(format!("decodes to {written} bytes, {needed} needed"));
        };
        at += 1;
        let header = header as i8;
        let (count, literal) = match header {
            0..=127 => (header as usize + 1, true),
            -127..=-1 => ((1 - header as isize) as usize, false),
            -128 => continue,
        };
        if written + count > needed {
            return Err(format!(
                "a run of {count} bytes overflows the plane at byte {written} of {needed}"
            ));
        }
        if literal {
            let bytes = segment
                .get(at..at + count)
                .ok_or("a literal run is cut short")?;
            for (k, &b) in bytes.iter().enumerate() {
                out[(written + k) * stride + offset] = b;
            }
            at += count;
        } else {
            let &value = segment.get(at).ok_or("a repeat run is cut short")?;
            for k in 0..count {
                out[(written + k) * stride + offset] = value;
            }
            at += 1;
        }
        written += count;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(segments: &[&[u8]]) -> Vec<u8> {
        let mut header = vec![0u8; 64];
        header[..4].copy_from_slice(&(segments.len() as u32).to_le_bytes());
        let mut offset = 64u32;
        for (i, s) in segments.iter().enumerate() {
            header[4 + 4 * i..8 + 4 * i].copy_from_slice(&offset.to_le_bytes());
            offset += s.len() as u32;
        }
        [header, segments.concat()].concat()
    }

    #[test]
    fn decodes_literal_and_repeat_runs_into_little_endian_samples() {
        // MSB plane: literal [1, 2], then 0x03 repeated twice; LSB plane: 0xAA repeated 4 times.
        let data = frame(&[&[0x01, 1, 2, 0xFF, 3], &[0xFD, 0xAA, 0x80]]);
        let out = decode_frame(&data, 4, 2).unwrap();
        assert_eq!(out, vec![0xAA, 1, 0xAA, 2, 0xAA, 3, 0xAA, 3]);
    }

    #[test]
    fn short_long_and_miscounted_segments_are_errors() {
        assert!(decode_frame(&frame(&[&[0x01, 1, 2]]), 3, 1)
            .unwrap_err()
            .contains("2 bytes, 3 needed"));
        assert!(decode_frame(&frame(&[&[0xFC, 9]]), 3, 1)
            .unwrap_err()
            .contains("overflows"));
        assert!(decode_frame(&frame(&[&[0x02, 1]]), 3, 1)
            .unwrap_err()
            .contains("cut short"));
        assert!(decode_frame(&frame(&[&[0xFE, 1]]), 3, 2)
            .unwrap_err()
            .contains("1 segments"));
        assert!(decode_frame(&[0u8; 10], 3, 1).is_err());
        // Trailing padding after a full plane is fine.
        assert_eq!(
            decode_frame(&frame(&[&[0xFE, 7, 0x00]]), 3, 1).unwrap(),
            vec![7, 7, 7]
        );
    }
}

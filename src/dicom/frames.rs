//! A stored instance's frames as they are held, not decoded: the bytes of each frame of its
//! Pixel Data, in the transfer syntax it is held in (WADO-RS's frame retrieval serves them so).
//!
//! Native pixel data is cut into frames of Rows x Columns x Samples per Pixel x Bits Allocated
//! bits. Encapsulated pixel data (PS3.5 A.4) is one frame's fragments per frame: all of them
//! for a single frame, one each when there are as many fragments as frames, else grouped by the
//! Basic Offset Table. Explicit VR Big Endian (retired) is not served: its words would need
//! swapping.

use super::file::DicomInstance;
use dicom_core::value::Value;
use dicom_dictionary_std::tags;

/// Why frames could not be taken.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FramesError {
    #[error("the instance has no Pixel Data")]
    NoPixelData,
    #[error("frame {asked} was asked for; the instance has {frames} (they count from 1)")]
    NoSuchFrame { asked: u32, frames: u32 },
    #[error("the instance's frames cannot be told apart: {0}")]
    Unsplittable(String),
    #[error(
        "the instance is held in Explicit VR Big Endian, whose frames radassist does not serve"
    )]
    BigEndian,
}

/// Frames of one instance: the transfer syntax they are in, whether it is encapsulated
/// (compressed), and the bytes of each frame asked for, in the order asked.
#[derive(Debug)]
pub struct HeldFrames {
    pub transfer_syntax: String,
    pub encapsulated: bool,
    pub frames: Vec<Vec<u8>>,
}

fn number(instance: &DicomInstance, tag: dicom_core::Tag) -> Option<u64> {
    instance
        .element(tag)
        .ok()
        .and_then(|e| e.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Frames `wanted` (counting from 1) of `instance`, as held.
pub fn frames(instance: &DicomInstance, wanted: &[u32]) -> Result<HeldFrames, FramesError> {
    let transfer_syntax = instance
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    if transfer_syntax == "1.2.840.10008.1.2.2" {
        return Err(FramesError::BigEndian);
    }
    let count = number(instance, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as u32;
    if let Some(&asked) = wanted.iter().find(|&&f| f == 0 || f > count) {
        return Err(FramesError::NoSuchFrame {
            asked,
            frames: count,
        });
    }
    let pixel_data = instance
        .element(tags::PIXEL_DATA)
        .map_err(|_| FramesError::NoPixelData)?;
    let (all, encapsulated): (Vec<Vec<u8>>, bool) = match pixel_data.value() {
        Value::Primitive(value) => (native(instance, &value.to_bytes(), count)?, false),
        Value::PixelSequence(sequence) => (
            encapsulated(sequence.fragments(), sequence.offset_table(), count)?,
            true,
        ),
        Value::Sequence(_) => return Err(FramesError::NoPixelData),
    };
    Ok(HeldFrames {
        transfer_syntax,
        encapsulated,
        frames: wanted
            .iter()
            .map(|&f| all[(f - 1) as usize].clone())
            .collect(),
    })
}

/// Native pixel data cut into `count` frames.
fn native(instance: &DicomInstance, bytes: &[u8], count: u32) -> Result<Vec<Vec<u8>>, FramesError> {
    let field = |tag, name: &str| {
        number(instance, tag).ok_or_else(|| FramesError::Unsplittable(format!("no {name}")))
    };
    let rows = field(tags::ROWS, "Rows")?;
    let columns = field(tags::COLUMNS, "Columns")?;
    let samples = number(instance, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let bits = field(tags::BITS_ALLOCATED, "Bits Allocated")?;
    let frame = (rows * columns * samples * bits).div_ceil(8) as usize;
    if frame == 0 || frame.saturating_mul(count as usize) > bytes.len() {
        return Err(FramesError::Unsplittable(format!(
            "{count} frames of {frame} bytes, in {} bytes of Pixel Data",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks(frame)
        .take(count as usize)
        .map(<[u8]>::to_vec)
        .collect())
}

/// Encapsulated fragments grouped into `count` frames.
fn encapsulated(
    fragments: &[Vec<u8>],
    offsets: &[u32],
    count: u32,
) -> Result<Vec<Vec<u8>>, FramesError> {
    if fragments.is_empty() {
        return Err(FramesError::Unsplittable("no fragments".into()));
    }
    if count == 1 {
        return Ok(vec![fragments.concat()]);
    }
    if fragments.len() == count as usize {
        return Ok(fragments.to_vec());
    }
    if offsets.len() != count as usize || offsets.first() != Some(&0) {
        return Err(FramesError::Unsplittable(format!(
            "{} fragments for {count} frames, and no Basic Offset Table of {count} entries",
            fragments.len()
        )));
    }
    // Where each fragment item starts, from the first (each has an 8-byte item header).
    let mut starts = Vec::with_capacity(fragments.len());
    let mut at = 0u64;
    for fragment in fragments {
        starts.push(at);
        at += 8 + fragment.len() as u64;
    }
    let mut frames = Vec::with_capacity(count as usize);
    for (i, &offset) in offsets.iter().enumerate() {
        let end = offsets.get(i + 1).map_or(u64::MAX, |&o| u64::from(o));
        let frame: Vec<u8> = fragments
            .iter()
            .zip(&starts)
            .filter(|(_, &start)| start >= u64::from(offset) && start < end)
            .flat_map(|(f, _)| f.iter().copied())
            .collect();
        if frame.is_empty() {
            return Err(FramesError::Unsplittable(format!(
                "the Basic Offset Table's entry {} names no fragment",
                i + 1
            )));
        }
        frames.push(frame);
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_are_grouped_into_frames_by_the_offset_table() {
        let fragments = vec![vec![1, 2], vec![3], vec![4, 5, 6]];
        // Frame 1: fragments 1 and 2 (items of 8 + 2 and 8 + 1 bytes); frame 2: fragment 3.
        let frames = encapsulated(&fragments, &[0, 19], 2).unwrap();
        assert_eq!(frames, vec![vec![1, 2, 3], vec![4, 5, 6]]);
        assert_eq!(
            encapsulated(&fragments, &[], 1).unwrap(),
            vec![vec![1, 2, 3, 4, 5, 6]]
        );
        assert_eq!(encapsulated(&fragments, &[], 3).unwrap().len(), 3);
        assert!(matches!(
            encapsulated(&fragments, &[], 2),
            Err(FramesError::Unsplittable(_))
        ));
        assert!(matches!(
            encapsulated(&fragments, &[0, 500], 2),
            Err(FramesError::Unsplittable(_))
        ));
    }
}

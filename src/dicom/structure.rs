//! A structural check of encoded DICOM data before it is parsed.
//!
//! dicom-rs's parser allocates (and zero-fills) an element's value at the length its header
//! claims before reading it, so a 400 kB file whose Pixel Data claims 4 GiB costs 4 GiB of
//! memory and many seconds before the read fails. This walk visits every element, sequence,
//! item and fragment header and refuses the data when a defined length runs past its container
//! or the data, when a delimiter is missing, or when nesting is absurdly deep. It reads headers
//! only, so it costs a fraction of parsing.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use std::io::Read;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIMITER: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_DELIMITER: Tag = Tag(0xFFFE, 0xE0DD);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const MAX_DEPTH: usize = 32;

/// How a data set is encoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Encoding {
    pub explicit_vr: bool,
    pub big_endian: bool,
}

pub(crate) const EXPLICIT_LE: Encoding = Encoding {
    explicit_vr: true,
    big_endian: false,
};

/// The size of one value of a binary VR (None: text, bytes or sequence).
fn binary_value_size(vr: VR) -> Option<usize> {
    match vr {
        VR::US | VR::SS | VR::OW => Some(2),
        VR::UL | VR::SL | VR::FL | VR::AT | VR::OF | VR::OL => Some(4),
        VR::FD | VR::OD | VR::SV | VR::UV | VR::OV => Some(8),
        _ => None,
    }
}

/// Where a walk stopped: the end of the data, or a delimiter of the enclosing sequence or item.
#[derive(Debug, PartialEq)]
enum Stop {
    End,
    Delimiter(Tag),
}

struct Walker<'a> {
    data: &'a [u8],
    encoding: Encoding,
}

impl Walker<'_> {
    fn u16_at(&self, at: usize) -> u16 {
        let b = [self.data[at], self.data[at + 1]];
        if self.encoding.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32_at(&self, at: usize) -> u32 {
        let b = [
            self.data[at],
            self.data[at + 1],
            self.data[at + 2],
            self.data[at + 3],
        ];
        if self.encoding.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    fn tag_at(&self, at: usize) -> Tag {
        Tag(self.u16_at(at), self.u16_at(at + 2))
    }

    /// Walks elements from `at` to `end` (or to a delimiter); returns where it stopped.
    fn elements(
        &self,
        mut at: usize,
        end: usize,
        depth: usize,
        stop_at: Option<u16>,
    ) -> Result<(usize, Stop), String> {
        if depth > MAX_DEPTH {
            return Err(format!("sequences nested more than {MAX_DEPTH} deep"));
        }
        while at < end {
            if end - at < 8 {
                return Err(format!("{} stray bytes at offset {at}", end - at));
            }
            let tag = self.tag_at(at);
            if let Some(group) = stop_at {
                if tag.group() != group {
                    return Ok((at, Stop::End));
                }
            }
            if tag == ITEM_DELIMITER || tag == SEQUENCE_DELIMITER {
                return Ok((at + 8, Stop::Delimiter(tag)));
            }
            let (vr, length, header) = self.element_header(at, end, tag)?;
            let value = at + header;
            if length == UNDEFINED {
                at = self.undefined_length_value(value, end, depth, tag, vr)?;
                continue;
            }
            let length = length as usize;
            if length > end - value {
                return Err(format!(
                    "element {tag} at offset {at} claims {length} bytes, but only {} remain",
                    end - value
                ));
            }
            // dicom-rs reads a binary value as whole numbers and the next element from where
            // they end: a length that is no multiple of the value size would shift every
            // header after it (and a shifted header can claim gigabytes).
            if let Some((vr, size)) = vr.and_then(|vr| Some((vr, binary_value_size(vr)?))) {
                if length % size != 0 {
                    return Err(format!(
                        "element {tag} at offset {at} has a {vr:?} value of {length} bytes, not a whole number of {size}-byte values"
                    ));
                }
            }
            if vr == Some(VR::SQ) {
                self.items(value, value + length, depth + 1)?;
            }
            at = value + length;
        }
        Ok((at, Stop::End))
    }

    /// (VR when known, value length, header size) of the element at `at`.
    fn element_header(
        &self,
        at: usize,
        end: usize,
        tag: Tag,
    ) -> Result<(Option<VR>, u32, usize), String> {
        if self.encoding.explicit_vr && tag.group() != 0xFFFE {
            let vr_bytes = [self.data[at + 4], self.data[at + 5]];
            let vr = VR::from_binary(vr_bytes);
            let long = matches!(
                vr,
                Some(
                    VR::OB
                        | VR::OD
                        | VR::OF
                        | VR::OL
                        | VR::OV
                        | VR::OW
                        | VR::SQ
                        | VR::UC
                        | VR::UN
                        | VR::UR
                        | VR::UT
                        | VR::SV
                        | VR::UV
                ) | None
            );
            if long {
                if end - at < 12 {
                    return Err(format!("element {tag} at offset {at} is cut short"));
                }
                return Ok((vr, self.u32_at(at + 8), 12));
            }
            return Ok((vr, u32::from(self.u16_at(at + 6)), 8));
        }
        // Implicit VR: the VR dicom-rs will read the value as, from the dictionary (group
        // lengths, (gggg,0000), are UL in every group).
        let vr = if tag.element() == 0x0000 {
            Some(VR::UL)
        } else {
            match StandardDataDictionary.by_tag(tag).map(|e| e.vr()) {
                Some(VirtualVr::Exact(vr)) => Some(vr),
                _ => None,
            }
        };
        Ok((vr, self.u32_at(at + 4), 8))
    }

    /// An undefined-length value: encapsulated Pixel Data (fragments), or a sequence of items.
    fn undefined_length_value(
        &self,
        at: usize,
        end: usize,
        depth: usize,
        tag: Tag,
        vr: Option<VR>,
    ) -> Result<usize, String> {
        if tag == PIXEL_DATA && vr != Some(VR::SQ) {
            return self.fragments(at, end);
        }
        // An explicit UN of undefined length is a sequence in implicit VR little endian.
        if self.encoding.explicit_vr && vr == Some(VR::UN) {
            let inner = Walker {
                data: self.data,
                encoding: Encoding {
                    explicit_vr: false,
                    big_endian: false,
                },
            };
            return inner.items(at, end, depth + 1);
        }
        self.items(at, end, depth + 1)
    }

    /// Items of a sequence until its end or its delimiter; returns the offset after it.
    fn items(&self, mut at: usize, end: usize, depth: usize) -> Result<usize, String> {
        while at < end {
            if end - at < 8 {
                return Err(format!("a sequence item at offset {at} is cut short"));
            }
            let tag = self.tag_at(at);
            let length = self.u32_at(at + 4);
            at += 8;
            match tag {
                SEQUENCE_DELIMITER => return Ok(at),
                ITEM if length == UNDEFINED => match self.elements(at, end, depth, None)? {
                    (next, Stop::Delimiter(ITEM_DELIMITER)) => at = next,
                    _ => {
                        return Err(format!(
                            "an item at offset {} has no item delimiter",
                            at - 8
                        ))
                    }
                },
                ITEM => {
                    let length = length as usize;
                    if length > end - at {
                        return Err(format!(
                            "an item at offset {} claims {length} bytes, but only {} remain",
                            at - 8,
                            end - at
                        ));
                    }
                    self.elements(at, at + length, depth, None)?;
                    at += length;
                }
                other => {
                    return Err(format!(
                        "expected a sequence item at offset {}, found {other}",
                        at - 8
                    ))
                }
            }
        }
        Ok(at)
    }

    /// Encapsulated pixel data: items (offset table, fragments) up to the sequence delimiter.
    fn fragments(&self, mut at: usize, end: usize) -> Result<usize, String> {
        loop {
            if end - at < 8 {
                return Err(
                    "the encapsulated pixel data ends without its sequence delimiter".into(),
                );
            }
            let tag = self.tag_at(at);
            let length = self.u32_at(at + 4) as usize;
            at += 8;
            match tag {
                SEQUENCE_DELIMITER => return Ok(at),
                ITEM if length <= end - at => at += length,
                ITEM => {
                    return Err(format!(
                    "a pixel data fragment at offset {} claims {length} bytes, but only {} remain",
                    at - 8,
                    end - at
                ))
                }
                other => {
                    return Err(format!(
                        "expected a pixel data fragment at offset {}, found {other}",
                        at - 8
                    ))
                }
            }
        }
    }
}

/// Checks the file meta group (explicit VR little endian, group 0002) starting at `at`;
/// returns the offset of the data set that follows and the Transfer Syntax UID it names.
pub(crate) fn check_meta_group(data: &[u8], at: usize) -> Result<(usize, Option<String>), String> {
    let walker = Walker {
        data,
        encoding: EXPLICIT_LE,
    };
    let (next, _) = walker.elements(at, data.len(), 0, Some(0x0002))?;
    // The walk has checked every length, so the elements can be stepped through again directly.
    let mut transfer_syntax = None;
    let mut cursor = at;
    while cursor < next {
        let tag = walker.tag_at(cursor);
        let (_, length, header) = walker.element_header(cursor, next, tag)?;
        // The meta group holds no sequences: an undefined length there (the walk took it
        // for one) is refused, not stepped over.
        if length == UNDEFINED {
            return Err(format!(
                "meta group element {tag} at offset {cursor} has an undefined length"
            ));
        }
        let value = &data[cursor + header..cursor + header + length as usize];
        if tag == Tag(0x0002, 0x0010) {
            let uid = String::from_utf8_lossy(value);
            transfer_syntax = Some(uid.trim_end_matches(['\0', ' ']).to_string());
        }
        cursor += header + length as usize;
    }
    Ok((next, transfer_syntax))
}

/// Checks a data set encoded as `encoding` from `at` to the end of `data`.
pub(crate) fn check_data_set(data: &[u8], at: usize, encoding: Encoding) -> Result<(), String> {
    let walker = Walker { data, encoding };
    match walker.elements(at, data.len(), 0, None)? {
        (_, Stop::End) => Ok(()),
        (next, Stop::Delimiter(tag)) => {
            Err(format!("a stray delimiter {tag} at offset {}", next - 8))
        }
    }
}

/// Inflates a deflated data set, refusing one that inflates to more than `limit` bytes.
pub(crate) fn inflate(deflated: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    let mut inflated = Vec::new();
    flate2::read::DeflateDecoder::new(deflated)
        .take(limit + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| format!("the deflated data set cannot be inflated: {e}"))?;
    if inflated.len() as u64 > limit {
        return Err(format!(
            "the deflated data set inflates to more than {limit} bytes"
        ));
    }
    Ok(inflated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&tag.0.to_le_bytes());
        out.extend_from_slice(&tag.1.to_le_bytes());
        out.extend_from_slice(vr);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn a_well_formed_data_set_passes() {
        let data = [
            element((0x0008, 0x0060), b"CS", b"CR"),
            element((0x0010, 0x0020), b"LO", b"ID01"),
        ]
        .concat();
        assert!(check_data_set(&data, 0, EXPLICIT_LE).is_ok());
    }

    #[test]
    fn a_length_past_the_end_fails() {
        let mut data = element((0x0008, 0x0060), b"CS", b"CR");
        data[6] = 200;
        let err = check_data_set(&data, 0, EXPLICIT_LE).unwrap_err();
        assert!(err.contains("claims 200 bytes"), "{err}");
    }

    #[test]
    fn deep_nesting_fails() {
        // 40 nested undefined-length sequences, each in an undefined-length item.
        let mut data = Vec::new();
        for _ in 0..40 {
            data.extend_from_slice(&[
                0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
            ]);
            data.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        let err = check_data_set(&data, 0, EXPLICIT_LE).unwrap_err();
        assert!(err.contains("nested"), "{err}");
    }

    /// Found by the cstore_dataset fuzz target: a 26-byte SL value (six and a half values)
    /// made dicom-rs read the next header two bytes early, where it found an OB claiming
    /// 775 MB, which it allocated; the check passed it, since 26 bytes fit.
    #[test]
    fn a_binary_value_that_is_no_whole_number_of_values_fails() {
        let data = [
            element((0x0008, 0x0016), b"SL", &[b'1'; 26]),
            element((0x0008, 0x0018), b"UI", b"1.2.3.4\0"),
        ]
        .concat();
        let err = check_data_set(&data, 0, EXPLICIT_LE).unwrap_err();
        assert!(err.contains("not a whole number of 4-byte values"), "{err}");
        let fine = element((0x0028, 0x0010), b"US", &[0, 2]);
        assert!(check_data_set(&fine, 0, EXPLICIT_LE).is_ok());
    }

    /// Found by the cstore_dataset fuzz target: a group 0002 element of undefined length
    /// after the meta group passed the walk (as a sequence) and then panicked the second pass,
    /// which stepped over it by its length.
    #[test]
    fn a_meta_group_element_of_undefined_length_fails_without_a_panic() {
        let mut data = element((0x0002, 0x0010), b"UI", b"1.2.840.10008.1.2.1\0");
        data.extend_from_slice(&[
            0x02, 0x00, 0x20, 0x00, b'U', b'N', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        data.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let err = check_meta_group(&data, 0).unwrap_err();
        assert!(err.contains("undefined length"), "{err}");
    }
}

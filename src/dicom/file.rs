//! Reading the bytes of a DICOM instance into a parsed object.
//!
//! A PACS sends Part-10 files (128-byte preamble, "DICM", file meta group, data set), but files
//! in the wild also come without the preamble, or as a bare data set with no meta group at all
//! (older CR exports). All three are accepted here; the transfer syntax of a bare data set is
//! read off its first element (explicit or implicit VR, little endian).

use super::structure::{self, Encoding, EXPLICIT_LE};
use super::DecodeError;
use dicom_dictionary_std::uids;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::meta::{FileMetaTable, FileMetaTableBuilder};
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use std::io::Read;
use std::path::Path;

/// Explicit VR Big Endian: retired from the standard, still sent by older modalities.
const EXPLICIT_VR_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";

/// Largest data set a deflated instance may inflate to.
const MAX_INFLATED_BYTES: u64 = 1 << 30;

/// A parsed DICOM instance with its file meta information.
pub type DicomInstance = DefaultDicomObject;

/// Reads a whole file, refusing one larger than `limit` bytes before reading it.
pub(crate) fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, DecodeError> {
    let io_error = |source| DecodeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    let size = file.metadata().map_err(io_error)?.len();
    if size > limit {
        return Err(DecodeError::FileTooLarge {
            path: path.to_path_buf(),
            size,
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(limit).read_to_end(&mut bytes).map_err(io_error)?;
    Ok(bytes)
}

/// Parses a DICOM instance: Part 10 with or without preamble, or a bare data set.
///
/// The encoded structure is checked first (see the `structure` module), so that no length in a header
/// can make the parser allocate more than the data holds.
pub fn parse_dicom(bytes: &[u8]) -> Result<DicomInstance, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::NotDicom {
            reason: "the input is empty".into(),
        });
    }
    let (preamble, meta_start) = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        (Some(ReadPreamble::Always), 132)
    } else if bytes.starts_with(b"DICM") {
        (Some(ReadPreamble::Never), 4)
    } else {
        (None, 0)
    };
    match preamble {
        Some(preamble) => {
            if let Some(inflated) = check_part10_structure(bytes, meta_start)? {
                // Deflated: parse the data set already inflated for the check, not a second time.
                let meta = FileMetaTable::from_reader(&bytes[meta_start - 4..])
                    .map_err(DecodeError::malformed)?;
                let ts = TransferSyntaxRegistry
                    .get(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                    .expect("explicit VR little endian is built in");
                let data_set = InMemDicomObject::read_dataset_with_ts(inflated.as_slice(), ts)
                    .map_err(DecodeError::malformed)?;
                return Ok(data_set.with_exact_meta(meta));
            }
            let object = OpenFileOptions::new()
                .read_preamble(preamble)
                .read_all()
                .from_reader(bytes)
                .map_err(DecodeError::malformed)?;
            Ok(object)
        }
        None => parse_bare_data_set(bytes),
    }
}

/// Checks the meta group and the data set of a Part-10 file before dicom-rs parses them;
/// returns the inflated data set of a deflated file.
fn check_part10_structure(bytes: &[u8], meta_start: usize) -> Result<Option<Vec<u8>>, DecodeError> {
    let (data_set_start, uid) =
        structure::check_meta_group(bytes, meta_start).map_err(DecodeError::malformed)?;
    let uid = uid.ok_or_else(|| DecodeError::NotDicom {
        reason: "the file meta group has no Transfer Syntax UID (0002,0010)".into(),
    })?;
    check_transfer_syntax_known(&uid)?;
    if uid == uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN {
        let inflated = structure::inflate(&bytes[data_set_start..], MAX_INFLATED_BYTES)
            .map_err(DecodeError::malformed)?;
        structure::check_data_set(&inflated, 0, EXPLICIT_LE).map_err(DecodeError::malformed)?;
        return Ok(Some(inflated));
    }
    let checked = match uid.as_str() {
        uids::IMPLICIT_VR_LITTLE_ENDIAN => structure::check_data_set(
            bytes,
            data_set_start,
            Encoding {
                explicit_vr: false,
                big_endian: false,
            },
        ),
        EXPLICIT_VR_BIG_ENDIAN => structure::check_data_set(
            bytes,
            data_set_start,
            Encoding {
                explicit_vr: true,
                big_endian: true,
            },
        ),
        _ => structure::check_data_set(bytes, data_set_start, EXPLICIT_LE),
    };
    checked.map_err(DecodeError::malformed)?;
    Ok(None)
}

fn check_transfer_syntax_known(uid: &str) -> Result<(), DecodeError> {
    let uid = uid.trim_end_matches(['\0', ' ']);
    if TransferSyntaxRegistry.get(uid).is_none() {
        return Err(DecodeError::UnsupportedTransferSyntax {
            uid: uid.to_string(),
            name: "unknown".into(),
            reason: "radassist does not know this transfer syntax".into(),
        });
    }
    Ok(())
}

/// A data set with no file meta group. Its first element must look like the start of a real
/// data set (an even group no later than 0x0008), so random bytes are refused early.
fn parse_bare_data_set(bytes: &[u8]) -> Result<DicomInstance, DecodeError> {
    if bytes.len() < 8 {
        return Err(DecodeError::NotDicom {
            reason: format!(
                "only {} bytes, too short to hold a DICOM element",
                bytes.len()
            ),
        });
    }
    let group = u16::from_le_bytes([bytes[0], bytes[1]]);
    if group == 0 || group > 0x0008 || group % 2 == 1 {
        return Err(DecodeError::NotDicom {
            reason: "no \"DICM\" prefix (with or without the 128-byte preamble), and the data \
                     does not start like a DICOM data set"
                .into(),
        });
    }
    let explicit_vr = bytes[4].is_ascii_uppercase() && bytes[5].is_ascii_uppercase();
    let ts_uid = if explicit_vr {
        uids::EXPLICIT_VR_LITTLE_ENDIAN
    } else {
        uids::IMPLICIT_VR_LITTLE_ENDIAN
    };
    let encoding = Encoding {
        explicit_vr,
        big_endian: false,
    };
    structure::check_data_set(bytes, 0, encoding).map_err(DecodeError::malformed)?;
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .expect("little endian syntaxes are built in");
    let data_set =
        InMemDicomObject::read_dataset_with_ts(bytes, ts).map_err(DecodeError::malformed)?;
    data_set
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(ts_uid))
        .map_err(|err| DecodeError::NotDicom {
            reason: format!("a bare data set without SOP Class and Instance UIDs ({err})"),
        })
}

/// Reads a bare data set (no preamble, no meta group) encoded in `transfer_syntax_uid`, one of
/// the uncompressed syntaxes: a DIMSE command set or a query identifier from a peer. Its
/// structure is checked first, so that no length a peer wrote is allocated before it is shown
/// to fit in the bytes.
pub fn read_data_set(bytes: &[u8], transfer_syntax_uid: &str) -> Result<InMemDicomObject, String> {
    let encoding = match transfer_syntax_uid {
        uids::IMPLICIT_VR_LITTLE_ENDIAN => Encoding {
            explicit_vr: false,
            big_endian: false,
        },
        EXPLICIT_VR_BIG_ENDIAN => Encoding {
            explicit_vr: true,
            big_endian: true,
        },
        uids::EXPLICIT_VR_LITTLE_ENDIAN => EXPLICIT_LE,
        other => {
            return Err(format!(
                "transfer syntax {other} is not one for a bare data set"
            ))
        }
    };
    structure::check_data_set(bytes, 0, encoding)?;
    let syntax = TransferSyntaxRegistry
        .get(transfer_syntax_uid)
        .ok_or_else(|| format!("unknown transfer syntax {transfer_syntax_uid}"))?;
    InMemDicomObject::read_dataset_with_ts(bytes, syntax).map_err(|e| e.to_string())
}

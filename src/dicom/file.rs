//! Reading the bytes of a DICOM instance into a parsed object.
//!
//! A PACS sends Part-10 files (128-byte preamble, "DICM", file meta group, data set), but files
//! in the wild also come without the preamble, or as a bare data set with no meta group at all
//! (older CR exports). All three are accepted here; the transfer syntax of a bare data set is
//! read off its first element (explicit or implicit VR, little endian).

use super::DecodeError;
use dicom_dictionary_std::uids;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use std::io::Read;
use std::path::Path;

/// A parsed DICOM instance with its file meta information.
pub type DicomInstance = DefaultDicomObject;

/// Reads a whole file, refusing one larger than `limit` bytes before reading it.
pub(crate) fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, DecodeError> {
    let io_error = |source| DecodeError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io_error)?;
    let size = file.metadata().map_err(io_error)?.len();
    if size > limit {
        return Err(DecodeError::FileTooLarge { path: path.to_path_buf(), size, limit });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(limit).read_to_end(&mut bytes).map_err(io_error)?;
    Ok(bytes)
}

/// Parses a DICOM instance: Part 10 with or without preamble, or a bare data set.
pub fn parse_dicom(bytes: &[u8]) -> Result<DicomInstance, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::NotDicom { reason: "the input is empty".into() });
    }
    let preamble = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        Some(ReadPreamble::Always)
    } else if bytes.starts_with(b"DICM") {
        Some(ReadPreamble::Never)
    } else {
        None
    };
    match preamble {
        Some(preamble) => {
            let object = OpenFileOptions::new()
                .read_preamble(preamble)
                .read_all()
                .from_reader(bytes)
                .map_err(DecodeError::malformed)?;
            check_transfer_syntax_known(&object.meta().transfer_syntax)?;
            Ok(object)
        }
        None => parse_bare_data_set(bytes),
    }
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
            reason: format!("only {} bytes, too short to hold a DICOM element", bytes.len()),
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
    let ts_uid =
        if explicit_vr { uids::EXPLICIT_VR_LITTLE_ENDIAN } else { uids::IMPLICIT_VR_LITTLE_ENDIAN };
    let ts = TransferSyntaxRegistry.get(ts_uid).expect("little endian syntaxes are built in");
    let data_set =
        InMemDicomObject::read_dataset_with_ts(bytes, ts).map_err(DecodeError::malformed)?;
    data_set.with_meta(FileMetaTableBuilder::new().transfer_syntax(ts_uid)).map_err(|err| {
        DecodeError::NotDicom {
            reason: format!("a bare data set without SOP Class and Instance UIDs ({err})"),
        }
    })
}

//! The ways decoding a DICOM instance can fail, each with what to do about it.

use std::path::PathBuf;

/// Why an instance could not be turned into a radiograph.
///
/// Every variant says what was wrong with the input; none of them is a bug in radassist, and the
/// caller (a CLI user, or the PACS through gRPC `INVALID_ARGUMENT`) can act on the message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{path} is {size} bytes, more than the limit of {limit} bytes for one instance")]
    FileTooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },

    #[error("not a DICOM instance: {reason}")]
    NotDicom { reason: String },

    #[error(
        "the DICOM data cannot be parsed ({reason}); the file is truncated or corrupt: \
             ask the sender to send it again"
    )]
    Malformed { reason: String },

    #[error("required attribute {name} {tag} is missing")]
    MissingAttribute { name: &'static str, tag: String },

    #[error("attribute {name} {tag} has an invalid value {value:?}: {reason}")]
    InvalidAttribute {
        name: &'static str,
        tag: String,
        value: String,
        reason: String,
    },

    #[error(
        "this instance holds no image (SOP Class {sop_class}, no Pixel Data): radassist \
             needs a CR or DX radiograph"
    )]
    NotAnImage { sop_class: String },

    #[error(
        "photometric interpretation {0} is not a greyscale radiograph: radassist decodes \
             MONOCHROME1 and MONOCHROME2 images only"
    )]
    NotMonochrome(String),

    #[error(
        "the instance has {frames} frames, but a radiograph is one frame: send each view \
             as its own instance"
    )]
    MultiFrame { frames: u32 },

    #[error("the frame is {rows} x {columns} pixels, more than the limit of {limit} pixels")]
    ImageTooLarge { rows: u32, columns: u32, limit: u64 },

    #[error(
        "transfer syntax {uid} ({name}) cannot be decoded: {reason}. Ask the sender to use \
             an uncompressed or lossless transfer syntax"
    )]
    UnsupportedTransferSyntax {
        uid: String,
        name: String,
        reason: String,
    },

    #[error("the pixel data ({syntax}) could not be decoded: {reason}")]
    Codec { syntax: String, reason: String },

    #[error(
        "the pixel data has {actual} bytes, but the header (Rows, Columns, Bits Allocated, \
             Samples per Pixel) needs {expected}: the instance is truncated or its header is wrong"
    )]
    PixelDataTooShort { expected: u64, actual: u64 },

    #[error(
        "the decoded frame is {actual_columns} x {actual_rows}, but the header says \
             {columns} x {rows}: refusing an image whose geometry is in doubt"
    )]
    FrameSizeMismatch {
        rows: u32,
        columns: u32,
        actual_rows: u32,
        actual_columns: u32,
    },
}

impl DecodeError {
    pub(crate) fn malformed(err: impl std::fmt::Display) -> Self {
        DecodeError::Malformed {
            reason: err.to_string(),
        }
    }

    pub(crate) fn codec(syntax: &str, reason: impl std::fmt::Display) -> Self {
        DecodeError::Codec {
            syntax: syntax.to_string(),
            reason: reason.to_string(),
        }
    }
}

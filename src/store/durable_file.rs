//! Writing one new file durably, as cheaply as the disk allows: the blob store's last step
//! before a catalog row is committed and the sender told STORED.
//!
//! The bytes go to the disk with direct I/O (`O_DIRECT`): the disk takes them straight from the
//! caller's memory when it is block-aligned (an [`AlignedBuffer`]), otherwise from a small
//! aligned staging buffer of this thread's, and nothing is copied into the page cache. Filling
//! fresh page-cache pages was the largest single cost of ingest (about 40 % of the server's CPU
//! with 16 streams on these machines), and an instance just received is not read again until
//! its study is analysed. Where the filesystem refuses direct I/O (tmpfs, some network
//! filesystems) the same file is written with ordinary buffered writes. Either way the file is
//! fsynced before the call returns.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Direct I/O needs buffer addresses, lengths and file offsets in multiples of the device's
/// logical block size (512 or 4096 bytes): 4096 serves both.
const ALIGNMENT: usize = 4096;
/// The staging buffer: the bytes go to the disk this much at a time.
const STAGING_BYTES: usize = 1 << 20;

thread_local! {
    /// Each writing thread keeps one staging buffer (allocated on its first direct write), so
    /// the pages are touched once, not once per instance.
    static STAGING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes `bytes` to `path`, which must not exist yet, and fsyncs the file (not its folder: the
/// caller renames it into place and fsyncs that).
pub fn write_new_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let direct = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(path);
    match direct.and_then(|file| write_direct(file, bytes)) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // The filesystem does not take direct I/O (or not with this alignment).
            let _ = std::fs::remove_file(path);
            write_buffered(path, bytes)
        }
        other => other,
    }
}

fn write_direct(mut file: File, bytes: &[u8]) -> std::io::Result<()> {
    // Whole blocks of aligned memory go as they are; the rest (all of it when unaligned, else
    // the last partial block) through the staging buffer.
    let direct = if bytes.as_ptr().align_offset(ALIGNMENT) == 0 {
        bytes.len() - bytes.len() % ALIGNMENT
    } else {
        0
    };
    file.write_all(&bytes[..direct])?;
    STAGING.with_borrow_mut(|staging| {
        if staging.is_empty() {
            staging.resize(STAGING_BYTES + ALIGNMENT, 0);
        }
        let start = staging.as_ptr().align_offset(ALIGNMENT);
        let buffer = &mut staging[start..start + STAGING_BYTES];
        for piece in bytes[direct..].chunks(STAGING_BYTES) {
            // The last piece is padded with zeros to a whole block; set_len cuts the padding.
            let padded = piece.len().next_multiple_of(ALIGNMENT);
            buffer[..piece.len()].copy_from_slice(piece);
            buffer[piece.len()..padded].fill(0);
            file.write_all(&buffer[..padded])?;
        }
        Ok::<(), std::io::Error>(())
    })?;
    file.set_len(bytes.len() as u64)?;
    file.sync_all()
}

/// A reusable buffer whose contents start on a block boundary, so that [`write_new_file`]
/// hands them to the disk without a copy. Ingest assembles each received instance in one.
#[derive(Default)]
pub struct AlignedBuffer(Vec<u8>);

impl AlignedBuffer {
    /// The pieces, one after another, in this buffer (grown when they do not fit).
    pub fn assemble<'a>(&'a mut self, pieces: &[impl AsRef<[u8]>]) -> &'a [u8] {
        let length: usize = pieces.iter().map(|p| p.as_ref().len()).sum();
        if self.0.len() < length + ALIGNMENT {
            // A new allocation, not a resize: the old contents need not be copied.
            self.0 = vec![0; length.next_multiple_of(ALIGNMENT) + ALIGNMENT];
        }
        let start = self.0.as_ptr().align_offset(ALIGNMENT);
        let mut at = start;
        for piece in pieces {
            let piece = piece.as_ref();
            self.0[at..at + piece.len()].copy_from_slice(piece);
            at += piece.len();
        }
        &self.0[start..at]
    }

    /// How many bytes the buffer holds on to.
    pub fn capacity(&self) -> usize {
        self.0.len()
    }
}

fn write_buffered(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lengths around the block and staging sizes come back byte for byte, with nothing of the
    /// padding, from unaligned and from aligned memory, and from the buffered fallback.
    #[test]
    fn files_hold_exactly_the_bytes_written() {
        let lengths = [
            0,
            1,
            ALIGNMENT - 1,
            ALIGNMENT,
            ALIGNMENT + 1,
            STAGING_BYTES - 1,
            STAGING_BYTES,
            STAGING_BYTES + 7,
            2 * STAGING_BYTES + ALIGNMENT + 3,
        ];
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let folder = dir.path();
        for (i, &length) in lengths.iter().enumerate() {
            let bytes: Vec<u8> = (0..length).map(|j| (j * 31 + i) as u8).collect();
            let path = folder.join(format!("file-{length}"));
            write_new_file(&path, &bytes).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "{length} bytes");
            let path = folder.join(format!("buffered-{length}"));
            write_buffered(&path, &bytes).unwrap();
            assert_eq!(
                std::fs::read(&path).unwrap(),
                bytes,
                "{length} bytes, buffered"
            );
        }
        // Aligned memory (its whole blocks written without the staging buffer) gives the same.
        let mut aligned = AlignedBuffer::default();
        for &length in &lengths {
            let bytes: Vec<u8> = (0..length).map(|j| (j * 7 + 3) as u8).collect();
            let pieces: Vec<&[u8]> = bytes.chunks(100_000).collect();
            let assembled = aligned.assemble(&pieces);
            assert_eq!(assembled, &bytes[..]);
            assert_eq!(assembled.as_ptr().align_offset(ALIGNMENT), 0);
            let path = folder.join(format!("aligned-{length}"));
            write_new_file(&path, assembled).unwrap();
            assert_eq!(
                std::fs::read(&path).unwrap(),
                bytes,
                "{length} aligned bytes"
            );
        }
        // An existing file is never overwritten.
        let existing = folder.join("file-1");
        let error = write_new_file(&existing, b"other").unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&existing).unwrap().len(), 1);
    }
}

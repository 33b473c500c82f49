//! Where DICOM instances live: a blob store, content-addressed by SHA-256.
//!
//! [`BlobStore`] is what the catalogue and the worker need of it (put durably, get, exists);
//! [`FolderBlobStore`] is the embedded default: `blobs/ab/<sha256>` under the data folder,
//! each blob written to a temporary file with direct I/O, fsynced, renamed into place and its
//! folder fsynced before `put` returns, so an acknowledged instance survives a crash. The 256
//! folders `blobs/00` to `blobs/ff` are made (and made durable) when the store is opened, so
//! storing a blob never creates a folder: one level of 256 folders holds millions of blobs
//! (about 4,000 a folder at a million), while a second level (65,536 folders) would cost a
//! young store a folder creation and an extra fsync for most of its first 65,000 instances.
//! Blobs that earlier versions stored as `blobs/ab/cd/<sha256>` are still found there. The S3
//! store (`s3_blobs`) implements the same trait.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What the service needs of the place its DICOM blobs live.
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` under their SHA-256 (hex) durably: once this returns, a crash keeps them.
    fn put(&self, sha256: &str, bytes: &[u8]) -> io::Result<()>;
    /// Keeps the bytes of an instance that conflicted with a stored one, for review.
    fn put_conflict(&self, name: &str, bytes: &[u8]) -> io::Result<()>;
    fn exists(&self, sha256: &str) -> io::Result<bool>;
    fn get(&self, sha256: &str) -> io::Result<Vec<u8>>;
    /// The blob as a local file, where the store has one (decoders can then read only what
    /// they need, a header say).
    fn local_path(&self, sha256: &str) -> Option<PathBuf>;
    /// Whether the store answers now (for health); what is wrong when it does not.
    fn check(&self) -> io::Result<()>;
    /// The bytes free for new blobs on the store's own disk (None: not a local disk, e.g. a
    /// bucket), for the ingest reserve (`[service] min_free_bytes`).
    fn free_bytes(&self) -> Option<u64> {
        None
    }
}

/// Blobs in a folder of the local file system.
pub struct FolderBlobStore {
    /// The data folder: `blobs/` and `conflicts/` are inside.
    root: PathBuf,
    /// Blob folders this process has made durable (created, parents fsynced).
    durable_folders: Mutex<std::collections::HashSet<PathBuf>>,
}

pub(super) fn sync_dir(path: &Path) -> io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

/// Creates `folder` and whichever of its parents are missing, and fsyncs the folder holding
/// each one it made: a new folder's name survives a power cut only once its parent is synced
/// (without this, a new data folder, and everything acknowledged in it, could vanish).
pub(super) fn create_folder_durably(folder: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = folder.ancestors().take_while(|f| !f.exists()).collect();
    std::fs::create_dir_all(folder)?;
    for made in missing.iter().rev() {
        match made.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent)?,
            _ => sync_dir(Path::new("."))?,
        }
    }
    Ok(())
}

fn valid_sha(sha256: &str) -> io::Result<()> {
    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{sha256:?} is not a SHA-256 in hex"),
        ))
    }
}

impl FolderBlobStore {
    /// Opens the folder, making `blobs/tmp` and `conflicts` as needed. With `recover`, removes
    /// the half-written blobs a crash left in `blobs/tmp` (never acknowledged); only the one
    /// process that owns the store may do that, never an inspection beside a live server.
    pub fn open(root: &Path, recover: bool) -> io::Result<FolderBlobStore> {
        let store = FolderBlobStore {
            root: root.to_path_buf(),
            durable_folders: Mutex::new(Default::default()),
        };
        if recover {
            store.make_folders()?;
            for entry in std::fs::read_dir(root.join("blobs/tmp"))? {
                std::fs::remove_file(entry?.path())?;
            }
        }
        Ok(store)
    }

    /// Makes the folders blobs are written into (`blobs/tmp`, `blobs/00` to `blobs/ff`,
    /// `conflicts`) where they are missing, and makes their entries durable: every process
    /// that writes blobs does this once, before its first `put`.
    pub fn make_folders(&self) -> io::Result<()> {
        let blobs = self.root.join("blobs");
        let mut folders: Vec<PathBuf> = (0..=255u8)
            .map(|prefix| blobs.join(format!("{prefix:02x}")))
            .collect();
        folders.push(blobs.join("tmp"));
        for folder in &folders {
            std::fs::create_dir_all(folder)?;
        }
        std::fs::create_dir_all(self.root.join("conflicts"))?;
        sync_dir(&blobs)?;
        sync_dir(&self.root)?;
        folders.push(self.root.join("conflicts"));
        self.durable_folders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(folders);
        Ok(())
    }

    /// Where a new blob goes.
    fn path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs").join(&sha256[..2]).join(sha256)
    }

    /// Where blob `sha256` is, if it is stored: where [`Self::path`] puts it, or where
    /// versions before the one-level layout did (`blobs/ab/cd/<sha256>`).
    fn find(&self, sha256: &str) -> Option<PathBuf> {
        let path = self.path(sha256);
        if path.exists() {
            return Some(path);
        }
        let earlier = self
            .root
            .join("blobs")
            .join(&sha256[..2])
            .join(&sha256[2..4])
            .join(sha256);
        earlier.exists().then_some(earlier)
    }

    /// Where blob `sha256` is read from: where it is found, else where it would be.
    fn located(&self, sha256: &str) -> PathBuf {
        self.find(sha256).unwrap_or_else(|| self.path(sha256))
    }

    /// Writes bytes durably to `target` (temporary file written and fsynced, renamed, the
    /// folder fsynced).
    fn write_durably(&self, bytes: &[u8], target: &Path) -> io::Result<()> {
        let folder = target.parent().expect("blob paths have a folder");
        self.ensure_folder(folder)?;
        let temporary = self.root.join("blobs/tmp").join(format!(
            "{}.{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        if let Err(e) = crate::store::durable_file::write_new_file(&temporary, bytes) {
            // A full disk, say: what was written of it goes, so it does not hold the space.
            let _ = std::fs::remove_file(&temporary);
            return Err(e);
        }
        std::fs::rename(&temporary, target)?;
        sync_dir(folder)
    }

    /// Creates `folder` (inside the store) and its missing parents, and fsyncs the parent of
    /// each so that their entries survive a crash: once per folder and process, before the
    /// first blob in it is acknowledged (whichever thread created it). The folders
    /// [`Self::make_folders`] made are durable already; this covers a folder removed since.
    /// The walk up stops at the first folder already durable.
    fn ensure_folder(&self, folder: &Path) -> io::Result<()> {
        let durable = || {
            self.durable_folders
                .lock()
                .unwrap_or_else(|p| p.into_inner())
        };
        if durable().contains(folder) {
            return Ok(());
        }
        std::fs::create_dir_all(folder)?;
        let mut made_durable = vec![];
        let mut at = folder;
        while at != self.root && !durable().contains(at) {
            let Some(parent) = at.parent() else { break };
            sync_dir(parent)?;
            made_durable.push(at.to_path_buf());
            at = parent;
        }
        // Only now, with every entry up the chain synced, may other threads skip these.
        durable().extend(made_durable);
        Ok(())
    }
}

/// The bytes an unprivileged process may still write on the filesystem holding `path`.
fn free_bytes_at(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statvfs the call fills.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stats.f_bavail as u64 * stats.f_frsize as u64)
}

impl BlobStore for FolderBlobStore {
    fn free_bytes(&self) -> Option<u64> {
        free_bytes_at(&self.root).ok()
    }

    fn check(&self) -> io::Result<()> {
        let tmp = self.root.join("blobs/tmp");
        if std::fs::metadata(&tmp)?.permissions().readonly() {
            return Err(io::Error::other(format!("{} is read-only", tmp.display())));
        }
        Ok(())
    }

    fn put(&self, sha256: &str, bytes: &[u8]) -> io::Result<()> {
        valid_sha(sha256)?;
        if self.find(sha256).is_some() {
            return Ok(());
        }
        self.write_durably(bytes, &self.path(sha256))
    }

    fn put_conflict(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a conflict name (UID and digits)"),
            ));
        }
        self.write_durably(bytes, &self.root.join("conflicts").join(name))
    }

    fn exists(&self, sha256: &str) -> io::Result<bool> {
        valid_sha(sha256)?;
        Ok(self.find(sha256).is_some())
    }

    fn get(&self, sha256: &str) -> io::Result<Vec<u8>> {
        valid_sha(sha256)?;
        std::fs::read(self.located(sha256))
    }

    fn local_path(&self, sha256: &str) -> Option<PathBuf> {
        valid_sha(sha256).ok()?;
        Some(self.located(sha256))
    }
}

/// A stored instance decoded (from its local file where the store has one).
pub fn decode(blobs: &dyn BlobStore, sha256: &str) -> Result<crate::imaging::Radiograph, String> {
    let limits = crate::dicom::DecodeLimits::default();
    match blobs.local_path(sha256) {
        Some(path) => crate::dicom::read_file(&path, &limits),
        None => crate::dicom::read_bytes(&blobs.get(sha256).map_err(|e| e.to_string())?, &limits),
    }
    .map_err(|e| e.to_string())
}

/// A stored instance's header, without decoding its pixels.
pub fn decode_header(
    blobs: &dyn BlobStore,
    sha256: &str,
) -> Result<crate::dicom::ImageHeader, String> {
    let limits = crate::dicom::DecodeLimits::default();
    match blobs.local_path(sha256) {
        Some(path) => crate::dicom::read_header(&path, &limits).map_err(|e| e.to_string()),
        None => crate::dicom::read_header_bytes(&blobs.get(sha256).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_stored_once_read_back_and_names_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FolderBlobStore::open(dir.path(), true).unwrap();
        let sha = "ab".repeat(32);
        assert!(!blobs.exists(&sha).unwrap());
        blobs.put(&sha, b"first").unwrap();
        blobs.put(&sha, b"ignored: content-addressed").unwrap();
        assert_eq!(blobs.get(&sha).unwrap(), b"first");
        assert!(blobs.exists(&sha).unwrap());
        assert!(blobs.put("../../etc/passwd", b"x").is_err());
        assert!(blobs.put_conflict("../x", b"x").is_err());
        blobs.put_conflict("1.2.3.abcdef", b"other").unwrap();
        assert!(std::fs::read_dir(dir.path().join("blobs/tmp"))
            .unwrap()
            .next()
            .is_none());
        // One level of folders, all made when the store opened: storing made none.
        assert_eq!(
            std::fs::read(dir.path().join("blobs/ab").join(&sha)).unwrap(),
            b"first"
        );
        let folders = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
        assert_eq!(folders, 257, "blobs/00 to blobs/ff and blobs/tmp");
    }

    /// A blob an earlier version stored two folders deep is found, read and not stored again.
    #[test]
    fn a_blob_in_the_earlier_two_level_layout_is_still_found() {
        let dir = tempfile::tempdir().unwrap();
        let sha = "cd".repeat(32);
        let earlier = dir.path().join("blobs/cd/cd");
        std::fs::create_dir_all(&earlier).unwrap();
        std::fs::write(earlier.join(&sha), b"stored before").unwrap();
        let blobs = FolderBlobStore::open(dir.path(), true).unwrap();
        assert!(blobs.exists(&sha).unwrap());
        assert_eq!(blobs.get(&sha).unwrap(), b"stored before");
        assert_eq!(blobs.local_path(&sha), Some(earlier.join(&sha)));
        blobs.put(&sha, b"stored before").unwrap();
        assert!(!dir.path().join("blobs/cd").join(&sha).exists());
    }
}

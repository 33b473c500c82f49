//! The digest of a model pack: which exact files produced a result.
//!
//! A pack is named by its manifest's name and version, but a site can change a file and keep
//! both. Every result therefore also names the pack by the SHA-256 of its files
//! ([`pack_digest`]): each regular file under the folder, in the order of its path relative to
//! the folder, hashed as the path, its length and its bytes (so renaming or moving bytes between
//! files changes the digest). Computed once when the pack is loaded.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Every regular file under `folder`, as paths relative to it, sorted.
fn files(folder: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in std::fs::read_dir(folder.join(&relative))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = relative.join(entry.file_name());
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The SHA-256 of the pack in `folder`, lower-case hex (64 characters).
pub fn pack_digest(folder: &Path) -> std::io::Result<String> {
    let mut hash = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    for relative in files(folder)? {
        let name = relative.to_string_lossy();
        let mut file = std::fs::File::open(folder.join(&relative))?;
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name.as_bytes());
        hash.update(file.metadata()?.len().to_le_bytes());
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hash.update(&buffer[..n]);
        }
    }
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::pack_digest;

    #[test]
    fn the_digest_changes_with_any_byte_or_name_and_not_with_the_folder() {
        let a = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("model.toml"), "name = 'x'\n").unwrap();
        std::fs::create_dir(a.path().join("weights")).unwrap();
        std::fs::write(a.path().join("weights/model.onnx"), [1u8, 2, 3]).unwrap();
        let first = pack_digest(a.path()).unwrap();
        assert_eq!(first.len(), 64);

        let b = tempfile::tempdir().unwrap();
        std::fs::write(b.path().join("model.toml"), "name = 'x'\n").unwrap();
        std::fs::create_dir(b.path().join("weights")).unwrap();
        std::fs::write(b.path().join("weights/model.onnx"), [1u8, 2, 3]).unwrap();
        assert_eq!(
            pack_digest(b.path()).unwrap(),
            first,
            "same files, another folder"
        );

        std::fs::write(b.path().join("weights/model.onnx"), [1u8, 2, 4]).unwrap();
        assert_ne!(pack_digest(b.path()).unwrap(), first, "one byte changed");
        std::fs::write(b.path().join("weights/model.onnx"), [1u8, 2, 3]).unwrap();
        std::fs::rename(
            b.path().join("weights/model.onnx"),
            b.path().join("weights/m.onnx"),
        )
        .unwrap();
        assert_ne!(pack_digest(b.path()).unwrap(), first, "a file renamed");
    }
}

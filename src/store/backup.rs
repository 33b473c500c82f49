//! Backup and restore of the embedded store (the SQLite catalogue and the blob folder), online:
//! `radassist backup DEST` while the server runs, `radassist restore BACKUP` into an empty data
//! folder.
//!
//! A backup is consistent because of how the store writes: a blob is written and fsynced before
//! the catalogue row naming it commits, and is never rewritten or deleted. So the backup first
//! takes a snapshot of the catalogue (SQLite's `VACUUM INTO` on a read-only connection: one read
//! transaction, the server's writers carry on), then copies every blob that snapshot names (an
//! instance, a result object, a queued result, a prior's report), each checked against its
//! SHA-256 on the way, and the conflicts kept for review; an instance acknowledged before the
//! backup began is in the snapshot, so its bytes are in the backup. The backup is a data folder
//! of the same layout, plus `backup.json` (what it holds), written last and durably: a folder
//! without it is an unfinished backup, and restore refuses it.
//!
//! Restore checks the backup before it writes anything (the catalogue's `PRAGMA
//! integrity_check`, its schema version, every blob it names present and matching its digest),
//! copies the blobs, and puts the catalogue in place last, so that an interrupted restore leaves
//! no catalogue and can simply be run again. Every file and folder it writes is fsynced.
//!
//! PostgreSQL and S3 are backed up with their own tools (docs/operations.md).

use super::blobs::{create_folder_durably, sync_dir, BlobStore, FolderBlobStore};
use super::hex;
use super::sqlite::schema::{read_only_connection, DATABASE, VERSION};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// What a backup holds (`backup.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// The radassist that made it.
    pub radassist: String,
    /// The catalogue's schema version.
    pub schema_version: i32,
    /// When its snapshot was taken (ms since the epoch).
    pub taken_at_ms: i64,
    pub instances: u64,
    /// Signed reads: current ones and the ones amendments replaced.
    pub signed_reads: u64,
    /// Blobs copied, and their bytes.
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Conflicting instances kept for review.
    pub conflicts: u64,
}

const INVENTORY: &str = "backup.json";

/// Why a backup or a restore did not complete (nothing it wrote is then a usable store).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{} is not empty: back up into a new or empty folder", .0.display())]
    DestinationNotEmpty(PathBuf),
    #[error("{} already holds a catalogue: restore into an empty data folder (move the old one away first)", .0.display())]
    TargetHoldsStore(PathBuf),
    #[error("no catalogue at {}: is this the data folder ([service] data_dir)?", .0.display())]
    NoCatalogue(PathBuf),
    #[error("{} is not a finished backup (no {INVENTORY}): take the backup again", .0.display())]
    Unfinished(PathBuf),
    #[error("the catalogue: {0}")]
    Catalogue(#[from] rusqlite::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("blob {sha256}: {source}")]
    Blob {
        sha256: String,
        #[source]
        source: std::io::Error,
    },
    #[error("blob {0} is damaged: its bytes do not match its SHA-256")]
    Damaged(String),
    #[error("the backup's catalogue fails SQLite's integrity check: {0}")]
    Integrity(String),
    #[error("the backup's catalogue is at schema version {0}, newer than this radassist knows ({VERSION}): restore it with the radassist that made it, or a newer one")]
    Newer(i32),
    #[error("{INVENTORY}: {0}")]
    Inventory(#[from] serde_json::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Every blob the catalogue names.
fn named_blobs(db: &Connection) -> Result<Vec<String>, BackupError> {
    let mut q = db.prepare(
        "SELECT sha256 FROM instances UNION SELECT sha256 FROM result_objects
         UNION SELECT sha256 FROM outbox UNION SELECT sha256 FROM prior_reports ORDER BY 1",
    )?;
    let rows = q.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn count(db: &Connection, sql: &str) -> Result<u64, BackupError> {
    Ok(db.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
}

/// Blob `sha256` from `from`, checked against its digest.
fn verified(from: &dyn BlobStore, sha256: &str) -> Result<Vec<u8>, BackupError> {
    let content = from.get(sha256).map_err(|source| BackupError::Blob {
        sha256: sha256.to_string(),
        source,
    })?;
    if hex(&Sha256::digest(&content)) != sha256 {
        return Err(BackupError::Damaged(sha256.to_string()));
    }
    Ok(content)
}

/// Copies every blob `db` names from `from` to `to`, each checked against its digest; their
/// number and bytes.
fn copy_blobs(
    db: &Connection,
    from: &dyn BlobStore,
    to: &dyn BlobStore,
) -> Result<(u64, u64), BackupError> {
    let (mut blobs, mut bytes) = (0, 0);
    for sha256 in named_blobs(db)? {
        let content = verified(from, &sha256)?;
        to.put(&sha256, &content)
            .map_err(|source| BackupError::Blob { sha256, source })?;
        blobs += 1;
        bytes += content.len() as u64;
    }
    Ok((blobs, bytes))
}

/// Copies the conflicts kept for review (`conflicts/` under `from` into `to`); how many.
fn copy_conflicts(from: &Path, to: &dyn BlobStore) -> Result<u64, BackupError> {
    let folder = from.join("conflicts");
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return Ok(0);
    };
    let mut copied = 0;
    for entry in entries {
        let path = entry.map_err(io(&folder))?.path();
        if path.is_file() {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let content = std::fs::read(&path).map_err(io(&path))?;
            to.put_conflict(&name, &content).map_err(io(&path))?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// The blob folder under `root`, its folders made (and made durable) for writing.
fn writable(root: &Path) -> Result<FolderBlobStore, BackupError> {
    let store = FolderBlobStore::open(root, false).map_err(io(root))?;
    store.make_folders().map_err(io(root))?;
    Ok(store)
}

/// `content` written to `path` durably: a temporary file, fsynced, renamed, the folder fsynced.
fn write_durably(path: &Path, content: &[u8]) -> Result<(), BackupError> {
    let partial = path.with_extension("partial");
    if partial.exists() {
        std::fs::remove_file(&partial).map_err(io(&partial))?;
    }
    super::durable_file::write_new_file(&partial, content).map_err(io(&partial))?;
    std::fs::rename(&partial, path).map_err(io(path))?;
    let folder = path.parent().unwrap_or(Path::new("."));
    sync_dir(folder).map_err(io(folder))
}

fn is_empty_folder(path: &Path) -> Result<bool, BackupError> {
    match std::fs::read_dir(path) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io(path)(e)),
    }
}

/// Backs up the catalogue in `data_dir` and the blobs under `blobs_root` (the data folder, or
/// `[blobs] path`) into `dest`, a new or empty folder, while the server may run.
pub fn backup(data_dir: &Path, blobs_root: &Path, dest: &Path) -> Result<Inventory, BackupError> {
    if !data_dir.join(DATABASE).is_file() {
        return Err(BackupError::NoCatalogue(data_dir.join(DATABASE)));
    }
    if !is_empty_folder(dest)? {
        return Err(BackupError::DestinationNotEmpty(dest.to_path_buf()));
    }
    create_folder_durably(dest).map_err(io(dest))?;
    let taken_at_ms = super::now_ms();
    let snapshot = dest.join(DATABASE);
    read_only_connection(data_dir)?
        .execute("VACUUM INTO ?1", [snapshot.to_string_lossy().as_ref()])?;
    std::fs::File::open(&snapshot)
        .and_then(|f| f.sync_all())
        .map_err(io(&snapshot))?;
    let db = Connection::open_with_flags(&snapshot, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let to = writable(dest)?;
    let from = FolderBlobStore::open(blobs_root, false).map_err(io(blobs_root))?;
    let (blobs, blob_bytes) = copy_blobs(&db, &from, &to)?;
    let conflicts = copy_conflicts(blobs_root, &to)?;
    let inventory = inventory(&db, taken_at_ms, blobs, blob_bytes, conflicts)?;
    sync_dir(dest).map_err(io(dest))?;
    write_durably(
        &dest.join(INVENTORY),
        serde_json::to_string_pretty(&inventory)?.as_bytes(),
    )?;
    Ok(inventory)
}

fn inventory(
    db: &Connection,
    taken_at_ms: i64,
    blobs: u64,
    blob_bytes: u64,
    conflicts: u64,
) -> Result<Inventory, BackupError> {
    Ok(Inventory {
        radassist: env!("CARGO_PKG_VERSION").into(),
        schema_version: db.query_row("PRAGMA user_version", [], |r| r.get(0))?,
        taken_at_ms,
        instances: count(db, "SELECT count(*) FROM instances")?,
        signed_reads: count(
            db,
            "SELECT (SELECT count(*) FROM work_items WHERE signed_read IS NOT NULL)
                  + (SELECT count(*) FROM superseded_reads)",
        )?,
        blobs,
        blob_bytes,
        conflicts,
    })
}

/// Restores the backup in `backup` into `data_dir` (the catalogue) and `blobs_root` (the
/// blobs), which must not hold a catalogue yet: checked first, the catalogue put in place last.
pub fn restore(
    backup: &Path,
    data_dir: &Path,
    blobs_root: &Path,
) -> Result<Inventory, BackupError> {
    let listed = backup.join(INVENTORY);
    if !listed.is_file() {
        return Err(BackupError::Unfinished(backup.to_path_buf()));
    }
    let recorded: Inventory =
        serde_json::from_slice(&std::fs::read(&listed).map_err(io(&listed))?)?;
    let target = data_dir.join(DATABASE);
    if target.exists() {
        return Err(BackupError::TargetHoldsStore(target));
    }
    let db = Connection::open_with_flags(
        backup.join(DATABASE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(BackupError::Integrity(check));
    }
    let version: i32 = db.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > VERSION {
        return Err(BackupError::Newer(version));
    }
    let from = FolderBlobStore::open(backup, false).map_err(io(backup))?;
    // Every blob first checked where it is, so a damaged backup writes nothing.
    for sha256 in named_blobs(&db)? {
        verified(&from, &sha256)?;
    }
    create_folder_durably(data_dir).map_err(io(data_dir))?;
    let to = writable(blobs_root)?;
    let (blobs, blob_bytes) = copy_blobs(&db, &from, &to)?;
    let conflicts = copy_conflicts(backup, &to)?;
    let restored = inventory(&db, recorded.taken_at_ms, blobs, blob_bytes, conflicts)?;
    drop(db);
    let content = std::fs::read(backup.join(DATABASE)).map_err(io(backup))?;
    write_durably(&target, &content)?;
    Ok(restored)
}

//! Which store a process opens, from `[store]` and `[blobs]`: SQLite or PostgreSQL for the
//! catalogue, a folder or an S3-compatible bucket for the blobs.

use super::{BlobStore, FolderBlobStore, PgStore, S3BlobStore, SqliteStore, Store};
use crate::config::{BlobBackend, Config, StoreBackend};
use std::sync::Arc;

/// Who opens the store, and so what crash recovery may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// `radassist serve`. With SQLite it is the one process that owns the store: jobs a crash
    /// left running are queued again and half-written blobs removed. With PostgreSQL nothing
    /// runs at start: a dead process's jobs come back when their leases run out.
    Owner,
    /// An administrator's command beside a live server (`radassist users`): no recovery.
    BesideServer,
}

/// The blob store `[blobs]` names (a folder defaults to `service.data_dir`).
pub fn open_blobs(config: &Config, recovery: Recovery) -> Result<Box<dyn BlobStore>, String> {
    match config.blobs.backend {
        BlobBackend::Folder => {
            let path = config
                .blobs
                .path
                .clone()
                .unwrap_or_else(|| config.service.data_dir.clone());
            // Half-written blobs are removed only where one process owns the folder: several
            // processes sharing it (PostgreSQL) never remove each other's writes in flight.
            let recover =
                recovery == Recovery::Owner && config.store.backend == StoreBackend::Sqlite;
            super::blobs::create_folder_durably(&path)
                .and_then(|_| FolderBlobStore::open(&path, recover))
                .and_then(|blobs| {
                    // Every process makes the folders it writes into (a recovering one did
                    // in `open`).
                    if !recover {
                        blobs.make_folders()?;
                    }
                    Ok(blobs)
                })
                .map(|b| Box::new(b) as Box<dyn BlobStore>)
                .map_err(|e| format!("blobs.path {}: {e}", path.display()))
        }
        BlobBackend::S3 => Ok(Box::new(S3BlobStore::open(
            &config.blobs,
            recovery == Recovery::Owner,
        )?)),
    }
}

/// The store `[store]` and `[blobs]` name. Blocks (connects, migrates): call it from a
/// blocking thread.
pub fn open_store(config: &Config, recovery: Recovery) -> Result<Arc<dyn Store>, String> {
    let blobs = open_blobs(config, recovery)?;
    match config.store.backend {
        StoreBackend::Sqlite => {
            let dir = &config.service.data_dir;
            let opened = match recovery {
                Recovery::Owner => SqliteStore::open_with_blobs(dir, blobs),
                Recovery::BesideServer => SqliteStore::open_beside_server(dir, blobs),
            };
            Ok(Arc::new(
                opened.map_err(|e| format!("{}: {e}", dir.display()))?,
            ))
        }
        StoreBackend::Postgres => Ok(Arc::new(PgStore::open(&config.store, blobs)?)),
    }
}

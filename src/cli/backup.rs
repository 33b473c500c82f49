//! `radassist backup DEST` and `radassist restore BACKUP`: the embedded store (SQLite
//! catalogue and blob folder) copied while the server runs, and put back into an empty data
//! folder ([`radassist::store::backup`]). PostgreSQL and S3 are backed up with their own tools.

use radassist::config::{BlobBackend, Config, StoreBackend};
use radassist::store::backup::{self, Inventory};
use std::path::{Path, PathBuf};

/// The catalogue's folder and the blobs' folder of an embedded store, or why this store is not
/// one.
fn embedded(config: &Config) -> Result<(PathBuf, PathBuf), String> {
    if config.store.backend != StoreBackend::Sqlite || config.blobs.backend != BlobBackend::Folder {
        return Err(
            "this store is PostgreSQL or its blobs are in S3: back those up with the \
                    database's and the object store's own tools (docs/operations.md)"
                .into(),
        );
    }
    let data = config.service.data_dir.clone();
    let blobs = config.blobs.path.clone().unwrap_or_else(|| data.clone());
    Ok((data, blobs))
}

fn print(what: &str, inventory: &Inventory) {
    println!(
        "{what}: {} instances, {} signed reads, {} blobs ({:.1} MB), {} conflicts kept for review, \
         schema version {}",
        inventory.instances,
        inventory.signed_reads,
        inventory.blobs,
        inventory.blob_bytes as f64 / 1e6,
        inventory.conflicts,
        inventory.schema_version
    );
}

pub fn backup(config: &Config, dest: &Path) -> Result<(), String> {
    let (data, blobs) = embedded(config)?;
    let inventory = backup::backup(&data, &blobs, dest).map_err(|e| e.to_string())?;
    print(&format!("backed up into {}", dest.display()), &inventory);
    Ok(())
}

pub fn restore(config: &Config, from: &Path) -> Result<(), String> {
    let (data, blobs) = embedded(config)?;
    let inventory = backup::restore(from, &data, &blobs).map_err(|e| e.to_string())?;
    print(&format!("restored into {}", data.display()), &inventory);
    Ok(())
}

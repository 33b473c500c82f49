//! The embedded store: the catalogue in SQLite (WAL, `synchronous = FULL`, so a committed row
//! survives a crash and a power cut), the blobs in a [`BlobStore`] (a folder by default).
//!
//! One writer connection behind a mutex, with group commit of ingest's catalogue rows (many
//! concurrent streams share one fsync), and one read-only WAL connection for ingest's lookups
//! (readers see the last commit without waiting for the writer). State changes are single
//! conditional `UPDATE`s whose row count says whether this caller won.

mod archive;
mod audit;
mod ingest;
mod jobs;
mod outbox;
mod reading_room;
pub(super) mod schema;
mod studies;
mod worklist;

use crate::store::blobs::FolderBlobStore;
use crate::store::documents::{from_json, to_json, SignedRead};
use crate::store::lifecycle::{JobState, StudyState, WorkItemStatus};
use crate::store::outcomes::{amend_outcome, claim_outcome, release_outcome, sign_outcome};
use crate::store::sql;
use crate::store::*;
use ingest::CommitOutcome;
use rusqlite::{params, Connection, OptionalExtension};
use schema::{migrate, read_only_connection, DATABASE};
use std::path::Path;
use std::sync::Mutex;

/// The JSON document `json` of column `index` of a work item row (column 0 its study).
fn document<T: for<'de> serde::Deserialize<'de>>(
    r: &rusqlite::Row,
    index: usize,
    what: &'static str,
    json: &str,
) -> rusqlite::Result<T> {
    from_json(json, what, &r.get::<_, String>(0)?).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub struct SqliteStore {
    db: Mutex<Connection>,
    /// A read-only connection for lookups on ingest's path.
    reader: Mutex<Connection>,
    blobs: Box<dyn BlobStore>,
    /// Catalog rows waiting for the next group commit, each with where to send its outcome.
    pending: Mutex<Vec<(ingest::CatalogRow, CommitOutcome)>>,
}

impl SqliteStore {
    /// Opens (or creates) the store in `root` as the one process that owns it: jobs a crash
    /// left running are queued again and half-written blobs removed.
    pub fn open(root: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with_blobs(root, Box::new(FolderBlobStore::open(root, true)?))
    }

    /// As [`SqliteStore::open`], with the blobs in `blobs` (a folder elsewhere, or a bucket).
    pub fn open_with_blobs(
        root: &Path,
        blobs: Box<dyn BlobStore>,
    ) -> Result<SqliteStore, StoreError> {
        let store = SqliteStore::open_catalogue(root, blobs)?;
        {
            let db = store.db();
            db.execute(
                "UPDATE jobs SET state = ?1 WHERE state = ?2",
                params![JobState::Queued, JobState::Running],
            )?;
            db.execute(
                "UPDATE studies SET state = ?1 WHERE state = ?2",
                params![StudyState::Queued, StudyState::Analyzing],
            )?;
            // Results the crashed sender had taken are due at once.
            db.execute(
                "UPDATE outbox SET next_attempt_at = ?2 WHERE state = ?1 AND next_attempt_at > ?2",
                params![OutboxState::Pending, now_ms()],
            )?;
        }
        Ok(store)
    }

    /// Opens the store for an administrator's command (`radassist users`) that may run beside
    /// a live server: the schema is brought up to date, but no crash recovery runs (the
    /// server's running jobs are its own).
    pub fn open_beside_server(
        root: &Path,
        blobs: Box<dyn BlobStore>,
    ) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_catalogue(root, blobs)
    }

    fn open_catalogue(root: &Path, blobs: Box<dyn BlobStore>) -> Result<SqliteStore, StoreError> {
        super::blobs::create_folder_durably(root)?;
        let mut db = Connection::open(root.join(DATABASE))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        migrate(&mut db)?;
        let reader = read_only_connection(root)?;
        Ok(SqliteStore {
            db: Mutex::new(db),
            reader: Mutex::new(reader),
            blobs,
            pending: Mutex::new(Vec::new()),
        })
    }

    /// Opens an existing store to inspect it (`radassist audit`), beside a live server or not:
    /// no recovery, no schema change, and every write refused by SQLite itself.
    pub fn open_read_only(root: &Path) -> Result<SqliteStore, StoreError> {
        if !root.join(DATABASE).exists() {
            return Err(StoreError::NotFound(format!(
                "no radassist store in {} (no {DATABASE}): check service.data_dir",
                root.display()
            )));
        }
        Ok(SqliteStore {
            db: Mutex::new(read_only_connection(root)?),
            reader: Mutex::new(read_only_connection(root)?),
            blobs: Box::new(FolderBlobStore::open(root, false)?),
            pending: Mutex::new(Vec::new()),
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn study_from_row(r: &rusqlite::Row) -> rusqlite::Result<StudyRow> {
        Ok(StudyRow {
            study_instance_uid: r.get(0)?,
            state: r.get(1)?,
            instance_count: r.get(2)?,
            last_instance_at: r.get(3)?,
            attempts: r.get::<_, Option<u32>>(4)?.unwrap_or(0),
            failure_reason: r.get(5)?,
            patient_id: r.get(6)?,
            accession_number: r.get(7)?,
            study_date: r.get(8)?,
        })
    }

    fn item_from_row(r: &rusqlite::Row) -> rusqlite::Result<WorkItemRow> {
        Ok(WorkItemRow {
            study_instance_uid: r.get(0)?,
            status: r.get(1)?,
            critical: r.get(2)?,
            priority: r.get(3)?,
            claimed_by: r.get(4)?,
            created_at: r.get(5)?,
            content: document(r, 6, "work item", &r.get::<_, String>(6)?)?,
            analysis_json: r.get(7)?,
            model_version: r.get(8)?,
            final_read: r
                .get::<_, Option<String>>(9)?
                .map(|json| document(r, 9, "signed read", &json))
                .transpose()?,
            signed_at: r.get(10)?,
            comparison: r.get(11)?,
            report_json: r.get(12)?,
            images_after_signing: r.get(13)?,
        })
    }

    fn outbox_from_row(r: &rusqlite::Row) -> rusqlite::Result<OutboxRow> {
        Ok(OutboxRow {
            id: r.get(0)?,
            result: OutgoingResult {
                study_instance_uid: r.get(1)?,
                sop_instance_uid: r.get(2)?,
                kind: r.get(3)?,
                peer: r.get(4)?,
                sha256: r.get(5)?,
            },
            state: r.get(6)?,
            attempts: r.get(7)?,
            last_error: r.get(8)?,
            created_at: r.get(9)?,
            next_attempt_at: r.get(10)?,
            sent_at: r.get(11)?,
            cut_off_attempt_at: r.get(12)?,
        })
    }
}

impl SqliteStore {
    /// Queues study `uid`'s analysis if it has instances not analysed yet (RECEIVING, or a
    /// PRIOR sent for analysis of its own) and, with `quiet_before`, none since then; true
    /// when it did. A study sent again (duplicates only) is not analysed again.
    fn complete_if_new(&self, uid: &str, quiet_before: Option<i64>) -> Result<bool, StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let completed = tx.execute(
            "UPDATE studies SET state = ?2 WHERE study_instance_uid = ?1 AND state IN (?3, ?4)
                 AND (?5 IS NULL OR last_instance_at < ?5)",
            params![
                uid,
                StudyState::Queued,
                StudyState::Receiving,
                StudyState::Prior,
                quiet_before
            ],
        )?;
        if completed == 0 {
            return Ok(false);
        }
        queue_job(&tx, uid)?;
        tx.commit()?;
        Ok(true)
    }
}

/// Queues study `uid`'s analysis unless it is already queued or running (one conditional
/// upsert); the study becomes QUEUED when it was.
fn queue_job(tx: &rusqlite::Transaction, uid: &str) -> rusqlite::Result<bool> {
    let queued = tx.execute(
        "INSERT INTO jobs (study_instance_uid, state, attempts, updated_at) VALUES (?1, ?2, 0, ?3)
         ON CONFLICT (study_instance_uid) DO UPDATE SET state = ?2, attempts = 0, last_error = '', updated_at = ?3
         WHERE jobs.state NOT IN (?2, ?4)",
        params![uid, JobState::Queued, now_ms(), JobState::Running],
    )?;
    if queued > 0 {
        tx.execute(
            &sql::sqlite(sql::STUDY_STATE_CLEARED),
            params![uid, StudyState::Queued],
        )?;
    }
    Ok(queued > 0)
}

/// Records the results made in `tx` and queues their copies for the peers (a result already
/// recorded, or already queued for that peer, stays as it is).
fn record_results(tx: &rusqlite::Transaction, results: &ResultBatch) -> rusqlite::Result<()> {
    let now = now_ms();
    for r in &results.made {
        tx.execute(
            &sql::sqlite(sql::RECORD_RESULT),
            params![
                r.study_instance_uid,
                r.sop_instance_uid,
                r.object,
                r.kind,
                r.sha256,
                now,
                r.attributes
            ],
        )?;
    }
    for r in &results.queued {
        tx.execute(
            &sql::sqlite(sql::QUEUE_RESULT),
            params![
                r.study_instance_uid,
                r.sop_instance_uid,
                r.kind,
                r.peer,
                r.sha256,
                OutboxState::Pending,
                now
            ],
        )?;
    }
    Ok(())
}

impl Store for SqliteStore {
    fn blobs(&self) -> &dyn BlobStore {
        self.blobs.as_ref()
    }
}

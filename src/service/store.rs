//! The durable store behind the service: DICOM blobs on disk, everything else in SQLite.
//!
//! Blobs are content-addressed (`blobs/ab/cd/<sha256>`): written to a temporary file, fsynced,
//! renamed into place and the folder fsynced, before the catalog row is committed, and only
//! then is the sender told STORED. SQLite runs in WAL mode with `synchronous = FULL`, so a
//! committed row survives a crash (and a power cut). The catalog, the job queue, work items
//! (drafts and final reads) and the audit log are tables here; [`Store`] is the interface the
//! service uses ([`SqliteStore`] implements it), so a PostgreSQL implementation can take its place (jobs taken with
//! `FOR UPDATE SKIP LOCKED` instead of the single-writer lock SQLite has).

use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("blob store: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Precondition(String),
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What was received of one instance, already parsed.
pub struct IncomingInstance<'a> {
    pub bytes: &'a [u8],
    /// SHA-256 of `bytes`, hex.
    pub sha256: &'a str,
    pub sop_instance_uid: &'a str,
    pub study_instance_uid: &'a str,
    pub series_instance_uid: &'a str,
    pub patient_id: &'a str,
    pub accession_number: &'a str,
    pub study_date: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored,
    Duplicate,
    Conflict,
}

/// A study row.
#[derive(Debug, Clone)]
pub struct StudyRow {
    pub study_instance_uid: String,
    pub state: String,
    pub instance_count: u32,
    pub last_instance_at: i64,
    pub attempts: u32,
    pub failure_reason: String,
    pub patient_id: String,
    pub accession_number: String,
    pub study_date: String,
}

/// A work item row. `template` is the protobuf WorkItem the worker built (study fields, draft
/// with evidence, device checks); `final_read` the protobuf FinalRead once signed; the analysis
/// is kept as JSON for audit and debugging.
#[derive(Debug, Clone)]
pub struct WorkItemRow {
    pub study_instance_uid: String,
    pub status: String,
    pub critical: bool,
    pub priority: i64,
    pub claimed_by: Option<String>,
    pub created_at: i64,
    pub template: Vec<u8>,
    pub analysis_json: String,
    pub model_version: String,
    pub final_read: Option<Vec<u8>>,
    pub signed_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct JobRow {
    pub study_instance_uid: String,
    pub state: String,
    pub attempts: u32,
    pub last_error: String,
    pub completions: u32,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRow {
    pub at_ms: i64,
    pub who: String,
    pub role: String,
    pub action: String,
    pub resource: String,
    pub peer: String,
}

pub struct SqliteStore {
    db: Mutex<Connection>,
    /// A read-only connection for lookups on ingest's path.
    reader: Mutex<Connection>,
    root: PathBuf,
    /// Catalog rows waiting for the next group commit, each with where to send its outcome.
    pending: Mutex<Vec<(CatalogRow, CommitOutcome)>>,
    /// Blob folders this process has made durable (created, parents fsynced).
    durable_folders: Mutex<std::collections::HashSet<PathBuf>>,
}

/// Where a committed row's outcome goes: inserted (true), already there (false), or the error.
type CommitOutcome = std::sync::mpsc::Sender<Result<bool, String>>;

/// An instance's catalog row (its blob is already durable).
struct CatalogRow {
    sop_instance_uid: String,
    study_instance_uid: String,
    series_instance_uid: String,
    sha256: String,
    size: i64,
    patient_id: String,
    accession_number: String,
    study_date: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    study_instance_uid TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    received_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS instances_by_study ON instances (study_instance_uid);
CREATE TABLE IF NOT EXISTS conflicts (
    id INTEGER PRIMARY KEY,
    sop_instance_uid TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    received_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS studies (
    study_instance_uid TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    accession_number TEXT NOT NULL,
    study_date TEXT NOT NULL,
    state TEXT NOT NULL,
    last_instance_at INTEGER NOT NULL,
    failure_reason TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS studies_by_patient ON studies (patient_id, study_date);
CREATE TABLE IF NOT EXISTS jobs (
    study_instance_uid TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    completions INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS work_items (
    study_instance_uid TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    critical INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    claimed_by TEXT,
    created_at INTEGER NOT NULL,
    template BLOB NOT NULL,
    analysis_json TEXT NOT NULL,
    model_version TEXT NOT NULL,
    final_read BLOB,
    signed_at INTEGER);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    who TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    peer TEXT NOT NULL);
";

fn sync_dir(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

impl SqliteStore {
    /// Opens (or creates) the store in `root`; jobs a crash left running are queued again.
    pub fn open(root: &Path) -> Result<SqliteStore, StoreError> {
        for folder in ["blobs/tmp", "conflicts"] {
            std::fs::create_dir_all(root.join(folder))?;
        }
        for folder in ["blobs", ""] {
            sync_dir(&root.join(folder))?;
        }
        let db = Connection::open(root.join("radassist.sqlite"))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        db.execute_batch(SCHEMA)?;
        db.execute(
            "UPDATE jobs SET state = 'queued' WHERE state = 'running'",
            [],
        )?;
        db.execute(
            "UPDATE studies SET state = 'QUEUED' WHERE state = 'ANALYZING'",
            [],
        )?;
        // Half-written blobs of a crash were never acknowledged.
        for entry in std::fs::read_dir(root.join("blobs/tmp"))? {
            std::fs::remove_file(entry?.path())?;
        }
        // WAL readers see the last commit without waiting for the writer (whose commits wait
        // on fsync): ingest's "was this UID stored before?" asks here.
        let reader = Connection::open_with_flags(
            root.join("radassist.sqlite"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(SqliteStore {
            db: Mutex::new(db),
            reader: Mutex::new(reader),
            root: root.to_path_buf(),
            pending: Mutex::new(Vec::new()),
            durable_folders: Mutex::new(std::collections::HashSet::new()),
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes bytes durably to `target` (temporary file written and fsynced, renamed, the
    /// folder fsynced).
    fn write_durably(&self, bytes: &[u8], target: &Path) -> std::io::Result<()> {
        let folder = target.parent().expect("blob paths have a folder");
        self.ensure_folder(folder)?;
        let temporary = self.root.join("blobs/tmp").join(format!(
            "{}.{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        super::durable_file::write_new_file(&temporary, bytes)?;
        std::fs::rename(&temporary, target)?;
        sync_dir(folder)
    }

    /// Creates `folder` (inside the store) and its missing parents, and fsyncs each parent so
    /// that their entries survive a crash: once per folder and process, before the first blob
    /// in it is acknowledged (whichever thread created it).
    fn ensure_folder(&self, folder: &Path) -> std::io::Result<()> {
        let durable = || {
            self.durable_folders
                .lock()
                .unwrap_or_else(|p| p.into_inner())
        };
        if durable().contains(folder) {
            return Ok(());
        }
        std::fs::create_dir_all(folder)?;
        let mut at = folder;
        while at != self.root {
            let Some(parent) = at.parent() else { break };
            sync_dir(parent)?;
            at = parent;
        }
        durable().insert(folder.to_path_buf());
        Ok(())
    }

    /// Commits a catalog row; true if it was inserted (false: the UID was there already).
    ///
    /// Group commit: the row joins the pending list; whoever gets the database next commits every
    /// pending row in one transaction (one fsync for all), and each caller gets its own outcome.
    /// Many concurrent streams thus share the cost of `synchronous = FULL`.
    fn commit_instance(&self, row: CatalogRow) -> Result<bool, StoreError> {
        let (sender, outcome) = std::sync::mpsc::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((row, sender));
        loop {
            if let Ok(result) = outcome.try_recv() {
                return result.map_err(|e| StoreError::Io(std::io::Error::other(e)));
            }
            let mut db = self.db();
            let batch =
                std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
            if batch.is_empty() {
                // Our row went with the previous commit: its outcome is on the way.
                drop(db);
                let result = outcome
                    .recv()
                    .map_err(|_| StoreError::Io(std::io::Error::other("the commit was lost")))?;
                return result.map_err(|e| StoreError::Io(std::io::Error::other(e)));
            }
            let now = now_ms();
            let committed = (|| -> rusqlite::Result<Vec<bool>> {
                let tx = db.transaction()?;
                let mut inserted = Vec::with_capacity(batch.len());
                for (r, _) in &batch {
                    let new = tx.execute(
                        "INSERT OR IGNORE INTO instances (sop_instance_uid, study_instance_uid, series_instance_uid, sha256, size, received_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![r.sop_instance_uid, r.study_instance_uid, r.series_instance_uid, r.sha256, r.size, now],
                    )? > 0;
                    if new {
                        tx.execute(
                            "INSERT INTO studies (study_instance_uid, patient_id, accession_number, study_date, state, last_instance_at)
                             VALUES (?1, ?2, ?3, ?4, 'RECEIVING', ?5)
                             ON CONFLICT (study_instance_uid) DO UPDATE SET state = 'RECEIVING', last_instance_at = ?5",
                            params![r.study_instance_uid, r.patient_id, r.accession_number, r.study_date, now],
                        )?;
                    }
                    inserted.push(new);
                }
                tx.commit()?;
                Ok(inserted)
            })();
            drop(db);
            match committed {
                Ok(inserted) => {
                    for ((_, sender), new) in batch.into_iter().zip(inserted) {
                        let _ = sender.send(Ok(new));
                    }
                }
                Err(e) => {
                    for (_, sender) in batch {
                        let _ = sender.send(Err(e.to_string()));
                    }
                }
            }
        }
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

    const STUDY_SELECT: &'static str = "SELECT s.study_instance_uid, s.state,
            (SELECT COUNT(*) FROM instances i WHERE i.study_instance_uid = s.study_instance_uid),
            s.last_instance_at, j.attempts, s.failure_reason, s.patient_id, s.accession_number, s.study_date
        FROM studies s LEFT JOIN jobs j ON j.study_instance_uid = s.study_instance_uid";

    fn item_from_row(r: &rusqlite::Row) -> rusqlite::Result<WorkItemRow> {
        Ok(WorkItemRow {
            study_instance_uid: r.get(0)?,
            status: r.get(1)?,
            critical: r.get(2)?,
            priority: r.get(3)?,
            claimed_by: r.get(4)?,
            created_at: r.get(5)?,
            template: r.get(6)?,
            analysis_json: r.get(7)?,
            model_version: r.get(8)?,
            final_read: r.get(9)?,
            signed_at: r.get(10)?,
        })
    }

    const ITEM_SELECT: &'static str = "SELECT study_instance_uid, status, critical, priority, claimed_by, created_at, template, analysis_json, model_version, final_read, signed_at FROM work_items";
}

/// What the service needs of its store. [`SqliteStore`] is the embedded default; a PostgreSQL
/// catalog with an S3-compatible blob store implements the same calls (jobs taken with
/// `FOR UPDATE SKIP LOCKED`, so several workers share one queue).
pub trait Store: Send + Sync {
    fn put_instance(
        &self,
        instance: &IncomingInstance,
    ) -> Result<(StoreOutcome, String), StoreError>;
    fn work_items(
        &self,
        statuses: &[&str],
        critical_only: bool,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<WorkItemRow>, StoreError>;
    fn signed_items(
        &self,
        start: Option<i64>,
        end: Option<i64>,
        model_version: &str,
    ) -> Result<Vec<WorkItemRow>, StoreError>;
    /// The patient's other studies as (Study Instance UID, Study Date as catalogued), newest
    /// date first, undated last.
    fn other_studies_of_patient(
        &self,
        patient_id: &str,
        except: &str,
    ) -> Result<Vec<(String, String)>, StoreError>;
    fn blob_path(&self, sha256: &str) -> PathBuf;
    fn study(&self, uid: &str) -> Result<StudyRow, StoreError>;
    fn complete_study(&self, uid: &str) -> Result<StudyRow, StoreError>;
    fn stable_studies(&self, quiet_ms: i64) -> Result<Vec<String>, StoreError>;
    fn queue_depth(&self) -> Result<i64, StoreError>;
    fn take_job(&self) -> Result<Option<(String, i64)>, StoreError>;
    fn study_instances(&self, uid: &str) -> Result<Vec<(String, String)>, StoreError>;
    fn finish_job(&self, uid: &str, item: &WorkItemRow) -> Result<(), StoreError>;
    fn fail_job(&self, uid: &str, error: &str, max_attempts: u32) -> Result<bool, StoreError>;
    fn jobs(&self, state: &str) -> Result<Vec<JobRow>, StoreError>;
    fn work_item(&self, uid: &str) -> Result<WorkItemRow, StoreError>;
    fn claim(&self, uid: &str, who: &str, release: bool) -> Result<WorkItemRow, StoreError>;
    fn sign(&self, uid: &str, who: &str, final_read: &[u8]) -> Result<WorkItemRow, StoreError>;
    fn audit(&self, row: &AuditRow) -> Result<(), StoreError>;
    fn audit_log(&self, since_ms: i64, who: &str) -> Result<Vec<AuditRow>, StoreError>;
}

impl Store for SqliteStore {
    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root
            .join("blobs")
            .join(&sha256[..2])
            .join(&sha256[2..4])
            .join(sha256)
    }

    /// Stores one instance: STORED (durable and catalogued), DUPLICATE (same UID, same bytes)
    /// or CONFLICT (same UID, other bytes: kept under conflicts/ for review).
    fn put_instance(
        &self,
        instance: &IncomingInstance,
    ) -> Result<(StoreOutcome, String), StoreError> {
        let sha = instance.sha256.to_string();
        let existing: Option<String> = self
            .reader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .query_row(
                "SELECT sha256 FROM instances WHERE sop_instance_uid = ?1",
                [instance.sop_instance_uid],
                |r| r.get(0),
            )
            .optional()?;
        match existing {
            Some(stored) if stored == sha => return Ok((StoreOutcome::Duplicate, sha)),
            Some(_) => {
                let target = self.root.join("conflicts").join(format!(
                    "{}.{}",
                    instance.sop_instance_uid,
                    &sha[..16]
                ));
                self.write_durably(instance.bytes, &target)?;
                self.db().execute(
                    "INSERT INTO conflicts (sop_instance_uid, sha256, received_at) VALUES (?1, ?2, ?3)",
                    params![instance.sop_instance_uid, sha, now_ms()],
                )?;
                return Ok((StoreOutcome::Conflict, sha));
            }
            None => {}
        }
        let target = self.blob_path(&sha);
        if !target.exists() {
            self.write_durably(instance.bytes, &target)?;
        }
        let inserted = self.commit_instance(CatalogRow {
            sop_instance_uid: instance.sop_instance_uid.to_string(),
            study_instance_uid: instance.study_instance_uid.to_string(),
            series_instance_uid: instance.series_instance_uid.to_string(),
            sha256: sha.clone(),
            size: instance.bytes.len() as i64,
            patient_id: instance.patient_id.to_string(),
            accession_number: instance.accession_number.to_string(),
            study_date: instance.study_date.to_string(),
        })?;
        if !inserted {
            // Another stream (or an earlier instance of this one) stored the same UID a moment
            // ago: answer as if it had been there before (duplicate or conflict).
            return self.put_instance(instance);
        }
        Ok((StoreOutcome::Stored, sha))
    }

    fn study(&self, uid: &str) -> Result<StudyRow, StoreError> {
        self.db()
            .query_row(
                &format!("{} WHERE s.study_instance_uid = ?1", Self::STUDY_SELECT),
                [uid],
                Self::study_from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("no instance of study {uid} was stored")))
    }

    /// Queues the study's analysis (once: an already queued or running job stays as it is).
    fn complete_study(&self, uid: &str) -> Result<StudyRow, StoreError> {
        self.study(uid)?;
        let mut db = self.db();
        let tx = db.transaction()?;
        let state: Option<String> = tx
            .query_row(
                "SELECT state FROM jobs WHERE study_instance_uid = ?1",
                [uid],
                |r| r.get(0),
            )
            .optional()?;
        if !matches!(state.as_deref(), Some("queued") | Some("running")) {
            tx.execute(
                "INSERT INTO jobs (study_instance_uid, state, attempts, updated_at) VALUES (?1, 'queued', 0, ?2)
                 ON CONFLICT (study_instance_uid) DO UPDATE SET state = 'queued', attempts = 0, last_error = '', updated_at = ?2",
                params![uid, now_ms()],
            )?;
            tx.execute("UPDATE studies SET state = 'QUEUED', failure_reason = '' WHERE study_instance_uid = ?1", [uid])?;
        }
        tx.commit()?;
        drop(db);
        self.study(uid)
    }

    /// Studies still receiving whose last instance is older than `quiet_ms`.
    fn stable_studies(&self, quiet_ms: i64) -> Result<Vec<String>, StoreError> {
        let db = self.db();
        let mut q = db.prepare("SELECT study_instance_uid FROM studies WHERE state = 'RECEIVING' AND last_instance_at < ?1")?;
        let rows = q.query_map([now_ms() - quiet_ms], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn queue_depth(&self) -> Result<i64, StoreError> {
        Ok(self.db().query_row(
            "SELECT COUNT(*) FROM jobs WHERE state = 'queued'",
            [],
            |r| r.get(0),
        )?)
    }

    /// Takes the oldest queued job: its study and how long it waited (ms).
    fn take_job(&self) -> Result<Option<(String, i64)>, StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let job: Option<(String, i64)> = tx
            .query_row("SELECT study_instance_uid, updated_at FROM jobs WHERE state = 'queued' ORDER BY updated_at LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((uid, _)) = &job {
            tx.execute("UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_at = ?2 WHERE study_instance_uid = ?1", params![uid, now_ms()])?;
            tx.execute(
                "UPDATE studies SET state = 'ANALYZING' WHERE study_instance_uid = ?1",
                [uid],
            )?;
        }
        tx.commit()?;
        Ok(job.map(|(uid, queued)| (uid, now_ms() - queued)))
    }

    /// The SHA-256 of each instance of a study.
    fn study_instances(&self, uid: &str) -> Result<Vec<(String, String)>, StoreError> {
        let db = self.db();
        let mut q = db.prepare("SELECT sop_instance_uid, sha256 FROM instances WHERE study_instance_uid = ?1 ORDER BY received_at")?;
        let rows = q.query_map([uid], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Earlier studies of the same patient (for priors).
    fn other_studies_of_patient(
        &self,
        patient_id: &str,
        except: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let db = self.db();
        let mut q = db.prepare(
            "SELECT study_instance_uid, study_date FROM studies
             WHERE patient_id = ?1 AND study_instance_uid != ?2 AND patient_id != ''
             ORDER BY study_date DESC, study_instance_uid",
        )?;
        let rows = q.query_map([patient_id, except], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Finishes a job: its draft becomes the study's one current work item, in the same
    /// transaction as the job's completion (so it happens exactly once).
    fn finish_job(&self, uid: &str, item: &WorkItemRow) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "INSERT INTO work_items (study_instance_uid, status, critical, priority, claimed_by, created_at, template, analysis_json, model_version)
             VALUES (?1, 'UNCLAIMED', ?2, ?3, NULL, ?4, ?5, ?6, ?7)
             ON CONFLICT (study_instance_uid) DO UPDATE SET status = 'UNCLAIMED', critical = ?2, priority = ?3, claimed_by = NULL,
                 created_at = ?4, template = ?5, analysis_json = ?6, model_version = ?7, final_read = NULL, signed_at = NULL",
            params![uid, item.critical, item.priority, now_ms(), item.template, item.analysis_json, item.model_version],
        )?;
        tx.execute("UPDATE jobs SET state = 'done', completions = completions + 1, updated_at = ?2 WHERE study_instance_uid = ?1", params![uid, now_ms()])?;
        tx.execute("UPDATE studies SET state = 'DRAFT_READY', failure_reason = '' WHERE study_instance_uid = ?1", [uid])?;
        tx.commit()?;
        Ok(())
    }

    /// A failed attempt: queued again while attempts remain, else failed for good.
    fn fail_job(&self, uid: &str, error: &str, max_attempts: u32) -> Result<bool, StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let attempts: u32 = tx.query_row(
            "SELECT attempts FROM jobs WHERE study_instance_uid = ?1",
            [uid],
            |r| r.get(0),
        )?;
        let retry = attempts < max_attempts;
        let (job_state, study_state) = if retry {
            ("queued", "QUEUED")
        } else {
            ("failed", "FAILED")
        };
        tx.execute("UPDATE jobs SET state = ?2, last_error = ?3, updated_at = ?4 WHERE study_instance_uid = ?1", params![uid, job_state, error, now_ms()])?;
        tx.execute(
            "UPDATE studies SET state = ?2, failure_reason = ?3 WHERE study_instance_uid = ?1",
            params![uid, study_state, error],
        )?;
        tx.commit()?;
        Ok(retry)
    }

    fn jobs(&self, state: &str) -> Result<Vec<JobRow>, StoreError> {
        let db = self.db();
        let mut q = db.prepare("SELECT study_instance_uid, state, attempts, last_error, completions FROM jobs WHERE ?1 = '' OR state = ?1 ORDER BY updated_at")?;
        let rows = q.query_map([state], |r| {
            Ok(JobRow {
                study_instance_uid: r.get(0)?,
                state: r.get(1)?,
                attempts: r.get(2)?,
                last_error: r.get(3)?,
                completions: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn work_item(&self, uid: &str) -> Result<WorkItemRow, StoreError> {
        self.db()
            .query_row(
                &format!("{} WHERE study_instance_uid = ?1", Self::ITEM_SELECT),
                [uid],
                Self::item_from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("no work item for study {uid}")))
    }

    /// Work items in worklist order (critical, priority, age), from `offset`.
    fn work_items(
        &self,
        statuses: &[&str],
        critical_only: bool,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<WorkItemRow>, StoreError> {
        let db = self.db();
        let placeholders = statuses
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(",");
        let mut q = db.prepare(&format!(
            "{} WHERE status IN ({placeholders}) AND (critical = 1 OR ?1 = 0)
             ORDER BY critical DESC, priority DESC, created_at ASC, study_instance_uid LIMIT ?2 OFFSET ?3",
            Self::ITEM_SELECT
        ))?;
        let rows = q.query_map(params![critical_only, limit, offset], Self::item_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Claims or releases: `from` is the status expected, `who` the caller.
    fn claim(&self, uid: &str, who: &str, release: bool) -> Result<WorkItemRow, StoreError> {
        let item = self.work_item(uid)?;
        match (release, item.status.as_str(), item.claimed_by.as_deref()) {
            (false, "UNCLAIMED", _) => {}
            (false, "CLAIMED", Some(holder)) if holder == who => return Ok(item),
            (false, "CLAIMED", Some(holder)) => {
                return Err(StoreError::Precondition(format!("claimed by {holder}")))
            }
            (true, "CLAIMED", Some(holder)) if holder == who => {}
            (true, _, _) => {
                return Err(StoreError::Precondition(
                    "you do not hold this work item's claim".into(),
                ))
            }
            (_, status, _) => {
                return Err(StoreError::Precondition(format!(
                    "the work item is {status}"
                )))
            }
        }
        let (status, holder) = if release {
            ("UNCLAIMED", None)
        } else {
            ("CLAIMED", Some(who))
        };
        self.db().execute(
            "UPDATE work_items SET status = ?2, claimed_by = ?3 WHERE study_instance_uid = ?1",
            params![uid, status, holder],
        )?;
        self.work_item(uid)
    }

    fn sign(&self, uid: &str, who: &str, final_read: &[u8]) -> Result<WorkItemRow, StoreError> {
        let item = self.work_item(uid)?;
        if item.status != "CLAIMED" || item.claimed_by.as_deref() != Some(who) {
            return Err(StoreError::Precondition(format!(
                "sign only a work item you have claimed (it is {}{})",
                item.status,
                item.claimed_by
                    .map(|h| format!(" by {h}"))
                    .unwrap_or_default()
            )));
        }
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "UPDATE work_items SET status = 'SIGNED', final_read = ?2, signed_at = ?3 WHERE study_instance_uid = ?1",
            params![uid, final_read, now_ms()],
        )?;
        tx.execute(
            "UPDATE studies SET state = 'SIGNED' WHERE study_instance_uid = ?1",
            [uid],
        )?;
        tx.commit()?;
        drop(db);
        self.work_item(uid)
    }

    /// Signed items in a period (ms since the epoch; None: no limit), optionally one version.
    fn signed_items(
        &self,
        start: Option<i64>,
        end: Option<i64>,
        model_version: &str,
    ) -> Result<Vec<WorkItemRow>, StoreError> {
        let db = self.db();
        let mut q = db.prepare(&format!(
            "{} WHERE status = 'SIGNED' AND signed_at >= ?1 AND signed_at < ?2 AND (?3 = '' OR model_version = ?3)",
            Self::ITEM_SELECT
        ))?;
        let rows = q.query_map(
            params![
                start.unwrap_or(i64::MIN),
                end.unwrap_or(i64::MAX),
                model_version
            ],
            Self::item_from_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn audit(&self, row: &AuditRow) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO audit (at_ms, who, role, action, resource, peer) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![row.at_ms, row.who, row.role, row.action, row.resource, row.peer],
        )?;
        Ok(())
    }

    /// Audit rows since `since_ms`, optionally one caller's, oldest first.
    fn audit_log(&self, since_ms: i64, who: &str) -> Result<Vec<AuditRow>, StoreError> {
        let db = self.db();
        let mut q = db.prepare("SELECT at_ms, who, role, action, resource, peer FROM audit WHERE at_ms >= ?1 AND (?2 = '' OR who = ?2) ORDER BY id")?;
        let rows = q.query_map(params![since_ms, who], |r| {
            Ok(AuditRow {
                at_ms: r.get(0)?,
                who: r.get(1)?,
                role: r.get(2)?,
                action: r.get(3)?,
                resource: r.get(4)?,
                peer: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

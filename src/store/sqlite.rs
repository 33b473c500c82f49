//! The embedded store: the catalogue in SQLite (WAL, `synchronous = FULL`, so a committed row
//! survives a crash and a power cut), the blobs in a [`BlobStore`] (a folder by default).
//!
//! One writer connection behind a mutex, with group commit of ingest's catalogue rows (many
//! concurrent streams share one fsync), and one read-only WAL connection for ingest's lookups
//! (readers see the last commit without waiting for the writer). State changes are single
//! conditional `UPDATE`s whose row count says whether this caller won.

use super::blobs::FolderBlobStore;
use super::documents::{from_json, to_json, SignedRead};
use super::outcomes::{amend_outcome, claim_outcome, release_outcome, sign_outcome};
use super::schema::{migrate, read_only_connection, DATABASE};
use super::sql;
use super::sqlite_ingest::CommitOutcome;
use super::*;
use crate::store::lifecycle::{JobState, StudyState, WorkItemStatus};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

/// The JSON document in column `index` of a work item row (column 0 its study).
fn document<T: for<'de> serde::Deserialize<'de>>(
    r: &rusqlite::Row,
    index: usize,
    what: &'static str,
) -> rusqlite::Result<T> {
    let json: String = r.get(index)?;
    from_json(&json, what, &r.get::<_, String>(0)?).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// A work item row's signed read.
fn read_document(r: &rusqlite::Row, json: &str) -> rusqlite::Result<SignedRead> {
    from_json(json, "signed read", &r.get::<_, String>(0)?).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(9, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub struct SqliteStore {
    db: Mutex<Connection>,
    /// A read-only connection for lookups on ingest's path.
    pub(super) reader: Mutex<Connection>,
    pub(super) blobs: Box<dyn BlobStore>,
    /// Catalog rows waiting for the next group commit, each with where to send its outcome.
    pub(super) pending: Mutex<Vec<(super::sqlite_ingest::CatalogRow, CommitOutcome)>>,
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
        std::fs::create_dir_all(root)?;
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

    pub(super) fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
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
            content: document(r, 6, "work item")?,
            analysis_json: r.get(7)?,
            model_version: r.get(8)?,
            final_read: r
                .get::<_, Option<String>>(9)?
                .map(|json| read_document(r, &json))
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

/// Queues results in `tx` (a result already queued for that peer stays as it is).
fn queue_results(tx: &rusqlite::Transaction, results: &[OutgoingResult]) -> rusqlite::Result<()> {
    let now = now_ms();
    for r in results {
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

    fn put_instance(
        &self,
        instance: &IncomingInstance,
    ) -> Result<(StoreOutcome, String), StoreError> {
        self.store_instance(instance)
    }

    fn study(&self, uid: &str) -> Result<StudyRow, StoreError> {
        self.db()
            .query_row(
                &format!("{} WHERE s.study_instance_uid = ?1", sql::STUDY_SELECT),
                [uid],
                Self::study_from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("no instance of study {uid} was stored")))
    }

    fn complete_study(&self, uid: &str) -> Result<StudyRow, StoreError> {
        self.study(uid)?;
        self.complete_if_new(uid, None)?;
        self.study(uid)
    }

    fn complete_stable_study(
        &self,
        uid: &str,
        quiet_ms: i64,
    ) -> Result<Option<StudyRow>, StoreError> {
        if !self.complete_if_new(uid, Some(now_ms() - quiet_ms))? {
            return Ok(None);
        }
        self.study(uid).map(Some)
    }

    fn stable_studies(&self, quiet_ms: i64) -> Result<Vec<String>, StoreError> {
        let db = self.db();
        let mut q = db.prepare(&sql::sqlite(sql::QUIET_STUDIES))?;
        let rows = q.query_map(params![StudyState::Receiving, now_ms() - quiet_ms], |r| {
            r.get(0)
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn queue_depth(&self) -> Result<i64, StoreError> {
        Ok(self
            .db()
            .query_row(&sql::sqlite(sql::JOBS_IN_STATE), [JobState::Queued], |r| {
                r.get(0)
            })?)
    }

    fn take_job(&self) -> Result<Option<TakenJob>, StoreError> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let oldest: Option<(String, i64)> = tx
            .query_row(
                "SELECT study_instance_uid, updated_at FROM jobs WHERE state = ?1 ORDER BY updated_at LIMIT 1",
                [JobState::Queued],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((uid, queued_at)) = oldest else {
            return Ok(None);
        };
        let attempt: Option<u32> = tx
            .query_row(
                "UPDATE jobs SET state = ?2, attempts = attempts + 1, updated_at = ?3
                 WHERE study_instance_uid = ?1 AND state = ?4 RETURNING attempts",
                params![uid, JobState::Running, now_ms(), JobState::Queued],
                |r| r.get(0),
            )
            .optional()?;
        let Some(attempt) = attempt else {
            return Ok(None);
        };
        tx.execute(
            &sql::sqlite(sql::STUDY_STATE),
            params![uid, StudyState::Analyzing],
        )?;
        tx.commit()?;
        Ok(Some(TakenJob {
            study_instance_uid: uid,
            waited_ms: (now_ms() - queued_at).max(0),
            attempt,
        }))
    }

    fn study_instances(&self, uid: &str) -> Result<Vec<(String, String)>, StoreError> {
        let db = self.db();
        let mut q = db.prepare("SELECT sop_instance_uid, sha256 FROM instances WHERE study_instance_uid = ?1 ORDER BY received_at")?;
        let rows = q.query_map([uid], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn instances_with_invalid_uids(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        // Not digits and periods, too long, or an empty component or one with a leading zero.
        let not_uid = |c: &str| {
            format!(
                "length({c}) > 64 OR {c} = '' OR {c} GLOB '*[^0-9.]*' OR {c} GLOB '.*' OR {c} GLOB '*.' \
                 OR {c} GLOB '*..*' OR {c} GLOB '0[0-9]*' OR {c} GLOB '*.0[0-9]*'"
            )
        };
        let db = self.db();
        let mut q = db.prepare(&format!(
            "SELECT study_instance_uid, series_instance_uid, sop_instance_uid FROM instances
             WHERE {} OR {} OR {} ORDER BY study_instance_uid, series_instance_uid, sop_instance_uid",
            not_uid("study_instance_uid"),
            not_uid("series_instance_uid"),
            not_uid("sop_instance_uid")
        ))?;
        let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_prior_report(&self, report: &PriorReport) -> Result<bool, StoreError> {
        self.keep_prior_report(report)
    }

    fn prior_report(&self, study_uid: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .db()
            .query_row(&sql::sqlite(sql::PRIOR_REPORT_TEXT), [study_uid], |r| {
                r.get(0)
            })
            .optional()?)
    }

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

    fn finish_job(&self, uid: &str, item: &NewWorkItem) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let now = now_ms();
        let finished = tx.execute(
            "UPDATE jobs SET state = ?2, completions = completions + 1, updated_at = ?3
             WHERE study_instance_uid = ?1 AND state = ?4",
            params![uid, JobState::Done, now, JobState::Running],
        )?;
        if finished == 0 {
            return Err(StoreError::Precondition(format!(
                "the job of study {uid} is no longer running: its draft is not kept"
            )));
        }
        // A signed read stands: the item only learns that images came after it.
        let signed = tx.execute(
            "UPDATE work_items SET images_after_signing = ?2, critical = MAX(critical, ?3), priority = MAX(priority, ?4)
             WHERE study_instance_uid = ?1 AND status = ?5",
            params![uid, now, item.critical, item.priority, WorkItemStatus::Signed],
        )?;
        if signed == 0 {
            tx.execute(
                &sql::sqlite(sql::PUT_WORK_ITEM),
                params![
                    uid,
                    item.critical,
                    item.priority,
                    now,
                    to_json(&item.content),
                    item.analysis_json,
                    item.model_version,
                    WorkItemStatus::Unclaimed,
                    item.report_json
                ],
            )?;
            queue_results(&tx, &item.results)?;
        }
        let study_state = if signed == 0 {
            StudyState::DraftReady
        } else {
            StudyState::Signed
        };
        tx.execute(
            &sql::sqlite(sql::STUDY_STATE_CLEARED),
            params![uid, study_state],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn fail_job(&self, uid: &str, error: &str, max_attempts: u32) -> Result<JobState, StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let state: Option<JobState> = tx
            .query_row(
                "UPDATE jobs SET state = CASE WHEN attempts < ?4 THEN ?5 ELSE ?6 END, last_error = ?2, updated_at = ?3
                 WHERE study_instance_uid = ?1 AND state = ?7
                 RETURNING state",
                params![uid, error, now_ms(), max_attempts, JobState::Queued, JobState::Failed, JobState::Running],
                |r| r.get(0),
            )
            .optional()?;
        let state = state.ok_or_else(|| {
            StoreError::Precondition(format!("the job of study {uid} is not running"))
        })?;
        let study_state = if state == JobState::Queued {
            StudyState::Queued
        } else {
            StudyState::Failed
        };
        tx.execute(
            &sql::sqlite(sql::STUDY_FAILED),
            params![uid, study_state, error],
        )?;
        tx.commit()?;
        Ok(state)
    }

    fn jobs(&self, state: Option<JobState>) -> Result<Vec<JobRow>, StoreError> {
        let db = self.db();
        let mut q = db.prepare("SELECT study_instance_uid, state, attempts, last_error, completions FROM jobs WHERE ?1 IS NULL OR state = ?1 ORDER BY updated_at")?;
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
                &format!("{} WHERE study_instance_uid = ?1", sql::WORK_ITEM_SELECT),
                [uid],
                Self::item_from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("no work item for study {uid}")))
    }

    fn work_items(
        &self,
        filter: &WorkItemFilter,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<WorkItemRow>, StoreError> {
        let db = self.db();
        // The statuses are our own enum's texts, never the caller's.
        let placeholders = filter
            .statuses
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(",");
        let mut q = db.prepare(&format!(
            "{} WHERE (status IN ({placeholders}) OR (?6 AND status = '{}' AND images_after_signing IS NOT NULL))
                 AND (critical = 1 OR ?1 = 0)
                 AND (?4 IS NULL OR claimed_by = ?4)
                 AND (?5 IS NULL OR study_instance_uid IN
                      (SELECT study_instance_uid FROM studies WHERE study_date = ?5))
             ORDER BY critical DESC, priority DESC, created_at ASC, study_instance_uid LIMIT ?2 OFFSET ?3",
            sql::WORK_ITEM_SELECT,
            WorkItemStatus::Signed
        ))?;
        let rows = q.query_map(
            params![
                filter.critical_only,
                limit,
                offset,
                filter.claimed_by,
                filter.study_date,
                filter.signed_with_new_images
            ],
            Self::item_from_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn retry_job(&self, uid: &str) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let retried = tx.execute(
            "UPDATE jobs SET state = ?2, attempts = 0, updated_at = ?4 WHERE study_instance_uid = ?1 AND state = ?3",
            params![uid, JobState::Queued, JobState::Failed, now_ms()],
        )?;
        if retried == 0 {
            return Err(StoreError::Precondition(format!(
                "the job of study {uid} is not failed: only a failed job can be retried"
            )));
        }
        tx.execute(
            &sql::sqlite(sql::STUDY_STATE_CLEARED),
            params![uid, StudyState::Queued],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn claim(&self, uid: &str, who: &str) -> Result<WorkItemRow, StoreError> {
        let claimed = self.db().execute(
            &sql::sqlite(sql::CLAIM),
            params![uid, who, WorkItemStatus::Claimed, WorkItemStatus::Unclaimed],
        )?;
        let item = self.work_item(uid)?;
        claim_outcome(claimed as u64, item, who)
    }

    fn release(&self, uid: &str, who: &str) -> Result<WorkItemRow, StoreError> {
        let released = self.db().execute(
            &sql::sqlite(sql::RELEASE),
            params![uid, who, WorkItemStatus::Unclaimed, WorkItemStatus::Claimed],
        )?;
        let item = self.work_item(uid)?;
        release_outcome(released as u64, item)
    }

    fn sign(
        &self,
        uid: &str,
        who: &str,
        signed_at: i64,
        read: &SignedRead,
        comparison: &str,
        results: &[OutgoingResult],
    ) -> Result<WorkItemRow, StoreError> {
        let signed = {
            let mut db = self.db();
            let tx = db.transaction()?;
            let signed = tx.execute(
                &sql::sqlite(sql::SIGN),
                params![
                    uid,
                    who,
                    to_json(read),
                    signed_at,
                    WorkItemStatus::Signed,
                    comparison,
                    WorkItemStatus::Claimed
                ],
            )?;
            if signed == 1 {
                tx.execute(
                    &sql::sqlite(sql::STUDY_STATE),
                    params![uid, StudyState::Signed],
                )?;
                queue_results(&tx, results)?;
            }
            tx.commit()?;
            signed
        };
        let item = self.work_item(uid)?;
        sign_outcome(signed as u64, item)
    }

    fn amend(
        &self,
        uid: &str,
        replaces: i64,
        signed_at: i64,
        read: &SignedRead,
        comparison: &str,
        results: &[OutgoingResult],
    ) -> Result<WorkItemRow, StoreError> {
        let amended = {
            let mut db = self.db();
            let tx = db.transaction()?;
            let now = now_ms();
            let kept = tx.execute(
                "INSERT INTO superseded_reads (study_instance_uid, signed_read, signed_at, superseded_at)
                 SELECT study_instance_uid, signed_read, signed_at, ?3 FROM work_items
                 WHERE study_instance_uid = ?1 AND status = ?2 AND signed_at = ?4 AND signed_read IS NOT NULL",
                params![uid, WorkItemStatus::Signed, now, replaces],
            )?;
            if kept == 1 {
                tx.execute(
                    "UPDATE work_items SET signed_read = ?2, signed_at = ?3, comparison = ?4, images_after_signing = NULL
                     WHERE study_instance_uid = ?1",
                    params![uid, to_json(read), signed_at, comparison],
                )?;
                queue_results(&tx, results)?;
            }
            tx.commit()?;
            kept
        };
        let item = self.work_item(uid)?;
        amend_outcome(amended as u64, item)
    }

    fn latest_signed_sr(&self, uid: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .db()
            .query_row(
                &sql::sqlite(sql::LATEST_SIGNED_SR),
                params![uid, ResultKind::Final, ResultKind::Amended],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    fn take_due_results(
        &self,
        now_ms: i64,
        limit: i64,
        hold_ms: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let rows: Vec<OutboxRow> = {
            let mut q = tx.prepare(&format!(
                "{} WHERE state = ?1 AND next_attempt_at <= ?2 ORDER BY next_attempt_at, id LIMIT ?3",
                sql::OUTBOX_SELECT
            ))?;
            let rows = q.query_map(
                params![OutboxState::Pending, now_ms, limit],
                Self::outbox_from_row,
            )?;
            rows.collect::<Result<_, _>>()?
        };
        for row in &rows {
            tx.execute(
                "UPDATE outbox SET next_attempt_at = ?2 WHERE id = ?1",
                params![row.id, now_ms + hold_ms],
            )?;
        }
        tx.commit()?;
        Ok(rows)
    }

    fn result_sent(&self, id: i64) -> Result<bool, StoreError> {
        let changed = self.db().execute(
            &sql::sqlite(sql::RESULT_SENT),
            params![id, OutboxState::Sent, now_ms(), OutboxState::Pending],
        )?;
        Ok(changed == 1)
    }

    fn result_failed(&self, id: i64, error: &str, next_attempt_at: i64) -> Result<(), StoreError> {
        self.db().execute(
            &sql::sqlite(sql::RESULT_FAILED),
            params![id, error, next_attempt_at, OutboxState::Pending],
        )?;
        Ok(())
    }

    fn pending_results(&self) -> Result<i64, StoreError> {
        Ok(self.db().query_row(
            &sql::sqlite(sql::RESULTS_IN_STATE),
            params![OutboxState::Pending],
            |r| r.get(0),
        )?)
    }

    fn outbox(&self, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        let db = self.db();
        let mut q = db.prepare(&format!(
            "{} ORDER BY state = ?1 DESC, COALESCE(sent_at, created_at) DESC LIMIT ?2",
            sql::OUTBOX_SELECT
        ))?;
        let rows = q.query_map(params![OutboxState::Pending, limit], Self::outbox_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn signed_items(
        &self,
        start: Option<i64>,
        end: Option<i64>,
        model_version: &str,
    ) -> Result<Vec<WorkItemRow>, StoreError> {
        let db = self.db();
        let mut q = db.prepare(&format!(
            "{} WHERE status = ?4 AND signed_at >= ?1 AND signed_at < ?2 AND (?3 = '' OR model_version = ?3)",
            sql::WORK_ITEM_SELECT
        ))?;
        let rows = q.query_map(
            params![
                start.unwrap_or(i64::MIN),
                end.unwrap_or(i64::MAX),
                model_version,
                WorkItemStatus::Signed
            ],
            Self::item_from_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn expect_prior(&self, study_uid: &str, until_ms: i64) -> Result<i64, StoreError> {
        let db = self.db();
        // Expectations a crash left behind go first.
        db.execute(&sql::sqlite(sql::EXPECTATIONS_PAST), [now_ms()])?;
        db.execute(
            "INSERT INTO expected_priors (study_instance_uid, until_ms) VALUES (?1, ?2)",
            params![study_uid, until_ms],
        )?;
        Ok(db.last_insert_rowid())
    }

    fn end_prior_expectation(&self, id: i64) -> Result<(), StoreError> {
        self.db()
            .execute(&sql::sqlite(sql::END_EXPECTATION), [id])?;
        Ok(())
    }

    fn prior_expected(&self, study_uid: &str, now_ms: i64) -> Result<bool, StoreError> {
        Ok(self
            .reader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .prepare_cached(
                "SELECT 1 FROM expected_priors WHERE study_instance_uid = ?1 AND until_ms >= ?2",
            )?
            .exists(params![study_uid, now_ms])?)
    }

    fn audit(&self, row: &AuditRow) -> Result<(), StoreError> {
        self.db().execute(
            &sql::sqlite(sql::AUDIT),
            params![
                row.at_ms,
                row.who,
                row.role,
                row.action,
                row.resource,
                row.peer
            ],
        )?;
        Ok(())
    }

    /// Audit rows since `since_ms`, optionally one caller's, oldest first.
    fn audit_log(&self, since_ms: i64, who: &str) -> Result<Vec<AuditRow>, StoreError> {
        let db = self.db();
        let mut q = db.prepare(&sql::sqlite(sql::AUDIT_LOG))?;
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

//! Ingest's path through the SQLite store: the blob made durable, then its catalogue row by
//! group commit (many concurrent streams share one fsync), then the outcome.

use super::SqliteStore;
use crate::store::lifecycle::StudyState;
use crate::store::sql;
use crate::store::*;
use rusqlite::{params, OptionalExtension};

/// Where a committed row's outcome goes: inserted (true), already there (false), or the error.
pub(super) type CommitOutcome = std::sync::mpsc::Sender<Result<bool, String>>;

/// An instance's catalog row (its blob is already durable).
pub(super) struct CatalogRow {
    sop_instance_uid: String,
    study_instance_uid: String,
    series_instance_uid: String,
    sha256: String,
    size: i64,
    patient_id: String,
    accession_number: String,
    study_date: String,
    attributes: String,
    prior: bool,
}

impl SqliteStore {
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
                        "INSERT OR IGNORE INTO instances (sop_instance_uid, study_instance_uid, series_instance_uid, sha256, size, received_at, attributes)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![r.sop_instance_uid, r.study_instance_uid, r.series_instance_uid, r.sha256, r.size, now, r.attributes],
                    )? > 0;
                    if new && r.prior {
                        // A retrieved prior: a new study is kept as PRIOR; a known one keeps
                        // its state (a retrieval never restarts an analysis).
                        tx.execute(
                            &sql::sqlite(sql::NEW_STUDY),
                            params![
                                r.study_instance_uid,
                                r.patient_id,
                                r.accession_number,
                                r.study_date,
                                now,
                                StudyState::Prior
                            ],
                        )?;
                    } else if new {
                        tx.execute(
                            &sql::sqlite(sql::STUDY_RECEIVING),
                            params![
                                r.study_instance_uid,
                                r.patient_id,
                                r.accession_number,
                                r.study_date,
                                now,
                                StudyState::Receiving
                            ],
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

    /// Stores one instance: STORED (durable and catalogued), DUPLICATE (same UID, same bytes)
    /// or CONFLICT (same UID, other bytes: kept under conflicts/ for review).
    pub(super) fn store_instance(
        &self,
        instance: &IncomingInstance,
    ) -> Result<(StoreOutcome, String), StoreError> {
        let sha = instance.sha256.to_string();
        let existing: Option<String> = self
            .reader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .query_row(
                &sql::sqlite(sql::INSTANCE_SHA256),
                [instance.sop_instance_uid],
                |r| r.get(0),
            )
            .optional()?;
        match existing {
            Some(stored) if stored == sha => return Ok((StoreOutcome::Duplicate, sha)),
            Some(_) => {
                let name = format!("{}.{}", instance.sop_instance_uid, &sha[..16]);
                self.blobs.put_conflict(&name, instance.bytes)?;
                self.db().execute(
                    &sql::sqlite(sql::CONFLICT),
                    params![instance.sop_instance_uid, sha, now_ms()],
                )?;
                return Ok((StoreOutcome::Conflict, sha));
            }
            None => {}
        }
        self.blobs.put(&sha, instance.bytes)?;
        let inserted = self.commit_instance(CatalogRow {
            sop_instance_uid: instance.sop_instance_uid.to_string(),
            study_instance_uid: instance.study_instance_uid.to_string(),
            series_instance_uid: instance.series_instance_uid.to_string(),
            sha256: sha.clone(),
            size: instance.bytes.len() as i64,
            patient_id: instance.patient_id.to_string(),
            accession_number: instance.accession_number.to_string(),
            study_date: instance.study_date.to_string(),
            attributes: instance.attributes.to_string(),
            prior: instance.prior,
        })?;
        if !inserted {
            // Another stream (or an earlier instance of this one) stored the same UID a moment
            // ago: answer as if it had been there before (duplicate or conflict).
            return self.store_instance(instance);
        }
        Ok((StoreOutcome::Stored, sha))
    }
}

impl SqliteStore {
    /// See [`crate::store::StudyStore::put_prior_report`].
    pub(super) fn keep_prior_report(&self, report: &PriorReport) -> Result<bool, StoreError> {
        let changed = self.db().execute(
            "INSERT INTO prior_reports (study_instance_uid, sop_instance_uid, sha256, content_date_time, text, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (study_instance_uid) DO UPDATE SET
                 sop_instance_uid = excluded.sop_instance_uid, sha256 = excluded.sha256,
                 content_date_time = excluded.content_date_time, text = excluded.text,
                 received_at = excluded.received_at
             WHERE excluded.sop_instance_uid != prior_reports.sop_instance_uid
               AND excluded.content_date_time >= prior_reports.content_date_time",
            params![
                report.study_instance_uid,
                report.sop_instance_uid,
                report.sha256,
                report.content_date_time,
                report.text,
                now_ms()
            ],
        )?;
        Ok(changed > 0)
    }
}

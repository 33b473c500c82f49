//! Ingest's path through the PostgreSQL store: the blob made durable in the blob store, then its
//! catalogue row committed (PostgreSQL's own group commit shares the WAL flush between
//! concurrent streams), then the outcome.

use super::PgStore;
use crate::store::lifecycle::StudyState;
use crate::store::sql;
use crate::store::*;

impl PgStore {
    /// Stores one instance: STORED (durable and catalogued), DUPLICATE (same UID, same bytes)
    /// or CONFLICT (same UID, other bytes: kept in the blob store's conflicts for review).
    pub(super) fn store_instance(
        &self,
        instance: &IncomingInstance,
    ) -> Result<(StoreOutcome, String), StoreError> {
        let sha = instance.sha256.to_string();
        let existing: Option<String> = self
            .client()?
            .query_opt(sql::INSTANCE_SHA256, &[&instance.sop_instance_uid])?
            .map(|r| r.get(0));
        match existing {
            Some(stored) if stored == sha => return Ok((StoreOutcome::Duplicate, sha)),
            Some(_) => {
                let name = format!("{}.{}", instance.sop_instance_uid, &sha[..16]);
                self.blobs.put_conflict(&name, instance.bytes)?;
                self.client()?.execute(
                    sql::CONFLICT,
                    &[&instance.sop_instance_uid, &sha, &now_ms()],
                )?;
                return Ok((StoreOutcome::Conflict, sha));
            }
            None => {}
        }
        self.blobs.put(&sha, instance.bytes)?;
        let inserted = {
            let mut client = self.client()?;
            let mut tx = client.transaction()?;
            let now = now_ms();
            let new = tx.execute(
                "INSERT INTO instances (sop_instance_uid, study_instance_uid, series_instance_uid, sha256, size, received_at, attributes)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (sop_instance_uid) DO NOTHING",
                &[&instance.sop_instance_uid, &instance.study_instance_uid, &instance.series_instance_uid, &sha, &(instance.bytes.len() as i64), &now, &instance.attributes],
            )? == 1;
            if new && instance.prior {
                // A retrieved prior: a new study is kept as PRIOR; a known one keeps its state
                // (a retrieval never restarts an analysis).
                tx.execute(
                    sql::NEW_STUDY,
                    &[
                        &instance.study_instance_uid,
                        &instance.patient_id,
                        &instance.accession_number,
                        &instance.study_date,
                        &now,
                        &StudyState::Prior,
                    ],
                )?;
            } else if new {
                tx.execute(
                    sql::STUDY_RECEIVING,
                    &[
                        &instance.study_instance_uid,
                        &instance.patient_id,
                        &instance.accession_number,
                        &instance.study_date,
                        &now,
                        &StudyState::Receiving,
                    ],
                )?;
            }
            tx.commit()?;
            new
        };
        if !inserted {
            // Another stream (or another front end) stored the same UID a moment ago: answer as
            // if it had been there before (duplicate or conflict).
            return self.store_instance(instance);
        }
        Ok((StoreOutcome::Stored, sha))
    }

    /// See [`crate::store::StudyStore::put_prior_report`].
    pub(super) fn keep_prior_report(&self, report: &PriorReport) -> Result<bool, StoreError> {
        let changed = self.client()?.execute(
            "INSERT INTO prior_reports (study_instance_uid, sop_instance_uid, sha256, content_date_time, text, received_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (study_instance_uid) DO UPDATE SET
                 sop_instance_uid = excluded.sop_instance_uid, sha256 = excluded.sha256,
                 content_date_time = excluded.content_date_time, text = excluded.text,
                 received_at = excluded.received_at
             WHERE excluded.sop_instance_uid != prior_reports.sop_instance_uid
               AND excluded.content_date_time COLLATE \"C\" >= prior_reports.content_date_time COLLATE \"C\"",
            &[&report.study_instance_uid, &report.sop_instance_uid, &report.sha256, &report.content_date_time, &report.text, &now_ms()],
        )?;
        Ok(changed > 0)
    }
}

//! The analysis queue: jobs taken, finished (the work item made), failed and retried.

use super::*;

impl JobQueue for SqliteStore {
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
            record_results(&tx, &item.results)?;
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
}

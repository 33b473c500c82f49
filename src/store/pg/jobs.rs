//! The analysis queue: jobs taken, finished (the work item made), failed and retried.

use super::*;

impl JobQueue for PgStore {
    fn queue_depth(&self) -> Result<i64, StoreError> {
        Ok(self
            .client()?
            .query_one(sql::JOBS_IN_STATE, &[&JobState::Queued])?
            .get(0))
    }

    fn take_job(&self) -> Result<Option<TakenJob>, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let now = now_ms();
        // The oldest queued job, or a running one whose lease ran out; rows other workers are
        // taking at this moment are skipped, not waited for.
        let taken = tx.query_opt(
            "WITH next AS (
                 SELECT study_instance_uid, updated_at FROM jobs
                 WHERE state = $1 OR (state = $2 AND lease_until < $3)
                 ORDER BY updated_at LIMIT 1
                 FOR UPDATE SKIP LOCKED)
             UPDATE jobs j SET state = $2, attempts = j.attempts + 1, updated_at = $3,
                 lease_owner = $4, lease_until = $5
             FROM next WHERE j.study_instance_uid = next.study_instance_uid
             RETURNING j.study_instance_uid, next.updated_at, j.attempts",
            &[
                &JobState::Queued,
                &JobState::Running,
                &now,
                &self.owner,
                &(now + self.lease_ms),
            ],
        )?;
        let Some(row) = taken else {
            return Ok(None);
        };
        let uid: String = row.get(0);
        let queued_at: i64 = row.get(1);
        let attempt: i32 = row.get(2);
        tx.execute(sql::STUDY_STATE, &[&uid, &StudyState::Analyzing])?;
        tx.commit()?;
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid.clone(), attempt);
        Ok(Some(TakenJob {
            study_instance_uid: uid,
            waited_ms: (now - queued_at).max(0),
            attempt: attempt as u32,
        }))
    }

    fn finish_job(&self, uid: &str, item: &NewWorkItem) -> Result<(), StoreError> {
        let attempt = self.held_attempt(uid)?;
        let finished = (|| -> Result<u64, StoreError> {
            let mut client = self.client()?;
            let mut tx = client.transaction()?;
            let now = now_ms();
            let finished = tx.execute(
                "UPDATE jobs SET state = $2, completions = completions + 1, updated_at = $3,
                     lease_owner = NULL, lease_until = NULL
                 WHERE study_instance_uid = $1 AND state = $4 AND lease_owner = $5 AND attempts = $6",
                &[&uid, &JobState::Done, &now, &JobState::Running, &self.owner, &attempt],
            )?;
            if finished == 0 {
                return Ok(0);
            }
            // A signed read stands: the item only learns that images came after it.
            let signed = tx.execute(
                "UPDATE work_items SET images_after_signing = $2, critical = critical OR $3, priority = GREATEST(priority, $4)
                 WHERE study_instance_uid = $1 AND status = $5",
                &[&uid, &now, &item.critical, &item.priority, &WorkItemStatus::Signed],
            )?;
            if signed == 0 {
                tx.execute(
                    sql::PUT_WORK_ITEM,
                    &[
                        &uid,
                        &item.critical,
                        &item.priority,
                        &now,
                        &to_json(&item.content),
                        &item.analysis_json,
                        &item.model_version,
                        &WorkItemStatus::Unclaimed,
                        &item.report_json,
                    ],
                )?;
                record_results(&mut tx, &item.results)?;
            }
            let study_state = if signed == 0 {
                StudyState::DraftReady
            } else {
                StudyState::Signed
            };
            tx.execute(sql::STUDY_STATE_CLEARED, &[&uid, &study_state])?;
            tx.commit()?;
            Ok(finished)
        })();
        self.forget_job(uid);
        if finished? == 0 {
            return Err(StoreError::Precondition(format!(
                "the job of study {uid} is no longer this worker's (its lease ran out and it was taken again, or it was retried): its draft is not kept"
            )));
        }
        Ok(())
    }

    fn fail_job(&self, uid: &str, error: &str, max_attempts: u32) -> Result<JobState, StoreError> {
        let attempt = self.held_attempt(uid)?;
        let failed = (|| -> Result<Option<JobState>, StoreError> {
            let mut client = self.client()?;
            let mut tx = client.transaction()?;
            let state: Option<JobState> = tx
                .query_opt(
                    "UPDATE jobs SET state = CASE WHEN attempts < $4 THEN $5 ELSE $6 END, last_error = $2,
                         updated_at = $3, lease_owner = NULL, lease_until = NULL
                     WHERE study_instance_uid = $1 AND state = $7 AND lease_owner = $8 AND attempts = $9
                     RETURNING state",
                    &[&uid, &error, &now_ms(), &(max_attempts as i32), &JobState::Queued, &JobState::Failed, &JobState::Running, &self.owner, &attempt],
                )?
                .map(|r| r.get(0));
            let Some(state) = state else {
                return Ok(None);
            };
            let study_state = if state == JobState::Queued {
                StudyState::Queued
            } else {
                StudyState::Failed
            };
            tx.execute(sql::STUDY_FAILED, &[&uid, &study_state, &error])?;
            tx.commit()?;
            Ok(Some(state))
        })();
        self.forget_job(uid);
        failed?.ok_or_else(|| {
            StoreError::Precondition(format!("the job of study {uid} is no longer this worker's"))
        })
    }

    fn jobs(&self, state: Option<JobState>) -> Result<Vec<JobRow>, StoreError> {
        Ok(self
            .client()?
            .query(
                "SELECT study_instance_uid, state, attempts, last_error, completions FROM jobs
                 WHERE $1::TEXT IS NULL OR state = $1 ORDER BY updated_at",
                &[&state],
            )?
            .iter()
            .map(|r| JobRow {
                study_instance_uid: r.get(0),
                state: r.get(1),
                attempts: r.get::<_, i32>(2) as u32,
                last_error: r.get(3),
                completions: r.get::<_, i32>(4) as u32,
            })
            .collect())
    }

    fn retry_job(&self, uid: &str) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let retried = tx.execute(
            "UPDATE jobs SET state = $2, attempts = 0, updated_at = $4, lease_owner = NULL, lease_until = NULL
             WHERE study_instance_uid = $1 AND state = $3",
            &[&uid, &JobState::Queued, &JobState::Failed, &now_ms()],
        )?;
        if retried == 0 {
            return Err(StoreError::Precondition(format!(
                "the job of study {uid} is not failed: only a failed job can be retried"
            )));
        }
        tx.execute(sql::STUDY_STATE_CLEARED, &[&uid, &StudyState::Queued])?;
        tx.commit()?;
        Ok(())
    }
}

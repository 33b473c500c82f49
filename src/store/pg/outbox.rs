//! The results catalogue (every object made for a study) and the outbox: their copies queued
//! for the peers, taken for a send, sent or failed.

use super::*;

impl Outbox for PgStore {
    fn latest_signed_sr(&self, uid: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .client()?
            .query_opt(
                sql::LATEST_SIGNED_SR,
                &[
                    &uid,
                    &ResultObject::Report,
                    &ResultKind::Final,
                    &ResultKind::Amended,
                ],
            )?
            .map(|r| (r.get(0), r.get(1))))
    }

    fn results_of(&self, uid: &str) -> Result<Vec<MadeResult>, StoreError> {
        Ok(self
            .client()?
            .query(sql::RESULTS_OF_STUDY, &[&uid])?
            .iter()
            .map(|r| MadeResult {
                study_instance_uid: r.get(0),
                sop_instance_uid: r.get(1),
                object: r.get(2),
                kind: r.get(3),
                sha256: r.get(4),
                created_at: r.get(5),
                attributes: r.get(6),
            })
            .collect())
    }

    fn take_due_results(
        &self,
        now_ms: i64,
        limit: i64,
        hold_ms: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        // RETURNING gives the rows as they were taken (the next attempt moved on, the earlier
        // attempt's start as it was), in no particular order: oldest first is by id.
        let mut rows: Vec<OutboxRow> = self
            .client()?
            .query(
                "WITH due AS (
                     SELECT id, attempt_started_at FROM outbox
                     WHERE state = $1 AND next_attempt_at <= $2
                     ORDER BY next_attempt_at, id LIMIT $3
                     FOR UPDATE SKIP LOCKED)
                 UPDATE outbox o SET next_attempt_at = $4, attempt_started_at = $2
                 FROM due WHERE o.id = due.id
                 RETURNING o.id, o.study_instance_uid, o.sop_instance_uid, o.kind, o.peer, o.sha256,
                     o.state, o.attempts, o.last_error, o.created_at, o.next_attempt_at, o.sent_at,
                     due.attempt_started_at",
                &[&OutboxState::Pending, &now_ms, &limit, &(now_ms + hold_ms)],
            )?
            .iter()
            .map(Self::outbox_from_row)
            .collect();
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    fn result_sent(&self, id: i64) -> Result<bool, StoreError> {
        let changed = self.client()?.execute(
            sql::RESULT_SENT,
            &[&id, &OutboxState::Sent, &now_ms(), &OutboxState::Pending],
        )?;
        Ok(changed == 1)
    }

    fn result_failed(&self, id: i64, error: &str, next_attempt_at: i64) -> Result<(), StoreError> {
        self.client()?.execute(
            sql::RESULT_FAILED,
            &[&id, &error, &next_attempt_at, &OutboxState::Pending],
        )?;
        Ok(())
    }

    fn pending_results(&self) -> Result<i64, StoreError> {
        Ok(self
            .client()?
            .query_one(sql::RESULTS_IN_STATE, &[&OutboxState::Pending])?
            .get(0))
    }

    fn outbox(&self, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        Ok(self
            .client()?
            .query(
                &format!(
                    "{} ORDER BY state = $1 DESC, COALESCE(sent_at, created_at) DESC LIMIT $2",
                    sql::OUTBOX_SELECT
                ),
                &[&OutboxState::Pending, &limit],
            )?
            .iter()
            .map(Self::outbox_from_row)
            .collect())
    }
}

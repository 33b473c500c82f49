//! The results catalogue (every object made for a study) and the outbox: their copies queued
//! for the peers, taken for a send, sent or failed.

use super::*;

impl Outbox for SqliteStore {
    fn latest_signed_sr(&self, uid: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .db()
            .query_row(
                &sql::sqlite(sql::LATEST_SIGNED_SR),
                params![
                    uid,
                    ResultObject::Report,
                    ResultKind::Final,
                    ResultKind::Amended
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    fn results_of(&self, uid: &str) -> Result<Vec<MadeResult>, StoreError> {
        let db = self.db();
        let mut q = db.prepare(&sql::sqlite(sql::RESULTS_OF_STUDY))?;
        let rows = q.query_map([uid], |r| {
            Ok(MadeResult {
                study_instance_uid: r.get(0)?,
                sop_instance_uid: r.get(1)?,
                object: r.get(2)?,
                kind: r.get(3)?,
                sha256: r.get(4)?,
                created_at: r.get(5)?,
                attributes: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
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
                "UPDATE outbox SET next_attempt_at = ?2, attempt_started_at = ?3 WHERE id = ?1",
                params![row.id, now_ms + hold_ms, now_ms],
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
}

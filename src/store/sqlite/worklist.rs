//! The work items: the worklist, claims, signed and amended reads.

use super::*;

impl Worklist for SqliteStore {
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
        results: &ResultBatch,
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
                record_results(&tx, results)?;
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
        results: &ResultBatch,
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
                record_results(&tx, results)?;
            }
            tx.commit()?;
            kept
        };
        let item = self.work_item(uid)?;
        amend_outcome(amended as u64, item)
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
}

//! The work items: the worklist, claims, signed and amended reads.

use super::*;

impl Worklist for PgStore {
    fn work_item(&self, uid: &str) -> Result<WorkItemRow, StoreError> {
        self.client()?
            .query_opt(
                &format!("{} WHERE study_instance_uid = $1", sql::WORK_ITEM_SELECT),
                &[&uid],
            )?
            .map(|r| Self::item_from_row(&r))
            .ok_or_else(|| StoreError::NotFound(format!("no work item for study {uid}")))?
    }

    fn work_items(
        &self,
        filter: &WorkItemFilter,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<WorkItemRow>, StoreError> {
        let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        self
            .client()?
            .query(
                &format!(
                    "{} WHERE (status = ANY($1) OR ($7 AND status = '{}' AND images_after_signing IS NOT NULL))
                         AND (critical OR NOT $2)
                         AND ($5::TEXT IS NULL OR claimed_by = $5)
                         AND ($6::TEXT IS NULL OR study_instance_uid IN
                              (SELECT study_instance_uid FROM studies WHERE study_date = $6))
                     ORDER BY critical DESC, priority DESC, created_at ASC, study_instance_uid COLLATE \"C\"
                     LIMIT $3 OFFSET $4",
                    sql::WORK_ITEM_SELECT,
                    WorkItemStatus::Signed
                ),
                &[
                    &statuses,
                    &filter.critical_only,
                    &limit,
                    &offset,
                    &filter.claimed_by,
                    &filter.study_date,
                    &filter.signed_with_new_images,
                ],
            )?
            .iter()
            .map(Self::item_from_row)
            .collect()
    }

    fn claim(&self, uid: &str, who: &str) -> Result<WorkItemRow, StoreError> {
        let claimed = self.client()?.execute(
            sql::CLAIM,
            &[
                &uid,
                &who,
                &WorkItemStatus::Claimed,
                &WorkItemStatus::Unclaimed,
            ],
        )?;
        let item = self.work_item(uid)?;
        claim_outcome(claimed, item, who)
    }

    fn release(&self, uid: &str, who: &str) -> Result<WorkItemRow, StoreError> {
        let released = self.client()?.execute(
            sql::RELEASE,
            &[
                &uid,
                &who,
                &WorkItemStatus::Unclaimed,
                &WorkItemStatus::Claimed,
            ],
        )?;
        let item = self.work_item(uid)?;
        release_outcome(released, item)
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
            let mut client = self.client()?;
            let mut tx = client.transaction()?;
            let signed = tx.execute(
                sql::SIGN,
                &[
                    &uid,
                    &who,
                    &to_json(read),
                    &signed_at,
                    &WorkItemStatus::Signed,
                    &comparison,
                    &WorkItemStatus::Claimed,
                ],
            )?;
            if signed == 1 {
                tx.execute(sql::STUDY_STATE, &[&uid, &StudyState::Signed])?;
                record_results(&mut tx, results)?;
            }
            tx.commit()?;
            signed
        };
        let item = self.work_item(uid)?;
        sign_outcome(signed, item)
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
            let mut client = self.client()?;
            let mut tx = client.transaction()?;
            let kept = tx.execute(
                "INSERT INTO superseded_reads (study_instance_uid, signed_read, signed_at, superseded_at)
                 SELECT study_instance_uid, signed_read, signed_at, $3::BIGINT FROM work_items
                 WHERE study_instance_uid = $1 AND status = $2 AND signed_at = $4 AND signed_read IS NOT NULL
                 FOR UPDATE",
                &[&uid, &WorkItemStatus::Signed, &now_ms(), &replaces],
            )?;
            if kept == 1 {
                tx.execute(
                    "UPDATE work_items SET signed_read = $2, signed_at = $3, comparison = $4, images_after_signing = NULL
                     WHERE study_instance_uid = $1 AND signed_at = $5",
                    &[&uid, &to_json(read), &signed_at, &comparison, &replaces],
                )?;
                record_results(&mut tx, results)?;
            }
            tx.commit()?;
            kept
        };
        let item = self.work_item(uid)?;
        amend_outcome(amended, item)
    }

    fn signed_items(
        &self,
        start: Option<i64>,
        end: Option<i64>,
        model_version: &str,
    ) -> Result<Vec<WorkItemRow>, StoreError> {
        self
            .client()?
            .query(
                &format!(
                    "{} WHERE status = $4 AND signed_at >= $1 AND signed_at < $2 AND ($3 = '' OR model_version = $3)",
                    sql::WORK_ITEM_SELECT
                ),
                &[
                    &start.unwrap_or(i64::MIN),
                    &end.unwrap_or(i64::MAX),
                    &model_version,
                    &WorkItemStatus::Signed,
                ],
            )?
            .iter()
            .map(Self::item_from_row)
            .collect()
    }
}

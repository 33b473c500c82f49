//! The studies and their instances: ingest, completion, priors kept and expected.

use super::*;

impl StudyStore for SqliteStore {
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
}

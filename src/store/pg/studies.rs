//! The studies and their instances: ingest, completion, priors kept and expected.

use super::*;

impl StudyStore for PgStore {
    fn put_instance(
        &self,
        instance: &IncomingInstance,
    ) -> Result<(StoreOutcome, String), StoreError> {
        self.store_instance(instance)
    }

    fn study(&self, uid: &str) -> Result<StudyRow, StoreError> {
        self.client()?
            .query_opt(
                &format!("{} WHERE s.study_instance_uid = $1", sql::STUDY_SELECT),
                &[&uid],
            )?
            .map(|r| Self::study_from_row(&r))
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
        Ok(self
            .client()?
            .query(
                sql::QUIET_STUDIES,
                &[&StudyState::Receiving, &(now_ms() - quiet_ms)],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn study_instances(&self, uid: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .client()?
            .query(
                "SELECT sop_instance_uid, sha256 FROM instances WHERE study_instance_uid = $1 ORDER BY received_at, sop_instance_uid",
                &[&uid],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn instances_with_invalid_uids(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        const UID: &str = "'^(0|[1-9][0-9]*)([.](0|[1-9][0-9]*))*$'";
        let not_uid = |c: &str| format!("length({c}) > 64 OR {c} !~ {UID}");
        Ok(self
            .client()?
            .query(
                &format!(
                    "SELECT study_instance_uid, series_instance_uid, sop_instance_uid FROM instances
                     WHERE {} OR {} OR {}
                     ORDER BY study_instance_uid, series_instance_uid, sop_instance_uid",
                    not_uid("study_instance_uid"),
                    not_uid("series_instance_uid"),
                    not_uid("sop_instance_uid")
                ),
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    fn other_studies_of_patient(
        &self,
        patient_id: &str,
        except: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        // COLLATE "C": byte order, as SQLite compares the catalogue's dates.
        Ok(self
            .client()?
            .query(
                "SELECT study_instance_uid, study_date FROM studies
                 WHERE patient_id = $1 AND study_instance_uid != $2 AND patient_id != ''
                 ORDER BY study_date COLLATE \"C\" DESC, study_instance_uid COLLATE \"C\"",
                &[&patient_id, &except],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn put_prior_report(&self, report: &PriorReport) -> Result<bool, StoreError> {
        self.keep_prior_report(report)
    }

    fn prior_report(&self, study_uid: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .client()?
            .query_opt(sql::PRIOR_REPORT_TEXT, &[&study_uid])?
            .map(|r| r.get(0)))
    }

    fn expect_prior(&self, study_uid: &str, until_ms: i64) -> Result<i64, StoreError> {
        let mut client = self.client()?;
        // Expectations a crashed process left behind go first.
        client.execute(sql::EXPECTATIONS_PAST, &[&now_ms()])?;
        Ok(client
            .query_one(
                "INSERT INTO expected_priors (study_instance_uid, until_ms) VALUES ($1, $2) RETURNING id",
                &[&study_uid, &until_ms],
            )?
            .get(0))
    }

    fn end_prior_expectation(&self, id: i64) -> Result<(), StoreError> {
        self.client()?.execute(sql::END_EXPECTATION, &[&id])?;
        Ok(())
    }

    fn prior_expected(&self, study_uid: &str, now_ms: i64) -> Result<bool, StoreError> {
        Ok(self
            .client()?
            .query_opt(
                "SELECT 1 FROM expected_priors WHERE study_instance_uid = $1 AND until_ms >= $2 LIMIT 1",
                &[&study_uid, &now_ms],
            )?
            .is_some())
    }
}

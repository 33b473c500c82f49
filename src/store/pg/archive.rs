//! The catalogue as an archive: entries searched, attributes filled.

use super::*;
use crate::store::archive::{Archive, ArchiveEntry, ArchiveFilter};

impl Archive for PgStore {
    fn archive_entries(&self, filter: &ArchiveFilter) -> Result<Vec<ArchiveEntry>, StoreError> {
        let (query, binds) = sql::archive_entries(filter);
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = binds
            .iter()
            .map(|b| b as &(dyn postgres::types::ToSql + Sync))
            .collect();
        let rows = self.client()?.query(query.as_str(), &params)?;
        Ok(rows
            .iter()
            .map(|r| ArchiveEntry {
                study_instance_uid: r.get(0),
                sop_instance_uid: r.get(1),
                sha256: r.get(2),
                attributes: r.get(3),
                made: r.get(4),
            })
            .collect())
    }

    fn archive_studies(
        &self,
        filter: &ArchiveFilter,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<String>, usize), StoreError> {
        let (count, page, binds) = sql::archive_studies(filter, offset, limit);
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = binds
            .iter()
            .map(|b| b as &(dyn postgres::types::ToSql + Sync))
            .collect();
        let mut client = self.client()?;
        let total: i64 = client.query_one(count.as_str(), &params)?.get(0);
        let uids = client
            .query(page.as_str(), &params)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok((uids, total.max(0) as usize))
    }

    fn fill_archive_attributes(&self, filled: &[(String, String)]) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        for (sop, attributes) in filled {
            for statement in [sql::FILL_INSTANCE_ATTRIBUTES, sql::FILL_RESULT_ATTRIBUTES] {
                tx.execute(statement, &[sop, attributes])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

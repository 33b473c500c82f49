//! The catalogue as an archive: entries searched, attributes filled.

use super::*;
use crate::store::archive::{Archive, ArchiveEntry, ArchiveFilter};

impl Archive for SqliteStore {
    fn archive_entries(&self, filter: &ArchiveFilter) -> Result<Vec<ArchiveEntry>, StoreError> {
        let (query, binds) = sql::archive_entries(filter);
        let db = self.db();
        let mut q = db.prepare(&sql::sqlite(&query))?;
        let rows = q.query_map(rusqlite::params_from_iter(binds.iter()), |r| {
            Ok(ArchiveEntry {
                study_instance_uid: r.get(0)?,
                sop_instance_uid: r.get(1)?,
                sha256: r.get(2)?,
                attributes: r.get(3)?,
                made: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn archive_studies(
        &self,
        filter: &ArchiveFilter,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<String>, usize), StoreError> {
        let (count, page, binds) = sql::archive_studies(filter, offset, limit);
        let db = self.db();
        let total: i64 = db.query_row(
            &sql::sqlite(&count),
            rusqlite::params_from_iter(binds.iter()),
            |r| r.get(0),
        )?;
        let mut q = db.prepare(&sql::sqlite(&page))?;
        let uids = q
            .query_map(rusqlite::params_from_iter(binds.iter()), |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok((uids, total.max(0) as usize))
    }

    fn fill_archive_attributes(&self, filled: &[(String, String)]) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        for (sop, attributes) in filled {
            for statement in [sql::FILL_INSTANCE_ATTRIBUTES, sql::FILL_RESULT_ATTRIBUTES] {
                tx.execute(&sql::sqlite(statement), params![sop, attributes])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

//! The audit log: who did what to which resource, from where.

use super::*;

impl AuditLog for SqliteStore {
    fn audit(&self, row: &AuditRow) -> Result<(), StoreError> {
        self.db().execute(
            &sql::sqlite(sql::AUDIT),
            params![
                row.at_ms,
                row.who,
                row.role,
                row.action,
                row.resource,
                row.peer
            ],
        )?;
        Ok(())
    }

    /// Audit rows since `since_ms`, optionally one caller's, oldest first.
    fn audit_log(&self, since_ms: i64, who: &str) -> Result<Vec<AuditRow>, StoreError> {
        let db = self.db();
        let mut q = db.prepare(&sql::sqlite(sql::AUDIT_LOG))?;
        let rows = q.query_map(params![since_ms, who], |r| {
            Ok(AuditRow {
                at_ms: r.get(0)?,
                who: r.get(1)?,
                role: r.get(2)?,
                action: r.get(3)?,
                resource: r.get(4)?,
                peer: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

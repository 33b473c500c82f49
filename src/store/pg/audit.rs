//! The audit log: who did what to which resource, from where.

use super::*;

impl AuditLog for PgStore {
    fn audit(&self, row: &AuditRow) -> Result<(), StoreError> {
        self.client()?.execute(
            sql::AUDIT,
            &[
                &row.at_ms,
                &row.who,
                &row.role,
                &row.action,
                &row.resource,
                &row.peer,
            ],
        )?;
        Ok(())
    }

    fn audit_log(&self, since_ms: i64, who: &str) -> Result<Vec<AuditRow>, StoreError> {
        Ok(self
            .client()?
            .query(sql::AUDIT_LOG, &[&since_ms, &who])?
            .iter()
            .map(|r| AuditRow {
                at_ms: r.get(0),
                who: r.get(1),
                role: r.get(2),
                action: r.get(3),
                resource: r.get(4),
                peer: r.get(5),
            })
            .collect())
    }
}

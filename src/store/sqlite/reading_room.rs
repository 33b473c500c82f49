//! The reading room's tables in SQLite (see [`super::reading_room`]).

use super::SqliteStore;
use crate::roles::Role;
use crate::store::lifecycle::WorkItemStatus;
use crate::store::reading_room::*;
use crate::store::sql;
use crate::store::StoreError;
use rusqlite::{params, OptionalExtension};

fn user_from_row(r: &rusqlite::Row) -> rusqlite::Result<UserRow> {
    let role: String = r.get(1)?;
    Ok(UserRow {
        name: r.get(0)?,
        role: Role::parse(&role).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Text,
                format!("{role:?} is not a role").into(),
            )
        })?,
        password_hash: r.get(2)?,
        disabled: r.get(3)?,
        created_at: r.get(4)?,
    })
}

impl ReadingRoomStore for SqliteStore {
    fn add_user(&self, user: &UserRow) -> Result<(), StoreError> {
        let added = self.db().execute(
            "INSERT OR IGNORE INTO users (name, role, password_hash, disabled, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![user.name, user.role.as_str(), user.password_hash, user.disabled, user.created_at],
        )?;
        if added == 0 {
            return Err(StoreError::Precondition(format!(
                "a user named {:?} exists already",
                user.name
            )));
        }
        Ok(())
    }

    fn user(&self, name: &str) -> Result<Option<UserRow>, StoreError> {
        Ok(self
            .db()
            .query_row(
                &format!("{} WHERE name = ?1", sql::USERS),
                [name],
                user_from_row,
            )
            .optional()?)
    }

    fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let db = self.db();
        let mut q = db.prepare(&format!("{} ORDER BY name", sql::USERS))?;
        let rows = q.query_map([], user_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let changed = tx.execute(&sql::sqlite(sql::USER_DISABLED), params![name, disabled])?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("no user named {name:?}")));
        }
        if disabled {
            tx.execute(&sql::sqlite(sql::END_USER_SESSIONS), [name])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn begin_login_attempt(
        &self,
        username: &str,
        now_ms: i64,
        backoff: LoginBackoff,
    ) -> Result<LoginGate, StoreError> {
        // One connection behind a lock: the check and the count are one step.
        let db = self.db();
        let (attempts, last): (u32, i64) = db
            .query_row(
                "SELECT failures, last_failure_at FROM login_failures WHERE username = ?1",
                [username],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .unwrap_or((0, 0));
        let gate = LoginGate::at(backoff, attempts, last, now_ms);
        if gate == LoginGate::Go {
            db.execute(
                "INSERT INTO login_failures (username, failures, last_failure_at) VALUES (?1, 1, ?2)
                 ON CONFLICT (username) DO UPDATE SET failures = failures + 1, last_failure_at = ?2",
                params![username, now_ms],
            )?;
        }
        Ok(gate)
    }

    fn clear_login_failures(&self, username: &str) -> Result<(), StoreError> {
        self.db()
            .execute(&sql::sqlite(sql::FORGET_LOGIN_FAILURES), [username])?;
        Ok(())
    }

    fn create_session(&self, s: &SessionRow) -> Result<(), StoreError> {
        self.db().execute(
            &sql::sqlite(sql::NEW_WEB_SESSION),
            params![
                s.token_sha256,
                s.user_name,
                s.csrf_token,
                s.created_at,
                s.last_seen_at,
                s.peer
            ],
        )?;
        Ok(())
    }

    fn session(
        &self,
        token_sha256: &str,
        now_ms: i64,
        limits: SessionLimits,
    ) -> Result<Option<(SessionRow, UserRow)>, StoreError> {
        let db = self.db();
        // Alive: within both limits. The touch is itself the check (a conditional update).
        let alive = db.execute(
            "UPDATE web_sessions SET last_seen_at = ?2
             WHERE token_sha256 = ?1 AND last_seen_at >= ?2 - ?3 AND created_at >= ?2 - ?4",
            params![token_sha256, now_ms, limits.idle_ms, limits.absolute_ms],
        )?;
        if alive == 0 {
            db.execute(&sql::sqlite(sql::END_WEB_SESSION), [token_sha256])?;
            return Ok(None);
        }
        let found = db
            .query_row(
                "SELECT s.token_sha256, s.user_name, s.csrf_token, s.created_at, s.last_seen_at, s.peer,
                        u.name, u.role, u.password_hash, u.disabled, u.created_at
                 FROM web_sessions s JOIN users u ON u.name = s.user_name
                 WHERE s.token_sha256 = ?1 AND u.disabled = 0",
                [token_sha256],
                |r| {
                    let session = SessionRow {
                        token_sha256: r.get(0)?,
                        user_name: r.get(1)?,
                        csrf_token: r.get(2)?,
                        created_at: r.get(3)?,
                        last_seen_at: r.get(4)?,
                        peer: r.get(5)?,
                    };
                    let role: String = r.get(7)?;
                    let user = UserRow {
                        name: r.get(6)?,
                        role: Role::parse(&role).unwrap_or(Role::Pacs),
                        password_hash: r.get(8)?,
                        disabled: r.get(9)?,
                        created_at: r.get(10)?,
                    };
                    Ok((session, user))
                },
            )
            .optional()?;
        // A role this table cannot hold would be a corrupt row: no session for it.
        Ok(found.filter(|(_, u)| u.role != Role::Pacs))
    }

    fn end_session(&self, token_sha256: &str) -> Result<(), StoreError> {
        self.db()
            .execute(&sql::sqlite(sql::END_WEB_SESSION), [token_sha256])?;
        Ok(())
    }

    fn save_draft_edit(&self, e: &DraftEdit) -> Result<(), StoreError> {
        let saved = self.db().execute(
            "INSERT INTO draft_edits (study_instance_uid, radiologist, text, agreements, saved_at)
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM work_items
                 WHERE study_instance_uid = ?1 AND status = ?6 AND claimed_by = ?2)
             ON CONFLICT (study_instance_uid) DO UPDATE SET radiologist = excluded.radiologist,
                 text = excluded.text, agreements = excluded.agreements, saved_at = excluded.saved_at",
            params![e.study_instance_uid, e.radiologist, e.text, e.agreements, e.saved_at, WorkItemStatus::Claimed],
        )?;
        if saved == 0 {
            return Err(StoreError::Precondition(format!(
                "the study is not claimed by {}: claim it before editing its draft",
                e.radiologist
            )));
        }
        Ok(())
    }

    fn draft_edit(&self, uid: &str) -> Result<Option<DraftEdit>, StoreError> {
        Ok(self
            .db()
            .query_row(&sql::sqlite(sql::DRAFT_EDIT), [uid], |r| {
                Ok(DraftEdit {
                    study_instance_uid: r.get(0)?,
                    radiologist: r.get(1)?,
                    text: r.get(2)?,
                    agreements: r.get(3)?,
                    saved_at: r.get(4)?,
                })
            })
            .optional()?)
    }
}

//! The reading room's tables in PostgreSQL (see [`super::reading_room`]).

use super::PgStore;
use crate::roles::Role;
use crate::store::lifecycle::WorkItemStatus;
use crate::store::reading_room::*;
use crate::store::sql;
use crate::store::StoreError;
use postgres::Row;

fn user_from(r: &Row, first: usize) -> Result<UserRow, StoreError> {
    let role: String = r.get(first + 1);
    Ok(UserRow {
        name: r.get(first),
        // Only the web app's roles are stored (users add refuses the others).
        role: Role::parse(&role)
            .filter(|r| *r != Role::Pacs)
            .ok_or_else(|| StoreError::Precondition(format!("{role:?} is not a person's role")))?,
        password_hash: r.get(first + 2),
        disabled: r.get(first + 3),
        created_at: r.get(first + 4),
    })
}

impl ReadingRoomStore for PgStore {
    fn add_user(&self, user: &UserRow) -> Result<(), StoreError> {
        let added = self.client()?.execute(
            "INSERT INTO users (name, role, password_hash, disabled, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (name) DO NOTHING",
            &[&user.name, &user.role.as_str(), &user.password_hash, &user.disabled, &user.created_at],
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
        self.client()?
            .query_opt(&format!("{} WHERE name = $1", sql::USERS), &[&name])?
            .map(|r| user_from(&r, 0))
            .transpose()
    }

    fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        self.client()?
            .query(&format!("{} ORDER BY name COLLATE \"C\"", sql::USERS), &[])?
            .iter()
            .map(|r| user_from(r, 0))
            .collect()
    }

    fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let changed = tx.execute(sql::USER_DISABLED, &[&name, &disabled])?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("no user named {name:?}")));
        }
        if disabled {
            tx.execute(sql::END_USER_SESSIONS, &[&name])?;
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
        // The name's row locked (made first if new) while it is checked and counted: front
        // ends checking the same name at once wait for each other.
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        tx.execute(
            "INSERT INTO login_failures (username, failures, last_failure_at) VALUES ($1, 0, 0)
             ON CONFLICT (username) DO NOTHING",
            &[&username],
        )?;
        let row = tx.query_one(
            "SELECT failures, last_failure_at FROM login_failures WHERE username = $1 FOR UPDATE",
            &[&username],
        )?;
        let (attempts, last) = (row.get::<_, i32>(0) as u32, row.get::<_, i64>(1));
        let gate = LoginGate::at(backoff, attempts, last, now_ms);
        if gate == LoginGate::Go {
            tx.execute(
                "UPDATE login_failures SET failures = failures + 1, last_failure_at = $2 WHERE username = $1",
                &[&username, &now_ms],
            )?;
        }
        tx.commit()?;
        Ok(gate)
    }

    fn clear_login_failures(&self, username: &str) -> Result<(), StoreError> {
        self.client()?
            .execute(sql::FORGET_LOGIN_FAILURES, &[&username])?;
        Ok(())
    }

    fn create_session(&self, s: &SessionRow) -> Result<(), StoreError> {
        self.client()?.execute(
            sql::NEW_WEB_SESSION,
            &[
                &s.token_sha256,
                &s.user_name,
                &s.csrf_token,
                &s.created_at,
                &s.last_seen_at,
                &s.peer,
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
        let mut client = self.client()?;
        // Alive: within both limits. The touch is itself the check (a conditional update).
        let alive = client.execute(
            "UPDATE web_sessions SET last_seen_at = $2
             WHERE token_sha256 = $1 AND last_seen_at >= $2::BIGINT - $3::BIGINT
                 AND created_at >= $2::BIGINT - $4::BIGINT",
            &[&token_sha256, &now_ms, &limits.idle_ms, &limits.absolute_ms],
        )?;
        if alive == 0 {
            client.execute(sql::END_WEB_SESSION, &[&token_sha256])?;
            return Ok(None);
        }
        let Some(r) = client.query_opt(
            "SELECT s.token_sha256, s.user_name, s.csrf_token, s.created_at, s.last_seen_at, s.peer,
                    u.name, u.role, u.password_hash, u.disabled, u.created_at
             FROM web_sessions s JOIN users u ON u.name = s.user_name
             WHERE s.token_sha256 = $1 AND NOT u.disabled",
            &[&token_sha256],
        )?
        else {
            return Ok(None);
        };
        let session = SessionRow {
            token_sha256: r.get(0),
            user_name: r.get(1),
            csrf_token: r.get(2),
            created_at: r.get(3),
            last_seen_at: r.get(4),
            peer: r.get(5),
        };
        // A role this table cannot hold would be a corrupt row: no session for it.
        Ok(user_from(&r, 6).ok().map(|user| (session, user)))
    }

    fn end_session(&self, token_sha256: &str) -> Result<(), StoreError> {
        self.client()?
            .execute(sql::END_WEB_SESSION, &[&token_sha256])?;
        Ok(())
    }

    fn save_draft_edit(&self, e: &DraftEdit) -> Result<(), StoreError> {
        let saved = self.client()?.execute(
            "INSERT INTO draft_edits (study_instance_uid, radiologist, text, agreements, saved_at)
             SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::TEXT, $5::BIGINT WHERE EXISTS (SELECT 1 FROM work_items
                 WHERE study_instance_uid = $1 AND status = $6 AND claimed_by = $2)
             ON CONFLICT (study_instance_uid) DO UPDATE SET radiologist = excluded.radiologist,
                 text = excluded.text, agreements = excluded.agreements, saved_at = excluded.saved_at",
            &[&e.study_instance_uid, &e.radiologist, &e.text, &e.agreements, &e.saved_at, &WorkItemStatus::Claimed],
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
            .client()?
            .query_opt(sql::DRAFT_EDIT, &[&uid])?
            .map(|r| DraftEdit {
                study_instance_uid: r.get(0),
                radiologist: r.get(1),
                text: r.get(2),
                agreements: r.get(3),
                saved_at: r.get(4),
            }))
    }
}

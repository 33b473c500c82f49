//! What the web reading room keeps in the store: the people who log in (their role and
//! argon2id hash), failed logins (for the backoff), sessions, and each draft as its
//! radiologist edits it, before it is signed.
//!
//! Sessions are kept by the SHA-256 of their token, so a copy of the database holds no usable
//! session. A draft edit is saved only by the radiologist who holds the claim (a conditional
//! write, as every state change in the store).

use super::StoreError;
use crate::roles::Role;

/// A person who may log in to the web app.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub name: String,
    pub role: Role,
    /// The PHC string of an argon2id hash.
    pub password_hash: String,
    pub disabled: bool,
    pub created_at: i64,
}

/// A logged-in browser.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// SHA-256 (hex) of the cookie's token.
    pub token_sha256: String,
    pub user_name: String,
    /// What every state-changing request of this session must carry.
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub peer: String,
}

/// The draft as its radiologist is editing it: the text and their agreement with each
/// finding and device (JSON of `crate::web::reading::Agreements`).
#[derive(Debug, Clone, PartialEq)]
pub struct DraftEdit {
    pub study_instance_uid: String,
    pub radiologist: String,
    pub text: String,
    pub agreements: String,
    pub saved_at: i64,
}

/// How long a session lives: since its last request, and at most since its login (ms).
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub idle_ms: i64,
    pub absolute_ms: i64,
}

/// How failed logins slow the next try: `free` attempts in a row go at once; after that each
/// waits twice as long as the one before, from a second up to `max_wait_ms`.
#[derive(Debug, Clone, Copy)]
pub struct LoginBackoff {
    pub free: u32,
    pub max_wait_ms: i64,
}

impl LoginBackoff {
    /// How long after the last of `attempts` failed attempts in a row the next may come.
    pub fn wait_ms(self, attempts: u32) -> i64 {
        if attempts < self.free {
            return 0;
        }
        (1000_i64 << (attempts - self.free).min(20)).min(self.max_wait_ms)
    }
}

/// Whether a login attempt may be checked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginGate {
    /// Counted: check the password.
    Go,
    /// `attempts` failed in a row: wait `wait_ms` more.
    Wait { attempts: u32, wait_ms: i64 },
}

impl LoginGate {
    /// The gate for a name with `attempts` in a row, the last at `last_ms`.
    pub fn at(backoff: LoginBackoff, attempts: u32, last_ms: i64, now_ms: i64) -> LoginGate {
        let left = last_ms + backoff.wait_ms(attempts) - now_ms;
        if left > 0 {
            LoginGate::Wait {
                attempts,
                wait_ms: left,
            }
        } else {
            LoginGate::Go
        }
    }
}

pub trait ReadingRoomStore {
    /// Adds a person; Precondition if the name is taken.
    fn add_user(&self, user: &UserRow) -> Result<(), StoreError>;
    fn user(&self, name: &str) -> Result<Option<UserRow>, StoreError>;
    /// Everyone, by name.
    fn users(&self) -> Result<Vec<UserRow>, StoreError>;
    /// Disables (or enables) a person; disabling ends their sessions. NotFound if unknown.
    fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<(), StoreError>;
    /// Checks and counts a login attempt for `username` (known or not; the web app passes a
    /// hash of the name typed, never the text) in one step: Wait when
    /// the attempts in a row since the last success must wait still, else the attempt is
    /// counted now (as a failure until the login succeeds and clears the count) and Go. So
    /// concurrent guesses cannot all pass one check.
    fn begin_login_attempt(
        &self,
        username: &str,
        now_ms: i64,
        backoff: LoginBackoff,
    ) -> Result<LoginGate, StoreError>;
    fn clear_login_failures(&self, username: &str) -> Result<(), StoreError>;
    fn create_session(&self, session: &SessionRow) -> Result<(), StoreError>;
    /// The session and its person, when the session is alive at `now_ms` (within both limits)
    /// and the person enabled; its last request is then moved to `now_ms`. An expired session
    /// is deleted.
    fn session(
        &self,
        token_sha256: &str,
        now_ms: i64,
        limits: SessionLimits,
    ) -> Result<Option<(SessionRow, UserRow)>, StoreError>;
    fn end_session(&self, token_sha256: &str) -> Result<(), StoreError>;
    /// Saves the edit; Precondition unless the work item is CLAIMED by `edit.radiologist`.
    fn save_draft_edit(&self, edit: &DraftEdit) -> Result<(), StoreError>;
    fn draft_edit(&self, study_instance_uid: &str) -> Result<Option<DraftEdit>, StoreError>;
}

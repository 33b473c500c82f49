//! The catalogue's SQL that both backends run as written, once: PostgreSQL's numbered
//! placeholders (`$1`), which [`sqlite`] rewrites as SQLite's (`?1`). What differs between the
//! dialects stays in each backend's file: leases (`FOR UPDATE SKIP LOCKED`), advisory locks,
//! LISTEN/NOTIFY, `GREATEST` and `MAX`, arrays (`= ANY($1)`), `INSERT OR IGNORE`, and the
//! statements whose conditions PostgreSQL's concurrency needs and SQLite's single writer does not.
//!
//! Why a module of statements and not a query builder (sea-query): the statements are few,
//! fixed and read best as SQL a DBA can paste into psql or sqlite3; one placeholder rule is all
//! the two dialects need to share them.

/// `sql` with SQLite's placeholders: `$n` becomes `?n` (SQLite reads `$n` as a *named*
/// parameter, numbered in order of first use, which would bind `$2 ... $1` wrongly).
pub fn sqlite(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// A study's row: its state, instance count, last instance, attempts and fields.
pub const STUDY_SELECT: &str = "SELECT s.study_instance_uid, s.state,
     (SELECT COUNT(*) FROM instances i WHERE i.study_instance_uid = s.study_instance_uid),
     s.last_instance_at, j.attempts, s.failure_reason, s.patient_id, s.accession_number, s.study_date
     FROM studies s LEFT JOIN jobs j ON j.study_instance_uid = s.study_instance_uid";

/// A work item's row.
pub const WORK_ITEM_SELECT: &str = "SELECT study_instance_uid, status, critical, priority, claimed_by, created_at, content, analysis_json, model_version, signed_read, signed_at, comparison, report_json, images_after_signing FROM work_items";

/// An outbox row.
pub const OUTBOX_SELECT: &str = "SELECT id, study_instance_uid, sop_instance_uid, kind, peer, sha256, state, attempts, last_error, created_at, next_attempt_at, sent_at, attempt_started_at FROM outbox";

/// A study's new state, its failure reason cleared.
pub const STUDY_STATE_CLEARED: &str =
    "UPDATE studies SET state = $2, failure_reason = '' WHERE study_instance_uid = $1";

/// A result queued for a peer (once per SR and peer).
pub const QUEUE_RESULT: &str = "INSERT INTO outbox (study_instance_uid, sop_instance_uid, kind, peer, sha256, state, created_at, next_attempt_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
     ON CONFLICT (sop_instance_uid, peer) DO NOTHING";

/// Studies in a state whose last instance is older than a moment.
pub const QUIET_STUDIES: &str =
    "SELECT study_instance_uid FROM studies WHERE state = $1 AND last_instance_at < $2";

/// How many jobs are in a state.
pub const JOBS_IN_STATE: &str = "SELECT COUNT(*) FROM jobs WHERE state = $1";

/// A study's new state.
pub const STUDY_STATE: &str = "UPDATE studies SET state = $2 WHERE study_instance_uid = $1";

/// The report kept for a prior study.
pub const PRIOR_REPORT_TEXT: &str = "SELECT text FROM prior_reports WHERE study_instance_uid = $1";

/// A job's draft as the study's one current work item (an earlier unsigned one replaced).
pub const PUT_WORK_ITEM: &str = "INSERT INTO work_items (study_instance_uid, status, critical, priority, claimed_by, created_at, content, analysis_json, model_version, report_json)
     VALUES ($1, $8, $2, $3, NULL, $4, $5, $6, $7, $9)
     ON CONFLICT (study_instance_uid) DO UPDATE SET status = $8, critical = $2, priority = $3, claimed_by = NULL,
     created_at = $4, content = $5, analysis_json = $6, model_version = $7, signed_read = NULL, signed_at = NULL,
     comparison = NULL, report_json = $9, images_after_signing = NULL";

/// A study's new state with the reason.
pub const STUDY_FAILED: &str =
    "UPDATE studies SET state = $2, failure_reason = $3 WHERE study_instance_uid = $1";

/// UNCLAIMED -> CLAIMED by a radiologist.
pub const CLAIM: &str = "UPDATE work_items SET status = $3, claimed_by = $2 WHERE study_instance_uid = $1 AND status = $4";

/// CLAIMED by a radiologist -> UNCLAIMED.
pub const RELEASE: &str = "UPDATE work_items SET status = $3, claimed_by = NULL
     WHERE study_instance_uid = $1 AND status = $4 AND claimed_by = $2";

/// CLAIMED by a radiologist -> SIGNED with the read and its comparison.
pub const SIGN: &str =
    "UPDATE work_items SET status = $5, signed_read = $3, signed_at = $4, comparison = $6
     WHERE study_instance_uid = $1 AND status = $7 AND claimed_by = $2";

/// The newest signed SR queued for a study.
pub const LATEST_SIGNED_SR: &str = "SELECT sop_instance_uid, sha256 FROM result_objects
     WHERE study_instance_uid = $1 AND object = $2 AND kind IN ($3, $4) ORDER BY id DESC LIMIT 1";

/// A result object made (once per SOP instance).
pub const RECORD_RESULT: &str = "INSERT INTO result_objects (study_instance_uid, sop_instance_uid, object, kind, sha256, created_at, attributes)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (sop_instance_uid) DO NOTHING";

/// A study's result objects, oldest first.
pub const RESULTS_OF_STUDY: &str =
    "SELECT study_instance_uid, sop_instance_uid, object, kind, sha256, created_at, attributes
     FROM result_objects WHERE study_instance_uid = $1 ORDER BY id";

/// pending -> sent.
pub const RESULT_SENT: &str =
    "UPDATE outbox SET state = $2, sent_at = $3, attempts = attempts + 1, last_error = '',
         attempt_started_at = NULL
     WHERE id = $1 AND state = $4";

/// A failed send: the error and the next attempt.
pub const RESULT_FAILED: &str =
    "UPDATE outbox SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3,
         attempt_started_at = NULL
     WHERE id = $1 AND state = $4";

/// How many results are in a state.
pub const RESULTS_IN_STATE: &str = "SELECT COUNT(*) FROM outbox WHERE state = $1";

/// Prior expectations past their end (a crashed process's).
pub const EXPECTATIONS_PAST: &str = "DELETE FROM expected_priors WHERE until_ms < $1";

/// One prior expectation ended.
pub const END_EXPECTATION: &str = "DELETE FROM expected_priors WHERE id = $1";

/// An audit row.
pub const AUDIT: &str =
    "INSERT INTO audit (at_ms, who, role, action, resource, peer) VALUES ($1, $2, $3, $4, $5, $6)";

/// Audit rows since a moment, optionally one caller's.
pub const AUDIT_LOG: &str = "SELECT at_ms, who, role, action, resource, peer FROM audit
     WHERE at_ms >= $1 AND ($2 = '' OR who = $2) ORDER BY id";

/// A study's first instance makes its row (a known study is unchanged).
pub const NEW_STUDY: &str = "INSERT INTO studies (study_instance_uid, patient_id, accession_number, study_date, state, last_instance_at)
     VALUES ($1, $2, $3, $4, $6, $5) ON CONFLICT (study_instance_uid) DO NOTHING";

/// A study's row for an instance to analyse: receiving again, its last instance now.
pub const STUDY_RECEIVING: &str = "INSERT INTO studies (study_instance_uid, patient_id, accession_number, study_date, state, last_instance_at)
     VALUES ($1, $2, $3, $4, $6, $5)
     ON CONFLICT (study_instance_uid) DO UPDATE SET state = $6, last_instance_at = $5";

/// The blob an instance is stored as.
pub const INSTANCE_SHA256: &str = "SELECT sha256 FROM instances WHERE sop_instance_uid = $1";

/// Other bytes for a stored SOP Instance UID, kept for review.
pub const CONFLICT: &str =
    "INSERT INTO conflicts (sop_instance_uid, sha256, received_at) VALUES ($1, $2, $3)";

/// The reading room's accounts.
pub const USERS: &str = "SELECT name, role, password_hash, disabled, created_at FROM users";

/// An account disabled or enabled.
pub const USER_DISABLED: &str = "UPDATE users SET disabled = $2 WHERE name = $1";

/// Every session of an account ended.
pub const END_USER_SESSIONS: &str = "DELETE FROM web_sessions WHERE user_name = $1";

/// A name's failed logins forgotten (it logged in).
pub const FORGET_LOGIN_FAILURES: &str = "DELETE FROM login_failures WHERE username = $1";

/// A reading-room session begun.
pub const NEW_WEB_SESSION: &str =
    "INSERT INTO web_sessions (token_sha256, user_name, csrf_token, created_at, last_seen_at, peer)
     VALUES ($1, $2, $3, $4, $5, $6)";

/// A reading-room session ended.
pub const END_WEB_SESSION: &str = "DELETE FROM web_sessions WHERE token_sha256 = $1";

/// A study's edit in progress.
pub const DRAFT_EDIT: &str = "SELECT study_instance_uid, radiologist, text, agreements, saved_at FROM draft_edits WHERE study_instance_uid = $1";

/// The archive's entries of the studies `filter` matches, and the texts its placeholders
/// bind, in order: instances received, then result objects made, by study and arrival.
pub fn archive_entries(filter: &super::archive::ArchiveFilter) -> (String, Vec<String>) {
    let (condition, binds) = archive_condition(filter);
    let sql = format!(
        "SELECT study_instance_uid, sop_instance_uid, sha256, attributes, object FROM (
             SELECT i.study_instance_uid, i.sop_instance_uid, i.sha256, i.attributes,
                 CAST(NULL AS TEXT) AS object, 0 AS made, i.received_at AS at
             FROM instances i JOIN studies s ON s.study_instance_uid = i.study_instance_uid
             WHERE {condition}
             UNION ALL
             SELECT r.study_instance_uid, r.sop_instance_uid, r.sha256, r.attributes,
                 r.object, 1 AS made, r.created_at AS at
             FROM result_objects r JOIN studies s ON s.study_instance_uid = r.study_instance_uid
             WHERE {condition}) entries
         ORDER BY study_instance_uid, made, at, sop_instance_uid"
    );
    (sql, binds)
}

/// The studies (holding an instance) `filter` selects, in UID order: how many (the first
/// statement) and the UIDs of those from `offset`, at most `limit` (the second); both take the
/// same binds.
pub fn archive_studies(
    filter: &super::archive::ArchiveFilter,
    offset: usize,
    limit: usize,
) -> (String, String, Vec<String>) {
    let (condition, binds) = archive_condition(filter);
    let from = format!(
        "FROM studies s WHERE {condition} AND EXISTS
             (SELECT 1 FROM instances i WHERE i.study_instance_uid = s.study_instance_uid)"
    );
    (
        format!("SELECT COUNT(*) {from}"),
        format!("SELECT s.study_instance_uid {from} ORDER BY s.study_instance_uid LIMIT {limit} OFFSET {offset}"),
        binds,
    )
}

/// The condition on `studies s` that `filter` makes, and its binds.
fn archive_condition(filter: &super::archive::ArchiveFilter) -> (String, Vec<String>) {
    let mut binds: Vec<String> = Vec::new();
    let mut conditions: Vec<String> = Vec::new();
    let bind = |binds: &mut Vec<String>, value: &str| {
        binds.push(value.to_string());
        format!("${}", binds.len())
    };
    if !filter.study_uids.is_empty() {
        let list: Vec<String> = filter
            .study_uids
            .iter()
            .map(|uid| bind(&mut binds, uid))
            .collect();
        conditions.push(format!("s.study_instance_uid IN ({})", list.join(", ")));
    }
    let exact = [
        ("s.patient_id =", &filter.patient_id),
        ("s.accession_number =", &filter.accession_number),
        ("s.study_date >=", &filter.study_date_from),
        ("s.study_date <=", &filter.study_date_to),
    ];
    for (condition, value) in exact {
        if let Some(value) = value {
            conditions.push(format!("{condition} {}", bind(&mut binds, value)));
        }
    }
    if filter.study_date_from.is_some() || filter.study_date_to.is_some() {
        // A study without a date matches no range.
        conditions.push("s.study_date <> ''".into());
    }
    let condition = if conditions.is_empty() {
        "TRUE".to_string()
    } else {
        conditions.join(" AND ")
    };
    (condition, binds)
}

/// Attributes read from an entry's blob, kept where it had none (instances, then results).
pub const FILL_INSTANCE_ATTRIBUTES: &str =
    "UPDATE instances SET attributes = $2 WHERE sop_instance_uid = $1 AND attributes = ''";
pub const FILL_RESULT_ATTRIBUTES: &str =
    "UPDATE result_objects SET attributes = $2 WHERE sop_instance_uid = $1 AND attributes = ''";

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_become_sqlites_numbered_ones() {
        assert_eq!(
            super::sqlite("UPDATE t SET a = $2 WHERE b = $1 AND c ~ '^x$' AND d = $10"),
            "UPDATE t SET a = ?2 WHERE b = ?1 AND c ~ '^x$' AND d = ?10"
        );
    }
}

//! The SQLite catalogue's schema: tables a DBA can read, and the columns later versions added.

use rusqlite::Connection;
use std::path::Path;

pub const DATABASE: &str = "radassist.sqlite";

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    study_instance_uid TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    received_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS instances_by_study ON instances (study_instance_uid);
CREATE TABLE IF NOT EXISTS conflicts (
    id INTEGER PRIMARY KEY,
    sop_instance_uid TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    received_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS studies (
    study_instance_uid TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    accession_number TEXT NOT NULL,
    study_date TEXT NOT NULL,
    state TEXT NOT NULL,
    last_instance_at INTEGER NOT NULL,
    failure_reason TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS studies_by_patient ON studies (patient_id, study_date);
CREATE TABLE IF NOT EXISTS jobs (
    study_instance_uid TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    completions INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS work_items (
    study_instance_uid TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    critical INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    claimed_by TEXT,
    created_at INTEGER NOT NULL,
    template BLOB NOT NULL,
    analysis_json TEXT NOT NULL,
    model_version TEXT NOT NULL,
    final_read BLOB,
    signed_at INTEGER,
    comparison TEXT,
    report_json TEXT,
    images_after_signing INTEGER);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    study_instance_uid TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    kind TEXT NOT NULL,
    peer TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    sent_at INTEGER,
    UNIQUE (sop_instance_uid, peer));
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS prior_reports (
    study_instance_uid TEXT PRIMARY KEY,
    sop_instance_uid TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    content_date_time TEXT NOT NULL,
    text TEXT NOT NULL,
    received_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    who TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    peer TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS work_items_in_worklist_order
    ON work_items (status, critical DESC, priority DESC, created_at);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS login_failures (
    username TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS web_sessions (
    token_sha256 TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    peer TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS superseded_reads (
    study_instance_uid TEXT NOT NULL,
    final_read BLOB NOT NULL,
    signed_at INTEGER NOT NULL,
    superseded_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS expected_priors (
    id INTEGER PRIMARY KEY,
    study_instance_uid TEXT NOT NULL,
    until_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS expected_priors_by_study ON expected_priors (study_instance_uid);
CREATE TABLE IF NOT EXISTS draft_edits (
    study_instance_uid TEXT PRIMARY KEY,
    radiologist TEXT NOT NULL,
    text TEXT NOT NULL,
    agreements TEXT NOT NULL,
    saved_at INTEGER NOT NULL);
";

/// Columns later versions added, for stores an earlier version made.
pub fn migrate(db: &Connection) -> rusqlite::Result<()> {
    let has_comparison = db
        .prepare("SELECT 1 FROM pragma_table_info('work_items') WHERE name = 'comparison'")?
        .exists([])?;
    if !has_comparison {
        db.execute("ALTER TABLE work_items ADD COLUMN comparison TEXT", [])?;
    }
    let has_report = db
        .prepare("SELECT 1 FROM pragma_table_info('work_items') WHERE name = 'report_json'")?
        .exists([])?;
    if !has_report {
        db.execute("ALTER TABLE work_items ADD COLUMN report_json TEXT", [])?;
    }
    let has_images_after_signing = db
        .prepare(
            "SELECT 1 FROM pragma_table_info('work_items') WHERE name = 'images_after_signing'",
        )?
        .exists([])?;
    if !has_images_after_signing {
        db.execute(
            "ALTER TABLE work_items ADD COLUMN images_after_signing INTEGER",
            [],
        )?;
    }
    Ok(())
}

/// WAL readers see the last commit without waiting for the writer (whose commits wait on fsync).
pub fn read_only_connection(root: &Path) -> rusqlite::Result<Connection> {
    let reader = Connection::open_with_flags(
        root.join(DATABASE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    reader.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(reader)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A work_items table as the first versions made it gains every later column, and its rows
    /// keep their values.
    #[test]
    fn a_store_an_earlier_version_made_gains_the_later_columns() {
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch(
            "CREATE TABLE work_items (study_instance_uid TEXT PRIMARY KEY, status TEXT NOT NULL,
                 critical INTEGER NOT NULL, priority INTEGER NOT NULL, claimed_by TEXT,
                 created_at INTEGER NOT NULL, template BLOB NOT NULL, analysis_json TEXT NOT NULL,
                 model_version TEXT NOT NULL, final_read BLOB, signed_at INTEGER);
             INSERT INTO work_items VALUES ('1.2', 'SIGNED', 0, 10, 'dr-a', 1, x'', '{}', 't', x'72', 2);",
        )
        .unwrap();
        migrate(&db).unwrap();
        // Twice: a start after a migrated start changes nothing.
        migrate(&db).unwrap();
        let (read, comparison, report, images_after): (
            Vec<u8>,
            Option<String>,
            Option<String>,
            Option<i64>,
        ) = db
            .query_row(
                "SELECT final_read, comparison, report_json, images_after_signing FROM work_items",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            (read, comparison, report, images_after),
            (b"r".to_vec(), None, None, None)
        );
    }
}

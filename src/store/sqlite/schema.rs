//! The SQLite catalogue's schema: tables a DBA can read, numbered as PostgreSQL's are.
//!
//! A store records its schema version in `PRAGMA user_version`. Version 1 is [`SCHEMA`]; a
//! store that earlier versions of radassist made before they numbered their schema (version 0)
//! is brought to it by adding the columns they lacked. Each later version is one entry of
//! [`MIGRATIONS`]. Every step runs in its own write transaction that first reads the version,
//! so two processes opening one store at once (the server and `radassist users`) apply each
//! step once; a store from a newer radassist is refused rather than written.

use crate::store::documents::to_json;
use crate::store::legacy::{self, LegacyError};
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

/// One migration: it runs inside the write transaction that records its version.
type Step = fn(&rusqlite::Transaction) -> Result<(), StepError>;

/// The migrations after version 1, in order: entry `i` brings a store from version `i + 1` to
/// `i + 2`. Append; never edit one that has shipped.
const MIGRATIONS: &[Step] = &[
    work_item_documents,
    result_objects,
    outbox_attempts,
    archive_attributes,
];

/// The schema version this code writes.
pub const VERSION: i32 = 1 + MIGRATIONS.len() as i32;

/// Why one migration step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Database(#[from] rusqlite::Error),
    #[error(transparent)]
    Document(#[from] LegacyError),
}

/// Why a catalogue could not be brought to [`VERSION`].
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("the catalogue is at schema version {found}, newer than this radassist knows ({VERSION}): run the radassist that wrote it, or a newer one")]
    Newer { found: i32 },
    #[error("migrating the catalogue to schema version {to}: {source}")]
    Step {
        to: i32,
        #[source]
        source: StepError,
    },
}

/// Brings the catalogue to [`VERSION`], a step per transaction; the version it is at now.
pub fn migrate(db: &mut Connection) -> Result<i32, MigrationError> {
    for to in 1..=VERSION {
        let step = |source: rusqlite::Error| MigrationError::Step {
            to,
            source: source.into(),
        };
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(step)?;
        let at: i32 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(step)?;
        if at > VERSION {
            return Err(MigrationError::Newer { found: at });
        }
        if at >= to {
            continue;
        }
        if to == 1 {
            tx.execute_batch(SCHEMA).map_err(step)?;
            add_unnumbered_columns(&tx).map_err(step)?;
        } else {
            MIGRATIONS[(to - 2) as usize](&tx)
                .map_err(|source| MigrationError::Step { to, source })?;
        }
        tx.pragma_update(None, "user_version", to).map_err(step)?;
        tx.commit().map_err(step)?;
    }
    Ok(VERSION)
}

/// Version 5: the archive's searchable attributes of each instance and result object (filled
/// from the blobs, for rows catalogued before, when first searched), and the study columns a
/// search narrows by indexed.
fn archive_attributes(tx: &rusqlite::Transaction) -> Result<(), StepError> {
    tx.execute_batch(include_str!("../migrations/0007_archive_attributes.sql"))?;
    Ok(())
}

/// Version 4: when an attempt to send a result began.
fn outbox_attempts(tx: &rusqlite::Transaction) -> Result<(), StepError> {
    tx.execute_batch(OUTBOX_ATTEMPTS)?;
    Ok(())
}

/// When the attempt to send a result that is under way began (NULL between attempts): one a
/// crash cut off is still set at the next start.
pub const OUTBOX_ATTEMPTS: &str = "ALTER TABLE outbox ADD COLUMN attempt_started_at INTEGER;";

/// Version 3: the results catalogue (every object made for a study: reports, measurement
/// reports, presentation states, summary images), filled with the SRs already queued.
fn result_objects(tx: &rusqlite::Transaction) -> Result<(), StepError> {
    tx.execute_batch(RESULT_OBJECTS)?;
    Ok(())
}

/// The results catalogue, and the SRs earlier versions queued (each once, in the order made).
pub const RESULT_OBJECTS: &str = "
CREATE TABLE result_objects (
    id INTEGER PRIMARY KEY,
    study_instance_uid TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL UNIQUE,
    object TEXT NOT NULL,
    kind TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    created_at INTEGER NOT NULL);
CREATE INDEX result_objects_by_study ON result_objects (study_instance_uid);
INSERT INTO result_objects (study_instance_uid, sop_instance_uid, object, kind, sha256, created_at)
    SELECT study_instance_uid, sop_instance_uid, 'report', kind, sha256, MIN(created_at)
    FROM outbox GROUP BY study_instance_uid, sop_instance_uid, kind, sha256 ORDER BY MIN(id);
";

/// Version 2: a work item's draft and signed read as JSON documents ([`crate::store::documents`])
/// instead of the gRPC messages' bytes, every stored one converted (superseded reads too).
fn work_item_documents(tx: &rusqlite::Transaction) -> Result<(), StepError> {
    tx.execute_batch(
        "ALTER TABLE work_items ADD COLUMN content TEXT NOT NULL DEFAULT '';
         ALTER TABLE work_items ADD COLUMN signed_read TEXT;
         ALTER TABLE superseded_reads ADD COLUMN signed_read TEXT NOT NULL DEFAULT '';",
    )?;
    let items: Vec<(String, Vec<u8>, Option<Vec<u8>>)> = tx
        .prepare("SELECT study_instance_uid, template, final_read FROM work_items")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (uid, template, read) in items {
        let content = to_json(&legacy::work_item_content(&template, &uid)?);
        let read = match read {
            Some(bytes) => Some(to_json(&legacy::signed_read(&bytes, &uid)?)),
            None => None,
        };
        tx.execute(
            "UPDATE work_items SET content = ?2, signed_read = ?3 WHERE study_instance_uid = ?1",
            rusqlite::params![uid, content, read],
        )?;
    }
    let superseded: Vec<(i64, String, Vec<u8>)> = tx
        .prepare("SELECT rowid, study_instance_uid, final_read FROM superseded_reads")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (rowid, uid, bytes) in superseded {
        let read = to_json(&legacy::signed_read(&bytes, &uid)?);
        tx.execute(
            "UPDATE superseded_reads SET signed_read = ?2 WHERE rowid = ?1",
            rusqlite::params![rowid, read],
        )?;
    }
    tx.execute_batch(
        "ALTER TABLE work_items DROP COLUMN template;
         ALTER TABLE work_items DROP COLUMN final_read;
         ALTER TABLE superseded_reads DROP COLUMN final_read;",
    )?;
    Ok(())
}

/// The columns that versions before the schema was numbered added one by one: a store made by
/// one of them may lack any of them (a store made now has them all from [`SCHEMA`]).
fn add_unnumbered_columns(db: &Connection) -> rusqlite::Result<()> {
    for (column, kind) in [
        ("comparison", "TEXT"),
        ("report_json", "TEXT"),
        ("images_after_signing", "INTEGER"),
    ] {
        let present = db
            .prepare("SELECT 1 FROM pragma_table_info('work_items') WHERE name = ?1")?
            .exists([column])?;
        if !present {
            db.execute(
                &format!("ALTER TABLE work_items ADD COLUMN {column} {kind}"),
                [],
            )?;
        }
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

    /// A work_items table as the first versions made it gains every later column, its
    /// protobuf read becomes the document, and its rows keep their values.
    #[test]
    fn the_results_catalogue_starts_with_the_srs_the_outbox_held() {
        let mut db = Connection::open_in_memory().unwrap();
        db.execute_batch(SCHEMA).unwrap();
        db.execute_batch(
            "INSERT INTO outbox (study_instance_uid, sop_instance_uid, kind, peer, sha256, state,
                 created_at, next_attempt_at)
             VALUES ('1.2', '2.25.1', 'draft', 'PACS', 'aa', 'sent', 5, 5),
                    ('1.2', '2.25.1', 'draft', 'ARCHIVE', 'aa', 'sent', 6, 6),
                    ('1.2', '2.25.2', 'final', 'PACS', 'bb', 'pending', 9, 9);",
        )
        .unwrap();
        db.pragma_update(None, "user_version", 2).unwrap();
        assert_eq!(migrate(&mut db).unwrap(), VERSION);
        let rows: Vec<(String, String, String, i64)> = db
            .prepare(
                "SELECT sop_instance_uid, object, kind, created_at FROM result_objects ORDER BY id",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                ("2.25.1".into(), "report".into(), "draft".into(), 5),
                ("2.25.2".into(), "report".into(), "final".into(), 9)
            ]
        );
    }

    #[test]
    fn a_store_an_earlier_version_made_gains_the_later_columns() {
        let mut db = Connection::open_in_memory().unwrap();
        // The read: FinalRead { text: "r" } as protobuf (field 1, length 1, "r").
        db.execute_batch(
            "CREATE TABLE work_items (study_instance_uid TEXT PRIMARY KEY, status TEXT NOT NULL,
                 critical INTEGER NOT NULL, priority INTEGER NOT NULL, claimed_by TEXT,
                 created_at INTEGER NOT NULL, template BLOB NOT NULL, analysis_json TEXT NOT NULL,
                 model_version TEXT NOT NULL, final_read BLOB, signed_at INTEGER);
             INSERT INTO work_items VALUES ('1.2', 'SIGNED', 0, 10, 'dr-a', 1, x'', '{}', 't', x'0a0172', 2);",
        )
        .unwrap();
        assert_eq!(migrate(&mut db).unwrap(), VERSION);
        // Twice: a start after a migrated start changes nothing.
        assert_eq!(migrate(&mut db).unwrap(), VERSION);
        let version: i32 = db
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, VERSION);
        let (read, comparison, report, images_after, claimed): (
            String,
            Option<String>,
            Option<String>,
            Option<i64>,
            String,
        ) = db
            .query_row(
                "SELECT signed_read, comparison, report_json, images_after_signing, claimed_by FROM work_items",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        let read: crate::store::documents::SignedRead =
            crate::store::documents::from_json(&read, "signed read", "1.2").unwrap();
        assert_eq!(read.text, "r");
        assert_eq!(
            (comparison, report, images_after, claimed.as_str()),
            (None, None, None, "dr-a")
        );
    }

    /// A read whose bytes are not the message stops the migration, and the store is left as
    /// it was: nothing is lost, and the error names the study.
    #[test]
    fn a_read_that_does_not_decode_stops_the_migration_unchanged() {
        let mut db = Connection::open_in_memory().unwrap();
        db.execute_batch(SCHEMA).unwrap();
        db.pragma_update(None, "user_version", 1).unwrap();
        db.execute_batch(
            "INSERT INTO work_items (study_instance_uid, status, critical, priority, created_at,
                 template, analysis_json, model_version, final_read, signed_at)
             VALUES ('1.2.3', 'SIGNED', 0, 10, 1, x'', '{}', 't', x'ffffff', 2);",
        )
        .unwrap();
        let error = migrate(&mut db).unwrap_err();
        assert!(error.to_string().contains("1.2.3"), "{error}");
        let (version, read): (i32, Vec<u8>) = db
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version), final_read FROM work_items",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((version, read), (1, vec![0xff, 0xff, 0xff]));
    }

    #[test]
    fn a_catalogue_from_a_newer_radassist_is_refused_unchanged() {
        let mut db = Connection::open_in_memory().unwrap();
        db.pragma_update(None, "user_version", VERSION + 1).unwrap();
        let error = migrate(&mut db).unwrap_err();
        assert!(
            error.to_string().contains("newer than this radassist"),
            "{error}"
        );
        let tables: i64 = db
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 0, "nothing was written");
    }
}

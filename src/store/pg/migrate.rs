//! The PostgreSQL catalogue's schema: numbered migrations (`src/store/migrations/`), applied at
//! start under an advisory lock so that processes starting together migrate once, each
//! recorded in `schema_migrations`; a database newer than this binary is refused.

use super::{connection_config, connector, describe};
use crate::causes::with_causes;
use crate::config::StoreConfig;
use crate::store::documents::to_json;
use crate::store::{legacy, StoreError};

/// A migration's step in Rust, after its SQL, in the same transaction.
type Convert = fn(&mut postgres::Transaction) -> Result<(), StoreError>;

/// The migrations, oldest first: (version, name, SQL, then a conversion in Rust where one is
/// needed). Applied ones are recorded in `schema_migrations`; a database newer than this
/// binary is refused.
const MIGRATIONS: &[(i32, &str, &str, Option<Convert>)] = &[
    (
        1,
        "catalogue",
        include_str!("../migrations/0001_catalogue.sql"),
        None,
    ),
    (
        2,
        "images after signing",
        include_str!("../migrations/0002_images_after_signing.sql"),
        None,
    ),
    (
        3,
        "work item documents",
        include_str!("../migrations/0003_work_item_documents.sql"),
        Some(work_item_documents),
    ),
    (
        4,
        "protobuf columns dropped",
        include_str!("../migrations/0004_protobuf_columns_dropped.sql"),
        None,
    ),
    (
        5,
        "result objects",
        include_str!("../migrations/0005_result_objects.sql"),
        None,
    ),
    (
        6,
        "outbox attempt started",
        include_str!("../migrations/0006_outbox_attempt_started.sql"),
        None,
    ),
    (
        7,
        "archive attributes",
        include_str!("../migrations/0007_archive_attributes.sql"),
        None,
    ),
];

/// The advisory lock that serialises migrations ("radassist" in ASCII, as a number).
const MIGRATION_LOCK: i64 = 0x7261_6461_7373_6973;

/// Brings the schema up to date (under the advisory lock); returns the version it is at.
pub fn migrate(client: &mut postgres::Client) -> Result<i32, StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )?;
    let applied: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )?
        .get(0);
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if applied > newest {
        return Err(StoreError::Precondition(format!(
            "the database's schema is at version {applied}, newer than this radassist knows ({newest}): run the radassist that migrated it, or a newer one"
        )));
    }
    for (version, name, sql, convert) in MIGRATIONS.iter().filter(|m| m.0 > applied) {
        tx.batch_execute(sql)?;
        if let Some(convert) = convert {
            convert(&mut tx)?;
        }
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )?;
        tracing::info!("PostgreSQL schema migrated to version {version} ({name})");
    }
    tx.commit()?;
    Ok(newest)
}

/// Version 3: every work item's draft and signed read, and every superseded read, from the gRPC
/// messages' bytes to the JSON documents of [`crate::store::documents`].
fn work_item_documents(tx: &mut postgres::Transaction) -> Result<(), StoreError> {
    for row in tx.query(
        "SELECT study_instance_uid, template, final_read FROM work_items",
        &[],
    )? {
        let uid: String = row.get(0);
        let content = to_json(&legacy::work_item_content(row.get(1), &uid)?);
        let read = match row.get::<_, Option<&[u8]>>(2) {
            Some(bytes) => Some(to_json(&legacy::signed_read(bytes, &uid)?)),
            None => None,
        };
        tx.execute(
            "UPDATE work_items SET content = $2, signed_read = $3 WHERE study_instance_uid = $1",
            &[&uid, &content, &read],
        )?;
    }
    for row in tx.query(
        "SELECT ctid::TEXT, study_instance_uid, final_read FROM superseded_reads",
        &[],
    )? {
        let (ctid, uid): (String, String) = (row.get(0), row.get(1));
        let read = to_json(&legacy::signed_read(row.get(2), &uid)?);
        tx.execute(
            "UPDATE superseded_reads SET signed_read = $2 WHERE ctid = $1::TEXT::TID",
            &[&ctid, &read],
        )?;
    }
    Ok(())
}

/// `radassist migrate`: connects and brings the schema up to date.
pub fn migrate_configured(config: &StoreConfig) -> Result<i32, String> {
    if config.backend != crate::config::StoreBackend::Postgres {
        return Err("radassist migrate is for [store] backend = \"postgres\" (SQLite's schema is brought up to date by every start)".into());
    }
    let pg = connection_config(config)?;
    let mut client = pg.connect(connector(config)?).map_err(|e| {
        format!(
            "cannot use the PostgreSQL {}: {}",
            describe(&pg),
            with_causes(&e)
        )
    })?;
    migrate(&mut client).map_err(|e| e.to_string())
}

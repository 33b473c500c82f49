//! The catalogue on PostgreSQL, for several front ends and workers sharing one database: the
//! same tables and the same conditional updates as the SQLite store, a connection pool sized in
//! the configuration, and versioned migrations applied at start under an advisory lock (two
//! processes starting together do not race).
//!
//! Jobs: a worker takes the oldest queued job with `FOR UPDATE SKIP LOCKED` (workers never wait
//! on each other's rows) and holds it under a lease that this process renews while it runs the
//! job. A job whose lease ran out (its process died or lost the database) is taken again by
//! another worker, and the old holder's finish is then refused: its lease and attempt no longer
//! match, so a study's draft is kept exactly once.
//!
//! Every call blocks (the `postgres` crate runs its own small runtime per connection); the
//! service makes them on blocking threads, as for SQLite.

use super::documents::{from_json, to_json, SignedRead};
use super::legacy;
use super::outcomes::{amend_outcome, claim_outcome, release_outcome, sign_outcome};
use super::sql;
use super::*;
use crate::config::StoreConfig;
use crate::store::lifecycle::{JobState, StudyState, WorkItemStatus};
use postgres::{GenericClient, Row};
use r2d2_postgres::PostgresConnectionManager;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How radassist connects: TLS when `store.tls_ca` is set (plain otherwise: `sslmode=disable`).
pub type Connector = MakeRustlsConnect;
pub type Pool = r2d2::Pool<PostgresConnectionManager<Connector>>;

/// A migration's step in Rust, after its SQL, in the same transaction.
type Convert = fn(&mut postgres::Transaction) -> Result<(), StoreError>;

/// The migrations, oldest first: (version, name, SQL, then a conversion in Rust where one is
/// needed). Applied ones are recorded in `schema_migrations`; a database newer than this
/// binary is refused.
const MIGRATIONS: &[(i32, &str, &str, Option<Convert>)] = &[
    (
        1,
        "catalogue",
        include_str!("migrations/0001_catalogue.sql"),
        None,
    ),
    (
        2,
        "images after signing",
        include_str!("migrations/0002_images_after_signing.sql"),
        None,
    ),
    (
        3,
        "work item documents",
        include_str!("migrations/0003_work_item_documents.sql"),
        Some(work_item_documents),
    ),
    (
        4,
        "protobuf columns dropped",
        include_str!("migrations/0004_protobuf_columns_dropped.sql"),
        None,
    ),
];

/// The advisory lock that serialises migrations ("radassist" in ASCII, as a number).
const MIGRATION_LOCK: i64 = 0x7261_6461_7373_6973;

pub struct PgStore {
    pool: Pool,
    pub(super) blobs: Box<dyn BlobStore>,
    /// Who holds a lease: this process (host, pid and a random part).
    owner: String,
    lease_ms: i64,
    /// The jobs this process runs now, with their attempt numbers: their leases are renewed.
    held: Arc<Mutex<HashMap<String, i32>>>,
}

/// The connector for `config`: TLS 1.2+ checked against `tls_ca` (and the host's name), or,
/// without a CA, one that is never used (the connection settings say `sslmode=disable`).
pub fn connector(config: &StoreConfig) -> Result<Connector, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = &config.tls_ca {
        let certificates = crate::pem::certificates(path, "store.tls_ca")?;
        let (added, _) = roots.add_parsable_certificates(certificates);
        if added == 0 {
            return Err(format!(
                "store.tls_ca {}: no CA certificate in it (PEM expected)",
                path.display()
            ));
        }
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(tls))
}

/// The connection settings of `config`, with the password from `RADASSIST_STORE_PASSWORD`;
/// TLS required when `tls_ca` is set, off otherwise.
pub fn connection_config(config: &StoreConfig) -> Result<postgres::Config, String> {
    if config.url.is_empty() {
        return Err("store.backend is postgres but store.url is empty: set it to a connection string such as \"host=127.0.0.1 user=radassist dbname=radassist\"".into());
    }
    let mut pg: postgres::Config = config
        .url
        .parse()
        .map_err(|e| format!("store.url is not a PostgreSQL connection string: {e}"))?;
    if let Ok(password) = std::env::var("RADASSIST_STORE_PASSWORD") {
        pg.password(password);
    }
    pg.application_name("radassist")
        .connect_timeout(Duration::from_secs(config.connect_timeout_seconds.max(1)))
        .ssl_mode(if config.tls_ca.is_some() {
            postgres::config::SslMode::Require
        } else {
            postgres::config::SslMode::Disable
        });
    Ok(pg)
}

/// An error with what caused it, down the chain ("error performing TLS handshake: invalid
/// peer certificate: UnknownIssuer").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// Where `pg` points, for messages (never its password).
pub fn describe(pg: &postgres::Config) -> String {
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    format!(
        "database {:?} on {} as {:?}",
        pg.get_dbname().unwrap_or("(default)"),
        if hosts.is_empty() {
            "(default host)".into()
        } else {
            hosts.join(",")
        },
        pg.get_user().unwrap_or("(default user)")
    )
}

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
/// messages' bytes to the JSON documents of [`super::documents`].
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

impl PgStore {
    /// Connects (waiting at most `connect_timeout_seconds`), migrates, and starts renewing the
    /// leases of the jobs this process will take.
    pub fn open(config: &StoreConfig, blobs: Box<dyn BlobStore>) -> Result<PgStore, String> {
        let pg = connection_config(config)?;
        let place = describe(&pg);
        let unreachable = |e: &dyn std::fmt::Display| {
            format!("cannot use the PostgreSQL {place}: {e}. Check store.url, that the server runs and accepts this user (pg_hba.conf), RADASSIST_STORE_PASSWORD, and store.tls_ca")
        };
        let connector = connector(config)?;
        // One connection first: its error says why (a pool's says only that it timed out),
        // and it migrates.
        {
            let mut client = pg
                .connect(connector.clone())
                .map_err(|e| unreachable(&with_causes(&e)))?;
            migrate(&mut client).map_err(|e| unreachable(&e))?;
        }
        let pool = r2d2::Pool::builder()
            .max_size(config.pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(config.connect_timeout_seconds.max(1)))
            .build(PostgresConnectionManager::new(pg, connector))
            .map_err(|e| unreachable(&e))?;
        let lease_ms = (config.job_lease_seconds.max(1) * 1000) as i64;
        let store = PgStore {
            pool,
            blobs,
            owner: format!(
                "{}:{}",
                std::process::id(),
                uuid::Uuid::new_v4().as_simple()
            ),
            lease_ms,
            held: Arc::default(),
        };
        store.renew_leases_while_open();
        Ok(store)
    }

    pub(super) fn client(
        &self,
    ) -> Result<r2d2::PooledConnection<PostgresConnectionManager<Connector>>, StoreError> {
        Ok(self.pool.get()?)
    }

    /// The pool, for the event relay's own connection settings and for health.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Renews the leases of the jobs this process holds, every third of a lease, until the
    /// store is dropped. A failed renewal is logged and tried again at the next turn: should the
    /// lease run out meanwhile, another worker takes the job and this one's finish is refused.
    fn renew_leases_while_open(&self) {
        let pool = self.pool.clone();
        let held = Arc::downgrade(&self.held);
        let owner = self.owner.clone();
        let lease_ms = self.lease_ms;
        let spawned = std::thread::Builder::new()
            .name("job-leases".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis((lease_ms / 3).max(100) as u64));
                let Some(held) = held.upgrade() else { return };
                let uids: Vec<String> = held
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .keys()
                    .cloned()
                    .collect();
                drop(held);
                if uids.is_empty() {
                    continue;
                }
                let renewed = pool.get().map_err(|e| e.to_string()).and_then(|mut c| {
                    c.execute(
                        "UPDATE jobs SET lease_until = $3
                         WHERE study_instance_uid = ANY($1) AND lease_owner = $2 AND state = $4",
                        &[&uids, &owner, &(now_ms() + lease_ms), &JobState::Running],
                    )
                    .map_err(|e| e.to_string())
                });
                match renewed {
                    Ok(n) if n as usize == uids.len() => {}
                    Ok(n) => tracing::warn!(
                        "job leases: {n} of {} renewed; the others were taken again elsewhere",
                        uids.len()
                    ),
                    Err(e) => tracing::error!("job leases: renewal failed, retrying: {e}"),
                }
            });
        if let Err(e) = spawned {
            tracing::error!("job leases: cannot start the renewal thread: {e}");
        }
    }

    /// The attempt this process holds of study `uid`'s job.
    fn held_attempt(&self, uid: &str) -> Result<i32, StoreError> {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid)
            .copied()
            .ok_or_else(|| {
                StoreError::Precondition(format!(
                    "this process does not hold the job of study {uid}: its draft is not kept"
                ))
            })
    }

    fn forget_job(&self, uid: &str) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
    }

    pub(super) fn study_from_row(r: &Row) -> StudyRow {
        StudyRow {
            study_instance_uid: r.get(0),
            state: r.get(1),
            instance_count: r.get::<_, i64>(2) as u32,
            last_instance_at: r.get(3),
            attempts: r.get::<_, Option<i32>>(4).unwrap_or(0) as u32,
            failure_reason: r.get(5),
            patient_id: r.get(6),
            accession_number: r.get(7),
            study_date: r.get(8),
        }
    }

    fn item_from_row(r: &Row) -> Result<WorkItemRow, StoreError> {
        let uid: String = r.get(0);
        Ok(WorkItemRow {
            study_instance_uid: r.get(0),
            status: r.get(1),
            critical: r.get(2),
            priority: r.get(3),
            claimed_by: r.get(4),
            created_at: r.get(5),
            content: from_json(r.get(6), "work item", &uid)?,
            analysis_json: r.get(7),
            model_version: r.get(8),
            final_read: r
                .get::<_, Option<&str>>(9)
                .map(|json| from_json(json, "signed read", &uid))
                .transpose()?,
            signed_at: r.get(10),
            comparison: r.get(11),
            report_json: r.get(12),
            images_after_signing: r.get(13),
        })
    }

    fn outbox_from_row(r: &Row) -> OutboxRow {
        OutboxRow {
            id: r.get(0),
            result: OutgoingResult {
                study_instance_uid: r.get(1),
                sop_instance_uid: r.get(2),
                kind: r.get(3),
                peer: r.get(4),
                sha256: r.get(5),
            },
            state: r.get(6),
            attempts: r.get::<_, i32>(7) as u32,
            last_error: r.get(8),
            created_at: r.get(9),
            next_attempt_at: r.get(10),
            sent_at: r.get(11),
        }
    }
}

/// Queues results (a result already queued for that peer stays as it is).
fn queue_results(
    tx: &mut impl GenericClient,
    results: &[OutgoingResult],
) -> Result<(), postgres::Error> {
    let now = now_ms();
    for r in results {
        tx.execute(
            sql::QUEUE_RESULT,
            &[
                &r.study_instance_uid,
                &r.sop_instance_uid,
                &r.kind,
                &r.peer,
                &r.sha256,
                &OutboxState::Pending,
                &now,
            ],
        )?;
    }
    Ok(())
}

impl PgStore {
    /// Queues study `uid`'s analysis if it has instances not analysed yet (RECEIVING, or a
    /// PRIOR sent for analysis of its own) and, with `quiet_before`, none since then; true
    /// when it did. Of several callers at once (front ends' timers, a PACS's CompleteStudy)
    /// one does; a study sent again (duplicates only) is not analysed again.
    fn complete_if_new(&self, uid: &str, quiet_before: Option<i64>) -> Result<bool, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let completed = tx.execute(
            "UPDATE studies SET state = $2 WHERE study_instance_uid = $1 AND state IN ($3, $4)
                 AND ($5::BIGINT IS NULL OR last_instance_at < $5)",
            &[
                &uid,
                &StudyState::Queued,
                &StudyState::Receiving,
                &StudyState::Prior,
                &quiet_before,
            ],
        )?;
        if completed == 0 {
            return Ok(false);
        }
        queue_job(&mut tx, uid)?;
        tx.commit()?;
        Ok(true)
    }
}

/// Queues study `uid`'s analysis unless it is already queued or running (one conditional
/// upsert); the study becomes QUEUED when it was.
fn queue_job(tx: &mut impl GenericClient, uid: &str) -> Result<bool, postgres::Error> {
    let queued = tx.execute(
        "INSERT INTO jobs (study_instance_uid, state, attempts, updated_at) VALUES ($1, $2, 0, $3)
         ON CONFLICT (study_instance_uid) DO UPDATE SET state = $2, attempts = 0, last_error = '',
             updated_at = $3, lease_owner = NULL, lease_until = NULL
         WHERE jobs.state NOT IN ($2, $4)",
        &[&uid, &JobState::Queued, &now_ms(), &JobState::Running],
    )?;
    if queued > 0 {
        tx.execute(sql::STUDY_STATE_CLEARED, &[&uid, &StudyState::Queued])?;
    }
    Ok(queued > 0)
}

impl Store for PgStore {
    fn blobs(&self) -> &dyn BlobStore {
        self.blobs.as_ref()
    }

    fn put_instance(
        &self,
        instance: &IncomingInstance,
    ) -> Result<(StoreOutcome, String), StoreError> {
        self.store_instance(instance)
    }

    fn study(&self, uid: &str) -> Result<StudyRow, StoreError> {
        self.client()?
            .query_opt(
                &format!("{} WHERE s.study_instance_uid = $1", sql::STUDY_SELECT),
                &[&uid],
            )?
            .map(|r| Self::study_from_row(&r))
            .ok_or_else(|| StoreError::NotFound(format!("no instance of study {uid} was stored")))
    }

    fn complete_study(&self, uid: &str) -> Result<StudyRow, StoreError> {
        self.study(uid)?;
        self.complete_if_new(uid, None)?;
        self.study(uid)
    }

    fn complete_stable_study(
        &self,
        uid: &str,
        quiet_ms: i64,
    ) -> Result<Option<StudyRow>, StoreError> {
        if !self.complete_if_new(uid, Some(now_ms() - quiet_ms))? {
            return Ok(None);
        }
        self.study(uid).map(Some)
    }

    fn stable_studies(&self, quiet_ms: i64) -> Result<Vec<String>, StoreError> {
        Ok(self
            .client()?
            .query(
                sql::QUIET_STUDIES,
                &[&StudyState::Receiving, &(now_ms() - quiet_ms)],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn queue_depth(&self) -> Result<i64, StoreError> {
        Ok(self
            .client()?
            .query_one(sql::JOBS_IN_STATE, &[&JobState::Queued])?
            .get(0))
    }

    fn take_job(&self) -> Result<Option<TakenJob>, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let now = now_ms();
        // The oldest queued job, or a running one whose lease ran out; rows other workers are
        // taking at this moment are skipped, not waited for.
        let taken = tx.query_opt(
            "WITH next AS (
                 SELECT study_instance_uid, updated_at FROM jobs
                 WHERE state = $1 OR (state = $2 AND lease_until < $3)
                 ORDER BY updated_at LIMIT 1
                 FOR UPDATE SKIP LOCKED)
             UPDATE jobs j SET state = $2, attempts = j.attempts + 1, updated_at = $3,
                 lease_owner = $4, lease_until = $5
             FROM next WHERE j.study_instance_uid = next.study_instance_uid
             RETURNING j.study_instance_uid, next.updated_at, j.attempts",
            &[
                &JobState::Queued,
                &JobState::Running,
                &now,
                &self.owner,
                &(now + self.lease_ms),
            ],
        )?;
        let Some(row) = taken else {
            return Ok(None);
        };
        let uid: String = row.get(0);
        let queued_at: i64 = row.get(1);
        let attempt: i32 = row.get(2);
        tx.execute(sql::STUDY_STATE, &[&uid, &StudyState::Analyzing])?;
        tx.commit()?;
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid.clone(), attempt);
        Ok(Some(TakenJob {
            study_instance_uid: uid,
            waited_ms: (now - queued_at).max(0),
            attempt: attempt as u32,
        }))
    }

    fn study_instances(&self, uid: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .client()?
            .query(
                "SELECT sop_instance_uid, sha256 FROM instances WHERE study_instance_uid = $1 ORDER BY received_at, sop_instance_uid",
                &[&uid],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn instances_with_invalid_uids(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        const UID: &str = "'^(0|[1-9][0-9]*)([.](0|[1-9][0-9]*))*$'";
        let not_uid = |c: &str| format!("length({c}) > 64 OR {c} !~ {UID}");
        Ok(self
            .client()?
            .query(
                &format!(
                    "SELECT study_instance_uid, series_instance_uid, sop_instance_uid FROM instances
                     WHERE {} OR {} OR {}
                     ORDER BY study_instance_uid, series_instance_uid, sop_instance_uid",
                    not_uid("study_instance_uid"),
                    not_uid("series_instance_uid"),
                    not_uid("sop_instance_uid")
                ),
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    fn other_studies_of_patient(
        &self,
        patient_id: &str,
        except: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        // COLLATE "C": byte order, as SQLite compares the catalogue's dates.
        Ok(self
            .client()?
            .query(
                "SELECT study_instance_uid, study_date FROM studies
                 WHERE patient_id = $1 AND study_instance_uid != $2 AND patient_id != ''
                 ORDER BY study_date COLLATE \"C\" DESC, study_instance_uid COLLATE \"C\"",
                &[&patient_id, &except],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn put_prior_report(&self, report: &PriorReport) -> Result<bool, StoreError> {
        self.keep_prior_report(report)
    }

    fn prior_report(&self, study_uid: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .client()?
            .query_opt(sql::PRIOR_REPORT_TEXT, &[&study_uid])?
            .map(|r| r.get(0)))
    }

    fn finish_job(&self, uid: &str, item: &NewWorkItem) -> Result<(), StoreError> {
        let attempt = self.held_attempt(uid)?;
        let finished = (|| -> Result<u64, StoreError> {
            let mut client = self.client()?;
            let mut tx = client.transaction()?;
            let now = now_ms();
            let finished = tx.execute(
                "UPDATE jobs SET state = $2, completions = completions + 1, updated_at = $3,
                     lease_owner = NULL, lease_until = NULL
                 WHERE study_instance_uid = $1 AND state = $4 AND lease_owner = $5 AND attempts = $6",
                &[&uid, &JobState::Done, &now, &JobState::Running, &self.owner, &attempt],
            )?;
            if finished == 0 {
                return Ok(0);
            }
            // A signed read stands: the item only learns that images came after it.
            let signed = tx.execute(
                "UPDATE work_items SET images_after_signing = $2, critical = critical OR $3, priority = GREATEST(priority, $4)
                 WHERE study_instance_uid = $1 AND status = $5",
                &[&uid, &now, &item.critical, &item.priority, &WorkItemStatus::Signed],
            )?;
            if signed == 0 {
                tx.execute(
                    sql::PUT_WORK_ITEM,
                    &[
                        &uid,
                        &item.critical,
                        &item.priority,
                        &now,
                        &to_json(&item.content),
                        &item.analysis_json,
                        &item.model_version,
                        &WorkItemStatus::Unclaimed,
                        &item.report_json,
                    ],
                )?;
                queue_results(&mut tx, &item.results)?;
            }
            let study_state = if signed == 0 {
                StudyState::DraftReady
            } else {
                StudyState::Signed
            };
            tx.execute(sql::STUDY_STATE_CLEARED, &[&uid, &study_state])?;
            tx.commit()?;
            Ok(finished)
        })();
        self.forget_job(uid);
        if finished? == 0 {
            return Err(StoreError::Precondition(format!(
                "the job of study {uid} is no longer this worker's (its lease ran out and it was taken again, or it was retried): its draft is not kept"
            )));
        }
        Ok(())
    }

    fn fail_job(&self, uid: &str, error: &str, max_attempts: u32) -> Result<JobState, StoreError> {
        let attempt = self.held_attempt(uid)?;
        let failed = (|| -> Result<Option<JobState>, StoreError> {
            let mut client = self.client()?;
            let mut tx = client.transaction()?;
            let state: Option<JobState> = tx
                .query_opt(
                    "UPDATE jobs SET state = CASE WHEN attempts < $4 THEN $5 ELSE $6 END, last_error = $2,
                         updated_at = $3, lease_owner = NULL, lease_until = NULL
                     WHERE study_instance_uid = $1 AND state = $7 AND lease_owner = $8 AND attempts = $9
                     RETURNING state",
                    &[&uid, &error, &now_ms(), &(max_attempts as i32), &JobState::Queued, &JobState::Failed, &JobState::Running, &self.owner, &attempt],
                )?
                .map(|r| r.get(0));
            let Some(state) = state else {
                return Ok(None);
            };
            let study_state = if state == JobState::Queued {
                StudyState::Queued
            } else {
                StudyState::Failed
            };
            tx.execute(sql::STUDY_FAILED, &[&uid, &study_state, &error])?;
            tx.commit()?;
            Ok(Some(state))
        })();
        self.forget_job(uid);
        failed?.ok_or_else(|| {
            StoreError::Precondition(format!("the job of study {uid} is no longer this worker's"))
        })
    }

    fn jobs(&self, state: Option<JobState>) -> Result<Vec<JobRow>, StoreError> {
        Ok(self
            .client()?
            .query(
                "SELECT study_instance_uid, state, attempts, last_error, completions FROM jobs
                 WHERE $1::TEXT IS NULL OR state = $1 ORDER BY updated_at",
                &[&state],
            )?
            .iter()
            .map(|r| JobRow {
                study_instance_uid: r.get(0),
                state: r.get(1),
                attempts: r.get::<_, i32>(2) as u32,
                last_error: r.get(3),
                completions: r.get::<_, i32>(4) as u32,
            })
            .collect())
    }

    fn work_item(&self, uid: &str) -> Result<WorkItemRow, StoreError> {
        self.client()?
            .query_opt(
                &format!("{} WHERE study_instance_uid = $1", sql::WORK_ITEM_SELECT),
                &[&uid],
            )?
            .map(|r| Self::item_from_row(&r))
            .ok_or_else(|| StoreError::NotFound(format!("no work item for study {uid}")))?
    }

    fn work_items(
        &self,
        filter: &WorkItemFilter,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<WorkItemRow>, StoreError> {
        let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        self
            .client()?
            .query(
                &format!(
                    "{} WHERE (status = ANY($1) OR ($7 AND status = '{}' AND images_after_signing IS NOT NULL))
                         AND (critical OR NOT $2)
                         AND ($5::TEXT IS NULL OR claimed_by = $5)
                         AND ($6::TEXT IS NULL OR study_instance_uid IN
                              (SELECT study_instance_uid FROM studies WHERE study_date = $6))
                     ORDER BY critical DESC, priority DESC, created_at ASC, study_instance_uid COLLATE \"C\"
                     LIMIT $3 OFFSET $4",
                    sql::WORK_ITEM_SELECT,
                    WorkItemStatus::Signed
                ),
                &[
                    &statuses,
                    &filter.critical_only,
                    &limit,
                    &offset,
                    &filter.claimed_by,
                    &filter.study_date,
                    &filter.signed_with_new_images,
                ],
            )?
            .iter()
            .map(Self::item_from_row)
            .collect()
    }

    fn retry_job(&self, uid: &str) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let retried = tx.execute(
            "UPDATE jobs SET state = $2, attempts = 0, updated_at = $4, lease_owner = NULL, lease_until = NULL
             WHERE study_instance_uid = $1 AND state = $3",
            &[&uid, &JobState::Queued, &JobState::Failed, &now_ms()],
        )?;
        if retried == 0 {
            return Err(StoreError::Precondition(format!(
                "the job of study {uid} is not failed: only a failed job can be retried"
            )));
        }
        tx.execute(sql::STUDY_STATE_CLEARED, &[&uid, &StudyState::Queued])?;
        tx.commit()?;
        Ok(())
    }

    fn claim(&self, uid: &str, who: &str) -> Result<WorkItemRow, StoreError> {
        let claimed = self.client()?.execute(
            sql::CLAIM,
            &[
                &uid,
                &who,
                &WorkItemStatus::Claimed,
                &WorkItemStatus::Unclaimed,
            ],
        )?;
        let item = self.work_item(uid)?;
        claim_outcome(claimed, item, who)
    }

    fn release(&self, uid: &str, who: &str) -> Result<WorkItemRow, StoreError> {
        let released = self.client()?.execute(
            sql::RELEASE,
            &[
                &uid,
                &who,
                &WorkItemStatus::Unclaimed,
                &WorkItemStatus::Claimed,
            ],
        )?;
        let item = self.work_item(uid)?;
        release_outcome(released, item)
    }

    fn sign(
        &self,
        uid: &str,
        who: &str,
        signed_at: i64,
        read: &SignedRead,
        comparison: &str,
        results: &[OutgoingResult],
    ) -> Result<WorkItemRow, StoreError> {
        let signed = {
            let mut client = self.client()?;
            let mut tx = client.transaction()?;
            let signed = tx.execute(
                sql::SIGN,
                &[
                    &uid,
                    &who,
                    &to_json(read),
                    &signed_at,
                    &WorkItemStatus::Signed,
                    &comparison,
                    &WorkItemStatus::Claimed,
                ],
            )?;
            if signed == 1 {
                tx.execute(sql::STUDY_STATE, &[&uid, &StudyState::Signed])?;
                queue_results(&mut tx, results)?;
            }
            tx.commit()?;
            signed
        };
        let item = self.work_item(uid)?;
        sign_outcome(signed, item)
    }

    fn amend(
        &self,
        uid: &str,
        replaces: i64,
        signed_at: i64,
        read: &SignedRead,
        comparison: &str,
        results: &[OutgoingResult],
    ) -> Result<WorkItemRow, StoreError> {
        let amended = {
            let mut client = self.client()?;
            let mut tx = client.transaction()?;
            let kept = tx.execute(
                "INSERT INTO superseded_reads (study_instance_uid, signed_read, signed_at, superseded_at)
                 SELECT study_instance_uid, signed_read, signed_at, $3::BIGINT FROM work_items
                 WHERE study_instance_uid = $1 AND status = $2 AND signed_at = $4 AND signed_read IS NOT NULL
                 FOR UPDATE",
                &[&uid, &WorkItemStatus::Signed, &now_ms(), &replaces],
            )?;
            if kept == 1 {
                tx.execute(
                    "UPDATE work_items SET signed_read = $2, signed_at = $3, comparison = $4, images_after_signing = NULL
                     WHERE study_instance_uid = $1 AND signed_at = $5",
                    &[&uid, &to_json(read), &signed_at, &comparison, &replaces],
                )?;
                queue_results(&mut tx, results)?;
            }
            tx.commit()?;
            kept
        };
        let item = self.work_item(uid)?;
        amend_outcome(amended, item)
    }

    fn latest_signed_sr(&self, uid: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .client()?
            .query_opt(
                sql::LATEST_SIGNED_SR,
                &[&uid, &ResultKind::Final, &ResultKind::Amended],
            )?
            .map(|r| (r.get(0), r.get(1))))
    }

    fn take_due_results(
        &self,
        now_ms: i64,
        limit: i64,
        hold_ms: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        // RETURNING gives the rows as they were taken (the next attempt moved on), in no
        // particular order: oldest first is by id.
        let mut rows: Vec<OutboxRow> = self
            .client()?
            .query(
                "WITH due AS (
                     SELECT id FROM outbox WHERE state = $1 AND next_attempt_at <= $2
                     ORDER BY next_attempt_at, id LIMIT $3
                     FOR UPDATE SKIP LOCKED)
                 UPDATE outbox o SET next_attempt_at = $4 FROM due WHERE o.id = due.id
                 RETURNING o.id, o.study_instance_uid, o.sop_instance_uid, o.kind, o.peer, o.sha256,
                     o.state, o.attempts, o.last_error, o.created_at, o.next_attempt_at, o.sent_at",
                &[&OutboxState::Pending, &now_ms, &limit, &(now_ms + hold_ms)],
            )?
            .iter()
            .map(Self::outbox_from_row)
            .collect();
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    fn result_sent(&self, id: i64) -> Result<bool, StoreError> {
        let changed = self.client()?.execute(
            sql::RESULT_SENT,
            &[&id, &OutboxState::Sent, &now_ms(), &OutboxState::Pending],
        )?;
        Ok(changed == 1)
    }

    fn result_failed(&self, id: i64, error: &str, next_attempt_at: i64) -> Result<(), StoreError> {
        self.client()?.execute(
            sql::RESULT_FAILED,
            &[&id, &error, &next_attempt_at, &OutboxState::Pending],
        )?;
        Ok(())
    }

    fn pending_results(&self) -> Result<i64, StoreError> {
        Ok(self
            .client()?
            .query_one(sql::RESULTS_IN_STATE, &[&OutboxState::Pending])?
            .get(0))
    }

    fn outbox(&self, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        Ok(self
            .client()?
            .query(
                &format!(
                    "{} ORDER BY state = $1 DESC, COALESCE(sent_at, created_at) DESC LIMIT $2",
                    sql::OUTBOX_SELECT
                ),
                &[&OutboxState::Pending, &limit],
            )?
            .iter()
            .map(Self::outbox_from_row)
            .collect())
    }

    fn signed_items(
        &self,
        start: Option<i64>,
        end: Option<i64>,
        model_version: &str,
    ) -> Result<Vec<WorkItemRow>, StoreError> {
        self
            .client()?
            .query(
                &format!(
                    "{} WHERE status = $4 AND signed_at >= $1 AND signed_at < $2 AND ($3 = '' OR model_version = $3)",
                    sql::WORK_ITEM_SELECT
                ),
                &[
                    &start.unwrap_or(i64::MIN),
                    &end.unwrap_or(i64::MAX),
                    &model_version,
                    &WorkItemStatus::Signed,
                ],
            )?
            .iter()
            .map(Self::item_from_row)
            .collect()
    }

    fn expect_prior(&self, study_uid: &str, until_ms: i64) -> Result<i64, StoreError> {
        let mut client = self.client()?;
        // Expectations a crashed process left behind go first.
        client.execute(sql::EXPECTATIONS_PAST, &[&now_ms()])?;
        Ok(client
            .query_one(
                "INSERT INTO expected_priors (study_instance_uid, until_ms) VALUES ($1, $2) RETURNING id",
                &[&study_uid, &until_ms],
            )?
            .get(0))
    }

    fn end_prior_expectation(&self, id: i64) -> Result<(), StoreError> {
        self.client()?.execute(sql::END_EXPECTATION, &[&id])?;
        Ok(())
    }

    fn prior_expected(&self, study_uid: &str, now_ms: i64) -> Result<bool, StoreError> {
        Ok(self
            .client()?
            .query_opt(
                "SELECT 1 FROM expected_priors WHERE study_instance_uid = $1 AND until_ms >= $2 LIMIT 1",
                &[&study_uid, &now_ms],
            )?
            .is_some())
    }

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

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

mod archive;
mod audit;
mod migrate;

pub use migrate::{migrate, migrate_configured};
mod ingest;
mod jobs;
mod outbox;
mod reading_room;
mod studies;
mod worklist;

use crate::config::StoreConfig;
use crate::store::documents::{from_json, to_json, SignedRead};
use crate::store::lifecycle::{JobState, StudyState, WorkItemStatus};
use crate::store::outcomes::{amend_outcome, claim_outcome, release_outcome, sign_outcome};
use crate::store::sql;
use crate::store::*;
use postgres::{GenericClient, Row};
use r2d2_postgres::PostgresConnectionManager;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How radassist connects: TLS when `store.tls_ca` is set (plain otherwise: `sslmode=disable`).
pub type Connector = MakeRustlsConnect;
pub type Pool = r2d2::Pool<PostgresConnectionManager<Connector>>;

pub struct PgStore {
    pool: Pool,
    blobs: Box<dyn BlobStore>,
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
                .map_err(|e| unreachable(&crate::causes::with_causes(&e)))?;
            // Reached, but its schema could not be brought up to date: say so, not "unreachable".
            migrate(&mut client).map_err(|e| {
                format!("the PostgreSQL {place}: {}", crate::causes::with_causes(&e))
            })?;
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

    fn client(
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

    fn study_from_row(r: &Row) -> StudyRow {
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
            cut_off_attempt_at: r.get(12),
        }
    }
}

/// Records the results made and queues their copies for the peers (a result already
/// recorded, or already queued for that peer, stays as it is).
fn record_results(
    tx: &mut impl GenericClient,
    results: &ResultBatch,
) -> Result<(), postgres::Error> {
    let now = now_ms();
    for r in &results.made {
        tx.execute(
            sql::RECORD_RESULT,
            &[
                &r.study_instance_uid,
                &r.sop_instance_uid,
                &r.object,
                &r.kind,
                &r.sha256,
                &now,
                &r.attributes,
            ],
        )?;
    }
    for r in &results.queued {
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
}

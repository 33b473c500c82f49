//! The embedded store against the scaled-out one, in one run: SQLite + a folder (one
//! `radassist serve`) and PostgreSQL + an S3-compatible object store (one front end and 1 or 3
//! worker processes; the PostgreSQL cluster and the s3s-fs server are started here, on
//! loopback, as the tests start them). Run (after scripts/setup):
//!
//!     cargo bench --bench backends
//!
//! Ingest: instances/s and MB/s over 1 and 16 concurrent StoreInstances streams (the sample film
//! as new studies of new patients, 2 MB each; 192 per round, the median of three rounds; no
//! analysis runs meanwhile). Drafts: a burst of
//! studies completed at once, the time from each CompleteStudy to its DRAFT_READY (p50, p99)
//! and studies drafted per second, with 1 and 3 workers (threads of the one process for SQLite,
//! processes for PostgreSQL). Everything shares this machine's cores: client, servers,
//! PostgreSQL and the S3 server.

#[path = "../tests/common/mod.rs"]
mod common;

use common::backends::{self, Backend};
use common::{new_patient_study, Server};
use radassist::grpc::proto::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// Instances per ingest round, and rounds (the median is shown): shorter rounds mostly
/// measure how the machine happens to stand for a second.
const INSTANCES: usize = 192;
const ROUNDS: usize = 3;
const DRAFTS: usize = 24;

/// One deployment: the process that takes ingest, and the worker processes beside it.
struct Deployment {
    front: Server,
    _workers: Vec<Server>,
}

fn deploy(backend: Backend, dir: &Path, workers: usize) -> Deployment {
    std::fs::create_dir_all(dir).unwrap();
    match backend {
        Backend::SqliteFolder => Deployment {
            front: Server::start_process(
                dir,
                &format!("analysis_workers = {workers}\n"),
                "[store]\nbackend = \"sqlite\"\n",
                &[],
                "all",
            ),
            _workers: vec![],
        },
        Backend::PostgresS3 => {
            let sections = backends::sections_of(backend, &dir.join("site"));
            let env = backends::environment_of(backend);
            let start = |name: &str, role: &str| {
                let dir = dir.join(name);
                std::fs::create_dir_all(&dir).unwrap();
                Server::start_process(&dir, "analysis_workers = 1\n", &sections, &env, role)
            };
            Deployment {
                front: start("front", "frontend"),
                _workers: (0..workers)
                    .map(|i| start(&format!("worker-{i}"), "worker"))
                    .collect(),
            }
        }
    }
}

fn name(backend: Backend) -> &'static str {
    match backend {
        Backend::SqliteFolder => "SQLite + folder",
        Backend::PostgresS3 => "PostgreSQL + S3 (s3s-fs)",
    }
}

/// Stores `instances` over `streams` concurrent streams: (seconds, bytes).
async fn ingest(front: &Server, instances: Vec<Vec<u8>>, streams: usize) -> (f64, usize) {
    let channel = front.channel().await;
    let bytes: usize = instances.iter().map(Vec::len).sum();
    let mut shares: Vec<Vec<Vec<u8>>> = vec![vec![]; streams];
    for (i, instance) in instances.into_iter().enumerate() {
        shares[i % streams].push(instance);
    }
    let started = Instant::now();
    let tasks: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let channel = channel.clone();
            tokio::spawn(async move {
                let results = common::store_instances(&channel, &share).await;
                assert!(results
                    .iter()
                    .all(|r| r.outcome == instance_result::Outcome::Stored as i32));
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (started.elapsed().as_secs_f64(), bytes)
}

/// Completes `studies` at once; each one's seconds from CompleteStudy to DRAFT_READY, sorted,
/// and the seconds until the last.
async fn drafts(front: &Server, studies: Vec<String>) -> (Vec<f64>, f64) {
    let channel = front.channel().await;
    let started = Instant::now();
    let tasks: Vec<_> = studies
        .into_iter()
        .map(|study| {
            let channel = channel.clone();
            tokio::spawn(async move {
                let asked = Instant::now();
                let state = common::complete_and_wait(&channel, &study).await;
                assert_eq!(state, study::State::DraftReady, "{study}");
                asked.elapsed().as_secs_f64()
            })
        })
        .collect();
    let mut seconds = vec![];
    for task in tasks {
        seconds.push(task.await.unwrap());
    }
    seconds.sort_by(f64::total_cmp);
    (seconds, started.elapsed().as_secs_f64())
}

/// PostgreSQL: the transactions committed in the deployment's database so far (ingest,
/// completion, the job, the draft and its events: the catalogue's cost per study).
fn commits(backend: Backend, dir: &Path) -> Option<i64> {
    if backend != Backend::PostgresS3 {
        return None;
    }
    let url = backends::database_for(&dir.join("site"));
    Some(backends::off_runtime(move || {
        let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        // The statistics collector reports with a delay of up to a second.
        db.batch_execute("SELECT pg_stat_force_next_flush()")
            .unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        db.query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .unwrap()
        .get(0)
    }))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let root = tempfile::tempdir_in(common::root().join("target")).unwrap();
    let mut next = 0;
    let mut batch = |n: usize| {
        let studies: Vec<Vec<u8>> = (next..next + n)
            .map(|i| new_patient_study("bench", i))
            .collect();
        next += n;
        studies
    };
    println!("| store | streams | instances/s (median) | MB/s | each round's instances/s |");
    println!("|---|---|---|---|---|");
    let mut ingest_rows = vec![];
    let mut draft_rows = vec![];
    for backend in [Backend::SqliteFolder, Backend::PostgresS3] {
        for workers in [1, 3] {
            let dir = root
                .path()
                .join(format!("{}-{workers}", name(backend).len()));
            let deployment = deploy(backend, &dir, workers);
            if workers == 1 {
                for streams in [1, 16] {
                    // A warm-up round, then the measured ones.
                    ingest(&deployment.front, batch(16), streams).await;
                    let mut rounds = vec![];
                    for _ in 0..ROUNDS {
                        rounds.push(ingest(&deployment.front, batch(INSTANCES), streams).await);
                    }
                    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
                    let (seconds, bytes) = rounds[ROUNDS / 2];
                    let row = format!(
                        "| {} | {streams} | {:.0} | {:.0} | {} |",
                        name(backend),
                        INSTANCES as f64 / seconds,
                        bytes as f64 / seconds / 1e6,
                        rounds
                            .iter()
                            .map(|(s, _)| format!("{:.0}", INSTANCES as f64 / s))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    println!("{row}");
                    ingest_rows.push(row);
                }
            }
            let studies = batch(DRAFTS);
            let commits_before = commits(backend, &dir);
            let results =
                common::store_instances(&deployment.front.channel().await, &studies).await;
            let names: Vec<String> = results.iter().map(|r| r.study.clone()).collect();
            let (seconds, all) = drafts(&deployment.front, names).await;
            let per_study = commits_before
                .map(|before| {
                    let after = commits(backend, &dir).unwrap();
                    format!("{:.1}", (after - before) as f64 / DRAFTS as f64)
                })
                .unwrap_or_else(|| "-".into());
            draft_rows.push(format!(
                "| {} | {workers} | {:.2} | {:.2} | {:.2} | {per_study} |",
                name(backend),
                percentile(&seconds, 0.5),
                percentile(&seconds, 0.99),
                DRAFTS as f64 / all
            ));
            drop(deployment);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    println!();
    println!("A burst of {DRAFTS} studies completed at once:");
    println!("| store | workers | complete -> draft p50 (s) | p99 (s) | studies/s | PostgreSQL commits per study |");
    println!("|---|---|---|---|---|---|");
    for row in draft_rows {
        println!("{row}");
    }
}

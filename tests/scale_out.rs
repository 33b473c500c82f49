//! Past one machine: two front ends and three workers (`radassist serve --role ...`, five
//! processes) on one real PostgreSQL and one real S3 server (s3s-fs), all on loopback and
//! started by the test. Studies pushed through both front ends are each drafted exactly once;
//! a worker killed (-9) in the middle of a job loses it to another worker when its lease ends,
//! and that job completes once; a front end killed (-9) during ingest keeps every instance it
//! acknowledged, byte for byte; a critical item a worker creates reaches WatchCriticalItems on
//! both front ends.

use crate::common;

use common::backends::{self, Backend};
use common::{chunks, uid_for, with_token, Server, PACS_TOKEN};
use radassist::grpc::proto::ingest_service_client::IngestServiceClient;
use radassist::grpc::proto::worklist_service_client::WorklistServiceClient;
use radassist::grpc::proto::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Studies in all (RADASSIST_SCALE_OUT_STUDIES, at least 40, default 200: about a minute on 2
/// cores), the first quarter with every process alive, the rest through the kills.
fn studies() -> usize {
    std::env::var("RADASSIST_SCALE_OUT_STUDIES")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n >= 40)
        .unwrap_or(200)
}
/// Pushes in flight at once.
const PUSHERS: usize = 8;

fn query<T: Send + 'static>(
    site: &Path,
    sql: &'static str,
    read: fn(&postgres::Row) -> T,
) -> Vec<T> {
    let url = backends::database_for(site);
    backends::off_runtime(move || {
        postgres::Client::connect(&url, postgres::NoTls)
            .unwrap()
            .query(sql, &[])
            .unwrap()
            .iter()
            .map(read)
            .collect()
    })
}

fn count(site: &Path, sql: &'static str) -> i64 {
    query(site, sql, |r| r.get::<_, i64>(0))[0]
}

/// One study of one instance, of a patient of its own (no prior to compare with).
fn study_bytes(i: usize) -> Vec<u8> {
    common::new_patient_study("scale", i)
}

/// Stores one instance and completes its study; Err when the front end is gone.
async fn push(
    front_end: &str,
    bytes: Vec<u8>,
) -> Result<(String, instance_result::Outcome), String> {
    let channel = tonic::transport::Channel::from_shared(front_end.to_string())
        .unwrap()
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let results = IngestServiceClient::new(channel.clone())
        .store_instances(with_token(
            tokio_stream::iter(chunks(0, &bytes)),
            PACS_TOKEN,
        ))
        .await
        .map_err(|e| e.to_string())?
        .into_inner()
        .results;
    let outcome = instance_result::Outcome::try_from(results[0].outcome).unwrap();
    let study = results[0].study.clone();
    IngestServiceClient::new(channel)
        .complete_study(with_token(
            CompleteStudyRequest {
                name: study.clone(),
            },
            PACS_TOKEN,
        ))
        .await
        .map_err(|e| e.to_string())?;
    Ok((study, outcome))
}

/// (SOP Instance UID, bytes) of the instances a front end acknowledged as stored.
type Acknowledged = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Pushes studies `range` through `front_end`, PUSHERS at a time; returns the SOP Instance
/// UIDs it acknowledged as stored (Stored or Duplicate), with their bytes.
async fn push_all(front_end: String, range: std::ops::Range<usize>, acknowledged: Acknowledged) {
    let gate = Arc::new(Semaphore::new(PUSHERS));
    let mut tasks = vec![];
    for i in range {
        let (gate, front_end, acknowledged) =
            (gate.clone(), front_end.clone(), acknowledged.clone());
        tasks.push(tokio::spawn(async move {
            let _turn = gate.acquire().await.unwrap();
            let bytes = study_bytes(i);
            if let Ok((_, outcome)) = push(&front_end, bytes.clone()).await {
                if outcome != instance_result::Outcome::Rejected {
                    acknowledged
                        .lock()
                        .unwrap()
                        .push((uid_for(&format!("scale-{i}")), bytes));
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Collects the critical items a front end's WatchCriticalItems delivers.
async fn watch_critical(front_end: &Server) -> Arc<Mutex<BTreeSet<String>>> {
    let mut stream = WorklistServiceClient::new(front_end.channel().await)
        .watch_critical_items(with_token(
            WatchCriticalItemsRequest {},
            common::RADIOLOGIST_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let into = seen.clone();
    tokio::spawn(async move {
        while let Ok(Some(item)) = stream.message().await {
            into.lock()
                .unwrap()
                .insert(item.name.trim_start_matches("workItems/").to_string());
        }
    });
    seen
}

/// Waits until `n` studies are drafted (bounded).
fn wait_for_drafts(site: &Path, n: i64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let drafted = count(
            site,
            "SELECT COUNT(*) FROM studies WHERE state = 'DRAFT_READY'",
        );
        if drafted >= n {
            return;
        }
        let failed = query(
            site,
            "SELECT study_instance_uid || ': ' || failure_reason FROM studies WHERE state = 'FAILED'",
            |r| r.get::<_, String>(0),
        );
        assert!(failed.is_empty(), "failed studies: {failed:?}");
        assert!(
            Instant::now() < deadline,
            "{drafted} of {n} studies drafted within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_front_ends_and_three_workers_draft_every_study_once_through_kills() {
    let root = tempfile::tempdir().unwrap();
    let site = root.path().join("site");
    let sections = backends::sections_of(Backend::PostgresS3, &site);
    let env = backends::environment_of(Backend::PostgresS3);
    let start = |name: &str, role: &str| {
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Server::start_process(&dir, "analysis_workers = 1\n", &sections, &env, role)
    };
    let front_ends = [start("fe1", "frontend"), start("fe2", "frontend")];
    let mut workers: Vec<Server> = ["w1", "w2", "w3"]
        .iter()
        .map(|name| start(name, "worker"))
        .collect();
    let critical_at = [
        watch_critical(&front_ends[0]).await,
        watch_critical(&front_ends[1]).await,
    ];
    let urls = [front_ends[0].url(), front_ends[1].url()];
    let (all, calm) = (studies(), studies() / 4);

    // Calm: every process alive, studies through both front ends.
    let acknowledged = Arc::new(Mutex::new(vec![]));
    tokio::join!(
        push_all(urls[0].clone(), 0..calm / 2, acknowledged.clone()),
        push_all(urls[1].clone(), calm / 2..calm, acknowledged.clone()),
    );
    assert_eq!(acknowledged.lock().unwrap().len(), calm);
    tokio::task::block_in_place(|| wait_for_drafts(&site, calm as i64, Duration::from_secs(300)));
    let critical: BTreeSet<String> = query(
        &site,
        "SELECT study_instance_uid FROM work_items WHERE critical",
        |r| r.get(0),
    )
    .into_iter()
    .collect();
    assert!(
        !critical.is_empty(),
        "no critical item among {calm} studies: the test would show nothing"
    );
    // Each worker's critical items reach both front ends' watchers (LISTEN/NOTIFY).
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, seen) in critical_at.iter().enumerate() {
        while !critical.is_subset(&seen.lock().unwrap()) {
            assert!(
                Instant::now() < deadline,
                "front end {}: {} of {} critical items watched",
                i + 1,
                seen.lock().unwrap().len(),
                critical.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Storm: the rest through both front ends, while a worker and a front end are killed.
    let rest = calm..all;
    let middle = rest.start + rest.len() / 2;
    let through_fe1 = tokio::spawn(push_all(
        urls[0].clone(),
        rest.start..middle,
        acknowledged.clone(),
    ));
    let fe2_acknowledged = Arc::new(Mutex::new(vec![]));
    let through_fe2 = tokio::spawn(push_all(
        urls[1].clone(),
        middle..rest.end,
        fe2_acknowledged.clone(),
    ));
    // The first worker is killed while it holds a job.
    let doomed = workers.remove(0);
    let pid = doomed.child.id();
    let held_sql: &'static str = Box::leak(
        format!(
            "SELECT study_instance_uid FROM jobs WHERE state = 'running' AND lease_owner LIKE '{pid}:%'"
        )
        .into_boxed_str(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let held = loop {
        let held = query(&site, held_sql, |r| r.get::<_, String>(0));
        if let Some(uid) = held.into_iter().next() {
            break uid;
        }
        assert!(
            Instant::now() < deadline,
            "worker 1 took no job within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    doomed.kill();
    // The second front end is killed during its ingest.
    let deadline = Instant::now() + Duration::from_secs(120);
    while fe2_acknowledged.lock().unwrap().len() < 10 {
        assert!(
            Instant::now() < deadline,
            "front end 2 acknowledged too little"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let [fe1, fe2] = front_ends;
    fe2.kill();
    through_fe2.await.unwrap();
    through_fe1.await.unwrap();
    let fe2_acknowledged = fe2_acknowledged.lock().unwrap().clone();
    eprintln!(
        "worker 1 killed holding {held}; front end 2 killed after acknowledging {} of {}",
        fe2_acknowledged.len(),
        rest.end - middle
    );
    assert!(
        fe2_acknowledged.len() < rest.end - middle,
        "front end 2 was killed too late"
    );

    // Every instance front end 2 acknowledged is there, byte for byte.
    let catalogued: std::collections::BTreeMap<String, String> =
        backends::catalogued_instances_of(Backend::PostgresS3, &site)
            .into_iter()
            .collect();
    for (sop, bytes) in &fe2_acknowledged {
        let sha = catalogued
            .get(sop)
            .unwrap_or_else(|| panic!("{sop} was acknowledged, then lost"));
        assert_eq!(
            backends::blob_of(Backend::PostgresS3, &site, sha).as_ref(),
            Some(bytes),
            "{sop}"
        );
    }
    // The PACS sends front end 2's share again, to front end 1 (a duplicate is harmless).
    push_all(fe1.url(), middle..rest.end, acknowledged.clone()).await;

    tokio::task::block_in_place(|| wait_for_drafts(&site, all as i64, Duration::from_secs(900)));
    // Each study drafted exactly once: one job each, done, completed once; one work item each.
    let jobs = query(
        &site,
        "SELECT study_instance_uid, state, completions, attempts FROM jobs",
        |r| {
            (
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, i32>(2),
                r.get::<_, i32>(3),
            )
        },
    );
    assert_eq!(jobs.len(), all);
    for (uid, state, completions, attempts) in &jobs {
        assert_eq!(
            (state.as_str(), *completions),
            ("done", 1),
            "{uid}: {attempts} attempts"
        );
        if *uid == held {
            assert!(
                *attempts >= 2,
                "the killed worker's job was not taken again"
            );
        }
    }
    assert_eq!(count(&site, "SELECT COUNT(*) FROM work_items"), all as i64);
    assert_eq!(count(&site, "SELECT COUNT(*) FROM instances"), all as i64);
    drop((fe1, workers));
}

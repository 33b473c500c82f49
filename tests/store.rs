//! What every store backend must do, checked against each: SQLite + a folder, and PostgreSQL +
//! an S3-compatible object store (real servers, started by tests/common/backends.rs on
//! loopback). Races have exactly one winner; jobs finish or fail only while running; the
//! outbox sends once; of two amendments one wins. Then what only several processes on one
//! PostgreSQL have: jobs shared without waiting (SKIP LOCKED), leases that run out when their
//! worker dies, migrations that two processes apply at once, the stable-study timer of several
//! front ends, and the start-up errors that say what to fix.

use crate::common;

use common::backends;
use radassist::config::{BlobBackend, BlobsConfig, StoreBackend, StoreConfig};
use radassist::draft::objects::ResultObject;
use radassist::store::documents::{SignedRead, WorkItemContent};
use radassist::store::lifecycle::{JobState, StudyState, WorkItemStatus};
use radassist::store::*;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    SqliteFolder,
    PostgresS3,
}

const KINDS: [Kind; 2] = [Kind::SqliteFolder, Kind::PostgresS3];

/// The S3 test server's credentials, set once before any S3 client reads them (every test
/// calls this before opening a store).
fn s3_credentials() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (key, value) in backends::environment_of(backends::Backend::PostgresS3) {
            std::env::set_var(key, value);
        }
    });
}

fn pg_config(dir: &Path, lease_seconds: u64) -> StoreConfig {
    StoreConfig {
        backend: StoreBackend::Postgres,
        url: backends::database_for(dir),
        pool_size: 40,
        job_lease_seconds: lease_seconds,
        connect_timeout_seconds: 10,
        tls_ca: None,
    }
}

fn s3_config(dir: &Path) -> BlobsConfig {
    BlobsConfig {
        backend: BlobBackend::S3,
        bucket: backends::bucket_for(dir),
        endpoint: backends::servers().s3_endpoint.clone(),
        allow_http: true,
        ..BlobsConfig::default()
    }
}

/// A PostgreSQL store on `dir`'s database and bucket, as one process would open it.
fn open_pg(dir: &Path, lease_seconds: u64) -> Arc<PgStore> {
    s3_credentials();
    let blobs = S3BlobStore::open(&s3_config(dir), true).unwrap();
    Arc::new(PgStore::open(&pg_config(dir, lease_seconds), Box::new(blobs)).unwrap())
}

fn open(kind: Kind, dir: &Path) -> Arc<dyn Store> {
    match kind {
        Kind::SqliteFolder => Arc::new(SqliteStore::open(dir).unwrap()),
        Kind::PostgresS3 => open_pg(dir, 60),
    }
}

/// Instance `sop`'s bytes and their SHA-256.
fn instance_bytes(sop: &str) -> (Vec<u8>, String) {
    let bytes = format!("instance {sop}").into_bytes();
    let sha = hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    (bytes, sha)
}

/// Instance "UID.1" of study `uid`.
fn put(store: &dyn Store, uid: &str) -> StoreOutcome {
    put_instance_of(store, uid, &format!("{uid}.1"))
}

/// Another instance `sop` of study `uid`.
fn put_instance_of(store: &dyn Store, uid: &str, sop: &str) -> StoreOutcome {
    let (bytes, sha) = instance_bytes(sop);
    store
        .put_instance(&IncomingInstance {
            bytes: &bytes,
            sha256: &sha,
            sop_instance_uid: sop,
            study_instance_uid: uid,
            series_instance_uid: &format!("{uid}.2"),
            patient_id: "P",
            accession_number: "A",
            study_date: "20260101",
            attributes: "",
            prior: false,
        })
        .unwrap()
        .0
}

/// A signed read of `text`.
fn read(text: &str) -> SignedRead {
    SignedRead {
        text: text.into(),
        radiologist: "dr-a".into(),
        ..Default::default()
    }
}

fn new_item() -> NewWorkItem {
    NewWorkItem {
        critical: false,
        priority: 10,
        content: WorkItemContent::default(),
        analysis_json: "{}".into(),
        model_version: "test".into(),
        report_json: "{}".into(),
        results: ResultBatch::default(),
    }
}

fn store_with_item(kind: Kind, dir: &Path, uid: &str) -> Arc<dyn Store> {
    let store = open(kind, dir);
    assert_eq!(put(store.as_ref(), uid), StoreOutcome::Stored);
    assert_eq!(store.complete_study(uid).unwrap().state, StudyState::Queued);
    let job = store.take_job().unwrap().unwrap();
    assert_eq!((job.study_instance_uid.as_str(), job.attempt), (uid, 1));
    store.finish_job(uid, &new_item()).unwrap();
    store
}

/// How many reads an amendment replaced were kept for study `uid` with text `text`.
fn superseded(kind: Kind, dir: &Path, uid: &str, text: &str) -> i64 {
    let text = format!("%\"text\":{}%", serde_json::to_string(text).unwrap());
    let sql = "SELECT COUNT(*) FROM superseded_reads WHERE study_instance_uid = $1 AND signed_read LIKE $2";
    match kind {
        Kind::SqliteFolder => rusqlite::Connection::open(dir.join("radassist.sqlite"))
            .unwrap()
            .query_row(&sql.replace('$', "?"), rusqlite::params![uid, text], |r| {
                r.get(0)
            })
            .unwrap(),
        Kind::PostgresS3 => {
            postgres::Client::connect(&backends::database_for(dir), postgres::NoTls)
                .unwrap()
                .query_one(sql, &[&uid, &text])
                .unwrap()
                .get(0)
        }
    }
}

#[test]
fn of_many_claimants_exactly_one_holds_the_item_and_one_signs_it() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_item(kind, dir.path(), "1.2.3");
        for round in 0..5 {
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(32));
            let claims: Vec<_> = (0..32)
                .map(|i| {
                    let (store, barrier) = (store.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        store.claim("1.2.3", &format!("dr-{i}")).ok().map(|_| i)
                    })
                })
                .collect();
            let winners: Vec<usize> = claims
                .into_iter()
                .filter_map(|c| c.join().unwrap())
                .collect();
            assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
            let holder = format!("dr-{}", winners[0]);
            let item = store.work_item("1.2.3").unwrap();
            assert_eq!(
                (item.status, item.claimed_by.as_deref()),
                (WorkItemStatus::Claimed, Some(holder.as_str()))
            );
            assert!(store.release("1.2.3", "dr-somebody-else").is_err());
            if round < 4 {
                store.release("1.2.3", &holder).unwrap();
                continue;
            }
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(32));
            let signs: Vec<_> = (0..32)
                .map(|i| {
                    let (store, barrier) = (store.clone(), barrier.clone());
                    let who = if i % 2 == 0 {
                        holder.clone()
                    } else {
                        format!("dr-{i}")
                    };
                    std::thread::spawn(move || {
                        barrier.wait();
                        store
                            .sign(
                                "1.2.3",
                                &who,
                                now_ms(),
                                &read(&format!("read {i}")),
                                "{}",
                                &ResultBatch::default(),
                            )
                            .is_ok()
                    })
                })
                .collect();
            let signed = signs
                .into_iter()
                .map(|s| s.join().unwrap())
                .filter(|won| *won)
                .count();
            assert_eq!(signed, 1);
            assert_eq!(store.study("1.2.3").unwrap().state, StudyState::Signed);
        }
    }
}

#[test]
fn a_job_finishes_or_fails_only_while_running() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_item(kind, dir.path(), "1.2.4");
        let item = NewWorkItem {
            critical: true,
            priority: 100,
            content: WorkItemContent::default(),
            analysis_json: "{}".into(),
            model_version: "test".into(),
            report_json: "{}".into(),
            results: ResultBatch::default(),
        };
        // Done already: a second finish (a worker that lost its job) is refused.
        assert!(matches!(
            store.finish_job("1.2.4", &item),
            Err(StoreError::Precondition(_))
        ));
        assert!(matches!(
            store.fail_job("1.2.4", "late", 3),
            Err(StoreError::Precondition(_))
        ));
        // Sent again without a new instance: not analysed again.
        assert_eq!(put(store.as_ref(), "1.2.4"), StoreOutcome::Duplicate);
        assert_eq!(
            store.complete_study("1.2.4").unwrap().state,
            StudyState::DraftReady
        );
        assert_eq!(store.queue_depth().unwrap(), 0);
        // A new instance: analysed again, once, however often it is completed.
        put_instance_of(store.as_ref(), "1.2.4", "1.2.4.9");
        store.complete_study("1.2.4").unwrap();
        store.complete_study("1.2.4").unwrap();
        assert_eq!(store.queue_depth().unwrap(), 1);
        store.take_job().unwrap().unwrap();
        assert_eq!(
            store.fail_job("1.2.4", "boom", 2).unwrap(),
            JobState::Queued
        );
        assert_eq!(store.take_job().unwrap().unwrap().attempt, 2);
        assert_eq!(
            store.fail_job("1.2.4", "boom again", 2).unwrap(),
            JobState::Failed
        );
        let study = store.study("1.2.4").unwrap();
        assert_eq!(
            (study.state, study.failure_reason.as_str()),
            (StudyState::Failed, "boom again")
        );
        assert!(store.take_job().unwrap().is_none());
    }
}

#[test]
fn a_result_is_queued_with_its_draft_and_sent_once() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        use radassist::store::lifecycle::{OutboxState, ResultKind};
        let store = store_with_item(kind, dir.path(), "1.2.5");
        let result = |peer: &str| OutgoingResult {
            study_instance_uid: "1.2.5".into(),
            sop_instance_uid: "2.25.1".into(),
            kind: ResultKind::Draft,
            peer: peer.into(),
            sha256: "ab".repeat(32),
        };
        // Queued by the same commit as the draft (here the signature of a claimed item).
        store.claim("1.2.5", "dr-a").unwrap();
        store
            .sign(
                "1.2.5",
                "dr-a",
                now_ms(),
                &read("read"),
                "{}",
                &ResultBatch {
                    made: vec![MadeResult {
                        study_instance_uid: "1.2.5".into(),
                        sop_instance_uid: "2.25.1".into(),
                        object: ResultObject::Report,
                        kind: ResultKind::Final,
                        sha256: "ab".repeat(32),
                        created_at: 0,
                        attributes: String::new(),
                    }],
                    queued: vec![result("PACS"), result("ARCHIVE")],
                },
            )
            .unwrap();
        // Recorded once in the results catalogue, whatever the peers.
        let made = store.results_of("1.2.5").unwrap();
        assert_eq!(made.len(), 1, "{kind:?}");
        assert_eq!(
            (
                made[0].object,
                made[0].kind,
                made[0].sop_instance_uid.as_str()
            ),
            (ResultObject::Report, ResultKind::Final, "2.25.1")
        );
        assert!(made[0].created_at > 0);
        assert_eq!(
            store.latest_signed_sr("1.2.5").unwrap(),
            Some(("2.25.1".to_string(), "ab".repeat(32)))
        );
        let due = store.take_due_results(now_ms(), 10, 60_000).unwrap();
        assert_eq!(due.len(), 2);
        // A failed attempt waits for its next time; the other is sent, once.
        store
            .result_failed(due[0].id, "connection refused", now_ms() + 60_000)
            .unwrap();
        assert!(store.result_sent(due[1].id).unwrap());
        assert!(!store.result_sent(due[1].id).unwrap());
        assert!(store
            .take_due_results(now_ms(), 10, 60_000)
            .unwrap()
            .is_empty());
        let outbox = store.outbox(10).unwrap();
        assert_eq!(outbox[0].state, OutboxState::Pending);
        assert_eq!(outbox[0].attempts, 1);
        assert_eq!(outbox[0].last_error, "connection refused");
        assert_eq!(outbox[1].state, OutboxState::Sent);
    }
}

#[test]
fn a_signed_read_stands_when_images_arrive_after_it_and_the_worklist_shows_them() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        use radassist::store::lifecycle::ResultKind;
        let uid = "1.2.8";
        let store = store_with_item(kind, dir.path(), uid);
        store.claim(uid, "dr-a").unwrap();
        let signed_at = 2_000;
        store
            .sign(
                uid,
                "dr-a",
                signed_at,
                &read("read"),
                "{\"signed\": 1}",
                &ResultBatch::default(),
            )
            .unwrap();
        let open = WorkItemFilter {
            statuses: vec![WorkItemStatus::Unclaimed, WorkItemStatus::Claimed],
            signed_with_new_images: true,
            ..Default::default()
        };
        assert!(store.work_items(&open, 0, 10).unwrap().is_empty());

        // A late view of the study: stored, the study completes again and is analysed; the new
        // draft is critical and comes with a draft SR for the PACS.
        assert_eq!(
            put_instance_of(store.as_ref(), uid, &format!("{uid}.9")),
            StoreOutcome::Stored
        );
        assert_eq!(store.complete_study(uid).unwrap().state, StudyState::Queued);
        store.take_job().unwrap().unwrap();
        let redraft = NewWorkItem {
            critical: true,
            priority: 150,
            content: WorkItemContent {
                accession_number: "new draft".into(),
                ..Default::default()
            },
            analysis_json: "{\"new\": 1}".into(),
            results: ResultBatch {
                made: vec![],
                queued: vec![OutgoingResult {
                    study_instance_uid: uid.into(),
                    sop_instance_uid: "2.25.99".into(),
                    kind: ResultKind::Draft,
                    peer: "PACS".into(),
                    sha256: "ef".repeat(32),
                }],
            },
            ..new_item()
        };
        store.finish_job(uid, &redraft).unwrap();

        let item = store.work_item(uid).unwrap();
        assert_eq!(item.status, WorkItemStatus::Signed, "{kind:?}");
        assert_eq!(
            item.final_read.map(|r| r.text).as_deref(),
            Some("read"),
            "{kind:?}"
        );
        assert_eq!(item.signed_at, Some(signed_at));
        assert_eq!(item.claimed_by.as_deref(), Some("dr-a"));
        // QA keeps comparing the read with the draft it was signed against.
        assert_eq!(item.content, WorkItemContent::default());
        assert_eq!(item.analysis_json, "{}");
        assert_eq!(item.comparison.as_deref(), Some("{\"signed\": 1}"));
        assert!(item.images_after_signing.is_some(), "{kind:?}");
        assert!(item.critical && item.priority == 150, "{kind:?}");
        assert_eq!(store.study(uid).unwrap().state, StudyState::Signed);
        // No preliminary SR goes to the PACS after its final one.
        assert_eq!(store.pending_results().unwrap(), 0, "{kind:?}");
        // The open worklist shows it; a worklist of unsigned items only does not.
        let shown = store.work_items(&open, 0, 10).unwrap();
        assert_eq!(shown.len(), 1);
        let unsigned_only = WorkItemFilter {
            signed_with_new_images: false,
            ..open.clone()
        };
        assert!(store.work_items(&unsigned_only, 0, 10).unwrap().is_empty());

        // An amendment answers the new images.
        let amended = store
            .amend(
                uid,
                signed_at,
                signed_at + 1,
                &read("amended"),
                "{}",
                &ResultBatch::default(),
            )
            .unwrap();
        assert_eq!(amended.images_after_signing, None, "{kind:?}");
        assert!(store.work_items(&open, 0, 10).unwrap().is_empty());
    }
}

#[test]
fn of_two_amendments_of_the_same_read_one_wins_and_the_replaced_read_is_kept() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        use radassist::store::lifecycle::ResultKind;
        let store = store_with_item(kind, dir.path(), "1.2.7");
        assert!(
            matches!(
                store.amend("1.2.7", 0, 1, &read("x"), "{}", &ResultBatch::default()),
                Err(StoreError::Precondition(_))
            ),
            "an unsigned item was amended"
        );
        store.claim("1.2.7", "dr-a").unwrap();
        let signed_at = 1_000;
        store
            .sign(
                "1.2.7",
                "dr-a",
                signed_at,
                &read("read"),
                "{}",
                &ResultBatch::default(),
            )
            .unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let amendments: Vec<_> = (0..8)
            .map(|i| {
                let (store, barrier) = (store.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let result = OutgoingResult {
                        study_instance_uid: "1.2.7".into(),
                        sop_instance_uid: format!("2.25.{i}"),
                        kind: ResultKind::Amended,
                        peer: "PACS".into(),
                        sha256: "cd".repeat(32),
                    };
                    let text = format!("amended {i}");
                    store
                        .amend(
                            "1.2.7",
                            signed_at,
                            signed_at + 1,
                            &read(&text),
                            "{}",
                            &ResultBatch {
                                made: vec![MadeResult {
                                    study_instance_uid: "1.2.7".into(),
                                    sop_instance_uid: format!("2.25.{i}"),
                                    object: ResultObject::Report,
                                    kind: ResultKind::Amended,
                                    sha256: "cd".repeat(32),
                                    created_at: 0,
                                    attributes: String::new(),
                                }],
                                queued: vec![result],
                            },
                        )
                        .ok()
                        .map(|_| i)
                })
            })
            .collect();
        let winners: Vec<usize> = amendments
            .into_iter()
            .filter_map(|a| a.join().unwrap())
            .collect();
        assert_eq!(winners.len(), 1, "{winners:?}");
        let item = store.work_item("1.2.7").unwrap();
        assert_eq!(
            item.final_read.map(|r| r.text),
            Some(format!("amended {}", winners[0]))
        );
        assert_eq!(
            (item.status, item.signed_at),
            (WorkItemStatus::Signed, Some(signed_at + 1))
        );
        // Only the winner's SR is made and queued, and it is the newest signed SR of the study.
        assert_eq!(store.pending_results().unwrap(), 1);
        assert_eq!(store.results_of("1.2.7").unwrap().len(), 1);
        let latest = store.latest_signed_sr("1.2.7").unwrap().unwrap();
        assert_eq!(latest.0, format!("2.25.{}", winners[0]));
        assert_eq!(
            superseded(kind, dir.path(), "1.2.7", "read"),
            1,
            "{kind:?}: the replaced read is not kept"
        );
    }
}

// What only several processes on one PostgreSQL have. Each `open_pg` is what one process opens.

#[test]
fn workers_of_several_processes_take_each_job_exactly_once_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let processes: Vec<Arc<PgStore>> = (0..3).map(|_| open_pg(dir.path(), 60)).collect();
    let studies: Vec<String> = (0..30).map(|i| format!("1.2.40.{i}")).collect();
    for uid in &studies {
        put(processes[0].as_ref(), uid);
        processes[1].complete_study(uid).unwrap();
    }
    // Four workers in each process, all taking at once.
    let barrier = Arc::new(std::sync::Barrier::new(12));
    let workers: Vec<_> = (0..12)
        .map(|i| {
            let (store, barrier) = (processes[i % 3].clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut taken = vec![];
                while let Some(job) = store.take_job().unwrap() {
                    store
                        .finish_job(&job.study_instance_uid, &new_item())
                        .unwrap();
                    taken.push(job.study_instance_uid);
                }
                taken
            })
        })
        .collect();
    let mut taken: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    taken.sort();
    let mut expected = studies.clone();
    expected.sort();
    assert_eq!(taken, expected, "each job taken exactly once");
    for job in processes[2].jobs(None).unwrap() {
        assert_eq!(
            (job.state, job.completions, job.attempts),
            (JobState::Done, 1, 1),
            "{}",
            job.study_instance_uid
        );
    }
}

#[test]
fn a_job_whose_worker_died_is_taken_again_after_its_lease_and_drafted_once() {
    let dir = tempfile::tempdir().unwrap();
    let survivor = open_pg(dir.path(), 1);
    put(survivor.as_ref(), "1.2.50");
    survivor.complete_study("1.2.50").unwrap();
    {
        let doomed = open_pg(dir.path(), 1);
        let job = doomed.take_job().unwrap().unwrap();
        assert_eq!(job.attempt, 1);
        // While its process lives, the lease is renewed: nobody else takes the job, even after
        // several lease lengths.
        let until = std::time::Instant::now() + std::time::Duration::from_millis(2500);
        while std::time::Instant::now() < until {
            assert!(survivor.take_job().unwrap().is_none(), "taken while held");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // The process dies (its store and its lease renewals end with it).
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let retaken = loop {
        if let Some(job) = survivor.take_job().unwrap() {
            break job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the job was not taken again within 10 s of its lease's end"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        (retaken.study_instance_uid.as_str(), retaken.attempt),
        ("1.2.50", 2)
    );
    assert_eq!(
        survivor.study("1.2.50").unwrap().state,
        StudyState::Analyzing
    );
    survivor.finish_job("1.2.50", &new_item()).unwrap();
    let job = &survivor.jobs(None).unwrap()[0];
    assert_eq!((job.state, job.completions), (JobState::Done, 1));
}

#[test]
fn a_worker_whose_lease_ran_out_cannot_keep_its_draft() {
    let dir = tempfile::tempdir().unwrap();
    let slow = open_pg(dir.path(), 60);
    let other = open_pg(dir.path(), 60);
    put(slow.as_ref(), "1.2.51");
    slow.complete_study("1.2.51").unwrap();
    slow.take_job().unwrap().unwrap();
    // The slow worker stalls past its lease (as if its process had been stopped).
    postgres::Client::connect(&backends::database_for(dir.path()), postgres::NoTls)
        .unwrap()
        .execute("UPDATE jobs SET lease_until = 0", &[])
        .unwrap();
    let job = other.take_job().unwrap().unwrap();
    assert_eq!(job.attempt, 2);
    assert!(matches!(
        slow.finish_job("1.2.51", &new_item()),
        Err(StoreError::Precondition(_))
    ));
    assert!(matches!(
        slow.fail_job("1.2.51", "late", 3),
        Err(StoreError::Precondition(_))
    ));
    other.finish_job("1.2.51", &new_item()).unwrap();
    let job = &other.jobs(None).unwrap()[0];
    assert_eq!((job.state, job.completions), (JobState::Done, 1));
    assert_eq!(
        other.work_item("1.2.51").unwrap().status,
        WorkItemStatus::Unclaimed
    );
}

#[test]
fn of_several_front_ends_timers_exactly_one_completes_a_stable_study() {
    let dir = tempfile::tempdir().unwrap();
    let front_ends: Vec<Arc<PgStore>> = (0..4).map(|_| open_pg(dir.path(), 60)).collect();
    put(front_ends[0].as_ref(), "1.2.60");
    // Not quiet yet: nobody completes it.
    assert!(front_ends[1]
        .complete_stable_study("1.2.60", 3_600_000)
        .unwrap()
        .is_none());
    for round in 0..3 {
        let barrier = Arc::new(std::sync::Barrier::new(front_ends.len()));
        let timers: Vec<_> = front_ends
            .iter()
            .map(|store| {
                let (store, barrier) = (store.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    store.complete_stable_study("1.2.60", -1).unwrap().is_some()
                })
            })
            .collect();
        let completed = timers
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|won| *won)
            .count();
        let expected = if round == 0 { 1 } else { 0 };
        assert_eq!(completed, expected, "round {round}");
    }
    assert_eq!(front_ends[2].queue_depth().unwrap(), 1);
    // Drafted, the study is not completed again by a timer that looked before.
    let job = front_ends[3].take_job().unwrap().unwrap();
    front_ends[3]
        .finish_job(&job.study_instance_uid, &new_item())
        .unwrap();
    assert!(front_ends[0]
        .complete_stable_study("1.2.60", -1)
        .unwrap()
        .is_none());
    assert_eq!(front_ends[0].queue_depth().unwrap(), 0);
}

#[test]
fn processes_starting_together_migrate_the_schema_once() {
    let dir = tempfile::tempdir().unwrap();
    // The database exists (a DBA makes it); its schema does not.
    backends::database_for(dir.path());
    let barrier = Arc::new(std::sync::Barrier::new(6));
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let (dir, barrier) = (dir.path().to_path_buf(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                open_pg(&dir, 60);
            })
        })
        .collect();
    for start in starts {
        start.join().unwrap();
    }
    assert_eq!(schema_versions(dir.path()), vec![1, 2, 3, 4, 5, 6, 7]);
}

/// The schema versions recorded in `dir`'s database.
fn schema_versions(dir: &Path) -> Vec<i32> {
    postgres::Client::connect(&backends::database_for(dir), postgres::NoTls)
        .unwrap()
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn a_database_an_earlier_version_made_is_migrated_with_its_reads_kept() {
    let dir = tempfile::tempdir().unwrap();
    // The schema as version 1 left it, with a signed read in it (FinalRead { text: "read" }).
    let url = backends::database_for(dir.path());
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .batch_execute(include_str!("../src/store/migrations/0001_catalogue.sql"))
        .unwrap();
    client
        .batch_execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
             INSERT INTO schema_migrations (version, name) VALUES (1, 'catalogue');
             INSERT INTO work_items (study_instance_uid, status, critical, priority, claimed_by,
                 created_at, template, analysis_json, model_version, final_read, signed_at)
             VALUES ('1.2.9', 'SIGNED', false, 10, 'dr-a', 1, '', '{}', 'test', '\\x0a0472656164', 2);
             INSERT INTO outbox (study_instance_uid, sop_instance_uid, kind, peer, sha256, state,
                 created_at, next_attempt_at)
             VALUES ('1.2.9', '2.25.7', 'final', 'PACS', 'ab', 'sent', 3, 3),
                    ('1.2.9', '2.25.7', 'final', 'ARCHIVE', 'ab', 'pending', 3, 3);",
        )
        .unwrap();
    let store = open_pg(dir.path(), 60);
    let item = store.work_item("1.2.9").unwrap();
    assert_eq!(item.final_read.map(|r| r.text).as_deref(), Some("read"));
    assert_eq!(item.images_after_signing, None);
    // The SRs the outbox held are in the results catalogue, once each.
    let made = store.results_of("1.2.9").unwrap();
    assert_eq!(made.len(), 1);
    assert_eq!(
        (made[0].object, made[0].created_at),
        (ResultObject::Report, 3)
    );
    assert_eq!(
        store.latest_signed_sr("1.2.9").unwrap(),
        Some(("2.25.7".to_string(), "ab".to_string()))
    );
    assert_eq!(schema_versions(dir.path()), vec![1, 2, 3, 4, 5, 6, 7]);
}

#[test]
fn an_acknowledged_instance_is_in_the_bucket_byte_for_byte_and_a_conflict_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_pg(dir.path(), 60);
    let (bytes, sha) = instance_bytes("1.2.70.1");
    assert_eq!(put(store.as_ref(), "1.2.70"), StoreOutcome::Stored);
    assert_eq!(put(store.as_ref(), "1.2.70"), StoreOutcome::Duplicate);
    let bucket = backends::servers()
        .s3_root
        .join(backends::bucket_for(dir.path()));
    let key = format!("blobs/{}/{}/{sha}", &sha[..2], &sha[2..4]);
    assert_eq!(std::fs::read(bucket.join(&key)).unwrap(), bytes);
    assert_eq!(store.blobs().get(&sha).unwrap(), bytes);
    assert!(store.blobs().exists(&sha).unwrap());
    assert!(!store.blobs().exists(&"0".repeat(64)).unwrap());
    assert_eq!(
        store.blobs().get(&"0".repeat(64)).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    assert!(store.blobs().get("../../etc/passwd").is_err());
    // The same UID with other bytes: CONFLICT, and those bytes kept for review.
    let other = b"other bytes".to_vec();
    let other_sha = hex(&<sha2::Sha256 as sha2::Digest>::digest(&other));
    let (outcome, _) = store
        .put_instance(&IncomingInstance {
            bytes: &other,
            sha256: &other_sha,
            sop_instance_uid: "1.2.70.1",
            study_instance_uid: "1.2.70",
            series_instance_uid: "1.2.70.2",
            patient_id: "P",
            accession_number: "A",
            study_date: "20260101",
            attributes: "",
            prior: false,
        })
        .unwrap();
    assert_eq!(outcome, StoreOutcome::Conflict);
    assert_eq!(
        std::fs::read(bucket.join(format!("conflicts/1.2.70.1.{}", &other_sha[..16]))).unwrap(),
        other
    );
    assert_eq!(
        store.study_instances("1.2.70").unwrap(),
        vec![("1.2.70.1".to_string(), sha)]
    );
}

#[test]
fn a_start_without_its_database_or_bucket_says_what_to_fix() {
    s3_credentials();
    let dir = tempfile::tempdir().unwrap();
    let mut config = pg_config(dir.path(), 60);
    config.url = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        common::free_port()
    );
    config.connect_timeout_seconds = 2;
    let error = PgStore::open(
        &config,
        Box::new(FolderBlobStore::open(dir.path(), true).unwrap()),
    )
    .err()
    .unwrap();
    assert!(
        error.contains("store.url") && error.contains("127.0.0.1"),
        "{error}"
    );
    config.url = String::new();
    let error = PgStore::open(
        &config,
        Box::new(FolderBlobStore::open(dir.path(), true).unwrap()),
    )
    .err()
    .unwrap();
    assert!(error.contains("store.url is empty"), "{error}");
    let mut blobs = s3_config(dir.path());
    blobs.bucket = "no-such-bucket".into();
    let error = S3BlobStore::open(&blobs, true).err().unwrap();
    assert!(
        error.contains("no-such-bucket") && error.contains("bucket exists"),
        "{error}"
    );
    assert!(!error.contains(backends::S3_SECRET_KEY), "{error}");
}

#[test]
fn the_database_is_reached_over_tls_checked_against_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let folder = || Box::new(FolderBlobStore::open(dir.path(), true).unwrap());
    let mut config = pg_config(dir.path(), 60);
    let ssl = |store: &PgStore| -> bool {
        let mut client = store.pool().get().unwrap();
        client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .unwrap()
            .get(0)
    };
    // Without a CA: plain (sslmode=disable), on loopback.
    assert!(!ssl(&PgStore::open(&config, folder()).unwrap()));
    config.tls_ca = Some(backends::servers().pg_ca.clone());
    let store = PgStore::open(&config, folder()).unwrap();
    assert!(ssl(&store), "the connection is not TLS");
    assert_eq!(put(&store, "1.2.80"), StoreOutcome::Stored);
    // A server whose certificate does not chain to the configured CA is refused.
    let (stranger, _) = common::certificate(dir.path(), "stranger", &["127.0.0.1"]);
    config.tls_ca = Some(stranger);
    let error = PgStore::open(&config, folder()).err().unwrap();
    assert!(error.contains("certificate"), "{error}");
}

/// A work item as the versions that kept the gRPC messages' bytes stored it (the template the
/// worker built, which left the row's own fields unset), with the read signed and amended once.
fn protobuf_era_item() -> (
    radassist::grpc::proto::WorkItem,
    radassist::grpc::proto::FinalRead,
    radassist::grpc::proto::FinalRead,
) {
    use radassist::grpc::proto::*;
    let at = |ms: i64| prost_types::Timestamp {
        seconds: ms / 1000,
        nanos: (ms % 1000) as i32 * 1_000_000,
    };
    let template = WorkItem {
        name: "workItems/1.2.40".into(),
        study: "studies/1.2.40".into(),
        critical: true,
        accession_number: "ACC40".into(),
        patient_id: "P40".into(),
        study_date: "2026-01-02".into(),
        patient_name: "DOE^JANE".into(),
        draft: Some(Draft {
            text: "FINDINGS: Endotracheal tube too low.\nIMPRESSION: Malpositioned ETT.".into(),
            author: "radassist structured renderer".into(),
            preliminary: true,
            findings: vec![Statement {
                text: "Endotracheal tube too low.".into(),
                critical: true,
                evidence: vec![
                    Evidence {
                        kind: "measurement".into(),
                        description: "tip to carina 12.5 (malpositioned)".into(),
                        value: 12.5,
                        unit: "mm".into(),
                    },
                    Evidence {
                        kind: "prior_search".into(),
                        description: "no prior retrieved from PACS: refused".into(),
                        value: f64::NAN,
                        unit: String::new(),
                    },
                ],
            }],
            impression: vec![Statement {
                text: "Malpositioned ETT.".into(),
                critical: true,
                evidence: vec![],
            }],
            models: vec!["landmarks test-landmarks 1".into()],
            warning: "test model, not for clinical use".into(),
        }),
        devices: vec![DeviceCheck {
            device: "endotracheal_tube".into(),
            verdict: "malpositioned".into(),
            critical: true,
            statement: "The ETT tip is 12 mm above the carina.".into(),
            measurements: vec![Measurement {
                name: "tip to carina".into(),
                value: 12.5,
                unit: "mm".into(),
            }],
        }],
        ..Default::default()
    };
    let first = FinalRead {
        text: "ETT low.".into(),
        radiologist: "dr-a".into(),
        sign_time: Some(at(2_000_250)),
        findings: vec![FindingAgreement {
            observation: "Support Devices".into(),
            agrees: true,
        }],
        devices: vec![DeviceAgreement {
            device: "endotracheal_tube".into(),
            verdict: "malpositioned".into(),
            agrees: true,
        }],
        amendment: 0,
        amendment_reason: String::new(),
    };
    let amended = FinalRead {
        text: "ETT low; withdraw 2 cm.".into(),
        sign_time: Some(at(3_000_500)),
        amendment: 1,
        amendment_reason: "advice added".into(),
        ..first.clone()
    };
    (template, first, amended)
}

/// A store written by the versions that kept protobuf bytes opens on both backends, every read
/// (current and superseded) kept, and the API shows the work item exactly as it did.
#[test]
fn a_store_the_protobuf_versions_wrote_opens_with_every_read_and_the_api_unchanged() {
    use prost::Message;
    let (template, first, amended) = protobuf_era_item();
    let (template_bytes, first_bytes, amended_bytes) = (
        template.encode_to_vec(),
        first.encode_to_vec(),
        amended.encode_to_vec(),
    );
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let superseded_json: String = match kind {
            Kind::SqliteFolder => {
                // The tables as the first, unnumbered versions made them.
                let db = rusqlite::Connection::open(dir.path().join("radassist.sqlite")).unwrap();
                db.execute_batch(
                    "CREATE TABLE work_items (study_instance_uid TEXT PRIMARY KEY, status TEXT NOT NULL,
                         critical INTEGER NOT NULL, priority INTEGER NOT NULL, claimed_by TEXT,
                         created_at INTEGER NOT NULL, template BLOB NOT NULL, analysis_json TEXT NOT NULL,
                         model_version TEXT NOT NULL, final_read BLOB, signed_at INTEGER);
                     CREATE TABLE superseded_reads (study_instance_uid TEXT NOT NULL,
                         final_read BLOB NOT NULL, signed_at INTEGER NOT NULL,
                         superseded_at INTEGER NOT NULL);",
                )
                .unwrap();
                db.execute(
                    "INSERT INTO work_items VALUES ('1.2.40', 'SIGNED', 1, 100, 'dr-a', 1000, ?1, '{}', 'm', ?2, 3000500)",
                    rusqlite::params![template_bytes, amended_bytes],
                )
                .unwrap();
                db.execute(
                    "INSERT INTO superseded_reads VALUES ('1.2.40', ?1, 2000250, 3000600)",
                    rusqlite::params![first_bytes],
                )
                .unwrap();
                drop(db);
                open(kind, dir.path());
                rusqlite::Connection::open(dir.path().join("radassist.sqlite"))
                    .unwrap()
                    .query_row("SELECT signed_read FROM superseded_reads", [], |r| r.get(0))
                    .unwrap()
            }
            Kind::PostgresS3 => {
                let url = backends::database_for(dir.path());
                let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                client
                    .batch_execute(include_str!("../src/store/migrations/0001_catalogue.sql"))
                    .unwrap();
                client
                    .batch_execute(include_str!(
                        "../src/store/migrations/0002_images_after_signing.sql"
                    ))
                    .unwrap();
                client
                    .batch_execute(
                        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
                             applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
                         INSERT INTO schema_migrations (version, name) VALUES (1, 'catalogue'), (2, 'images after signing');",
                    )
                    .unwrap();
                client
                    .execute(
                        "INSERT INTO work_items (study_instance_uid, status, critical, priority, claimed_by,
                             created_at, template, analysis_json, model_version, final_read, signed_at)
                         VALUES ('1.2.40', 'SIGNED', true, 100, 'dr-a', 1000, $1, '{}', 'm', $2, 3000500)",
                        &[&template_bytes, &amended_bytes],
                    )
                    .unwrap();
                client
                    .execute(
                        "INSERT INTO superseded_reads VALUES ('1.2.40', $1, 2000250, 3000600)",
                        &[&first_bytes],
                    )
                    .unwrap();
                open(kind, dir.path());
                client
                    .query_one("SELECT signed_read FROM superseded_reads", &[])
                    .unwrap()
                    .get(0)
            }
        };
        let row = open(kind, dir.path()).work_item("1.2.40").unwrap();
        let mut shown = radassist::grpc::convert::work_item_message(&row);
        let mut expected = radassist::grpc::proto::WorkItem {
            status: radassist::grpc::proto::work_item::Status::Signed as i32,
            claimed_by: "dr-a".into(),
            priority: 100,
            create_time: Some(prost_types::Timestamp {
                seconds: 1,
                nanos: 0,
            }),
            final_read: Some(amended.clone()),
            ..template.clone()
        };
        // No number behind the prior search: NaN before and after (NaN equals nothing).
        for item in [&mut shown, &mut expected] {
            let evidence = &mut item.draft.as_mut().unwrap().findings[0].evidence[1];
            assert!(evidence.value.is_nan(), "{kind:?}");
            evidence.value = 0.0;
        }
        assert_eq!(shown, expected, "{kind:?}");
        let superseded: SignedRead = serde_json::from_str(&superseded_json).unwrap();
        assert_eq!(
            (
                superseded.text.as_str(),
                superseded.signed_at,
                superseded.amendment
            ),
            ("ETT low.", 2_000_250, 0),
            "{kind:?}"
        );
    }
}

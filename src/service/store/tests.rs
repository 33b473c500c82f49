//! The store's state changes under races: many threads at once, exactly one winner.

use super::*;
use crate::service::lifecycle::{JobState, StudyState, WorkItemStatus};

fn store_with_item(dir: &std::path::Path, uid: &str) -> SqliteStore {
    let store = SqliteStore::open(dir).unwrap();
    let bytes = format!("instance of {uid}");
    let sha = hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes.as_bytes()));
    let sop = format!("{uid}.1");
    store
        .put_instance(&IncomingInstance {
            bytes: bytes.as_bytes(),
            sha256: &sha,
            sop_instance_uid: &sop,
            study_instance_uid: uid,
            series_instance_uid: &format!("{uid}.2"),
            patient_id: "P",
            accession_number: "A",
            study_date: "20260101",
            prior: false,
        })
        .unwrap();
    assert_eq!(store.complete_study(uid).unwrap().state, StudyState::Queued);
    let job = store.take_job().unwrap().unwrap();
    assert_eq!((job.study_instance_uid.as_str(), job.attempt), (uid, 1));
    store
        .finish_job(
            uid,
            &NewWorkItem {
                critical: false,
                priority: 10,
                template: vec![],
                analysis_json: "{}".into(),
                model_version: "test".into(),
                report_json: "{}".into(),
                results: vec![],
            },
        )
        .unwrap();
    store
}

#[test]
fn of_many_claimants_exactly_one_holds_the_item_and_one_signs_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(store_with_item(dir.path(), "1.2.3"));
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
                            format!("read {i}").as_bytes(),
                            "{}",
                            &[],
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

#[test]
fn a_job_finishes_or_fails_only_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_item(dir.path(), "1.2.4");
    let item = NewWorkItem {
        critical: true,
        priority: 100,
        template: vec![],
        analysis_json: "{}".into(),
        model_version: "test".into(),
        report_json: "{}".into(),
        results: vec![],
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
    store.complete_study("1.2.4").unwrap();
    // Completing again while queued changes nothing.
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

#[test]
fn a_read_only_store_refuses_writes_and_recovers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let owner = store_with_item(dir.path(), "1.2.5");
    owner.complete_study("1.2.5").unwrap();
    owner.take_job().unwrap().unwrap();
    let inspector = SqliteStore::open_read_only(dir.path()).unwrap();
    assert_eq!(inspector.jobs(Some(JobState::Running)).unwrap().len(), 1);
    assert!(inspector.claim("1.2.5", "dr-x").is_err());
    assert!(inspector.complete_study("1.2.5").is_err());
    assert_eq!(owner.jobs(Some(JobState::Running)).unwrap().len(), 1);
}

#[test]
fn a_result_is_queued_with_its_draft_and_sent_once() {
    use crate::service::lifecycle::{OutboxState, ResultKind};
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_item(dir.path(), "1.2.5");
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
            b"read",
            "{}",
            &[result("PACS"), result("ARCHIVE")],
        )
        .unwrap();
    let due = store.due_results(now_ms(), 10).unwrap();
    assert_eq!(due.len(), 2);
    // A failed attempt waits for its next time; the other is sent, once.
    store
        .result_failed(due[0].id, "connection refused", now_ms() + 60_000)
        .unwrap();
    assert!(store.result_sent(due[1].id).unwrap());
    assert!(!store.result_sent(due[1].id).unwrap());
    assert!(store.due_results(now_ms(), 10).unwrap().is_empty());
    let outbox = store.outbox(10).unwrap();
    assert_eq!(outbox[0].state, OutboxState::Pending);
    assert_eq!(outbox[0].attempts, 1);
    assert_eq!(outbox[0].last_error, "connection refused");
    assert_eq!(outbox[1].state, OutboxState::Sent);
}

#[test]
fn of_two_amendments_of_the_same_read_one_wins_and_the_replaced_read_is_kept() {
    use crate::service::lifecycle::ResultKind;
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(store_with_item(dir.path(), "1.2.7"));
    assert!(
        matches!(
            store.amend("1.2.7", 0, 1, b"x", "{}", &[]),
            Err(StoreError::Precondition(_))
        ),
        "an unsigned item was amended"
    );
    store.claim("1.2.7", "dr-a").unwrap();
    let signed_at = 1_000;
    store
        .sign("1.2.7", "dr-a", signed_at, b"read", "{}", &[])
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
                        text.as_bytes(),
                        "{}",
                        &[result],
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
        item.final_read.as_deref(),
        Some(format!("amended {}", winners[0]).as_bytes())
    );
    assert_eq!(
        (item.status, item.signed_at),
        (WorkItemStatus::Signed, Some(signed_at + 1))
    );
    // Only the winner's SR is queued, and it is the newest signed SR of the study.
    assert_eq!(store.pending_results().unwrap(), 1);
    let latest = store.latest_signed_sr("1.2.7").unwrap().unwrap();
    assert_eq!(latest.0, format!("2.25.{}", winners[0]));
    let kept: i64 = store
        .db()
        .query_row("SELECT COUNT(*) FROM superseded_reads WHERE study_instance_uid = '1.2.7' AND final_read = X'72656164'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kept, 1, "the replaced read is not kept");
}

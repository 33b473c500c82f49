//! Crash tests: kill -9 during ingest and during a job, restart, and check that every
//! acknowledged instance is there byte for byte, nothing unacknowledged is half-stored, and
//! every job completes exactly once.

mod common;

use common::{chunks, reidentified_instance, uid_for, with_token, Server, PACS_TOKEN};
use radassist::service::proto::ingest_service_client::IngestServiceClient;
use radassist::service::proto::*;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn connect(server: &Server) -> Channel {
    server.channel().await
}

/// Every catalogued instance's blob exists and hashes to its row; no temporary file is left.
fn check_store(data: &std::path::Path) -> Vec<(String, String)> {
    let db = rusqlite::Connection::open(data.join("radassist.sqlite")).unwrap();
    let mut q = db
        .prepare("SELECT sop_instance_uid, sha256 FROM instances")
        .unwrap();
    let rows: Vec<(String, String)> = q
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (sop, sha) in &rows {
        let path = data
            .join("blobs")
            .join(&sha[..2])
            .join(&sha[2..4])
            .join(sha);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{sop}: {e}"));
        assert_eq!(
            &hex(&Sha256::digest(&bytes)),
            sha,
            "{sop}: the blob is not what was catalogued"
        );
    }
    let tmp: Vec<_> = std::fs::read_dir(data.join("blobs/tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "half-written blobs left: {tmp:?}");
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_ingest_loses_no_acknowledged_instance() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let channel = connect(&server).await;
    let instances: Vec<(String, Vec<u8>)> = (0..60)
        .map(|i| {
            (
                uid_for(&format!("crash-{i}")),
                reidentified_instance(&format!("crash-{i}"), "crash-study"),
            )
        })
        .collect();
    // Stream them one per call; kill -9 the server part way through.
    let pid = server.child.id();
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let mut acknowledged = Vec::new();
    let mut client = IngestServiceClient::new(channel.clone());
    for (sop, bytes) in &instances {
        match client
            .store_instances(with_token(tokio_stream::iter(chunks(0, bytes)), PACS_TOKEN))
            .await
        {
            Ok(response) => {
                let result = &response.into_inner().results[0];
                assert_eq!(result.outcome, instance_result::Outcome::Stored as i32);
                acknowledged.push((sop.clone(), hex(&Sha256::digest(bytes))));
            }
            Err(_) => break,
        }
    }
    killer.await.unwrap();
    server.kill();
    eprintln!(
        "acknowledged {} of {} instances before kill -9",
        acknowledged.len(),
        instances.len()
    );
    assert!(
        !acknowledged.is_empty() && acknowledged.len() < instances.len(),
        "the kill must land mid-ingest"
    );

    // Restart on the same store.
    let server = Server::start(dir.path());
    let stored = check_store(&server.data);
    for (sop, sha) in &acknowledged {
        assert!(
            stored.contains(&(sop.clone(), sha.clone())),
            "acknowledged {sop} is missing after the crash"
        );
    }
    // Re-sending an acknowledged instance is a harmless duplicate.
    let channel = connect(&server).await;
    let (sop, _) = &acknowledged[0];
    let bytes = &instances.iter().find(|(s, _)| s == sop).unwrap().1;
    let mut client = IngestServiceClient::new(channel);
    let result = client
        .store_instances(with_token(tokio_stream::iter(chunks(0, bytes)), PACS_TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        result.results[0].outcome,
        instance_result::Outcome::Duplicate as i32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_job_and_the_job_completes_exactly_once() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let channel = connect(&server).await;
    let mut ingest = IngestServiceClient::new(channel.clone());
    let bytes = reidentified_instance("job-crash", "job-crash-study");
    let result = ingest
        .store_instances(with_token(
            tokio_stream::iter(chunks(0, &bytes)),
            PACS_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    let study = result.results[0].study.clone();
    ingest
        .complete_study(with_token(
            CompleteStudyRequest {
                name: study.clone(),
            },
            PACS_TOKEN,
        ))
        .await
        .unwrap();
    // Kill as soon as the worker has taken the job.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut state = study::State::Unspecified;
    while Instant::now() < deadline {
        let s = ingest
            .get_study(with_token(
                GetStudyRequest {
                    name: study.clone(),
                },
                PACS_TOKEN,
            ))
            .await
            .unwrap()
            .into_inner();
        state = study::State::try_from(s.state).unwrap();
        if state != study::State::Queued {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill();
    eprintln!("killed with the study {state:?}");

    let server = Server::start(dir.path());
    let channel = connect(&server).await;
    let mut ingest = IngestServiceClient::new(channel);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = ingest
            .get_study(with_token(
                GetStudyRequest {
                    name: study.clone(),
                },
                PACS_TOKEN,
            ))
            .await
            .unwrap()
            .into_inner();
        if s.state == study::State::DraftReady as i32 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the interrupted job did not resume: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let db = rusqlite::Connection::open(server.data.join("radassist.sqlite")).unwrap();
    let uid = study.trim_start_matches("studies/");
    let (completions, attempts): (i64, i64) = db
        .query_row(
            "SELECT completions, attempts FROM jobs WHERE study_instance_uid = ?1",
            [uid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let items: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM work_items WHERE study_instance_uid = ?1",
            [uid],
            |r| r.get(0),
        )
        .unwrap();
    eprintln!("job: {attempts} attempts, {completions} completion(s)");
    assert_eq!((completions, items), (1, 1));
    check_store(&server.data);
}

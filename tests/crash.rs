//! Crash tests: kill -9 during ingest and during a job, restart, and check that every
//! acknowledged instance is there byte for byte, nothing unacknowledged is half-stored, and
//! every job completes exactly once.

use crate::common;

use common::{chunks, reidentified_instance, uid_for, with_token, Server, PACS_TOKEN};
use radassist::grpc::proto::ingest_service_client::IngestServiceClient;
use radassist::grpc::proto::*;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tonic::transport::Channel;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn connect(server: &Server) -> Channel {
    server.channel().await
}

/// Every catalogued instance's blob exists and hashes to its row; no temporary file is left.
fn check_store(data: &std::path::Path) -> Vec<(String, String)> {
    common::backends::check_blobs(data)
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
    // Four pushers stream them, one instance per call; once KILL_AFTER acknowledgements have
    // come back (counted, not timed), kill -9 the server while the others are in flight.
    const KILL_AFTER: usize = 20;
    let pid = server.child.id();
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let instances = std::sync::Arc::new(instances);
    let pushers: Vec<_> = (0..4)
        .map(|p| {
            let (channel, instances, acknowledged) =
                (channel.clone(), instances.clone(), acknowledged.clone());
            tokio::spawn(async move {
                let mut client = IngestServiceClient::new(channel);
                for (sop, bytes) in instances.iter().skip(p).step_by(4) {
                    let Ok(response) = client
                        .store_instances(with_token(
                            tokio_stream::iter(chunks(0, bytes)),
                            PACS_TOKEN,
                        ))
                        .await
                    else {
                        return;
                    };
                    let result = &response.into_inner().results[0];
                    assert_eq!(result.outcome, instance_result::Outcome::Stored as i32);
                    let mut acked = acknowledged.lock().unwrap();
                    acked.push((sop.clone(), hex(&Sha256::digest(bytes))));
                    if acked.len() == KILL_AFTER {
                        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    }
                }
            })
        })
        .collect();
    for pusher in pushers {
        pusher.await.unwrap();
    }
    server.kill();
    let acknowledged = acknowledged.lock().unwrap().clone();
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
    // Kill the moment the study is ANALYZING (the watch's event, not a poll or a sleep).
    let mut watch = ingest
        .watch_study(with_token(
            WatchStudyRequest {
                name: study.clone(),
            },
            PACS_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = tokio::time::timeout_at(deadline, watch.message())
            .await
            .expect("the job starts within 60 s")
            .unwrap()
            .expect("the watch ends only when the study settles");
        if s.state == study::State::Analyzing as i32 {
            break;
        }
        assert_ne!(s.state, study::State::DraftReady as i32, "missed ANALYZING");
    }
    server.kill();
    // The kill landed while the job ran: the store says so, before any restart.
    {
        let uid = study.trim_start_matches("studies/");
        let states = common::backends::catalogue_value(
            &dir.path().join("data"),
            "SELECT j.state || ' ' || s.state FROM jobs j JOIN studies s USING (study_instance_uid) WHERE study_instance_uid = $1",
            uid,
        );
        assert_eq!(states.as_deref(), Some("running ANALYZING"));
    }

    let server = Server::start(dir.path());
    let channel = connect(&server).await;
    // The restart queued the interrupted job again; it settles as DRAFT_READY.
    assert_eq!(
        common::watch_until_settled(&channel, &study).await,
        study::State::DraftReady,
        "the interrupted job did not resume"
    );
    let uid = study.trim_start_matches("studies/");
    let job = common::backends::catalogue_value(
        &server.data,
        "SELECT CAST(completions AS TEXT) || ' completion(s) after ' || CAST(attempts AS TEXT) || ' attempts' FROM jobs WHERE study_instance_uid = $1",
        uid,
    )
    .unwrap();
    let items = common::backends::catalogue_value(
        &server.data,
        "SELECT CAST(COUNT(*) AS TEXT) FROM work_items WHERE study_instance_uid = $1",
        uid,
    );
    eprintln!("job: {job}");
    assert!(job.starts_with("1 completion(s)"), "{job}");
    assert_eq!(items.as_deref(), Some("1"));
    check_store(&server.data);
}

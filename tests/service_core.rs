//! The service core under the loads and races real use brings: the report pack drafting in the
//! service exactly as the CLI does, claims and signs racing from many tasks, a job that panics,
//! the worklist's order across pages, critical items watched, `audit` beside a live store,
//! and report text that is not ASCII.

use crate::common;

use common::{
    complete_and_wait, http_get, marked_film, rewritten, root, run_radassist, uid_for, with_token,
    Server, ADMIN_TOKEN, PACS_TOKEN, RADIOLOGIST_TOKEN, SECOND_RADIOLOGIST_TOKEN,
};
use radassist::grpc::proto::ingest_service_client::IngestServiceClient;
use radassist::grpc::proto::model_service_client::ModelServiceClient;
use radassist::grpc::proto::worklist_service_client::WorklistServiceClient;
use radassist::grpc::proto::*;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::Code;

const CURRENT: &str = "sample-dicom/derived/siim_chest_pa_devices.dcm";

/// Texts that break byte-offset arithmetic on case-folded copies: ligatures ("ﬁ" upper-cases
/// to "FI"), the Turkish dotted I ("İ" lower-cases to two chars), German sharp s ("ß" to
/// "SS"), emoji, and combining marks.
pub const NON_ASCII_READS: &[&str] = &[
    "FINDINGS: ﬁﬁ IMPRESSION: none",
    "Findings: İİİ no pneumothorax. Impression: İstanbul protocol, no effusion.",
    "FINDINGS: Straße der Lunge: keine Ergüsse ßß. IMPRESSION: Unauffällig 🫁 no pneumothorax.",
    "FINDINGS: cafe\u{301} noted, n\u{303}o consolidation 👍🏽. IMPRESSION: e\u{301}de\u{300}me absent.",
];

async fn store_one(channel: &Channel, bytes: &[u8]) -> String {
    let results = common::store_instances(channel, &[bytes.to_vec()]).await;
    assert_eq!(
        results[0].outcome,
        instance_result::Outcome::Stored as i32,
        "{results:?}"
    );
    results[0].study.clone()
}

async fn work_item(channel: &Channel, name: &str) -> WorkItem {
    WorklistServiceClient::new(channel.clone())
        .get_work_item(with_token(
            GetWorkItemRequest { name: name.into() },
            RADIOLOGIST_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_pack_drafts_in_the_service_as_the_cli_does() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_configured(
        dir.path(),
        "",
        "[analysis]\nreport = \"test-report\"\n[analysis.generation]\nbeams = 1\n",
        &[],
    );
    let channel = server.channel().await;
    let study = store_one(&channel, &std::fs::read(root().join(CURRENT)).unwrap()).await;
    assert_eq!(
        complete_and_wait(&channel, &study).await,
        study::State::DraftReady
    );
    let item = work_item(&channel, &study.replace("studies/", "workItems/")).await;
    let draft = item.draft.unwrap();
    assert!(
        draft.author.contains("report pack test-report"),
        "the draft names its writer: {}",
        draft.author
    );
    assert!(
        draft.warning.contains("test model, not for clinical use"),
        "{}",
        draft.warning
    );
    assert!(
        draft
            .models
            .iter()
            .any(|m| m.starts_with("report test-report")),
        "{:?}",
        draft.models
    );
    // The structured sentences stay as the evidence.
    assert!(!draft.findings.is_empty() && draft.findings.iter().all(|s| !s.evidence.is_empty()));

    let out = run_radassist(&[
        "draft",
        CURRENT,
        "--report-pack",
        "models/test-report",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(draft.text, cli["text"].as_str().unwrap());
    assert!(!draft.text.is_empty());

    let models = ModelServiceClient::new(channel.clone())
        .list_models(with_token(ListModelsRequest {}, ADMIN_TOKEN))
        .await
        .unwrap()
        .into_inner();
    let report = models.packs.iter().find(|p| p.task == "report").unwrap();
    assert!(
        report.healthy && report.test_model && report.provider == "CPUExecutionProvider",
        "{report:?}"
    );
}

/// Many tasks claim the same item at the same moment, then sign it: one radiologist holds it,
/// and exactly one sign wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_and_signs_have_exactly_one_winner() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let channel = server.channel().await;
    for round in 0..3 {
        let bytes =
            common::reidentified_instance(&format!("race-{round}"), &format!("race-study-{round}"));
        let study = store_one(&channel, &bytes).await;
        assert_eq!(
            complete_and_wait(&channel, &study).await,
            study::State::DraftReady
        );
        let name = study.replace("studies/", "workItems/");
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let claims: Vec<_> = (0..16)
            .map(|i| {
                let (channel, name, barrier) = (channel.clone(), name.clone(), barrier.clone());
                let token = if i % 2 == 0 {
                    RADIOLOGIST_TOKEN
                } else {
                    SECOND_RADIOLOGIST_TOKEN
                };
                tokio::spawn(async move {
                    let mut worklist = WorklistServiceClient::new(channel);
                    barrier.wait().await;
                    let r = worklist
                        .claim_work_item(with_token(ClaimWorkItemRequest { name }, token))
                        .await;
                    (token, r.map(|r| r.into_inner().claimed_by))
                })
            })
            .collect();
        let mut holders = std::collections::BTreeSet::new();
        let mut refused = 0;
        for claim in claims {
            match claim.await.unwrap() {
                (_, Ok(holder)) => {
                    holders.insert(holder);
                }
                (_, Err(status)) => {
                    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                    assert!(status.message().contains("claimed by"), "{status:?}");
                    refused += 1;
                }
            }
        }
        assert_eq!(holders.len(), 1, "round {round}: holders {holders:?}");
        assert_eq!(refused, 8, "the other radiologist's 8 claims are refused");
        let holder_token = if holders.contains("dr-jane") {
            RADIOLOGIST_TOKEN
        } else {
            SECOND_RADIOLOGIST_TOKEN
        };

        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let text = NON_ASCII_READS[round % NON_ASCII_READS.len()];
        let signs: Vec<_> = (0..16)
            .map(|i| {
                let (channel, name, barrier) = (channel.clone(), name.clone(), barrier.clone());
                let token = if i < 12 {
                    holder_token
                } else if holder_token == RADIOLOGIST_TOKEN {
                    SECOND_RADIOLOGIST_TOKEN
                } else {
                    RADIOLOGIST_TOKEN
                };
                tokio::spawn(async move {
                    let mut worklist = WorklistServiceClient::new(channel);
                    barrier.wait().await;
                    worklist
                        .submit_final_read(with_token(
                            SubmitFinalReadRequest {
                                name,
                                text: format!("{text} (sign {i})"),
                                ..Default::default()
                            },
                            token,
                        ))
                        .await
                })
            })
            .collect();
        let mut signed = Vec::new();
        for sign in signs {
            match sign.await.unwrap() {
                Ok(item) => signed.push(item.into_inner()),
                Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
            }
        }
        assert_eq!(signed.len(), 1, "round {round}: exactly one sign wins");
        let stored = work_item(&channel, &name).await;
        assert_eq!(stored.final_read, signed[0].final_read);
        assert_eq!(stored.status, work_item::Status::Signed as i32);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_job_fails_with_its_reason_retries_and_the_next_study_is_drafted() {
    if !common::onnx_runtime_available() {
        return;
    }
    use dicom_dictionary_std::tags;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_configured(
        dir.path(),
        "max_attempts = 2\nanalysis_workers = 2\n",
        "",
        &[("RADASSIST_TEST_PANIC_ACCESSION", "PANIC-0001")],
    );
    let channel = server.channel().await;
    let hostile = rewritten(
        CURRENT,
        &[
            (tags::SOP_INSTANCE_UID, uid_for("panic/sop")),
            (tags::STUDY_INSTANCE_UID, uid_for("panic/study")),
            (tags::ACCESSION_NUMBER, "PANIC-0001".into()),
        ],
    );
    let panics = store_one(&channel, &hostile).await;
    assert_eq!(
        complete_and_wait(&channel, &panics).await,
        study::State::Failed
    );
    let mut ingest = IngestServiceClient::new(channel.clone());
    let failed = ingest
        .get_study(with_token(
            GetStudyRequest {
                name: panics.clone(),
            },
            PACS_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failed.attempts, 2, "retried, then FAILED: {failed:?}");
    assert!(failed.failure_reason.contains("panicked"), "{failed:?}");
    let jobs = ModelServiceClient::new(channel.clone())
        .list_jobs(with_token(
            ListJobsRequest {
                state: "failed".into(),
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(jobs
        .jobs
        .iter()
        .any(|j| j.study == panics && j.last_error.contains("panicked")));

    // The pool goes on: the next study is drafted.
    let next = store_one(
        &channel,
        &common::reidentified_instance("after-panic", "after-panic-study"),
    )
    .await;
    assert_eq!(
        complete_and_wait(&channel, &next).await,
        study::State::DraftReady
    );
    let metrics = http_get(&server.metrics, "/metrics");
    assert!(
        metrics.contains("radassist_job_panics_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("radassist_analysis_workers_alive 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("radassist_analysis_unavailable 0"),
        "{metrics}"
    );
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

/// Without models that load, health says NOT_SERVING (overall and for ingest) and the metrics
/// say analysis is unavailable; the reason is in ListModels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_analysis_possible_is_not_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_configured(
        dir.path(),
        "",
        "[analysis]\nfindings = \"no-such-pack\"\n",
        &[],
    );
    let channel = server.channel().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: "radassist.v1.IngestService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let message = tokio::time::timeout_at(deadline, watch.message())
            .await
            .expect("NOT_SERVING within 60 s")
            .unwrap()
            .unwrap();
        if message.status == not_serving {
            break;
        }
    }
    let metrics = http_get(&server.metrics, "/metrics");
    assert!(
        metrics.contains("radassist_analysis_unavailable 1"),
        "{metrics}"
    );
    let models = ModelServiceClient::new(channel)
        .list_models(with_token(ListModelsRequest {}, ADMIN_TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert!(
        models
            .packs
            .iter()
            .any(|p| !p.healthy && p.error.contains("no-such-pack")),
        "{models:?}"
    );
}

/// Critical results first, then priority, then age, across pages; a new critical item reaches
/// the radiologists watching.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_first_across_pages_and_watched_critical_items() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Without the findings pack (whose random weights call everything a pneumothorax), only the
    // tubes decide what is critical.
    let server = Server::start_configured(
        dir.path(),
        "analysis_workers = 2\n",
        "[analysis]\nfindings = \"\"\n",
        &[],
    );
    let channel = server.channel().await;
    let carina = (544.0, 396.0);
    let appropriate = [("carina", 0.0, 0.0), ("ett_tip", -3.5, -45.0)];
    let critical = [("carina", 0.0, 0.0), ("ett_tip", -0.7, -15.0)];
    let films = [
        ("order-normal-1", &appropriate),
        ("order-critical-1", &critical),
        ("order-normal-2", &appropriate),
        ("order-critical-2", &critical),
        ("order-normal-3", &appropriate),
    ];
    let mut watch = WorklistServiceClient::new(channel.clone())
        .watch_critical_items(with_token(WatchCriticalItemsRequest {}, RADIOLOGIST_TOKEN))
        .await
        .unwrap()
        .into_inner();
    let mut studies = Vec::new();
    for (label, marks) in films {
        let film = marked_film(dir.path(), label, carina, &marks[..]);
        // A study of its own (the film keeps the sample's Study Instance UID).
        let bytes = rewritten(
            film.to_str().unwrap(),
            &[(
                dicom_dictionary_std::tags::STUDY_INSTANCE_UID,
                uid_for(&format!("{label}/study")),
            )],
        );
        let study = store_one(&channel, &bytes).await;
        assert_eq!(
            complete_and_wait(&channel, &study).await,
            study::State::DraftReady
        );
        studies.push((label, study));
    }
    let mut worklist = WorklistServiceClient::new(channel.clone());
    let (mut token, mut seen) = (String::new(), Vec::new());
    for _ in 0..10 {
        let page = worklist
            .list_work_items(with_token(
                ListWorkItemsRequest {
                    page_size: 2,
                    page_token: token.clone(),
                    ..Default::default()
                },
                RADIOLOGIST_TOKEN,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.work_items.len() <= 2);
        seen.extend(page.work_items);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let names: Vec<&str> = seen.iter().map(|i| i.name.as_str()).collect();
    let critical_names: Vec<String> = studies
        .iter()
        .filter(|(l, _)| l.contains("critical"))
        .map(|(_, s)| s.replace("studies/", "workItems/"))
        .collect();
    let expected: Vec<String> = critical_names
        .iter()
        .cloned()
        .chain(
            studies
                .iter()
                .filter(|(l, _)| l.contains("normal"))
                .map(|(_, s)| s.replace("studies/", "workItems/")),
        )
        .collect();
    assert_eq!(
        names, expected,
        "critical first, then by age; every item once"
    );
    // Both critical items were delivered to the watcher, in the order they were drafted.
    let mut delivered = Vec::new();
    while delivered.len() < 2 {
        let item = tokio::time::timeout(Duration::from_secs(30), watch.message())
            .await
            .expect("a critical item within 30 s")
            .unwrap()
            .unwrap();
        assert!(item.critical);
        delivered.push(item.name);
    }
    assert_eq!(delivered, critical_names);

    let bad = worklist
        .list_work_items(with_token(
            ListWorkItemsRequest {
                page_token: "x9".into(),
                ..Default::default()
            },
            RADIOLOGIST_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}

/// `radassist audit` beside a live store reads and changes nothing: the running job stays
/// running, a blob being written stays, and the audit rows are printed.
#[test]
fn audit_beside_a_live_store_changes_nothing() {
    use radassist::store::lifecycle::JobState;
    use radassist::store::{AuditLog, IncomingInstance, JobQueue, SqliteStore, StudyStore};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let live = SqliteStore::open(&data).unwrap();
    let bytes = b"not parsed by the store";
    let sha = radassist::store::hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes));
    live.put_instance(&IncomingInstance {
        bytes,
        sha256: &sha,
        sop_instance_uid: "1.2.3.4",
        study_instance_uid: "1.2.3",
        series_instance_uid: "1.2.3.5",
        patient_id: "P1",
        accession_number: "A1",
        study_date: "20260101",
        attributes: "",
        prior: false,
    })
    .unwrap();
    live.complete_study("1.2.3").unwrap();
    assert!(live.take_job().unwrap().is_some());
    live.audit(&radassist::store::AuditRow {
        at_ms: 1,
        who: "dr-jane".into(),
        role: "radiologist".into(),
        action: "GetWorkItem".into(),
        resource: "workItems/1.2.3".into(),
        peer: "127.0.0.1:1".into(),
    })
    .unwrap();
    let in_flight = data.join("blobs/tmp/in-flight");
    std::fs::write(&in_flight, b"half written").unwrap();
    let config = dir.path().join("radassist.toml");
    std::fs::write(
        &config,
        format!("[service]\ndata_dir = {:?}\n", data.display().to_string()),
    )
    .unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args(["audit", "--json", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"who\":\"dr-jane\""));
    assert!(in_flight.exists(), "audit removed a blob being written");
    let running = live.jobs(Some(JobState::Running)).unwrap();
    assert_eq!(running.len(), 1, "audit re-queued a running job");
    assert_eq!(live.study("1.2.3").unwrap().state.as_str(), "ANALYZING");

    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args(["audit", "--config", config.to_str().unwrap()])
        .env("RADASSIST_DATA_DIR", dir.path().join("nowhere"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no radassist store"));
}

/// The reported panic: a signed read whose text has a ligature before its IMPRESSION title,
/// exported as SR and FHIR, with every other non-ASCII text too.
#[test]
fn non_ascii_reads_export_without_panic_and_with_their_sections() {
    let dir = tempfile::tempdir().unwrap();
    for (i, text) in NON_ASCII_READS.iter().enumerate() {
        let read = dir.path().join(format!("read-{i}.txt"));
        std::fs::write(&read, text).unwrap();
        for (format, file) in [("sr", "out.dcm"), ("fhir", "out.json")] {
            let out_path = dir.path().join(format!("{i}-{file}"));
            let out = run_radassist(&[
                "export",
                format,
                CURRENT,
                "-o",
                out_path.to_str().unwrap(),
                "--final",
                read.to_str().unwrap(),
                "--radiologist",
                "Dr X",
            ]);
            assert!(
                out.status.success(),
                "{format} of {text:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out_path.exists());
        }
        let fhir: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(format!("{i}-out.json"))).unwrap(),
        )
        .unwrap();
        let (_, impression) = radassist::draft::split_sections(text);
        assert!(!impression.is_empty(), "{text:?} has an impression");
        assert_eq!(
            fhir["conclusion"].as_str(),
            Some(impression.as_str()),
            "{fhir}"
        );
    }
}

/// Plain text on an address that is not loopback is refused at start, before anything is bound,
/// saying what to set.
#[test]
fn plaintext_outside_loopback_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("radassist.toml");
    let write = |extra: &str| {
        std::fs::write(
            &config,
            format!(
                "[service]\nlisten = \"0.0.0.0:0\"\nmetrics_listen = \"\"\ndata_dir = {:?}\n{extra}\n\
                 [[service.tokens]]\ntoken = \"{PACS_TOKEN}\"\nname = \"pacs\"\nrole = \"pacs\"\n",
                dir.path().join("data").display().to_string()
            ),
        )
        .unwrap();
    };
    write("");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not loopback") && stderr.contains("allow_plaintext"),
        "{stderr}"
    );
    // (allow_plaintext = true is tested without binding outside loopback: src/service/mod.rs.)
}

/// The service's stderr closed (its supervisor's pipe gone): SIGTERM still ends it cleanly, not
/// by SIGPIPE or a panic on the next line it writes.
#[test]
fn a_closed_stderr_does_not_stop_the_service() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("radassist.toml");
    std::fs::write(
        &config,
        format!(
            "[web]\nlisten = \"127.0.0.1:0\"\n[service]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"\"\ndata_dir = {:?}\n\
             [[service.tokens]]\ntoken = \"{PACS_TOKEN}\"\nname = \"pacs\"\nrole = \"pacs\"\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .current_dir(root())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    assert!(lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.starts_with("radassist: listening on ")));
    drop(lines);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

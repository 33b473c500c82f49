//! The gRPC service end to end, on an ephemeral loopback port: push the sample study, see its
//! draft in the worklist, sign it, read the QA comparison; ingest outcomes; every RPC under
//! every role; health, reflection, audit and metrics.

use crate::common;

use common::{
    chunks, complete_and_wait, http_get, metric, root, store_instances, with_token, Server,
    ADMIN_TOKEN, PACS_TOKEN, QA_TOKEN, RADIOLOGIST_TOKEN, SECOND_RADIOLOGIST_TOKEN,
};
use radassist::grpc::proto::ingest_service_client::IngestServiceClient;
use radassist::grpc::proto::model_service_client::ModelServiceClient;
use radassist::grpc::proto::quality_service_client::QualityServiceClient;
use radassist::grpc::proto::worklist_service_client::WorklistServiceClient;
use radassist::grpc::proto::*;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::Code;

const CURRENT: &str = "sample-dicom/derived/siim_chest_pa_devices.dcm";
const PRIOR: &str = "sample-dicom/derived/siim_chest_pa_prior.dcm";

fn read(path: &str) -> Vec<u8> {
    std::fs::read(root().join(path)).unwrap()
}

async fn sign(channel: &Channel, item: &str, text: &str) -> WorkItem {
    let mut worklist = WorklistServiceClient::new(channel.clone());
    worklist
        .claim_work_item(with_token(
            ClaimWorkItemRequest { name: item.into() },
            RADIOLOGIST_TOKEN,
        ))
        .await
        .unwrap();
    worklist
        .submit_final_read(with_token(
            SubmitFinalReadRequest {
                name: item.into(),
                text: text.into(),
                findings: vec![FindingAgreement {
                    observation: "Pleural Effusion".into(),
                    agrees: false,
                }],
                devices: vec![DeviceAgreement {
                    device: "endotracheal_tube".into(),
                    verdict: "appropriate".into(),
                    agrees: true,
                }],
            },
            RADIOLOGIST_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_the_sample_study_work_the_draft_sign_it_and_compare() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let channel = server.channel().await;

    eprintln!("e2e: The prior study first");
    // The prior study first, worked and signed, so the current study has a prior with a report.
    let results = store_instances(&channel, &[read(PRIOR)]).await;
    assert_eq!(
        results[0].outcome,
        instance_result::Outcome::Stored as i32,
        "{results:?}"
    );
    let prior_study = results[0].study.clone();
    assert_eq!(
        complete_and_wait(&channel, &prior_study).await,
        study::State::DraftReady
    );
    let prior_item = prior_study.replace("studies/", "workItems/");
    sign(&channel, &prior_item, "FINDINGS: Endotracheal tube tip 2.5 cm above the carina. No pneumothorax.\nIMPRESSION: Tube low.").await;

    eprintln!("e2e: The current study");
    // The current study: stored, then a duplicate of it, answered per instance.
    let current = read(CURRENT);
    let results = store_instances(&channel, &[current.clone(), current.clone()]).await;
    assert_eq!(results.len(), 2);
    // Instances of one stream are stored concurrently: one copy is STORED, the other a
    // DUPLICATE, whichever was committed first.
    let mut outcomes: Vec<i32> = results.iter().map(|r| r.outcome).collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            instance_result::Outcome::Stored as i32,
            instance_result::Outcome::Duplicate as i32
        ]
    );
    let study = results[0].study.clone();
    assert_eq!(
        complete_and_wait(&channel, &study).await,
        study::State::DraftReady
    );

    eprintln!("e2e: The worklist");
    // The worklist: the item with its draft, evidence and device checks.
    let mut worklist = WorklistServiceClient::new(channel.clone());
    let list = worklist
        .list_work_items(with_token(
            ListWorkItemsRequest {
                page_size: 10,
                ..Default::default()
            },
            RADIOLOGIST_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    let name = study.replace("studies/", "workItems/");
    assert!(
        list.work_items.iter().any(|i| i.name == name),
        "{:?}",
        list.work_items.iter().map(|i| &i.name).collect::<Vec<_>>()
    );
    let item = worklist
        .get_work_item(with_token(
            GetWorkItemRequest { name: name.clone() },
            RADIOLOGIST_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    let draft = item.draft.clone().unwrap();
    assert!(draft.preliminary && draft.text.starts_with("FINDINGS: "));
    assert_eq!(draft.warning, "test model, not for clinical use");
    assert!(draft
        .findings
        .iter()
        .filter(|s| !s.text.starts_with("Support"))
        .all(|s| !s.evidence.is_empty()));
    let ett = item
        .devices
        .iter()
        .find(|d| d.device == "endotracheal_tube")
        .unwrap();
    assert_eq!(ett.verdict, "appropriate");
    assert!((ett.measurements[0].value - 45.0).abs() < 1.0, "{ett:?}");
    // The prior was found in the store: the tube moved 2 cm since.
    assert!(
        draft.findings.iter().any(|s| s
            .text
            .starts_with("Endotracheal tube tip has moved by 20 mm")),
        "{:#?}",
        draft.findings
    );
    // A second radiologist cannot take a claimed item, nor sign it.
    worklist
        .claim_work_item(with_token(
            ClaimWorkItemRequest { name: name.clone() },
            RADIOLOGIST_TOKEN,
        ))
        .await
        .unwrap();
    let taken = worklist
        .claim_work_item(with_token(
            ClaimWorkItemRequest { name: name.clone() },
            SECOND_RADIOLOGIST_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::FailedPrecondition, "{taken:?}");
    let signed = sign(&channel, &name, "FINDINGS: Endotracheal tube tip 4.5 cm above the carina. No pneumothorax. No pleural effusion.\nIMPRESSION: Lines and tubes as described.").await;
    assert_eq!(signed.status, work_item::Status::Signed as i32);
    assert_eq!(signed.final_read.unwrap().radiologist, "dr-jane");

    eprintln!("e2e: QA");
    // QA: the comparison of this study, and the agreement over all signed studies.
    let mut quality = QualityServiceClient::new(channel.clone());
    let comparison = quality
        .get_study_comparison(with_token(
            GetStudyComparisonRequest {
                name: study.clone(),
            },
            QA_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    let ptx = comparison
        .observations
        .iter()
        .find(|o| o.observation == "Pneumothorax")
        .unwrap();
    assert_eq!(ptx.final_label, "negative");
    assert!(comparison.edit_distance > 0);
    assert!(comparison
        .devices
        .iter()
        .any(|d| d.device == "endotracheal_tube" && d.agrees));
    let agreement = quality
        .get_agreement(with_token(GetAgreementRequest::default(), QA_TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(agreement.studies, 2);

    eprintln!("e2e: Images after signing");
    // A late image of the signed study: analysed again, the signed read stands, and the open
    // worklist shows the item again for a look.
    let late = common::rewritten(
        CURRENT,
        &[(
            dicom_dictionary_std::tags::SOP_INSTANCE_UID,
            common::uid_for("late view"),
        )],
    );
    assert_eq!(
        common::store_and_settle(&channel, late).await,
        (study.clone(), study::State::Signed)
    );
    let after = worklist
        .get_work_item(with_token(
            GetWorkItemRequest { name: name.clone() },
            RADIOLOGIST_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.status, work_item::Status::Signed as i32);
    assert!(after.images_after_signing_time.is_some());
    assert!(after
        .final_read
        .unwrap()
        .text
        .starts_with("FINDINGS: Endotracheal tube tip 4.5 cm"));
    let open = worklist
        .list_work_items(with_token(
            ListWorkItemsRequest::default(),
            RADIOLOGIST_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(open.work_items.iter().any(|i| i.name == name));
    let again = quality
        .get_agreement(with_token(GetAgreementRequest::default(), QA_TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.studies, 2);

    eprintln!("e2e: The image");
    // The image, rendered.
    let image = worklist
        .render_study_image(with_token(
            RenderStudyImageRequest {
                name: name.clone(),
                max_size: 512,
                overlay: false,
            },
            RADIOLOGIST_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((image.width, image.height), (512, 512));
    assert_eq!(&image.png[1..4], b"PNG");
    let overlay = worklist
        .render_study_image(with_token(
            RenderStudyImageRequest {
                name: name.clone(),
                max_size: 2048,
                overlay: true,
            },
            RADIOLOGIST_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((overlay.width, overlay.height), (1024, 1024));
    let drawn = image::load_from_memory(&overlay.png).unwrap().to_rgb8();
    // Coloured verdicts are drawn: some pixels are not grey.
    assert!(drawn.pixels().any(|p| p[0] != p[1] || p[1] != p[2]));

    eprintln!("e2e: Ingest refusals");
    // Ingest refusals, each with its reason.
    let mut conflicting = current.clone();
    let n = conflicting.len();
    conflicting[n - 10] ^= 0xff;
    let non_chest = read("sample-dicom/non_chest/RG2_J2KI.dcm");
    let results = store_instances(
        &channel,
        &[
            conflicting,
            non_chest,
            b"not DICOM at all".to_vec(),
            current[..current.len() / 2].to_vec(),
        ],
    )
    .await;
    let outcomes: Vec<i32> = results.iter().map(|r| r.outcome).collect();
    use instance_result::Outcome::*;
    assert_eq!(
        outcomes,
        [
            Conflict as i32,
            Rejected as i32,
            Rejected as i32,
            Rejected as i32
        ],
        "{results:#?}"
    );
    assert!(
        results[1].reason.contains("not CHEST") || results[1].reason.contains("Modality"),
        "{}",
        results[1].reason
    );
    assert!(!results[3].reason.is_empty());

    eprintln!("e2e: The audit log has");
    // The audit log has the radiologist's reads, without patient identifiers in the resource.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args([
            "audit",
            "--config",
            server.config.to_str().unwrap(),
            "--who",
            "dr-jane",
            "--json",
        ])
        .output()
        .unwrap();
    let audit = String::from_utf8(out.stdout).unwrap();
    assert!(
        audit.contains("\"action\":\"GetWorkItem\"") && audit.contains(&name),
        "{audit}"
    );
    assert!(
        audit.contains("127.0.0.1"),
        "the peer address is recorded: {audit}"
    );

    eprintln!("e2e: Metrics.");
    // Metrics.
    let metrics = http_get(&server.metrics, "/metrics");
    // The prior, the current study and its late image.
    assert!(
        metrics.contains("radassist_ingest_instances_total 3"),
        "{metrics}"
    );
    // The prior, the current study, and the current study again after its late image.
    assert!(metrics.contains("radassist_jobs_done_total 3"), "{metrics}");
    // The prior; the current study and its prior; both again after the late image.
    assert!(
        metrics.contains("radassist_model_calls_total{model=\"findings:test-findings\"} 5"),
        "{metrics}"
    );

    eprintln!("e2e: Health and reflection.");
    // Health and reflection.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "radassist.v1.IngestService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    eprintln!("e2e: Graceful shutdown");
    // Graceful shutdown (clients gone first, so nothing is in flight).
    drop((channel, health, quality, worklist));
    let started = std::time::Instant::now();
    assert!(server.terminate().success());
    assert!(started.elapsed() < Duration::from_secs(15));
}

/// What each role may call: (call, roles allowed besides admin).
const MATRIX: &[(&str, &[&str])] = &[
    ("StoreInstances", &["pacs"]),
    ("CompleteStudy", &["pacs"]),
    ("GetStudy", &["pacs", "radiologist", "qa"]),
    ("WatchStudy", &["pacs", "radiologist", "qa"]),
    ("ListWorkItems", &["radiologist"]),
    ("GetWorkItem", &["radiologist"]),
    ("ClaimWorkItem", &["radiologist"]),
    ("ReleaseWorkItem", &["radiologist"]),
    ("SubmitFinalRead", &["radiologist"]),
    ("WatchCriticalItems", &["radiologist"]),
    ("RenderStudyImage", &["radiologist", "qa"]),
    ("GetStudyComparison", &["qa"]),
    ("GetAgreement", &["qa"]),
    ("ListModels", &[]),
    ("ListJobs", &[]),
];

async fn call(channel: &Channel, rpc: &str, token: &str) -> Result<(), tonic::Status> {
    let name = "studies/1.2.3".to_string();
    let item = "workItems/1.2.3".to_string();
    let mut ingest = IngestServiceClient::new(channel.clone());
    let mut worklist = WorklistServiceClient::new(channel.clone());
    let mut quality = QualityServiceClient::new(channel.clone());
    let mut models = ModelServiceClient::new(channel.clone());
    match rpc {
        "StoreInstances" => ingest
            .store_instances(with_token(
                tokio_stream::iter(Vec::<StoreInstancesRequest>::new()),
                token,
            ))
            .await
            .map(drop),
        "CompleteStudy" => ingest
            .complete_study(with_token(CompleteStudyRequest { name }, token))
            .await
            .map(drop),
        "GetStudy" => ingest
            .get_study(with_token(GetStudyRequest { name }, token))
            .await
            .map(drop),
        "WatchStudy" => ingest
            .watch_study(with_token(WatchStudyRequest { name }, token))
            .await
            .map(drop),
        "ListWorkItems" => worklist
            .list_work_items(with_token(ListWorkItemsRequest::default(), token))
            .await
            .map(drop),
        "GetWorkItem" => worklist
            .get_work_item(with_token(GetWorkItemRequest { name: item }, token))
            .await
            .map(drop),
        "ClaimWorkItem" => worklist
            .claim_work_item(with_token(ClaimWorkItemRequest { name: item }, token))
            .await
            .map(drop),
        "ReleaseWorkItem" => worklist
            .release_work_item(with_token(ReleaseWorkItemRequest { name: item }, token))
            .await
            .map(drop),
        "SubmitFinalRead" => worklist
            .submit_final_read(with_token(
                SubmitFinalReadRequest {
                    name: item,
                    text: "x".into(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop),
        "WatchCriticalItems" => worklist
            .watch_critical_items(with_token(WatchCriticalItemsRequest {}, token))
            .await
            .map(drop),
        "RenderStudyImage" => worklist
            .render_study_image(with_token(
                RenderStudyImageRequest {
                    name: item,
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop),
        "GetStudyComparison" => quality
            .get_study_comparison(with_token(GetStudyComparisonRequest { name }, token))
            .await
            .map(drop),
        "GetAgreement" => quality
            .get_agreement(with_token(GetAgreementRequest::default(), token))
            .await
            .map(drop),
        "ListModels" => models
            .list_models(with_token(ListModelsRequest {}, token))
            .await
            .map(drop),
        "ListJobs" => models
            .list_jobs(with_token(ListJobsRequest::default(), token))
            .await
            .map(drop),
        other => panic!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_under_every_role_and_without_a_valid_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let channel = server.channel().await;
    let roles = [
        ("pacs", PACS_TOKEN),
        ("radiologist", RADIOLOGIST_TOKEN),
        ("qa", QA_TOKEN),
        ("admin", ADMIN_TOKEN),
    ];
    for (rpc, allowed) in MATRIX {
        for (role, token) in roles {
            let outcome = call(&channel, rpc, token).await;
            let denied = matches!(&outcome, Err(s) if s.code() == Code::PermissionDenied);
            let may = role == "admin" || allowed.contains(&role);
            assert_eq!(denied, !may, "{rpc} as {role}: {outcome:?}");
        }
        for token in ["", "wrong-token-0123456789"] {
            let outcome = call(&channel, rpc, token).await;
            assert!(
                matches!(&outcome, Err(s) if s.code() == Code::Unauthenticated),
                "{rpc} with {token:?}: {outcome:?}"
            );
        }
    }
    // Malformed requests are INVALID_ARGUMENT, not a panic.
    let mut ingest = IngestServiceClient::new(channel.clone());
    let bad = ingest
        .get_study(with_token(
            GetStudyRequest {
                name: "studies/../../etc".into(),
            },
            PACS_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let missing = ingest
        .get_study(with_token(
            GetStudyRequest {
                name: "studies/1.2.3".into(),
            },
            PACS_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

#[test]
fn a_python_grpcio_client_drives_the_same_flow() {
    if !common::onnx_runtime_available() {
        return;
    }
    let python = root().join(".radassist/test-venv/bin/python");
    if !python.exists() {
        assert!(
            std::env::var_os("RADASSIST_REQUIRE_ORT").is_none(),
            "run scripts/setup: the Python test environment is missing"
        );
        eprintln!("no .radassist/test-venv: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let out = std::process::Command::new(python)
        .arg(root().join("tests/python/grpc_client_flow.py"))
        .arg(&server.address)
        .arg(root())
        .output()
        .unwrap();
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let server = Server::start_with(
        dir.path(),
        &format!(
            "tls_cert = {:?}\ntls_key = {:?}",
            cert.to_str().unwrap(),
            key.to_str().unwrap()
        ),
    );
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            certified.cert.pem(),
        ))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{}", server.address))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut ingest = IngestServiceClient::new(channel);
    let missing = ingest
        .get_study(with_token(
            GetStudyRequest {
                name: "studies/1.2.3".into(),
            },
            PACS_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "over TLS: {missing:?}");
    // A plaintext client gets nothing.
    let plain = Channel::from_shared(server.url()).unwrap().connect().await;
    let refused = match plain {
        Err(_) => true,
        Ok(channel) => IngestServiceClient::new(channel)
            .get_study(with_token(
                GetStudyRequest {
                    name: "studies/1.2.3".into(),
                },
                PACS_TOKEN,
            ))
            .await
            .is_err_and(|s| s.code() != Code::NotFound),
    };
    assert!(refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_study_that_goes_quiet_is_completed_without_complete_study() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), "stable_study_seconds = 1");
    let channel = server.channel().await;
    let results = store_instances(&channel, &[read(PRIOR)]).await;
    let study = results[0].study.clone();
    // No CompleteStudy: the stable-study timer queues it after a quiet second.
    let last = common::watch_until_settled(&channel, &study).await;
    assert_eq!(last, study::State::DraftReady);
}

/// `max_ingest_memory_bytes` bounds the bytes received and not yet stored, all streams
/// together: at the limit a stream waits (and its sender with it), and a stream that finds no
/// room for `ingest_memory_wait_ms` ends with RESOURCE_EXHAUSTED and a retry hint, without
/// harm to the other streams or to what was stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_memory_is_bounded_streams_wait_for_room_and_a_full_memory_refuses() {
    if !common::onnx_runtime_available() {
        return;
    }
    let instance = |label: &str| common::reidentified_instance(label, "memory-study");
    let size = instance("probe").len();
    let dir = tempfile::tempdir().unwrap();
    // Room for two instances (and a little), not for a third.
    let budget = size * 2 + size / 2;
    let server = Server::start_with(
        dir.path(),
        &format!(
            "max_ingest_memory_bytes = {budget}\nmax_instance_bytes = {}\ningest_memory_wait_ms = 1500",
            size + 1
        ),
    );
    let channel = server.channel().await;

    // Two streams of eight instances each (eight times the memory, in flight at once if
    // nothing held them back) all store: they wait for each other's instances to be stored.
    let batches: Vec<Vec<Vec<u8>>> = (0..2)
        .map(|s| {
            (0..8)
                .map(|i| instance(&format!("memory-{s}-{i}")))
                .collect()
        })
        .collect();
    let (first, second) = tokio::join!(
        store_instances(&channel, &batches[0]),
        store_instances(&channel, &batches[1])
    );
    for results in [first, second] {
        assert_eq!(results.len(), 8);
        assert!(
            results
                .iter()
                .all(|r| r.outcome == instance_result::Outcome::Stored as i32),
            "{results:?}"
        );
    }
    assert!(metric(&server.metrics, "radassist_ingest_memory_waits_total") > 0.0);
    assert_eq!(
        metric(&server.metrics, "radassist_ingest_memory_refusals_total"),
        0.0
    );
    assert_eq!(
        metric(&server.metrics, "radassist_ingest_memory_bytes"),
        0.0
    );

    // Two streams hold two instances' worth of chunks without their last chunk.
    let mut holders = Vec::new();
    for h in 0..2 {
        let held = instance(&format!("held-{h}"));
        let mut messages = chunks(0, &held);
        let last = messages.pop().unwrap();
        let (sender, receiver) = tokio::sync::mpsc::channel(messages.len() + 1);
        for m in messages {
            sender.send(m).await.unwrap();
        }
        let mut client = IngestServiceClient::new(channel.clone());
        let call = tokio::spawn(async move {
            client
                .store_instances(with_token(
                    tokio_stream::wrappers::ReceiverStream::new(receiver),
                    PACS_TOKEN,
                ))
                .await
        });
        holders.push((sender, last, call));
    }
    // Wait until the server holds all of their chunks but the last.
    let held = 2.0 * (size - chunks(0, &instance("x")).pop().unwrap().chunk.len()) as f64;
    for _ in 0..200 {
        if metric(&server.metrics, "radassist_ingest_memory_bytes") >= held {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric(&server.metrics, "radassist_ingest_memory_bytes"),
        held
    );
    // A third stream finds no room for its instance, and is told to come back.
    let third = instance("third");
    let mut client = IngestServiceClient::new(channel.clone());
    let refused = client
        .store_instances(with_token(
            tokio_stream::iter(chunks(0, &third)),
            PACS_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("max_ingest_memory_bytes"),
        "{}",
        refused.message()
    );
    assert_eq!(refused.metadata().get("retry-after-ms").unwrap(), "1000");

    // The held instances complete and are stored; then the third's retry is.
    for (sender, last, call) in holders {
        sender.send(last).await.unwrap();
        drop(sender);
        let results = call.await.unwrap().unwrap().into_inner().results;
        assert_eq!(
            results[0].outcome,
            instance_result::Outcome::Stored as i32,
            "{results:?}"
        );
    }
    let retried = store_instances(&channel, &[third]).await;
    assert_eq!(retried[0].outcome, instance_result::Outcome::Stored as i32);
    assert_eq!(
        metric(&server.metrics, "radassist_ingest_memory_refusals_total"),
        1.0
    );
    assert_eq!(
        metric(&server.metrics, "radassist_ingest_memory_bytes"),
        0.0
    );
}

/// Of a patient's studies in the store, the most recent one before the current study is its
/// prior: not an older one, not a later one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_most_recent_earlier_study_in_the_store_is_the_prior() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let channel = server.channel().await;
    // The current study is of 2024-03-15, the sample prior of 2024-03-01.
    let history = [
        common::redated_instance(PRIOR, "older-prior", "20230101"),
        read(PRIOR),
        common::redated_instance(PRIOR, "later-study", "20240401"),
    ];
    for instance in &history {
        let results = store_instances(&channel, std::slice::from_ref(instance)).await;
        assert_eq!(results[0].outcome, instance_result::Outcome::Stored as i32);
    }
    let results = store_instances(&channel, &[read(CURRENT)]).await;
    let study = results[0].study.clone();
    assert_eq!(
        complete_and_wait(&channel, &study).await,
        study::State::DraftReady
    );
    let item = WorklistServiceClient::new(channel.clone())
        .get_work_item(with_token(
            GetWorkItemRequest {
                name: study.replace("studies/", "workItems/"),
            },
            RADIOLOGIST_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    let comparisons: Vec<String> = item
        .draft
        .iter()
        .flat_map(|d| d.findings.iter().chain(&d.impression))
        .flat_map(|s| &s.evidence)
        .filter(|e| e.kind == "comparison")
        .map(|e| e.description.clone())
        .collect();
    assert!(!comparisons.is_empty(), "{item:?}");
    assert!(
        comparisons.iter().all(|c| c.contains("since 2024-03-01")),
        "{comparisons:?}"
    );
}

//! Results back to the PACS: a study stored by dcmtk's storescu is drafted, its SR reaches
//! dcmtk's storescp playing the PACS, the signed SR follows once the PACS is back after an
//! outage, exactly once, and an amendment's SR names the final one it replaces; every SR
//! passes dicom3tools' dciodvfy. Over DICOM TLS the SR
//! reaches a storescp whose certificate radassist trusts, and not one whose it does not.
//!
//! dcmtk 3.6.7's storescp cannot be bound to one address, so the test runs in a network
//! namespace of its own (`unshare -n`) whose only interface is loopback: radassist, storescp
//! and the clients all live there, and nothing outside can reach any of them.

use crate::common;

use common::{root, with_token, Server, ADMIN_TOKEN, RADIOLOGIST_TOKEN};
use radassist::grpc::proto::worklist_service_client::WorklistServiceClient;
use radassist::grpc::proto::{
    AmendFinalReadRequest, ClaimWorkItemRequest, GetStudyResultRequest, ListStudyResultsRequest,
    SubmitFinalReadRequest,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const STUDY: &str = "sample-dicom/derived/siim_chest_pa_devices.dcm";

/// dcmtk's storescp as the PACS; each line it logs comes through `lines`.
struct Pacs {
    child: Child,
    lines: Receiver<String>,
}

impl Pacs {
    fn start(port: u16, out: &Path) -> Pacs {
        Pacs::start_with(port, out, &[])
    }

    /// With more storescp options (its TLS ones).
    fn start_with(port: u16, out: &Path, options: &[&Path]) -> Pacs {
        let (tx, lines) = channel();
        let child = common::storescp(port, out, options, move |log| {
            for line in log {
                eprintln!("[pacs] {line}");
                let _ = tx.send(line);
            }
        });
        Pacs { child, lines }
    }

    /// The file names of the next `n` instances it stores.
    fn stored_srs(&self, n: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .expect("the PACS receives the SR");
            // "<output dir>/<modality prefix>.<SOP Instance UID>"
            if let Some(path) = line.strip_prefix("I: storing DICOM file: ") {
                out.push(path.trim().rsplit('/').next().unwrap().to_string());
            }
        }
        // It logs the name before it writes the file: the association's release comes after.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .expect("the association is released");
            if line.contains("Association Release") {
                return out;
            }
        }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Pacs {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// dciodvfy's error lines for a file.
fn dciodvfy_errors(path: &Path) -> Vec<String> {
    let out = Command::new("dciodvfy")
        .arg(path)
        .output()
        .expect("dciodvfy (dicom3tools) is installed by scripts/setup");
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .chain(String::from_utf8_lossy(&out.stdout).lines())
        .filter(|l| l.starts_with("Error"))
        .map(str::to_string)
        .collect()
}

/// An SR the PACS stored: valid for dciodvfy, and with `flag` (its Verification or Preliminary
/// Flag) in dcmtk's dsrdump.
fn check_sr(path: &Path, flag: &str) {
    assert_eq!(
        dciodvfy_errors(path),
        Vec::<String>::new(),
        "{}",
        path.display()
    );
    let dump = Command::new("dsrdump").arg(path).output().unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout).to_uppercase();
    assert!(dump.contains(flag), "{flag} not in {dump}");
}

fn metric(server: &Server, name: &str) -> f64 {
    common::metric(&server.metrics, name)
}

/// The results outbox as an admin sees it (ModelService.ListResults).
fn list_results(
    runtime: &tokio::runtime::Runtime,
    server: &Server,
) -> Vec<radassist::grpc::proto::OutgoingResult> {
    use radassist::grpc::proto::{model_service_client::ModelServiceClient, ListResultsRequest};
    runtime.block_on(async {
        ModelServiceClient::new(server.channel().await)
            .list_results(with_token(ListResultsRequest { limit: 0 }, ADMIN_TOKEN))
            .await
            .unwrap()
            .into_inner()
            .results
    })
}

#[test]
fn drafts_and_signed_reads_reach_the_pacs_once_even_across_an_outage() {
    if !common::onnx_runtime_available() {
        return;
    }
    if !common::in_own_network(concat!(
        module_path!(),
        "::drafts_and_signed_reads_reach_the_pacs_once_even_across_an_outage"
    )) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pacs_dir: PathBuf = dir.path().join("pacs");
    std::fs::create_dir(&pacs_dir).unwrap();
    let port = common::free_port();
    let pacs = Pacs::start(port, &pacs_dir);
    let server = Server::start_configured(
        dir.path(),
        "stable_study_seconds = 1",
        &format!(
            "[dicom]\nlisten = \"127.0.0.1:0\"\n\n\
             [[dicom.peers]]\nae_title = \"STORESCU\"\nhost = \"127.0.0.1\"\nport = 11113\n\n\
             [[dicom.peers]]\nae_title = \"PACS\"\nhost = \"127.0.0.1\"\nport = {port}\nsend_results = true\nresults = [\"report\"]\n"
        ),
        &[],
    );
    common::storescu_to(&server, &root().join(STUDY));

    // The draft SR, once the study went quiet and was analysed.
    let draft = pacs.stored_srs(1, Duration::from_secs(120)).remove(0);
    check_sr(&pacs_dir.join(&draft), "PRELIMINARY");

    // The PACS goes down; the radiologist signs; the final SR waits and is retried.
    pacs.stop();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let channel = server.channel().await;
        let mut worklist = WorklistServiceClient::new(channel);
        let header = radassist::dicom::parse_dicom(&std::fs::read(root().join(STUDY)).unwrap())
            .unwrap();
        let header = radassist::dicom::ImageHeader::from_instance(&header).unwrap();
        let name = format!("workItems/{}", header.identity.study_instance_uid.unwrap());
        worklist
            .claim_work_item(with_token(ClaimWorkItemRequest { name: name.clone() }, RADIOLOGIST_TOKEN))
            .await
            .unwrap();
        worklist
            .submit_final_read(with_token(
                SubmitFinalReadRequest {
                    name: name.clone(),
                    text: "Findings: endotracheal tube 4 cm above the carina. Impression: no acute disease.".into(),
                    ..Default::default()
                },
                RADIOLOGIST_TOKEN,
            ))
            .await
            .unwrap();
        // radassist made every result object, though this PACS takes reports only; each can be
        // downloaded as it was made.
        let made = worklist
            .list_study_results(with_token(
                ListStudyResultsRequest { name: name.clone() },
                RADIOLOGIST_TOKEN,
            ))
            .await
            .unwrap()
            .into_inner()
            .results;
        let objects: Vec<(&str, &str)> = made
            .iter()
            .map(|r| (r.object.as_str(), r.kind.as_str()))
            .collect();
        assert_eq!(
            objects,
            [
                ("report", "draft"),
                ("measurements", "draft"),
                ("presentation-state", "draft"),
                ("summary-image", "draft"),
                ("report", "final")
            ]
        );
        let file = worklist
            .get_study_result(with_token(
                GetStudyResultRequest {
                    name,
                    sop_instance_uid: made[1].sop_instance_uid.clone(),
                },
                RADIOLOGIST_TOKEN,
            ))
            .await
            .unwrap()
            .into_inner();
        let measurements = radassist::dicom::parse_dicom(&file.dicom).unwrap();
        assert_eq!(
            measurements
                .element(dicom_dictionary_std::tags::SOP_INSTANCE_UID)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches('\0'),
            made[1].sop_instance_uid
        );
        assert_eq!(file.result.unwrap().sop_class_uid, "1.2.840.10008.5.1.4.1.1.88.33");
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&server, "radassist_results_failed_total") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no attempt to reach the stopped PACS"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(metric(&server, "radassist_results_pending"), 1.0);
    // Admins see what waits, why and since when.
    let results = || list_results(&runtime, &server);
    let waiting = results();
    assert_eq!(waiting.len(), 2, "{waiting:?}");
    assert_eq!(
        (waiting[0].state.as_str(), waiting[0].kind.as_str()),
        ("pending", "final")
    );
    assert!(
        waiting[0].attempts >= 1 && !waiting[0].last_error.is_empty(),
        "{waiting:?}"
    );
    assert!(waiting[0].next_attempt_time.is_some());
    assert_eq!(
        (waiting[1].state.as_str(), waiting[1].kind.as_str()),
        ("sent", "draft")
    );

    // Back up: the final SR arrives, once.
    let pacs = Pacs::start(port, &pacs_dir);
    let final_sr = pacs.stored_srs(1, Duration::from_secs(60)).remove(0);
    assert_ne!(final_sr, draft);
    check_sr(&pacs_dir.join(&final_sr), "VERIFIED");
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&server, "radassist_results_pending") != 0.0 {
        assert!(Instant::now() < deadline, "the final SR stays pending");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(metric(&server, "radassist_results_sent_total"), 2.0);
    assert!(results()
        .iter()
        .all(|r| r.state == "sent" && r.sent_time.is_some()));
    // Nothing more comes: the sender's next looks (every second) find nothing due.
    let watch_until = Instant::now() + Duration::from_secs(3);
    while let Some(left) = watch_until.checked_duration_since(Instant::now()) {
        match pacs.lines.recv_timeout(left) {
            Ok(line) => assert!(
                !line.contains("Received Store Request"),
                "an SR was sent again"
            ),
            Err(_) => break,
        }
    }
    let stored = std::fs::read_dir(&pacs_dir).unwrap().count();
    assert_eq!(
        stored, 2,
        "the PACS holds the draft and the final SR, once each"
    );

    // An amendment: a third SR, verified, naming the final SR it replaces (PS3.3 C.17.2.3).
    runtime.block_on(async {
        let header = radassist::dicom::parse_dicom(&std::fs::read(root().join(STUDY)).unwrap())
            .unwrap();
        let header = radassist::dicom::ImageHeader::from_instance(&header).unwrap();
        let name = format!("workItems/{}", header.identity.study_instance_uid.unwrap());
        let mut worklist = WorklistServiceClient::new(server.channel().await);
        let amended = worklist
            .amend_final_read(with_token(
                AmendFinalReadRequest {
                    name,
                    text: "Findings: endotracheal tube 3 cm above the carina. Impression: no acute disease.".into(),
                    reason: "tube position misread".into(),
                    ..Default::default()
                },
                common::SECOND_RADIOLOGIST_TOKEN,
            ))
            .await
            .unwrap()
            .into_inner();
        let read = amended.final_read.unwrap();
        assert_eq!((read.amendment, read.radiologist.as_str()), (1, "dr-omar"));
    });
    let amended_sr = pacs.stored_srs(1, Duration::from_secs(60)).remove(0);
    check_sr(&pacs_dir.join(&amended_sr), "VERIFIED");
    let dump = Command::new("dcmdump")
        .arg(pacs_dir.join(&amended_sr))
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout);
    let final_uid = final_sr.split_once('.').unwrap().1;
    let predecessor = dump
        .split("(0040,a360)")
        .nth(1)
        .expect("the amended SR has a Predecessor Documents Sequence");
    let predecessor = &predecessor[..predecessor.find("(0040,a375)").unwrap_or(predecessor.len())];
    assert!(predecessor.contains(final_uid), "{predecessor}");
    assert!(dump.contains("3 cm above the carina"), "{dump}");
    assert_eq!(std::fs::read_dir(&pacs_dir).unwrap().count(), 3);
    assert!(results()
        .iter()
        .any(|r| r.kind == "amended" && r.state == "sent"));
}

/// DICOM TLS to the PACS: dcmtk's storescp with TLS (its default BCP 195 profile, requiring
/// the caller's certificate and trusting radassist's) receives the draft SR; the same storescp
/// configured as a second peer whose CA radassist was given as another one gets nothing, and
/// that result waits with the certificate error as its reason.
#[test]
fn results_go_over_dicom_tls_only_to_a_pacs_whose_certificate_is_trusted() {
    if !common::onnx_runtime_available() {
        return;
    }
    if !common::in_own_network(concat!(
        module_path!(),
        "::results_go_over_dicom_tls_only_to_a_pacs_whose_certificate_is_trusted"
    )) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (pacs_cert, pacs_key) = common::certificate(dir.path(), "pacs", &["127.0.0.1"]);
    let (radassist_cert, radassist_key) =
        common::certificate(dir.path(), "radassist", &["localhost", "127.0.0.1"]);
    let (stranger_cert, _) = common::certificate(dir.path(), "stranger", &["127.0.0.1"]);
    let pacs_dir: PathBuf = dir.path().join("pacs");
    std::fs::create_dir(&pacs_dir).unwrap();
    let port = common::free_port();
    // +tls KEY CERT; +cf: the callers' certificates it trusts (one is required, -rc).
    let pacs = Pacs::start_with(
        port,
        &pacs_dir,
        &[
            Path::new("+tls"),
            &pacs_key,
            &pacs_cert,
            Path::new("+cf"),
            &radassist_cert,
        ],
    );
    let server = Server::start_configured(
        dir.path(),
        &format!("stable_study_seconds = 1\ntls_cert = {radassist_cert:?}\ntls_key = {radassist_key:?}"),
        &format!(
            "[dicom]\nlisten = \"127.0.0.1:0\"\n\n\
             [[dicom.peers]]\nae_title = \"STORESCU\"\nhost = \"127.0.0.1\"\nport = 11113\n\n\
             [[dicom.peers]]\nae_title = \"PACS\"\nhost = \"127.0.0.1\"\nport = {port}\nsend_results = true\nresults = [\"report\"]\n\
             tls = true\ntls_ca = {pacs_cert:?}\n\n\
             [[dicom.peers]]\nae_title = \"ELSEWHERE\"\nhost = \"127.0.0.1\"\nport = {port}\nsend_results = true\nresults = [\"report\"]\n\
             tls = true\ntls_ca = {stranger_cert:?}\n"
        ),
        &[],
    );
    common::storescu_to(&server, &root().join(STUDY));

    let draft = pacs.stored_srs(1, Duration::from_secs(120)).remove(0);
    check_sr(&pacs_dir.join(&draft), "PRELIMINARY");
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&server, "radassist_results_failed_total") < 1.0 {
        assert!(Instant::now() < deadline, "no attempt to reach ELSEWHERE");
        std::thread::sleep(Duration::from_millis(100));
    }
    let server = server.trusting(&radassist_cert);
    let results = list_results(&tokio::runtime::Runtime::new().unwrap(), &server);
    let state = |peer: &str| {
        results
            .iter()
            .find(|r| r.peer == peer)
            .unwrap_or_else(|| panic!("no result for {peer}: {results:?}"))
    };
    assert_eq!(state("PACS").state, "sent", "{results:?}");
    let refused = state("ELSEWHERE");
    assert_eq!(refused.state, "pending", "{results:?}");
    assert!(
        refused.last_error.contains("(TLS)") && refused.last_error.contains("certificate"),
        "{}",
        refused.last_error
    );
    let stored = std::fs::read_dir(&pacs_dir).unwrap().count();
    assert_eq!(stored, 1, "only the trusted association stored the SR");
}

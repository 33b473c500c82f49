//! Priors from the PACS, against a real Orthanc (Debian's package, started here with a JSON
//! configuration and a Lua script written by the test): Orthanc holds a patient's prior study
//! with its signed report (a Basic Text SR written by pydicom); a new study of that patient sent
//! to Orthanc by the modality is forwarded to radassist when stable (Lua `OnStableStudy`);
//! radassist finds the prior by C-FIND, retrieves its frontal image and its report by C-MOVE,
//! drafts with the comparison, and its draft SR then shows in the new study in Orthanc's REST
//! API. And a PACS that accepts connections but never answers holds the draft up by the
//! configured timeout only; the draft then says that no prior could be retrieved. The Orthanc
//! case runs twice: in plain DICOM, and over DICOM TLS between every pair of nodes.
//!
//! Orthanc has no bind-address option for DICOM, so the Orthanc test runs in a network
//! namespace of its own (`unshare -n`) whose only interface is loopback: nothing outside can
//! reach Orthanc or radassist.

use crate::common;

use common::orthanc::Orthanc;
use common::{root, with_token, Server, RADIOLOGIST_TOKEN};
use radassist::grpc::proto::worklist_service_client::WorklistServiceClient;
use radassist::grpc::proto::{GetWorkItemRequest, WorkItem};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const CURRENT: &str = "sample-dicom/derived/siim_chest_pa_devices.dcm";
const PRIOR: &str = "sample-dicom/derived/siim_chest_pa_prior.dcm";
const PRIOR_REPORT: &str = "sample-dicom/derived/siim_chest_pa_prior_report.txt";

fn uid_of(path: &str, tag: dicom_core::Tag) -> String {
    let object = radassist::dicom::parse_dicom(&std::fs::read(root().join(path)).unwrap()).unwrap();
    object
        .element(tag)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches('\0')
        .to_string()
}

/// Forwards to radassist what came from the modality (not what the archive or radassist sent).
const LUA: &str = r#"
function OnStableStudy(studyId, tags, metadata)
  local instances = ParseJson(RestApiGet('/studies/' .. studyId .. '/instances'))
  local send = {}
  for i, instance in pairs(instances) do
    local meta = ParseJson(RestApiGet('/instances/' .. instance['ID'] .. '/metadata?expand'))
    if meta['RemoteAET'] == 'MODALITY' then
      table.insert(send, instance['ID'])
    end
  end
  if #send > 0 then
    print('forwarding ' .. #send .. ' instance(s) of ' .. studyId .. ' to radassist')
    RestApiPost('/modalities/radassist/store', DumpJson(send, true))
  end
end
"#;

/// DICOM TLS between the test's nodes: each one's certificate and key (self-signed), and
/// which each trusts: Orthanc trusts radassist's and the storescu's, radassist and the
/// storescu trust Orthanc's.
struct Certificates {
    orthanc: (PathBuf, PathBuf),
    radassist: (PathBuf, PathBuf),
    storescu: (PathBuf, PathBuf),
    /// radassist's and the storescu's certificates in one PEM file.
    trusted_by_orthanc: PathBuf,
}

impl Certificates {
    fn write(dir: &Path) -> Certificates {
        let orthanc = common::certificate(dir, "orthanc", &["127.0.0.1"]);
        let radassist = common::certificate(dir, "radassist", &["localhost", "127.0.0.1"]);
        let storescu = common::certificate(dir, "storescu", &["127.0.0.1"]);
        let trusted_by_orthanc = dir.join("orthanc-trusted.pem");
        let both = [&radassist.0, &storescu.0].map(|p| std::fs::read_to_string(p).unwrap());
        std::fs::write(&trusted_by_orthanc, both.concat()).unwrap();
        Certificates {
            orthanc,
            radassist,
            storescu,
            trusted_by_orthanc,
        }
    }
}

/// Orthanc on `dicom_port`, knowing radassist as a modality at `radassist_port`; with `tls`,
/// its DICOM port and its associations with radassist speak DICOM TLS only.
fn start_orthanc(
    dir: &Path,
    dicom_port: u16,
    radassist_port: u16,
    tls: Option<&Certificates>,
) -> Orthanc {
    let lua = dir.join("forward.lua");
    std::fs::write(&lua, LUA).unwrap();
    let mut config = serde_json::json!({
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": true,
        "StableAge": 2,
        "LuaScripts": [lua],
        "DicomModalities": {
            "radassist": ["RADASSIST", "127.0.0.1", radassist_port]
        }
    });
    let mut storescu_tls = vec![];
    if let Some(tls) = tls {
        config["DicomTlsEnabled"] = true.into();
        config["DicomTlsCertificate"] = serde_json::json!(tls.orthanc.0);
        config["DicomTlsPrivateKey"] = serde_json::json!(tls.orthanc.1);
        config["DicomTlsTrustedCertificates"] = serde_json::json!(tls.trusted_by_orthanc);
        config["DicomTlsRemoteCertificateRequired"] = true.into();
        config["DicomModalities"]["radassist"] = serde_json::json!({
            "AET": "RADASSIST", "Host": "127.0.0.1", "Port": radassist_port, "UseDicomTls": true
        });
        storescu_tls = vec![
            "+tls".into(),
            tls.storescu.1.clone(),
            tls.storescu.0.clone(),
            "+cf".into(),
            tls.orthanc.0.clone(),
        ];
    }
    Orthanc::start(dir, config, storescu_tls)
}

/// The prior's report as a Basic Text SR (written by pydicom) in `dir`.
fn write_prior_sr(dir: &Path) -> PathBuf {
    let python = root().join(".radassist/test-venv/bin/python");
    assert!(
        python.exists(),
        "run scripts/setup: the Python test environment is missing"
    );
    let prior_sr = dir.join("prior_sr.dcm");
    let made = Command::new(&python)
        .arg(root().join("tests/python/prior_sr.py"))
        .args([
            root().join(PRIOR),
            root().join(PRIOR_REPORT),
            prior_sr.clone(),
        ])
        .status()
        .unwrap();
    assert!(made.success(), "the prior's SR was not written");
    prior_sr
}

/// The work item of `study_uid`, once its draft is ready.
fn draft_of(server: &Server, study_uid: &str, within: Duration) -> WorkItem {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut worklist = WorklistServiceClient::new(server.channel().await);
        let name = format!("workItems/{study_uid}");
        let deadline = Instant::now() + within;
        loop {
            match worklist
                .get_work_item(with_token(
                    GetWorkItemRequest { name: name.clone() },
                    RADIOLOGIST_TOKEN,
                ))
                .await
            {
                Ok(item) => return item.into_inner(),
                Err(status) => {
                    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
                    assert!(Instant::now() < deadline, "no draft for {study_uid}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    })
}

fn evidence<'a>(item: &'a WorkItem, kind: &str) -> Vec<&'a str> {
    item.draft
        .iter()
        .flat_map(|d| d.findings.iter().chain(&d.impression))
        .flat_map(|s| &s.evidence)
        .filter(|e| e.kind == kind)
        .map(|e| e.description.as_str())
        .collect()
}

#[test]
fn a_prior_held_by_orthanc_is_found_retrieved_and_compared_and_the_draft_lands_in_the_study() {
    if common::onnx_runtime_available() && common::in_own_network(concat!(module_path!(), "::a_prior_held_by_orthanc_is_found_retrieved_and_compared_and_the_draft_lands_in_the_study")) {
        prior_from_orthanc(false);
    }
}

/// The same over DICOM TLS everywhere: the modality and the archive to Orthanc, Orthanc's
/// forward and C-MOVE to radassist's TLS listener, radassist's C-FIND and its SR to Orthanc;
/// every node shows its certificate and trusts the others'.
#[test]
fn a_prior_held_by_orthanc_comes_and_the_draft_goes_over_dicom_tls() {
    if common::onnx_runtime_available()
        && common::in_own_network(concat!(
            module_path!(),
            "::a_prior_held_by_orthanc_comes_and_the_draft_goes_over_dicom_tls"
        ))
    {
        prior_from_orthanc(true);
    }
}

fn prior_from_orthanc(tls: bool) {
    let dir = tempfile::tempdir().unwrap();
    let prior_sr = write_prior_sr(dir.path());
    let orthanc_port = common::free_port();
    let certificates = tls.then(|| Certificates::write(dir.path()));
    let (service_tls, listener_tls, peer_tls) = match &certificates {
        None => Default::default(),
        Some(c) => (
            format!(
                "tls_cert = {:?}\ntls_key = {:?}",
                c.radassist.0, c.radassist.1
            ),
            "tls = true\n".to_string(),
            format!("tls = true\ntls_ca = {:?}\n", c.orthanc.0),
        ),
    };
    let service = format!("stable_study_seconds = 1\n{service_tls}");
    let sections = format!(
        "[dicom]\nlisten = \"127.0.0.1:0\"\nprior_retrieval_timeout_seconds = 60\n{listener_tls}\n\
         [[dicom.peers]]\nae_title = \"ORTHANC\"\nhost = \"127.0.0.1\"\nport = {orthanc_port}\n\
         send_results = true\nquery_priors = true\n{peer_tls}"
    );
    let server = Server::start_configured(dir.path(), &service, &sections, &[]);
    let server = match &certificates {
        Some(c) => server.trusting(&c.radassist.0),
        None => server,
    };
    let radassist_port: u16 = server.dicom.rsplit_once(':').unwrap().1.parse().unwrap();
    // Orthanc on the port radassist was told (free a moment ago).
    let orthanc = start_orthanc(
        dir.path(),
        orthanc_port,
        radassist_port,
        certificates.as_ref(),
    );

    // The archive holds the prior and its report; then the modality sends the new study.
    orthanc.store("ARCHIVE", &[&root().join(PRIOR), &prior_sr]);
    orthanc.store("MODALITY", &[&root().join(CURRENT)]);

    let current_uid = uid_of(CURRENT, dicom_dictionary_std::tags::STUDY_INSTANCE_UID);
    let prior_uid = uid_of(PRIOR, dicom_dictionary_std::tags::STUDY_INSTANCE_UID);
    let item = draft_of(&server, &current_uid, Duration::from_secs(180));

    // The draft compares with the prior retrieved from Orthanc: the tube moved 2 cm since.
    let draft = item.draft.clone().unwrap();
    assert!(
        draft.findings.iter().any(|s| s
            .text
            .starts_with("Endotracheal tube tip has moved by 20 mm")),
        "{:#?}",
        draft.findings
    );
    let comparisons = evidence(&item, "comparison");
    assert!(!comparisons.is_empty());
    assert!(
        comparisons.iter().all(|c| c.contains("since 2024-03-01")),
        "{comparisons:?}"
    );
    assert!(evidence(&item, "prior_search").is_empty());
    assert_eq!(
        common::metric(
            &server.metrics,
            "radassist_dicom_prior_searches_total{outcome=\"retrieved\"}"
        ),
        1.0
    );

    // The prior is kept as a prior, not analysed, and its report came with it: the analysis
    // matched the prior report's sentences (from the SR pydicom wrote) to the new results.
    let value = |sql: &str, study: &str| {
        common::backends::catalogue_value(&server.data, sql, study).unwrap_or_default()
    };
    let state = value(
        "SELECT state FROM studies WHERE study_instance_uid = $1",
        &prior_uid,
    );
    assert_eq!(state, "PRIOR");
    let analysed = value(
        "SELECT CAST(count(*) AS TEXT) FROM work_items WHERE study_instance_uid = $1",
        &prior_uid,
    );
    assert_eq!(analysed, "0", "the retrieved prior was analysed as a study");
    let analysis = value(
        "SELECT analysis_json FROM work_items WHERE study_instance_uid = $1",
        &current_uid,
    );
    let analysis: serde_json::Value = serde_json::from_str(&analysis).unwrap();
    let matched = analysis["comparisons"][0]["prior_report"].to_string();
    assert!(matched.contains("Left chest tube in place."), "{matched}");
    // Only the frontal image and the report were retrieved.
    let retrieved = value(
        "SELECT CAST(count(*) AS TEXT) FROM instances WHERE study_instance_uid = $1",
        &prior_uid,
    );
    assert_eq!(retrieved, "1");

    // Orthanc holds radassist's results inside the new study, each in its own series: the
    // draft report (pointing at the prior it compared with), the measurement report, the
    // presentation state and the summary image (IHE AI Results).
    let deadline = Instant::now() + Duration::from_secs(60);
    let series = loop {
        let study = orthanc
            .study(&current_uid)
            .expect("the new study is in Orthanc");
        let series: Vec<serde_json::Value> = study["Series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| orthanc.get(&format!("/series/{}", s.as_str().unwrap())))
            .collect();
        if series.len() == 5 {
            break series;
        }
        assert!(
            Instant::now() < deadline,
            "the film and four results are not all in the study in Orthanc: {series:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let described = |description: &str| {
        let found = series
            .iter()
            .find(|s| s["MainDicomTags"]["SeriesDescription"] == description)
            .unwrap_or_else(|| panic!("no series {description:?} in {series:#?}"));
        assert_eq!(found["Instances"].as_array().unwrap().len(), 1);
        let instance = found["Instances"][0].as_str().unwrap();
        orthanc.get(&format!("/instances/{instance}/simplified-tags"))
    };
    let report = described("radassist report");
    assert_eq!(report["StudyInstanceUID"], current_uid.as_str());
    assert_eq!(report["PreliminaryFlag"], "PRELIMINARY");
    assert_eq!(report["VerificationFlag"], "UNVERIFIED");
    let evidence = report["PertinentOtherEvidenceSequence"].to_string();
    assert!(evidence.contains(&prior_uid), "{evidence}");
    for (description, modality, sop_class) in [
        (
            "radassist measurements",
            "SR",
            "1.2.840.10008.5.1.4.1.1.88.33",
        ),
        ("radassist marks", "PR", "1.2.840.10008.5.1.4.1.1.11.1"),
        (
            "radassist summary (AI draft, not a diagnosis)",
            "OT",
            "1.2.840.10008.5.1.4.1.1.7",
        ),
    ] {
        let tags = described(description);
        assert_eq!(
            tags["StudyInstanceUID"],
            current_uid.as_str(),
            "{description}"
        );
        assert_eq!(tags["Modality"], modality, "{description}");
        assert_eq!(tags["SOPClassUID"], sop_class, "{description}");
        let equipment = tags["ContributingEquipmentSequence"].to_string();
        assert!(equipment.contains("test-marker-landmarks"), "{equipment}");
    }
    if !tls {
        let report_uid = report["SOPInstanceUID"].as_str().unwrap().to_string();
        let restart = || Server::start_configured(dir.path(), &service, &sections, &[]);
        cut_off_sends_are_looked_for_at_the_peer_first(
            server,
            restart,
            &orthanc,
            &current_uid,
            &report_uid,
        );
    }
}

/// A crash cut off the sending of the draft report (its outbox row pending, its attempt begun
/// and never ended, as a kill leaves it): at the next start radassist asks Orthanc by C-FIND
/// and, finding the report there, marks it sent without sending it again; once Orthanc no
/// longer holds it, the same cut-off attempt leads to sending it again.
fn cut_off_sends_are_looked_for_at_the_peer_first(
    server: Server,
    restart: impl Fn() -> Server,
    orthanc: &Orthanc,
    study_uid: &str,
    report_uid: &str,
) {
    let data = server.data.clone();
    let cut_off = || {
        let changed = common::backends::catalogue_execute(
            &data,
            "UPDATE outbox SET state = 'pending', sent_at = NULL, next_attempt_at = 0, \
             attempt_started_at = 1 WHERE sop_instance_uid = $1",
            report_uid,
        );
        assert_eq!(changed, 1);
    };
    let metric_reaches = |server: &Server, name: &str, value: f64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while common::metric(&server.metrics, name) < value {
            assert!(Instant::now() < deadline, "{name} did not reach {value}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let state = || {
        common::backends::catalogue_value(
            &data,
            "SELECT state FROM outbox WHERE sop_instance_uid = $1",
            report_uid,
        )
    };
    server.terminate();
    cut_off();
    let server = restart();
    metric_reaches(&server, "radassist_results_found_at_peer_total", 1.0);
    assert_eq!(
        common::metric(&server.metrics, "radassist_results_sent_total"),
        0.0
    );
    assert_eq!(state().as_deref(), Some("sent"));
    server.terminate();

    // Orthanc loses the report; the cut-off attempt is found not to have delivered it.
    let found = orthanc.get("/instances?expand");
    let id = found
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["MainDicomTags"]["SOPInstanceUID"] == report_uid)
        .expect("the report is in Orthanc")["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _, _) = common::web_request(
        &orthanc.http,
        "DELETE",
        &format!("/instances/{id}"),
        &[],
        "",
    );
    assert_eq!(status, 200);
    cut_off();
    let server = restart();
    metric_reaches(&server, "radassist_results_sent_total", 1.0);
    assert_eq!(
        common::metric(&server.metrics, "radassist_results_found_at_peer_total"),
        0.0
    );
    assert_eq!(state().as_deref(), Some("sent"));
    let study = orthanc.study(study_uid).unwrap();
    assert_eq!(
        study["Series"].as_array().unwrap().len(),
        5,
        "the report is back in Orthanc"
    );
}

#[test]
fn a_pacs_that_never_answers_delays_the_draft_by_the_timeout_and_the_draft_says_so() {
    if !common::onnx_runtime_available() {
        return;
    }
    // A peer that accepts the connection and then says nothing.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let (stream, _) = silent.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let _ = std::io::Read::read(&mut &stream, &mut [0u8; 1024]);
        stream
    });
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_configured(
        dir.path(),
        "stable_study_seconds = 1",
        &format!(
            "[dicom]\nlisten = \"127.0.0.1:0\"\nprior_retrieval_timeout_seconds = 3\n\n\
             [[dicom.peers]]\nae_title = \"STORESCU\"\nhost = \"127.0.0.1\"\nport = 11113\n\n\
             [[dicom.peers]]\nae_title = \"SLOWPACS\"\nhost = \"127.0.0.1\"\nport = {silent_port}\nquery_priors = true\n"
        ),
        &[],
    );
    common::storescu_to(&server, &root().join(CURRENT));
    let current_uid = uid_of(CURRENT, dicom_dictionary_std::tags::STUDY_INSTANCE_UID);
    let item = draft_of(&server, &current_uid, Duration::from_secs(120));
    let draft = item.draft.clone().unwrap();
    assert!(
        draft.text.starts_with(
            "FINDINGS: No prior study could be retrieved from the PACS for comparison."
        ),
        "{}",
        draft.text
    );
    let why = evidence(&item, "prior_search");
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(why[0].contains("SLOWPACS"), "{why:?}");
    assert!(evidence(&item, "comparison").is_empty());
    assert_eq!(
        common::metric(
            &server.metrics,
            "radassist_dicom_prior_searches_total{outcome=\"unavailable\"}"
        ),
        1.0
    );
    // The silent peer was connected to (and is let go now).
    drop(held.join().unwrap());
}

#[test]
fn orthanc_s_dicomweb_plays_the_pacs_study_in_priors_from_it_and_results_back() {
    if common::onnx_runtime_available()
        && common::in_own_network(concat!(
            module_path!(),
            "::orthanc_s_dicomweb_plays_the_pacs_study_in_priors_from_it_and_results_back"
        ))
    {
        pacs_by_dicomweb();
    }
}

/// Orthanc with its DICOMweb plugin as the PACS, radassist reaching it only by DICOMweb: the
/// study comes by STOW-RS from Orthanc, the prior is found by QIDO-RS and retrieved by WADO-RS,
/// and the four results go back into the study by STOW-RS.
fn pacs_by_dicomweb() {
    let dir = tempfile::tempdir().unwrap();
    let prior_sr = write_prior_sr(dir.path());
    let (orthanc_http, orthanc_dicom) = (common::free_port(), common::free_port());
    // No DICOM listener: nothing arrives by DIMSE.
    let sections = format!(
        "[dicom]\nlisten = \"\"\nprior_retrieval_timeout_seconds = 60\n\n\
         [[dicom.peers]]\nae_title = \"ORTHANC\"\nhost = \"127.0.0.1\"\nport = {orthanc_dicom}\n\
         send_results = true\nquery_priors = true\n\
         dicomweb = \"http://127.0.0.1:{orthanc_http}/dicom-web\"\n"
    );
    let server = Server::start_configured(dir.path(), "stable_study_seconds = 1", &sections, &[]);
    let orthanc = Orthanc::start(
        dir.path(),
        serde_json::json!({
            "HttpPort": orthanc_http,
            "DicomPort": orthanc_dicom,
            "Plugins": [common::orthanc::DICOMWEB_PLUGIN],
            "DicomWeb": {
                "Enable": true,
                "Root": "/dicom-web/",
                "Servers": {
                    "radassist": {
                        "Url": format!("{}/dicomweb/", server.web),
                        "HttpHeaders": {"Authorization": format!("Bearer {}", common::PACS_TOKEN)}
                    }
                }
            }
        }),
        vec![],
    );
    orthanc.store("ARCHIVE", &[&root().join(PRIOR), &prior_sr]);
    orthanc.store("MODALITY", &[&root().join(CURRENT)]);
    let current_uid = uid_of(CURRENT, dicom_dictionary_std::tags::STUDY_INSTANCE_UID);
    let orthanc_study = orthanc
        .study(&current_uid)
        .expect("Orthanc has the new study")["ID"]
        .as_str()
        .unwrap()
        .to_string();
    // Orthanc sends the new study to radassist by STOW-RS.
    let (status, head, _) = common::dicomweb::exchange(
        &format!("http://{}", orthanc.http),
        "POST",
        "/dicom-web/servers/radassist/stow",
        &[("Content-Type", "application/json")],
        serde_json::json!({"Resources": [orthanc_study]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 200, "Orthanc's STOW-RS to radassist: {head}");

    // The draft compares with the prior found by QIDO-RS and retrieved by WADO-RS.
    let item = draft_of(&server, &current_uid, Duration::from_secs(180));
    let comparisons = evidence(&item, "comparison");
    assert!(!comparisons.is_empty(), "no comparison with the prior");
    assert!(
        comparisons.iter().all(|c| c.contains("since 2024-03-01")),
        "{comparisons:?}"
    );
    assert_eq!(
        common::metric(
            &server.metrics,
            "radassist_dicom_prior_searches_total{outcome=\"retrieved\"}"
        ),
        1.0
    );
    let prior_uid = uid_of(PRIOR, dicom_dictionary_std::tags::STUDY_INSTANCE_UID);
    let report_kept = common::backends::catalogue_value(
        &server.data,
        "SELECT study_instance_uid FROM prior_reports WHERE study_instance_uid = $1",
        &prior_uid,
    );
    assert_eq!(
        report_kept.as_deref(),
        Some(prior_uid.as_str()),
        "the prior's report came with it"
    );

    // The four results land in the study in Orthanc, by STOW-RS.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let study = orthanc.study(&current_uid).unwrap();
        let series = study["Series"].as_array().unwrap().len();
        if series == 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{series} series in the study in Orthanc, not 5"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        common::metric(&server.metrics, "radassist_results_sent_total"),
        4.0
    );
}

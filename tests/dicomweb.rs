//! DICOMweb (QIDO-RS, WADO-RS, STOW-RS) against dicomweb-client (PyPI), with instances stored by
//! every way in (gRPC, C-STORE with dcmtk's storescu, STOW-RS), and raw HTTP for the bodies no
//! well-behaved client sends. Every server is started here on loopback.

use crate::common::{self, root, Server, PACS_TOKEN, QA_TOKEN, RADIOLOGIST_TOKEN};
use common::dicomweb::{exchange, multipart, stow, STOW_TYPE};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn start(dir: &Path) -> Server {
    Server::start_configured(
        dir,
        "",
        "[dicom]\nlisten = \"127.0.0.1:0\"\nae_title = \"RADASSIST\"\nidle_timeout_seconds = 5\n\n\
         [[dicom.peers]]\nae_title = \"STORESCU\"\nhost = \"127.0.0.1\"\nport = 11113\n",
        &[],
    )
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An attribute of a Part 10 file as text (empty when absent).
fn attribute(bytes: &[u8], tag: dicom_core::Tag) -> String {
    let object = dicom_object::from_reader(&bytes[128..]).unwrap();
    object
        .element(tag)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// The first value of `tag` (ggggeeee) in a DICOM JSON object, as text.
fn first(object: &Value, tag: &str) -> String {
    match &object[tag]["Value"][0] {
        Value::String(s) => s.clone(),
        Value::Object(pn) => pn["Alphabetic"].as_str().unwrap_or("").to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The Study Instance UIDs of a search's answers.
fn studies_of(answers: &Value) -> BTreeSet<String> {
    answers
        .as_array()
        .unwrap()
        .iter()
        .map(|a| first(a, "0020000D"))
        .collect()
}

/// The SOP Instance UIDs a QIDO-RS instance search finds, everywhere.
fn instances_held(web: &str) -> BTreeSet<String> {
    let bearer = format!("Bearer {RADIOLOGIST_TOKEN}");
    let (status, head, body) = exchange(
        web,
        "GET",
        "/dicomweb/instances",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(status, 200, "{head}");
    let answers: Value = serde_json::from_slice(&body).unwrap();
    answers
        .as_array()
        .unwrap()
        .iter()
        .map(|a| first(a, "00080018"))
        .collect()
}

#[test]
fn dicomweb_client_searches_and_retrieves_what_every_way_in_stored() {
    let python = root().join(".radassist/test-venv/bin/python");
    assert!(
        python.exists(),
        "run scripts/setup: the Python test environment is missing"
    );
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    use dicom_dictionary_std::tags;

    // One study by each way in, each a sample film as a study of its own.
    let by_grpc = common::study_copy("sample-dicom/nih_dx_implicit_le.dcm", "dicomweb/grpc");
    let by_cstore = common::study_copy("sample-dicom/RG1_J2KI.dcm", "dicomweb/c-store");
    let by_stow = [
        common::study_copy(
            "sample-dicom/siim_chest_pa_jpeg_baseline.dcm",
            "dicomweb/stow-1",
        ),
        common::study_copy(
            "sample-dicom/orthanc_Issue44_Monochrome1-Jpeg.dcm",
            "dicomweb/stow-2",
        ),
    ];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let results = runtime.block_on(async {
        common::store_instances(&server.channel().await, std::slice::from_ref(&by_grpc)).await
    });
    assert_eq!(
        results[0].outcome,
        radassist::grpc::proto::instance_result::Outcome::Stored as i32
    );
    let cstore_file = dir.path().join("c-store.dcm");
    std::fs::write(&cstore_file, &by_cstore).unwrap();
    // Proposed in the JPEG 2000 it is held in (storescu proposes uncompressed syntaxes only,
    // by default).
    let (host, port) = server.dicom.rsplit_once(':').unwrap();
    let sent = Command::new("storescu")
        .args(["-xw", "-aet", "STORESCU", "-aec", "RADASSIST", host, port])
        .arg(&cstore_file)
        .status()
        .unwrap();
    assert!(sent.success(), "storescu");
    let mut stow_files = Vec::new();
    for (i, bytes) in by_stow.iter().enumerate() {
        let file = dir.path().join(format!("stow-{i}.dcm"));
        std::fs::write(&file, bytes).unwrap();
        stow_files.push(file);
    }
    let all = [&by_grpc, &by_cstore, &by_stow[0], &by_stow[1]];
    let study = |bytes: &Vec<u8>| attribute(bytes, tags::STUDY_INSTANCE_UID);
    let sop = |bytes: &Vec<u8>| attribute(bytes, tags::SOP_INSTANCE_UID);

    // Each search's expected studies, from the files themselves.
    let matching = |keep: &dyn Fn(&Vec<u8>) -> bool| -> BTreeSet<String> {
        all.iter().filter(|b| keep(b)).map(|b| study(b)).collect()
    };
    let text = |b: &Vec<u8>, tag| attribute(b, tag);
    let expected: BTreeMap<&str, BTreeSet<String>> = BTreeMap::from([
        ("all", matching(&|_| true)),
        (
            "by_patient_id",
            matching(&|b| text(b, tags::PATIENT_ID) == "Covid0000"),
        ),
        (
            "by_name_wildcard",
            matching(&|b| {
                text(b, tags::PATIENT_NAME)
                    .to_lowercase()
                    .starts_with("comp")
            }),
        ),
        (
            "by_date_range",
            matching(&|b| {
                let d = text(b, tags::STUDY_DATE);
                !d.is_empty() && ("20000101"..="20201231").contains(&d.as_str())
            }),
        ),
        (
            "by_modality",
            matching(&|b| text(b, tags::MODALITY) == "DX"),
        ),
        (
            "by_study_uids",
            BTreeSet::from([study(&by_grpc), study(&by_cstore)]),
        ),
    ]);
    let job = json!({
        "url": format!("{}/dicomweb", server.web),
        "pacs_token": PACS_TOKEN,
        "reader_token": RADIOLOGIST_TOKEN,
        "stow_files": stow_files,
        "searches": {
            "all": {"level": "studies"},
            "by_patient_id": {"level": "studies", "params": {"filters": {"PatientID": "Covid0000"}}},
            "by_name_wildcard": {"level": "studies", "params": {"filters": {"PatientName": "comp*"}}},
            "by_date_range": {"level": "studies", "params": {"filters": {"StudyDate": "20000101-20201231"}}},
            "by_modality": {"level": "studies", "params": {"filters": {"ModalitiesInStudy": "DX"}}},
            "by_study_uids": {"level": "studies", "params": {"filters": {"StudyInstanceUID": format!("{},{}", study(&by_grpc), study(&by_cstore))}}},
            "paged": {"level": "studies", "params": {"limit": 2, "offset": 1}},
            "series_of_c_store": {"level": "series", "study": study(&by_cstore)},
            "instances_all_fields": {"level": "instances", "study": study(&by_cstore), "params": {"fields": ["all"]}},
            "with_field": {"level": "studies", "params": {"filters": {"PatientID": "Covid0000"}, "fields": ["PatientAge", "00080060"]}},
        },
    });
    let mut child = Command::new(&python)
        .arg(root().join("tests/python/dicomweb_client_flow.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dicomweb-client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out: Value = serde_json::from_slice(&out.stdout).unwrap();

    // STOW-RS: both stored, then both again as duplicates; no failure either time.
    for response in ["stow_response", "stow_again_response"] {
        let r = &out[response];
        assert!(r.get("00081198").is_none(), "{response}: {r}");
        let referenced: BTreeSet<String> = r["00081199"]["Value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| first(i, "00081155"))
            .collect();
        assert_eq!(referenced, by_stow.iter().map(sop).collect(), "{response}");
    }

    // Every search finds what the files say it should.
    for (name, wanted) in &expected {
        assert_eq!(
            &studies_of(&out["searches"][name]),
            wanted,
            "search {name}: {}",
            out["searches"][name]
        );
    }
    assert_eq!(out["searches"]["paged"].as_array().unwrap().len(), 2);
    let series = &out["searches"]["series_of_c_store"][0];
    assert_eq!(first(series, "00080060"), "CR");
    assert_eq!(
        first(series, "00201209"),
        "1",
        "Number of Series Related Instances"
    );
    let every = &out["searches"]["instances_all_fields"][0];
    assert_eq!(
        first(every, "00100010"),
        "CompressedSamples^RG1",
        "includefield=all returns the patient's name"
    );
    let held_in = dicom_object::from_reader(&by_cstore[128..])
        .unwrap()
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    assert_eq!(first(every, "00083002"), held_in, "held as sent");
    let with_field = &out["searches"]["with_field"][0];
    assert_eq!(
        first(with_field, "00080060"),
        "DX",
        "includefield=Modality at study level"
    );
    let all_studies = &out["searches"]["all"];
    for study in all_studies.as_array().unwrap() {
        assert_eq!(first(study, "00201208"), "1", "one instance each: {study}");
        assert!(first(study, "00081190")
            .ends_with(&format!("/dicomweb/studies/{}", first(study, "0020000D"))));
    }

    // WADO-RS: every instance comes back as the bytes that way in stored.
    let stored_by_cstore = common::backends::catalogued_instances(&server.data)
        .into_iter()
        .find(|(uid, _)| *uid == sop(&by_cstore))
        .map(|(_, sha)| sha)
        .expect("the C-STORE instance is catalogued");
    let mut wanted: BTreeMap<String, String> = BTreeMap::from([
        (sop(&by_grpc), sha256(&by_grpc)),
        (sop(&by_cstore), stored_by_cstore),
    ]);
    for (uid, sha) in out["stow_sent"].as_object().unwrap() {
        wanted.insert(uid.clone(), sha.as_str().unwrap().to_string());
    }
    let retrieved: BTreeMap<String, String> = out["retrieved"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(uid, parts)| {
            assert_eq!(parts.as_array().unwrap().len(), 1, "one part per instance");
            (uid.clone(), parts[0].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(retrieved, wanted, "retrieved bytes equal those stored");
    for (uid, parsed) in out["parsed"].as_object().unwrap() {
        assert_eq!(parsed["SOPInstanceUID"], *uid);
        assert_eq!(parsed["has_pixels"], true);
    }
    // Frames: each instance's frame 1 as held, equal to pydicom's reading of its Pixel Data.
    assert_eq!(out["frames"].as_object().unwrap().len(), 4);
    for (uid, frame) in out["frames"].as_object().unwrap() {
        assert_eq!(frame["equal"], true, "{uid}: {frame}");
        assert!(frame["bytes"].as_u64().unwrap() > 1000, "{uid}: {frame}");
    }
    // Metadata: every instance, its pixel data by the URL of its frames.
    assert_eq!(out["metadata"].as_object().unwrap().len(), 4);
    for (uid, metadata) in out["metadata"].as_object().unwrap() {
        assert_eq!(metadata["as_pydicom"], *uid);
        let uri = metadata["pixel_data"]["BulkDataURI"].as_str().unwrap();
        assert!(
            uri.ends_with(&format!("/instances/{uid}/frames/1")),
            "{uri}"
        );
        assert!(metadata["rows"].as_u64().unwrap() > 0);
    }
    assert_eq!(
        instances_held(&server.web).len(),
        4,
        "duplicates are not second copies"
    );
}

#[test]
fn hostile_store_bodies_get_the_right_status_and_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let web = server.web.clone();
    let good = common::study_copy(
        "sample-dicom/siim_chest_pa_jpeg_baseline.dcm",
        "hostile/good",
    );
    let second = common::study_copy("sample-dicom/nih_dx_implicit_le.dcm", "hostile/second");
    let part = "Content-Type: application/dicom";
    let uid = |bytes: &Vec<u8>| attribute(bytes, dicom_dictionary_std::tags::SOP_INSTANCE_UID);

    // Who may store: a PACS token; not a QA token, not nobody.
    let body = multipart("radassist-test", &[(part, &good)]);
    assert_eq!(stow(&web, QA_TOKEN, &body).0, 403);
    let (status, head, _) = exchange(
        &web,
        "POST",
        "/dicomweb/studies",
        &[("Content-Type", STOW_TYPE)],
        &body,
    );
    assert_eq!(status, 401, "{head}");

    // A boundary the body does not use: nothing in it is read as a part.
    let other = multipart("another-boundary", &[(part, &good)]);
    let (status, head, _) = stow(&web, PACS_TOKEN, &other);
    assert_eq!(status, 400, "{head}");
    assert!(head.contains("boundary"), "{head}");

    // Not DICOM, as a DICOM part and as text: each part refused with Cannot Understand (C000).
    let junk = multipart(
        "radassist-test",
        &[
            (part, b"this is not DICOM"),
            ("Content-Type: text/plain", b"hello"),
        ],
    );
    let (status, head, json) = stow(&web, PACS_TOKEN, &junk);
    assert_eq!(status, 409, "{head}");
    let failed = json["00081198"]["Value"].as_array().unwrap();
    assert_eq!(failed.len(), 2);
    for item in failed {
        assert_eq!(item["00081197"]["Value"][0], 0xC000, "{item}");
    }

    // A good instance, then one cut off mid-part: the first is stored, the request refused.
    let mut truncated = multipart("radassist-test", &[(part, &good), (part, &second)]);
    truncated.truncate(truncated.len() - second.len() / 2);
    let (status, head, _) = stow(&web, PACS_TOKEN, &truncated);
    assert_eq!(status, 400, "{head}");
    assert!(head.contains("part 2"), "{head}");
    assert!(
        instances_held(&web).contains(&uid(&good)),
        "the part before the cut is stored"
    );
    assert!(!instances_held(&web).contains(&uid(&second)));

    // A part declaring 2 GB: refused at once (413), before its bytes are read.
    let huge_part = "Content-Type: application/dicom\r\nContent-Length: 2000000000";
    let mut huge = format!("--radassist-test\r\n{huge_part}\r\n\r\n").into_bytes();
    huge.extend_from_slice(&second[..4096]);
    let started = std::time::Instant::now();
    let (status, head, _) = exchange(
        &web,
        "POST",
        "/dicomweb/studies",
        &[
            ("Content-Type", STOW_TYPE),
            ("Authorization", &format!("Bearer {PACS_TOKEN}")),
            ("Content-Length", "2000000200"),
        ],
        &huge,
    );
    assert_eq!(status, 413, "{head}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "answered without waiting for the body"
    );

    // Not multipart at all, and a metadata-and-bulk-data store: 415.
    let bearer = format!("Bearer {PACS_TOKEN}");
    for content_type in [
        "application/dicom",
        "multipart/related; type=\"application/dicom+json\"; boundary=x",
    ] {
        let (status, head, _) = exchange(
            &web,
            "POST",
            "/dicomweb/studies",
            &[("Content-Type", content_type), ("Authorization", &bearer)],
            &good,
        );
        assert_eq!(status, 415, "{content_type}: {head}");
    }

    // Stored into another study's URL: refused (A900), not stored.
    let into = format!("/dicomweb/studies/{}", common::uid_for("hostile/elsewhere"));
    let (status, head, body) = exchange(
        &web,
        "POST",
        &into,
        &[("Content-Type", STOW_TYPE), ("Authorization", &bearer)],
        &multipart("radassist-test", &[(part, &second)]),
    );
    assert_eq!(status, 409, "{head}");
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["00081198"]["Value"][0]["00081197"]["Value"][0], 0xA900);

    // The good instance and the second, whole, in one request: the first a duplicate, both
    // answered as stored.
    let both = multipart("radassist-test", &[(part, &good), (part, &second)]);
    let (status, head, json) = stow(&web, PACS_TOKEN, &both);
    assert_eq!(status, 200, "{head}");
    assert_eq!(json["00081199"]["Value"].as_array().unwrap().len(), 2);
    assert_eq!(
        instances_held(&web),
        BTreeSet::from([uid(&good), uid(&second)])
    );

    // The same UID with other bytes: a conflict (0111), the stored instance unchanged.
    let good_file = dir.path().join("good.dcm");
    std::fs::write(&good_file, &good).unwrap();
    let changed = common::rewritten(
        good_file.to_str().unwrap(),
        &[(dicom_dictionary_std::tags::PATIENT_AGE, "042Y".into())],
    );
    let (status, head, json) = stow(
        &web,
        PACS_TOKEN,
        &multipart("radassist-test", &[(part, &changed)]),
    );
    assert_eq!(status, 409, "{head}");
    assert_eq!(json["00081198"]["Value"][0]["00081197"]["Value"][0], 0x0111);
    let (status, _, retrieved) = exchange(
        &web,
        "GET",
        &format!(
            "/dicomweb/studies/{}/series/{}/instances/{}",
            attribute(&good, dicom_dictionary_std::tags::STUDY_INSTANCE_UID),
            attribute(&good, dicom_dictionary_std::tags::SERIES_INSTANCE_UID),
            uid(&good)
        ),
        &[("Authorization", &format!("Bearer {RADIOLOGIST_TOKEN}"))],
        b"",
    );
    assert_eq!(status, 200);
    assert!(
        retrieved.windows(good.len()).any(|w| w == good.as_slice()),
        "the stored bytes are unchanged"
    );
}

#[test]
fn searches_and_retrievals_need_a_reader_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let web = server.web.clone();
    let good = common::study_copy("sample-dicom/siim_chest_pa_jpeg_baseline.dcm", "audit/good");
    let part = "Content-Type: application/dicom";
    assert_eq!(
        stow(
            &web,
            PACS_TOKEN,
            &multipart("radassist-test", &[(part, &good)])
        )
        .0,
        200
    );
    let study = attribute(&good, dicom_dictionary_std::tags::STUDY_INSTANCE_UID);

    let get = |path: &str, headers: &[(&str, &str)]| exchange(&web, "GET", path, headers, b"");
    // Nobody, and a PACS token: refused.
    assert_eq!(get("/dicomweb/studies", &[]).0, 401);
    let pacs = format!("Bearer {PACS_TOKEN}");
    assert_eq!(get("/dicomweb/studies", &[("Authorization", &pacs)]).0, 403);
    assert_eq!(
        get(
            "/dicomweb/studies",
            &[("Authorization", "Bearer wrong-token")]
        )
        .0,
        401
    );
    // A radiologist's reading-room session may search and retrieve.
    common::add_web_user(
        &server.config,
        "dr-web",
        "radiologist",
        "a long enough password",
    );
    let cookie = common::web_login(&web, "dr-web", "a long enough password").unwrap();
    let (status, head, body) = get(
        "/dicomweb/studies?PatientName=16d7*",
        &[("Cookie", &cookie)],
    );
    assert_eq!(status, 200, "{head}");
    assert!(head
        .to_lowercase()
        .contains("content-type: application/dicom+json"));
    let answers: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(studies_of(&answers), BTreeSet::from([study.clone()]));
    let (status, head, _) = get(
        &format!("/dicomweb/studies/{study}"),
        &[("Cookie", &cookie)],
    );
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_lowercase()
            .contains("multipart/related; type=\"application/dicom\""),
        "{head}"
    );
    // ... but a session never stores.
    let (status, _, _) = exchange(
        &web,
        "POST",
        "/dicomweb/studies",
        &[("Content-Type", STOW_TYPE), ("Cookie", &cookie)],
        &multipart("radassist-test", &[(part, &good)]),
    );
    assert_eq!(status, 401);
    // A transfer syntax radassist does not hold it in: 406, naming the one it does.
    let (status, head, _) = get(
        &format!("/dicomweb/studies/{study}"),
        &[("Cookie", &cookie), ("Accept", "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1")],
    );
    assert_eq!(status, 406, "{head}");
    assert!(head.contains("1.2.840.10008.1.2.4.50"), "{head}");
    // Bad keys and paths: 400 with the reason; an unknown study: 404.
    let (status, head, _) = get(
        "/dicomweb/studies?StudyDate=2024-01-01",
        &[("Cookie", &cookie)],
    );
    assert_eq!(status, 400, "{head}");
    assert_eq!(
        get("/dicomweb/studies/not..a.uid", &[("Cookie", &cookie)]).0,
        400
    );
    assert_eq!(
        get(
            &format!("/dicomweb/studies/{}", common::uid_for("nowhere")),
            &[("Cookie", &cookie)]
        )
        .0,
        404
    );

    // Every search and retrieval is in the audit log, as its caller's.
    let audit = Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args(["audit", "--config"])
        .arg(&server.config)
        .envs(common::backends::environment())
        .current_dir(root())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&audit.stdout);
    assert!(
        log.contains("dicomweb-search") && log.contains("dr-web"),
        "{log}"
    );
    assert!(
        log.contains("dicomweb-retrieve") && log.contains(&format!("studies/{study}")),
        "{log}"
    );
    assert!(
        log.contains("dicomweb-store") && log.contains("pacs-router"),
        "{log}"
    );
}

/// A QIDO-RS search as a radiologist: its answers.
fn search(web: &str, path: &str) -> Vec<Value> {
    let bearer = format!("Bearer {RADIOLOGIST_TOKEN}");
    let (status, head, body) = exchange(web, "GET", path, &[("Authorization", &bearer)], b"");
    assert_eq!(status, 200, "{path}: {head}");
    serde_json::from_slice::<Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_drafted_study_s_results_are_searched_and_retrieved_with_it() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let film = common::new_patient_study("dicomweb-results", 0);
    let film_modality = attribute(&film, dicom_dictionary_std::tags::MODALITY);
    let (name, state) =
        runtime.block_on(async { common::store_and_settle(&server.channel().await, film).await });
    assert_eq!(state, radassist::grpc::proto::study::State::DraftReady);
    let study = name.trim_start_matches("studies/").to_string();

    // The film's series and the results' (report and measurement report: SR; marks: PR; the
    // summary image), each instance once.
    let wanted_modalities = |answers: &[Value]| -> BTreeSet<String> {
        answers.iter().map(|a| first(a, "00080060")).collect()
    };
    let series = search(&server.web, &format!("/dicomweb/studies/{study}/series"));
    let modalities = wanted_modalities(&series);
    assert!(
        modalities.is_superset(&BTreeSet::from(["SR".to_string(), "PR".to_string()])),
        "{modalities:?}"
    );
    let instances = search(&server.web, &format!("/dicomweb/studies/{study}/instances"));
    assert_eq!(instances.len(), 5, "the film and four results");
    let studies = search(
        &server.web,
        &format!("/dicomweb/studies?StudyInstanceUID={study}"),
    );
    assert_eq!(first(&studies[0], "00201208"), "5");
    let listed: Vec<String> = studies[0]["00080061"]["Value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(
        listed.contains(&"SR".to_string()) && listed.contains(&film_modality),
        "{listed:?}"
    );
    // A key on an instance's series: the SRs only.
    let reports = search(
        &server.web,
        &format!("/dicomweb/studies/{study}/instances?Modality=SR"),
    );
    assert_eq!(reports.len(), 2, "the report and the measurement report");

    // Each result retrieved is its blob as made.
    let bearer = format!("Bearer {RADIOLOGIST_TOKEN}");
    for report in &reports {
        let sop = first(report, "00080018");
        let (status, head, body) = exchange(
            &server.web,
            "GET",
            &format!(
                "/dicomweb/studies/{study}/series/{}/instances/{sop}",
                first(report, "0020000E")
            ),
            &[("Authorization", &bearer)],
            b"",
        );
        assert_eq!(status, 200, "{head}");
        let sha = common::backends::catalogue_value(
            &server.data,
            "SELECT sha256 FROM result_objects WHERE sop_instance_uid = $1",
            &sop,
        )
        .unwrap();
        let blob = common::backends::blob(&server.data, &sha).unwrap();
        assert!(
            body.windows(blob.len()).any(|w| w == blob.as_slice()),
            "{sop} comes back as made"
        );
    }

    // A store catalogued before the archive kept attributes: they are read from the blobs at
    // the first search, kept, and the answers are the same.
    let data = server.data.clone();
    server.kill();
    for table in ["instances", "result_objects"] {
        let cleared = common::backends::catalogue_execute(
            &data,
            &format!("UPDATE {table} SET attributes = '' WHERE study_instance_uid = $1"),
            &study,
        );
        assert!(cleared > 0, "{table}");
    }
    let server = start(dir.path());
    let again = search(&server.web, &format!("/dicomweb/studies/{study}/instances"));
    // The same answers (but for the Retrieve URL: the new server's port).
    let without_url = |answers: &[Value]| -> Vec<Value> {
        answers
            .iter()
            .map(|a| {
                let mut a = a.clone();
                a.as_object_mut().unwrap().remove("00081190");
                a
            })
            .collect()
    };
    assert_eq!(without_url(&again), without_url(&instances));
    let empty = common::backends::catalogue_value(
        &server.data,
        "SELECT CAST(COUNT(*) AS TEXT) FROM result_objects WHERE study_instance_uid = $1 AND attributes = ''",
        &study,
    );
    assert_eq!(empty.as_deref(), Some("0"), "the attributes read are kept");
}

/// Every attribute of `answer` (DICOM JSON) by tag, as its JSON value.
fn by_tag(answer: &Value) -> BTreeMap<String, Value> {
    answer
        .as_object()
        .unwrap()
        .iter()
        .map(|(tag, element)| (tag.clone(), element.clone()))
        .collect()
}

/// The attributes both answers return whose values differ, and those only one returns:
/// (differing, only radassist's, only Orthanc's), URLs left out (each server its own).
fn differences(ours: &Value, theirs: &Value) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (ours, theirs) = (by_tag(ours), by_tag(theirs));
    let mut differing = Vec::new();
    for (tag, value) in &ours {
        if let Some(other) = theirs.get(tag) {
            // URLs differ by server: Retrieve URL, and the pixel data's Bulk Data URI.
            if value != other && tag != "00081190" && tag != "7FE00010" {
                differing.push(format!("{tag}: radassist {value}, Orthanc {other}"));
            }
        }
    }
    let only = |a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>| {
        a.keys().filter(|t| !b.contains_key(*t)).cloned().collect()
    };
    (differing, only(&ours, &theirs), only(&theirs, &ours))
}

/// What radassist returns and Orthanc 1.10's DICOMweb plugin (1.7) does not, and why.
const ONLY_RADASSIST: &[(&str, &str)] = &[
    (
        "00080056",
        "Instance Availability: PS3.18's required study attribute",
    ),
    (
        "00080062",
        "SOP Classes in Study: PS3.18's optional study attribute, computed",
    ),
    (
        "00081030",
        "Study Description: a viewer's study list shows it",
    ),
    (
        "00101010",
        "Patient's Age: kept with the study, as the reading room shows it",
    ),
    ("00080021", "Series Date: kept with the series"),
    ("00080031", "Series Time: kept with the series"),
    (
        "00080070",
        "Manufacturer: kept with the series (a site validates by it)",
    ),
    ("00080080", "Institution Name: kept with the series"),
    (
        "00180015",
        "Body Part Examined: kept with the series (radassist takes chests)",
    ),
    ("00080023", "Content Date: kept with the instance"),
    ("00080033", "Content Time: kept with the instance"),
    (
        "00083002",
        "Available Transfer Syntax UID: the syntax the instance is held in",
    ),
    (
        "00185101",
        "View Position: kept with the instance (PA, AP, LL)",
    ),
    (
        "00280004",
        "Photometric Interpretation: kept with the instance (MONOCHROME1 or 2)",
    ),
    (
        "7FE00010",
        "Pixel Data by its frames' URL, for compressed pixel data too",
    ),
];

/// What Orthanc returns and radassist does not, and why.
const ONLY_ORTHANC: &[(&str, &str)] = &[
    ("00080005", "Specific Character Set: radassist's JSON is UTF-8, values decoded"),
    ("00080020", "Study Date: Orthanc repeats study attributes within a study's series and instances; PS3.18 returns them only outside one"),
    ("00080030", "Study Time: likewise"),
    ("00080050", "Accession Number: likewise"),
    ("00080090", "Referring Physician's Name: likewise"),
    ("00080201", "Timezone Offset From UTC: likewise"),
    ("00100010", "Patient's Name: likewise"),
    ("00100020", "Patient ID: likewise"),
    ("00100030", "Patient's Birth Date: likewise"),
    ("00100040", "Patient's Sex: likewise"),
    ("00200010", "Study ID: likewise"),
    ("00080060", "Modality: Orthanc repeats series attributes within a series' instances; radassist returns them only outside one"),
    ("0008103E", "Series Description: likewise"),
    ("00200011", "Series Number: likewise"),
];

#[test]
fn orthanc_s_dicomweb_and_radassist_answer_alike_for_the_same_instances() {
    if !common::in_own_network(concat!(
        module_path!(),
        "::orthanc_s_dicomweb_and_radassist_answer_alike_for_the_same_instances"
    )) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let orthanc = common::orthanc::Orthanc::start(
        dir.path(),
        json!({
            "DicomPort": common::free_port(),
            "Plugins": [common::orthanc::DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": true, "Root": "/dicom-web/"},
        }),
        vec![],
    );
    let files = [
        ("sample-dicom/nih_dx_implicit_le.dcm", "alike/nih"),
        ("sample-dicom/RG1_J2KI.dcm", "alike/rg1"),
        ("sample-dicom/siim_chest_pa_jpeg_baseline.dcm", "alike/siim"),
        (
            "sample-dicom/orthanc_Issue44_Monochrome1-Jpeg.dcm",
            "alike/orthanc44",
        ),
    ];
    let instances: Vec<Vec<u8>> = files
        .iter()
        .map(|(f, l)| common::study_copy(f, l))
        .collect();
    let parts: Vec<(&str, &[u8])> = instances
        .iter()
        .map(|b| ("Content-Type: application/dicom", b.as_slice()))
        .collect();
    let body = multipart("radassist-test", &parts);
    assert_eq!(stow(&server.web, PACS_TOKEN, &body).0, 200);
    let orthanc_web = format!("http://{}", orthanc.http);
    let (status, head, _) = exchange(
        &orthanc_web,
        "POST",
        "/dicom-web/studies",
        &[("Content-Type", STOW_TYPE)],
        &body,
    );
    assert_eq!(status, 200, "Orthanc's STOW-RS: {head}");

    let bearer = format!("Bearer {RADIOLOGIST_TOKEN}");
    let ask = |path: &str| -> (Vec<Value>, Vec<Value>) {
        let get = |web: &str, prefix: &str, auth: &[(&str, &str)]| -> Vec<Value> {
            let (status, head, body) = exchange(web, "GET", &format!("{prefix}{path}"), auth, b"");
            assert_eq!(status, 200, "{web}{prefix}{path}: {head}");
            serde_json::from_slice::<Value>(&body)
                .unwrap()
                .as_array()
                .unwrap()
                .clone()
        };
        (
            get(&server.web, "/dicomweb", &[("Authorization", &bearer)]),
            get(&orthanc_web, "/dicom-web", &[]),
        )
    };
    // Each level's answers, paired by their UID; every difference printed.
    let mut differing = Vec::new();
    let mut compare = |what: &str, uid_tag: &str, path: &str| {
        let (ours, theirs) = ask(path);
        assert_eq!(ours.len(), theirs.len(), "{what}: as many answers");
        for answer in &ours {
            let uid = first(answer, uid_tag);
            let other = theirs
                .iter()
                .find(|t| first(t, uid_tag) == uid)
                .unwrap_or_else(|| panic!("{what}: Orthanc lacks {uid}"));
            let (differ, only_ours, only_theirs) = differences(answer, other);
            eprintln!("{what} {uid}: only radassist returns {only_ours:?}; only Orthanc returns {only_theirs:?}");
            for tag in &only_ours {
                assert!(
                    ONLY_RADASSIST.iter().any(|(t, _)| t == tag),
                    "{what}: only radassist returns {tag}, unexplained"
                );
            }
            for tag in &only_theirs {
                assert!(
                    ONLY_ORTHANC.iter().any(|(t, _)| t == tag),
                    "{what}: only Orthanc returns {tag}, unexplained"
                );
            }
            for d in differ {
                eprintln!("{what} {uid}: DIFFERS {d}");
                differing.push(format!("{what}: {d}"));
            }
        }
    };
    compare("study", "0020000D", "/studies");
    for instance in &instances {
        let study = attribute(instance, dicom_dictionary_std::tags::STUDY_INSTANCE_UID);
        let series = attribute(instance, dicom_dictionary_std::tags::SERIES_INSTANCE_UID);
        let sop = attribute(instance, dicom_dictionary_std::tags::SOP_INSTANCE_UID);
        compare("series", "0020000E", &format!("/studies/{study}/series"));
        compare(
            "instance",
            "00080018",
            &format!("/studies/{study}/series/{series}/instances"),
        );
        compare(
            "metadata",
            "00080018",
            &format!("/studies/{study}/series/{series}/instances/{sop}/metadata"),
        );
    }
    assert!(
        differing.is_empty(),
        "radassist and Orthanc differ on:\n{}",
        differing.join("\n")
    );
}

#[test]
fn rendered_pictures_show_the_film_as_a_radiologist_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let web = server.web.clone();
    let normal = common::study_copy(
        "sample-dicom/siim_chest_pa_jpeg_baseline.dcm",
        "rendered/normal",
    );
    // The same pixels labelled MONOCHROME1: they must show inverted.
    let inverted = common::study_copy(
        "sample-dicom/siim_fake_monochrome1.dcm",
        "rendered/inverted",
    );
    let part = "Content-Type: application/dicom";
    let body = multipart("radassist-test", &[(part, &normal), (part, &inverted)]);
    assert_eq!(stow(&web, PACS_TOKEN, &body).0, 200);
    let bearer = format!("Bearer {RADIOLOGIST_TOKEN}");
    use dicom_dictionary_std::tags;
    let path = |bytes: &Vec<u8>, what: &str| {
        format!(
            "/dicomweb/studies/{}/series/{}/instances/{}/{what}",
            attribute(bytes, tags::STUDY_INSTANCE_UID),
            attribute(bytes, tags::SERIES_INSTANCE_UID),
            attribute(bytes, tags::SOP_INSTANCE_UID)
        )
    };
    let get = |path: &str, accept: &str| {
        let (status, head, body) = exchange(
            &web,
            "GET",
            path,
            &[("Authorization", &bearer), ("Accept", accept)],
            b"",
        );
        assert_eq!(status, 200, "{path}: {head}");
        (head.to_lowercase(), body)
    };
    let grey = |body: &[u8]| image::load_from_memory(body).unwrap().to_luma8();

    let (head, png) = get(&path(&normal, "rendered?viewport=512,512"), "image/png");
    assert!(head.contains("content-type: image/png"), "{head}");
    std::fs::write(dir.path().join("rendered.png"), &png).unwrap();
    let a = grey(&png);
    assert_eq!(a.width().max(a.height()), 512, "fitted within the viewport");
    let b = grey(&get(&path(&inverted, "rendered?viewport=512,512"), "image/png").1);
    assert_eq!(a.dimensions(), b.dimensions());
    let values = |i: &image::GrayImage| i.pixels().map(|p| f64::from(p.0[0])).collect::<Vec<_>>();
    let (va, vb) = (values(&a), values(&b));
    let mean = va.iter().sum::<f64>() / va.len() as f64;
    let spread = (va.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / va.len() as f64).sqrt();
    assert!(
        spread > 20.0,
        "the film is drawn, not uniform (spread {spread:.1})"
    );
    let off: f64 = va
        .iter()
        .zip(&vb)
        .map(|(x, y)| (x + y - 255.0).abs())
        .sum::<f64>()
        / va.len() as f64;
    assert!(
        off < 2.0,
        "MONOCHROME1 shows inverted (mean |a + b - 255| = {off:.2})"
    );

    // JPEG by default; a narrow window shows another picture; a thumbnail is small.
    let (head, jpeg) = get(&path(&normal, "rendered"), "");
    assert!(
        head.contains("content-type: image/jpeg") && jpeg.starts_with(&[0xFF, 0xD8]),
        "{head}"
    );
    let windowed = grey(
        &get(
            &path(&normal, "rendered?viewport=512,512&window=60,20"),
            "image/png",
        )
        .1,
    );
    assert_ne!(values(&windowed), va, "the window given is applied");
    let thumbnail = grey(
        &get(
            &format!(
                "/dicomweb/studies/{}/thumbnail",
                attribute(&normal, tags::STUDY_INSTANCE_UID)
            ),
            "image/png",
        )
        .1,
    );
    assert!(thumbnail.width().max(thumbnail.height()) <= 256);
    let frame = grey(
        &get(
            &path(&normal, "frames/1/rendered?viewport=512,512"),
            "image/png",
        )
        .1,
    );
    assert_eq!(values(&frame), va);

    // Bad parameters and formats: a reason, not a picture.
    for (query, accept, status) in [
        ("rendered?window=1", "image/png", 400),
        ("rendered", "image/gif", 406),
        ("frames/2/rendered", "image/png", 404),
    ] {
        let (got, head, _) = exchange(
            &web,
            "GET",
            &path(&normal, query),
            &[("Authorization", &bearer), ("Accept", accept)],
            b"",
        );
        assert_eq!(got, status, "{query} {accept}: {head}");
    }
}

#[test]
fn answers_carry_the_public_url_when_the_site_sets_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_configured(
        dir.path(),
        "",
        "[web]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://ra.example.org:8443/radassist/\"\n",
        &[],
    );
    let film = common::study_copy("sample-dicom/nih_dx_implicit_le.dcm", "public-url/film");
    let body = multipart(
        "radassist-test",
        &[("Content-Type: application/dicom", &film)],
    );
    let (status, head, answer) = stow(&server.web, PACS_TOKEN, &body);
    assert_eq!(status, 200, "{head}");
    let public = "https://ra.example.org:8443/radassist/dicomweb/studies/";
    let stored = first(&answer["00081199"]["Value"][0], "00081190");
    assert!(stored.starts_with(public), "{stored}");
    // Whatever Host the client sent.
    let studies = search(&server.web, "/dicomweb/studies");
    let url = first(&studies[0], "00081190");
    assert!(url.starts_with(public), "{url}");
}

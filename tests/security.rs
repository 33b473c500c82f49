//! The findings of the security review, each reproduced against a real server (and dcmtk's
//! storescu for the DICOM listener) and shown fixed: UIDs that could change a link's path,
//! silent connections holding the DICOM listener's slots, the login form as a way to fill the
//! disk or to guess in parallel, stalled HTTP requests, unsafe `next` paths, names in the log,
//! oversized gRPC calls and the login's trust in the Host header.

use crate::common;

use common::{
    add_web_user, rewritten, root, uid_for, web_login, web_request as http, with_token, Server,
    PACS_TOKEN,
};
use dicom_dictionary_std::tags;
use radassist::grpc::proto::ingest_service_client::IngestServiceClient;
use radassist::grpc::proto::{instance_result, GetStudyRequest};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const PEER: &str = "STORESCU";
const PASSWORD: &str = "a long test password";
const SAMPLE: &str = "sample-dicom/derived/siim_chest_pa_devices.dcm";

/// A server with the DICOM listener (storescu may associate) and `more` TOML sections.
fn start(dir: &Path, dicom_keys: &str, more: &str) -> Server {
    Server::start_configured(
        dir,
        "",
        &format!(
            "[dicom]\nlisten = \"127.0.0.1:0\"\nae_title = \"RADASSIST\"\n{dicom_keys}\n\
             [[dicom.peers]]\nae_title = \"{PEER}\"\nhost = \"127.0.0.1\"\nport = 11113\n\n{more}"
        ),
        &[],
    )
}

/// storescu's DIMSE status and error comment lines for one file.
fn storescu(server: &Server, file: &Path) -> (bool, String) {
    let (ok, text) = common::dcmtk(
        "storescu",
        server,
        PEER,
        "RADASSIST",
        &["-d", file.to_str().unwrap()],
    );
    (ok, common::dimse_status(&text))
}

/// `bytes` with its data set's SOP Instance UID set to `uid`, the file meta's left as it was
/// (a sender may put anything in either).
fn sop_instance_uid_in_data_set_only(bytes: &[u8], uid: &str) -> Vec<u8> {
    let mut object = dicom_object::from_reader(&bytes[128..]).unwrap();
    object.put(dicom_core::DataElement::new(
        tags::SOP_INSTANCE_UID,
        dicom_core::VR::UI,
        dicom_core::PrimitiveValue::from(uid),
    ));
    let mut out = Vec::new();
    object.write_all(&mut out).unwrap();
    out
}

/// Finding 1: a StudyInstanceUID of `9.9.9/../<another study's UID>` made the decoy's
/// worklist link open (and claim) the other study. Every UID is now checked at every way in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uids_that_are_not_dicom_uids_are_refused_at_every_way_in() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "", "");
    let channel = server.channel().await;
    let victim = uid_for("security/victim/study");
    let decoy = |label: &str, tag, value: String| {
        let mut values = vec![
            (
                tags::SOP_INSTANCE_UID,
                uid_for(&format!("security/{label}/sop")),
            ),
            (
                tags::SERIES_INSTANCE_UID,
                uid_for(&format!("security/{label}/series")),
            ),
            (
                tags::STUDY_INSTANCE_UID,
                uid_for(&format!("security/{label}/study")),
            ),
            (tags::PATIENT_NAME, "DECOY^PATIENT".to_string()),
        ];
        values.retain(|(t, _)| *t != tag);
        values.push((tag, value));
        rewritten(SAMPLE, &values)
    };
    let victim_bytes = rewritten(
        SAMPLE,
        &[
            (tags::SOP_INSTANCE_UID, uid_for("security/victim/sop")),
            (tags::SERIES_INSTANCE_UID, uid_for("security/victim/series")),
            (tags::STUDY_INSTANCE_UID, victim.clone()),
        ],
    );
    let hostile = [
        decoy(
            "decoy",
            tags::STUDY_INSTANCE_UID,
            format!("9.9.9/../{victim}"),
        ),
        decoy(
            "dots",
            tags::STUDY_INSTANCE_UID,
            "1.2.3/../../../tmp/x".into(),
        ),
        decoy(
            "script",
            tags::SERIES_INSTANCE_UID,
            "<script>alert(1)</script>".into(),
        ),
        decoy("long", tags::STUDY_INSTANCE_UID, "1.".repeat(200) + "1"),
        sop_instance_uid_in_data_set_only(
            &decoy("passwd", tags::PATIENT_ID, "P".into()),
            "../../etc/passwd",
        ),
        decoy("zero", tags::STUDY_INSTANCE_UID, "1.2.03".into()),
    ];
    let mut all = vec![victim_bytes];
    all.extend(hostile.iter().cloned());
    let results = common::store_instances(&channel, &all).await;
    assert_eq!(
        results[0].outcome,
        instance_result::Outcome::Stored as i32,
        "{:?}",
        results[0]
    );
    for result in &results[1..] {
        assert_eq!(
            result.outcome,
            instance_result::Outcome::Rejected as i32,
            "{result:?}"
        );
        assert!(
            result.reason.contains("is not a DICOM UID"),
            "{}",
            result.reason
        );
        assert!(result.reason.len() < 400, "{}", result.reason);
    }
    assert!(
        results[1].reason.starts_with("Study Instance UID"),
        "{}",
        results[1].reason
    );
    assert!(
        results[3].reason.starts_with("Series Instance UID"),
        "{}",
        results[3].reason
    );

    // By C-STORE: 0xC000 (cannot understand), with the reason in the Error Comment.
    let file = dir.path().join("decoy.dcm");
    std::fs::write(&file, &hostile[0]).unwrap();
    let (_, status) = storescu(&server, &file);
    assert!(status.contains("0xc000"), "{status}");
    assert!(
        status.contains("Study Instance UID is not a DICOM UID"),
        "{status}"
    );

    // By gRPC name: refused, quoting at most a short prefix.
    let refused = IngestServiceClient::new(channel.clone())
        .get_study(with_token(
            GetStudyRequest {
                name: format!("studies/9.9.9/../{victim}"),
            },
            PACS_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("not a DICOM UID"),
        "{}",
        refused.message()
    );

    // In the web app: the decoy's path is refused before anything is looked up, the
    // victim's own path is not; the worklist never shows the decoy.
    add_web_user(&server.config, "dr-sec", "radiologist", PASSWORD);
    let cookie = web_login(&server.web, "dr-sec", PASSWORD).unwrap();
    for path in [
        format!("/studies/9.9.9%2F..%2F{victim}"),
        "/studies/..%2F..%2Fetc%2Fpasswd/pixels".to_string(),
        "/qa/studies/%3Cscript%3E".to_string(),
    ] {
        let (status, _, body) = http(&server.web, "GET", &path, &[("Cookie", &cookie)], "");
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("is not a study&#39;s UID"), "{body}");
    }
    let (status, _, page) = http(&server.web, "GET", "/worklist", &[("Cookie", &cookie)], "");
    assert_eq!(status, 200);
    assert!(!page.contains("DECOY"), "{page}");
    let metrics = common::http_get(&server.metrics, "/metrics");
    assert!(
        metrics.contains("radassist_ingest_rejected_total 7"),
        "{metrics}"
    );
}

/// A store written before ingest checked UIDs: its rows are listed by `radassist audit --uids`
/// and shown in the worklist without a link or a claim button.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_uid_from_before_the_check_is_reported_and_never_linked() {
    if !common::onnx_runtime_available()
        || common::backends::selected() != common::backends::Backend::SqliteFolder
    {
        return; // the older store is made by editing SQLite directly
    }
    let dir = tempfile::tempdir().unwrap();
    let victim = uid_for("security/legacy-victim/study");
    let legacy = uid_for("security/legacy/study");
    let bad = format!("9.9.9/../{victim}");
    {
        let server = start(dir.path(), "", "");
        let channel = server.channel().await;
        for (label, study) in [("legacy-victim", &victim), ("legacy", &legacy)] {
            let bytes = rewritten(
                SAMPLE,
                &[
                    (
                        tags::SOP_INSTANCE_UID,
                        uid_for(&format!("security/{label}/sop")),
                    ),
                    (
                        tags::SERIES_INSTANCE_UID,
                        uid_for(&format!("security/{label}/series")),
                    ),
                    (tags::STUDY_INSTANCE_UID, study.clone()),
                    (
                        tags::PATIENT_NAME,
                        if study == &victim {
                            "VICTIM^PATIENT"
                        } else {
                            "DECOY^PATIENT"
                        }
                        .to_string(),
                    ),
                ],
            );
            common::store_and_settle(&channel, bytes).await;
        }
    }
    // As a store from before the check holds it: the second study under a hostile UID.
    {
        let db = rusqlite::Connection::open(dir.path().join("data/radassist.sqlite")).unwrap();
        let tables: Vec<String> = db
            .prepare(
                "SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) c
                 WHERE m.type = 'table' AND c.name = 'study_instance_uid'",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for table in tables {
            db.execute(
                &format!(
                    "UPDATE {table} SET study_instance_uid = ?1 WHERE study_instance_uid = ?2"
                ),
                [&bad, &legacy],
            )
            .unwrap();
        }
    }
    let audit = Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args(["audit", "--uids", "--config"])
        .arg(dir.path().join("radassist.toml"))
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr),
    );
    assert!(audit.status.success(), "{err}");
    assert!(
        out.contains("Study Instance UID") && out.contains("9.9.9/../"),
        "{out}"
    );
    assert!(
        !out.contains(&format!("\"{victim}\"")),
        "the victim's own UID is valid: {out}"
    );
    assert!(
        err.contains("1 stored instance with a UID that is not a DICOM UID"),
        "{err}"
    );

    let server = start(dir.path(), "", "");
    add_web_user(&server.config, "dr-legacy", "radiologist", PASSWORD);
    let cookie = web_login(&server.web, "dr-legacy", PASSWORD).unwrap();
    let (status, _, page) = http(&server.web, "GET", "/worklist", &[("Cookie", &cookie)], "");
    assert_eq!(status, 200);
    assert!(page.contains("DECOY"), "the row is shown: {page}");
    assert!(page.contains("INVALID UID"), "{page}");
    assert!(
        !page.contains("href=\"/studies/9.9.9"),
        "no link to the hostile path: {page}"
    );
    assert!(
        !page.contains("action=\"/studies/9.9.9"),
        "no claim form on it: {page}"
    );
    assert!(
        page.contains(&format!("href=\"/studies/{victim}\"")),
        "{page}"
    );

    // In Chromium: the decoy row opens nothing; the victim's row opens the victim's study.
    let shots = root().join("target/web-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut browser = Command::new(root().join(".radassist/test-venv/bin/python"))
        .arg(root().join("tests/python/decoy_row.py"))
        .arg(&server.web)
        .arg(&shots)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the test venv (scripts/setup) has selenium");
    let facts = serde_json::json!({"radiologist": PASSWORD, "victim": victim});
    writeln!(browser.stdin.take().unwrap(), "{facts}").unwrap();
    let out = browser.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.lines().any(|l| l == "ok"),
        "the browser check failed ({:?}): {said}; see target/web-screenshots/decoy-failure.png",
        out.status
    );
}

/// Finding 2: 16 connections that sent nothing held every association slot. Now a connection
/// takes a slot only once its A-ASSOCIATE-RQ has arrived; silent ones are closed at the RQ
/// deadline, and from one address only the newest few wait.
#[test]
fn silent_connections_do_not_lock_a_sender_out_of_the_dicom_listener() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        "max_associations = 16\nassociate_timeout_seconds = 5\nmax_unassociated_per_address = 8\n",
        "",
    );
    let silent: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(&server.dicom).unwrap())
        .collect();
    let sent = Instant::now();
    let (ok, status) = storescu(&server, &root().join(SAMPLE));
    assert!(ok && status.contains("0x0000"), "{status}");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "storescu was served only after the silent connections' deadline ({:?})",
        sent.elapsed()
    );
    // Every silent connection is closed: the oldest at once (only 8 from one address wait),
    // the rest at the RQ deadline; none is left open.
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut sink = Vec::new();
        assert!(
            s.read_to_end(&mut sink).is_ok(),
            "a silent connection stayed open"
        );
    }
    let metrics = common::http_get(&server.metrics, "/metrics");
    assert!(
        metrics.contains("radassist_dicom_associations_total{outcome=\"silent\"} 20"),
        "{metrics}"
    );
    assert!(!metrics.contains("outcome=\"busy\""), "{metrics}");
}

/// Findings 3, 6, 7 and 9: what cannot be a login costs nothing; `next` must be a path of
/// this site; a name that is no user's stays out of the log; the origin is the listener's.
#[test]
fn the_login_refuses_what_cannot_be_a_login_before_recording_anything() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "", "");
    add_web_user(&server.config, "dr-login", "radiologist", PASSWORD);
    let web = &server.web;
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let audit_lines = || {
        let out = Command::new(env!("CARGO_BIN_EXE_radassist"))
            .args(["audit", "--json", "--config"])
            .arg(&server.config)
            .envs(common::backends::environment())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let before = audit_lines();

    // A 1.5 MB name: refused by the body limit; a 65-character one by the name rule.
    let huge = format!("username={}&password=x", "n".repeat(1_500_000));
    let (status, _, _) = http(web, "POST", "/login", &form, &huge);
    assert_eq!(status, 413);
    let (status, _, body) = http(
        web,
        "POST",
        "/login",
        &form,
        &format!("username={}&password=x", "m".repeat(65)),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("cannot be a login name"), "{body}");
    assert_eq!(audit_lines(), before, "a refused name was recorded");

    // A password typed into the name field: failed, audited without the name, not logged.
    assert_eq!(web_login(web, "Tr0ub4dor-3", PASSWORD).unwrap_err().0, 303);
    assert_eq!(audit_lines(), before + 1);
    // A user's name is logged when the login fails. The server's lines arrive in order, so
    // once this one is here, any line the attempts above wrote is here too.
    assert_eq!(
        web_login(web, "dr-login", "wrong password!").unwrap_err().0,
        303
    );
    assert!(
        server.log.wait_for("dr-login", Duration::from_secs(30)),
        "the failed login of dr-login was not logged"
    );
    for typed in ["nnnnnnnn", "mmmmmmmm", "Tr0ub4dor"] {
        assert!(!server.log.contains(typed), "{typed} reached the log");
    }

    // `next` with a tab or a line break: refused, and no session cookie.
    for next in [
        "/%09/127.0.0.1:9/x",
        "/x%0D%0ASet-Cookie:%20a=1",
        "//evil.example",
        "/%5Cevil",
    ] {
        let (status, head, body) = http(
            web,
            "POST",
            "/login",
            &form,
            &format!("username=dr-login&password=a+long+test+password&next={next}"),
        );
        assert_eq!(status, 400, "{next}: {body}");
        assert!(
            !head.to_lowercase().contains("set-cookie"),
            "{next}: {head}"
        );
    }
    // A good one is followed.
    let (status, head, _) = http(
        web,
        "POST",
        "/login",
        &form,
        "username=dr-login&password=a+long+test+password&next=%2Fworklist%3Fstatus%3Dopen",
    );
    assert_eq!(status, 303);
    assert!(head.contains("location: /worklist?status=open"), "{head}");

    // Origin and Host both another site's (as a DNS-rebinding page sends them): refused.
    let (status, head, _) = http(
        web,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", "http://evil.example"),
            ("Host", "evil.example"),
        ],
        "username=dr-login&password=a+long+test+password",
    );
    assert_eq!(status, 403);
    assert!(!head.to_lowercase().contains("set-cookie"), "{head}");
    // The listener's own origin is accepted.
    let own = web.replace("127.0.0.1", "localhost");
    let (status, head, _) = http(
        web,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", &own),
        ],
        "username=dr-login&password=a+long+test+password",
    );
    assert_eq!(status, 303, "{head}");
}

/// Finding 4: 40 concurrent guesses right after a backoff ended had 15 passwords checked.
/// The attempt is now counted in the same step that checks the backoff.
#[test]
fn concurrent_guesses_after_a_backoff_check_at_most_one_password() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "", "");
    add_web_user(&server.config, "dr-guess", "radiologist", PASSWORD);
    let web = server.web.clone();
    for _ in 0..3 {
        assert_eq!(
            web_login(&web, "dr-guess", "wrong password!")
                .unwrap_err()
                .0,
            303
        );
    }
    let (status, body) = web_login(&web, "dr-guess", "wrong password!").unwrap_err();
    assert_eq!(status, 429, "{body}");
    // The server says how long to wait: past that, the backoff has ended.
    let seconds: u64 = body
        .split("wait ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no wait in {body}"));
    std::thread::sleep(Duration::from_secs(seconds));
    let checked_before = failed_logins(&server);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(40));
    let guesses: Vec<_> = (0..40)
        .map(|i| {
            let (web, barrier) = (web.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                web_login(&web, "dr-guess", &format!("guess number {i:04}"))
                    .unwrap_err()
                    .0
            })
        })
        .collect();
    let statuses: Vec<u16> = guesses.into_iter().map(|g| g.join().unwrap()).collect();
    let checked = statuses.iter().filter(|s| **s == 303).count();
    let waited = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        checked <= 1,
        "{checked} of 40 concurrent guesses were checked: {statuses:?}"
    );
    assert_eq!(checked + waited, 40, "{statuses:?}");
    assert!(failed_logins(&server) - checked_before <= 1.0);
}

fn failed_logins(server: &Server) -> f64 {
    let text = common::http_get(&server.metrics, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("radassist_web_logins_total{outcome=\"failed\"} "))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Finding 5: half-sent headers and a body shorter than its Content-Length held connections
/// open. Both are now closed after `web.request_timeout_seconds`.
#[test]
fn a_half_sent_request_is_closed_after_the_request_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        "",
        "[web]\nlisten = \"127.0.0.1:0\"\nrequest_timeout_seconds = 2\n",
    );
    let address = server.web.trim_start_matches("http://").to_string();
    let closed_within = |mut stream: TcpStream| {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut answer = Vec::new();
        let read = stream.read_to_end(&mut answer);
        assert!(read.is_ok(), "the connection stayed open: {read:?}");
        String::from_utf8_lossy(&answer).to_string()
    };
    // Headers never finished.
    let mut headers = TcpStream::connect(&address).unwrap();
    headers
        .write_all(b"GET /login HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // A body shorter than its Content-Length.
    let mut body = TcpStream::connect(&address).unwrap();
    body.write_all(
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nusername=",
    )
    .unwrap();
    // An idle kept-alive connection after one answered request.
    let mut idle = TcpStream::connect(&address).unwrap();
    idle.write_all(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    closed_within(headers);
    let answer = closed_within(body);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let answer = closed_within(idle);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Finding 8: ingest's single-request RPCs took 20 MB messages and echoed the whole name back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mb_name_is_refused_and_errors_quote_only_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "", "");
    let mut ingest = IngestServiceClient::new(server.channel().await);
    let refused = ingest
        .get_study(with_token(
            GetStudyRequest {
                name: format!("studies/{}", "1".repeat(20 << 20)),
            },
            PACS_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{}",
        refused.message()
    );
    assert!(refused.message().len() < 200, "{}", refused.message());
    // 3 MB (under the limit): refused as no UID, quoting 64 characters of it.
    let refused = ingest
        .get_study(with_token(
            GetStudyRequest {
                name: format!("studies/{}", "9".repeat(3 << 20)),
            },
            PACS_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().len() < 400, "{}", refused.message());
    assert!(
        refused.message().contains("3145736 characters"),
        "{}",
        refused.message()
    );
    // The upload itself still takes instances in chunks of megabytes.
    let results = common::store_instances(
        &server.channel().await,
        &[std::fs::read(root().join(SAMPLE)).unwrap()],
    )
    .await;
    assert_eq!(
        results[0].outcome,
        instance_result::Outcome::Stored as i32,
        "{results:?}"
    );
}

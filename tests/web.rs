//! The web reading room. A real browser (Debian's chromium, driven through chromium-driver by
//! Python selenium: tests/python/reading_room.py) logs in as a radiologist, QA staff and an
//! administrator against a radassist that this test starts and fills with the sample studies,
//! and works a study from the worklist to its signature; the HTTP tests check what a browser
//! does not show: sessions, backoff, CSRF and roles, answered by the server itself.
//!
//! Screenshots go to target/web-screenshots (RADASSIST_SCREENSHOTS to choose another folder).

use crate::common;

use common::{
    add_web_user, rewritten, root, screenshots, uid_for, web_login as login, web_request as http,
    with_token, Server, RADIOLOGIST_TOKEN,
};
use dicom_dictionary_std::tags;
use radassist::grpc::proto::instance_result;
use radassist::grpc::proto::worklist_service_client::WorklistServiceClient;
use radassist::grpc::proto::{GetStudyResultRequest, GetWorkItemRequest, ListStudyResultsRequest};
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A report sentence that would run as script if it were HTML.
const HOSTILE: &str = "<img src=x onerror=window.__xss=1>";
/// A Patient's Name (PN: family^given; '=' would start its ideographic form) likewise.
const HOSTILE_NAME: &str = "<script>alert(1)</script>^<b>Bold</b>";
const PASSWORD: &str = "a long test password";

/// Stores one instance by gRPC, completes its study and waits for its draft; the study UID.
async fn push(server: &Server, bytes: Vec<u8>) -> String {
    let (study, state) = common::store_and_settle(&server.channel().await, bytes).await;
    assert_eq!(
        state,
        radassist::grpc::proto::study::State::DraftReady,
        "{study}"
    );
    study.trim_start_matches("studies/").to_string()
}

/// Stores another view of study `uid` (a new SOP Instance UID from `label`), completes the
/// study and waits for it to settle; the state it settled in.
async fn another_view(
    server: &Server,
    uid: &str,
    label: &str,
) -> radassist::grpc::proto::study::State {
    let view = rewritten(
        "sample-dicom/derived/siim_chest_pa_devices.dcm",
        &[(
            tags::SOP_INSTANCE_UID,
            uid_for(&format!("web/view/{label}")),
        )],
    );
    let (study, state) = common::store_and_settle(&server.channel().await, view).await;
    assert_eq!(study, format!("studies/{uid}"));
    state
}

/// A copy of `path` as a study of its own (new UIDs from `label`), with more `values`.
fn another_study(path: &str, label: &str, values: &[(dicom_core::Tag, &str)]) -> Vec<u8> {
    let mut all = vec![
        (tags::SOP_INSTANCE_UID, uid_for(&format!("{label}/sop"))),
        (tags::STUDY_INSTANCE_UID, uid_for(&format!("{label}/study"))),
        (
            tags::SERIES_INSTANCE_UID,
            uid_for(&format!("{label}/series")),
        ),
    ];
    all.extend(values.iter().map(|(t, v)| (*t, v.to_string())));
    rewritten(path, &all)
}

/// Starts a server whose only findings come from the devices (no findings pack), so that
/// exactly the films with a misplaced tube are critical.
fn start(dir: &std::path::Path) -> Server {
    Server::start_configured(dir, "", "[analysis]\nfindings = \"\"\n", &[])
}

/// The CSRF token a page carries in its `csrf-token` meta element.
fn csrf_token(page: &str) -> String {
    page.split("name=\"csrf-token\" content=\"")
        .nth(1)
        .expect("the page carries a CSRF token")
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_radiologist_reads_and_signs_in_a_real_browser_and_qa_sees_it() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    add_web_user(&server.config, "dr-web", "radiologist", PASSWORD);
    add_web_user(&server.config, "qa-web", "qa", PASSWORD);
    add_web_user(&server.config, "it-web", "admin", PASSWORD);
    let read = |p: &str| std::fs::read(root().join(p)).unwrap();
    // The prior first: it is the current study's prior when that is analysed.
    push(
        &server,
        read("sample-dicom/derived/siim_chest_pa_prior.dcm"),
    )
    .await;
    let current = push(
        &server,
        read("sample-dicom/derived/siim_chest_pa_devices.dcm"),
    )
    .await;
    let critical = push(
        &server,
        read("sample-dicom/derived/siim_chest_pa_critical.dcm"),
    )
    .await;
    push(
        &server,
        another_study(
            "sample-dicom/derived/siim_chest_pa_devices.dcm",
            "web/hostile",
            &[
                (tags::PATIENT_NAME, HOSTILE_NAME),
                (tags::PATIENT_ID, "RA-HOSTILE"),
            ],
        ),
    )
    .await;
    let late = another_study(
        "sample-dicom/derived/siim_chest_pa_critical.dcm",
        "web/late-critical",
        &[(tags::PATIENT_ID, "RA-LATE")],
    );
    let late_uid = uid_for("web/late-critical/study");

    let mut browser = Command::new(root().join(".radassist/test-venv/bin/python"))
        .arg(root().join("tests/python/reading_room.py"))
        .arg(&server.web)
        .arg(screenshots())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the test venv (scripts/setup) has selenium");
    let mut stdin = browser.stdin.take().unwrap();
    let facts = serde_json::json!({
        "radiologist": PASSWORD, "qa": PASSWORD, "admin": PASSWORD,
        "current": current, "critical": critical, "late_critical": late_uid,
    });
    writeln!(stdin, "{facts}").unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = browser.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            eprintln!("[browser] {line}");
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut first_image_ms = None;
    let mut ok = false;
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if line == "ready-for-critical" {
            assert_eq!(push(&server, late.clone()).await, late_uid);
            writeln!(stdin, "go").unwrap();
        } else if line == "ready-for-new-draft" {
            // Another view of the claimed, edited current study.
            use radassist::grpc::proto::study::State;
            assert_eq!(
                another_view(&server, &current, "claimed").await,
                State::DraftReady
            );
            writeln!(stdin, "go").unwrap();
        } else if line == "ready-for-late-image" {
            // Another view of the signed current study.
            use radassist::grpc::proto::study::State;
            assert_eq!(
                another_view(&server, &current, "signed").await,
                State::Signed
            );
            writeln!(stdin, "go").unwrap();
        } else if let Some(ms) = line.strip_prefix("first-image-ms ") {
            first_image_ms = Some(ms.to_string());
        } else if line == "ok" {
            ok = true;
        }
    }
    let status = browser.wait().unwrap();
    assert!(ok && status.success(), "the browser session failed ({status:?}); see its output and target/web-screenshots/failure.png");
    eprintln!(
        "first image on screen after {} ms",
        first_image_ms.unwrap_or_default()
    );

    // What the browser did is what the service holds.
    let item = WorklistServiceClient::new(server.channel().await)
        .get_work_item(with_token(
            GetWorkItemRequest {
                name: format!("workItems/{current}"),
            },
            RADIOLOGIST_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    let read = item.final_read.expect("signed in the browser");
    assert_eq!(read.radiologist, "dr-web");
    assert!(read.text.contains(HOSTILE), "{}", read.text);
    assert_eq!(
        (read.amendment, read.amendment_reason.as_str()),
        (1, "addendum after review")
    );
    assert!(read.devices.iter().any(|d| d.agrees), "{:?}", read.devices);
    // The signed and the amended SR the browser's signatures made are valid objects.
    let mut worklist = WorklistServiceClient::new(server.channel().await);
    let made = worklist
        .list_study_results(with_token(
            ListStudyResultsRequest {
                name: format!("workItems/{current}"),
            },
            RADIOLOGIST_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner()
        .results;
    for kind in ["final", "amended"] {
        let result = made.iter().rfind(|r| r.kind == kind).expect(kind);
        let file = worklist
            .get_study_result(with_token(
                GetStudyResultRequest {
                    name: format!("workItems/{current}"),
                    sop_instance_uid: result.sop_instance_uid.clone(),
                },
                RADIOLOGIST_TOKEN,
            ))
            .await
            .unwrap()
            .into_inner();
        let path = dir.path().join(format!("{kind}.dcm"));
        std::fs::write(&path, &file.dicom).unwrap();
        let (errors, _) = common::dciodvfy(&path);
        assert!(errors.is_empty(), "{kind}: {errors:#?}");
        assert!(common::dsrdump(&path).contains("Verification Flag   : VERIFIED"));
    }
    let audit = Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args(["audit", "--json", "--config"])
        .arg(&server.config)
        .output()
        .unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout);
    for action in [
        "login failed",
        "login",
        "web: view study",
        "web: view image",
        "web: sign",
        "web: amend",
        "web: download result",
        "web: QA",
    ] {
        assert!(
            audit.contains(&format!("\"action\":\"{action}\"")),
            "no {action:?} in the audit log"
        );
    }
}

#[test]
fn sessions_backoff_csrf_and_roles_are_the_servers_own() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    add_web_user(&server.config, "dr-http", "radiologist", PASSWORD);
    add_web_user(&server.config, "qa-http", "qa", PASSWORD);
    let web = &server.web;

    // Pages need a login; the login page itself is served with a strict policy.
    let (status, head, _) = http(web, "GET", "/worklist", &[], "");
    assert_eq!(status, 303);
    assert!(head.contains("location: /login?next=/worklist"), "{head}");
    let (status, head, _) = http(web, "GET", "/login", &[], "");
    assert_eq!(status, 200);
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    assert!(!head.contains("unsafe-inline"), "{head}");

    // A cross-site login form is refused, whatever its password.
    let (status, _, _) = http(
        web,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", "https://evil.example"),
        ],
        "username=dr-http&password=a+long+test+password",
    );
    assert_eq!(status, 403);

    // Cookies: HttpOnly and SameSite=Strict.
    let (_, head, _) = http(
        web,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "username=dr-http&password=a+long+test+password",
    );
    assert!(
        head.contains("HttpOnly") && head.contains("SameSite=Strict"),
        "{head}"
    );

    // Roles: the server refuses the URLs, not only the menu.
    let radiologist = login(web, "dr-http", PASSWORD).unwrap();
    let qa = login(web, "qa-http", PASSWORD).unwrap();
    for path in ["/qa", "/qa/export.csv", "/admin"] {
        let (status, _, body) = http(web, "GET", path, &[("Cookie", &radiologist)], "");
        assert_eq!(status, 403, "{path}: {body}");
    }
    for path in ["/worklist", "/worklist/rows", "/events", "/admin"] {
        let (status, _, _) = http(web, "GET", path, &[("Cookie", &qa)], "");
        assert_eq!(status, 403, "{path}");
    }
    let (status, _, body) = http(
        web,
        "GET",
        "/qa?observation=Nonsense",
        &[("Cookie", &qa)],
        "",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not one of the 14 observations"), "{body}");
    let (status, head, body) = http(web, "GET", "/qa/export.csv", &[("Cookie", &qa)], "");
    assert_eq!(status, 200);
    assert!(
        head.contains("text/csv") && body.starts_with("study_instance_uid,"),
        "{body}"
    );

    // CSRF: a state-changing request without the session's token is refused, with a reason.
    let (status, head, _) = http(web, "POST", "/logout", &[("Cookie", &radiologist)], "");
    assert_eq!(status, 403);
    assert!(
        head.contains("x-error-message: the request carried no valid CSRF token"),
        "{head}"
    );
    let (status, _, _) = http(
        web,
        "POST",
        "/logout",
        &[
            ("Cookie", &radiologist),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        "csrf=forged",
    );
    assert_eq!(status, 403);
    // ... and still logged in.
    let (status, _, page) = http(web, "GET", "/worklist", &[("Cookie", &radiologist)], "");
    assert_eq!(status, 200);
    let csrf = csrf_token(&page);
    // With the token, logout ends the session.
    let (status, _, _) = http(
        web,
        "POST",
        "/logout",
        &[("Cookie", &radiologist), ("x-csrf-token", &csrf)],
        "",
    );
    assert_eq!(status, 303);
    let (status, _, _) = http(web, "GET", "/worklist", &[("Cookie", &radiologist)], "");
    assert_eq!(status, 303, "the session outlived its logout");

    // Backoff: after three failures in a row a name must wait, even with the right password.
    for _ in 0..3 {
        assert_eq!(
            login(web, "qa-http", "wrong password here").unwrap_err().0,
            303
        );
    }
    let (status, body) = login(web, "qa-http", PASSWORD).unwrap_err();
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("wait"), "{body}");

    // A disabled person's sessions end.
    let out = Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args(["users", "disable", "qa-http", "--config"])
        .arg(&server.config)
        .output()
        .unwrap();
    assert!(out.status.success());
    let (status, _, _) = http(web, "GET", "/qa", &[("Cookie", &qa)], "");
    assert_eq!(status, 303, "a disabled person's session still works");

    // Metrics: each route's latency by status, logins by outcome, the app serving.
    let metrics = common::http_get(&server.metrics, "/metrics");
    for line in [
        "radassist_web_request_duration_seconds_count{route=\"/worklist\",status=\"303\"}",
        "radassist_web_logins_total{outcome=\"failed\"} 3",
        "radassist_web_logins_total{outcome=\"backoff\"} 1",
        "radassist_web_serving 1",
    ] {
        assert!(metrics.contains(line), "no {line} in {metrics}");
    }

    // The command line refuses short passwords and odd names, saying why.
    let mut child = Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args([
            "users",
            "add",
            "dr-short",
            "--role",
            "radiologist",
            "--password-stdin",
            "--config",
        ])
        .arg(&server.config)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "short").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least 12"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args([
            "users",
            "add",
            "<script>",
            "--role",
            "qa",
            "--password-stdin",
            "--config",
        ])
        .arg(&server.config)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be a login name"));
}

/// With the service's certificate configured, the web app speaks only HTTPS, and its session
/// cookie is Secure.
#[test]
fn the_web_app_serves_https_with_the_services_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = common::certificate(dir.path(), "web", &["localhost", "127.0.0.1"]);
    let server = Server::start_configured(
        dir.path(),
        &format!("tls_cert = {cert:?}\ntls_key = {key:?}"),
        "",
        &[],
    );
    assert!(
        server.web.starts_with("https://127.0.0.1:"),
        "{}",
        server.web
    );
    add_web_user(&server.config, "dr-tls", "radiologist", PASSWORD);
    let port = server.web.rsplit(':').next().unwrap();
    let url = format!("https://localhost:{port}/login");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let out = Command::new("curl")
        .args(["-sS", "-i", "--cacert"])
        .arg(&cert)
        .args([
            "--resolve",
            &resolve,
            "--data",
            "username=dr-tls&password=a+long+test+password",
            &url,
        ])
        .output()
        .expect("curl (scripts/setup) is installed");
    let response = String::from_utf8_lossy(&out.stdout);
    assert!(
        response.starts_with("HTTP/1.1 303"),
        "{response}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cookie = response
        .lines()
        .find(|l| l.to_lowercase().starts_with("set-cookie:"))
        .unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    // Plain HTTP to the same port gets no page.
    let plain = Command::new("curl")
        .args(["-sS", "-m", "10", &format!("http://127.0.0.1:{port}/login")])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains("<form"),
        "plain HTTP was served"
    );
}

/// An admin finds a failed job with its reason and queues it again; the worker takes it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sees_a_failed_job_with_its_reason_and_retries_it() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    add_web_user(&server.config, "it-http", "admin", PASSWORD);
    // Two frames: stored (ingest takes it), but no analysis can read it.
    let bytes = std::fs::read(root().join("sample-dicom/derived/CR-MONO1-10-chest_TWO_FRAMES.dcm"))
        .unwrap();
    let channel = server.channel().await;
    let results = common::store_instances(&channel, &[bytes]).await;
    assert_eq!(
        results[0].outcome,
        instance_result::Outcome::Stored as i32,
        "{results:?}"
    );
    let study = results[0].study.clone();
    let uid = study.trim_start_matches("studies/").to_string();
    let state = common::complete_and_wait(&channel, &study).await;
    assert_eq!(state, radassist::grpc::proto::study::State::Failed);

    let web = server.web.clone();
    let admin = login(&web, "it-http", PASSWORD).unwrap();
    let (status, _, page) = http(&web, "GET", "/admin", &[("Cookie", &admin)], "");
    assert_eq!(status, 200);
    let jobs = page
        .split("id=\"jobs\"")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert!(
        jobs.contains(&uid) && jobs.contains("failed") && jobs.contains("frame"),
        "{jobs}"
    );
    let csrf = csrf_token(&page);
    let (status, _, body) = http(
        &web,
        "POST",
        &format!("/admin/jobs/{uid}/retry"),
        &[
            ("Cookie", &admin),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &format!("csrf={csrf}"),
    );
    assert_eq!(status, 303, "{body}");
    // Taken again by a worker, and failed again for the same reason.
    assert_eq!(
        common::watch_until_settled(&channel, &study).await,
        radassist::grpc::proto::study::State::Failed
    );
    let (_, _, page) = http(&web, "GET", "/admin", &[("Cookie", &admin)], "");
    let audit = page.split("id=\"audit\"").nth(1).unwrap();
    assert!(
        audit.contains("web: retry job"),
        "the retry is not in the audit log"
    );
    // A job that is not failed cannot be retried: the reason says so.
    let (status, head, _) = http(
        &web,
        "POST",
        "/admin/jobs/1.2.3.4/retry",
        &[("Cookie", &admin), ("x-csrf-token", &csrf)],
        "",
    );
    assert_eq!(status, 409, "{head}");
    assert!(head.contains("only a failed job can be retried"), "{head}");
}

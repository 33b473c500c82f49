//! The OHIF viewer beside the reading room, in a real browser: OHIF 3.13 (the npm package
//! `@ohif/app` that scripts/setup unpacks into .radassist/ohif), served by radassist at
//! /viewer/ and reading its DICOMweb with the reading room's session, driven through Debian's
//! chromium by Python selenium (tests/python/ohif_viewer.py). And DICOMweb's CORS, for the
//! origins a site names.
//!
//! Screenshots go to target/web-screenshots (RADASSIST_SCREENSHOTS to choose another folder).

use crate::common::{self, add_web_user, root, screenshots, Server, RADIOLOGIST_TOKEN};

use std::io::Write;
use std::process::{Command, Stdio};

const PASSWORD: &str = "a long test password";
const OTHER_ORIGIN: &str = "https://viewer.example.org";

fn start(dir: &std::path::Path) -> Server {
    let viewer = root().join(".radassist/ohif");
    assert!(
        viewer.join("index.html").exists(),
        "the OHIF viewer is not in .radassist/ohif: run scripts/setup"
    );
    Server::start_configured(
        dir,
        "",
        &format!(
            "[web]\nlisten = \"127.0.0.1:0\"\nviewer = {:?}\ndicomweb_cors_origins = [\"{OTHER_ORIGIN}\"]\n",
            viewer.display().to_string()
        ),
        &[],
    )
}

/// The ETT-to-carina distance `radassist analyze` finds on the film, as the viewer shows it
/// ("45.0 mm").
fn ett_distance(film: &str) -> String {
    let analysis = common::analyze_json(&[film]);
    let ett = analysis["current"]["placement"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == "endotracheal_tube")
        .expect("the sample has an endotracheal tube")
        .clone();
    let mm = ett["measurements"][0]["value"].as_f64().unwrap();
    format!("{mm:.1} mm")
}

#[test]
fn a_radiologist_opens_the_study_in_ohif_and_sees_the_tube_measured_and_qa_is_refused() {
    if !common::onnx_runtime_available() {
        return;
    }
    let film = "sample-dicom/derived/siim_chest_pa_devices.dcm";
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    add_web_user(&server.config, "dr-ohif", "radiologist", PASSWORD);
    add_web_user(&server.config, "qa-ohif", "qa", PASSWORD);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let bytes = std::fs::read(root().join(film)).unwrap();
    let (name, state) =
        runtime.block_on(async { common::store_and_settle(&server.channel().await, bytes).await });
    assert_eq!(state, radassist::grpc::proto::study::State::DraftReady);
    let study = name.trim_start_matches("studies/").to_string();

    let shots = screenshots();
    let mut browser = Command::new(root().join(".radassist/test-venv/bin/python"))
        .arg(root().join("tests/python/ohif_viewer.py"))
        .arg(&server.web)
        .arg(&study)
        .arg(&shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the test venv (scripts/setup) has selenium");
    let people = serde_json::json!({
        "radiologist": ["dr-ohif", PASSWORD], "qa": ["qa-ohif", PASSWORD],
    });
    writeln!(browser.stdin.take().unwrap(), "{people}").unwrap();
    let out = browser.wait_with_output().unwrap();
    assert!(out.status.success(), "the browser session failed");
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    eprintln!("{seen:#}");
    assert!(
        seen.get("timeout").is_none(),
        "the viewer did not get there: {seen:#}; see {}/ohif-failure.png",
        shots.display()
    );
    assert_eq!(
        seen["link"],
        format!("{}/viewer/viewer?StudyInstanceUIDs={study}", server.web)
    );
    // The film drawn, not a blank or uniform viewport; the results' series listed beside it
    // (report, measurements, marks, summary).
    assert!(seen["film_spread"].as_f64().unwrap() > 10.0, "{seen:#}");
    for series in ["1", "9001", "9002", "9003", "9004"] {
        assert!(
            seen["series"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == series),
            "series {series} not listed: {seen:#}"
        );
    }
    // The measurement panel lists the ETT-to-carina distance radassist measured, on the film.
    let distance = ett_distance(film);
    let rows = seen["measurements"].as_array().unwrap();
    let ett = rows
        .iter()
        .find(|r| r["title"] == "Endotracheal tube")
        .unwrap_or_else(|| panic!("no Endotracheal tube row in the measurement panel: {seen:#}"));
    assert!(
        ett["details"].as_str().unwrap().contains(&distance),
        "the panel says {ett} where radassist measured {distance}"
    );
    assert!(seen["measured_film_spread"].as_f64().unwrap() > 10.0);
    assert!(seen["summary_spread"].as_f64().unwrap() > 10.0);
    assert_eq!(
        seen["policy_violations"].as_array().unwrap().len(),
        0,
        "the viewer's Content-Security-Policy refused something it needs: {seen:#}"
    );
    // QA staff may not open the viewer (it is the radiologists' reading tool).
    let qa_page = seen["qa_page"].as_str().unwrap();
    assert!(
        qa_page.contains("this page is for radiologist or admin"),
        "{qa_page}"
    );
    assert_eq!(seen["qa_config_status"], 403);
}

/// The value of header `name` in a response's `head`.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// What a browser asks before a cross-origin call (a CORS preflight) from a page of `origin`:
/// the answer's head.
fn preflight(web: &str, origin: &str) -> String {
    let (_, head, _) = common::web_request(
        web,
        "OPTIONS",
        "/dicomweb/studies",
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
        "",
    );
    head
}

#[test]
fn the_viewer_needs_a_session_and_dicomweb_answers_only_the_named_origins_across_sites() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let get = |path: &str, headers: &[(&str, &str)]| {
        common::web_request(&server.web, "GET", path, headers, "")
    };
    // No session: the login page, and back to the same viewer page after it.
    let (status, head, _) = get("/viewer/viewer?StudyInstanceUIDs=1.2.3", &[]);
    assert_eq!(status, 303);
    assert_eq!(
        header(&head, "location").unwrap(),
        "/login?next=/viewer/viewer%3FStudyInstanceUIDs%3D1.2.3"
    );
    for path in ["/viewer/app-config.js", "/viewer/index.html", "/viewer"] {
        assert_eq!(get(path, &[]).0, 303, "{path}");
    }
    // A radiologist's session: the app's page moved to /viewer/ under its own policy, its
    // scripts loading their chunks from /viewer/, and nothing outside its folder.
    add_web_user(&server.config, "dr-files", "radiologist", PASSWORD);
    add_web_user(&server.config, "qa-files", "qa", PASSWORD);
    let cookie = common::web_login(&server.web, "dr-files", PASSWORD).unwrap();
    let session = [("Cookie", cookie.as_str())];
    let (status, head, page) = get("/viewer/viewer?StudyInstanceUIDs=1.2.3", &session);
    assert_eq!(status, 200);
    assert!(page.contains(r#"window.PUBLIC_URL="/viewer/""#));
    let policy = header(&head, "content-security-policy").unwrap();
    assert!(
        policy.contains("'wasm-unsafe-eval'") && policy.contains("'sha256-"),
        "{policy}"
    );
    assert!(!policy.contains("'unsafe-eval'"), "{policy}");
    let bundle = std::fs::read_dir(root().join(".radassist/ohif"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .find(|n| n.starts_with("app.bundle.") && n.ends_with(".js"))
        .unwrap();
    let (status, _, script) = get(&format!("/viewer/{bundle}"), &session);
    assert_eq!(status, 200);
    assert!(script.contains(r#"__webpack_require__.p = "/viewer/""#));
    for escape in [
        "/viewer/../../Cargo.toml",
        "/viewer/..%2f..%2fCargo.toml",
        "/viewer/%2e%2e/%2e%2e/Cargo.toml",
    ] {
        let (_, _, body) = get(escape, &session);
        assert!(
            !body.contains("[package]"),
            "{escape} left the viewer's folder"
        );
    }
    assert_eq!(get("/viewer/sw.js", &session).0, 404, "no service worker");
    let (status, head, _) = get("/viewer/", &session);
    assert_eq!(
        (status, header(&head, "location").as_deref()),
        (308, Some("/viewer"))
    );
    let qa_cookie = common::web_login(&server.web, "qa-files", PASSWORD).unwrap();
    let (status, _, body) = get("/viewer/app-config.js", &[("Cookie", qa_cookie.as_str())]);
    assert_eq!(status, 403);
    assert!(
        body.contains("this page is for radiologist or admin"),
        "{body}"
    );

    // A named origin's preflight is answered for it, without credentials; another's is not.
    let named = preflight(&server.web, OTHER_ORIGIN);
    assert_eq!(
        header(&named, "access-control-allow-origin").as_deref(),
        Some(OTHER_ORIGIN)
    );
    let allowed = header(&named, "access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    assert!(header(&named, "access-control-allow-credentials").is_none());
    let other = preflight(&server.web, "https://evil.example");
    assert!(header(&other, "access-control-allow-origin").is_none());
    // A search from the named origin with a token: answered, readable by that page.
    let bearer = format!("Bearer {RADIOLOGIST_TOKEN}");
    let (status, head, _) = get(
        "/dicomweb/studies",
        &[("Origin", OTHER_ORIGIN), ("Authorization", &bearer)],
    );
    assert_eq!(status, 200);
    assert_eq!(
        header(&head, "access-control-allow-origin").as_deref(),
        Some(OTHER_ORIGIN)
    );
    // The reading room itself sends no CORS headers to anyone.
    let (_, head, _) = get("/login", &[("Origin", OTHER_ORIGIN)]);
    assert!(header(&head, "access-control-allow-origin").is_none());
}

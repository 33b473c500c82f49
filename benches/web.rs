//! The reading room's speed, as a radiologist meets it: the worklist page of a store holding
//! 10,000 work items (the server's own time, from its Server-Timing header, and the whole
//! request on loopback), and the reading room's first image on screen, measured in headless
//! Chromium with the Performance API (navigation start to the image drawn). Run (after
//! scripts/setup, which installs chromium and selenium):
//!
//!     cargo bench --bench web
//!
//! Targets: worklist under 300 ms of server time on 2 cores; first image under 1 s.
//!
//! The 10,000 items are copies of one real work item (the sample study, analysed by the
//! server) under new UIDs, with critical flags, priorities and ages spread, written into the
//! stopped server's SQLite store: analysing 10,000 studies would take hours and measure the
//! models, not the worklist.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{add_web_user, root, web_login, web_request, Server};
use std::process::Command;
use std::time::Instant;

const ITEMS: usize = 10_000;
const REQUESTS: usize = 30;
const PASSWORD: &str = "a long bench password";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    // One real work item: the sample study with its prior, analysed by the server.
    let server = Server::start(dir.path());
    let channel = server.channel().await;
    let mut study = String::new();
    for file in ["siim_chest_pa_prior.dcm", "siim_chest_pa_devices.dcm"] {
        let bytes = std::fs::read(root().join("sample-dicom/derived").join(file)).unwrap();
        let results = common::store_instances(&channel, &[bytes]).await;
        study = results[0].study.clone();
        common::complete_and_wait(&channel, &study).await;
    }
    let uid = study.trim_start_matches("studies/").to_string();
    let (config, data) = (server.config.clone(), server.data.clone());
    server.terminate();

    // 10,000 copies of it, one critical in 20, priorities and ages spread.
    let db = rusqlite::Connection::open(data.join("radassist.sqlite")).unwrap();
    db.execute_batch("BEGIN").unwrap();
    for i in 0..ITEMS {
        let copy = format!("2.25.{}", 10_000_000 + i);
        db.execute(
            "INSERT INTO studies (study_instance_uid, patient_id, accession_number, study_date, state, last_instance_at, failure_reason)
             SELECT ?2, patient_id || '-' || ?3, accession_number || ?3, study_date, state, last_instance_at, '' FROM studies WHERE study_instance_uid = ?1",
            rusqlite::params![uid, copy, i as i64],
        )
        .unwrap();
        db.execute(
            "INSERT INTO work_items (study_instance_uid, status, critical, priority, claimed_by, created_at, content, analysis_json, model_version, signed_read, signed_at, comparison, report_json)
             SELECT ?2, status, ?3, ?4, NULL, created_at - ?5, content, analysis_json, model_version, NULL, NULL, NULL, report_json FROM work_items WHERE study_instance_uid = ?1",
            rusqlite::params![uid, copy, (i % 20 == 0) as i64, (i % 7) as i64, (i as i64) * 60_000],
        )
        .unwrap();
    }
    db.execute_batch("COMMIT").unwrap();
    drop(db);
    add_web_user(&config, "bench-radiologist", "radiologist", PASSWORD);

    let server = Server::start(dir.path());
    let web = server.web.clone();
    let cookie = web_login(&web, "bench-radiologist", PASSWORD).expect("logged in");
    let mut server_ms = vec![];
    let mut total_ms = vec![];
    let mut rows = 0;
    for _ in 0..REQUESTS {
        let started = Instant::now();
        let (status, head, body) =
            web_request(&web, "GET", "/worklist", &[("Cookie", &cookie)], "");
        let took = started.elapsed();
        assert_eq!(status, 200, "{head}");
        let timing = head
            .lines()
            .find_map(|l| l.strip_prefix("server-timing: app;dur="))
            .expect("a Server-Timing header");
        server_ms.push(timing.trim().parse::<f64>().unwrap());
        total_ms.push(took.as_secs_f64() * 1000.0);
        rows = body.matches("<tr class=\"item").count();
    }
    server_ms.sort_by(f64::total_cmp);
    total_ms.sort_by(f64::total_cmp);
    println!("worklist of {ITEMS} work items (first page: {rows} rows), {REQUESTS} requests");
    println!(
        "  server time  p50 {:.1} ms  p95 {:.1} ms  max {:.1} ms   (target: under 300 ms)",
        percentile(&server_ms, 0.5),
        percentile(&server_ms, 0.95),
        server_ms[server_ms.len() - 1]
    );
    println!(
        "  whole request on loopback  p50 {:.1} ms  p95 {:.1} ms",
        percentile(&total_ms, 0.5),
        percentile(&total_ms, 0.95)
    );

    // The first image on screen, in Chromium.
    let out = Command::new(root().join(".radassist/test-venv/bin/python"))
        .arg(root().join("tests/python/first_image.py"))
        .args([
            &web,
            "bench-radiologist",
            PASSWORD,
            &format!("/studies/{uid}"),
            "5",
        ])
        .output()
        .expect("the test venv (scripts/setup) has selenium");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
}

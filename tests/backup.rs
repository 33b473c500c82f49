//! Backup and restore of the embedded store, as a site runs them: `radassist backup` while
//! the server takes instances, `radassist restore` into a new data folder, and everything
//! acknowledged before the backup began, and every signed read, found there byte for byte.

use crate::common;

use common::{root, uid_for, with_token, Server, RADIOLOGIST_TOKEN};
use radassist::grpc::proto::worklist_service_client::WorklistServiceClient;
use radassist::grpc::proto::{
    instance_result::Outcome, ClaimWorkItemRequest, SubmitFinalReadRequest,
};
use radassist::store::{Outbox, SqliteStore, Store, StudyStore, Worklist};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

const FILM: &str = "sample-dicom/derived/siim_chest_pa_devices.dcm";
/// The pusher stops after this many instances at most.
const MAX_PUSHED: usize = 200;

fn radassist(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args(args)
        .arg("--config")
        .arg(config)
        .current_dir(root())
        .output()
        .unwrap()
}

fn study(label: &str) -> Vec<u8> {
    common::study_copy(FILM, label)
}

async fn sign(server: &Server, uid: &str, text: &str) {
    let mut worklist = WorklistServiceClient::new(server.channel().await);
    let name = format!("workItems/{uid}");
    worklist
        .claim_work_item(with_token(
            ClaimWorkItemRequest { name: name.clone() },
            RADIOLOGIST_TOKEN,
        ))
        .await
        .unwrap();
    worklist
        .submit_final_read(with_token(
            SubmitFinalReadRequest {
                name,
                text: text.into(),
                ..Default::default()
            },
            RADIOLOGIST_TOKEN,
        ))
        .await
        .unwrap();
}

#[test]
fn a_backup_taken_under_load_restores_every_acknowledged_instance_and_signed_read() {
    if !common::onnx_runtime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    let server = Server::start(&live);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // A signed study.
    let signed_uid = runtime.block_on(async {
        let (study, _) =
            common::store_and_settle(&server.channel().await, study("backup/signed")).await;
        let uid = study.trim_start_matches("studies/").to_string();
        sign(
            &server,
            &uid,
            "Findings: tubes in place. Impression: no acute disease.",
        )
        .await;
        uid
    });

    // A PACS keeps sending (bounded) while the backup runs; each acknowledgement is reported.
    let stop = Arc::new(AtomicBool::new(false));
    // (the study's label, its bytes)
    let (acked, acknowledgements) = mpsc::channel::<(String, Vec<u8>)>();
    let pusher = {
        let (stop, address) = (stop.clone(), server.address.clone());
        // The channel's own task runs on this test's runtime; the pusher drives its calls.
        let channel = runtime.block_on(server.channel());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                for i in 0..MAX_PUSHED {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let bytes = study(&format!("backup/load/{i}"));
                    let results =
                        common::store_instances(&channel, std::slice::from_ref(&bytes)).await;
                    assert_eq!(
                        results[0].outcome,
                        Outcome::Stored as i32,
                        "{address}: {results:?}"
                    );
                    let label = format!("backup/load/{i}");
                    if acked.send((label, bytes)).is_err() {
                        break;
                    }
                }
            })
        })
    };
    // Once some are acknowledged, the backup starts; what was acknowledged by then must be in it.
    let mut before = Vec::new();
    while before.len() < 20 {
        before.push(
            acknowledgements
                .recv_timeout(Duration::from_secs(60))
                .unwrap(),
        );
    }
    before.extend(acknowledgements.try_iter());
    let backup = dir.path().join("backup");
    let out = radassist(&["backup", backup.to_str().unwrap()], &server.config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    let during: usize = acknowledgements.try_iter().count();
    stop.store(true, Ordering::SeqCst);
    pusher.join().unwrap();
    eprintln!(
        "{} instances acknowledged before the backup began, {during} while it ran",
        before.len()
    );

    // Restored into a new data folder, read by a store of its own.
    let restored = dir.path().join("restored");
    let config = dir.path().join("restored.toml");
    std::fs::write(&config, format!("[service]\ndata_dir = {:?}\n", restored)).unwrap();
    let out = radassist(&["restore", backup.to_str().unwrap()], &config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = SqliteStore::open(&restored).unwrap();
    for (label, bytes) in &before {
        let instances = store
            .study_instances(&uid_for(&format!("{label}/study")))
            .unwrap();
        let sop = uid_for(&format!("{label}/sop"));
        let (_, sha256) = instances
            .iter()
            .find(|(s, _)| *s == sop)
            .unwrap_or_else(|| {
                panic!("acknowledged instance {label} is not in the restored store")
            });
        assert!(
            store.blobs().get(sha256).unwrap() == *bytes,
            "{label} restored with other bytes"
        );
    }
    let item = store.work_item(&signed_uid).unwrap();
    assert_eq!(
        item.final_read.map(|r| r.text).as_deref(),
        Some("Findings: tubes in place. Impression: no acute disease.")
    );
    assert!(!store.results_of(&signed_uid).unwrap().is_empty());

    // Restoring over a store, or a damaged backup, is refused and writes nothing.
    let out = radassist(&["restore", backup.to_str().unwrap()], &config);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a catalogue"));
    let blob = std::fs::read_dir(backup.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().len() == 2)
        .flat_map(|p| std::fs::read_dir(p).unwrap().map(|e| e.unwrap().path()))
        .next()
        .unwrap();
    let mut content = std::fs::read(&blob).unwrap();
    content[200] ^= 0xff;
    std::fs::write(&blob, content).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    let config = dir.path().join("elsewhere.toml");
    std::fs::write(&config, format!("[service]\ndata_dir = {:?}\n", elsewhere)).unwrap();
    let out = radassist(&["restore", backup.to_str().unwrap()], &config);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is damaged"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!elsewhere.join("radassist.sqlite").exists());
}

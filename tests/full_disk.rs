//! A full data disk, as a site meets it: the data folder on a small ext4 (a loop-mounted image
//! the test makes, in a mount namespace of its own) that fills up during ingest. Every instance
//! is either acknowledged and stored, or refused with "retry later" (gRPC RETRY_LATER, C-STORE
//! A700, STOW-RS 503 with Failure Reason A700), never REJECTED; nothing half-written is catalogued; once space is freed ingest
//! resumes by itself; and the reserve (`min_free_bytes`) refuses new instances before the disk
//! is full, with health saying why.

use crate::common;

use common::{uid_for, Server};
use radassist::grpc::proto::instance_result::Outcome;
use radassist::store::{BlobStore, FolderBlobStore, SqliteStore, Store, StudyStore};
use sha2::Digest;
use std::path::Path;
use std::process::Command;

const FILM: &str = "sample-dicom/derived/siim_chest_pa_devices.dcm";
/// The small disk; a filler file takes part of it, to be freed later.
const DISK_MB: u64 = 64;
const FILLER_MB: usize = 12;
/// At most this many instances are sent to fill it.
const MAX_SENT: usize = 120;
const DICOM: &str = "[dicom]\nlisten = \"127.0.0.1:0\"\n\n\
    [[dicom.peers]]\nae_title = \"STORESCU\"\nhost = \"127.0.0.1\"\nport = 11113\n";

fn study(label: &str) -> Vec<u8> {
    common::study_copy(FILM, label)
}

fn run(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh ext4 of DISK_MB mounted at `at` (this test runs in its own mount namespace).
fn small_disk(image: &Path, at: &Path) {
    std::fs::create_dir_all(at).unwrap();
    run(Command::new("truncate")
        .args(["-s", &format!("{DISK_MB}M")])
        .arg(image));
    // No blocks reserved for root (the server runs as root in the tests): full is full.
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-m", "0"])
        .arg(image));
    run(Command::new("mount")
        .args(["-o", "loop"])
        .arg(image)
        .arg(at));
}

fn outcome(result: &radassist::grpc::proto::InstanceResult) -> Outcome {
    Outcome::try_from(result.outcome).unwrap()
}

#[test]
fn a_full_disk_answers_retry_later_loses_nothing_and_ingest_resumes() {
    if !common::onnx_runtime_available() {
        return;
    }
    if !common::in_own_mounts(concat!(
        module_path!(),
        "::a_full_disk_answers_retry_later_loses_nothing_and_ingest_resumes"
    )) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    small_disk(&dir.path().join("disk.img"), &disk);
    let filler = disk.join("filler");
    std::fs::write(&filler, vec![1u8; FILLER_MB << 20]).unwrap();
    // No reserve: the disk really fills. Studies are not completed, so nothing else writes.
    let server = Server::start_configured(
        &disk,
        "min_free_bytes = 0\nstable_study_seconds = 3600",
        DICOM,
        &[],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let channel = runtime.block_on(server.channel());
    // Eight streams at once, an instance each: the last ones race for the last space, so a
    // write may meet the full disk itself, not only the check before it.
    let (mut stored, mut refused) = (Vec::new(), Vec::new());
    for batch in 0..MAX_SENT / 8 {
        let labels: Vec<String> = (0..8).map(|i| format!("full-disk/{batch}/{i}")).collect();
        let instances: Vec<Vec<u8>> = labels.iter().map(|l| study(l)).collect();
        let results: Vec<_> = runtime.block_on(async {
            let sending: Vec<_> = instances
                .iter()
                .map(|instance| {
                    let (channel, instance) = (channel.clone(), instance.clone());
                    tokio::spawn(async move {
                        common::store_instances(&channel, &[instance])
                            .await
                            .remove(0)
                    })
                })
                .collect();
            let mut results = Vec::new();
            for answer in sending {
                results.push(answer.await.unwrap());
            }
            results
        });
        for ((label, bytes), result) in labels.into_iter().zip(instances).zip(&results) {
            match outcome(result) {
                Outcome::Stored => stored.push((label, bytes)),
                Outcome::RetryLater => {
                    assert!(result.reason.contains("send it again"), "{result:?}");
                    refused.push((label, bytes));
                }
                other => panic!("{label}: {other:?}, not STORED or RETRY_LATER: {result:?}"),
            }
        }
        if refused.len() >= 3 {
            break;
        }
    }
    let met_the_disk = server.log.contains("storing an instance");
    eprintln!(
        "{} stored, then the disk was full ({} refused; a write met the full disk itself: \
         {met_the_disk})",
        stored.len(),
        refused.len()
    );
    assert!(
        !stored.is_empty() && refused.len() >= 3,
        "the disk never filled"
    );
    assert!(
        common::metric(&server.metrics, "radassist_ingest_retry_later_total")
            >= refused.len() as f64
    );

    // C-STORE while it is full: A700 (out of resources), with the reason.
    let cstore = dir.path().join("cstore.dcm");
    std::fs::write(&cstore, study("full-disk/cstore")).unwrap();
    let (_, text) = common::dcmtk(
        "storescu",
        &server,
        "STORESCU",
        "RADASSIST",
        &["-d", cstore.to_str().unwrap()],
    );
    let status = common::dimse_status(&text);
    assert!(status.contains("0xa700"), "{status}");

    // STOW-RS while it is full: 503 with Retry-After, the instance failed with A700 (out of
    // resources: send it again), not refused for good.
    let stowed = study("full-disk/stow");
    let (status, head, answer) = common::dicomweb::stow(
        &server.web,
        common::PACS_TOKEN,
        &common::dicomweb::multipart(
            "radassist-test",
            &[("Content-Type: application/dicom", &stowed)],
        ),
    );
    assert_eq!(status, 503, "{head}");
    assert!(head.to_lowercase().contains("retry-after: "), "{head}");
    assert_eq!(
        answer["00081198"]["Value"][0]["00081197"]["Value"][0], 0xA700,
        "{answer}"
    );
    refused.push(("full-disk/stow".to_string(), stowed));

    // Space freed: the refused instances go in when sent again.
    std::fs::remove_file(&filler).unwrap();
    for (label, bytes) in &refused {
        let result = runtime.block_on(common::store_instances(
            &channel,
            std::slice::from_ref(bytes),
        ));
        assert_eq!(outcome(&result[0]), Outcome::Stored, "{label}: {result:?}");
    }
    stored.extend(refused);
    drop(channel);
    server.kill();

    // Every acknowledged instance is there byte for byte; nothing else is catalogued; the
    // catalogue is sound.
    let store = SqliteStore::open(&disk.join("data")).unwrap();
    for (label, bytes) in &stored {
        let instances = store
            .study_instances(&uid_for(&format!("{label}/study")))
            .unwrap();
        assert_eq!(instances.len(), 1, "{label}");
        assert!(
            store.blobs().get(&instances[0].1).unwrap() == *bytes,
            "{label}"
        );
    }
    let db = rusqlite::Connection::open(disk.join("data/radassist.sqlite")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let catalogued: i64 = db
        .query_row("SELECT count(*) FROM instances", [], |r| r.get(0))
        .unwrap();
    assert_eq!(catalogued as usize, stored.len());
    drop((db, store));

    // The reserve: with more kept free than the disk has, a new instance is refused for now
    // before anything is written, and health says why (IngestService only).
    let server = Server::start_configured(&disk, "min_free_bytes = 1000000000000", DICOM, &[]);
    let result = runtime.block_on(async {
        let channel = server.channel().await;
        common::store_instances(&channel, &[study("full-disk/reserve")]).await
    });
    assert_eq!(outcome(&result[0]), Outcome::RetryLater, "{result:?}");
    assert!(result[0].reason.contains("min_free_bytes"), "{result:?}");
    assert!(
        server.log.wait_for(
            "health NOT_SERVING (radassist.v1.IngestService)",
            std::time::Duration::from_secs(30)
        ),
        "health does not say ingest is refused"
    );
    server.kill();

    // A write that meets the full disk itself fails, and leaves nothing of itself behind.
    {
        use std::io::Write;
        let mut fill = std::fs::File::create(disk.join("fill")).unwrap();
        let chunk = vec![7u8; 1 << 20];
        while fill.write_all(&chunk).is_ok() {}
        let _ = fill.sync_all();
    }
    let blobs = FolderBlobStore::open(&disk.join("data"), false).unwrap();
    let bytes = study("full-disk/enospc");
    let sha256 = radassist::store::hex(&sha2::Sha256::digest(&bytes));
    let error = blobs.put(&sha256, &bytes).unwrap_err();
    eprintln!("a blob written to the full disk: {error}");
    assert!(!blobs.exists(&sha256).unwrap());
    let leftovers = std::fs::read_dir(disk.join("data/blobs/tmp"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "a half-written blob was left in blobs/tmp");
    let _ = Command::new("umount").arg(&disk).status();
}

//! The durability workload shared by the power-cut tests (`tests/power_cut.rs`) and the bench
//! that cuts and kills a thousand times (`benches/durability.rs`): a server whose every way in
//! and out is busy (a gRPC pusher and a C-STORE pusher sending new studies, workers drafting
//! them, a radiologist signing them, the outbox sending every result object to dcmtk's storescp
//! playing the PACS), a ledger of what the server acknowledged, and the checks after each
//! restart: every acknowledged instance there byte for byte, every signed read there, the
//! catalogue sound and in agreement with the blob folder; at the end, with the outbox drained,
//! every result received by the PACS exactly once and no study drafted twice.
//!
//! Everything runs inside the caller's network namespace (storescp binds every address).

use super::{chunks, rewritten, uid_for, with_token, Server, PACS_TOKEN, RADIOLOGIST_TOKEN};
use dicom_dictionary_std::tags;
use radassist::grpc::proto::ingest_service_client::IngestServiceClient;
use radassist::grpc::proto::worklist_service_client::WorklistServiceClient;
use radassist::grpc::proto::*;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The film every study is made from (128 kB, so a thousand rounds fit in memory).
pub const FILM: &str = "sample-dicom/siim_chest_pa_jpeg_baseline.dcm";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// dcmtk's storescp as the PACS radassist sends its results to; it counts what it stores.
pub struct ResultsPeer {
    child: Child,
    pub port: u16,
    /// One entry per instance stored, repeats included: its file name
    /// (`<modality>.<SOP Instance UID>`) and whether its association then ended in an
    /// orderly release (radassist had the answer: it releases only after recording the result
    /// sent) rather than an abort (radassist was killed while waiting for it, or before it
    /// could record it).
    stored: Arc<Mutex<Vec<(String, bool)>>>,
}

/// storescp's log, line by line, as receipts (see [`ResultsPeer::stored`]).
fn receipts_in(lines: impl Iterator<Item = String>, stored: &Mutex<Vec<(String, bool)>>) {
    let mut open: Option<String> = None;
    for line in lines {
        let ended = |open: &mut Option<String>, released| {
            if let Some(name) = open.take() {
                stored.lock().unwrap().push((name, released));
            }
        };
        if let Some(path) = line.strip_prefix("I: storing DICOM file: ") {
            ended(&mut open, false);
            open = Some(
                path.trim()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            );
        } else if line.contains("Association Release") {
            ended(&mut open, true);
        } else if line.contains("Association Aborted") || line.contains("Association Received") {
            ended(&mut open, false);
        }
    }
}

/// How a PACS received one result: each copy stored, in order, and whether radassist had
/// the answer to it (true) or was cut off first (false).
pub type Copies = Vec<bool>;

impl ResultsPeer {
    pub fn start(out: &Path) -> ResultsPeer {
        let port = super::free_port();
        let stored = Arc::new(Mutex::new(Vec::new()));
        let kept = stored.clone();
        let child = super::storescp(port, out, &[], move |log| receipts_in(log, &kept));
        ResultsPeer {
            child,
            port,
            stored,
        }
    }

    /// Each SOP Instance UID stored, with its copies.
    pub fn receipts(&self) -> BTreeMap<String, Copies> {
        let mut receipts: BTreeMap<String, Copies> = BTreeMap::new();
        for (name, answered) in self.stored.lock().unwrap().iter() {
            let uid = name.split_once('.').map_or(name.as_str(), |(_, uid)| uid);
            receipts.entry(uid.to_string()).or_default().push(*answered);
        }
        receipts
    }
}

impl Drop for ResultsPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's configuration: SQLite and the blob folder in `data`, studies sent by C-STORE
/// complete after a second of quiet, every result object to the PACS.
pub fn start_server(dir: &Path, peer: &ResultsPeer) -> Server {
    Server::start_configured(
        dir,
        "stable_study_seconds = 1",
        &format!(
            "[store]\nbackend = \"sqlite\"\n\n[dicom]\nlisten = \"127.0.0.1:0\"\n\n\
             [[dicom.peers]]\nae_title = \"STORESCU\"\nhost = \"127.0.0.1\"\nport = 11113\n\n\
             [[dicom.peers]]\nae_title = \"PACS\"\nhost = \"127.0.0.1\"\nport = {}\nsend_results = true\n",
            peer.port
        ),
        &[],
    )
}

/// What the server acknowledged, across every crash.
#[derive(Default)]
pub struct Ledger {
    /// SOP Instance UID → SHA-256 of the bytes acknowledged.
    pub acknowledged: Mutex<BTreeMap<String, String>>,
    /// Study Instance UIDs whose final read the server accepted.
    pub signed: Mutex<BTreeSet<String>>,
    /// Instances refused or not answered (the kill came first): never counted as lost.
    pub unanswered: AtomicU64,
}

impl Ledger {
    /// The server acknowledged `bytes` as `sop`.
    fn acknowledged(&self, sop: String, bytes: &[u8]) {
        let sha = hex(&Sha256::digest(bytes));
        self.acknowledged.lock().unwrap().insert(sop, sha);
    }

    fn not_answered(&self) {
        self.unanswered.fetch_add(1, Ordering::Relaxed);
    }
}

/// A new study of one instance, different for every `label`.
pub fn instance(label: &str) -> (String, String, Vec<u8>) {
    let (sop, study) = (
        uid_for(&format!("{label}/sop")),
        uid_for(&format!("{label}/study")),
    );
    let bytes = rewritten(
        FILM,
        &[
            (tags::SOP_INSTANCE_UID, sop.clone()),
            (tags::STUDY_INSTANCE_UID, study.clone()),
            (
                tags::SERIES_INSTANCE_UID,
                uid_for(&format!("{label}/series")),
            ),
            (tags::PATIENT_ID, format!("DUR-{label}")),
        ],
    );
    (sop, study, bytes)
}

/// A channel to the server, unless it is dead already (the kill may come first).
async fn connect(server: String) -> Option<tonic::transport::Channel> {
    let endpoint = tonic::transport::Channel::from_shared(server).unwrap();
    endpoint.connect().await.ok()
}

/// How often each pusher sends a new study: about what the workers can draft.
const PACE: Duration = Duration::from_millis(600);

/// gRPC: a new study every [`PACE`], each completed once stored, until the server stops
/// answering (or `limit` studies).
async fn push_grpc(server: String, label: String, ledger: Arc<Ledger>, limit: usize) {
    let Some(channel) = connect(server).await else {
        return;
    };
    let mut ingest = IngestServiceClient::new(channel);
    let mut tick = tokio::time::interval(PACE);
    for n in 0..limit {
        tick.tick().await;
        let (sop, _, bytes) = instance(&format!("{label}-g{n}"));
        let stored = ingest
            .store_instances(with_token(
                tokio_stream::iter(chunks(0, &bytes)),
                PACS_TOKEN,
            ))
            .await;
        let Ok(response) = stored else {
            ledger.not_answered();
            return;
        };
        let result = &response.into_inner().results[0];
        let outcome = instance_result::Outcome::try_from(result.outcome);
        if matches!(
            outcome,
            Ok(instance_result::Outcome::Stored | instance_result::Outcome::Duplicate)
        ) {
            ledger.acknowledged(sop, &bytes);
        } else {
            ledger.not_answered();
        }
        let completed = ingest
            .complete_study(with_token(
                CompleteStudyRequest {
                    name: result.study.clone(),
                },
                PACS_TOKEN,
            ))
            .await;
        if completed.is_err() {
            return;
        }
    }
}

/// C-STORE (dcmtk's storescu, one association per study, a new study every [`PACE`]):
/// acknowledged when storescu reports the Success status.
fn push_dimse(dicom: &str, label: &str, scratch: &Path, ledger: &Ledger, limit: usize) {
    let (host, port) = dicom.rsplit_once(':').unwrap();
    for n in 0..limit {
        if n > 0 {
            std::thread::sleep(PACE);
        }
        let (sop, _, bytes) = instance(&format!("{label}-d{n}"));
        let file = scratch.join(format!("{label}-d{n}.dcm"));
        std::fs::write(&file, &bytes).unwrap();
        let out = Command::new("storescu")
            .args(["-v", "-to", "10", "-ta", "10", "-td", "10"])
            .args(["-aet", "STORESCU", "-aec", "RADASSIST", host, port])
            .arg(&file)
            .output()
            .expect("storescu (dcmtk) is installed by scripts/setup");
        let _ = std::fs::remove_file(&file);
        let log = String::from_utf8_lossy(&out.stderr);
        if log.contains("Received Store Response (Success)") {
            ledger.acknowledged(sop, &bytes);
        } else {
            ledger.not_answered();
            return;
        }
    }
}

/// The radiologist: claims and signs every drafted study, until the server stops answering.
async fn sign(server: String, ledger: Arc<Ledger>, until: Instant) {
    let Some(channel) = connect(server).await else {
        return;
    };
    let mut worklist = WorklistServiceClient::new(channel);
    let mut tick = tokio::time::interval(Duration::from_millis(150));
    while Instant::now() < until {
        tick.tick().await;
        let Ok(items) = worklist
            .list_work_items(with_token(
                ListWorkItemsRequest {
                    page_size: 20,
                    ..Default::default()
                },
                RADIOLOGIST_TOKEN,
            ))
            .await
        else {
            return;
        };
        for item in items.into_inner().work_items {
            let name = item.name.clone();
            let claimed = worklist
                .claim_work_item(with_token(
                    ClaimWorkItemRequest { name: name.clone() },
                    RADIOLOGIST_TOKEN,
                ))
                .await;
            if let Err(status) = claimed {
                if status.code() == tonic::Code::Unavailable {
                    return;
                }
                continue;
            }
            let signed = worklist
                .submit_final_read(with_token(
                    SubmitFinalReadRequest {
                        name,
                        text: "Findings: endotracheal tube above the carina. Impression: no acute disease."
                            .into(),
                        ..Default::default()
                    },
                    RADIOLOGIST_TOKEN,
                ))
                .await;
            match signed {
                Ok(_) => {
                    let uid = item.study.trim_start_matches("studies/").to_string();
                    ledger.signed.lock().unwrap().insert(uid);
                }
                Err(status) if status.code() == tonic::Code::Unavailable => return,
                Err(_) => {}
            }
        }
    }
}

/// Keeps every way in and out busy until the server dies (the caller kills it) or `within`
/// passes; each loop is bounded in count too.
async fn keep_busy(server: &Server, label: &str, ledger: &Arc<Ledger>, scratch: &Path) {
    const LIMIT: usize = 100;
    let until = Instant::now() + Duration::from_secs(120);
    let grpc = tokio::spawn(push_grpc(
        server.url(),
        label.to_string(),
        ledger.clone(),
        LIMIT,
    ));
    let signer = tokio::spawn(sign(server.url(), ledger.clone(), until));
    let (dicom, label, scratch, kept) = (
        server.dicom.clone(),
        label.to_string(),
        scratch.to_path_buf(),
        ledger.clone(),
    );
    let dimse =
        tokio::task::spawn_blocking(move || push_dimse(&dicom, &label, &scratch, &kept, LIMIT));
    let _ = tokio::join!(grpc, signer, dimse);
}

/// One round: everything busy until, `after` from now, the server is killed (kill -9); then
/// waits for it to be gone.
pub fn busy_until_killed(
    runtime: &tokio::runtime::Runtime,
    server: Server,
    label: &str,
    ledger: &Arc<Ledger>,
    scratch: &Path,
    after: Duration,
) {
    let pid = server.child.id() as i32;
    let killer = std::thread::spawn(move || {
        std::thread::sleep(after);
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    runtime.block_on(keep_busy(&server, label, ledger, scratch));
    killer.join().unwrap();
    server.kill();
}

/// What one check found lost or wrong (all must be zero).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Losses {
    pub acknowledged_lost: usize,
    pub signed_reads_lost: usize,
    pub catalogue_unsound: usize,
    pub blobs_missing_or_wrong: usize,
}

impl Losses {
    pub fn add(&mut self, other: Losses) {
        self.acknowledged_lost += other.acknowledged_lost;
        self.signed_reads_lost += other.signed_reads_lost;
        self.catalogue_unsound += other.catalogue_unsound;
        self.blobs_missing_or_wrong += other.blobs_missing_or_wrong;
    }
}

fn catalogue(data: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        data.join("radassist.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
}

/// The checks after a restart, beside the running server; each loss is printed.
pub fn check(data: &Path, ledger: &Ledger) -> Losses {
    let db = catalogue(data);
    let mut losses = Losses::default();
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    if integrity != "ok" {
        eprintln!("LOST: integrity_check says {integrity}");
        losses.catalogue_unsound += 1;
    }
    // The workload's store is SQLite and a folder, whatever backend the other tests use.
    let folder = super::backends::Backend::SqliteFolder;
    let catalogued: BTreeMap<String, String> =
        super::backends::catalogued_instances_of(folder, data)
            .into_iter()
            .collect();
    for (sop, sha) in ledger.acknowledged.lock().unwrap().iter() {
        if catalogued.get(sop) != Some(sha) {
            eprintln!("LOST: acknowledged instance {sop} is not catalogued as {sha}");
            losses.acknowledged_lost += 1;
        }
    }
    // The catalogue and the blob folder agree: every catalogued blob is there, whole.
    for (sop, sha) in &catalogued {
        let found = super::backends::blob_of(folder, data, sha).map(|b| hex(&Sha256::digest(&b)));
        if found.as_ref() != Some(sha) {
            eprintln!("LOST: {sop}'s blob {sha} is {found:?}");
            losses.blobs_missing_or_wrong += 1;
        }
    }
    for study in ledger.signed.lock().unwrap().iter() {
        let status: Option<String> = rusqlite::OptionalExtension::optional(db.query_row(
            "SELECT status FROM work_items WHERE study_instance_uid = ?1 \
             AND signed_read LIKE '%endotracheal tube above the carina%'",
            [study],
            |r| r.get(0),
        ))
        .unwrap();
        if status.as_deref() != Some("SIGNED") {
            eprintln!("LOST: the signed read of {study} is {status:?}");
            losses.signed_reads_lost += 1;
        }
    }
    losses
}

/// Blob files no catalogue row names (a crash between the blob's write and its row; never
/// acknowledged, harmless, counted).
pub fn uncatalogued_blobs(data: &Path) -> usize {
    let db = catalogue(data);
    let mut named: BTreeSet<String> = BTreeSet::new();
    for table in [
        "SELECT sha256 FROM instances",
        "SELECT sha256 FROM outbox",
        "SELECT sha256 FROM result_objects",
        "SELECT sha256 FROM prior_reports",
    ] {
        let mut q = db.prepare(table).unwrap();
        let rows = q.query_map([], |r| r.get::<_, String>(0)).unwrap();
        named.extend(rows.map_while(Result::ok));
    }
    let mut orphans = 0;
    for prefix in std::fs::read_dir(data.join("blobs")).unwrap().flatten() {
        if prefix.file_name() == "tmp" {
            continue;
        }
        for blob in std::fs::read_dir(prefix.path()).unwrap().flatten() {
            if !named.contains(&*blob.file_name().to_string_lossy()) {
                orphans += 1;
            }
        }
    }
    orphans
}

/// What the end of a run found, with the outbox drained and the queue empty.
#[derive(Debug, Default, Clone, Copy)]
pub struct Delivery {
    /// Result objects the server made for the PACS.
    pub results: usize,
    /// Stored again after radassist had the PACS's answer to an earlier copy (the outbox
    /// forgot it had sent it): must be zero.
    pub sent_twice: usize,
    /// Stored again after an attempt the crash cut off before radassist had recorded the
    /// answer (it cannot know whether the PACS stored it; a PACS takes the same SOP Instance
    /// UID as the same instance).
    pub again_after_cut_off_attempt: usize,
    /// Never stored.
    pub never_sent: usize,
    /// Studies whose job completed more than once.
    pub drafted_twice: usize,
}

impl Delivery {
    pub fn add(&mut self, other: Delivery) {
        self.results += other.results;
        self.sent_twice += other.sent_twice;
        self.again_after_cut_off_attempt += other.again_after_cut_off_attempt;
        self.never_sent += other.never_sent;
        self.drafted_twice += other.drafted_twice;
    }
}

/// Waits (at most `within`) for the queue to empty and the outbox to drain, then compares what
/// the PACS stored with what the server made for it.
pub fn settle_and_count(server: &Server, peer: &ResultsPeer, within: Duration) -> Delivery {
    let deadline = Instant::now() + within;
    let db = || catalogue(&server.data);
    let count = |sql: &str| -> i64 { db().query_row(sql, [], |r| r.get(0)).unwrap() };
    loop {
        let busy = count("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')")
            + count("SELECT COUNT(*) FROM outbox WHERE state = 'pending'");
        if busy == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{busy} jobs and results still waiting after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let made: Vec<String> = db()
        .prepare("SELECT sop_instance_uid FROM outbox WHERE peer = 'PACS'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // storescp logs a file's name before it has written it, and the sender's commit follows the
    // response: give the last receipt a moment to be logged.
    let receipts_deadline = Instant::now() + Duration::from_secs(10);
    let mut receipts = peer.receipts();
    while made.iter().any(|uid| !receipts.contains_key(uid)) && Instant::now() < receipts_deadline {
        std::thread::sleep(Duration::from_millis(100));
        receipts = peer.receipts();
    }
    let mut delivery = Delivery {
        results: made.len(),
        drafted_twice: count("SELECT COUNT(*) FROM jobs WHERE completions > 1") as usize,
        ..Default::default()
    };
    for uid in &made {
        let copies = receipts.get(uid).map_or(&[][..], Vec::as_slice);
        match copies {
            [] => {
                eprintln!("NEVER SENT: {uid}");
                delivery.never_sent += 1;
            }
            [_] => {}
            [earlier @ .., _] if earlier.iter().any(|answered| *answered) => {
                eprintln!("SENT TWICE: {uid} {copies:?}");
                delivery.sent_twice += 1;
            }
            _ => {
                eprintln!("AGAIN AFTER A CUT-OFF ATTEMPT: {uid} {copies:?}");
                delivery.again_after_cut_off_attempt += 1;
            }
        }
    }
    delivery
}

/// xorshift64*: a seeded sequence, so a failure can be replayed.
pub struct Random(pub u64);

impl Random {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// A scratch folder outside the filesystem under test (storescu's files).
pub fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("radassist-durability-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

//! DICOMweb against Orthanc's DICOMweb plugin, in the same run, on the same instances: STOW-RS
//! ingest (instances/s, one client, each request one instance; radassist acknowledges only
//! once the instance is fsynced and catalogued), QIDO-RS study searches with 10,000 studies
//! held (p50 and p99 of a search by Patient ID, and of the first 100 studies), and WADO-RS
//! retrieval of one instance (instances/s, with 1 and with 8 clients). Run (after scripts/setup,
//! which installs Orthanc and its DICOMweb plugin; it runs in a network namespace of its own,
//! as Orthanc cannot bind its DICOM port to loopback only):
//!
//!     cargo bench --bench dicomweb [-- --studies N]
//!
//! The 10,000 studies are small instances (the sample film's header over a 64 x 64 image,
//! each a patient of its own), stored by STOW-RS in requests of 50; the ingest figure is
//! measured on full-size films (the sample film, 1024 x 1024, about 2 MB).

#[path = "../tests/common/mod.rs"]
mod common;

use common::dicomweb::{exchange, multipart};
use common::orthanc::{Orthanc, DICOMWEB_PLUGIN};
use common::{Server, PACS_TOKEN, RADIOLOGIST_TOKEN};
use dicom_dictionary_std::tags;
use std::time::Instant;

const FILM: &str = "sample-dicom/derived/siim_chest_pa_devices.dcm";
/// Full-size films stored to measure ingest.
const INGESTED: usize = 100;
/// Searches measured of each kind.
const SEARCHES: usize = 200;
/// Retrievals measured at each concurrency.
const RETRIEVALS: usize = 400;

const OWN_NAMESPACE: &str = "RADASSIST_BENCH_OWN_NETWORK";

/// One of the two servers, as the bench reaches it.
struct Peer {
    name: &'static str,
    web: String,
    /// Its DICOMweb root's path.
    root: &'static str,
    headers: Vec<(String, String)>,
}

impl Peer {
    fn headers(&self, more: &[(&'static str, &'static str)]) -> Vec<(String, String)> {
        let mut all = self.headers.clone();
        all.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        all
    }

    fn get(&self, path: &str, accept: &'static str) -> (u16, Vec<u8>) {
        let headers = self.headers(&[("Accept", accept)]);
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (status, _, body) = exchange(
            &self.web,
            "GET",
            &format!("{}{path}", self.root),
            &refs,
            b"",
        );
        (status, body)
    }

    fn stow(&self, instances: &[Vec<u8>]) {
        let parts: Vec<(&str, &[u8])> = instances
            .iter()
            .map(|b| ("Content-Type: application/dicom", b.as_slice()))
            .collect();
        let body = multipart("radassist-test", &parts);
        let headers = self.headers(&[("Content-Type", common::dicomweb::STOW_TYPE)]);
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (status, head, _) = exchange(
            &self.web,
            "POST",
            &format!("{}/studies", self.root),
            &refs,
            &body,
        );
        assert_eq!(status, 200, "{}: a store: {head}", self.name);
    }
}

/// A small instance: the film's header over a 64 x 64 image, patient `i` of its own.
fn small(film: &dicom_object::DefaultDicomObject, i: usize) -> Vec<u8> {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    let mut object = film.clone();
    let uid = |what: &str| common::uid_for(&format!("bench/dicomweb/{what}/{i}"));
    let sop = uid("sop");
    for (tag, vr, value) in [
        (tags::SOP_INSTANCE_UID, VR::UI, sop.clone()),
        (tags::STUDY_INSTANCE_UID, VR::UI, uid("study")),
        (tags::SERIES_INSTANCE_UID, VR::UI, uid("series")),
        (tags::PATIENT_ID, VR::LO, format!("BENCH-{i:05}")),
        (tags::PATIENT_NAME, VR::PN, format!("Bench^Patient{i:05}")),
        (
            tags::STUDY_DATE,
            VR::DA,
            format!("2024{:02}{:02}", 1 + i % 12, 1 + i % 28),
        ),
    ] {
        object.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    }
    object.put(DataElement::new(
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(64_u16),
    ));
    object.put(DataElement::new(
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(64_u16),
    ));
    object.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::from(vec![0_u8; 64 * 64 * 2]),
    ));
    object.meta_mut().media_storage_sop_instance_uid = sop;
    object.meta_mut().update_information_group_length();
    let mut bytes = Vec::new();
    object.write_all(&mut bytes).unwrap();
    bytes
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// (p50, p99) in ms of `n` runs of `search`.
fn latencies(n: usize, mut search: impl FnMut()) -> (f64, f64) {
    let mut ms: Vec<f64> = (0..n)
        .map(|_| {
            let started = Instant::now();
            search();
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), percentile(&ms, 0.99))
}

/// Instances retrieved per second by `clients` threads, RETRIEVALS in all.
fn retrievals_per_second(peer: &Peer, path: &str, clients: usize) -> f64 {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..clients {
            scope.spawn(|| {
                for _ in 0..RETRIEVALS / clients {
                    let (status, body) =
                        peer.get(path, "multipart/related; type=\"application/dicom\"");
                    assert!(
                        status == 200 && body.len() > 1_000_000,
                        "{}: a retrieval: {status}",
                        peer.name
                    );
                }
            });
        }
    });
    (RETRIEVALS / clients * clients) as f64 / started.elapsed().as_secs_f64()
}

fn in_own_network() -> bool {
    if std::env::var_os(OWN_NAMESPACE).is_some() {
        return true;
    }
    let status = std::process::Command::new("unshare")
        .args(["--net", "sh", "-c"])
        .arg("ip link set lo up && exec \"$0\" \"$@\"")
        .arg(std::env::current_exe().unwrap())
        .args(std::env::args().skip(1))
        .env(OWN_NAMESPACE, "1")
        .status()
        .expect("unshare (util-linux) is installed by scripts/setup");
    std::process::exit(status.code().unwrap_or(1));
}

fn main() {
    if !in_own_network() {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let studies = args
        .iter()
        .position(|a| a == "--studies")
        .and_then(|at| args.get(at + 1)?.parse().ok())
        .unwrap_or(10_000_usize);
    let dir = tempfile::tempdir().unwrap();
    let radassist_dir = dir.path().join("radassist");
    std::fs::create_dir_all(&radassist_dir).unwrap();
    let server = Server::start_with(&radassist_dir, "stable_study_seconds = 36000");
    let orthanc_dir = dir.path().join("orthanc");
    std::fs::create_dir_all(&orthanc_dir).unwrap();
    let orthanc = Orthanc::start(
        &orthanc_dir,
        serde_json::json!({
            "DicomPort": common::free_port(),
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": true, "Root": "/dicom-web/"},
        }),
        vec![],
    );
    // Each server as the PACS stores into it, and as a viewer reads it.
    let both = |token: &str| {
        [
            Peer {
                name: "radassist",
                web: server.web.clone(),
                root: "/dicomweb",
                headers: vec![("Authorization".into(), format!("Bearer {token}"))],
            },
            Peer {
                name: "Orthanc",
                web: format!("http://{}", orthanc.http),
                root: "/dicom-web",
                headers: vec![],
            },
        ]
    };
    let peers = both(PACS_TOKEN);
    let film = dicom_object::open_file(common::root().join(FILM)).unwrap();
    println!(
        "DICOMweb: radassist against Orthanc {} with its DICOMweb plugin, on this machine",
        orthanc.get("/system")["Version"]
    );

    // STOW-RS ingest of full-size films, one a request.
    let films: Vec<Vec<u8>> = (0..INGESTED)
        .map(|i| common::study_copy(FILM, &format!("bench/dicomweb/film/{i}")))
        .collect();
    for peer in &peers {
        let started = Instant::now();
        for one in &films {
            peer.stow(std::slice::from_ref(one));
        }
        let rate = INGESTED as f64 / started.elapsed().as_secs_f64();
        println!(
            "STOW-RS ingest, {INGESTED} films of {:.1} MB, one a request: {} {rate:.1} instances/s",
            films[0].len() as f64 / 1e6,
            peer.name
        );
    }

    // 10,000 studies held, stored 50 a request.
    let started = Instant::now();
    for batch in (0..studies).collect::<Vec<_>>().chunks(50) {
        let instances: Vec<Vec<u8>> = batch.iter().map(|&i| small(&film, i)).collect();
        for peer in &peers {
            peer.stow(&instances);
        }
    }
    println!(
        "({studies} small studies stored in both in {:.0} s)",
        started.elapsed().as_secs_f64()
    );

    // QIDO-RS: by Patient ID, and the first 100 studies.
    for peer in both(RADIOLOGIST_TOKEN) {
        let mut i = 0;
        let (p50, p99) = latencies(SEARCHES, || {
            i = (i + 7919) % studies;
            let (status, body) = peer.get(
                &format!("/studies?PatientID=BENCH-{i:05}"),
                "application/dicom+json",
            );
            assert!(
                status == 200 && body.len() > 100,
                "{}: a search: {status}",
                peer.name
            );
        });
        println!("QIDO-RS study search by Patient ID, {} studies held: {} p50 {p50:.1} ms, p99 {p99:.1} ms", studies + INGESTED, peer.name);
        let (p50, p99) = latencies(SEARCHES / 4, || {
            let (status, _) = peer.get("/studies?limit=100", "application/dicom+json");
            assert_eq!(status, 200, "{}: a search", peer.name);
        });
        println!(
            "QIDO-RS first 100 studies, {} studies held: {} p50 {p50:.1} ms, p99 {p99:.1} ms",
            studies + INGESTED,
            peer.name
        );
        // WADO-RS: one film, by 1 and by 8 clients.
        let path = format!(
            "/studies/{}/series/{}/instances/{}",
            attribute(&films[0], tags::STUDY_INSTANCE_UID),
            attribute(&films[0], tags::SERIES_INSTANCE_UID),
            attribute(&films[0], tags::SOP_INSTANCE_UID)
        );
        for clients in [1, 8] {
            let rate = retrievals_per_second(&peer, &path, clients);
            println!(
                "WADO-RS instance retrieval, {clients} client(s): {} {rate:.1} instances/s",
                peer.name
            );
        }
    }
    drop(orthanc);
}

/// An attribute of a Part 10 file, as text.
fn attribute(bytes: &[u8], tag: dicom_core::Tag) -> String {
    let object = dicom_object::from_reader(&bytes[128..]).unwrap();
    object
        .element(tag)
        .unwrap()
        .to_str()
        .unwrap()
        .trim()
        .to_string()
}

//! The DICOM listener against real peers: dcmtk's echoscu, storescu and dcmsend, and raw
//! bytes for what no well-behaved peer sends. Every server is started here on loopback.

mod common;

use common::{root, Server};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

const PEER: &str = "STORESCU";

fn start(dir: &Path) -> Server {
    Server::start_configured(
        dir,
        "",
        &format!(
            "[dicom]\nlisten = \"127.0.0.1:0\"\nae_title = \"RADASSIST\"\nidle_timeout_seconds = 5\n\n\
             [[dicom.peers]]\nae_title = \"{PEER}\"\nhost = \"127.0.0.1\"\nport = 11113\n"
        ),
        &[],
    )
}

fn host_port(server: &Server) -> (String, String) {
    let (host, port) = server.dicom.rsplit_once(':').unwrap();
    (host.to_string(), port.to_string())
}

/// Runs a dcmtk tool against the server; (exit status ok, stdout + stderr).
fn dcmtk(tool: &str, server: &Server, calling: &str, called: &str, rest: &[&str]) -> (bool, String) {
    let (host, port) = host_port(server);
    let output = Command::new(tool)
        .args(["-aet", calling, "-aec", called, "-to", "20", "-ta", "20", "-td", "20"])
        .args(rest.iter().filter(|a| a.starts_with('-')))
        .args([host.as_str(), port.as_str()])
        .args(rest.iter().filter(|a| !a.starts_with('-')))
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e} (scripts/setup installs dcmtk)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The transfer syntax of a Part 10 file, and the storescu option that proposes it.
fn storescu_option(transfer_syntax: &str) -> Option<&'static str> {
    Some(match transfer_syntax {
        "1.2.840.10008.1.2" => "-xi",
        "1.2.840.10008.1.2.1" => "-xe",
        "1.2.840.10008.1.2.2" => "-xb",
        "1.2.840.10008.1.2.1.99" => "-xd",
        "1.2.840.10008.1.2.4.50" => "-xy",
        "1.2.840.10008.1.2.4.51" => "-xx",
        "1.2.840.10008.1.2.4.70" => "-xs",
        "1.2.840.10008.1.2.4.80" => "-xt",
        "1.2.840.10008.1.2.4.81" => "-xu",
        "1.2.840.10008.1.2.4.90" => "-xv",
        "1.2.840.10008.1.2.4.91" => "-xw",
        "1.2.840.10008.1.2.5" => "-xr",
        _ => return None,
    })
}

/// A Part 10 file: its file meta elements (group 0002) and the data set's bytes after them.
struct Part10 {
    meta: BTreeMap<u16, String>,
    data_set: Vec<u8>,
}

fn read_part10(bytes: &[u8]) -> Part10 {
    assert_eq!(&bytes[128..132], b"DICM", "not a Part 10 file");
    let mut at = 132;
    let mut meta = BTreeMap::new();
    // The meta group is Explicit VR Little Endian.
    while at + 8 <= bytes.len() && bytes[at..at + 2] == [2, 0] {
        let element = u16::from_le_bytes([bytes[at + 2], bytes[at + 3]]);
        let vr = &bytes[at + 4..at + 6];
        let (length, header) = if matches!(vr, b"OB" | b"OW" | b"UN" | b"SQ" | b"UT" | b"UC") {
            (
                u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize,
                12,
            )
        } else {
            (u16::from_le_bytes([bytes[at + 6], bytes[at + 7]]) as usize, 8)
        };
        let value = &bytes[at + header..at + header + length];
        meta.insert(
            element,
            String::from_utf8_lossy(value)
                .trim_end_matches(['\0', ' '])
                .to_string(),
        );
        at += header + length;
    }
    Part10 {
        meta,
        data_set: bytes[at..].to_vec(),
    }
}

/// Whether two encoded data sets are the same; a deflated one is compared inflated (the
/// deflate stream's padding to an even length may differ).
fn same_data_set(transfer_syntax: &str, a: &[u8], b: &[u8]) -> bool {
    if transfer_syntax != "1.2.840.10008.1.2.1.99" {
        return a == b;
    }
    let inflate = |bytes: &[u8]| {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    };
    inflate(a) == inflate(b)
}

/// (SOP Instance UID -> stored bytes) of every catalogued instance.
fn stored_instances(data: &Path) -> BTreeMap<String, Vec<u8>> {
    let db = rusqlite::Connection::open_with_flags(
        data.join("radassist.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut statement = db
        .prepare("SELECT sop_instance_uid, sha256 FROM instances")
        .unwrap();
    let rows: Vec<(String, String)> = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.into_iter()
        .map(|(sop, sha)| {
            let blob = data.join("blobs").join(&sha[..2]).join(&sha[2..4]).join(&sha);
            (sop, std::fs::read(blob).unwrap())
        })
        .collect()
}

/// The samples a DICOM peer would send: every Part 10 file under sample-dicom/.
fn samples() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["sample-dicom", "sample-dicom/derived", "sample-dicom/non_chest"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "dcm") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            if bytes.len() > 132 && &bytes[128..132] == b"DICM" {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// What radassist takes of a sample: a chest CR/DX or secondary capture (a multi-frame one is
/// stored too; its analysis fails with the reason, as for gRPC ingest).
fn taken(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_str().unwrap();
    !path.to_str().unwrap().contains("non_chest") && !name.starts_with("basic_text_sr")
}

#[test]
fn echo_and_who_may_associate() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let (ok, text) = dcmtk("echoscu", &server, PEER, "RADASSIST", &["-v"]);
    assert!(ok, "{text}");
    let (ok, text) = dcmtk("echoscu", &server, "STRANGER", "RADASSIST", &[]);
    assert!(!ok && text.contains("Calling AE Title Not Recognized"), "{text}");
    let (ok, text) = dcmtk("echoscu", &server, PEER, "SOMEONE_ELSE", &[]);
    assert!(!ok && text.contains("Called AE Title Not Recognized"), "{text}");
    // An SR is not a storage class radassist takes: refused in the negotiation.
    let sr = root().join("sample-dicom/derived/basic_text_sr.dcm");
    let (_, text) = dcmtk("storescu", &server, PEER, "RADASSIST", &["-R", sr.to_str().unwrap()]);
    assert!(text.contains("No Acceptable Presentation Contexts"), "{text}");
    let metrics = common::http_get(&server.metrics, "/metrics");
    assert!(
        metrics.contains("radassist_dicom_associations_total{outcome=\"rejected\"} 2"),
        "{metrics}"
    );
}

/// Sends every sample, each in its own transfer syntax, with storescu (where it can propose
/// that syntax) and dcmsend, and finds each stored: its data set byte for byte as sent.
#[test]
fn every_sample_is_stored_as_sent_by_storescu_and_dcmsend() {
    // Several samples are one instance (one SOP Instance UID) in different transfer
    // syntaxes: each goes to a server of its own round, where its UID is new.
    let mut rounds: Vec<Vec<(PathBuf, Part10)>> = Vec::new();
    for path in samples() {
        let file = read_part10(&std::fs::read(&path).unwrap());
        let uid = file.meta[&0x0003].clone();
        let round = rounds
            .iter()
            .position(|r| r.iter().all(|(_, f)| f.meta[&0x0003] != uid))
            .unwrap_or_else(|| {
                rounds.push(Vec::new());
                rounds.len() - 1
            });
        rounds[round].push((path, file));
    }
    let mut checked = 0;
    for (round, files) in rounds.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path());
        for (index, (path, file)) in files.iter().enumerate() {
            let transfer_syntax = &file.meta[&0x0010];
            let path_text = path.to_str().unwrap();
            // Alternate the two senders; storescu where it can propose the syntax.
            let (ok, text) = match storescu_option(transfer_syntax) {
                Some(option) if index % 2 == 0 => {
                    dcmtk("storescu", &server, PEER, "RADASSIST", &["-v", "-R", option, path_text])
                }
                _ => dcmtk("dcmsend", &server, PEER, "RADASSIST", &["-v", path_text]),
            };
            let stored = stored_instances(&server.data);
            let uid = &file.meta[&0x0003];
            if taken(path) {
                assert!(ok, "{path_text}: {text}");
                let got = stored
                    .get(uid)
                    .unwrap_or_else(|| panic!("{path_text} not stored (round {round}): {text}"));
                let got = read_part10(got);
                // dcmtk's senders encode the data set afresh (explicit lengths for sequences
                // and items): what they put on the wire is the file as dcmconv writes it.
                let sent = dir.path().join(format!("sent-{index}.dcm"));
                let status = Command::new("dcmconv").args([path_text, sent.to_str().unwrap()]).status().unwrap();
                assert!(status.success(), "dcmconv {path_text}");
                let sent = read_part10(&std::fs::read(&sent).unwrap());
                assert!(
                    same_data_set(transfer_syntax, &got.data_set, &sent.data_set),
                    "{path_text}: the stored data set ({} bytes) differs from the one sent ({} bytes)",
                    got.data_set.len(),
                    sent.data_set.len()
                );
                assert_eq!(&got.meta[&0x0010], transfer_syntax, "{path_text}");
                assert_eq!(got.meta[&0x0002], file.meta[&0x0002], "{path_text}");
                assert_eq!(got.meta[&0x0016], PEER, "{path_text}: Source AE Title");
                checked += 1;
            } else {
                assert!(!stored.contains_key(uid), "{path_text} was stored: {text}");
            }
        }
    }
    assert!(checked >= 25, "only {checked} samples were checked");
}

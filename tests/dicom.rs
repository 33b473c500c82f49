//! The DICOM listener against real peers: dcmtk's echoscu, storescu and dcmsend, and raw
//! bytes for what no well-behaved peer sends. Every server is started here on loopback.

use crate::common;

use common::{dcmtk, root, Server};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

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
            (
                u16::from_le_bytes([bytes[at + 6], bytes[at + 7]]) as usize,
                8,
            )
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
    let rows = common::backends::catalogued_instances(data);
    rows.into_iter()
        .map(|(sop, sha)| {
            let bytes = common::backends::blob(data, &sha).unwrap();
            use sha2::Digest;
            let found: String = sha2::Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(found, sha, "{sop}: the blob is not what was catalogued");
            (sop, bytes)
        })
        .collect()
}

/// The samples a DICOM peer would send: every Part 10 file under sample-dicom/.
fn samples() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in [
        "sample-dicom",
        "sample-dicom/derived",
        "sample-dicom/non_chest",
    ] {
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
    assert!(
        !ok && text.contains("Calling AE Title Not Recognized"),
        "{text}"
    );
    let (ok, text) = dcmtk("echoscu", &server, PEER, "SOMEONE_ELSE", &[]);
    assert!(
        !ok && text.contains("Called AE Title Not Recognized"),
        "{text}"
    );
    // An SR is not a storage class radassist takes: refused in the negotiation.
    let sr = root().join("sample-dicom/derived/basic_text_sr.dcm");
    let (_, text) = dcmtk(
        "storescu",
        &server,
        PEER,
        "RADASSIST",
        &["-R", sr.to_str().unwrap()],
    );
    assert!(
        text.contains("No Acceptable Presentation Contexts"),
        "{text}"
    );
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
                Some(option) if index % 2 == 0 => dcmtk(
                    "storescu",
                    &server,
                    PEER,
                    "RADASSIST",
                    &["-v", "-R", option, path_text],
                ),
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
                // and items): what they put on the wire is the file as dcmconv writes it. An
                // implicit VR file goes out as explicit VR when the sender proposes that first
                // (dcmsend does, and converts): radassist takes the sender's first choice.
                let stored_syntax = got.meta[&0x0010].as_str();
                let converted = stored_syntax != transfer_syntax.as_str();
                assert!(
                    !converted
                        || (transfer_syntax == "1.2.840.10008.1.2"
                            && stored_syntax == "1.2.840.10008.1.2.1"
                            && text.contains("Converting transfer syntax")),
                    "{path_text}: stored as {stored_syntax}, not as sent: {text}"
                );
                let sent = dir.path().join(format!("sent-{index}.dcm"));
                let status = Command::new("dcmconv")
                    .args(converted.then_some("+te"))
                    .args([path_text, sent.to_str().unwrap()])
                    .status()
                    .unwrap();
                assert!(status.success(), "dcmconv {path_text}");
                let sent = read_part10(&std::fs::read(&sent).unwrap());
                assert!(
                    same_data_set(transfer_syntax, &got.data_set, &sent.data_set),
                    "{path_text}: the stored data set ({} bytes) differs from the one sent ({} bytes)",
                    got.data_set.len(),
                    sent.data_set.len()
                );
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

/// A C-STORE whose status and Error Comment storescu prints (`-d`).
fn store_status(server: &Server, path: &Path, option: &str) -> String {
    let (_, text) = dcmtk(
        "storescu",
        server,
        PEER,
        "RADASSIST",
        &["-d", "-R", option, path.to_str().unwrap()],
    );
    common::dimse_status(&text)
}

#[test]
fn refusals_carry_the_status_ps3_4_gives_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let hip = root().join("sample-dicom/non_chest/RG2_J2KI.dcm");
    let status = store_status(&server, &hip, "-xw");
    assert!(
        status.contains("0xc001") && status.contains("not CHEST"),
        "{status}"
    );
    // The same SOP Instance UID again with other bytes: 0111 (duplicate SOP instance); the
    // same bytes again: Success (storing is idempotent).
    let first = root().join("sample-dicom/CR-MONO1-10-chest.dcm");
    let other = root().join("sample-dicom/derived/CR-MONO1-10-chest_EXPLICIT_LE.dcm");
    assert!(store_status(&server, &first, "-xi").contains("0x0000"));
    assert!(store_status(&server, &first, "-xi").contains("0x0000"));
    let status = store_status(&server, &other, "-xe");
    assert!(
        status.contains("0x0111") && status.contains("stored before"),
        "{status}"
    );
    assert_eq!(stored_instances(&server.data).len(), 1);
}

mod raw {
    //! What no well-behaved peer sends, through dicom-ul's client or a bare socket.
    use dicom_dictionary_std::tags;
    use dicom_object::InMemDicomObject;
    use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
    use dicom_ul::pdu::{PDataValue, PDataValueType};
    use dicom_ul::{ClientAssociation, ClientAssociationOptions, Pdu};

    pub const CR_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.1";
    pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

    pub fn associate(address: &str) -> ClientAssociation<std::net::TcpStream> {
        ClientAssociationOptions::new()
            .calling_ae_title(super::PEER)
            .called_ae_title("RADASSIST")
            .with_presentation_context(CR_STORAGE, vec![EXPLICIT_LE])
            .read_timeout(std::time::Duration::from_secs(20))
            .establish(address)
            .expect("an association")
    }

    pub fn store_command(sop_instance_uid: &str) -> Vec<u8> {
        radassist::dimse::message::store_request(1, CR_STORAGE, sop_instance_uid)
    }

    pub fn value(id: u8, value_type: PDataValueType, is_last: bool, data: Vec<u8>) -> Pdu {
        Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: id,
                value_type,
                is_last,
                data,
            }],
        }
    }

    /// Sends a C-STORE-RQ for `sop_instance_uid` and `data_set` in P-DATA values of 16,000
    /// bytes, the last one marked last only when `complete`.
    pub fn send_store(
        association: &mut ClientAssociation<std::net::TcpStream>,
        sop_instance_uid: &str,
        data_set: &[u8],
        complete: bool,
    ) {
        let id = association.presentation_contexts()[0].id;
        association
            .send(&value(
                id,
                PDataValueType::Command,
                true,
                store_command(sop_instance_uid),
            ))
            .unwrap();
        let chunks: Vec<&[u8]> = data_set.chunks(16000).collect();
        for (index, chunk) in chunks.iter().enumerate() {
            let last = complete && index + 1 == chunks.len();
            association
                .send(&value(id, PDataValueType::Data, last, chunk.to_vec()))
                .unwrap();
        }
    }

    /// The status and Error Comment of the response to a C-STORE.
    pub fn response(association: &mut ClientAssociation<std::net::TcpStream>) -> (u16, String) {
        match association.receive().expect("a response") {
            Pdu::PData { data } => {
                let object = InMemDicomObject::read_dataset_with_ts(
                    data[0].data.as_slice(),
                    &IMPLICIT_VR_LITTLE_ENDIAN.erased(),
                )
                .unwrap();
                let status = object.get(tags::STATUS).unwrap().uint16().unwrap();
                let comment = object
                    .get(tags::ERROR_COMMENT)
                    .map(|e| e.to_str().unwrap().to_string())
                    .unwrap_or_default();
                (status, comment)
            }
            other => panic!("not a response: {other:?}"),
        }
    }
}

#[test]
fn a_data_set_that_contradicts_its_command_or_is_cut_short_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let file = read_part10(
        &std::fs::read(root().join("sample-dicom/derived/CR-MONO1-10-chest_EXPLICIT_LE.dcm"))
            .unwrap(),
    );
    let own_uid = file.meta[&0x0003].clone();
    let mut association = raw::associate(&server.dicom);
    // Cut short (it stops inside its pixel data): refused as not understood.
    raw::send_store(&mut association, &own_uid, &file.data_set[..8000], true);
    let (status, comment) = raw::response(&mut association);
    assert_eq!(status, 0xC000, "{comment}");
    // The command names another SOP Instance than the data set carries.
    raw::send_store(
        &mut association,
        "1.2.826.0.1.3680043.8.498.1",
        &file.data_set,
        true,
    );
    let (status, comment) = raw::response(&mut association);
    assert_eq!(status, 0xA900, "{comment}");
    assert!(comment.contains("SOP Instance UID"), "{comment}");
    association.release().unwrap();
    assert!(stored_instances(&server.data).is_empty());
}

#[test]
fn hostile_bytes_and_bursts_leave_the_listener_serving() {
    use std::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let rss = || {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap()
            .to_string();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let closes = |mut stream: TcpStream| {
        // The server answers (an A-ABORT or A-ASSOCIATE-RJ) or just closes; either way the
        // connection ends well before the test's read timeout.
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut sink = Vec::new();
        let read = stream.read_to_end(&mut sink);
        assert!(
            read.is_ok(),
            "the server kept the connection open: {read:?}"
        );
    };
    // Garbage bytes.
    let mut stream = TcpStream::connect(&server.dicom).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    closes(stream);
    // A PDU whose length lies: an A-ASSOCIATE-RQ header claiming 1 GB, then nothing.
    let mut stream = TcpStream::connect(&server.dicom).unwrap();
    stream
        .write_all(&[0x01, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x01])
        .unwrap();
    closes(stream);
    // An abort in the middle of a data set.
    {
        let file = read_part10(
            &std::fs::read(root().join("sample-dicom/derived/CR-MONO1-10-chest_RLE.dcm")).unwrap(),
        );
        let mut association = raw::associate(&server.dicom);
        raw::send_store(
            &mut association,
            &file.meta[&0x0003],
            &file.data_set[..40000],
            false,
        );
        association.abort().unwrap();
    }
    // A P-DATA PDU longer than the listener's max_pdu_length (64 KiB): the association ends.
    {
        let mut association = raw::associate(&server.dicom);
        let stream = association.inner_stream();
        let length: u32 = 200_000;
        let mut pdu = vec![0x04, 0x00];
        pdu.extend_from_slice(&length.to_be_bytes());
        pdu.resize(6 + length as usize, 0);
        let _ = stream.write_all(&pdu);
        match association.receive() {
            Err(_) | Ok(dicom_ul::Pdu::AbortRQ { .. }) => {}
            Ok(other) => panic!("a PDU too long was answered with {other:?}"),
        }
    }
    // The models load in the background: measure memory once they have.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        common::wait_for_models(&server.channel().await).await;
    });
    let mut before = rss();
    // A burst of 10,000 associations, 100 at a time, each asking and reading the answer.
    let request = {
        let mut bytes = Vec::new();
        let rq = dicom_ul::pdu::AssociationRQ {
            protocol_version: 1,
            calling_ae_title: PEER.into(),
            called_ae_title: "RADASSIST".into(),
            application_context_name: "1.2.840.10008.3.1.1.1".into(),
            presentation_contexts: vec![dicom_ul::pdu::PresentationContextProposed {
                id: 1,
                abstract_syntax: "1.2.840.10008.1.1".into(),
                transfer_syntaxes: vec!["1.2.840.10008.1.2".into()],
            }],
            user_variables: vec![dicom_ul::pdu::UserVariableItem::MaxLength(16384)],
        };
        dicom_ul::write_pdu(&mut bytes, &Pdu::AssociationRQ(rq)).unwrap();
        bytes
    };
    use dicom_ul::Pdu;
    // Each is accepted, rejected as busy (transient), or, past the rejections the listener
    // makes at once, closed; none is left hanging.
    let (mut accepted, mut busy, mut closed) = (0, 0, 0);
    for wave in 0..100 {
        if wave == 10 {
            // Memory after the first thousand (the allocator's pools grown) against the end.
            before = rss();
        }
        let streams: Vec<TcpStream> = (0..100)
            .map(|_| {
                let mut s = TcpStream::connect(&server.dicom).unwrap();
                let _ = s.write_all(&request);
                s
            })
            .collect();
        for mut s in streams {
            s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
                .unwrap();
            let mut header = [0u8; 1];
            match s.read(&mut header) {
                Ok(1) if header[0] == 0x02 => accepted += 1,
                Ok(1) if header[0] == 0x03 => busy += 1,
                Ok(0) => closed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
                other => panic!("an association in the burst: {other:?} {header:?}"),
            }
        }
    }
    eprintln!("burst: {accepted} accepted, {busy} rejected as busy, {closed} closed");
    assert_eq!(accepted + busy + closed, 10_000);
    assert!(
        accepted >= 100 && busy > 0,
        "accepted {accepted}, busy {busy}, closed {closed}"
    );
    let after = rss();
    eprintln!("burst: server RSS {before} kB after 1,000, {after} kB after 10,000");
    assert!(
        after < before + 50 * 1024,
        "the last 9,000 associations grew the server from {before} kB to {after} kB"
    );
    // Still serving, and nothing half-received was stored.
    let (ok, text) = dcmtk("echoscu", &server, PEER, "RADASSIST", &[]);
    assert!(ok, "{text}");
    assert!(stored_instances(&server.data).is_empty());
    let metrics = common::http_get(&server.metrics, "/metrics");
    assert!(
        metrics.contains("radassist_dicom_associations_total{outcome=\"busy\"}"),
        "{metrics}"
    );
}

/// kill -9 while four storescu associations send: every instance answered Success is in the
/// catalogue, its blob hashing to the catalogued SHA-256 and carrying that SOP Instance UID.
#[test]
fn every_instance_answered_success_survives_kill_9() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let (host, port) = host_port(&server);
    let file = root().join("sample-dicom/derived/CR-MONO1-10-chest_EXPLICIT_LE.dcm");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let senders: Vec<std::process::Child> = (0..4)
        .map(|_| {
            let mut child = Command::new("storescu")
                .args([
                    "-d",
                    "+II",
                    "--repeat",
                    "500",
                    "-xe",
                    "-aet",
                    PEER,
                    "-aec",
                    "RADASSIST",
                ])
                .args([host.as_str(), port.as_str(), file.to_str().unwrap()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            // dcmtk logs on stderr.
            let stdout = child.stderr.take().unwrap();
            let tx = tx.clone();
            std::thread::spawn(move || {
                // The UID of each response, then its status.
                let mut uid = String::new();
                for line in std::io::BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                {
                    if let Some(u) = line.strip_prefix("D: Affected SOP Instance UID     : ") {
                        uid = u.trim().to_string();
                    }
                    if line.starts_with("D: DIMSE Status") && line.contains("0x0000: Success") {
                        let _ = tx.send(uid.clone());
                    }
                }
            });
            child
        })
        .collect();
    drop(tx);
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 40 {
        acknowledged.push(
            rx.recv_timeout(Duration::from_secs(60))
                .expect("storescu gets Success answers"),
        );
    }
    let data = server.data.clone();
    server.kill();
    for mut sender in senders {
        let _ = sender.wait();
    }
    // Answers that were on the wire when the server died count too.
    acknowledged.extend(rx.try_iter());
    let stored = stored_instances(&data);
    for uid in &acknowledged {
        let bytes = stored
            .get(uid)
            .unwrap_or_else(|| panic!("{uid} was answered Success and is not in the catalogue"));
        let header = radassist::dicom::parse_dicom(bytes).unwrap();
        let identity = radassist::dicom::ImageHeader::from_instance(&header)
            .unwrap()
            .identity;
        assert_eq!(identity.sop_instance_uid.as_deref(), Some(uid.as_str()));
    }
    eprintln!(
        "kill -9: {} answered Success, {} catalogued",
        acknowledged.len(),
        stored.len()
    );
}

/// DICOM TLS on the listener: dcmtk's echoscu and storescu with TLS (its default BCP 195
/// profile, the server's certificate trusted) are served; a plain association is not.
#[test]
fn the_listener_speaks_dicom_tls_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let server = Server::start_configured(
        dir.path(),
        &format!("tls_cert = {cert:?}\ntls_key = {key:?}"),
        &format!(
            "[dicom]\nlisten = \"127.0.0.1:0\"\ntls = true\nidle_timeout_seconds = 5\n\n\
             [[dicom.peers]]\nae_title = \"{PEER}\"\nhost = \"127.0.0.1\"\nport = 11113\n"
        ),
        &[],
    );
    let cert = cert.to_str().unwrap();
    let (ok, text) = dcmtk(
        "echoscu",
        &server,
        PEER,
        "RADASSIST",
        &["+tla", "+cf", cert],
    );
    assert!(ok, "{text}");
    let sample = root().join("sample-dicom/derived/CR-MONO1-10-chest_RLE.dcm");
    let (ok, text) = dcmtk(
        "storescu",
        &server,
        PEER,
        "RADASSIST",
        &["+tla", "+cf", cert, "-R", "-xr", sample.to_str().unwrap()],
    );
    assert!(ok && !text.contains("Failed"), "{text}");
    assert_eq!(stored_instances(&server.data).len(), 1);
    // Plain DICOM to a TLS listener gets nothing.
    let (ok, text) = dcmtk("echoscu", &server, PEER, "RADASSIST", &[]);
    assert!(!ok, "{text}");
}

//! Orthanc (Debian's package) as the tests' PACS, started with a JSON configuration the test
//! writes: its REST API on a free loopback port, its storage in the test's folder, DICOM on the
//! port the test names. Orthanc cannot bind its DICOM port to loopback only, so a test that
//! starts it runs in a network namespace of its own ([`super::in_own_network`]).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The DICOMweb plugin of Debian's orthanc-dicomweb.
pub const DICOMWEB_PLUGIN: &str = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";

pub struct Orthanc {
    child: Child,
    /// Its REST API's address (127.0.0.1:PORT).
    pub http: String,
    pub dicom_port: u16,
    /// storescu's TLS options, when Orthanc speaks DICOM TLS.
    storescu_tls: Vec<PathBuf>,
}

impl Orthanc {
    /// Orthanc with the test's `config` keys over the defaults here (AE title ORTHANC, no
    /// authentication, no remote access, no plugins, a free HTTP port), its storage in `dir`; ready once its REST
    /// API answers. `storescu_tls`: the options [`Orthanc::store`] sends with.
    pub fn start(dir: &Path, config: serde_json::Value, storescu_tls: Vec<PathBuf>) -> Orthanc {
        let http_port = super::free_port();
        let storage = dir.join("orthanc-storage");
        std::fs::create_dir_all(&storage).unwrap();
        let mut full = serde_json::json!({
            "Name": "radassist-test-pacs",
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "DicomAet": "ORTHANC",
            "HttpPort": http_port,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "Plugins": [],
        });
        for (key, value) in config.as_object().unwrap() {
            full[key] = value.clone();
        }
        let dicom_port = full["DicomPort"].as_u64().unwrap_or(4242) as u16;
        let http_port = full["HttpPort"].as_u64().unwrap_or(u64::from(http_port)) as u16;
        let config_path = dir.join("orthanc.json");
        std::fs::write(&config_path, full.to_string()).unwrap();
        let mut child = Command::new("Orthanc")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("Orthanc is installed by scripts/setup");
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("[orthanc] {line}");
            }
        });
        let orthanc = Orthanc {
            child,
            http: format!("127.0.0.1:{http_port}"),
            dicom_port,
            storescu_tls,
        };
        // Ready once its REST API answers (it opens the DICOM port before).
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(&orthanc.http).is_err()
            || !super::http_get(&orthanc.http, "/system").contains("\"DicomAet\"")
        {
            assert!(Instant::now() < deadline, "Orthanc did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        orthanc
    }

    /// A REST GET's JSON body.
    pub fn get(&self, path: &str) -> serde_json::Value {
        let response = super::http_get(&self.http, path);
        let (_, body) = response.split_once("\r\n\r\n").unwrap();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    /// Sends `files` with storescu as `calling` (the modality, or the archive).
    pub fn store(&self, calling: &str, files: &[&Path]) {
        let status = Command::new("storescu")
            .args(&self.storescu_tls)
            .args(["-aet", calling, "-aec", "ORTHANC", "127.0.0.1"])
            .arg(self.dicom_port.to_string())
            .args(files)
            .status()
            .unwrap();
        assert!(status.success(), "storescu to Orthanc");
    }

    /// The Orthanc study whose Study Instance UID is `uid`, expanded.
    pub fn study(&self, uid: &str) -> Option<serde_json::Value> {
        self.get("/studies?expand")
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["MainDicomTags"]["StudyInstanceUID"] == uid)
            .cloned()
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

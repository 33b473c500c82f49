//! Shared helpers for the integration tests: the reference fixtures written by
//! scripts/make-fixtures.py (pydicom / dcmtk values), and readers for `.npy.gz` and PNG.
#![allow(dead_code)]

pub mod backends;
pub mod dicomweb;
pub mod durability;
pub mod orthanc;
pub mod power_loss_fs;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn sample(relative: &str) -> PathBuf {
    root().join("sample-dicom").join(relative)
}

#[derive(Debug, serde::Deserialize)]
pub struct Reference {
    pub file: String,
    pub decodes: bool,
    #[serde(default)]
    pub rows: usize,
    #[serde(default)]
    pub columns: usize,
    #[serde(default)]
    pub values_array: bool,
    #[serde(default)]
    pub values_sha256: String,
    #[serde(default)]
    pub transfer_syntax: String,
    #[serde(default)]
    pub lossy: bool,
}

pub fn reference_dir() -> PathBuf {
    root().join("tests/fixtures/reference")
}

pub fn manifest() -> BTreeMap<String, Reference> {
    let text = std::fs::read_to_string(reference_dir().join("manifest.json")).expect("manifest");
    serde_json::from_str(&text).expect("manifest parses")
}

/// Reads a gzip-compressed `.npy` of dtype u1, <u2, <i2, <i4 or <f4 as f32, with its shape.
pub fn read_npy_gz(path: &Path) -> (Vec<f32>, Vec<usize>) {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("fixture exists"))
        .read_to_end(&mut bytes)
        .expect("gzip");
    read_npy(&bytes)
}

pub fn read_npy(bytes: &[u8]) -> (Vec<f32>, Vec<usize>) {
    assert_eq!(&bytes[..6], b"\x93NUMPY", "npy magic");
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).expect("ascii header");
    assert!(
        header.contains("'fortran_order': False"),
        "C order expected: {header}"
    );
    let descr = header
        .split("'descr': '")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("descr");
    let shape: Vec<usize> = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("shape")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let data = &bytes[start + header_len..];
    let values = match descr {
        "|u1" => data.iter().map(|&b| b as f32).collect(),
        "<u2" => data
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as f32)
            .collect(),
        "<i2" => data
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32)
            .collect(),
        "<i4" => data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        "<f4" => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        other => panic!("unexpected npy dtype {other}"),
    };
    (values, shape)
}

/// Reads an 8-bit greyscale PNG: (pixels, width, height).
pub fn read_png8(path: &Path) -> (Vec<u8>, u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(path).expect("png exists"),
    ));
    let mut reader = decoder.read_info().expect("png header");
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).expect("png data");
    assert_eq!(
        info.color_type,
        png::ColorType::Grayscale,
        "{}",
        path.display()
    );
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "{}", path.display());
    buffer.truncate(info.buffer_size());
    (buffer, info.width, info.height)
}

pub fn sha256_f32(values: impl Iterator<Item = f32>) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for v in values {
        hasher.update(v.to_le_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Largest absolute difference and how many elements differ.
pub fn compare<T: Copy + Into<f64>>(a: &[T], b: &[T]) -> (f64, usize) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).fold((0.0, 0), |(max, count), (&x, &y)| {
        let d = (x.into() - y.into()).abs();
        (max.max(d), count + usize::from(d > 0.0))
    })
}

/// Whether ONNX Runtime is set up here. scripts/test sets RADASSIST_REQUIRE_ORT, so there a
/// missing library fails the test instead of skipping it.
pub fn onnx_runtime_available() -> bool {
    let present = root()
        .join(".radassist/onnxruntime/libonnxruntime.so")
        .exists()
        || std::env::var_os("ORT_DYLIB_PATH").is_some();
    if !present {
        assert!(
            std::env::var_os("RADASSIST_REQUIRE_ORT").is_none(),
            "ONNX Runtime is required here: run scripts/setup"
        );
        eprintln!("ONNX Runtime is not set up (run scripts/setup): skipping");
    }
    present
}

/// What a derived copy of a sample instance changes: new SOP Instance and Series UIDs (from
/// `label`), optionally a new study with another date, and Pixel Padding Value.
pub struct Derived<'a> {
    pub label: &'a str,
    pub new_study_date: Option<&'a str>,
    pub padding_value: Option<u16>,
    /// Another patient.
    pub patient_id: Option<&'a str>,
}

/// A UID under the 2.25 root, from a label (the same label gives the same UID).
pub fn uid_for(label: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(label.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    format!("2.25.{}", u128::from_be_bytes(bytes) >> 1)
}

/// Writes a copy of `source` with `values` as its pixels (16-bit unsigned, MONOCHROME2,
/// explicit VR little endian) and the identity changes `derived` asks for.
pub fn write_derived(source: &Path, values: &ndarray::Array2<u16>, derived: &Derived, out: &Path) {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let mut obj = dicom_object::open_file(source).expect("the sample opens");
    let put_text = |obj: &mut dicom_object::DefaultDicomObject, tag, vr, text: &str| {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::from(text)));
    };
    let put_u16 = |obj: &mut dicom_object::DefaultDicomObject, tag, value: u16| {
        obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
    };
    let sop = uid_for(&format!("{}/sop", derived.label));
    put_text(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, &sop);
    put_text(
        &mut obj,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        &uid_for(&format!("{}/series", derived.label)),
    );
    if let Some(date) = derived.new_study_date {
        put_text(
            &mut obj,
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            &uid_for(&format!("{}/study", derived.label)),
        );
        for tag in [
            tags::STUDY_DATE,
            tags::SERIES_DATE,
            tags::ACQUISITION_DATE,
            tags::CONTENT_DATE,
        ] {
            put_text(&mut obj, tag, VR::DA, date);
        }
        put_text(
            &mut obj,
            tags::ACCESSION_NUMBER,
            VR::SH,
            &derived.label[..derived.label.len().min(16)],
        );
    }
    let (rows, columns) = values.dim();
    put_u16(&mut obj, tags::ROWS, rows as u16);
    put_u16(&mut obj, tags::COLUMNS, columns as u16);
    put_u16(&mut obj, tags::SAMPLES_PER_PIXEL, 1);
    put_text(
        &mut obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    );
    put_u16(&mut obj, tags::BITS_ALLOCATED, 16);
    put_u16(&mut obj, tags::BITS_STORED, 16);
    put_u16(&mut obj, tags::HIGH_BIT, 15);
    put_u16(&mut obj, tags::PIXEL_REPRESENTATION, 0);
    if let Some(id) = derived.patient_id {
        put_text(&mut obj, tags::PATIENT_ID, VR::LO, id);
    }
    if let Some(padding) = derived.padding_value {
        put_u16(&mut obj, tags::PIXEL_PADDING_VALUE, padding);
    }
    let pixels: Vec<u16> = values.iter().copied().collect();
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(pixels.into()),
    ));
    let meta = obj.meta_mut();
    meta.media_storage_sop_instance_uid = sop;
    meta.set_transfer_syntax(&dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN);
    meta.update_information_group_length();
    obj.write_to_file(out).expect("the derived copy is written");
}

/// The ring markers that models/test-marker-landmarks finds (its markers.json).
pub struct Markers {
    pub radii: BTreeMap<String, f64>,
    pub bright_half_width: f64,
    pub dark_width: f64,
    pub input_size: f64,
}

pub fn markers() -> Markers {
    let text =
        std::fs::read_to_string(root().join("models/test-marker-landmarks/markers.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    Markers {
        radii: serde_json::from_value(json["radii"].clone()).unwrap(),
        bright_half_width: json["bright_half_width"].as_f64().unwrap(),
        dark_width: json["dark_width"].as_f64().unwrap(),
        input_size: json["input_size"].as_f64().unwrap(),
    }
}

impl Markers {
    /// Draws the marker of `landmark` centred at (x, y) image pixels: bright ring at `bright`,
    /// dark rings at `dark`, anti-aliased (8 x 8 samples per pixel).
    pub fn draw(
        &self,
        image: &mut ndarray::Array2<f32>,
        landmark: &str,
        (x, y): (f64, f64),
        bright: f32,
        dark: f32,
    ) {
        let (rows, columns) = image.dim();
        // Model-input pixels to image pixels (letterbox: the longer side fills the input).
        let scale = rows.max(columns) as f64 / self.input_size;
        let radius = self.radii[landmark] * scale;
        let half = self.bright_half_width * scale;
        let outer = half + self.dark_width * scale;
        let reach = (radius + outer + 2.0).ceil() as isize;
        for r in (y as isize - reach).max(0)..(y as isize + reach + 1).min(rows as isize) {
            for c in (x as isize - reach).max(0)..(x as isize + reach + 1).min(columns as isize) {
                let (mut b, mut d) = (0.0, 0.0);
                for i in 0..8 {
                    for j in 0..8 {
                        let sy = r as f64 + (i as f64 + 0.5) / 8.0 - 0.5;
                        let sx = c as f64 + (j as f64 + 0.5) / 8.0 - 0.5;
                        let off = ((sx - x).hypot(sy - y) - radius).abs();
                        if off <= half {
                            b += 1.0 / 64.0;
                        } else if off <= outer {
                            d += 1.0 / 64.0;
                        }
                    }
                }
                let v = &mut image[(r as usize, c as usize)];
                *v = *v * (1.0 - b - d) as f32 + bright * b as f32 + dark * d as f32;
            }
        }
    }
}

// The sample film with drawn markers, and `radassist analyze` on it (tests/analysis.rs,
// tests/draft.rs).

pub const SAMPLE: &str = "siim_chest_pa_jpeg_baseline.dcm";
/// The sample's Pixel Spacing, mm.
pub const SPACING: f64 = 0.168;
/// Stored values are the sample's 8-bit values times this (room for anti-aliased markers).
pub const STORED_SCALE: f32 = 256.0;

/// Runs radassist in the repository root and requires it to succeed (stderr in the failure).
pub fn run_radassist(args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args(args)
        .envs(backends::environment())
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One device's check in `radassist analyze --json`'s result.
pub fn device<'a>(result: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    result["current"]["placement"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == name)
        .unwrap()
}

pub fn analyze_json(args: &[&str]) -> serde_json::Value {
    let args: Vec<&str> = ["analyze"]
        .iter()
        .chain(args)
        .chain(&["--json", "--provider", "cpu"])
        .copied()
        .collect();
    serde_json::from_slice(&run_radassist(&args).stdout).unwrap()
}

/// The sample's modality values (8-bit, 0 to 255).
pub fn sample_values() -> ndarray::Array2<f32> {
    radassist::dicom::read_file(&sample(SAMPLE), &radassist::dicom::DecodeLimits::default())
        .unwrap()
        .values
}

pub fn stored(values: &ndarray::Array2<f32>) -> ndarray::Array2<u16> {
    values.mapv(|v| (v * STORED_SCALE).round().clamp(0.0, 65535.0) as u16)
}

/// Draws markers at positions given in mm from the carina (x to the image's right, y down),
/// writes the film as a new instance, and returns its path.
pub fn marked_film(
    dir: &Path,
    label: &str,
    carina: (f64, f64),
    placed: &[(&str, f64, f64)],
) -> std::path::PathBuf {
    let mut values = sample_values();
    let m = markers();
    let at = |dx_mm: f64, dy_mm: f64| (carina.0 + dx_mm / SPACING, carina.1 + dy_mm / SPACING);
    for &(name, dx, dy) in placed {
        m.draw(&mut values, name, at(dx, dy), 255.0, 0.0);
    }
    let path = dir.join(format!("{label}.dcm"));
    write_derived(
        &sample(SAMPLE),
        &stored(&values),
        &Derived {
            label,
            new_study_date: None,
            padding_value: None,
            patient_id: None,
        },
        &path,
    );
    path
}

// `radassist serve` for the service tests: a server process on an ephemeral loopback port.

pub const PACS_TOKEN: &str = "pacs-token-0123456789";
pub const RADIOLOGIST_TOKEN: &str = "radiologist-token-0123456789";
pub const SECOND_RADIOLOGIST_TOKEN: &str = "radiologist-2-token-0123456789";
pub const QA_TOKEN: &str = "qa-token-0123456789";
pub const ADMIN_TOKEN: &str = "admin-token-0123456789";

/// The lines a test server wrote on stderr, as they arrive.
#[derive(Default)]
pub struct ServerLog {
    lines: std::sync::Mutex<Vec<String>>,
    grew: std::sync::Condvar,
}

impl ServerLog {
    fn push(&self, line: String) {
        self.lines.lock().unwrap().push(line);
        self.grew.notify_all();
    }

    /// Whether a line so far contains `text`.
    pub fn contains(&self, text: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// Waits, at most `timeout`, for a line containing `text`; whether one came.
    pub fn wait_for(&self, text: &str, timeout: std::time::Duration) -> bool {
        let lines = self.lines.lock().unwrap();
        let (_lines, waited) = self
            .grew
            .wait_timeout_while(lines, timeout, |lines| {
                !lines.iter().any(|l| l.contains(text))
            })
            .unwrap();
        !waited.timed_out()
    }
}

pub struct Server {
    pub child: std::process::Child,
    pub address: String,
    pub metrics: String,
    /// The DICOM listener's address, when `[dicom] listen` is set.
    pub dicom: String,
    /// The web app's URL (http://127.0.0.1:PORT unless a test configures `[web]`).
    pub web: String,
    pub config: PathBuf,
    pub data: PathBuf,
    /// The PEM certificate to trust when gRPC is served over TLS (see `trusting`).
    pub tls_ca: Option<Vec<u8>>,
    /// Every line the server wrote on stderr (its log), so far.
    pub log: std::sync::Arc<ServerLog>,
}

impl Server {
    /// Starts the server with its data in `dir` (an existing store is reopened).
    pub fn start(dir: &Path) -> Server {
        Server::start_with(dir, "")
    }

    /// As `start`, with more `[service]` keys (TOML lines).
    pub fn start_with(dir: &Path, service_keys: &str) -> Server {
        Server::start_configured(dir, service_keys, "", &[])
    }

    /// As `start_with`, with more sections (TOML, e.g. an `[analysis]` table) and environment
    /// variables for the server process.
    pub fn start_configured(
        dir: &Path,
        service_keys: &str,
        sections: &str,
        env: &[(&str, &str)],
    ) -> Server {
        Server::start_process(dir, service_keys, sections, env, "all")
    }

    /// As `start_configured`, as `radassist serve --role ROLE` (a worker has no gRPC address:
    /// it is ready when it takes jobs).
    pub fn start_process(
        dir: &Path,
        service_keys: &str,
        sections: &str,
        env: &[(&str, &str)],
        role: &str,
    ) -> Server {
        let stable = if service_keys.contains("stable_study_seconds") {
            ""
        } else {
            "stable_study_seconds = 3600\n"
        };
        use std::io::BufRead;
        // Every test server has its own web port (the default, 8080, would be shared).
        let web_section = if sections.contains("[web]") {
            ""
        } else {
            "[web]\nlisten = \"127.0.0.1:0\"\n"
        };
        let data = dir.join("data");
        let config = dir.join("radassist.toml");
        // The selected store backend, unless the test names its own.
        let backend = if sections.contains("[store]") {
            String::new()
        } else {
            backends::sections_for(&data)
        };
        std::fs::write(
            &config,
            format!(
                "[inference]\nprovider = \"cpu\"\nmodels = {:?}\n\n[service]\nlisten = \"127.0.0.1:0\"\ndata_dir = {:?}\n\
                 metrics_listen = \"127.0.0.1:0\"\n{stable}max_concurrent_streams = 16\n{service_keys}\n\n\
                 [[service.tokens]]\ntoken = \"{PACS_TOKEN}\"\nname = \"pacs-router\"\nrole = \"pacs\"\n\n\
                 [[service.tokens]]\ntoken = \"{RADIOLOGIST_TOKEN}\"\nname = \"dr-jane\"\nrole = \"radiologist\"\n\n\
                 [[service.tokens]]\ntoken = \"{SECOND_RADIOLOGIST_TOKEN}\"\nname = \"dr-omar\"\nrole = \"radiologist\"\n\n\
                 [[service.tokens]]\ntoken = \"{QA_TOKEN}\"\nname = \"qa-lee\"\nrole = \"qa\"\n\n\
                 [[service.tokens]]\ntoken = \"{ADMIN_TOKEN}\"\nname = \"it-admin\"\nrole = \"admin\"\n\n{web_section}{backend}{sections}\n",
                root().join("models").display().to_string(),
                data.display().to_string()
            ),
        )
        .unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_radassist"));
        command
            .args([
                "serve",
                "--role",
                role,
                "--config",
                config.to_str().unwrap(),
            ])
            .envs(backends::environment())
            .envs(env.iter().copied())
            .current_dir(root())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        // The server dies with the test process, even when that is killed (a timeout): no
        // orphan keeps the test runner's pipes open.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(ServerLog::default());
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("[server] {line}");
                kept.push(line.clone());
                let _ = tx.send(line);
            }
        });
        let (mut address, mut metrics, mut dicom, mut web) =
            (String::new(), String::new(), String::new(), String::new());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut ready = false;
        while !ready {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("the server starts within 60 s");
            ready = line.starts_with("radassist: listening on ")
                || line.starts_with("radassist: worker taking jobs");
            if let Some(a) = line.strip_prefix("radassist: listening on ") {
                address = a.split_whitespace().next().unwrap().to_string();
            }
            if let Some(m) = line.strip_prefix("radassist: metrics on http://") {
                metrics = m.trim_end_matches("/metrics").to_string();
            }
            if let Some(w) = line.strip_prefix("radassist: web app on ") {
                web = w.trim().to_string();
            }
            if let Some(d) = line.strip_prefix("radassist: DICOM listener on ") {
                dicom = d.split_whitespace().next().unwrap().to_string();
            }
        }
        Server {
            child,
            address,
            metrics,
            dicom,
            web,
            config,
            data,
            tls_ca: None,
            log,
        }
    }

    /// For a server started with `tls_cert`: `channel` then speaks TLS, trusting `cert` (whose
    /// names include "localhost").
    pub fn trusting(mut self, cert: &Path) -> Server {
        self.tls_ca = Some(std::fs::read(cert).unwrap());
        self
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A connected client channel.
    pub async fn channel(&self) -> tonic::transport::Channel {
        let Some(ca) = &self.tls_ca else {
            return tonic::transport::Channel::from_shared(self.url())
                .unwrap()
                .connect()
                .await
                .unwrap();
        };
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca))
            .domain_name("localhost");
        tonic::transport::Channel::from_shared(format!("https://{}", self.address))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// kill -9.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::forget(self);
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request carrying a bearer token.
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if !token.is_empty() {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

/// One instance as StoreInstances messages, in 1 MiB chunks (what the proto recommends).
pub fn chunks(index: u32, bytes: &[u8]) -> Vec<radassist::grpc::proto::StoreInstancesRequest> {
    let pieces: Vec<&[u8]> = bytes.chunks(1 << 20).collect();
    let last = pieces.len() - 1;
    pieces
        .iter()
        .enumerate()
        .map(|(i, c)| radassist::grpc::proto::StoreInstancesRequest {
            instance_index: index,
            chunk: c.to_vec().into(),
            last_chunk: i == last,
        })
        .collect()
}

/// The sample film as a new instance of one study (a new SOP Instance UID from `label`).
pub fn reidentified_instance(label: &str, study_label: &str) -> Vec<u8> {
    use dicom_dictionary_std::tags;
    rewritten(
        "sample-dicom/derived/siim_chest_pa_devices.dcm",
        &[
            (tags::SOP_INSTANCE_UID, uid_for(label)),
            (tags::STUDY_INSTANCE_UID, uid_for(study_label)),
        ],
    )
}

/// The sample film as study `i` of a patient of its own (UIDs and Patient ID from `label` and
/// `i`): a site's new patients, with no prior to compare with.
pub fn new_patient_study(label: &str, i: usize) -> Vec<u8> {
    use dicom_dictionary_std::tags;
    rewritten(
        "sample-dicom/derived/siim_chest_pa_devices.dcm",
        &[
            (tags::SOP_INSTANCE_UID, uid_for(&format!("{label}-{i}"))),
            (
                tags::STUDY_INSTANCE_UID,
                uid_for(&format!("{label}-study-{i}")),
            ),
            (tags::PATIENT_ID, format!("{}-{i}", label.to_uppercase())),
        ],
    )
}

/// A copy of `path` as another study of the same patient on `date` (new UIDs from `label`).
pub fn redated_instance(path: &str, label: &str, date: &str) -> Vec<u8> {
    use dicom_dictionary_std::tags;
    rewritten(
        path,
        &[
            (tags::SOP_INSTANCE_UID, uid_for(&format!("{label}/sop"))),
            (tags::STUDY_INSTANCE_UID, uid_for(&format!("{label}/study"))),
            (
                tags::SERIES_INSTANCE_UID,
                uid_for(&format!("{label}/series")),
            ),
            (tags::STUDY_DATE, date.to_string()),
        ],
    )
}

/// The Part-10 bytes of `path` (under the repository) with `values` put in (VRs from the
/// dictionary) and the file meta's SOP Instance UID kept in step.
pub fn rewritten(path: &str, values: &[(dicom_core::Tag, String)]) -> Vec<u8> {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    use dicom_core::{DataElement, PrimitiveValue};
    use dicom_dictionary_std::{tags, StandardDataDictionary};
    let mut obj = dicom_object::open_file(root().join(path)).unwrap();
    for (tag, value) in values {
        let vr = StandardDataDictionary.by_tag(*tag).unwrap().vr().relaxed();
        obj.put(DataElement::new(
            *tag,
            vr,
            PrimitiveValue::from(value.as_str()),
        ));
        if *tag == tags::SOP_INSTANCE_UID {
            obj.meta_mut().media_storage_sop_instance_uid = value.clone();
        }
    }
    obj.meta_mut().update_information_group_length();
    let mut bytes = Vec::new();
    obj.write_all(&mut bytes).unwrap();
    bytes
}

/// Watches a study until the server ends the watch (DRAFT_READY, FAILED or SIGNED), at most
/// 120 s; the last state seen.
pub async fn watch_until_settled(
    channel: &tonic::transport::Channel,
    study: &str,
) -> radassist::grpc::proto::study::State {
    use radassist::grpc::proto::{
        ingest_service_client::IngestServiceClient, study, WatchStudyRequest,
    };
    let mut ingest = IngestServiceClient::new(channel.clone());
    let mut watch = ingest
        .watch_study(with_token(
            WatchStudyRequest { name: study.into() },
            PACS_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut last = study::State::Unspecified;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    while let Ok(Ok(Some(s))) = tokio::time::timeout_at(deadline, watch.message()).await {
        last = study::State::try_from(s.state).unwrap();
    }
    last
}

/// Completes the study and watches it until it settles.
pub async fn complete_and_wait(
    channel: &tonic::transport::Channel,
    study: &str,
) -> radassist::grpc::proto::study::State {
    use radassist::grpc::proto::{
        ingest_service_client::IngestServiceClient, CompleteStudyRequest,
    };
    IngestServiceClient::new(channel.clone())
        .complete_study(with_token(
            CompleteStudyRequest { name: study.into() },
            PACS_TOKEN,
        ))
        .await
        .unwrap();
    watch_until_settled(channel, study).await
}

/// Stores one instance by gRPC (it must be STORED), completes its study and watches it until
/// it settles; the study's name ("studies/UID") and the state it settled in.
pub async fn store_and_settle(
    channel: &tonic::transport::Channel,
    bytes: Vec<u8>,
) -> (String, radassist::grpc::proto::study::State) {
    let results = store_instances(channel, &[bytes]).await;
    assert_eq!(
        results[0].outcome,
        radassist::grpc::proto::instance_result::Outcome::Stored as i32,
        "{results:?}"
    );
    let study = results[0].study.clone();
    let state = complete_and_wait(channel, &study).await;
    (study, state)
}

/// A copy of the sample film `path` as a study of its own: new Study, Series and SOP Instance
/// UIDs made from `label`.
pub fn study_copy(path: &str, label: &str) -> Vec<u8> {
    use dicom_dictionary_std::tags;
    rewritten(
        path,
        &[
            (tags::SOP_INSTANCE_UID, uid_for(&format!("{label}/sop"))),
            (tags::STUDY_INSTANCE_UID, uid_for(&format!("{label}/study"))),
            (
                tags::SERIES_INSTANCE_UID,
                uid_for(&format!("{label}/series")),
            ),
        ],
    )
}

/// A loopback port that was free a moment ago (for a peer that must be told its port before
/// it starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A self-signed certificate (its own CA) for `names` (DNS names or IP addresses), its
/// Common Name `name` (each its own, so that a file of several trusted ones finds the right
/// issuer), written as NAME.pem and NAME.key in `dir`.
pub fn certificate(dir: &Path, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("radassist test {name}"));
    let signing_key = rcgen::KeyPair::generate().unwrap();
    let certified = params.self_signed(&signing_key).unwrap();
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, certified.pem()).unwrap();
    std::fs::write(&key, signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// Set in a test's re-run inside its own network namespace (see `in_own_network`).
const IN_OWN_NAMESPACE: &str = "RADASSIST_TEST_OWN_NETWORK";

/// For tests whose peer cannot be bound to loopback (dcmtk 3.6.7's storescp, Orthanc's DICOM
/// port): runs the test `name` again inside a network namespace whose only interface is
/// loopback, and says whether the caller is that run (then it does the work; otherwise the
/// re-run has passed and the caller returns). Nothing outside the namespace can reach the peers
/// or radassist. `name` is the test's path, `concat!(module_path!(), "::test_name")`.
pub fn in_own_network(name: &str) -> bool {
    in_own_namespace(
        name,
        &[
            "--net",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ],
        "network namespace",
    )
}

/// For tests that mount a filesystem (a small disk that fills up): runs the test `name` again
/// in a mount namespace of its own, so its mounts are seen by nothing else and vanish with it;
/// says whether the caller is that run (as [`in_own_network`]).
pub fn in_own_mounts(name: &str) -> bool {
    in_own_namespace(name, &["--mount"], "mount namespace")
}

/// For tests that mount a filesystem and talk to a peer that cannot be bound to loopback (the
/// power-cut tests: their data folder on the power-loss filesystem, storescp as the PACS): both
/// namespaces of their own, as [`in_own_mounts`] and [`in_own_network`].
pub fn in_own_mounts_and_network(name: &str) -> bool {
    in_own_namespace(
        name,
        &[
            "--mount",
            "--net",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ],
        "mount and network namespace",
    )
}

/// Runs test `name` again under `unshare` with `arguments` (the namespace, then the command
/// that execs the test binary given as `$0`), unless this is that run.
fn in_own_namespace(name: &str, arguments: &[&str], what: &str) -> bool {
    if std::env::var_os(IN_OWN_NAMESPACE).is_some() {
        return true;
    }
    // `name` from module_path!(): the test harness names tests without the crate.
    let name = name
        .strip_prefix(concat!(env!("CARGO_CRATE_NAME"), "::"))
        .unwrap_or(name);
    // As root a plain namespace; otherwise in a user namespace of its own too.
    let mut unshare = std::process::Command::new("unshare");
    if unsafe { libc::geteuid() } != 0 {
        unshare.arg("--map-root-user");
    }
    let status = unshare
        .args(arguments)
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(IN_OWN_NAMESPACE, "1")
        .status()
        .expect("unshare (util-linux) and ip (iproute2) are installed by scripts/setup");
    assert!(
        status.success(),
        "{name} failed in its {what} (see its output above; if unshare itself failed, this \
         machine does not allow a {what})"
    );
    false
}

/// Runs a dcmtk tool against the server; (exit status ok, stdout + stderr).
pub fn dcmtk(
    tool: &str,
    server: &Server,
    calling: &str,
    called: &str,
    rest: &[&str],
) -> (bool, String) {
    let (host, port) = server.dicom.rsplit_once(':').unwrap();
    let output = std::process::Command::new(tool)
        .args([
            "-aet", calling, "-aec", called, "-to", "20", "-ta", "20", "-td", "20",
        ])
        .args(rest.iter().filter(|a| a.starts_with('-')))
        .args([host, port])
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

/// The lines of a dcmtk tool's debug output (`-d`) that give a DIMSE status or its Error
/// Comment.
pub fn dimse_status(text: &str) -> String {
    text.lines()
        .filter(|l| l.contains("DIMSE Status") || l.contains("ErrorComment"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// dcmtk's storescp as the PACS (AE title PACS) on `port`, storing into `out`, with more
/// `options` (its TLS ones); its log (stderr; stdout carries only a progress bar) goes line by
/// line to `read_log` on a thread of its own. Returns once it accepts connections (storescp
/// logs nothing on start). Run it in a network namespace of the test's own: it binds every
/// address.
pub fn storescp(
    port: u16,
    out: &Path,
    options: &[&Path],
    read_log: impl FnOnce(&mut dyn Iterator<Item = String>) + Send + 'static,
) -> std::process::Child {
    use std::io::BufRead;
    let mut child = std::process::Command::new("storescp")
        .args(["-v", "-aet", "PACS"])
        .args(options)
        .arg("-od")
        .arg(out)
        .arg(port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("storescp (dcmtk) is installed by scripts/setup");
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok);
        read_log(&mut lines);
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "storescp did not start on port {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child
}

/// Sends `file` to the server's DICOM listener with dcmtk's storescu, calling as STORESCU
/// (the tests' configured peer).
pub fn storescu_to(server: &Server, file: &Path) {
    let (host, port) = server.dicom.rsplit_once(':').unwrap();
    let sent = std::process::Command::new("storescu")
        .args(["-aet", "STORESCU", "-aec", "RADASSIST", host, port])
        .arg(file)
        .status()
        .unwrap();
    assert!(sent.success(), "storescu {}", file.display());
}

/// An HTTP GET on the loopback (the metrics endpoint): the whole response, headers included.
pub fn http_get(address: &str, path: &str) -> String {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Waits (at most a minute) until the server's workers have loaded their models, so that
/// loading does not share the CPU with what is measured; the packs.
pub async fn wait_for_models(
    channel: &tonic::transport::Channel,
) -> Vec<radassist::grpc::proto::ModelPack> {
    use radassist::grpc::proto::{model_service_client::ModelServiceClient, ListModelsRequest};
    let mut models = ModelServiceClient::new(channel.clone());
    for _ in 0..600 {
        let packs = models
            .list_models(with_token(ListModelsRequest {}, ADMIN_TOKEN))
            .await
            .unwrap()
            .into_inner()
            .packs;
        if !packs.is_empty() {
            return packs;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the server's models did not load within a minute");
}

/// Pushes `instances` in one StoreInstances stream (1 MiB chunks); the result per instance.
pub async fn store_instances(
    channel: &tonic::transport::Channel,
    instances: &[Vec<u8>],
) -> Vec<radassist::grpc::proto::InstanceResult> {
    use radassist::grpc::proto::ingest_service_client::IngestServiceClient;
    let messages: Vec<_> = instances
        .iter()
        .enumerate()
        .flat_map(|(i, b)| chunks(i as u32, b))
        .collect();
    IngestServiceClient::new(channel.clone())
        .store_instances(with_token(tokio_stream::iter(messages), PACS_TOKEN))
        .await
        .unwrap()
        .into_inner()
        .results
}

/// The value of an unlabelled metric on the server's /metrics (at `address`).
pub fn metric(address: &str, name: &str) -> f64 {
    let text = http_get(address, "/metrics");
    let prefix = format!("\n{name} ");
    let at = text
        .find(&prefix)
        .unwrap_or_else(|| panic!("no {name} in {text}"));
    let rest = &text[at + prefix.len()..];
    rest[..rest.find('\n').unwrap()].trim().parse().unwrap()
}

// The web reading room, over plain HTTP (tests/web.rs, benches/web.rs).

/// Adds a person through the command line, as a site's administrator would.
pub fn add_web_user(config: &Path, name: &str, role: &str, password: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args([
            "users",
            "add",
            name,
            "--role",
            role,
            "--password-stdin",
            "--config",
        ])
        .arg(config)
        .envs(backends::environment())
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One HTTP/1.1 exchange with the web app at `web` (http://ADDRESS): (status, headers, body);
/// header names are lower case (HTTP/1 as hyper writes them), values as sent.
pub fn web_request(
    web: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use std::io::Write;
    let address = web.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

/// Logs in to the web app; the session cookie ("radassist_session=..."), or the status and
/// response when the login is refused.
/// Where the browser tests put their screenshots: target/web-screenshots, or
/// RADASSIST_SCREENSHOTS.
pub fn screenshots() -> std::path::PathBuf {
    let dir = std::env::var_os("RADASSIST_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root().join("target/web-screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn web_login(web: &str, name: &str, password: &str) -> Result<String, (u16, String)> {
    let form = format!("username={name}&password={}", password.replace(' ', "+"));
    let (status, head, body) = web_request(
        web,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &form,
    );
    let cookie = head.lines().find_map(|l| {
        l.to_lowercase()
            .starts_with("set-cookie: ")
            .then(|| l["set-cookie: ".len()..].to_string())
    });
    match cookie {
        Some(cookie) if status == 303 => Ok(cookie.split(';').next().unwrap().to_string()),
        _ => Err((status, format!("{head}\n{body}"))),
    }
}

/// dciodvfy's complaints, split into errors and warnings.
pub fn dciodvfy(path: &std::path::Path) -> (Vec<String>, Vec<String>) {
    let out = std::process::Command::new("dciodvfy")
        .arg(path)
        .output()
        .expect("dciodvfy (dicom3tools) is installed by scripts/setup");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let errors = lines
        .iter()
        .filter(|l| l.starts_with("Error"))
        .cloned()
        .collect();
    let warnings = lines
        .iter()
        .filter(|l| l.starts_with("Warning"))
        .cloned()
        .collect();
    (errors, warnings)
}

/// dcmtk's dump of an SR's tree.
pub fn dsrdump(path: &std::path::Path) -> String {
    let out = std::process::Command::new("dsrdump")
        .arg(path)
        .output()
        .expect("dsrdump (dcmtk) is installed by scripts/setup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

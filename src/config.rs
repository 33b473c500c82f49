//! radassist's configuration file (TOML), with environment overrides.
//!
//! Every key has a default, so a missing file or section means "the defaults". The environment
//! overrides the file: `RADASSIST_PROVIDER` (auto, cuda or cpu), `RADASSIST_MODELS` (the
//! folder of model packs), `RADASSIST_LISTEN` and `RADASSIST_DATA_DIR` (the service's). Command-line flags override both.
//!
//! ```toml
//! [inference]
//! models = "models"          # folder of model packs
//! provider = "auto"          # auto | cuda | cpu
//! intra_threads = 0          # threads inside one operator; 0: one per core
//! optimization_level = 3     # ONNX Runtime graph optimisation, 0 (none) to 3 (all)
//! cpu_arena = true           # CPU memory arena: faster, holds memory
//!
//! [inference.batching]
//! max_batch = 16             # requests run together at most
//! max_delay_ms = 0           # how long the oldest request waits for others; 0: run at once with
//!                            # whatever is queued (batches still form under load)
//! queue_capacity = 256       # waiting requests beyond this are refused (retry later)
//!
//! [analysis]                 # the packs a study's analysis uses, by folder name under
//! findings = "test-findings" # inference.models ("" skips that part); the defaults are the
//! landmarks = "test-marker-landmarks"   # shipped test packs: replace them with a site's own
//! text = "minilm"            # text-embedding pack: matches prior report sentences
//! report = ""                # vision-language report pack that writes the draft's text
//!                            # ("": the structured renderer writes it)
//!
//! [analysis.generation]      # how a report pack generates
//! beams = 1                  # 1: greedy; more: beam search with this many beams
//! max_new_tokens = 0         # at most this many tokens; 0: the pack's own max_new_tokens
//!
//! [analysis.change]          # comparison with priors
//! present = 0.5              # a finding is present at or above this probability
//! change = 0.15              # present on both: increased/decreased by at least this much
//! tip_moved_mm = 10.0        # a device tip moved by at least this much (after alignment)
//!
//! [service]                  # radassist serve
//! listen = "127.0.0.1:50051" # gRPC address (env RADASSIST_LISTEN); TLS when both below are set
//! allow_plaintext = false    # serve without TLS on an address that is not loopback (only
//!                            # behind a TLS-terminating proxy): refused to start otherwise
//! tls_cert = "server.pem"    # PEM certificate chain and key (rustls)
//! tls_key = "server.key"
//! data_dir = "radassist-data"   # blobs and the SQLite database (env RADASSIST_DATA_DIR)
//! max_instance_bytes = 268435456  # larger instances are rejected
//! min_free_bytes = 268435456  # the data disk's reserve: below it (with the instance) new
//!                            # instances are refused for now (gRPC RETRY_LATER, C-STORE A700)
//!                            # and health says why, so signing and the outbox can still write
//! max_concurrent_streams = 32    # more ingest streams get RESOURCE_EXHAUSTED + retry-after-ms
//! max_ingest_memory_bytes = 1073741824  # received bytes not yet stored, all streams together;
//!                            # at the limit a stream waits (HTTP/2 flow control slows its sender)
//! ingest_memory_wait_ms = 10000  # ... and after this long without room, RESOURCE_EXHAUSTED
//! stable_study_seconds = 300 # a study with no new instance this long is complete
//! max_attempts = 3           # analysis attempts before a study is FAILED (a panic counts)
//! analysis_workers = 2       # studies analysed at once; their images and prompts share
//!                            # batches of each model (inference.batching)
//! metrics_listen = "127.0.0.1:9464"  # Prometheus text at /metrics ("" disables)
//! organization = ""          # who signs: the signed SR's Verifying Organization ("": the
//!                            # image's Institution Name, else "not recorded")
//!
//! [[service.tokens]]         # bearer tokens (at least 16 characters) and their roles
//! token = "..."
//! name = "pacs-router-1"     # who, in the audit log
//! role = "pacs"              # pacs | radiologist | qa | admin
//!
//! [dicom]                    # the DICOM listener of radassist serve (C-ECHO, C-STORE)
//! listen = "127.0.0.1:11112" # "" (the default) disables it
//! ae_title = "RADASSIST"     # the Called AE Title it answers to (others are rejected)
//! max_associations = 16      # open at once; more are rejected (transient, local limit;
//!                            # over DICOM TLS, aborted once negotiated)
//! max_pdu_length = 65536     # the largest P-DATA PDU it takes (4096 to 16777216)
//! idle_timeout_seconds = 60  # an association silent this long is aborted
//! associate_timeout_seconds = 10  # a connection gets this long to send its A-ASSOCIATE-RQ;
//!                            # until it has, it holds no association slot
//! max_unassociated_per_address = 8  # connections from one address still to send their RQ;
//!                            # one more closes the oldest of them
//! tls = false                # DICOM TLS (PS3.15 BCP 195: TLS 1.2 or 1.3) on the listener,
//!                            # with service.tls_cert and tls_key; plain DICOM is then refused
//! prior_retrieval_timeout_seconds = 30  # the most a PACS search for a prior delays a draft
//!
//! [[dicom.peers]]            # who may associate, and where radassist reaches them
//! ae_title = "ORTHANC"       # the Calling AE Title; accepted only from `host`'s addresses
//! host = "127.0.0.1"
//! port = 4242
//! send_results = false       # radassist C-STOREs its results here (IHE AI Results):
//! results = ["report", "measurements", "presentation-state", "summary-image"]  # which ones
//!                            # (the default: all four): the report SR (draft, then signed,
//!                            # then amended), the TID 1500 measurement report, the
//!                            # presentation state with the marks, the summary image
//! query_priors = false       # radassist asks it for priors (C-FIND) and retrieves them (C-MOVE)
//! tls = false                # radassist reaches it over DICOM TLS (TLS 1.2 or 1.3), showing
//!                            # service.tls_cert and tls_key when set (for peers that ask)
//! tls_ca = "pacs-ca.pem"     # with tls: the PEM CA certificate(s) its certificate must chain to
//! tls_server_name = "pacs.example.org"  # the name its certificate must carry (default: host)
//! dicomweb = "https://pacs.example.org/dicom-web"  # its DICOMweb service: results by STOW-RS,
//!                            # priors by QIDO-RS and WADO-RS (no listener needed), not DIMSE
//! dicomweb_token = "..."     # with dicomweb: the bearer token its requests carry
//!
//! [web]                      # the reading room (people log in: `radassist users add`)
//! listen = "127.0.0.1:8080"  # "" disables it; HTTPS with service.tls_cert and tls_key, and
//!                            # not loopback needs them (or service.allow_plaintext)
//! session_idle_minutes = 30  # a session ends this long after its last request
//! session_hours = 12         # ... and at the latest this long after its login
//! origins = ["https://radassist.example.org"]  # the addresses people open it at (scheme,
//!                            # host, port): a login form from elsewhere is refused; the
//!                            # listener's own address (and localhost on loopback) always count
//! request_timeout_seconds = 20  # a request's headers, then its body, must arrive within this
//!
//! [store]                    # the catalogue: studies, jobs, drafts, reads, audit
//! backend = "sqlite"         # sqlite (embedded, in service.data_dir) | postgres
//! url = "host=db.example.org user=radassist dbname=radassist"  # postgres: a libpq-style
//!                            # string or postgresql:// URL; the password goes in the
//!                            # environment (RADASSIST_STORE_PASSWORD), not here
//! pool_size = 16             # postgres: connections this process holds at most
//! job_lease_seconds = 60     # postgres: a worker renews its job's lease; a job whose lease
//!                            # ran out (its worker died) is taken again
//! connect_timeout_seconds = 10  # postgres: how long a start waits for the database
//! tls_ca = "db-ca.pem"       # postgres: the PEM CA certificate(s) the database's certificate
//!                            # must chain to; set, radassist speaks only TLS (1.2+) to it,
//!                            # checking its name; unset, plain (loopback, a private network)
//!
//! [blobs]                    # where the DICOM instances themselves live
//! backend = "folder"         # folder | s3
//! path = "/srv/radassist"    # folder: the folder (default: service.data_dir); several
//!                            # processes may share one (a network file system)
//! bucket = "radassist"       # s3: the bucket, which must exist
//! endpoint = "https://s3.example.org"  # s3: the S3-compatible server ("": AWS itself)
//! region = "us-east-1"       # s3
//! allow_http = false         # s3: a plain-HTTP endpoint (a loopback test server, say)
//!                            # credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in
//!                            # the environment, never in this file and never logged
//!
//! [placement]                # tube and line rules (src/placement/rules.rs has every value
//!                            # and its source)
//! paediatric_below_years = 18.0
//! min_confidence = 0.5       # landmarks found with less confidence count as not found
//! edge_margin_mm = 3.0       # a tip this close to the edge may continue beyond the field
//!
//! [placement.adult.endotracheal_tube]   # any key of a device's rule; the rest keep defaults
//! min_safe_mm = 20.0         # also ideal_low_mm, ideal_high_mm, max_mm
//! [placement.adult.enteral_tube]
//! min_below_diaphragm_mm = 10.0
//! [placement.adult.central_venous_catheter]
//! junction_below_carina_mm = 35.0       # also junction_band_half_width_mm,
//!                            # max_above_carina_mm, atrium_depth_mm, max_from_midline_mm
//! [placement.paediatric.endotracheal_tube]
//! min_safe_mm = 5.0          # the paediatric set takes the same keys
//! ```

use crate::analysis::AnalysisPacks;
use crate::draft::objects::ResultObject;
use crate::draft::writer::GenerationSettings;
use crate::inference::batcher::BatchingConfig;
use crate::inference::session::{Provider, SessionSettings};
use crate::placement::rules::RuleTable;
use crate::priors::ChangeThresholds;
use crate::roles::Role;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub inference: InferenceConfig,
    pub analysis: AnalysisConfig,
    pub placement: RuleTable,
    pub service: ServiceConfig,
    pub dicom: DicomConfig,
    pub web: WebConfig,
    pub store: StoreConfig,
    pub blobs: BlobsConfig,
}

/// Which database holds the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// SQLite in `service.data_dir`: one process.
    #[default]
    Sqlite,
    /// A PostgreSQL server: any number of front ends and workers.
    Postgres,
}

/// The catalogue's database (`[store]`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// PostgreSQL: a libpq-style connection string or a postgresql:// URL. The password is
    /// read from `RADASSIST_STORE_PASSWORD` when set, so that it need not be in a file.
    pub url: String,
    /// PostgreSQL: the most connections this process holds.
    pub pool_size: u32,
    /// PostgreSQL: how long a taken job is a worker's without a renewal.
    pub job_lease_seconds: u64,
    /// PostgreSQL: how long a start (or a pool checkout) waits for the database.
    pub connect_timeout_seconds: u64,
    /// PostgreSQL over TLS: the CA certificate(s) (PEM) its certificate must chain to.
    pub tls_ca: Option<PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Sqlite,
            url: String::new(),
            pool_size: 16,
            job_lease_seconds: 60,
            connect_timeout_seconds: 10,
            tls_ca: None,
        }
    }
}

/// The connection string may carry a password: never printed.
impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("backend", &self.backend)
            .field("url", &"(not shown)")
            .field("pool_size", &self.pool_size)
            .field("job_lease_seconds", &self.job_lease_seconds)
            .field("tls_ca", &self.tls_ca)
            .finish()
    }
}

/// Where the DICOM blobs live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BlobBackend {
    /// A folder of the file system.
    #[default]
    Folder,
    /// An S3-compatible object store.
    S3,
}

/// The blob store (`[blobs]`). S3 credentials come from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), never from this file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlobsConfig {
    pub backend: BlobBackend,
    /// Folder: where (default: `service.data_dir`).
    pub path: Option<PathBuf>,
    /// S3: the bucket (it must exist).
    pub bucket: String,
    /// S3: the server's URL ("": AWS).
    pub endpoint: String,
    pub region: String,
    /// S3: allow a plain-HTTP endpoint.
    pub allow_http: bool,
}

impl Default for BlobsConfig {
    fn default() -> Self {
        BlobsConfig {
            backend: BlobBackend::Folder,
            path: None,
            bucket: String::new(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            allow_http: false,
        }
    }
}

/// The web reading room of `radassist serve` (HTTPS with `service.tls_cert` when that is set).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Where the web app listens; "" disables it. Not loopback needs TLS (or
    /// `service.allow_plaintext` behind a TLS-terminating proxy), as the gRPC listener.
    pub listen: String,
    /// A session ends this long after its last request.
    pub session_idle_minutes: u64,
    /// ... and at the latest this long after its login.
    pub session_hours: u64,
    /// Where people open the reading room, as origins (`https://radassist.example.org`):
    /// the login accepts a form only from these and from the listener's own address.
    pub origins: Vec<String>,
    /// A request's headers, and then its body, must arrive within this.
    pub request_timeout_seconds: u64,
    /// The OHIF viewer's built app (the folder `scripts/setup` unpacks into `.radassist/ohif`),
    /// served at `/viewer/` to radiologists, reading this service's `/dicomweb`; "" serves none.
    pub viewer: String,
    /// Origins whose pages may call `/dicomweb` from a browser with a bearer token (CORS), as
    /// `https://host[:port]`; none by default, so no other origin can read its answers.
    pub dicomweb_cors_origins: Vec<String>,
    /// The address clients reach this listener at (`https://radassist.example.org`, with a
    /// path when a proxy serves it under one): the URLs DICOMweb answers carry start with it.
    /// "" builds them from each request's Host header.
    pub public_url: String,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: "127.0.0.1:8080".into(),
            session_idle_minutes: 30,
            session_hours: 12,
            origins: Vec::new(),
            request_timeout_seconds: 20,
            viewer: String::new(),
            dicomweb_cors_origins: Vec::new(),
            public_url: String::new(),
        }
    }
}

/// The DICOM listener of `radassist serve`, and the DICOM nodes it knows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DicomConfig {
    pub listen: String,
    pub ae_title: String,
    pub max_associations: usize,
    pub max_pdu_length: u32,
    pub idle_timeout_seconds: u64,
    /// A connection must send its A-ASSOCIATE-RQ within this; until then it holds no
    /// association slot.
    pub associate_timeout_seconds: u64,
    /// Connections from one address that have not sent their A-ASSOCIATE-RQ yet: at most this
    /// many wait; one more closes the oldest of them.
    pub max_unassociated_per_address: usize,
    /// The listener speaks DICOM TLS with service.tls_cert and service.tls_key.
    pub tls: bool,
    /// The longest a PACS query for priors (C-FIND, then C-MOVE of the chosen prior) may hold
    /// up a draft; past it the draft says that no prior could be retrieved.
    pub prior_retrieval_timeout_seconds: u64,
    pub peers: Vec<DicomPeer>,
}

impl Default for DicomConfig {
    fn default() -> Self {
        DicomConfig {
            listen: String::new(),
            ae_title: "RADASSIST".into(),
            max_associations: 16,
            max_pdu_length: 65536,
            idle_timeout_seconds: 60,
            associate_timeout_seconds: 10,
            max_unassociated_per_address: 8,
            tls: false,
            prior_retrieval_timeout_seconds: 30,
            peers: vec![],
        }
    }
}

/// A DICOM node (a PACS, a router) that may associate with radassist.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DicomPeer {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
    /// radassist sends its results here by C-STORE.
    #[serde(default)]
    pub send_results: bool,
    /// With `send_results`: which objects it takes (default: all four).
    #[serde(default = "all_result_objects")]
    pub results: Vec<ResultObject>,
    /// radassist asks it for a study's priors (C-FIND, Study Root) when the local store holds
    /// none, and retrieves the chosen prior's frontal image and its SR by C-MOVE to itself
    /// (the peer must know radassist's AE title, host and port as a move destination).
    #[serde(default)]
    pub query_priors: bool,
    /// radassist's associations with it (results, queries, retrievals) use DICOM TLS.
    #[serde(default)]
    pub tls: bool,
    /// With `tls`: the PEM certificate(s) of the CA its certificate must chain to.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// With `tls`: the DNS name or IP address its certificate must carry (default: `host`).
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// Its DICOMweb service (`https://pacs.example.org/dicom-web`): results then go by STOW-RS,
    /// priors are found by QIDO-RS and retrieved by WADO-RS, instead of by DIMSE.
    #[serde(default)]
    pub dicomweb: Option<String>,
    /// With `dicomweb`: the bearer token its requests carry (`Authorization: Bearer ...`).
    #[serde(default)]
    pub dicomweb_token: Option<String>,
}

fn all_result_objects() -> Vec<ResultObject> {
    ResultObject::ALL.to_vec()
}

/// `radassist serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    pub max_instance_bytes: usize,
    /// The data disk's reserve for signing and the outbox: an instance that would leave less
    /// free is refused for now (folder blob store only).
    pub min_free_bytes: u64,
    pub max_concurrent_streams: usize,
    pub max_ingest_memory_bytes: usize,
    pub ingest_memory_wait_ms: u64,
    pub stable_study_seconds: u64,
    pub max_attempts: u32,
    pub analysis_workers: usize,
    pub metrics_listen: String,
    pub allow_plaintext: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tokens: Vec<TokenConfig>,
    /// The organisation whose radiologists sign: the signed SR's Verifying Organization.
    pub organization: String,
}

/// A bearer token and who holds it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub token: String,
    pub name: String,
    /// pacs, radiologist, qa or admin.
    pub role: Role,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            listen: "127.0.0.1:50051".into(),
            data_dir: "radassist-data".into(),
            max_instance_bytes: 256 << 20,
            min_free_bytes: 256 << 20,
            max_concurrent_streams: 32,
            max_ingest_memory_bytes: 1 << 30,
            ingest_memory_wait_ms: 10_000,
            stable_study_seconds: 300,
            max_attempts: 3,
            analysis_workers: 2,
            metrics_listen: "127.0.0.1:9464".into(),
            allow_plaintext: false,
            tls_cert: None,
            tls_key: None,
            tokens: vec![],
            organization: String::new(),
        }
    }
}

/// A pack name or a list of them.
fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(name) => vec![name],
        OneOrMany::Many(names) => names,
    })
}

/// Which packs (folder names under `inference.models`) a study's analysis uses; "" skips one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisConfig {
    pub findings: String,
    /// One landmarks or segmentation pack, or a list of them (e.g. a detector of tube tips and
    /// an anatomy segmentation): each landmark is taken from the pack most confident in it.
    #[serde(deserialize_with = "one_or_many")]
    pub landmarks: Vec<String>,
    pub text: String,
    pub report: String,
    pub generation: GenerationSettings,
    pub change: ChangeThresholds,
    /// The site's present threshold per finding of the findings pack (its label as the key):
    /// the draft states a finding present at or above it (default 0.5).
    pub thresholds: std::collections::BTreeMap<String, f32>,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            findings: "test-findings".into(),
            landmarks: vec!["test-marker-landmarks".into()],
            text: "minilm".into(),
            report: String::new(),
            generation: GenerationSettings::default(),
            change: ChangeThresholds::default(),
            thresholds: std::collections::BTreeMap::new(),
        }
    }
}

impl Config {
    /// The analysis packs as folders.
    pub fn analysis_packs(&self) -> AnalysisPacks {
        let folder = |name: &str| (!name.is_empty()).then(|| self.inference.models.join(name));
        AnalysisPacks {
            findings: folder(&self.analysis.findings),
            landmarks: self
                .analysis
                .landmarks
                .iter()
                .filter_map(|name| folder(name))
                .collect(),
            text: folder(&self.analysis.text),
        }
    }

    /// The report pack's folder, when one writes the drafts.
    pub fn report_pack(&self) -> Option<PathBuf> {
        let name = &self.analysis.report;
        (!name.is_empty()).then(|| self.inference.models.join(name))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    pub models: PathBuf,
    pub provider: Provider,
    pub intra_threads: usize,
    pub optimization_level: u8,
    pub cpu_arena: bool,
    pub batching: BatchingSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingSection {
    pub max_batch: usize,
    pub max_delay_ms: u64,
    pub queue_capacity: usize,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        let session = SessionSettings::default();
        InferenceConfig {
            models: "models".into(),
            provider: session.provider,
            intra_threads: session.intra_threads,
            optimization_level: session.optimization_level,
            cpu_arena: session.cpu_arena,
            batching: BatchingSection::default(),
        }
    }
}

impl Default for BatchingSection {
    fn default() -> Self {
        let b = BatchingConfig::default();
        BatchingSection {
            max_batch: b.max_batch,
            max_delay_ms: b.max_delay.as_millis() as u64,
            queue_capacity: b.queue_capacity,
        }
    }
}

impl InferenceConfig {
    pub fn session_settings(&self) -> SessionSettings {
        SessionSettings {
            provider: self.provider,
            intra_threads: self.intra_threads,
            optimization_level: self.optimization_level,
            cpu_arena: self.cpu_arena,
        }
    }

    pub fn batching(&self) -> BatchingConfig {
        BatchingConfig {
            max_batch: self.batching.max_batch,
            max_delay: Duration::from_millis(self.batching.max_delay_ms),
            queue_capacity: self.batching.queue_capacity,
        }
    }
}

/// Why the configuration cannot be used: what is wrong, where, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Syntax {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value out of its range, or settings that do not go together.
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Reads `path` (when given), then applies the environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Syntax {
                    path: path.to_path_buf(),
                    source: Box::new(source),
                })?
            }
            None => Config::default(),
        };
        config
            .apply_environment(|name| std::env::var(name).ok())
            .map_err(ConfigError::Invalid)?;
        Ok(config)
    }

    fn apply_environment(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        if let Some(value) = var("RADASSIST_PROVIDER") {
            self.inference.provider = match value.to_ascii_lowercase().as_str() {
                "auto" => Provider::Auto,
                "cuda" => Provider::Cuda,
                "cpu" => Provider::Cpu,
                other => {
                    return Err(format!(
                        "RADASSIST_PROVIDER={other:?}: use auto, cuda or cpu"
                    ))
                }
            };
        }
        if let Some(value) = var("RADASSIST_MODELS") {
            self.inference.models = value.into();
        }
        if let Some(value) = var("RADASSIST_LISTEN") {
            self.service.listen = value;
        }
        if let Some(value) = var("RADASSIST_DATA_DIR") {
            self.service.data_dir = value.into();
        }
        for t in &self.service.tokens {
            if t.token.len() < 16 {
                return Err(format!(
                    "service.tokens: {}'s token is shorter than 16 characters",
                    t.name
                ));
            }
        }
        if self.service.max_instance_bytes == 0
            || self.service.max_instance_bytes > self.service.max_ingest_memory_bytes
        {
            return Err(format!(
                "service.max_instance_bytes ({}) must be at least 1 and at most service.max_ingest_memory_bytes ({}): an instance must fit in the ingest memory",
                self.service.max_instance_bytes, self.service.max_ingest_memory_bytes
            ));
        }
        if self.service.tls_cert.is_some() != self.service.tls_key.is_some() {
            return Err("service.tls_cert and service.tls_key go together".into());
        }
        if self.service.analysis_workers == 0 || self.service.analysis_workers > 64 {
            return Err(format!(
                "service.analysis_workers ({}) must be 1 to 64",
                self.service.analysis_workers
            ));
        }
        if self.analysis.generation.beams == 0 || self.analysis.generation.beams > 16 {
            return Err(format!(
                "analysis.generation.beams ({}) must be 1 (greedy) to 16",
                self.analysis.generation.beams
            ));
        }
        if self.inference.batching.max_batch == 0 || self.inference.batching.queue_capacity == 0 {
            return Err(
                "inference.batching.max_batch and queue_capacity must be at least 1".into(),
            );
        }
        self.placement.check()?;
        if self.inference.optimization_level > 3 {
            return Err(format!(
                "inference.optimization_level {} must be 0 to 3",
                self.inference.optimization_level
            ));
        }
        Ok(())
    }
}

/// Whether `listen` may serve in plain text: loopback always; elsewhere only when the site
/// says a TLS-terminating proxy is in front.
pub fn check_plaintext(
    address: std::net::SocketAddr,
    tls: bool,
    allow_plaintext: bool,
) -> Result<(), String> {
    if tls || address.ip().is_loopback() {
        return Ok(());
    }
    if allow_plaintext {
        tracing::warn!("serving without TLS on {address} (allow_plaintext = true): a TLS-terminating proxy must be in front");
        return Ok(());
    }
    Err(format!(
        "listen {address} is not loopback and TLS is not configured: bearer tokens and patient data would cross the network in clear text. Set service.tls_cert and service.tls_key, or, behind a TLS-terminating proxy, service.allow_plaintext = true"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_values_and_environment_overrides() {
        let mut config: Config = toml::from_str(
            "[inference]\nprovider = \"cpu\"\n[inference.batching]\nmax_batch = 4\n",
        )
        .unwrap();
        assert_eq!(config.inference.provider, Provider::Cpu);
        assert_eq!(config.inference.batching.max_batch, 4);
        assert_eq!(config.inference.batching.max_delay_ms, 0);
        assert_eq!(config.inference.models, PathBuf::from("models"));
        config
            .apply_environment(|name| match name {
                "RADASSIST_PROVIDER" => Some("CUDA".into()),
                "RADASSIST_MODELS" => Some("/srv/packs".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.inference.provider, Provider::Cuda);
        assert_eq!(config.inference.models, PathBuf::from("/srv/packs"));
        let err = config
            .apply_environment(|n| (n == "RADASSIST_PROVIDER").then(|| "tpu".into()))
            .unwrap_err();
        assert!(err.contains("tpu"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<Config>("[inference]\nproviders = \"cpu\"\n").is_err());
        assert!(toml::from_str::<Config>("[inference]\nprovider = \"tpu\"\n").is_err());
        let mut zero: Config = toml::from_str("[inference.batching]\nmax_batch = 0\n").unwrap();
        assert!(zero.apply_environment(|_| None).is_err());
    }

    #[test]
    fn plaintext_is_refused_outside_loopback_unless_allowed() {
        let loopback = "127.0.0.1:50051".parse().unwrap();
        let v6_loopback = "[::1]:50051".parse().unwrap();
        let everywhere = "0.0.0.0:50051".parse().unwrap();
        assert!(check_plaintext(loopback, false, false).is_ok());
        assert!(check_plaintext(v6_loopback, false, false).is_ok());
        let refused = check_plaintext(everywhere, false, false).unwrap_err();
        assert!(refused.contains("allow_plaintext"), "{refused}");
        assert!(check_plaintext(everywhere, true, false).is_ok());
        assert!(check_plaintext(everywhere, false, true).is_ok());
    }
}

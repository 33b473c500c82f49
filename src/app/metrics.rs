//! The service's metrics, in the Prometheus (OpenMetrics) text format at `/metrics`.
//!
//! Counters for ingest, histograms for job duration, queue wait, model compute per batch and
//! RPC latency, the batch sizes each model saw, gauges for the queue depth, the ingest memory
//! in use and the analysis workers alive (with the reason when none can run). Everything is
//! registered once in [`Metrics::new`]; `grpc::rpc_metrics` times every gRPC call, and the web
//! app times each of its responses.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

fn seconds_histogram() -> Histogram {
    // 1 ms to about 9 minutes.
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

fn batch_histogram() -> Histogram {
    Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0])
}

pub struct Metrics {
    registry: Registry,
    pub ingest_bytes: Counter,
    pub ingest_instances: Counter,
    pub ingest_rejected: Counter,
    pub ingest_refused_streams: Counter,
    pub ingest_memory_waits: Counter,
    pub ingest_memory_refusals: Counter,
    pub ingest_memory_bytes: Gauge,
    pub queue_depth: Gauge,
    pub jobs_done: Counter,
    pub jobs_failed: Counter,
    /// Jobs whose analysis panicked (each also counts as failed).
    pub job_panics: Counter,
    pub job_seconds: Histogram,
    pub queue_wait_seconds: Histogram,
    pub workers_alive: Gauge,
    /// 1 while no analysis worker can run (the models did not load, or every worker died).
    pub analysis_unavailable: Gauge,
    /// Per model ("task:name"): images or prompts run, seconds per batch, batch sizes.
    pub model_requests: Family<Labels, Counter>,
    pub model_batch_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    pub model_batch_size: Family<Labels, Histogram, fn() -> Histogram>,
    /// Per RPC: latency and status code.
    pub rpc_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// DICOM associations, by how they went ("accepted", "rejected", "busy", "failed").
    pub dicom_associations: Family<Labels, Counter>,
    /// DICOM associations open now.
    pub dicom_open_associations: Gauge,
    /// DIMSE requests answered, by command and status ("C-STORE", "0000").
    pub dicom_requests: Family<Labels, Counter>,
    /// Searches of the PACS for a study's prior, by outcome ("retrieved", "none_held",
    /// "unavailable").
    pub dicom_prior_searches: Family<Labels, Counter>,
    /// SRs a peer acknowledged, attempts that failed, restarts of the sender loop.
    pub results_sent: Counter,
    pub results_failed: Counter,
    pub results_sender_restarts: Counter,
    /// Results waiting for a peer.
    pub results_pending: Gauge,
    /// Web app: latency per route and status; logins by outcome; 1 while it serves.
    pub web_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    pub web_logins: Family<Labels, Counter>,
    pub web_serving: Gauge,
    /// 1 while the catalogue (SQLite or PostgreSQL) and the blob store answer.
    pub store_up: Gauge,
    pub blobs_up: Gauge,
    /// Several processes on PostgreSQL: 1 while this one listens for the others' events;
    /// failed sends and listens.
    pub event_relay_connected: Gauge,
    pub event_relay_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("radassist");
        let m = Metrics {
            ingest_bytes: Counter::default(),
            ingest_instances: Counter::default(),
            ingest_rejected: Counter::default(),
            ingest_refused_streams: Counter::default(),
            ingest_memory_waits: Counter::default(),
            ingest_memory_refusals: Counter::default(),
            ingest_memory_bytes: Gauge::default(),
            queue_depth: Gauge::default(),
            jobs_done: Counter::default(),
            jobs_failed: Counter::default(),
            job_panics: Counter::default(),
            job_seconds: seconds_histogram(),
            queue_wait_seconds: seconds_histogram(),
            workers_alive: Gauge::default(),
            analysis_unavailable: Gauge::default(),
            model_requests: Family::default(),
            model_batch_seconds: Family::new_with_constructor(seconds_histogram),
            model_batch_size: Family::new_with_constructor(batch_histogram),
            rpc_seconds: Family::new_with_constructor(seconds_histogram),
            dicom_associations: Family::default(),
            dicom_open_associations: Gauge::default(),
            dicom_requests: Family::default(),
            web_seconds: Family::new_with_constructor(seconds_histogram),
            web_logins: Family::default(),
            store_up: Gauge::default(),
            blobs_up: Gauge::default(),
            event_relay_connected: Gauge::default(),
            event_relay_failures: Counter::default(),
            web_serving: Gauge::default(),
            dicom_prior_searches: Family::default(),
            results_sent: Counter::default(),
            results_failed: Counter::default(),
            results_sender_restarts: Counter::default(),
            results_pending: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("ingest_bytes", "DICOM bytes stored", m.ingest_bytes.clone());
        r.register(
            "ingest_instances",
            "instances stored",
            m.ingest_instances.clone(),
        );
        r.register(
            "ingest_rejected",
            "instances rejected or conflicting",
            m.ingest_rejected.clone(),
        );
        r.register(
            "ingest_streams_refused",
            "ingest streams refused (RESOURCE_EXHAUSTED)",
            m.ingest_refused_streams.clone(),
        );
        r.register(
            "ingest_memory_waits",
            "received chunks that waited for room in the ingest memory",
            m.ingest_memory_waits.clone(),
        );
        r.register(
            "ingest_memory_refusals",
            "ingest streams ended with RESOURCE_EXHAUSTED: the ingest memory stayed full",
            m.ingest_memory_refusals.clone(),
        );
        r.register(
            "ingest_memory_bytes",
            "bytes received and not yet stored (all ingest streams)",
            m.ingest_memory_bytes.clone(),
        );
        r.register(
            "job_queue_depth",
            "analysis jobs waiting",
            m.queue_depth.clone(),
        );
        r.register("jobs_done", "analysis jobs done", m.jobs_done.clone());
        r.register(
            "jobs_failed",
            "analysis attempts failed",
            m.jobs_failed.clone(),
        );
        r.register(
            "job_panics",
            "analysis attempts that panicked (also counted as failed)",
            m.job_panics.clone(),
        );
        r.register(
            "job_duration_seconds",
            "time to analyse and draft one study",
            m.job_seconds.clone(),
        );
        r.register(
            "job_queue_wait_seconds",
            "time a job waited in the queue before a worker took it",
            m.queue_wait_seconds.clone(),
        );
        r.register(
            "analysis_workers_alive",
            "analysis workers taking jobs",
            m.workers_alive.clone(),
        );
        r.register(
            "store_up",
            "1 while the catalogue answers (SQLite or PostgreSQL)",
            m.store_up.clone(),
        );
        r.register(
            "blobs_up",
            "1 while the blob store answers (folder or bucket)",
            m.blobs_up.clone(),
        );
        r.register(
            "event_relay_connected",
            "1 while this process listens for the other processes' events (PostgreSQL)",
            m.event_relay_connected.clone(),
        );
        r.register(
            "event_relay_failures",
            "failed sends or listens of the event relay (each is retried)",
            m.event_relay_failures.clone(),
        );
        r.register(
            "analysis_unavailable",
            "1 while no analysis worker can run (see ModelService.ListModels for why)",
            m.analysis_unavailable.clone(),
        );
        r.register(
            "model_calls",
            "images or prompts each model ran",
            m.model_requests.clone(),
        );
        r.register(
            "model_batch_duration_seconds",
            "compute time of one batch, per model",
            m.model_batch_seconds.clone(),
        );
        r.register(
            "model_batch_size",
            "images or prompts in one batch, per model",
            m.model_batch_size.clone(),
        );
        r.register(
            "rpc_duration_seconds",
            "gRPC call latency (streams: until the response starts), per method and code",
            m.rpc_seconds.clone(),
        );
        r.register(
            "dicom_associations",
            "DICOM associations, by outcome (accepted, rejected, busy, failed, silent: closed before its A-ASSOCIATE-RQ)",
            m.dicom_associations.clone(),
        );
        r.register(
            "dicom_open_associations",
            "DICOM associations open now",
            m.dicom_open_associations.clone(),
        );
        r.register(
            "dicom_requests",
            "DIMSE requests answered, by command and status (hex)",
            m.dicom_requests.clone(),
        );
        r.register(
            "dicom_prior_searches",
            "searches of the PACS for a prior (C-FIND, C-MOVE), by outcome (retrieved, none_held, unavailable)",
            m.dicom_prior_searches.clone(),
        );
        r.register(
            "results_sent",
            "SRs a DICOM peer acknowledged",
            m.results_sent.clone(),
        );
        r.register(
            "results_failed",
            "attempts to send an SR that failed (retried)",
            m.results_failed.clone(),
        );
        r.register(
            "results_sender_restarts",
            "restarts of the results sender after a panic",
            m.results_sender_restarts.clone(),
        );
        r.register(
            "results_pending",
            "SRs waiting for a DICOM peer",
            m.results_pending.clone(),
        );
        r.register(
            "web_request_duration_seconds",
            "web app response time (headers ready), per route and HTTP status",
            m.web_seconds.clone(),
        );
        r.register(
            "web_logins",
            "web app logins, by outcome (success, failed, backoff, refused: not a login at all)",
            m.web_logins.clone(),
        );
        r.register(
            "web_serving",
            "1 while the web app serves (0: it stopped; see the log)",
            m.web_serving.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn web_request(&self, route: &str, status: u16, seconds: f64) {
        self.web_seconds
            .get_or_create(&vec![
                ("route", route.to_string()),
                ("status", status.to_string()),
            ])
            .observe(seconds);
    }

    pub fn web_login(&self, outcome: &'static str) {
        self.web_logins
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
    }

    pub fn dicom_association(&self, outcome: &'static str) {
        self.dicom_associations
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
    }

    pub fn dicom_request(&self, command: &'static str, status: u16) {
        self.dicom_requests
            .get_or_create(&vec![
                ("command", command.to_string()),
                ("status", format!("{status:04X}")),
            ])
            .inc();
    }

    pub fn dicom_prior_search(&self, outcome: &'static str) {
        self.dicom_prior_searches
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
    }

    /// A batch of `size` requests ran on `model` in `seconds`.
    pub fn model_batch(&self, model: &str, size: usize, seconds: f64) {
        let labels = vec![("model", model.to_string())];
        self.model_requests
            .get_or_create(&labels)
            .inc_by(size as u64);
        self.model_batch_seconds
            .get_or_create(&labels)
            .observe(seconds);
        self.model_batch_size
            .get_or_create(&labels)
            .observe(size as f64);
    }

    /// The OpenMetrics text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String does not fail");
        out
    }
}

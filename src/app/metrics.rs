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

/// Declares the metrics once each: the field, its type and how it is made, the name it is
/// registered under and its help text. [`Metrics::new`] registers every one.
macro_rules! metrics {
    ($( $(#[$doc:meta])* $field:ident: $ty:ty = $make:expr, $name:literal, $help:literal; )*) => {
        /// Every metric of the service, registered once under the `radassist_` prefix.
        pub struct Metrics {
            registry: Registry,
            $( $(#[$doc])* pub $field: $ty, )*
        }

        impl Metrics {
            pub fn new() -> Metrics {
                let mut registry = Registry::with_prefix("radassist");
                $(
                    let $field: $ty = $make;
                    registry.register($name, $help, $field.clone());
                )*
                Metrics { registry, $($field,)* }
            }
        }
    };
}

metrics! {
    ingest_bytes: Counter = Counter::default(),
        "ingest_bytes", "DICOM bytes stored";
    ingest_instances: Counter = Counter::default(),
        "ingest_instances", "instances stored";
    ingest_rejected: Counter = Counter::default(),
        "ingest_rejected", "instances rejected or conflicting";
    ingest_retry_later: Counter = Counter::default(),
        "ingest_retry_later", "instances refused for now (the store failed, or the data disk is at its reserve): the sender sends them again";
    store_free_bytes: Gauge = Gauge::default(),
        "store_free_bytes", "bytes free on the blob folder's disk (-1: not a local disk)";
    ingest_refused_streams: Counter = Counter::default(),
        "ingest_streams_refused", "ingest streams refused (RESOURCE_EXHAUSTED)";
    ingest_memory_waits: Counter = Counter::default(),
        "ingest_memory_waits", "received chunks that waited for room in the ingest memory";
    ingest_memory_refusals: Counter = Counter::default(),
        "ingest_memory_refusals", "ingest streams ended with RESOURCE_EXHAUSTED: the ingest memory stayed full";
    ingest_memory_bytes: Gauge = Gauge::default(),
        "ingest_memory_bytes", "bytes received and not yet stored (all ingest streams)";
    queue_depth: Gauge = Gauge::default(),
        "job_queue_depth", "analysis jobs waiting";
    jobs_done: Counter = Counter::default(),
        "jobs_done", "analysis jobs done";
    jobs_failed: Counter = Counter::default(),
        "jobs_failed", "analysis attempts failed";
    /// Jobs whose analysis panicked (each also counts as failed).
    job_panics: Counter = Counter::default(),
        "job_panics", "analysis attempts that panicked (also counted as failed)";
    job_seconds: Histogram = seconds_histogram(),
        "job_duration_seconds", "time to analyse and draft one study";
    queue_wait_seconds: Histogram = seconds_histogram(),
        "job_queue_wait_seconds", "time a job waited in the queue before a worker took it";
    workers_alive: Gauge = Gauge::default(),
        "analysis_workers_alive", "analysis workers taking jobs";
    /// 1 while no analysis worker can run (the models did not load, or every worker died).
    analysis_unavailable: Gauge = Gauge::default(),
        "analysis_unavailable", "1 while no analysis worker can run (see ModelService.ListModels for why)";
    /// Per model ("task:name"): images or prompts run, seconds per batch, batch sizes.
    model_requests: Family<Labels, Counter> = Family::default(),
        "model_calls", "images or prompts each model ran";
    model_batch_seconds: Family<Labels, Histogram, fn() -> Histogram> = Family::new_with_constructor(seconds_histogram),
        "model_batch_duration_seconds", "compute time of one batch, per model";
    model_batch_size: Family<Labels, Histogram, fn() -> Histogram> = Family::new_with_constructor(batch_histogram),
        "model_batch_size", "images or prompts in one batch, per model";
    /// Per RPC: latency and status code.
    rpc_seconds: Family<Labels, Histogram, fn() -> Histogram> = Family::new_with_constructor(seconds_histogram),
        "rpc_duration_seconds", "gRPC call latency (streams: until the response starts), per method and code";
    /// DICOM associations, by how they went ("accepted", "rejected", "busy", "failed").
    dicom_associations: Family<Labels, Counter> = Family::default(),
        "dicom_associations", "DICOM associations, by outcome (accepted, rejected, busy, failed, silent: closed before its A-ASSOCIATE-RQ)";
    /// DICOM associations open now.
    dicom_open_associations: Gauge = Gauge::default(),
        "dicom_open_associations", "DICOM associations open now";
    /// DIMSE requests answered, by command and status ("C-STORE", "0000").
    dicom_requests: Family<Labels, Counter> = Family::default(),
        "dicom_requests", "DIMSE requests answered, by command and status (hex)";
    /// Searches of the PACS for a study's prior, by outcome ("retrieved", "none_held",
    /// "unavailable").
    dicom_prior_searches: Family<Labels, Counter> = Family::default(),
        "dicom_prior_searches", "searches of the PACS for a prior (C-FIND, C-MOVE), by outcome (retrieved, none_held, unavailable)";
    /// SRs a peer acknowledged, attempts that failed, restarts of the sender loop.
    results_sent: Counter = Counter::default(),
        "results_sent", "SRs a DICOM peer acknowledged";
    results_failed: Counter = Counter::default(),
        "results_failed", "attempts to send an SR that failed (retried)";
    results_found_at_peer: Counter = Counter::default(),
        "results_found_at_peer", "results an attempt cut off by a crash had delivered: found at the peer by C-FIND and not sent again";
    results_resent_after_cut_off: Counter = Counter::default(),
        "results_resent_after_cut_off", "results sent again after a crash cut off an attempt, to a peer radassist does not query (it may hold them twice)";
    results_sender_restarts: Counter = Counter::default(),
        "results_sender_restarts", "restarts of the results sender after a panic";
    /// Results waiting for a peer.
    results_pending: Gauge = Gauge::default(),
        "results_pending", "SRs waiting for a DICOM peer";
    /// Web app: latency per route and status; logins by outcome; 1 while it serves.
    web_seconds: Family<Labels, Histogram, fn() -> Histogram> = Family::new_with_constructor(seconds_histogram),
        "web_request_duration_seconds", "web app response time (headers ready), per route and HTTP status";
    web_logins: Family<Labels, Counter> = Family::default(),
        "web_logins", "web app logins, by outcome (success, failed, backoff, refused: not a login at all)";
    web_serving: Gauge = Gauge::default(),
        "web_serving", "1 while the web app serves (0: it stopped; see the log)";
    /// 1 while the catalogue (SQLite or PostgreSQL) and the blob store answer.
    store_up: Gauge = Gauge::default(),
        "store_up", "1 while the catalogue answers (SQLite or PostgreSQL)";
    blobs_up: Gauge = Gauge::default(),
        "blobs_up", "1 while the blob store answers (folder or bucket)";
    /// Several processes on PostgreSQL: 1 while this one listens for the others' events;
    /// failed sends and listens.
    event_relay_connected: Gauge = Gauge::default(),
        "event_relay_connected", "1 while this process listens for the other processes' events (PostgreSQL)";
    event_relay_failures: Counter = Counter::default(),
        "event_relay_failures", "failed sends or listens of the event relay (each is retried)";
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
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

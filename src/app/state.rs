//! What the service's parts share: the store, the configuration, the events that tell watchers
//! what changed, the metrics, the models' status, and the signal that wakes the workers.
//!
//! Store calls block (SQLite, fsync): async handlers make them through [`State::store_call`],
//! on tokio's blocking threads, never on the async ones.

use super::ingest_limits::IngestLimits;
use super::metrics::Metrics;
use super::prior_source::PriorSource;
use super::relay::{Deliver, Notice, Relay};
use super::Caller;
use super::Error;
use crate::config::ServiceConfig;
use crate::labeler::Labeler;
use crate::store::{AuditRow, Store, StoreError};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::broadcast;

/// What changed, for the watch streams.
#[derive(Debug, Clone)]
pub enum Event {
    Study(String),
    CriticalItem(String),
}

/// A model as the workers loaded it (or failed to).
#[derive(Debug, Clone)]
pub struct ModelStatus {
    pub name: String,
    pub task: String,
    pub version: String,
    pub test_model: bool,
    pub provider: String,
    pub healthy: bool,
    pub error: String,
}

/// Wakes the analysis workers when a job is queued (a count, so that no wake-up is lost
/// between a worker's look at the queue and its wait).
#[derive(Default)]
pub struct JobSignal {
    queued: Mutex<u64>,
    changed: Condvar,
}

impl JobSignal {
    pub fn notify(&self) {
        *self.queued.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.changed.notify_all();
    }

    /// The count now (take it before looking at the queue).
    pub fn seen(&self) -> u64 {
        *self.queued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the count passes `seen` or `timeout` passes.
    pub fn wait(&self, seen: u64, timeout: Duration) {
        let guard = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .changed
            .wait_timeout_while(guard, timeout, |count| *count == seen);
    }
}

pub struct State {
    pub store: Arc<dyn Store>,
    pub config: ServiceConfig,
    pub ingest: IngestLimits,
    pub events: broadcast::Sender<Event>,
    pub metrics: Arc<Metrics>,
    pub models: RwLock<Vec<ModelStatus>>,
    pub jobs: JobSignal,
    /// Built once (its patterns compile at start): labels reads when they are signed.
    pub labeler: Labeler,
    /// The DICOM peers that take radassist's results (`send_results`), and which objects.
    pub result_peers: Vec<super::results::ResultPeer>,
    /// Where priors the store lacks are asked for (the peers with `query_priors`), and the
    /// studies being retrieved from it now; None when nowhere.
    pub prior_source: Option<Arc<dyn PriorSource>>,
    /// With PostgreSQL: the events' way to the other processes (set once, at start).
    pub relay: std::sync::OnceLock<Relay>,
}

impl State {
    /// `result_peers`: the peers that take radassist's results, and which objects.
    pub fn new(
        store: Arc<dyn Store>,
        config: ServiceConfig,
        metrics: Arc<Metrics>,
        result_peers: Vec<super::results::ResultPeer>,
        prior_source: Option<Arc<dyn PriorSource>>,
    ) -> State {
        let (events, _) = broadcast::channel(1024);
        State {
            store,
            ingest: IngestLimits::new(&config),
            config,
            events,
            metrics,
            models: RwLock::new(vec![]),
            jobs: JobSignal::default(),
            labeler: Labeler::new(),
            result_peers,
            prior_source,
            relay: std::sync::OnceLock::new(),
        }
    }

    /// Runs a store call on a blocking thread.
    pub async fn store_call<T, F>(&self, call: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || call(store.as_ref()))
            .await
            .map_err(|e| Error::internal("a store call", e))??)
    }

    /// The work item of study `uid` (unaudited: for a caller that audits what it shows).
    pub async fn work_item(&self, uid: &str) -> Result<crate::store::WorkItemRow, Error> {
        let uid = uid.to_string();
        self.store_call(move |s| s.work_item(&uid)).await
    }

    /// Records that `caller` did `action` on `resource`.
    pub async fn audit(&self, caller: &Caller, action: &str, resource: &str) -> Result<(), Error> {
        let row = AuditRow {
            at_ms: crate::store::now_ms(),
            who: caller.name.clone(),
            role: caller.role.as_str().into(),
            action: action.into(),
            resource: resource.into(),
            peer: caller.peer.clone(),
        };
        self.store_call(move |store| store.audit(&row)).await
    }

    /// Tells watchers (and the workers, when `queued`) that a study changed, in this process
    /// and in the others.
    pub fn study_changed(&self, uid: &str, queued: bool) {
        let _ = self.events.send(Event::Study(uid.to_string()));
        if queued {
            self.jobs.notify();
        }
        if let Some(relay) = self.relay.get() {
            relay.publish(if queued {
                Notice::Queued(uid.to_string())
            } else {
                Notice::Study(uid.to_string())
            });
        }
    }

    /// Tells the critical-item watchers of every process that study `uid`'s new work item is
    /// critical.
    pub fn critical_item(&self, uid: &str) {
        let _ = self.events.send(Event::CriticalItem(uid.to_string()));
        if let Some(relay) = self.relay.get() {
            relay.publish(Notice::Critical(uid.to_string()));
        }
    }
}

impl Deliver for State {
    /// Another process's notice, into this process's channels.
    fn deliver(&self, notice: Notice) {
        match notice {
            Notice::Study(uid) => {
                let _ = self.events.send(Event::Study(uid));
            }
            Notice::Queued(uid) => {
                let _ = self.events.send(Event::Study(uid));
                self.jobs.notify();
            }
            Notice::Critical(uid) => {
                let _ = self.events.send(Event::CriticalItem(uid));
            }
        }
    }
}

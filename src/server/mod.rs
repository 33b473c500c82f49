//! `radassist serve`: start-up, the process's role, shutdown.
//!
//! [`Server::start`] opens the store, builds the core's [`State`], and binds every listener the
//! role serves (checked before anything is served: a wrong address or certificate stops the
//! start, not a later call); [`Server::run`] starts the analysis workers, the stable-study timer,
//! the DICOM node ([`crate::dimse`]), the reading room ([`crate::web`]), `/metrics`
//! ([`metrics_endpoint`]) and the results sender, and serves the gRPC API ([`crate::grpc`]) until
//! SIGINT or SIGTERM. Then the service stops taking calls, lets those in flight finish
//! (acknowledgements included), lets each worker finish its current job, and exits.

/// Writes a line for the operator on stderr. Unlike `eprintln!`, a closed stderr (the
/// terminal or the supervisor's pipe gone) is ignored: it must never stop the service.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

pub(crate) mod metrics_endpoint;
pub(crate) mod process_role;

pub use process_role::ProcessRole;

use crate::app::results::ResultPeer;
use crate::app::worker::{AnalysisHealth, WorkerPool};
use crate::app::{metrics::Metrics, prior_source::PriorSource, State};
use crate::config::{Config, StoreBackend};
use crate::store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long in-flight calls get to finish after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// SIGINT or SIGTERM, the handlers installed now (before the service says it listens, so a
/// signal that follows that line at once is a clean stop, not the default kill).
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| format!("handling SIGTERM: {e}"))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| format!("handling SIGINT: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// Runs the service in `role` until SIGINT or SIGTERM.
pub async fn serve(config: Config, role: ProcessRole) -> Result<(), String> {
    let stop_signal = shutdown_signal()?;
    Server::start(config, role).await?.run(stop_signal).await
}

/// A started server: its store open, its core built, its gRPC listener bound.
pub struct Server {
    config: Config,
    role: ProcessRole,
    state: Arc<State>,
    /// The gRPC listener and its TLS identity (None for a worker process).
    grpc: Option<(tokio::net::TcpListener, Option<tonic::transport::Identity>)>,
    client_tls: std::collections::HashMap<String, crate::dimse::tls::ClientTls>,
}

impl Server {
    /// Checks the configuration for `role`, opens the store, builds the core and binds the gRPC
    /// listener; nothing is served yet.
    pub async fn start(config: Config, role: ProcessRole) -> Result<Server, String> {
        let sc = config.service.clone();
        check_configuration(&config, role)?;
        let store: Arc<dyn store::Store> = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || store::open_store(&config, store::Recovery::Owner))
                .await
                .map_err(|e| e.to_string())??
        };
        // Every TLS peer's certificates are read now: a wrong path stops the start, not a send.
        let client_tls = crate::dimse::tls::client_configs(&config.dicom, &sc)?;
        let prior_source = prior_search(&config, &client_tls, &store)?
            .map(|p| Arc::new(p) as Arc<dyn PriorSource>);
        let result_peers = config
            .dicom
            .peers
            .iter()
            .filter(|p| p.send_results)
            .map(|p| ResultPeer {
                ae_title: p.ae_title.clone(),
                objects: p.results.clone(),
            })
            .collect();
        let state = Arc::new(State::new(
            store,
            sc.clone(),
            Arc::new(Metrics::new()),
            result_peers,
            prior_source,
        ));
        if config.store.backend == StoreBackend::Postgres {
            let inbox: Arc<dyn crate::app::relay::Deliver> = state.clone();
            let inbox = Arc::downgrade(&inbox);
            let relay = crate::app::relay::start(&config.store, inbox, state.metrics.clone())?;
            let _ = state.relay.set(relay);
        }
        let grpc = if role == ProcessRole::Worker {
            None
        } else {
            Some(bind_grpc(&sc).await?)
        };
        Ok(Server {
            config,
            role,
            state,
            grpc,
            client_tls,
        })
    }

    /// Serves until `stop` resolves, then shuts down in order.
    pub async fn run(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let Server {
            config,
            role,
            state,
            grpc,
            client_tls,
        } = self;
        let Some((listener, tls)) = grpc else {
            return work(state, config, stop).await;
        };
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let stop_workers = Arc::new(AtomicBool::new(false));
        let (health_tx, health_rx) = tokio::sync::watch::channel(AnalysisHealth::Loading);
        let workers = if role.analyses() {
            Some(WorkerPool::start(
                state.clone(),
                config.clone(),
                stop_workers.clone(),
                health_tx,
            )?)
        } else {
            // The workers are other processes: this one takes studies for them.
            let _ = health_tx.send(AnalysisHealth::Serving { workers: 0 });
            None
        };
        tokio::spawn(crate::app::completion::stable_study_timer(state.clone()));
        metrics_endpoint::start(&state).await?;
        start_ways_in(&config, &state, client_tls).await?;
        say!(
            "radassist: listening on {address}{}",
            if tls.is_some() { " (TLS)" } else { "" }
        );
        // On SIGINT/SIGTERM: stop taking calls, let those in flight finish, but not forever (an
        // idle client connection must not hold the process).
        let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
        let signal = async move {
            stop.await;
            say!("radassist: stopping: finishing the calls in flight (at most {SHUTDOWN_GRACE:?})");
            let _ = stopping_tx.send(true);
        };
        let grace = async move {
            let _ = stopping.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        let serving = crate::grpc::serve(state.clone(), listener, tls, health_rx, signal);
        let result = tokio::select! {
            served = serving => served,
            _ = grace => {
                say!("radassist: calls still open after {SHUTDOWN_GRACE:?}: closing them");
                Ok(())
            }
        };
        say!("radassist: shutting down: the workers finish their current jobs");
        stop_workers.store(true, Ordering::Relaxed);
        state.jobs.notify();
        if let Some(workers) = workers {
            let _ = tokio::task::spawn_blocking(move || workers.join()).await;
        }
        result
    }
}

/// The prior search over the peers with `query_priors` (None when there are none): by
/// DICOMweb for a peer with `dicomweb`, by DIMSE for the others (when the listener, which
/// receives what a C-MOVE sends, is on).
fn prior_search(
    config: &Config,
    client_tls: &std::collections::HashMap<String, crate::dimse::tls::ClientTls>,
    store: &Arc<dyn store::Store>,
) -> Result<Option<crate::app::prior_search::PriorRetrieval>, String> {
    use crate::app::prior_search::{PriorPeer, PriorRetrieval};
    let dicom = &config.dicom;
    let timeout = std::time::Duration::from_secs(dicom.prior_retrieval_timeout_seconds);
    let expected = crate::app::expected_priors::ExpectedPriors::new(store.clone(), timeout);
    let mut peers: Vec<Box<dyn PriorPeer>> = Vec::new();
    for peer in dicom.peers.iter().filter(|p| p.query_priors) {
        if let Some(web) = crate::dicomweb_client::DicomWebPeer::of(peer)? {
            peers.push(Box::new(crate::dicomweb_client::priors::DicomWebPriors {
                peer: web,
                store: store.clone(),
                expected: expected.clone(),
                reserve: config.service.min_free_bytes,
            }));
        } else if !dicom.listen.is_empty() {
            peers.push(Box::new(crate::dimse::priors::DimsePeer {
                config: peer.clone(),
                tls: client_tls.get(&peer.ae_title).cloned(),
                ae_title: dicom.ae_title.clone(),
            }));
        }
    }
    Ok((!peers.is_empty()).then_some(PriorRetrieval {
        peers,
        timeout,
        expected,
    }))
}

/// What the role needs of the configuration, checked before anything is opened.
fn check_configuration(config: &Config, role: ProcessRole) -> Result<(), String> {
    role.check(config)?;
    if role.serves() && config.service.tokens.is_empty() {
        return Err(
            "no [[service.tokens]] in the configuration: nobody could call the service".into(),
        );
    }
    for peer in &config.dicom.peers {
        if let Some(url) = &peer.dicomweb {
            crate::dicomweb_client::check_url(url)
                .map_err(|e| format!("dicom.peers {:?} dicomweb: {e}", peer.ae_title))?;
        }
    }
    if role == ProcessRole::All {
        if let Some(peer) = config
            .dicom
            .peers
            .iter()
            .find(|p| p.query_priors && p.dicomweb.is_none())
        {
            if config.dicom.listen.is_empty() {
                return Err(format!(
                    "dicom.peers {:?} has query_priors, but dicom.listen is empty: priors arrive by C-MOVE to radassist's own listener, so set dicom.listen",
                    peer.ae_title
                ));
            }
        }
    }
    Ok(())
}

/// The gRPC listener, bound after every address the name stands for is checked for TLS.
async fn bind_grpc(
    sc: &crate::config::ServiceConfig,
) -> Result<(tokio::net::TcpListener, Option<tonic::transport::Identity>), String> {
    let tls = crate::grpc::identity(sc)?;
    for address in tokio::net::lookup_host(&sc.listen)
        .await
        .map_err(|e| format!("listen {}: {e}", sc.listen))?
    {
        crate::config::check_plaintext(address, tls.is_some(), sc.allow_plaintext)?;
    }
    let listener = tokio::net::TcpListener::bind(&sc.listen)
        .await
        .map_err(|e| format!("listen {}: {e}", sc.listen))?;
    Ok((listener, tls))
}

/// The DICOM listener, the reading room and the results sender, each on its own task.
async fn start_ways_in(
    config: &Config,
    state: &Arc<State>,
    client_tls: std::collections::HashMap<String, crate::dimse::tls::ClientTls>,
) -> Result<(), String> {
    let sc = &config.service;
    if let Some(dicom) = crate::dimse::Listener::bind(&config.dicom, sc, state.clone()).await? {
        say!(
            "radassist: DICOM listener on {} (AE title {}{})",
            dicom.local_addr()?,
            config.dicom.ae_title,
            if config.dicom.tls { ", TLS" } else { "" }
        );
        tokio::spawn(dicom.run());
    }
    if let Some((url, web)) = crate::web::bind(config, state.clone()).await? {
        say!("radassist: web app on {url}");
        tokio::spawn(web);
    }
    tokio::spawn(crate::dimse::sender::supervise(
        state.clone(),
        config.dicom.peers.clone(),
        client_tls,
        config.dicom.ae_title.clone(),
    ));
    Ok(())
}

/// A worker process: analysis and metrics only, until `stop`; then the jobs in hand are
/// finished.
async fn work(
    state: Arc<State>,
    config: Config,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let stop_workers = Arc::new(AtomicBool::new(false));
    let (health_tx, mut health) = tokio::sync::watch::channel(AnalysisHealth::Loading);
    let workers = WorkerPool::start(
        state.clone(),
        config.clone(),
        stop_workers.clone(),
        health_tx,
    )?;
    metrics_endpoint::start(&state).await?;
    say!(
        "radassist: worker taking jobs ({} analysis workers)",
        config.service.analysis_workers
    );
    tokio::spawn(async move {
        while health.changed().await.is_ok() {
            if let AnalysisHealth::Unavailable(reason) = &*health.borrow() {
                tracing::error!("analysis unavailable: {reason}");
            }
        }
    });
    stop.await;
    say!("radassist: shutting down: the workers finish their current jobs");
    stop_workers.store(true, Ordering::Relaxed);
    state.jobs.notify();
    let _ = tokio::task::spawn_blocking(move || workers.join()).await;
    Ok(())
}

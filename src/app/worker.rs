//! The analysis workers: a pool of `analysis_workers` threads that take queued studies from the
//! store and turn each into its one current work item ([`super::job`]).
//!
//! The models are loaded once and shared by every worker ([`JobModels`]: one batching thread
//! per model), so studies analysed at the same time reach each model as one batch. Each job
//! is supervised: an error or a panic fails that job with its reason (retried up to
//! `max_attempts`), and the worker goes on with the next one. A worker waits on
//! [`super::state::JobSignal`] for new jobs (with a slow fallback look at the queue, for jobs
//! queued by another process). If no worker can run (the models did not load, or the store
//! keeps failing), [`AnalysisHealth::Unavailable`] says why: gRPC health turns NOT_SERVING and
//! `radassist_analysis_unavailable` is 1. A crash leaves a job running, and the next start
//! queues it again.

use super::job::{analyze_study, JobError, JobModels};
use super::state::{ModelStatus, State};
use crate::analysis::{Analyzer, BatchObserver, ModelUsed};
use crate::config::Config;
use crate::draft::writer::ReportWriter;
use crate::inference::session::ProviderUsed;
use crate::store::lifecycle::JobState;
use crate::store::{NewWorkItem, TakenJob};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whether analysis can run, for health and metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum AnalysisHealth {
    /// The models are loading; studies are taken and wait in the queue.
    Loading,
    Serving {
        workers: usize,
    },
    /// No worker can run, and why.
    Unavailable(String),
}

/// A look at the queue at least this often, even without a signal.
const FALLBACK_POLL: Duration = Duration::from_secs(5);
/// Failed store calls in a row before a worker reports analysis unavailable.
const STORE_FAILURES_UNAVAILABLE: u32 = 3;

/// The running pool: stopping it lets each worker finish the job in hand.
pub struct WorkerPool {
    loader: std::thread::JoinHandle<Vec<std::thread::JoinHandle<()>>>,
}

impl WorkerPool {
    /// Loads the models (on a thread of its own: the service takes calls meanwhile) and starts
    /// the workers; `health` follows what they can do.
    pub fn start(
        state: Arc<State>,
        config: Config,
        stop: Arc<AtomicBool>,
        health: tokio::sync::watch::Sender<AnalysisHealth>,
    ) -> Result<WorkerPool, String> {
        let health = Arc::new(health);
        let loader = std::thread::Builder::new()
            .name("analysis-models".into())
            .spawn(move || {
                let models = match load_models(&state, &config) {
                    Ok(models) => models,
                    Err(reason) => {
                        tracing::error!("the analysis models did not load: {reason}");
                        state.metrics.analysis_unavailable.set(1);
                        let _ = health.send(AnalysisHealth::Unavailable(format!(
                            "the analysis models did not load: {reason}"
                        )));
                        return vec![];
                    }
                };
                let workers = config.service.analysis_workers;
                let _ = health.send(AnalysisHealth::Serving { workers });
                (0..workers)
                    .filter_map(|index| {
                        let (state, models, config, stop, health) = (
                            state.clone(),
                            models.clone(),
                            config.clone(),
                            stop.clone(),
                            health.clone(),
                        );
                        std::thread::Builder::new()
                            .name(format!("analysis-worker-{index}"))
                            .spawn(move || supervise(&state, &models, &config, &stop, &health))
                            .map_err(|e| tracing::error!("starting analysis worker {index}: {e}"))
                            .ok()
                    })
                    .collect()
            })
            .map_err(|e| format!("starting the analysis workers: {e}"))?;
        Ok(WorkerPool { loader })
    }

    /// Waits for every worker to finish its job in hand (call after setting `stop` and
    /// notifying the job signal).
    pub fn join(self) {
        if let Ok(workers) = self.loader.join() {
            for worker in workers {
                let _ = worker.join();
            }
        }
    }
}

fn status(m: &ModelUsed, provider: Option<ProviderUsed>) -> ModelStatus {
    ModelStatus {
        name: m.name.clone(),
        task: m.task.clone(),
        version: m.version.clone(),
        test_model: m.test_model,
        provider: match provider {
            Some(ProviderUsed::Cuda) => "CUDAExecutionProvider".into(),
            Some(ProviderUsed::Cpu) => "CPUExecutionProvider".into(),
            None => String::new(),
        },
        healthy: true,
        error: String::new(),
    }
}

/// The analyzer and the report pack, each model behind its batching thread, with their
/// batches counted in the metrics; their status goes to ModelService.ListModels.
fn load_models(state: &Arc<State>, config: &Config) -> Result<JobModels, String> {
    let settings = config.inference.session_settings();
    let metrics = state.metrics.clone();
    let observer: BatchObserver = Arc::new(move |model: &str, size: usize, seconds: f64| {
        metrics.model_batch(model, size, seconds)
    });
    let loaded = (|| {
        let analyzer = Analyzer::new(
            &config.analysis_packs(),
            &settings,
            config.placement.clone(),
            config.analysis.change,
            config.inference.batching(),
            Some(observer.clone()),
        )
        .and_then(|a| a.with_thresholds(&config.analysis.thresholds))
        .map_err(|e| e.to_string())?;
        let writer = match config.report_pack() {
            Some(folder) => Some(
                ReportWriter::load(
                    &folder,
                    &settings,
                    config.analysis.generation,
                    config.inference.batching(),
                    Some(observer),
                )
                .map_err(|e| format!("report pack {}: {e}", folder.display()))?,
            ),
            None => None,
        };
        Ok::<_, String>(JobModels { analyzer, writer })
    })();
    let table = match &loaded {
        Ok(models) => {
            let mut table: Vec<ModelStatus> = models
                .analyzer
                .models()
                .iter()
                .zip(models.analyzer.providers())
                .map(|(m, p)| status(m, Some(*p)))
                .collect();
            if let Some(w) = &models.writer {
                table.push(status(w.model(), Some(w.provider())));
            }
            table
        }
        Err(e) => vec![ModelStatus {
            name: "analysis".into(),
            task: String::new(),
            version: String::new(),
            test_model: false,
            provider: String::new(),
            healthy: false,
            error: e.clone(),
        }],
    };
    *state.models.write().unwrap_or_else(|p| p.into_inner()) = table;
    loaded
}

/// Runs a worker until `stop`; a panic outside a job (a bug) restarts its loop.
fn supervise(
    state: &Arc<State>,
    models: &JobModels,
    config: &Config,
    stop: &AtomicBool,
    health: &tokio::sync::watch::Sender<AnalysisHealth>,
) {
    state.metrics.workers_alive.inc();
    while !stop.load(Ordering::Relaxed) {
        let run = catch_unwind(AssertUnwindSafe(|| {
            work(state, models, config, stop, health)
        }));
        if run.is_err() {
            tracing::error!("an analysis worker's loop panicked: restarting it in a second");
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    state.metrics.workers_alive.dec();
}

fn work(
    state: &Arc<State>,
    models: &JobModels,
    config: &Config,
    stop: &AtomicBool,
    health: &tokio::sync::watch::Sender<AnalysisHealth>,
) {
    let mut store_failures = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let seen = state.jobs.seen();
        match state.store.take_job() {
            Ok(job) => {
                if store_failures >= STORE_FAILURES_UNAVAILABLE {
                    recovered(state, config, health);
                }
                store_failures = 0;
                match job {
                    Some(job) => run_job(state, models, config, job),
                    None => state.jobs.wait(seen, FALLBACK_POLL),
                }
            }
            Err(e) => {
                store_failures += 1;
                tracing::error!("taking a job: {e}");
                if store_failures == STORE_FAILURES_UNAVAILABLE {
                    state.metrics.analysis_unavailable.set(1);
                    let _ = health.send(AnalysisHealth::Unavailable(format!(
                        "the store fails to give jobs: {e}"
                    )));
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn recovered(state: &State, config: &Config, health: &tokio::sync::watch::Sender<AnalysisHealth>) {
    state.metrics.analysis_unavailable.set(0);
    let _ = health.send(AnalysisHealth::Serving {
        workers: config.service.analysis_workers,
    });
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// One attempt at a job, its outcome committed.
fn run_job(state: &State, models: &JobModels, config: &Config, job: TakenJob) {
    let uid = job.study_instance_uid;
    let m = &state.metrics;
    m.queue_wait_seconds.observe(job.waited_ms as f64 / 1000.0);
    state.study_changed(&uid, false);
    let started = Instant::now();
    let outcome: Result<NewWorkItem, JobError> =
        catch_unwind(AssertUnwindSafe(|| analyze_study(state, models, &uid))).unwrap_or_else(
            |payload| {
                m.job_panics.inc();
                Err(JobError::Panicked(panic_message(payload.as_ref())))
            },
        );
    let seconds = started.elapsed().as_secs_f64();
    m.job_seconds.observe(seconds);
    match outcome.and_then(|item| {
        state
            .store
            .finish_job(&uid, &item)
            .map(|_| item)
            .map_err(JobError::from)
    }) {
        Ok(item) => {
            m.jobs_done.inc();
            tracing::info!(
                seconds,
                attempt = job.attempt,
                critical = item.critical,
                "draft ready"
            );
            state.study_changed(&uid, false);
            if item.critical {
                state.critical_item(&uid);
            }
        }
        Err(error) => {
            m.jobs_failed.inc();
            // The reason an admin reads, with every cause.
            let reason = crate::causes::with_causes(&error);
            tracing::warn!(attempt = job.attempt, "analysis failed: {reason}");
            let queued_again =
                match state
                    .store
                    .fail_job(&uid, &reason, config.service.max_attempts)
                {
                    Ok(state) => state == JobState::Queued,
                    Err(e) => {
                        tracing::error!("recording a failed job: {e}");
                        false
                    }
                };
            state.study_changed(&uid, queued_again);
        }
    }
}

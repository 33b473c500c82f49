//! Dynamic batching for one model: callers submit single requests from any thread; one worker
//! thread owns the model (ONNX Runtime's `Session::run` needs `&mut`), collects requests until
//! it has `max_batch` or the oldest has waited `max_delay` (by default it takes what is queued
//! and runs at once), runs them as one batch, and answers each caller. A full queue is refused at once (the server turns that into RESOURCE_EXHAUSTED
//! with a retry hint) rather than growing without bound.
//!
//! Per model it counts requests and batches, and sums queue time, compute time and batch sizes,
//! for the server's metrics.

use super::InferenceError;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Batching knobs, per model.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
pub struct BatchingConfig {
    pub max_batch: usize,
    /// How long the oldest request waits for more. Zero (the default) runs at once with whatever
    /// is queued: no added latency when the model is idle, and batches still form under load
    /// (requests queue while a batch runs). A delay only pays when many callers arrive together.
    pub max_delay: Duration,
    /// Requests waiting beyond this are refused.
    pub queue_capacity: usize,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig {
            max_batch: 16,
            max_delay: Duration::ZERO,
            queue_capacity: 256,
        }
    }
}

/// Counters since the batcher started.
#[derive(Debug, Default)]
pub struct BatchMetrics {
    pub requests: AtomicU64,
    pub batches: AtomicU64,
    pub refused: AtomicU64,
    pub queue_micros: AtomicU64,
    pub compute_micros: AtomicU64,
    pub largest_batch: AtomicU64,
}

/// A copy of the counters, with means.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsSnapshot {
    pub requests: u64,
    pub batches: u64,
    pub refused: u64,
    pub mean_batch: f64,
    pub largest_batch: u64,
    pub mean_queue_ms: f64,
    pub mean_compute_ms_per_batch: f64,
}

impl BatchMetrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        let requests = self.requests.load(Ordering::Relaxed);
        let batches = self.batches.load(Ordering::Relaxed);
        let per = |total: u64, n: u64| if n == 0 { 0.0 } else { total as f64 / n as f64 };
        MetricsSnapshot {
            requests,
            batches,
            refused: self.refused.load(Ordering::Relaxed),
            mean_batch: per(requests, batches),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
            mean_queue_ms: per(self.queue_micros.load(Ordering::Relaxed), requests) / 1e3,
            mean_compute_ms_per_batch: per(self.compute_micros.load(Ordering::Relaxed), batches)
                / 1e3,
        }
    }
}

struct Job<Req, Resp> {
    request: Req,
    enqueued: Instant,
    reply: SyncSender<Result<Resp, InferenceError>>,
}

/// Told of every batch a batcher ran: its name (the model, "task:name"), the batch's size and
/// its compute seconds (the service's metrics listen here).
pub type BatchObserver = Arc<dyn Fn(&str, usize, f64) + Send + Sync>;

/// The submitting side; cloning it shares the same worker.
pub struct Batcher<Req, Resp> {
    queue: SyncSender<Job<Req, Resp>>,
    metrics: Arc<BatchMetrics>,
}

impl<Req, Resp> Clone for Batcher<Req, Resp> {
    fn clone(&self) -> Self {
        Batcher {
            queue: self.queue.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts the worker. `run_batch` gets up to `max_batch` requests and must answer each, in
    /// order. The worker stops when every `Batcher` handle is dropped.
    pub fn spawn<F>(name: &str, config: BatchingConfig, run_batch: F) -> Batcher<Req, Resp>
    where
        F: FnMut(Vec<Req>) -> Result<Vec<Resp>, InferenceError> + Send + 'static,
    {
        Batcher::spawn_observed(name, config, None, run_batch)
    }

    /// As [`Batcher::spawn`], and `observer` (if any) is told of every batch.
    pub fn spawn_observed<F>(
        name: &str,
        config: BatchingConfig,
        observer: Option<BatchObserver>,
        mut run_batch: F,
    ) -> Batcher<Req, Resp>
    where
        F: FnMut(Vec<Req>) -> Result<Vec<Resp>, InferenceError> + Send + 'static,
    {
        let (queue, jobs) = mpsc::sync_channel::<Job<Req, Resp>>(config.queue_capacity);
        let metrics = Arc::new(BatchMetrics::default());
        let counters = metrics.clone();
        let max_batch = config.max_batch.max(1);
        let name = name.to_string();
        std::thread::Builder::new()
            .name(format!("batcher-{name}").chars().take(15).collect())
            .spawn(move || {
                while let Ok(first) = jobs.recv() {
                    let deadline = first.enqueued + config.max_delay;
                    let mut batch = vec![first];
                    while batch.len() < max_batch {
                        let wait = deadline.saturating_duration_since(Instant::now());
                        match jobs.recv_timeout(wait) {
                            Ok(job) => batch.push(job),
                            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                                break
                            }
                        }
                    }
                    let started = Instant::now();
                    let queued: u64 = batch
                        .iter()
                        .map(|j| (started - j.enqueued).as_micros() as u64)
                        .sum();
                    let (requests, replies): (Vec<Req>, Vec<_>) =
                        batch.into_iter().map(|j| (j.request, j.reply)).unzip();
                    let size = requests.len();
                    // A panic in the model (a defect) fails this batch, not the model's thread.
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_batch(requests)
                    }))
                    .unwrap_or_else(|_| {
                        Err(InferenceError::Run(format!(
                            "the model {name} panicked on this batch"
                        )))
                    });
                    let computed = started.elapsed();
                    if let Some(observer) = &observer {
                        observer(&name, size, computed.as_secs_f64());
                    }
                    counters
                        .compute_micros
                        .fetch_add(computed.as_micros() as u64, Ordering::Relaxed);
                    counters.queue_micros.fetch_add(queued, Ordering::Relaxed);
                    counters.requests.fetch_add(size as u64, Ordering::Relaxed);
                    counters.batches.fetch_add(1, Ordering::Relaxed);
                    counters
                        .largest_batch
                        .fetch_max(size as u64, Ordering::Relaxed);
                    match outcome {
                        Ok(responses) if responses.len() == size => {
                            for (reply, response) in replies.into_iter().zip(responses) {
                                let _ = reply.send(Ok(response));
                            }
                        }
                        Ok(responses) => {
                            let reason = format!(
                                "the model answered {} of {size} requests",
                                responses.len()
                            );
                            for reply in replies {
                                let _ = reply.send(Err(InferenceError::Run(reason.clone())));
                            }
                        }
                        Err(err) => {
                            let reason = err.to_string();
                            for reply in replies {
                                let _ = reply.send(Err(InferenceError::Run(reason.clone())));
                            }
                        }
                    }
                }
            })
            .expect("the batching thread starts");
        Batcher { queue, metrics }
    }

    /// Submits one request and waits for its answer.
    pub fn submit(&self, request: Req) -> Result<Resp, InferenceError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job = Job {
            request,
            enqueued: Instant::now(),
            reply,
        };
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.metrics.refused.fetch_add(1, Ordering::Relaxed);
                return Err(InferenceError::Busy);
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(InferenceError::Run("the model worker has stopped".into()))
            }
        }
        answer
            .recv()
            .map_err(|_| InferenceError::Run("the model worker stopped before answering".into()))?
    }

    pub fn metrics(&self) -> &BatchMetrics {
        &self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_requests_are_batched_and_answered_in_order() {
        let config = BatchingConfig {
            max_batch: 8,
            max_delay: Duration::from_millis(50),
            queue_capacity: 64,
        };
        let batcher = Batcher::spawn("double", config, |requests: Vec<u32>| {
            Ok(requests.iter().map(|r| r * 2).collect())
        });
        let handles: Vec<_> = (0..8u32)
            .map(|i| {
                let b = batcher.clone();
                std::thread::spawn(move || b.submit(i).unwrap())
            })
            .collect();
        let answers: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(answers, (0..8).map(|i| i * 2).collect::<Vec<_>>());
        let m = batcher.metrics().snapshot();
        assert_eq!(m.requests, 8);
        assert!(
            m.batches < 8,
            "eight requests within 50 ms should share batches: {m:?}"
        );
        assert!(m.largest_batch > 1);
    }

    #[test]
    fn a_full_queue_is_refused_not_grown() {
        let config = BatchingConfig {
            max_batch: 1,
            max_delay: Duration::ZERO,
            queue_capacity: 1,
        };
        let (gate, opened) = mpsc::channel::<()>();
        let opened = std::sync::Mutex::new(opened);
        let batcher = Batcher::spawn("slow", config, move |r: Vec<u8>| {
            let _ = opened.lock().unwrap().recv_timeout(Duration::from_secs(5));
            Ok(r)
        });
        // One request in the worker, one in the queue; the next ones are refused.
        let first = {
            let b = batcher.clone();
            std::thread::spawn(move || b.submit(1))
        };
        std::thread::sleep(Duration::from_millis(100));
        let second = {
            let b = batcher.clone();
            std::thread::spawn(move || b.submit(2))
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(matches!(batcher.submit(3), Err(InferenceError::Busy)));
        gate.send(()).unwrap();
        gate.send(()).unwrap();
        assert_eq!(first.join().unwrap().unwrap(), 1);
        assert_eq!(second.join().unwrap().unwrap(), 2);
        assert_eq!(batcher.metrics().snapshot().refused, 1);
    }

    #[test]
    fn a_failed_batch_fails_each_request_with_the_reason() {
        let batcher = Batcher::spawn(
            "broken",
            BatchingConfig::default(),
            |_: Vec<u8>| -> Result<Vec<u8>, InferenceError> {
                Err(InferenceError::Run("out of memory".into()))
            },
        );
        let err = batcher.submit(1).unwrap_err().to_string();
        assert!(err.contains("out of memory"), "{err}");
    }
}

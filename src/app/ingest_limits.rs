//! How much ingest the server takes at once: a number of streams, and a memory budget for
//! bytes received and not yet stored (all streams together), with RESOURCE_EXHAUSTED and a
//! `retry-after-ms` hint when either is full.

use super::metrics::Metrics;
use super::Error;
use crate::config::ServiceConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How much ingest the server takes at once.
pub struct IngestLimits {
    pub slots: Arc<Semaphore>,
    /// Bytes received and not yet stored, all streams together: a permit per byte, at most
    /// `max_ingest_memory_bytes`.
    memory: Arc<Semaphore>,
    capacity: usize,
}

impl IngestLimits {
    pub fn new(config: &ServiceConfig) -> IngestLimits {
        // As far as a semaphore counts.
        let capacity = config.max_ingest_memory_bytes.min(Semaphore::MAX_PERMITS);
        IngestLimits {
            slots: Arc::new(Semaphore::new(config.max_concurrent_streams.max(1))),
            memory: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    /// Bytes received and not yet stored.
    pub fn memory_in_use(&self) -> usize {
        self.capacity - self.memory.available_permits()
    }

    /// Room in the ingest memory for `bytes` of instance `index`. Waiting here stops reading
    /// the stream, so HTTP/2 flow control holds its sender back; after `ingest_memory_wait_ms`
    /// without room, [`Error::Unavailable`].
    pub async fn room_for(
        &self,
        metrics: &Metrics,
        config: &ServiceConfig,
        bytes: usize,
        index: u32,
    ) -> Result<OwnedSemaphorePermit, Error> {
        // A chunk is at most the 64 MiB message limit: it fits in a u32.
        let bytes = bytes as u32;
        if let Ok(permit) = self.memory.clone().try_acquire_many_owned(bytes) {
            return Ok(permit);
        }
        metrics.ingest_memory_waits.inc();
        let wait = Duration::from_millis(config.ingest_memory_wait_ms);
        match tokio::time::timeout(wait, self.memory.clone().acquire_many_owned(bytes)).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                metrics.ingest_memory_refusals.inc();
                Err(Error::Unavailable(format!(
                    "the server's ingest memory (max_ingest_memory_bytes, {} bytes) stayed full for {} ms: instances this stream finished before instance {index} may be stored; send the stream again after the retry-after-ms trailer (stored instances come back as duplicates)",
                    config.max_ingest_memory_bytes, config.ingest_memory_wait_ms
                )))
            }
        }
    }
}

//! IngestService: PACS push instances (a stream of chunks per instance), complete studies, and
//! follow a study's state.
//!
//! An instance is acknowledged STORED only once its blob is durable and its catalogue row
//! committed (see [`crate::app::ingest`]). Memory is bounded twice ([`crate::app::ingest_limits`]): at
//! most `max_concurrent_streams` streams (more get RESOURCE_EXHAUSTED with `retry-after-ms`),
//! and at most `max_ingest_memory_bytes` received and not yet stored, all streams together.

use super::auth::caller;
use super::convert::retry_later;
use super::convert::{study_message, study_state, uid_of};
use super::proto::ingest_service_server::IngestService;
use super::proto::{self, *};
use super::watch::{async_stream, WatchStream};
use crate::app::ingest;
use crate::app::state::{Event, State};
use crate::store::lifecycle::StudyState;
use crate::store::StoreOutcome;
use proto::instance_result::Outcome;
use std::sync::Arc;
use tokio::sync::{broadcast, OwnedSemaphorePermit};
use tonic::{Request, Response, Status, Streaming};

#[derive(Clone)]
pub struct IngestApi(pub Arc<State>);

impl IngestApi {
    async fn study(&self, uid: String) -> Result<proto::Study, Status> {
        Ok(self
            .0
            .store_call(move |s| s.study(&uid))
            .await
            .map(study_message)?)
    }
}

/// An instance being received: its chunks as they came (tonic's buffers, not copied) and the
/// ingest memory they hold (a permit per byte: their length). None once it grew past
/// `max_instance_bytes` (the rest is skipped).
type Received = (Vec<bytes::Bytes>, Option<OwnedSemaphorePermit>);

/// A result already known, as a task like the stores'.
async fn ready(result: InstanceResult) -> InstanceResult {
    result
}

/// Keeps a chunk of instance `index`, once there is room for it in the ingest memory; an
/// instance past `max_instance_bytes` is dropped.
async fn hold_chunk(
    state: &State,
    received: &mut Option<Received>,
    chunk: bytes::Bytes,
    index: u32,
) -> Result<(), Status> {
    let Some((chunks, memory)) = received else {
        return Ok(());
    };
    let length = memory.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
    if length + chunk.len() > state.config.max_instance_bytes {
        *received = None;
        return Ok(());
    }
    let room = state
        .ingest
        .room_for(&state.metrics, &state.config, chunk.len(), index)
        .await?;
    match memory {
        Some(held) => held.merge(room),
        None => *memory = Some(room),
    }
    chunks.push(chunk);
    Ok(())
}

/// Stores a whole instance on a blocking thread (or rejects one that was too large); the task's
/// result is its answer. Watchers of a study that gained an instance are told.
fn store_task(
    state: &Arc<State>,
    index: u32,
    received: Option<Received>,
) -> tokio::task::JoinHandle<InstanceResult> {
    let Some((chunks, memory)) = received else {
        let limit = state.config.max_instance_bytes;
        return tokio::spawn(ready(rejected(
            index,
            &format!("the instance is larger than max_instance_bytes ({limit} bytes)"),
        )));
    };
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let result = instance_result(
            index,
            ingest::store_received(
                state.store.as_ref(),
                &state.metrics,
                &chunks,
                None,
                state.config.min_free_bytes,
            ),
        );
        // The instance's memory is free again.
        drop((chunks, memory));
        if result.outcome == instance_result::Outcome::Stored as i32 {
            if let Some(uid) = result.study.strip_prefix("studies/") {
                state.study_changed(uid, false);
            }
        }
        result
    })
}

#[tonic::async_trait]
impl IngestService for IngestApi {
    async fn store_instances(
        &self,
        request: Request<Streaming<StoreInstancesRequest>>,
    ) -> Result<Response<StoreInstancesResponse>, Status> {
        let state = &self.0;
        let caller = caller(&request)?;
        let Ok(_slot) = state.ingest.slots.clone().try_acquire_owned() else {
            state.metrics.ingest_refused_streams.inc();
            return Err(retry_later(format!(
                "{} ingest streams are open, the most this server takes: retry after the retry-after-ms trailer",
                state.config.max_concurrent_streams
            )));
        };
        let mut stream = request.into_inner();
        // Results in arrival order; instances are stored while the next ones arrive (at most
        // IN_FLIGHT per stream; their bytes count against the ingest memory until stored).
        const IN_FLIGHT: usize = 8;
        let mut pending: std::collections::VecDeque<tokio::task::JoinHandle<InstanceResult>> =
            Default::default();
        let mut results = Vec::new();
        // The instance being received: its index, and what was received of it.
        let mut current: Option<(u32, Option<Received>)> = None;
        while let Some(message) = stream.message().await? {
            if let Some((index, _)) = &current {
                if *index != message.instance_index {
                    let index = *index;
                    current = None;
                    pending.push_back(tokio::spawn(ready(rejected(
                        index,
                        "the stream went on to another instance before this one's last_chunk",
                    ))));
                }
            }
            let entry =
                current.get_or_insert_with(|| (message.instance_index, Some((Vec::new(), None))));
            hold_chunk(state, &mut entry.1, message.chunk, message.instance_index).await?;
            if message.last_chunk {
                let (index, received) = current.take().expect("set above");
                let task = store_task(state, index, received);
                pending.push_back(task);
                while pending.len() >= IN_FLIGHT {
                    let oldest = pending.pop_front().expect("not empty");
                    results.push(
                        oldest
                            .await
                            .map_err(|e| Status::internal(format!("ingest worker: {e}")))?,
                    );
                }
            }
        }
        if let Some((index, _)) = current {
            pending.push_back(tokio::spawn(ready(rejected(
                index,
                "the stream ended before the instance's last_chunk",
            ))));
        }
        for task in pending {
            results.push(
                task.await
                    .map_err(|e| Status::internal(format!("ingest worker: {e}")))?,
            );
        }
        tracing::info!(caller = %caller.name, instances = results.len(), "ingest stream done");
        Ok(Response::new(StoreInstancesResponse { results }))
    }

    async fn complete_study(
        &self,
        request: Request<CompleteStudyRequest>,
    ) -> Result<Response<proto::Study>, Status> {
        let uid = uid_of(&request.get_ref().name, "studies")?;
        let row = crate::app::completion::complete(&self.0, &uid).await?;
        Ok(Response::new(study_message(row)))
    }

    async fn get_study(
        &self,
        request: Request<GetStudyRequest>,
    ) -> Result<Response<proto::Study>, Status> {
        let uid = uid_of(&request.get_ref().name, "studies")?;
        Ok(Response::new(self.study(uid).await?))
    }

    type WatchStudyStream = WatchStream<proto::Study>;

    async fn watch_study(
        &self,
        request: Request<WatchStudyRequest>,
    ) -> Result<Response<Self::WatchStudyStream>, Status> {
        let api = self.clone();
        let uid = uid_of(&request.get_ref().name, "studies")?;
        let mut events = api.0.events.subscribe();
        let first = api.study(uid.clone()).await?;
        let stream = async_stream(move |tx| async move {
            let terminal = |s: &proto::Study| {
                StudyState::ALL
                    .iter()
                    .any(|t| t.is_settled() && study_state(*t) as i32 == s.state)
            };
            let mut last = first.clone();
            if tx.send(Ok(first)).await.is_err() || terminal(&last) {
                return;
            }
            loop {
                match events.recv().await {
                    Ok(Event::Study(changed)) if changed == uid => {}
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
                let Ok(now) = api.study(uid.clone()).await else {
                    return;
                };
                if now != last {
                    last = now.clone();
                    if tx.send(Ok(now)).await.is_err() || terminal(&last) {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }
}

pub fn rejected(index: u32, reason: &str) -> InstanceResult {
    InstanceResult {
        instance_index: index,
        outcome: Outcome::Rejected as i32,
        reason: reason.to_string(),
        ..Default::default()
    }
}

/// The gRPC answer for one instance.
pub fn instance_result(
    index: u32,
    stored: Result<ingest::Received, ingest::Refused>,
) -> InstanceResult {
    match stored {
        Ok(a) => InstanceResult {
            instance_index: index,
            outcome: match a.outcome {
                StoreOutcome::Stored => Outcome::Stored,
                StoreOutcome::Duplicate => Outcome::Duplicate,
                StoreOutcome::Conflict => Outcome::Conflict,
            } as i32,
            sop_instance_uid: a.sop_instance_uid,
            study: format!("studies/{}", a.study_instance_uid),
            reason: if a.outcome == StoreOutcome::Conflict {
                ingest::CONFLICT.into()
            } else {
                String::new()
            },
            sha256: a.sha256,
        },
        // The store failed, or the disk is at its reserve: nothing of it was kept.
        Err(r) if r.refusal == ingest::Refusal::StoreFailed => InstanceResult {
            instance_index: index,
            outcome: Outcome::RetryLater as i32,
            reason: r.reason,
            sha256: r.sha256,
            ..Default::default()
        },
        Err(r) => InstanceResult {
            sha256: r.sha256,
            ..rejected(index, &r.reason)
        },
    }
}

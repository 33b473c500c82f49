//! The gRPC services: ingest, worklist, quality and models, with roles and audit.
//!
//! Every call is authorised first ([`State::authorize`]): a bearer token from the
//! configuration, mapped to a role, checked against the call's allowed roles (no token or an
//! unknown one: UNAUTHENTICATED; a role that may not: PERMISSION_DENIED). Every call that
//! returns patient data is written to the audit log (who, what, when, from where). Patient
//! identifiers are never logged.

use super::ingest;
use super::proto::{self, *};
use super::store::{AuditRow, Store, StoreError, WorkItemRow};
use crate::config::ServiceConfig;
use crate::labeler::Labeler;
use crate::qa::{compare_study, AgreementBuilder, StudyPair, UncertainPolicy};
use prost::Message;
use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Pacs,
    Radiologist,
    Qa,
    Admin,
}

impl Role {
    fn parse(text: &str) -> Option<Role> {
        Some(match text {
            "pacs" => Role::Pacs,
            "radiologist" => Role::Radiologist,
            "qa" => Role::Qa,
            "admin" => Role::Admin,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Role::Pacs => "pacs",
            Role::Radiologist => "radiologist",
            Role::Qa => "qa",
            Role::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    pub peer: String,
}

/// What changed, for the watch streams.
#[derive(Debug, Clone)]
pub enum Event {
    Study(String),
    CriticalItem(String),
}

/// Counters for /metrics.
#[derive(Default)]
pub struct Metrics {
    pub ingest_bytes: AtomicU64,
    pub ingest_instances: AtomicU64,
    pub ingest_rejected: AtomicU64,
    pub ingest_refused_streams: AtomicU64,
    /// Chunks that waited for room in the ingest memory.
    pub ingest_memory_waits: AtomicU64,
    /// Streams ended with RESOURCE_EXHAUSTED because the ingest memory stayed full.
    pub ingest_memory_refusals: AtomicU64,
    pub jobs_done: AtomicU64,
    pub jobs_failed: AtomicU64,
    /// Sum of job durations, ms, and the last one.
    pub job_ms_total: AtomicU64,
    pub job_ms_last: AtomicU64,
    /// Time jobs waited in the queue before a worker took them, ms.
    pub queue_wait_ms_total: AtomicU64,
    /// Per model ("task:name"): calls and seconds of compute.
    pub model_compute: std::sync::Mutex<BTreeMap<String, (u64, f64)>>,
}

/// What the models looked like when the worker loaded them.
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

pub struct State {
    pub store: Arc<dyn Store>,
    pub config: ServiceConfig,
    tokens: HashMap<String, (String, Role)>,
    ingest_slots: Arc<Semaphore>,
    /// Bytes received and not yet stored, all streams together: a permit per byte, at most
    /// `max_ingest_memory_bytes`.
    ingest_memory: Arc<Semaphore>,
    pub events: broadcast::Sender<Event>,
    pub metrics: Arc<Metrics>,
    pub models: std::sync::RwLock<Vec<ModelStatus>>,
    /// Built once (its patterns compile at start), shared by the QA calls.
    labeler: Labeler,
}

/// The ingest memory's permits (one per byte): `max_ingest_memory_bytes`, as far as a
/// semaphore counts.
fn ingest_memory_capacity(config: &ServiceConfig) -> usize {
    config.max_ingest_memory_bytes.min(Semaphore::MAX_PERMITS)
}

/// RESOURCE_EXHAUSTED with a `retry-after-ms` trailer: come back in a second.
fn retry_later(message: String) -> Status {
    let mut status = Status::resource_exhausted(message);
    status
        .metadata_mut()
        .insert("retry-after-ms", "1000".parse().expect("ascii"));
    status
}

pub fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::NotFound(m) => Status::not_found(m),
        StoreError::Precondition(m) => Status::failed_precondition(m),
        StoreError::Conflict(m) => Status::already_exists(m),
        other => {
            tracing::error!("store: {other}");
            Status::internal("the store failed; the operation was not done: retry, and tell the administrator if it persists")
        }
    }
}

/// "studies/{uid}" or "workItems/{uid}" -> uid.
fn uid_of(name: &str, collection: &str) -> Result<String, Status> {
    name.strip_prefix(collection)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|uid| {
            !uid.is_empty()
                && uid.len() <= 64
                && uid.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
        .map(str::to_string)
        .ok_or_else(|| {
            Status::invalid_argument(format!("name {name:?} is not \"{collection}/{{uid}}\""))
        })
}

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn millis(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

impl State {
    pub fn new(store: Arc<dyn Store>, config: ServiceConfig, metrics: Arc<Metrics>) -> State {
        let tokens = config
            .tokens
            .iter()
            .filter_map(|t| Role::parse(&t.role).map(|r| (t.token.clone(), (t.name.clone(), r))))
            .collect();
        let (events, _) = broadcast::channel(1024);
        State {
            store,
            ingest_slots: Arc::new(Semaphore::new(config.max_concurrent_streams.max(1))),
            ingest_memory: Arc::new(Semaphore::new(ingest_memory_capacity(&config))),
            config,
            tokens,
            events,
            metrics,
            models: std::sync::RwLock::new(vec![]),
            labeler: Labeler::new(),
        }
    }

    /// Room in the ingest memory for `bytes` of instance `index`. Waiting here stops reading
    /// the stream, so HTTP/2 flow control holds its sender back; after `ingest_memory_wait_ms`
    /// without room, RESOURCE_EXHAUSTED.
    async fn room_for(&self, bytes: usize, index: u32) -> Result<OwnedSemaphorePermit, Status> {
        // A chunk is at most the 64 MiB message limit: it fits in a u32.
        let bytes = bytes as u32;
        let memory = self.ingest_memory.clone();
        if let Ok(permit) = memory.clone().try_acquire_many_owned(bytes) {
            return Ok(permit);
        }
        self.metrics
            .ingest_memory_waits
            .fetch_add(1, Ordering::Relaxed);
        let wait = Duration::from_millis(self.config.ingest_memory_wait_ms);
        match tokio::time::timeout(wait, memory.acquire_many_owned(bytes)).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                self.metrics
                    .ingest_memory_refusals
                    .fetch_add(1, Ordering::Relaxed);
                Err(retry_later(format!(
                    "the server's ingest memory (max_ingest_memory_bytes, {} bytes) stayed full for {} ms: instances this stream finished before instance {index} may be stored; send the stream again after the retry-after-ms trailer (stored instances come back as duplicates)",
                    self.config.max_ingest_memory_bytes, self.config.ingest_memory_wait_ms
                )))
            }
        }
    }

    /// The caller, if its token maps to one of `allowed` roles (admin may do everything).
    pub fn authorize<T>(
        &self,
        request: &Request<T>,
        allowed: &[Role],
        call: &str,
    ) -> Result<Caller, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let header = request.metadata().get("authorization").ok_or_else(|| {
            Status::unauthenticated(
                "no bearer token: send the metadata \"authorization: Bearer <token>\"",
            )
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("the authorization metadata must be \"Bearer <token>\"")
            })?;
        let (name, role) = self
            .tokens
            .get(token.trim())
            .cloned()
            .ok_or_else(|| Status::unauthenticated("unknown token"))?;
        if role != Role::Admin && !allowed.contains(&role) {
            tracing::warn!(caller = %name, role = role.as_str(), call, "permission denied");
            return Err(Status::permission_denied(format!(
                "role {} may not call {call} (allowed: {})",
                role.as_str(),
                allowed
                    .iter()
                    .map(|r| r.as_str())
                    .chain(["admin"])
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(Caller { name, role, peer })
    }

    pub fn audit(&self, caller: &Caller, action: &str, resource: &str) -> Result<(), Status> {
        self.store
            .audit(&AuditRow {
                at_ms: super::store::now_ms(),
                who: caller.name.clone(),
                role: caller.role.as_str().into(),
                action: action.into(),
                resource: resource.into(),
                peer: caller.peer.clone(),
            })
            .map_err(store_status)
    }

    fn study_message(&self, uid: &str) -> Result<proto::Study, Status> {
        let row = self.store.study(uid).map_err(store_status)?;
        let state = match row.state.as_str() {
            "RECEIVING" => study::State::Receiving,
            "QUEUED" => study::State::Queued,
            "ANALYZING" => study::State::Analyzing,
            "DRAFT_READY" => study::State::DraftReady,
            "FAILED" => study::State::Failed,
            "SIGNED" => study::State::Signed,
            _ => study::State::Unspecified,
        };
        Ok(proto::Study {
            name: format!("studies/{uid}"),
            state: state as i32,
            instance_count: row.instance_count,
            last_instance_time: Some(timestamp(row.last_instance_at)),
            attempts: row.attempts,
            failure_reason: row.failure_reason,
        })
    }

    fn work_item_message(&self, row: &WorkItemRow) -> Result<WorkItem, Status> {
        let mut item = WorkItem::decode(row.template.as_slice())
            .map_err(|e| Status::internal(format!("stored work item: {e}")))?;
        item.status = match row.status.as_str() {
            "UNCLAIMED" => work_item::Status::Unclaimed,
            "CLAIMED" => work_item::Status::Claimed,
            "SIGNED" => work_item::Status::Signed,
            _ => work_item::Status::Unspecified,
        } as i32;
        item.claimed_by = row.claimed_by.clone().unwrap_or_default();
        item.priority = row.priority as i32;
        item.critical = row.critical;
        item.create_time = Some(timestamp(row.created_at));
        item.final_read = match &row.final_read {
            Some(bytes) => Some(
                FinalRead::decode(bytes.as_slice())
                    .map_err(|e| Status::internal(format!("stored final read: {e}")))?,
            ),
            None => None,
        };
        Ok(item)
    }

    fn comparison(&self, row: &WorkItemRow) -> Result<Option<crate::qa::StudyComparison>, Status> {
        let item = self.work_item_message(row)?;
        let Some(read) = item.final_read else {
            return Ok(None);
        };
        let draft = item.draft.unwrap_or_default();
        let pair = StudyPair {
            id: serde_json::Value::String(row.study_instance_uid.clone()),
            draft: draft.text,
            final_read: read.text,
            model_version: Some(row.model_version.clone()),
            date: None,
            draft_devices: item
                .devices
                .iter()
                .filter(|d| d.verdict != "absent")
                .map(|d| (d.device.clone(), d.verdict.clone()))
                .collect(),
            final_devices: read
                .devices
                .iter()
                .map(|d| (d.device.clone(), d.verdict.clone()))
                .collect(),
        };
        compare_study(&self.labeler, &pair, None)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

#[derive(Clone)]
pub struct Services(pub Arc<State>);

type WatchStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl ingest_service_server::IngestService for Services {
    async fn store_instances(
        &self,
        request: Request<Streaming<StoreInstancesRequest>>,
    ) -> Result<Response<StoreInstancesResponse>, Status> {
        let state = &self.0;
        let caller = state.authorize(&request, &[Role::Pacs], "StoreInstances")?;
        let Ok(_slot) = state.ingest_slots.clone().try_acquire_owned() else {
            state
                .metrics
                .ingest_refused_streams
                .fetch_add(1, Ordering::Relaxed);
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
        // The instance being received: its index, its chunks as they came (tonic's buffers, not
        // copied) and the ingest memory they hold (a permit per byte: their length); or None
        // once it grew past the limit (the rest is skipped).
        type Received = (Vec<bytes::Bytes>, Option<OwnedSemaphorePermit>);
        let mut current: Option<(u32, Option<Received>)> = None;
        let limit = state.config.max_instance_bytes;
        let ready = |result: InstanceResult| async move { result };
        while let Some(message) = stream.message().await? {
            if let Some((index, _)) = &current {
                if *index != message.instance_index {
                    let index = *index;
                    current = None;
                    pending.push_back(tokio::spawn(ready(ingest::rejected(
                        index,
                        "the stream went on to another instance before this one's last_chunk",
                    ))));
                }
            }
            let entry =
                current.get_or_insert_with(|| (message.instance_index, Some((Vec::new(), None))));
            if let Some((chunks, memory)) = &mut entry.1 {
                let length = memory.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
                if length + message.chunk.len() > limit {
                    entry.1 = None;
                } else {
                    let room = state
                        .room_for(message.chunk.len(), message.instance_index)
                        .await?;
                    match memory {
                        Some(held) => held.merge(room),
                        None => *memory = Some(room),
                    }
                    chunks.push(message.chunk);
                }
            }
            if message.last_chunk {
                let (index, received) = current.take().expect("set above");
                let task = match received {
                    None => tokio::spawn(ready(ingest::rejected(
                        index,
                        &format!("the instance is larger than max_instance_bytes ({limit} bytes)"),
                    ))),
                    Some((chunks, memory)) => {
                        let (store, metrics, events) = (
                            state.store.clone(),
                            state.metrics.clone(),
                            state.events.clone(),
                        );
                        tokio::task::spawn_blocking(move || {
                            let result =
                                ingest::store_received(store.as_ref(), &metrics, index, &chunks);
                            // The instance's memory is free again.
                            drop((chunks, memory));
                            if result.outcome == instance_result::Outcome::Stored as i32 {
                                if let Some(uid) = result.study.strip_prefix("studies/") {
                                    let _ = events.send(Event::Study(uid.to_string()));
                                }
                            }
                            result
                        })
                    }
                };
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
            pending.push_back(tokio::spawn(ready(ingest::rejected(
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
        let state = &self.0;
        state.authorize(&request, &[Role::Pacs], "CompleteStudy")?;
        let uid = uid_of(&request.get_ref().name, "studies")?;
        state.store.complete_study(&uid).map_err(store_status)?;
        let _ = state.events.send(Event::Study(uid.clone()));
        Ok(Response::new(state.study_message(&uid)?))
    }

    async fn get_study(
        &self,
        request: Request<GetStudyRequest>,
    ) -> Result<Response<proto::Study>, Status> {
        let state = &self.0;
        state.authorize(
            &request,
            &[Role::Pacs, Role::Radiologist, Role::Qa],
            "GetStudy",
        )?;
        let uid = uid_of(&request.get_ref().name, "studies")?;
        Ok(Response::new(state.study_message(&uid)?))
    }

    type WatchStudyStream = WatchStream<proto::Study>;

    async fn watch_study(
        &self,
        request: Request<WatchStudyRequest>,
    ) -> Result<Response<Self::WatchStudyStream>, Status> {
        let state = self.0.clone();
        state.authorize(
            &request,
            &[Role::Pacs, Role::Radiologist, Role::Qa],
            "WatchStudy",
        )?;
        let uid = uid_of(&request.get_ref().name, "studies")?;
        let mut events = state.events.subscribe();
        let first = state.study_message(&uid)?;
        let stream = async_stream(move |tx| async move {
            let terminal = |s: &proto::Study| {
                [
                    study::State::DraftReady,
                    study::State::Failed,
                    study::State::Signed,
                ]
                .iter()
                .any(|t| *t as i32 == s.state)
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
                let Ok(now) = state.study_message(&uid) else {
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

/// A stream fed by a task (bounded channel: a slow reader slows the task, never grows memory).
fn async_stream<T, F, Fut>(body: F) -> WatchStream<T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;

#[tonic::async_trait]
impl worklist_service_server::WorklistService for Services {
    async fn list_work_items(
        &self,
        request: Request<ListWorkItemsRequest>,
    ) -> Result<Response<ListWorkItemsResponse>, Status> {
        let state = &self.0;
        let caller = state.authorize(&request, &[Role::Radiologist], "ListWorkItems")?;
        let r = request.get_ref();
        let limit = match r.page_size {
            0 => DEFAULT_PAGE,
            n if n < 0 => return Err(Status::invalid_argument("page_size must not be negative")),
            n => i64::from(n).min(MAX_PAGE),
        };
        let offset = if r.page_token.is_empty() {
            0
        } else {
            r.page_token
                .strip_prefix("o")
                .and_then(|o| o.parse::<i64>().ok())
                .filter(|o| *o >= 0)
                .ok_or_else(|| Status::invalid_argument("page_token is not one this server gave"))?
        };
        let statuses: &[&str] =
            match work_item::Status::try_from(r.status).unwrap_or(work_item::Status::Unspecified) {
                work_item::Status::Unclaimed => &["UNCLAIMED"],
                work_item::Status::Claimed => &["CLAIMED"],
                work_item::Status::Signed => &["SIGNED"],
                work_item::Status::Unspecified => &["UNCLAIMED", "CLAIMED"],
            };
        let rows = state
            .store
            .work_items(statuses, r.critical_only, offset, limit + 1)
            .map_err(store_status)?;
        let more = rows.len() as i64 > limit;
        let work_items = rows
            .iter()
            .take(limit as usize)
            .map(|row| state.work_item_message(row))
            .collect::<Result<Vec<_>, _>>()?;
        state.audit(
            &caller,
            "ListWorkItems",
            &format!("{} work items", work_items.len()),
        )?;
        Ok(Response::new(ListWorkItemsResponse {
            work_items,
            next_page_token: if more {
                format!("o{}", offset + limit)
            } else {
                String::new()
            },
        }))
    }

    async fn get_work_item(
        &self,
        request: Request<GetWorkItemRequest>,
    ) -> Result<Response<WorkItem>, Status> {
        let state = &self.0;
        let caller = state.authorize(&request, &[Role::Radiologist], "GetWorkItem")?;
        let uid = uid_of(&request.get_ref().name, "workItems")?;
        let row = state.store.work_item(&uid).map_err(store_status)?;
        state.audit(&caller, "GetWorkItem", &format!("workItems/{uid}"))?;
        Ok(Response::new(state.work_item_message(&row)?))
    }

    async fn claim_work_item(
        &self,
        request: Request<ClaimWorkItemRequest>,
    ) -> Result<Response<WorkItem>, Status> {
        let state = &self.0;
        let caller = state.authorize(&request, &[Role::Radiologist], "ClaimWorkItem")?;
        let uid = uid_of(&request.get_ref().name, "workItems")?;
        let row = state
            .store
            .claim(&uid, &caller.name, false)
            .map_err(store_status)?;
        state.audit(&caller, "ClaimWorkItem", &format!("workItems/{uid}"))?;
        Ok(Response::new(state.work_item_message(&row)?))
    }

    async fn release_work_item(
        &self,
        request: Request<ReleaseWorkItemRequest>,
    ) -> Result<Response<WorkItem>, Status> {
        let state = &self.0;
        let caller = state.authorize(&request, &[Role::Radiologist], "ReleaseWorkItem")?;
        let uid = uid_of(&request.get_ref().name, "workItems")?;
        let row = state
            .store
            .claim(&uid, &caller.name, true)
            .map_err(store_status)?;
        state.audit(&caller, "ReleaseWorkItem", &format!("workItems/{uid}"))?;
        Ok(Response::new(state.work_item_message(&row)?))
    }

    async fn submit_final_read(
        &self,
        request: Request<SubmitFinalReadRequest>,
    ) -> Result<Response<WorkItem>, Status> {
        let state = &self.0;
        let caller = state.authorize(&request, &[Role::Radiologist], "SubmitFinalRead")?;
        let r = request.into_inner();
        let uid = uid_of(&r.name, "workItems")?;
        if r.text.trim().is_empty() {
            return Err(Status::invalid_argument("the final read's text is empty"));
        }
        let read = FinalRead {
            text: r.text,
            radiologist: caller.name.clone(),
            sign_time: Some(timestamp(super::store::now_ms())),
            findings: r.findings,
            devices: r.devices,
        };
        let row = state
            .store
            .sign(&uid, &caller.name, &read.encode_to_vec())
            .map_err(store_status)?;
        state.audit(&caller, "SubmitFinalRead", &format!("workItems/{uid}"))?;
        let _ = state.events.send(Event::Study(uid));
        Ok(Response::new(state.work_item_message(&row)?))
    }

    type WatchCriticalItemsStream = WatchStream<WorkItem>;

    async fn watch_critical_items(
        &self,
        request: Request<WatchCriticalItemsRequest>,
    ) -> Result<Response<Self::WatchCriticalItemsStream>, Status> {
        let state = self.0.clone();
        let caller = state.authorize(&request, &[Role::Radiologist], "WatchCriticalItems")?;
        let mut events = state.events.subscribe();
        let stream = async_stream(move |tx| async move {
            loop {
                let uid = match events.recv().await {
                    Ok(Event::CriticalItem(uid)) => uid,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                let item = state
                    .store
                    .work_item(&uid)
                    .map_err(store_status)
                    .and_then(|row| state.work_item_message(&row));
                if let Ok(item) = &item {
                    let _ = state.audit(&caller, "WatchCriticalItems", &item.name);
                }
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn render_study_image(
        &self,
        request: Request<RenderStudyImageRequest>,
    ) -> Result<Response<RenderedImage>, Status> {
        let state = self.0.clone();
        let caller =
            state.authorize(&request, &[Role::Radiologist, Role::Qa], "RenderStudyImage")?;
        let r = request.into_inner();
        let uid = uid_of(&r.name, "workItems")?;
        let analysis = if r.overlay {
            let row = state.store.work_item(&uid).map_err(store_status)?;
            let analysis: crate::analysis::StudyAnalysis = serde_json::from_str(&row.analysis_json)
                .map_err(|e| Status::internal(format!("stored analysis: {e}")))?;
            Some(analysis)
        } else {
            None
        };
        let size = match r.max_size {
            0 => 1024,
            n if n > 4096 => return Err(Status::invalid_argument("max_size is at most 4096")),
            n => n as usize,
        };
        let instances = state.store.study_instances(&uid).map_err(store_status)?;
        let (_, sha) = instances
            .first()
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no instance of study {uid}")))?;
        let path = state.store.blob_path(&sha);
        let png =
            tokio::task::spawn_blocking(move || ingest::render_png(&path, size, analysis.as_ref()))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(Status::failed_precondition)?;
        state.audit(&caller, "RenderStudyImage", &format!("workItems/{uid}"))?;
        Ok(Response::new(png))
    }
}

#[tonic::async_trait]
impl quality_service_server::QualityService for Services {
    async fn get_study_comparison(
        &self,
        request: Request<GetStudyComparisonRequest>,
    ) -> Result<Response<StudyComparison>, Status> {
        let state = &self.0;
        let caller = state.authorize(&request, &[Role::Qa], "GetStudyComparison")?;
        let uid = uid_of(&request.get_ref().name, "studies")?;
        let row = state.store.work_item(&uid).map_err(store_status)?;
        let comparison = state.comparison(&row)?.ok_or_else(|| {
            Status::failed_precondition(
                "the study is not signed yet: no final read to compare with",
            )
        })?;
        state.audit(&caller, "GetStudyComparison", &format!("studies/{uid}"))?;
        Ok(Response::new(StudyComparison {
            study: format!("studies/{uid}"),
            observations: comparison
                .labels
                .iter()
                .map(|(o, a)| ObservationComparison {
                    observation: o.to_string(),
                    draft_label: a.draft.as_str().into(),
                    final_label: a.final_read.as_str().into(),
                    agrees: a.agree,
                })
                .collect(),
            devices: comparison
                .devices
                .iter()
                .map(|d| DeviceComparison {
                    device: d.device.clone(),
                    draft_verdict: d.draft.clone().unwrap_or_default(),
                    final_verdict: d.final_read.clone().unwrap_or_default(),
                    agrees: d.agree,
                })
                .collect(),
            edit_distance: comparison.edit_distance as u32,
            edit_fraction: comparison.edit_fraction,
        }))
    }

    async fn get_agreement(
        &self,
        request: Request<GetAgreementRequest>,
    ) -> Result<Response<Agreement>, Status> {
        let state = &self.0;
        let caller = state.authorize(&request, &[Role::Qa], "GetAgreement")?;
        let r = request.get_ref();
        let rows = state
            .store
            .signed_items(
                r.start_time.as_ref().map(millis),
                r.end_time.as_ref().map(millis),
                &r.model_version,
            )
            .map_err(store_status)?;
        let mut builder = AgreementBuilder::new("request", UncertainPolicy::Positive);
        for row in &rows {
            if let Some(c) = state.comparison(row)? {
                builder.add(&c);
            }
        }
        let a = builder.finish();
        state.audit(&caller, "GetAgreement", &format!("{} studies", a.studies))?;
        let interval = |e: &crate::qa::Estimate| Interval {
            value: e.value.unwrap_or(f64::NAN),
            low: e.low.unwrap_or(f64::NAN),
            high: e.high.unwrap_or(f64::NAN),
        };
        Ok(Response::new(Agreement {
            studies: a.studies as u32,
            observations: a
                .observations
                .iter()
                .map(|o| ObservationStatistics {
                    observation: o.observation.into(),
                    true_positive: o.table.true_positive as u32,
                    false_positive: o.table.false_positive as u32,
                    false_negative: o.table.false_negative as u32,
                    true_negative: o.table.true_negative as u32,
                    sensitivity: Some(interval(&o.sensitivity)),
                    ppv: Some(interval(&o.ppv)),
                    f1: o.f1.unwrap_or(f64::NAN),
                    kappa: Some(interval(&o.kappa)),
                })
                .collect(),
            device_agreement: a.device_agreement.value.unwrap_or(f64::NAN),
        }))
    }
}

#[tonic::async_trait]
impl model_service_server::ModelService for Services {
    async fn list_models(
        &self,
        request: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        let state = &self.0;
        state.authorize(&request, &[], "ListModels")?;
        let packs = state
            .models
            .read()
            .map_err(|_| Status::internal("model table"))?
            .iter()
            .map(|m| proto::ModelPack {
                name: m.name.clone(),
                task: m.task.clone(),
                version: m.version.clone(),
                test_model: m.test_model,
                provider: m.provider.clone(),
                healthy: m.healthy,
                error: m.error.clone(),
            })
            .collect();
        Ok(Response::new(ListModelsResponse { packs }))
    }

    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let state = &self.0;
        state.authorize(&request, &[], "ListJobs")?;
        let jobs = state
            .store
            .jobs(&request.get_ref().state)
            .map_err(store_status)?
            .into_iter()
            .map(|j| Job {
                study: format!("studies/{}", j.study_instance_uid),
                state: j.state,
                attempts: j.attempts,
                last_error: j.last_error,
            })
            .collect();
        Ok(Response::new(ListJobsResponse { jobs }))
    }
}

/// The Prometheus text of the service's metrics.
pub fn metrics_text(state: &State) -> String {
    let m = &state.metrics;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let depth = state.store.queue_depth().unwrap_or(-1);
    let mut out = BTreeMap::new();
    out.insert(
        "radassist_ingest_bytes_total",
        (get(&m.ingest_bytes) as f64, "counter", "DICOM bytes stored"),
    );
    out.insert(
        "radassist_ingest_instances_total",
        (
            get(&m.ingest_instances) as f64,
            "counter",
            "instances stored",
        ),
    );
    out.insert(
        "radassist_ingest_rejected_total",
        (
            get(&m.ingest_rejected) as f64,
            "counter",
            "instances rejected or conflicting",
        ),
    );
    out.insert(
        "radassist_ingest_streams_refused_total",
        (
            get(&m.ingest_refused_streams) as f64,
            "counter",
            "ingest streams refused (RESOURCE_EXHAUSTED)",
        ),
    );
    out.insert(
        "radassist_ingest_memory_waits_total",
        (
            get(&m.ingest_memory_waits) as f64,
            "counter",
            "received chunks that waited for room in the ingest memory",
        ),
    );
    out.insert(
        "radassist_ingest_memory_refusals_total",
        (
            get(&m.ingest_memory_refusals) as f64,
            "counter",
            "ingest streams ended with RESOURCE_EXHAUSTED: the ingest memory stayed full",
        ),
    );
    out.insert(
        "radassist_ingest_memory_bytes",
        (
            (ingest_memory_capacity(&state.config) - state.ingest_memory.available_permits())
                as f64,
            "gauge",
            "bytes received and not yet stored (all ingest streams)",
        ),
    );
    out.insert(
        "radassist_job_queue_depth",
        (depth as f64, "gauge", "analysis jobs waiting"),
    );
    out.insert(
        "radassist_jobs_done_total",
        (get(&m.jobs_done) as f64, "counter", "analysis jobs done"),
    );
    out.insert(
        "radassist_jobs_failed_total",
        (
            get(&m.jobs_failed) as f64,
            "counter",
            "analysis attempts failed",
        ),
    );
    out.insert(
        "radassist_job_duration_seconds_sum",
        (
            get(&m.job_ms_total) as f64 / 1000.0,
            "counter",
            "total analysis time",
        ),
    );
    out.insert(
        "radassist_job_duration_seconds_last",
        (
            get(&m.job_ms_last) as f64 / 1000.0,
            "gauge",
            "the last analysis's time",
        ),
    );
    out.insert(
        "radassist_job_queue_wait_seconds_sum",
        (
            get(&m.queue_wait_ms_total) as f64 / 1000.0,
            "counter",
            "time jobs waited in the queue",
        ),
    );
    let mut text = String::new();
    for (name, (value, kind, help)) in out {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    let compute = m
        .model_compute
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    text.push_str("# HELP radassist_model_compute_seconds_sum time spent running each model\n");
    text.push_str("# TYPE radassist_model_compute_seconds_sum counter\n");
    for (model, (_, seconds)) in &compute {
        text.push_str(&format!(
            "radassist_model_compute_seconds_sum{{model=\"{model}\"}} {seconds}\n"
        ));
    }
    text.push_str("# HELP radassist_model_calls_total calls of each model\n");
    text.push_str("# TYPE radassist_model_calls_total counter\n");
    for (model, (calls, _)) in &compute {
        text.push_str(&format!(
            "radassist_model_calls_total{{model=\"{model}\"}} {calls}\n"
        ));
    }
    text
}

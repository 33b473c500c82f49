//! One DICOM association, from A-ASSOCIATE-RQ to release or abort: P-DATA fragments gathered
//! into DIMSE messages (a command set, then its data set), C-ECHO answered, C-STORE data sets
//! stored through [`crate::app::ingest`] and answered only once durable.
//!
//! Memory is bounded: a PDU is at most `max_pdu_length` (dicom-ul refuses longer ones), an
//! instance at most `service.max_instance_bytes`, and all instances being received (gRPC and
//! DICOM together) share `service.max_ingest_memory_bytes`; an instance that finds no room is
//! answered A700 (out of resources) and its fragments are dropped as they come. A peer silent
//! for `idle_timeout_seconds`, a PDU out of order, or bytes that are no PDU end the
//! association with an A-ABORT; nothing half-received is stored.

use super::message::{self as dimse, CommandField, Request, StoreStatus};
use super::STORAGE_SOP_CLASSES;
use crate::app::ingest::{self, Declared, Refused};
use crate::app::State;
use crate::draft::sr_text::TEXT_SR_SOP_CLASSES;
use crate::store::StoreOutcome;
use bytes::Bytes;
use dicom_object::FileMetaTableBuilder;
use dicom_ul::association::server::{AccessControl, DefaultNegotiation, ServerAssociationOptions};
use dicom_ul::association::{Association as _, AsyncServerAssociation};
use dicom_ul::pdu::PresentationContextNegotiated;
use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, AssociationRJ, AssociationRJResult,
    AssociationRJServiceProviderPresentationReason, AssociationRJSource, PDataValue,
    PDataValueType, PresentationContextResultReason,
};
use dicom_ul::Pdu;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

/// The stream under an association: TCP, or TLS over TCP.
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for S {}

/// A data set being received for a C-STORE request.
struct Incoming {
    request: Request,
    presentation_context_id: u8,
    /// The fragments as they came, and the ingest memory they hold; None once the instance
    /// was refused (too large, no memory): the rest is dropped as it comes.
    fragments: Option<(Vec<Bytes>, Option<OwnedSemaphorePermit>)>,
    refused: Option<(StoreStatus, String)>,
    length: usize,
}

/// What one association has received and not yet handled.
#[derive(Default)]
struct Pending {
    /// Command fragments of the message being received (a command set may span PDUs).
    command: Vec<u8>,
    incoming: Option<Incoming>,
}

/// Rejects a connection beyond `max_associations`: reads its A-ASSOCIATE-RQ and answers
/// A-ASSOCIATE-RJ, transient, local limit exceeded (the peer should try again later).
pub async fn reject_busy(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let mut buffer = bytes::BytesMut::with_capacity(4096);
    let request = dicom_ul::association::read_pdu_from_wire_async(
        &mut stream,
        &mut buffer,
        dicom_ul::pdu::MAXIMUM_PDU_SIZE,
        false,
    )
    .await;
    if !matches!(request, Ok(Pdu::AssociationRQ(_))) {
        return;
    }
    let mut out = Vec::new();
    let rejection = Pdu::AssociationRJ(AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(
            AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
        ),
    });
    if dicom_ul::pdu::write_pdu(&mut out, &rejection).is_ok() {
        let _ = stream.write_all(&out).await;
    }
}

/// Negotiates an association on a plain connection whose A-ASSOCIATE-RQ has arrived (see
/// [`super::admission`]), within `deadline`; None when it was rejected or failed (counted and
/// logged).
pub async fn negotiate<A: AccessControl>(
    stream: TcpStream,
    remote: SocketAddr,
    options: &ServerAssociationOptions<'static, A, DefaultNegotiation>,
    state: &State,
    deadline: std::time::Duration,
) -> Option<AsyncServerAssociation<TcpStream>> {
    negotiated(
        tokio::time::timeout(deadline, options.establish_async(stream)).await,
        remote,
        state,
        deadline,
    )
}

/// The TLS handshake and the negotiation that follows it, within `deadline`.
pub async fn negotiate_tls<A: AccessControl>(
    stream: TcpStream,
    remote: SocketAddr,
    options: &ServerAssociationOptions<'static, A, DefaultNegotiation>,
    state: &State,
    deadline: std::time::Duration,
) -> Option<AsyncServerAssociation<dicom_ul::association::server::AsyncTlsStream>> {
    negotiated(
        tokio::time::timeout(deadline, options.establish_tls_async(stream)).await,
        remote,
        state,
        deadline,
    )
}

fn negotiated<S>(
    result: Result<
        Result<AsyncServerAssociation<S>, dicom_ul::association::Error>,
        tokio::time::error::Elapsed,
    >,
    remote: SocketAddr,
    state: &State,
    deadline: std::time::Duration,
) -> Option<AsyncServerAssociation<S>> {
    match result {
        Ok(Ok(association)) => Some(association),
        Ok(Err(dicom_ul::association::Error::Rejected { association_rj, .. })) => {
            state.metrics.dicom_association("rejected");
            tracing::info!(
                "dicom: rejected an association from {remote}: {}",
                association_rj.source
            );
            None
        }
        Ok(Err(e)) => {
            state.metrics.dicom_association("failed");
            tracing::info!("dicom: no association with {remote}: {e}");
            None
        }
        Err(_) => {
            state.metrics.dicom_association("failed");
            tracing::info!("dicom: {remote} did not associate within {deadline:?}");
            None
        }
    }
}

/// Serves an established association until release or abort.
pub async fn run<S: Stream>(
    mut association: AsyncServerAssociation<S>,
    remote: SocketAddr,
    state: &Arc<State>,
) {
    state.metrics.dicom_association("accepted");
    let peer = association.peer_ae_title().to_string();
    tracing::info!("dicom: association with {peer} at {remote}");
    let mut pending = Pending::default();
    loop {
        let pdu = match association.receive().await {
            Ok(pdu) => pdu,
            Err(e) => {
                // A timeout, a PDU too long or malformed, the connection gone: whatever was
                // half-received is dropped, never stored.
                tracing::info!("dicom: association with {peer} ended: {e}");
                let _ = association.abort().await;
                return;
            }
        };
        match pdu {
            Pdu::PData { data } => {
                for value in data {
                    if let Err(why) =
                        handle_value(&mut association, state, &mut pending, value).await
                    {
                        tracing::warn!("dicom: aborting the association with {peer}: {why}");
                        let _ = association.abort().await;
                        return;
                    }
                }
            }
            Pdu::ReleaseRQ => {
                let _ = association.send(&Pdu::ReleaseRP).await;
                tracing::info!("dicom: association with {peer} released");
                return;
            }
            Pdu::AbortRQ { source } => {
                tracing::info!("dicom: {peer} aborted the association ({source:?})");
                return;
            }
            other => {
                tracing::warn!(
                    "dicom: aborting the association with {peer}: unexpected {}",
                    other.short_description()
                );
                let _ = association
                    .send(&Pdu::AbortRQ {
                        source: AbortRQSource::ServiceProvider(
                            AbortRQServiceProviderReason::UnexpectedPdu,
                        ),
                    })
                    .await;
                return;
            }
        }
    }
}

/// One P-DATA value: part of a command set or of a data set.
async fn handle_value<S: Stream>(
    association: &mut AsyncServerAssociation<S>,
    state: &Arc<State>,
    pending: &mut Pending,
    value: PDataValue,
) -> Result<(), String> {
    let context = association
        .presentation_contexts()
        .iter()
        .find(|pc| pc.id == value.presentation_context_id)
        .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .cloned()
        .ok_or_else(|| {
            format!(
                "a P-DATA value on presentation context {}, which was not accepted",
                value.presentation_context_id
            )
        })?;
    match value.value_type {
        PDataValueType::Command => {
            handle_command(association, state, pending, &context, value).await
        }
        PDataValueType::Data => handle_data(association, state, pending, &context, value).await,
    }
}

/// Part of a command set: once whole, a C-ECHO is answered, and a C-STORE's data set awaited.
async fn handle_command<S: Stream>(
    association: &mut AsyncServerAssociation<S>,
    state: &Arc<State>,
    pending: &mut Pending,
    context: &PresentationContextNegotiated,
    value: PDataValue,
) -> Result<(), String> {
    if pending.incoming.is_some() {
        return Err("a command set arrived before the last data set was complete".into());
    }
    if pending.command.len() + value.data.len() > MAX_COMMAND_BYTES {
        return Err(format!(
            "a command set longer than {MAX_COMMAND_BYTES} bytes"
        ));
    }
    pending.command.extend_from_slice(&value.data);
    if !value.is_last {
        return Ok(());
    }
    let request = dimse::read_request(&std::mem::take(&mut pending.command))?;
    match request.command {
        CommandField::CEchoRq => {
            state.metrics.dicom_request("C-ECHO", 0);
            send_command(
                association,
                context.id,
                dimse::echo_response(request.message_id),
            )
            .await
        }
        CommandField::CStoreRq if request.has_data_set => {
            let refused = (request.affected_sop_class_uid != context.abstract_syntax).then(|| {
                (
                    StoreStatus::DataSetDoesNotMatch,
                    format!(
                        "SOP Class {} on a context for {}",
                        request.affected_sop_class_uid, context.abstract_syntax
                    ),
                )
            });
            pending.incoming = Some(Incoming {
                request,
                presentation_context_id: context.id,
                fragments: Some((Vec::new(), None)),
                refused,
                length: 0,
            });
            Ok(())
        }
        CommandField::CStoreRq => Err("a C-STORE-RQ without a data set".into()),
        CommandField::Other(field) => Err(format!(
            "command field {field:#06x}: this node serves only C-ECHO and C-STORE"
        )),
    }
}

/// Part of a data set: once whole, the instance is stored and the C-STORE answered.
async fn handle_data<S: Stream>(
    association: &mut AsyncServerAssociation<S>,
    state: &Arc<State>,
    pending: &mut Pending,
    context: &PresentationContextNegotiated,
    value: PDataValue,
) -> Result<(), String> {
    let Some(incoming) = pending.incoming.as_mut() else {
        return Err("a data set without its command set".into());
    };
    if incoming.presentation_context_id != context.id {
        return Err("a data set on another presentation context than its command".into());
    }
    receive_fragment(state, incoming, value.data).await;
    if !value.is_last {
        return Ok(());
    }
    let incoming = pending.incoming.take().expect("checked above");
    let request = incoming.request.clone();
    let calling = association.peer_ae_title().to_string();
    let (status, reason) = store(state, &calling, incoming, &context.transfer_syntax).await;
    state.metrics.dicom_request("C-STORE", status.code());
    if status != StoreStatus::Success {
        tracing::info!(
            "dicom: C-STORE of {} from {calling}: {:04X} {reason}",
            request.affected_sop_instance_uid,
            status.code()
        );
    }
    send_command(
        association,
        context.id,
        dimse::store_response(&request, status, &reason),
    )
    .await
}

/// Sends a response command set on presentation context `id`.
async fn send_command<S: Stream>(
    association: &mut AsyncServerAssociation<S>,
    id: u8,
    command: Vec<u8>,
) -> Result<(), String> {
    association
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: id,
                value_type: PDataValueType::Command,
                is_last: true,
                data: command,
            }],
        })
        .await
        .map_err(|e| format!("sending a response: {e}"))
}

/// Stores a received data set as a Part 10 instance (the file meta group radassist writes, then
/// the data set exactly as it came) and says what to answer.
async fn store(
    state: &Arc<State>,
    calling_ae_title: &str,
    incoming: Incoming,
    transfer_syntax: &str,
) -> (StoreStatus, String) {
    if let Some(refused) = incoming.refused {
        return refused;
    }
    let Some((fragments, memory)) = incoming.fragments else {
        return (
            StoreStatus::OutOfResources,
            "the data set was dropped: send it again".into(),
        );
    };
    let request = incoming.request;
    let meta = match file_meta(&request, transfer_syntax, calling_ae_title) {
        Ok(meta) => meta,
        Err(e) => return (StoreStatus::CannotUnderstand, e),
    };
    let mut chunks = Vec::with_capacity(fragments.len() + 1);
    chunks.push(Bytes::from(meta));
    chunks.extend(fragments);
    let (store, metrics) = (state.store.clone(), state.metrics.clone());
    let reserve = state.config.min_free_bytes;
    let expected = state.prior_source.as_ref().map(|r| r.expected().clone());
    let stored = tokio::task::spawn_blocking(move || {
        let declared = Declared {
            sop_class_uid: &request.affected_sop_class_uid,
            sop_instance_uid: &request.affected_sop_instance_uid,
            expected: expected.as_ref(),
        };
        let stored =
            ingest::store_received(store.as_ref(), &metrics, &chunks, Some(&declared), reserve);
        // The instance's memory is free again.
        drop((chunks, memory));
        stored
    })
    .await;
    match stored {
        Err(e) => (
            StoreStatus::OutOfResources,
            format!("storing failed ({e}): send it again"),
        ),
        Ok(Err(Refused {
            refusal, reason, ..
        })) => (StoreStatus::of_refusal(refusal), reason),
        Ok(Ok(received)) => match received.outcome {
            StoreOutcome::Stored => {
                state.study_changed(&received.study_instance_uid, false);
                (StoreStatus::Success, String::new())
            }
            StoreOutcome::Duplicate => (StoreStatus::Success, String::new()),
            StoreOutcome::Conflict => (StoreStatus::DuplicateSopInstance, ingest::CONFLICT.into()),
        },
    }
}

/// The 128-byte preamble, "DICM" and the file meta group of a received data set.
fn file_meta(
    request: &Request,
    transfer_syntax: &str,
    calling_ae_title: &str,
) -> Result<Vec<u8>, String> {
    if !STORAGE_SOP_CLASSES
        .iter()
        .chain(TEXT_SR_SOP_CLASSES)
        .any(|(uid, _)| *uid == request.affected_sop_class_uid)
    {
        return Err(format!(
            "Affected SOP Class UID {:?} is not a storage class this node takes",
            request.affected_sop_class_uid
        ));
    }
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(request.affected_sop_class_uid.as_str())
        .media_storage_sop_instance_uid(request.affected_sop_instance_uid.as_str())
        .transfer_syntax(transfer_syntax)
        .source_application_entity_title(calling_ae_title)
        .build()
        .map_err(|e| format!("the file meta group: {e}"))?;
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    meta.write(&mut out)
        .map_err(|e| format!("the file meta group: {e}"))?;
    Ok(out)
}

/// The longest command set taken (a C-STORE-RQ is about 200 bytes).
const MAX_COMMAND_BYTES: usize = 64 << 10;

/// Keeps a data set fragment, within the instance and memory limits.
async fn receive_fragment(state: &Arc<State>, incoming: &mut Incoming, data: Vec<u8>) {
    incoming.length += data.len();
    if incoming.refused.is_some() {
        incoming.fragments = None;
        return;
    }
    let Some((fragments, memory)) = incoming.fragments.as_mut() else {
        return;
    };
    let limit = state.config.max_instance_bytes;
    if incoming.length > limit {
        incoming.fragments = None;
        incoming.refused = Some((
            StoreStatus::OutOfResources,
            format!("larger than max_instance_bytes ({limit})"),
        ));
        return;
    }
    match state
        .ingest
        .room_for(&state.metrics, &state.config, data.len(), 0)
        .await
    {
        Ok(room) => {
            match memory {
                Some(held) => held.merge(room),
                None => *memory = Some(room),
            }
            fragments.push(Bytes::from(data));
        }
        Err(_) => {
            incoming.fragments = None;
            incoming.refused = Some((
                StoreStatus::OutOfResources,
                "the server's ingest memory is full: send it again".into(),
            ));
        }
    }
}

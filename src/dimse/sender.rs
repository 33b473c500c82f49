//! The results outbox's sender: every result object queued for a peer (see
//! [`crate::app::results`]) goes by C-STORE (dicom-ul, async), one association per result, or
//! by STOW-RS to a peer with `dicomweb` ([`crate::dicomweb_client::store`]), retried with backoff while the peer is down or refuses it, and marked sent only once the
//! peer answered Success (or a warning: stored), before the association is released; nothing
//! the peer did not acknowledge is ever marked sent. Taking a result records that an attempt
//! began; a crash that cuts the attempt off (before the answer, or before the mark's commit)
//! leaves that record, and at the next start (with PostgreSQL, by any front end once the
//! crashed one's hold on it ends) a peer radassist queries (`query_priors`) is asked by
//! C-FIND whether it holds the result, which is then not sent again; any other peer gets it
//! again and may hold the same SOP Instance twice (PACS take it as a duplicate). With several
//! front ends, each takes a result for a while before sending it, so that no two send the
//! same one.
//!
//! The loop is supervised: a panic is logged, counted in `radassist_results_sender_restarts`
//! and the loop starts again.

use super::message as dimse;
use super::query::QueryAssociation;
use super::tls::ClientTls;
use crate::app::State;
use crate::config::DicomPeer;
use crate::dicom::identifier::identifier;
use crate::dicomweb_client::DicomWebPeer;
use crate::store::{now_ms, OutboxRow};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTable;
use dicom_ul::association::client::{AsyncClientAssociation, ClientAssociationOptions};
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use dicom_ul::Pdu;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the outbox is looked at when nothing is due.
const POLL: Duration = Duration::from_secs(1);
/// Results taken at once (one: taking a result records that an attempt to send it began, so
/// a result taken and not yet tried must not look like one whose attempt a crash cut off),
/// and how long it is this sender's (other front ends' senders skip it meanwhile): more than
/// a send at its longest (connect, then answer timeouts).
const BATCH: i64 = 1;
const HOLD_MS: i64 = 10 * 60 * 1000;
/// How long a peer gets to connect, and to answer each PDU.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest wait between attempts.
const MAX_BACKOFF_MS: i64 = 5 * 60 * 1000;

/// The wait before attempt `attempts + 1`: 2 s, 4 s, 8 s, ... at most 5 minutes.
fn backoff_ms(attempts: u32) -> i64 {
    (2000i64 << attempts.min(16)).min(MAX_BACKOFF_MS)
}

/// A peer results go to, and how it is reached.
struct Peer {
    config: DicomPeer,
    /// DICOM TLS, when the peer has `tls`.
    tls: Option<ClientTls>,
    /// Its DICOMweb service, when it has `dicomweb`: results go there by STOW-RS.
    web: Option<DicomWebPeer>,
}

/// Runs the sender, restarting it if it panics. `tls` holds the client TLS of the peers with
/// `tls = true` (see [`super::tls::client_configs`]).
pub async fn supervise(
    state: Arc<State>,
    peers: Vec<DicomPeer>,
    tls: HashMap<String, ClientTls>,
    ae_title: String,
) {
    let peers: Arc<HashMap<String, Peer>> = Arc::new(
        peers
            .into_iter()
            .filter(|p| p.send_results)
            .map(|config| {
                // The URL was checked at start: an error here cannot happen, and is logged.
                let web = DicomWebPeer::of(&config).unwrap_or_else(|e| {
                    tracing::error!("results: {e}");
                    None
                });
                let peer = Peer {
                    tls: tls.get(&config.ae_title).cloned(),
                    web,
                    config,
                };
                (peer.config.ae_title.clone(), peer)
            })
            .collect(),
    );
    if peers.is_empty() {
        return;
    }
    loop {
        let run = tokio::spawn(run(state.clone(), peers.clone(), ae_title.clone()));
        match run.await {
            Ok(()) => return,
            Err(e) => {
                state.metrics.results_sender_restarts.inc();
                tracing::error!("results sender stopped ({e}): starting it again");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

async fn run(state: Arc<State>, peers: Arc<HashMap<String, Peer>>, ae_title: String) {
    loop {
        let due = state
            .store_call(|s| s.take_due_results(now_ms(), BATCH, HOLD_MS))
            .await;
        let due = match due {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!("results sender: reading the outbox: {e}");
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        if due.is_empty() {
            tokio::time::sleep(POLL).await;
            continue;
        }
        for row in due {
            let outcome = match peers.get(&row.result.peer) {
                Some(peer) => deliver(&state, peer, &ae_title, &row).await,
                None => Err(format!(
                    "peer {} is no longer configured with send_results",
                    row.result.peer
                )),
            };
            let id = row.id;
            match outcome {
                Ok(Delivered::Sent) => {
                    state.metrics.results_sent.inc();
                    tracing::info!(
                        "results: {} SR {} sent to {}",
                        row.result.kind,
                        row.result.sop_instance_uid,
                        row.result.peer
                    );
                }
                Ok(Delivered::AlreadyAtPeer) => {}
                Err(error) => {
                    state.metrics.results_failed.inc();
                    tracing::warn!(
                        "results: sending {} to {} failed (attempt {}): {error}",
                        row.result.sop_instance_uid,
                        row.result.peer,
                        row.attempts + 1
                    );
                    let next = now_ms() + backoff_ms(row.attempts);
                    let _ = state
                        .store_call(move |s| s.result_failed(id, &error, next))
                        .await;
                }
            }
        }
    }
}

/// What became of a result that was due.
enum Delivered {
    /// The peer stored it now.
    Sent,
    /// An attempt a crash cut off had delivered it: found at the peer, marked sent.
    AlreadyAtPeer,
}

/// Sends a result that is due, unless an attempt a crash cut off had delivered it already: a
/// peer radassist queries (`query_priors`) is asked first, by C-FIND at IMAGE level for the
/// result's SOP Instance UID; to any other peer it goes again (counted: it may then hold it
/// twice), as it does when the peer cannot be asked.
async fn deliver(
    state: &Arc<State>,
    peer: &Peer,
    ae_title: &str,
    row: &OutboxRow,
) -> Result<Delivered, String> {
    let (uid, to) = (&row.result.sop_instance_uid, &peer.config.ae_title);
    let sha = row.result.sha256.clone();
    let bytes = state
        .store_call(move |s| s.blobs().get(&sha).map_err(Into::into))
        .await
        .map_err(|e| format!("reading the result: {e}"))?;
    if row.cut_off_attempt_at.is_some() && !peer.config.query_priors {
        state.metrics.results_resent_after_cut_off.inc();
        tracing::warn!(
            "results: a crash cut off sending {uid} to {to}, which radassist does not query: sending it again"
        );
    } else if row.cut_off_attempt_at.is_some() {
        let held = match &peer.web {
            Some(web) => match series_of(&bytes) {
                Ok(series) => {
                    let r = &row.result;
                    web.holds(&r.study_instance_uid, &series, &r.sop_instance_uid)
                        .await
                }
                Err(e) => Err(e),
            },
            None => at_peer(peer, ae_title, row, &bytes).await,
        };
        match held {
            Ok(true) => {
                mark_sent(state, row.id, uid).await;
                state.metrics.results_found_at_peer.inc();
                tracing::info!(
                    "results: {uid}, whose sending a crash cut off, is at {to} already: not sent again"
                );
                return Ok(Delivered::AlreadyAtPeer);
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(
                "results: asking {to} whether it has {uid}, whose sending a crash cut off: {e}; sending it again"
            ),
        }
    }
    match &peer.web {
        Some(web) => {
            let r = &row.result;
            web.stow(&r.study_instance_uid, &r.sop_instance_uid, &bytes)
                .await?;
            mark_sent(state, row.id, uid).await;
        }
        None => send(state, peer, ae_title, row, &bytes).await?,
    }
    Ok(Delivered::Sent)
}

/// The Series Instance UID of a result's Part 10 `bytes`.
fn series_of(bytes: &[u8]) -> Result<String, String> {
    let object =
        crate::dicom::parse_dicom(bytes).map_err(|e| format!("reading the result: {e}"))?;
    crate::dicom::Attributes(&object)
        .text(tags::SERIES_INSTANCE_UID)
        .ok_or_else(|| "the result has no Series Instance UID".to_string())
}

/// Whether the peer holds the result: C-FIND (Study Root, IMAGE level, with the study and
/// series of the result's own data set) on a blocking thread, within [`ANSWER_TIMEOUT`].
async fn at_peer(
    peer: &Peer,
    ae_title: &str,
    row: &OutboxRow,
    bytes: &[u8],
) -> Result<bool, String> {
    let series = series_of(bytes)?;
    let (config, tls, ae_title) = (peer.config.clone(), peer.tls.clone(), ae_title.to_string());
    let (study, sop) = (
        row.result.study_instance_uid.clone(),
        row.result.sop_instance_uid.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let mut association = QueryAssociation::open(&config, tls.as_ref(), &ae_title, deadline)?;
        let matches = association.find(&identifier(
            "IMAGE",
            &[
                (tags::STUDY_INSTANCE_UID, study.as_str()),
                (tags::SERIES_INSTANCE_UID, series.as_str()),
                (tags::SOP_INSTANCE_UID, sop.as_str()),
            ],
        ));
        association.release();
        Ok(matches?.iter().any(|found| {
            crate::dicom::Attributes(found).text(tags::SOP_INSTANCE_UID) == Some(sop.clone())
        }))
    })
    .await
    .map_err(|e| format!("the query's thread: {e}"))?
}

/// Marks a result the peer acknowledged as sent. The store may fail for a moment (a full
/// disk, a lock): the mark is tried a few times, a second apart, before the result is left
/// pending, to be sent again (a duplicate the PACS takes as such), and that is logged.
async fn mark_sent(state: &Arc<State>, id: i64, sop_instance_uid: &str) {
    const TRIES: u32 = 5;
    for attempt in 1..=TRIES {
        match state.store_call(move |s| s.result_sent(id)).await {
            Ok(_) => return,
            Err(e) if attempt < TRIES => {
                tracing::warn!(
                    "results: marking {sop_instance_uid} sent failed ({}): trying again",
                    e
                );
                tokio::time::sleep(POLL).await;
            }
            Err(e) => tracing::error!(
                "results: {sop_instance_uid} was stored by the peer but could not be marked sent ({}): it will be sent again",
                e
            ),
        }
    }
}

/// One C-STORE of one result (its Part 10 `bytes`) to one peer, over DICOM TLS when the peer
/// has `tls`.
async fn send(
    state: &Arc<State>,
    peer: &Peer,
    ae_title: &str,
    row: &OutboxRow,
    bytes: &[u8],
) -> Result<(), String> {
    let (meta, data_set) = split_part10(bytes)?;
    let sop_class = meta.media_storage_sop_class_uid().to_string();
    let transfer_syntax = meta.transfer_syntax().to_string();
    let config = &peer.config;
    let options = ClientAssociationOptions::new()
        .calling_ae_title(ae_title)
        .called_ae_title(config.ae_title.as_str())
        .with_presentation_context(sop_class.as_str(), vec![transfer_syntax.as_str()])
        .read_timeout(ANSWER_TIMEOUT)
        .write_timeout(ANSWER_TIMEOUT);
    let address = (config.host.as_str(), config.port);
    let timed_out = |_| {
        format!(
            "{}:{} did not answer in {CONNECT_TIMEOUT:?}",
            config.host, config.port
        )
    };
    let refused = |e: dicom_ul::association::Error| {
        format!(
            "associating with {} at {}:{}{}: {e}",
            config.ae_title,
            config.host,
            config.port,
            if peer.tls.is_some() { " (TLS)" } else { "" },
            e = crate::causes::with_causes(&e)
        )
    };
    let store = Store {
        peer: &config.ae_title,
        sop_class: &sop_class,
        transfer_syntax: &transfer_syntax,
        sop_instance_uid: &row.result.sop_instance_uid,
        data_set,
    };
    match &peer.tls {
        None => {
            let mut association =
                tokio::time::timeout(CONNECT_TIMEOUT, options.establish_async(address))
                    .await
                    .map_err(timed_out)?
                    .map_err(refused)?;
            // Without it, the data set's last small PDU waits for the peer's delayed ACK.
            let _ = association.inner_stream().set_nodelay(true);
            let association = store.over(association).await?;
            stored(state, row, association).await;
            Ok(())
        }
        Some(tls) => {
            let options = options
                .tls_config(tls.config.clone())
                .server_name(&tls.server_name);
            let mut association =
                tokio::time::timeout(CONNECT_TIMEOUT, options.establish_tls_async(address))
                    .await
                    .map_err(timed_out)?
                    .map_err(refused)?;
            let _ = association.inner_stream().get_ref().0.set_nodelay(true);
            let association = store.over(association).await?;
            stored(state, row, association).await;
            Ok(())
        }
    }
}

/// The peer stored the result: it is marked sent at once, and only then is the association
/// released, so that a crash after the peer's answer sends it again only if it comes before
/// the mark is committed (milliseconds), not during the release's round trip.
async fn stored<S>(state: &Arc<State>, row: &OutboxRow, association: AsyncClientAssociation<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    mark_sent(state, row.id, &row.result.sop_instance_uid).await;
    let _ = association.release().await;
}

/// A C-STORE request: the SR's data set and what its command names.
struct Store<'a> {
    peer: &'a str,
    sop_class: &'a str,
    transfer_syntax: &'a str,
    sop_instance_uid: &'a str,
    data_set: &'a [u8],
}

impl Store<'_> {
    /// Sends the request over an established association (TCP or TLS) and reads the answer:
    /// the association, still open, when the peer stored the result; else the reason.
    async fn over<S>(
        &self,
        mut association: AsyncClientAssociation<S>,
    ) -> Result<AsyncClientAssociation<S>, String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    {
        let context = association
            .presentation_contexts()
            .iter()
            .find(|pc| pc.reason == PresentationContextResultReason::Acceptance)
            .map(|pc| pc.id)
            .ok_or_else(|| {
                format!(
                    "{} accepts no {} in {}",
                    self.peer, self.sop_class, self.transfer_syntax
                )
            })?;
        let value = |value_type, is_last, data| Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: context,
                value_type,
                is_last,
                data,
            }],
        };
        let command = dimse::store_request(1, self.sop_class, self.sop_instance_uid);
        association
            .send(&value(PDataValueType::Command, true, command))
            .await
            .map_err(|e| format!("sending the command: {e}"))?;
        // Each P-DATA value within the peer's maximum PDU (12 bytes of PDU and value headers).
        let max = match association.acceptor_max_pdu_length() {
            0 => 1 << 20,
            n => n as usize,
        };
        let chunk = max.saturating_sub(12).max(1024);
        let pieces: Vec<&[u8]> = self.data_set.chunks(chunk).collect();
        for (index, piece) in pieces.iter().enumerate() {
            association
                .send(&value(
                    PDataValueType::Data,
                    index + 1 == pieces.len(),
                    piece.to_vec(),
                ))
                .await
                .map_err(|e| format!("sending the data set: {e}"))?;
        }
        let answer = association
            .receive()
            .await
            .map_err(|e| format!("waiting for the C-STORE-RSP: {e}"))?;
        let Pdu::PData { data } = answer else {
            return Err(format!("the peer answered {}", answer.short_description()));
        };
        let response = data.first().ok_or("an empty P-DATA answer")?;
        let (status, comment) = dimse::read_status(&response.data)?;
        if dimse::stored(status) {
            Ok(association)
        } else {
            let _ = association.release().await;
            Err(format!(
                "{} answered status {status:04X}: {comment}",
                self.peer
            ))
        }
    }
}

/// A Part 10 file's meta table and its data set bytes.
fn split_part10(bytes: &[u8]) -> Result<(FileMetaTable, &[u8]), String> {
    let body = bytes.get(128..).ok_or("the SR blob is too short")?;
    let meta = FileMetaTable::from_reader(body).map_err(|e| format!("the SR's meta group: {e}"))?;
    // "DICM", then the group length element (12 bytes), then the group.
    let start = 128 + 4 + 12 + meta.information_group_length as usize;
    let data_set = bytes
        .get(start..)
        .ok_or("the SR blob ends in its meta group")?;
    Ok((meta, data_set))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes() {
        assert_eq!(backoff_ms(0), 2000);
        assert_eq!(backoff_ms(1), 4000);
        assert_eq!(backoff_ms(30), MAX_BACKOFF_MS);
    }
}

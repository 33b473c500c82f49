//! Which connections get an association slot: those that have sent their A-ASSOCIATE-RQ.
//!
//! `max_associations` slots bound the work the listener does at once. A connection that has
//! said nothing yet must not hold one, or a few silent connections lock every real sender out
//! (a modality then gets A-ASSOCIATE-RJ, busy). So a new connection first waits, holding no
//! slot, until its whole A-ASSOCIATE-RQ PDU has arrived (looked at in the socket's buffer, not
//! taken off it: dicom-ul reads it next), at most `associate_timeout_seconds`. Waiting
//! connections are bounded too: at most `max_unassociated_per_address` from one address (one
//! more closes the oldest of them: a sender that sends its request at once, as every real one
//! does, always gets through a trickle of silent connections from its own address) and
//! [`MAX_UNASSOCIATED`] in all (one more closes the oldest of all).
//!
//! Over DICOM TLS the request cannot be seen before the handshake, so the handshake and the
//! negotiation run in the waiting stage, under the same deadline and bounds; an association
//! that then finds every slot taken is aborted (A-ABORT) rather than served.

use super::association;
use super::{PeerAccess, REJECT_TIMEOUT};
use crate::app::State;
use dicom_ul::association::server::ServerAssociationOptions;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::sync::Semaphore;

/// Connections still to send their A-ASSOCIATE-RQ, from every address together.
pub const MAX_UNASSOCIATED: usize = 256;

/// The largest A-ASSOCIATE-RQ waited for (a request names its presentation contexts: a few
/// hundred bytes to a few KB); a connection announcing a longer first PDU is closed.
const MAX_REQUEST_PDU: usize = 64 << 10;

/// How long to wait before looking again at a request that has partly arrived.
const PARTIAL_WAIT: Duration = Duration::from_millis(5);

/// The connections waiting to send their request, by address, oldest first.
pub struct Unassociated {
    per_address: usize,
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    next_id: u64,
    total: usize,
    by_address: HashMap<IpAddr, VecDeque<(u64, oneshot::Sender<()>)>>,
}

impl Waiting {
    /// Tells the oldest waiting connection from `address` to close, and forgets it.
    fn close_oldest_of(&mut self, address: IpAddr) {
        let Some(queue) = self.by_address.get_mut(&address) else {
            return;
        };
        if let Some((_, oldest)) = queue.pop_front() {
            let _ = oldest.send(());
            self.total -= 1;
        }
        if queue.is_empty() {
            self.by_address.remove(&address);
        }
    }
}

/// One waiting connection's place; leaving it (drop) frees the place.
pub struct Place {
    registry: Arc<Unassociated>,
    address: IpAddr,
    id: u64,
    closed: oneshot::Receiver<()>,
}

impl Unassociated {
    pub fn new(per_address: usize) -> Arc<Unassociated> {
        Arc::new(Unassociated {
            per_address: per_address.max(1),
            waiting: Mutex::new(Waiting::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection from `address`. The oldest waiting connection from that
    /// address is told to close when it has too many, and the oldest of all when
    /// [`MAX_UNASSOCIATED`] wait: a new connection is never the one refused, so a real sender
    /// (which sends its request at once) gets through any number of silent ones.
    pub fn enter(self: &Arc<Self>, address: IpAddr) -> Place {
        let mut waiting = self.lock();
        let id = waiting.next_id;
        waiting.next_id += 1;
        while waiting.by_address.get(&address).map_or(0, VecDeque::len) >= self.per_address {
            waiting.close_oldest_of(address);
        }
        while waiting.total >= MAX_UNASSOCIATED {
            let oldest = waiting
                .by_address
                .iter()
                .filter_map(|(a, q)| q.front().map(|(id, _)| (*id, *a)))
                .min();
            match oldest {
                Some((_, a)) => waiting.close_oldest_of(a),
                None => break,
            }
        }
        let (tell, closed) = oneshot::channel();
        waiting
            .by_address
            .entry(address)
            .or_default()
            .push_back((id, tell));
        waiting.total += 1;
        Place {
            registry: self.clone(),
            address,
            id,
            closed,
        }
    }

    /// Connections waiting now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().total
    }
}

impl Place {
    /// Resolves when a newer connection from the same address took this one's place.
    pub async fn closed(&mut self) {
        let _ = (&mut self.closed).await;
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut waiting = self.registry.lock();
        let Some(queue) = waiting.by_address.get_mut(&self.address) else {
            return;
        };
        let before = queue.len();
        queue.retain(|(id, _)| *id != self.id);
        let removed = before - queue.len();
        if queue.is_empty() {
            waiting.by_address.remove(&self.address);
        }
        waiting.total -= removed;
    }
}

/// How a connection's first PDU looks once it has arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstPdu {
    /// A whole A-ASSOCIATE-RQ is in the socket's buffer.
    AssociateRequest,
    /// The connection closed before sending one.
    Closed,
    /// Its first bytes are not the start of an A-ASSOCIATE-RQ of a sane length (garbage, a
    /// TLS hello on the plain port, a PDU longer than any request).
    NotARequest,
}

/// Waits until the connection's first PDU has arrived in full, without taking it off the
/// socket. Bound it with a deadline: a sender may trickle it byte by byte.
pub async fn first_pdu(stream: &TcpStream) -> std::io::Result<FirstPdu> {
    let mut header = [0u8; 6];
    let mut buffer = Vec::new();
    loop {
        let seen = stream.peek(&mut header).await?;
        if seen == 0 {
            return Ok(FirstPdu::Closed);
        }
        if header[0] != 0x01 {
            return Ok(FirstPdu::NotARequest);
        }
        if seen == header.len() {
            let length = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
            if length > MAX_REQUEST_PDU {
                return Ok(FirstPdu::NotARequest);
            }
            buffer.resize(header.len() + length, 0);
            if stream.peek(&mut buffer).await? == buffer.len() {
                return Ok(FirstPdu::AssociateRequest);
            }
        }
        // Part of it is here; peeking again at once would spin.
        tokio::time::sleep(PARTIAL_WAIT).await;
    }
}

/// What admitting one connection needs.
pub struct Admit {
    pub state: Arc<State>,
    /// The association slots.
    pub open: Arc<Semaphore>,
    /// Connections being answered busy.
    pub rejecting: Arc<Semaphore>,
    /// For the A-ASSOCIATE-RQ (and, with TLS, the handshake before it).
    pub deadline: Duration,
}

type Options = ServerAssociationOptions<
    'static,
    PeerAccess,
    dicom_ul::association::server::DefaultNegotiation,
>;

impl Admit {
    /// Serves the association once a slot is taken, and gives the slot back after.
    async fn serve<S: association::Stream>(
        &self,
        association: dicom_ul::association::AsyncServerAssociation<S>,
        remote: SocketAddr,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) {
        self.state.metrics.dicom_open_associations.inc();
        association::run(association, remote, &self.state).await;
        self.state.metrics.dicom_open_associations.dec();
        drop(slot);
    }

    /// A plain connection: its request waited for without a slot, then a slot (or busy).
    pub(super) async fn plain(
        self,
        stream: tokio::net::TcpStream,
        remote: SocketAddr,
        mut place: Place,
        options: Options,
    ) {
        // A request already there wins over being closed for a newer connection.
        let first = tokio::select! {
            biased;
            first = tokio::time::timeout(self.deadline, first_pdu(&stream)) => first,
            _ = place.closed() => {
                self.state.metrics.dicom_association("silent");
                tracing::info!("dicom: closed a connection from {remote} that sent nothing (a newer one from its address took its place)");
                return;
            }
        };
        drop(place);
        match first {
            Ok(Ok(FirstPdu::AssociateRequest)) => {}
            Ok(Ok(FirstPdu::Closed)) | Ok(Err(_)) => return,
            Ok(Ok(FirstPdu::NotARequest)) => {
                // dicom-ul reads it and answers (or closes), as to any malformed request; no
                // slot is taken, and nothing it could make of these bytes is served.
                if association::negotiate(stream, remote, &options, &self.state, self.deadline)
                    .await
                    .is_some()
                {
                    tracing::warn!(
                        "dicom: {remote}: an odd first PDU was accepted as a request: closed"
                    );
                }
                return;
            }
            Err(_) => {
                self.state.metrics.dicom_association("silent");
                tracing::info!(
                    "dicom: {remote} sent no A-ASSOCIATE-RQ within {:?}: closed",
                    self.deadline
                );
                return;
            }
        }
        let Ok(slot) = self.open.clone().try_acquire_owned() else {
            self.state.metrics.dicom_association("busy");
            let Ok(_rejecting) = self.rejecting.clone().try_acquire_owned() else {
                return; // the stream is dropped: closed
            };
            let _ = tokio::time::timeout(REJECT_TIMEOUT, association::reject_busy(stream)).await;
            return;
        };
        if let Some(association) =
            association::negotiate(stream, remote, &options, &self.state, self.deadline).await
        {
            self.serve(association, remote, slot).await;
        }
    }

    /// A DICOM TLS connection: handshake and negotiation without a slot, then a slot (or an
    /// A-ABORT: the request could not be seen before it was accepted).
    pub(super) async fn tls(
        self,
        stream: tokio::net::TcpStream,
        remote: SocketAddr,
        mut place: Place,
        options: Options,
    ) {
        let negotiated = tokio::select! {
            biased;
            negotiated = association::negotiate_tls(stream, remote, &options, &self.state, self.deadline) => negotiated,
            _ = place.closed() => {
                self.state.metrics.dicom_association("silent");
                return;
            }
        };
        drop(place);
        let Some(association) = negotiated else {
            return;
        };
        let Ok(slot) = self.open.clone().try_acquire_owned() else {
            self.state.metrics.dicom_association("busy");
            tracing::info!(
                "dicom: every association slot is taken: aborted the association with {remote}"
            );
            let _ = association.abort().await;
            return;
        };
        self.serve(association, remote, slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_connection_takes_the_place_of_the_oldest_from_its_address() {
        let registry = Unassociated::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut first = registry.enter(a);
        let mut second = registry.enter(a);
        let other = registry.enter(b);
        assert_eq!(registry.len(), 3);
        let third = registry.enter(a);
        assert_eq!(registry.len(), 3, "the oldest from 10.0.0.1 was closed");
        assert!(first.closed.try_recv().is_ok());
        assert!(second.closed.try_recv().is_err());
        drop(first);
        assert_eq!(registry.len(), 3, "an evicted place is not counted twice");
        drop((second, third, other));
        assert_eq!(registry.len(), 0);
    }

    #[test]
    fn past_the_total_the_oldest_of_all_is_closed_not_the_newcomer() {
        let registry = Unassociated::new(MAX_UNASSOCIATED);
        let flood: IpAddr = "10.0.0.1".parse().unwrap();
        let mut places: Vec<Place> = (0..MAX_UNASSOCIATED)
            .map(|_| registry.enter(flood))
            .collect();
        let sender = registry.enter("10.0.0.9".parse().unwrap());
        assert_eq!(registry.len(), MAX_UNASSOCIATED);
        assert!(places[0].closed.try_recv().is_ok(), "the oldest was closed");
        assert!(places[1].closed.try_recv().is_err());
        drop(places);
        drop(sender);
        assert_eq!(registry.len(), 0);
    }

    #[tokio::test]
    async fn a_request_is_seen_whole_before_it_is_read() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut sender = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (receiver, _) = listener.accept().await.unwrap();
        // A-ASSOCIATE-RQ header announcing 10 bytes; 4 of them sent.
        sender
            .write_all(&[0x01, 0, 0, 0, 0, 10, 1, 2, 3, 4])
            .await
            .unwrap();
        let partial = tokio::time::timeout(Duration::from_millis(100), first_pdu(&receiver)).await;
        assert!(partial.is_err(), "a partial request is waited for");
        sender.write_all(&[5, 6, 7, 8, 9, 10]).await.unwrap();
        assert_eq!(
            first_pdu(&receiver).await.unwrap(),
            FirstPdu::AssociateRequest
        );
        let mut all = [0u8; 16];
        assert_eq!(
            receiver.peek(&mut all).await.unwrap(),
            16,
            "nothing was taken off"
        );
        drop(sender);
    }

    #[tokio::test]
    async fn a_tls_hello_or_a_giant_pdu_is_not_a_request() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        for first in [
            [0x16u8, 3, 1, 0, 0x50, 1],
            [0x01, 0, 0xff, 0xff, 0xff, 0xff],
        ] {
            let mut sender = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (receiver, _) = listener.accept().await.unwrap();
            sender.write_all(&first).await.unwrap();
            assert_eq!(first_pdu(&receiver).await.unwrap(), FirstPdu::NotARequest);
        }
    }
}

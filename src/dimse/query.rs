//! Query/Retrieve as a user (PS3.4 annex C, Study Root): one association with a peer (over
//! DICOM TLS when the peer has `tls`) over which radassist sends C-FIND requests and C-MOVE
//! requests, and reads their responses.
//!
//! It runs on an analysis worker's thread (dicom-ul's blocking client), within a deadline:
//! every read and write waits at most until then, so a peer that is down, slow or silent
//! holds a job up by the deadline and no longer. Matches and message sizes are bounded, so a
//! peer cannot make radassist hold more than a few megabytes.

use super::message::{self as dimse, Response};
use super::tls::ClientTls;
use crate::config::DicomPeer;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use dicom_ul::association::client::{ClientAssociation, ClientAssociationOptions, TlsStream};
use dicom_ul::pdu::{
    PDataValue, PDataValueType, PresentationContextNegotiated, PresentationContextResultReason,
};
use dicom_ul::Pdu;
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
pub const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";

/// Identifiers go in either little-endian syntax (every SCP takes Implicit VR).
const IDENTIFIER_SYNTAXES: [&str; 2] = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"];

/// At most this many matches are read of one C-FIND; the rest are cancelled by releasing.
pub const MAX_MATCHES: usize = 500;
/// The longest command set or identifier read.
const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// The shortest wait granted to one read or write (a deadline in the past still lets the
/// last answer in flight arrive).
const MIN_WAIT: Duration = Duration::from_millis(200);

/// A negotiated presentation context: its id and transfer syntax.
#[derive(Clone)]
struct Context {
    id: u8,
    transfer_syntax: String,
}

/// A C-MOVE's outcome: how many instances the peer sent, failed to send, or sent with
/// warnings.
pub use crate::app::prior_search::Fetched as Moved;

/// An association over TCP, or over DICOM TLS when the peer has `tls`.
enum Link {
    Plain(ClientAssociation<TcpStream>),
    /// Boxed: rustls's connection state is large.
    Tls(Box<ClientAssociation<TlsStream>>),
}

impl Link {
    fn send(&mut self, pdu: &Pdu) -> Result<(), dicom_ul::association::Error> {
        match self {
            Link::Plain(a) => a.send(pdu),
            Link::Tls(a) => a.send(pdu),
        }
    }

    fn receive(&mut self) -> Result<Pdu, dicom_ul::association::Error> {
        match self {
            Link::Plain(a) => a.receive(),
            Link::Tls(a) => a.receive(),
        }
    }

    fn presentation_contexts(&self) -> &[PresentationContextNegotiated] {
        match self {
            Link::Plain(a) => a.presentation_contexts(),
            Link::Tls(a) => a.presentation_contexts(),
        }
    }

    /// The TCP connection underneath (for its timeouts).
    fn tcp(&mut self) -> &TcpStream {
        match self {
            Link::Plain(a) => a.inner_stream(),
            Link::Tls(a) => &a.inner_stream().sock,
        }
    }

    fn release(self) {
        let _ = match self {
            Link::Plain(a) => a.release(),
            Link::Tls(a) => (*a).release(),
        };
    }
}

/// An open association with one peer for queries and retrievals.
pub struct QueryAssociation {
    association: Link,
    find: Context,
    retrieve: Context,
    message_id: u16,
    deadline: Instant,
    peer: String,
}

fn wait_until(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(MIN_WAIT)
}

impl QueryAssociation {
    /// Associates with `peer` as `ae_title` (over DICOM TLS with `tls`), proposing Study Root
    /// FIND and MOVE.
    pub fn open(
        peer: &DicomPeer,
        tls: Option<&ClientTls>,
        ae_title: &str,
        deadline: Instant,
    ) -> Result<QueryAssociation, String> {
        let wait = wait_until(deadline);
        let address = std::net::ToSocketAddrs::to_socket_addrs(&(peer.host.as_str(), peer.port))
            .map_err(|e| format!("{}: host {:?}: {e}", peer.ae_title, peer.host))?
            .next()
            .ok_or_else(|| format!("{}: host {:?} has no address", peer.ae_title, peer.host))?;
        let options = ClientAssociationOptions::new()
            .calling_ae_title(ae_title)
            .called_ae_title(peer.ae_title.as_str())
            .with_presentation_context(STUDY_ROOT_FIND, IDENTIFIER_SYNTAXES.to_vec())
            .with_presentation_context(STUDY_ROOT_MOVE, IDENTIFIER_SYNTAXES.to_vec())
            .connection_timeout(wait)
            .read_timeout(wait)
            .write_timeout(wait);
        let established = match tls {
            None => options.establish(address).map(Link::Plain),
            Some(tls) => options
                .tls_config(tls.config.clone())
                .server_name(&tls.server_name)
                .establish_tls(address)
                .map(|a| Link::Tls(Box::new(a))),
        };
        let mut association = established.map_err(|e| {
            format!(
                "associating with {} at {}:{}{}: {e}",
                peer.ae_title,
                peer.host,
                peer.port,
                if tls.is_some() { " (TLS)" } else { "" },
                e = crate::causes::with_causes(&e)
            )
        })?;
        // Each request is a command and an identifier in two small PDUs: without this, the
        // second waits for the peer's delayed ACK of the first.
        let _ = association.tcp().set_nodelay(true);
        let context = |abstract_syntax: &str, name: &str| {
            association
                .presentation_contexts()
                .iter()
                .find(|pc| {
                    pc.reason == PresentationContextResultReason::Acceptance
                        && pc.abstract_syntax.trim_end_matches('\0') == abstract_syntax
                })
                .map(|pc| Context {
                    id: pc.id,
                    transfer_syntax: pc.transfer_syntax.trim_end_matches('\0').to_string(),
                })
                .ok_or_else(|| format!("{} does not accept {name}", peer.ae_title))
        };
        let find = context(STUDY_ROOT_FIND, "Study Root C-FIND")?;
        let retrieve = context(STUDY_ROOT_MOVE, "Study Root C-MOVE")?;
        Ok(QueryAssociation {
            association,
            find,
            retrieve,
            message_id: 0,
            deadline,
            peer: peer.ae_title.clone(),
        })
    }

    /// Every read and write from now on waits at most until the deadline.
    fn bound_waits(&mut self) -> Result<(), String> {
        let wait = wait_until(self.deadline);
        if Instant::now() > self.deadline {
            return Err(format!("{} did not finish in time", self.peer));
        }
        let stream = self.association.tcp();
        stream
            .set_read_timeout(Some(wait))
            .and_then(|()| stream.set_write_timeout(Some(wait)))
            .map_err(|e| format!("{}: {e}", self.peer))
    }

    /// Sends a request's command set and its identifier.
    fn request(
        &mut self,
        context: &Context,
        command: Vec<u8>,
        identifier: &InMemDicomObject,
    ) -> Result<(), String> {
        let syntax = TransferSyntaxRegistry
            .get(&context.transfer_syntax)
            .ok_or_else(|| format!("{}: unknown transfer syntax", self.peer))?;
        let mut data = Vec::new();
        identifier
            .write_dataset_with_ts(&mut data, syntax)
            .map_err(|e| format!("encoding the identifier: {e}"))?;
        self.bound_waits()?;
        for (value_type, data) in [
            (PDataValueType::Command, command),
            (PDataValueType::Data, data),
        ] {
            self.association
                .send(&Pdu::PData {
                    data: vec![PDataValue {
                        presentation_context_id: context.id,
                        value_type,
                        is_last: true,
                        data,
                    }],
                })
                .map_err(|e| format!("sending to {}: {e}", self.peer))?;
        }
        Ok(())
    }

    /// Reads one response: its command set, and its identifier when one follows.
    fn response(
        &mut self,
        context: &Context,
    ) -> Result<(Response, Option<InMemDicomObject>), String> {
        let mut command = Vec::new();
        let mut data = Vec::new();
        let mut response: Option<Response> = None;
        loop {
            self.bound_waits()?;
            let pdu = self
                .association
                .receive()
                .map_err(|e| format!("waiting for {}: {e}", self.peer))?;
            let Pdu::PData { data: values } = pdu else {
                return Err(format!("{} sent {}", self.peer, pdu.short_description()));
            };
            for value in values {
                let into = match value.value_type {
                    PDataValueType::Command => &mut command,
                    PDataValueType::Data => &mut data,
                };
                if into.len() + value.data.len() > MAX_MESSAGE_BYTES {
                    return Err(format!("{} sent a message over 1 MiB", self.peer));
                }
                into.extend_from_slice(&value.data);
                match (value.value_type, value.is_last) {
                    (PDataValueType::Command, true) => {
                        let read = dimse::read_response(&command)?;
                        if !read.has_data_set {
                            return Ok((read, None));
                        }
                        response = Some(read);
                    }
                    (PDataValueType::Data, true) => {
                        let Some(read) = response.take() else {
                            return Err(format!(
                                "{} sent a data set before its command",
                                self.peer
                            ));
                        };
                        let identifier = crate::dicom::read_data_set(
                            &data,
                            &context.transfer_syntax,
                        )
                        .map_err(|e| {
                            format!("{} sent an identifier that does not parse: {e}", self.peer)
                        })?;
                        return Ok((read, Some(identifier)));
                    }
                    _ => {}
                }
            }
        }
    }

    fn next_message_id(&mut self) -> u16 {
        self.message_id = self.message_id.wrapping_add(1).max(1);
        self.message_id
    }

    /// C-FIND: the peer's matches for `identifier` (at most [`MAX_MATCHES`]).
    pub fn find(&mut self, identifier: &InMemDicomObject) -> Result<Vec<InMemDicomObject>, String> {
        let context = self.find.clone();
        let id = self.next_message_id();
        self.request(
            &context,
            dimse::query_request(id, STUDY_ROOT_FIND, None),
            identifier,
        )?;
        let mut matches = Vec::new();
        loop {
            let (response, identifier) = self.response(&context)?;
            if response.command_field != 0x8020 {
                return Err(format!(
                    "{} answered a C-FIND with command {:04X}",
                    self.peer, response.command_field
                ));
            }
            if !dimse::pending(response.status) {
                return match response.status {
                    0x0000 => Ok(matches),
                    status => Err(format!(
                        "{} refused the query: status {status:04X} {}",
                        self.peer, response.error_comment
                    )),
                };
            }
            if matches.len() >= MAX_MATCHES {
                return Err(format!("{} has more than {MAX_MATCHES} matches", self.peer));
            }
            matches.extend(identifier);
        }
    }

    /// C-MOVE of what `identifier` names to `destination` (an AE title the peer knows);
    /// returns once the peer has sent everything and answered.
    pub fn retrieve(
        &mut self,
        identifier: &InMemDicomObject,
        destination: &str,
    ) -> Result<Moved, String> {
        let context = self.retrieve.clone();
        let id = self.next_message_id();
        self.request(
            &context,
            dimse::query_request(id, STUDY_ROOT_MOVE, Some(destination)),
            identifier,
        )?;
        loop {
            let (response, _) = self.response(&context)?;
            if response.command_field != 0x8021 {
                return Err(format!(
                    "{} answered a C-MOVE with command {:04X}",
                    self.peer, response.command_field
                ));
            }
            if dimse::pending(response.status) {
                continue;
            }
            let moved = Moved {
                completed: response.completed,
                failed: response.failed,
                warning: response.warning,
            };
            // Success, or B000: some sub-operations failed (the counts say which).
            return match response.status {
                0x0000 | 0xB000 => Ok(moved),
                status => Err(format!(
                    "{} could not send the prior: status {status:04X} {}",
                    self.peer, response.error_comment
                )),
            };
        }
    }

    pub fn release(self) {
        self.association.release();
    }
}

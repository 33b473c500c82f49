//! The DICOM listener of `radassist serve`: how a PACS or router reaches radassist as PACS
//! really route, by DICOM upper-layer associations ([dicom-ul]).
//!
//! It accepts associations whose Called AE Title is radassist's and whose Calling AE Title is
//! a configured peer connecting from that peer's host; others get A-ASSOCIATE-RJ. It
//! negotiates Verification and the storage SOP classes of chest radiographs (CR, DX for
//! presentation and for processing, Secondary Capture) in every transfer syntax radassist
//! decodes, taken as sent (no transcoding); other presentation contexts are refused in the
//! A-ASSOCIATE-AC. Each association runs in its own task (`association`); at most
//! `max_associations` are open, beyond that an association is rejected as transient (local
//! limit exceeded). A connection takes a slot only once its A-ASSOCIATE-RQ has arrived, within
//! `associate_timeout_seconds`; silent connections are bounded per address (`admission`).
//! A C-STORE goes through the same durable path as gRPC ingest ([`crate::app::ingest`]) before it
//! is answered. When a peer is asked for priors
//! ([`priors`], over [`query`]), the text SR classes are negotiated too, for the priors'
//! reports that its C-MOVE sends. With `tls = true` the listener speaks DICOM TLS
//! (TLS 1.2 or 1.3) with the service's certificate, and nothing else; a peer with `tls = true`
//! is reached over DICOM TLS ([`tls`]) when radassist sends it results or asks it for priors.
//!
//! [dicom-ul]: https://docs.rs/dicom-ul

mod admission;
mod association;
pub mod message;
pub(crate) mod priors;
pub(crate) mod query;
pub(crate) mod sender;
pub(crate) mod tls;

use crate::app::State;
use crate::config::DicomConfig;
use dicom_ul::association::server::{AccessControl, ServerAssociationOptions};
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The Verification SOP Class (C-ECHO).
pub const VERIFICATION: &str = "1.2.840.10008.1.1";

pub use crate::app::ingest::STORAGE_SOP_CLASSES;

/// The transfer syntaxes radassist decodes (docs/command-line.md, "Decoding: what is supported").
pub const TRANSFER_SYNTAXES: &[(&str, &str)] = &[
    ("1.2.840.10008.1.2.1", "Explicit VR Little Endian"),
    ("1.2.840.10008.1.2", "Implicit VR Little Endian"),
    ("1.2.840.10008.1.2.2", "Explicit VR Big Endian"),
    (
        "1.2.840.10008.1.2.1.99",
        "Deflated Explicit VR Little Endian",
    ),
    ("1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)"),
    ("1.2.840.10008.1.2.4.51", "JPEG Extended (Process 2 & 4)"),
    ("1.2.840.10008.1.2.4.57", "JPEG Lossless (Process 14)"),
    ("1.2.840.10008.1.2.4.70", "JPEG Lossless SV1"),
    ("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless"),
    ("1.2.840.10008.1.2.4.81", "JPEG-LS Near-Lossless"),
    ("1.2.840.10008.1.2.4.90", "JPEG 2000 Lossless"),
    ("1.2.840.10008.1.2.4.91", "JPEG 2000"),
    ("1.2.840.10008.1.2.5", "RLE Lossless"),
];

/// The smallest and largest P-DATA PDU radassist accepts to receive (PS3.8 allows any).
const PDU_LENGTH_RANGE: std::ops::RangeInclusive<u32> = 4096..=16 << 20;

/// At most this many connections beyond `max_associations` are read to be rejected politely
/// (A-ASSOCIATE-RJ); past that a connection is closed at once.
const MAX_REJECTING: usize = 64;

/// How long answering busy may take (the request is there already).
const REJECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Who may associate: each peer's AE title and the addresses its host resolved to at start.
#[derive(Debug, Clone)]
struct Peers(Arc<HashMap<String, Vec<IpAddr>>>);

/// The access rule of one connection: radassist's AE title called, by a known peer, from
/// one of its addresses.
#[derive(Debug, Clone)]
struct PeerAccess {
    peers: Peers,
    remote: IpAddr,
}

impl AccessControl for PeerAccess {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if called_ae_title.trim() != this_ae_title {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        match self.peers.0.get(calling_ae_title.trim()) {
            Some(addresses) if addresses.contains(&self.remote) => Ok(()),
            _ => Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized),
        }
    }
}

/// A valid AE title: 1 to 16 characters of the default repertoire, no backslash or control
/// characters, not only spaces (PS3.5 table 6.2-1, AE).
fn check_ae_title(what: &str, title: &str) -> Result<(), String> {
    let ok = !title.trim().is_empty()
        && title.len() <= 16
        && title
            .chars()
            .all(|c| c.is_ascii() && !c.is_ascii_control() && c != '\\');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {title:?} is not an AE title: 1 to 16 ASCII characters, no backslash or control characters"
        ))
    }
}

/// The listener, bound and ready to run.
pub struct Listener {
    listener: tokio::net::TcpListener,
    options: ServerAssociationOptions<
        'static,
        dicom_ul::association::server::AcceptAny,
        dicom_ul::association::server::DefaultNegotiation,
    >,
    peers: Peers,
    max_associations: usize,
    /// DICOM TLS on the listener.
    tls: bool,
    /// For a connection's A-ASSOCIATE-RQ (with TLS, the handshake too).
    associate_timeout: Duration,
    max_unassociated_per_address: usize,
    state: Arc<State>,
}

/// Every peer's addresses, by AE title (a C-STORE's calling AE must come from its own).
async fn resolve_peers(config: &DicomConfig) -> Result<HashMap<String, Vec<IpAddr>>, String> {
    let mut peers = HashMap::new();
    for peer in &config.peers {
        check_ae_title("dicom.peers.ae_title", &peer.ae_title)?;
        let addresses: Vec<IpAddr> = tokio::net::lookup_host((peer.host.as_str(), peer.port))
            .await
            .map_err(|e| {
                format!(
                    "dicom.peers {:?}: host {:?} does not resolve ({e}): fix the host or remove the peer",
                    peer.ae_title, peer.host
                )
            })?
            .map(|a| a.ip())
            .collect();
        if peers.insert(peer.ae_title.clone(), addresses).is_some() {
            return Err(format!(
                "dicom.peers: AE title {:?} is listed twice",
                peer.ae_title
            ));
        }
    }
    Ok(peers)
}

impl Listener {
    /// Checks the configuration, resolves the peers' hosts and binds `listen`; None when the
    /// listener is disabled (`listen = ""`).
    pub async fn bind(
        config: &DicomConfig,
        service: &crate::config::ServiceConfig,
        state: Arc<State>,
    ) -> Result<Option<Listener>, String> {
        if config.listen.is_empty() {
            return Ok(None);
        }
        check_ae_title("dicom.ae_title", &config.ae_title)?;
        if !PDU_LENGTH_RANGE.contains(&config.max_pdu_length) {
            return Err(format!(
                "dicom.max_pdu_length {} is outside {} to {}",
                config.max_pdu_length,
                PDU_LENGTH_RANGE.start(),
                PDU_LENGTH_RANGE.end()
            ));
        }
        if config.max_associations == 0
            || config.idle_timeout_seconds == 0
            || config.associate_timeout_seconds == 0
            || config.max_unassociated_per_address == 0
        {
            return Err(
                "dicom.max_associations, idle_timeout_seconds, associate_timeout_seconds and max_unassociated_per_address must be at least 1".into(),
            );
        }
        let peers = resolve_peers(config).await?;
        let idle = Duration::from_secs(config.idle_timeout_seconds);
        let mut options = ServerAssociationOptions::new()
            .ae_title(config.ae_title.clone())
            .max_pdu_length(config.max_pdu_length)
            .strict(true)
            .read_timeout(idle)
            .write_timeout(idle)
            .with_abstract_syntax(VERIFICATION);
        for (uid, _) in STORAGE_SOP_CLASSES {
            options = options.with_abstract_syntax(*uid);
        }
        // Priors' reports arrive by C-MOVE as SRs: negotiated only when a peer is asked for
        // priors, and stored only while their study is being retrieved (else 0122).
        if state.prior_source.is_some() {
            for (uid, _) in crate::draft::sr_text::TEXT_SR_SOP_CLASSES {
                options = options.with_abstract_syntax(*uid);
            }
        }
        for (uid, _) in TRANSFER_SYNTAXES {
            options = options.with_transfer_syntax(*uid);
        }
        if config.tls {
            options = options.tls_config(crate::pem::server_config(service, "dicom.tls = true")?);
        }
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|e| format!("dicom.listen {}: {e}", config.listen))?;
        Ok(Some(Listener {
            listener,
            options,
            peers: Peers(Arc::new(peers)),
            max_associations: config.max_associations,
            tls: config.tls,
            associate_timeout: Duration::from_secs(config.associate_timeout_seconds),
            max_unassociated_per_address: config.max_unassociated_per_address,
            state,
        }))
    }

    pub fn local_addr(&self) -> Result<SocketAddr, String> {
        self.listener.local_addr().map_err(|e| e.to_string())
    }

    /// Accepts associations until the task is dropped.
    pub async fn run(self) {
        let open = Arc::new(Semaphore::new(self.max_associations));
        let rejecting = Arc::new(Semaphore::new(MAX_REJECTING));
        let unassociated = admission::Unassociated::new(self.max_unassociated_per_address);
        loop {
            let (stream, remote) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors (EMFILE) and the like: accepting again at once
                    // would spin; wait for connections to close.
                    tracing::warn!("dicom: accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let place = unassociated.enter(remote.ip());
            let _ = stream.set_nodelay(true);
            let options = self.options.clone().ae_access_control(PeerAccess {
                peers: self.peers.clone(),
                remote: remote.ip(),
            });
            let admit = admission::Admit {
                state: self.state.clone(),
                open: open.clone(),
                rejecting: rejecting.clone(),
                deadline: self.associate_timeout,
            };
            if self.tls {
                tokio::spawn(admit.tls(stream, remote, place, options));
            } else {
                tokio::spawn(admit.plain(stream, remote, place, options));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/dicom-conformance-statement.md, which a PACS administrator reads before connecting.
    const STATEMENT: &str = include_str!("../../docs/dicom-conformance-statement.md");

    #[test]
    fn the_conformance_statement_names_every_sop_class_and_transfer_syntax_used() {
        let sent = crate::draft::objects::ResultObject::ALL.map(|o| (o.sop_class_uid(), "sent"));
        let named = [
            (VERIFICATION, "Verification"),
            (query::STUDY_ROOT_FIND, "Study Root FIND"),
            (query::STUDY_ROOT_MOVE, "Study Root MOVE"),
        ];
        for (uid, what) in STORAGE_SOP_CLASSES
            .iter()
            .chain(crate::draft::sr_text::TEXT_SR_SOP_CLASSES)
            .chain(TRANSFER_SYNTAXES)
            .chain(&sent)
            .chain(&named)
        {
            // A whole UID, not the start of a longer one.
            let whole = STATEMENT.match_indices(uid).any(|(at, _)| {
                !STATEMENT[at + uid.len()..].starts_with(|c: char| c.is_ascii_digit() || c == '.')
            });
            assert!(whole, "{what} ({uid}) is not in the conformance statement");
        }
    }
}

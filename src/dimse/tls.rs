//! DICOM TLS (PS3.15 annex B, the BCP 195 profile: TLS 1.2 or 1.3, rustls's cipher suites, all
//! ECDHE with AEAD): the client configuration of each peer radassist reaches over TLS (`tls =
//! true` in its `[[dicom.peers]]`); the listener's is the service's own ([`crate::pem`]).
//!
//! Outgoing, radassist verifies the peer's certificate against the peer's `tls_ca` (no system
//! roots: a PACS's certificate comes from the site's own CA) and the name it must carry
//! (`tls_server_name`, by default the peer's host), and presents the service's certificate
//! (`service.tls_cert` and `tls_key`) to peers that authenticate their callers, as DICOM TLS
//! nodes usually do. Everything is read and checked when the service starts.

use crate::config::{DicomConfig, DicomPeer, ServiceConfig};
use crate::pem::{certificates, service_identity};
use rustls_pki_types::ServerName;
use std::collections::HashMap;
use std::sync::Arc;

/// How radassist opens a TLS connection to one peer.
#[derive(Clone, Debug)]
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    /// The name the peer's certificate must carry (a DNS name or an IP address).
    pub server_name: String,
}

/// The client configuration of one peer with `tls = true`.
fn client_config(peer: &DicomPeer, service: &ServiceConfig) -> Result<ClientTls, String> {
    let context = |what: String| format!("dicom.peers {:?}: {what}", peer.ae_title);
    let Some(ca) = &peer.tls_ca else {
        return Err(context(
            "tls = true needs tls_ca, the PEM certificate(s) of the CA that signed the peer's certificate".into(),
        ));
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca, "tls_ca").map_err(context)? {
        roots
            .add(cert)
            .map_err(|e| context(format!("tls_ca {}: {e}", ca.display())))?;
    }
    let server_name = peer
        .tls_server_name
        .clone()
        .unwrap_or_else(|| peer.host.clone());
    ServerName::try_from(server_name.clone())
        .map_err(|e| context(format!("tls_server_name {server_name:?}: {e}")))?;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(|e| context(format!("DICOM TLS: {e}")))?
    .with_root_certificates(roots);
    let config = match service_identity(service)? {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| context(format!("service.tls_cert and tls_key: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    Ok(ClientTls {
        config: Arc::new(config),
        server_name,
    })
}

/// The client configuration of every peer with `tls = true`, by AE title.
pub fn client_configs(
    dicom: &DicomConfig,
    service: &ServiceConfig,
) -> Result<HashMap<String, ClientTls>, String> {
    let mut configs = HashMap::new();
    for peer in &dicom.peers {
        if peer.tls {
            configs.insert(peer.ae_title.clone(), client_config(peer, service)?);
        } else if peer.tls_ca.is_some() || peer.tls_server_name.is_some() {
            return Err(format!(
                "dicom.peers {:?}: tls_ca and tls_server_name apply only with tls = true (set it, or remove them)",
                peer.ae_title
            ));
        }
    }
    Ok(configs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn peer(tls_ca: Option<&Path>) -> DicomPeer {
        DicomPeer {
            ae_title: "PACS".into(),
            host: "127.0.0.1".into(),
            port: 104,
            send_results: true,
            results: crate::draft::objects::ResultObject::ALL.to_vec(),
            query_priors: false,
            tls: true,
            tls_ca: tls_ca.map(Path::to_path_buf),
            tls_server_name: None,
            dicomweb: None,
            dicomweb_token: None,
        }
    }

    #[test]
    fn a_tls_peer_needs_a_ca_holding_a_certificate() {
        let service = ServiceConfig::default();
        let error = client_config(&peer(None), &service).unwrap_err();
        assert!(error.contains("needs tls_ca"), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = client_config(&peer(Some(&empty)), &service).unwrap_err();
        assert!(error.contains("no PEM certificate"), "{error}");
        let missing = dir.path().join("absent.pem");
        let error = client_config(&peer(Some(&missing)), &service).unwrap_err();
        assert!(error.contains("absent.pem"), "{error}");
    }

    #[test]
    fn the_certificate_name_defaults_to_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let certified = rcgen::generate_simple_self_signed(vec!["pacs.example".into()]).unwrap();
        std::fs::write(&ca, certified.cert.pem()).unwrap();
        let tls = client_config(&peer(Some(&ca)), &ServiceConfig::default()).unwrap();
        assert_eq!(tls.server_name, "127.0.0.1");
        let mut named = peer(Some(&ca));
        named.tls_server_name = Some("pacs.example".into());
        let tls = client_config(&named, &ServiceConfig::default()).unwrap();
        assert_eq!(tls.server_name, "pacs.example");
    }
}

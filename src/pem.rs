//! PEM certificates read for TLS: the service's own chain and key, and the server configuration
//! its listeners share (the DICOM listener's and the reading room's); the CAs its TLS clients
//! trust (DICOM peers, PostgreSQL). Each error names the configuration key and the file.

use crate::config::ServiceConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Every certificate in the PEM file at `path` (configured as `key`); at least one.
pub fn certificates(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{key} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

/// The service's certificate chain and key (PEM), when both are configured.
pub fn service_identity(
    service: &ServiceConfig,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, String> {
    let (Some(cert), Some(key)) = (&service.tls_cert, &service.tls_key) else {
        return Ok(None);
    };
    let chain = certificates(cert, "service.tls_cert")?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("service.tls_key {}: {e}", key.display()))?;
    Ok(Some((chain, key)))
}

/// A listener's TLS configuration (the BCP 195 profile: TLS 1.2 or 1.3, rustls's cipher
/// suites), from the service's certificate chain and key; `listener` names what asked for TLS
/// in the errors ("dicom.tls = true").
pub fn server_config(
    service: &ServiceConfig,
    listener: &str,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let Some((chain, key)) = service_identity(service)? else {
        return Err(format!(
            "{listener} needs service.tls_cert and service.tls_key"
        ));
    };
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(|e| format!("{listener}: {e}"))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| format!("{listener} with service.tls_cert and tls_key: {e}"))?;
    Ok(Arc::new(config))
}

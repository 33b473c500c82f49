//! PEM certificates read for TLS: the service's own chain, and the CAs its TLS clients trust
//! (DICOM peers, PostgreSQL), each error naming the configuration key and the file.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::Path;

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

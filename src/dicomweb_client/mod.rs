//! radassist as a DICOMweb client (PS3.18): a peer whose `[[dicom.peers]]` entry names a
//! `dicomweb` service is reached over HTTP instead of DIMSE. The results sender stores by
//! STOW-RS ([`store`]); the prior search asks by QIDO-RS and fetches by WADO-RS ([`priors`],
//! with [`query`] turning a Study Root identifier into a search). Every request is bounded by a
//! timeout, every answer by a size; a peer's answer that does not parse is an error that says
//! so, never a panic.

pub mod priors;
pub mod query;
pub mod store;

use crate::config::DicomPeer;
use std::time::Duration;

/// The largest answer read from a peer (a search's JSON, or one instance retrieved).
pub const MAX_ANSWER_BYTES: usize = 512 << 20;
/// How long one request may take, when no earlier deadline applies.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether `url` can name a DICOMweb service: http or https, with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "{url:?} must be an http or https URL with a host (https://pacs.example.org/dicom-web)"
        ));
    }
    Ok(())
}

/// A peer's DICOMweb service, and the client that speaks to it.
#[derive(Clone)]
pub struct DicomWebPeer {
    /// The peer's AE title (its name in the outbox and the logs).
    pub name: String,
    /// The service's root, without a trailing `/`.
    pub base: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl DicomWebPeer {
    /// The DICOMweb side of `peer`, if it has one.
    pub fn of(peer: &DicomPeer) -> Result<Option<DicomWebPeer>, String> {
        let Some(url) = &peer.dicomweb else {
            return Ok(None);
        };
        check_url(url)?;
        // The process's TLS (reqwest's rustls, with ring as everywhere else).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("{}: the HTTP client: {e}", peer.ae_title))?;
        Ok(Some(DicomWebPeer {
            name: peer.ae_title.clone(),
            base: url.trim_end_matches('/').to_string(),
            token: peer.dicomweb_token.clone(),
            client,
        }))
    }

    /// A request to `path` (under the base), with the token.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_to(method, &format!("{}{path}", self.base))
    }

    /// A request to `url`, with the token.
    fn request_to(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// A request's answer, or why there is none: the status and what the peer said, as text.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, String> {
        let response = request
            .send()
            .await
            .map_err(|e| format!("{}: {what}: {}", self.name, crate::causes::with_causes(&e)))?;
        Ok(response)
    }
}

/// At most [`MAX_ANSWER_BYTES`] of an answer's body.
async fn body(response: reqwest::Response, peer: &str) -> Result<bytes::Bytes, String> {
    if response
        .content_length()
        .is_some_and(|l| l > MAX_ANSWER_BYTES as u64)
    {
        return Err(format!(
            "{peer} answered with more than {MAX_ANSWER_BYTES} bytes"
        ));
    }
    let mut response = response;
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("{peer}: reading the answer: {e}"))?
    {
        if out.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!(
                "{peer} answered with more than {MAX_ANSWER_BYTES} bytes"
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// The reason an answer gives (its status, and the start of its body as text).
async fn refusal(response: reqwest::Response, peer: &str, what: &str) -> String {
    let status = response.status();
    let text = body(response, peer)
        .await
        .map(|b| String::from_utf8_lossy(&b[..b.len().min(300)]).to_string())
        .unwrap_or_default();
    format!(
        "{peer}: {what}: HTTP {status}{}",
        if text.trim().is_empty() {
            String::new()
        } else {
            format!(": {}", crate::excerpt::excerpt(text.trim()))
        }
    )
}

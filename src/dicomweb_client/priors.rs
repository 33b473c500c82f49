//! A PACS asked for priors over DICOMweb ([`crate::app::prior_search`] decides what to ask):
//! each search a QIDO-RS request ([`super::query`]), each instance fetched by WADO-RS and
//! stored here through the same ingest as a C-MOVE's sub-operations, as a prior of the study
//! being expected (an image as the prior's, a text SR as its report).
//!
//! The prior search runs on an analysis worker's thread: each conversation drives its requests
//! on a runtime of its own, every request within the search's deadline.

use super::{body, refusal, DicomWebPeer};
use crate::app::expected_priors::ExpectedPriors;
use crate::app::ingest::{self, Declared};
use crate::app::metrics::Metrics;
use crate::app::prior_search::{Fetched, PeerQuery, PriorPeer};
use crate::store::{Store, StoreOutcome};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Instant;

/// A peer with `query_priors` and `dicomweb`.
pub struct DicomWebPriors {
    pub peer: DicomWebPeer,
    pub store: Arc<dyn Store>,
    pub expected: ExpectedPriors,
    /// `[service] min_free_bytes`: a prior is refused, as any instance, below it.
    pub reserve: u64,
}

impl PriorPeer for DicomWebPriors {
    fn name(&self) -> &str {
        &self.peer.name
    }

    fn open(&self, deadline: Instant) -> Result<Box<dyn PeerQuery + '_>, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("{}: a runtime for its requests: {e}", self.peer.name))?;
        Ok(Box::new(Conversation {
            priors: self,
            runtime,
            deadline,
        }))
    }
}

struct Conversation<'a> {
    priors: &'a DicomWebPriors,
    runtime: tokio::runtime::Runtime,
    deadline: Instant,
}

impl Conversation<'_> {
    /// Runs `work` until the search's deadline.
    fn run<T>(
        &self,
        what: &str,
        work: impl std::future::Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        // The timer is made inside the runtime it runs on.
        self.runtime
            .block_on(async { tokio::time::timeout(left, work).await })
            .unwrap_or_else(|_| {
                Err(format!(
                    "{}: {what} did not finish within the prior search's time",
                    self.priors.peer.name
                ))
            })
    }
}

impl PeerQuery for Conversation<'_> {
    fn find(&mut self, identifier: &InMemDicomObject) -> Result<Vec<InMemDicomObject>, String> {
        self.run("a search", self.priors.peer.find(identifier))
    }

    fn fetch(
        &mut self,
        study_uid: &str,
        series_uid: &str,
        sop_uid: &str,
        metrics: &Metrics,
    ) -> Result<Fetched, String> {
        let peer = &self.priors.peer;
        let parts = self.run(
            "a retrieval",
            peer.instance_parts(&format!(
                "/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
            )),
        )?;
        let mut fetched = Fetched {
            completed: 0,
            failed: 0,
            warning: 0,
        };
        for part in parts {
            match self.keep(&part, metrics) {
                Ok(()) => fetched.completed += 1,
                Err(e) => {
                    tracing::warn!(
                        "priors: {}: an instance retrieved was not kept: {e}",
                        peer.name
                    );
                    fetched.failed += 1;
                }
            }
        }
        Ok(fetched)
    }

    fn close(self: Box<Self>) {}
}

impl Conversation<'_> {
    /// Stores one retrieved instance as the expected prior's (as the listener stores a C-MOVE's).
    fn keep(&self, bytes: &[u8], metrics: &Metrics) -> Result<(), String> {
        let instance = crate::dicom::parse_dicom(bytes).map_err(|e| e.to_string())?;
        let text = |tag| {
            crate::dicom::Attributes(&instance)
                .text(tag)
                .unwrap_or_default()
        };
        let (sop_class_uid, sop_instance_uid) =
            (text(tags::SOP_CLASS_UID), text(tags::SOP_INSTANCE_UID));
        let declared = Declared {
            sop_class_uid: &sop_class_uid,
            sop_instance_uid: &sop_instance_uid,
            expected: Some(&self.priors.expected),
        };
        let store = self.priors.store.as_ref();
        match ingest::store_instance(store, metrics, bytes, Some(&declared), self.priors.reserve) {
            Ok(r) if r.outcome != StoreOutcome::Conflict => Ok(()),
            Ok(_) => Err(ingest::CONFLICT.into()),
            Err(refused) => Err(refused.reason),
        }
    }
}

impl DicomWebPeer {
    /// The instances WADO-RS answers at `path`, each a Part 10 file, as held.
    pub async fn instance_parts(&self, path: &str) -> Result<Vec<bytes::Bytes>, String> {
        let request = self.request(reqwest::Method::GET, path).header(
            reqwest::header::ACCEPT,
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
        );
        let response = self.send(request, "a retrieval").await?;
        if !response.status().is_success() {
            return Err(refusal(response, &self.name, "a retrieval").await);
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let boundary = boundary_of(&content_type).ok_or_else(|| {
            format!(
                "{}: a retrieval answered {content_type:?}, not multipart/related with a boundary",
                self.name
            )
        })?;
        let answer = body(response, &self.name).await?;
        let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(answer) });
        let mut multipart = multer::Multipart::new(stream, boundary);
        let mut parts = Vec::new();
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| format!("{}: a retrieval's multipart answer: {e}", self.name))?
        {
            let mut chunks = field.map(|c| c.map_err(|e| e.to_string()));
            let mut part = bytes::BytesMut::new();
            while let Some(chunk) = chunks.next().await {
                part.extend_from_slice(&chunk.map_err(|e| format!("{}: {e}", self.name))?);
            }
            parts.push(part.freeze());
        }
        Ok(parts)
    }
}

/// The boundary of a `multipart/related` Content-Type.
fn boundary_of(content_type: &str) -> Option<String> {
    let mime: mime::Mime = content_type.parse().ok()?;
    (mime.type_() == mime::MULTIPART && mime.subtype() == "related")
        .then(|| {
            mime.get_param(mime::BOUNDARY)
                .map(|b| b.as_str().to_string())
        })
        .flatten()
        .filter(|b| !b.is_empty())
}

#[cfg(test)]
mod tests {
    use super::boundary_of;

    #[test]
    fn a_retrieval_s_boundary_is_read_from_its_content_type() {
        assert_eq!(
            boundary_of("multipart/related; type=\"application/dicom\"; boundary=\"abc\"")
                .as_deref(),
            Some("abc")
        );
        assert_eq!(boundary_of("application/dicom"), None);
        assert_eq!(boundary_of("multipart/related"), None);
    }
}

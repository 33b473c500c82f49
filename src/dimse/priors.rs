//! A PACS asked for priors over DIMSE ([`crate::app::prior_search`] decides what to ask): one
//! association per search (Study Root FIND and MOVE, over DICOM TLS when the peer has `tls`),
//! each instance fetched by C-MOVE to radassist's own AE title, arriving on its listener as a
//! C-STORE sub-operation while the study is expected.

use super::query::QueryAssociation;
use super::tls::ClientTls;
use crate::app::metrics::Metrics;
use crate::app::prior_search::{Fetched, PeerQuery, PriorPeer};
use crate::config::DicomPeer;
use crate::dicom::identifier::identifier;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use std::time::Instant;

/// A peer with `query_priors`, reached by DIMSE.
pub struct DimsePeer {
    pub config: DicomPeer,
    /// Its client TLS, when it has `tls = true`.
    pub tls: Option<ClientTls>,
    /// radassist's AE title: the calling AE and the Move Destination.
    pub ae_title: String,
}

impl PriorPeer for DimsePeer {
    fn name(&self) -> &str {
        &self.config.ae_title
    }

    fn open(&self, deadline: Instant) -> Result<Box<dyn PeerQuery + '_>, String> {
        let association =
            QueryAssociation::open(&self.config, self.tls.as_ref(), &self.ae_title, deadline)?;
        Ok(Box::new(Conversation {
            association,
            ae_title: &self.ae_title,
        }))
    }
}

/// One association with the peer.
struct Conversation<'a> {
    association: QueryAssociation,
    ae_title: &'a str,
}

impl PeerQuery for Conversation<'_> {
    fn find(&mut self, identifier: &InMemDicomObject) -> Result<Vec<InMemDicomObject>, String> {
        self.association.find(identifier)
    }

    /// C-MOVE of one instance to radassist itself.
    fn fetch(
        &mut self,
        study_uid: &str,
        series_uid: &str,
        sop_uid: &str,
        _metrics: &Metrics,
    ) -> Result<Fetched, String> {
        self.association.retrieve(
            &identifier(
                "IMAGE",
                &[
                    (tags::STUDY_INSTANCE_UID, study_uid),
                    (tags::SERIES_INSTANCE_UID, series_uid),
                    (tags::SOP_INSTANCE_UID, sop_uid),
                ],
            ),
            self.ae_title,
        )
    }

    fn close(self: Box<Self>) {
        self.association.release();
    }
}

//! Where the analysis looks for a prior the local store lacks: a PACS, asked over whatever
//! network the site has. The core only names what it needs; the DICOM node
//! ([`crate::dimse::priors`]) answers with C-FIND and C-MOVE.

use super::expected_priors::ExpectedPriors;
use super::metrics::Metrics;
use crate::dicom::ImageHeader;

/// What a search for a prior at the PACS came to.
#[derive(Debug, Clone, PartialEq)]
pub enum RemotePrior {
    /// A prior is now in the local store.
    Retrieved { peer: String, study_uid: String },
    /// The peers answered and hold no eligible prior.
    NoneHeld,
    /// No peer could be asked or could send one: why.
    Unavailable(String),
}

/// A place priors can be retrieved from. Calls block (network round trips): the workers make
/// them from their own threads.
pub trait PriorSource: Send + Sync {
    /// Who is asked, by name (the AE titles), for the draft's evidence when none could answer.
    fn peers(&self) -> Vec<String>;
    /// The studies being retrieved now, so the listener stores them as priors.
    fn expected(&self) -> &ExpectedPriors;
    /// Asks for a prior of `current`; `accept(study_uid)` says whether a retrieved study now
    /// gives an eligible prior in the local store.
    fn retrieve(
        &self,
        current: &ImageHeader,
        metrics: &Metrics,
        accept: &dyn Fn(&str) -> bool,
    ) -> RemotePrior;
}

//! The studies radassist is retrieving from a PACS as priors right now, shared by the job that
//! asks for them ([`crate::app::prior_search`]: by C-MOVE or WADO-RS) and whatever receives
//! them (the listener, for a C-MOVE's C-STORE sub-operations on associations of their own; the
//! job itself, for WADO-RS). They are kept in the store,
//! because with several processes the job runs in a worker and the instances arrive at
//! whichever front end the PACS reaches.
//!
//! An instance of an expected study is kept as a prior: its study is catalogued PRIOR and not
//! analysed, and an SR of it is taken as the prior's report. Nothing else is: an SR pushed
//! outside a retrieval is refused. The expectation ends when the retrieval does (the guard
//! is dropped), whatever its outcome, and at the latest at its deadline (so that a process
//! that died mid-retrieval leaves nothing expected for ever).

use crate::store::{now_ms, Store};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct ExpectedPriors {
    store: Arc<dyn Store>,
    /// How long a retrieval may take (its expectation ends then at the latest).
    longest: Duration,
}

/// Holds one expectation of a study; dropping it ends that expectation.
#[must_use = "the expectation ends when the guard is dropped"]
pub struct Expecting {
    store: Arc<dyn Store>,
    id: Option<i64>,
}

impl ExpectedPriors {
    pub fn new(store: Arc<dyn Store>, longest: Duration) -> ExpectedPriors {
        ExpectedPriors { store, longest }
    }

    /// Expects instances of `study_uid` until the guard is dropped (expectations of the same
    /// study by two jobs at once are each kept). Blocks (a store call). A store that fails
    /// is logged: the retrieved instances are then not known as a prior's, and refused or
    /// kept as a study of their own, never lost.
    pub fn expect(&self, study_uid: &str) -> Expecting {
        let until = now_ms() + self.longest.as_millis() as i64 + 60_000;
        let id = self
            .store
            .expect_prior(study_uid, until)
            .map_err(|e| tracing::error!("priors: cannot note the retrieval of {study_uid}: {e}"))
            .ok();
        Expecting {
            store: self.store.clone(),
            id,
        }
    }

    /// Whether instances of `study_uid` are being retrieved as a prior now. Blocks.
    pub fn expects(&self, study_uid: &str) -> bool {
        self.store
            .prior_expected(study_uid, now_ms())
            .map_err(|e| tracing::error!("priors: cannot look up expected priors: {e}"))
            .unwrap_or(false)
    }
}

impl Drop for Expecting {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            if let Err(e) = self.store.end_prior_expectation(id) {
                tracing::error!("priors: cannot end an expectation (it ends at its deadline): {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expectation_lasts_as_long_as_its_last_guard() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(crate::store::SqliteStore::open(dir.path()).unwrap());
        let priors = ExpectedPriors::new(store, Duration::from_secs(30));
        assert!(!priors.expects("1.2.3"));
        let first = priors.expect("1.2.3");
        let second = priors.expect("1.2.3");
        drop(first);
        assert!(priors.expects("1.2.3"));
        drop(second);
        assert!(!priors.expects("1.2.3"));
    }
}

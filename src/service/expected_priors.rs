//! The studies radassist is retrieving from a PACS as priors right now, shared by the job that
//! asks for them (C-MOVE, [`super::dicom::priors`]) and the listener that receives them (the
//! C-MOVE's C-STORE sub-operations, on associations of their own).
//!
//! An instance of an expected study is kept as a prior: its study is catalogued PRIOR and not
//! analysed, and an SR of it is taken as the prior's report. Nothing else is: an SR pushed
//! outside a retrieval is refused. The expectation ends when the retrieval does (the guard
//! is dropped), whatever its outcome.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default, Clone)]
pub struct ExpectedPriors(Arc<Mutex<HashMap<String, usize>>>);

/// Holds one expectation of a study; dropping it ends that expectation.
#[must_use = "the expectation ends when the guard is dropped"]
pub struct Expecting {
    priors: ExpectedPriors,
    study_uid: String,
}

impl ExpectedPriors {
    fn studies(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Expects instances of `study_uid` until the guard is dropped (expectations of the same
    /// study by two jobs at once are counted).
    pub fn expect(&self, study_uid: &str) -> Expecting {
        *self.studies().entry(study_uid.to_string()).or_default() += 1;
        Expecting {
            priors: self.clone(),
            study_uid: study_uid.to_string(),
        }
    }

    /// Whether instances of `study_uid` are being retrieved as a prior now.
    pub fn expects(&self, study_uid: &str) -> bool {
        self.studies().contains_key(study_uid)
    }
}

impl Drop for Expecting {
    fn drop(&mut self) {
        let mut studies = self.priors.studies();
        if let Some(count) = studies.get_mut(&self.study_uid) {
            *count -= 1;
            if *count == 0 {
                studies.remove(&self.study_uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expectation_lasts_as_long_as_its_last_guard() {
        let priors = ExpectedPriors::default();
        assert!(!priors.expects("1.2.3"));
        let first = priors.expect("1.2.3");
        let second = priors.expect("1.2.3");
        drop(first);
        assert!(priors.expects("1.2.3"));
        drop(second);
        assert!(!priors.expects("1.2.3"));
    }
}

//! The application core: every operation radassist does on studies, whoever asks for it.
//!
//! gRPC ([`crate::grpc`]), the DICOM node ([`crate::dimse`]) and the reading room
//! ([`crate::web`]) translate their requests into these operations and their [`Error`]s into
//! their own answers; nothing here knows a transport. The parts, in the order a study meets them:
//! - [`ingest`] and [`ingest_limits`]: an instance validated, stored durably and acknowledged;
//! - [`completion`]: studies completed when they go quiet;
//! - [`worker`] and [`job`]: the analysis workers turn each queued study into its work item
//!   (analysis, prior comparison, draft), asking a [`prior_source::PriorSource`] for priors
//!   the store lacks ([`prior_search`]: the search every PACS is asked with);
//! - [`reading`]: claim, release, sign and amend a read; [`results`]: the SRs sent back;
//! - [`archive`]: the studies held, searched and retrieved as DICOM's query model sees them;
//! - [`state`]: what the parts share, and the events watchers follow ([`relay`] carries them
//!   between processes with PostgreSQL); [`metrics`]: what `/metrics` shows.

pub mod archive;
pub(crate) mod completion;
pub(crate) mod downloads;
pub(crate) mod expected_priors;
pub(crate) mod health;
pub(crate) mod ingest;
pub(crate) mod ingest_limits;
pub(crate) mod job;
pub(crate) mod metrics;
pub mod prior_search;
pub(crate) mod prior_source;
pub(crate) mod quality;
pub(crate) mod reading;
pub(crate) mod relay;
pub(crate) mod results;
pub(crate) mod state;
pub(crate) mod work_item;
pub(crate) mod worker;

pub use state::State;

use crate::roles::Role;
use crate::store::StoreError;

/// Who asks for an operation: the token's or session's holder, their role, and where from.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    pub peer: String,
}

/// Why an operation was not done. Each way in turns it into its own answer (a gRPC status, an
/// HTTP status, a DIMSE status); the message says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// What was asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The state does not allow it now (another caller won, or it must be claimed first).
    #[error("{0}")]
    Precondition(String),
    /// The request itself is wrong: fix it before sending it again.
    #[error("{0}")]
    Invalid(String),
    /// Not now: out of room or overloaded; the same request may succeed later.
    #[error("{0}")]
    Unavailable(String),
    /// Our failure: the operation was not done.
    #[error("{context}: {source}")]
    Internal {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// An internal failure, with what was being done.
    pub fn internal(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::Internal {
            context: context.into(),
            source: source.into(),
        }
    }
}

impl Error {
    /// The error with every cause, for the log (an internal error's message to a caller says
    /// only that it failed).
    pub fn with_causes(&self) -> String {
        crate::causes::with_causes(self)
    }
}

/// What a caller is told of an internal error.
pub const INTERNAL: &str = "the server failed; the operation was not done: retry, and tell the administrator if it persists";

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        match e {
            StoreError::NotFound(m) => Error::NotFound(m),
            StoreError::Precondition(m) => Error::Precondition(m),
            other => Error::internal("the store", other),
        }
    }
}

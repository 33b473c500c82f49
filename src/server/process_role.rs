//! What one `radassist serve` process does (DESIGN.md section 8): everything (`all`, the
//! single-process default), or one part of a scaled-out site on one PostgreSQL catalogue and one
//! blob store: a stateless front end (gRPC, DICOM, web; the stable-study timer; results to the
//! PACS) or a worker (takes jobs and holds the model sessions, on the GPU where there is one).
//! Any number of each may run; they meet in the catalogue and in its LISTEN/NOTIFY events.

use crate::config::{Config, StoreBackend};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProcessRole {
    /// Front end and worker in one process.
    All,
    /// Ingest (gRPC, DICOM), the APIs and the web app; no analysis.
    Frontend,
    /// Analysis only: takes jobs from the shared queue.
    Worker,
}

impl ProcessRole {
    /// Whether this process takes ingest and answers the APIs.
    pub fn serves(self) -> bool {
        matches!(self, ProcessRole::All | ProcessRole::Frontend)
    }

    /// Whether this process analyses studies.
    pub fn analyses(self) -> bool {
        matches!(self, ProcessRole::All | ProcessRole::Worker)
    }

    /// A role that shares its store with other processes needs a store made for that.
    pub fn check(self, config: &Config) -> Result<(), String> {
        if self != ProcessRole::All && config.store.backend == StoreBackend::Sqlite {
            return Err(format!(
                "--role {} shares the catalogue with other processes, which the embedded SQLite store cannot: set [store] backend = \"postgres\" (and [blobs] to a bucket or a shared folder), or run --role all",
                self.name()
            ));
        }
        Ok(())
    }

    pub fn name(self) -> &'static str {
        match self {
            ProcessRole::All => "all",
            ProcessRole::Frontend => "frontend",
            ProcessRole::Worker => "worker",
        }
    }
}

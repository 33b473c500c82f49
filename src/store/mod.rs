//! The durable store behind the service: the catalogue (studies, instances, jobs, work items,
//! audit) and the blobs (the DICOM instances themselves).
//!
//! [`Store`] is the interface the service uses, in parts by what they keep ([`StudyStore`],
//! [`JobQueue`], [`Worklist`], [`Outbox`], [`AuditLog`], [`ReadingRoomStore`], [`Archive`]), each backend
//! implementing a part in a file of its own. [`SqliteStore`] is the embedded default (SQLite
//! in WAL mode with `synchronous = FULL`, and a [`BlobStore`] for the blobs, a folder by
//! default); [`PgStore`] keeps the catalogue in PostgreSQL for several processes, with the
//! blobs in a shared folder or an S3-compatible object store ([`S3BlobStore`]). The SQL both
//! run as written is in one place (`sql.rs`); the work item's documents are typed
//! ([`documents`]). Blobs are written durably before their catalogue row commits, and only
//! then is the sender told STORED. Every state change is a conditional update (see
//! [`lifecycle`]): of two callers racing for it, one wins and the other gets
//! [`StoreError::Precondition`] with the reason. Every call blocks: the async service calls it
//! from `spawn_blocking`, the worker from its own threads.

pub mod archive;
pub mod backup;
mod blobs;
pub mod documents;
pub(crate) mod durable_file;
mod legacy;
pub mod lifecycle;
mod open;
mod outcomes;
pub mod pg;
pub mod reading_room;
mod s3_blobs;
mod sql;
mod sqlite;

pub use blobs::{decode, decode_header, BlobStore, FolderBlobStore};
pub use open::{open_blobs, open_store, Recovery};
pub use pg::PgStore;
pub use reading_room::ReadingRoomStore;
pub use s3_blobs::S3BlobStore;
pub use sqlite::SqliteStore;

use crate::draft::objects::ResultObject;
pub use archive::Archive;
use documents::{SignedRead, WorkItemContent};
use lifecycle::{JobState, OutboxState, ResultKind, StudyState, WorkItemStatus};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("PostgreSQL: {}", postgres_message(.0))]
    Postgres(#[from] postgres::Error),
    #[error("PostgreSQL connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("blob store: {0}")]
    Io(#[from] std::io::Error),
    #[error("SQLite schema: {0}")]
    Migration(#[from] sqlite::schema::MigrationError),
    #[error(transparent)]
    Document(#[from] documents::DocumentError),
    #[error("PostgreSQL schema: {0}")]
    PgMigration(#[from] legacy::LegacyError),
    #[error("{0}")]
    NotFound(String),
    /// The change's precondition does not hold (another caller won, or the state is wrong).
    #[error("{0}")]
    Precondition(String),
}

/// What PostgreSQL said (its own message and SQLSTATE, which `postgres::Error`'s display
/// leaves out as "db error").
fn postgres_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What was received of one instance, already parsed.
pub struct IncomingInstance<'a> {
    pub bytes: &'a [u8],
    /// SHA-256 of `bytes`, hex.
    pub sha256: &'a str,
    pub sop_instance_uid: &'a str,
    pub study_instance_uid: &'a str,
    pub series_instance_uid: &'a str,
    pub patient_id: &'a str,
    pub accession_number: &'a str,
    pub study_date: &'a str,
    /// Its searchable attributes, DICOM JSON (see [`archive`]).
    pub attributes: &'a str,
    /// Retrieved from a PACS as another study's prior: its study is kept (PRIOR), not
    /// analysed.
    pub prior: bool,
}

/// The signed report of a prior study, taken from an SR retrieved with it.
#[derive(Debug, Clone)]
pub struct PriorReport<'a> {
    pub study_instance_uid: &'a str,
    pub sop_instance_uid: &'a str,
    /// The SR's blob (durable before the row is written).
    pub sha256: &'a str,
    /// Its Content Date and Time (YYYYMMDDHHMMSS, may be empty): the newest report wins.
    pub content_date_time: &'a str,
    pub text: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored,
    Duplicate,
    Conflict,
}

/// A study row.
#[derive(Debug, Clone)]
pub struct StudyRow {
    pub study_instance_uid: String,
    pub state: StudyState,
    pub instance_count: u32,
    pub last_instance_at: i64,
    pub attempts: u32,
    pub failure_reason: String,
    pub patient_id: String,
    pub accession_number: String,
    pub study_date: String,
}

/// A work item row. `content` is what the worker built (study fields, draft with evidence,
/// device checks); `final_read` the read once signed, and
/// `comparison` the QA comparison of draft and final read (JSON), computed once at signing;
/// the analysis is kept as JSON for audit, the overlay and debugging.
#[derive(Debug, Clone)]
pub struct WorkItemRow {
    pub study_instance_uid: String,
    pub status: WorkItemStatus,
    pub critical: bool,
    pub priority: i64,
    pub claimed_by: Option<String>,
    pub created_at: i64,
    pub content: WorkItemContent,
    pub analysis_json: String,
    pub model_version: String,
    pub final_read: Option<SignedRead>,
    pub signed_at: Option<i64>,
    pub comparison: Option<String>,
    /// What the SRs of this item are built from (JSON of `super::results::ReportSource`).
    pub report_json: Option<String>,
    /// When images of the study arrived after its read was signed and were analysed (ms):
    /// the signed read stands, and the radiologist should look at them and amend it if they
    /// change it. An amendment clears it.
    pub images_after_signing: Option<i64>,
}

/// Which work items a worklist shows.
#[derive(Debug, Clone, Default)]
pub struct WorkItemFilter {
    /// Any of these statuses.
    pub statuses: Vec<WorkItemStatus>,
    pub critical_only: bool,
    /// Only items claimed by (or signed by) this radiologist.
    pub claimed_by: Option<String>,
    /// Only studies of this Study Date (YYYY-MM-DD, as the catalogue keeps it).
    pub study_date: Option<String>,
    /// Also SIGNED items with images that arrived after signing (they need a look).
    pub signed_with_new_images: bool,
}

/// A result object radassist made for a study (a durable blob already), kept in the results
/// catalogue whether or not a peer takes it: what the reading room and the API offer for
/// download, and what an amendment names as its predecessor.
#[derive(Debug, Clone, PartialEq)]
pub struct MadeResult {
    pub study_instance_uid: String,
    pub sop_instance_uid: String,
    pub object: ResultObject,
    /// Draft (the models' results, and the draft report), final or amended (a signed report).
    pub kind: ResultKind,
    pub sha256: String,
    /// When it was made (ms since the epoch; set by the store).
    pub created_at: i64,
    /// Its searchable attributes, DICOM JSON (see [`archive`]).
    pub attributes: String,
}

/// The result objects one step made and their copies queued for the peers that take them,
/// recorded in the step's own transaction.
#[derive(Debug, Clone, Default)]
pub struct ResultBatch {
    pub made: Vec<MadeResult>,
    pub queued: Vec<OutgoingResult>,
}

/// An object to send to one peer, its bytes already a durable blob.
#[derive(Debug, Clone)]
pub struct OutgoingResult {
    pub study_instance_uid: String,
    pub sop_instance_uid: String,
    pub kind: ResultKind,
    /// The peer's AE title.
    pub peer: String,
    pub sha256: String,
}

/// A result in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub result: OutgoingResult,
    pub state: OutboxState,
    pub attempts: u32,
    pub last_error: String,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub sent_at: Option<i64>,
    /// When an attempt to send it began that ended neither sent nor failed: a crash cut it
    /// off, perhaps after the peer had stored it (as taken by `take_due_results`: the attempt
    /// before this one).
    pub cut_off_attempt_at: Option<i64>,
}

/// What a finished job makes: the study's new current work item.
#[derive(Debug, Clone)]
pub struct NewWorkItem {
    pub critical: bool,
    pub priority: i64,
    pub content: WorkItemContent,
    pub analysis_json: String,
    pub model_version: String,
    /// What its SRs are built from (JSON), and the result objects made from the draft and the
    /// analysis, recorded (and queued for the peers) in the same transaction.
    pub report_json: String,
    pub results: ResultBatch,
}

#[derive(Debug, Clone)]
pub struct JobRow {
    pub study_instance_uid: String,
    pub state: JobState,
    pub attempts: u32,
    pub last_error: String,
    pub completions: u32,
}

/// A job a worker has taken.
#[derive(Debug, Clone)]
pub struct TakenJob {
    pub study_instance_uid: String,
    /// How long it waited in the queue, ms.
    pub waited_ms: i64,
    /// This attempt's number, from 1.
    pub attempt: u32,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRow {
    pub at_ms: i64,
    pub who: String,
    pub role: String,
    pub action: String,
    pub resource: String,
    pub peer: String,
}

/// What the service needs of its store. [`SqliteStore`] is the embedded default; [`PgStore`]
/// implements the same calls on PostgreSQL (jobs taken with `FOR UPDATE SKIP LOCKED` under a
/// lease, so several workers share one queue).
pub trait Store:
    StudyStore + JobQueue + Worklist + Outbox + AuditLog + ReadingRoomStore + Archive + Send + Sync
{
    fn blobs(&self) -> &dyn BlobStore;
}

/// The studies and their instances: ingest, completion, priors kept and expected.
pub trait StudyStore {
    /// Stores one instance: STORED (durable and catalogued), DUPLICATE (same UID, same bytes)
    /// or CONFLICT (same UID, other bytes: kept for review). Returns the blob's SHA-256.
    fn put_instance(
        &self,
        instance: &IncomingInstance,
    ) -> Result<(StoreOutcome, String), StoreError>;
    fn study(&self, uid: &str) -> Result<StudyRow, StoreError>;
    /// Queues the study's analysis when it has instances not analysed yet (RECEIVING, or a
    /// PRIOR now sent for analysis); otherwise changes nothing: a queued or running job stays
    /// as it is, and a study sent again without a new instance is not analysed again.
    fn complete_study(&self, uid: &str) -> Result<StudyRow, StoreError>;
    /// The stable-study timer's completion: queued only while the study is still RECEIVING
    /// with no instance for `quiet_ms`, so that of several front ends' timers exactly one
    /// queues it (None: another did, or an instance arrived meanwhile).
    fn complete_stable_study(
        &self,
        uid: &str,
        quiet_ms: i64,
    ) -> Result<Option<StudyRow>, StoreError>;
    /// Studies still receiving whose last instance is older than `quiet_ms`.
    fn stable_studies(&self, quiet_ms: i64) -> Result<Vec<String>, StoreError>;
    /// (SOP Instance UID, SHA-256) of each instance of a study, in arrival order.
    fn study_instances(&self, uid: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// The instances of which a UID is not a DICOM UID (stored before ingest checked them),
    /// by study: (Study, Series, SOP Instance UID). The query may over-select; the caller
    /// checks each with [`crate::dicom::uid::check_uid`].
    fn instances_with_invalid_uids(&self) -> Result<Vec<(String, String, String)>, StoreError>;
    /// The patient's other studies as (Study Instance UID, Study Date as catalogued), newest
    /// date first, undated last.
    fn other_studies_of_patient(
        &self,
        patient_id: &str,
        except: &str,
    ) -> Result<Vec<(String, String)>, StoreError>;
    /// Keeps a prior study's report (a second SR of the same study replaces it only if it
    /// is newer); false if that SR was kept before.
    fn put_prior_report(&self, report: &PriorReport) -> Result<bool, StoreError>;
    /// The newest report kept for a prior study.
    fn prior_report(&self, study_uid: &str) -> Result<Option<String>, StoreError>;
    /// A prior being retrieved by C-MOVE: instances of `study_uid` that arrive (on any
    /// process's DICOM listener) before `until_ms` or before the expectation ends are a prior's.
    /// Returns the expectation's id.
    fn expect_prior(&self, study_uid: &str, until_ms: i64) -> Result<i64, StoreError>;
    fn end_prior_expectation(&self, id: i64) -> Result<(), StoreError>;
    /// Whether instances of `study_uid` are being retrieved as a prior at `now_ms`.
    fn prior_expected(&self, study_uid: &str, now_ms: i64) -> Result<bool, StoreError>;
}

/// The analysis queue: jobs taken, finished (the work item made), failed and retried.
pub trait JobQueue {
    fn queue_depth(&self) -> Result<i64, StoreError>;
    /// Takes the oldest queued job (queued -> running, study -> ANALYZING).
    fn take_job(&self) -> Result<Option<TakenJob>, StoreError>;
    /// A running job's draft becomes the study's one current work item, in the same
    /// transaction as the job's completion (running -> done, study -> DRAFT_READY), and its
    /// draft SRs are queued. A study whose read is already signed keeps it (and the draft it
    /// was signed against, which QA compares): the item is marked `images_after_signing`,
    /// made critical when the new draft is, no draft SR is sent, and the study stays SIGNED.
    fn finish_job(&self, uid: &str, item: &NewWorkItem) -> Result<(), StoreError>;
    /// A running job's failed attempt: queued again while attempts remain, else failed.
    /// Returns the job's new state.
    fn fail_job(&self, uid: &str, error: &str, max_attempts: u32) -> Result<JobState, StoreError>;
    /// Jobs in `state` (all with None), oldest change first.
    fn jobs(&self, state: Option<JobState>) -> Result<Vec<JobRow>, StoreError>;
    /// A failed job queued again (failed -> queued, attempts from 0, study -> QUEUED), for an
    /// admin who fixed its cause; Precondition when the job is not failed.
    fn retry_job(&self, uid: &str) -> Result<(), StoreError>;
}

/// The work items: the worklist, claims, signed and amended reads.
pub trait Worklist {
    fn work_item(&self, uid: &str) -> Result<WorkItemRow, StoreError>;
    /// Work items in worklist order (critical first, then priority, then age), from `offset`.
    fn work_items(
        &self,
        filter: &WorkItemFilter,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<WorkItemRow>, StoreError>;
    /// UNCLAIMED -> CLAIMED by `who` (already claimed by `who`: unchanged).
    fn claim(&self, uid: &str, who: &str) -> Result<WorkItemRow, StoreError>;
    /// CLAIMED by `who` -> UNCLAIMED.
    fn release(&self, uid: &str, who: &str) -> Result<WorkItemRow, StoreError>;
    /// CLAIMED by `who` -> SIGNED at `signed_at` (ms, the read's own sign time), with the final
    /// read and its QA comparison (study -> SIGNED), and the final SR queued for each peer in
    /// `results`, in the same transaction.
    fn sign(
        &self,
        uid: &str,
        who: &str,
        signed_at: i64,
        read: &SignedRead,
        comparison: &str,
        results: &ResultBatch,
    ) -> Result<WorkItemRow, StoreError>;
    /// SIGNED -> SIGNED with an amended read signed at `signed_at`: the read it replaces
    /// is kept in `superseded_reads`, the QA comparison is the new one's, and the amended SR is
    /// queued for each peer in `results`, in the same transaction. Precondition unless signed,
    /// or when `replaces` (the signing time of the read the amendment was written against) is
    /// no longer the current read's: two amendments cannot both win.
    fn amend(
        &self,
        uid: &str,
        replaces: i64,
        signed_at: i64,
        read: &SignedRead,
        comparison: &str,
        results: &ResultBatch,
    ) -> Result<WorkItemRow, StoreError>;
    /// Signed items in a period (ms since the epoch; None: no limit), optionally one version.
    fn signed_items(
        &self,
        start: Option<i64>,
        end: Option<i64>,
        model_version: &str,
    ) -> Result<Vec<WorkItemRow>, StoreError>;
}

/// The results catalogue and outbox: the objects made for each study, their copies queued for
/// the peers, taken for a send, sent or failed.
pub trait Outbox {
    /// The newest signed report SR (final or amended) made for study `uid`: its SOP Instance
    /// UID and blob; None when none was made.
    fn latest_signed_sr(&self, uid: &str) -> Result<Option<(String, String)>, StoreError>;
    /// Every result object made for study `uid`, oldest first.
    fn results_of(&self, uid: &str) -> Result<Vec<MadeResult>, StoreError>;
    /// Takes pending results whose next attempt is due at `now_ms`, oldest first, for a send:
    /// they are not due again (for this or another process's sender) before `now_ms + hold_ms`,
    /// unless [`Outbox::result_failed`] sets their next attempt. Rows another process is taking
    /// at this moment are skipped.
    fn take_due_results(
        &self,
        now_ms: i64,
        limit: i64,
        hold_ms: i64,
    ) -> Result<Vec<OutboxRow>, StoreError>;
    /// pending -> sent (the peer answered Success); false when it was not pending.
    fn result_sent(&self, id: i64) -> Result<bool, StoreError>;
    /// A failed attempt: attempts + 1, the error, and when to try again.
    fn result_failed(&self, id: i64, error: &str, next_attempt_at: i64) -> Result<(), StoreError>;
    fn pending_results(&self) -> Result<i64, StoreError>;
    /// The outbox, pending first, then the most recently sent.
    fn outbox(&self, limit: i64) -> Result<Vec<OutboxRow>, StoreError>;
}

/// The audit log: who did what to which resource, from where.
pub trait AuditLog {
    fn audit(&self, row: &AuditRow) -> Result<(), StoreError>;
    /// Audit rows since `since_ms`, optionally one caller's, oldest first.
    fn audit_log(&self, since_ms: i64, who: &str) -> Result<Vec<AuditRow>, StoreError>;
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;

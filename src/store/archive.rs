//! The catalogue as an archive: every instance received and every result object radassist
//! made, each with its searchable attributes, for DICOMweb's search and retrieval
//! ([`crate::app::archive`] matches and shapes them).
//!
//! An entry's attributes are a DICOM JSON data set (PS3.18 F.2) of the attributes a search
//! matches and returns, written with its catalogue row. Rows that earlier versions catalogued
//! have none (empty): the archive reads them from the blob once and keeps them
//! ([`Archive::fill_archive_attributes`]). The store narrows a search by what its own columns
//! hold (the study's UID, Patient ID, Accession Number, Study Date); the rest is matched on the
//! attributes.

use super::StoreError;
use crate::draft::objects::ResultObject;

/// What the store itself narrows a search by: each `None` (or empty list) matches every study.
#[derive(Debug, Clone, Default)]
pub struct ArchiveFilter {
    /// Any of these studies.
    pub study_uids: Vec<String>,
    /// Exactly this Patient ID.
    pub patient_id: Option<String>,
    /// Exactly this Accession Number.
    pub accession_number: Option<String>,
    /// Study Date on or after this date (YYYYMMDD).
    pub study_date_from: Option<String>,
    /// Study Date on or before this date (YYYYMMDD).
    pub study_date_to: Option<String>,
}

/// One instance in the archive.
#[derive(Debug, Clone)]
pub struct ArchiveEntry {
    pub study_instance_uid: String,
    pub sop_instance_uid: String,
    /// The blob of its bytes, as received or made.
    pub sha256: String,
    /// Its attributes as DICOM JSON; empty where an earlier version catalogued it.
    pub attributes: String,
    /// None for an instance received; the object for one radassist made.
    pub made: Option<ResultObject>,
}

/// The catalogue as an archive.
pub trait Archive {
    /// Every instance received and every result object made of the studies `filter` matches,
    /// ordered by study, then by when it arrived or was made.
    fn archive_entries(&self, filter: &ArchiveFilter) -> Result<Vec<ArchiveEntry>, StoreError>;
    /// The studies holding an instance that `filter` matches, in UID order: the UIDs of those
    /// from `offset` (at most `limit`), and how many match in all. A search by study whose
    /// keys the filter decides alone pages here rather than reading every study's entries.
    fn archive_studies(
        &self,
        filter: &ArchiveFilter,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<String>, usize), StoreError>;
    /// Keeps attributes read from the blobs of entries that had none: (SOP Instance UID,
    /// DICOM JSON). An entry that has attributes keeps its own.
    fn fill_archive_attributes(&self, filled: &[(String, String)]) -> Result<(), StoreError>;
}

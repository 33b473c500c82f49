//! The studies radassist holds, as DICOM's query/retrieve model sees them: searched by study,
//! series or instance, and retrieved as stored. DICOMweb ([`crate::web::dicomweb`]) is the way in.
//!
//! A study's instances are those received (by any way in, priors retrieved from a PACS
//! included) and the result objects radassist made for it (reports, measurement reports,
//! presentation states, summary images), each in the series it was made in. The store narrows
//! a search by its own columns ([`crate::store::archive`]); every key is then matched here
//! ([`matching`]) on the searchable attributes kept with each instance ([`attributes`]), and the
//! answers shaped ([`answers`]). A study or series matches when one of its instances matches
//! every key, each instance seen with its study's and series' attributes (those radassist
//! computes, such as Modalities in Study, included). A study search whose keys the store's
//! columns decide alone is paged by the store, which then reads only the page's studies.
//! Searches and retrievals hand out patient data: each is audited.

mod answers;
pub mod attributes;
pub mod matching;
pub mod rendering;

use super::state::State;
use super::{Caller, Error};
use crate::dicom::parse_dicom;
use crate::store::archive::{ArchiveEntry, ArchiveFilter};
use crate::store::{Store, StoreError};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use matching::{Key, Matching};

/// The level of DICOM's query model a search returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Study,
    Series,
    Instance,
}

/// The attributes a search returns besides its level's own and its keys'.
#[derive(Debug, Clone, PartialEq)]
pub enum Include {
    Default,
    /// Every attribute kept, of this level and those above it.
    All,
    Also(Vec<Tag>),
}

/// A search: what it returns, within which study (and series), and the keys each answer
/// matches.
#[derive(Debug, Clone)]
pub struct Search {
    pub level: Level,
    pub study: Option<String>,
    pub series: Option<String>,
    pub keys: Vec<Key>,
    pub include: Include,
    pub offset: usize,
    /// At most this many answers (after `offset`).
    pub limit: usize,
}

/// A search's answers, and how many matched before the offset and limit.
#[derive(Debug)]
pub struct Found {
    pub answers: Vec<InMemDicomObject>,
    pub matched: usize,
}

/// What a retrieval asks for: a study, one of its series, or one instance.
#[derive(Debug, Clone)]
pub struct Scope {
    pub study: String,
    pub series: Option<String>,
    pub instance: Option<String>,
}

impl Scope {
    /// A study, one of its series, or one instance of that series.
    pub fn new(study: String, series: Option<String>, instance: Option<String>) -> Scope {
        Scope {
            study,
            series,
            instance,
        }
    }

    /// The scope as a path (`studies/1.2/series/3.4`), for the audit log and messages.
    pub fn path(&self) -> String {
        let mut path = format!("studies/{}", self.study);
        if let Some(series) = &self.series {
            path.push_str(&format!("/series/{series}"));
        }
        if let Some(instance) = &self.instance {
            path.push_str(&format!("/instances/{instance}"));
        }
        path
    }
}

/// An instance of the archive: its entry and its searchable attributes, read.
#[derive(Debug, Clone)]
pub struct Held {
    pub entry: ArchiveEntry,
    pub attributes: InMemDicomObject,
}

impl Held {
    fn text(&self, tag: Tag) -> String {
        text(&self.attributes, tag)
    }
}

pub(super) fn text(data_set: &InMemDicomObject, tag: Tag) -> String {
    crate::dicom::Attributes(data_set)
        .text(tag)
        .unwrap_or_default()
}

/// Searches the archive (audited as `caller`'s, with `query` as its resource).
pub async fn search(
    state: &State,
    caller: &Caller,
    search: Search,
    query: &str,
) -> Result<Found, Error> {
    let filter = narrowing(&search);
    let found = if decided_by_store(&search) {
        // Paged in the store: only the page's studies are read.
        let (offset, limit) = (search.offset, search.limit);
        let (page, total, held) = state
            .store_call(move |s| {
                let (page, total) = s.archive_studies(&filter, offset, limit)?;
                let held = match page.is_empty() {
                    true => Vec::new(),
                    false => held(
                        s,
                        &ArchiveFilter {
                            study_uids: page.clone(),
                            ..ArchiveFilter::default()
                        },
                    )?,
                };
                Ok::<_, StoreError>((page, total, held))
            })
            .await?;
        let mut found = answers::answers(
            &Search {
                offset: 0,
                ..search.clone()
            },
            &held,
        );
        found.matched = total.max(page.len());
        found
    } else {
        let held = state.store_call(move |s| held(s, &filter)).await?;
        answers::answers(&search, &held)
    };
    state
        .audit(caller, "dicomweb-search", &excerpt_query(query))
        .await?;
    Ok(found)
}

/// Whether a search can be paged by the store: one for studies, anywhere, whose every key is
/// one the store's columns decide exactly (a list of Study Instance UIDs, a Patient ID or
/// Accession Number without wildcards, a Study Date or range) or asks only for a value back.
fn decided_by_store(search: &Search) -> bool {
    search.level == Level::Study
        && search.study.is_none()
        && search.keys.iter().all(|key| {
            matches!(
                (&key.matching, key.tag),
                (Matching::Universal, _)
                    | (Matching::Uids(_), tags::STUDY_INSTANCE_UID)
                    | (Matching::Single(_), tags::PATIENT_ID)
                    | (Matching::Single(_), tags::ACCESSION_NUMBER)
                    | (Matching::Single(_), tags::STUDY_DATE)
                    | (Matching::Range(_, _), tags::STUDY_DATE)
            )
        })
}

/// The instances of `scope`, in study, series and arrival order; NotFound when there are none.
pub async fn instances(state: &State, scope: &Scope) -> Result<Vec<Held>, Error> {
    let filter = ArchiveFilter {
        study_uids: vec![scope.study.clone()],
        ..ArchiveFilter::default()
    };
    let mut held = state.store_call(move |s| held(s, &filter)).await?;
    held.retain(|h| {
        scope
            .series
            .as_ref()
            .is_none_or(|s| *s == h.text(tags::SERIES_INSTANCE_UID))
            && scope
                .instance
                .as_ref()
                .is_none_or(|i| *i == h.entry.sop_instance_uid)
    });
    held.sort_by_key(|h| h.text(tags::SERIES_INSTANCE_UID));
    if held.is_empty() {
        return Err(Error::NotFound(format!(
            "radassist holds no {}: search for the UIDs it holds",
            scope.path()
        )));
    }
    Ok(held)
}

/// The instances of `scope` and their bytes as stored (audited as `caller`'s retrieval).
pub async fn retrieve(
    state: &State,
    caller: &Caller,
    scope: &Scope,
) -> Result<Vec<(Held, Vec<u8>)>, Error> {
    let held = instances(state, scope).await?;
    let store = state.store.clone();
    let read = tokio::task::spawn_blocking(move || {
        held.into_iter()
            .map(|h| {
                let bytes = store.blobs().get(&h.entry.sha256)?;
                Ok((h, bytes))
            })
            .collect::<Result<Vec<_>, std::io::Error>>()
    })
    .await
    .map_err(|e| Error::internal("reading instances", e))?
    .map_err(|e| Error::internal("reading instances", e))?;
    state
        .audit(caller, "dicomweb-retrieve", &scope.path())
        .await?;
    Ok(read)
}

/// A search's query as the audit log keeps it (at most 512 characters).
fn excerpt_query(query: &str) -> String {
    query.chars().take(512).collect()
}

/// What the store can narrow the search by: the scope's study, and the study keys its columns
/// hold (each key is still matched on the attributes afterwards).
fn narrowing(search: &Search) -> ArchiveFilter {
    let mut filter = ArchiveFilter::default();
    if let Some(study) = &search.study {
        filter.study_uids = vec![study.clone()];
    }
    for key in &search.keys {
        match (&key.matching, key.tag) {
            (Matching::Uids(uids), tags::STUDY_INSTANCE_UID) if search.study.is_none() => {
                filter.study_uids = uids.clone();
            }
            (Matching::Single(v), tags::PATIENT_ID) => filter.patient_id = Some(v.clone()),
            (Matching::Single(v), tags::ACCESSION_NUMBER) => {
                filter.accession_number = Some(v.clone())
            }
            (Matching::Single(v), tags::STUDY_DATE) => {
                filter.study_date_from = Some(v.clone());
                filter.study_date_to = Some(v.clone());
            }
            (Matching::Range(from, to), tags::STUDY_DATE) => {
                filter.study_date_from = from.clone();
                filter.study_date_to = to.clone();
            }
            _ => {}
        }
    }
    filter
}

/// The entries `filter` selects, with their attributes (read from the blob, and kept, for
/// entries an earlier version catalogued without).
fn held(store: &dyn Store, filter: &ArchiveFilter) -> Result<Vec<Held>, StoreError> {
    let entries = store.archive_entries(filter)?;
    let mut filled = Vec::new();
    let mut held = Vec::with_capacity(entries.len());
    for mut entry in entries {
        if entry.attributes.is_empty() {
            let bytes = store.blobs().get(&entry.sha256)?;
            match parse_dicom(&bytes) {
                Ok(data_set) => {
                    entry.attributes = attributes::searchable(&data_set);
                    filled.push((entry.sop_instance_uid.clone(), entry.attributes.clone()));
                }
                Err(e) => tracing::warn!(
                    sop = %entry.sop_instance_uid,
                    "archive: a stored instance does not parse ({e}); it is searched without its attributes"
                ),
            }
        }
        let attributes = dicom_json::from_str(&entry.attributes).unwrap_or_else(|e| {
            tracing::warn!(sop = %entry.sop_instance_uid, "archive: the kept attributes do not read ({e})");
            InMemDicomObject::new_empty()
        });
        held.push(Held { entry, attributes });
    }
    if !filled.is_empty() {
        store.fill_archive_attributes(&filled)?;
    }
    Ok(held)
}

//! Priors from the PACS: when the local store holds no eligible prior of a study, radassist
//! asks the peers with `query_priors` for one (DESIGN.md section 5), over whatever each speaks:
//! DIMSE ([`crate::dimse::priors`]: C-FIND and C-MOVE) or DICOMweb
//! ([`crate::dicomweb_client::priors`]: QIDO-RS and WADO-RS). Each is a [`PriorPeer`]; the search
//! itself is the same for all, here.
//!
//! For each such peer in turn, within one deadline (`prior_retrieval_timeout_seconds`): a
//! search (Study Root, STUDY level) for the patient's studies up to the current Study Date;
//! the earlier ones with CR or DX images (or no Modalities in Study), most recent first, are
//! looked into (SERIES, then IMAGE level) for their frontal image: the one whose View Position
//! matches the current view, else PA, else AP, else one without a View Position, never a
//! lateral. That one image is fetched into the local store while the study is expected
//! ([`crate::app::expected_priors`]), so it is stored as a PRIOR and not analysed. The caller
//! then applies the same prior rules as to local priors (`accept`); if the image passes, the
//! study's text SRs are fetched too, and the newest becomes the prior's report. The first study
//! that yields an accepted image is the prior. A study, series or instance whose UID in a peer's
//! answer is not a DICOM UID is passed over.

use super::expected_priors::ExpectedPriors;
use super::ingest::STORAGE_SOP_CLASSES;
use super::metrics::Metrics;
use super::prior_source::{PriorSource, RemotePrior};
use crate::dicom::identifier::identifier;
use crate::dicom::uid::is_uid;
use crate::dicom::{ImageHeader, ProjectionView};
use crate::draft::sr_text::TEXT_SR_SOP_CLASSES;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use std::time::{Duration, Instant};

/// What a peer did when asked for one instance: how many it sent into the local store, failed
/// to send, or sent with warnings.
#[derive(Debug, Clone, Copy)]
pub struct Fetched {
    pub completed: u16,
    pub failed: u16,
    pub warning: u16,
}

/// A peer the prior search can ask: a PACS over DIMSE or DICOMweb.
pub trait PriorPeer: Send + Sync {
    /// Its name (the AE title of its `[[dicom.peers]]` entry).
    fn name(&self) -> &str;
    /// A conversation with it, everything in it bounded by `deadline`.
    fn open(&self, deadline: Instant) -> Result<Box<dyn PeerQuery + '_>, String>;
}

/// One conversation with a [`PriorPeer`] (an association, or a run of HTTP requests).
pub trait PeerQuery {
    /// The peer's matches for a Study Root `identifier` (see [`identifier`]).
    fn find(&mut self, identifier: &InMemDicomObject) -> Result<Vec<InMemDicomObject>, String>;
    /// Brings one instance into the local store, where the study is expected as a prior.
    fn fetch(
        &mut self,
        study_uid: &str,
        series_uid: &str,
        sop_uid: &str,
        metrics: &Metrics,
    ) -> Result<Fetched, String>;
    /// Ends the conversation.
    fn close(self: Box<Self>);
}

/// Earlier studies looked into per peer, most recent first.
const MAX_STUDIES: usize = 3;
/// Images of one study retrieved before it is given up (a header can fail the prior rules
/// that the query's answers could not show).
const MAX_IMAGES: usize = 2;
/// Reports retrieved of one prior study.
const MAX_REPORTS: usize = 3;

/// The peers to ask, in order, within `timeout` in all.
pub struct PriorRetrieval {
    pub peers: Vec<Box<dyn PriorPeer>>,
    pub timeout: Duration,
    pub expected: ExpectedPriors,
}

fn text(object: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    crate::dicom::Attributes(object)
        .text(tag)
        .unwrap_or_default()
}

/// A study the peer holds that may be a prior.
#[derive(Debug)]
struct Candidate {
    study_uid: String,
    /// (Study Date, Study Time) as DICOM writes them.
    moment: (String, String),
}

/// An image of a candidate, as the IMAGE-level query showed it.
#[derive(Debug)]
struct RemoteImage {
    series_uid: String,
    sop_uid: String,
    view: ProjectionView,
}

/// A text SR of a candidate: its series and instance.
#[derive(Debug)]
struct RemoteReport {
    series_uid: String,
    sop_uid: String,
}

/// What an IMAGE-level answer is to the prior search.
enum Found {
    /// A text SR, with its Content Date and Time.
    Report(String, RemoteReport),
    /// A frontal (or view-less) chest radiograph.
    Image(RemoteImage),
}

/// What an instance of series `series_uid` (of radiographs when `radiograph`) is to the prior
/// search: a report, a frontal image, or nothing (a lateral, another class, a UID that is not
/// a DICOM UID).
fn classify(instance: &InMemDicomObject, series_uid: &str, radiograph: bool) -> Option<Found> {
    let sop_uid = text(instance, tags::SOP_INSTANCE_UID);
    let sop_class = text(instance, tags::SOP_CLASS_UID);
    if !is_uid(&sop_uid) {
        return None;
    }
    if TEXT_SR_SOP_CLASSES.iter().any(|(uid, _)| *uid == sop_class) {
        let written = format!(
            "{}{}",
            text(instance, tags::CONTENT_DATE),
            text(instance, tags::CONTENT_TIME)
        );
        let report = RemoteReport {
            series_uid: series_uid.to_string(),
            sop_uid,
        };
        return Some(Found::Report(written, report));
    }
    let storable =
        sop_class.is_empty() || STORAGE_SOP_CLASSES.iter().any(|(uid, _)| *uid == sop_class);
    if !radiograph || !storable {
        return None;
    }
    let position = text(instance, tags::VIEW_POSITION);
    let view = if position.is_empty() {
        ProjectionView::Unknown
    } else {
        ProjectionView::from_view_position(&position)
    };
    matches!(
        view,
        ProjectionView::Pa | ProjectionView::Ap | ProjectionView::Unknown
    )
    .then(|| {
        Found::Image(RemoteImage {
            series_uid: series_uid.to_string(),
            sop_uid,
            view,
        })
    })
}

/// A candidate's frontal images in the order they are tried, and its reports, newest first.
#[derive(Debug)]
struct StudyContents {
    images: Vec<RemoteImage>,
    reports: Vec<RemoteReport>,
}

/// (YYYYMMDD, HHMMSS...) of the current study, from its header (stored ISO-like).
fn current_moment(current: &ImageHeader) -> Option<(String, String)> {
    let digits = |s: &str| -> String { s.chars().filter(char::is_ascii_digit).collect::<String>() };
    let date = digits(current.identity.study_date.as_deref()?);
    (date.len() == 8).then(|| {
        let time = digits(current.identity.study_time.as_deref().unwrap_or(""));
        (date, time)
    })
}

/// Study Time compared as digits padded to HHMMSS.
fn earlier(then: &(String, String), now: &(String, String)) -> bool {
    let time = |t: &str| -> String {
        let t: String = t.chars().take_while(char::is_ascii_digit).take(6).collect();
        format!("{t:0<6}")
    };
    (then.0.as_str(), time(&then.1)) < (now.0.as_str(), time(&now.1))
}

impl PriorSource for PriorRetrieval {
    fn peers(&self) -> Vec<String> {
        self.peers.iter().map(|p| p.name().to_string()).collect()
    }

    fn expected(&self) -> &ExpectedPriors {
        &self.expected
    }

    /// Asks each peer in turn for a prior of `current`; `accept(study_uid)` says whether the
    /// retrieved study now gives an eligible prior in the local store.
    fn retrieve(
        &self,
        current: &ImageHeader,
        metrics: &Metrics,
        accept: &dyn Fn(&str) -> bool,
    ) -> RemotePrior {
        let deadline = Instant::now() + self.timeout;
        let (Some(patient_id), Some(now)) = (
            current
                .identity
                .patient_id
                .as_deref()
                .map(str::trim)
                .filter(|p| !p.is_empty()),
            current_moment(current),
        ) else {
            return RemotePrior::NoneHeld;
        };
        let mut failures = Vec::new();
        for peer in &self.peers {
            match self.ask(
                peer.as_ref(),
                patient_id,
                &now,
                current,
                deadline,
                metrics,
                accept,
            ) {
                Ok(Some(study_uid)) => {
                    metrics.dicom_prior_search("retrieved");
                    return RemotePrior::Retrieved {
                        peer: peer.name().to_string(),
                        study_uid,
                    };
                }
                Ok(None) => {}
                Err(reason) => {
                    tracing::warn!("priors: {reason}");
                    failures.push(reason);
                }
            }
        }
        if failures.len() == self.peers.len() {
            metrics.dicom_prior_search("unavailable");
            RemotePrior::Unavailable(failures.join("; "))
        } else {
            metrics.dicom_prior_search("none_held");
            RemotePrior::NoneHeld
        }
    }
}

impl PriorRetrieval {
    /// One peer: the study UID of the prior retrieved from it, if any.
    #[allow(clippy::too_many_arguments)]
    fn ask(
        &self,
        peer: &dyn PriorPeer,
        patient_id: &str,
        now: &(String, String),
        current: &ImageHeader,
        deadline: Instant,
        metrics: &Metrics,
        accept: &dyn Fn(&str) -> bool,
    ) -> Result<Option<String>, String> {
        let mut query = peer.open(deadline)?;
        let found = self.search(query.as_mut(), patient_id, now, current, metrics, accept);
        query.close();
        found
    }

    fn search(
        &self,
        association: &mut dyn PeerQuery,
        patient_id: &str,
        now: &(String, String),
        current: &ImageHeader,
        metrics: &Metrics,
        accept: &dyn Fn(&str) -> bool,
    ) -> Result<Option<String>, String> {
        let current_uid = current.identity.study_instance_uid.as_deref().unwrap_or("");
        let studies = association.find(&identifier(
            "STUDY",
            &[
                (tags::PATIENT_ID, patient_id),
                (tags::STUDY_DATE, &format!("-{}", now.0)),
                (tags::STUDY_TIME, ""),
                (tags::STUDY_INSTANCE_UID, ""),
                (tags::MODALITIES_IN_STUDY, ""),
                (tags::ACCESSION_NUMBER, ""),
            ],
        ))?;
        let mut candidates: Vec<Candidate> = studies
            .iter()
            .filter(|s| text(s, tags::PATIENT_ID) == patient_id)
            .filter(|s| {
                let modalities = text(s, tags::MODALITIES_IN_STUDY);
                modalities.is_empty() || modalities.split('\\').any(|m| m == "CR" || m == "DX")
            })
            .map(|s| Candidate {
                study_uid: text(s, tags::STUDY_INSTANCE_UID),
                moment: (text(s, tags::STUDY_DATE), text(s, tags::STUDY_TIME)),
            })
            .filter(|c| {
                is_uid(&c.study_uid)
                    && c.study_uid != current_uid
                    && c.moment.0.len() == 8
                    && earlier(&c.moment, now)
            })
            .collect();
        candidates.sort_by(|a, b| b.moment.cmp(&a.moment));
        for candidate in candidates.iter().take(MAX_STUDIES) {
            let study = &candidate.study_uid;
            let contents = self.contents(association, study, current)?;
            for image in contents.images.iter().take(MAX_IMAGES) {
                let _expecting = self.expected.expect(study);
                let moved = association.fetch(study, &image.series_uid, &image.sop_uid, metrics)?;
                if moved.completed == 0 {
                    // The peer answered but sent nothing: say what it reported.
                    tracing::warn!(
                        "priors: image {} of study {study} was not sent ({} sub-operations failed, {} with warnings)",
                        image.sop_uid,
                        moved.failed,
                        moved.warning
                    );
                    continue;
                }
                if !accept(study) {
                    continue;
                }
                for report in contents.reports.iter().take(MAX_REPORTS) {
                    if let Err(e) =
                        association.fetch(study, &report.series_uid, &report.sop_uid, metrics)
                    {
                        // The image is here: a prior without its report is still a prior.
                        tracing::warn!(
                            "priors: the report {} was not retrieved: {e}",
                            report.sop_uid
                        );
                    }
                }
                return Ok(Some(study.clone()));
            }
        }
        Ok(None)
    }

    /// What a candidate study holds that radassist could retrieve.
    fn contents(
        &self,
        association: &mut dyn PeerQuery,
        study_uid: &str,
        current: &ImageHeader,
    ) -> Result<StudyContents, String> {
        let series = association.find(&identifier(
            "SERIES",
            &[
                (tags::STUDY_INSTANCE_UID, study_uid),
                (tags::SERIES_INSTANCE_UID, ""),
                (tags::MODALITY, ""),
                (tags::BODY_PART_EXAMINED, ""),
            ],
        ))?;
        let mut images = Vec::new();
        // (Content Date and Time, the report).
        let mut reports: Vec<(String, RemoteReport)> = Vec::new();
        for s in &series {
            let series_uid = text(s, tags::SERIES_INSTANCE_UID);
            let modality = text(s, tags::MODALITY);
            let body_part = text(s, tags::BODY_PART_EXAMINED);
            let radiograph = matches!(modality.as_str(), "CR" | "DX" | "")
                && (body_part.is_empty() || body_part.eq_ignore_ascii_case("CHEST"));
            if !is_uid(&series_uid) || !(radiograph || modality == "SR") {
                continue;
            }
            let instances = association.find(&identifier(
                "IMAGE",
                &[
                    (tags::STUDY_INSTANCE_UID, study_uid),
                    (tags::SERIES_INSTANCE_UID, &series_uid),
                    (tags::SOP_INSTANCE_UID, ""),
                    (tags::SOP_CLASS_UID, ""),
                    (tags::VIEW_POSITION, ""),
                    (tags::CONTENT_DATE, ""),
                    (tags::CONTENT_TIME, ""),
                ],
            ))?;
            for instance in &instances {
                match classify(instance, &series_uid, radiograph) {
                    Some(Found::Report(written, report)) => reports.push((written, report)),
                    Some(Found::Image(image)) => images.push(image),
                    None => {}
                }
            }
        }
        let rank = |view: &ProjectionView| {
            if *view == current.acquisition.view {
                0
            } else {
                match view {
                    ProjectionView::Pa => 1,
                    ProjectionView::Ap => 2,
                    _ => 3,
                }
            }
        };
        images.sort_by_key(|image| rank(&image.view));
        reports.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(StudyContents {
            images,
            reports: reports.into_iter().map(|(_, report)| report).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_study_earlier_the_same_day_is_earlier_and_one_later_is_not() {
        let now = ("20240315".to_string(), "101500".to_string());
        assert!(earlier(&("20240315".into(), "0915".into()), &now));
        assert!(earlier(&("20240301".into(), "".into()), &now));
        assert!(!earlier(&("20240315".into(), "101500.000".into()), &now));
        assert!(!earlier(&("20240316".into(), "000000".into()), &now));
    }
}

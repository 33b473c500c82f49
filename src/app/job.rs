//! One analysis job: a study becomes its work item.
//!
//! The study's first decodable frontal chest image is the current image. The prior is the
//! patient's most recent earlier study in the store (same Patient ID, chest, frontal; its
//! signed read, or the SR retrieved with it, as the prior report when there is one). When the
//! store holds none and peers are asked for priors, the PACS is searched within its deadline
//! (a [`super::prior_source::PriorSource`]); if no peer could answer, the draft says so. The [`Analyzer`] runs the findings,
//! landmarks and prior comparison; the draft is written by the report pack when one is
//! configured (given the current image, the prior image and report, and the indication from
//! the header), else by the structured renderer; the structured results stay as the evidence
//! of every sentence either way.

use super::prior_source::RemotePrior;
use super::results::{draft_results, DraftInputs, ReportSource};
use super::state::State;
use super::work_item::work_item_content;
use crate::analysis::{Analyzer, PriorInput};
use crate::dicom::{ImageHeader, ProjectionView};
use crate::draft::writer::{ReportWriter, WriterRequest};
use crate::draft::{Draft, ImageReference};
use crate::imaging::Radiograph;
use crate::placement::Verdict;
use crate::store::{decode, decode_header, now_ms, AuditRow, NewWorkItem, Store};
use std::sync::Arc;

/// The models a job uses (shared by every worker).
#[derive(Clone)]
pub struct JobModels {
    pub analyzer: Analyzer,
    pub writer: Option<ReportWriter>,
}

/// A test hook: a study whose Accession Number is the value of this variable makes its job
/// panic, so tests can check that a panicking job fails alone. Unset in production.
pub const PANIC_HOOK: &str = "RADASSIST_TEST_PANIC_ACCESSION";

fn frontal(header: &ImageHeader) -> bool {
    matches!(
        header.acquisition.view,
        ProjectionView::Pa | ProjectionView::Ap | ProjectionView::Unknown
    )
}

/// Why a study could not be analysed; the job's failure reason, which an admin reads.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("no decodable frontal chest image in the study ({0})")]
    NoFrontalImage(String),
    #[error(transparent)]
    Analysis(#[from] crate::analysis::AnalysisError),
    #[error("the report pack: {0}")]
    ReportPack(#[source] crate::inference::InferenceError),
    #[error("the draft's results: {0}")]
    Results(#[from] super::results::ResultsError),
    #[error("encoding the work item: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the analysis panicked (a defect: please report it with this study): {0}")]
    Panicked(String),
}

/// The study's first decodable frontal image, and its blob.
fn study_image(store: &dyn Store, uid: &str) -> Result<(Radiograph, String), JobError> {
    let mut reasons = Vec::new();
    for (sop, sha) in store.study_instances(uid)? {
        match decode(store.blobs(), &sha) {
            Ok(r) if frontal(&r.header) => return Ok((r, sha)),
            Ok(_) => reasons.push(format!("{sop}: not a frontal view")),
            Err(e) => reasons.push(format!("{sop}: {e}")),
        }
    }
    Err(JobError::NoFrontalImage(reasons.join("; ")))
}

/// The blob and header of the study's first frontal image (no pixel decoding).
fn study_frontal_header(store: &dyn Store, uid: &str) -> Option<(String, ImageHeader)> {
    let instances = store.study_instances(uid).ok()?;
    instances.into_iter().find_map(|(_, sha)| {
        let header = decode_header(store.blobs(), &sha).ok()?;
        frontal(&header).then_some((sha, header))
    })
}

/// The most recent earlier study of the patient, decoded, with its signed read if any.
///
/// A prior must have a Study Date no later than the current one's (crate::priors::
/// check_prior), which the catalogue knows without reading a file. The rest are read header
/// first, newest study first: once an eligible prior is found, older studies cannot be the most
/// recent, so a long history costs a few header reads, and only the chosen prior's pixels are
/// decoded.
fn find_prior(
    store: &dyn Store,
    uid: &str,
    patient_id: &str,
    current: &ImageHeader,
) -> Result<Option<(Radiograph, Option<String>)>, JobError> {
    let Some(current_date) = current
        .identity
        .study_date
        .as_deref()
        .filter(|_| !patient_id.is_empty())
    else {
        return Ok(None);
    };
    let mut candidates: Vec<(String, String, ImageHeader)> = Vec::new();
    let mut newest_eligible: Option<String> = None;
    for (other, date) in store.other_studies_of_patient(patient_id, uid)? {
        if date.is_empty() || date.as_str() > current_date {
            continue;
        }
        if newest_eligible
            .as_ref()
            .is_some_and(|newest| &date < newest)
        {
            break;
        }
        let Some((sha, header)) = study_frontal_header(store, &other) else {
            continue;
        };
        if crate::priors::check_prior(current, &header).is_ok() {
            newest_eligible.get_or_insert(date);
            candidates.push((other, sha, header));
        }
    }
    let headers: Vec<_> = candidates.iter().map(|(_, _, h)| h.clone()).collect();
    // The best prior whose pixels decode (a header can be fine and its pixels not).
    let prior = crate::priors::choose_priors(current, &headers)
        .into_iter()
        .find_map(|i| {
            let (other, sha, _) = &candidates[i];
            Some((other.clone(), decode(store.blobs(), sha).ok()?))
        });
    Ok(prior.map(|(other, radiograph)| {
        // Its signed read here, else the report retrieved with it from the PACS.
        let report = store
            .work_item(&other)
            .ok()
            .and_then(|row| row.final_read.map(|read| read.text))
            .or_else(|| store.prior_report(&other).ok().flatten());
        (radiograph, report)
    }))
}

/// Whether study `other` (just retrieved) holds a frontal image that is a prior of `current`.
fn gives_prior(store: &dyn Store, other: &str, current: &ImageHeader) -> bool {
    study_frontal_header(store, other)
        .is_some_and(|(_, header)| crate::priors::check_prior(current, &header).is_ok())
}

/// The prior of study `uid`: the store's, else one retrieved from the PACS when a prior source
/// is configured; and when no peer could be asked, who was asked and why it failed.
#[allow(clippy::type_complexity)]
fn prior_of(
    state: &State,
    uid: &str,
    patient_id: &str,
    current: &ImageHeader,
) -> Result<
    (
        Option<(Radiograph, Option<String>)>,
        Option<(Vec<String>, String)>,
    ),
    JobError,
> {
    let store = state.store.as_ref();
    let prior = find_prior(store, uid, patient_id, current)?;
    let (None, Some(remote)) = (&prior, &state.prior_source) else {
        return Ok((prior, None));
    };
    match remote.retrieve(current, &state.metrics, &|other| {
        gives_prior(store, other, current)
    }) {
        RemotePrior::Retrieved { peer, study_uid } => {
            tracing::info!("priors: {study_uid} retrieved from {peer} for {uid}");
            let _ = store.audit(&AuditRow {
                at_ms: now_ms(),
                who: peer,
                role: "dicom peer".into(),
                action: "retrieved prior".into(),
                resource: format!("studies/{study_uid} for studies/{uid}"),
                peer: String::new(),
            });
            Ok((find_prior(store, uid, patient_id, current)?, None))
        }
        RemotePrior::NoneHeld => Ok((None, None)),
        RemotePrior::Unavailable(reason) => Ok((None, Some((remote.peers(), reason)))),
    }
}

/// Analyses study `uid`, drafts its report, and builds the draft's SR for each peer that
/// takes results.
pub fn analyze_study(
    state: &State,
    models: &JobModels,
    uid: &str,
) -> Result<NewWorkItem, JobError> {
    let store = state.store.as_ref();
    let study = store.study(uid)?;
    if std::env::var(PANIC_HOOK).is_ok_and(|a| !a.is_empty() && a == study.accession_number) {
        panic!("test hook {PANIC_HOOK}: this study's job panics");
    }
    let (current, source_sha256) = study_image(store, uid)?;
    let current = Arc::new(current);
    let (prior, prior_unavailable) = prior_of(state, uid, &study.patient_id, &current.header)?;
    let prior = prior.map(|(radiograph, report)| (Arc::new(radiograph), report));
    let inputs: Vec<PriorInput> = prior
        .iter()
        .map(|(radiograph, report)| PriorInput {
            radiograph,
            report: report.as_deref(),
        })
        .collect();
    let analysis = models.analyzer.analyze(&current, &inputs)?;
    let mut draft = Draft::from_analysis(&analysis, vec![image_reference(&current)]);
    if let Some(writer) = &models.writer {
        let request = WriterRequest {
            image: current.clone(),
            indication: current
                .header
                .acquisition
                .indication
                .clone()
                .unwrap_or_default(),
            // The pack's prior slot takes an image with its signed report.
            prior: prior
                .as_ref()
                .and_then(|(image, report)| Some((image.clone(), report.clone()?))),
        };
        let generated = writer.write(request).map_err(JobError::ReportPack)?;
        draft = draft.with_generated_text(&generated.text, writer.model());
    }
    if let Some((peers, reason)) = prior_unavailable {
        draft = draft.with_prior_unavailable(peers, &reason);
    }
    let patient_name = current.header.identity.patient_name.as_deref();
    let content = work_item_content(&study, patient_name.unwrap_or_default(), &draft, &analysis);
    let (critical, priority) = (draft.critical, priority(&draft, &analysis));
    let source = ReportSource {
        draft,
        source_sha256,
        priors: prior.iter().map(|(p, _)| image_reference(p)).collect(),
    };
    let results = draft_results(
        store,
        &state.result_peers,
        &DraftInputs {
            source: &source,
            analysis: &analysis,
            film: Some(&current),
        },
    )?;
    let mut models_used = analysis.models.clone();
    models_used.extend(models.writer.as_ref().map(|w| w.model().clone()));
    Ok(NewWorkItem {
        critical,
        priority,
        content,
        analysis_json: serde_json::to_string(&analysis)?,
        model_version: models_used
            .iter()
            .map(|m| format!("{}:{}@{}", m.task, m.name, m.version))
            .collect::<Vec<_>>()
            .join(","),
        report_json: serde_json::to_string(&source)?,
        results,
    })
}

/// The worklist priority: critical results first (100), then malpositioned devices (50).
fn priority(draft: &Draft, analysis: &crate::analysis::StudyAnalysis) -> i64 {
    let malpositioned = analysis
        .current
        .placement
        .devices
        .iter()
        .any(|d| d.verdict == Verdict::Malpositioned);
    if draft.critical {
        100
    } else if malpositioned {
        50
    } else {
        10
    }
}

/// How an SR refers to a radiograph.
fn image_reference(radiograph: &Radiograph) -> ImageReference {
    let id = &radiograph.header.identity;
    ImageReference {
        sop_class_uid: id.sop_class_uid.clone().unwrap_or_default(),
        sop_instance_uid: id.sop_instance_uid.clone().unwrap_or_default(),
        series_instance_uid: id.series_instance_uid.clone().unwrap_or_default(),
        study_instance_uid: id.study_instance_uid.clone().unwrap_or_default(),
    }
}

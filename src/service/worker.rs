//! The analysis worker: takes queued studies from the store and turns each into its one
//! current work item.
//!
//! A worker is a thread with its own models (ONNX Runtime sessions). For a study it decodes
//! the first frontal chest image, finds the patient's earlier studies in the store (same
//! Patient ID, earlier, chest, frontal) and takes the most recent as the prior (with its signed
//! read as the prior report, when there is one), runs the analysis and the draft, and commits
//! the work item together with the job's completion. A failure is recorded with its reason and
//! retried up to `max_attempts`; a crash leaves the job running, and the next start queues it
//! again.

use super::proto::{self, WorkItem};
use super::server::{Event, ModelStatus, State};
use super::store::WorkItemRow;
use crate::analysis::{Analyzer, PriorInput, StudyAnalysis};
use crate::config::Config;
use crate::dicom::{self, DecodeLimits, ImageHeader, ProjectionView};
use crate::draft::{Draft, Evidence, ImageReference};
use crate::imaging::Radiograph;
use crate::placement::Verdict;
use prost::Message;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs until `stop` is set (finishing the job in hand).
pub fn run(state: Arc<State>, config: Config, stop: Arc<AtomicBool>) {
    let settings = config.inference.session_settings();
    let packs = config.analysis_packs();
    let mut analyzer = match Analyzer::new(
        &packs,
        &settings,
        config.placement.clone(),
        config.analysis.change,
    ) {
        Ok(analyzer) => {
            let provider = format!("{:?} (configured)", settings.provider);
            *state.models.write().unwrap_or_else(|p| p.into_inner()) = analyzer
                .models()
                .iter()
                .map(|m| ModelStatus {
                    name: m.name.clone(),
                    task: m.task.clone(),
                    version: m.version.clone(),
                    test_model: m.test_model,
                    provider: provider.clone(),
                    healthy: true,
                    error: String::new(),
                })
                .collect();
            Some(analyzer)
        }
        Err(e) => {
            tracing::error!("the analysis models did not load: {e}");
            *state.models.write().unwrap_or_else(|p| p.into_inner()) = vec![ModelStatus {
                name: "analysis".into(),
                task: String::new(),
                version: String::new(),
                test_model: false,
                provider: String::new(),
                healthy: false,
                error: e.to_string(),
            }];
            None
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let uid = match state.store.take_job() {
            Ok(Some((uid, waited_ms))) => {
                state
                    .metrics
                    .queue_wait_ms_total
                    .fetch_add(waited_ms.max(0) as u64, Ordering::Relaxed);
                uid
            }
            Ok(None) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => {
                tracing::error!("taking a job: {e}");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let _ = state.events.send(Event::Study(uid.clone()));
        let started = Instant::now();
        let outcome = match analyzer.as_mut() {
            Some(analyzer) => analyze_study(&state, analyzer, &uid),
            None => Err("the analysis models did not load: see ModelService.ListModels".into()),
        };
        let ms = started.elapsed().as_millis() as u64;
        if let Some(analyzer) = analyzer.as_ref() {
            *state
                .metrics
                .model_compute
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = analyzer.compute_time().clone();
        }
        let m = &state.metrics;
        m.job_ms_total.fetch_add(ms, Ordering::Relaxed);
        m.job_ms_last.store(ms, Ordering::Relaxed);
        match outcome.and_then(|item| {
            state
                .store
                .finish_job(&uid, &item)
                .map(|_| item)
                .map_err(|e| e.to_string())
        }) {
            Ok(item) => {
                m.jobs_done.fetch_add(1, Ordering::Relaxed);
                tracing::info!(ms, critical = item.critical, "draft ready");
                let _ = state.events.send(Event::Study(uid.clone()));
                if item.critical {
                    let _ = state.events.send(Event::CriticalItem(uid));
                }
            }
            Err(reason) => {
                m.jobs_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("analysis failed: {reason}");
                if let Err(e) = state
                    .store
                    .fail_job(&uid, &reason, config.service.max_attempts)
                {
                    tracing::error!("recording a failed job: {e}");
                }
                let _ = state.events.send(Event::Study(uid));
            }
        }
    }
}

fn frontal(header: &ImageHeader) -> bool {
    matches!(
        header.acquisition.view,
        ProjectionView::Pa | ProjectionView::Ap | ProjectionView::Unknown
    )
}

/// The study's first decodable frontal image.
fn study_image(state: &State, uid: &str) -> Result<Radiograph, String> {
    let mut reasons = Vec::new();
    for (sop, sha) in state
        .store
        .study_instances(uid)
        .map_err(|e| e.to_string())?
    {
        match dicom::read_file(&state.store.blob_path(&sha), &DecodeLimits::default()) {
            Ok(r) if frontal(&r.header) => return Ok(r),
            Ok(_) => reasons.push(format!("{sop}: not a frontal view")),
            Err(e) => reasons.push(format!("{sop}: {e}")),
        }
    }
    Err(format!(
        "no decodable frontal chest image in the study ({})",
        reasons.join("; ")
    ))
}

/// The header of the study's first frontal image, and its blob (no pixel decoding).
fn study_frontal_header(state: &State, uid: &str) -> Option<(PathBuf, ImageHeader)> {
    let instances = state.store.study_instances(uid).ok()?;
    instances.into_iter().find_map(|(_, sha)| {
        let path = state.store.blob_path(&sha);
        let header = dicom::read_header(&path, &DecodeLimits::default()).ok()?;
        frontal(&header).then_some((path, header))
    })
}

fn analyze_study(state: &State, analyzer: &mut Analyzer, uid: &str) -> Result<WorkItemRow, String> {
    let study = state.store.study(uid).map_err(|e| e.to_string())?;
    let current = study_image(state, uid)?;
    // The most recent earlier study of the patient, with its signed read when there is one.
    // A prior must have a Study Date no later than the current one's (crate::priors::
    // check_prior), which the catalog knows without reading a file. The rest are read header
    // first, newest study first: once an eligible prior is found, older studies cannot be the
    // most recent, so a long history costs a few header reads, and only the chosen prior's
    // pixels are decoded.
    let mut candidates: Vec<(String, PathBuf, ImageHeader)> = Vec::new();
    let current_date =
        (current.header.identity.study_date.as_deref()).filter(|_| !study.patient_id.is_empty());
    if let Some(current_date) = current_date {
        let mut newest_eligible: Option<String> = None;
        for (other, date) in state
            .store
            .other_studies_of_patient(&study.patient_id, uid)
            .map_err(|e| e.to_string())?
        {
            if date.is_empty() || date.as_str() > current_date {
                continue;
            }
            if newest_eligible
                .as_ref()
                .is_some_and(|newest| &date < newest)
            {
                break;
            }
            let Some((path, header)) = study_frontal_header(state, &other) else {
                continue;
            };
            if crate::priors::check_prior(&current.header, &header).is_ok() {
                newest_eligible.get_or_insert(date);
                candidates.push((other, path, header));
            }
        }
    }
    let headers: Vec<_> = candidates.iter().map(|(_, _, h)| h.clone()).collect();
    // The best prior whose pixels decode (a header can be fine and its pixels not).
    let prior = crate::priors::choose_priors(&current.header, &headers)
        .into_iter()
        .find_map(|i| {
            let (other, path, _) = &candidates[i];
            let radiograph = dicom::read_file(path, &DecodeLimits::default()).ok()?;
            Some((other, radiograph))
        });
    let prior_report = prior.as_ref().and_then(|(other, _)| {
        let row = state.store.work_item(other).ok()?;
        proto::FinalRead::decode(row.final_read?.as_slice())
            .ok()
            .map(|r| r.text)
    });
    let inputs: Vec<PriorInput> = prior
        .as_ref()
        .map(|(_, radiograph)| PriorInput {
            radiograph,
            report: prior_report.as_deref(),
        })
        .into_iter()
        .collect();
    let analysis = analyzer
        .analyze(&current, &inputs)
        .map_err(|e| e.to_string())?;
    let id = &current.header.identity;
    let reference = ImageReference {
        sop_class_uid: id.sop_class_uid.clone().unwrap_or_default(),
        sop_instance_uid: id.sop_instance_uid.clone().unwrap_or_default(),
        series_instance_uid: id.series_instance_uid.clone().unwrap_or_default(),
        study_instance_uid: uid.to_string(),
    };
    let draft = Draft::from_analysis(&analysis, vec![reference]);
    let template = work_item_template(uid, &study, &draft, &analysis);
    let critical = draft.critical;
    let malpositioned = analysis
        .current
        .placement
        .devices
        .iter()
        .any(|d| d.verdict == Verdict::Malpositioned);
    let priority = if critical {
        100
    } else if malpositioned {
        50
    } else {
        10
    };
    Ok(WorkItemRow {
        study_instance_uid: uid.to_string(),
        status: "UNCLAIMED".into(),
        critical,
        priority,
        claimed_by: None,
        created_at: 0,
        template: template.encode_to_vec(),
        analysis_json: serde_json::to_string(&analysis).map_err(|e| e.to_string())?,
        model_version: analysis
            .models
            .iter()
            .map(|m| format!("{}:{}@{}", m.task, m.name, m.version))
            .collect::<Vec<_>>()
            .join(","),
        final_read: None,
        signed_at: None,
    })
}

fn evidence(e: &Evidence) -> proto::Evidence {
    let (kind, description, value, unit) = match e {
        Evidence::ModelOutput {
            model,
            observation,
            probability,
            threshold,
        } => (
            "model_output",
            format!("{model}: {observation} {probability:.2} (threshold {threshold:.2})"),
            f64::from(*probability),
            "probability".to_string(),
        ),
        Evidence::Measurement {
            name,
            value,
            unit,
            verdict,
            ..
        } => (
            "measurement",
            format!("{name} {value:.1} ({})", verdict.as_str()),
            *value,
            format!("{unit:?}").to_lowercase(),
        ),
        Evidence::Landmark {
            model,
            name,
            x,
            y,
            confidence,
        } => (
            "landmark",
            format!("{model}: {name} at ({x:.1}, {y:.1}) px, confidence {confidence:.2}"),
            f64::from(*confidence),
            "confidence".to_string(),
        ),
        Evidence::Comparison {
            prior_study_date,
            subject,
            change,
            current_value,
            ..
        } => (
            "comparison",
            format!(
                "{subject}: {change} since {}",
                prior_study_date.as_deref().unwrap_or("the prior")
            ),
            current_value.unwrap_or(f64::NAN),
            String::new(),
        ),
    };
    proto::Evidence {
        kind: kind.into(),
        description,
        value,
        unit,
    }
}

fn statements(s: &[crate::draft::Statement]) -> Vec<proto::Statement> {
    s.iter()
        .map(|s| proto::Statement {
            text: s.text.clone(),
            critical: s.critical,
            evidence: s.evidence.iter().map(evidence).collect(),
        })
        .collect()
}

fn work_item_template(
    uid: &str,
    study: &super::store::StudyRow,
    draft: &Draft,
    analysis: &StudyAnalysis,
) -> WorkItem {
    WorkItem {
        name: format!("workItems/{uid}"),
        study: format!("studies/{uid}"),
        critical: draft.critical,
        accession_number: study.accession_number.clone(),
        patient_id: study.patient_id.clone(),
        study_date: study.study_date.clone(),
        draft: Some(proto::Draft {
            text: draft.text.clone(),
            author: draft.author.clone(),
            preliminary: true,
            findings: statements(&draft.findings),
            impression: statements(&draft.impression),
            models: draft
                .models
                .iter()
                .map(|m| format!("{} {} {}", m.task, m.name, m.version))
                .collect(),
            warning: draft.warning.clone().unwrap_or_default(),
        }),
        devices: analysis
            .current
            .placement
            .devices
            .iter()
            .map(|d| proto::DeviceCheck {
                device: serde_json::to_value(d.device)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                verdict: serde_json::to_value(d.verdict)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                critical: d.critical,
                statement: d.statement.clone(),
                measurements: d
                    .measurements
                    .iter()
                    .map(|m| proto::Measurement {
                        name: m.name.clone(),
                        value: m.value,
                        unit: format!("{:?}", m.unit).to_lowercase(),
                    })
                    .collect(),
            })
            .collect(),
        ..Default::default()
    }
}

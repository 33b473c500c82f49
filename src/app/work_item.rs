//! A study's work item as the analysis makes it: the study's fields, the draft with the
//! evidence of each sentence in words, and the device checks ([`WorkItemContent`], what the
//! store keeps and every way in shows).

use crate::analysis::StudyAnalysis;
use crate::draft::{Draft, Evidence};
use crate::store::documents::{
    finite, DeviceCheck, DraftContent, EvidenceKind, EvidenceNote, MeasurementNote, Statement,
    WorkItemContent,
};
use crate::store::StudyRow;

/// A piece of evidence in words, with the number it rests on.
pub fn evidence_note(e: &Evidence) -> EvidenceNote {
    let (kind, description, value, unit) = match e {
        Evidence::ModelOutput {
            model,
            observation,
            probability,
            threshold,
        } => (
            EvidenceKind::ModelOutput,
            format!("{model}: {observation} {probability:.2} (threshold {threshold:.2})"),
            finite(f64::from(*probability)),
            "probability".to_string(),
        ),
        Evidence::Measurement {
            name,
            value,
            unit,
            verdict,
            ..
        } => (
            EvidenceKind::Measurement,
            format!("{name} {value:.1} ({})", verdict.as_str()),
            finite(*value),
            unit.symbol().to_string(),
        ),
        Evidence::Landmark {
            model,
            name,
            x,
            y,
            confidence,
            derivation,
        } => (
            EvidenceKind::Landmark,
            match derivation {
                Some(how) => format!(
                    "{model}: {name} at ({x:.1}, {y:.1}) px, confidence {confidence:.2}: {how}"
                ),
                None => {
                    format!("{model}: {name} at ({x:.1}, {y:.1}) px, confidence {confidence:.2}")
                }
            },
            finite(f64::from(*confidence)),
            "confidence".to_string(),
        ),
        Evidence::Comparison {
            prior_study_date,
            subject,
            change,
            current_value,
            ..
        } => (
            EvidenceKind::Comparison,
            format!(
                "{subject}: {change} since {}",
                prior_study_date.as_deref().unwrap_or("the prior")
            ),
            current_value.and_then(finite),
            String::new(),
        ),
        Evidence::PriorSearch { peers, reason } => (
            EvidenceKind::PriorSearch,
            format!("no prior retrieved from {}: {reason}", peers.join(", ")),
            None,
            String::new(),
        ),
    };
    EvidenceNote {
        kind,
        description,
        value,
        unit,
    }
}

fn statements(s: &[crate::draft::Statement]) -> Vec<Statement> {
    s.iter()
        .map(|s| Statement {
            text: s.text.clone(),
            critical: s.critical,
            evidence: s.evidence.iter().map(evidence_note).collect(),
        })
        .collect()
}

/// The work item the worker stores for a study.
pub fn work_item_content(
    study: &StudyRow,
    patient_name: &str,
    draft: &Draft,
    analysis: &StudyAnalysis,
) -> WorkItemContent {
    WorkItemContent {
        patient_name: patient_name.to_string(),
        patient_id: study.patient_id.clone(),
        accession_number: study.accession_number.clone(),
        study_date: study.study_date.clone(),
        draft: DraftContent {
            text: draft.text.clone(),
            author: draft.author.clone(),
            findings: statements(&draft.findings),
            impression: statements(&draft.impression),
            models: draft
                .models
                .iter()
                .map(|m| format!("{} {} {}", m.task, m.name, m.version))
                .collect(),
            warning: draft.warning.clone(),
        },
        devices: analysis
            .current
            .placement
            .devices
            .iter()
            .map(|d| DeviceCheck {
                device: d.device,
                verdict: d.verdict,
                critical: d.critical,
                statement: d.statement.clone(),
                measurements: d
                    .measurements
                    .iter()
                    .map(|m| MeasurementNote {
                        name: m.name.clone(),
                        value: finite(m.value),
                        unit: m.unit.symbol().to_string(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

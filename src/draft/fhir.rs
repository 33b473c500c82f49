//! The report as a FHIR R4 DiagnosticReport (JSON), with its Observations contained.
//!
//! status `preliminary` for a draft, `final` for a signed read (with the radiologist as
//! performer and results interpreter); category RAD; code LOINC 18748-4 (Diagnostic imaging
//! study); the imaging study by its DICOM Study Instance UID; `conclusion` is the Impression and
//! `presentedForm` the whole text (base64, text/plain). Each finding the draft states and each
//! device seen is an Observation (`result`): findings coded in SNOMED CT where radassist knows a
//! code for certain (pneumothorax, pleural effusion, cardiomegaly, pulmonary edema, pneumonia,
//! atelectasis, consolidation, fracture; the others by text), valued present / absent /
//! indeterminate with the model's probability as a component; device positions as a
//! Quantity in mm (UCUM) with the verdict as interpretation, the device coded in SNOMED CT where
//! known. Patient identity is carried as an identifier reference only.

use super::{split_sections, Draft, FinalRead};
use crate::analysis::thresholds::Presence;
use crate::analysis::StudyAnalysis;
use crate::placement::geometry::LengthUnit;
use crate::placement::{Device, Verdict};
use base64::Engine;
use serde_json::{json, Value};

const SNOMED: &str = "http://snomed.info/sct";
const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const INTERPRETATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";

fn finding_code(observation: &str) -> Option<(&'static str, &'static str)> {
    Some(match observation {
        "Pneumothorax" => ("36118008", "Pneumothorax"),
        "Pleural Effusion" => ("60046008", "Pleural effusion"),
        "Cardiomegaly" => ("8186001", "Cardiomegaly"),
        "Edema" => ("19242006", "Pulmonary edema"),
        "Pneumonia" => ("233604007", "Pneumonia"),
        "Atelectasis" => ("46621007", "Atelectasis"),
        "Consolidation" => ("95436008", "Lung consolidation"),
        "Fracture" => ("125605004", "Fracture of bone"),
        _ => return None,
    })
}

fn device_code(device: Device) -> Option<(&'static str, &'static str)> {
    Some(match device {
        Device::EndotrachealTube => ("26412008", "Endotracheal tube"),
        Device::EnteralTube => ("17102003", "Nasogastric tube"),
        Device::CentralVenousCatheter => ("52124006", "Central venous catheter"),
        Device::ChestTube => return None,
    })
}

fn concept(coding: Option<(&str, &str)>, system: &str, text: &str) -> Value {
    match coding {
        Some((code, display)) => {
            json!({ "coding": [{ "system": system, "code": code, "display": display }], "text": text })
        }
        None => json!({ "text": text }),
    }
}

/// The DiagnosticReport of `draft` (or of the signed `read`) for `study`.
pub fn diagnostic_report(
    draft: &Draft,
    signed: Option<&FinalRead>,
    study: &StudyAnalysis,
    patient_id: Option<&str>,
) -> Value {
    let status = if signed.is_some() {
        "final"
    } else {
        "preliminary"
    };
    let text = signed.map_or(draft.text.as_str(), |r| r.text.as_str());
    let (_, impression) = split_sections(text);
    let mut contained = Vec::new();
    let category = json!([{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging", "display": "Imaging" }] }]);
    let current = &study.current;
    let findings_model = study.models.iter().find(|m| m.task == "findings");
    let method = |what: &str| json!({ "text": what });
    for f in &current.findings {
        if f.label == "No Finding" || f.label == "Support Devices" {
            continue;
        }
        let (value, code) = match study.thresholds.presence(f) {
            Presence::Present => ("Present", "52101004"),
            Presence::Absent => ("Absent", "2667000"),
            Presence::Indeterminate => ("Indeterminate", "82334004"),
        };
        // Only what the draft states: present, or a pertinent negative.
        let stated = draft.findings.iter().any(|s| s.evidence.iter().any(|e| matches!(e, super::Evidence::ModelOutput { observation, .. } if *observation == f.label)));
        if !stated {
            continue;
        }
        let id = format!("finding-{}", contained.len() + 1);
        contained.push(json!({
            "resourceType": "Observation",
            "id": id,
            "status": status,
            "category": category,
            "code": concept(finding_code(&f.label), SNOMED, &f.label),
            "valueCodeableConcept": { "coding": [{ "system": SNOMED, "code": code, "display": value }], "text": value.to_lowercase() },
            "component": [{
                "code": { "text": "model probability" },
                "valueQuantity": { "value": (f64::from(f.probability) * 1e4).round() / 1e4, "unit": "probability", "system": UCUM, "code": "1" }
            }],
            "method": method(&findings_model.map_or("findings model".into(), |m| format!("{} {} (findings model{})", m.name, m.version, if m.test_model { ", test model, not for clinical use" } else { "" }))),
        }));
    }
    for d in current
        .placement
        .devices
        .iter()
        .filter(|d| d.verdict != Verdict::Absent)
    {
        let id = format!("device-{}", contained.len() + 1);
        let interpretation = match (d.verdict, d.critical) {
            (_, true) => ("AA", "Critical abnormal"),
            (Verdict::Appropriate, _) => ("N", "Normal"),
            (Verdict::Malpositioned | Verdict::Borderline, _) => ("A", "Abnormal"),
            _ => ("IND", "Indeterminate"),
        };
        let mut observation = json!({
            "resourceType": "Observation",
            "id": id,
            "status": status,
            "category": category,
            "code": concept(device_code(d.device), SNOMED, &format!("{} tip position", d.device.title())),
            "interpretation": [{ "coding": [{ "system": INTERPRETATION, "code": interpretation.0, "display": interpretation.1 }], "text": d.verdict.as_str() }],
            "note": [{ "text": d.statement }],
        });
        if let Some(m) = d.measurements.first() {
            let (unit, code) = match m.unit {
                LengthUnit::Mm => ("mm", "mm"),
                LengthUnit::Px => ("pixels (uncalibrated)", "{pixels}"),
            };
            observation["valueQuantity"] = json!({ "value": (m.value * 10.0).round() / 10.0, "unit": unit, "system": UCUM, "code": code });
            observation["component"] = Value::Array(
                d.measurements
                    .iter()
                    .map(|m| json!({ "code": { "text": m.name.replace('_', " ") }, "valueQuantity": { "value": (m.value * 10.0).round() / 10.0, "unit": unit, "system": UCUM, "code": code } }))
                    .collect(),
            );
        } else {
            observation["valueString"] = json!(d.verdict.as_str());
        }
        contained.push(observation);
    }
    let results: Vec<Value> = contained
        .iter()
        .map(|o| json!({ "reference": format!("#{}", o["id"].as_str().unwrap()) }))
        .collect();
    let mut report = json!({
        "resourceType": "DiagnosticReport",
        "id": uuid::Uuid::new_v4().to_string(),
        "status": status,
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD", "display": "Radiology" }] }],
        "code": { "coding": [{ "system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study" }], "text": "Chest radiograph report" },
        "issued": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "conclusion": impression,
        "presentedForm": [{
            "contentType": "text/plain; charset=utf-8",
            "language": "en-US",
            "data": base64::engine::general_purpose::STANDARD.encode(text),
            "title": if signed.is_some() { "Chest radiograph report (final)" } else { "Chest radiograph report (preliminary draft)" },
        }],
    });
    if !contained.is_empty() {
        report["contained"] = Value::Array(contained);
        report["result"] = Value::Array(results);
    }
    if let Some(id) = patient_id {
        report["subject"] = json!({ "identifier": { "value": id }, "type": "Patient" });
    }
    if let Some(date) = &current.image.study_date {
        report["effectiveDateTime"] = json!(date);
    }
    if let Some(uid) = &current.image.study_instance_uid {
        report["imagingStudy"] = json!([{ "identifier": { "system": "urn:dicom:uid", "value": format!("urn:oid:{uid}") }, "type": "ImagingStudy" }]);
    }
    match signed {
        Some(read) => {
            report["performer"] = json!([{ "display": read.radiologist }]);
            report["resultsInterpreter"] = json!([{ "display": read.radiologist }]);
        }
        None => {
            report["performer"] = json!([{ "display": format!("radassist ({}; preliminary, not read by a radiologist)", draft.author) }]);
        }
    }
    if let Some(warning) = &draft.warning {
        report["text"] = json!({ "status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>{}</p></div>", warning) });
    }
    report
}

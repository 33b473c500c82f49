//! The report as DICOM Structured Reporting: a Comprehensive SR following TID 2000 (Basic
//! Diagnostic Imaging Report).
//!
//! The document lands in the original study: patient and study attributes are copied from the
//! source image, and the source image is referenced (Current Requested Procedure Evidence, and
//! IMAGE items under the findings it supports; priors under Pertinent Other Evidence). The
//! tree is: the report container (LOINC 18748-4) with its language (TID 1204) and observer
//! context (TID 1001/1002: the device for a draft, the radiologist for a signed read), a
//! Findings container (DCM 121070) of TEXT findings, each INFERRED FROM the NUM measurements
//! (UCUM mm) and image it rests on, and an Impression container (DCM 121073). A draft is
//! Completion Flag PARTIAL, Verification Flag UNVERIFIED, Preliminary Flag PRELIMINARY; a
//! signed read is COMPLETE, VERIFIED (with the Verifying Observer) and FINAL; an amended read
//! is one too, naming the SR it replaces in its Predecessor Documents Sequence. The models are
//! recorded as Contributing Equipment, and as the device observer.

use super::codes::{self, Code};
use super::content::{
    code_item, container, num_item, person_item, source_of_measurement, text_item, uid_item,
    with_children, Relationship,
};
use super::dataset::{
    self, evidence_sequence, sequence, text, Created, Item, NewInstance, ObjectError,
    IMPLEMENTATION_CLASS_UID,
};
use super::{split_sections, Draft, Evidence, FinalRead, ImageReference, Statement};
use crate::dicom::DicomInstance;
use crate::placement::geometry::LengthUnit;
use dicom_core::VR;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use std::path::Path;

pub const COMPREHENSIVE_SR: &str = "1.2.840.10008.5.1.4.1.1.88.33";
/// The series number of the report SRs radassist makes.
pub const SERIES_NUMBER: u32 = 9001;

/// A finding sentence with what it was inferred from.
fn finding_item(concept: &Code, statement: &Statement, image: Option<&ImageReference>) -> Item {
    let sentence = text_item(Relationship::Contains, concept, &statement.text);
    let mut children = Vec::new();
    for e in &statement.evidence {
        if let Evidence::Measurement {
            name, value, unit, ..
        } = e
        {
            let units = match unit {
                LengthUnit::Mm => &codes::MILLIMETER,
                LengthUnit::Px => &codes::PIXELS,
            };
            let num = num_item(Relationship::InferredFrom, &codes::DISTANCE, *value, units);
            let what = text_item(
                Relationship::HasConceptMod,
                &codes::EQUIVALENT_MEANING,
                &name.replace('_', " "),
            );
            children.push(with_children(num, vec![what]));
        }
    }
    if let (Some(image), false) = (image, children.is_empty()) {
        children.push(source_of_measurement(image));
    }
    with_children(sentence, children)
}

fn plain_statements(text: &str) -> Vec<Statement> {
    crate::sentences::split_sentences(text)
        .into_iter()
        .map(|text| Statement {
            text,
            evidence: vec![],
            critical: false,
        })
        .collect()
}

/// Builds the SR of `draft` (or, with `signed`, of the radiologist's final read) in the study
/// of `source`, referencing `priors` as pertinent other evidence: one function per module of
/// the Comprehensive SR IOD (PS3.3 A.35.3), and the content tree (TID 2000).
pub fn build(
    draft: &Draft,
    signed: Option<&FinalRead>,
    source: &DicomInstance,
    priors: &[ImageReference],
) -> Result<dicom_object::DefaultDicomObject, ObjectError> {
    let created = Created::now();
    let signed = signed.map(|read| with_organization(read, source));
    let signed = signed.as_ref();
    let mut sr = dataset::new_object(
        source,
        &NewInstance {
            sop_class_uid: COMPREHENSIVE_SR,
            modality: "SR",
            series_number: SERIES_NUMBER,
            series_description: "radassist report",
        },
        &created,
    )?;
    put_sr_document(&mut sr, &created, signed, &draft.source_images);
    if !priors.is_empty() {
        sr.put(evidence_sequence(
            tags::PERTINENT_OTHER_EVIDENCE_SEQUENCE,
            priors,
        ));
    }
    dataset::put_contributing_equipment(
        &mut sr,
        &draft.models,
        &format!("report drafted by {}", draft.author),
        &created,
    );
    for element in content_tree(draft, signed).into_iter() {
        sr.put(element);
    }
    dataset::with_meta(sr)
}

/// The read with its Verifying Organization (Type 1): the one it was signed for (the
/// configuration's `organization`, or `--organization`), else the image's Institution Name,
/// else "not recorded".
fn with_organization(read: &FinalRead, source: &DicomInstance) -> FinalRead {
    let mut read = read.clone();
    if read.organization.trim().is_empty() {
        read.organization = crate::dicom::Attributes(source)
            .text(tags::INSTITUTION_NAME)
            .unwrap_or_else(|| "not recorded".into());
    }
    read
}

/// SR Document General and SR Document Content's date and time: completion, verification (who
/// signed, for a final read; none signed is a preliminary draft), the SR an amendment replaces,
/// and the images it rests on (`evidence`).
pub(super) fn put_sr_document(
    sr: &mut InMemDicomObject,
    created: &Created,
    signed: Option<&FinalRead>,
    evidence: &[ImageReference],
) {
    sr.put(text(tags::CONTENT_DATE, VR::DA, &created.date));
    sr.put(text(tags::CONTENT_TIME, VR::TM, &created.time));
    sr.put(sequence(
        tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE,
        vec![],
    ));
    sr.put(sequence(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, vec![]));
    let (completion, verification, preliminary) = match signed {
        Some(_) => ("COMPLETE", "VERIFIED", "FINAL"),
        None => ("PARTIAL", "UNVERIFIED", "PRELIMINARY"),
    };
    sr.put(text(tags::COMPLETION_FLAG, VR::CS, completion));
    sr.put(text(tags::VERIFICATION_FLAG, VR::CS, verification));
    sr.put(text(tags::PRELIMINARY_FLAG, VR::CS, preliminary));
    if let Some(read) = signed {
        sr.put(sequence(
            tags::VERIFYING_OBSERVER_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([
                text(tags::VERIFYING_OBSERVER_NAME, VR::PN, &read.radiologist),
                sequence(
                    tags::VERIFYING_OBSERVER_IDENTIFICATION_CODE_SEQUENCE,
                    vec![],
                ),
                text(tags::VERIFYING_ORGANIZATION, VR::LO, &read.organization),
                text(tags::VERIFICATION_DATE_TIME, VR::DT, &read.signed_at),
            ])],
        ));
    }
    // An amended read names the SR it replaces (PS3.3 C.17.2.3: Predecessor Documents).
    if let Some(previous) = signed.and_then(|r| r.replaces.as_ref()) {
        sr.put(evidence_sequence(
            tags::PREDECESSOR_DOCUMENTS_SEQUENCE,
            std::slice::from_ref(previous),
        ));
    }
    // Type 1C: present when there is evidence (a draft made without its film has none).
    if !evidence.is_empty() {
        sr.put(evidence_sequence(
            tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
            evidence,
        ));
    }
}

/// The content tree (TID 2000): language, observer context, FINDINGS and IMPRESSION.
fn content_tree(draft: &Draft, signed: Option<&FinalRead>) -> InMemDicomObject {
    let mut content = vec![code_item(
        Relationship::HasConceptMod,
        &codes::LANGUAGE,
        &codes::ENGLISH_US,
    )];
    content.extend(observer_context(draft, signed));
    let (findings, impression) = sections(draft, signed);
    let image = draft.source_images.first();
    for (section, statements, each) in [
        (&codes::FINDINGS, &findings, &codes::FINDING),
        (&codes::IMPRESSION, &impression, &codes::IMPRESSION),
    ] {
        if !statements.is_empty() {
            content.push(container(
                Some(Relationship::Contains),
                section,
                None,
                statements
                    .iter()
                    .map(|s| finding_item(each, s, image))
                    .collect(),
            ));
        }
    }
    container(
        None,
        &codes::DIAGNOSTIC_IMAGING_REPORT,
        Some("2000"),
        content,
    )
}

/// The observer: the radiologist who signed, or radassist as the device that drafted.
fn observer_context(draft: &Draft, signed: Option<&FinalRead>) -> Vec<InMemDicomObject> {
    let context = Relationship::HasObsContext;
    match signed {
        Some(read) => vec![
            code_item(context, &codes::OBSERVER_TYPE, &codes::PERSON),
            person_item(context, &codes::PERSON_OBSERVER_NAME, &read.radiologist),
        ],
        None => device_observer(&draft.author),
    }
}

/// radassist as the device observer (TID 1004), `model` its model name (the draft's author, or
/// the algorithm).
pub fn device_observer(model: &str) -> Vec<InMemDicomObject> {
    let context = Relationship::HasObsContext;
    vec![
        code_item(context, &codes::OBSERVER_TYPE, &codes::DEVICE),
        uid_item(
            context,
            &codes::DEVICE_OBSERVER_UID,
            IMPLEMENTATION_CLASS_UID,
        ),
        text_item(context, &codes::DEVICE_OBSERVER_NAME, "radassist"),
        text_item(context, &codes::DEVICE_OBSERVER_MANUFACTURER, "radassist"),
        text_item(context, &codes::DEVICE_OBSERVER_MODEL_NAME, model),
    ]
}

/// The FINDINGS and IMPRESSION sentences: a signed read's text replaces the draft's sentences;
/// the measurements stay with the findings of the draft only.
fn sections(draft: &Draft, signed: Option<&FinalRead>) -> (Vec<Statement>, Vec<Statement>) {
    match signed {
        Some(read) => {
            let (f, i) = split_sections(&read.text);
            (plain_statements(&f), plain_statements(&i))
        }
        None if draft.author.starts_with("radassist structured") => {
            (draft.findings.clone(), draft.impression.clone())
        }
        None => {
            // A vision-language draft: its text, then the structured findings as evidence.
            let (f, i) = split_sections(&draft.text);
            let mut findings = plain_statements(&f);
            findings.extend(draft.findings.iter().cloned());
            (findings, plain_statements(&i))
        }
    }
}

/// Writes the SR to `path`.
pub fn write(
    draft: &Draft,
    signed: Option<&FinalRead>,
    source: &DicomInstance,
    priors: &[ImageReference],
    path: &Path,
) -> Result<(), ObjectError> {
    dataset::write(&build(draft, signed, source, priors)?, path)
}

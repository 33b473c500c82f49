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

use super::{split_sections, Draft, Evidence, FinalRead, ImageReference, Statement};
use crate::dicom::DicomInstance;
use crate::placement::geometry::LengthUnit;
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;
use std::path::Path;

pub const COMPREHENSIVE_SR: &str = "1.2.840.10008.5.1.4.1.1.88.33";
const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
/// radassist's implementation class UID (under the 2.25 UUID root).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.171493722431906374125476937117196340893";

/// A new UID under the 2.25 root (a random UUID as a decimal integer).
pub fn new_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}

type Item = InMemDicomObject;

fn text(tag: Tag, vr: VR, value: &str) -> DataElement<Item> {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

fn sequence(tag: Tag, items: Vec<Item>) -> DataElement<Item> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn code(value: &str, scheme: &str, meaning: &str) -> Item {
    InMemDicomObject::from_element_iter([
        text(tags::CODE_VALUE, VR::SH, value),
        text(tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme),
        text(tags::CODE_MEANING, VR::LO, meaning),
    ])
}

/// A content item: relationship (None for the root), value type, concept name.
fn item(relationship: Option<&str>, value_type: &str, concept: Item) -> Item {
    let mut item = InMemDicomObject::new_empty();
    if let Some(r) = relationship {
        item.put(text(tags::RELATIONSHIP_TYPE, VR::CS, r));
    }
    item.put(text(tags::VALUE_TYPE, VR::CS, value_type));
    item.put(sequence(tags::CONCEPT_NAME_CODE_SEQUENCE, vec![concept]));
    item
}

fn text_item(relationship: &str, concept: Item, value: &str) -> Item {
    let mut i = item(Some(relationship), "TEXT", concept);
    i.put(text(tags::TEXT_VALUE, VR::UT, value));
    i
}

fn code_item(relationship: &str, concept: Item, value: Item) -> Item {
    let mut i = item(Some(relationship), "CODE", concept);
    i.put(sequence(tags::CONCEPT_CODE_SEQUENCE, vec![value]));
    i
}

fn container(relationship: Option<&str>, concept: Item, children: Vec<Item>) -> Item {
    let mut c = item(relationship, "CONTAINER", concept);
    c.put(text(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"));
    c.put(sequence(tags::CONTENT_SEQUENCE, children));
    c
}

fn num_item(relationship: &str, concept: Item, value: f64, unit: LengthUnit) -> Item {
    let mut i = item(Some(relationship), "NUM", concept);
    let units = match unit {
        LengthUnit::Mm => code("mm", "UCUM", "millimeter"),
        LengthUnit::Px => code("{pixels}", "UCUM", "pixels"),
    };
    let measured = InMemDicomObject::from_element_iter([
        text(tags::NUMERIC_VALUE, VR::DS, &format!("{value:.1}")),
        sequence(tags::MEASUREMENT_UNITS_CODE_SEQUENCE, vec![units]),
    ]);
    i.put(sequence(tags::MEASURED_VALUE_SEQUENCE, vec![measured]));
    i
}

fn referenced_sop(image: &ImageReference) -> Item {
    InMemDicomObject::from_element_iter([
        text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &image.sop_class_uid),
        text(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            &image.sop_instance_uid,
        ),
    ])
}

fn image_item(relationship: &str, image: &ImageReference) -> Item {
    let mut i = item(
        Some(relationship),
        "IMAGE",
        code("121112", "DCM", "Source of Measurement"),
    );
    i.put(sequence(
        tags::REFERENCED_SOP_SEQUENCE,
        vec![referenced_sop(image)],
    ));
    i
}

/// A series' UID and its images.
type SeriesImages<'a> = (String, Vec<&'a ImageReference>);

/// Hierarchical SOP instance references, grouped by study and series.
fn evidence_sequence(tag: Tag, images: &[ImageReference]) -> DataElement<Item> {
    let mut studies: Vec<(String, Vec<SeriesImages>)> = Vec::new();
    for image in images {
        let study = match studies
            .iter_mut()
            .find(|(uid, _)| *uid == image.study_instance_uid)
        {
            Some(s) => s,
            None => {
                studies.push((image.study_instance_uid.clone(), vec![]));
                studies.last_mut().unwrap()
            }
        };
        match study
            .1
            .iter_mut()
            .find(|(uid, _)| *uid == image.series_instance_uid)
        {
            Some(series) => series.1.push(image),
            None => study
                .1
                .push((image.series_instance_uid.clone(), vec![image])),
        }
    }
    let items = studies
        .into_iter()
        .map(|(study, series)| {
            let series_items = series
                .into_iter()
                .map(|(uid, images)| {
                    InMemDicomObject::from_element_iter([
                        text(tags::SERIES_INSTANCE_UID, VR::UI, &uid),
                        sequence(
                            tags::REFERENCED_SOP_SEQUENCE,
                            images.into_iter().map(referenced_sop).collect(),
                        ),
                    ])
                })
                .collect();
            InMemDicomObject::from_element_iter([
                text(tags::STUDY_INSTANCE_UID, VR::UI, &study),
                sequence(tags::REFERENCED_SERIES_SEQUENCE, series_items),
            ])
        })
        .collect();
    sequence(tag, items)
}

/// A finding sentence with what it was inferred from.
fn finding_item(concept: Item, statement: &Statement, image: Option<&ImageReference>) -> Item {
    let mut sentence = text_item("CONTAINS", concept, &statement.text);
    let mut children = Vec::new();
    for e in &statement.evidence {
        if let Evidence::Measurement {
            name, value, unit, ..
        } = e
        {
            let mut num = num_item(
                "INFERRED FROM",
                code("121206", "DCM", "Distance"),
                *value,
                *unit,
            );
            let what = text_item(
                "HAS CONCEPT MOD",
                code("121050", "DCM", "Equivalent Meaning of Concept Name"),
                &name.replace('_', " "),
            );
            num.put(sequence(tags::CONTENT_SEQUENCE, vec![what]));
            children.push(num);
        }
    }
    if let (Some(image), false) = (image, children.is_empty()) {
        children.push(image_item("INFERRED FROM", image));
    }
    if !children.is_empty() {
        sentence.put(sequence(tags::CONTENT_SEQUENCE, children));
    }
    sentence
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

/// Patient and study attributes copied from the source image (Type 2: present, maybe empty).
const COPIED: &[(Tag, VR)] = &[
    (tags::PATIENT_NAME, VR::PN),
    (tags::PATIENT_ID, VR::LO),
    (tags::ISSUER_OF_PATIENT_ID, VR::LO),
    (tags::PATIENT_BIRTH_DATE, VR::DA),
    (tags::PATIENT_SEX, VR::CS),
    (tags::STUDY_INSTANCE_UID, VR::UI),
    (tags::STUDY_DATE, VR::DA),
    (tags::STUDY_TIME, VR::TM),
    (tags::REFERRING_PHYSICIAN_NAME, VR::PN),
    (tags::STUDY_ID, VR::SH),
    (tags::ACCESSION_NUMBER, VR::SH),
    (tags::STUDY_DESCRIPTION, VR::LO),
];
const TYPE_2: &[Tag] = &[
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::STUDY_ID,
    tags::ACCESSION_NUMBER,
];

/// Why an SR could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SrError {
    #[error(
        "the source image has no Study Instance UID: the report cannot be placed in its study"
    )]
    NoStudyInstanceUid,
    #[error("the SR's file meta group: {0}")]
    Meta(#[source] Box<dicom_object::WithMetaError>),
    #[error("writing the SR to {}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: Box<dicom_object::WriteError>,
    },
}

/// Builds the SR of `draft` (or, with `signed`, of the radiologist's final read) in the study
/// of `source`, referencing `priors` as pertinent other evidence: one function per module of
/// the Comprehensive SR IOD (PS3.3 A.35.3), and the content tree (TID 2000).
pub fn build(
    draft: &Draft,
    signed: Option<&FinalRead>,
    source: &DicomInstance,
    priors: &[ImageReference],
) -> Result<dicom_object::DefaultDicomObject, SrError> {
    let now = chrono::Utc::now();
    let (date, time) = (
        now.format("%Y%m%d").to_string(),
        now.format("%H%M%S").to_string(),
    );
    let mut sr = patient_and_study(source)?;
    series_and_instance(&mut sr, &date, &time);
    document_general(&mut sr, draft, signed, priors);
    contributing_equipment(&mut sr, draft, &date, &time);
    for element in content_tree(draft, signed).into_iter() {
        sr.put(element);
    }
    sr.with_meta(
        FileMetaTableBuilder::new()
            .transfer_syntax(EXPLICIT_VR_LITTLE_ENDIAN)
            .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
            .implementation_version_name("RADASSIST_01"),
    )
    .map_err(|e| SrError::Meta(Box::new(e)))
}

/// Patient, General Study and Patient Study: copied from the source image (Type 2 attributes
/// it lacks are present and empty), in UTF-8.
fn patient_and_study(source: &DicomInstance) -> Result<InMemDicomObject, SrError> {
    let mut sr = InMemDicomObject::new_empty();
    for &(tag, vr) in COPIED {
        if let Ok(element) = source.element(tag) {
            sr.put(DataElement::new(tag, vr, element.value().clone()));
        } else if TYPE_2.contains(&tag) {
            sr.put(DataElement::new(tag, vr, PrimitiveValue::Empty));
        }
    }
    // UTF-8 (ISO_IR 192): report text is whatever a radiologist typed or a model wrote, and the
    // copied patient attributes were decoded from the source's own character set, so one
    // repertoire that holds every character is the only one that never loses a name or a word.
    sr.put(DataElement::new(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        PrimitiveValue::from("ISO_IR 192"),
    ));
    if source.element(tags::STUDY_INSTANCE_UID).is_err() {
        return Err(SrError::NoStudyInstanceUid);
    }
    Ok(sr)
}

/// SR Document Series, General Equipment, SOP Common and the content's date and time: a new
/// series of its own.
fn series_and_instance(sr: &mut InMemDicomObject, date: &str, time: &str) {
    let sop_instance = new_uid();
    for (tag, vr, value) in [
        (tags::SOP_CLASS_UID, VR::UI, COMPREHENSIVE_SR.to_string()),
        (tags::SOP_INSTANCE_UID, VR::UI, sop_instance.clone()),
        (tags::MODALITY, VR::CS, "SR".into()),
        (tags::SERIES_INSTANCE_UID, VR::UI, new_uid()),
        (tags::SERIES_NUMBER, VR::IS, "9001".into()),
        (tags::SERIES_DESCRIPTION, VR::LO, "radassist report".into()),
        (tags::INSTANCE_NUMBER, VR::IS, "1".into()),
        (tags::MANUFACTURER, VR::LO, "radassist".into()),
        (tags::CONTENT_DATE, VR::DA, date.to_string()),
        (tags::CONTENT_TIME, VR::TM, time.to_string()),
        (tags::INSTANCE_CREATION_DATE, VR::DA, date.to_string()),
        (tags::INSTANCE_CREATION_TIME, VR::TM, time.to_string()),
    ] {
        sr.put(text(tag, vr, &value));
    }
    sr.put(sequence(
        tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE,
        vec![],
    ));
    sr.put(sequence(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, vec![]));
}

/// SR Document General: completion, verification (who signed, for a final read), the SR an
/// amendment replaces, and the images it rests on.
fn document_general(
    sr: &mut InMemDicomObject,
    draft: &Draft,
    signed: Option<&FinalRead>,
    priors: &[ImageReference],
) {
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
    sr.put(evidence_sequence(
        tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
        &draft.source_images,
    ));
    if !priors.is_empty() {
        sr.put(evidence_sequence(
            tags::PERTINENT_OTHER_EVIDENCE_SEQUENCE,
            priors,
        ));
    }
}

/// Contributing Equipment: radassist, with the draft's author and every model that contributed.
fn contributing_equipment(sr: &mut InMemDicomObject, draft: &Draft, date: &str, time: &str) {
    let models: Vec<String> = draft
        .models
        .iter()
        .map(|m| {
            format!(
                "{} {} {}{}",
                m.task,
                m.name,
                m.version,
                if m.test_model {
                    " (test model, not for clinical use)"
                } else {
                    ""
                }
            )
        })
        .collect();
    sr.put(sequence(
        tags::CONTRIBUTING_EQUIPMENT_SEQUENCE,
        vec![InMemDicomObject::from_element_iter([
            sequence(
                tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
                vec![code("109102", "DCM", "Processing Equipment")],
            ),
            text(tags::MANUFACTURER, VR::LO, "radassist"),
            text(
                tags::MANUFACTURER_MODEL_NAME,
                VR::LO,
                "radassist draft report",
            ),
            text(tags::SOFTWARE_VERSIONS, VR::LO, env!("CARGO_PKG_VERSION")),
            text(
                tags::CONTRIBUTION_DATE_TIME,
                VR::DT,
                &format!("{date}{time}"),
            ),
            text(
                tags::CONTRIBUTION_DESCRIPTION,
                VR::ST,
                &format!("draft by {}; models: {}", draft.author, models.join("; ")),
            ),
        ])],
    ));
}

/// The content tree (TID 2000): language, observer context, FINDINGS and IMPRESSION.
fn content_tree(draft: &Draft, signed: Option<&FinalRead>) -> InMemDicomObject {
    let mut content = vec![code_item(
        "HAS CONCEPT MOD",
        code("121049", "DCM", "Language of Content Item and Descendants"),
        code("en-US", "RFC5646", "English (United States)"),
    )];
    content.extend(observer_context(draft, signed));
    let (findings, impression) = sections(draft, signed);
    let image = draft.source_images.first();
    if !findings.is_empty() {
        content.push(container(
            Some("CONTAINS"),
            code("121070", "DCM", "Findings"),
            findings
                .iter()
                .map(|s| finding_item(code("121071", "DCM", "Finding"), s, image))
                .collect(),
        ));
    }
    if !impression.is_empty() {
        content.push(container(
            Some("CONTAINS"),
            code("121073", "DCM", "Impression"),
            impression
                .iter()
                .map(|s| finding_item(code("121073", "DCM", "Impression"), s, image))
                .collect(),
        ));
    }
    let mut root = container(
        None,
        code("18748-4", "LN", "Diagnostic Imaging Report"),
        content,
    );
    root.put(sequence(
        tags::CONTENT_TEMPLATE_SEQUENCE,
        vec![InMemDicomObject::from_element_iter([
            text(tags::MAPPING_RESOURCE, VR::CS, "DCMR"),
            text(tags::TEMPLATE_IDENTIFIER, VR::CS, "2000"),
        ])],
    ));
    root
}

/// The observer: the radiologist who signed, or radassist as the device that drafted.
fn observer_context(draft: &Draft, signed: Option<&FinalRead>) -> Vec<InMemDicomObject> {
    let mut content = Vec::new();
    match signed {
        Some(read) => {
            content.push(code_item(
                "HAS OBS CONTEXT",
                code("121005", "DCM", "Observer Type"),
                code("121006", "DCM", "Person"),
            ));
            let mut name = item(
                Some("HAS OBS CONTEXT"),
                "PNAME",
                code("121008", "DCM", "Person Observer Name"),
            );
            name.put(text(tags::PERSON_NAME, VR::PN, &read.radiologist));
            content.push(name);
        }
        None => {
            content.push(code_item(
                "HAS OBS CONTEXT",
                code("121005", "DCM", "Observer Type"),
                code("121007", "DCM", "Device"),
            ));
            let mut uid = item(
                Some("HAS OBS CONTEXT"),
                "UIDREF",
                code("121012", "DCM", "Device Observer UID"),
            );
            uid.put(text(tags::UID, VR::UI, IMPLEMENTATION_CLASS_UID));
            content.push(uid);
            content.push(text_item(
                "HAS OBS CONTEXT",
                code("121013", "DCM", "Device Observer Name"),
                "radassist",
            ));
            content.push(text_item(
                "HAS OBS CONTEXT",
                code("121014", "DCM", "Device Observer Manufacturer"),
                "radassist",
            ));
            content.push(text_item(
                "HAS OBS CONTEXT",
                code("121015", "DCM", "Device Observer Model Name"),
                &draft.author,
            ));
        }
    }
    content
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
) -> Result<(), SrError> {
    build(draft, signed, source, priors)?
        .write_to_file(path)
        .map_err(|source| SrError::Write {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
}

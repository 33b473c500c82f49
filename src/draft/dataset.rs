//! What every DICOM object radassist creates has in common: the element builders, the
//! patient and study copied from the source image, a new series and instance, the model
//! identities in the Contributing Equipment Sequence, and the file meta group.
//!
//! The report SR ([`super::sr`]), the measurement report ([`super::measurement_report`]), the
//! presentation state ([`super::presentation_state`]) and the summary image
//! ([`super::summary_image`]) are all built on these, so each lands in the film's study with the
//! same patient, and each names the models that produced it the same way.

use super::codes::Code;
use super::ImageReference;
use crate::analysis::ModelUsed;
use crate::dicom::DicomInstance;
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{DefaultDicomObject, InMemDicomObject};

pub type Item = InMemDicomObject;

const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
/// radassist's implementation class UID (under the 2.25 UUID root).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.171493722431906374125476937117196340893";

/// Why a result object could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(
        "the source image has no Study Instance UID: the result cannot be placed in its study"
    )]
    NoStudyInstanceUid,
    #[error("the source image has no {0}: the result cannot reference it")]
    NoReference(&'static str),
    #[error("the object's file meta group: {0}")]
    Meta(#[source] Box<dicom_object::WithMetaError>),
    #[error("writing the object to {}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: Box<dicom_object::WriteError>,
    },
}

/// A new UID under the 2.25 root (a random UUID as a decimal integer).
pub fn new_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}

/// A text element; a value longer than its VR allows (SH 16, LO 64, ST 1024, LT 10240 bytes:
/// checkers count UTF-8 bytes) is cut at a character boundary, so a model's or a user's long
/// text never makes an invalid object.
pub fn text(tag: Tag, vr: VR, value: &str) -> DataElement<Item> {
    let limit = match vr {
        VR::SH => 16,
        VR::LO => 64,
        VR::ST => 1024,
        VR::LT => 10240,
        _ => usize::MAX,
    };
    DataElement::new(tag, vr, PrimitiveValue::from(fit(value, limit)))
}

/// `value` cut to at most `bytes` bytes at a character boundary.
pub fn fit(value: &str, bytes: usize) -> &str {
    if value.len() <= bytes {
        return value;
    }
    let mut end = bytes;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

pub fn sequence(tag: Tag, items: Vec<Item>) -> DataElement<Item> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

/// A code sequence item (Code Value, Coding Scheme Designator, Code Meaning).
pub fn coded(code: &Code) -> Item {
    InMemDicomObject::from_element_iter([
        text(tags::CODE_VALUE, VR::SH, &code.value),
        text(tags::CODING_SCHEME_DESIGNATOR, VR::SH, code.scheme),
        text(tags::CODE_MEANING, VR::LO, &code.meaning),
    ])
}

/// When an object was made: DICOM DA and TM, UTC.
#[derive(Debug, Clone)]
pub struct Created {
    pub date: String,
    pub time: String,
}

impl Created {
    pub fn now() -> Created {
        let now = chrono::Utc::now();
        Created {
            date: now.format("%Y%m%d").to_string(),
            time: now.format("%H%M%S").to_string(),
        }
    }
}

/// Referenced SOP Class and Instance UIDs of an image.
pub fn referenced_sop(image: &ImageReference) -> Item {
    InMemDicomObject::from_element_iter([
        text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &image.sop_class_uid),
        text(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            &image.sop_instance_uid,
        ),
    ])
}

/// A series' UID and its images.
type SeriesImages<'a> = (String, Vec<&'a ImageReference>);

/// Hierarchical SOP instance references, grouped by study and series.
pub fn evidence_sequence(tag: Tag, images: &[ImageReference]) -> DataElement<Item> {
    let mut studies: Vec<(String, Vec<SeriesImages>)> = Vec::new();
    for image in images {
        let at = match studies
            .iter()
            .position(|(uid, _)| *uid == image.study_instance_uid)
        {
            Some(at) => at,
            None => {
                studies.push((image.study_instance_uid.clone(), vec![]));
                studies.len() - 1
            }
        };
        let study = &mut studies[at].1;
        match study
            .iter_mut()
            .find(|(uid, _)| *uid == image.series_instance_uid)
        {
            Some(series) => series.1.push(image),
            None => study.push((image.series_instance_uid.clone(), vec![image])),
        }
    }
    let items = studies
        .into_iter()
        .map(|(study, series)| {
            InMemDicomObject::from_element_iter([
                text(tags::STUDY_INSTANCE_UID, VR::UI, &study),
                sequence(tags::REFERENCED_SERIES_SEQUENCE, referenced_series(series)),
            ])
        })
        .collect();
    sequence(tag, items)
}

/// Referenced Series Sequence items: each series' UID and its images.
pub fn referenced_series(series: Vec<SeriesImages>) -> Vec<Item> {
    series
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

/// Patient, General Study and Patient Study: copied from the source image (Type 2 attributes
/// it lacks are present and empty), in UTF-8.
pub fn patient_and_study(source: &DicomInstance) -> Result<Item, ObjectError> {
    if source.element(tags::STUDY_INSTANCE_UID).is_err() {
        return Err(ObjectError::NoStudyInstanceUid);
    }
    let mut object = InMemDicomObject::new_empty();
    for &(tag, vr) in COPIED {
        if let Ok(element) = source.element(tag) {
            object.put(DataElement::new(tag, vr, element.value().clone()));
        } else if TYPE_2.contains(&tag) {
            object.put(DataElement::new(tag, vr, PrimitiveValue::Empty));
        }
    }
    // UTF-8 (ISO_IR 192): report text is whatever a radiologist typed or a model wrote, and the
    // copied patient attributes were decoded from the source's own character set, so one
    // repertoire that holds every character is the only one that never loses a name or a word.
    object.put(text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"));
    Ok(object)
}

/// A UID of the source image (its value without padding), for referencing it.
pub fn source_uid(
    source: &DicomInstance,
    tag: Tag,
    name: &'static str,
) -> Result<String, ObjectError> {
    crate::dicom::Attributes(source)
        .text(tag)
        .ok_or(ObjectError::NoReference(name))
}

/// The source image as a reference (its SOP class and instance, series and study).
pub fn source_reference(source: &DicomInstance) -> Result<ImageReference, ObjectError> {
    Ok(ImageReference {
        sop_class_uid: source_uid(source, tags::SOP_CLASS_UID, "SOP Class UID")?,
        sop_instance_uid: source_uid(source, tags::SOP_INSTANCE_UID, "SOP Instance UID")?,
        series_instance_uid: source_uid(source, tags::SERIES_INSTANCE_UID, "Series Instance UID")?,
        study_instance_uid: source_uid(source, tags::STUDY_INSTANCE_UID, "Study Instance UID")?,
    })
}

/// The new series and instance an object starts (each kind of result its own series).
pub struct NewInstance<'a> {
    pub sop_class_uid: &'a str,
    pub modality: &'a str,
    pub series_number: u32,
    pub series_description: &'a str,
}

/// General Series (or its SR, PR variant), General Equipment and SOP Common; returns the new
/// SOP Instance UID.
pub fn put_new_instance(object: &mut Item, new: &NewInstance, created: &Created) -> String {
    let sop_instance = new_uid();
    for (tag, vr, value) in [
        (tags::SOP_CLASS_UID, VR::UI, new.sop_class_uid.to_string()),
        (tags::SOP_INSTANCE_UID, VR::UI, sop_instance.clone()),
        (tags::MODALITY, VR::CS, new.modality.into()),
        (tags::SERIES_INSTANCE_UID, VR::UI, new_uid()),
        (tags::SERIES_NUMBER, VR::IS, new.series_number.to_string()),
        (
            tags::SERIES_DESCRIPTION,
            VR::LO,
            new.series_description.into(),
        ),
        (tags::INSTANCE_NUMBER, VR::IS, "1".into()),
        (tags::MANUFACTURER, VR::LO, "radassist".into()),
        (
            tags::SOFTWARE_VERSIONS,
            VR::LO,
            env!("CARGO_PKG_VERSION").into(),
        ),
        (tags::INSTANCE_CREATION_DATE, VR::DA, created.date.clone()),
        (tags::INSTANCE_CREATION_TIME, VR::TM, created.time.clone()),
    ] {
        object.put(text(tag, vr, &value));
    }
    sop_instance
}

/// A new object of `new`'s kind in the study of `source`: the patient and study copied
/// ([`patient_and_study`]), its series and instance ([`put_new_instance`]).
pub fn new_object(
    source: &DicomInstance,
    new: &NewInstance,
    created: &Created,
) -> Result<Item, ObjectError> {
    let mut object = patient_and_study(source)?;
    put_new_instance(&mut object, new, created);
    Ok(object)
}

/// One model as a Contributing Equipment item: the pack's name, its version and digest.
fn model_equipment(model: &ModelUsed, when: &str) -> Item {
    let mut versions = vec![fit(&model.version, 64).to_string()];
    if !model.digest.is_empty() {
        versions.push(model.digest.clone());
    }
    let description = format!(
        "{} pack {} {}{}{}",
        model.task,
        model.name,
        model.version,
        if model.digest.is_empty() {
            String::new()
        } else {
            format!(", sha256 {}", model.digest)
        },
        if model.test_model {
            " (test model, not for clinical use)"
        } else {
            ""
        }
    );
    InMemDicomObject::from_element_iter([
        sequence(
            tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
            vec![coded(&super::codes::PROCESSING_EQUIPMENT)],
        ),
        text(tags::MANUFACTURER, VR::LO, "radassist model pack"),
        text(tags::MANUFACTURER_MODEL_NAME, VR::LO, &model.name),
        DataElement::new(
            tags::SOFTWARE_VERSIONS,
            VR::LO,
            PrimitiveValue::Strs(versions.into()),
        ),
        text(tags::CONTRIBUTION_DATE_TIME, VR::DT, when),
        text(tags::CONTRIBUTION_DESCRIPTION, VR::ST, &description),
    ])
}

/// Contributing Equipment: radassist itself (what it did: `contribution`) and every model pack
/// that contributed, each with its name, version and digest, so a PACS can tell which model
/// produced what.
pub fn put_contributing_equipment(
    object: &mut Item,
    models: &[ModelUsed],
    contribution: &str,
    created: &Created,
) {
    let when = format!("{}{}", created.date, created.time);
    let mut items = vec![InMemDicomObject::from_element_iter([
        sequence(
            tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
            vec![coded(&super::codes::PROCESSING_EQUIPMENT)],
        ),
        text(tags::MANUFACTURER, VR::LO, "radassist"),
        text(tags::MANUFACTURER_MODEL_NAME, VR::LO, "radassist"),
        text(tags::SOFTWARE_VERSIONS, VR::LO, env!("CARGO_PKG_VERSION")),
        text(tags::CONTRIBUTION_DATE_TIME, VR::DT, &when),
        text(tags::CONTRIBUTION_DESCRIPTION, VR::ST, contribution),
    ])];
    items.extend(models.iter().map(|m| model_equipment(m, &when)));
    object.put(sequence(tags::CONTRIBUTING_EQUIPMENT_SEQUENCE, items));
}

/// The object with its file meta group (Explicit VR Little Endian, radassist's implementation).
pub fn with_meta(object: Item) -> Result<DefaultDicomObject, ObjectError> {
    object
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(EXPLICIT_VR_LITTLE_ENDIAN)
                .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
                .implementation_version_name("RADASSIST_01"),
        )
        .map_err(|e| ObjectError::Meta(Box::new(e)))
}

/// Writes `object` to `path`.
pub fn write(object: &DefaultDicomObject, path: &std::path::Path) -> Result<(), ObjectError> {
    object
        .write_to_file(path)
        .map_err(|source| ObjectError::Write {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
}

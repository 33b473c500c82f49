//! Which attributes the archive searches and returns, at each level of DICOM's query model
//! (study, series, instance), and an instance's searchable attributes taken from its data set.
//!
//! The lists are PS3.18's required return attributes (tables 10.6.3-3 to -5) and those a
//! viewer's study list shows (Study Description, Body Part Examined, View Position, ...). An
//! instance's searchable attributes are these elements of its data set, kept as DICOM JSON with
//! its catalogue row; sequences are not kept (a search does not match into them).

use dicom_core::Tag;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject};

/// The attributes of the study every instance of it carries.
pub const STUDY: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::ACCESSION_NUMBER,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::TIMEZONE_OFFSET_FROM_UTC,
    tags::STUDY_DESCRIPTION,
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::PATIENT_AGE,
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_ID,
];

/// The attributes of the series.
pub const SERIES: &[Tag] = &[
    tags::MODALITY,
    tags::SERIES_DATE,
    tags::SERIES_TIME,
    tags::SERIES_DESCRIPTION,
    tags::MANUFACTURER,
    tags::INSTITUTION_NAME,
    tags::BODY_PART_EXAMINED,
    tags::SERIES_INSTANCE_UID,
    tags::SERIES_NUMBER,
    tags::PERFORMED_PROCEDURE_STEP_START_DATE,
    tags::PERFORMED_PROCEDURE_STEP_START_TIME,
];

/// The attributes of the instance.
pub const INSTANCE: &[Tag] = &[
    tags::SOP_CLASS_UID,
    tags::SOP_INSTANCE_UID,
    tags::CONTENT_DATE,
    tags::CONTENT_TIME,
    tags::INSTANCE_NUMBER,
    tags::VIEW_POSITION,
    tags::PHOTOMETRIC_INTERPRETATION,
    tags::ROWS,
    tags::COLUMNS,
    tags::BITS_ALLOCATED,
    tags::NUMBER_OF_FRAMES,
    tags::COMPLETION_FLAG,
    tags::VERIFICATION_FLAG,
    tags::AVAILABLE_TRANSFER_SYNTAX_UID,
];

/// Attributes the archive computes for a search's answers (never kept with an instance).
pub const COMPUTED: &[Tag] = &[
    tags::MODALITIES_IN_STUDY,
    tags::SOP_CLASSES_IN_STUDY,
    tags::NUMBER_OF_STUDY_RELATED_SERIES,
    tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
    tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
    tags::INSTANCE_AVAILABILITY,
    tags::RETRIEVE_URL,
];

/// Every attribute kept with an instance.
pub fn kept() -> impl Iterator<Item = Tag> {
    STUDY
        .iter()
        .chain(SERIES)
        .chain(INSTANCE)
        .copied()
        .filter(|&tag| tag != tags::SPECIFIC_CHARACTER_SET)
}

/// The searchable attributes of `instance`, as DICOM JSON, with the transfer syntax it is
/// held in as its Available Transfer Syntax UID. Values are kept as decoded from the data
/// set's character set: the JSON is UTF-8 whatever the instance's Specific Character Set, so
/// that attribute is not kept.
pub fn searchable(instance: &DefaultDicomObject) -> String {
    let data_set: &InMemDicomObject = instance;
    let mut kept = InMemDicomObject::new_empty();
    kept.put(DataElement::new(
        tags::AVAILABLE_TRANSFER_SYNTAX_UID,
        VR::UI,
        instance.meta().transfer_syntax().trim_end_matches('\0'),
    ));
    for tag in self::kept() {
        if let Ok(element) = data_set.element(tag) {
            if element.vr() != dicom_core::VR::SQ {
                kept.put(element.clone());
            }
        }
    }
    // Serialising the elements of a parsed data set cannot fail: an empty object stands in
    // should it ever (the entry is then read from its blob again at the next search).
    dicom_json::to_string(&kept).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_object::meta::FileMetaTableBuilder;

    #[test]
    fn the_searchable_attributes_are_the_listed_ones_without_sequences_or_pixels() {
        let data_set = InMemDicomObject::from_element_iter([
            DataElement::new(tags::PATIENT_NAME, VR::PN, "Doe^Jane"),
            DataElement::new(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
            DataElement::new(tags::MODALITY, VR::CS, "DX"),
            DataElement::new(
                tags::ROWS,
                VR::US,
                dicom_core::PrimitiveValue::from(512_u16),
            ),
            DataElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                dicom_core::PrimitiveValue::from(vec![0_u8; 16]),
            ),
            DataElement::new(tags::IMAGE_TYPE, VR::CS, "ORIGINAL"),
        ]);
        let instance = data_set
            .with_meta(
                FileMetaTableBuilder::new()
                    .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.1.1")
                    .media_storage_sop_instance_uid("1.2.3")
                    .transfer_syntax("1.2.840.10008.1.2.4.70"),
            )
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(&searchable(&instance)).unwrap();
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["00080060", "00083002", "00100010", "00280010"]);
        assert_eq!(json["00083002"]["Value"][0], "1.2.840.10008.1.2.4.70");
        assert_eq!(json["00100010"]["Value"][0]["Alphabetic"], "Doe^Jane");
        assert_eq!(json["00280010"]["Value"][0], 512);
    }
}

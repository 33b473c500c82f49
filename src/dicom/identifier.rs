//! A query's identifier (PS3.4 C.4.1.1.3): the data set a Study Root C-FIND or C-MOVE sends,
//! and the prior search hands to whichever peer it asks (DIMSE sends it as it is, DICOMweb reads
//! it into a QIDO-RS query).

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// An identifier of `level` ("STUDY", "SERIES", "IMAGE") with its matching keys (a value)
/// and return keys (empty).
pub fn identifier(level: &str, keys: &[(dicom_core::Tag, &str)]) -> InMemDicomObject {
    use dicom_core::{DataElement, PrimitiveValue};
    let dictionary = dicom_dictionary_std::StandardDataDictionary;
    let mut object = InMemDicomObject::new_empty();
    object.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        dicom_core::VR::CS,
        PrimitiveValue::from(level),
    ));
    for &(tag, value) in keys {
        let vr = dicom_core::dictionary::DataDictionary::by_tag(&dictionary, tag)
            .map(|entry| entry.vr.relaxed())
            .unwrap_or(dicom_core::VR::LO);
        let value = if value.is_empty() {
            PrimitiveValue::Empty
        } else {
            PrimitiveValue::from(value)
        };
        object.put(DataElement::new(tag, vr, value));
    }
    object
}

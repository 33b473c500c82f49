//! The summary image (Secondary Capture, a series of its own): the film with the overlay
//! burned in, the legend of each device's verdict, the findings the models state, and the
//! words "AI draft, not a diagnosis: see the report", for viewers that show neither the
//! measurement report nor the presentation state. 8-bit RGB, at most
//! [`crate::analysis::overlay::OVERLAY_SIZE`] pixels wide, marked Burned In Annotation YES.

use super::dataset::{self, sequence, text, Created, NewInstance, ObjectError};
use crate::analysis::thresholds::Presence;
use crate::analysis::{overlay, StudyAnalysis};
use crate::dicom::DicomInstance;
use crate::imaging::display::display_values;
use crate::imaging::lut::VoiTransform;
use crate::imaging::Radiograph;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;

pub const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";
/// The series number of the summary images radassist makes.
pub const SERIES_NUMBER: u32 = 9004;

/// The findings the models state present (at the draft's threshold), most probable first, with
/// their probability.
pub fn stated_findings(study: &StudyAnalysis) -> Vec<String> {
    let mut present: Vec<_> = study
        .current
        .findings
        .iter()
        .filter(|f| {
            study.thresholds.presence(f) == Presence::Present
                && !f.label.eq_ignore_ascii_case("no finding")
        })
        .collect();
    present.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    present
        .iter()
        .map(|f| format!("{} {:.0}%", f.label, f.probability * 100.0))
        .collect()
}

/// The summary picture (RGB) of `study` on `radiograph` shown through `voi`.
pub fn picture(
    study: &StudyAnalysis,
    radiograph: &Radiograph,
    voi: &VoiTransform,
) -> image::RgbImage {
    let display = display_values(radiograph, voi);
    overlay::summary(display.view(), study, &stated_findings(study))
}

/// The summary image as a Secondary Capture instance in the study of `source`.
pub fn build(
    study: &StudyAnalysis,
    source: &DicomInstance,
    radiograph: &Radiograph,
    voi: &VoiTransform,
) -> Result<dicom_object::DefaultDicomObject, ObjectError> {
    let created = Created::now();
    let film = dataset::source_reference(source)?;
    let picture = picture(study, radiograph, voi);
    let mut sc = dataset::new_object(
        source,
        &NewInstance {
            sop_class_uid: SECONDARY_CAPTURE,
            modality: "OT",
            series_number: SERIES_NUMBER,
            series_description: "radassist summary (AI draft, not a diagnosis)",
        },
        &created,
    )?;
    let us = |tag, value: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(value));
    for element in [
        text(tags::CONVERSION_TYPE, VR::CS, "WSD"),
        // General Series' Laterality (Type 2C): a chest film is of no paired structure.
        text(tags::LATERALITY, VR::CS, ""),
        text(tags::IMAGE_TYPE, VR::CS, "DERIVED\\SECONDARY"),
        text(tags::CONTENT_DATE, VR::DA, &created.date),
        text(tags::CONTENT_TIME, VR::TM, &created.time),
        text(tags::PATIENT_ORIENTATION, VR::CS, ""),
        text(tags::BURNED_IN_ANNOTATION, VR::CS, "YES"),
        text(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00"),
        text(
            tags::DERIVATION_DESCRIPTION,
            VR::ST,
            "the film with radassist's tube and line marks, verdicts and findings burned in",
        ),
        sequence(
            tags::SOURCE_IMAGE_SEQUENCE,
            vec![dataset::referenced_sop(&film)],
        ),
        us(tags::SAMPLES_PER_PIXEL, 3),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB"),
        us(tags::PLANAR_CONFIGURATION, 0),
        us(tags::ROWS, picture.height() as u16),
        us(tags::COLUMNS, picture.width() as u16),
        us(tags::BITS_ALLOCATED, 8),
        us(tags::BITS_STORED, 8),
        us(tags::HIGH_BIT, 7),
        us(tags::PIXEL_REPRESENTATION, 0),
    ] {
        sc.put(element);
    }
    let mut pixels = picture.into_raw();
    if pixels.len() % 2 == 1 {
        pixels.push(0);
    }
    sc.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::U8(pixels.into()),
    ));
    dataset::put_contributing_equipment(
        &mut sc,
        &study.models,
        "summary image drawn by radassist",
        &created,
    );
    dataset::with_meta(sc)
}

//! The canonical header: geometry, view, age and identity read from real and derived samples,
//! checked against what the DICOM standard says and what dcmdump shows in the files.

use crate::common;

use common::sample;
use radassist::dicom::{read_header, DecodeLimits, ProjectionView, SpacingSource};

fn header(file: &str) -> radassist::dicom::ImageHeader {
    read_header(&sample(file), &DecodeLimits::default()).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn pixel_spacing_is_patient_spacing() {
    let h = header("siim_chest_pa_jpeg_baseline.dcm");
    let s = h.geometry.patient_spacing.expect("spacing");
    assert_eq!((s.row_mm, s.column_mm), (0.168, 0.168));
    assert_eq!(h.geometry.spacing_source, SpacingSource::PixelSpacing);
    assert_eq!(h.acquisition.view, ProjectionView::Pa);
    assert_eq!(h.acquisition.body_part.as_deref(), Some("CHEST"));
    assert_eq!(
        h.acquisition.patient_age.as_ref().map(|a| a.years),
        Some(62.0)
    );
}

#[test]
fn imager_spacing_is_corrected_by_the_magnification_factor() {
    let h = header("derived/CR-MONO1-10-chest_MAGNIFICATION.dcm");
    let s = h.geometry.patient_spacing.expect("spacing");
    assert!((s.row_mm - 0.2 / 1.1).abs() < 1e-12 && (s.column_mm - 0.2 / 1.1).abs() < 1e-12);
    assert_eq!(h.geometry.detector_spacing.map(|d| d.row_mm), Some(0.2));
    assert_eq!(
        h.geometry.spacing_source,
        SpacingSource::ImagerPixelSpacingCorrectedForMagnification
    );
    assert_eq!(h.acquisition.view, ProjectionView::Ap);
    assert_eq!(h.acquisition.view_source, Some("ViewCodeSequence"));
    let age = h.acquisition.patient_age.expect("age from dates");
    assert!((age.years - 64.0).abs() < 0.01, "{}", age.years);
    assert_eq!(h.identity.study_date.as_deref(), Some("2024-03-15"));
}

#[test]
fn equal_pixel_and_imager_spacing_is_at_the_detector() {
    let h = header("orthanc_Issue44_Monochrome1-Jpeg.dcm");
    assert_eq!(
        h.geometry.spacing_source,
        SpacingSource::ImagerPixelSpacingAtDetector
    );
    assert_eq!(h.pixels.rows, 2446);
    assert_eq!(h.pixels.columns, 2010);
}

#[test]
fn zero_spacing_is_uncalibrated_with_a_warning() {
    let h = header("RG1_J2KI.dcm");
    assert_eq!(h.geometry.spacing_source, SpacingSource::Uncalibrated);
    assert!(h.geometry.patient_spacing.is_none());
    assert!(
        h.warnings.iter().any(|w| w.contains("PixelSpacing")),
        "{:?}",
        h.warnings
    );
    assert_eq!(h.pixels.bits_stored, 15);
    assert_eq!(h.pixels.transfer_syntax_uid, "1.2.840.10008.1.2.4.91");
}

#[test]
fn a_secondary_capture_is_flagged() {
    let h = header("nih_dx_implicit_le.dcm");
    assert!(h.acquisition.secondary_capture);
    assert_eq!(h.acquisition.modality.as_deref(), Some("DX"));
    assert_eq!(h.acquisition.view, ProjectionView::Unknown);
    assert_eq!(h.pixels.transfer_syntax_uid, "1.2.840.10008.1.2");
}

#[test]
fn a_bare_data_set_reads_as_implicit_little_endian() {
    let h = header("CR-MONO1-10-chest.dcm");
    assert_eq!(h.pixels.transfer_syntax_uid, "1.2.840.10008.1.2");
    assert_eq!(
        (
            h.pixels.bits_allocated,
            h.pixels.bits_stored,
            h.pixels.high_bit
        ),
        (16, 10, 9)
    );
    assert!(h.display.inverted);
    assert_eq!(h.display.windows[0].center, 550.0);
    assert_eq!(
        h.identity.sop_instance_uid.as_deref(),
        Some("1.2.392.200036.9125.0.19950720112207")
    );
}

#[test]
fn lookup_tables_and_voi_functions_are_read() {
    use radassist::imaging::lut::{ModalityLut, VoiFunction};
    let h = header("derived/CR-MONO1-10-chest_MODALITY_LUT_SEQUENCE.dcm");
    let ModalityLut::Table(table) = &h.modality_lut else {
        panic!("{:?}", h.modality_lut)
    };
    assert_eq!(
        (table.data.len(), table.first_mapped, table.bits),
        (1024, 0, 16)
    );
    assert_eq!((table.data[0], table.data[1023]), (100, 2146));
    let h = header("derived/CR-MONO1-10-chest_VOI_LUT_SEQUENCE.dcm");
    assert!(h.display.windows.is_empty());
    assert_eq!(h.display.voi_luts[0].bits, 12);
    let h = header("derived/CR-MONO1-10-chest_VOI_SIGMOID.dcm");
    assert_eq!(h.display.windows[0].function, VoiFunction::Sigmoid);
    let h = header("derived/CR-MONO1-10-chest_SIGNED.dcm");
    assert!(h.pixels.signed);
}

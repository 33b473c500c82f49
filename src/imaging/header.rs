//! The canonical header of a radiograph: everything but the pixels, in the standard's terms
//! (identity, acquisition, geometry, pixel encoding, Modality LUT, display attributes). The
//! types hold no DICOM: [`crate::dicom`] fills them from an instance.

use super::lut::{LookupTable, ModalityLut, Window};
use serde::{Deserialize, Serialize};

/// Who and what the image belongs to.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Identity {
    /// Patient's Name as the header holds it (PN: family^given^middle^prefix^suffix).
    pub patient_name: Option<String>,
    pub patient_id: Option<String>,
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub sop_class_uid: Option<String>,
    pub accession_number: Option<String>,
    /// Study Date as YYYY-MM-DD.
    pub study_date: Option<String>,
    /// Study Time as HH:MM:SS(.ffffff).
    pub study_time: Option<String>,
}

/// The projection of a radiograph: View Position, else the View Code Sequence.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProjectionView {
    Pa,
    Ap,
    /// Left lateral.
    Ll,
    /// Right lateral.
    Rl,
    /// Another projection (oblique, decubitus, ...), as the header spells it.
    Other(String),
    Unknown,
}

impl ProjectionView {
    /// The view a View Position (0018,5101) value names (a non-empty one).
    pub fn from_view_position(position: &str) -> ProjectionView {
        match position.trim().to_ascii_uppercase().as_str() {
            "PA" => ProjectionView::Pa,
            "AP" => ProjectionView::Ap,
            "LL" | "LLAT" => ProjectionView::Ll,
            "RL" | "RLAT" => ProjectionView::Rl,
            other => ProjectionView::Other(other.to_string()),
        }
    }
}

/// The patient's age at the study.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Age {
    pub years: f64,
    /// "PatientAge" or "PatientBirthDate and StudyDate".
    pub source: &'static str,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Acquisition {
    pub modality: Option<String>,
    /// A secondary capture (scanned or exported image), accepted for chest but flagged.
    pub secondary_capture: bool,
    pub body_part: Option<String>,
    pub view: ProjectionView,
    /// Which attribute gave the view: "ViewPosition", "ViewCodeSequence" or none.
    pub view_source: Option<&'static str>,
    pub laterality: Option<String>,
    pub patient_orientation: Vec<String>,
    pub patient_age: Option<Age>,
    pub patient_sex: Option<String>,
    /// The clinical indication of the order: Reason for the Requested Procedure, else Reason
    /// for Study, else Admitting Diagnoses Description (what a report pack's prompt is given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indication: Option<String>,
}

impl Acquisition {
    /// From Patient Orientation: +1 when the column index grows towards the patient's left,
    /// -1 towards the right; None when missing or unreadable.
    pub fn left_sign(&self) -> Option<f64> {
        orientation_sign(self.patient_orientation.first(), 'L', 'R')
    }

    /// From Patient Orientation: +1 when the row index grows towards the feet, -1 towards the
    /// head; None when missing or unreadable.
    pub fn feet_sign(&self) -> Option<f64> {
        orientation_sign(self.patient_orientation.get(1), 'F', 'H')
    }
}

/// The first letter of a Patient Orientation value is its main direction ("LF": left, tilted
/// to the feet).
fn orientation_sign(value: Option<&String>, plus: char, minus: char) -> Option<f64> {
    match value?.trim().chars().next()? {
        c if c == plus => Some(1.0),
        c if c == minus => Some(-1.0),
        _ => None,
    }
}

/// Distance between pixel centres in mm: between rows (vertical) and between columns.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Spacing {
    pub row_mm: f64,
    pub column_mm: f64,
}

/// Where the patient-plane spacing came from (PS3.3 10.7.1.3).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SpacingSource {
    /// Pixel Spacing, calibrated to the patient (or the only spacing given).
    PixelSpacing,
    /// Imager Pixel Spacing divided by Estimated Radiographic Magnification Factor.
    ImagerPixelSpacingCorrectedForMagnification,
    /// Imager Pixel Spacing with no magnification factor: the detector plane, so distances in
    /// the patient are overestimated by the (unknown) magnification, typically 5-15 %.
    ImagerPixelSpacingAtDetector,
    /// No usable spacing: measurements are uncalibrated (pixels only).
    Uncalibrated,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Geometry {
    /// Spacing at the patient plane, used for every measurement.
    pub patient_spacing: Option<Spacing>,
    /// Imager Pixel Spacing: spacing at the detector.
    pub detector_spacing: Option<Spacing>,
    pub spacing_source: SpacingSource,
    pub magnification_factor: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub enum Photometric {
    #[serde(rename = "MONOCHROME1")]
    Monochrome1,
    #[serde(rename = "MONOCHROME2")]
    Monochrome2,
}

/// How the pixel data is encoded.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PixelEncoding {
    pub transfer_syntax_uid: String,
    pub transfer_syntax: String,
    pub photometric_interpretation: Photometric,
    pub rows: u32,
    pub columns: u32,
    pub number_of_frames: u32,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub high_bit: u16,
    pub signed: bool,
}

/// Pixel Padding Value and Pixel Padding Range Limit, in stored values (inclusive range).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct PixelPadding {
    pub low: i32,
    pub high: i32,
}

/// What the display pipeline needs, as the header states it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DisplayAttributes {
    /// Valid windows in header order (Window Center/Width pairs with the VOI LUT Function).
    pub windows: Vec<Window>,
    pub voi_luts: Vec<LookupTable>,
    /// Presentation LUT Shape, when present: "IDENTITY" or "INVERSE".
    pub presentation_lut_shape: Option<String>,
    /// Whether low values display bright: MONOCHROME1, or MONOCHROME2 with an INVERSE
    /// Presentation LUT Shape. (MONOCHROME1 with INVERSE is one inversion, PS3.3 C.8.11.6.1.2.)
    pub inverted: bool,
}

/// Everything about a radiograph but its pixel values.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ImageHeader {
    pub identity: Identity,
    pub acquisition: Acquisition,
    pub geometry: Geometry,
    pub pixels: PixelEncoding,
    pub modality_lut: ModalityLut,
    pub display: DisplayAttributes,
    pub padding: Option<PixelPadding>,
    /// Things in the header that were odd but not fatal (ignored windows, zero spacing, ...).
    pub warnings: Vec<String>,
}

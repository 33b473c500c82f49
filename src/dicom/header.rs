//! Reading the canonical header of a radiograph ([`crate::imaging::header`]) from a DICOM
//! instance.
//!
//! [`ImageHeader::from_instance`] reads identity, acquisition (modality, view, laterality, body
//! part, age), geometry (pixel spacing at the detector and at the patient, and which attribute it
//! came from), the pixel encoding, the Modality LUT and the display attributes (windows, VOI LUTs,
//! Presentation LUT Shape, pixel padding). It checks what later stages rely on, so a header that
//! cannot describe a greyscale radiograph is refused here, before any pixel is decoded.

use super::attributes::{invalid, missing, Attributes};
use super::DecodeError;
use crate::dicom::DicomInstance;
use crate::imaging::lut::{LookupTable, ModalityLut, VoiFunction, Window};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

pub use crate::imaging::header::*;

const SECONDARY_CAPTURE_PREFIX: &str = "1.2.840.10008.5.1.4.1.1.7";

impl ImageHeader {
    pub fn from_instance(instance: &DicomInstance) -> Result<Self, DecodeError> {
        let attrs = Attributes(instance);
        let mut warnings = Vec::new();
        let identity = read_identity(attrs);
        if !attrs.has(tags::PIXEL_DATA) {
            return Err(DecodeError::NotAnImage {
                sop_class: identity
                    .sop_class_uid
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
            });
        }
        let ts_uid = instance
            .meta()
            .transfer_syntax()
            .trim_end_matches(['\0', ' '])
            .to_string();
        let pixels = read_pixel_encoding(attrs, ts_uid)?;
        let modality_lut = read_modality_lut(attrs, pixels.signed)?;
        let display = read_display(attrs, &pixels, &modality_lut, &mut warnings)?;
        let padding = read_padding(attrs, &pixels)?;
        let geometry = read_geometry(attrs, &mut warnings)?;
        let acquisition = read_acquisition(attrs, &identity)?;
        Ok(ImageHeader {
            identity,
            acquisition,
            geometry,
            pixels,
            modality_lut,
            display,
            padding,
            warnings,
        })
    }
}

fn read_identity(attrs: Attributes) -> Identity {
    Identity {
        patient_name: attrs.text(tags::PATIENT_NAME),
        patient_id: attrs.text(tags::PATIENT_ID),
        study_instance_uid: attrs.text(tags::STUDY_INSTANCE_UID),
        series_instance_uid: attrs.text(tags::SERIES_INSTANCE_UID),
        sop_instance_uid: attrs.text(tags::SOP_INSTANCE_UID),
        sop_class_uid: attrs.text(tags::SOP_CLASS_UID),
        accession_number: attrs.text(tags::ACCESSION_NUMBER),
        study_date: attrs
            .text(tags::STUDY_DATE)
            .map(|d| iso_date(&d).unwrap_or(d)),
        study_time: attrs.text(tags::STUDY_TIME).map(|t| iso_time(&t)),
    }
}

fn iso_date(da: &str) -> Option<String> {
    let (y, m, d) = parse_da(da)?;
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

fn parse_da(da: &str) -> Option<(i32, u32, u32)> {
    let digits: String = da.chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.len() != 8 {
        return None;
    }
    let y = digits[0..4].parse().ok()?;
    let m = digits[4..6].parse().ok()?;
    let d = digits[6..8].parse().ok()?;
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((y, m, d))
}

fn iso_time(tm: &str) -> String {
    let (main, fraction) = tm.split_once('.').unwrap_or((tm, ""));
    let main: String = main.chars().filter(|c| c.is_ascii_digit()).collect();
    let mut parts: Vec<&str> = Vec::new();
    let mut rest = main.as_str();
    while rest.len() >= 2 && parts.len() < 3 {
        parts.push(&rest[..2]);
        rest = &rest[2..];
    }
    let mut out = parts.join(":");
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    out
}

fn read_pixel_encoding(attrs: Attributes, ts_uid: String) -> Result<PixelEncoding, DecodeError> {
    let transfer_syntax = TransferSyntaxRegistry
        .get(&ts_uid)
        .map(|ts| ts.name().to_string())
        .unwrap_or_else(|| "unknown".into());
    let samples = attrs
        .int("SamplesPerPixel", tags::SAMPLES_PER_PIXEL)?
        .unwrap_or(1);
    let photometric = attrs
        .text(tags::PHOTOMETRIC_INTERPRETATION)
        .ok_or_else(|| {
            missing(
                "PhotometricInterpretation",
                tags::PHOTOMETRIC_INTERPRETATION,
            )
        })?;
    let photometric_interpretation = match photometric.as_str() {
        "MONOCHROME1" => Photometric::Monochrome1,
        "MONOCHROME2" => Photometric::Monochrome2,
        other => return Err(DecodeError::NotMonochrome(other.to_string())),
    };
    if samples != 1 {
        return Err(invalid(
            "SamplesPerPixel",
            tags::SAMPLES_PER_PIXEL,
            samples.to_string(),
            "a greyscale radiograph has one sample per pixel",
        ));
    }
    let rows = attrs.required_u16("Rows", tags::ROWS)?;
    let columns = attrs.required_u16("Columns", tags::COLUMNS)?;
    for (name, tag, value) in [
        ("Rows", tags::ROWS, rows),
        ("Columns", tags::COLUMNS, columns),
    ] {
        if value == 0 {
            return Err(invalid(name, tag, "0", "an image needs at least one pixel"));
        }
    }
    let bits_allocated = attrs.required_u16("BitsAllocated", tags::BITS_ALLOCATED)?;
    if ![8, 16, 32].contains(&bits_allocated) {
        return Err(invalid(
            "BitsAllocated",
            tags::BITS_ALLOCATED,
            bits_allocated.to_string(),
            "radassist decodes 8, 16 or 32 bits allocated",
        ));
    }
    let bits_stored = attrs.required_u16("BitsStored", tags::BITS_STORED)?;
    if bits_stored == 0 || bits_stored > bits_allocated {
        return Err(invalid(
            "BitsStored",
            tags::BITS_STORED,
            bits_stored.to_string(),
            format!("must be between 1 and Bits Allocated ({bits_allocated})"),
        ));
    }
    let high_bit = match attrs.int("HighBit", tags::HIGH_BIT)? {
        Some(h) if h >= i64::from(bits_stored) - 1 && h < i64::from(bits_allocated) => h as u16,
        Some(h) => {
            return Err(invalid(
                "HighBit",
                tags::HIGH_BIT,
                h.to_string(),
                format!(
                    "must lie between Bits Stored - 1 ({}) and Bits Allocated - 1 ({})",
                    bits_stored - 1,
                    bits_allocated - 1
                ),
            ))
        }
        None => bits_stored - 1,
    };
    let signed = match attrs.int("PixelRepresentation", tags::PIXEL_REPRESENTATION)? {
        Some(0) | None => false,
        Some(1) => true,
        Some(other) => {
            return Err(invalid(
                "PixelRepresentation",
                tags::PIXEL_REPRESENTATION,
                other.to_string(),
                "must be 0 (unsigned) or 1 (two's complement)",
            ))
        }
    };
    let frames = match attrs.text(tags::NUMBER_OF_FRAMES) {
        None => 1,
        Some(text) => text.parse::<u32>().map_err(|_| {
            invalid(
                "NumberOfFrames",
                tags::NUMBER_OF_FRAMES,
                text.clone(),
                "not a whole number",
            )
        })?,
    };
    Ok(PixelEncoding {
        transfer_syntax_uid: ts_uid,
        transfer_syntax,
        photometric_interpretation,
        rows: rows.into(),
        columns: columns.into(),
        number_of_frames: frames,
        bits_allocated,
        bits_stored,
        high_bit,
        signed,
    })
}

/// Reads a LUT Descriptor and LUT Data pair from a sequence item.
fn read_lut(
    item: Attributes,
    name: &'static str,
    explanation: Tag,
    signed_input: bool,
) -> Result<LookupTable, DecodeError> {
    let descriptor = attrs_ints(item, "LUTDescriptor", tags::LUT_DESCRIPTOR)?;
    if descriptor.len() != 3 {
        return Err(invalid(
            name,
            tags::LUT_DESCRIPTOR,
            format!("{descriptor:?}"),
            "a LUT Descriptor has three values",
        ));
    }
    let entries = if descriptor[0] == 0 {
        65536
    } else {
        descriptor[0] as usize
    };
    let mut first_mapped = descriptor[1];
    if signed_input && first_mapped > 32767 {
        first_mapped -= 65536;
    }
    let bits = descriptor[2];
    if !(1..=16).contains(&bits) {
        return Err(invalid(
            name,
            tags::LUT_DESCRIPTOR,
            format!("{descriptor:?}"),
            "LUT entries must have 1 to 16 bits",
        ));
    }
    let data: Vec<u16> = attrs_ints(item, "LUTData", tags::LUT_DATA)?
        .into_iter()
        .map(|v| v as u16)
        .collect();
    if data.len() != entries {
        return Err(invalid(
            name,
            tags::LUT_DATA,
            format!("{} entries", data.len()),
            format!("the LUT Descriptor promises {entries} entries"),
        ));
    }
    Ok(LookupTable {
        first_mapped,
        bits: bits as u8,
        data,
        explanation: item.text(explanation),
    })
}

fn attrs_ints(item: Attributes, name: &'static str, tag: Tag) -> Result<Vec<i64>, DecodeError> {
    item.ints(name, tag)?.ok_or_else(|| missing(name, tag))
}

fn read_modality_lut(attrs: Attributes, signed: bool) -> Result<ModalityLut, DecodeError> {
    if let Some(item) = attrs.items(tags::MODALITY_LUT_SEQUENCE).first() {
        let table = read_lut(
            Attributes(item),
            "ModalityLUTSequence",
            tags::LUT_EXPLANATION,
            signed,
        )?;
        return Ok(ModalityLut::Table(table));
    }
    let slope = attrs
        .float("RescaleSlope", tags::RESCALE_SLOPE)?
        .unwrap_or(1.0);
    let intercept = attrs
        .float("RescaleIntercept", tags::RESCALE_INTERCEPT)?
        .unwrap_or(0.0);
    if slope == 0.0 {
        return Err(invalid(
            "RescaleSlope",
            tags::RESCALE_SLOPE,
            "0",
            "a slope of zero would erase the image",
        ));
    }
    Ok(ModalityLut::Rescale { slope, intercept })
}

fn read_display(
    attrs: Attributes,
    pixels: &PixelEncoding,
    modality_lut: &ModalityLut,
    warnings: &mut Vec<String>,
) -> Result<DisplayAttributes, DecodeError> {
    let function = match attrs.text(tags::VOILUT_FUNCTION).as_deref() {
        None | Some("LINEAR") => VoiFunction::Linear,
        Some("LINEAR_EXACT") => VoiFunction::LinearExact,
        Some("SIGMOID") => VoiFunction::Sigmoid,
        Some(other) => {
            warnings.push(format!("unknown VOI LUT Function {other:?}: LINEAR used"));
            VoiFunction::Linear
        }
    };
    let centers = attrs
        .floats("WindowCenter", tags::WINDOW_CENTER)?
        .unwrap_or_default();
    let widths = attrs
        .floats("WindowWidth", tags::WINDOW_WIDTH)?
        .unwrap_or_default();
    if centers.len() != widths.len() {
        warnings.push(format!(
            "{} window centres but {} widths: extra values ignored",
            centers.len(),
            widths.len()
        ));
    }
    let explanations = attrs.texts(tags::WINDOW_CENTER_WIDTH_EXPLANATION);
    let mut windows = Vec::new();
    for (i, (&center, &width)) in centers.iter().zip(&widths).enumerate() {
        let window = Window {
            center,
            width,
            function,
            explanation: explanations.get(i).cloned(),
        };
        if window.is_valid() {
            windows.push(window);
        } else {
            warnings.push(format!(
                "window {} (centre {center}, width {width}) has an invalid \
                width for {function:?}: ignored",
                i + 1
            ));
        }
    }
    let mut voi_luts = Vec::new();
    for item in attrs.items(tags::VOILUT_SEQUENCE) {
        // VOI LUT input is the modality output, signed when rescaling can make it negative.
        let signed_input = pixels.signed
            || matches!(modality_lut, ModalityLut::Rescale { intercept, .. } if *intercept < 0.0);
        voi_luts.push(read_lut(
            Attributes(item),
            "VOILUTSequence",
            tags::LUT_EXPLANATION,
            signed_input,
        )?);
    }
    let presentation_lut_shape = attrs.text(tags::PRESENTATION_LUT_SHAPE);
    let inverted = match (
        pixels.photometric_interpretation,
        presentation_lut_shape.as_deref(),
    ) {
        (Photometric::Monochrome1, _) => true,
        (Photometric::Monochrome2, Some("INVERSE")) => true,
        (Photometric::Monochrome2, _) => false,
    };
    if let (Photometric::Monochrome1, Some("IDENTITY")) = (
        pixels.photometric_interpretation,
        presentation_lut_shape.as_deref(),
    ) {
        warnings.push(
            "MONOCHROME1 with Presentation LUT Shape IDENTITY: displayed as \
            MONOCHROME1 (inverted)"
                .into(),
        );
    }
    Ok(DisplayAttributes {
        windows,
        voi_luts,
        presentation_lut_shape,
        inverted,
    })
}

fn read_padding(
    attrs: Attributes,
    pixels: &PixelEncoding,
) -> Result<Option<PixelPadding>, DecodeError> {
    // Padding values are in the stored-value space, US or SS as Pixel Representation says.
    let as_stored = |v: i64| if pixels.signed && v > 32767 { v - 65536 } else { v } as i32;
    let Some(value) = attrs.int("PixelPaddingValue", tags::PIXEL_PADDING_VALUE)? else {
        return Ok(None);
    };
    let value = as_stored(value);
    let limit = attrs
        .int("PixelPaddingRangeLimit", tags::PIXEL_PADDING_RANGE_LIMIT)?
        .map(as_stored)
        .unwrap_or(value);
    Ok(Some(PixelPadding {
        low: value.min(limit),
        high: value.max(limit),
    }))
}

fn read_spacing(
    attrs: Attributes,
    name: &'static str,
    tag: Tag,
    warnings: &mut Vec<String>,
) -> Result<Option<Spacing>, DecodeError> {
    let Some(values) = attrs.floats(name, tag)? else {
        return Ok(None);
    };
    match values[..] {
        [row, column] if row > 0.0 && column > 0.0 => Ok(Some(Spacing {
            row_mm: row,
            column_mm: column,
        })),
        _ => {
            warnings.push(format!(
                "{name} {values:?} is not two positive numbers: ignored"
            ));
            Ok(None)
        }
    }
}

/// PS3.3 10.7.1.3: Pixel Spacing differing from Imager Pixel Spacing (or stated as calibrated)
/// is at the patient; otherwise the detector spacing is corrected by the magnification factor
/// when one is given.
fn read_geometry(attrs: Attributes, warnings: &mut Vec<String>) -> Result<Geometry, DecodeError> {
    let pixel = read_spacing(attrs, "PixelSpacing", tags::PIXEL_SPACING, warnings)?;
    let imager = read_spacing(
        attrs,
        "ImagerPixelSpacing",
        tags::IMAGER_PIXEL_SPACING,
        warnings,
    )?;
    let magnification = attrs
        .float(
            "EstimatedRadiographicMagnificationFactor",
            tags::ESTIMATED_RADIOGRAPHIC_MAGNIFICATION_FACTOR,
        )?
        .filter(|m| {
            let ok = *m >= 1.0 && *m < 3.0;
            if !ok {
                warnings.push(format!(
                    "Estimated Radiographic Magnification Factor {m} is \
                    outside 1..3: ignored"
                ));
            }
            ok
        });
    let calibrated = attrs.has(tags::PIXEL_SPACING_CALIBRATION_TYPE);
    let (patient_spacing, spacing_source) = match (pixel, imager, magnification) {
        (Some(p), Some(i), _) if calibrated || p != i => (Some(p), SpacingSource::PixelSpacing),
        (Some(p), None, _) => (Some(p), SpacingSource::PixelSpacing),
        (_, Some(i), Some(m)) => (
            Some(Spacing {
                row_mm: i.row_mm / m,
                column_mm: i.column_mm / m,
            }),
            SpacingSource::ImagerPixelSpacingCorrectedForMagnification,
        ),
        (_, Some(i), None) => (Some(i), SpacingSource::ImagerPixelSpacingAtDetector),
        (None, None, _) => (None, SpacingSource::Uncalibrated),
    };
    Ok(Geometry {
        patient_spacing,
        detector_spacing: imager,
        spacing_source,
        magnification_factor: magnification,
    })
}

fn read_view(attrs: Attributes) -> (ProjectionView, Option<&'static str>) {
    if let Some(position) = attrs.text(tags::VIEW_POSITION) {
        return (
            ProjectionView::from_view_position(&position),
            Some("ViewPosition"),
        );
    }
    if let Some(item) = attrs.items(tags::VIEW_CODE_SEQUENCE).first() {
        let item = Attributes(item);
        let code = item.text(tags::CODE_VALUE).unwrap_or_default();
        let meaning = item
            .text(tags::CODE_MEANING)
            .unwrap_or_default()
            .to_ascii_lowercase();
        // The SNOMED (SRT) codes of PS3.16 CID 4010; other code sets by their meanings.
        let view = match code.as_str() {
            "R-10214" => ProjectionView::Pa,
            "R-10206" => ProjectionView::Ap,
            "R-10236" => ProjectionView::Ll,
            "R-10232" => ProjectionView::Rl,
            _ if meaning.contains("postero-anterior") || meaning == "pa" => ProjectionView::Pa,
            _ if meaning.contains("antero-posterior") || meaning == "ap" => ProjectionView::Ap,
            _ if meaning.contains("left lateral") => ProjectionView::Ll,
            _ if meaning.contains("right lateral") => ProjectionView::Rl,
            _ if meaning.is_empty() => ProjectionView::Other(code),
            _ => ProjectionView::Other(meaning),
        };
        return (view, Some("ViewCodeSequence"));
    }
    (ProjectionView::Unknown, None)
}

/// Patient Age (nnnD/W/M/Y), else the difference of Patient Birth Date and Study Date.
fn read_age(attrs: Attributes) -> Option<Age> {
    if let Some(text) = attrs.text(tags::PATIENT_AGE) {
        // A bare number (no unit, which the AS VR requires) is read as years, as exporters mean it.
        let (number, unit) = match text.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
            _ => (text.as_str(), 'Y'),
        };
        if let Ok(n) = number.trim().parse::<f64>() {
            let years = match unit.to_ascii_uppercase() {
                'Y' => Some(n),
                'M' => Some(n / 12.0),
                'W' => Some(n * 7.0 / 365.25),
                'D' => Some(n / 365.25),
                _ => None,
            };
            if let Some(years) = years.filter(|y| (0.0..150.0).contains(y)) {
                return Some(Age {
                    years,
                    source: "PatientAge",
                });
            }
        }
    }
    let birth = parse_da(&attrs.text(tags::PATIENT_BIRTH_DATE)?)?;
    let study = parse_da(&attrs.text(tags::STUDY_DATE)?)?;
    let days =
        |(y, m, d): (i32, u32, u32)| y as f64 * 365.25 + (m as f64 - 1.0) * 30.4375 + d as f64;
    let years = (days(study) - days(birth)) / 365.25;
    (years >= 0.0).then_some(Age {
        years,
        source: "PatientBirthDate and StudyDate",
    })
}

fn read_acquisition(attrs: Attributes, identity: &Identity) -> Result<Acquisition, DecodeError> {
    let (view, view_source) = read_view(attrs);
    Ok(Acquisition {
        modality: attrs.text(tags::MODALITY),
        secondary_capture: identity
            .sop_class_uid
            .as_deref()
            .is_some_and(|uid| uid.starts_with(SECONDARY_CAPTURE_PREFIX)),
        body_part: attrs.text(tags::BODY_PART_EXAMINED),
        view,
        view_source,
        laterality: attrs
            .text(tags::IMAGE_LATERALITY)
            .or_else(|| attrs.text(tags::LATERALITY)),
        patient_orientation: attrs
            .texts(tags::PATIENT_ORIENTATION)
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect(),
        patient_age: read_age(attrs),
        patient_sex: attrs.text(tags::PATIENT_SEX),
        indication: attrs
            .text(tags::REASON_FOR_THE_REQUESTED_PROCEDURE)
            .or_else(|| {
                #[allow(deprecated)] // retired, and still what older modalities send
                attrs.text(tags::REASON_FOR_STUDY)
            })
            .or_else(|| attrs.text(tags::ADMITTING_DIAGNOSES_DESCRIPTION)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_read_as_iso() {
        assert_eq!(iso_date("20240131").as_deref(), Some("2024-01-31"));
        assert_eq!(iso_date("2024.01.31").as_deref(), Some("2024-01-31"));
        assert_eq!(iso_date("2024013"), None);
        assert_eq!(iso_time("153012.25"), "15:30:12.25");
        assert_eq!(iso_time("1530"), "15:30");
    }
}

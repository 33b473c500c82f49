//! The display pipeline: what a radiologist sees, as values in [0, 1].
//!
//! Modality values go through one VOI transform (a window with its VOI LUT Function, a VOI LUT,
//! or, when the header offers neither, a linear window over the image's own range), then through
//! the inversion that MONOCHROME1 or an INVERSE Presentation LUT Shape asks for. Padding pixels
//! display black. Nothing here changes the radiograph: analyses keep the modality values.

use super::lut::{ModalityLut, VoiFunction, VoiTransform, Window};
use super::Radiograph;
use ndarray::{Array2, Zip};

/// Which VOI transform to display with.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum VoiChoice {
    /// The header's first window, else its first VOI LUT, else the image's range.
    #[default]
    Default,
    /// The header's window number `n` (0-based).
    Window(usize),
    /// The header's VOI LUT number `n` (0-based).
    VoiLut(usize),
    /// A window given by the user (LINEAR).
    Explicit { center: f64, width: f64 },
    /// A linear window from the smallest to the largest image value.
    ImageRange,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DisplayError {
    /// `number` counts from 1, as users and the header's explanations do.
    #[error("window {number} was asked for, but the header has {available} valid windows")]
    NoSuchWindow { number: usize, available: usize },
    #[error("VOI LUT {number} was asked for, but the header has {available}")]
    NoSuchVoiLut { number: usize, available: usize },
    #[error("a window width must be at least 1 (got {0})")]
    BadWidth(f64),
}

/// Resolves a [`VoiChoice`] against the radiograph's header.
pub fn choose_voi(radiograph: &Radiograph, choice: &VoiChoice) -> Result<VoiTransform, DisplayError> {
    let display = &radiograph.header.display;
    match choice {
        VoiChoice::Default => Ok(if let Some(window) = display.windows.first() {
            VoiTransform::Window(window.clone())
        } else if let Some(table) = display.voi_luts.first() {
            VoiTransform::Table(table.clone())
        } else {
            image_range_window(radiograph)
        }),
        VoiChoice::Window(index) => display
            .windows
            .get(*index)
            .map(|w| VoiTransform::Window(w.clone()))
            .ok_or(DisplayError::NoSuchWindow { number: index + 1, available: display.windows.len() }),
        VoiChoice::VoiLut(index) => display
            .voi_luts
            .get(*index)
            .map(|t| VoiTransform::Table(t.clone()))
            .ok_or(DisplayError::NoSuchVoiLut { number: index + 1, available: display.voi_luts.len() }),
        VoiChoice::Explicit { center, width } => {
            let window = Window { center: *center, width: *width, function: VoiFunction::Linear, explanation: None };
            if !window.is_valid() {
                return Err(DisplayError::BadWidth(*width));
            }
            Ok(VoiTransform::Window(window))
        }
        VoiChoice::ImageRange => Ok(image_range_window(radiograph)),
    }
}

/// A LINEAR_EXACT window from the smallest to the largest non-padding value, so that the
/// smallest displays at 0 and the largest at 1.
fn image_range_window(radiograph: &Radiograph) -> VoiTransform {
    let fold = |(low, high): (f32, f32), &v: &f32| (low.min(v), high.max(v));
    let (mut low, mut high) = match &radiograph.padding {
        None => radiograph.values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), fold),
        Some(mask) => radiograph
            .values
            .iter()
            .zip(mask)
            .filter(|(_, &padding)| !padding)
            .map(|(v, _)| v)
            .fold((f32::INFINITY, f32::NEG_INFINITY), fold),
    };
    if !low.is_finite() {
        (low, high) = (0.0, 1.0);
    }
    let width = f64::from(high - low).max(1.0);
    VoiTransform::Window(Window {
        center: f64::from(low) + width / 2.0,
        width,
        function: VoiFunction::LinearExact,
        explanation: Some("image range".into()),
    })
}

/// Display values in [0, 1] (0 black, 1 white), rows x columns.
///
/// When the modality values are whole numbers in a range of at most 2^16 (as the header
/// guarantees for integer Rescale Slope and Intercept, or a Modality LUT), each possible value
/// is shaded once into a table and pixels are looked up: the same numbers, computed once per
/// value instead of once per pixel.
pub fn display_values(radiograph: &Radiograph, voi: &VoiTransform) -> Array2<f32> {
    let inverted = radiograph.header.display.inverted;
    let shade = |v: f64| {
        let y = voi.apply(v) as f32;
        if inverted { 1.0 - y } else { y }
    };
    let shaded = match integer_value_range(radiograph) {
        Some((low, high)) => {
            let table: Vec<f32> = (low..=high).map(|v| shade(v as f64)).collect();
            // A value outside the table (a Modality LUT entry beyond its stated bits) is shaded
            // directly.
            radiograph.values.mapv(|v| {
                let index = (v as i64 - low) as usize;
                table.get(index).copied().unwrap_or_else(|| shade(f64::from(v)))
            })
        }
        None => radiograph.values.mapv(|v| shade(f64::from(v))),
    };
    match &radiograph.padding {
        None => shaded,
        Some(mask) => Zip::from(&shaded).and(mask).map_collect(|&y, &padding| if padding { 0.0 } else { y }),
    }
}

/// The range of modality values when the header makes them whole numbers within 2^16 values
/// (and small enough for f32 to hold them exactly).
fn integer_value_range(radiograph: &Radiograph) -> Option<(i64, i64)> {
    let pixels = &radiograph.header.pixels;
    if pixels.bits_stored > 16 {
        return None;
    }
    let (low, high) = match pixels.signed {
        true => (-(1i64 << (pixels.bits_stored - 1)), (1i64 << (pixels.bits_stored - 1)) - 1),
        false => (0, (1i64 << pixels.bits_stored) - 1),
    };
    match &radiograph.header.modality_lut {
        ModalityLut::Rescale { slope, intercept }
            if *slope == 1.0 && intercept.fract() == 0.0 && intercept.abs() <= f64::from(1 << 20) =>
        {
            Some((low + *intercept as i64, high + *intercept as i64))
        }
        ModalityLut::Table(table) => Some((0, (1i64 << table.bits) - 1)),
        _ => None,
    }
}

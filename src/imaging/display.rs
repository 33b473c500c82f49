//! The display pipeline: what a radiologist sees, as values in [0, 1].
//!
//! Modality values go through one VOI transform (a window with its VOI LUT Function, a VOI LUT,
//! or, when the header offers neither, a linear window over the image's own range), then through
//! the inversion that MONOCHROME1 or an INVERSE Presentation LUT Shape asks for. Padding pixels
//! display black. Nothing here changes the radiograph: analyses keep the modality values.

use super::lut::{VoiFunction, VoiTransform, Window};
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
    let (mut low, mut high) = (f32::INFINITY, f32::NEG_INFINITY);
    for ((row, column), &v) in radiograph.values.indexed_iter() {
        if radiograph.is_image(row, column) {
            low = low.min(v);
            high = high.max(v);
        }
    }
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
pub fn display_values(radiograph: &Radiograph, voi: &VoiTransform) -> Array2<f32> {
    let inverted = radiograph.header.display.inverted;
    let shade = |v: f32| {
        let y = voi.apply(f64::from(v)) as f32;
        if inverted { 1.0 - y } else { y }
    };
    match &radiograph.padding {
        None => radiograph.values.mapv(shade),
        Some(mask) => Zip::from(&radiograph.values)
            .and(mask)
            .map_collect(|&v, &padding| if padding { 0.0 } else { shade(v) }),
    }
}

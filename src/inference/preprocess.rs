//! From the canonical radiograph to a model's input tensor, as its manifest's `[image]` says.
//!
//! The display image (VOI applied, MONOCHROME1 inverted: what the radiologist sees, in [0, 1])
//! is fitted to the model's size (stretched, letterboxed or centre-cropped; area averaging when
//! shrinking), replicated to the model's channels and normalised per channel as
//! (value - mean) / std. The placement of the image inside the tensor is kept, so points the
//! model finds can be mapped back to image pixels (and from there to mm).

use crate::imaging::display::{choose_voi, display_values, VoiChoice};
use crate::imaging::resize::resize;
use crate::imaging::Radiograph;
use ndarray::{s, Array2, Array3};
use serde::{Deserialize, Serialize};

/// How the image is fitted into the model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Resize to the input size, aspect ratio not kept.
    Stretch,
    /// Keep the aspect ratio; pad the short side (centred) with `pad_value`.
    Letterbox,
    /// Keep the aspect ratio; fill the input and cut the long side (centred).
    Crop,
}

/// The manifest's `[image]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// The graph input that takes the image, as [batch, channels, rows, columns].
    pub input: String,
    pub rows: usize,
    pub columns: usize,
    pub fit: Fit,
    pub channels: usize,
    /// Per channel (or one for all), applied to display values in [0, 1].
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Display value of letterbox padding (0 is black).
    #[serde(default)]
    pub pad_value: f32,
}

impl ImageSpec {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.rows == 0 || self.columns == 0 || self.channels == 0 {
            return Err("image.rows, image.columns and image.channels must be positive".into());
        }
        for (name, values) in [("mean", &self.mean), ("std", &self.std)] {
            if values.len() != 1 && values.len() != self.channels {
                return Err(format!(
                    "image.{name} needs 1 or {} values, not {}",
                    self.channels,
                    values.len()
                ));
            }
        }
        if self.std.iter().any(|&s| s == 0.0 || !s.is_finite()) {
            return Err("image.std values must be finite and non-zero".into());
        }
        Ok(())
    }
}

/// Where the image landed in the model input: input = (image + 0.5) * scale + offset - 0.5,
/// per axis, in pixels (pixel centres aligned).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Placement {
    pub scale_x: f64,
    pub scale_y: f64,
    pub offset_x: f64,
    pub offset_y: f64,
}

impl Placement {
    /// Model-input pixel coordinates back to image pixel coordinates (column, row).
    pub fn to_image(&self, x: f64, y: f64) -> (f64, f64) {
        (
            (x + 0.5 - self.offset_x) / self.scale_x - 0.5,
            (y + 0.5 - self.offset_y) / self.scale_y - 0.5,
        )
    }

    /// A point on a model output's grid of `grid` (rows, columns) spanning the model input of
    /// `input` (rows, columns), back to image pixel coordinates: grid pixels to model-input
    /// pixels with pixel centres aligned, then to the image. Heatmaps and masks use it.
    pub fn grid_to_image(
        &self,
        input: (usize, usize),
        grid: (usize, usize),
        (x, y): (f64, f64),
    ) -> (f64, f64) {
        let x = (x + 0.5) * input.1 as f64 / grid.1 as f64 - 0.5;
        let y = (y + 0.5) * input.0 as f64 / grid.0 as f64 - 0.5;
        self.to_image(x, y)
    }
}

/// One image ready for the model: [channels, rows, columns], and its placement.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub tensor: Array3<f32>,
    pub placement: Placement,
    /// +1 when the image's rows run towards the patient's feet (the usual hanging, and when
    /// Patient Orientation does not say), -1 towards the head: which end of a mask is up.
    pub feet_sign: f64,
}

/// Prepares a radiograph for a model (the default VOI of its header).
pub fn prepare(radiograph: &Radiograph, spec: &ImageSpec) -> Prepared {
    let voi = choose_voi(radiograph, &VoiChoice::Default).expect("the default VOI always exists");
    let display = display_values(radiograph, &voi);
    Prepared {
        feet_sign: radiograph.header.acquisition.feet_sign().unwrap_or(1.0),
        ..fit_display(&display, spec)
    }
}

/// Fits display values in [0, 1] to the model's input and normalises them.
pub fn fit_display(display: &Array2<f32>, spec: &ImageSpec) -> Prepared {
    let (rows, columns) = display.dim();
    let (h, w) = (spec.rows, spec.columns);
    let (canvas, placement) = match spec.fit {
        Fit::Stretch => (
            resize(display.view(), h, w),
            Placement {
                scale_x: w as f64 / columns as f64,
                scale_y: h as f64 / rows as f64,
                offset_x: 0.0,
                offset_y: 0.0,
            },
        ),
        Fit::Letterbox | Fit::Crop => {
            let (sy, sx) = (h as f64 / rows as f64, w as f64 / columns as f64);
            let scale = if spec.fit == Fit::Letterbox {
                sy.min(sx)
            } else {
                sy.max(sx)
            };
            let fitted_rows = ((rows as f64 * scale).round() as usize).max(1);
            let fitted_columns = ((columns as f64 * scale).round() as usize).max(1);
            let fitted = resize(display.view(), fitted_rows, fitted_columns);
            let placement = |fitted: usize, target: usize, source: usize| {
                let scale = fitted as f64 / source as f64;
                (scale, (target as f64 - fitted as f64) / 2.0)
            };
            let (scale_y, offset_y) = placement(fitted_rows, h, rows);
            let (scale_x, offset_x) = placement(fitted_columns, w, columns);
            let mut canvas = Array2::from_elem((h, w), spec.pad_value);
            // Integer shifts: the fitted image starts at floor(offset) (letterbox) or is cut
            // from floor(-offset) (crop).
            let (top, left) = (offset_y.floor() as isize, offset_x.floor() as isize);
            let rows_in = |start: isize, len: usize, target: usize| {
                let dst_start = start.max(0) as usize;
                let src_start = (-start).max(0) as usize;
                let n = (len - src_start).min(target - dst_start);
                (dst_start, src_start, n)
            };
            let (dr, sr, nr) = rows_in(top, fitted_rows, h);
            let (dc, sc, nc) = rows_in(left, fitted_columns, w);
            canvas
                .slice_mut(s![dr..dr + nr, dc..dc + nc])
                .assign(&fitted.slice(s![sr..sr + nr, sc..sc + nc]));
            (
                canvas,
                Placement {
                    scale_x,
                    scale_y,
                    offset_x: left as f64,
                    offset_y: top as f64,
                },
            )
        }
    };
    let mut tensor = Array3::<f32>::zeros((spec.channels, h, w));
    for (c, mut plane) in tensor.outer_iter_mut().enumerate() {
        let mean = spec.mean[c.min(spec.mean.len() - 1)];
        let std = spec.std[c.min(spec.std.len() - 1)];
        plane.assign(&canvas.mapv(|v| (v - mean) / std));
    }
    Prepared {
        tensor,
        placement,
        feet_sign: 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(fit: Fit, rows: usize, columns: usize) -> ImageSpec {
        ImageSpec {
            input: "x".into(),
            rows,
            columns,
            fit,
            channels: 3,
            mean: vec![0.5],
            std: vec![0.25],
            pad_value: 0.0,
        }
    }

    #[test]
    fn letterbox_centres_the_image_and_maps_points_back() {
        let display = Array2::from_elem((200, 100), 1.0f32);
        let prepared = fit_display(&display, &spec(Fit::Letterbox, 50, 50));
        // 200 x 100 -> 50 x 25, placed at columns 12..37 (offset 12.5 floored).
        assert_eq!(prepared.tensor.dim(), (3, 50, 50));
        assert_eq!(prepared.tensor[(0, 10, 11)], (0.0 - 0.5) / 0.25);
        assert_eq!(prepared.tensor[(2, 10, 12)], (1.0 - 0.5) / 0.25);
        assert_eq!(prepared.tensor[(0, 10, 36)], 2.0);
        assert_eq!(prepared.tensor[(0, 10, 37)], -2.0);
        let p = prepared.placement;
        let (x, y) = p.to_image(12.0 + 12.5 - 0.5, 24.5);
        assert!(
            (x - 49.5).abs() < 1e-9 && (y - 99.5).abs() < 1e-9,
            "{x} {y}"
        );
    }

    #[test]
    fn crop_fills_the_input() {
        let display = Array2::from_shape_fn((100, 200), |(_, c)| c as f32 / 199.0);
        let prepared = fit_display(&display, &spec(Fit::Crop, 50, 50));
        // 100 x 200 -> 50 x 100, columns 25..75 kept: the middle of the gradient.
        assert!(prepared.tensor.iter().all(|v| v.is_finite()));
        let middle = prepared.tensor[(0, 25, 25)] * 0.25 + 0.5;
        assert!((middle - 0.5).abs() < 0.02, "{middle}");
        assert_eq!(prepared.placement.offset_x, -25.0);
    }
}

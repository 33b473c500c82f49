//! The image tasks: `findings` (probabilities per observation), `embedding` (one vector per
//! image), `landmarks` (heatmaps or points to sub-pixel points with confidence, in image
//! pixels) and `segmentation` (masks of named structures, from which `crate::segmentation`
//! derives landmarks).
//!
//! Radiographs are prepared as the pack's `[image]` section says ([`super::preprocess`]),
//! stacked into one batch [N, C, H, W], and run in one call.

use super::manifest::{Structure, Task};
use super::preprocess::{prepare, ImageSpec, Placement, Prepared};
use super::{InferenceError, ModelPack};
use crate::imaging::Radiograph;
use ndarray::{Array2, Array4, ArrayD, ArrayView2, Axis, Ix2, Ix4};
use ort::value::TensorRef;
use serde::{Deserialize, Serialize};

/// A segmentation pack's masks of one image: each named structure's probabilities over the
/// mask's grid (which spans the model's input), and how to map that grid back to the image.
#[derive(Debug, Clone)]
pub struct Masks {
    pub structures: Vec<(Structure, Array2<f32>)>,
    /// A pixel belongs to a structure at this probability and above.
    pub threshold: f32,
    pub placement: Placement,
    /// The model input's (rows, columns).
    pub input: (usize, usize),
    /// +1 when the image's rows run towards the feet ([`Prepared::feet_sign`]).
    pub feet_sign: f64,
    /// The pack, "name version".
    pub model: String,
}

impl Masks {
    /// A point on a mask of `dim` (column, row; pixel centres at whole numbers) in image pixels.
    pub fn to_image(&self, dim: (usize, usize), point: (f64, f64)) -> (f64, f64) {
        self.placement.grid_to_image(self.input, dim, point)
    }
}

/// A pack for one of the image tasks.
pub struct ImageModel {
    pack: ModelPack,
    spec: ImageSpec,
}

/// One observation's probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub label: String,
    pub probability: f32,
}

/// A landmark found on the image: pixel coordinates (column x, row y, sub-pixel) and the
/// model's confidence in it (a heatmap's peak, a detector's score, or for one derived from a
/// mask the structure's mean probability).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Landmark {
    pub name: String,
    pub x: f64,
    pub y: f64,
    pub confidence: f32,
    /// The pack that found it ("name version"; empty in analyses stored before packs were
    /// named per landmark).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// How it was derived from a segmentation pack's masks (or why it could not be: then its
    /// confidence is 0); None for a landmark the model gives directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derivation: Option<String>,
}

fn run_error(e: impl std::fmt::Display) -> InferenceError {
    InferenceError::Run(e.to_string())
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

impl ImageModel {
    pub fn new(pack: ModelPack) -> Result<ImageModel, InferenceError> {
        let manifest = &pack.manifest;
        let pack_error = |reason: String| InferenceError::Pack {
            pack: manifest.name.clone(),
            reason,
        };
        if !matches!(
            manifest.task,
            Task::Findings | Task::Embedding | Task::Landmarks | Task::Segmentation
        ) {
            return Err(pack_error(format!(
                "task {:?} is not an image task",
                manifest.task
            )));
        }
        let spec = manifest
            .image
            .clone()
            .expect("checked when the manifest was read");
        Ok(ImageModel { pack, spec })
    }

    pub fn pack(&self) -> &ModelPack {
        &self.pack
    }

    /// How images must be prepared for this pack.
    pub fn spec(&self) -> &ImageSpec {
        &self.spec
    }

    /// Prepares radiographs for this pack (the caller's thread can do this, off the model's).
    pub fn prepare(&self, radiographs: &[&Radiograph]) -> Vec<Prepared> {
        radiographs.iter().map(|r| prepare(r, &self.spec)).collect()
    }

    /// Runs prepared images as one batch; returns the named output.
    fn run(&mut self, prepared: &[Prepared], output: &str) -> Result<ArrayD<f32>, InferenceError> {
        self.run_with(prepared, output, |values| values.to_owned())
    }

    /// Runs prepared images as one batch; gives `take` a view of the named output (so a large
    /// output is not copied whole).
    fn run_with<T>(
        &mut self,
        prepared: &[Prepared],
        output: &str,
        take: impl FnOnce(ndarray::ArrayViewD<f32>) -> T,
    ) -> Result<T, InferenceError> {
        let (c, h, w) = (self.spec.channels, self.spec.rows, self.spec.columns);
        let mut batch = Array4::<f32>::zeros((prepared.len(), c, h, w));
        for (mut slot, p) in batch.outer_iter_mut().zip(prepared) {
            if p.tensor.dim() != (c, h, w) {
                return Err(run_error(format!(
                    "a prepared image is {:?}, the pack needs {:?}",
                    p.tensor.dim(),
                    (c, h, w)
                )));
            }
            slot.assign(&p.tensor);
        }
        let input = TensorRef::from_array_view(batch.view()).map_err(run_error)?;
        let outputs = self
            .pack
            .session
            .run(ort::inputs![self.spec.input.as_str() => input])
            .map_err(run_error)?;
        let values = outputs[output]
            .try_extract_array::<f32>()
            .map_err(run_error)?;
        Ok(take(values))
    }

    /// The masks of the structures a segmentation pack's manifest names, per prepared image:
    /// probabilities (after the manifest's activation) over the mask's own grid.
    pub fn masks_of(&mut self, prepared: &[Prepared]) -> Result<Vec<Masks>, InferenceError> {
        let spec = self
            .pack
            .manifest
            .segmentation
            .clone()
            .ok_or_else(|| run_error("not a segmentation pack"))?;
        let channels: Vec<(Structure, usize)> = spec
            .structures
            .keys()
            .filter_map(|&s| Some((s, spec.channel_of(s)?)))
            .collect();
        let sigmoid_on = spec.activation == "sigmoid";
        let picked = self.run_with(prepared, &spec.output, |values| {
            let values = values.into_dimensionality::<Ix4>().map_err(run_error)?;
            if values.dim().1 != spec.channels.len() {
                return Err(run_error(format!(
                    "the masks have {} channels, the manifest names {}",
                    values.dim().1,
                    spec.channels.len()
                )));
            }
            Ok::<_, InferenceError>(
                values
                    .outer_iter()
                    .map(|image| {
                        channels
                            .iter()
                            .map(|&(structure, c)| {
                                let plane = image.index_axis(Axis(0), c);
                                let plane = match sigmoid_on {
                                    true => plane.mapv(sigmoid),
                                    false => plane.to_owned(),
                                };
                                (structure, plane)
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect::<Vec<_>>(),
            )
        })??;
        Ok(picked
            .into_iter()
            .zip(prepared)
            .map(|(structures, p)| Masks {
                structures,
                threshold: spec.threshold,
                placement: p.placement,
                input: (self.spec.rows, self.spec.columns),
                feet_sign: p.feet_sign,
                model: self.pack.model_name(),
            })
            .collect())
    }

    /// Probabilities per observation, per image.
    pub fn findings(
        &mut self,
        radiographs: &[&Radiograph],
    ) -> Result<Vec<Vec<Finding>>, InferenceError> {
        let prepared = self.prepare(radiographs);
        self.findings_of(&prepared)
    }

    /// Probabilities per observation, per prepared image.
    pub fn findings_of(
        &mut self,
        prepared: &[Prepared],
    ) -> Result<Vec<Vec<Finding>>, InferenceError> {
        let spec = self
            .pack
            .manifest
            .findings
            .clone()
            .ok_or_else(|| run_error("not a findings pack"))?;
        let values = self.run(prepared, &spec.output)?;
        let values = values.into_dimensionality::<Ix2>().map_err(run_error)?;
        Ok(values
            .outer_iter()
            .map(|row| {
                spec.names
                    .iter()
                    .zip(row.iter())
                    .map(|(label, &v)| Finding {
                        label: label.clone(),
                        probability: if spec.activation == "sigmoid" {
                            sigmoid(v)
                        } else {
                            v
                        },
                    })
                    .collect()
            })
            .collect())
    }

    /// One embedding per image (rows).
    pub fn embeddings(
        &mut self,
        radiographs: &[&Radiograph],
    ) -> Result<Array2<f32>, InferenceError> {
        let prepared = self.prepare(radiographs);
        self.embeddings_of(&prepared)
    }

    /// One embedding per prepared image (rows).
    pub fn embeddings_of(&mut self, prepared: &[Prepared]) -> Result<Array2<f32>, InferenceError> {
        let spec = self
            .pack
            .manifest
            .embedding
            .clone()
            .ok_or_else(|| run_error("not an embedding pack"))?;
        let values = self.run(prepared, &spec.output)?;
        values.into_dimensionality::<Ix2>().map_err(run_error)
    }

    /// The landmarks on each image, in image pixel coordinates.
    pub fn landmarks(
        &mut self,
        radiographs: &[&Radiograph],
    ) -> Result<Vec<Vec<Landmark>>, InferenceError> {
        let prepared = self.prepare(radiographs);
        self.landmarks_of(&prepared)
    }

    /// The landmarks on each prepared image, in image pixel coordinates.
    pub fn landmarks_of(
        &mut self,
        prepared: &[Prepared],
    ) -> Result<Vec<Vec<Landmark>>, InferenceError> {
        let spec = self
            .pack
            .manifest
            .landmarks
            .clone()
            .ok_or_else(|| run_error("not a landmarks pack"))?;
        let values = self.run(prepared, &spec.output)?;
        let placements: Vec<Placement> = prepared.iter().map(|p| p.placement).collect();
        let model = self.pack.model_name();
        let activate = |v: f32| {
            if spec.activation == "sigmoid" {
                sigmoid(v)
            } else {
                v
            }
        };
        if spec.form.as_deref() == Some("points") {
            // [N, L, 3]: x, y in model-input pixels and a confidence.
            let points = values
                .into_dimensionality::<ndarray::Ix3>()
                .map_err(run_error)?;
            if points.dim().2 != 3 {
                return Err(run_error(format!(
                    "points output has {} values per landmark, not 3",
                    points.dim().2
                )));
            }
            return Ok(points
                .outer_iter()
                .zip(&placements)
                .map(|(found, placement)| {
                    spec.names
                        .iter()
                        .zip(found.outer_iter())
                        .map(|(name, p)| {
                            let (x, y) = placement.to_image(f64::from(p[0]), f64::from(p[1]));
                            Landmark {
                                name: name.clone(),
                                x,
                                y,
                                confidence: activate(p[2]),
                                model: model.clone(),
                                derivation: None,
                            }
                        })
                        .collect()
                })
                .collect());
        }
        let heatmaps = values.into_dimensionality::<Ix4>().map_err(run_error)?;
        let input = (self.spec.rows, self.spec.columns);
        Ok(heatmaps
            .outer_iter()
            .zip(&placements)
            .map(|(maps, placement)| {
                spec.names
                    .iter()
                    .zip(maps.axis_iter(Axis(0)))
                    .map(|(name, map)| {
                        let (hx, hy, peak) = subpixel_peak(map);
                        let (x, y) = placement.grid_to_image(input, map.dim(), (hx, hy));
                        Landmark {
                            name: name.clone(),
                            x,
                            y,
                            confidence: activate(peak),
                            model: model.clone(),
                            derivation: None,
                        }
                    })
                    .collect()
            })
            .collect())
    }
}

/// The heatmap's maximum, refined to sub-pixel precision by a parabola through the peak and its
/// neighbours along each axis (offset clamped to half a pixel): (column, row, peak value).
pub fn subpixel_peak(map: ArrayView2<f32>) -> (f64, f64, f32) {
    let (h, w) = map.dim();
    let (mut best, mut at) = (f32::NEG_INFINITY, (0, 0));
    for ((r, c), &v) in map.indexed_iter() {
        if v > best {
            best = v;
            at = (r, c);
        }
    }
    let (r, c) = at;
    let refine = |before: Option<f32>, peak: f32, after: Option<f32>| -> f64 {
        match (before, after) {
            (Some(a), Some(b)) => {
                let curvature = f64::from(a) - 2.0 * f64::from(peak) + f64::from(b);
                if curvature < 0.0 {
                    (0.5 * (f64::from(a) - f64::from(b)) / curvature).clamp(-0.5, 0.5)
                } else {
                    0.0
                }
            }
            _ => 0.0,
        }
    };
    let dx = refine(
        (c > 0).then(|| map[(r, c - 1)]),
        best,
        (c + 1 < w).then(|| map[(r, c + 1)]),
    );
    let dy = refine(
        (r > 0).then(|| map[(r - 1, c)]),
        best,
        (r + 1 < h).then(|| map[(r + 1, c)]),
    );
    (c as f64 + dx, r as f64 + dy, best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parabolic_peak_is_found_between_pixels() {
        // Samples of -(x - 3.3)^2 - (y - 1.8)^2: the vertex is at (3.3, 1.8).
        let map = Array2::from_shape_fn((5, 8), |(r, c)| {
            -((c as f32 - 3.3).powi(2)) - (r as f32 - 1.8).powi(2)
        });
        let (x, y, _) = subpixel_peak(map.view());
        assert!((x - 3.3).abs() < 1e-5 && (y - 1.8).abs() < 1e-5, "{x} {y}");
    }

    #[test]
    fn a_peak_on_the_border_is_not_refined() {
        let map = Array2::from_shape_fn((3, 3), |(r, c)| (r + c) as f32);
        assert_eq!(subpixel_peak(map.view()), (2.0, 2.0, 4.0));
    }
}

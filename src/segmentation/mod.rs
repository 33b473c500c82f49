//! Landmarks from a segmentation pack's masks: where the tube and line check gets its
//! references (and device tips) when a site's model draws structures rather than points.
//!
//! Each structure the pack's manifest names is first identified: its mask at the pack's
//! threshold must be one dominant part (the largest 8-connected part at least half of the
//! mask), big enough to be the structure and not bigger than the structure can be (a share of
//! the image). An empty mask, scattered noise or a mask flooding the image is not identified,
//! and says why: a reference not identified makes the check "not assessable" with that reason,
//! a device mask with pixels but no structure makes its check "not assessable" (never
//! "absent"), and an empty device mask means no device. Then each landmark is derived, and
//! says how:
//!
//! - carina: the centre of the tracheal bifurcation region; else, from the trachea, the point
//!   where it splits into the main bronchi (the first row, going down, where it runs as two
//!   parts for three rows), or its lower end when the mask stops above the split;
//! - left hemidiaphragm: its dome, the highest point;
//! - cavoatrial junction: the upper border of the right atrium, where the superior vena cava
//!   enters;
//! - a device's tip: the end of its skeleton farthest along its course from where it enters
//!   the field (the skeleton's point nearest the image's edge).
//!
//! "Highest" follows the patient, not the screen: Patient Orientation says which way the rows
//! run ([`Masks::feet_sign`]). A landmark's confidence is the structure's mean probability.

pub mod mask;

use crate::inference::manifest::{Manifest, Structure, Task};
use crate::inference::preprocess::Prepared;
use crate::inference::vision::{ImageModel, Landmark, Masks};
use crate::inference::InferenceError;
use crate::placement::names;
use mask::Pixel;
use ndarray::Array2;

/// The largest part must hold at least this share of a structure's mask.
pub const MIN_DOMINANCE: f64 = 0.5;

/// Rows the trachea must run as two parts to count as split.
const SPLIT_ROWS: usize = 3;

impl Structure {
    /// The landmark derived from the structure.
    pub fn landmark(self) -> &'static str {
        match self {
            Structure::TrachealBifurcation | Structure::Trachea => names::CARINA,
            Structure::LeftHemidiaphragm => names::LEFT_HEMIDIAPHRAGM,
            Structure::RightAtrium => names::CAVOATRIAL_JUNCTION,
            Structure::EndotrachealTube => names::ETT_TIP,
            Structure::EnteralTube => names::NGT_TIP,
            Structure::CentralVenousCatheter => names::CVC_TIP,
            Structure::ChestTube => names::CHEST_TUBE_TIP,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Structure::TrachealBifurcation => "tracheal bifurcation",
            Structure::Trachea => "trachea",
            Structure::LeftHemidiaphragm => "left hemidiaphragm",
            Structure::RightAtrium => "right atrium",
            Structure::EndotrachealTube => "endotracheal tube",
            Structure::EnteralTube => "enteric tube",
            Structure::CentralVenousCatheter => "central venous catheter",
            Structure::ChestTube => "chest tube",
        }
    }

    fn is_device(self) -> bool {
        matches!(
            self,
            Structure::EndotrachealTube
                | Structure::EnteralTube
                | Structure::CentralVenousCatheter
                | Structure::ChestTube
        )
    }

    /// The largest share of the image the structure can cover on a chest film.
    fn max_share_of_image(self) -> f64 {
        match self {
            Structure::TrachealBifurcation => 0.02,
            Structure::Trachea => 0.05,
            Structure::LeftHemidiaphragm | Structure::RightAtrium => 0.15,
            _ => 0.05,
        }
    }
}

/// The landmarks a pack gives: a landmarks pack's names, a segmentation pack's derived ones.
pub fn landmark_names(manifest: &Manifest) -> Vec<String> {
    match (&manifest.landmarks, &manifest.segmentation) {
        (Some(spec), _) if manifest.task == Task::Landmarks => spec.names.clone(),
        (_, Some(spec)) => {
            let mut found: Vec<String> = Vec::new();
            for s in spec.structures.keys() {
                if !found.iter().any(|n| n == s.landmark()) {
                    found.push(s.landmark().to_string());
                }
            }
            found
        }
        _ => Vec::new(),
    }
}

/// The landmarks on each prepared image: a landmarks pack's own, or those derived from a
/// segmentation pack's masks.
pub fn landmarks_of(
    model: &mut ImageModel,
    prepared: &[Prepared],
) -> Result<Vec<Vec<Landmark>>, InferenceError> {
    if model.pack().manifest.task == Task::Segmentation {
        Ok(model.masks_of(prepared)?.iter().map(derive).collect())
    } else {
        model.landmarks_of(prepared)
    }
}

/// A structure identified: its largest part and what it rests on.
struct Identified {
    pixels: Vec<Pixel>,
    dim: (usize, usize),
    confidence: f32,
    /// "1,234 px, 97 % of the mask"
    basis: String,
}

/// The structure's largest part, or why it is not identified (None: the mask is empty).
fn identify(
    structure: Structure,
    probabilities: &Array2<f32>,
    threshold: f32,
) -> Result<Identified, Option<String>> {
    let mask = mask::threshold(probabilities.view(), threshold);
    let total = mask.iter().filter(|&&on| on).count();
    if total == 0 {
        return Err(None);
    }
    let dim = mask.dim();
    let image = (dim.0 * dim.1) as f64;
    let share_of_image = total as f64 / image;
    if share_of_image > structure.max_share_of_image() {
        return Err(Some(format!(
            "its mask covers {:.0} % of the image, more than a {} can (at most {:.0} %): not a structure",
            share_of_image * 100.0,
            structure.describe(),
            structure.max_share_of_image() * 100.0
        )));
    }
    let mut parts = mask::parts(&mask);
    let largest = parts.swap_remove(0);
    let dominance = largest.len() as f64 / total as f64;
    let min_pixels = ((image / 20_000.0).ceil() as usize).max(4);
    if dominance < MIN_DOMINANCE {
        return Err(Some(format!(
            "its mask is scattered: the largest of {} parts holds {:.0} % of it (noise, not a structure)",
            parts.len() + 1,
            dominance * 100.0
        )));
    }
    if largest.len() < min_pixels {
        return Err(Some(format!(
            "its mask's largest part is {} px, too small to be the structure (at least {min_pixels} px)",
            largest.len()
        )));
    }
    let confidence = largest.iter().map(|&p| probabilities[p]).sum::<f32>() / largest.len() as f32;
    Ok(Identified {
        basis: format!(
            "{} px, {:.0} % of the mask",
            largest.len(),
            dominance * 100.0
        ),
        pixels: largest,
        dim,
        confidence,
    })
}

/// The centre (column, row) of `pixels`.
fn centre(pixels: &[Pixel]) -> (f64, f64) {
    let n = pixels.len() as f64;
    let (r, c) = pixels.iter().fold((0.0, 0.0), |(r, c), &(pr, pc)| {
        (r + pr as f64, c + pc as f64)
    });
    (c / n, r / n)
}

/// The most cranial row of `pixels` and the centre of its pixels there (column, row).
fn highest(pixels: &[Pixel], feet_sign: f64) -> (f64, f64) {
    let row = if feet_sign >= 0.0 {
        pixels.iter().map(|p| p.0).min()
    } else {
        pixels.iter().map(|p| p.0).max()
    }
    .expect("a structure has pixels");
    let columns: Vec<f64> = pixels
        .iter()
        .filter(|p| p.0 == row)
        .map(|p| p.1 as f64)
        .collect();
    (
        columns.iter().sum::<f64>() / columns.len() as f64,
        row as f64,
    )
}

/// Where the trachea splits (the gap's centre on the first split row), else its lower end.
fn carina_from_trachea(found: &Identified, feet_sign: f64) -> ((f64, f64), String) {
    let grid = mask::of_pixels(found.dim, &found.pixels);
    let mut rows: Vec<usize> = found.pixels.iter().map(|p| p.0).collect();
    rows.sort_unstable();
    rows.dedup();
    if feet_sign < 0.0 {
        rows.reverse();
    }
    let split = |r: usize| mask::runs(&grid, r).len() >= 2;
    for (i, &r) in rows.iter().enumerate() {
        if rows.len() >= i + SPLIT_ROWS && rows[i..i + SPLIT_ROWS].iter().all(|&r| split(r)) {
            let runs = mask::runs(&grid, r);
            let (left, right) = (runs[0], runs[runs.len() - 1]);
            let x = (left.1 + right.0) as f64 / 2.0;
            return (
                (x, r as f64),
                "where the trachea mask splits into the main bronchi".into(),
            );
        }
    }
    let lowest: Vec<Pixel> = found
        .pixels
        .iter()
        .filter(|p| p.0 == rows[rows.len() - 1])
        .copied()
        .collect();
    (
        centre(&lowest),
        "the lower end of the trachea mask (it does not reach the split)".into(),
    )
}

/// The end of the device's skeleton farthest along it from where it enters the field.
fn device_tip(found: &Identified) -> ((f64, f64), String) {
    let (h, w) = found.dim;
    let (top, left) = found
        .pixels
        .iter()
        .fold((h, w), |(t, l), &(r, c)| (t.min(r), l.min(c)));
    let (bottom, right) = found
        .pixels
        .iter()
        .fold((0, 0), |(b, g), &(r, c)| (b.max(r), g.max(c)));
    // Thin within the part's box (one pixel of margin), then back to the mask's grid.
    let (top, left) = (top.saturating_sub(1), left.saturating_sub(1));
    let dim = ((bottom + 2).min(h) - top, (right + 2).min(w) - left);
    let local: Vec<Pixel> = found
        .pixels
        .iter()
        .map(|&(r, c)| (r - top, c - left))
        .collect();
    let thin = mask::skeleton(&mask::of_pixels(dim, &local));
    let to_edge = |(r, c): Pixel| {
        let (r, c) = (r + top, c + left);
        r.min(h - 1 - r).min(c).min(w - 1 - c)
    };
    let entry = thin
        .indexed_iter()
        .filter(|(_, &on)| on)
        .map(|(p, _)| p)
        .min_by_key(|&p| (to_edge(p), p));
    let Some(entry) = entry else {
        return (centre(&found.pixels), "the centre of its mask".into());
    };
    let (tip, along) = mask::distances_from(&thin, entry)
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
        .expect("the entry is reached");
    (
        ((tip.1 + left) as f64, (tip.0 + top) as f64),
        format!("the end of its skeleton farthest along its course ({along:.0} px from where it enters the field)"),
    )
}

/// The landmarks derived from one image's masks, each saying how (or why it could not be).
pub fn derive(masks: &Masks) -> Vec<Landmark> {
    let mut found: Vec<Landmark> = Vec::new();
    for (structure, probabilities) in &masks.structures {
        let structure = *structure;
        let name = structure.landmark();
        // A carina from the bifurcation region wins over one from the trachea.
        if found.iter().any(|l| l.name == name && l.confidence > 0.0) {
            continue;
        }
        let what = structure.describe();
        let identified = match identify(structure, probabilities, masks.threshold) {
            Ok(identified) => identified,
            Err(None) if structure.is_device() => continue, // no device
            Err(reason) => {
                let reason = reason.unwrap_or_else(|| "its mask is empty".into());
                found.retain(|l| l.name != name);
                found.push(Landmark {
                    name: name.into(),
                    model: masks.model.clone(),
                    derivation: Some(format!("the {what} is not identified: {reason}")),
                    ..Landmark::default()
                });
                continue;
            }
        };
        let (point, how) = match structure {
            Structure::TrachealBifurcation => (
                centre(&identified.pixels),
                "the centre of the tracheal bifurcation mask".to_string(),
            ),
            Structure::Trachea => carina_from_trachea(&identified, masks.feet_sign),
            Structure::LeftHemidiaphragm => (
                highest(&identified.pixels, masks.feet_sign),
                "the dome (highest point) of the left hemidiaphragm mask".into(),
            ),
            Structure::RightAtrium => (
                highest(&identified.pixels, masks.feet_sign),
                "the upper border of the right atrium mask, where the superior vena cava enters"
                    .into(),
            ),
            _ => device_tip(&identified),
        };
        let (x, y) = masks.to_image(identified.dim, point);
        found.retain(|l| l.name != name);
        found.push(Landmark {
            name: name.into(),
            x,
            y,
            confidence: identified.confidence,
            model: masks.model.clone(),
            derivation: Some(format!("{how} ({})", identified.basis)),
        });
    }
    found
}

#[cfg(test)]
mod tests;

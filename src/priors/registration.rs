//! Aligning a prior radiograph to the current one: intensity-based similarity registration.
//!
//! Both display images are shrunk (area averaging) into a pyramid whose finest level has its
//! longer side at `finest` pixels. At the coarsest level a brute-force search finds the best
//! translation by normalised cross-correlation; then, level by level, Gauss-Newton refines a
//! similarity transform (scale, rotation, translation) together with a linear intensity map
//! (gain and offset, for different exposure and processing), minimising the difference
//! between the current image and the warped prior with Huber weights (iteratively reweighted
//! least squares), so regions that differ (new tubes, the black border of a shifted field)
//! pull less. The result maps a point of the current image to the same anatomy on the prior,
//! in full-resolution pixels, and reports what is left: correlation, residual, overlap.

use crate::imaging::resize::{fit_longest_side, resize};
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

/// current (x, y) -> prior (x, y), in full-resolution pixels:
/// prior = [[a, -b], [b, a]] (current - centre) + translation, with `centre` the current
/// image's centre. a = scale cos(rotation), b = scale sin(rotation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Similarity {
    pub a: f64,
    pub b: f64,
    pub tx: f64,
    pub ty: f64,
    pub centre_x: f64,
    pub centre_y: f64,
}

impl Similarity {
    pub fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        let (u, v) = (x - self.centre_x, y - self.centre_y);
        (
            self.a * u - self.b * v + self.tx,
            self.b * u + self.a * v + self.ty,
        )
    }

    /// prior (x, y) -> current (x, y).
    pub fn invert(&self, x: f64, y: f64) -> (f64, f64) {
        let (p, q) = (x - self.tx, y - self.ty);
        let det = self.a * self.a + self.b * self.b;
        (
            (self.a * p + self.b * q) / det + self.centre_x,
            (-self.b * p + self.a * q) / det + self.centre_y,
        )
    }

    pub fn scale(&self) -> f64 {
        self.a.hypot(self.b)
    }

    pub fn rotation_degrees(&self) -> f64 {
        self.b.atan2(self.a).to_degrees()
    }

    /// Where the current image's centre lies on the prior, minus the centre: the shift.
    pub fn shift(&self) -> (f64, f64) {
        (self.tx - self.centre_x, self.ty - self.centre_y)
    }
}

/// The alignment and how well it fits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registration {
    pub transform: Similarity,
    /// Intensity map fitted with it: current ~ gain * prior + offset (display values).
    pub gain: f64,
    pub offset: f64,
    /// Normalised cross-correlation of the current and aligned prior over their overlap, at
    /// the finest level (1: identical up to gain and offset).
    pub correlation: f64,
    /// Root mean square of the remaining difference, in display units (0 to 1), at the finest
    /// level.
    pub residual_rms: f64,
    /// Fraction of the current image that the aligned prior covers.
    pub overlap: f64,
    /// Gauss-Newton iterations, all levels.
    pub iterations: usize,
    /// Longer side of the finest level, in pixels.
    pub finest_level: usize,
}

/// One level of the pyramid: an image and its full-resolution size.
struct Level {
    image: Array2<f64>,
    /// Pixels whose blurred value and gradient rest on image data only (not on padding).
    valid: Array2<bool>,
    grad_x: Array2<f64>,
    grad_y: Array2<f64>,
    /// Level pixels per full-resolution pixel, per axis.
    fx: f64,
    fy: f64,
}

impl Level {
    fn new(display: ArrayView2<f32>, padding: Option<ArrayView2<bool>>, longest: usize) -> Level {
        let (rows, cols) = display.dim();
        let (r, c) = fit_longest_side(rows, cols, longest.min(rows.max(cols)));
        let small = resize(display, r, c).mapv(f64::from);
        let image = blur(&small);
        let (grad_x, grad_y) = gradients(&image);
        let valid = match padding {
            None => Array2::from_elem((r, c), true),
            Some(padding) => {
                let covered = resize(padding.mapv(|p| if p { 0.0f32 } else { 1.0 }).view(), r, c);
                // Blur and gradient reach two pixels: keep only pixels whose 5x5 neighbourhood
                // is all image.
                Array2::from_shape_fn((r, c), |(y, x)| {
                    (y.saturating_sub(2)..(y + 3).min(r)).all(|yy| {
                        (x.saturating_sub(2)..(x + 3).min(c)).all(|xx| covered[(yy, xx)] >= 0.999)
                    })
                })
            }
        };
        Level {
            image,
            valid,
            grad_x,
            grad_y,
            fx: c as f64 / cols as f64,
            fy: r as f64 / rows as f64,
        }
    }

    fn to_level(&self, x: f64, y: f64) -> (f64, f64) {
        ((x + 0.5) * self.fx - 0.5, (y + 0.5) * self.fy - 0.5)
    }

    fn to_full(&self, x: f64, y: f64) -> (f64, f64) {
        ((x + 0.5) / self.fx - 0.5, (y + 0.5) / self.fy - 0.5)
    }
}

/// A 3x3 binomial blur (so gradients are smooth enough for Gauss-Newton).
fn blur(image: &Array2<f64>) -> Array2<f64> {
    let (h, w) = image.dim();
    let at = |r: isize, c: isize| {
        image[(
            r.clamp(0, h as isize - 1) as usize,
            c.clamp(0, w as isize - 1) as usize,
        )]
    };
    Array2::from_shape_fn((h, w), |(r, c)| {
        let (r, c) = (r as isize, c as isize);
        let k = [1.0, 2.0, 1.0];
        let mut sum = 0.0;
        for (i, ki) in k.iter().enumerate() {
            for (j, kj) in k.iter().enumerate() {
                sum += ki * kj * at(r + i as isize - 1, c + j as isize - 1);
            }
        }
        sum / 16.0
    })
}

fn gradients(image: &Array2<f64>) -> (Array2<f64>, Array2<f64>) {
    let (h, w) = image.dim();
    let gx = Array2::from_shape_fn((h, w), |(r, c)| {
        let (l, rr) = (c.saturating_sub(1), (c + 1).min(w - 1));
        (image[(r, rr)] - image[(r, l)]) / (rr - l).max(1) as f64
    });
    let gy = Array2::from_shape_fn((h, w), |(r, c)| {
        let (u, d) = (r.saturating_sub(1), (r + 1).min(h - 1));
        (image[(d, c)] - image[(u, c)]) / (d - u).max(1) as f64
    });
    (gx, gy)
}

/// Whether a bilinear sample at (x, y) rests on valid pixels only.
fn valid_at(valid: &Array2<bool>, x: f64, y: f64) -> bool {
    let (h, w) = valid.dim();
    if !(x >= 0.0 && y >= 0.0 && x <= (w - 1) as f64 && y <= (h - 1) as f64) {
        return false;
    }
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    valid[(y0, x0)] && valid[(y0, x1)] && valid[(y1, x0)] && valid[(y1, x1)]
}

/// Bilinear sample at (x, y); None outside the image.
fn sample(image: &Array2<f64>, x: f64, y: f64) -> Option<f64> {
    let (h, w) = image.dim();
    if !(x >= 0.0 && y >= 0.0 && x <= (w - 1) as f64 && y <= (h - 1) as f64) {
        return None;
    }
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f64, y - y0 as f64);
    let top = image[(y0, x0)] * (1.0 - fx) + image[(y0, x1)] * fx;
    let bottom = image[(y1, x0)] * (1.0 - fx) + image[(y1, x1)] * fx;
    Some(top * (1.0 - fy) + bottom * fy)
}

/// Samples the prior under the transform for every pixel of a current level: (current value,
/// prior value, full-resolution current coordinates, level coordinates on the prior).
fn paired_samples<'a>(
    current: &'a Level,
    prior: &'a Level,
    t: &'a Similarity,
) -> impl Iterator<Item = (f64, f64, f64, f64, f64, f64)> + 'a {
    current
        .image
        .indexed_iter()
        .filter_map(move |((r, c), &value)| {
            if !current.valid[(r, c)] {
                return None;
            }
            let (x, y) = current.to_full(c as f64, r as f64);
            let (px, py) = t.apply(x, y);
            let (lx, ly) = prior.to_level(px, py);
            if !valid_at(&prior.valid, lx, ly) {
                return None;
            }
            sample(&prior.image, lx, ly).map(|p| (value, p, x, y, lx, ly))
        })
}

/// Normalised cross-correlation and overlap fraction of the current level and the warped
/// prior.
fn correlation(current: &Level, prior: &Level, t: &Similarity) -> (f64, f64) {
    let (mut n, mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (a, b, ..) in paired_samples(current, prior, t) {
        n += 1.0;
        sa += a;
        sb += b;
        saa += a * a;
        sbb += b * b;
        sab += a * b;
    }
    if n < 16.0 {
        return (-1.0, 0.0);
    }
    let cov = sab - sa * sb / n;
    let va = saa - sa * sa / n;
    let vb = sbb - sb * sb / n;
    let ncc = if va > 0.0 && vb > 0.0 {
        cov / (va * vb).sqrt()
    } else {
        0.0
    };
    (ncc, n / current.image.len() as f64)
}

/// Solves the 6x6 system by Gaussian elimination with partial pivoting.
fn solve(mut m: [[f64; 7]; 6]) -> Option<[f64; 6]> {
    for col in 0..6 {
        let pivot = (col..6).max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()))?;
        if m[pivot][col].abs() < 1e-12 {
            return None;
        }
        m.swap(col, pivot);
        let pivot_row = m[col];
        for (row, values) in m.iter_mut().enumerate() {
            if row != col {
                let f = values[col] / pivot_row[col];
                for (v, p) in values.iter_mut().zip(pivot_row).skip(col) {
                    *v -= f * p;
                }
            }
        }
    }
    Some(std::array::from_fn(|i| m[i][6] / m[i][i]))
}

/// One level's Gauss-Newton refinement; returns the iterations used.
fn refine(
    current: &Level,
    prior: &Level,
    t: &mut Similarity,
    gain: &mut f64,
    offset: &mut f64,
) -> usize {
    const MAX_ITERATIONS: usize = 60;
    for iteration in 1..=MAX_ITERATIONS {
        // The samples once; residuals first, for a robust scale (median absolute deviation).
        let samples: Vec<_> = paired_samples(current, prior, t).collect();
        if samples.len() < 64 {
            return iteration;
        }
        let mut abs: Vec<f64> = samples
            .iter()
            .map(|&(c, p, ..)| (*gain * p + *offset - c).abs())
            .collect();
        let mid = abs.len() / 2;
        let mad = *abs.select_nth_unstable_by(mid, f64::total_cmp).1;
        let huber = 1.345 * (1.4826 * mad).max(1e-4);
        let mut normal = [[0.0f64; 7]; 6];
        for &(c, p, x, y, lx, ly) in &samples {
            let r = *gain * p + *offset - c;
            let w = if r.abs() <= huber {
                1.0
            } else {
                huber / r.abs()
            };
            // d prior / d full-resolution prior coordinates.
            let gx = sample(&prior.grad_x, lx, ly).unwrap_or(0.0) * prior.fx;
            let gy = sample(&prior.grad_y, lx, ly).unwrap_or(0.0) * prior.fy;
            let (u, v) = (x - t.centre_x, y - t.centre_y);
            let j = [
                *gain * (gx * u + gy * v),
                *gain * (-gx * v + gy * u),
                *gain * gx,
                *gain * gy,
                p,
                1.0,
            ];
            for i in 0..6 {
                for k in 0..6 {
                    normal[i][k] += w * j[i] * j[k];
                }
                normal[i][6] -= w * j[i] * r;
            }
        }
        let Some(step) = solve(normal) else {
            return iteration;
        };
        t.a += step[0];
        t.b += step[1];
        t.tx += step[2];
        t.ty += step[3];
        *gain += step[4];
        *offset += step[5];
        // Converged when no point of the level moves by more than 1/1000 of a level pixel.
        let reach =
            (current.image.nrows().max(current.image.ncols()) as f64) / current.fx.min(current.fy);
        let movement = (step[0].abs() + step[1].abs()) * reach + step[2].abs().max(step[3].abs());
        if movement * prior.fx.max(prior.fy) < 1e-3 {
            return iteration;
        }
    }
    MAX_ITERATIONS
}

/// A display image and, where some pixels are padding (outside the exposed field, as Pixel
/// Padding Value marks them), the padding mask (true = padding).
#[derive(Clone, Copy)]
pub struct Field<'a> {
    pub display: ArrayView2<'a, f32>,
    pub padding: Option<ArrayView2<'a, bool>>,
}

/// Aligns `prior` to `current`. `initial_scale` is the expected size ratio (current pixel
/// spacing / prior pixel spacing; 1 when unknown).
pub fn register(current: Field, prior: Field, initial_scale: f64, finest: usize) -> Registration {
    let mut sizes = vec![finest.max(32)];
    while *sizes.last().unwrap() > 64 {
        sizes.push(sizes.last().unwrap() / 2);
    }
    sizes.reverse();
    let levels: Vec<(Level, Level)> = sizes
        .iter()
        .map(|&s| {
            (
                Level::new(current.display, current.padding, s),
                Level::new(prior.display, prior.padding, s),
            )
        })
        .collect();
    let (cr, cc) = current.display.dim();
    let (pr, pc) = prior.display.dim();
    let (cx, cy) = ((cc as f64 - 1.0) / 2.0, (cr as f64 - 1.0) / 2.0);
    let mut t = Similarity {
        a: initial_scale,
        b: 0.0,
        tx: (pc as f64 - 1.0) / 2.0,
        ty: (pr as f64 - 1.0) / 2.0,
        centre_x: cx,
        centre_y: cy,
    };
    // Coarsest level: the best translation within a quarter of the image, by correlation.
    let (coarse_current, coarse_prior) = &levels[0];
    let reach = (coarse_current
        .image
        .ncols()
        .max(coarse_current.image.nrows())
        / 4) as i32;
    let mut best = (f64::NEG_INFINITY, t);
    for dy in -reach..=reach {
        for dx in -reach..=reach {
            let mut trial = t;
            trial.tx += f64::from(dx) / coarse_prior.fx;
            trial.ty += f64::from(dy) / coarse_prior.fy;
            let (ncc, overlap) = correlation(coarse_current, coarse_prior, &trial);
            // Prefer real overlap: a sliver of border can correlate well by chance.
            let score = ncc * overlap.min(0.5) * 2.0;
            if score > best.0 {
                best = (score, trial);
            }
        }
    }
    t = best.1;
    let (mut gain, mut offset) = (1.0, 0.0);
    let mut iterations = 0;
    for (current_level, prior_level) in &levels {
        iterations += refine(current_level, prior_level, &mut t, &mut gain, &mut offset);
    }
    let (finest_current, finest_prior) = levels.last().unwrap();
    let (correlation, overlap) = correlation(finest_current, finest_prior, &t);
    let (mut sum, mut n) = (0.0, 0.0);
    for (c, p, ..) in paired_samples(finest_current, finest_prior, &t) {
        sum += (gain * p + offset - c).powi(2);
        n += 1.0;
    }
    Registration {
        transform: t,
        gain,
        offset,
        correlation,
        residual_rms: if n > 0.0 { (sum / n).sqrt() } else { f64::NAN },
        overlap,
        iterations,
        finest_level: finest_current
            .image
            .nrows()
            .max(finest_current.image.ncols()),
    }
}

/// The temporal subtraction image, at the current image's size: current - (gain * aligned
/// prior + offset), in display units; None where the prior does not cover the current image.
pub fn subtraction(
    current: Field,
    prior: Field,
    registration: &Registration,
) -> Array2<Option<f32>> {
    let values = prior.display.mapv(f64::from);
    let valid = match prior.padding {
        Some(padding) => padding.mapv(|p| !p),
        None => Array2::from_elem(values.dim(), true),
    };
    let t = &registration.transform;
    Array2::from_shape_fn(current.display.dim(), |(r, c)| {
        if current.padding.is_some_and(|padding| padding[(r, c)]) {
            return None;
        }
        let (px, py) = t.apply(c as f64, r as f64);
        if !valid_at(&valid, px, py) {
            return None;
        }
        sample(&values, px, py).map(|p| {
            (f64::from(current.display[(r, c)]) - (registration.gain * p + registration.offset))
                as f32
        })
    })
}

/// Warps an image by a similarity (for tests and tools): out(q) = image(t.invert(q)), that is,
/// anatomy at p on `image` lands at t.apply(p) on the output; None outside the source.
pub fn warp(image: ArrayView2<f32>, t: &Similarity) -> Array2<Option<f32>> {
    let source = image.mapv(f64::from);
    Array2::from_shape_fn(image.dim(), |(r, c)| {
        let (x, y) = t.invert(c as f64, r as f64);
        sample(&source, x, y).map(|v| v as f32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_inverts() {
        let t = Similarity {
            a: 1.03 * 0.2f64.cos(),
            b: 1.03 * 0.2f64.sin(),
            tx: 40.0,
            ty: -7.0,
            centre_x: 10.0,
            centre_y: 20.0,
        };
        let (x, y) = t.apply(123.0, 456.0);
        let (u, v) = t.invert(x, y);
        assert!((u - 123.0).abs() < 1e-9 && (v - 456.0).abs() < 1e-9);
        assert!((t.rotation_degrees() - 0.2f64.to_degrees()).abs() < 1e-9);
        assert!((t.scale() - 1.03).abs() < 1e-12);
    }

    #[test]
    fn a_smooth_synthetic_image_is_realigned() {
        let image = Array2::from_shape_fn((200, 240), |(r, c)| {
            let (x, y) = (c as f32 / 240.0, r as f32 / 200.0);
            0.5 + 0.3 * (9.0 * x).sin() * (7.0 * y).cos()
                + 0.2 * ((x - 0.4).powi(2) + (y - 0.6).powi(2)).sqrt()
        });
        let (cx, cy) = (119.5, 99.5);
        let angle = 2.0f64.to_radians();
        let truth = Similarity {
            a: 1.02 * angle.cos(),
            b: 1.02 * angle.sin(),
            tx: cx + 6.0,
            ty: cy - 4.0,
            centre_x: cx,
            centre_y: cy,
        };
        let warped = warp(image.view(), &truth);
        let moved = warped.mapv(|v| v.unwrap_or(0.0));
        let outside = warped.mapv(|v| v.is_none());
        let found = register(
            Field {
                display: image.view(),
                padding: None,
            },
            Field {
                display: moved.view(),
                padding: Some(outside.view()),
            },
            1.0,
            256,
        );
        let t = found.transform;
        assert!((t.rotation_degrees() - 2.0).abs() < 0.01, "{t:?}");
        assert!((t.scale() - 1.02).abs() < 1e-4, "{t:?}");
        assert!(
            (t.tx - truth.tx).abs() < 0.02 && (t.ty - truth.ty).abs() < 0.02,
            "{t:?}"
        );
        assert!(
            found.residual_rms < 1e-3 && found.correlation > 0.999,
            "{found:?}"
        );
    }
}

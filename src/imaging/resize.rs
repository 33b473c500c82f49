//! Resizing greyscale images: area averaging when shrinking, linear interpolation when
//! enlarging, done separably (columns, then rows).
//!
//! Area averaging gives each output pixel the mean of the source area it covers (as OpenCV's
//! INTER_AREA does), so thin lines and small markers keep their weight instead of vanishing
//! between samples, which matters for tubes, wires and nodules.

use ndarray::{Array2, ArrayView2, Axis};

/// For each output index, the source indices and weights that make it.
fn weights(source: usize, target: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = source as f64 / target as f64;
    (0..target)
        .map(|i| {
            if scale >= 1.0 {
                // Area: the output pixel covers [i * scale, (i + 1) * scale) of the source.
                let (start, end) = (i as f64 * scale, (i as f64 + 1.0) * scale);
                let mut taps = Vec::new();
                let mut s = start.floor() as usize;
                while (s as f64) < end && s < source {
                    let overlap = (end.min(s as f64 + 1.0) - start.max(s as f64)).max(0.0);
                    if overlap > 0.0 {
                        taps.push((s, (overlap / scale) as f32));
                    }
                    s += 1;
                }
                taps
            } else {
                // Linear, pixel centres aligned: x_src = (i + 0.5) * scale - 0.5.
                let x = ((i as f64 + 0.5) * scale - 0.5).clamp(0.0, (source - 1) as f64);
                let left = x.floor() as usize;
                let right = (left + 1).min(source - 1);
                let t = (x - left as f64) as f32;
                if right == left {
                    vec![(left, 1.0)]
                } else {
                    vec![(left, 1.0 - t), (right, t)]
                }
            }
        })
        .collect()
}

/// Resizes `image` to `rows` x `columns`.
pub fn resize(image: ArrayView2<f32>, rows: usize, columns: usize) -> Array2<f32> {
    assert!(rows > 0 && columns > 0, "target size must be positive");
    if image.dim() == (rows, columns) {
        return image.to_owned();
    }
    let column_taps = weights(image.ncols(), columns);
    let mut horizontal = Array2::<f32>::zeros((image.nrows(), columns));
    for (source_row, mut out_row) in image
        .axis_iter(Axis(0))
        .zip(horizontal.axis_iter_mut(Axis(0)))
    {
        for (out, taps) in out_row.iter_mut().zip(&column_taps) {
            *out = taps.iter().map(|&(s, w)| source_row[s] * w).sum();
        }
    }
    let row_taps = weights(image.nrows(), rows);
    let mut result = Array2::<f32>::zeros((rows, columns));
    for (mut out_row, taps) in result.axis_iter_mut(Axis(0)).zip(&row_taps) {
        for &(s, w) in taps {
            out_row.scaled_add(w, &horizontal.row(s));
        }
    }
    result
}

/// The size that fits the longer side to `longest`, keeping the aspect ratio.
pub fn fit_longest_side(rows: usize, columns: usize, longest: usize) -> (usize, usize) {
    let scale = longest as f64 / rows.max(columns) as f64;
    let fit = |n: usize| ((n as f64 * scale).round() as usize).max(1);
    (fit(rows), fit(columns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn halving_averages_each_two_by_two_block() {
        let image = array![[1.0, 3.0, 5.0, 7.0], [1.0, 3.0, 5.0, 7.0]];
        assert_eq!(resize(image.view(), 1, 2), array![[2.0, 6.0]]);
    }

    #[test]
    fn non_integer_shrink_weights_by_overlap() {
        // 3 -> 2: each output covers 1.5 source pixels.
        let image = array![[0.0, 3.0, 6.0]];
        let out = resize(image.view(), 1, 2);
        assert!((out[(0, 0)] - 1.0).abs() < 1e-6); // (0 * 1 + 3 * 0.5) / 1.5
        assert!((out[(0, 1)] - 5.0).abs() < 1e-6); // (3 * 0.5 + 6 * 1) / 1.5
    }

    #[test]
    fn shrinking_preserves_the_mean() {
        let image = Array2::from_shape_fn((97, 131), |(r, c)| ((r * 7 + c * 13) % 17) as f32);
        let out = resize(image.view(), 40, 50);
        let mean = |a: &Array2<f32>| a.sum() / a.len() as f32;
        assert!((mean(&image) - mean(&out)).abs() < 0.3);
    }

    #[test]
    fn enlarging_interpolates_between_neighbours() {
        let image = array![[0.0, 4.0]];
        let out = resize(image.view(), 1, 4);
        assert_eq!(out, array![[0.0, 1.0, 3.0, 4.0]]);
    }

    #[test]
    fn fitting_keeps_aspect() {
        assert_eq!(fit_longest_side(2446, 2010, 512), (512, 421));
    }
}

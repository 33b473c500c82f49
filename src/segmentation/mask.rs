//! A binary mask of one structure and the few operations landmark derivation needs: its
//! 8-connected parts, the largest part's share of the mask (a real structure is one dominant
//! part; noise is many small ones), the rows' runs (where an airway splits into its bronchi),
//! and a one-pixel skeleton with the point farthest along it (where a tube ends).
//!
//! The parts are imageproc's connected components; the thinning and the distance along the
//! skeleton are written here: neither image crate radassist uses has them, and each is a short
//! pass over a boolean grid.

use ndarray::{Array2, ArrayView2};

/// A pixel: (row, column).
pub type Pixel = (usize, usize);

const NEIGHBOURS: [(isize, isize); 8] = [
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, -1),
    (0, 1),
    (1, -1),
    (1, 0),
    (1, 1),
];

fn neighbours(mask: &Array2<bool>, (r, c): Pixel) -> impl Iterator<Item = Pixel> + '_ {
    let (h, w) = mask.dim();
    NEIGHBOURS.iter().filter_map(move |&(dr, dc)| {
        let (nr, nc) = (r.checked_add_signed(dr)?, c.checked_add_signed(dc)?);
        (nr < h && nc < w && mask[(nr, nc)]).then_some((nr, nc))
    })
}

/// The mask of `probabilities` at or above `threshold`.
pub fn threshold(probabilities: ArrayView2<f32>, threshold: f32) -> Array2<bool> {
    probabilities.mapv(|p| p >= threshold)
}

/// The 8-connected parts of `mask`, largest first (ties: the one met first in row order),
/// labelled by imageproc.
pub fn parts(mask: &Array2<bool>) -> Vec<Vec<Pixel>> {
    use imageproc::region_labelling::{connected_components, Connectivity};
    let (h, w) = mask.dim();
    let grey = image::GrayImage::from_fn(w as u32, h as u32, |x, y| {
        image::Luma([u8::from(mask[(y as usize, x as usize)])])
    });
    let labels = connected_components(&grey, Connectivity::Eight, image::Luma([0u8]));
    let mut found: Vec<Vec<Pixel>> = Vec::new();
    let mut index: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for (x, y, label) in labels.enumerate_pixels() {
        let label = label[0];
        if label == 0 {
            continue;
        }
        let at = *index.entry(label).or_insert_with(|| {
            found.push(Vec::new());
            found.len() - 1
        });
        found[at].push((y as usize, x as usize));
    }
    found.sort_by_key(|p| std::cmp::Reverse(p.len()));
    found
}

/// The mask of `pixels` alone, of `dim`.
pub fn of_pixels(dim: (usize, usize), pixels: &[Pixel]) -> Array2<bool> {
    let mut mask = Array2::from_elem(dim, false);
    for &p in pixels {
        mask[p] = true;
    }
    mask
}

/// The runs of set pixels along row `r`: (first column, last column), left to right.
pub fn runs(mask: &Array2<bool>, r: usize) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut start = None;
    for (c, &on) in mask.row(r).iter().enumerate() {
        match (on, start) {
            (true, None) => start = Some(c),
            (false, Some(s)) => {
                found.push((s, c - 1));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        found.push((s, mask.dim().1 - 1));
    }
    found
}

/// Zhang and Suen's thinning (1984): the mask pared to a one-pixel-wide skeleton that keeps
/// its shape's connectivity and ends.
pub fn skeleton(mask: &Array2<bool>) -> Array2<bool> {
    let (h, w) = mask.dim();
    let mut image = mask.clone();
    let at = |image: &Array2<bool>, r: isize, c: isize| -> u8 {
        (r >= 0
            && c >= 0
            && (r as usize) < h
            && (c as usize) < w
            && image[(r as usize, c as usize)]) as u8
    };
    loop {
        let mut changed = false;
        for pass in 0..2 {
            let mut remove = Vec::new();
            for ((r, c), &on) in image.indexed_iter() {
                if !on {
                    continue;
                }
                let (r, c) = (r as isize, c as isize);
                // P2..P9, clockwise from north.
                let p = [
                    at(&image, r - 1, c),
                    at(&image, r - 1, c + 1),
                    at(&image, r, c + 1),
                    at(&image, r + 1, c + 1),
                    at(&image, r + 1, c),
                    at(&image, r + 1, c - 1),
                    at(&image, r, c - 1),
                    at(&image, r - 1, c - 1),
                ];
                let set: u8 = p.iter().sum();
                let transitions = (0..8).filter(|&i| p[i] == 0 && p[(i + 1) % 8] == 1).count();
                let (a, b) = if pass == 0 {
                    (p[0] * p[2] * p[4], p[2] * p[4] * p[6])
                } else {
                    (p[0] * p[2] * p[6], p[0] * p[4] * p[6])
                };
                if (2..=6).contains(&set) && transitions == 1 && a == 0 && b == 0 {
                    remove.push((r as usize, c as usize));
                }
            }
            changed |= !remove.is_empty();
            for p in remove {
                image[p] = false;
            }
        }
        if !changed {
            return image;
        }
    }
}

/// The pixels of `mask` connected to `from`, each with its distance along the mask from it
/// (8-connected steps: 1 straight, √2 diagonal; Dijkstra's order).
pub fn distances_from(mask: &Array2<bool>, from: Pixel) -> Vec<(Pixel, f64)> {
    use std::cmp::Ordering;
    #[derive(PartialEq)]
    struct Step(f64, Pixel);
    impl Eq for Step {}
    impl PartialOrd for Step {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Step {
        fn cmp(&self, other: &Self) -> Ordering {
            other.0.total_cmp(&self.0).then(other.1.cmp(&self.1))
        }
    }
    let mut best = Array2::from_elem(mask.dim(), f64::INFINITY);
    let mut heap = std::collections::BinaryHeap::from([Step(0.0, from)]);
    best[from] = 0.0;
    let mut reached = Vec::new();
    while let Some(Step(d, p)) = heap.pop() {
        if d > best[p] {
            continue;
        }
        reached.push((p, d));
        for n in neighbours(mask, p) {
            let step = if n.0 != p.0 && n.1 != p.1 {
                std::f64::consts::SQRT_2
            } else {
                1.0
            };
            if d + step < best[n] {
                best[n] = d + step;
                heap.push(Step(d + step, n));
            }
        }
    }
    reached
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn parts_are_8_connected_and_largest_first() {
        let mask = array![
            [true, false, false, true],
            [false, true, false, false],
            [false, false, false, true],
            [false, false, false, true]
        ];
        let found = parts(&mask);
        assert_eq!(found.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        assert_eq!(found[0], [(0, 0), (1, 1)]);
    }

    #[test]
    fn runs_name_each_stretch_of_a_row() {
        let mask = array![[true, true, false, true, false, true]];
        assert_eq!(runs(&mask, 0), [(0, 1), (3, 3), (5, 5)]);
    }

    #[test]
    fn a_thick_bar_thins_to_a_line_and_its_far_end_is_found() {
        // A bar 5 pixels thick from column 2 to 27 on rows 10 to 14.
        let mut mask = Array2::from_elem((25, 30), false);
        for r in 10..15 {
            for c in 2..28 {
                mask[(r, c)] = true;
            }
        }
        let thin = skeleton(&mask);
        let pixels: Vec<Pixel> = thin
            .indexed_iter()
            .filter(|(_, &on)| on)
            .map(|(p, _)| p)
            .collect();
        assert!(pixels.iter().all(|&(r, _)| r == 12), "{pixels:?}");
        let (first, last) = (pixels[0], pixels[pixels.len() - 1]);
        let reached = distances_from(&thin, first);
        let far = reached.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        assert_eq!(far.0, last);
        assert!((far.1 - (last.1 - first.1) as f64).abs() < 1e-9);
    }
}

//! The figures of a findings pack's acceptance test, computed as scikit-learn computes them
//! (`roc_auc_score`, `roc_curve`, `calibration_curve`), so that a site's statistician gets the
//! same numbers from the predictions radassist writes: discrimination (AUROC with DeLong's 95 %
//! interval), the operating point at a threshold (sensitivity, specificity, PPV), the threshold
//! that reaches a target sensitivity, and calibration (reliability bins and the expected
//! calibration error).
//!
//! Written here rather than taken from a crate: no maintained Rust crate computes DeLong's
//! interval or matches scikit-learn's ROC and calibration binning exactly, and each is a few
//! lines over sorted scores.

use serde::Serialize;

/// One case: the model's probability and the truth (true: the finding is present).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Case {
    pub score: f64,
    pub positive: bool,
}

/// The two-sided 95 % normal quantile.
const Z_95: f64 = 1.959_963_984_540_054;

/// Midranks (1-based, ties given their average rank) of `values`, in their order.
fn midranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        // Positions i..=j (0-based) share the rank (i + 1 + j + 1) / 2.
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// The area under the ROC curve and DeLong's 95 % interval (clipped to [0, 1]); None when the
/// cases hold only one class (the area is then undefined, as scikit-learn says).
pub fn auroc(cases: &[Case]) -> Option<(f64, f64, f64)> {
    let positives: Vec<f64> = cases
        .iter()
        .filter(|c| c.positive)
        .map(|c| c.score)
        .collect();
    let negatives: Vec<f64> = cases
        .iter()
        .filter(|c| !c.positive)
        .map(|c| c.score)
        .collect();
    let (m, n) = (positives.len(), negatives.len());
    if m == 0 || n == 0 {
        return None;
    }
    let all: Vec<f64> = positives.iter().chain(&negatives).copied().collect();
    let (ranks, ranks_x, ranks_y) = (midranks(&all), midranks(&positives), midranks(&negatives));
    let (mf, nf) = (m as f64, n as f64);
    let sum_x: f64 = ranks[..m].iter().sum();
    let area = (sum_x - mf * (mf + 1.0) / 2.0) / (mf * nf);
    // DeLong (1988), as Sun and Xu's fast form: the structural components from the ranks.
    let v10: Vec<f64> = (0..m).map(|i| (ranks[i] - ranks_x[i]) / nf).collect();
    let v01: Vec<f64> = (0..n)
        .map(|j| 1.0 - (ranks[m + j] - ranks_y[j]) / mf)
        .collect();
    let variance = |v: &[f64]| {
        if v.len() < 2 {
            return 0.0;
        }
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64
    };
    let se = (variance(&v10) / mf + variance(&v01) / nf).sqrt();
    Some((
        area,
        (area - Z_95 * se).max(0.0),
        (area + Z_95 * se).min(1.0),
    ))
}

/// A point of the ROC curve: a threshold and the rates at it (a case is called positive when
/// its score is at or above the threshold).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RocPoint {
    pub threshold: f64,
    pub fpr: f64,
    pub tpr: f64,
}

/// The ROC curve as scikit-learn's `roc_curve(..., drop_intermediate=False)`: one point per
/// distinct score, highest first, after a first point at an infinite threshold (0, 0). Empty
/// when either class is missing.
pub fn roc_curve(cases: &[Case]) -> Vec<RocPoint> {
    let positives = cases.iter().filter(|c| c.positive).count();
    let negatives = cases.len() - positives;
    if positives == 0 || negatives == 0 {
        return Vec::new();
    }
    let mut sorted: Vec<&Case> = cases.iter().collect();
    // Highest score first; equal scores in their given order (a stable sort, as numpy's).
    sorted.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut points = vec![RocPoint {
        threshold: f64::INFINITY,
        fpr: 0.0,
        tpr: 0.0,
    }];
    let (mut tp, mut fp) = (0usize, 0usize);
    for (i, case) in sorted.iter().enumerate() {
        if case.positive {
            tp += 1;
        } else {
            fp += 1;
        }
        let last_of_its_score = sorted
            .get(i + 1)
            .is_none_or(|next| next.score != case.score);
        if last_of_its_score {
            points.push(RocPoint {
                threshold: case.score,
                fpr: fp as f64 / negatives as f64,
                tpr: tp as f64 / positives as f64,
            });
        }
    }
    points
}

/// The operating point at `threshold`: the counts and rates (None where a rate's denominator
/// is zero).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OperatingPoint {
    pub threshold: f64,
    pub true_positives: usize,
    pub false_positives: usize,
    pub true_negatives: usize,
    pub false_negatives: usize,
    pub sensitivity: Option<f64>,
    pub specificity: Option<f64>,
    pub ppv: Option<f64>,
}

/// The cases called at `threshold` (positive at or above it).
pub fn operating_point(cases: &[Case], threshold: f64) -> OperatingPoint {
    let (mut tp, mut fp, mut tn, mut fn_) = (0, 0, 0, 0);
    for case in cases {
        match (case.score >= threshold, case.positive) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fn_ += 1,
        }
    }
    let rate = |a: usize, b: usize| (a + b > 0).then(|| a as f64 / (a + b) as f64);
    OperatingPoint {
        threshold,
        true_positives: tp,
        false_positives: fp,
        true_negatives: tn,
        false_negatives: fn_,
        sensitivity: rate(tp, fn_),
        specificity: rate(tn, fp),
        ppv: rate(tp, fp),
    }
}

/// The highest threshold on the ROC curve whose sensitivity reaches `target` (the most
/// specific operating point that does); None when the curve is undefined.
pub fn threshold_for_sensitivity(cases: &[Case], target: f64) -> Option<f64> {
    roc_curve(cases)
        .into_iter()
        .filter(|p| p.threshold.is_finite())
        .find(|p| p.tpr >= target)
        .map(|p| p.threshold)
}

/// One bin of the reliability diagram: the mean predicted probability and the observed
/// frequency of the cases in it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CalibrationBin {
    pub mean_predicted: f64,
    pub observed: f64,
    pub count: usize,
}

/// The reliability diagram as scikit-learn's `calibration_curve(..., n_bins, strategy=
/// "uniform")` (its non-empty bins, lowest first), and the expected calibration error: the
/// bins' |observed - predicted| weighted by their share of the cases.
pub fn calibration(cases: &[Case], bins: usize) -> (Vec<CalibrationBin>, Option<f64>) {
    if cases.is_empty() || bins == 0 {
        return (Vec::new(), None);
    }
    // numpy's linspace(0, 1, bins + 1)'s inner edges, and searchsorted's left side: a score
    // on an edge belongs to the bin below it.
    let step = 1.0 / bins as f64;
    let edges: Vec<f64> = (1..bins).map(|i| i as f64 * step).collect();
    let mut sums = vec![(0.0, 0.0, 0usize); bins];
    for case in cases {
        let bin = edges.partition_point(|&edge| edge < case.score);
        let entry = &mut sums[bin];
        entry.0 += case.score;
        entry.1 += if case.positive { 1.0 } else { 0.0 };
        entry.2 += 1;
    }
    let diagram: Vec<CalibrationBin> = sums
        .into_iter()
        .filter(|s| s.2 > 0)
        .map(|(predicted, observed, count)| CalibrationBin {
            mean_predicted: predicted / count as f64,
            observed: observed / count as f64,
            count,
        })
        .collect();
    let total = cases.len() as f64;
    let ece = diagram
        .iter()
        .map(|b| b.count as f64 / total * (b.observed - b.mean_predicted).abs())
        .sum();
    (diagram, Some(ece))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cases(scores: &[f64], labels: &[u8]) -> Vec<Case> {
        scores
            .iter()
            .zip(labels)
            .map(|(&score, &l)| Case {
                score,
                positive: l == 1,
            })
            .collect()
    }

    #[test]
    fn the_area_counts_ties_as_half_and_is_undefined_for_one_class() {
        // Pairs (positive, negative): 0.8>0.1, 0.8>0.4, 0.4=0.4 (half), 0.35<0.4, 0.35>0.1...
        let c = cases(&[0.1, 0.4, 0.35, 0.8, 0.4], &[0, 0, 1, 1, 1]);
        let (area, low, high) = auroc(&c).unwrap();
        // Positives 0.35, 0.8, 0.4 against negatives 0.1, 0.4: 1 + 0 + 1 + 1 + 1 + 0.5 = 4.5 of 6.
        assert!((area - 0.75).abs() < 1e-12, "{area}");
        assert!(low <= area && area <= high && (0.0..=1.0).contains(&low));
        assert!(auroc(&cases(&[0.1, 0.2], &[1, 1])).is_none());
        let perfect = auroc(&cases(&[0.1, 0.2, 0.8, 0.9], &[0, 0, 1, 1])).unwrap();
        assert_eq!(perfect, (1.0, 1.0, 1.0));
    }

    #[test]
    fn the_curve_has_a_point_per_distinct_score_and_the_target_picks_the_highest_threshold() {
        let c = cases(&[0.1, 0.4, 0.35, 0.8], &[0, 0, 1, 1]);
        let curve = roc_curve(&c);
        let rates: Vec<(f64, f64)> = curve.iter().map(|p| (p.fpr, p.tpr)).collect();
        assert_eq!(
            rates,
            vec![(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
        );
        assert_eq!(threshold_for_sensitivity(&c, 1.0), Some(0.35));
        assert_eq!(threshold_for_sensitivity(&c, 0.5), Some(0.8));
        let at = operating_point(&c, 0.35);
        assert_eq!((at.true_positives, at.false_positives), (2, 1));
        assert_eq!(at.sensitivity, Some(1.0));
        assert_eq!(at.specificity, Some(0.5));
        assert!((at.ppv.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(operating_point(&c, 2.0).ppv, None);
    }

    #[test]
    fn calibration_bins_put_an_edge_in_the_bin_below_and_weigh_the_error_by_count() {
        let c = cases(&[0.1, 0.15, 0.9, 0.95], &[0, 1, 1, 1]);
        let (bins, ece) = calibration(&c, 10);
        // 0.1 is on the first inner edge: bin 0; 0.15 bin 1; 0.9 bin 8; 0.95 bin 9.
        assert_eq!(bins.len(), 4);
        assert_eq!(bins[0].count, 1);
        assert_eq!(bins[0].observed, 0.0);
        let expected = (0.1 + 0.85 + 0.1 + 0.05) / 4.0;
        assert!((ece.unwrap() - expected).abs() < 1e-12);
    }
}

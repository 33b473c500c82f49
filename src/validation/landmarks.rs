//! A landmarks pack's acceptance test: the landmarks it found on each film against the site's
//! annotated points ([`super::points`]), in mm at the patient plane through the film's own pixel
//! spacing (the same [`PatientFrame`] the placement check measures with).
//!
//! Per landmark: the detection rate (annotated on the film and found with the placement
//! check's minimum confidence), false detections (found where the annotator says it is not),
//! and the position error in mm (median, 95th percentile as numpy's default linear
//! interpolation, the share within 5 and 10 mm). For the endotracheal tube, the error of the
//! tip's height above the carina (what its verdict rests on) against the annotated one. Per
//! device, how often the verdict from the pack's landmarks agrees with the verdict the same
//! rules give on the annotated points. Every figure overall and by subgroup; films without
//! pixel spacing are counted for detection and left out of the mm figures.

use super::points::{Annotations, FilmKey, Point};
use super::Record;
use crate::inference::vision::Landmark;
use crate::placement::geometry::{ImagePoint, PatientFrame};
use crate::placement::rules::RuleTable;
use crate::placement::{self, names, Device, Verdict};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// How a run is judged.
#[derive(Debug, Clone, Serialize)]
pub struct LandmarkSettings {
    pub pack: String,
    /// A landmark found with less confidence counts as not found (`[placement] min_confidence`).
    pub min_confidence: f32,
}

/// One landmark's figures over a set of films.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PointFigures {
    /// Films on which the landmark is annotated.
    pub annotated: usize,
    pub detected: usize,
    pub detection_rate: Option<f64>,
    /// Films on which the annotator says it is not.
    pub annotated_absent: usize,
    pub false_detections: usize,
    pub false_detection_rate: Option<f64>,
    /// Detections on calibrated films: the errors in mm.
    pub measured: usize,
    pub median_error_mm: Option<f64>,
    pub p95_error_mm: Option<f64>,
    pub within_5_mm: Option<f64>,
    pub within_10_mm: Option<f64>,
    /// Every error, ascending (overall only; for the plot).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors_mm: Vec<f64>,
}

/// The error of the endotracheal tube tip's height above the carina, pack minus annotation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DistanceFigures {
    /// Calibrated films with both points annotated and both found.
    pub films: usize,
    pub median_abs_error_mm: Option<f64>,
    pub p95_abs_error_mm: Option<f64>,
    /// The mean signed error: positive when the pack puts the tip higher than the annotator.
    pub mean_error_mm: Option<f64>,
    pub within_5_mm: Option<f64>,
    pub within_10_mm: Option<f64>,
}

/// One device's verdicts: the pack's landmarks against the annotated points, same rules.
#[derive(Debug, Clone, Serialize)]
pub struct VerdictFigures {
    pub device: Device,
    /// Films on which the device's tip is annotated (present or not on the film).
    pub films: usize,
    pub agreeing: usize,
    pub agreement: Option<f64>,
    /// (annotated verdict, pack's verdict, films), the cells that are not empty.
    pub confusion: Vec<(Verdict, Verdict, usize)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NamedPoint {
    pub landmark: String,
    pub figures: PointFigures,
}

/// Every figure over one set of films.
#[derive(Debug, Clone, Serialize)]
pub struct SetFigures {
    pub films: usize,
    pub landmarks: Vec<NamedPoint>,
    pub ett_distance: DistanceFigures,
    pub verdicts: Vec<VerdictFigures>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubgroupSet {
    pub attribute: String,
    pub value: String,
    pub figures: SetFigures,
}

/// A landmarks run's evaluation: what was measured, and everything left out with its reason.
#[derive(Debug, Clone, Serialize)]
pub struct LandmarkEvaluation {
    pub settings: LandmarkSettings,
    pub films: usize,
    pub overall: SetFigures,
    pub subgroups: Vec<SubgroupSet>,
    pub refused: Vec<(String, String)>,
    pub truth_problems: Vec<String>,
    pub unmatched: Vec<String>,
}

/// The value below which `q` of `sorted` lies, by linear interpolation between closest ranks
/// (numpy's default `percentile`); None when empty.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let at = q * last as f64;
    let (low, high) = (at.floor() as usize, at.ceil() as usize);
    Some(sorted[low] + (sorted[high] - sorted[low]) * (at - low as f64))
}

fn share(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn share_within(sorted: &[f64], mm: f64) -> Option<f64> {
    share(sorted.iter().filter(|&&e| e <= mm).count(), sorted.len())
}

/// A film with its annotations, both checked.
#[derive(Clone)]
struct Film<'a> {
    record: &'a Record,
    frame: &'a PatientFrame,
    truth: BTreeMap<&'a str, Point>,
}

impl Film<'_> {
    /// The pack's most confident detection of `name`, if confident enough.
    fn found(&self, name: &str, min_confidence: f32) -> Option<&Landmark> {
        self.record
            .landmarks
            .iter()
            .filter(|l| l.name == name && l.confidence >= min_confidence)
            .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
    }

    /// The annotated points as landmarks found with full confidence.
    fn annotated(&self) -> Vec<Landmark> {
        self.truth
            .iter()
            .filter_map(|(name, point)| {
                let (x, y) = (*point)?;
                Some(Landmark {
                    name: name.to_string(),
                    x,
                    y,
                    confidence: 1.0,
                    ..Landmark::default()
                })
            })
            .collect()
    }
}

fn point_figures(films: &[Film], name: &str, min_confidence: f32, curves: bool) -> PointFigures {
    let mut f = PointFigures::default();
    let mut errors = Vec::new();
    for film in films {
        let Some(&annotated) = film.truth.get(name) else {
            continue;
        };
        let found = film.found(name, min_confidence);
        match annotated {
            None => {
                f.annotated_absent += 1;
                f.false_detections += usize::from(found.is_some());
            }
            Some((x, y)) => {
                f.annotated += 1;
                let Some(found) = found else { continue };
                f.detected += 1;
                if film.frame.calibrated() {
                    let at = ImagePoint { x, y };
                    let seen = ImagePoint {
                        x: found.x,
                        y: found.y,
                    };
                    errors.push(film.frame.distance(seen, at));
                }
            }
        }
    }
    errors.sort_by(f64::total_cmp);
    f.detection_rate = share(f.detected, f.annotated);
    f.false_detection_rate = share(f.false_detections, f.annotated_absent);
    f.measured = errors.len();
    f.median_error_mm = percentile(&errors, 0.5);
    f.p95_error_mm = percentile(&errors, 0.95);
    f.within_5_mm = share_within(&errors, 5.0);
    f.within_10_mm = share_within(&errors, 10.0);
    if curves {
        f.errors_mm = errors;
    }
    f
}

fn ett_distance(films: &[Film], min_confidence: f32) -> DistanceFigures {
    let mut signed = Vec::new();
    for film in films.iter().filter(|f| f.frame.calibrated()) {
        let annotated = |name: &str| film.truth.get(name).copied().flatten();
        let (Some(tip), Some(carina)) = (annotated(names::ETT_TIP), annotated(names::CARINA))
        else {
            continue;
        };
        let (Some(found_tip), Some(found_carina)) = (
            film.found(names::ETT_TIP, min_confidence),
            film.found(names::CARINA, min_confidence),
        ) else {
            continue;
        };
        let point = |(x, y): (f64, f64)| ImagePoint { x, y };
        let height = |tip: ImagePoint, carina: ImagePoint| -film.frame.below(tip, carina);
        let theirs = height(point(tip), point(carina));
        let ours = height(
            point((found_tip.x, found_tip.y)),
            point((found_carina.x, found_carina.y)),
        );
        signed.push(ours - theirs);
    }
    let mut absolute: Vec<f64> = signed.iter().map(|e| e.abs()).collect();
    absolute.sort_by(f64::total_cmp);
    DistanceFigures {
        films: signed.len(),
        median_abs_error_mm: percentile(&absolute, 0.5),
        p95_abs_error_mm: percentile(&absolute, 0.95),
        mean_error_mm: (!signed.is_empty())
            .then(|| signed.iter().sum::<f64>() / signed.len() as f64),
        within_5_mm: share_within(&absolute, 5.0),
        within_10_mm: share_within(&absolute, 10.0),
    }
}

/// Each device's tip landmark.
const DEVICE_TIPS: [(Device, &str); 4] = [
    (Device::EndotrachealTube, names::ETT_TIP),
    (Device::EnteralTube, names::NGT_TIP),
    (Device::CentralVenousCatheter, names::CVC_TIP),
    (Device::ChestTube, names::CHEST_TUBE_TIP),
];

fn verdicts(films: &[Film], tips: &[(Device, &str)], rules: &RuleTable) -> Vec<VerdictFigures> {
    let mut cells: BTreeMap<(usize, String, String), (Verdict, Verdict, usize)> = BTreeMap::new();
    let mut counts = vec![(0usize, 0usize); tips.len()];
    for film in films {
        let annotated_tips: Vec<usize> = (0..tips.len())
            .filter(|&i| film.truth.contains_key(tips[i].1))
            .collect();
        if annotated_tips.is_empty() {
            continue;
        }
        let age = film.record.age_years;
        let theirs = placement::assess(&film.annotated(), film.frame, age, rules);
        let ours = placement::assess(&film.record.landmarks, film.frame, age, rules);
        let verdict = |result: &placement::PlacementResult, device: Device| {
            result
                .devices
                .iter()
                .find(|d| d.device == device)
                .map_or(Verdict::NotAssessable, |d| d.verdict)
        };
        for i in annotated_tips {
            let device = tips[i].0;
            let (t, o) = (verdict(&theirs, device), verdict(&ours, device));
            counts[i].0 += 1;
            counts[i].1 += usize::from(t == o);
            let key = (i, t.as_str().to_string(), o.as_str().to_string());
            cells.entry(key).or_insert((t, o, 0)).2 += 1;
        }
    }
    tips.iter()
        .enumerate()
        .map(|(i, &(device, _))| VerdictFigures {
            device,
            films: counts[i].0,
            agreeing: counts[i].1,
            agreement: share(counts[i].1, counts[i].0),
            confusion: cells
                .iter()
                .filter(|(key, _)| key.0 == i)
                .map(|(_, &cell)| cell)
                .collect(),
        })
        .collect()
}

fn set_figures(
    films: &[Film],
    landmarks: &[String],
    (settings, rules): (&LandmarkSettings, &RuleTable),
    curves: bool,
) -> SetFigures {
    let tips: Vec<(Device, &str)> = DEVICE_TIPS
        .into_iter()
        .filter(|(_, tip)| landmarks.iter().any(|l| l == tip))
        .collect();
    SetFigures {
        films: films.len(),
        landmarks: landmarks
            .iter()
            .map(|name| NamedPoint {
                landmark: name.clone(),
                figures: point_figures(films, name, settings.min_confidence, curves),
            })
            .collect(),
        ett_distance: ett_distance(films, settings.min_confidence),
        verdicts: verdicts(films, &tips, rules),
    }
}

/// The annotations of one film, checked against the pack's landmarks and the image's size.
fn checked_truth<'a>(
    id: &str,
    points: &'a BTreeMap<String, Point>,
    frame: &PatientFrame,
    landmarks: &[String],
    problems: &mut Vec<String>,
) -> BTreeMap<&'a str, Point> {
    let mut truth = BTreeMap::new();
    for (name, &point) in points {
        if !landmarks.contains(name) {
            continue; // told once for the whole file
        }
        if let Some((x, y)) = point {
            let inside = |v: f64, size: u32| (-0.5..=f64::from(size) - 0.5).contains(&v);
            if !inside(x, frame.columns) || !inside(y, frame.rows) {
                problems.push(format!(
                    "{id}: {name} at ({x}, {y}) lies outside the {} x {} image (x is the column, y the row, from 0); left out",
                    frame.columns, frame.rows
                ));
                continue;
            }
        }
        truth.insert(name.as_str(), point);
    }
    truth
}

/// The films with annotations, and what could not be matched.
fn films<'a>(
    records: &'a [Record],
    annotations: &'a Annotations,
    landmarks: &[String],
    problems: &mut Vec<String>,
) -> (Vec<Film<'a>>, Vec<String>) {
    let read: Vec<&Record> = records.iter().filter(|r| r.refused.is_none()).collect();
    let mut per_study: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &read {
        *per_study.entry(r.study_instance_uid.as_str()).or_default() += 1;
    }
    let (mut films, mut unmatched, mut used) = (Vec::new(), Vec::new(), BTreeSet::new());
    for record in read {
        let ids = match annotations.key {
            FilmKey::Image => vec![record.sop_instance_uid.as_str()],
            FilmKey::Study => vec![
                record.study_instance_uid.as_str(),
                record.accession_number.as_str(),
            ],
        };
        let Some(id) = ids
            .into_iter()
            .find(|id| !id.is_empty() && annotations.points.contains_key(*id))
        else {
            continue;
        };
        used.insert(id);
        let in_study = per_study[record.study_instance_uid.as_str()];
        if annotations.key == FilmKey::Study && in_study > 1 {
            unmatched.push(format!(
                "{id}: the study has {in_study} films, so its points cannot be placed on one; annotate by image (an \"image\" column of SOP Instance UIDs)"
            ));
            continue;
        }
        let Some(frame) = record.frame.as_ref() else {
            continue;
        };
        let truth = checked_truth(id, &annotations.points[id], frame, landmarks, problems);
        films.push(Film {
            record,
            frame,
            truth,
        });
    }
    for id in annotations
        .points
        .keys()
        .filter(|id| !used.contains(id.as_str()))
    {
        unmatched.push(format!("annotated {id}: no such film was found"));
    }
    (films, unmatched)
}

/// Evaluates `records` against `annotations` for the `landmarks` the pack finds, with the
/// placement `rules`.
pub fn evaluate(
    records: &[Record],
    annotations: &Annotations,
    landmarks: &[String],
    settings: LandmarkSettings,
    rules: &RuleTable,
) -> LandmarkEvaluation {
    let mut truth_problems = annotations.problems.clone();
    let mut unknown: BTreeMap<&str, usize> = BTreeMap::new();
    for points in annotations.points.values() {
        for name in points.keys().filter(|n| !landmarks.contains(n)) {
            *unknown.entry(name).or_default() += 1;
        }
    }
    for (name, rows) in unknown {
        truth_problems.push(format!(
            "{name} ({rows} row(s)): the pack finds no such landmark (it finds {}); left out",
            landmarks.join(", ")
        ));
    }
    let (films, unmatched) = films(records, annotations, landmarks, &mut truth_problems);
    let subgroups = super::by_subgroup(&films, |f| &f.record.subgroups)
        .into_iter()
        .map(|(attribute, value, group)| SubgroupSet {
            attribute: attribute.to_string(),
            value,
            figures: set_figures(&group, landmarks, (&settings, rules), false),
        })
        .collect();
    LandmarkEvaluation {
        films: records.len(),
        overall: set_figures(&films, landmarks, (&settings, rules), true),
        subgroups,
        refused: super::refused(records),
        truth_problems,
        unmatched,
        settings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_as_numpy_does() {
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert_eq!(percentile(&v, 0.5), Some(3.0));
        // numpy.percentile([1, 2, 3, 4, 10], 95) = 8.8
        assert!((percentile(&v, 0.95).unwrap() - 8.8).abs() < 1e-12);
        assert_eq!(percentile(&[7.0], 0.95), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}

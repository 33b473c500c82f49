//! A landmarks pack's evaluation as people read it: a summary for the terminal and a
//! standalone HTML page (per landmark its detection and mm errors overall and by subgroup, the
//! share of films within each error as a curve, the endotracheal tube's tip-to-carina error,
//! and each device's verdict agreement with its confusion table; every text from the site's
//! files escaped). The JSON is the evaluation itself.

use super::criteria::Check;
use super::landmarks::{DistanceFigures, LandmarkEvaluation, PointFigures, SetFigures};
use super::report::{checks_table, checks_text, left_out, number, page, percent, plot};
use crate::markup::escape;
use std::fmt::Write;

fn mm(value: Option<f64>) -> String {
    value.map_or("–".to_string(), |v| format!("{v:.1} mm"))
}

fn fraction(part: usize, whole: usize, rate: Option<f64>) -> String {
    format!("{part}/{whole} ({})", percent(rate))
}

/// The summary printed at the end of a run.
pub fn summary(evaluation: &LandmarkEvaluation, checks: &[Check]) -> String {
    let o = &evaluation.overall;
    let mut out = format!(
        "{}: {} films, {} annotated, {} refused; minimum confidence {}\n",
        evaluation.settings.pack,
        evaluation.films,
        o.films,
        evaluation.refused.len(),
        evaluation.settings.min_confidence
    );
    let _ = writeln!(
        out,
        "{:<22} {:>16} {:>14} {:>10} {:>10} {:>8} {:>8}",
        "landmark", "detected", "false", "median", "p95", "<=5 mm", "<=10 mm"
    );
    for l in &o.landmarks {
        let f = &l.figures;
        let _ = writeln!(
            out,
            "{:<22} {:>16} {:>14} {:>10} {:>10} {:>8} {:>8}",
            l.landmark,
            fraction(f.detected, f.annotated, f.detection_rate),
            fraction(
                f.false_detections,
                f.annotated_absent,
                f.false_detection_rate
            ),
            mm(f.median_error_mm),
            mm(f.p95_error_mm),
            percent(f.within_5_mm),
            percent(f.within_10_mm)
        );
    }
    let e = &o.ett_distance;
    let _ = writeln!(
        out,
        "ETT tip-to-carina error on {} films: median {}, p95 {}, mean signed {}",
        e.films,
        mm(e.median_abs_error_mm),
        mm(e.p95_abs_error_mm),
        mm(e.mean_error_mm)
    );
    for v in &o.verdicts {
        let _ = writeln!(
            out,
            "{} verdicts agree on {}",
            v.device.title(),
            fraction(v.agreeing, v.films, v.agreement)
        );
    }
    out.push_str(&checks_text(checks));
    out
}

const POINT_HEAD: &str = "<tr><th></th><th>films</th><th>detected</th><th>false detections</th><th>measured (mm)</th><th>median error</th><th>95th percentile</th><th>within 5 mm</th><th>within 10 mm</th></tr>";

fn point_row(label: &str, films: usize, f: &PointFigures) -> String {
    format!(
        "<tr><th>{}</th><td>{films}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        escape(label),
        fraction(f.detected, f.annotated, f.detection_rate),
        fraction(f.false_detections, f.annotated_absent, f.false_detection_rate),
        f.measured,
        mm(f.median_error_mm),
        mm(f.p95_error_mm),
        percent(f.within_5_mm),
        percent(f.within_10_mm),
    )
}

const DISTANCE_HEAD: &str = "<tr><th></th><th>films</th><th>median |error|</th><th>95th percentile |error|</th><th>mean signed error</th><th>within 5 mm</th><th>within 10 mm</th></tr>";

fn distance_row(label: &str, e: &DistanceFigures) -> String {
    format!(
        "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        escape(label),
        e.films,
        mm(e.median_abs_error_mm),
        mm(e.p95_abs_error_mm),
        mm(e.mean_error_mm),
        percent(e.within_5_mm),
        percent(e.within_10_mm)
    )
}

/// The share of films within each error (an empirical cumulative curve), up to 20 mm.
fn error_curve(name: &str, errors: &[f64]) -> String {
    const UP_TO: f64 = 20.0;
    let n = errors.len() as f64;
    let mut points = vec![(0.0, 0.0)];
    for (i, &e) in errors.iter().enumerate() {
        let e = e.min(UP_TO);
        points.push((e, i as f64 / n));
        points.push((e, (i + 1) as f64 / n));
    }
    if let Some(&(_, last)) = points.last() {
        points.push((UP_TO, last));
    }
    plot(
        name,
        ("position error (mm)", UP_TO),
        "share of films within",
        &points,
        false,
    )
}

fn landmark_sections(evaluation: &LandmarkEvaluation, body: &mut String) {
    let o = &evaluation.overall;
    let mut curves = String::new();
    for (i, l) in o.landmarks.iter().enumerate() {
        let _ = write!(body, "<h2>{}</h2><table>{POINT_HEAD}", escape(&l.landmark));
        body.push_str(&point_row("all", o.films, &l.figures));
        for g in &evaluation.subgroups {
            let figures = &g.figures.landmarks[i].figures;
            let label = format!("{}: {}", g.attribute, g.value);
            body.push_str(&point_row(&label, g.figures.films, figures));
        }
        body.push_str("</table>");
        if !l.figures.errors_mm.is_empty() {
            curves.push_str(&error_curve(&l.landmark, &l.figures.errors_mm));
        }
    }
    if !curves.is_empty() {
        let _ = write!(
            body,
            "<h2>Position errors</h2><div class=\"plots\">{curves}</div>"
        );
    }
}

fn device_sections(overall: &SetFigures, evaluation: &LandmarkEvaluation, body: &mut String) {
    let _ = write!(
        body,
        "<h2>Endotracheal tube: tip height above the carina</h2><p>The pack's height minus the annotated one, on calibrated films where both points are annotated and found.</p><table>{DISTANCE_HEAD}"
    );
    body.push_str(&distance_row("all", &overall.ett_distance));
    for g in &evaluation.subgroups {
        let label = format!("{}: {}", g.attribute, g.value);
        body.push_str(&distance_row(&label, &g.figures.ett_distance));
    }
    body.push_str("</table><h2>Verdicts</h2><p>The verdict from the pack's landmarks against the verdict the same rules give on the annotated points, on films where the device's tip is annotated.</p>");
    for v in &overall.verdicts {
        let _ = write!(
            body,
            "<h3>{}: agreement {}</h3><table><tr><th>annotated</th><th>pack</th><th>films</th></tr>",
            v.device.title(),
            fraction(v.agreeing, v.films, v.agreement)
        );
        for (theirs, ours, films) in &v.confusion {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{films}</td></tr>",
                theirs.as_str(),
                ours.as_str()
            );
        }
        body.push_str("</table>");
    }
}

/// The evaluation as a standalone HTML page.
pub fn html(evaluation: &LandmarkEvaluation, checks: &[Check]) -> String {
    let s = &evaluation.settings;
    let mut body = format!(
        "<h1>Acceptance test of {}</h1><p>{} films, {} with annotations, {} refused. A landmark counts as found at confidence {} and above; errors are straight-line distances in mm at the patient plane (the film's pixel spacing).</p>",
        escape(&s.pack),
        evaluation.films,
        evaluation.overall.films,
        evaluation.refused.len(),
        number(Some(f64::from(s.min_confidence)), 2)
    );
    body.push_str(&checks_table(checks));
    landmark_sections(evaluation, &mut body);
    device_sections(&evaluation.overall, evaluation, &mut body);
    body.push_str(&left_out(
        &evaluation.refused,
        &evaluation.truth_problems,
        &evaluation.unmatched,
    ));
    page(&s.pack, &body)
}

//! An evaluation as people and machines read it: a summary for the terminal, a standalone HTML
//! page (tables, the ROC curve and the reliability diagram of each finding as SVG, every text
//! from the site's files escaped), and JSON.

use super::criteria::Check;
use super::{Evaluation, Figures};
use crate::markup::escape;
use std::fmt::Write;

pub(super) fn number(value: Option<f64>, digits: usize) -> String {
    value.map_or("–".to_string(), |v| format!("{v:.digits$}"))
}

pub(super) fn percent(value: Option<f64>) -> String {
    value.map_or("–".to_string(), |v| format!("{:.1} %", v * 100.0))
}

fn interval(figures: &Figures) -> String {
    match (figures.auroc, figures.auroc_95) {
        (Some(a), Some((lo, hi))) => format!("{a:.3} ({lo:.3}–{hi:.3})"),
        _ => figures.note.clone().unwrap_or_else(|| "–".into()),
    }
}

/// The summary printed at the end of a run.
pub fn summary(evaluation: &Evaluation, checks: &[Check]) -> String {
    let mut out = String::new();
    let s = &evaluation.settings;
    let _ = writeln!(
        out,
        "{}: {} films, {} studies with truth, {} refused; threshold {}, target sensitivity {}",
        s.pack,
        evaluation.films,
        evaluation.studies,
        evaluation.refused.len(),
        s.threshold,
        s.target_sensitivity
    );
    let row = |out: &mut String, cells: [String; 8]| {
        let [a, b, c, d, e, f, g, h] = cells;
        let _ = writeln!(
            out,
            "{a:<28} {b:>7} {c:>8} {d:>22} {e:>8} {f:>8} {g:>8} {h:>7}"
        );
    };
    let head = [
        "finding",
        "studies",
        "prev.",
        "AUROC (95 % CI)",
        "sens.",
        "spec.",
        "PPV",
        "ECE",
    ];
    row(&mut out, head.map(String::from));
    for f in &evaluation.findings {
        let o = &f.overall;
        let at = &o.at_threshold;
        row(
            &mut out,
            [
                f.finding.clone(),
                o.studies.to_string(),
                percent(o.prevalence),
                interval(o),
                percent(at.sensitivity),
                percent(at.specificity),
                percent(at.ppv),
                number(o.ece, 3),
            ],
        );
    }
    out.push_str(&checks_text(checks));
    out
}

/// Each criterion on a line: whether it holds, what it required and what was measured.
pub(super) fn checks_text(checks: &[Check]) -> String {
    let mut out = String::new();
    for check in checks {
        let _ = writeln!(
            out,
            "{} {}: {} {} (measured {})",
            if check.holds { "holds " } else { "FAILS " },
            check.finding,
            check.criterion,
            check.required,
            number(check.measured, 3)
        );
    }
    out
}

/// The thresholds that reach the target sensitivity, as the service's `[analysis.thresholds]`
/// (each with what it gave on these studies); a finding without one is left at the default.
pub fn thresholds(evaluation: &Evaluation) -> String {
    let s = &evaluation.settings;
    let mut out = format!(
        "# The thresholds at which {:?} reached a sensitivity of {} on {} studies\n\
         # (radassist models validate); copy into the service's configuration to use them.\n\
         [analysis.thresholds]\n",
        s.pack, s.target_sensitivity, evaluation.studies
    );
    for f in &evaluation.findings {
        let o = &f.overall;
        match (o.threshold_for_target, o.at_target.as_ref()) {
            (Some(threshold), Some(at)) => {
                let _ = writeln!(
                    out,
                    "# sensitivity {}, specificity {}, PPV {}\n{:?} = {threshold}",
                    percent(at.sensitivity),
                    percent(at.specificity),
                    percent(at.ppv),
                    f.finding
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "# {:?}: no threshold ({}); left at the default",
                    f.finding,
                    o.note.as_deref().unwrap_or("not measured")
                );
            }
        }
    }
    out
}

const SIZE: f64 = 240.0;
const MARGIN: f64 = 36.0;

fn to_plot(x: f64, y: f64) -> (f64, f64) {
    let side = SIZE - 2.0 * MARGIN;
    (
        MARGIN + side * x.clamp(0.0, 1.0),
        SIZE - MARGIN - side * y.clamp(0.0, 1.0),
    )
}

/// A plot of `points` as a line (and dots) with its axes' names: y from 0 to 1, x from 0 to
/// `x_max` (with the diagonal when that is 1 too).
pub(super) fn plot(
    title: &str,
    (x_name, x_max): (&str, f64),
    y_name: &str,
    points: &[(f64, f64)],
    dots: bool,
) -> String {
    let (x0, y0) = to_plot(0.0, 0.0);
    let (x1, y1) = to_plot(1.0, 1.0);
    let diagonal = if x_max == 1.0 {
        format!("<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y1}\" stroke=\"#ccc\" stroke-dasharray=\"4 3\"/>")
    } else {
        String::new()
    };
    let mut svg = format!(
        "<svg viewBox=\"0 0 {SIZE} {SIZE}\" width=\"{SIZE}\" height=\"{SIZE}\" role=\"img\" aria-label=\"{}\">\
         <rect x=\"{x0}\" y=\"{y1}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>{diagonal}\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\">{}</text>\
         <text x=\"12\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\" transform=\"rotate(-90 12 {})\">{}</text>\
         <text x=\"{}\" y=\"16\" text-anchor=\"middle\" font-size=\"12\">{}</text>",
        escape(title),
        x1 - x0,
        y0 - y1,
        SIZE / 2.0,
        SIZE - 8.0,
        escape(x_name),
        SIZE / 2.0,
        SIZE / 2.0,
        escape(y_name),
        SIZE / 2.0,
        escape(title)
    );
    for tick in [0.0, 0.5, 1.0] {
        let (tx, ty) = to_plot(tick, tick);
        let _ = write!(
            svg,
            "<text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"10\">{tick}</text>",
            y0 + 12.0,
            tick * x_max,
            x0 - 4.0,
            ty + 3.0
        );
    }
    let line: Vec<String> = points
        .iter()
        .map(|&(x, y)| {
            let (px, py) = to_plot(x / x_max, y);
            format!("{px:.1},{py:.1}")
        })
        .collect();
    let _ = write!(
        svg,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#1f5fa8\" stroke-width=\"2\"/>",
        line.join(" ")
    );
    if dots {
        for &(x, y) in points {
            let (px, py) = to_plot(x / x_max, y);
            let _ = write!(
                svg,
                "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"3\" fill=\"#1f5fa8\"/>"
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn figures_row(label: &str, f: &Figures) -> String {
    let target = f.at_target.as_ref();
    format!(
        "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({} / {})</td><td>{}</td></tr>",
        escape(label),
        f.studies,
        percent(f.prevalence),
        escape(&interval(f)),
        percent(f.at_threshold.sensitivity),
        percent(f.at_threshold.specificity),
        percent(f.at_threshold.ppv),
        number(f.threshold_for_target, 3),
        percent(target.and_then(|t| t.sensitivity)),
        percent(target.and_then(|t| t.specificity)),
        number(f.ece, 3),
    )
}

const HEAD_ROW: &str = "<tr><th></th><th>studies</th><th>prevalence</th><th>AUROC (95 % CI, DeLong)</th><th>sensitivity</th><th>specificity</th><th>PPV</th><th>threshold for the target (sens. / spec.)</th><th>ECE</th></tr>";

pub(super) fn list(title: &str, items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.map(|i| format!("<li>{}</li>", escape(&i))).collect();
    if items.is_empty() {
        return String::new();
    }
    format!("<h2>{}</h2><ul>{}</ul>", escape(title), items.join(""))
}

/// The evaluation as a standalone HTML page.
pub fn html(evaluation: &Evaluation, checks: &[Check]) -> String {
    let s = &evaluation.settings;
    let mut body = format!(
        "<h1>Acceptance test of {}</h1><p>{} films, {} studies with truth, {} films refused. Operating point: present at {} and above; the threshold for a sensitivity of {} is found on the ROC curve.</p>",
        escape(&s.pack),
        evaluation.films,
        evaluation.studies,
        evaluation.refused.len(),
        s.threshold,
        s.target_sensitivity
    );
    body.push_str(&checks_table(checks));
    for f in &evaluation.findings {
        let o = &f.overall;
        let _ = write!(body, "<h2>{}</h2><table>{HEAD_ROW}", escape(&f.finding));
        body.push_str(&figures_row("all", o));
        for g in &f.subgroups {
            body.push_str(&figures_row(
                &format!("{}: {}", g.attribute, g.value),
                &g.figures,
            ));
        }
        body.push_str("</table><div class=\"plots\">");
        let roc: Vec<(f64, f64)> = o.roc.iter().map(|p| (p.fpr, p.tpr)).collect();
        let reliability: Vec<(f64, f64)> = o
            .calibration
            .iter()
            .map(|b| (b.mean_predicted, b.observed))
            .collect();
        body.push_str(&plot(
            "ROC curve",
            ("1 - specificity", 1.0),
            "sensitivity",
            &roc,
            false,
        ));
        body.push_str(&plot(
            "Reliability",
            ("mean predicted probability", 1.0),
            "observed frequency",
            &reliability,
            true,
        ));
        body.push_str("</div>");
    }
    body.push_str(&left_out(
        &evaluation.refused,
        &evaluation.truth_problems,
        &evaluation.unmatched,
    ));
    page(&s.pack, &body)
}

/// The acceptance criteria as a table (nothing when there are none).
pub(super) fn checks_table(checks: &[Check]) -> String {
    if checks.is_empty() {
        return String::new();
    }
    let mut table = String::from("<h2>Acceptance criteria</h2><table><tr><th>of</th><th>criterion</th><th>required</th><th>measured</th><th></th></tr>");
    for c in checks {
        let _ = write!(
            table,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if c.holds { "holds" } else { "fails" },
            escape(&c.finding),
            escape(&c.criterion),
            c.required,
            number(c.measured, 3),
            if c.holds { "holds" } else { "FAILS" }
        );
    }
    table.push_str("</table>");
    table
}

/// What a run left out: films refused, truth rows, and what was not matched.
pub(super) fn left_out(
    refused: &[(String, String)],
    truth_problems: &[String],
    unmatched: &[String],
) -> String {
    [
        list(
            "Films refused",
            refused.iter().map(|(f, r)| format!("{f}: {r}")),
        ),
        list("Truth file", truth_problems.iter().cloned()),
        list("Not matched", unmatched.iter().cloned()),
    ]
    .concat()
}

/// A standalone page for the acceptance test of `pack` around `body`.
pub(super) fn page(pack: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Acceptance test of {}</title>\
         <style>body{{font:14px system-ui,sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse;margin:8px 0}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td{{white-space:nowrap}}th:first-child,td:first-child{{text-align:left}}\
         tr.fails td{{background:#fde2e2}}tr.holds td{{background:#e5f6e5}}.plots{{display:flex;flex-wrap:wrap;gap:24px}}</style></head>\
         <body>{body}</body></html>\n",
        escape(pack)
    )
}

//! The analysis as text: what `radassist analyze` prints without `--json`.
//!
//! Critical device results first, then every device check with its numbers, the findings at
//! or above the presence threshold, and each prior comparison (alignment, changes, prior report
//! sentences). This is the analysis laid out for reading, not the draft report.

use super::thresholds::{FindingThresholds, Presence};
use super::{ImageAnalysis, PriorComparison, StudyAnalysis};
use crate::placement::Verdict;
use crate::priors::{DeviceChangeKind, FindingChangeKind};
use std::fmt::Write;

/// The sentences the results state: each device seen, and each finding present at
/// `thresholds`.
pub fn statements(analysis: &ImageAnalysis, thresholds: &FindingThresholds) -> Vec<String> {
    let devices = analysis
        .placement
        .devices
        .iter()
        .filter(|d| d.verdict != Verdict::Absent)
        .map(|d| d.statement.clone());
    let findings = analysis
        .findings
        .iter()
        .filter(|f| thresholds.presence(f) == Presence::Present && f.label != "No Finding")
        .map(|f| format!("{} is present.", f.label));
    devices.chain(findings).collect()
}

pub fn render(study: &StudyAnalysis) -> String {
    let mut out = String::new();
    if let Some(warning) = &study.warning {
        let _ = writeln!(
            out,
            "*** {warning}: these results show the flow, not a diagnosis ***\n"
        );
    }
    let current = &study.current;
    let critical: Vec<_> = current
        .placement
        .devices
        .iter()
        .filter(|d| d.critical)
        .collect();
    if !critical.is_empty() {
        let _ = writeln!(out, "CRITICAL");
        for d in &critical {
            let _ = writeln!(out, "  ! {}", d.statement);
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "TUBES AND LINES ({} thresholds; {})",
        match current.placement.population {
            crate::placement::rules::Population::Adult => "adult",
            crate::placement::rules::Population::Paediatric => "paediatric",
        },
        current.placement.population_basis
    );
    for d in &current.placement.devices {
        let numbers: Vec<String> = d
            .measurements
            .iter()
            .map(|m| {
                let unit = if m.calibrated {
                    "mm"
                } else {
                    "px, uncalibrated"
                };
                format!("{} {:.1} {unit}", m.name, m.value)
            })
            .collect();
        let _ = writeln!(
            out,
            "  - [{}] {}{}",
            d.verdict.as_str(),
            d.statement,
            if numbers.is_empty() {
                String::new()
            } else {
                format!(" ({})", numbers.join(", "))
            }
        );
    }
    let frame = &current.placement.frame;
    let _ = writeln!(
        out,
        "  spacing: {}{}",
        match frame.spacing {
            Some(s) => format!(
                "{:.4} x {:.4} mm ({:?})",
                s.row_mm, s.column_mm, frame.spacing_source
            ),
            None => "none: measurements are uncalibrated".into(),
        },
        if frame.orientation_assumed {
            "; Patient Orientation absent: usual frontal hanging assumed"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "\nFINDINGS (probability >= {:.2}{})",
        super::thresholds::PRESENT,
        if study.thresholds.present.is_empty() {
            String::new()
        } else {
            let site: Vec<String> = study
                .thresholds
                .present
                .iter()
                .map(|(label, t)| format!("{label} {t:.2}"))
                .collect();
            format!("; the site's: {}", site.join(", "))
        }
    );
    if current.findings.is_empty() {
        let _ = writeln!(out, "  (no findings model configured)");
    }
    let mut present: Vec<_> = current
        .findings
        .iter()
        .filter(|f| study.thresholds.presence(f) == Presence::Present)
        .collect();
    present.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    for f in &present {
        let _ = writeln!(out, "  - {} {:.2}", f.label, f.probability);
    }
    if !current.findings.is_empty() && present.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for c in &study.comparisons {
        render_comparison(&mut out, c);
    }
    let models: Vec<String> = study
        .models
        .iter()
        .map(|m| {
            format!(
                "{} {} (version {}){}",
                m.task,
                m.name,
                m.version,
                if m.test_model { ", test model" } else { "" }
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "\nMODELS: {}",
        if models.is_empty() {
            "none".into()
        } else {
            models.join(", ")
        }
    );
    out
}

fn render_comparison(out: &mut String, c: &PriorComparison) {
    let a = &c.alignment;
    let r = &a.registration;
    let _ = writeln!(
        out,
        "\nCOMPARISON WITH PRIOR OF {}",
        c.prior
            .image
            .study_date
            .as_deref()
            .unwrap_or("unknown date")
    );
    let shift = match a.translation_mm {
        Some([x, y]) => format!("shift {x:.1}, {y:.1} mm"),
        None => format!(
            "shift {:.1}, {:.1} px (uncalibrated)",
            a.translation_px[0], a.translation_px[1]
        ),
    };
    let _ = writeln!(
        out,
        "  aligned: {shift}, rotation {:.2} deg, scale {:.3}; correlation {:.3}, residual {:.3}, overlap {:.0}%",
        a.rotation_degrees,
        a.scale,
        r.correlation,
        r.residual_rms,
        r.overlap * 100.0
    );
    for f in &c.findings {
        if f.change == FindingChangeKind::Absent {
            continue;
        }
        let _ = writeln!(
            out,
            "  - {}: {:?} ({:.2} -> {:.2})",
            f.label, f.change, f.prior_probability, f.current_probability
        );
    }
    for d in &c.devices {
        if d.change != DeviceChangeKind::Absent {
            let _ = writeln!(out, "  - {}", d.statement);
        }
    }
    for m in &c.prior_report {
        let _ = writeln!(
            out,
            "  prior report: \"{}\" -> {} ({:.2})",
            m.prior_sentence,
            match (&m.best_match, m.matched) {
                (Some(s), true) => format!("related to \"{s}\""),
                _ => "not addressed by the new results".into(),
            },
            m.similarity
        );
    }
}

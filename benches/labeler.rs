//! Labeler throughput: 10,000 reports on one core.
//!
//! The reports are built from the CheXpert labeler's sample reports and a set of sentences
//! typical of chest X-ray reports (findings, negations, uncertainty, devices, section titles),
//! combined deterministically so every report differs; about 4 sentences each. Run:
//!
//!     cargo bench --bench labeler
//!
//! (the process is pinned to one core by `taskset -c 0` in scripts/bench-labeler).

use radassist::labeler::Labeler;
use std::time::Instant;

const SENTENCES: &[&str] = &[
    "Heart size normal and lungs are clear.",
    "No edema or pneumonia.",
    "No pleural effusion or pneumothorax.",
    "Left pleural effusion with adjacent atelectasis.",
    "Cardiomegaly without overt edema.",
    "Minimal patchy airspace disease within the lingula, may reflect atelectasis or consolidation.",
    "Stable mild cardiomegaly.",
    "Hyperexpanded but clear lungs.",
    "Endotracheal tube tip is 4.5 cm above the carina.",
    "Right internal jugular central venous catheter terminates in the mid SVC.",
    "Enteric tube courses below the diaphragm, tip not seen.",
    "There is a small right apical pneumothorax.",
    "Pneumothorax cannot be excluded.",
    "Possible left lower lobe pneumonia.",
    "No acute cardiopulmonary process.",
    "Mediastinal contours are within normal limits.",
    "Healed right rib fractures.",
    "Mild pulmonary vascular congestion.",
    "Bibasilar opacities likely atelectasis.",
    "XXXX XXXX normal. No XXXX pneumothorax.",
];

fn main() {
    let labeler = Labeler::new();
    let reports: Vec<String> = (0..10_000usize)
        .map(|i| {
            let pick = |k: usize| SENTENCES[(i * 7 + k * 13 + i / 20) % SENTENCES.len()];
            format!(
                "FINDINGS: {} {} {}\nIMPRESSION: {}",
                pick(0),
                pick(1),
                pick(2),
                pick(3)
            )
        })
        .collect();
    // Warm-up.
    for report in reports.iter().take(100) {
        labeler.label(report);
    }
    let started = Instant::now();
    let mut mentions = 0usize;
    for report in &reports {
        mentions += labeler.label(report).mentions.len();
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "labeler: {} reports in {seconds:.2} s = {:.0} reports/s on one thread ({mentions} mentions)",
        reports.len(),
        reports.len() as f64 / seconds
    );
}

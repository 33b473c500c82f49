//! How far the labeler's own labels can be trusted: its F1 for each observation against the
//! manual MeSH annotations of real reports (the development half of the Indiana University
//! chest X-ray reports, 1,962 reports, scored by `scripts/labeler-agreement`, which needs
//! `../shared` and prints the table below afresh). QA's agreement figures are built on these
//! labels, so `radassist qa compare` shows this F1 beside each observation and says when it
//! is low. The report text never enters the repository; these numbers are all that is kept.

use super::Observation;

/// When the labeler's own F1 was measured, and on what.
pub const MEASURED: &str =
    "2026-12-02, Indiana University reports (development half, 1,962) against MeSH";

/// Below this F1 the labeler's labels for an observation are flagged in QA output.
pub const TRUSTED_F1: f64 = 0.80;

/// The labeler's F1 for `observation` on real reports (None: not measured; MeSH has no
/// heading for it).
pub fn labeler_f1(observation: Observation) -> Option<f64> {
    use Observation::*;
    Some(match observation {
        Cardiomegaly => 0.932,
        PleuralEffusion => 0.928,
        Atelectasis => 0.959,
        Pneumothorax => 0.857,
        Edema => 0.810,
        Pneumonia => 0.875,
        Consolidation => 0.857,
        Fracture => 0.881,
        LungLesion => 0.769,
        SupportDevices => 0.864,
        NoFinding | EnlargedCardiomediastinum | LungOpacity | PleuralOther => return None,
    })
}

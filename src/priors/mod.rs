//! Comparison with the patient's prior studies.
pub mod registration;

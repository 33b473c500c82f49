//! Every coded concept radassist writes into a DICOM object, in one place.
//!
//! Codes come from DICOM's own vocabulary (DCM), SNOMED CT (SCT), LOINC (LN) and UCUM where
//! those have one. Where none has a concept radassist needs (a placement verdict, a CheXpert
//! observation without a SNOMED CT equivalent, a change since the prior), the code is in
//! radassist's private coding scheme [`PRIVATE_SCHEME`], documented with every value in
//! docs/dicom-conformance-statement.md (a test keeps the two in step). A findings pack may name
//! observations radassist has no code for; those get a private code made from the name
//! ([`finding`]).

use crate::placement::{Device, Verdict};
use std::borrow::Cow;

/// radassist's private coding scheme designator (PS3.16 8.2: "99" and a name).
pub const PRIVATE_SCHEME: &str = "99RADASSIST";

/// A coded concept: code value, coding scheme designator, code meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    pub value: Cow<'static, str>,
    pub scheme: &'static str,
    pub meaning: Cow<'static, str>,
}

const fn code(value: &'static str, scheme: &'static str, meaning: &'static str) -> Code {
    Code {
        value: Cow::Borrowed(value),
        scheme,
        meaning: Cow::Borrowed(meaning),
    }
}

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = ($value:literal, $scheme:literal, $meaning:literal);)*) => {
        $($(#[$doc])* pub const $name: Code = code($value, $scheme, $meaning);)*
        /// Every fixed code above (the conformance statement lists each).
        pub const ALL: &[Code] = &[$($name),*];
    };
}

codes! {
    // Documents and their structure.
    DIAGNOSTIC_IMAGING_REPORT = ("18748-4", "LN", "Diagnostic Imaging Report");
    IMAGING_MEASUREMENT_REPORT = ("126000", "DCM", "Imaging Measurement Report");
    IMAGE_LIBRARY = ("111028", "DCM", "Image Library");
    IMAGE_LIBRARY_GROUP = ("126200", "DCM", "Image Library Group");
    IMAGING_MEASUREMENTS = ("126010", "DCM", "Imaging Measurements");
    MEASUREMENT_GROUP = ("125007", "DCM", "Measurement Group");
    FINDINGS = ("121070", "DCM", "Findings");
    FINDING = ("121071", "DCM", "Finding");
    IMPRESSION = ("121073", "DCM", "Impression");
    LANGUAGE = ("121049", "DCM", "Language of Content Item and Descendants");
    ENGLISH_US = ("en-US", "RFC5646", "English (United States)");
    PROCEDURE_REPORTED = ("121058", "DCM", "Procedure reported");
    PLAIN_CHEST_XRAY = ("399208008", "SCT", "Plain chest X-ray");
    // Observer context (TID 1002, 1004) and algorithm identification (TID 4019).
    OBSERVER_TYPE = ("121005", "DCM", "Observer Type");
    PERSON = ("121006", "DCM", "Person");
    DEVICE = ("121007", "DCM", "Device");
    PERSON_OBSERVER_NAME = ("121008", "DCM", "Person Observer Name");
    DEVICE_OBSERVER_UID = ("121012", "DCM", "Device Observer UID");
    DEVICE_OBSERVER_NAME = ("121013", "DCM", "Device Observer Name");
    DEVICE_OBSERVER_MANUFACTURER = ("121014", "DCM", "Device Observer Manufacturer");
    DEVICE_OBSERVER_MODEL_NAME = ("121015", "DCM", "Device Observer Model Name");
    ALGORITHM_NAME = ("111001", "DCM", "Algorithm Name");
    ALGORITHM_VERSION = ("111003", "DCM", "Algorithm Version");
    ALGORITHM_PARAMETERS = ("111002", "DCM", "Algorithm Parameters");
    PROCESSING_EQUIPMENT = ("109102", "DCM", "Processing Equipment");
    // Measurement groups (TID 1410, 1501) and measurements (TID 300).
    TRACKING_IDENTIFIER = ("112039", "DCM", "Tracking Identifier");
    TRACKING_UNIQUE_IDENTIFIER = ("112040", "DCM", "Tracking Unique Identifier");
    IMAGE_REGION = ("111030", "DCM", "Image Region");
    SOURCE = ("260753009", "SCT", "Source");
    SOURCE_OF_MEASUREMENT = ("121112", "DCM", "Source of Measurement");
    DISTANCE = ("121206", "DCM", "Distance");
    EQUIVALENT_MEANING = ("121050", "DCM", "Equivalent Meaning of Concept Name");
    FINDING_SITE = ("363698007", "SCT", "Finding Site");
    PROBABILITY = ("122157", "DCM", "Probability");
    CERTAINTY_OF_FINDING = ("111012", "DCM", "Certainty of Finding");
    PRESENT = ("52101004", "SCT", "Present");
    ABSENT = ("272519000", "SCT", "Absent");
    // Units (UCUM).
    MILLIMETER = ("mm", "UCUM", "millimeter");
    PIXELS = ("{pixels}", "UCUM", "pixels");
    NO_UNITS = ("1", "UCUM", "no units");
    // Devices (the finding of each placement group).
    ENDOTRACHEAL_TUBE = ("26412008", "SCT", "Endotracheal tube");
    NASOGASTRIC_TUBE = ("17102003", "SCT", "Nasogastric tube");
    CENTRAL_VENOUS_CATHETER = ("52124006", "SCT", "Central venous catheter");
    CHEST_TUBE = ("112173", "DCM", "Chest tube");
    // Anatomy the measurements are taken to.
    CARINA = ("28700002", "SCT", "Carina");
    DIAPHRAGM = ("5798000", "SCT", "Diaphragm");
    // Findings with a SNOMED CT or DCM concept.
    PNEUMOTHORAX = ("36118008", "SCT", "Pneumothorax");
    PLEURAL_EFFUSION = ("60046008", "SCT", "Pleural effusion");
    PULMONARY_EDEMA = ("19242006", "SCT", "Pulmonary edema");
    CARDIOMEGALY = ("8186001", "SCT", "Cardiomegaly");
    CONSOLIDATION = ("95436008", "SCT", "Lung consolidation");
    ATELECTASIS = ("46621007", "SCT", "Atelectasis");
    PNEUMONIA = ("233604007", "SCT", "Pneumonia");
    FRACTURE = ("125605004", "SCT", "Fracture of bone");
    OPACITY = ("112001", "DCM", "Opacity");
    // radassist's private concepts (no standard code exists).
    PLACEMENT = ("PLACEMENT", "99RADASSIST", "Device placement");
    APPROPRIATE = ("APPROPRIATE", "99RADASSIST", "Appropriately positioned");
    BORDERLINE = ("BORDERLINE", "99RADASSIST", "Borderline position");
    MALPOSITIONED = ("MALPOSITIONED", "99RADASSIST", "Malpositioned");
    NOT_ASSESSABLE = ("NOT-ASSESSABLE", "99RADASSIST", "Position not assessable");
    PRESENCE = ("PRESENCE", "99RADASSIST", "Presence");
    INDETERMINATE = ("INDETERMINATE", "99RADASSIST", "Indeterminate");
    CHANGE_SINCE_PRIOR = ("CHANGE", "99RADASSIST", "Change since prior study");
    NEW = ("NEW", "99RADASSIST", "New");
    RESOLVED = ("RESOLVED", "99RADASSIST", "Resolved");
    INCREASED = ("INCREASED", "99RADASSIST", "Increased");
    DECREASED = ("DECREASED", "99RADASSIST", "Decreased");
    UNCHANGED = ("UNCHANGED", "99RADASSIST", "Unchanged");
    ENLARGED_CARDIOMEDIASTINUM = ("ENL-CARDIOMED", "99RADASSIST", "Enlarged cardiomediastinum");
    LUNG_LESION = ("LUNG-LESION", "99RADASSIST", "Lung lesion");
    PLEURAL_OTHER = ("PLEURAL-OTHER", "99RADASSIST", "Pleural abnormality, other");
    SUPPORT_DEVICES = ("SUPPORT-DEVICES", "99RADASSIST", "Support devices");
    NO_FINDING = ("NO-FINDING", "99RADASSIST", "No finding");
    LANDMARK_CONFIDENCE = ("LANDMARK-CONF", "99RADASSIST", "Landmark confidence");
}

/// The device as the finding of its measurement group.
pub fn device(device: Device) -> Code {
    match device {
        Device::EndotrachealTube => ENDOTRACHEAL_TUBE,
        Device::EnteralTube => NASOGASTRIC_TUBE,
        Device::CentralVenousCatheter => CENTRAL_VENOUS_CATHETER,
        Device::ChestTube => CHEST_TUBE,
    }
}

/// A placement verdict as a qualitative evaluation (None for an absent device: no group).
pub fn verdict(verdict: Verdict) -> Option<Code> {
    match verdict {
        Verdict::Appropriate => Some(APPROPRIATE),
        Verdict::Borderline => Some(BORDERLINE),
        Verdict::Malpositioned => Some(MALPOSITIONED),
        Verdict::NotAssessable => Some(NOT_ASSESSABLE),
        Verdict::Absent => None,
    }
}

/// A findings pack's observation (CheXpert's names, as the packs use them) as a code. A name
/// radassist does not know gets a private code: "X-" and the first 14 letters and digits of the
/// name, upper case, with the name (its first 64 bytes) as its meaning.
pub fn finding(observation: &str) -> Code {
    match observation.to_ascii_lowercase().as_str() {
        "pneumothorax" => PNEUMOTHORAX,
        "pleural effusion" | "effusion" => PLEURAL_EFFUSION,
        "edema" => PULMONARY_EDEMA,
        "cardiomegaly" => CARDIOMEGALY,
        "consolidation" => CONSOLIDATION,
        "atelectasis" => ATELECTASIS,
        "pneumonia" => PNEUMONIA,
        "fracture" => FRACTURE,
        "lung opacity" => OPACITY,
        "enlarged cardiomediastinum" => ENLARGED_CARDIOMEDIASTINUM,
        "lung lesion" => LUNG_LESION,
        "pleural other" => PLEURAL_OTHER,
        "support devices" => SUPPORT_DEVICES,
        "no finding" => NO_FINDING,
        _ => {
            let letters: String = observation
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(14)
                .collect::<String>()
                .to_ascii_uppercase();
            Code {
                value: Cow::Owned(format!("X-{letters}")),
                scheme: PRIVATE_SCHEME,
                meaning: Cow::Owned(super::dataset::fit(observation, 64).to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_fit_their_value_representations() {
        for c in ALL {
            assert!(c.value.len() <= 16, "{c:?}: a code value is SH (16)");
            assert!(c.meaning.len() <= 64, "{c:?}: a code meaning is LO (64)");
            assert!(c.scheme.len() <= 16, "{c:?}: a designator is SH (16)");
        }
        // The conformance statement lists every code.
        let statement = include_str!("../../docs/dicom-conformance-statement.md");
        for c in ALL {
            let row = format!("| {} | {} | {} |", c.value, c.scheme, c.meaning);
            assert!(
                statement.contains(&row),
                "{row} is not in the conformance statement"
            );
        }
        let unknown = finding("Hilar prominence (left-sided), a very long observation name");
        assert_eq!(unknown.value, "X-HILARPROMINENC");
        assert_eq!(unknown.scheme, PRIVATE_SCHEME);
        assert!(unknown.meaning.len() <= 64);
    }
}

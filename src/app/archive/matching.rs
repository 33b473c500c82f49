//! Attribute matching as PS3.4 C.2.2.2 defines it for a query's keys, and as PS3.18 8.3.4
//! reads them from a search's query parameters.
//!
//! A key is one of: universal (empty: everything matches), a list of UIDs (`\` or `,`
//! between them), a range of dates or times (`20240101-20241231`, `-20241231`,
//! `20240101-`), a wildcard (`*` any run of characters, `?` one character), or a single
//! value. Person names match case-insensitively (as most archives do; PS3.4 leaves it to the
//! archive), and a single value or wildcard matches a multi-valued attribute when any of its
//! values does. An attribute the instance lacks (or holds empty) matches only the universal key.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_object::InMemDicomObject;

/// How one key matches.
#[derive(Debug, Clone, PartialEq)]
pub enum Matching {
    Universal,
    Single(String),
    Wildcard(Vec<char>),
    /// Inclusive bounds, each possibly open.
    Range(Option<String>, Option<String>),
    Uids(Vec<String>),
}

/// One key of a search: an attribute and how it must match.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub tag: Tag,
    pub vr: VR,
    pub matching: Matching,
}

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KeyError {
    #[error("{0} is neither a DICOM keyword nor a tag (ggggeeee): name the attribute as PS3.6 does (PatientName, 00100010)")]
    UnknownAttribute(String),
    #[error("{0}: matching into sequences is not supported: match on a top-level attribute")]
    Sequence(String),
    #[error("{name}: {value} is not a date or time range (use YYYYMMDD-YYYYMMDD, with either end left open)")]
    BadRange { name: String, value: String },
}

/// The attribute `name` names (a keyword such as `PatientName`, or a tag such as `00100010`),
/// and its VR.
pub fn attribute(name: &str) -> Result<(Tag, VR), KeyError> {
    if name.contains('.') {
        return Err(KeyError::Sequence(crate::excerpt::excerpt(name)));
    }
    let entry = StandardDataDictionary
        .by_expr(name)
        .ok_or_else(|| KeyError::UnknownAttribute(crate::excerpt::excerpt(name)))?;
    let vr = match entry.vr() {
        VirtualVr::Exact(vr) => vr,
        _ => VR::OB,
    };
    if vr == VR::SQ {
        return Err(KeyError::Sequence(entry.alias().to_string()));
    }
    Ok((entry.tag(), vr))
}

impl Key {
    /// The key `name=value` of a query.
    pub fn parse(name: &str, value: &str) -> Result<Key, KeyError> {
        let (tag, vr) = attribute(name)?;
        let value = value.trim();
        let matching = if value.is_empty() || value == "*" {
            Matching::Universal
        } else if vr == VR::UI {
            Matching::Uids(
                value
                    .split(['\\', ','])
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
                    .collect(),
            )
        } else if matches!(vr, VR::DA | VR::TM | VR::DT) && value.contains('-') {
            range(value).ok_or_else(|| KeyError::BadRange {
                name: name.to_string(),
                value: crate::excerpt::excerpt(value),
            })?
        } else if value.contains(['*', '?']) {
            Matching::Wildcard(folded(vr, value).chars().collect())
        } else {
            Matching::Single(folded(vr, value))
        };
        Ok(Key { tag, vr, matching })
    }

    /// Whether `data_set` matches this key.
    pub fn matches(&self, data_set: &InMemDicomObject) -> bool {
        if self.matching == Matching::Universal {
            return true;
        }
        let values: Vec<String> = data_set
            .element(self.tag)
            .ok()
            .and_then(|e| e.value().to_multi_str().ok().map(|v| v.to_vec()))
            .unwrap_or_default()
            .iter()
            // A value built as one text with `\` in it holds several.
            .flat_map(|v| v.split('\\'))
            .map(|v| folded(self.vr, v.trim()))
            .filter(|v| !v.is_empty())
            .collect();
        values.iter().any(|value| self.matches_value(value))
    }

    fn matches_value(&self, value: &str) -> bool {
        match &self.matching {
            Matching::Universal => true,
            Matching::Single(wanted) => {
                if matches!(self.vr, VR::IS | VR::DS | VR::US | VR::UL | VR::SS | VR::SL) {
                    let number = |v: &str| v.parse::<f64>().ok();
                    match (number(wanted), number(value)) {
                        (Some(a), Some(b)) => a == b,
                        _ => wanted == value,
                    }
                } else {
                    wanted == value
                }
            }
            Matching::Wildcard(pattern) => wildcard(pattern, &value.chars().collect::<Vec<_>>()),
            Matching::Range(from, to) => {
                from.as_deref().is_none_or(|f| value >= f)
                    && to.as_deref().is_none_or(|t| {
                        // An end date or time covers all of itself: 1200 covers 120059.
                        value <= t || value.starts_with(t)
                    })
            }
            Matching::Uids(uids) => uids.iter().any(|u| u == value),
        }
    }
}

/// A range's bounds, or None when it has more than one `-` or neither bound.
fn range(value: &str) -> Option<Matching> {
    let (from, to) = value.split_once('-')?;
    if to.contains('-') || (from.is_empty() && to.is_empty()) {
        return None;
    }
    let bound = |b: &str| (!b.is_empty()).then(|| b.trim().to_string());
    Some(Matching::Range(bound(from), bound(to)))
}

/// A value as it is compared: person names without case, and without the empty trailing
/// components (`Doe^Jane^^^` is `Doe^Jane`).
fn folded(vr: VR, value: &str) -> String {
    if vr == VR::PN {
        value.trim_end_matches(['^', ' ']).to_lowercase()
    } else {
        value.to_string()
    }
}

/// Whether `text` matches `pattern` (`*` any run, `?` one character), without recursion and
/// in at most pattern x text steps (only the last `*` is ever gone back to).
fn wildcard(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it was tried against.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::DataElement;
    use dicom_dictionary_std::tags;

    fn data_set() -> InMemDicomObject {
        InMemDicomObject::from_element_iter([
            DataElement::new(tags::PATIENT_NAME, VR::PN, "Doe^Jane^^^"),
            DataElement::new(tags::STUDY_DATE, VR::DA, "20240315"),
            DataElement::new(tags::STUDY_TIME, VR::TM, "120530.25"),
            DataElement::new(tags::MODALITIES_IN_STUDY, VR::CS, "DX\\SR"),
            DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3"),
            DataElement::new(tags::SERIES_NUMBER, VR::IS, "  2"),
        ])
    }

    fn matches(name: &str, value: &str) -> bool {
        Key::parse(name, value).unwrap().matches(&data_set())
    }

    #[test]
    fn keys_match_as_ps3_4_says() {
        assert!(matches("PatientName", "doe^jane"));
        assert!(matches("PatientName", "DOE*"));
        assert!(matches("00100010", "D?e^*"));
        assert!(!matches("PatientName", "Doe"));
        assert!(!matches("PatientName", "*smith*"));
        assert!(matches("StudyDate", "20240101-20241231"));
        assert!(matches("StudyDate", "-20240315"));
        assert!(matches("StudyDate", "20240315-"));
        assert!(!matches("StudyDate", "20240316-"));
        assert!(matches("StudyDate", "20240315"));
        assert!(matches("StudyTime", "1200-1205"));
        assert!(!matches("StudyTime", "1206-"));
        assert!(matches("ModalitiesInStudy", "SR"));
        assert!(!matches("ModalitiesInStudy", "CT"));
        assert!(matches("StudyInstanceUID", "9.9,1.2.3"));
        assert!(matches("StudyInstanceUID", "9.9\\1.2.3"));
        assert!(!matches("StudyInstanceUID", "1.2"));
        assert!(matches("SeriesNumber", "2"));
        assert!(matches("AccessionNumber", ""));
        assert!(
            !matches("AccessionNumber", "A1"),
            "absent matches only universally"
        );
    }

    #[test]
    fn wildcards_match_without_backtracking_blowing_up() {
        let w = |p: &str, t: &str| {
            wildcard(
                &p.chars().collect::<Vec<_>>(),
                &t.chars().collect::<Vec<_>>(),
            )
        };
        assert!(w("*", ""));
        assert!(w("a*b*c", "aXXbYYc"));
        assert!(!w("a*b*c", "aXXbYY"));
        assert!(w("??", "ab"));
        assert!(!w("??", "abc"));
        let long = "a".repeat(10_000);
        assert!(!w(
            &"*a".repeat(50).chars().chain(['b']).collect::<String>(),
            &long
        ));
    }

    #[test]
    fn bad_keys_say_what_is_wrong() {
        assert!(matches!(
            Key::parse("PatientNom", "x"),
            Err(KeyError::UnknownAttribute(_))
        ));
        assert!(matches!(
            Key::parse("ReferencedStudySequence", "x"),
            Err(KeyError::Sequence(_))
        ));
        assert!(matches!(
            Key::parse("StudyDate", "2024-01-01"),
            Err(KeyError::BadRange { .. })
        ));
        assert!(matches!(
            Key::parse("StudyDate", "-"),
            Err(KeyError::BadRange { .. })
        ));
    }
}

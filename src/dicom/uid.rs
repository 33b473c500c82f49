//! DICOM unique identifiers (PS3.5 section 9.1), checked wherever one enters radassist.
//!
//! A UID names a study, a series or an instance, and radassist builds resource names, URLs and
//! worklist links from it. A value that is not a UID (`1.2/../3.4`, `<script>`, a 400-character
//! string) could otherwise change the path a link leads to, so every way in (C-STORE, gRPC, a
//! peer's C-FIND answer, the web app's paths) refuses it with the rule it broke, before it is
//! stored or looked up. The rule: 1 to 64 characters, components of digits separated by single
//! periods, no component empty, and no component of more than one digit starting with a zero.

use std::fmt;

/// The most characters a UID may have (PS3.5 9.1).
pub const MAX_UID_LENGTH: usize = 64;

/// Why a value is not a DICOM UID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UidError {
    #[error("it is empty")]
    Empty,
    #[error("it has {0} characters, more than the {MAX_UID_LENGTH} a UID may have")]
    TooLong(usize),
    #[error("character {position} is {character}, but a UID has only digits and periods")]
    NotDigitOrPeriod { position: usize, character: Shown },
    #[error("component {0} is empty (a UID neither starts nor ends with a period, nor has two in a row)")]
    EmptyComponent(usize),
    #[error("component {0} starts with a zero (only the component \"0\" may)")]
    LeadingZero(usize),
}

/// A character as an error message shows it: printable ASCII quoted, anything else as its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown(pub char);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            c if c.is_ascii_graphic() || c == ' ' => write!(f, "'{c}'"),
            c => write!(f, "U+{:04X}", c as u32),
        }
    }
}

/// Checks that `value` is a DICOM UID (PS3.5 9.1).
pub fn check_uid(value: &str) -> Result<(), UidError> {
    if value.is_empty() {
        return Err(UidError::Empty);
    }
    let length = value.chars().count();
    if length > MAX_UID_LENGTH {
        return Err(UidError::TooLong(length));
    }
    if let Some((position, character)) = value
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_digit() && *c != '.')
    {
        return Err(UidError::NotDigitOrPeriod {
            position: position + 1,
            character: Shown(character),
        });
    }
    for (index, component) in value.split('.').enumerate() {
        if component.is_empty() {
            return Err(UidError::EmptyComponent(index + 1));
        }
        if component.len() > 1 && component.starts_with('0') {
            return Err(UidError::LeadingZero(index + 1));
        }
    }
    Ok(())
}

/// Whether `value` is a DICOM UID.
pub fn is_uid(value: &str) -> bool {
    check_uid(value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_of_real_studies_pass() {
        for uid in [
            "1.2.840.10008.5.1.4.1.1.1.1",
            "1.3.6.1.4.1.9590.100.1.2.100056298812143106428891542301849011389",
            "2.25.329800735698586629295641978511506172918",
            "0",
            "1.0.2",
        ] {
            assert_eq!(check_uid(uid), Ok(()), "{uid}");
        }
    }

    #[test]
    fn what_the_security_review_sent_is_refused_with_its_rule() {
        assert_eq!(
            check_uid("9.9.9/../1.2.3"),
            Err(UidError::NotDigitOrPeriod {
                position: 6,
                character: Shown('/')
            })
        );
        assert!(matches!(
            check_uid("<script>alert(1)</script>"),
            Err(UidError::NotDigitOrPeriod { position: 1, .. })
        ));
        assert_eq!(check_uid(&"1.".repeat(200)), Err(UidError::TooLong(400)));
        assert!(matches!(
            check_uid("../../etc/passwd"),
            Err(UidError::EmptyComponent(1)) | Err(UidError::NotDigitOrPeriod { .. })
        ));
        assert_eq!(check_uid(""), Err(UidError::Empty));
        assert_eq!(check_uid(".."), Err(UidError::EmptyComponent(1)));
        assert_eq!(check_uid("1..2"), Err(UidError::EmptyComponent(2)));
        assert_eq!(check_uid("1.2."), Err(UidError::EmptyComponent(3)));
        assert_eq!(check_uid("1.02.3"), Err(UidError::LeadingZero(2)));
        assert_eq!(check_uid(&"1".repeat(65)), Err(UidError::TooLong(65)));
        assert_eq!(check_uid(&"1".repeat(64)), Ok(()));
        let control = check_uid("1.2\n3").unwrap_err().to_string();
        assert!(control.contains("U+000A"), "{control}");
    }
}

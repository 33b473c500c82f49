//! Typed reading of header attributes, with errors that name the attribute.
//!
//! DICOM headers from real devices carry padding, empty values and the odd malformed number;
//! these helpers turn "absent", "empty" and "present" into `Option`, and "present but
//! unreadable" into a [`DecodeError::InvalidAttribute`] that names the attribute and its tag.

use super::DecodeError;
use dicom_core::header::HasLength;
use dicom_core::Tag;
use dicom_object::InMemDicomObject;

/// Read access to the attributes of one data set (or sequence item).
#[derive(Clone, Copy)]
pub(crate) struct Attributes<'a>(pub &'a InMemDicomObject);

fn tag_text(tag: Tag) -> String {
    format!("({:04X},{:04X})", tag.group(), tag.element())
}

pub(crate) fn invalid(
    name: &'static str,
    tag: Tag,
    value: impl Into<String>,
    reason: impl Into<String>,
) -> DecodeError {
    DecodeError::InvalidAttribute {
        name,
        tag: tag_text(tag),
        value: value.into(),
        reason: reason.into(),
    }
}

pub(crate) fn missing(name: &'static str, tag: Tag) -> DecodeError {
    DecodeError::MissingAttribute {
        name,
        tag: tag_text(tag),
    }
}

impl<'a> Attributes<'a> {
    fn element(&self, tag: Tag) -> Option<&'a dicom_object::mem::InMemElement> {
        // `get`, not `element_opt`: that one builds an error, with a captured backtrace, for
        // every absent attribute, and most optional attributes are absent.
        self.0.get(tag).filter(|e| !e.value().is_empty())
    }

    pub fn has(&self, tag: Tag) -> bool {
        self.element(tag).is_some()
    }

    /// A text value, trimmed of DICOM padding; `None` when absent or empty.
    pub fn text(&self, tag: Tag) -> Option<String> {
        let element = self.element(tag)?;
        let text = element.value().to_str().ok()?;
        let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        (!text.is_empty()).then(|| text.to_string())
    }

    /// All values of a multi-valued text attribute, trimmed.
    pub fn texts(&self, tag: Tag) -> Vec<String> {
        self.element(tag)
            .and_then(|e| e.value().to_multi_str().ok().map(|v| v.to_vec()))
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                    .to_string()
            })
            .collect()
    }

    pub fn float(&self, name: &'static str, tag: Tag) -> Result<Option<f64>, DecodeError> {
        Ok(self.floats(name, tag)?.and_then(|v| v.first().copied()))
    }

    pub fn floats(&self, name: &'static str, tag: Tag) -> Result<Option<Vec<f64>>, DecodeError> {
        let Some(element) = self.element(tag) else {
            return Ok(None);
        };
        let values = element.value().to_multi_float64().map_err(|err| {
            invalid(
                name,
                tag,
                element.value().to_str().unwrap_or_default(),
                err.to_string(),
            )
        })?;
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            return Err(invalid(name, tag, bad.to_string(), "not a finite number"));
        }
        Ok(Some(values))
    }

    pub fn int(&self, name: &'static str, tag: Tag) -> Result<Option<i64>, DecodeError> {
        Ok(self.ints(name, tag)?.and_then(|v| v.first().copied()))
    }

    pub fn ints(&self, name: &'static str, tag: Tag) -> Result<Option<Vec<i64>>, DecodeError> {
        let Some(element) = self.element(tag) else {
            return Ok(None);
        };
        element
            .value()
            .to_multi_int::<i64>()
            .map(Some)
            .map_err(|err| {
                invalid(
                    name,
                    tag,
                    element.value().to_str().unwrap_or_default(),
                    err.to_string(),
                )
            })
    }

    pub fn required_u16(&self, name: &'static str, tag: Tag) -> Result<u16, DecodeError> {
        let value = self.int(name, tag)?.ok_or_else(|| missing(name, tag))?;
        u16::try_from(value).map_err(|_| invalid(name, tag, value.to_string(), "out of range"))
    }

    /// The items of a sequence attribute (empty when absent).
    pub fn items(&self, tag: Tag) -> &'a [InMemDicomObject] {
        self.element(tag)
            .and_then(|e| e.value().items())
            .unwrap_or(&[])
    }
}

//! The text of a structured report, read back: what a prior study's signed SR says, so that
//! the new draft can be compared with it sentence by sentence (DESIGN.md section 5).
//!
//! Reports come from radassist ([`super::sr`], TID 2000) and from other systems (Basic,
//! Enhanced or Comprehensive SR). The reading is the same for all: each CONTAINER under the
//! document root is a section, titled by its Concept Name ("FINDINGS:", "IMPRESSION:"), and its
//! TEXT items are the section's sentences; TEXT items directly under the root are sections of
//! their own. Codes, numbers and image references are the evidence of sentences, not text,
//! and are left out.

use crate::dicom::{Attributes, DicomInstance};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// The SR storage SOP classes whose text radassist reads.
pub const TEXT_SR_SOP_CLASSES: &[(&str, &str)] = &[
    ("1.2.840.10008.5.1.4.1.1.88.11", "Basic Text SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.22", "Enhanced SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.33", "Comprehensive SR Storage"),
];

/// Deeper content trees than this are not read (TID 2000 is four levels deep).
const MAX_DEPTH: usize = 16;

fn string(item: &InMemDicomObject, tag: Tag) -> Option<String> {
    Attributes(item).text(tag)
}

/// The Code Meaning of an item's Concept Name.
fn concept(item: &InMemDicomObject) -> Option<String> {
    let names = Attributes(item).items(tags::CONCEPT_NAME_CODE_SEQUENCE);
    string(names.first()?, tags::CODE_MEANING)
}

fn children(item: &InMemDicomObject) -> &[InMemDicomObject] {
    Attributes(item).items(tags::CONTENT_SEQUENCE)
}

/// The TEXT values in a container, in document order (nested containers included).
fn texts(item: &InMemDicomObject, depth: usize, out: &mut Vec<String>) {
    if depth > MAX_DEPTH {
        return;
    }
    for child in children(item) {
        match string(child, tags::VALUE_TYPE).as_deref() {
            Some("TEXT") => out.extend(string(child, tags::TEXT_VALUE)),
            Some("CONTAINER") => texts(child, depth + 1, out),
            _ => {}
        }
    }
}

/// The report's text as sections ("FINDINGS: ...\n\nIMPRESSION: ..."); an error when `sr` is
/// not a document or holds no text.
pub fn report_text(sr: &DicomInstance) -> Result<String, String> {
    if string(sr, tags::VALUE_TYPE).as_deref() != Some("CONTAINER") {
        return Err("not a structured report document (its root is not a CONTAINER)".into());
    }
    let mut sections = Vec::new();
    for child in children(sr) {
        let mut sentences = Vec::new();
        match string(child, tags::VALUE_TYPE).as_deref() {
            Some("TEXT") => sentences.extend(string(child, tags::TEXT_VALUE)),
            Some("CONTAINER") => texts(child, 1, &mut sentences),
            _ => continue,
        }
        if sentences.is_empty() {
            continue;
        }
        let body = sentences.join(" ");
        sections.push(match concept(child) {
            Some(title) => format!("{}: {body}", title.to_uppercase()),
            None => body,
        });
    }
    if sections.is_empty() {
        return Err("the structured report holds no text".into());
    }
    Ok(sections.join("\n\n"))
}

/// Content Date and Time as YYYYMMDDHHMMSS (empty when absent): which of two reports is newer.
pub fn content_date_time(sr: &DicomInstance) -> String {
    let date = string(sr, tags::CONTENT_DATE).unwrap_or_default();
    let time = string(sr, tags::CONTENT_TIME).unwrap_or_default();
    let time: String = time
        .chars()
        .take_while(char::is_ascii_digit)
        .take(6)
        .collect();
    format!("{date}{time:0<6}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> DicomInstance {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
        crate::dicom::parse_dicom(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn a_signed_sr_reads_back_as_the_text_that_was_signed() {
        let source = sample("sample-dicom/derived/siim_chest_pa_prior.dcm");
        let text = "FINDINGS: Left chest tube in place. No pneumothorax.\n\nIMPRESSION: Support devices as described.";
        let draft = crate::draft::Draft {
            status: crate::draft::ReportStatus::Preliminary,
            text: text.into(),
            author: "radassist structured renderer".into(),
            findings: vec![],
            impression: vec![],
            critical: false,
            source_images: vec![],
            models: vec![],
            warning: None,
        };
        let read = crate::draft::FinalRead {
            text: text.into(),
            radiologist: "Doe^Jane".into(),
            organization: "General Hospital".into(),
            signed_at: "20240301120000".into(),
            replaces: None,
        };
        let sr = crate::draft::sr::build(&draft, Some(&read), &source, &[]).unwrap();
        assert_eq!(report_text(&sr).unwrap(), text);
        assert_eq!(content_date_time(&sr).len(), 14);
    }

    #[test]
    fn an_image_or_an_sr_without_a_document_root_is_not_a_report() {
        for name in [
            "sample-dicom/derived/siim_chest_pa_prior.dcm",
            // Its root content item has no Value Type (dcmtk's dsrdump refuses it too).
            "sample-dicom/derived/basic_text_sr.dcm",
        ] {
            let error = report_text(&sample(name)).unwrap_err();
            assert!(error.contains("not a structured report"), "{name}: {error}");
        }
    }
}

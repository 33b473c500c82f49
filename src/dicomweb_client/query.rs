//! A Study Root identifier (what a C-FIND would send) as a QIDO-RS search: its level picks the
//! resource (STUDY: `/studies`; SERIES: a study's `/series`; IMAGE: a series' `/instances`),
//! its keys with a value become matching parameters and its empty keys `includefield`s; the
//! answers (DICOM JSON) come back as data sets, as a C-FIND's would.

use super::{body, refusal, DicomWebPeer};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// At most this many answers are read of one search (as a C-FIND's matches are bounded).
pub const MAX_MATCHES: usize = 500;

fn text(data_set: &InMemDicomObject, tag: Tag) -> String {
    crate::dicom::Attributes(data_set)
        .text(tag)
        .unwrap_or_default()
}

fn key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

/// The QIDO-RS path and query parameters of `identifier`.
pub fn search_of(identifier: &InMemDicomObject) -> Result<(String, Vec<(String, String)>), String> {
    let level = text(identifier, tags::QUERY_RETRIEVE_LEVEL);
    let study = text(identifier, tags::STUDY_INSTANCE_UID);
    let series = text(identifier, tags::SERIES_INSTANCE_UID);
    let (path, scope): (String, &[Tag]) = match level.as_str() {
        "STUDY" => ("/studies".into(), &[]),
        "SERIES" if !study.is_empty() => (
            format!("/studies/{study}/series"),
            &[tags::STUDY_INSTANCE_UID],
        ),
        "IMAGE" if !study.is_empty() && !series.is_empty() => (
            format!("/studies/{study}/series/{series}/instances"),
            &[tags::STUDY_INSTANCE_UID, tags::SERIES_INSTANCE_UID],
        ),
        other => {
            return Err(format!(
                "a {other} query needs the UIDs of the levels above it"
            ))
        }
    };
    let mut params = vec![("limit".to_string(), MAX_MATCHES.to_string())];
    for element in identifier.iter() {
        let tag = element.header().tag;
        if tag == tags::QUERY_RETRIEVE_LEVEL || scope.contains(&tag) {
            continue;
        }
        let value = element
            .to_str()
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        if value.is_empty() {
            params.push(("includefield".into(), key(tag)));
        } else {
            params.push((key(tag), value.replace('\\', ",")));
        }
    }
    Ok((path, params))
}

impl DicomWebPeer {
    /// The peer's answers to `identifier`, as data sets.
    pub async fn find(
        &self,
        identifier: &InMemDicomObject,
    ) -> Result<Vec<InMemDicomObject>, String> {
        let (path, params) = search_of(identifier)?;
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| format!("{}: a search's URL: {e}", self.name))?;
        url.query_pairs_mut().extend_pairs(&params);
        let request = self
            .request_to(reqwest::Method::GET, url.as_str())
            .header(reqwest::header::ACCEPT, "application/dicom+json");
        let response = self.send(request, "a search").await?;
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(Vec::new());
        }
        if !response.status().is_success() {
            return Err(refusal(response, &self.name, "a search").await);
        }
        let bytes = body(response, &self.name).await?;
        answers(&bytes).map_err(|e| format!("{}: a search's answer: {e}", self.name))
    }
}

/// A QIDO-RS answer's data sets (an empty body is no match).
pub fn answers(bytes: &[u8]) -> Result<Vec<InMemDicomObject>, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON ({e})"))?;
    let items = json
        .as_array()
        .ok_or("not a JSON array of DICOM JSON objects")?;
    if items.len() > MAX_MATCHES {
        return Err(format!("more than {MAX_MATCHES} matches"));
    }
    items
        .iter()
        .map(|item| {
            dicom_json::from_value::<InMemDicomObject>(item.clone())
                .map_err(|e| format!("an answer is not DICOM JSON ({e})"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicom::identifier::identifier;

    #[test]
    fn identifiers_become_qido_searches() {
        let (path, params) = search_of(&identifier(
            "STUDY",
            &[
                (tags::PATIENT_ID, "P1"),
                (tags::STUDY_DATE, "-20240315"),
                (tags::STUDY_INSTANCE_UID, ""),
            ],
        ))
        .unwrap();
        assert_eq!(path, "/studies");
        assert!(params.contains(&("00100020".into(), "P1".into())));
        assert!(params.contains(&("00080020".into(), "-20240315".into())));
        assert!(params.contains(&("includefield".into(), "0020000D".into())));
        let (path, params) = search_of(&identifier(
            "IMAGE",
            &[
                (tags::STUDY_INSTANCE_UID, "1.2"),
                (tags::SERIES_INSTANCE_UID, "1.3"),
                (tags::SOP_INSTANCE_UID, "1.4"),
            ],
        ))
        .unwrap();
        assert_eq!(path, "/studies/1.2/series/1.3/instances");
        assert!(params.contains(&("00080018".into(), "1.4".into())));
        assert!(search_of(&identifier("SERIES", &[])).is_err());
    }

    #[test]
    fn answers_read_back_and_bad_ones_say_why() {
        let read = answers(br#"[{"00100020": {"vr": "LO", "Value": ["P1"]}, "00201208": {"vr": "IS", "Value": [3]}}]"#).unwrap();
        assert_eq!(text(&read[0], tags::PATIENT_ID), "P1");
        assert_eq!(text(&read[0], tags::NUMBER_OF_STUDY_RELATED_INSTANCES), "3");
        assert!(answers(b"").unwrap().is_empty());
        assert!(answers(b"{}").is_err());
        assert!(answers(b"[{\"0010").is_err());
    }
}

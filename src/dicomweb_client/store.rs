//! One result stored at a peer by STOW-RS, and whether a peer holds one already (QIDO-RS at
//! instance level): what the results sender does with a peer that has `dicomweb`.
//!
//! A store is taken as done only when the peer's Store Instances Response names the instance in
//! its Referenced SOP Sequence (or, from a peer that answers 200 with no body, by the status
//! alone); a Failed SOP Sequence entry, another status, or no answer is a failure with the
//! reason, and the sender tries again later.

use super::{body, refusal, DicomWebPeer};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// A fresh multipart boundary for each store (128 random bits: a DICOM file holds it only by
/// a chance that can be ignored).
fn boundary() -> String {
    format!("radassist-{}", uuid::Uuid::new_v4().simple())
}

fn texts(
    data_set: &InMemDicomObject,
    sequence: dicom_core::Tag,
    tag: dicom_core::Tag,
) -> Vec<(String, Option<u16>)> {
    let Ok(element) = data_set.element(sequence) else {
        return Vec::new();
    };
    element
        .items()
        .unwrap_or_default()
        .iter()
        .map(|item| {
            let uid = item
                .element(tag)
                .ok()
                .and_then(|e| e.to_str().ok())
                .map(|v| v.trim().to_string())
                .unwrap_or_default();
            let reason = item
                .element(tags::FAILURE_REASON)
                .ok()
                .and_then(|e| e.to_int::<u16>().ok());
            (uid, reason)
        })
        .collect()
}

impl DicomWebPeer {
    /// Stores the Part 10 `bytes` of instance `sop_uid` (of study `study_uid`) at the peer.
    pub async fn stow(&self, study_uid: &str, sop_uid: &str, bytes: &[u8]) -> Result<(), String> {
        let boundary = boundary();
        let mut message = Vec::with_capacity(bytes.len() + 256);
        message.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        message.extend_from_slice(bytes);
        message.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let request = self
            .request(reqwest::Method::POST, &format!("/studies/{study_uid}"))
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
            )
            .header(reqwest::header::ACCEPT, "application/dicom+json")
            .body(message);
        let response = self.send(request, "a store").await?;
        let status = response.status();
        if !status.is_success() && status != reqwest::StatusCode::CONFLICT {
            return Err(refusal(response, &self.name, "a store").await);
        }
        let answer = body(response, &self.name).await?;
        if answer.iter().all(u8::is_ascii_whitespace) {
            return if status == reqwest::StatusCode::OK {
                Ok(())
            } else {
                Err(format!(
                    "{}: a store: HTTP {status} without a response",
                    self.name
                ))
            };
        }
        let json: serde_json::Value = serde_json::from_slice(&answer)
            .map_err(|e| format!("{}: a store's answer is not JSON ({e})", self.name))?;
        // Some servers answer with the data set in an array of one.
        let json = match json {
            serde_json::Value::Array(mut items) if items.len() == 1 => items.remove(0),
            other => other,
        };
        let response: InMemDicomObject = dicom_json::from_value(json)
            .map_err(|e| format!("{}: a store's answer is not DICOM JSON ({e})", self.name))?;
        if let Some((_, reason)) = texts(
            &response,
            tags::FAILED_SOP_SEQUENCE,
            tags::REFERENCED_SOP_INSTANCE_UID,
        )
        .into_iter()
        .find(|(uid, _)| uid == sop_uid)
        {
            return Err(format!(
                "{}: the store failed: Failure Reason {}",
                self.name,
                reason.map_or("not given".into(), |r| format!("{r:04X}"))
            ));
        }
        if texts(
            &response,
            tags::REFERENCED_SOP_SEQUENCE,
            tags::REFERENCED_SOP_INSTANCE_UID,
        )
        .iter()
        .any(|(uid, _)| uid == sop_uid)
        {
            Ok(())
        } else {
            Err(format!(
                "{}: the store's answer (HTTP {status}) does not name the instance as stored",
                self.name
            ))
        }
    }

    /// Whether the peer holds instance `sop_uid` of `study_uid` and `series_uid` (QIDO-RS).
    pub async fn holds(
        &self,
        study_uid: &str,
        series_uid: &str,
        sop_uid: &str,
    ) -> Result<bool, String> {
        let found = self
            .find(&crate::dicom::identifier::identifier(
                "IMAGE",
                &[
                    (tags::STUDY_INSTANCE_UID, study_uid),
                    (tags::SERIES_INSTANCE_UID, series_uid),
                    (tags::SOP_INSTANCE_UID, sop_uid),
                ],
            ))
            .await?;
        Ok(found.iter().any(|f| {
            f.element(tags::SOP_INSTANCE_UID)
                .ok()
                .and_then(|e| e.to_str().ok())
                .is_some_and(|v| v.trim() == sop_uid)
        }))
    }
}

//! One signed study for QA: its draft and final read side by side with their word differences,
//! and its label and device comparisons as computed when it was signed.

use crate::qa::StudyComparison;
use crate::roles::Role;
use crate::web::page::{self, Chrome};
use crate::web::paths::StudyUid;
use crate::web::session::Viewer;
use crate::web::{App, WebError};
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

/// A word of the diff: its text and whether it was removed, added or kept.
pub struct Word {
    pub text: String,
    pub class: &'static str,
}

/// The words of draft → final, marked.
pub fn word_diff(draft: &str, final_read: &str) -> (Vec<Word>, Vec<Word>) {
    use similar::{ChangeTag, TextDiff};
    let diff = TextDiff::from_words(draft, final_read);
    let (mut left, mut right) = (vec![], vec![]);
    for change in diff.iter_all_changes() {
        let text = change.value().to_string();
        match change.tag() {
            ChangeTag::Equal => {
                left.push(Word {
                    text: text.clone(),
                    class: "same",
                });
                right.push(Word {
                    text,
                    class: "same",
                });
            }
            ChangeTag::Delete => left.push(Word { text, class: "del" }),
            ChangeTag::Insert => right.push(Word { text, class: "ins" }),
        }
    }
    (left, right)
}

pub struct LabelRow {
    pub observation: String,
    pub draft: String,
    pub final_read: String,
    pub agree: bool,
}

pub struct DeviceRow {
    pub device: String,
    pub draft: String,
    pub final_read: String,
    pub agree: bool,
}

#[derive(Template)]
#[template(path = "qa_study.html")]
struct QaStudy {
    chrome: Chrome,
    uid: String,
    accession: String,
    study_date: String,
    radiologist: String,
    model_version: String,
    draft: Vec<Word>,
    final_read: Vec<Word>,
    edit: String,
    labels: Vec<LabelRow>,
    devices: Vec<DeviceRow>,
}

pub async fn study(
    State(app): State<App>,
    viewer: Viewer,
    StudyUid(uid): StudyUid,
) -> Result<Response, WebError> {
    viewer.require(&[Role::Qa])?;
    let row = app.work_item(&uid).await?;
    let (Some(read), Some(stored)) = (&row.final_read, &row.comparison) else {
        return Err(WebError::new(
            StatusCode::CONFLICT,
            "this study is not signed yet: there is no final read to compare with",
        ));
    };
    let comparison: StudyComparison = serde_json::from_str(stored)
        .map_err(|e| WebError::internal(format!("the stored comparison: {e}")))?;
    let (draft, final_read) = word_diff(&row.content.draft.text, &read.text);
    viewer
        .audit(&app, "web: QA study", &format!("studies/{uid}"))
        .await?;
    Ok(page::render(&QaStudy {
        chrome: Chrome::of(&viewer, "qa"),
        accession: row.content.accession_number.clone(),
        study_date: page::dicom_date(&row.content.study_date),
        radiologist: read.radiologist.clone(),
        model_version: row.model_version.clone(),
        draft,
        final_read,
        edit: format!(
            "{} words changed ({:.0}% of the longer text)",
            comparison.edit_distance,
            comparison.edit_fraction * 100.0
        ),
        labels: comparison
            .labels
            .iter()
            .map(|(o, a)| LabelRow {
                observation: o.to_string(),
                draft: a.draft.as_str().into(),
                final_read: a.final_read.as_str().into(),
                agree: a.agree,
            })
            .collect(),
        devices: comparison
            .devices
            .iter()
            .map(|d| DeviceRow {
                device: d.device.replace('_', " "),
                draft: d.draft.clone().unwrap_or_else(|| "—".into()),
                final_read: d.final_read.clone().unwrap_or_else(|| "—".into()),
                agree: d.agree,
            })
            .collect(),
        uid,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_diff_marks_what_the_radiologist_changed() {
        let (l, r) = word_diff(
            "No pneumothorax. Tube in place.",
            "Small pneumothorax. Tube in place.",
        );
        assert!(l.iter().any(|w| w.class == "del" && w.text == "No"));
        assert!(r.iter().any(|w| w.class == "ins" && w.text == "Small"));
    }
}

use super::*;

fn labels(text: &str) -> Labels {
    Labeler::new().label(text)
}

fn assert_labels(text: &str, expected: &[(&str, Label)]) {
    let found = labels(text);
    for (observation, label) in expected {
        assert_eq!(
            found.get(observation),
            *label,
            "{observation} in {text:?}: {:?}",
            found.mentions
        );
    }
}

#[test]
fn every_pattern_file_loads() {
    let l = Labeler::new();
    assert!(l.negation.len() > 20 && l.post_negation_uncertainty.len() > 15);
    assert!(l.pre_negation_uncertainty.len() >= 4 && l.double_negation.len() == 2);
    assert_eq!(labels("").labels.len(), 14);
}

#[test]
fn cleaning_follows_the_chexpert_labeler() {
    assert_eq!(
        clean("Effusion and/or  atelectasis.Edema/CHF,stable.."),
        "effusion or atelectasis. edema or chf, stable."
    );
}

#[test]
fn negation() {
    use Label::*;
    assert_labels(
        "No pneumothorax.",
        &[("Pneumothorax", Negative), ("No Finding", Positive)],
    );
    assert_labels(
        "No edema or pneumonia.",
        &[("Edema", Negative), ("Pneumonia", Negative)],
    );
    assert_labels(
        "Without evidence of pleural effusion.",
        &[("Pleural Effusion", Negative)],
    );
    assert_labels(
        "Pneumothorax is no longer seen.",
        &[("Pneumothorax", Negative)],
    );
    assert_labels(
        "No focal consolidation, pleural effusion, and pneumothorax.",
        &[
            ("Consolidation", Negative),
            ("Pleural Effusion", Negative),
            ("Pneumothorax", Negative),
        ],
    );
    // The scope ends: "but" and "and" keep what follows positive.
    assert_labels(
        "No effusion but there is mild cardiomegaly.",
        &[("Pleural Effusion", Negative), ("Cardiomegaly", Positive)],
    );
    assert_labels(
        "No effusion and a right pneumothorax.",
        &[("Pneumothorax", Positive)],
    );
    // "No change in" is about the change.
    assert_labels(
        "No change in the small left effusion.",
        &[("Pleural Effusion", Positive)],
    );
}

#[test]
fn uncertainty() {
    use Label::*;
    assert_labels("Cannot exclude pneumonia.", &[("Pneumonia", Uncertain)]);
    assert_labels(
        "Small pneumothorax cannot be excluded.",
        &[("Pneumothorax", Uncertain)],
    );
    assert_labels(
        "Opacity may represent atelectasis or consolidation.",
        &[
            ("Atelectasis", Uncertain),
            ("Consolidation", Uncertain),
            ("Lung Opacity", Positive),
        ],
    );
    assert_labels(
        "Possible small left effusion.",
        &[("Pleural Effusion", Uncertain)],
    );
    assert_labels(
        "Findings are suspicious for pneumonia.",
        &[("Pneumonia", Uncertain)],
    );
    // Uncertain findings are findings: No Finding is not positive.
    assert_eq!(labels("Possible pneumonia.").get("No Finding"), Absent);
}

#[test]
fn double_negation_is_uncertain() {
    use Label::*;
    assert_labels(
        "A pneumothorax is not excluded.",
        &[("Pneumothorax", Uncertain)],
    );
    assert_labels(
        "No evidence to rule out pneumonia.",
        &[("Pneumonia", Uncertain)],
    );
    assert_labels("We cannot rule out a fracture.", &[("Fracture", Uncertain)]);
}

#[test]
fn observations_spanning_sentences() {
    use Label::*;
    // A negation does not reach into the next sentence.
    assert_labels(
        "No pneumothorax. Effusion is present on the left.",
        &[("Pneumothorax", Negative), ("Pleural Effusion", Positive)],
    );
    // Mentions in several sentences aggregate: a positive anywhere wins over a negative...
    assert_labels(
        "No effusion on the right. Small left effusion.",
        &[("Pleural Effusion", Positive)],
    );
    // ...but negative and uncertain together give uncertain, as in the CheXpert labeler.
    assert_labels(
        "No effusion on the right. Possible small left effusion.",
        &[("Pleural Effusion", Uncertain)],
    );
    // A sentence wrapped over two lines is one sentence.
    assert_labels(
        "There is no\npneumothorax. The heart size is normal.",
        &[("Pneumothorax", Negative), ("Cardiomegaly", Negative)],
    );
}

#[test]
fn sections_placeholders_and_exceptions() {
    use Label::*;
    // The indication is not a finding: only Findings and Impression are read.
    let report = "INDICATION: Evaluate for pneumonia.\nFINDINGS: The lungs are clear. No pneumothorax.\nIMPRESSION: No acute disease.";
    let found = labels(report);
    assert_eq!(found.scope, "findings and impression");
    assert_eq!(found.get("Pneumonia"), Absent);
    assert_eq!(found.get("Pneumothorax"), Negative);
    assert_eq!(found.get("No Finding"), Positive);
    // De-identification placeholders are words like any other.
    assert_labels(
        "XXXX XXXX normal. No XXXX pneumothorax. XXXX catheter in place.",
        &[
            ("Pneumothorax", Negative),
            ("Support Devices", Positive),
            ("No Finding", Positive),
        ],
    );
    // "chf" makes Cardiomegaly uncertain too; "pericardial effusion" is not a pleural effusion.
    assert_labels(
        "Findings consistent with CHF.",
        &[("Edema", Positive), ("Cardiomegaly", Uncertain)],
    );
    assert_labels(
        "Small pericardial effusion.",
        &[("Pleural Effusion", Absent)],
    );
    // Position phrases are not findings: "over the heart".
    assert_labels("ECG leads over the heart.", &[("Cardiomegaly", Absent)]);
}

#[test]
fn non_ascii_reports_are_labeled_without_panic() {
    use Label::*;
    // Ligatures, the Turkish dotted I (two chars when lower-cased), German sharp s, emoji and
    // combining marks around the words the labeler reads.
    assert_labels(
        "FINDINGS: ﬁﬁ İİ Straße 🫁. No pneumothorax. IMPRESSION: e\u{301} no effusion.",
        &[("Pneumothorax", Negative), ("Pleural Effusion", Negative)],
    );
    assert_labels(
        "İmpression: İncreased cardiomegaly 👍🏽 and ß/ﬂ.",
        &[("Cardiomegaly", Positive)],
    );
    for text in [
        "İ", "ß", "ﬁ", "🫁", "e\u{301}", "\u{301}", "İ/İ", "a/ß/b", "..ﬁ..",
    ] {
        let _ = labels(text);
        let _ = crate::sentences::split_sentences(text);
    }
}

proptest::proptest! {
    #[test]
    fn any_text_is_labeled_without_panic(text in "\\PC{0,80}") {
        let _ = labels(&text);
        let _ = crate::sentences::split_sentences(&text);
    }
}

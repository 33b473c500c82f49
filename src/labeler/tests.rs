use super::*;

/// The observation of a CheXpert name (the tests name them as reports do).
fn named(name: &str) -> Observation {
    Observation::parse(name).unwrap_or_else(|| panic!("{name:?} is not an observation"))
}

fn labels(text: &str) -> Labels {
    Labeler::new().label(text)
}

fn assert_labels(text: &str, expected: &[(&str, Label)]) {
    let found = labels(text);
    for (observation, label) in expected {
        assert_eq!(
            found.get(named(observation)),
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
    assert_eq!(
        labels("Possible pneumonia.").get(named("No Finding")),
        Absent
    );
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
    // Not the indication's "pneumonia" (uncertain): the clear lungs of the findings.
    assert_eq!(found.get(named("Pneumonia")), Negative);
    assert!(!found.mentions.iter().any(|m| m.text == "pneumonia"));
    assert_eq!(found.get(named("Pneumothorax")), Negative);
    assert_eq!(found.get(named("No Finding")), Positive);
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

/// One sentence per phenomenon real reports need (written for these tests, not taken from any
/// collection), with the label it must get.
#[test]
fn phenomena_of_real_reports() {
    use Label::*;
    let cases: &[(&str, &str, Label)] = &[
        // Negation across a coordinated list, to its last item.
        ("Without evidence of focal airspace disease, pleural effusion, or pneumothorax.", "Pneumothorax", Negative),
        ("Without evidence of focal airspace disease, pleural effusion, or pneumothorax.", "Pleural Effusion", Negative),
        ("No focal consolidation, suspicious opacity, large pleural effusion, or pneumothorax is identified.", "Pneumothorax", Negative),
        ("Negative for pneumothorax, pleural effusion, and focal consolidation.", "Consolidation", Negative),
        ("No pneumonia, effusions, edema, pneumothorax, adenopathy, nodules or masses.", "Lung Lesion", Negative),
        ("No effusion or pneumothorax.", "Pneumothorax", Negative),
        // ...but not past a clause that asserts.
        ("No effusion, but there is a small pneumothorax.", "Pneumothorax", Positive),
        ("No effusion; small right pneumothorax.", "Pneumothorax", Positive),
        // Post-negations.
        ("The pneumothorax is no longer seen.", "Pneumothorax", Negative),
        ("Pneumothorax not seen.", "Pneumothorax", Negative),
        ("The left effusion has resolved.", "Pleural Effusion", Negative),
        ("The right pneumothorax has resolved.", "Pneumothorax", Negative),
        // Normality phrases about the heart.
        ("The cardiac silhouette and mediastinum size are within normal limits.", "Cardiomegaly", Negative),
        ("Heart size and mediastinal contour are within normal limits.", "Cardiomegaly", Negative),
        ("The heart is normal in size.", "Cardiomegaly", Negative),
        ("Heart size is top normal.", "Cardiomegaly", Negative),
        ("The heart is not enlarged.", "Cardiomegaly", Negative),
        ("Heart size, mediastinal contour, and pulmonary vascularity are unremarkable.", "Cardiomegaly", Negative),
        ("The heart is mildly enlarged.", "Cardiomegaly", Positive),
        ("The heart and mediastinum normal.", "Cardiomegaly", Negative),
        ("Heart size upper limits of normal.", "Cardiomegaly", Negative),
        ("Density overlying the cardiac silhouette.", "Cardiomegaly", Absent),
        ("Stable cardiac silhouette.", "Cardiomegaly", Absent),
        ("Normal size and configuration of the cardiac silhouette.", "Cardiomegaly", Negative),
        ("Heart size near top normal limits.", "Cardiomegaly", Negative),
        ("Minimal cardiomegaly.", "Cardiomegaly", Positive),
        ("Minimal atelectasis at the right base.", "Atelectasis", Positive),
        ("Cardiomegaly, lungs are otherwise normal.", "Cardiomegaly", Positive),
        // "The lungs are clear" denies the lung observations.
        ("The lungs are clear.", "Consolidation", Negative),
        ("Clear lungs.", "Edema", Negative),
        ("Lungs are clear except for a right basilar opacity.", "Consolidation", Absent),
        // Uncertainty.
        ("Opacity may represent pneumonia.", "Pneumonia", Uncertain),
        ("Findings could suggest early edema.", "Edema", Uncertain),
        ("A small effusion cannot be excluded.", "Pleural Effusion", Uncertain),
        ("Cannot exclude pneumonia.", "Pneumonia", Uncertain),
        ("Possible left lower lobe pneumonia.", "Pneumonia", Uncertain),
        // A negated finding that would be the evidence for another.
        ("There is no focal opacity to suggest pneumonia.", "Pneumonia", Negative),
        ("No consolidation to suggest acute pneumonia or active infection.", "Pneumonia", Negative),
        ("Question edema or atypical infection?", "Pneumonia", Uncertain),
        // Words that contain a mention and mean something else.
        ("Old tuberculous scarring at the apex.", "Support Devices", Absent),
        ("Calcified granulomas from prior granulomatous infection.", "Pneumonia", Absent),
        // Comparison only: a stable finding is still there; stable anatomy is not a finding.
        ("Cardiomegaly is unchanged.", "Cardiomegaly", Positive),
        ("Unchanged cardiomegaly.", "Cardiomegaly", Positive),
        ("Stable small left pleural effusion.", "Pleural Effusion", Positive),
        ("Heart size is stable.", "Cardiomegaly", Negative),
        // Signs are not the finding: congestion alone is at most uncertain edema.
        ("Mild pulmonary vascular congestion.", "Edema", Uncertain),
        ("Vascular congestion with interstitial edema.", "Edema", Positive),
        // Requests and differentials look for a finding; they do not report it.
        ("Please correlate clinically for pneumonia.", "Pneumonia", Uncertain),
        ("Recommend clinical correlation for infection.", "Pneumonia", Uncertain),
        ("Differential diagnosis including fibrosis, infectious process, or drug reaction.", "Pneumonia", Uncertain),
        ("CT is recommended to rule-out an underlying nodule.", "Lung Lesion", Uncertain),
        ("A superimposed pneumonia would be a consideration.", "Pneumonia", Uncertain),
        ("Evaluation for pneumothorax is limited by the apices being excluded.", "Pneumothorax", Uncertain),
        // A past infection is not a current pneumonia.
        ("Apical cavity from prior tuberculous infection.", "Pneumonia", Absent),
        ("History of pneumonia. The lungs are clear.", "Pneumonia", Negative),
        // The study's limits and external objects are not findings.
        ("Please note that nondisplaced rib fractures may not be demonstrated.", "Fracture", Absent),
        ("Nodular densities over both lower ribs are consistent with nipple shadows.", "Lung Lesion", Absent),
        ("A calcified nodule in the left upper lobe.", "Lung Lesion", Positive),
        // A post-negation verb closes the negated phrase; before a noun it does not.
        ("No effusion seen, dense nodule in the left lung.", "Lung Lesion", Positive),
        ("No visualized pneumothorax.", "Pneumothorax", Negative),
        ("No large effusion or visualized pneumothorax.", "Pneumothorax", Negative),
        // Devices named as whole words, and what only looks like one.
        ("Right chest port with its tip at the cavoatrial junction.", "Support Devices", Positive),
        ("External cardiac monitor leads overlie the chest.", "Support Devices", Positive),
        ("Left chest pacemaker generator with two leads.", "Support Devices", Positive),
        ("Degenerative endplate changes of the thoracic spine.", "Support Devices", Absent),
        ("Platelike atelectasis at the left base.", "Support Devices", Absent),
        ("Portable view. The report follows.", "Support Devices", Absent),
        ("Kerley B lines at both bases.", "Support Devices", Absent),
        // A device taken out is no longer there.
        ("Interval removal of the left PICC line.", "Support Devices", Negative),
        ("The left-sided PICC line has been removed.", "Support Devices", Negative),
    ];
    let labeler = Labeler::new();
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(text, observation, expected)| {
            let found = labeler.label(text);
            (found.get(named(observation)) != *expected).then(|| {
                format!(
                    "{text:?}: {observation} {:?}, expected {expected:?} ({:?})",
                    found.get(named(observation)),
                    found
                        .mentions
                        .iter()
                        .filter(|m| m.observation.name() == *observation)
                        .collect::<Vec<_>>()
                )
            })
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

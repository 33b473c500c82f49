//! Statements that anatomy is normal, which deny an observation without naming it the way the
//! CheXpert phrase lists do: "the heart and mediastinum are within normal limits" (a list of
//! subjects, then the normality phrase), "heart size is top normal", "the heart is not
//! enlarged" deny Cardiomegaly (and an enlarged cardiomediastinum); "the lungs are clear" and
//! "clear lungs" deny the lung observations.

use super::Observation;
use regex::Regex;

/// Mentions that name anatomy, not a finding: a normality phrase about them is a negation.
/// ("Cardiomegaly, the lungs are normal" must stay positive, so findings are not listed.)
const ANATOMY: &[&str] = &[
    "heart",
    "heart size",
    "cardiac size",
    "cardiac silhouette",
    "cardiac contour",
    "cardiac contours",
    "cardiac shadow",
    "cardiomediastinal silhouette",
    "cardiomediastinal contour",
    "cardiomediastinal contours",
    "mediastinum",
    "mediastinal contour",
    "mediastinal contours",
    "mediastinal silhouette",
    "heart and mediastinum",
];

/// The lung observations that "the lungs are clear" denies.
pub const CLEAR_LUNGS_DENY: &[Observation] = &[
    Observation::LungOpacity,
    Observation::Consolidation,
    Observation::Pneumonia,
    Observation::Edema,
    Observation::Atelectasis,
];

/// Whether a mention names anatomy rather than a finding.
pub fn is_anatomy(text: &str) -> bool {
    ANATOMY.contains(&text.trim_start_matches("the "))
}

pub struct Normality {
    /// After an anatomy mention: a list of further subjects, a copula, at most a few words,
    /// then a normality phrase.
    after_anatomy: Regex,
    /// Words between the copula and the normality phrase that change the meaning.
    not_normal: Regex,
    clear_lungs: Regex,
    clear_lungs_exception: Regex,
    /// A word that says anatomy is abnormal ("the heart is enlarged").
    abnormal: Regex,
}

impl Default for Normality {
    fn default() -> Self {
        Normality::new()
    }
}

impl Normality {
    pub fn new() -> Normality {
        let phrase = r"(?:within normal limits|within the normal limits|normal|unremarkable|not enlarged|not significantly enlarged|normal in size|of normal size|(?:near |at )?(?:the )?(?:top|upper)[- ](?:normal|limits? of normal|normal limits)|stable and normal|stable in size and normal|(?:grossly )?stable)";
        Normality {
            after_anatomy: Regex::new(&format!(
                r"^(?:(?:,|,? and|,? or)(?: [a-z-]+){{1,4}})*,?(?: (?:is|are|appears?|remains?|looks?|seems?)((?: [a-z-]+){{0,6}}?))? {phrase}(?:$|[^\w])"
            ))
            .expect("normality pattern compiles"),
            not_normal: Regex::new(r"\b(?:not|no longer|abnormal|enlarg\w*|increas\w*|prominent|large|borderline|mildly|moderately|markedly)\b")
                .expect("compiles"),
            clear_lungs: Regex::new(r"\b(?:lungs? (?:are|is|remain|remains|appear|appears) (?:grossly |essentially |otherwise )?(?:clear|normal|well expanded and clear)|clear lungs)\b")
                .expect("compiles"),
            clear_lungs_exception: Regex::new(r"\b(?:except|other than|aside from|apart from|but|without|however|besides|save for)\b")
                .expect("compiles"),
            abnormal: Regex::new(r"\b(?:enlarg\w*|large|larger|big|increas\w*|prominen\w*|widen\w*|cardiomegaly|globular|dilat\w*|borderline|mild\w*|moderate\w*|severe\w*|marked\w*|massive\w*|abnormal\w*|exaggerat\w*|accentuat\w*)\b")
                .expect("compiles"),
        }
    }

    /// Whether the mention (`text`, with `after` the rest of its sentence) is anatomy said to
    /// be normal.
    pub fn denies(&self, text: &str, after: &str) -> bool {
        if !is_anatomy(text) {
            return false;
        }
        self.after_anatomy.captures(after).is_some_and(|c| {
            !self
                .not_normal
                .is_match(c.get(1).map_or("", |g| g.as_str()))
        })
    }

    /// Whether an anatomy mention's sentence says nothing abnormal about it ("stable cardiac
    /// silhouette", "the heart and lungs have not changed"): then it asserts no finding.
    pub fn states_nothing(&self, text: &str, sentence: &str) -> bool {
        is_anatomy(text) && !self.abnormal.is_match(sentence)
    }

    /// Whether the (cleaned) sentence says the lungs are clear, without an exception.
    pub fn clear_lungs(&self, sentence: &str) -> bool {
        self.clear_lungs.is_match(sentence) && !self.clear_lungs_exception.is_match(sentence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anatomy_said_to_be_normal() {
        let n = Normality::new();
        assert!(n.denies(
            "heart size",
            " and mediastinal contour are within normal limits."
        ));
        assert!(n.denies(
            "heart",
            ", pulmonary vascularity and mediastinum are normal"
        ));
        assert!(n.denies("the heart", " is not enlarged."));
        assert!(n.denies("heart size", " is top normal"));
        assert!(n.denies(
            "heart size",
            ", mediastinal contour, and pulmonary vascularity are similar to comparison exam and within normal limits"
        ));
        assert!(!n.denies("heart size", " is enlarged"));
        assert!(!n.denies("heart size", " is mildly enlarged and lungs are normal"));
        assert!(!n.denies("cardiomegaly", ", lungs are normal"));
        assert!(n.clear_lungs("the lungs are clear."));
        assert!(n.clear_lungs("clear lungs."));
        assert!(!n.clear_lungs("lungs are clear except for a small nodule."));
    }
}

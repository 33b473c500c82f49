//! Report text to labels for the 14 CheXpert observations: what QA compares drafts and final
//! reads with.
//!
//! The pipeline follows the CheXpert labeler (Irvin et al., AAAI 2019; its phrase lists are in
//! `chexpert/`, MIT): the report is cleaned as that labeler cleans it (lower case, "and/or" and
//! "a/b" to "or", a space after every full stop and comma), cut to its Findings and Impression
//! sections when it has section titles (`radtext/section_titles.txt`), split into sentences,
//! and searched for each observation's mention phrases, minus its "unmention" phrases (such as
//! "pericardial effusion" for Pleural Effusion). Each mention is then classified as the
//! CheXpert labeler's NegBio stage does, in the same order, with NegBio-style regular
//! expressions instead of a dependency parser: uncertainty that precedes negation ("cannot
//! exclude X", "X cannot be excluded", double negation), negation ("no X", "without X",
//! "X is normal"), uncertainty after negation ("may represent X", "possible X"). The patterns
//! are radtext's (`radtext/patterns/`, MIT) plus the scope rules in `scope` ("no edema or
//! pneumonia" negates both). Mentions are aggregated per observation as the CheXpert labeler
//! does: negative with uncertain gives uncertain, otherwise any positive gives positive, "chf" or "heart failure" also makes
//! Cardiomegaly uncertain, and No Finding is positive only when no observation other than
//! Support Devices is positive or uncertain.

mod normal;
mod observation;
mod patterns;
mod scope;
pub mod trust;

use patterns::{Pattern, PatternSet};
use serde::Serialize;
use std::collections::BTreeMap;

pub use observation::Observation;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Positive,
    Negative,
    Uncertain,
    Absent,
}

impl Label {
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Positive => "positive",
            Label::Negative => "negative",
            Label::Uncertain => "uncertain",
            Label::Absent => "absent",
        }
    }

    /// The CheXpert labeler's numbers: 1, 0, -1, blank.
    pub fn chexpert_value(self) -> Option<i8> {
        match self {
            Label::Positive => Some(1),
            Label::Negative => Some(0),
            Label::Uncertain => Some(-1),
            Label::Absent => None,
        }
    }
}

/// One phrase found in a sentence, and how it was classified.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mention {
    pub observation: Observation,
    /// The words matched, as they appear in the cleaned sentence.
    pub text: String,
    pub sentence: usize,
    pub label: Label,
    /// The pattern or scope rule that made it negative or uncertain (None: positive).
    pub rule: Option<String>,
}

/// The labels of one report, with the mentions they come from.
#[derive(Debug, Clone, Serialize)]
pub struct Labels {
    /// Every one of the 14 observations, in the CheXpert order.
    pub labels: BTreeMap<Observation, Label>,
    pub mentions: Vec<Mention>,
    /// The cleaned sentences that were searched.
    pub sentences: Vec<String>,
    /// "findings and impression", or "whole report" when it has no such section titles.
    pub scope: &'static str,
}

impl Labels {
    pub fn get(&self, observation: Observation) -> Label {
        self.labels
            .get(&observation)
            .copied()
            .unwrap_or(Label::Absent)
    }
}

/// One observation's phrases.
struct Phrases {
    name: Observation,
    /// The CheXpert labeler's, matched anywhere as it matches them ("atelecta").
    mentions: Vec<String>,
    /// radassist's own, matched only as whole words ("port" but not "report").
    word_mentions: Vec<&'static str>,
    unmentions: Vec<String>,
    /// Mentions that are signs of the observation, not the observation itself: at most
    /// uncertain ("vascular congestion" for Edema).
    signs: &'static [&'static str],
}

/// The loaded phrase lists and patterns; build once, label many reports.
pub struct Labeler {
    observations: Vec<Phrases>,
    pre_negation_uncertainty: PatternSet,
    double_negation: PatternSet,
    negation: PatternSet,
    post_negation_uncertainty: PatternSet,
    not_a_finding: PatternSet,
    sections: patterns::Sections,
    normality: normal::Normality,
    /// "X is stable", "unchanged X": a comparison, which for a finding means it is still there.
    stable_after: regex::Regex,
    stable_before: regex::Regex,
}

macro_rules! phrase_files {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("chexpert/phrases/mention/", $name, ".txt")))),*]
    };
}

/// The CheXpert labeler's mention phrase files (file stem, contents).
const MENTION_FILES: [(&str, &str); 14] = phrase_files!(
    "no_finding",
    "enlarged_cardiomediastinum",
    "cardiomegaly",
    "lung_lesion",
    "lung_opacity",
    "edema",
    "consolidation",
    "pneumonia",
    "atelectasis",
    "pneumothorax",
    "pleural_effusion",
    "pleural_other",
    "fracture",
    "support_devices",
);

const UNMENTION_FILES: [(&str, &str); 3] = [
    (
        "lung_lesion",
        include_str!("chexpert/phrases/unmention/lung_lesion.txt"),
    ),
    (
        "lung_opacity",
        include_str!("chexpert/phrases/unmention/lung_opacity.txt"),
    ),
    (
        "pleural_effusion",
        include_str!("chexpert/phrases/unmention/pleural_effusion.txt"),
    ),
];

/// The CheXpert labeler's unmentions that radassist does not use: a calcified nodule is a
/// (benign) lung lesion, and radiologists' reads code it as a nodule.
const LEFT_OUT_UNMENTIONS: &[&str] = &["calcified nodul"];

/// Phrases that contain a mention but are not one (see [`Labeler::new`]).
const OWN_UNMENTIONS: &[(Observation, &[&str])] = &[
    (
        Observation::SupportDevices,
        &[
            "tubercul",
            "tuberos",
            "endplate",
            "end plate",
            "platelike",
            "plate-like",
            "b lines",
            "b-lines",
            "kerley",
            "scapular tip",
            "tip of the scapula",
        ],
    ),
    (
        Observation::Pneumonia,
        &[
            "granulomatous infection",
            "granulomatous disease",
            "granulomatous process",
        ],
    ),
];

/// Observations that a past cue ("prior", "old", "history of") takes out of the present: an
/// old infection is not a pneumonia now (an old fracture is still a fracture).
const PAST_APPLIES: &[Observation] = &[Observation::Pneumonia];

/// Devices that the CheXpert list does not name, as whole words: what carries a "tip" in a
/// chest radiograph report is a line or tube, and monitor leads, generators, stimulators,
/// shunts, stents, ports and prostheses are devices as much as a "pacer" is.
const OWN_WORD_MENTIONS: &[(Observation, &[&str])] = &[(
    Observation::SupportDevices,
    &[
        "tip",
        "tips",
        "lead",
        "leads",
        "generator",
        "stimulator",
        "shunt",
        "stent",
        "stents",
        "port",
        "port-a-cath",
        "tracheostomy",
        "prosthesis",
        "prosthetic",
        "fixation",
    ],
)];

/// Mentions that are signs, not the observation: pulmonary vascular congestion and its
/// companions are the stage before interstitial edema, and a report that names only them has
/// not said there is edema (the CheXpert list counts them as edema outright).
const SIGNS: &[(Observation, &[&str])] = &[(
    Observation::Edema,
    &[
        "vascular congestion",
        "pulmonary congestion",
        "indistinctness",
        "vascular prominence",
    ],
)];

/// A phrase file's lines, with "_" standing for a space (as the CheXpert labeler reads them).
fn phrases(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim().replace('_', " "))
        .filter(|l| !l.is_empty())
        .collect()
}

impl Labeler {
    pub fn new() -> Labeler {
        let mut observations: Vec<Phrases> = MENTION_FILES
            .iter()
            .zip(Observation::ALL)
            .map(|(&(_, text), name)| Phrases {
                name,
                mentions: phrases(text),
                word_mentions: own_list(OWN_WORD_MENTIONS, name).to_vec(),
                unmentions: vec![],
                signs: own_list(SIGNS, name),
            })
            .collect();
        for (stem, text) in UNMENTION_FILES {
            let index = MENTION_FILES
                .iter()
                .position(|(s, _)| *s == stem)
                .expect("known stem");
            observations[index].unmentions = phrases(text)
                .into_iter()
                .filter(|u| !LEFT_OUT_UNMENTIONS.contains(&u.as_str()))
                .collect();
        }
        // radassist's own unmentions: words that contain a mention and mean something else
        // ("tube" in "tuberculous"), and old granulomatous disease, which is not a pneumonia.
        for (name, own) in OWN_UNMENTIONS {
            let observation = observations
                .iter_mut()
                .find(|o| o.name == *name)
                .expect("a CheXpert observation");
            observation
                .unmentions
                .extend(own.iter().map(|u| u.to_string()));
        }
        // As the CheXpert labeler adds them: "over the heart", "in the left mediastinum" and the
        // like are positions, not findings.
        let positional: Vec<String> = ["over the", "overly the", "overlying the", "in the"]
            .iter()
            .flat_map(|a| ["", " superior", " left", " right"].map(|b| format!("{a}{b}")))
            .collect();
        let cardiomegaly = observations
            .iter()
            .position(|o| o.name == Observation::Cardiomegaly)
            .unwrap();
        let enlarged = observations
            .iter()
            .position(|o| o.name == Observation::EnlargedCardiomediastinum)
            .unwrap();
        observations[cardiomegaly].unmentions = positional
            .iter()
            .flat_map(|p| {
                observations[cardiomegaly]
                    .mentions
                    .iter()
                    .filter(|m| *m != "cardiomegaly" && *m != "cardiac enlargement")
                    .map(move |m| format!("{p} {}", m.replacen("the ", "", 1)))
            })
            .collect();
        observations[enlarged].unmentions = positional
            .iter()
            .flat_map(|p| {
                observations[enlarged]
                    .mentions
                    .iter()
                    .map(move |m| format!("{p} {m}"))
            })
            .collect();
        Labeler {
            observations,
            pre_negation_uncertainty: PatternSet::radtext(
                include_str!("radtext/patterns/regex_uncertainty_pre_negation.yml"),
                patterns::OWN_PRE_NEGATION_UNCERTAINTY,
            ),
            double_negation: PatternSet::radtext(
                include_str!("radtext/patterns/regex_double_negation.yml"),
                &[],
            ),
            negation: PatternSet::radtext(
                include_str!("radtext/patterns/regex_negation.yml"),
                patterns::OWN_NEGATION,
            ),
            post_negation_uncertainty: PatternSet::radtext(
                include_str!("radtext/patterns/regex_uncertainty_post_negation.yml"),
                patterns::OWN_POST_NEGATION_UNCERTAINTY,
            ),
            not_a_finding: PatternSet::radtext("", patterns::OWN_NOT_A_FINDING),
            sections: patterns::Sections::new(include_str!("radtext/section_titles.txt")),
            normality: normal::Normality::new(),
            stable_after: regex::Regex::new(
                r"^ (?:is|are|appears?|remains?) (?:stable|unchanged)(?:$|[^\w])",
            )
            .expect("compiles"),
            stable_before: regex::Regex::new(r"(?:^|[^\w])(?:unchanged|stable) $")
                .expect("compiles"),
        }
    }

    /// Labels one report.
    pub fn label(&self, report: &str) -> Labels {
        let (text, scope) = self.sections.findings_and_impression(report);
        let sentences: Vec<String> = crate::sentences::split_sentences(&text)
            .into_iter()
            .map(|s| clean(&s))
            .collect();
        let mut mentions = Vec::new();
        for (index, sentence) in sentences.iter().enumerate() {
            for observation in &self.observations {
                let anywhere = observation.mentions.iter().flat_map(|phrase| {
                    sentence
                        .match_indices(phrase.as_str())
                        .map(move |(start, _)| (start, start + phrase.len()))
                });
                let whole_words = observation.word_mentions.iter().flat_map(|phrase| {
                    sentence
                        .match_indices(phrase)
                        .map(move |(start, _)| (start, start + phrase.len()))
                        .filter(|&(s, e)| word_span(sentence, s, e) == (s, e))
                });
                let spans: Vec<(usize, usize)> = anywhere
                    .chain(whole_words)
                    .filter(|&(s, e)| !overlaps_unmention(sentence, &observation.unmentions, s, e))
                    .collect();
                // Overlapping phrases of one observation are one mention ("the heart" and
                // "heart size" in "the heart size is normal").
                // Phrases padded with spaces ("_line_") are trimmed to their word, and
                // touching phrases are one mention too ("picc" and " line ").
                let mut spans: Vec<(usize, usize)> = spans
                    .into_iter()
                    .map(|(s, e)| trim_span(sentence, s, e))
                    .filter(|(s, e)| s < e)
                    .collect();
                spans.sort_unstable();
                let mut merged: Vec<(usize, usize)> = Vec::new();
                for (s, e) in spans {
                    match merged.last_mut() {
                        Some(last) if s <= last.1 + 1 => last.1 = last.1.max(e),
                        _ => merged.push((s, e)),
                    }
                }
                for (start, end) in merged {
                    let text = &sentence[start..end];
                    let (mut label, mut rule) =
                        self.classify(observation.name, sentence, text, start, end);
                    if label == Label::Absent {
                        continue;
                    }
                    if label == Label::Positive && observation.signs.contains(&text) {
                        label = Label::Uncertain;
                        rule = Some(format!(
                            "a sign of {}, not the finding",
                            observation.name.name()
                        ));
                    }
                    mentions.push(Mention {
                        observation: observation.name,
                        text: sentence[start..end].to_string(),
                        sentence: index,
                        label,
                        rule,
                    });
                }
            }
        }
        for (index, sentence) in sentences.iter().enumerate() {
            if self.normality.clear_lungs(sentence) {
                for &observation in normal::CLEAR_LUNGS_DENY {
                    mentions.push(Mention {
                        observation,
                        text: "lungs clear".into(),
                        sentence: index,
                        label: Label::Negative,
                        rule: Some("normality: the lungs are clear".into()),
                    });
                }
            }
        }
        Labels {
            labels: aggregate(&mentions),
            mentions,
            sentences,
            scope,
        }
    }

    /// The NegBio order: uncertainty before negation, negation, uncertainty after negation.
    ///
    /// Two refinements: "X is stable" and "unchanged X" compare, and for a finding (not
    /// anatomy such as "heart size") mean that it is still there, so they do not negate; and
    /// anatomy said to be normal ("the heart and mediastinum are within normal limits") is a
    /// negation ([`normal`]).
    fn classify(
        &self,
        observation: Observation,
        sentence: &str,
        text: &str,
        start: usize,
        end: usize,
    ) -> (Label, Option<String>) {
        let (word_start, word_end) = word_span(sentence, start, end);
        let before = &sentence[..word_start];
        let after = &sentence[word_end..];
        let first = |set: &PatternSet| set.first_match(before, after).map(Pattern::id);
        if let Some(id) = first(&self.not_a_finding) {
            return (Label::Absent, Some(id));
        }
        if let Some(id) =
            first(&self.pre_negation_uncertainty).or_else(|| first(&self.double_negation))
        {
            return (Label::Uncertain, Some(id));
        }
        let comparison_only = |id: &str| {
            !normal::is_anatomy(text)
                && ((id == "rn40" && self.stable_after.is_match(after))
                    || (id == "rn41" && self.stable_before.is_match(before)))
        };
        let negation = first(&self.negation)
            .filter(|id| !comparison_only(id))
            .or_else(|| scope::negated(before))
            .or_else(|| {
                self.normality
                    .denies(text, after)
                    .then(|| "normality: anatomy said to be normal".to_string())
            });
        if let Some(id) = negation {
            return (Label::Negative, Some(id));
        }
        if PAST_APPLIES.contains(&observation) {
            if let Some(id) = scope::past(before) {
                return (Label::Absent, Some(id));
            }
        }
        if let Some(id) =
            first(&self.post_negation_uncertainty).or_else(|| scope::uncertain(before))
        {
            return (Label::Uncertain, Some(id));
        }
        if self.normality.states_nothing(text, sentence) {
            return (
                Label::Absent,
                Some("anatomy named without an abnormality".into()),
            );
        }
        (Label::Positive, None)
    }
}

impl Default for Labeler {
    fn default() -> Self {
        Labeler::new()
    }
}

/// One observation's entry in one of radassist's own lists (empty when it has none).
fn own_list(
    list: &'static [(Observation, &'static [&'static str])],
    observation: Observation,
) -> &'static [&'static str] {
    list.iter()
        .find(|(o, _)| *o == observation)
        .map_or(&[], |(_, phrases)| phrases)
}

/// The CheXpert labeler's cleaning: lower case, "and/or" and "a/b" to "or", no double full
/// stops, a space after full stops and commas, single spaces.
pub fn clean(report: &str) -> String {
    let lower = report.to_lowercase().replace("and/or", "or");
    let chars: Vec<char> = lower.chars().collect();
    let mut out = String::with_capacity(lower.len() + 16);
    for (i, &c) in chars.iter().enumerate() {
        let between_letters = i > 0
            && chars[i - 1].is_ascii_alphabetic()
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_alphabetic());
        if c == '/' && between_letters {
            out.push_str(" or ");
        } else {
            out.push(c);
        }
    }
    let out = out.replace("..", ".").replace('.', ". ").replace(',', ", ");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A span without the spaces at its ends.
fn trim_span(sentence: &str, start: usize, end: usize) -> (usize, usize) {
    let text = &sentence[start..end];
    let start = start + (text.len() - text.trim_start().len());
    let end = end - (text.len() - text.trim_end().len());
    (start, end.max(start))
}

/// The span of the whole words a phrase match lies in ("atelecta" -> "atelectasis").
fn word_span(sentence: &str, start: usize, end: usize) -> (usize, usize) {
    let is_word = |c: char| c.is_alphanumeric() || c == '-';
    let word_start = sentence[..start]
        .char_indices()
        .rev()
        .take_while(|&(_, c)| is_word(c))
        .last()
        .map_or(start, |(i, _)| i);
    let word_end = sentence[end..]
        .char_indices()
        .find(|&(_, c)| !is_word(c))
        .map_or(sentence.len(), |(i, _)| end + i);
    (word_start, word_end)
}

fn overlaps_unmention(sentence: &str, unmentions: &[String], start: usize, end: usize) -> bool {
    unmentions.iter().any(|u| {
        sentence
            .match_indices(u.as_str())
            .any(|(s, m)| start < s + m.len() && end > s)
    })
}

/// The CheXpert labeler's aggregation of mentions into one label per observation.
fn aggregate(mentions: &[Mention]) -> BTreeMap<Observation, Label> {
    let mut found: BTreeMap<Observation, Vec<Label>> = BTreeMap::new();
    let mut no_finding = true;
    for m in mentions {
        let finding = matches!(m.label, Label::Positive | Label::Uncertain);
        if m.observation != Observation::SupportDevices && finding {
            no_finding = false;
        }
        if m.observation == Observation::NoFinding {
            continue;
        }
        if finding && (m.text == "chf" || m.text == "heart failure") {
            found
                .entry(Observation::Cardiomegaly)
                .or_default()
                .push(Label::Uncertain);
        }
        found.entry(m.observation).or_default().push(m.label);
    }
    if no_finding {
        found.insert(Observation::NoFinding, vec![Label::Positive]);
    }
    // The CheXpert labeler's rules for conflicting mentions, in its order: negative and
    // uncertain give uncertain (even with a positive too), negative and positive give positive,
    // uncertain and positive give positive.
    Observation::ALL
        .into_iter()
        .map(|name| {
            let label = match found.get(&name) {
                None => Label::Absent,
                Some(labels) => {
                    let has = |l: Label| labels.contains(&l);
                    if has(Label::Negative) && has(Label::Uncertain) {
                        Label::Uncertain
                    } else if has(Label::Positive) {
                        Label::Positive
                    } else {
                        labels[0]
                    }
                }
            };
            (name, label)
        })
        .collect()
}

#[cfg(test)]
mod tests;

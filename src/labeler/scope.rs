//! NegEx-style scope: a negation or uncertainty cue earlier in the sentence reaches a mention
//! over a few words, unless a word that ends its scope comes between ("no edema or pneumonia"
//! negates pneumonia; "no effusion but mild cardiomegaly" does not negate cardiomegaly; "no
//! change in the effusion" is about the change, not the effusion).

/// Cues that negate what follows them.
const NEGATION_CUES: &[&str] = &[
    "no",
    "not",
    "without",
    "negative for",
    "free of",
    "absence of",
    "resolution of",
    "resolved",
    "no evidence of",
    "no signs of",
    "clear of",
];
/// Cues that make what follows them uncertain.
const UNCERTAINTY_CUES: &[&str] = &[
    "may",
    "might",
    "could",
    "possible",
    "possibly",
    "probable",
    "probably",
    "likely",
    "suspicious for",
    "concerning for",
    "suggestive of",
    "suggesting",
    "suspect",
    "suspected",
    "question of",
    "questionable",
    "equivocal",
    "versus",
    "vs",
    "differential",
    "consider",
    "cannot exclude",
    "borderline",
    "uncertain",
    "indeterminate",
    "presumed",
];
/// Words that end a cue's scope.
const TERMINATORS: &[&str] = &[
    "but",
    "however",
    "although",
    "though",
    "except",
    "aside",
    "apart",
    "which",
    "whereas",
    "while",
    "there",
    "is",
    "are",
    "was",
    "were",
    "has",
    "have",
    "change",
    "changed",
    "increase",
    "increased",
    "decrease",
    "decreased",
    "worsening",
    "improvement",
    "improved",
    "new",
    "and",
];
/// How many words may come between a cue and the mention.
const MAX_WORDS_BETWEEN: usize = 5;

fn words(text: &str) -> Vec<&str> {
    text.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ':' | '(' | ')'))
        .filter(|w| !w.is_empty())
        .collect()
}

/// The cue that reaches the end of `before` (the text up to the mention), if any.
fn reaching_cue(before: &str, cues: &[&str], rule: &str) -> Option<String> {
    let words = words(before);
    for between in 0..=MAX_WORDS_BETWEEN.min(words.len()) {
        let cue_end = words.len() - between;
        for length in (1..=3).rev() {
            if length > cue_end {
                continue;
            }
            let cue = words[cue_end - length..cue_end].join(" ");
            if cues.contains(&cue.as_str()) {
                return Some(format!("{rule}: \"{cue}\""));
            }
        }
        // The word just before the next step back ends the scope ("and" only when it does not
        // join the mention to a list: "no effusion, pneumothorax, and consolidation").
        if cue_end > 0 {
            let word = words[cue_end - 1];
            let list_and = word == "and" && between <= 1 && before.contains(',');
            if TERMINATORS.contains(&word) && !list_and {
                return None;
            }
        }
    }
    None
}

pub fn negated(before: &str) -> Option<String> {
    reaching_cue(before, NEGATION_CUES, "negation scope")
}

pub fn uncertain(before: &str) -> Option<String> {
    reaching_cue(before, UNCERTAINTY_CUES, "uncertainty scope")
}

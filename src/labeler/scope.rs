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
    "removal of",
    "removed",
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
    "question",
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
    // Requests and differentials name what is to be looked for, not what was found.
    "correlate for",
    "correlation for",
    "clinically for",
    "as to",
    "evaluate for",
    "evaluation for",
    "exclude",
    "considerations include",
    "diagnosis include",
    "diagnosis includes",
    "diagnosis including",
    "consideration of",
    "to identify",
    "rule out",
    "rule-out",
];
/// Cues that put what follows them in the past: "prior tuberculous infection" is not a
/// current pneumonia.
const PAST_CUES: &[&str] = &[
    "prior",
    "previous",
    "old",
    "remote",
    "history of",
    "healed",
    "sequela of",
    "sequelae of",
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
/// Post-negation verbs close the negated phrase ("no effusion seen, nodule in the left lung"
/// does not negate the nodule), except where they stand before a noun.
const CLOSING: &[&str] = &[
    "seen",
    "identified",
    "noted",
    "demonstrated",
    "visualized",
    "evident",
];
/// How many words of one list item may come between a cue and the mention ("no evidence of
/// focal airspace disease" is one item of four words)...
const MAX_WORDS_BETWEEN: usize = 5;
/// ...and through how many items of a coordinated list the cue reaches ("without evidence of
/// focal airspace disease, pleural effusion, or pneumothorax": the third).
const MAX_LIST_ITEMS: usize = 8;

/// Words and the list separators between them (",", ";" ends a clause and is kept out).
fn tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for piece in text.split(|c: char| c.is_whitespace() || matches!(c, ':' | '(' | ')')) {
        let mut rest = piece;
        while let Some(at) = rest.find([',', ';']) {
            if at > 0 {
                out.push(&rest[..at]);
            }
            out.push(&rest[at..at + 1]);
            rest = &rest[at + 1..];
        }
        if !rest.is_empty() {
            out.push(rest);
        }
    }
    out
}

/// Joins list items: "a, b, or c", "a or b", "a nor b", "a, b and c".
fn is_list_separator(token: &str, in_comma_list: bool) -> bool {
    matches!(token, "," | "or" | "nor" | "and/or") || (token == "and" && in_comma_list)
}

/// The cue that reaches the end of `before` (the text up to the mention), if any: within
/// MAX_WORDS_BETWEEN words of the mention's list item, through up to MAX_LIST_ITEMS items of a
/// coordinated list, and not past a word that ends the scope or a ";".
fn reaching_cue(before: &str, cues: &[&str], rule: &str) -> Option<String> {
    let tokens = tokens(before);
    let in_comma_list = tokens.contains(&",");
    let (mut words_in_item, mut items, mut after_separator) = (0usize, 1usize, false);
    let mut end = tokens.len();
    loop {
        // A cue of up to three words ending here.
        let words: Vec<&str> = tokens[..end]
            .iter()
            .rev()
            .take(3)
            .take_while(|t| *t != &"," && *t != &";")
            .copied()
            .collect();
        for length in (1..=words.len()).rev() {
            let cue = words[..length]
                .iter()
                .rev()
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            if cues.contains(&cue.as_str()) {
                return Some(format!("{rule}: \"{cue}\""));
            }
        }
        if end == 0 {
            return None;
        }
        let token = tokens[end - 1];
        if token == ";" {
            return None;
        }
        if is_list_separator(token, in_comma_list) {
            // Consecutive separators (", or") make one boundary.
            if !after_separator {
                items += 1;
            }
            after_separator = true;
            words_in_item = 0;
            if items > MAX_LIST_ITEMS {
                return None;
            }
        } else {
            // "no visualized pneumothorax", "no effusion or visualized pneumothorax": the
            // verb is an adjective there and does not close the phrase.
            let adjective = end < 2
                || cues.contains(&tokens[end - 2])
                || is_list_separator(tokens[end - 2], in_comma_list);
            if TERMINATORS.contains(&token) || (CLOSING.contains(&token) && !adjective) {
                return None;
            }
            after_separator = false;
            words_in_item += 1;
            if words_in_item > MAX_WORDS_BETWEEN {
                return None;
            }
        }
        end -= 1;
    }
}

pub fn negated(before: &str) -> Option<String> {
    reaching_cue(before, NEGATION_CUES, "negation scope")
}

pub fn uncertain(before: &str) -> Option<String> {
    reaching_cue(before, UNCERTAINTY_CUES, "uncertainty scope")
}

pub fn past(before: &str) -> Option<String> {
    reaching_cue(before, PAST_CUES, "past scope")
}

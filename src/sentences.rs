//! Report text into sentences: the unit that evidence links, labels and matches work on.
//!
//! Section headings ("FINDINGS:", "IMPRESSION:") are cut off the sentence they open; a full
//! stop ends a sentence unless it is part of a number ("2.5 cm") or a common abbreviation
//! ("approx.", "e.g."); line breaks between list items end sentences too; de-identification
//! placeholders such as "XXXX" are kept as words.

const ABBREVIATIONS: &[&str] = &[
    "approx", "e.g", "i.e", "vs", "dr", "mr", "mrs", "ms", "no", "cf",
];

/// Splits `text` into trimmed, non-empty sentences.
pub fn split_sentences(text: &str) -> Vec<String> {
    let mut sentences = Vec::new();
    for block in paragraphs(text) {
        let block = block.as_str();
        let block = strip_list_marker(strip_heading(block.trim()));
        let chars: Vec<char> = block.chars().collect();
        let mut start = 0;
        for i in 0..chars.len() {
            let c = chars[i];
            if !matches!(c, '.' | '?' | '!') {
                continue;
            }
            let next = chars.get(i + 1).copied();
            if c == '.' {
                let decimal = i > 0
                    && chars[i - 1].is_ascii_digit()
                    && next.is_some_and(|n| n.is_ascii_digit());
                let word: String = chars[start..i]
                    .iter()
                    .rev()
                    .take_while(|c| c.is_alphanumeric() || **c == '.')
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                let abbreviation = ABBREVIATIONS.contains(&word.to_lowercase().as_str())
                    && next.is_some_and(|n| n == ' ')
                    && chars
                        .get(i + 2)
                        .is_some_and(|n| n.is_lowercase() || n.is_ascii_digit());
                if decimal || abbreviation {
                    continue;
                }
            }
            if next.is_none_or(char::is_whitespace) {
                push(&mut sentences, &chars[start..=i]);
                start = i + 1;
            }
        }
        push(&mut sentences, &chars[start..]);
    }
    sentences
}

/// Lines joined into paragraphs: reports wrap sentences across lines, so a line break ends a
/// paragraph only before a blank line, a heading ("IMPRESSION:") or a list item ("2. ...").
fn paragraphs(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut open = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            open = false;
            continue;
        }
        let starts_block = strip_heading(line) != line || strip_list_marker(line) != line;
        match out.last_mut() {
            Some(last) if open && !starts_block => {
                last.push(' ');
                last.push_str(line);
            }
            _ => out.push(line.to_string()),
        }
        open = true;
    }
    out
}

fn push(sentences: &mut Vec<String>, chars: &[char]) {
    let sentence: String = chars.iter().collect();
    let sentence = strip_heading(sentence.trim());
    if sentence.chars().any(char::is_alphanumeric) {
        sentences.push(sentence.to_string());
    }
}

/// "1. The lungs ..." or "2) ..." -> "The lungs ...".
fn strip_list_marker(text: &str) -> &str {
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    let rest = &text[digits..];
    if digits > 0 && (rest.starts_with(". ") || rest.starts_with(") ")) {
        rest[2..].trim_start()
    } else {
        text
    }
}

/// "FINDINGS: The lungs ..." -> "The lungs ..."; a heading alone gives "".
fn strip_heading(text: &str) -> &str {
    if let Some((head, rest)) = text.split_once(':') {
        let words = head.split_whitespace().count();
        if (1..=3).contains(&words) && head.chars().all(|c| c.is_ascii_uppercase() || c == ' ') {
            return rest.trim();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_headings_numbers_and_abbreviations() {
        let text = "FINDINGS: The ET tube tip is 4.5 cm above the\ncarina. No pneumothorax.\n\
                    IMPRESSION:\n1. Approx. 2 cm nodule, approx. unchanged vs. prior; XXXX noted.\n2. No effusion";
        assert_eq!(
            split_sentences(text),
            vec![
                "The ET tube tip is 4.5 cm above the carina.",
                "No pneumothorax.",
                "Approx. 2 cm nodule, approx. unchanged vs. prior; XXXX noted.",
                "No effusion",
            ]
        );
    }
}

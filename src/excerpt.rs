//! What an error message may repeat of what a caller sent: a short prefix, quoted and escaped.
//!
//! Errors go back to the caller and into the log. Echoing a caller's whole value would let one
//! request write megabytes there, and control characters or markup in it would reach whatever
//! shows the message; so an error quotes at most [`MAX_EXCERPT_CHARS`] characters, with
//! everything but printable ASCII escaped, and says how long the value really was.

/// The most characters of a caller's value an error message repeats.
pub const MAX_EXCERPT_CHARS: usize = 64;

/// `value` as an error message may quote it: `"1.2.3"`, or `"1.2.3…" (4000 characters)`.
pub fn excerpt(value: &str) -> String {
    let length = value.chars().count();
    let mut shown = String::with_capacity(MAX_EXCERPT_CHARS + 8);
    shown.push('"');
    for c in value.chars().take(MAX_EXCERPT_CHARS) {
        match c {
            '"' | '\\' => {
                shown.push('\\');
                shown.push(c);
            }
            c if c.is_ascii_graphic() || c == ' ' => shown.push(c),
            c => shown.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    if length > MAX_EXCERPT_CHARS {
        shown.push_str(&format!("…\" ({length} characters)"));
    } else {
        shown.push('"');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole_and_long_ones_cut() {
        assert_eq!(excerpt("studies/1.2.3"), "\"studies/1.2.3\"");
        let long = "x".repeat(20 << 20);
        let shown = excerpt(&long);
        assert!(shown.len() < 100, "{shown}");
        assert!(shown.ends_with("(20971520 characters)"), "{shown}");
    }

    #[test]
    fn control_characters_and_markup_quotes_are_escaped() {
        assert_eq!(excerpt("a\r\nb\"<"), "\"a\\u{d}\\u{a}b\\\"<\"");
    }
}

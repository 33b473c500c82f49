//! Text made safe to put into HTML and SVG (XML) that radassist writes itself: the QA page's
//! charts and the acceptance report of `radassist models validate`, whose texts (finding names,
//! study identifiers, file names) come from a site's files and must show as text, never as
//! markup.

/// Text fit for HTML or XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_shows_as_text() {
        assert_eq!(
            super::escape(r#"<img src=x onerror='a&b'>"#),
            "&lt;img src=x onerror=&#39;a&amp;b&#39;&gt;"
        );
    }
}

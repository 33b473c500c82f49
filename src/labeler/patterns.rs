//! NegBio-style patterns around a mention, and section detection.
//!
//! A pattern is a regular expression with a placeholder `XXXXX` for the mention (radtext's
//! YAML files, `- id: ...` / `pattern: ...`). It is split at the placeholder: the part before
//! must match the text up to the mention's first word (anchored at its end, starting at a word
//! boundary), the part after must match the text from the end of the mention's last word
//! (anchored at its start). Patterns without the placeholder (radtext's rub20, and rub120 whose
//! placeholder is misspelled `XXX`) do not say which mention they are about and are skipped.

use regex::Regex;

/// A pattern around a mention.
pub struct Pattern {
    id: String,
    before: Option<Regex>,
    after: Option<Regex>,
}

impl Pattern {
    pub fn id(&self) -> String {
        self.id.clone()
    }

    fn new(id: &str, pattern: &str) -> Option<Pattern> {
        let pattern = pattern.replace("(?P<f>XXXXX)", "XXXXX");
        let (before, after) = pattern.split_once("XXXXX")?;
        let compile = |re: String| Regex::new(&re).unwrap_or_else(|e| panic!("pattern {id}: {e}"));
        Some(Pattern {
            id: id.to_string(),
            before: (!before.is_empty()).then(|| compile(format!(r"(?:^|[^\w])(?:{before})$"))),
            after: (!after.is_empty()).then(|| compile(format!(r"^(?:{after})(?:$|[^\w])"))),
        })
    }

    fn matches(&self, before: &str, after: &str) -> bool {
        self.before.as_ref().is_none_or(|re| re.is_match(before))
            && self.after.as_ref().is_none_or(|re| re.is_match(after))
    }
}

/// One stage's patterns, in file order.
pub struct PatternSet {
    patterns: Vec<Pattern>,
}

impl PatternSet {
    /// radtext's YAML list, then radassist's own (id, pattern) additions.
    pub fn radtext(yaml: &str, own: &[(&str, &str)]) -> PatternSet {
        // radtext's rub160 ("minimal XXXXX" uncertain): minimal atelectasis is atelectasis.
        const LEFT_OUT: &[&str] = &["rub160"];
        let mut patterns = Vec::new();
        let mut id = String::new();
        for line in yaml.lines() {
            let line = line.trim_end();
            if let Some(value) = line.strip_prefix("- id:") {
                id = value.trim().to_string();
            } else if let Some(value) = line.trim_start().strip_prefix("pattern:") {
                if !line.starts_with('#') && !LEFT_OUT.contains(&id.as_str()) {
                    patterns.extend(Pattern::new(&id, value.trim()));
                }
            }
        }
        patterns.extend(own.iter().filter_map(|(id, p)| Pattern::new(id, p)));
        PatternSet { patterns }
    }

    pub fn first_match(&self, before: &str, after: &str) -> Option<&Pattern> {
        self.patterns.iter().find(|p| p.matches(before, after))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.patterns.len()
    }
}

/// radassist's additions (ids "ra..."), for what the CheXpert labeler's dependency patterns
/// catch and radtext's regular expressions miss.
pub const OWN_NEGATION: &[(&str, &str)] = &[
    ("ra-n1", r"XXXXX (normal|unremarkable)"),
    (
        "ra-n2",
        r"XXXXX (is|are|was|were) (not|no longer) (seen|identified|present|visualized|visible|evident|appreciated|demonstrated)",
    ),
    (
        "ra-n3",
        r"XXXXX (is|are|was|were|has|have)( been)? (absent|excluded|ruled out)",
    ),
    ("ra-n4", r"(negative|free) (for|of) XXXXX"),
    (
        "ra-n5",
        r"XXXXX (is|are|appears?|remains?) (within normal limits|of normal size)",
    ),
    // "no focal opacity to suggest pneumonia": the negated finding would be the evidence.
    (
        "ra-n6",
        r"(no|without)\b[^;]{0,80}\b(to suggest|suggestive of|to indicate|indicative of|concerning for|characteristic of|diagnostic of|typical of|consistent with)( an?)?( [a-z-]+| or| and|,){0,6} XXXXX",
    ),
    // Post-negations without a copula, and what has gone.
    (
        "ra-n7",
        r"XXXXX (no longer|not) (seen|present|visible|visualized|evident|identified|demonstrated|appreciated)",
    ),
    ("ra-n8", r"XXXXX (has|have) (resolved|cleared|been removed)"),
    ("ra-n9", r"XXXXX (is|are) not (enlarged|present)"),
    (
        "ra-n10",
        r"normal (size|appearance|configuration|contour)( and (size|appearance|configuration|contour))? of( the)? XXXXX",
    ),
];

pub const OWN_PRE_NEGATION_UNCERTAINTY: &[(&str, &str)] = &[
    ("ra-ua1", r"XXXXX (is|are) not (excluded|ruled out)"),
    (
        "ra-ua2",
        r"(cannot|can not|could not|can't) (be )?(excluded?|ruled? out)( (a|an|the|any))? XXXXX",
    ),
    (
        "ra-ua3",
        r"not (be )?(excluded?|ruled out)( (a|an|the|any))? XXXXX",
    ),
];

pub const OWN_POST_NEGATION_UNCERTAINTY: &[(&str, &str)] = &[
    (
        "ra-ub1",
        r"XXXXX (is|are|was|were) (likely|possible|probable|suspected|questioned|not excluded)",
    ),
    ("ra-ub3", r"XXXXX (versus|vs\.?|or) "),
    (
        "ra-ub4",
        r"XXXXX( [a-z,-]+){0,10} (would|could|might|may|is|are) (be |also be )?(a )?(consideration|considered)",
    ),
];

/// What a report says about the study's limits rather than the patient ("nondisplaced
/// fractures may not be demonstrated"), and densities it explains as outside the lungs
/// ("nodular densities ... consistent with nipple shadows"): not mentions.
pub const OWN_NOT_A_FINDING: &[(&str, &str)] = &[
    (
        "ra-d1",
        r"XXXXX (may|might|can|could|will|would) not be (demonstrated|seen|visible|detected|apparent|identified)",
    ),
    ("ra-d2", r"XXXXX[^.;]{0,100}\bnipples?\b"),
];

/// Section titles (radtext's list), to keep a report's Findings and Impression.
pub struct Sections {
    titles: Regex,
}

impl Sections {
    pub fn new(list: &str) -> Sections {
        let mut titles: Vec<String> = list
            .lines()
            .map(|l| l.trim().trim_end_matches(':').trim())
            .filter(|l| !l.is_empty())
            .map(regex::escape)
            .collect();
        // Longest first, so "FINDINGS AND IMPRESSION" wins over "FINDINGS".
        titles.sort_by_key(|t| std::cmp::Reverse(t.len()));
        let re = format!(r"(?im)(?:^|\n|\.\s+)\s*({})\s*:", titles.join("|"));
        Sections {
            titles: Regex::new(&re).expect("section titles compile"),
        }
    }

    /// The text of the Findings and Impression (or Conclusion) sections; the whole report when
    /// it has no such titles.
    pub fn findings_and_impression(&self, report: &str) -> (String, &'static str) {
        let found: Vec<(usize, usize, String)> = self
            .titles
            .captures_iter(report)
            .map(|c| {
                let whole = c.get(0).unwrap();
                (whole.start(), whole.end(), c[1].to_uppercase())
            })
            .collect();
        let wanted = |title: &str| {
            title.contains("FINDING")
                || title.contains("IMPRESSION")
                || title.contains("CONCLUSION")
        };
        if !found.iter().any(|(_, _, t)| wanted(t)) {
            return (report.to_string(), "whole report");
        }
        let mut text = String::new();
        for (i, (_, end, title)) in found.iter().enumerate() {
            if wanted(title) {
                let stop = found.get(i + 1).map_or(report.len(), |next| next.0);
                text.push_str(&report[*end..stop]);
                text.push('\n');
            }
        }
        (text, "findings and impression")
    }
}

//! The site's truth for an acceptance test: a CSV of per-study labels, read strictly. Its
//! header names the study column (`study`: a Study Instance UID or an Accession Number) and
//! one column per finding, each cell `1` (present), `0` (absent) or empty (not labelled).
//!
//! A bad row never stops the run: it is left out with a message saying what was wrong and
//! where (a duplicate study, a label that is not 0 or 1, a short row), and the rest is used.

use std::collections::BTreeMap;
use std::path::Path;

/// The truth file read: the findings it labels, each study's labels (None: not labelled), and
/// what was left out of it and why.
#[derive(Debug, Default)]
pub struct Truth {
    pub findings: Vec<String>,
    pub labels: BTreeMap<String, Vec<Option<bool>>>,
    pub problems: Vec<String>,
}

/// Why the truth file cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    #[error("the truth file {path} cannot be read: {source}")]
    Read {
        path: String,
        #[source]
        source: csv::Error,
    },
    #[error(
        "the truth file {0} has no header row: its first line must be study,<finding>,<finding>..."
    )]
    NoHeader(String),
    #[error("the truth file {0}'s first column must be \"study\" (a Study Instance UID or an Accession Number per row), then one column per finding")]
    NoStudyColumn(String),
}

/// Reads the truth file at `path`.
pub fn read(path: &Path) -> Result<Truth, TruthError> {
    let shown = path.display().to_string();
    let read_error = |source| TruthError::Read {
        path: shown.clone(),
        source,
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(read_error)?;
    let header = reader.headers().map_err(read_error)?.clone();
    if header.is_empty() {
        return Err(TruthError::NoHeader(shown));
    }
    if !header[0].eq_ignore_ascii_case("study") {
        return Err(TruthError::NoStudyColumn(shown));
    }
    let mut truth = Truth {
        findings: header.iter().skip(1).map(str::to_string).collect(),
        ..Truth::default()
    };
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                truth.problems.push(format!("line {line}: {e}; left out"));
                continue;
            }
        };
        if record.len() != header.len() {
            truth.problems.push(format!(
                "line {line}: {} fields where the header has {}; left out",
                record.len(),
                header.len()
            ));
            continue;
        }
        let study = record[0].to_string();
        if study.is_empty() {
            truth
                .problems
                .push(format!("line {line}: no study; left out"));
            continue;
        }
        let mut labels = Vec::with_capacity(truth.findings.len());
        let mut bad = None;
        for (finding, cell) in truth.findings.iter().zip(record.iter().skip(1)) {
            match cell {
                "" => labels.push(None),
                "1" => labels.push(Some(true)),
                "0" => labels.push(Some(false)),
                other => {
                    bad = Some(format!(
                        "line {line}: {finding} is {other:?}, not 1 (present), 0 (absent) or empty (not labelled); the row is left out"
                    ));
                    break;
                }
            }
        }
        if let Some(problem) = bad {
            truth.problems.push(problem);
            continue;
        }
        if truth.labels.contains_key(&study) {
            truth.problems.push(format!(
                "line {line}: study {study} is labelled again; its first row is kept"
            ));
            continue;
        }
        truth.labels.insert(study, labels);
    }
    Ok(truth)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth_of(text: &str) -> Result<Truth, TruthError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("truth.csv");
        std::fs::write(&path, text).unwrap();
        read(&path)
    }

    #[test]
    fn bad_rows_are_left_out_with_their_line_and_the_rest_is_read() {
        let truth = truth_of(
            "study,Pneumothorax,Edema\n1.2.1,1,0\n1.2.2,yes,0\n1.2.1,0,0\n1.2.3,,1\n1.2.4,1\n,1,1\n",
        )
        .unwrap();
        assert_eq!(truth.findings, ["Pneumothorax", "Edema"]);
        assert_eq!(truth.labels["1.2.1"], [Some(true), Some(false)]);
        assert_eq!(truth.labels["1.2.3"], [None, Some(true)]);
        assert_eq!(truth.labels.len(), 2);
        let problems = truth.problems.join("\n");
        for expected in [
            "line 3: Pneumothorax is \"yes\"",
            "line 4: study 1.2.1 is labelled again",
            "line 6: 2 fields where the header has 3",
            "line 7: no study",
        ] {
            assert!(problems.contains(expected), "{expected} not in\n{problems}");
        }
    }

    #[test]
    fn a_file_without_the_study_column_says_what_it_needs() {
        let e = truth_of("accession,Edema\n1,1\n").unwrap_err();
        assert!(
            e.to_string().contains("first column must be \"study\""),
            "{e}"
        );
    }
}

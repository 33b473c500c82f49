//! The labeler against the CheXpert labeler's own sample reports and labels
//! (tests/fixtures/chexpert/, copied from the CheXpert labeler, MIT), and `radassist label`.

use crate::common;

use radassist::labeler::{Labeler, Observation};
use std::io::Write;
use std::process::{Command, Stdio};

fn csv_rows(name: &str) -> Vec<csv::StringRecord> {
    let path = common::root().join("tests/fixtures/chexpert").join(name);
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(path)
        .unwrap()
        .records()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn reproduces_the_chexpert_labelers_labels_on_its_sample_reports() {
    let reports = csv_rows("sample_reports.csv");
    let labeled = csv_rows("labeled_reports.csv");
    let header = &labeled[0];
    assert_eq!(
        header.iter().skip(1).collect::<Vec<_>>(),
        Observation::ALL.map(|o| o.name())
    );
    assert_eq!(reports.len(), labeled.len() - 1);
    let labeler = Labeler::new();
    for (report, expected) in reports.iter().zip(&labeled[1..]) {
        assert_eq!(&report[0], &expected[0]);
        let found = labeler.label(&report[0]);
        // One deliberate difference: "the lungs are clear" denies the lung observations, where
        // the CheXpert labeler leaves them blank.
        let clear_lungs = found
            .mentions
            .iter()
            .any(|m| m.rule.as_deref() == Some("normality: the lungs are clear"));
        for (observation, value) in Observation::ALL.into_iter().zip(expected.iter().skip(1)) {
            let mut want: Option<i8> =
                (!value.is_empty()).then(|| value.parse::<f32>().unwrap() as i8);
            let denied = [
                Observation::LungOpacity,
                Observation::Consolidation,
                Observation::Pneumonia,
                Observation::Edema,
                Observation::Atelectasis,
            ];
            if clear_lungs && want.is_none() && denied.contains(&observation) {
                want = Some(0);
            }
            assert_eq!(
                found.get(observation).chexpert_value(),
                want,
                "{observation} in {:?}: {:?}",
                &report[0],
                found.mentions
            );
        }
    }
}

#[test]
fn label_reads_and_writes_json_lines() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args(["label", "--jsonl", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        writeln!(
            stdin,
            r#"{{"id": "a1", "text": "No pneumothorax. Mild cardiomegaly."}}"#
        )
        .unwrap();
        writeln!(
            stdin,
            r#"{{"id": 7, "text": "IMPRESSION: Possible left lower lobe pneumonia."}}"#
        )
        .unwrap();
        writeln!(stdin).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], "a1");
    assert_eq!(lines[1]["id"], 7);
    let labels = lines[0]["labels"].as_object().unwrap();
    assert_eq!(labels.keys().collect::<Vec<_>>().len(), 14);
    assert_eq!(labels["Pneumothorax"], "negative");
    assert_eq!(labels["Cardiomegaly"], "positive");
    assert_eq!(labels["No Finding"], "absent");
    assert_eq!(lines[1]["labels"]["Pneumonia"], "uncertain");

    // A malformed line is an error that names the line; nothing is guessed.
    let mut child = Command::new(env!("CARGO_BIN_EXE_radassist"))
        .args(["label", "--jsonl", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"id\": 1, \"text\": \"ok\"}\n{\"id\": 2}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

//! `radassist label`: report text to CheXpert observation labels, one report or a JSONL file.

use indicatif::{ProgressBar, ProgressStyle};
use radassist::labeler::Labeler;
use std::path::Path;

pub fn label(texts: &[String], jsonl: Option<&Path>, mentions: bool) -> Result<(), String> {
    use std::io::{BufRead, Write};
    let labeler = Labeler::new();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut write = |id: serde_json::Value, text: &str| -> Result<(), String> {
        let found = labeler.label(text);
        let mut line = serde_json::json!({ "id": id, "labels": found.labels });
        if mentions {
            line["mentions"] = serde_json::to_value(&found.mentions).expect("serialises");
            line["sentences"] = serde_json::to_value(&found.sentences).expect("serialises");
        }
        writeln!(out, "{line}").map_err(|e| format!("writing the labels: {e}"))
    };
    let Some(input) = jsonl else {
        if texts.is_empty() {
            return Err("give report texts, or --jsonl FILE (- for standard input)".into());
        }
        for (i, text) in texts.iter().enumerate() {
            write(serde_json::json!(i + 1), text)?;
        }
        return Ok(());
    };
    let (reader, total): (Box<dyn BufRead>, Option<u64>) = if input == Path::new("-") {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let file = std::fs::File::open(input).map_err(|e| format!("{}: {e}", input.display()))?;
        let size = file.metadata().map(|m| m.len()).ok();
        (Box::new(std::io::BufReader::new(file)), size)
    };
    // Progress by bytes read, on a terminal only, for large inputs.
    let progress = match total {
        Some(bytes) if bytes > 1 << 20 => ProgressBar::new(bytes).with_style(
            ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {per_sec} eta {eta}")
                .expect("valid template"),
        ),
        _ => ProgressBar::hidden(),
    };
    for (number, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("{}: line {}: {e}", input.display(), number + 1))?;
        progress.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        let record: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| format!("{}: line {}: not JSON: {e}", input.display(), number + 1))?;
        let (Some(id), Some(text)) = (
            record.get("id"),
            record.get("text").and_then(|t| t.as_str()),
        ) else {
            return Err(format!(
                "{}: line {}: needs \"id\" and a string \"text\"",
                input.display(),
                number + 1
            ));
        };
        write(id.clone(), text)?;
    }
    progress.finish_and_clear();
    Ok(())
}

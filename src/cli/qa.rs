//! `radassist qa compare`: drafts against final reads from a JSONL file, per observation and
//! grouped by model version or month.

use clap::ValueEnum;
use radassist::inference::session::SessionSettings;
use std::path::Path;

/// How `qa compare` groups studies.
#[derive(Clone, Copy, ValueEnum)]
pub enum GroupBy {
    All,
    Version,
    Month,
}

/// `radassist qa compare`: drafts against final reads, per study and over groups.
pub fn qa_compare(
    input: &Path,
    by: GroupBy,
    policy: radassist::qa::UncertainPolicy,
    text_pack: Option<&Path>,
    settings: &SessionSettings,
    per_study: bool,
    json: bool,
) -> Result<(), String> {
    use radassist::qa::{compare_study, AgreementBuilder, StudyPair};
    use std::collections::BTreeMap;
    use std::io::BufRead;
    let labeler = radassist::labeler::Labeler::new();
    let mut embedder = match text_pack {
        Some(pack) => {
            let pack =
                radassist::inference::ModelPack::load(pack, settings).map_err(|e| e.to_string())?;
            Some(radassist::inference::text::TextEmbedder::new(pack).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let file = std::fs::File::open(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let mut groups: BTreeMap<String, AgreementBuilder> = BTreeMap::new();
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let where_ = || format!("{}: line {}", input.display(), number + 1);
        let line = line.map_err(|e| format!("{}: {e}", where_()))?;
        if line.trim().is_empty() {
            continue;
        }
        let pair: StudyPair = serde_json::from_str(&line).map_err(|e| {
            format!("{}: {e} (each line: {{\"id\", \"draft\", \"final\"; optional \"model_version\", \"date\", \"draft_devices\", \"final_devices\"}})", where_())
        })?;
        let group = group_of(&pair, by);
        let study = compare_study(&labeler, &pair, embedder.as_mut()).map_err(|e| e.to_string())?;
        if per_study {
            println!("{}", serde_json::to_string(&study).expect("serialises"));
        }
        groups
            .entry(group.clone())
            .or_insert_with(|| AgreementBuilder::new(&group, policy))
            .add(&study);
    }
    let summaries: Vec<_> = groups.values().map(AgreementBuilder::finish).collect();
    if json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({ "agreement": summaries }))
                .expect("serialises")
        );
        return Ok(());
    }
    if per_study {
        return Ok(());
    }
    for summary in &summaries {
        print_summary(summary);
    }
    Ok(())
}

/// The group a study falls in: all, its model version, or its month (YYYY-MM).
fn group_of(pair: &radassist::qa::StudyPair, by: GroupBy) -> String {
    match by {
        GroupBy::All => "all".to_string(),
        GroupBy::Version => pair
            .model_version
            .clone()
            .unwrap_or_else(|| "unknown version".into()),
        GroupBy::Month => {
            let digits: String = pair
                .date
                .as_deref()
                .unwrap_or("")
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            if digits.len() >= 6 {
                format!("{}-{}", &digits[..4], &digits[4..6])
            } else {
                "unknown month".into()
            }
        }
    }
}

/// One group's agreement as a table, with a note on the observations the labeler reads poorly.
fn print_summary(s: &radassist::qa::Agreement) {
    let fmt = |e: &radassist::qa::Estimate| match (e.value, e.low, e.high) {
        (Some(v), Some(l), Some(h)) => format!("{v:.2} [{l:.2}, {h:.2}]"),
        _ => "-".into(),
    };
    println!(
        "{}: {} studies; device verdicts agreed {}; mean edit fraction {}",
        s.group,
        s.studies,
        fmt(&s.device_agreement),
        s.mean_edit_fraction
            .map_or("-".into(), |f| format!("{f:.2}"))
    );
    println!(
        "  {:<27} {:>4} {:>4} {:>4} {:>4}  {:<19} {:<19} {:>5}  {:<20} {:>10}",
        "observation", "TP", "FP", "FN", "TN", "sensitivity", "PPV", "F1", "kappa", "labeler F1"
    );
    for o in &s.observations {
        let t = &o.table;
        println!(
            "  {:<27} {:>4} {:>4} {:>4} {:>4}  {:<19} {:<19} {:>5}  {:<20} {:>10}",
            o.observation,
            t.true_positive,
            t.false_positive,
            t.false_negative,
            t.true_negative,
            fmt(&o.sensitivity),
            fmt(&o.ppv),
            o.f1.map_or("-".into(), |f| format!("{f:.2}")),
            fmt(&o.kappa),
            o.labeler_f1.map_or("-".into(), |f| format!("{f:.2}"))
        );
    }
    let untrusted: Vec<String> = s
        .observations
        .iter()
        .filter_map(|o| {
            let f1 = o.labeler_f1?;
            (f1 < radassist::labeler::trust::TRUSTED_F1)
                .then(|| format!("{} ({f1:.2})", o.observation))
        })
        .collect();
    if !untrusted.is_empty() {
        println!(
                "  note: the labeler's own F1 on real reports is below {:.2} for {}: these rows compare labels that are often wrong themselves ({}).",
                radassist::labeler::trust::TRUSTED_F1,
                untrusted.join(", "),
                radassist::labeler::trust::MEASURED
            );
    }
}

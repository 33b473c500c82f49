//! `radassist models validate PACK --studies DIR --truth FILE`: a findings, landmarks or
//! segmentation pack's acceptance test on the site's own studies (the work is in
//! [`radassist::validation`]).
//!
//! Films run in batches through the same decode and inference as the service; each film's
//! line goes to `OUT/predictions.jsonl` as soon as it is made, so a run stopped part way (or
//! over thousands of studies, a day at a time) resumes with the films not yet there. Progress
//! goes to stderr. At the end `OUT/report.html` and `OUT/report.json` hold the figures (and,
//! for a findings pack, `OUT/thresholds.toml` the operating points that reach the target
//! sensitivity: an `[analysis.thresholds]` section for the service's configuration), the
//! summary is printed, and with `--criteria` the exit status says whether they hold.

use radassist::dicom::DecodeLimits;
use radassist::inference::manifest::Task;
use radassist::inference::session::SessionSettings;
use radassist::inference::vision::ImageModel;
use radassist::inference::ModelPack;
use radassist::placement::rules::RuleTable;
use radassist::validation::landmarks::{self, LandmarkSettings};
use radassist::validation::{self, criteria, landmark_report, points, report, truth};
use radassist::validation::{Record, Settings};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Films run through the pack at once.
const BATCH: usize = 8;

/// What a run is given.
pub struct Request {
    pub pack: PathBuf,
    pub studies: PathBuf,
    pub truth: PathBuf,
    pub out: PathBuf,
    pub criteria: Option<PathBuf>,
    pub threshold: f64,
    pub target_sensitivity: f64,
    /// The placement rules (and minimum confidence) landmark verdicts are judged by.
    pub rules: RuleTable,
}

/// The films already in the predictions file (a line that does not read, from a run cut off
/// mid-write, is dropped and its film run again), and whether the file ends a line (a cut-off
/// run's last line may not).
fn done(predictions: &Path) -> Result<(Vec<Record>, bool), String> {
    let text = match std::fs::read_to_string(predictions) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), true)),
        Err(e) => return Err(format!("{}: {e}", predictions.display())),
    };
    let records = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Record>(line).ok())
        .collect();
    Ok((records, text.is_empty() || text.ends_with('\n')))
}

/// Runs the pack on one batch of films read, adding their records with what it found.
fn run_batch(
    model: &mut ImageModel,
    read: Vec<(radassist::imaging::Radiograph, Record)>,
    records: &mut Vec<Record>,
) -> Result<(), String> {
    if read.is_empty() {
        return Ok(());
    }
    let radiographs: Vec<_> = read.iter().map(|(r, _)| r).collect();
    if model.pack().manifest.task == Task::Findings {
        let findings = model.findings(&radiographs).map_err(|e| e.to_string())?;
        for ((_, mut record), found) in read.into_iter().zip(findings) {
            record.probabilities = found
                .into_iter()
                .map(|f| (f.label, f64::from(f.probability)))
                .collect();
            records.push(record);
        }
    } else {
        let prepared = model.prepare(&radiographs);
        let found =
            radassist::segmentation::landmarks_of(model, &prepared).map_err(|e| e.to_string())?;
        for ((_, mut record), landmarks) in read.into_iter().zip(found) {
            record.landmarks = landmarks;
            records.push(record);
        }
    }
    Ok(())
}

/// Runs the pack on `films` not yet done, appending each film's line to `predictions`.
fn predict(
    model: &mut ImageModel,
    films: &[PathBuf],
    (predictions, ends_a_line): (&Path, bool),
    records: &mut Vec<Record>,
) -> Result<(), String> {
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(predictions)
        .map_err(|e| format!("{}: {e}", predictions.display()))?;
    // A line a cut-off run left half written ends here, not in the next film's line.
    if !ends_a_line {
        writeln!(out).map_err(|e| format!("{}: {e}", predictions.display()))?;
    }
    let seen: BTreeSet<String> = records.iter().map(|r| r.file.clone()).collect();
    let todo: Vec<&PathBuf> = films
        .iter()
        .filter(|f| !seen.contains(&f.display().to_string()))
        .collect();
    let (total, started) = (films.len(), std::time::Instant::now());
    let limits = DecodeLimits::default();
    for (i, batch) in todo.chunks(BATCH).enumerate() {
        let mut read = Vec::new();
        for film in batch {
            match validation::read_film(film, &limits) {
                Ok(pair) => read.push(pair),
                Err(refused) => records.push(*refused),
            }
        }
        run_batch(model, read, records)?;
        let at = records.len().saturating_sub(batch.len());
        for record in &records[at..] {
            let line = serde_json::to_string(record).map_err(|e| e.to_string())?;
            writeln!(out, "{line}").map_err(|e| format!("{}: {e}", predictions.display()))?;
        }
        let made = (i + 1) * BATCH;
        eprintln!(
            "validate: {}/{total} films ({} this run, {:.1} films/s)",
            (total - todo.len() + made).min(total),
            made.min(todo.len()),
            made.min(todo.len()) as f64 / started.elapsed().as_secs_f64().max(1e-9)
        );
    }
    Ok(())
}

/// What the site's truth file says, read as the pack's task needs it.
enum Truth {
    /// A findings pack: per-study labels.
    Labels(truth::Truth),
    /// A landmarks or segmentation pack: annotated points.
    Points(points::Annotations),
}

/// What a run produced: the files' contents, the summary, and the criteria checked.
struct Outcome {
    json: serde_json::Value,
    html: String,
    thresholds: Option<String>,
    summary: String,
    checks: Vec<criteria::Check>,
    problems: Vec<String>,
}

/// The films run (or resumed from `OUT/predictions.jsonl`), one record each.
fn records(pack: ModelPack, request: &Request) -> Result<Vec<Record>, String> {
    let films = validation::films(&request.studies)
        .map_err(|e| format!("{}: {e}", request.studies.display()))?;
    std::fs::create_dir_all(&request.out).map_err(|e| format!("{}: {e}", request.out.display()))?;
    let predictions = request.out.join("predictions.jsonl");
    let (mut records, ends_a_line) = done(&predictions)?;
    // Lines of films no longer in the folder are not counted.
    let present: BTreeSet<String> = films.iter().map(|f| f.display().to_string()).collect();
    records.retain(|r| present.contains(&r.file));
    let mut model = ImageModel::new(pack).map_err(|e| e.to_string())?;
    predict(
        &mut model,
        &films,
        (&predictions, ends_a_line),
        &mut records,
    )?;
    Ok(records)
}

/// The records evaluated against the truth, the criteria checked, the report made.
fn evaluated(
    truth: Truth,
    (records, names, pack): (&[Record], &[String], String),
    criteria: Option<&criteria::Criteria>,
    request: &Request,
) -> Outcome {
    match truth {
        Truth::Labels(truth) => {
            let settings = Settings {
                pack,
                threshold: request.threshold,
                target_sensitivity: request.target_sensitivity,
            };
            let evaluation = validation::evaluate(records, &truth, names, settings);
            let checks = criteria
                .map(|c| criteria::check(c, &evaluation))
                .unwrap_or_default();
            Outcome {
                json: serde_json::json!({ "evaluation": evaluation, "criteria": checks }),
                html: report::html(&evaluation, &checks),
                thresholds: Some(report::thresholds(&evaluation)),
                summary: report::summary(&evaluation, &checks),
                problems: [evaluation.truth_problems, evaluation.unmatched].concat(),
                checks,
            }
        }
        Truth::Points(annotations) => {
            let settings = LandmarkSettings {
                pack,
                min_confidence: request.rules.min_confidence,
            };
            let evaluation =
                landmarks::evaluate(records, &annotations, names, settings, &request.rules);
            let checks = criteria
                .map(|c| criteria::check_landmarks(c, &evaluation))
                .unwrap_or_default();
            Outcome {
                json: serde_json::json!({ "evaluation": evaluation, "criteria": checks }),
                html: landmark_report::html(&evaluation, &checks),
                thresholds: None,
                summary: landmark_report::summary(&evaluation, &checks),
                problems: [evaluation.truth_problems, evaluation.unmatched].concat(),
                checks,
            }
        }
    }
}

/// The acceptance test of `request.pack`; Err when it cannot be made, or when a criterion
/// fails (after the report is written).
pub fn validate(request: &Request, settings: &SessionSettings) -> Result<(), String> {
    let pack = ModelPack::load(&request.pack, settings).map_err(|e| e.to_string())?;
    let manifest = &pack.manifest;
    let (truth, names) = match (manifest.task, &manifest.findings, &manifest.landmarks) {
        (Task::Findings, Some(findings), _) => (
            Truth::Labels(truth::read(&request.truth).map_err(|e| e.to_string())?),
            findings.names.clone(),
        ),
        (Task::Landmarks, _, Some(_)) | (Task::Segmentation, _, _) => (
            Truth::Points(points::read(&request.truth).map_err(|e| e.to_string())?),
            radassist::segmentation::landmark_names(manifest),
        ),
        (task, _, _) => {
            return Err(format!(
                "{}: validate measures findings, landmarks and segmentation packs; this is a {task:?} pack",
                request.pack.display()
            ))
        }
    };
    let criteria = match &request.criteria {
        Some(path) => Some(criteria::read(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let name = manifest.name.clone();
    let records = records(pack, request)?;
    let outcome = evaluated(truth, (&records, &names, name), criteria.as_ref(), request);
    let json = serde_json::to_string_pretty(&outcome.json).map_err(|e| e.to_string())?;
    let mut files = vec![("report.json", json), ("report.html", outcome.html)];
    files.extend(outcome.thresholds.map(|t| ("thresholds.toml", t)));
    for (file, text) in files {
        let path = request.out.join(file);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    print!("{}", outcome.summary);
    for problem in &outcome.problems {
        eprintln!("validate: {problem}");
    }
    let checks = &outcome.checks;
    let failed = checks.iter().filter(|c| !c.holds).count();
    if failed > 0 {
        return Err(format!(
            "the acceptance criteria are not met: {failed} of {} fail (see {})",
            checks.len(),
            request.out.join("report.html").display()
        ));
    }
    Ok(())
}

//! `radassist models validate PACK --studies DIR --truth FILE`: a findings pack's acceptance
//! test on the site's own studies (the work is in [`radassist::validation`]).
//!
//! Films run in batches through the same decode and inference as the service; each film's
//! line goes to `OUT/predictions.jsonl` as soon as it is made, so a run stopped part way (or
//! over thousands of studies, a day at a time) resumes with the films not yet there. Progress
//! goes to stderr. At the end `OUT/report.html` and `OUT/report.json` hold the figures,
//! `OUT/thresholds.toml` the operating points that reach the target sensitivity (an
//! `[analysis.thresholds]` section for the service's configuration), the summary is printed,
//! and with `--criteria` the exit status says whether they hold.

use radassist::dicom::DecodeLimits;
use radassist::inference::manifest::Task;
use radassist::inference::session::SessionSettings;
use radassist::inference::vision::ImageModel;
use radassist::inference::ModelPack;
use radassist::validation::{self, criteria, report, truth, Record, Settings};
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
        let radiographs: Vec<_> = read.iter().map(|(r, _)| r).collect();
        let findings = match radiographs.is_empty() {
            true => Vec::new(),
            false => model.findings(&radiographs).map_err(|e| e.to_string())?,
        };
        for ((_, mut record), found) in read.into_iter().zip(findings) {
            record.probabilities = found
                .into_iter()
                .map(|f| (f.label, f64::from(f.probability)))
                .collect();
            records.push(record);
        }
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

/// The acceptance test of `request.pack`; Err when it cannot be made, or when a criterion
/// fails (after the report is written).
pub fn validate(request: &Request, settings: &SessionSettings) -> Result<(), String> {
    let pack = ModelPack::load(&request.pack, settings).map_err(|e| e.to_string())?;
    if pack.manifest.task != Task::Findings {
        return Err(format!(
            "{}: validate measures findings packs; this is a {:?} pack",
            request.pack.display(),
            pack.manifest.task
        ));
    }
    let name = pack.manifest.name.clone();
    let labels = pack
        .manifest
        .findings
        .as_ref()
        .map(|f| f.names.clone())
        .unwrap_or_default();
    let truth = truth::read(&request.truth).map_err(|e| e.to_string())?;
    let criteria = match &request.criteria {
        Some(path) => Some(criteria::read(path).map_err(|e| e.to_string())?),
        None => None,
    };
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
    let settings = Settings {
        pack: name,
        threshold: request.threshold,
        target_sensitivity: request.target_sensitivity,
    };
    let evaluation = validation::evaluate(&records, &truth, &labels, settings);
    let checks = criteria
        .map(|c| criteria::check(&c, &evaluation))
        .unwrap_or_default();
    let json = serde_json::json!({ "evaluation": evaluation, "criteria": checks });
    for (file, text) in [
        (
            "report.json",
            serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?,
        ),
        ("report.html", report::html(&evaluation, &checks)),
        ("thresholds.toml", report::thresholds(&evaluation)),
    ] {
        let path = request.out.join(file);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    print!("{}", report::summary(&evaluation, &checks));
    for problem in evaluation
        .truth_problems
        .iter()
        .chain(&evaluation.unmatched)
    {
        eprintln!("validate: {problem}");
    }
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

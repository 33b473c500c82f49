//! The `radassist` command line: each stage of the flow runs alone, so a problem can be cornered
//! without the server. This file only parses arguments and prints; the work is in the library.

mod cli;

use clap::{Parser, Subcommand};
use cli::audit::audit;
use cli::image::{decode, inspect, render, Bits};
use cli::models::{embed_text, models_check, models_list, predict, report, runtime};
use cli::text::label;
use radassist::config::Config;
use radassist::imaging::display::VoiChoice;
use radassist::inference::session::{Provider, SessionSettings};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "radassist",
    version,
    about = "Chest X-ray assistant beside a PACS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The configuration file (TOML; see src/config.rs for every key). Environment overrides:
    /// RADASSIST_PROVIDER, RADASSIST_MODELS.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Show the canonical metadata of a DICOM file (no pixel decoding).
    Inspect(InspectArgs),
    /// Decode modality values (after the Modality LUT, before VOI) to float32 .npy.
    ///
    /// With a folder, decodes every file in it (recursively) into OUT as a folder, goes on past
    /// bad files, and lists them with their reasons at the end.
    Decode(DecodeArgs),
    /// Render what a radiologist would see (VOI applied, MONOCHROME1 inverted) as a grey PNG.
    Render(RenderArgs),
    /// Check that the ONNX Runtime library loads, and say where it came from.
    Runtime,
    /// Model packs: list them, or load and warm up each one.
    Models(ModelsArgs),
    /// Run an image pack (findings, embedding, landmarks, or segmentation: the landmarks derived
    /// from its masks) on radiographs, as JSON lines.
    Predict(PredictArgs),
    /// Write a draft with a vision-language (report) pack, as JSON.
    Report(ReportArgs),
    /// Analyse a study: findings, tube and line checks with measurements, and comparison with
    /// priors (alignment, changes, subtraction). Packs come from the configuration's
    /// [analysis] section unless given here.
    Analyze(AnalyzeArgs),
    /// Write the draft report of a study: Findings and Impression, every sentence with its
    /// evidence; preliminary until signed.
    Draft(DraftArgs),
    /// Write a study's report as DICOM SR (TID 2000) or FHIR R4 DiagnosticReport: the draft
    /// (preliminary, UNVERIFIED), or with --final the radiologist's signed read (VERIFIED).
    Export(ExportArgs),
    /// Label report text for the 14 CheXpert observations (positive, negative, uncertain,
    /// absent), as JSON lines.
    Label(LabelArgs),
    /// Run the gRPC service (ingest, worklist, quality, models; health and reflection) with the
    /// configuration's [service] section. Stops cleanly on SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Bring the PostgreSQL catalogue's schema up to date and exit ([store] backend =
    /// "postgres"; `serve` also does it at start, under the same lock).
    Migrate,
    /// Query the service's audit log: who read which patient data, when, from where.
    Audit(AuditArgs),
    /// The people who log in to the web reading room (kept in the service's store).
    Users(UsersArgs),
    /// Back up the embedded store (SQLite catalogue and blob folder) into a new folder, while
    /// the server runs: a consistent snapshot of the catalogue and every blob it names, each
    /// checked against its SHA-256.
    Backup(BackupArgs),
    /// Restore a backup into the configuration's data folder, which must hold no catalogue yet:
    /// the backup is checked first (integrity, every blob's digest), the catalogue put in place
    /// last. Start the server afterwards.
    Restore(RestoreArgs),
    /// Quality: the model's drafts against the radiologists' signed reads.
    Qa(QaArgs),
    /// Sentence embeddings from a text-embedding pack, as JSON lines.
    EmbedText(EmbedTextArgs),
}

#[derive(clap::Args)]
struct BackupArgs {
    /// The backup folder (new, or empty).
    dest: PathBuf,
}

#[derive(clap::Args)]
struct RestoreArgs {
    /// A folder `radassist backup` wrote.
    backup: PathBuf,
}

#[derive(clap::Args)]
struct InspectArgs {
    file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct DecodeArgs {
    /// A DICOM file, or a folder of them.
    input: PathBuf,
    /// The .npy file (or, for a folder, the output folder).
    #[arg(short, long)]
    output: PathBuf,
    /// Worker threads for a folder (default: all cores).
    #[arg(long)]
    jobs: Option<usize>,
}

#[derive(clap::Args)]
struct RenderArgs {
    file: PathBuf,
    #[arg(short, long)]
    output: PathBuf,
    /// Fit the longer side to this many pixels (area averaging when shrinking).
    #[arg(long)]
    size: Option<usize>,
    /// Bits per PNG sample.
    #[arg(long, value_enum, default_value = "8")]
    bits: Bits,
    /// Use the header's window number N (1-based) instead of the first.
    #[arg(long, conflicts_with_all = ["voi_lut", "window"])]
    window_index: Option<usize>,
    /// Use the header's VOI LUT number N (1-based).
    #[arg(long, conflicts_with = "window")]
    voi_lut: Option<usize>,
    /// Use this window, as CENTER,WIDTH in modality values.
    #[arg(long, value_parser = parse_window, allow_hyphen_values = true)]
    window: Option<(f64, f64)>,
}

#[derive(clap::Args)]
struct ModelsArgs {
    #[command(subcommand)]
    action: ModelsAction,
    /// The folder of model packs (default: the configuration's, "models").
    #[arg(long, global = true)]
    models: Option<PathBuf>,
    /// Execution provider (default: the configuration's, auto).
    #[arg(long, global = true, value_enum)]
    provider: Option<Provider>,
}

#[derive(clap::Args)]
struct PredictArgs {
    files: Vec<PathBuf>,
    /// The pack folder.
    #[arg(long)]
    pack: PathBuf,
    #[arg(long, value_enum)]
    provider: Option<Provider>,
    /// A segmentation pack: also write each structure's probability mask here, as a 16-bit
    /// grey PNG on the mask's grid (FILE-STEM.STRUCTURE.png; 65535 is probability 1).
    #[arg(long)]
    masks: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ReportArgs {
    file: PathBuf,
    /// The clinical indication that fills the prompt.
    #[arg(long, default_value = "")]
    indication: String,
    /// Beam search with this many beams (1: greedy).
    #[arg(long, default_value_t = 1)]
    beams: usize,
    /// A prior study's image, for the template's prior slot.
    #[arg(long)]
    prior: Option<PathBuf>,
    /// The prior study's signed report.
    #[arg(long, default_value = "", requires = "prior")]
    prior_report: String,
    #[arg(long, default_value = "models/test-report")]
    pack: PathBuf,
    #[arg(long, value_enum)]
    provider: Option<Provider>,
}

#[derive(clap::Args)]
struct AnalyzeArgs {
    #[command(flatten)]
    study: cli::study::StudyArgs,
    /// Print the structured result as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Draw landmarks, callipers, reference levels and verdicts on the image (PNG).
    #[arg(long)]
    overlay: Option<PathBuf>,
    /// The temporal subtraction against the most recent prior (PNG).
    #[arg(long)]
    subtraction: Option<PathBuf>,
}

#[derive(clap::Args)]
struct DraftArgs {
    #[command(flatten)]
    study: cli::study::StudyArgs,
    #[command(flatten)]
    writer: cli::study::WriterArgs,
    /// Print the draft with its evidence as JSON instead of its text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct ExportArgs {
    #[arg(value_enum)]
    format: cli::study::ExportFormat,
    #[command(flatten)]
    study: cli::study::StudyArgs,
    #[command(flatten)]
    writer: cli::study::WriterArgs,
    /// The output file (.dcm for SR, .json for FHIR).
    #[arg(short, long)]
    output: PathBuf,
    /// The signed final read (a text file with FINDINGS: and IMPRESSION:).
    #[arg(long = "final", value_name = "TEXT_FILE", requires = "radiologist")]
    final_read: Option<PathBuf>,
    /// The radiologist who signed it ("Family^Given" for DICOM).
    #[arg(long)]
    radiologist: Option<String>,
    /// The radiologist's organisation, the signed SR's Verifying Organization (default: the
    /// configuration's `organization`, else the image's Institution Name).
    #[arg(long)]
    organization: Option<String>,
}

#[derive(clap::Args)]
struct LabelArgs {
    /// Report texts to label (each one report).
    texts: Vec<String>,
    /// Read lines {"id": ..., "text": ...} from this file ("-": standard input) and write
    /// lines {"id": ..., "labels": {...}}.
    #[arg(long, value_name = "IN", conflicts_with = "texts")]
    jsonl: Option<PathBuf>,
    /// Also write each mention: its sentence, words, label and the rule that gave it.
    #[arg(long)]
    mentions: bool,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// all: one process does everything. With [store] backend = "postgres", any number of
    /// frontend processes (gRPC, DICOM, web) and worker processes (analysis) share one
    /// catalogue and blob store.
    #[arg(long, value_enum, default_value = "all")]
    role: radassist::server::ProcessRole,
}

#[derive(clap::Args)]
struct AuditArgs {
    /// Only entries at or after this time (RFC 3339, e.g. 2026-11-25T08:00:00Z).
    #[arg(long)]
    since: Option<String>,
    /// Only this caller's entries (the token's name).
    #[arg(long)]
    who: Option<String>,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    /// Instead of the log: the stored instances whose Study, Series or SOP Instance UID
    /// is not a DICOM UID (stored before ingest checked UIDs), and why.
    #[arg(long, conflicts_with_all = ["since", "who"])]
    uids: bool,
}

#[derive(clap::Args)]
struct UsersArgs {
    #[command(subcommand)]
    action: UsersAction,
}

#[derive(clap::Args)]
struct QaArgs {
    #[command(subcommand)]
    action: QaAction,
}

#[derive(clap::Args)]
struct EmbedTextArgs {
    sentences: Vec<String>,
    /// The text-embedding pack.
    #[arg(long, default_value = "models/minilm")]
    pack: PathBuf,
    #[arg(long, value_enum)]
    provider: Option<Provider>,
}

#[derive(Subcommand)]
enum ModelsAction {
    /// The packs and what their manifests say (no graph is loaded).
    List,
    /// Load every pack, check its manifest against its graph, run a warm-up, and print the
    /// execution provider each session really got. Exit 1 if any pack fails.
    Check,
    /// A findings or landmarks pack's acceptance test on the site's own studies: every film
    /// under --studies through the service's decode and inference, compared with --truth.
    /// Findings (CSV: study, then a 0/1 column per finding): per finding AUROC with DeLong's
    /// 95 % interval, sensitivity, specificity and PPV at --threshold, the threshold reaching
    /// --target-sensitivity, calibration, prevalence. Landmarks (CSV: image,landmark,x,y in
    /// pixels): per landmark detection rate and position error in mm, the ETT tip-to-carina
    /// error, each device's verdict agreement. Each also by manufacturer, view, age band and
    /// sex. Writes OUT/predictions.jsonl (a stopped run resumes from it), OUT/report.html and
    /// OUT/report.json. With --criteria (TOML), exit 1 when a criterion fails.
    Validate(ValidateArgs),
}

#[derive(clap::Args)]
struct ValidateArgs {
    /// The pack folder.
    pack: PathBuf,
    /// The folder of the site's DICOM films (searched at every level).
    #[arg(long)]
    studies: PathBuf,
    /// The truth CSV. Findings packs: a "study" column (Study Instance UID or Accession
    /// Number), then one column per finding, 1 present, 0 absent, empty not labelled.
    /// Landmarks packs: image,landmark,x,y (SOP Instance UID; column and row in pixels from 0;
    /// x and y empty: not on the film).
    #[arg(long)]
    truth: PathBuf,
    /// Where the predictions and the report go.
    #[arg(long, default_value = "validation")]
    out: PathBuf,
    /// The site's acceptance criteria (TOML: [default] and [findings."NAME"] with min_auroc,
    /// min_auroc_lower_95, min_sensitivity, min_specificity, min_ppv, max_ece;
    /// [landmark_default] and [landmarks."NAME"] with min_detection_rate, max_median_error_mm,
    /// max_p95_error_mm, ...; [ett_distance]; [verdicts] min_agreement).
    #[arg(long)]
    criteria: Option<PathBuf>,
    /// A finding is called present at this probability and above (the draft's threshold).
    #[arg(long, default_value_t = f64::from(radassist::draft::PRESENT))]
    threshold: f64,
    /// The sensitivity a threshold is looked for on the ROC curve.
    #[arg(long, default_value_t = 0.9)]
    target_sensitivity: f64,
}

#[derive(Subcommand)]
enum UsersAction {
    /// Add a person; the password (at least 12 characters) is read from standard input.
    Add {
        /// Their login name: letters, digits, '.', '_' and '-'.
        name: String,
        #[arg(long, value_enum)]
        role: cli::users::WebRole,
        /// Read the password from standard input (its first line); required, so that it
        /// never appears in the shell's history or the process list.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Everyone who may log in, with their role and whether they are disabled.
    List,
    /// Stop a person from logging in (their open sessions end).
    Disable { name: String },
    /// Let a disabled person log in again.
    Enable { name: String },
}

#[derive(Subcommand)]
enum QaAction {
    /// Compare drafts with final reads: per observation TP/FP/FN/TN, sensitivity, PPV, F1 and
    /// Cohen's kappa with 95 % intervals, device verdict agreement and edit distance; per
    /// group (all, model version, or month).
    Compare {
        /// JSON lines {"id", "draft", "final", "model_version"?, "date"?, "draft_devices"?,
        /// "final_devices"?}.
        #[arg(long, value_name = "PAIRS")]
        jsonl: PathBuf,
        #[arg(long, value_enum, default_value = "all")]
        by: cli::qa::GroupBy,
        /// What an uncertain label counts as.
        #[arg(long, value_enum, default_value = "positive")]
        uncertain: radassist::qa::UncertainPolicy,
        /// Text-embedding pack for sentence matching (default: the configuration's).
        #[arg(long)]
        text_pack: Option<PathBuf>,
        /// Skip sentence matching (no text model needed).
        #[arg(long, conflicts_with = "text_pack")]
        no_sentences: bool,
        /// Also write each study's comparison, as JSON lines.
        #[arg(long)]
        per_study: bool,
        /// Write the summary as JSON.
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum)]
        provider: Option<Provider>,
    },
}

fn parse_window(text: &str) -> Result<(f64, f64), String> {
    let (c, w) = text
        .split_once(',')
        .ok_or("expected CENTER,WIDTH, for example 550,1024")?;
    let parse = |s: &str| s.trim().parse::<f64>().map_err(|e| format!("{s:?}: {e}"));
    Ok((parse(c)?, parse(w)?))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Output piped into `head` and the like: end quietly when the reader goes away, as command
    // line tools do, instead of panicking on a broken pipe. Not for `serve`: a client that
    // goes away must cost its connection (EPIPE), never the server.
    if !matches!(cli.command, Command::Serve { .. }) {
        // SAFETY: restoring the default action of a signal before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    init_logs();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("radassist: {message}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command {
        Command::Inspect(args) => args.run(),
        Command::Decode(args) => args.run(),
        Command::Render(args) => args.run(),
        Command::Runtime => runtime(),
        Command::Models(args) => args.run(&config),
        Command::EmbedText(args) => args.run(&config),
        Command::Serve(args) => args.run(&config),
        Command::Migrate => radassist::store::pg::migrate_configured(&config.store)
            .map(|version| println!("the PostgreSQL catalogue's schema is at version {version}")),
        Command::Audit(args) => args.run(&config),
        Command::Users(args) => args.run(&config),
        Command::Backup(args) => cli::backup::backup(&config, &args.dest),
        Command::Restore(args) => cli::backup::restore(&config, &args.backup),
        Command::Qa(args) => args.run(&config),
        Command::Label(args) => args.run(),
        Command::Analyze(args) => args.run(&config),
        Command::Draft(args) => args.run(&config),
        Command::Export(args) => args.run(&config),
        Command::Predict(args) => args.run(&config),
        Command::Report(args) => args.run(&config),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("radassist: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr: RADASSIST_LOG sets the level (warn by default), RADASSIST_LOG_FORMAT=json
/// makes them one JSON object per line for a log collector.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RADASSIST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("RADASSIST_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
}

/// Session settings from the configuration, with a --provider flag on top.
fn settings(config: &Config, provider: Option<Provider>) -> SessionSettings {
    SessionSettings {
        provider: provider.unwrap_or(config.inference.provider),
        ..config.inference.session_settings()
    }
}

impl InspectArgs {
    fn run(self) -> Result<(), String> {
        let InspectArgs { file, json } = self;
        inspect(&file, json)
    }
}

impl DecodeArgs {
    fn run(self) -> Result<(), String> {
        let DecodeArgs {
            input,
            output,
            jobs,
        } = self;
        decode(&input, &output, jobs)
    }
}

impl RenderArgs {
    fn run(self) -> Result<(), String> {
        let RenderArgs {
            file,
            output,
            size,
            bits,
            window_index,
            voi_lut,
            window,
        } = self;
        let choice = match (window_index, voi_lut, window) {
            (Some(0), _, _) | (_, Some(0), _) => {
                Err("window and VOI LUT numbers start at 1".to_string())
            }
            (Some(n), _, _) => Ok(VoiChoice::Window(n - 1)),
            (_, Some(n), _) => Ok(VoiChoice::VoiLut(n - 1)),
            (_, _, Some((center, width))) => Ok(VoiChoice::Explicit { center, width }),
            _ => Ok(VoiChoice::Default),
        };
        choice.and_then(|choice| render(&file, &output, size, bits, &choice))
    }
}

impl ModelsArgs {
    fn run(self, config: &Config) -> Result<(), String> {
        let ModelsArgs {
            action,
            models,
            provider,
        } = self;
        let models = models.unwrap_or_else(|| config.inference.models.clone());
        match action {
            ModelsAction::List => models_list(&models),
            ModelsAction::Check => models_check(&models, &settings(config, provider)),
            ModelsAction::Validate(args) => cli::validate::validate(
                &cli::validate::Request {
                    pack: args.pack,
                    studies: args.studies,
                    truth: args.truth,
                    out: args.out,
                    criteria: args.criteria,
                    threshold: args.threshold,
                    target_sensitivity: args.target_sensitivity,
                    rules: config.placement.clone(),
                },
                &settings(config, provider),
            ),
        }
    }
}

impl EmbedTextArgs {
    fn run(self, config: &Config) -> Result<(), String> {
        let EmbedTextArgs {
            sentences,
            pack,
            provider,
        } = self;
        embed_text(&pack, &settings(config, provider), &sentences)
    }
}

impl ServeArgs {
    fn run(self, config: &Config) -> Result<(), String> {
        let ServeArgs { role } = self;
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("the async runtime: {e}"))
            .and_then(|runtime| runtime.block_on(radassist::server::serve(config.clone(), role)))
    }
}

impl AuditArgs {
    fn run(self, config: &Config) -> Result<(), String> {
        let AuditArgs {
            since,
            who,
            json,
            uids,
        } = self;
        if uids {
            cli::audit::invalid_uids(config, json)
        } else {
            audit(config, since.as_deref(), who.as_deref(), json)
        }
    }
}

impl UsersArgs {
    fn run(self, config: &Config) -> Result<(), String> {
        let UsersArgs { action } = self;
        match action {
            UsersAction::Add {
                name,
                role,
                password_stdin,
            } => cli::users::add(config, &name, role, password_stdin),
            UsersAction::List => cli::users::list(config),
            UsersAction::Disable { name } => cli::users::set_disabled(config, &name, true),
            UsersAction::Enable { name } => cli::users::set_disabled(config, &name, false),
        }
    }
}

impl QaArgs {
    fn run(self, config: &Config) -> Result<(), String> {
        let QaArgs {
            action:
                QaAction::Compare {
                    jsonl,
                    by,
                    uncertain,
                    text_pack,
                    no_sentences,
                    per_study,
                    json,
                    provider,
                },
        } = self;
        let text_pack = match (no_sentences, text_pack) {
            (true, _) => None,
            (false, Some(pack)) => Some(pack),
            (false, None) => config.analysis_packs().text,
        };
        cli::qa::qa_compare(
            &jsonl,
            by,
            uncertain,
            text_pack.as_deref(),
            &settings(config, provider),
            per_study,
            json,
        )
    }
}

impl LabelArgs {
    fn run(self) -> Result<(), String> {
        let LabelArgs {
            texts,
            jsonl,
            mentions,
        } = self;
        label(&texts, jsonl.as_deref(), mentions)
    }
}

impl AnalyzeArgs {
    fn run(self, config: &Config) -> Result<(), String> {
        let AnalyzeArgs {
            study,
            json,
            overlay,
            subtraction,
        } = self;
        cli::study::analyze(
            config,
            &study,
            &settings(config, study.provider),
            json,
            overlay.as_deref(),
            subtraction.as_deref(),
        )
    }
}

impl DraftArgs {
    fn run(self, config: &Config) -> Result<(), String> {
        let DraftArgs {
            study,
            writer,
            json,
        } = self;
        cli::study::draft(
            config,
            &study,
            &writer,
            &settings(config, study.provider),
            json,
        )
    }
}

impl ExportArgs {
    fn run(self, config: &Config) -> Result<(), String> {
        let ExportArgs {
            format,
            study,
            writer,
            output,
            final_read,
            radiologist,
            organization,
        } = self;
        let signer = final_read.map(|text| cli::study::Signer {
            text,
            radiologist: radiologist.unwrap_or_default(),
            organization: organization.unwrap_or_else(|| config.service.organization.clone()),
        });
        cli::study::export(
            config,
            format,
            &study,
            &writer,
            &settings(config, study.provider),
            &output,
            signer.as_ref(),
        )
    }
}

impl PredictArgs {
    fn run(self, config: &Config) -> Result<(), String> {
        let PredictArgs {
            files,
            pack,
            provider,
            masks,
        } = self;
        predict(&pack, &settings(config, provider), &files, masks.as_deref())
    }
}

impl ReportArgs {
    fn run(self, config: &Config) -> Result<(), String> {
        let ReportArgs {
            file,
            indication,
            beams,
            prior,
            prior_report,
            pack,
            provider,
        } = self;
        let prior = prior.map(|image| (image, prior_report));
        report(
            &pack,
            &settings(config, provider),
            &file,
            &indication,
            prior.as_ref(),
            beams,
        )
    }
}

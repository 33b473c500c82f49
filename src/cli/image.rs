//! `radassist inspect`, `decode` and `render`: a DICOM file's header, its canonical pixels as
//! .npy (a folder at a time, in parallel), and a display PNG with the VOI of one's choice.

use indicatif::{ProgressBar, ProgressStyle};
use radassist::dicom::{self, DecodeLimits};
use radassist::imaging::display::{choose_voi, display_values, VoiChoice};
use radassist::imaging::output::{write_npy, write_png, PngDepth};
use radassist::imaging::resize::{fit_longest_side, resize};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The PNG's sample depth.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Bits {
    #[value(name = "8")]
    Eight,
    #[value(name = "16")]
    Sixteen,
}

/// How the pixels are encoded, and their spacing.
fn print_pixels(header: &radassist::dicom::ImageHeader) {
    let p = &header.pixels;
    let g = &header.geometry;
    println!(
        "transfer syntax      {} ({})",
        p.transfer_syntax, p.transfer_syntax_uid
    );
    println!("photometric          {:?}", p.photometric_interpretation);
    println!("rows x columns       {} x {}", p.rows, p.columns);
    println!(
        "bits                 allocated {}, stored {}, high bit {}, {}",
        p.bits_allocated,
        p.bits_stored,
        p.high_bit,
        if p.signed { "signed" } else { "unsigned" }
    );
    match g.patient_spacing {
        Some(s) => println!(
            "spacing (patient)    {:.4} x {:.4} mm, from {:?}",
            s.row_mm, s.column_mm, g.spacing_source
        ),
        None => println!("spacing (patient)    none: measurements are uncalibrated"),
    }
    if let Some(s) = g.detector_spacing {
        println!(
            "spacing (detector)   {:.4} x {:.4} mm",
            s.row_mm, s.column_mm
        );
    }
}

pub fn inspect(file: &Path, json: bool) -> Result<(), String> {
    let header = dicom::read_header(file, &DecodeLimits::default()).map_err(|e| e.to_string())?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&header).expect("headers serialise")
        );
        return Ok(());
    }
    print_pixels(&header);
    let a = &header.acquisition;
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!(
        "modality             {}{}",
        or_dash(&a.modality),
        if a.secondary_capture {
            " (secondary capture)"
        } else {
            ""
        }
    );
    println!(
        "view                 {:?}{}",
        a.view,
        a.view_source
            .map(|s| format!(" from {s}"))
            .unwrap_or_default()
    );
    println!("laterality           {}", or_dash(&a.laterality));
    println!("body part            {}", or_dash(&a.body_part));
    match &a.patient_age {
        Some(age) => println!(
            "age                  {:.1} years, from {}",
            age.years, age.source
        ),
        None => println!("age                  -"),
    }
    println!(
        "modality LUT         {}",
        serde_json::to_string(&header.modality_lut).expect("serialises")
    );
    println!(
        "windows              {}",
        serde_json::to_string(&header.display.windows).expect("serialises")
    );
    let i = &header.identity;
    println!(
        "study                {} {} {}",
        or_dash(&i.study_instance_uid),
        or_dash(&i.study_date),
        or_dash(&i.study_time)
    );
    println!("series               {}", or_dash(&i.series_instance_uid));
    println!("instance             {}", or_dash(&i.sop_instance_uid));
    for warning in &header.warnings {
        println!("warning              {warning}");
    }
    Ok(())
}

pub fn decode(input: &Path, output: &Path, jobs: Option<usize>) -> Result<(), String> {
    let limits = DecodeLimits::default();
    if !input.is_dir() {
        let radiograph =
            dicom::read_file(input, &limits).map_err(|e| format!("{}: {e}", input.display()))?;
        return write_npy(output, radiograph.values.view())
            .map_err(|e| format!("{}: {e}", output.display()));
    }
    let files = list_files(input).map_err(|e| format!("{}: {e}", input.display()))?;
    std::fs::create_dir_all(output).map_err(|e| format!("{}: {e}", output.display()))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.unwrap_or(0))
        .build()
        .map_err(|e| e.to_string())?;
    let progress = ProgressBar::new(files.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} files, {elapsed} {msg}")
            .expect("valid template"),
    );
    let failures: Vec<(PathBuf, String)> = pool.install(|| {
        files
            .par_iter()
            .filter_map(|file| {
                let relative = file.strip_prefix(input).unwrap_or(file);
                let target = npy_path_for(&output.join(relative));
                let outcome = dicom::read_file(file, &limits)
                    .map_err(|e| e.to_string())
                    .and_then(|r| {
                        if let Some(parent) = target.parent() {
                            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                        }
                        write_npy(&target, r.values.view())
                            .map_err(|e| format!("writing {}: {e}", target.display()))
                    });
                progress.inc(1);
                outcome.err().map(|reason| (file.clone(), reason))
            })
            .collect()
    });
    progress.finish();
    let decoded = files.len() - failures.len();
    eprintln!(
        "decoded {decoded} of {} files into {}",
        files.len(),
        output.display()
    );
    if failures.is_empty() {
        return Ok(());
    }
    for (file, reason) in &failures {
        eprintln!("  failed {}: {reason}", file.display());
    }
    Err(format!(
        "{} of {} files could not be decoded",
        failures.len(),
        files.len()
    ))
}

/// OUT/a.dcm -> OUT/a.npy, but OUT/1.2.840.99 (files named by UID) -> OUT/1.2.840.99.npy, so
/// that names differing only after their last dot do not collide.
pub fn npy_path_for(target: &Path) -> PathBuf {
    let is_dicom_extension = target
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("dcm") || e.eq_ignore_ascii_case("dicom"));
    if is_dicom_extension {
        target.with_extension("npy")
    } else {
        let mut name = target.as_os_str().to_owned();
        name.push(".npy");
        PathBuf::from(name)
    }
}

/// Every regular file under `dir`, sorted, skipping hidden entries.
pub fn list_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

pub fn render(
    file: &Path,
    output: &Path,
    size: Option<usize>,
    bits: Bits,
    choice: &VoiChoice,
) -> Result<(), String> {
    let radiograph = dicom::read_file(file, &DecodeLimits::default())
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let voi = choose_voi(&radiograph, choice).map_err(|e| e.to_string())?;
    let mut display = display_values(&radiograph, &voi);
    if let Some(longest) = size {
        if longest == 0 {
            return Err("--size must be at least 1".into());
        }
        let (rows, columns) = fit_longest_side(radiograph.rows(), radiograph.columns(), longest);
        display = resize(display.view(), rows, columns);
    }
    let depth = match bits {
        Bits::Eight => PngDepth::Eight,
        Bits::Sixteen => PngDepth::Sixteen,
    };
    write_png(output, display.view(), depth).map_err(|e| format!("{}: {e}", output.display()))
}

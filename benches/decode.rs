//! Decoding and rendering benchmark over sample-dicom/, one thread, times per file.
//!
//! For every decodable sample it measures, as the median of repeated runs on bytes already in
//! memory: `decode` (parse, structure check, header, codec, stored values, Modality LUT),
//! `codec` (the codec call alone on the parsed instance: what any decoder must spend), and
//! `render` (VOI, inversion, 8-bit quantisation of the decoded radiograph). It prints one JSON
//! object per file; scripts/bench-decode runs it beside the pydicom equivalent and makes the table.
//!
//!     cargo bench --bench decode [-- FILTER]

use radassist::dicom::{self, DecodeLimits, ImageHeader};
use radassist::imaging::display::{choose_voi, display_values, VoiChoice};
use radassist::imaging::output::{quantise, PngDepth};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Median seconds of `run`, repeated for at least `budget` and at least 5 times.
fn median_seconds(budget: Duration, mut run: impl FnMut()) -> f64 {
    run(); // warm-up
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < 5 || (started.elapsed() < budget && times.len() < 1000) {
        let t = Instant::now();
        run();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn samples(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("sample-dicom")
        .flatten()
        .flat_map(|e| {
            if e.path().is_dir() {
                samples(&e.path())
            } else {
                vec![e.path()]
            }
        })
        .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
        .collect();
    files.sort();
    files
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-dicom");
    let limits = DecodeLimits::default();
    let budget = Duration::from_millis(400);
    for file in samples(&root) {
        let name = file.strip_prefix(&root).unwrap().display().to_string();
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap();
        let Ok(radiograph) = dicom::read_bytes(&bytes, &limits) else {
            continue;
        };
        let instance = dicom::parse_dicom(&bytes).unwrap();
        let header = ImageHeader::from_instance(&instance).unwrap();
        let decode = median_seconds(budget, || {
            black_box(dicom::read_bytes(black_box(&bytes), &limits).unwrap());
        });
        let codec = median_seconds(budget, || {
            black_box(dicom::decode_frame_bytes(black_box(&instance), &header, &limits).unwrap());
        });
        let render = median_seconds(budget, || {
            let voi = choose_voi(&radiograph, &VoiChoice::Default).unwrap();
            black_box(quantise(
                display_values(&radiograph, &voi).view(),
                PngDepth::Eight,
            ));
        });
        println!(
            "{}",
            serde_json::json!({
                "file": name,
                "transfer_syntax": header.pixels.transfer_syntax,
                "transfer_syntax_uid": header.pixels.transfer_syntax_uid,
                "pixels": radiograph.values.len(),
                "decode_s": decode,
                "codec_s": codec,
                "render_s": render,
            })
        );
    }
}

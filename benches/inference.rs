//! Inference benchmark over the shipped packs, one process, CPU provider.
//!
//! For each image pack: median time at batch 1 of the model call alone (the prepared tensor in,
//! the task's output out) and of the whole request (display, fitting and normalisation from the
//! decoded radiograph, then the call). For MiniLM: tokenising, the call and pooling, per
//! sentence. Greedy generation with and without the KV cache. Then the batching worker on the
//! findings pack: requests per second with 1, 4 and 16 concurrent callers, unbatched
//! (max_batch 1) and batched (max_batch 16, no added delay).
//! Writes each image pack's prepared tensor to OUT/<pack>.input.npy so that
//! scripts/bench_inference.py times Python onnxruntime on the very same input.
//!
//!     cargo bench --bench inference -- OUT_DIR

use radassist::dicom::{read_file, DecodeLimits};
use radassist::imaging::output::write_npy;
use radassist::inference::batcher::{Batcher, BatchingConfig};
use radassist::inference::report::{ReportModel, ReportRequest};
use radassist::inference::session::{Provider, SessionSettings};
use radassist::inference::text::TextEmbedder;
use radassist::inference::vision::ImageModel;
use radassist::inference::ModelPack;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn median_seconds(mut run: impl FnMut()) -> f64 {
    run();
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < 10 || (started.elapsed() < Duration::from_millis(500) && times.len() < 2000)
    {
        let t = Instant::now();
        run();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let out = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| "out/bench".into());
    std::fs::create_dir_all(&out).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // One intra-op thread: the comparison is per core, and batching gains are not hidden by threads.
    let settings = SessionSettings {
        provider: Provider::Cpu,
        intra_threads: 1,
        ..SessionSettings::default()
    };
    let radiograph = read_file(
        &root.join("sample-dicom/siim_chest_pa_jpeg_baseline.dcm"),
        &DecodeLimits::default(),
    )
    .unwrap();

    for pack in ["test-findings", "test-embedding", "test-landmarks"] {
        let mut model =
            ImageModel::new(ModelPack::load(&root.join("models").join(pack), &settings).unwrap())
                .unwrap();
        let prepared = model.prepare(&[&radiograph]);
        let tensor = &prepared[0].tensor;
        let (c, h, w) = tensor.dim();
        write_npy(
            &out.join(format!("{pack}.input.npy")),
            tensor.view().into_shape_with_order((c * h, w)).unwrap(),
        )
        .unwrap();
        let task = model.pack().manifest.task;
        let call = |model: &mut ImageModel,
                    prepared: &[radassist::inference::preprocess::Prepared]| {
            match task {
                radassist::inference::manifest::Task::Findings => {
                    black_box(model.findings_of(prepared).unwrap());
                }
                radassist::inference::manifest::Task::Landmarks => {
                    black_box(model.landmarks_of(prepared).unwrap());
                }
                _ => {
                    black_box(model.embeddings_of(prepared).unwrap());
                }
            }
        };
        let model_s = median_seconds(|| call(&mut model, &prepared));
        let request_s = median_seconds(|| {
            let prepared = model.prepare(&[&radiograph]);
            call(&mut model, &prepared)
        });
        println!(
            "{}",
            serde_json::json!({ "pack": pack, "input_shape": [1, c, h, w], "model_s": model_s, "request_s": request_s })
        );
    }

    let mut embedder =
        TextEmbedder::new(ModelPack::load(&root.join("models/minilm"), &settings).unwrap())
            .unwrap();
    let sentence = "Interval increase in bilateral perihilar opacities, likely pulmonary edema.";
    let text_s = median_seconds(|| {
        black_box(embedder.embed(&[sentence]).unwrap());
    });
    println!(
        "{}",
        serde_json::json!({ "pack": "minilm", "sentence": sentence, "request_s": text_s })
    );

    // Generation: greedy tokens per second with and without the KV cache (a prompt the test
    // model does not stop early on).
    let mut reporter = ReportModel::load(&root.join("models/test-report"), &settings).unwrap();
    let chest = read_file(
        &root.join("sample-dicom/orthanc_Issue44_Monochrome1-Jpeg.dcm"),
        &DecodeLimits::default(),
    )
    .unwrap();
    let request = [ReportRequest {
        image: &chest,
        indication: "line placement",
        prior: None,
    }];
    for use_cache in [true, false] {
        let tokens = reporter.generate_greedy(&request, use_cache).unwrap()[0]
            .token_ids
            .len() as f64;
        let seconds = median_seconds(|| {
            black_box(reporter.generate_greedy(&request, use_cache).unwrap());
        });
        println!(
            "{}",
            serde_json::json!({ "generation": { "kv_cache": use_cache, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds } })
        );
    }

    // Batching: callers submit prepared requests to one worker for two seconds each.
    for max_batch in [1usize, 16] {
        for callers in [1usize, 4, 16] {
            let mut model = ImageModel::new(
                ModelPack::load(&root.join("models/test-findings"), &settings).unwrap(),
            )
            .unwrap();
            let prepared = model.prepare(&[&radiograph]).remove(0);
            let config = BatchingConfig {
                max_batch,
                max_delay: Duration::ZERO,
                queue_capacity: 1024,
            };
            let batcher = Batcher::spawn("findings", config, move |requests: Vec<_>| {
                model.findings_of(&requests)
            });
            let deadline = Instant::now() + Duration::from_secs(2);
            let threads: Vec<_> = (0..callers)
                .map(|_| {
                    let (batcher, prepared) = (batcher.clone(), prepared.clone());
                    std::thread::spawn(move || {
                        let mut done = 0u64;
                        while Instant::now() < deadline {
                            black_box(batcher.submit(prepared.clone()).unwrap());
                            done += 1;
                        }
                        done
                    })
                })
                .collect();
            let started = Instant::now();
            let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
            let seconds = started.elapsed().as_secs_f64();
            let metrics = batcher.metrics().snapshot();
            println!(
                "{}",
                serde_json::json!({
                    "batching": { "max_batch": max_batch, "callers": callers, "requests_per_s": total as f64 / seconds,
                                  "mean_batch": metrics.mean_batch, "mean_queue_ms": metrics.mean_queue_ms }
                })
            );
        }
    }
}

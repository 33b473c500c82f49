//! Soak: 16 pushers for 10 minutes against one release server while its workers draft the
//! studies, the server's resident memory sampled every second. Prints the samples' trend after
//! warm-up (a least-squares slope in MB per minute, and the first and last minutes' means),
//! what was refused and why, and how many studies were drafted. Run (after scripts/setup):
//!
//!     cargo bench --bench soak            # 600 s
//!     cargo bench --bench soak -- 120     # a shorter run
//!
//! Each pusher sends a new study (the sample film re-identified, 2 MB, its own patient) and
//! completes it, then sends the previous instance again (a duplicate), every 1.5 s: about 21 MB/s
//! in all, so 10 minutes store about 13 GB under target/ (removed at the end). The queue grows
//! when the workers cannot keep up: that is the database's job, not memory's.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{chunks, metric, rewritten, uid_for, with_token, Server, PACS_TOKEN};
use dicom_dictionary_std::tags;
use radassist::grpc::proto::ingest_service_client::IngestServiceClient;
use radassist::grpc::proto::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PUSHERS: usize = 16;
const WARM_UP_SECONDS: usize = 60;

fn resident_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[derive(Default)]
struct Counts {
    stored: AtomicU64,
    duplicates: AtomicU64,
    refused: AtomicU64,
    other_errors: AtomicU64,
}

fn instance(pusher: usize, n: u64) -> Vec<u8> {
    let label = format!("soak-{pusher}-{n}");
    rewritten(
        "sample-dicom/derived/siim_chest_pa_devices.dcm",
        &[
            (tags::SOP_INSTANCE_UID, uid_for(&format!("{label}/sop"))),
            (tags::STUDY_INSTANCE_UID, uid_for(&format!("{label}/study"))),
            (tags::PATIENT_ID, format!("SOAK-{pusher}-{n}")),
        ],
    )
}

async fn push(
    channel: tonic::transport::Channel,
    pusher: usize,
    until: Instant,
    counts: Arc<Counts>,
) {
    let mut ingest = IngestServiceClient::new(channel);
    let mut tick = tokio::time::interval(Duration::from_millis(1500));
    let mut previous: Option<Vec<u8>> = None;
    let mut n = 0u64;
    while Instant::now() < until {
        tick.tick().await;
        let bytes = instance(pusher, n);
        n += 1;
        let mut messages = chunks(0, &bytes);
        if let Some(previous) = &previous {
            messages.extend(chunks(1, previous));
        }
        match ingest
            .store_instances(with_token(tokio_stream::iter(messages), PACS_TOKEN))
            .await
        {
            Ok(response) => {
                let results = response.into_inner().results;
                for r in &results {
                    let counter = match instance_result::Outcome::try_from(r.outcome) {
                        Ok(instance_result::Outcome::Stored) => &counts.stored,
                        Ok(instance_result::Outcome::Duplicate) => &counts.duplicates,
                        _ => &counts.other_errors,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                let _ = ingest
                    .complete_study(with_token(
                        CompleteStudyRequest {
                            name: results[0].study.clone(),
                        },
                        PACS_TOKEN,
                    ))
                    .await;
            }
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                counts.refused.fetch_add(1, Ordering::Relaxed);
                eprintln!("refused: {}", status.message());
            }
            Err(status) => {
                counts.other_errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("error: {status:?}");
            }
        }
        previous = Some(bytes);
    }
}

/// Least-squares slope of `samples` (one a second), per minute.
fn slope_per_minute(samples: &[f64]) -> f64 {
    let n = samples.len() as f64;
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = samples.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in samples.iter().enumerate() {
        let dx = i as f64 - mean_x;
        sxy += dx * (y - mean_y);
        sxx += dx * dx;
    }
    sxy / sxx * 60.0
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(600);
    let dir = tempfile::tempdir_in(common::root().join("target")).unwrap();
    let server = Server::start_with(dir.path(), "analysis_workers = 2\n");
    let channel = server.channel().await;
    // The models loaded before the clock starts.
    common::wait_for_models(&channel).await;
    let pid = server.child.id();
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let pushers: Vec<_> = (0..PUSHERS)
        .map(|p| tokio::spawn(push(channel.clone(), p, until, counts.clone())))
        .collect();
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while Instant::now() < until {
        tick.tick().await;
        samples.push(resident_mb(pid));
        if samples.len() % 60 == 0 {
            eprintln!(
                "{:>4} s: resident {:.0} MB, {} stored, {} drafted, queue {}",
                samples.len(),
                samples.last().unwrap(),
                counts.stored.load(Ordering::Relaxed),
                metric(&server.metrics, "radassist_jobs_done_total"),
                metric(&server.metrics, "radassist_job_queue_depth"),
            );
        }
    }
    for p in pushers {
        p.await.unwrap();
    }
    let warm = &samples[WARM_UP_SECONDS.min(samples.len() / 2)..];
    let minute = 60.min(warm.len());
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let peak = warm.iter().cloned().fold(0.0, f64::max);
    println!(
        "soak {seconds} s, {PUSHERS} pushers: resident memory after {WARM_UP_SECONDS} s warm-up: first minute {:.0} MB, last minute {:.0} MB, peak {peak:.0} MB, trend {:+.2} MB/min ({} samples)",
        mean(&warm[..minute]),
        mean(&warm[warm.len() - minute..]),
        slope_per_minute(warm),
        warm.len(),
    );
    println!(
        "stored {}, duplicates {}, refused (RESOURCE_EXHAUSTED) {}, other errors {}; drafted {} ({} failed), queue at the end {}",
        counts.stored.load(Ordering::Relaxed),
        counts.duplicates.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
        counts.other_errors.load(Ordering::Relaxed),
        metric(&server.metrics, "radassist_jobs_done_total"),
        metric(&server.metrics, "radassist_jobs_failed_total"),
        metric(&server.metrics, "radassist_job_queue_depth"),
    );
    drop(server);
}

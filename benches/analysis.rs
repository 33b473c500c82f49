//! Analysis throughput of the service: studies per minute and "study complete" -> "draft
//! ready" p50/p99 with 1, 2 and 4 analysis workers, with the structured renderer and with the
//! test report pack, and the batch sizes each model saw. Run (after scripts/setup):
//!
//!     cargo bench --bench analysis                  # CPU
//!     RADASSIST_PROVIDER=cuda scripts/with-cuda cargo bench --features cuda --bench analysis
//!
//! Each configuration gets a fresh release server (`radassist serve`, store under target/);
//! STUDIES studies of different patients (the sample film re-identified, no priors) are stored
//! first, then all completed at once, as a PACS that routes a batch of studies does. The
//! packs are the shipped test packs: the figures are the service's overhead and batching, not
//! a real model's speed.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{complete_and_wait, rewritten, uid_for, with_token, Server, PACS_TOKEN};
use dicom_dictionary_std::tags;
use radassist::grpc::proto::ingest_service_client::IngestServiceClient;
use radassist::grpc::proto::*;
use std::collections::BTreeMap;
use std::time::Instant;

const STUDIES: usize = 24;
const SAMPLE: &str = "sample-dicom/derived/siim_chest_pa_devices.dcm";

/// Per model: (batches, mean batch size), from the batch-size histogram's count and sum.
fn batch_sizes(text: &str) -> BTreeMap<String, (f64, f64)> {
    let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("radassist_model_batch_size_") else {
            continue;
        };
        let Some((kind, tail)) = rest.split_once('{') else {
            continue;
        };
        let model = tail
            .split("model=\"")
            .nth(1)
            .and_then(|m| m.split('"').next())
            .unwrap_or_default()
            .to_string();
        let value: f64 = tail.rsplit(' ').next().unwrap().parse().unwrap_or(0.0);
        let entry = sums.entry(model).or_default();
        match kind {
            "count" => entry.0 = value,
            "sum" => entry.1 = value,
            _ => {}
        }
    }
    sums.into_iter()
        .map(|(m, (count, sum))| (m, (count, if count > 0.0 { sum / count } else { 0.0 })))
        .collect()
}

async fn run(writer: &str, workers: usize) {
    let dir = tempfile::tempdir_in(common::root().join("target")).unwrap();
    let sections = match writer {
        "structured" => String::new(),
        pack => format!("[analysis]\nreport = \"{pack}\"\n"),
    };
    let server = Server::start_configured(
        dir.path(),
        &format!("analysis_workers = {workers}\n"),
        &sections,
        &[],
    );
    let channel = server.channel().await;
    let packs = common::wait_for_models(&channel).await;
    let provider = packs
        .first()
        .map(|p| p.provider.clone())
        .unwrap_or_default();
    let mut studies = Vec::new();
    for i in 0..STUDIES {
        let bytes = rewritten(
            SAMPLE,
            &[
                (
                    tags::SOP_INSTANCE_UID,
                    uid_for(&format!("bench-{workers}-{i}/sop")),
                ),
                (
                    tags::STUDY_INSTANCE_UID,
                    uid_for(&format!("bench-{workers}-{i}/study")),
                ),
                (tags::PATIENT_ID, format!("BENCH-{i}")),
            ],
        );
        let result = IngestServiceClient::new(channel.clone())
            .store_instances(with_token(
                tokio_stream::iter(common::chunks(0, &bytes)),
                PACS_TOKEN,
            ))
            .await
            .unwrap()
            .into_inner();
        studies.push(result.results[0].study.clone());
    }
    let started = Instant::now();
    let tasks: Vec<_> = studies
        .into_iter()
        .map(|study| {
            let channel = channel.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let state = complete_and_wait(&channel, &study).await;
                assert_eq!(state, study::State::DraftReady, "{study}");
                t.elapsed().as_secs_f64() * 1000.0
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.push(task.await.unwrap());
    }
    let wall = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    let batches = batch_sizes(&common::http_get(&server.metrics, "/metrics"));
    let batches = batches
        .iter()
        .map(|(m, (n, mean))| format!("{m}: {n:.0} batches, mean {mean:.2}"))
        .collect::<Vec<_>>()
        .join("; ");
    println!(
        "{writer:<11} {workers} worker(s) [{provider}]: {:.1} studies/min, complete -> draft p50 {:.0} ms, p99 {:.0} ms ({STUDIES} studies at once) | {batches}",
        STUDIES as f64 / wall * 60.0,
        pick(0.5),
        pick(0.99),
    );
}

#[tokio::main]
async fn main() {
    let only: Option<usize> = std::env::args().skip(1).find_map(|a| a.parse().ok());
    for writer in ["structured", "test-report"] {
        for workers in [1, 2, 4] {
            if only.is_none_or(|n| n == workers) {
                run(writer, workers).await;
            }
        }
    }
}

//! Ingest throughput over loopback against plain fsynced file writes of the same bytes on the
//! same disk, with 1 and 16 concurrent streams; and the time from "study complete" to "draft
//! ready" with the test packs. Run (after scripts/setup):
//!
//!     cargo bench --bench ingest
//!
//! The server is the release binary (`radassist serve`) with its data in a temporary folder
//! under target/; instances are the sample film re-identified (new SOP Instance UIDs, 2 MB).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{chunks, complete_and_wait, reidentified_instance, with_token, Server, PACS_TOKEN};
use radassist::service::proto::ingest_service_client::IngestServiceClient;
use radassist::service::proto::*;
use std::io::Write;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const INSTANCES: usize = 64;

/// Plain fsynced writes (file and folder), as the blob store does them, in `streams` threads.
fn plain_writes(dir: &std::path::Path, data: &[Vec<u8>], streams: usize) -> Duration {
    std::fs::create_dir_all(dir).unwrap();
    let started = Instant::now();
    std::thread::scope(|s| {
        for (t, part) in data.chunks(data.len().div_ceil(streams)).enumerate() {
            s.spawn(move || {
                for (i, bytes) in part.iter().enumerate() {
                    let path = dir.join(format!("{t}-{i}"));
                    let mut f = std::fs::File::create(&path).unwrap();
                    f.write_all(bytes).unwrap();
                    f.sync_all().unwrap();
                    std::fs::File::open(dir).unwrap().sync_all().unwrap();
                }
            });
        }
    });
    started.elapsed()
}

/// Pushes `data` in `streams` concurrent streams, each on its own connection (as separate
/// senders would).
async fn push(url: &str, data: &[Vec<u8>], streams: usize) -> Duration {
    let mut channels = Vec::new();
    for _ in 0..streams {
        channels.push(
            Channel::from_shared(url.to_string())
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (part, channel) in data.chunks(data.len().div_ceil(streams)).zip(&channels) {
        let messages: Vec<StoreInstancesRequest> = part
            .iter()
            .enumerate()
            .flat_map(|(i, b)| chunks(i as u32, b))
            .collect();
        let mut client =
            IngestServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20);
        tasks.push(tokio::spawn(async move {
            let results = client
                .store_instances(with_token(tokio_stream::iter(messages), PACS_TOKEN))
                .await
                .unwrap()
                .into_inner()
                .results;
            assert!(results
                .iter()
                .all(|r| r.outcome == instance_result::Outcome::Stored as i32));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir_in(common::root().join("target")).unwrap();
    let server = Server::start(dir.path());
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mb = |data: &[Vec<u8>]| data.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    // Three rounds each (new instances every time); the median of each side is reported.
    for streams in [1, 16] {
        let (mut plain_times, mut grpc_times) = (Vec::new(), Vec::new());
        let mut total = 0.0;
        for round in 0..3 {
            let data: Vec<Vec<u8>> = (0..INSTANCES)
                .map(|i| {
                    reidentified_instance(
                        &format!("bench-{streams}-{round}-{i}"),
                        &format!("bench-study-{streams}-{round}-{}", i / 4),
                    )
                })
                .collect();
            total = mb(&data);
            plain_times.push(
                plain_writes(
                    &dir.path().join(format!("plain-{streams}-{round}")),
                    &data,
                    streams,
                )
                .as_secs_f64(),
            );
            grpc_times.push(push(&server.url(), &data, streams).await.as_secs_f64());
        }
        plain_times.sort_by(f64::total_cmp);
        grpc_times.sort_by(f64::total_cmp);
        let (plain, grpc) = (plain_times[1], grpc_times[1]);
        println!(
            "ingest, {streams:>2} stream(s): {:.1} MB/s, {:.1} instances/s; plain fsynced writes {:.1} MB/s; ratio {:.0} % (median of 3)",
            total / grpc,
            INSTANCES as f64 / grpc,
            total / plain,
            100.0 * plain / grpc
        );
    }
    // "Study complete" to "draft ready", one study at a time.
    let mut ingest = IngestServiceClient::new(channel.clone());
    let mut latencies = Vec::new();
    for i in 0..20 {
        let bytes = reidentified_instance(&format!("latency-{i}"), &format!("latency-study-{i}"));
        let r = ingest
            .store_instances(with_token(
                tokio_stream::iter(chunks(0, &bytes)),
                PACS_TOKEN,
            ))
            .await
            .unwrap()
            .into_inner();
        let study = r.results[0].study.clone();
        let started = Instant::now();
        assert_eq!(
            complete_and_wait(&channel, &study).await,
            study::State::DraftReady
        );
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    println!("study complete -> draft ready (test packs, CPU): p50 {:.0} ms, p99 {:.0} ms over {} studies", pick(0.5), pick(0.99), latencies.len());
    drop(server);
}

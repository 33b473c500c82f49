//! Ingest throughput over loopback against plain fsynced file writes of the same bytes on the
//! same disk, with 1 and 16 concurrent streams; and the time from "study complete" to "draft
//! ready" with the test packs. Run (after scripts/setup):
//!
//!     cargo bench --bench ingest          # 1 and 16 streams, then the latency
//!     cargo bench --bench ingest -- 16    # only 16 streams
//!
//! Each side is also compared with direct-I/O fsynced writes of the same bytes (the blob store
//! writes with direct I/O where the filesystem allows), and the server's and this client's CPU
//! time per GB are printed: client and server share the machine's cores.
//!
//! The server is the release binary (`radassist serve`) with its data in a temporary folder
//! under target/; instances are the sample film re-identified (new SOP Instance UIDs, 2 MB).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{
    chunks, complete_and_wait, redated_instance, reidentified_instance, with_token, Server,
    PACS_TOKEN,
};
use radassist::grpc::proto::ingest_service_client::IngestServiceClient;
use radassist::grpc::proto::*;
use std::io::Write;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Instances per round (2 MB each): enough that one round takes seconds, not a fraction of one
/// (shorter rounds mostly measure how the virtual disk's cache happens to stand).
const INSTANCES: usize = 192;
const ROUNDS: usize = 5;

/// How a baseline writes each file: as a plain program would (buffered, then fsync), or
/// with direct I/O (O_DIRECT, then fsync: what the blob store does where it can).
#[derive(Clone, Copy, PartialEq)]
enum Baseline {
    Plain,
    Direct,
}

/// A copy of an instance that starts on a 4 KiB boundary and is zero-padded to whole 4 KiB
/// blocks, as direct I/O needs.
struct AlignedCopy {
    buffer: Vec<u8>,
    start: usize,
    length: usize,
}

impl AlignedCopy {
    fn new(bytes: &[u8]) -> AlignedCopy {
        let mut buffer = vec![0; bytes.len().next_multiple_of(4096) + 4096];
        let start = buffer.as_ptr().align_offset(4096);
        buffer[start..start + bytes.len()].copy_from_slice(bytes);
        AlignedCopy {
            buffer,
            start,
            length: bytes.len(),
        }
    }

    fn padded(&self) -> &[u8] {
        &self.buffer[self.start..self.start + self.length.next_multiple_of(4096)]
    }
}

/// Fsynced writes of each instance to its own new file (then the folder fsynced), in `streams`
/// threads: the disk's side of the comparison.
fn file_writes(dir: &std::path::Path, data: &[Vec<u8>], streams: usize, how: Baseline) -> Duration {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).unwrap();
    // Aligned copies are made before the clock starts.
    let aligned: Vec<AlignedCopy> = match how {
        Baseline::Direct => data.iter().map(|b| AlignedCopy::new(b)).collect(),
        Baseline::Plain => Vec::new(),
    };
    let per_thread = data.len().div_ceil(streams);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..streams {
            let aligned = &aligned;
            s.spawn(move || {
                for i in t * per_thread..((t + 1) * per_thread).min(data.len()) {
                    let path = dir.join(format!("{i}"));
                    let mut options = std::fs::OpenOptions::new();
                    options.write(true).create_new(true);
                    if how == Baseline::Direct {
                        options.custom_flags(libc::O_DIRECT);
                    }
                    let mut f = options.open(&path).unwrap();
                    match how {
                        Baseline::Plain => f.write_all(&data[i]).unwrap(),
                        Baseline::Direct => {
                            f.write_all(aligned[i].padded()).unwrap();
                            f.set_len(aligned[i].length as u64).unwrap();
                        }
                    }
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

/// CPU seconds (user + system) a process has used so far, from /proc.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A server on a new store under target/, its models loaded.
async fn fresh_server() -> (tempfile::TempDir, Server, Channel) {
    let dir = tempfile::tempdir_in(common::root().join("target")).unwrap();
    let server = Server::start(dir.path());
    let channel = server.channel().await;
    common::wait_for_models(&channel).await;
    (dir, server, channel)
}

#[tokio::main]
async fn main() {
    let (dir, server, channel) = fresh_server().await;
    let mb = |data: &[Vec<u8>]| data.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    // `cargo bench --bench ingest -- 16` measures only 16 streams (and skips the latency part);
    // with no argument, 1 and 16 streams and the latency.
    let only: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let stream_counts = if only.is_empty() {
        vec![1, 16]
    } else {
        only.clone()
    };
    // ROUNDS rounds each, new instances every time; in each round the two baselines and the
    // push take turns to go first (so none always meets the disk just after another), and each
    // round's push is compared with that round's baselines (the virtual disk's speed drifts
    // from minute to minute far more than within a round).
    for streams in stream_counts {
        let (mut pushed, mut instances) = (Vec::new(), Vec::new());
        let (mut plain, mut direct) = (Vec::new(), Vec::new());
        let (mut to_plain, mut to_direct) = (Vec::new(), Vec::new());
        let (mut server_cpu, mut client_cpu, mut bytes) = (0.0, 0.0, 0.0);
        let server_pid = server.child.id().to_string();
        for round in 0..ROUNDS {
            let data: Vec<Vec<u8>> = (0..INSTANCES)
                .map(|i| {
                    reidentified_instance(
                        &format!("bench-{streams}-{round}-{i}"),
                        &format!("bench-study-{streams}-{round}-{}", i / 4),
                    )
                })
                .collect();
            let total = mb(&data);
            let (mut plain_time, mut direct_time, mut push_time) = (None, None, None);
            for step in 0..3 {
                match (round + step) % 3 {
                    0 => {
                        let folder = dir.path().join(format!("plain-{streams}-{round}"));
                        plain_time = Some(file_writes(&folder, &data, streams, Baseline::Plain));
                    }
                    1 => {
                        let folder = dir.path().join(format!("direct-{streams}-{round}"));
                        direct_time = Some(file_writes(&folder, &data, streams, Baseline::Direct));
                    }
                    _ => {
                        let (server_before, client_before) =
                            (cpu_seconds(&server_pid), cpu_seconds("self"));
                        push_time = Some(push(&server.url(), &data, streams).await);
                        server_cpu += cpu_seconds(&server_pid) - server_before;
                        client_cpu += cpu_seconds("self") - client_before;
                        bytes += total;
                    }
                }
            }
            let rate = |time: Option<Duration>| total / time.unwrap().as_secs_f64();
            let (p, d, g) = (rate(plain_time), rate(direct_time), rate(push_time));
            pushed.push(g);
            instances.push(INSTANCES as f64 * g / total);
            plain.push(p);
            direct.push(d);
            to_plain.push(100.0 * g / p);
            to_direct.push(100.0 * g / d);
        }
        let range = |values: &[f64]| {
            let (low, high) = values
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
            format!("{low:.0}-{high:.0} %")
        };
        println!(
            "ingest, {streams:>2} stream(s): {:.1} MB/s, {:.1} instances/s (medians of {ROUNDS} rounds of {INSTANCES} instances)",
            median(pushed.clone()),
            median(instances),
        );
        println!(
            "    plain fsynced writes {:.1} MB/s; ingest / plain per round: median {:.0} %, range {}",
            median(plain),
            median(to_plain.clone()),
            range(&to_plain)
        );
        println!(
            "    direct-I/O fsynced writes {:.1} MB/s; ingest / direct per round: median {:.0} %, range {}",
            median(direct),
            median(to_direct.clone()),
            range(&to_direct)
        );
        println!(
            "    CPU per GB pushed: server {:.2} s, client (this process) {:.2} s",
            server_cpu / bytes * 1e3,
            client_cpu / bytes * 1e3
        );
    }
    if !only.is_empty() {
        return;
    }
    // "Study complete" to "draft ready", one study at a time, on a fresh server: a patient
    // filmed daily. First 10 studies, each a day before the one before (so none has a prior),
    // then 20, each a day after the one before (each with the day before as its prior). (The
    // thousands of same-day copies above would make every job read them all: not a history
    // anyone has.)
    drop((channel, server, dir));
    let (_dir, server, channel) = fresh_server().await;
    let without_prior: Vec<String> = (0..10).map(|i| format!("202412{:02}", 31 - i)).collect();
    let with_prior: Vec<String> = (0..20).map(|i| format!("202501{:02}", i + 1)).collect();
    for (what, dates) in [
        ("no prior", without_prior),
        ("the day before as prior", with_prior),
    ] {
        let mut latencies = Vec::new();
        for date in &dates {
            let bytes = redated_instance(
                "sample-dicom/derived/siim_chest_pa_devices.dcm",
                &format!("latency-{date}"),
                date,
            );
            let study = IngestServiceClient::new(channel.clone())
                .store_instances(with_token(
                    tokio_stream::iter(chunks(0, &bytes)),
                    PACS_TOKEN,
                ))
                .await
                .unwrap()
                .into_inner()
                .results[0]
                .study
                .clone();
            let started = Instant::now();
            assert_eq!(
                complete_and_wait(&channel, &study).await,
                study::State::DraftReady
            );
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        latencies.sort_by(f64::total_cmp);
        let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
        println!(
            "study complete -> draft ready (test packs, CPU), {what}: p50 {:.0} ms, p99 {:.0} ms over {} studies",
            pick(0.5),
            pick(0.99),
            latencies.len()
        );
    }
    drop(server);
}

//! A thousand power cuts and a thousand kill -9s while ingest (gRPC and C-STORE), analysis,
//! signing and the outbox are all busy (the workload of `tests/power_cut.rs`, in
//! `tests/common/durability.rs`). Each round starts the release server on what the last round
//! left, checks that every instance acknowledged so far is there byte for byte, every signed
//! read is there and the catalogue is sound and agrees with the blob folder, keeps everything
//! busy, and at a random moment (0.1 to 1.6 s in) kills the server; in `cuts` rounds the
//! power-loss filesystem then drops everything not fsynced. Every 50 rounds (and at the end) the
//! queue and the outbox are left to drain and the PACS's receipts are counted: results stored
//! again after radassist had the PACS's answer to an earlier copy (the outbox forgot; must be
//! zero), results stored again after an attempt the crash cut off (storescp, a store-only PACS,
//! cannot be asked whether it has them), results never stored, studies drafted twice. Then a
//! new, empty store (which bounds memory: the
//! power-loss filesystem lives in this process). Run (after scripts/setup, as root, with
//! /dev/fuse):
//!
//!     cargo bench --bench durability                 # 1,000 cuts, then 1,000 kills
//!     cargo bench --bench durability -- cuts 100     # only cuts, 100 of them
//!     cargo bench --bench durability -- kills 50 --seed 7
//!
//! It runs itself again in mount and network namespaces of its own (storescp binds every
//! address; the mount vanishes with the run). Prints one line per round and the totals; exits
//! non-zero when anything acknowledged was lost or a result was sent twice.

#[path = "../tests/common/mod.rs"]
mod common;

use common::durability::{self, Delivery, Ledger, Losses, Random, ResultsPeer};
use common::power_loss_fs::PowerLossFs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUNDS_PER_STORE: usize = 50;
const OWN_NAMESPACES: &str = "RADASSIST_BENCH_OWN_NAMESPACES";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Crash {
    /// kill -9 and drop every write not fsynced.
    Cut,
    /// kill -9 only: what the kernel accepted survives.
    Kill,
}

#[derive(Default)]
struct Totals {
    rounds: usize,
    acknowledged: usize,
    unanswered: u64,
    signed: usize,
    losses: Losses,
    delivery: Delivery,
    uncatalogued_blobs: usize,
}

/// One store's life: `rounds` crashes of kind `crash`, then the drain and the counts.
fn one_store(
    crash: Crash,
    rounds: usize,
    first_round: usize,
    random: &mut Random,
    work: &Path,
    totals: &mut Totals,
) {
    let dir = tempfile::tempdir_in(work).unwrap();
    let (site, pacs, scratch) = (
        dir.path().join("site"),
        dir.path().join("pacs"),
        dir.path().join("scratch"),
    );
    for folder in [&site, &pacs, &scratch] {
        std::fs::create_dir(folder).unwrap();
    }
    let mut fs = (crash == Crash::Cut)
        .then(|| PowerLossFs::mount(&site).expect("mounting the power-loss filesystem"));
    let peer = ResultsPeer::start(&pacs);
    let ledger = Arc::new(Ledger::default());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for round in first_round..first_round + rounds {
        let started = Instant::now();
        let server = durability::start_server(&site, &peer);
        let losses = durability::check(&server.data, &ledger);
        totals.losses.add(losses);
        let after = Duration::from_millis(100 + random.below(1500) as u64);
        let label = format!("{crash:?}{round}");
        durability::busy_until_killed(&runtime, server, &label, &ledger, &scratch, after);
        if let Some(fs) = &mut fs {
            fs.power_cut().expect("the power cut");
        }
        totals.rounds += 1;
        println!(
            "{crash:?} {round}: at {after:?}; {} acknowledged, {} signed in this store; lost so far {:?}; round {:.1} s",
            ledger.acknowledged.lock().unwrap().len(),
            ledger.signed.lock().unwrap().len(),
            totals.losses,
            started.elapsed().as_secs_f64()
        );
    }
    let server = durability::start_server(&site, &peer);
    totals.losses.add(durability::check(&server.data, &ledger));
    let delivery = durability::settle_and_count(&server, &peer, Duration::from_secs(600));
    println!("{crash:?} store done: {delivery:?}");
    totals.delivery.add(delivery);
    totals.uncatalogued_blobs += durability::uncatalogued_blobs(&server.data);
    totals.acknowledged += ledger.acknowledged.lock().unwrap().len();
    totals.unanswered += ledger.unanswered.load(std::sync::atomic::Ordering::Relaxed);
    totals.signed += ledger.signed.lock().unwrap().len();
    server.terminate();
}

fn run(crash: Crash, rounds: usize, random: &mut Random, work: &Path) -> Totals {
    let mut totals = Totals::default();
    let mut done = 0;
    while done < rounds {
        let these = ROUNDS_PER_STORE.min(rounds - done);
        one_store(crash, these, done, random, work, &mut totals);
        done += these;
    }
    let l = totals.losses;
    let d = totals.delivery;
    println!(
        "\n{crash:?}: {} rounds; {} instances acknowledged ({} sent and not answered: the kill came first), \
         {} reads signed, {} results made for the PACS\n\
         acknowledged and lost: {}\nsigned reads lost: {}\ncatalogue unsound: {}\n\
         catalogued blobs missing or wrong: {}\nresults sent twice: {}\n\
         results sent again after an attempt the crash cut off: {}\nresults never sent: {}\n\
         studies drafted more than once: {}\nblobs left uncatalogued (never acknowledged): {}\n",
        totals.rounds,
        totals.acknowledged,
        totals.unanswered,
        totals.signed,
        d.results,
        l.acknowledged_lost,
        l.signed_reads_lost,
        l.catalogue_unsound,
        l.blobs_missing_or_wrong,
        d.sent_twice,
        d.again_after_cut_off_attempt,
        d.never_sent,
        d.drafted_twice,
        totals.uncatalogued_blobs
    );
    totals
}

/// Runs this bench again inside mount and network namespaces of its own, unless this is that run.
fn in_own_namespaces() -> bool {
    if std::env::var_os(OWN_NAMESPACES).is_some() {
        return true;
    }
    let status = std::process::Command::new("unshare")
        .args(["--mount", "--net", "sh", "-c"])
        .arg("ip link set lo up && exec \"$0\" \"$@\"")
        .arg(std::env::current_exe().unwrap())
        .args(std::env::args().skip(1))
        .env(OWN_NAMESPACES, "1")
        .status()
        .expect("unshare (util-linux) is installed by scripts/setup");
    std::process::exit(status.code().unwrap_or(1));
}

fn main() {
    if !in_own_namespaces() {
        return;
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let count = |what: &str| -> Option<usize> {
        let at = args.iter().position(|a| a == what)?;
        Some(
            args.get(at + 1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(1000),
        )
    };
    let seed = args
        .iter()
        .position(|a| a == "--seed")
        .and_then(|at| args.get(at + 1)?.parse().ok())
        .unwrap_or(0x0d00_dad5_eed1_u64);
    let (cuts, kills) = match (count("cuts"), count("kills")) {
        (None, None) => (1000, 1000),
        (cuts, kills) => (cuts.unwrap_or(0), kills.unwrap_or(0)),
    };
    println!("seed {seed}: {cuts} power cuts, {kills} kills");
    let work = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let mut random = Random(seed.max(1));
    let mut failed = false;
    for (crash, rounds) in [(Crash::Cut, cuts), (Crash::Kill, kills)] {
        if rounds == 0 {
            continue;
        }
        let totals = run(crash, rounds, &mut random, work);
        failed |= totals.losses != Losses::default()
            || totals.delivery.sent_twice > 0
            || totals.delivery.never_sent > 0
            || totals.delivery.drafted_twice > 0;
    }
    std::process::exit(i32::from(failed));
}

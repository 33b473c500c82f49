//! Power cuts under load: the data folder (SQLite catalogue and blob folder) on the power-loss
//! filesystem (`common::power_loss_fs`), a gRPC pusher and a C-STORE pusher sending studies,
//! workers drafting them, a radiologist signing them, the outbox sending every result to
//! storescp; at a random moment the server is killed and everything not yet fsynced is dropped,
//! then the server starts again on what survived. After every restart each acknowledged
//! instance is there byte for byte, each signed read is there, and the catalogue passes
//! `PRAGMA integrity_check` and agrees with the blob folder; at the end the outbox has sent
//! every result exactly once and no study was drafted twice. `benches/durability.rs` does the
//! same a thousand times.

use crate::common;

use common::durability::{self, Ledger, Losses, Random, ResultsPeer};
use common::power_loss_fs::PowerLossFs;
use std::sync::Arc;
use std::time::Duration;

const CUTS: usize = 4;

#[test]
fn power_cuts_under_load_lose_nothing_acknowledged_and_send_each_result_once() {
    if !common::onnx_runtime_available() {
        return;
    }
    if !common::in_own_mounts_and_network(concat!(
        module_path!(),
        "::power_cuts_under_load_lose_nothing_acknowledged_and_send_each_result_once"
    )) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    let pacs = dir.path().join("pacs");
    let scratch = dir.path().join("scratch");
    for folder in [&site, &pacs, &scratch] {
        std::fs::create_dir(folder).unwrap();
    }
    let mut fs = PowerLossFs::mount(&site).expect("mounting the power-loss filesystem");
    let peer = ResultsPeer::start(&pacs);
    let ledger = Arc::new(Ledger::default());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut random = Random(0x00c0_ffee_5eed_0031);
    let mut losses = Losses::default();
    for cut in 0..CUTS {
        let server = durability::start_server(&site, &peer);
        losses.add(durability::check(&server.data, &ledger));
        // The cut comes at a random moment, whatever is in flight.
        let after = Duration::from_millis(500 + random.below(2500) as u64);
        let label = format!("cut{cut}");
        durability::busy_until_killed(&runtime, server, &label, &ledger, &scratch, after);
        fs.power_cut().expect("the power cut");
        eprintln!(
            "cut {cut} after {after:?}: {} acknowledged, {} signed so far",
            ledger.acknowledged.lock().unwrap().len(),
            ledger.signed.lock().unwrap().len()
        );
    }
    let server = durability::start_server(&site, &peer);
    losses.add(durability::check(&server.data, &ledger));
    let delivery = durability::settle_and_count(&server, &peer, Duration::from_secs(300));
    let counts = fs.counts();
    eprintln!(
        "{CUTS} cuts: {} acknowledged, {} signed, {losses:?}, {delivery:?}, {} blobs uncatalogued, {counts:?}",
        ledger.acknowledged.lock().unwrap().len(),
        ledger.signed.lock().unwrap().len(),
        durability::uncatalogued_blobs(&server.data),
    );
    assert_eq!(losses, Losses::default(), "something acknowledged was lost");
    assert!(
        !ledger.acknowledged.lock().unwrap().is_empty() && delivery.results > 0,
        "the cuts must land while studies are stored and results sent"
    );
    assert_eq!(delivery.never_sent, 0, "{delivery:?}");
    assert_eq!(delivery.sent_twice, 0, "{delivery:?}");
    assert_eq!(delivery.drafted_twice, 0, "{delivery:?}");
}

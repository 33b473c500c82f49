//! The SQLite store's own behaviour. What every backend must do (races with exactly one
//! winner, jobs, the outbox, amendments) is tested against each in tests/store.rs.

use super::*;
use crate::store::lifecycle::JobState;

fn put(store: &SqliteStore, uid: &str) {
    let bytes = format!("instance of {uid}");
    let sha = hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes.as_bytes()));
    store
        .put_instance(&IncomingInstance {
            bytes: bytes.as_bytes(),
            sha256: &sha,
            sop_instance_uid: &format!("{uid}.1"),
            study_instance_uid: uid,
            series_instance_uid: &format!("{uid}.2"),
            patient_id: "P",
            accession_number: "A",
            study_date: "20260101",
            attributes: "",
            prior: false,
        })
        .unwrap();
}

#[test]
fn a_read_only_store_refuses_writes_and_recovers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let owner = SqliteStore::open(dir.path()).unwrap();
    put(&owner, "1.2.5");
    owner.complete_study("1.2.5").unwrap();
    owner.take_job().unwrap().unwrap();
    let inspector = SqliteStore::open_read_only(dir.path()).unwrap();
    assert_eq!(inspector.jobs(Some(JobState::Running)).unwrap().len(), 1);
    assert!(inspector.claim("1.2.5", "dr-x").is_err());
    assert!(inspector.complete_study("1.2.5").is_err());
    assert_eq!(owner.jobs(Some(JobState::Running)).unwrap().len(), 1);
}

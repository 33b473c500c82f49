//! The power-loss test filesystem's own tests: through the kernel (real `open`, `write`,
//! `fsync`, `rename` calls on the mount), it loses what a power cut loses under POSIX's rules and
//! nothing else. Named cases for each rule, SQLite in WAL mode as a real user, and a seeded
//! random walk of operations checked after every cut against a small model of the rules written
//! here independently of the filesystem's own (`tests/common/power_loss_fs/tree.rs`).

use crate::common;

use common::durability::Random;
use common::power_loss_fs::PowerLossFs;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// A mounted power-loss filesystem in a temporary folder, in this test's own mount namespace.
fn mounted(test: &str) -> Option<(tempfile::TempDir, PowerLossFs)> {
    if !common::in_own_mounts(test) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let fs = PowerLossFs::mount(dir.path()).expect(
        "mounting the power-loss filesystem needs root and /dev/fuse (see tests/common/power_loss_fs)",
    );
    Some((dir, fs))
}

fn sync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

fn read(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

#[test]
fn bytes_written_after_the_last_fsync_are_lost() {
    let Some((dir, mut fs)) = mounted(concat!(
        module_path!(),
        "::bytes_written_after_the_last_fsync_are_lost"
    )) else {
        return;
    };
    let path = dir.path().join("f");
    let mut file = File::create(&path).unwrap();
    sync_dir(dir.path());
    file.write_all(b"synced").unwrap();
    file.sync_data().unwrap();
    file.write_all(b" and not").unwrap();
    drop(file);
    assert_eq!(
        read(&path).unwrap(),
        b"synced and not",
        "live, before the cut"
    );
    fs.power_cut().unwrap();
    assert_eq!(read(&path).unwrap(), b"synced");
    // A truncation not synced is undone too.
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(2).unwrap();
    drop(file);
    fs.power_cut().unwrap();
    assert_eq!(read(&path).unwrap(), b"synced");
}

#[test]
fn a_new_name_needs_its_folder_synced() {
    let Some((dir, mut fs)) = mounted(concat!(
        module_path!(),
        "::a_new_name_needs_its_folder_synced"
    )) else {
        return;
    };
    std::fs::create_dir(dir.path().join("kept")).unwrap();
    // The folder synced, the file not: the name survives, empty (ext4's zero-length file).
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"never synced").unwrap();
    sync_dir(dir.path());
    // fsync of the file alone: its bytes are durable, its name is not.
    let lost = dir.path().join("kept/lost");
    let mut file = File::create(&lost).unwrap();
    file.write_all(b"x").unwrap();
    file.sync_all().unwrap();
    // A new folder and a file in it, the file and the new folder synced but not the root:
    // the folder's name is lost, and the file with it.
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let mut inner = File::create(dir.path().join("sub/inner")).unwrap();
    inner.write_all(b"y").unwrap();
    inner.sync_all().unwrap();
    sync_dir(&dir.path().join("sub"));
    // The power goes: the writers are gone with it.
    drop((file, inner));
    fs.power_cut().unwrap();
    assert_eq!(read(&lost), None);
    assert_eq!(read(&empty).unwrap(), b"");
    assert!(!dir.path().join("sub").exists());
}

#[test]
fn renames_and_unlinks_count_once_their_folders_are_synced() {
    let Some((dir, mut fs)) = mounted(concat!(
        module_path!(),
        "::renames_and_unlinks_count_once_their_folders_are_synced"
    )) else {
        return;
    };
    let root = dir.path();
    for name in ["a", "b"] {
        std::fs::create_dir(root.join(name)).unwrap();
    }
    // The durable way to replace a file: write a temporary, fsync it, rename, fsync the folder.
    let mut file = File::create(root.join("a/tmp")).unwrap();
    file.write_all(b"one").unwrap();
    file.sync_all().unwrap();
    sync_dir(&root.join("a"));
    sync_dir(root);
    drop(file);
    std::fs::rename(root.join("a/tmp"), root.join("a/final")).unwrap();
    fs.power_cut().unwrap();
    // The rename's folder was not synced: the old name is back.
    assert_eq!(read(&root.join("a/tmp")).unwrap(), b"one");
    assert_eq!(read(&root.join("a/final")), None);
    std::fs::rename(root.join("a/tmp"), root.join("a/final")).unwrap();
    sync_dir(&root.join("a"));
    std::fs::remove_file(root.join("a/final")).unwrap();
    fs.power_cut().unwrap();
    // Synced rename kept; the unlink after it was not synced and is undone.
    assert_eq!(read(&root.join("a/tmp")), None);
    assert_eq!(read(&root.join("a/final")).unwrap(), b"one");
    // Across folders with only the target synced: both names name the file (POSIX allows it).
    std::fs::rename(root.join("a/final"), root.join("b/moved")).unwrap();
    sync_dir(&root.join("b"));
    fs.power_cut().unwrap();
    assert_eq!(read(&root.join("a/final")).unwrap(), b"one");
    assert_eq!(read(&root.join("b/moved")).unwrap(), b"one");
    // Everything synced (a checkpoint) survives as it is.
    std::fs::write(root.join("b/late"), b"late").unwrap();
    fs.sync_everything();
    fs.power_cut().unwrap();
    assert_eq!(read(&root.join("b/late")).unwrap(), b"late");
    let counts = fs.counts();
    assert_eq!(counts.power_cuts, 4);
    assert!(
        counts.file_syncs >= 1 && counts.directory_syncs >= 4,
        "{counts:?}"
    );
}

#[test]
fn sqlite_in_wal_mode_keeps_what_it_committed() {
    let Some((dir, mut fs)) = mounted(concat!(
        module_path!(),
        "::sqlite_in_wal_mode_keeps_what_it_committed"
    )) else {
        return;
    };
    let path = dir.path().join("db/catalogue.sqlite");
    std::fs::create_dir(dir.path().join("db")).unwrap();
    sync_dir(dir.path());
    // Another process commits 50 rows one by one, opens a transaction it never commits, and
    // dies by SIGKILL; then the power goes.
    let script = r#"
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
for n in range(50):
    db.execute("INSERT INTO t VALUES (?)", (n,))
db.execute("BEGIN")
db.execute("INSERT INTO t VALUES (1000)")
os.kill(os.getpid(), 9)
"#;
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .status()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    fs.power_cut().unwrap();
    let db = rusqlite::Connection::open(&path).unwrap();
    let count: i64 = db
        .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 50);
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

/// A small model of POSIX durability, for a fixed set of folders and plain files: per folder
/// its live and durable names, per file its live and durable bytes.
#[derive(Default)]
struct Model {
    live_names: BTreeMap<(usize, String), usize>,
    durable_names: BTreeMap<(usize, String), usize>,
    live_bytes: Vec<Vec<u8>>,
    durable_bytes: Vec<Vec<u8>>,
}

impl Model {
    fn sync_folder(&mut self, folder: usize) {
        self.durable_names.retain(|(f, _), _| *f != folder);
        for ((f, name), file) in &self.live_names {
            if *f == folder {
                self.durable_names.insert((*f, name.clone()), *file);
            }
        }
    }

    /// What every folder must hold after a cut; the model becomes that.
    fn cut(&mut self) -> BTreeMap<(usize, String), Vec<u8>> {
        self.live_names = self.durable_names.clone();
        self.live_bytes = self.durable_bytes.clone();
        self.live_names
            .iter()
            .map(|(k, file)| (k.clone(), self.durable_bytes[*file].clone()))
            .collect()
    }
}

#[test]
fn random_operations_lose_exactly_what_the_model_says() {
    let Some((dir, mut fs)) = mounted(concat!(
        module_path!(),
        "::random_operations_lose_exactly_what_the_model_says"
    )) else {
        return;
    };
    const FOLDERS: usize = 3;
    const NAMES: [&str; 4] = ["p", "q", "r", "s"];
    let folder = |f: usize| dir.path().join(format!("d{f}"));
    for f in 0..FOLDERS {
        std::fs::create_dir(folder(f)).unwrap();
    }
    sync_dir(dir.path());
    let mut model = Model::default();
    let mut random = Random(0x5eed_1234_abcd_0001);
    let mut operations = BTreeMap::<&str, usize>::new();
    for round in 0..25 {
        for _ in 0..40 {
            let (f, name) = (random.below(FOLDERS), NAMES[random.below(NAMES.len())]);
            let path = folder(f).join(name);
            let existing = model.live_names.get(&(f, name.to_string())).copied();
            let operation = match (random.below(7), existing) {
                (0, None) => {
                    File::create(&path).unwrap();
                    model.live_bytes.push(vec![]);
                    model.durable_bytes.push(vec![]);
                    model
                        .live_names
                        .insert((f, name.into()), model.live_bytes.len() - 1);
                    "create"
                }
                (1, Some(file)) => {
                    let offset = random.below(model.live_bytes[file].len() + 4);
                    let bytes: Vec<u8> = (0..1 + random.below(9000))
                        .map(|_| random.below(256) as u8)
                        .collect();
                    let mut handle = OpenOptions::new().write(true).open(&path).unwrap();
                    std::io::Seek::seek(&mut handle, std::io::SeekFrom::Start(offset as u64))
                        .unwrap();
                    handle.write_all(&bytes).unwrap();
                    let live = &mut model.live_bytes[file];
                    if live.len() < offset + bytes.len() {
                        live.resize(offset + bytes.len(), 0);
                    }
                    live[offset..offset + bytes.len()].copy_from_slice(&bytes);
                    "write"
                }
                (2, Some(file)) => {
                    let length = random.below(model.live_bytes[file].len() + 1);
                    OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .unwrap()
                        .set_len(length as u64)
                        .unwrap();
                    model.live_bytes[file].truncate(length);
                    "truncate"
                }
                (3, Some(file)) => {
                    File::open(&path).unwrap().sync_all().unwrap();
                    model.durable_bytes[file] = model.live_bytes[file].clone();
                    "fsync file"
                }
                (4, _) => {
                    sync_dir(&folder(f));
                    model.sync_folder(f);
                    "fsync folder"
                }
                (5, Some(_)) => {
                    std::fs::remove_file(&path).unwrap();
                    model.live_names.remove(&(f, name.to_string()));
                    "unlink"
                }
                (6, Some(file)) => {
                    let (g, new_name) = (random.below(FOLDERS), NAMES[random.below(NAMES.len())]);
                    std::fs::rename(&path, folder(g).join(new_name)).unwrap();
                    model.live_names.remove(&(f, name.to_string()));
                    model.live_names.insert((g, new_name.into()), file);
                    "rename"
                }
                _ => continue,
            };
            *operations.entry(operation).or_default() += 1;
        }
        fs.power_cut().unwrap();
        let expected = model.cut();
        let mut found = BTreeMap::new();
        for f in 0..FOLDERS {
            for entry in std::fs::read_dir(folder(f)).unwrap() {
                let entry = entry.unwrap();
                let name = entry.file_name().to_string_lossy().into_owned();
                found.insert((f, name), std::fs::read(entry.path()).unwrap());
            }
        }
        let summary = |m: &BTreeMap<(usize, String), Vec<u8>>| {
            m.iter()
                .map(|((f, n), b)| format!("d{f}/{n}: {} bytes", b.len()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            summary(&found),
            summary(&expected),
            "round {round}: names and sizes after the cut"
        );
        assert!(found == expected, "round {round}: contents after the cut");
    }
    eprintln!("operations: {operations:?}");
    assert!(operations.values().all(|n| *n >= 20), "{operations:?}");
}

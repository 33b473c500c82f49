//! The store backends the service tests run against: SQLite + a folder (the default), or
//! PostgreSQL + an S3-compatible object store when `RADASSIST_TEST_BACKEND=postgres-s3`.
//!
//! For the second, the first test server of a test process starts a real PostgreSQL (Debian's,
//! in a cluster made under the system's temporary folder, run as the `postgres` user when the
//! tests run as root: PostgreSQL refuses root; TLS offered with a certificate of its own) and a
//! real S3 server (s3s-fs, built from crates.io by scripts/setup, serving a folder under
//! target/), both on loopback. They live as long as the test process: a thread started for
//! them parks for ever, and they get a signal when it ends (PR_SET_PDEATHSIG). Each test
//! server gets its own database and bucket, named after its data folder, so that a restarted
//! server finds its own.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const S3_ACCESS_KEY: &str = "radassist-test";
pub const S3_SECRET_KEY: &str = "radassist-test-secret";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    SqliteFolder,
    PostgresS3,
}

pub fn selected() -> Backend {
    match std::env::var("RADASSIST_TEST_BACKEND").as_deref() {
        Ok("postgres-s3") => Backend::PostgresS3,
        Ok("") | Ok("sqlite") | Err(_) => Backend::SqliteFolder,
        Ok(other) => panic!("RADASSIST_TEST_BACKEND={other:?}: use sqlite or postgres-s3"),
    }
}

/// The running PostgreSQL and S3 servers of this test process.
pub struct Servers {
    pub pg_port: u16,
    /// The CA (the certificate itself) of PostgreSQL's TLS certificate, for 127.0.0.1.
    pub pg_ca: PathBuf,
    pub s3_endpoint: String,
    /// s3s-fs's folder: bucket NAME is the folder NAME in it, an object its file.
    pub s3_root: PathBuf,
}

fn pg_bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/setup installs Debian's postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    versions.sort();
    versions
        .last()
        .expect("a PostgreSQL version in /usr/lib/postgresql")
        .join("bin")
        .join(name)
}

fn running_as_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// The `postgres` user's ids, when we are root (PostgreSQL refuses to run as root).
fn postgres_ids() -> Option<(u32, u32)> {
    if !running_as_root() {
        return None;
    }
    let out = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .unwrap();
    let uid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a postgres user (Debian's postgresql package makes it; run scripts/setup)");
    let out = Command::new("id")
        .args(["-g", "postgres"])
        .output()
        .unwrap();
    let gid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    Some((uid, gid))
}

/// A command run as `ids` (when given), signalled with `death_signal` when the thread that
/// started it ends.
fn command_as(program: &Path, ids: Option<(u32, u32)>, death_signal: i32) -> Command {
    let mut command = Command::new(program);
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(move || {
            if let Some((uid, gid)) = ids {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // After setuid, which clears it.
            libc::prctl(libc::PR_SET_PDEATHSIG, death_signal);
            Ok(())
        });
    }
    command
}

/// Waits for a line containing `wanted` on `lines` (the server's log), returns it.
fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, wanted: &str, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(wanted) => return line,
            Ok(_) => {}
            Err(e) => panic!("{what} did not say {wanted:?} within 60 s: {e}"),
        }
    }
}

/// Forwards a child's output lines, echoed with `tag`, to the returned channel.
fn follow(
    output: impl std::io::Read + Send + 'static,
    tag: &'static str,
) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(output)
            .lines()
            .map_while(Result::ok)
        {
            if std::env::var_os("RADASSIST_TEST_BACKEND_LOG").is_some() {
                eprintln!("[{tag}] {line}");
            }
            let _ = tx.send(line);
        }
    });
    rx
}

fn start_postgres(work: &Path) -> (Child, u16, PathBuf) {
    let ids = postgres_ids();
    let cluster = work.join("pg");
    std::fs::create_dir_all(&cluster).unwrap();
    // TLS offered (plain still allowed): a certificate for 127.0.0.1, its key the server's own.
    let (cert, key) = super::certificate(work, "postgres", &["127.0.0.1", "localhost"]);
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        if let Some((uid, gid)) = ids {
            for file in [&cert, &key] {
                std::os::unix::fs::chown(file, Some(uid), Some(gid)).unwrap();
            }
        }
    }
    if let Some((uid, gid)) = ids {
        std::os::unix::fs::chown(&cluster, Some(uid), Some(gid)).unwrap();
    }
    let initdb = command_as(&pg_bin("initdb"), ids, libc::SIGKILL)
        .args(["-D"])
        .arg(&cluster)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        initdb.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&initdb.stderr)
    );
    let port = super::free_port();
    let mut postgres = command_as(&pg_bin("postgres"), ids, libc::SIGINT)
        .arg("-D")
        .arg(&cluster)
        .args(["-c", "listen_addresses=127.0.0.1", "-c"])
        .arg(format!("unix_socket_directories={}", cluster.display()))
        .args([
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=64MB",
            "-c",
            "ssl=on",
        ])
        .arg("-c")
        .arg(format!("ssl_cert_file={}", cert.display()))
        .arg("-c")
        .arg(format!("ssl_key_file={}", key.display()))
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = follow(postgres.stderr.take().unwrap(), "postgres");
    wait_for_line(
        &log,
        "database system is ready to accept connections",
        "PostgreSQL",
    );
    // Keep draining its log.
    std::thread::spawn(move || while log.recv().is_ok() {});
    (postgres, port, cert)
}

fn s3s_fs() -> PathBuf {
    let tool = super::root().join(".radassist/tools/bin/s3s-fs");
    assert!(
        tool.exists(),
        "{} is missing: run scripts/setup (it builds the s3s-fs S3 server from crates.io)",
        tool.display()
    );
    tool
}

fn start_s3(work: &Path) -> (Child, String, PathBuf) {
    let root = work.join("s3");
    std::fs::create_dir_all(&root).unwrap();
    let mut server = command_as(&s3s_fs(), None, libc::SIGKILL)
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
        .arg(&root)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let log = follow(server.stdout.take().unwrap(), "s3s-fs");
    let line = wait_for_line(&log, "server is running at ", "s3s-fs");
    let endpoint = line
        .split("server is running at ")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    std::thread::spawn(move || while log.recv().is_ok() {});
    (server, endpoint, root)
}

/// PostgreSQL and the S3 server, started on first use.
pub fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let base = super::root().join("target/test-backends");
        // Earlier runs' clusters and buckets (their servers died with their test processes).
        for folder in [
            base.clone(),
            std::env::temp_dir().join("radassist-test-postgres"),
        ] {
            for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
                let pid = entry.file_name().to_string_lossy().parse::<i32>().ok();
                if pid.is_some_and(|pid| unsafe { libc::kill(pid, 0) } != 0) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let work = base.join(std::process::id().to_string());
        // PostgreSQL's own folder is under the system's temporary folder, which the postgres
        // user can reach (the repository's folders need not let it through).
        let pg_work = std::env::temp_dir()
            .join("radassist-test-postgres")
            .join(std::process::id().to_string());
        let (sender, receiver) = std::sync::mpsc::channel();
        // The servers' parent thread: it parks for ever, so that they die with this process.
        std::thread::Builder::new()
            .name("test-backends".into())
            .spawn(move || {
                let (_postgres, pg_port, pg_ca) = start_postgres(&pg_work);
                let (_s3, s3_endpoint, s3_root) = start_s3(&work);
                sender
                    .send(Servers {
                        pg_port,
                        pg_ca,
                        s3_endpoint,
                        s3_root,
                    })
                    .unwrap();
                loop {
                    std::thread::park();
                }
            })
            .unwrap();
        receiver
            .recv_timeout(Duration::from_secs(120))
            .expect("PostgreSQL and the S3 server start")
    })
}

/// Runs `f` on a thread of its own: the blocking PostgreSQL client runs its own runtime, which
/// cannot start inside an async test's.
pub fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().unwrap()
}

/// A short stable name for `data` (a database and a bucket are named after it).
fn name_of(data: &Path) -> String {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(data.to_string_lossy().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A connection string for the test server whose data folder is `data` (its database is made
/// when missing).
pub fn database_for(data: &Path) -> String {
    let servers = servers();
    let name = format!("radassist_{}", name_of(data));
    let admin_url = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        servers.pg_port
    );
    {
        let name = name.clone();
        off_runtime(move || {
            let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls)
                .expect("connects to the test PostgreSQL");
            let exists = admin
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .unwrap()
                .is_some();
            if !exists {
                admin
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .unwrap();
            }
        });
    }
    format!(
        "host=127.0.0.1 port={} user=postgres dbname={name}",
        servers.pg_port
    )
}

/// The bucket of the test server whose data folder is `data` (made when missing).
pub fn bucket_for(data: &Path) -> String {
    let name = format!("b-{}", name_of(data));
    std::fs::create_dir_all(servers().s3_root.join(&name)).unwrap();
    name
}

/// The `[store]` and `[blobs]` sections for a test server whose data folder is `data` (empty
/// for the default backend).
pub fn sections_for(data: &Path) -> String {
    sections_of(selected(), data)
}

/// The `[store]` and `[blobs]` sections of `backend` for the data folder (or site) `data`.
pub fn sections_of(backend: Backend, data: &Path) -> String {
    match backend {
        Backend::SqliteFolder => String::new(),
        Backend::PostgresS3 => format!(
            "[store]\nbackend = \"postgres\"\nurl = {:?}\njob_lease_seconds = 5\n\n\
             [blobs]\nbackend = \"s3\"\nbucket = {:?}\nendpoint = {:?}\nallow_http = true\n",
            database_for(data),
            bucket_for(data),
            servers().s3_endpoint
        ),
    }
}

/// What a radassist process needs in its environment for the selected backend.
pub fn environment() -> Vec<(&'static str, &'static str)> {
    environment_of(selected())
}

/// What a radassist process needs in its environment for `backend`: the S3 credentials.
pub fn environment_of(backend: Backend) -> Vec<(&'static str, &'static str)> {
    match backend {
        Backend::SqliteFolder => vec![],
        Backend::PostgresS3 => vec![
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY),
        ],
    }
}

/// The bytes of blob `sha256` as the test server whose data folder is `data` keeps them: in
/// its folder, or in its bucket (read from the S3 server's own folder).
pub fn blob(data: &Path, sha256: &str) -> Option<Vec<u8>> {
    blob_of(selected(), data, sha256)
}

/// As `blob`, in `backend`.
pub fn blob_of(backend: Backend, data: &Path, sha256: &str) -> Option<Vec<u8>> {
    // The folder store keeps one level of folders, the bucket two (see store/blobs.rs).
    let path = match backend {
        Backend::SqliteFolder => data.join(format!("blobs/{}/{sha256}", &sha256[..2])),
        Backend::PostgresS3 => servers().s3_root.join(bucket_for(data)).join(format!(
            "blobs/{}/{}/{sha256}",
            &sha256[..2],
            &sha256[2..4]
        )),
    };
    std::fs::read(path).ok()
}

/// (SOP Instance UID, SHA-256) of every instance the test server whose data folder is `data`
/// catalogued.
pub fn catalogued_instances(data: &Path) -> Vec<(String, String)> {
    catalogued_instances_of(selected(), data)
}

/// As `catalogued_instances`, in `backend`.
pub fn catalogued_instances_of(backend: Backend, data: &Path) -> Vec<(String, String)> {
    let sql = "SELECT sop_instance_uid, sha256 FROM instances ORDER BY sop_instance_uid";
    match backend {
        Backend::SqliteFolder => {
            let db = rusqlite::Connection::open(data.join("radassist.sqlite")).unwrap();
            let mut q = db.prepare(sql).unwrap();
            q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        }
        Backend::PostgresS3 => {
            let url = database_for(data);
            off_runtime(move || {
                let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                db.query(sql, &[])
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect()
            })
        }
    }
}

/// One value of the catalogue of the test server whose data folder is `data`, as text: `sql`
/// takes the one parameter `$1` and selects one TEXT column (CAST others AS TEXT; both SQLite
/// and PostgreSQL read that). None when no row matches.
pub fn catalogue_value(data: &Path, sql: &str, parameter: &str) -> Option<String> {
    match selected() {
        Backend::SqliteFolder => {
            let db = rusqlite::Connection::open_with_flags(
                data.join("radassist.sqlite"),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            rusqlite::OptionalExtension::optional(db.query_row(
                &sql.replace('$', "?"),
                [parameter],
                |r| r.get(0),
            ))
            .unwrap()
        }
        Backend::PostgresS3 => {
            let (url, sql, parameter) =
                (database_for(data), sql.to_string(), parameter.to_string());
            off_runtime(move || {
                postgres::Client::connect(&url, postgres::NoTls)
                    .unwrap()
                    .query_opt(&sql, &[&parameter])
                    .unwrap()
                    .map(|r| r.get(0))
            })
        }
    }
}

/// Runs `sql` (one parameter, `$1`) on the catalogue of the test server whose data folder is
/// `data`, with the server stopped; the rows it changed.
pub fn catalogue_execute(data: &Path, sql: &str, parameter: &str) -> u64 {
    match selected() {
        Backend::SqliteFolder => {
            let db = rusqlite::Connection::open(data.join("radassist.sqlite")).unwrap();
            db.execute(&sql.replace('$', "?"), [parameter]).unwrap() as u64
        }
        Backend::PostgresS3 => {
            let (url, sql, parameter) =
                (database_for(data), sql.to_string(), parameter.to_string());
            off_runtime(move || {
                postgres::Client::connect(&url, postgres::NoTls)
                    .unwrap()
                    .execute(&sql, &[&parameter])
                    .unwrap()
            })
        }
    }
}

/// Every catalogued instance's blob exists and hashes to its row, and (in a folder) no
/// half-written blob is left; returns the rows.
pub fn check_blobs(data: &Path) -> Vec<(String, String)> {
    let rows = catalogued_instances(data);
    for (sop, sha) in &rows {
        let bytes = blob(data, sha).unwrap_or_else(|| panic!("{sop}: no blob {sha}"));
        let found: String = <sha2::Sha256 as sha2::Digest>::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(&found, sha, "{sop}: the blob is not what was catalogued");
    }
    if selected() == Backend::SqliteFolder {
        let tmp: Vec<_> = std::fs::read_dir(data.join("blobs/tmp")).unwrap().collect();
        assert!(tmp.is_empty(), "half-written blobs left: {tmp:?}");
    }
    rows
}

//! End-to-end tests of the real `walwatch` binary against real processes: Debian's `sqlite3`
//! shell (no extension) and `/usr/bin/python3` with the walwatch extension loaded.
//!
//! Needs `/usr/bin/sqlite3` and `/usr/bin/python3` (with `enable_load_extension`); runs
//! `promtool check metrics` when `promtool` is installed (`apt-get install prometheus`).
//! No assertion depends on timing: waits are bounded polls for a condition.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use walwatch_exporter::synth;

const WALWATCH: &str = env!("CARGO_BIN_EXE_walwatch");

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "walwatch-test-{}-{name}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Polls `f` until it returns `Some`, for at most 20 s.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.0 GET (the response is then close-delimited, never chunked).
fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    Ok((head.to_owned(), body.to_owned()))
}

/// A running `walwatch serve`.
struct Sidecar {
    addr: SocketAddr,
    _proc: Proc,
    log: PathBuf,
}

impl Sidecar {
    fn start(dir: &TempDir, args: &[&str]) -> Self {
        let addr = free_addr();
        let log = dir.path(&format!("walwatch-{}.log", addr.port()));
        let child = Command::new(WALWATCH)
            .arg("serve")
            .args(["--listen", &addr.to_string()])
            .args(args)
            .env_remove("WALWATCH_DIR")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut proc = Proc(child);
        wait_for("walwatch to serve /healthz", || {
            if let Ok(Some(status)) = proc.0.try_wait() {
                panic!(
                    "walwatch exited with {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            get(addr, "/healthz", None)
                .ok()
                .filter(|(head, _)| head.contains(" 200 "))
        });
        Self {
            addr,
            _proc: proc,
            log,
        }
    }

    fn get(&self, path: &str) -> String {
        let (head, body) = get(self.addr, path, None).unwrap();
        assert!(head.contains(" 200 "), "GET {path}: {head}");
        body
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(WALWATCH)
        .args(args)
        .env_remove("WALWATCH_DIR")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The value of the first sample whose line starts with `prefix`.
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `promtool check metrics` must print nothing and succeed; skipped (with a notice) when
/// promtool is not installed.
fn promtool_check(metrics: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("NOTICE: promtool not installed (apt-get install prometheus); skipping `promtool check metrics`");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn no_panic(stderr: &str) {
    assert!(!stderr.contains("panicked"), "walwatch panicked: {stderr}");
}

mod bad_input {
    //! Bad input gets a clear error and a non-zero exit, or is served as `walwatch_up 0`.
    use super::*;

    #[test]
    fn port_in_use() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let out = run(&[
            "serve",
            "--listen",
            &addr,
            "--stats-dir",
            "/nonexistent-walwatch-test",
        ]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("cannot listen on {addr}")) && stderr.contains("--listen"),
            "{stderr}"
        );
        no_panic(&stderr);
    }

    #[test]
    fn invalid_config_names_line_and_key() {
        let dir = TempDir::new("config");
        let cfg = dir.path("walwatch.toml");
        std::fs::write(
            &cfg,
            "# walwatch\ninterval = \"1s\"\nlisten_address = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let out = run(&["serve", "--config", cfg.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("line 3")
                && stderr.contains("key `listen_address`")
                && stderr.contains("unknown field"),
            "{stderr}"
        );
        no_panic(&stderr);

        std::fs::write(&cfg, "interval = 5\n").unwrap();
        let stderr = text(&run(&["serve", "--config", cfg.to_str().unwrap()]).stderr);
        assert!(
            stderr.contains("line 1") && stderr.contains("key `interval`"),
            "{stderr}"
        );

        std::fs::write(&cfg, "interval = \"soon\"\n").unwrap();
        let stderr = text(&run(&["serve", "--config", cfg.to_str().unwrap()]).stderr);
        assert!(
            stderr.contains("line 1, key `interval`") && stderr.contains("not a duration"),
            "{stderr}"
        );

        let out = run(&[
            "serve",
            "--config",
            dir.path("missing.toml").to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("cannot read config file"),
            "{}",
            text(&out.stderr)
        );
    }

    #[test]
    fn bad_databases_and_stats_files_are_reported_and_served() {
        let dir = TempDir::new("bad");
        let stats = dir.path("stats");
        std::fs::create_dir_all(&stats).unwrap();
        let missing = dir.path("missing.db");
        let rollback = dir.path("rollback.db");
        std::fs::write(&rollback, synth::database(false)).unwrap();
        // A truncated stats file, one of layout version 2 and one of a database that exists.
        std::fs::write(
            stats.join("truncated.0.walwatch"),
            &synth::stats_file(b"/x.db", 1)[..100],
        )
        .unwrap();
        let mut v2 = synth::stats_file(b"/y.db", 1);
        synth::set_version(&mut v2, 2);
        std::fs::write(stats.join("v2.0.walwatch"), v2).unwrap();
        let good = dir.path("good.db");
        std::fs::write(&good, synth::database(true)).unwrap();
        std::fs::write(
            stats.join("good.0.walwatch"),
            synth::stats_file(good.to_str().unwrap().as_bytes(), 5),
        )
        .unwrap();

        let sidecar = Sidecar::start(
            &dir,
            &[
                "--stats-dir",
                stats.to_str().unwrap(),
                "--db",
                missing.to_str().unwrap(),
                "--db",
                rollback.to_str().unwrap(),
            ],
        );
        let metrics = sidecar.get("/metrics");
        let up = |db: &Path| sample(&metrics, &format!("walwatch_up{{db=\"{}\"}}", db.display()));
        assert_eq!(up(&missing), Some(0.0));
        assert_eq!(up(&rollback), Some(0.0));
        assert_eq!(up(&good), Some(1.0));
        assert_eq!(
            sample(&metrics, "walwatch_stats_file_errors{reason=\"truncated\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &metrics,
                "walwatch_stats_file_errors{reason=\"wrong_version\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &metrics,
                &format!(
                    "walwatch_wal_write_bytes_total{{db=\"{}\"}}",
                    good.display()
                )
            ),
            Some(10.0)
        );
        promtool_check(&metrics);

        let status: serde_json::Value = serde_json::from_str(&sidecar.get("/status")).unwrap();
        let db = |p: &Path| {
            status["databases"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["path"] == p.to_str().unwrap())
                .cloned()
                .unwrap()
        };
        assert_eq!(db(&missing)["error"], "database file does not exist");
        assert!(db(&rollback)["error"]
            .as_str()
            .unwrap()
            .contains("not in WAL mode"));
        assert_eq!(status["bad_stats_files"].as_array().unwrap().len(), 2);

        let log = sidecar.log();
        assert!(
            log.contains("layout version 2") && log.contains("truncated"),
            "{log}"
        );
        assert!(
            log.contains("database file does not exist") && log.contains("not in WAL mode"),
            "{log}"
        );
        no_panic(&log);

        // The one-shot report says the same, and fails.
        let out = run(&[
            "status",
            "--stats-dir",
            stats.to_str().unwrap(),
            missing.to_str().unwrap(),
            rollback.to_str().unwrap(),
        ]);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(
            stdout.contains("DOWN: database file does not exist")
                && stdout.contains("DOWN: database is not in WAL mode"),
            "{stdout}"
        );
        no_panic(&text(&out.stderr));
    }

    #[test]
    fn openmetrics_when_asked() {
        let dir = TempDir::new("om");
        let db = dir.path("a.db");
        std::fs::write(&db, synth::database(true)).unwrap();
        let sidecar = Sidecar::start(
            &dir,
            &[
                "--stats-dir",
                dir.path("none").to_str().unwrap(),
                "--db",
                db.to_str().unwrap(),
            ],
        );
        let (head, body) = get(
            sidecar.addr,
            "/metrics",
            Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
        )
        .unwrap();
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/openmetrics-text; version=1.0.0"),
            "{head}"
        );
        assert!(
            body.ends_with("# EOF\n") && body.contains("# TYPE walwatch_build info"),
            "{body}"
        );
        let (head, body) = get(sidecar.addr, "/metrics", None).unwrap();
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(!body.contains("# EOF"));
        let landing = sidecar.get("/");
        assert!(landing.contains("href=\"metrics\"") && landing.contains("href=\"status\""));
        let (head, _) = get(sidecar.addr, "/nope", None).unwrap();
        assert!(head.contains(" 404 "), "{head}");
    }
}

/// A plain `sqlite3` shell: commands go to stdin, results come back on stdout.
struct Shell {
    proc: Proc,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Shell {
    fn open(db: &Path) -> Self {
        let mut child = Command::new("sqlite3")
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sqlite3 shell (apt-get install sqlite3)");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            proc: Proc(child),
            stdin,
            stdout,
        }
    }

    /// Runs `sql` and waits until it has finished (a marker query answers).
    fn run(&mut self, sql: &str) -> Vec<String> {
        writeln!(self.stdin, "{sql}\nSELECT 'walwatch-test-done';").unwrap();
        self.stdin.flush().unwrap();
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "sqlite3 exited"
            );
            if line.trim() == "walwatch-test-done" {
                return lines;
            }
            lines.push(line.trim().to_owned());
        }
    }

    fn pid(&self) -> u32 {
        self.proc.0.id()
    }
}

#[test]
fn plain_shell_reader_is_named_as_the_blocker() {
    let dir = TempDir::new("blocker");
    let db = dir.path("app.db");
    // A writer (a plain shell, kept open) leaves frames pending…
    let mut writer = Shell::open(&db);
    writer.run("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(3000));");
    // …a second plain shell opens a read transaction that sees them…
    let mut reader = Shell::open(&db);
    assert_eq!(reader.run("BEGIN; SELECT count(*) FROM t;"), vec!["1"]);
    // …and the writer commits more, which the reader's snapshot keeps from being checkpointed.
    writer.run("INSERT INTO t VALUES (randomblob(3000)); INSERT INTO t VALUES (randomblob(3000));");

    let empty_stats = dir.path("stats");
    let out = run(&[
        "status",
        "--stats-dir",
        empty_stats.to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    let who = format!("pid {} (sqlite3)", reader.pid());
    assert!(report.contains("checkpoint:  BLOCKED"), "{report}");
    assert!(
        report.contains(&format!("blocker: {who} on READ")),
        "{report}"
    );
    assert!(
        !report.contains(&format!("pid {} ", writer.pid())),
        "the writer holds no read lock: {report}"
    );

    let sidecar = Sidecar::start(
        &dir,
        &[
            "--stats-dir",
            empty_stats.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ],
    );
    let status: serde_json::Value = serde_json::from_str(&sidecar.get("/status")).unwrap();
    let state = &status["databases"][0];
    assert_eq!(state["checkpoint_blocked"], true, "{state}");
    let blocker = &state["blockers"][0];
    assert_eq!(blocker["pid"], reader.pid(), "{state}");
    assert_eq!(blocker["process"], "sqlite3", "{state}");
    assert_eq!(blocker["blocks"], "backfill", "{state}");
    assert_eq!(state["readers"][0]["seen_by"], "lock", "{state}");

    let metrics = sidecar.get("/metrics");
    let label = format!("{{db=\"{}\"}}", db.display());
    assert_eq!(
        sample(&metrics, &format!("walwatch_checkpoint_blocked{label}")),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, &format!("walwatch_readers{label}")),
        Some(1.0)
    );
    assert!(sample(&metrics, &format!("walwatch_wal_frames{label}")).unwrap() >= 3.0);
    promtool_check(&metrics);
    assert!(
        sidecar.log().contains("checkpoint blocker"),
        "{}",
        sidecar.log()
    );

    // A full checkpoint really is blocked: it cannot backfill every frame.
    let result = writer.run("PRAGMA wal_checkpoint(FULL);");
    let fields: Vec<&str> = result[0].split('|').collect();
    assert_ne!(
        fields[1], fields[2],
        "FULL checkpoint was not blocked: {result:?}"
    );
}

/// `target/<profile>/libwalwatch.so`, (re)built first with `cargo build -p walwatch-vfs --lib`
/// in this test's profile (a no-op when it is up to date).
fn extension() -> PathBuf {
    let profile_dir = Path::new(WALWATCH).parent().unwrap();
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "-p", "walwatch-vfs", "--lib"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cargo.arg("--release");
    }
    assert!(
        cargo.status().unwrap().success(),
        "building the walwatch extension failed"
    );
    let lib = profile_dir.join("libwalwatch.so");
    assert!(
        lib.exists(),
        "{} missing after building walwatch-vfs",
        lib.display()
    );
    lib
}

const PYTHON_WRITER: &str = r#"
import os, sqlite3, sys
c0 = sqlite3.connect(':memory:')
c0.enable_load_extension(True)
c0.load_extension(sys.argv[1])
c = sqlite3.connect(sys.argv[2], isolation_level=None)
c.execute('PRAGMA journal_mode=WAL')
c.execute('CREATE TABLE IF NOT EXISTS t(x)')
for line in sys.stdin:
    for _ in range(int(line)):
        c.execute('INSERT INTO t VALUES (?)', (os.urandom(500),))
    print('written', flush=True)
"#;

#[test]
fn python_with_the_extension_counters_rise() {
    let lib = extension();
    let dir = TempDir::new("python");
    let stats = dir.path("stats");
    let db = dir.path("py.db");
    let mut child = Command::new("/usr/bin/python3")
        .args([
            "-c",
            PYTHON_WRITER,
            lib.with_extension("").to_str().unwrap(),
            db.to_str().unwrap(),
        ])
        .env("WALWATCH_DIR", &stats)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let _python = Proc(child);
    let mut write_rows = |n: u32| {
        writeln!(stdin, "{n}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "written", "python writer failed");
    };
    write_rows(20);

    // Discovered from the stats directory alone: no --db.
    let sidecar = Sidecar::start(
        &dir,
        &[
            "--stats-dir",
            stats.to_str().unwrap(),
            "--interval",
            "100ms",
        ],
    );
    let counter = format!("walwatch_wal_write_bytes_total{{db=\"{}\"}}", db.display());
    let first_scrape = sidecar.get("/metrics");
    let first = sample(&first_scrape, &counter)
        .unwrap_or_else(|| panic!("{counter} missing:\n{first_scrape}"));
    assert!(first > 0.0);
    assert_eq!(
        sample(
            &first_scrape,
            &format!("walwatch_up{{db=\"{}\"}}", db.display())
        ),
        Some(1.0)
    );
    promtool_check(&first_scrape);

    write_rows(20);
    let second_scrape = wait_for("the counter to rise", || {
        let m = sidecar.get("/metrics");
        (sample(&m, &counter)? > first).then_some(m)
    });
    let locks = format!(
        "walwatch_shm_lock_acquired_total{{db=\"{}\",slot=\"WRITE\",mode=\"exclusive\"}}",
        db.display()
    );
    assert!(sample(&second_scrape, &locks).unwrap() > sample(&first_scrape, &locks).unwrap());
    promtool_check(&second_scrape);

    let status: serde_json::Value = serde_json::from_str(&sidecar.get("/status")).unwrap();
    assert_eq!(status["databases"][0]["sources"][0], "shim");
    assert!(status["databases"][0]["stats_file"]
        .as_str()
        .unwrap()
        .starts_with(stats.to_str().unwrap()));
}

//! End-to-end tests of the real `walwatch` binary against real processes: Debian's `sqlite3`
//! shell (no extension) and `/usr/bin/python3` with the walwatch extension loaded.
//!
//! Needs `/usr/bin/sqlite3` and `/usr/bin/python3` (with `enable_load_extension`); runs
//! `promtool check metrics` when `promtool` is installed (`apt-get install prometheus`).
//! No assertion depends on timing: waits are bounded polls for a condition.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::Duration;

use walwatch_exporter::synth;

use walwatch_tests::*;

/// A running `walwatch serve` whose `/healthz` has answered 200.
struct Sidecar(Serve);

impl std::ops::Deref for Sidecar {
    type Target = Serve;
    fn deref(&self) -> &Serve {
        &self.0
    }
}

impl Sidecar {
    fn start(dir: &TempDir, args: &[&str]) -> Self {
        Self::start_as(dir, None, args)
    }

    /// Starts `walwatch serve` as user `uid` (and group `uid`) when given.
    fn start_as(dir: &TempDir, uid: Option<u32>, args: &[&str]) -> Self {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(WALWATCH);
        if let Some(uid) = uid {
            command.uid(uid).gid(uid);
        }
        let mut serve = Serve::start_command(command, &dir.0, args);
        wait_for("walwatch to serve /healthz", || {
            serve.assert_running();
            serve.get("/healthz")
        });
        Self(serve)
    }

    /// The body of `GET path`, which must answer 200.
    fn get(&self, path: &str) -> String {
        let (head, body) = raw_get(self.addr, path, None).unwrap();
        assert!(head.contains(" 200 "), "GET {path}: {head}");
        body
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(WALWATCH)
        .args(args)
        .env_remove("WALWATCH_DIR")
        .output()
        .unwrap()
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
        // A truncated stats file, one of the older layout version 1 and one of a database that
        // exists.
        std::fs::write(
            stats.join("truncated.0.walwatch"),
            &synth::stats_file(b"/x.db", 1)[..100],
        )
        .unwrap();
        let mut v1 = synth::stats_file(b"/y.db", 1);
        synth::set_version(&mut v1, 1);
        std::fs::write(stats.join("v1.0.walwatch"), v1).unwrap();
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
            log.contains("layout version 1") && log.contains("truncated"),
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
        let (head, body) = raw_get(
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
        let (head, body) = raw_get(sidecar.addr, "/metrics", None).unwrap();
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(!body.contains("# EOF"));
        let landing = sidecar.get("/");
        assert!(landing.contains("href=\"metrics\"") && landing.contains("href=\"status\""));
        let (head, _) = raw_get(sidecar.addr, "/nope", None).unwrap();
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
    // A private directory made beforehand, as an operator does for WALWATCH_DIR.
    std::fs::create_dir_all(&stats).unwrap();
    std::fs::set_permissions(&stats, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
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
        "walwatch_shm_lock_acquired_total{{db=\"{}\",lock=\"write\"}}",
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

mod issue9 {
    //! Issue 9, attacks 4 and 5, replayed with real processes: what the sidecar reads (FIFOs,
    //! symlinks to `/dev/zero`, sparse files, other users' directories) and what it acts on
    //! (a stats file forged to name root's database).
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Whether the test must be skipped, not being root: says so, and why it needs root.
    fn skip_unless_root(needs: &str) -> bool {
        let root = walwatch::paths::effective_uid() == 0;
        if !root {
            eprintln!("NOTICE: not root; skipping (needs {needs})");
        }
        !root
    }

    fn mkfifo(path: &Path) {
        let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
        assert!(ok, "mkfifo {}", path.display());
    }

    fn chown(path: &Path, uid: u32, mode: u32) {
        std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Runs `walwatch ARGS`; fails if it has not finished within 10 s (a hang is for ever).
    fn run_within(args: &[&str]) -> Output {
        output_within(
            Command::new(WALWATCH)
                .args(args)
                .env_remove("WALWATCH_DIR")
                .env_remove("WALWATCH_STATS_BASE"),
            Duration::from_secs(10),
            &format!("walwatch {args:?}"),
        )
    }

    /// Waits until the sidecar has finished collections for `seconds` more.
    fn wait_collections(sidecar: &Sidecar, seconds: f64) -> String {
        let stamp = |m: &str| sample(m, "walwatch_last_collect_timestamp_seconds");
        let start = stamp(&sidecar.get("/metrics")).unwrap();
        wait_for("later collections", || {
            let m = sidecar.get("/metrics");
            (stamp(&m)? > start + seconds).then_some(m)
        })
    }

    fn status_json(sidecar: &Sidecar) -> serde_json::Value {
        serde_json::from_str(&sidecar.get("/status")).unwrap()
    }

    fn bad_files(status: &serde_json::Value) -> Vec<(String, String, String)> {
        status["bad_stats_files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let s = |k: &str| b[k].as_str().unwrap().to_owned();
                (s("path"), s("reason"), s("message"))
            })
            .collect()
    }

    /// A synthetic stats file for `db` in `dir` (counters from `seed`), owned by root.
    fn stats_file_for(dir: &Path, db: &Path, seed: u64) -> PathBuf {
        let bytes = db.as_os_str().as_encoded_bytes();
        let file = dir.join(walwatch::paths::stats_file_name(bytes));
        std::fs::write(&file, synth::stats_file(bytes, seed)).unwrap();
        file
    }

    /// [`stats_file_for`], owned by `uid` (0600), as the shim of that user leaves it.
    fn users_stats_file(dir: &Path, db: &Path, seed: u64, uid: u32) -> PathBuf {
        let file = stats_file_for(dir, db, seed);
        chown(&file, uid, 0o600);
        file
    }

    /// `<base>/walwatch-<uid>`, created, owned by `owner` (0700).
    fn user_dir(base: &Path, uid: u32, owner: u32) -> PathBuf {
        let dir = base.join(format!("walwatch-{uid}"));
        std::fs::create_dir_all(&dir).unwrap();
        chown(&dir, owner, 0o700);
        dir
    }

    /// A synthetic WAL database `<dir>/<name>`, owned by `uid` (0600) unless root.
    fn database(dir: &TempDir, name: &str, uid: u32) -> PathBuf {
        let db = dir.path(name);
        std::fs::write(&db, synth::database(true)).unwrap();
        if uid != 0 {
            chown(&db, uid, 0o600);
        }
        db
    }

    /// Root's database `a.db`, with its stats file in root's `<base>/walwatch-0`.
    fn roots_database(dir: &TempDir, base: &Path) -> PathBuf {
        let a = database(dir, "a.db", 0);
        stats_file_for(&user_dir(base, 0, 0), &a, 1);
        a
    }

    /// The paths of the databases `/status` lists.
    fn database_paths(status: &serde_json::Value) -> Vec<&str> {
        status["databases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].as_str().unwrap())
            .collect()
    }

    /// Attack 5: a FIFO named `*.walwatch`, a FIFO as a database's `-shm` and a FIFO passed as
    /// `--db` used to hang `walwatch status` and `serve` (at startup, `serve` never answered).
    #[test]
    fn attack5_fifos_never_stall_status_or_serve() {
        let dir = TempDir::new("fifo");
        let stats = dir.path("stats");
        std::fs::create_dir_all(&stats).unwrap();
        mkfifo(&stats.join("x.walwatch"));
        let db = dir.path("a.db");
        std::fs::write(&db, synth::database(true)).unwrap();
        mkfifo(&dir.path("a.db-shm"));
        let fifo_db = dir.path("fifo.db");
        mkfifo(&fifo_db);
        let (stats_s, db_s, fifo_s) = (
            stats.to_str().unwrap(),
            db.to_str().unwrap(),
            fifo_db.to_str().unwrap(),
        );

        let out = run_within(&["status", "--stats-dir", stats_s, fifo_s, db_s]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(
            stdout.contains("DOWN: database file is a FIFO, not a regular file"),
            "{stdout}"
        );
        assert!(stdout.contains("-shm is a FIFO"), "{stdout}");
        assert!(
            stderr.contains("x.walwatch") && stderr.contains("it is a FIFO"),
            "{stderr}"
        );
        no_panic(&stderr);
        let out = run_within(&["status", "--stats-dir", stats_s]);
        assert!(text(&out.stderr).contains("it is a FIFO"));

        // serve answers (its first collection is done before it listens) and keeps collecting.
        let sidecar = Sidecar::start(
            &dir,
            &[
                "--stats-dir",
                stats_s,
                "--db",
                fifo_s,
                "--db",
                db_s,
                "--interval",
                "100ms",
                "--controller",
                "off",
            ],
        );
        let status = status_json(&sidecar);
        let bad = bad_files(&status);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].1, "not_regular");
        let error_of = |p: &Path| {
            status["databases"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["path"] == p.to_str().unwrap())
                .map(|d| d["error"].as_str().unwrap_or_default().to_owned())
                .unwrap()
        };
        assert!(error_of(&fifo_db).contains("FIFO"), "{status}");
        assert!(error_of(&db).contains("-shm is a FIFO"), "{status}");
        let good = dir.path("good.db");
        std::fs::write(&good, synth::database(true)).unwrap();
        stats_file_for(&stats, &good, 2);
        let up = format!("walwatch_up{{db=\"{}\"}}", good.display());
        wait_for("a later collection to find a new database", || {
            (sample(&sidecar.get("/metrics"), &up)? == 1.0).then_some(())
        });
        assert_eq!(
            sample(
                &sidecar.get("/metrics"),
                "walwatch_stats_file_errors{reason=\"not_regular\"}"
            ),
            Some(1.0)
        );
        no_panic(&sidecar.log());
    }

    /// Attack 5: a symlink to `/dev/zero` and a sparse 2 GiB file named `*.walwatch` cost
    /// gigabytes per collection when read whole. Now: refused from `lstat`/`fstat`, unread.
    #[test]
    fn attack5_dev_zero_link_and_sparse_file_are_skipped_unread() {
        let dir = TempDir::new("zero");
        let stats = dir.path("stats");
        std::fs::create_dir_all(&stats).unwrap();
        std::os::unix::fs::symlink("/dev/zero", stats.join("zero.walwatch")).unwrap();
        let big = std::fs::File::create(stats.join("big.walwatch")).unwrap();
        big.set_len(2 << 30).unwrap();
        let stats_s = stats.to_str().unwrap();

        let out = run_within(&["status", "--stats-dir", stats_s]);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("zero.walwatch: not read: it is a symbolic link"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("big.walwatch: not read: {} bytes", 2u64 << 30)),
            "{stderr}"
        );

        let sidecar = Sidecar::start(&dir, &["--stats-dir", stats_s, "--interval", "100ms"]);
        let metrics = wait_collections(&sidecar, 1.0);
        for reason in ["not_regular", "wrong_size"] {
            let name = format!("walwatch_stats_file_errors{{reason=\"{reason}\"}}");
            assert_eq!(sample(&metrics, &name), Some(1.0), "{metrics}");
        }
        let proc_status =
            std::fs::read_to_string(format!("/proc/{}/status", sidecar.pid())).unwrap();
        let peak_kib: u64 = proc_status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        eprintln!("walwatch serve peak RSS after 10+ collections: {peak_kib} KiB");
        assert!(peak_kib < 200 << 10, "peak RSS {peak_kib} KiB");
    }

    /// A real WAL database owned by root with ~200 frames pending, kept open by a plain
    /// `sqlite3` (so the WAL is not checkpointed on close).
    fn root_database_with_a_wal(dir: &TempDir) -> (PathBuf, Shell, u64) {
        let db = dir.path("secret.db");
        let mut writer = Shell::open(&db);
        writer.run(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x);\n\
             WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<200)\n\
             INSERT INTO t SELECT randomblob(1000) FROM c;",
        );
        let wal = std::fs::metadata(dir.path("secret.db-wal")).unwrap().len();
        assert!(wal > 100_000, "WAL of {wal} bytes");
        (db, writer, wal)
    }

    /// Attack 4: a user writes a valid stats file naming root's database into their own
    /// per-user directory. A root sidecar used to checkpoint it and publish its path; `/status`
    /// said whether a root-only path existed. Now: no checkpoint, no path, one message for a
    /// database that exists and one that does not; named with `--db`, it is watched.
    #[test]
    fn attack4_forged_stats_file_causes_no_checkpoint_and_names_nothing() {
        if skip_unless_root("chown to another uid") {
            return;
        }
        let dir = TempDir::new("forged");
        let (db, _writer, wal_before) = root_database_with_a_wal(&dir);
        let base = dir.path("shm");
        let users = user_dir(&base, 65534, 65534);
        users_stats_file(&users, &db, 3, 65534);
        let missing = dir.path("no-such-dir/missing.db");
        users_stats_file(&users, &missing, 3, 65534);
        let wal_len = || std::fs::metadata(dir.path("secret.db-wal")).unwrap().len();
        let base_s = base.to_str().unwrap();
        let low_limits = [
            "--stats-base",
            base_s,
            "--interval",
            "100ms",
            "--soft-limit",
            "4KiB",
            "--hard-limit",
            "8KiB",
        ];

        let sidecar = Sidecar::start(&dir, &low_limits);
        let metrics = wait_collections(&sidecar, 1.0);
        let status = sidecar.get("/status");
        let db_s = db.to_str().unwrap();
        for (what, text) in [
            ("/metrics", &metrics),
            ("/status", &status),
            ("log", &sidecar.log()),
        ] {
            assert!(!text.contains(db_s), "{what} names the database: {text}");
            assert!(!text.contains(missing.to_str().unwrap()), "{what}: {text}");
        }
        assert_eq!(
            wal_len(),
            wal_before,
            "the forged stats file caused a checkpoint"
        );
        assert!(
            !metrics.contains("walwatch_controller_actions_total{"),
            "{metrics}"
        );
        assert_eq!(
            sample(&metrics, "walwatch_stats_file_errors{reason=\"not_owner\"}"),
            Some(2.0)
        );
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        let bad = bad_files(&status);
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad.iter().all(|b| b.1 == "not_owner"), "{bad:?}");
        assert_eq!(
            bad[0].2, bad[1].2,
            "the message tells existing from missing"
        );
        assert_eq!(status["databases"].as_array().unwrap().len(), 0, "{status}");
        drop(sidecar);

        // The same database named by the operator: watched and checkpointed, and the forged
        // counters are not attached to it.
        let mut args = low_limits.to_vec();
        args.extend(["--db", db_s]);
        let sidecar = Sidecar::start(&dir, &args);
        wait_for("the operator's database to be checkpointed", || {
            (wal_len() == 0).then_some(())
        });
        let status = status_json(&sidecar);
        let state = &status["databases"][0];
        assert_eq!(state["path"], db_s, "{status}");
        assert_eq!(state["sources"], serde_json::json!(["path"]), "{status}");
        assert_eq!(bad_files(&status).len(), 2);
    }

    /// Per-user discovery: without `--stats-dir`, every `<base>/walwatch-<uid>` is read when it
    /// is owned by that uid (or root); one owned by someone else is refused and reported; a
    /// user's directory made after the sidecar started is found at a later collection.
    #[test]
    fn per_user_directories_are_found_checked_and_rescanned() {
        if skip_unless_root("chown to other uids") {
            return;
        }
        let dir = TempDir::new("peruser");
        let base = dir.path("shm");
        let a = roots_database(&dir, &base);
        // Named for uid 4242, owned by 4243: refused whatever it holds.
        let b = database(&dir, "b.db", 4242);
        users_stats_file(&user_dir(&base, 4242, 4243), &b, 1, 4242);
        let base_s = base.to_str().unwrap();

        let sidecar = Sidecar::start(
            &dir,
            &[
                "--stats-base",
                base_s,
                "--interval",
                "100ms",
                "--controller",
                "off",
            ],
        );
        let status = status_json(&sidecar);
        assert_eq!(status["stats_dirs"]["kind"], "per_user", "{status}");
        let paths = database_paths(&status);
        assert_eq!(paths, vec![a.to_str().unwrap()], "{status}");
        let bad = bad_files(&status);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(
            bad[0].0.ends_with("walwatch-4242") && bad[0].1 == "dir_refused",
            "{bad:?}"
        );
        assert!(
            bad[0].2.contains("owned by uid 4243, not uid 4242"),
            "{bad:?}"
        );
        assert!(
            sidecar.log().contains("per-user directories"),
            "{}",
            sidecar.log()
        );

        // A new user's directory and database, made while the sidecar runs.
        let c = database(&dir, "c.db", 65534);
        users_stats_file(&user_dir(&base, 65534, 65534), &c, 4, 65534);
        let up = format!("walwatch_up{{db=\"{}\"}}", c.display());
        wait_for("the new user's database", || {
            (sample(&sidecar.get("/metrics"), &up)? == 1.0).then_some(())
        });

        let out = run_within(&["status", "--stats-base", base_s]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(stdout.contains(a.to_str().unwrap()) && stdout.contains(c.to_str().unwrap()));
        assert!(!stdout.contains(b.to_str().unwrap()), "{stdout}");
        assert!(
            stderr.contains("walwatch-4242: stats directory refused"),
            "{stderr}"
        );
    }

    /// Zero configuration on a single-user host: an application sets no `WALWATCH_DIR`, so the
    /// shim writes to its user's `/dev/shm/walwatch-<uid>`; `walwatch status` and `walwatch
    /// serve` with no flags find the database there.
    #[test]
    fn zero_configuration_finds_the_shims_per_user_directory() {
        let lib = extension();
        let dir = TempDir::new("zeroconf");
        let db = dir.path("zeroconf.db");
        let mut child = Command::new("/usr/bin/python3")
            .args([
                "-c",
                PYTHON_WRITER,
                lib.with_extension("").to_str().unwrap(),
                db.to_str().unwrap(),
            ])
            .env_remove("WALWATCH_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("/usr/bin/python3");
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let _python = Proc(child);
        writeln!(stdin, "10").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "written", "python writer failed");
        /// Removes the stats file this test made in the real per-user directory.
        struct Remove(PathBuf);
        impl Drop for Remove {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        let stats_file = walwatch::paths::default_stats_dir().join(
            walwatch::paths::stats_file_name(db.as_os_str().as_encoded_bytes()),
        );
        let _remove = Remove(stats_file.clone());
        assert!(stats_file.exists(), "{} missing", stats_file.display());

        let out = run_within(&["status"]);
        let report = text(&out.stdout);
        assert!(
            report.contains(db.to_str().unwrap()),
            "{report}{}",
            text(&out.stderr)
        );

        let sidecar = Sidecar::start(&dir, &["--controller", "off"]);
        let up = format!("walwatch_up{{db=\"{}\"}}", db.display());
        assert_eq!(sample(&sidecar.get("/metrics"), &up), Some(1.0));
    }

    /// A sidecar that is not root reads the per-user directories it may open and skips the
    /// others (private 0700 directories of other users) quietly, counting them in `/status`.
    #[test]
    fn non_root_sidecar_skips_other_users_directories_quietly() {
        if skip_unless_root("another uid") {
            return;
        }
        let dir = TempDir::new("nonroot");
        let base = dir.path("shm");
        roots_database(&dir, &base);
        let c = database(&dir, "c.db", 65534);
        users_stats_file(&user_dir(&base, 65534, 65534), &c, 4, 65534);

        let sidecar = Sidecar::start_as(
            &dir,
            Some(65534),
            &[
                "--stats-base",
                base.to_str().unwrap(),
                "--controller",
                "off",
            ],
        );
        let status = status_json(&sidecar);
        let paths = database_paths(&status);
        assert_eq!(paths, vec![c.to_str().unwrap()], "{status}");
        assert_eq!(status["unreadable_stats_dirs"], 1, "{status}");
        assert!(bad_files(&status).is_empty(), "{status}");
        assert!(!sidecar.log().contains("walwatch-0"), "{}", sidecar.log());
    }

    /// The other side of attack 4: a database its owner names in their own stats file is in
    /// reach, and a root sidecar checkpoints it (the child checks the owner again).
    #[test]
    fn attack4_owners_own_stats_file_is_acted_on() {
        if skip_unless_root("chown to another uid") {
            return;
        }
        let dir = TempDir::new("owned");
        let (db, _writer, _) = root_database_with_a_wal(&dir);
        for suffix in ["", "-wal", "-shm"] {
            let f = dir.path(&format!("secret.db{suffix}"));
            std::os::unix::fs::chown(&f, Some(65534), Some(65534)).unwrap();
        }
        let base = dir.path("shm");
        users_stats_file(&user_dir(&base, 65534, 65534), &db, 3, 65534);
        let sidecar = Sidecar::start(
            &dir,
            &[
                "--stats-base",
                base.to_str().unwrap(),
                "--interval",
                "100ms",
                "--soft-limit",
                "4KiB",
                "--hard-limit",
                "8KiB",
            ],
        );
        let wal = dir.path("secret.db-wal");
        wait_for("the owner's database to be checkpointed", || {
            (std::fs::metadata(&wal).unwrap().len() == 0).then_some(())
        });
        let status = status_json(&sidecar);
        let state = &status["databases"][0];
        assert_eq!(state["path"], db.to_str().unwrap(), "{status}");
        assert_eq!(state["sources"], serde_json::json!(["shim"]), "{status}");
        assert!(bad_files(&status).is_empty(), "{status}");
    }
}

//! The pieces every attack scenario shares: two unprivileged users, a private mount namespace
//! per scenario, commands run as a user with a bound on how long they may take, file contents
//! to compare before and after, forged stats files, and a root sidecar on a free port.

pub use walwatch_tests::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long anything may take before it counts as hung: generous, since a hang is forever.
pub const HANG: Duration = Duration::from_secs(20);
/// How long a whole scenario may take in its namespace.
const SCENARIO_LIMIT: Duration = Duration::from_secs(240);
/// Set (to the test's name) in the copy of the test binary that runs inside the namespace.
const INSIDE: &str = "WALWATCH_ATTACK_SCENARIO";
/// The two unprivileged users: the victim, then the attacker.
const USERS: [&str; 2] = ["walwatch-victim", "walwatch-attacker"];
/// Mounted fresh in every scenario's namespace: `/srv` holds the users' databases (and the
/// root-only `/srv/secret`), `/dev/shm` the stats directories.
const NAMESPACE_SETUP: &str = "set -e; mkdir -p /srv; \
    mount -t tmpfs -o size=512m,mode=1777 walwatch-attack-shm /dev/shm; \
    mount -t tmpfs -o size=512m,mode=0755 walwatch-attack-srv /srv; \
    exec \"$@\"";

/// Runs `body` as root in a private mount namespace with its own `/dev/shm` and `/srv`.
///
/// The test re-runs itself (the same test binary, this test only) under `unshare -m`; the copy
/// inside runs `body`, and the test passes when that copy passes. Everything the scenario
/// creates vanishes with the namespace. Skips, loudly, when not run as root.
pub fn isolated(body: impl FnOnce(&Scene)) {
    let test = std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .expect("libtest runs each test on a thread named after it")
        .to_string();
    // SAFETY: geteuid takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        // Straight to stderr, past libtest's capture: a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED {test}: the attack suite needs root (it creates users and mount \
             namespaces). Run it as root, as CI does. ***\n"
        );
        return;
    }
    if std::env::var(INSIDE).as_deref() == Ok(test.as_str()) {
        body(&Scene::new());
        return;
    }
    // Users are created here, by one process, so parallel scenarios never race on useradd.
    for name in USERS {
        User::get(name);
    }
    let exe = std::env::current_exe().expect("path of this test binary");
    let out = bounded_for(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "--", "sh", "-c"])
            .arg(NAMESPACE_SETUP)
            .arg("sh")
            .arg(exe)
            .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env(INSIDE, &test),
        &format!("scenario {test} in its namespace"),
        SCENARIO_LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "scenario {test} failed in its namespace ({}): see its output above",
        out.status
    );
}

/// One scenario's world: the two users, the tools copied where both can run them, and the
/// users' database directories `/srv/victim` and `/srv/attacker` (each owned by its user, 0755).
pub struct Scene {
    /// Root, run through the same `setpriv` path (for root's own applications).
    pub root: User,
    pub victim: User,
    pub attacker: User,
    /// The extension without its `.so` suffix, as `load_extension` takes it.
    ext: PathBuf,
    client: PathBuf,
}

impl Scene {
    fn new() -> Self {
        let [victim, attacker] = USERS.map(User::get);
        // The users run copies on the namespace's tmpfs: nothing depends on the checkout's modes.
        let bin = Path::new("/srv/bin");
        std::fs::create_dir_all(bin).unwrap();
        let ext = bin.join("libwalwatch.so");
        std::fs::copy(built("libwalwatch.so"), &ext).expect("copy libwalwatch.so");
        let client = bin.join("attack_client.py");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("attack_client.py"),
            &client,
        )
        .expect("copy attack_client.py");
        for f in [&ext, &client] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let root = User::get("root");
        for user in [&root, &victim, &attacker] {
            let home = user.home();
            std::fs::create_dir_all(&home).unwrap();
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
            chown(&home, user.uid, user.gid);
        }
        Self {
            root,
            victim,
            attacker,
            ext: ext.with_extension(""),
            client,
        }
    }

    /// The attack client (`tests/attack_client.py`) as `user`, with the shim loaded (unless the
    /// arguments say `--no-shim`) and `WALWATCH_DIR` set only when `stats_dir` is given.
    pub fn client(&self, user: &User, stats_dir: Option<&Path>, args: &[&str]) -> Command {
        let mut cmd = user.command("/usr/bin/python3");
        cmd.arg(&self.client)
            .args(args)
            .env("WALWATCH_EXT", &self.ext);
        if let Some(dir) = stats_dir {
            cmd.env("WALWATCH_DIR", dir);
        }
        cmd
    }

    /// Runs the client to completion (bounded) and asserts it succeeded; returns its stdout lines.
    pub fn run_client(&self, user: &User, stats_dir: Option<&Path>, args: &[&str]) -> Vec<String> {
        let out = bounded(
            &mut self.client(user, stats_dir, args),
            &format!("{} running {args:?}", user.name),
        );
        assert_success(&out, &format!("{} running {args:?}", user.name));
        lines(&out.stdout)
    }

    /// Reopens databases as their owner and returns `(integrity_check, rows)` of each.
    pub fn verify(
        &self,
        owner: &User,
        stats_dir: Option<&Path>,
        dbs: &[&Path],
    ) -> Vec<(String, u64)> {
        let mut args = vec!["verify"];
        args.extend(dbs.iter().map(|p| p.to_str().unwrap()));
        self.run_client(owner, stats_dir, &args)
            .iter()
            .map(|line| {
                let (check, rows) = line.rsplit_once(' ').expect("'check rows'");
                (check.to_string(), rows.parse().expect("a row count"))
            })
            .collect()
    }
}

/// An unprivileged system user, created on first use (and left in place: creating it is
/// idempotent).
pub struct User {
    pub name: &'static str,
    pub uid: u32,
    pub gid: u32,
}

impl User {
    fn get(name: &'static str) -> Self {
        static CREATE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = CREATE.lock().unwrap_or_else(|e| e.into_inner());
        if id(name, "-u").is_none() {
            let out = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    name,
                ])
                .output()
                .expect("run useradd");
            // Another test binary may have created it meanwhile (exit 9: already exists).
            assert!(
                out.status.success() || out.status.code() == Some(9),
                "useradd {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let uid = id(name, "-u").unwrap_or_else(|| panic!("user {name} exists"));
        let gid = id(name, "-g").unwrap_or_else(|| panic!("user {name} has a group"));
        Self { name, uid, gid }
    }

    /// `program` run as this user (real and effective ids, no supplementary groups), with a
    /// minimal environment, in its own process group.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--clear-groups", "--", program])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/")
            .current_dir("/srv");
        cmd
    }

    /// Runs a shell script as this user (`$1`, `$2`… are `args`), bounded; returns its output.
    pub fn sh(&self, script: &str, args: &[&str]) -> Output {
        bounded(
            self.command("/bin/sh")
                .args(["-c", script, "sh"])
                .args(args),
            &format!("{} running `{script}`", self.name),
        )
    }

    /// Like [`User::sh`], and asserts the script succeeded.
    pub fn sh_ok(&self, script: &str, args: &[&str]) -> Vec<String> {
        let out = self.sh(script, args);
        assert_success(&out, &format!("{} running `{script}` {args:?}", self.name));
        lines(&out.stdout)
    }

    /// Writes `bytes` to `path` as this user, as a program of theirs would, with `mode`.
    pub fn write_file(&self, path: &Path, bytes: &[u8], mode: &str) {
        let mut child = self
            .command("/bin/sh")
            .args([
                "-c",
                "umask 077 && cat > \"$1\" && chmod \"$2\" \"$1\"",
                "sh",
            ])
            .arg(path)
            .arg(mode)
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "{} could not write {}",
            self.name,
            path.display()
        );
    }

    /// This user's database directory, `/srv/<name without walwatch->` (`/srv/root` for root).
    pub fn home(&self) -> PathBuf {
        Path::new("/srv").join(self.name.trim_start_matches("walwatch-"))
    }

    /// A database path in [`User::home`].
    pub fn db(&self, name: &str) -> PathBuf {
        self.home().join(name)
    }

    /// This user's default stats directory, `/dev/shm/walwatch-<uid>`.
    pub fn default_stats_dir(&self) -> PathBuf {
        walwatch::paths::per_user_dir(Path::new("/dev/shm"), self.uid)
    }
}

fn id(name: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, name]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

pub fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// Where the shim would put `db`'s stats file in `dir`: the name is derived from the path,
/// so anyone can predict it.
pub fn predicted_stats_file(dir: &Path, db: &Path) -> PathBuf {
    dir.join(walwatch::paths::stats_file_name(
        db.to_str().unwrap().as_bytes(),
    ))
}

/// Runs `cmd` to completion with stdin closed, killing it (and its process group) and failing
/// the test if it takes longer than [`HANG`].
pub fn bounded(cmd: &mut Command, what: &str) -> Output {
    bounded_for(cmd, what, HANG)
}

fn bounded_for(cmd: &mut Command, what: &str, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            kill_group(&mut child);
            let err = stderr
                .recv_timeout(Duration::from_secs(2))
                .unwrap_or_default();
            panic!(
                "{what}: HUNG, still running after {limit:?}; stderr so far:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Whatever it left behind in its group must not hold the pipes open.
    // SAFETY: kill with a negative pid signals that process group; no memory is involved.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let take = |rx: mpsc::Receiver<Vec<u8>>| rx.recv_timeout(HANG).unwrap_or_default();
    Output {
        status,
        stdout: take(stdout),
        stderr: take(stderr),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

fn kill_group(child: &mut Child) {
    // SAFETY: kill with a negative pid signals the child's process group (it leads it).
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
}

pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: exited with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A process the test talks to line by line; it and its process group are killed on drop.
pub struct Running {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<Vec<u8>>,
}

impl Running {
    pub fn spawn(cmd: &mut Command, what: &str) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
        let (tx, lines) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            what: what.to_string(),
            stdin: child.stdin.take(),
            stderr: drain(child.stderr.take().unwrap()),
            child,
            lines,
        }
    }

    /// The next stdout line, which must start with `prefix`; fails if none comes within
    /// [`HANG`] (the process hung, or died: its exit status is shown).
    pub fn expect_line(&mut self, prefix: &str) -> String {
        match self.lines.recv_timeout(HANG) {
            Ok(line) if line.starts_with(prefix) => line,
            Ok(line) => panic!("{}: expected `{prefix}…`, got `{line}`", self.what),
            Err(_) => {
                let status = self.child.try_wait().unwrap();
                let err = self.stderr.recv_timeout(Duration::from_millis(500));
                panic!(
                    "{}: no `{prefix}` line within {HANG:?} (exit status: {}); stderr: {}",
                    self.what,
                    status.map_or("still running: HUNG".into(), |s| s.to_string()),
                    String::from_utf8_lossy(&err.unwrap_or_default())
                )
            }
        }
    }

    /// The next stdout line, or `None` when the process ends (or prints nothing) within [`HANG`].
    pub fn next_line(&mut self) -> Option<String> {
        self.lines.recv_timeout(HANG).ok()
    }

    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").unwrap_or_else(|e| panic!("{}: write stdin: {e}", self.what));
        stdin.flush().unwrap();
    }

    /// Waits (bounded) for the process to exit; returns its status and remaining stdout lines.
    pub fn finish(mut self) -> (ExitStatus, Vec<String>) {
        self.stdin = None;
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                start.elapsed() < HANG,
                "{}: HUNG, still running after {HANG:?}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let rest = std::iter::from_fn(|| self.lines.recv_timeout(Duration::from_secs(2)).ok());
        let rest: Vec<String> = rest.collect();
        if !status.success() {
            let err = self.stderr.recv_timeout(Duration::from_secs(2));
            eprintln!(
                "{} exited with {status}; stderr: {}",
                self.what,
                String::from_utf8_lossy(&err.unwrap_or_default())
            );
        }
        (status, rest)
    }

    /// `kill -9`: a crash.
    pub fn kill9(mut self) {
        kill_group(&mut self.child);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// A file's bytes, or `None` when it does not exist: compared before and after an attack.
pub fn contents(path: &Path) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("read {}: {e}", path.display()),
    }
}

/// Compares contents taken with [`contents`].
pub fn assert_unchanged(path: &Path, before: &Option<Vec<u8>>, after: &Option<Vec<u8>>) {
    assert!(
        after == before,
        "{} changed: {} before, {} after (a file outside the stats directory must not be \
         touched)",
        path.display(),
        before
            .as_ref()
            .map_or("absent".into(), |b| format!("{} bytes", b.len())),
        after
            .as_ref()
            .map_or("absent".into(), |b| format!("{} bytes", b.len())),
    );
}

/// Size and modification time: what a checkpoint of a WAL would change.
pub fn size_and_mtime(path: &Path) -> (u64, i64, i64) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.len(), m.mtime(), m.mtime_nsec())
}

/// A well-formed stats file (layout version 1) naming `db_path`, as an attacker builds one by
/// hand. With `reader_pid`, its reader table shows that pid holding READ1 at read mark 1 for
/// an hour: a forged blocker.
pub fn forged_stats_file(db_path: &[u8], reader_pid: Option<u32>) -> Vec<u8> {
    use std::mem::offset_of;
    use walwatch::layout::{Header, ReaderEntry, Region, MAGIC, REGION_SIZE, VERSION};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let mut b = vec![0u8; REGION_SIZE];
    let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
    put(offset_of!(Header, version), &VERSION.to_ne_bytes());
    put(
        offset_of!(Header, size),
        &(REGION_SIZE as u32).to_ne_bytes(),
    );
    let created = (now - Duration::from_secs(2 * 3600)).as_nanos() as u64;
    put(offset_of!(Header, created_unix_ns), &created.to_ne_bytes());
    put(
        offset_of!(Header, db_path_len),
        &(db_path.len() as u32).to_ne_bytes(),
    );
    put(offset_of!(Header, db_path), db_path);
    if let Some(pid) = reader_pid {
        let entry = offset_of!(Region, readers);
        put(entry + offset_of!(ReaderEntry, pid), &pid.to_ne_bytes());
        put(
            entry + offset_of!(ReaderEntry, read_slot),
            &2u32.to_ne_bytes(),
        );
        put(
            entry + offset_of!(ReaderEntry, read_mark),
            &1u32.to_ne_bytes(),
        );
        let since = (now - Duration::from_secs(3600)).as_nanos() as u64;
        put(
            entry + offset_of!(ReaderEntry, since_unix_ns),
            &since.to_ne_bytes(),
        );
    }
    // The magic last, as the shim writes it.
    put(offset_of!(Header, magic), &MAGIC);
    b
}

/// `walwatch serve` as root on a free loopback port; killed on drop. Its log goes to a file
/// in `/srv`.
pub struct Sidecar {
    serve: Serve,
}

impl Sidecar {
    /// Starts it with `args` (after `--listen` and a 500 ms interval) and waits, bounded, for
    /// `/healthz` to answer.
    pub fn start(args: &[&str]) -> Self {
        let mut all = vec!["--interval", "500ms"];
        all.extend_from_slice(args);
        let sidecar = Self {
            serve: Serve::start(Path::new("/srv"), &all),
        };
        sidecar.wait_for("/healthz to answer at startup", |s| {
            s.get("/healthz").is_some()
        });
        sidecar
    }

    /// The body of a 2xx answer to `GET path`, else `None`.
    pub fn get(&self, path: &str) -> Option<String> {
        http_get(&self.serve.url("http", path), &[])
    }

    pub fn status_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/status").expect("/status answers"))
            .expect("/status is JSON")
    }

    /// Polls `ok` every 100 ms; fails the test if it is not true within [`HANG`].
    pub fn wait_for(&self, what: &str, mut ok: impl FnMut(&Self) -> bool) {
        let start = Instant::now();
        while !ok(self) {
            assert!(
                start.elapsed() < HANG,
                "waited {HANG:?} for {what}; sidecar log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `n` more collections have finished (as `/status` reports them).
    pub fn wait_collections(&self, n: usize) {
        let collected = |s: &Self| s.status_json()["collected_unix_seconds"].as_f64();
        let mut last = collected(self);
        for i in 0..n {
            self.wait_for(&format!("collection {} of {n}", i + 1), |s| {
                let now = collected(s);
                let newer = now.is_some() && now != last;
                if newer {
                    last = now;
                }
                newer
            });
        }
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.serve.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }

    pub fn log_text(&self) -> String {
        self.serve.log()
    }
}

/// `walwatch <args>` as root, bounded.
pub fn walwatch(args: &[&str]) -> Output {
    bounded(
        Command::new(WALWATCH).args(args).env_remove("WALWATCH_DIR"),
        &format!("walwatch {args:?}"),
    )
}

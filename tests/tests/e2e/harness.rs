//! Shared helpers: where the extension is, a scratch directory per test, and runners for the
//! sqlite3 shell and the Python worker (`tests/worker.py`).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub use walwatch_tests::{extension, sidecar_binary, workspace_root};

pub fn worker_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("worker.py")
}

/// A scratch directory with its own stats directory.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub stats_dir: PathBuf,
}

impl Scratch {
    /// A scratch directory on tmpfs when there is one, for tests whose writers run flat out:
    /// on this VM's disk, writeback of what earlier tests wrote stalls syscalls for seconds, and
    /// such a test would measure the disk (the README reports disk figures separately).
    pub fn on_tmpfs() -> Self {
        let shm = Path::new("/dev/shm");
        match tempfile::tempdir_in(shm) {
            Ok(dir) if shm.is_dir() => {
                let stats_dir = dir.path().join("stats");
                Self { dir, stats_dir }
            }
            _ => Self::new(),
        }
    }

    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let stats_dir = dir.path().join("stats");
        Self { dir, stats_dir }
    }

    pub fn db(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs the Python worker; `extra` are extra arguments after the database.
    pub fn python(&self, command: &str, db: &Path, extra: &[&str]) -> Output {
        self.python_command(command, db, extra)
            .output()
            .expect("run /usr/bin/python3")
    }

    /// Starts the Python worker with piped stdin/stdout.
    pub fn spawn_python(&self, command: &str, db: &Path, extra: &[&str]) -> Child {
        self.python_command(command, db, extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn /usr/bin/python3")
    }

    pub fn python_command(&self, command: &str, db: &Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(worker_script()).arg(command).arg(db).args(extra);
        cmd.env("WALWATCH_EXT", extension())
            .env("WALWATCH_DIR", &self.stats_dir);
        cmd
    }

    /// Runs the `sqlite3` shell with `script` on stdin; returns (stdout, stderr).
    pub fn shell(&self, script: &str) -> (String, String) {
        self.shell_with_dir(script, &self.stats_dir)
    }

    pub fn shell_with_dir(&self, script: &str, stats_dir: &Path) -> (String, String) {
        use std::io::Write;
        let mut child = Command::new("sqlite3")
            .env("WALWATCH_DIR", stats_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run sqlite3 (apt-get install sqlite3)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs a worker command with `--stats`: returns its output lines before the stats, and
    /// `walwatch_stats()` as seen by that process just before it closed the database.
    pub fn python_then_stats(
        &self,
        command: &str,
        db: &Path,
        extra: &[&str],
    ) -> (Vec<String>, Value) {
        let mut args = extra.to_vec();
        args.push("--stats");
        let out = self.python(command, db, &args);
        assert_ok(&out);
        let mut lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
        let stats = lines.pop().expect("a stats line");
        (
            lines,
            serde_json::from_str(&stats).expect("walwatch_stats() is JSON"),
        )
    }
}

pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "process failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads one line from a child's stdout.
pub fn read_line(reader: &mut impl std::io::BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read child stdout");
    line.trim_end().to_string()
}

/// A loopback TCP port free at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `GET url` with curl; the body on a 2xx answer, `None` otherwise (not listening yet, 4xx/5xx).
/// `query` pairs are URL-encoded by curl (`--get --data-urlencode`).
pub fn http_get(url: &str, query: &[(&str, &str)]) -> Option<String> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sf", "--max-time", "10", "--get", url]);
    for (k, v) in query {
        cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
    }
    let out = cmd.output().expect("run curl (apt-get install curl)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

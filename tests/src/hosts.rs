//! The hosts the shim runs in: a scratch directory with its own stats directory, and runners
//! for the `sqlite3` shell and the Python worker (`tests/worker.py`) with the extension loaded.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::{assert_ok, extension, output_with_stdin, stdout, text, TempDir};

pub fn worker_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("worker.py")
}

/// A scratch directory with its own stats directory (`<dir>/stats`, made by the first
/// process that loads the shim, or by [`Scratch::private_stats_dir`]).
pub struct Scratch {
    pub dir: TempDir,
    pub stats_dir: PathBuf,
}

impl Default for Scratch {
    fn default() -> Self {
        Self::in_dir(TempDir::new("scratch"))
    }
}

impl Scratch {
    /// On tmpfs when there is one ([`TempDir::on_tmpfs`]), for tests whose writers run flat out.
    pub fn on_tmpfs() -> Self {
        Self::in_dir(TempDir::on_tmpfs("scratch"))
    }

    pub fn new() -> Self {
        Self::default()
    }

    fn in_dir(dir: TempDir) -> Self {
        let stats_dir = dir.path("stats");
        Self { dir, stats_dir }
    }

    /// Makes the stats directory beforehand, private (0700), as an operator does for
    /// `WALWATCH_DIR`.
    pub fn private_stats_dir(&self) -> &Path {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&self.stats_dir).expect("create the stats directory");
        std::fs::set_permissions(&self.stats_dir, std::fs::Permissions::from_mode(0o700))
            .expect("chmod 0700 the stats directory");
        &self.stats_dir
    }

    /// Gives `cmd` what a host process needs to load the shim and record here:
    /// `WALWATCH_EXT` (the extension, which the Python scripts load) and `WALWATCH_DIR`.
    pub fn env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("WALWATCH_EXT", extension())
            .env("WALWATCH_DIR", &self.stats_dir)
    }

    pub fn db(&self, name: &str) -> PathBuf {
        self.dir.path(name)
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
        self.env(&mut cmd);
        cmd
    }

    /// Runs the `sqlite3` shell with `script` on stdin; returns (stdout, stderr).
    pub fn shell(&self, script: &str) -> (String, String) {
        self.shell_with_dir(script, &self.stats_dir)
    }

    pub fn shell_with_dir(&self, script: &str, stats_dir: &Path) -> (String, String) {
        let out = output_with_stdin(
            Command::new("sqlite3").env("WALWATCH_DIR", stats_dir),
            script.as_bytes(),
        )
        .expect("run sqlite3 (apt-get install sqlite3)");
        (text(&out.stdout), text(&out.stderr))
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

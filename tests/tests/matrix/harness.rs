//! Finding the hosts, creating the virtualenv, running the scenario driver.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The PyPI packages of the matrix, pinned (`tests/matrix-requirements.txt`, which `.ci/run`
/// installs too): the versions the README reports as tested.
pub fn venv_packages() -> Vec<&'static str> {
    include_str!("../../matrix-requirements.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The SQLite version each host must report (`sqlite_version()`), so a test really tests it.
pub fn expected_version(host: &str) -> &'static str {
    match host {
        "python-debian" | "shell" => "3.40.",
        "rusqlite" => "3.50.",
        "apsw" => "3.54.",
        "sqlean" => "3.50.",
        "pysqlite3" => "3.51.",
        other => panic!("unknown host {other}"),
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

pub fn built(name: &str) -> PathBuf {
    let target = workspace_root().join("target");
    ["release", "debug"]
        .iter()
        .map(|profile| target.join(profile).join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| {
            panic!("target/{{release,debug}}/{name} not found: run `cargo build --release` before the tests")
        })
}

/// The extension without its `.so` suffix, as hosts load it.
pub fn extension() -> PathBuf {
    built("libwalwatch.so").with_extension("")
}

pub fn driver() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("matrix_driver.py")
}

/// `target/matrix-venv/bin/python`, creating the virtualenv from Debian's `/usr/bin/python3`
/// (whose `sqlite3` module can load extensions) when it is missing or lacks a package.
pub fn venv_python() -> PathBuf {
    static ONCE: Mutex<bool> = Mutex::new(false);
    let mut ready = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    let venv = workspace_root().join("target/matrix-venv");
    let python = venv.join("bin/python");
    if *ready {
        return python;
    }
    let have = |python: &Path| {
        let loads_extensions = Command::new(python)
            .args([
                "-c",
                "import sqlite3; sqlite3.connect(':memory:').enable_load_extension",
            ])
            .status()
            .is_ok_and(|s| s.success());
        loads_extensions
            && Command::new(python)
                .args(["-m", "pip", "freeze"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).to_lowercase())
                .is_some_and(|listed| {
                    venv_packages()
                        .iter()
                        .all(|p| listed.contains(&p.to_lowercase().replace('_', "-")))
                })
    };
    if !have(&python) {
        let made = Command::new("/usr/bin/python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv)
            .status()
            .expect("run /usr/bin/python3 -m venv");
        assert!(
            made.success(),
            "could not create {}: install Debian's python3-venv (apt-get install python3-venv)",
            venv.display()
        );
        let pip = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(workspace_root().join("tests/matrix-requirements.txt"))
            .status()
            .expect("run pip");
        assert!(
            pip.success(),
            "pip could not install tests/matrix-requirements.txt into {}: the matrix needs PyPI (or run .ci/run once with network)",
            venv.display()
        );
    }
    *ready = true;
    python
}

/// The Python that runs the driver for `host`.
pub fn python_for(host: &str) -> PathBuf {
    match host {
        "python-debian" | "shell" | "rusqlite" => PathBuf::from("/usr/bin/python3"),
        _ => venv_python(),
    }
}

/// A scratch directory with a private stats directory.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub stats_dir: PathBuf,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let stats_dir = dir.path().join("stats");
        std::fs::create_dir(&stats_dir).expect("stats dir");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&stats_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        Self { dir, stats_dir }
    }

    /// Environment every walwatch process of a test gets.
    pub fn env(&self, cmd: &mut Command) {
        cmd.env("WALWATCH_EXT", extension())
            .env("WALWATCH_DIR", &self.stats_dir)
            .env("WALWATCH_SIDECAR", built("walwatch"))
            .env("WALWATCH_RUSQLITE", built("walwatch-matrix-rusqlite"));
    }
}

/// Runs `scenarios` on `host`; returns each scenario's result object by name. Checks that the
/// host reported the SQLite version it is meant to test.
pub fn run(host: &str, scenarios: &[&str]) -> Vec<Value> {
    let s = Scratch::new();
    let mut cmd = Command::new(python_for(host));
    cmd.arg(driver()).arg("run").arg(host).args(scenarios);
    cmd.arg("--dir").arg(s.dir.path());
    s.env(&mut cmd);
    let out = cmd.output().expect("run the matrix driver");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "matrix driver on {host} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{host}: {e}: {l}")))
        .collect();
    assert_eq!(results.len(), scenarios.len(), "{host}: {stdout}");
    for r in &results {
        let version = r["sqlite_version"].as_str().unwrap_or_default();
        assert!(
            version.starts_with(expected_version(host)),
            "{host} runs SQLite {version}, the matrix expects {}x",
            expected_version(host)
        );
    }
    results
}

/// The walwatch record of the checkpoint a scenario ran (the newest).
pub fn record(result: &Value) -> &Value {
    &result["stats"]["checkpoints"]["recent"][0]
}

pub fn triple(result: &Value) -> (u64, u64, u64) {
    let t: Vec<u64> = result["triple"]
        .as_array()
        .expect("triple")
        .iter()
        .map(|v| v.as_u64().expect("a triple of counts"))
        .collect();
    (t[0], t[1], t[2])
}

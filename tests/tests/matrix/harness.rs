//! Finding the hosts, creating the virtualenv, running the scenario driver.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use walwatch_tests::*;

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

pub fn driver() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("matrix_driver.py")
}

/// The Python that runs the driver for `host`.
pub fn python_for(host: &str) -> PathBuf {
    match host {
        "python-debian" | "shell" | "rusqlite" => PathBuf::from("/usr/bin/python3"),
        _ => venv_python(),
    }
}

/// Gives `cmd` what every walwatch process of a matrix test needs: the shim and the stats
/// directory (made private beforehand, as an operator does), and the built sidecar and rusqlite
/// host, which the driver starts itself.
pub fn host_env(s: &Scratch, cmd: &mut Command) {
    s.private_stats_dir();
    s.env(cmd)
        .env("WALWATCH_SIDECAR", WALWATCH)
        .env("WALWATCH_RUSQLITE", built("walwatch-matrix-rusqlite"));
}

/// Runs `scenarios` on `host`; returns each scenario's result object by name. Checks that the
/// host reported the SQLite version it is meant to test.
pub fn run(host: &str, scenarios: &[&str]) -> Vec<Value> {
    let s = Scratch::new();
    let mut cmd = Command::new(python_for(host));
    cmd.arg(driver()).arg("run").arg(host).args(scenarios);
    cmd.arg("--dir").arg(&s.dir.0);
    host_env(&s, &mut cmd);
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

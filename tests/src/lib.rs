//! The one harness of walwatch's integration tests: every test binary of `tests/tests/`
//! (`e2e`, `sidecar`, `controller`, `attacks`, `matrix`) says `use walwatch_tests::*;` and finds
//! here what they share:
//!
//! - this file: where the built artifacts are ([`built`], [`extension`], [`WALWATCH`]; the
//!   tests need `cargo build --release` first, as the README's test command does) and the
//!   version matrix's virtualenv;
//! - [`scratch`]: scratch directories removed when the test ends;
//! - [`process`]: child processes that cannot outlive a test, bounded waits, their output;
//! - [`net`]: free ports, HTTP requests, Prometheus text and `promtool`;
//! - [`serve`]: a running `walwatch serve`; [`prometheus`]: a real Prometheus;
//! - [`hosts`]: a scratch directory with its own stats directory, and runners for the `sqlite3`
//!   shell and the Python worker (`tests/worker.py`).
#![forbid(unsafe_code)]

pub mod hosts;
pub mod net;
pub mod process;
pub mod prometheus;
pub mod scratch;
pub mod serve;

pub use hosts::*;
pub use net::*;
pub use process::*;
pub use prometheus::*;
pub use scratch::*;
pub use serve::*;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Root of the workspace (dashboards/, examples/, target/).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

/// `target/<profile>/<name>` as built by cargo, preferring the release build (what the
/// README's test command builds), then the debug one.
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

/// Path of the built extension without its `.so` suffix, as `.load` and Python take it.
pub fn extension() -> PathBuf {
    built("libwalwatch.so").with_extension("")
}

/// The built sidecar, `target/<profile>/walwatch` (found by [`built`] on first use). It goes
/// wherever a program or a path does: `Command::new(WALWATCH)`, `.env("X", WALWATCH)`;
/// [`SidecarBinary::path`] for the rest.
pub const WALWATCH: SidecarBinary = SidecarBinary;

/// The type of [`WALWATCH`].
#[derive(Clone, Copy, Debug)]
pub struct SidecarBinary;

impl SidecarBinary {
    pub fn path(self) -> &'static Path {
        static PATH: OnceLock<PathBuf> = OnceLock::new();
        PATH.get_or_init(|| built("walwatch"))
    }
}

impl AsRef<OsStr> for SidecarBinary {
    fn as_ref(&self) -> &OsStr {
        self.path().as_os_str()
    }
}

impl AsRef<Path> for SidecarBinary {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

/// The PyPI packages of the matrix, pinned (`tests/matrix-requirements.txt`, which `.ci/run`
/// installs too): the versions the README reports as tested.
pub fn venv_packages() -> Vec<&'static str> {
    include_str!("../matrix-requirements.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
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

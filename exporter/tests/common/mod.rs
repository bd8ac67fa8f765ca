//! What `scale.rs` needs: the built binary, scratch directories, child processes that cannot
//! outlive a test, free ports and bounded waits. Transitional: the sidecar's other integration
//! tests live in `tests/tests/sidecar/`, and the one harness is `walwatch_tests` (`tests/src/`),
//! which offers all of this under the same names; moving `scale.rs` there is a `use` change
//! (`use walwatch_tests::*;` for `mod common; use common::*;`), after which this file goes.
#![allow(dead_code)] // each test binary uses its own part of it

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The sidecar binary cargo built for these tests.
pub const WALWATCH: &str = env!("CARGO_BIN_EXE_walwatch");

/// A scratch directory, removed when dropped: `<base>/walwatch-<test>-<pid>-<name>-<n>`.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// In the temporary directory.
    pub fn new(name: &str) -> Self {
        Self::under(&std::env::temp_dir(), name)
    }

    /// On `/dev/shm` when there is one (many small files, no disk writeback), else like `new`.
    pub fn on_tmpfs(name: &str) -> Self {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            Self::under(shm, name)
        } else {
            Self::new(name)
        }
    }

    fn under(base: &Path, name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let test = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .map(|stem| stem.split('-').next().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let dir = base.join(format!(
            "walwatch-{test}-{}-{name}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (and reaped) when dropped, however the test ends.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback address with a port free at the time of the call.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `limit`: a bound that proves
/// "did not hang", not a timing assertion.
pub fn wait_within<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`wait_within`] 30 s.
pub fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_within(what, Duration::from_secs(30), f)
}

/// `target/<profile>/libwalwatch.so`, (re)built first with `cargo build -p walwatch-vfs --lib`
/// in this test's profile (a no-op when it is up to date).
pub fn extension() -> PathBuf {
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

/// `promtool check metrics` must succeed and print nothing; skipped, with a notice, where
/// promtool is not installed.
pub fn promtool_check(metrics: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
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
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

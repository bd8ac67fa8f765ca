//! A running `walwatch serve`: started the way every sidecar test needs it, on a free port,
//! with its log in a file, and killed when the test ends.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{free_addr, get_body, wait_within, Proc, WALWATCH};

/// A running `walwatch serve` on a loopback port; killed (and reaped) when dropped.
pub struct Serve {
    pub addr: SocketAddr,
    pub proc: Proc,
    /// Its stderr: everything it logged.
    pub log: PathBuf,
}

impl Serve {
    /// `walwatch serve` with `args`; see [`Serve::start_command`].
    pub fn start(log_dir: &Path, args: &[&str]) -> Self {
        Self::start_command(Command::new(WALWATCH), log_dir, args)
    }

    /// Runs `cmd serve --listen <free port> ARGS…` (`cmd` is `walwatch`, perhaps as another
    /// user, or a wrapper such as `prlimit … walwatch`), without `WALWATCH_DIR`, its stderr in
    /// `<log_dir>/walwatch-<port>.log`, and waits until it logs that it serves (after its first
    /// collection) and its port accepts connections: at most 20 s, a "did not hang" bound.
    /// Panics, with the log, when it exits first. The log level is `info` unless `cmd` sets
    /// `WALWATCH_LOG`: the line that says it serves is the sign it is ready (its port accepts
    /// connections from before its first collection, when `/metrics` still answers 503).
    pub fn start_command(mut cmd: Command, log_dir: &Path, args: &[&str]) -> Self {
        if !cmd.get_envs().any(|(key, _)| key == "WALWATCH_LOG") {
            cmd.env("WALWATCH_LOG", "info");
        }
        let addr = free_addr();
        let log = log_dir.join(format!("walwatch-{}.log", addr.port()));
        let stderr = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let child = cmd
            .arg("serve")
            .args(["--listen", &addr.to_string()])
            .args(args)
            .env_remove("WALWATCH_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {cmd:?}: {e} (run `cargo build --release` first)")
            });
        let mut serve = Self {
            addr,
            proc: Proc(child),
            log,
        };
        let what = "walwatch serve to log that it serves (a log level of info or finer)";
        wait_within(what, Duration::from_secs(20), || {
            serve.assert_running();
            (serve.log().contains(" serving ") && TcpStream::connect(addr).is_ok()).then_some(())
        });
        serve
    }

    pub fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.proc.0.try_wait(), Ok(None))
    }

    /// Panics, with its log, when it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.proc.0.try_wait() {
            panic!("walwatch exited with {status}: {}", self.log());
        }
    }

    /// `<scheme>://<addr><path>`.
    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.addr)
    }

    /// The body of a 200 answer to a plain-HTTP `GET path` ([`get_body`]).
    pub fn get(&self, path: &str) -> Option<String> {
        get_body(self.addr, path)
    }
}

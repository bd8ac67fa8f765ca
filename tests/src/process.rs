//! Child processes that cannot outlive a test, bounded waits, and what processes printed.

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (and reaped) when dropped, however the test ends.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

/// Runs `cmd` (stdin closed, stdout and stderr captured) and waits for it at most `limit`: a
/// bound that proves "did not hang". Past it, kills it and fails the test naming `what`.
pub fn output_within(cmd: &mut Command, limit: Duration, what: &str) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    // A thread of its own reads both pipes to the end, so a full pipe cannot stall the child.
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap_or_else(|e| panic!("{what}: {e}")),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{what}: still running after {limit:?}: it hangs");
        }
    }
}

/// Runs `cmd` with `input` on its stdin (closed after it) and its stdout and stderr captured.
/// `Err` when it cannot be started (`NotFound`: not installed) or takes no input.
pub fn output_with_stdin(cmd: &mut Command, input: &[u8]) -> std::io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let written = stdin.write_all(input);
    drop(stdin);
    let out = child.wait_with_output()?;
    written.map(|()| out)
}

/// Panics, with both outputs, unless the process succeeded.
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "process failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Bytes a process wrote, as text (invalid UTF-8 replaced).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a process wrote to stdout, as text.
pub fn stdout(out: &Output) -> String {
    text(&out.stdout)
}

/// Reads one line from a child's stdout, without its line end.
pub fn read_line(reader: &mut impl std::io::BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read child stdout");
    line.trim_end().to_string()
}

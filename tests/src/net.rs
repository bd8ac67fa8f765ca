//! Free ports, HTTP requests to a sidecar, and checks of the Prometheus text it serves.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::{output_with_stdin, text};

/// A loopback address with a port free at the time of the call.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
}

/// A loopback TCP port free at the time of the call.
pub fn free_port() -> u16 {
    free_addr().port()
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

/// A minimal HTTP/1.0 GET over a socket of our own, with an `Accept` header when given:
/// (status line and headers, body). HTTP/1.0, so the body is close-delimited, never chunked.
pub fn raw_get(
    addr: SocketAddr,
    path: &str,
    accept: Option<&str>,
) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    Ok((head.to_owned(), body.to_owned()))
}

/// [`raw_get`]'s body when the answer is 200 OK; `None` otherwise (not listening yet, an
/// error status): what a poll for "serving" needs.
pub fn get_body(addr: SocketAddr, path: &str) -> Option<String> {
    let (head, body) = raw_get(addr, path, None).ok()?;
    head.contains(" 200 ").then_some(body)
}

/// The value of the first sample in Prometheus text whose line starts with `prefix`.
pub fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `promtool check metrics` must succeed and print nothing; skipped, with a notice, where
/// promtool is not installed.
pub fn promtool_check(metrics: &str) {
    let out = match output_with_stdin(
        Command::new("promtool").args(["check", "metrics"]),
        metrics.as_bytes(),
    ) {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("NOTICE: promtool not installed (apt-get install prometheus); skipping `promtool check metrics`");
            return;
        }
        Err(e) => panic!("promtool check metrics: {e}"),
    };
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

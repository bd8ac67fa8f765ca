//! The sidecar (`walwatch`, the `walwatch-exporter` package) as a whole program: each test runs
//! the real binary against real processes, real sockets and real or captured files.
//!
//! - [`golden`]: `/metrics` of captured fixtures equals `tests/fixtures/golden/` (with an
//!   update mode);
//! - [`http`]: the HTTP server under hostile or unusual clients, TLS, basic auth, gzip;
//! - [`hygiene`]: output hygiene and configuration checks (issue 9, attacks 7 and 8);
//! - [`layering`]: the exporter's modules depend on each other one way (reads its sources);
//! - [`processes`]: `walwatch serve` and `walwatch status` against `sqlite3` and Python.
//!
//! Run: `cargo build --release && cargo test --release -p walwatch-tests --test sidecar`.
//! Needs `/usr/bin/sqlite3`, Debian's `/usr/bin/python3`, `curl` and `openssl`; `promtool` and
//! `prometheus` where installed (skipped with a notice otherwise). The harness is the crate's
//! library (`tests/src/`). No assertion depends on timing: waits are bounded polls.
#![forbid(unsafe_code)]

mod golden;
mod http;
mod hygiene;
mod layering;
mod processes;

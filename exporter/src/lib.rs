//! walwatch sidecar: exports what the walwatch VFS shim records (and what any process can see
//! in a database's `-wal` and `-shm` files) as Prometheus metrics, a JSON status and a
//! one-shot report.
//!
//! Map, bottom to top (a module uses only modules on its own layer or below;
//! `tests/tests/sidecar/layering.rs`, in the workspace's test crate, fails on any import circle):
//! 1. data and parsers: [`text`] (escaping, ages) · [`model`] (the `DbState` every output
//!    renders, and every plain-data type the layers above share) · [`sys`] (the only unsafe
//!    code: `fcntl(F_GETLK)`, `F_SETLKW` and `openat`) · [`stats_file`] (reads one stats
//!    file) · [`plausible`] (values that cannot be true);
//! 2. collectors: [`discovery`] (which databases) · [`collect`] (one collector per file);
//! 3. the checkpoint [`controller`] (its rules in `controller::policy`);
//! 4. outputs and the server: [`metrics`] (the catalogue and its exposition) · [`status`]
//!    (`walwatch status`) · [`web`] (the HTTP(S) server: TLS, auth, limits) · [`config`]
//!    (TOML + env + flags) · [`server`] (`walwatch serve`).
#![deny(unsafe_code)]
// Every module but `sys` forbids unsafe code outright (no `allow` inside can undo it).

#[forbid(unsafe_code)]
pub mod collect;
#[forbid(unsafe_code)]
pub mod config;
#[forbid(unsafe_code)]
pub mod controller;
#[forbid(unsafe_code)]
pub mod discovery;
#[forbid(unsafe_code)]
pub mod metrics;
#[forbid(unsafe_code)]
pub mod model;
#[forbid(unsafe_code)]
pub mod plausible;
#[forbid(unsafe_code)]
pub mod server;
#[forbid(unsafe_code)]
pub mod stats_file;
#[forbid(unsafe_code)]
pub mod status;
// Test-only builders: compiled for this crate's unit tests, and for its integration tests and
// benchmark through the `test-support` feature that only its dev-dependency on itself turns on.
// `cargo build` of the sidecar never includes them.
#[cfg(any(test, feature = "test-support"))]
#[forbid(unsafe_code)]
pub mod synth;
#[allow(unsafe_code)]
pub mod sys;
#[forbid(unsafe_code)]
pub mod text;
#[forbid(unsafe_code)]
pub mod web;

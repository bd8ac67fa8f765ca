//! walwatch sidecar: exports what the walwatch VFS shim records (and what any process can see
//! in a database's `-wal` and `-shm` files) as Prometheus metrics, a JSON status and a
//! one-shot report.
//!
//! Map: [`config`] (TOML + env + flags) · [`controller`] (checkpoints that keep WALs bounded) · [`discovery`] (which databases) · [`collect`] (one
//! collector per file) · [`model`] (the `DbState` every output renders) · [`plausible`] (values that cannot be
//! true) · [`metrics`] (the
//! catalogue and its exposition) · [`server`] (`walwatch serve`) · [`web`] (its HTTP(S) server: TLS, auth, limits) · [`status`]
//! (`walwatch status`) · [`sys`] (the only unsafe code: `fcntl(F_GETLK)`, `kill(pid, 0)` and
//! `openat`).
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

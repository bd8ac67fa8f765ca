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

pub mod collect;
pub mod config;
pub mod controller;
pub mod discovery;
pub mod metrics;
pub mod model;
pub mod plausible;
pub mod server;
pub mod status;
pub mod synth;
#[allow(unsafe_code)]
pub mod sys;
pub mod text;
pub mod web;

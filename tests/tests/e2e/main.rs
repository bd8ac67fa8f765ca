//! End-to-end tests of the shim: real `sqlite3` shells and real Python processes, loading the
//! real `libwalwatch.so`, on real files. Needs `cargo build --release` (or `cargo build`) first
//! for the extension, `/usr/bin/sqlite3` and Debian's `/usr/bin/python3`. The harness is the
//! crate's library (`tests/src/`), shared by every test binary.
#![deny(unsafe_code)]

mod checkpoint;
mod crash;
mod examples;
mod holds;
mod prometheus;
mod python;
mod shell;
mod stats_dir;
#[allow(unsafe_code)] // libc calls std does not offer
mod stats_trust;
mod stress;

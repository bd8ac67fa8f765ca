//! End-to-end tests of the shim: real `sqlite3` shells and real Python processes, loading the
//! real `libwalwatch.so`, on real files. Needs `cargo build --release` (or `cargo build`) first
//! for the extension, `/usr/bin/sqlite3` and Debian's `/usr/bin/python3`.

mod harness;

mod checkpoint;
mod crash;
mod examples;
mod prometheus;
mod python;
mod shell;
mod stats_dir;
mod stats_trust;
mod stress;

//! The version matrix: the same checkpoint scenarios (`tests/matrix_driver.py`) on every SQLite
//! that users run walwatch in, each asserting the `(busy, log, checkpointed)` triple that
//! `PRAGMA wal_checkpoint` returned and walwatch's record of that checkpoint side by side; and
//! host programs that must keep working with the extension loaded (datasette, shared cache,
//! load-after-open).
//!
//! Hosts: Debian's SQLite 3.40.1 (the `sqlite3` shell and `/usr/bin/python3`), rusqlite's
//! bundled SQLite (`walwatch-matrix-rusqlite`, registered in-process), and PyPI builds in the
//! virtualenv `target/matrix-venv` (apsw 3.54.x built with `SQLITE_ENABLE_SETLK_TIMEOUT`,
//! sqlean.py 3.50.x, pysqlite3-binary 3.51.x), which the first test creates when missing (needs
//! PyPI; `.ci/run` creates it beforehand). One test per host and scenario group, so a failure
//! names the host. Needs `cargo build --release` first.
#![forbid(unsafe_code)]

mod harness;

mod host_programs;
mod scenarios;

//! The version matrix's rusqlite host: one checkpoint on rusqlite's bundled SQLite, watched
//! in-process through `walwatch_rusqlite::register()` (no loadable extension).
//!
//! `walwatch-matrix-rusqlite DB MODE BUSY_TIMEOUT_MS` prints three lines: `sqlite_version()`,
//! the `PRAGMA wal_checkpoint(MODE)` triple as a JSON array, and `walwatch_stats()` right after.
//! Run by `tests/matrix_driver.py` (host `rusqlite`).
#![forbid(unsafe_code)]

use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, mode, timeout_ms] = args.as_slice() else {
        return Err("usage: walwatch-matrix-rusqlite DB MODE BUSY_TIMEOUT_MS".into());
    };
    let mode = match mode.to_ascii_uppercase().as_str() {
        m @ ("PASSIVE" | "FULL" | "RESTART" | "TRUNCATE") => m.to_string(),
        other => return Err(format!("unknown checkpoint mode {other}").into()),
    };
    walwatch_rusqlite::register()?;
    let conn = rusqlite::Connection::open(db)?;
    conn.busy_timeout(Duration::from_millis(timeout_ms.parse()?))?;
    walwatch_rusqlite::add_stats_function(&conn)?;
    let version: String = conn.query_row("SELECT sqlite_version()", [], |r| r.get(0))?;
    let triple: (i64, i64, i64) =
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let stats: String = conn.query_row("SELECT walwatch_stats()", [], |r| r.get(0))?;
    println!("{version}");
    println!("[{},{},{}]", triple.0, triple.1, triple.2);
    println!("{stats}");
    Ok(())
}

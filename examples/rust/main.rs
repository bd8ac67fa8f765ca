//! A rusqlite application watched by walwatch in-process (no loadable extension).
//!
//! ```sh
//! cargo run -p walwatch-rusqlite --example rusqlite-app -- /tmp/app.db
//! walwatch status /tmp/app.db   # or curl the sidecar's /metrics
//! ```
#![forbid(unsafe_code)]

use rusqlite::Connection;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "app.db".into());

    // 1. Make walwatch the default VFS before opening any connection.
    walwatch_rusqlite::register()?;

    // 2. Use SQLite as usual.
    let conn = Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.execute_batch("CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, body TEXT)")?;
    for i in 0..1000 {
        conn.execute(
            "INSERT INTO events(body) VALUES (?1)",
            [format!("event {i}")],
        )?;
    }
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;

    // 3. Read what the shim recorded, from Rust or from SQL.
    walwatch_rusqlite::add_stats_function(&conn)?;
    let stats: String = conn.query_row("SELECT walwatch_stats()", [], |row| row.get(0))?;
    println!("{stats}");
    Ok(())
}

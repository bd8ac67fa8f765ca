//! The benchmark workloads, each on one fresh database file:
//! - [`Workload::Mix`], speedtest1-like: inserts in three transaction sizes, updates by primary
//!   key, indexed point lookups and range scans, deletes, and periodic
//!   `PRAGMA wal_checkpoint(PASSIVE)`;
//! - [`Workload::Small`], the shim's worst case: 20,000 single-row inserts, then 20,000 point
//!   reads by primary key, each its own (autocommit) transaction: the lock traffic of a web
//!   application or a queue, one statement per transaction.
//!
//! Deterministic (fixed-seed PRNG), so both variants do exactly the same SQL; `scale` multiplies
//! every operation count (1.0: ~0.5 s per run with the database on tmpfs, ~1 s on disk, on a
//! 2-CPU VM).

use rusqlite::{params, Connection, OpenFlags};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// `PRAGMA synchronous` for the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sync {
    Normal,
    Full,
}

impl Sync {
    pub fn name(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
        }
    }
}

/// Which workload a run executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// speedtest1-like mix, mostly in larger transactions.
    Mix,
    /// One statement per transaction: single-row inserts, then point reads.
    Small,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Self::Mix => "mix",
            Self::Small => "small",
        }
    }
}

/// What one run did, for the report.
pub struct Outcome {
    pub elapsed: Duration,
    /// Time this thread spent on a CPU (user + system), when the kernel tells
    /// (`/proc/thread-self/schedstat`): unlike wall time, not inflated by waiting for fsync.
    pub cpu: Option<Duration>,
    /// Statements executed (inserts, updates, selects, deletes, checkpoints).
    pub statements: u64,
    /// `walwatch_rusqlite::stats_json` of the connection just before closing it, when asked for.
    pub stats_json: Option<String>,
}

/// Operation counts at `scale`.
struct Counts {
    single_inserts: u64,
    txn100_inserts: u64,
    txn10k_inserts: u64,
    single_updates: u64,
    txn100_updates: u64,
    point_selects: u64,
    range_scans: u64,
    single_deletes: u64,
    range_deletes: u64,
}

impl Counts {
    fn at(scale: f64) -> Self {
        let n = |base: f64| ((base * scale).round() as u64).max(1);
        Self {
            single_inserts: n(1_500.0),
            txn100_inserts: n(150.0),
            txn10k_inserts: n(5.0),
            single_updates: n(1_500.0),
            txn100_updates: n(70.0),
            point_selects: n(15_000.0),
            range_scans: n(1_500.0),
            single_deletes: n(350.0),
            range_deletes: n(7.0),
        }
    }
}

/// A small xorshift PRNG: same sequence in every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// speedtest1-style filler text, written into a reused buffer (no allocation per row).
fn text(buf: &mut String, n: u64) -> &str {
    const WORDS: [&str; 10] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    buf.clear();
    let mut v = n;
    loop {
        buf.push_str(WORDS[(v % 10) as usize]);
        buf.push(' ');
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let _ = write!(buf, "row {n} of the walwatch overhead benchmark");
    buf
}

/// Opens `path` through `vfs`, sets WAL mode, runs the workload, and closes the connection.
/// `#[inline(never)]` and a distinctive name so callgrind can count this function only
/// (`--toggle-collect='*run_workload*'`).
#[inline(never)]
pub fn run_workload(
    path: &Path,
    vfs: &str,
    sync: Sync,
    scale: f64,
    workload: Workload,
    want_stats: bool,
) -> rusqlite::Result<Outcome> {
    let cpu_start = thread_cpu_time();
    let start = Instant::now();
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags_and_vfs(path, flags, vfs)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    assert_eq!(mode.to_ascii_lowercase(), "wal", "journal_mode=WAL refused");
    conn.pragma_update(None, "synchronous", sync.name())?;
    let statements = match workload {
        Workload::Mix => body(&conn, scale)?,
        Workload::Small => small_transactions(&conn, scale)?,
    };
    let stats_json = if want_stats {
        Some(walwatch_rusqlite::stats_json(&conn)?)
    } else {
        None
    };
    conn.close().map_err(|(_, e)| e)?;
    let elapsed = start.elapsed();
    let cpu = thread_cpu_time()
        .zip(cpu_start)
        .map(|(end, start)| end.saturating_sub(start));
    Ok(Outcome {
        elapsed,
        cpu,
        statements,
        stats_json,
    })
}

/// On-CPU time of the calling thread so far (first field of `/proc/thread-self/schedstat`, ns).
fn thread_cpu_time() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = s.split_ascii_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

fn body(conn: &Connection, scale: f64) -> rusqlite::Result<u64> {
    let c = Counts::at(scale);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut buf = String::with_capacity(128);
    let mut stmts = 0u64;
    let mut txns = 0u64;
    // A checkpoint every this many write transactions, besides SQLite's own autocheckpoint.
    const CKPT_EVERY: u64 = 100;
    let mut committed = |conn: &Connection, stmts: &mut u64| -> rusqlite::Result<()> {
        txns += 1;
        if txns % CKPT_EVERY == 0 {
            checkpoint(conn)?;
            *stmts += 1;
        }
        Ok(())
    };

    conn.execute_batch(
        "CREATE TABLE t1(a INTEGER PRIMARY KEY, b INTEGER, c TEXT);
         CREATE INDEX t1b ON t1(b);",
    )?;

    // Keys: b is a random value in 0..b_range, so lookups on b hit ~1 row.
    let mut rows = 0u64;
    let b_range = 1u64 << 40;
    let mut insert = |conn: &Connection, rng: &mut Rng, buf: &mut String| {
        rows += 1;
        let b = rng.below(b_range);
        conn.prepare_cached("INSERT INTO t1(a, b, c) VALUES (?1, ?2, ?3)")?
            .execute(params![rows as i64, b as i64, text(buf, b)])
            .map(|_| rows)
    };

    // 1. One row per transaction (autocommit).
    for _ in 0..c.single_inserts {
        insert(conn, &mut rng, &mut buf)?;
        stmts += 1;
        committed(conn, &mut stmts)?;
    }
    // 2. 100 rows per transaction.
    for _ in 0..c.txn100_inserts {
        conn.execute_batch("BEGIN")?;
        for _ in 0..100 {
            insert(conn, &mut rng, &mut buf)?;
        }
        conn.execute_batch("COMMIT")?;
        stmts += 100;
        committed(conn, &mut stmts)?;
    }
    // 3. 10,000 rows per transaction, a checkpoint after each.
    for _ in 0..c.txn10k_inserts {
        conn.execute_batch("BEGIN")?;
        for _ in 0..10_000 {
            insert(conn, &mut rng, &mut buf)?;
        }
        conn.execute_batch("COMMIT")?;
        stmts += 10_000;
        checkpoint(conn)?;
        stmts += 1;
    }
    let total_rows = rows;

    // 4. Updates by primary key: single-row transactions, then 100 per transaction.
    let update = |conn: &Connection, rng: &mut Rng, buf: &mut String| {
        let a = 1 + rng.below(total_rows);
        let b = rng.below(b_range);
        conn.prepare_cached("UPDATE t1 SET b = ?2, c = ?3 WHERE a = ?1")?
            .execute(params![a as i64, b as i64, text(buf, b)])
    };
    for _ in 0..c.single_updates {
        update(conn, &mut rng, &mut buf)?;
        stmts += 1;
        committed(conn, &mut stmts)?;
    }
    for _ in 0..c.txn100_updates {
        conn.execute_batch("BEGIN")?;
        for _ in 0..100 {
            update(conn, &mut rng, &mut buf)?;
        }
        conn.execute_batch("COMMIT")?;
        stmts += 100;
        committed(conn, &mut stmts)?;
    }
    checkpoint(conn)?;
    stmts += 1;

    // 5. Indexed point lookups (each its own read transaction), existing and missing keys.
    let mut found = 0u64;
    for i in 0..c.point_selects {
        let b = if i % 2 == 0 {
            // An existing row's b, looked up first by primary key.
            let a = 1 + rng.below(total_rows);
            conn.prepare_cached("SELECT b FROM t1 WHERE a = ?1")?
                .query_row([a as i64], |r| r.get::<_, i64>(0))
                .unwrap_or(-1)
        } else {
            rng.below(b_range) as i64
        };
        let mut stmt = conn.prepare_cached("SELECT a, length(c) FROM t1 WHERE b = ?1")?;
        let mut q = stmt.query([b])?;
        while q.next()?.is_some() {
            found += 1;
        }
        stmts += 1 + u64::from(i % 2 == 0);
    }
    // 6. Indexed range scans (~50 rows each).
    let width = (b_range / total_rows.max(1)) * 50;
    for _ in 0..c.range_scans {
        let lo = rng.below(b_range - width);
        let mut stmt = conn
            .prepare_cached("SELECT count(*), sum(length(c)) FROM t1 WHERE b BETWEEN ?1 AND ?2")?;
        let n: i64 = stmt.query_row(params![lo as i64, (lo + width) as i64], |r| r.get(0))?;
        found += n as u64;
        stmts += 1;
    }
    assert!(found > 0, "the selects found nothing");

    // 7. Deletes: single rows by primary key, then a few index ranges.
    for _ in 0..c.single_deletes {
        let a = 1 + rng.below(total_rows);
        conn.prepare_cached("DELETE FROM t1 WHERE a = ?1")?
            .execute([a as i64])?;
        stmts += 1;
        committed(conn, &mut stmts)?;
    }
    for _ in 0..c.range_deletes {
        let lo = rng.below(b_range - width);
        conn.prepare_cached("DELETE FROM t1 WHERE b BETWEEN ?1 AND ?2")?
            .execute(params![lo as i64, (lo + width) as i64])?;
        stmts += 1;
        committed(conn, &mut stmts)?;
    }
    checkpoint(conn)?;
    stmts += 1;
    Ok(stmts)
}

/// 20,000 × `scale` single-row inserts, then as many point reads by primary key, each statement
/// its own transaction.
fn small_transactions(conn: &Connection, scale: f64) -> rusqlite::Result<u64> {
    let n = ((20_000.0 * scale).round() as u64).max(1);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut buf = String::with_capacity(128);
    conn.execute_batch("CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT NOT NULL)")?;
    for k in 1..=n {
        let v = rng.below(1 << 40);
        conn.prepare_cached("INSERT INTO kv(k, v) VALUES (?1, ?2)")?
            .execute(params![k as i64, text(&mut buf, v)])?;
    }
    let mut bytes = 0i64;
    for _ in 0..n {
        let k = 1 + rng.below(n);
        bytes += conn
            .prepare_cached("SELECT length(v) FROM kv WHERE k = ?1")?
            .query_row([k as i64], |r| r.get::<_, i64>(0))?;
    }
    assert!(bytes > 0, "the point reads found nothing");
    Ok(1 + 2 * n)
}

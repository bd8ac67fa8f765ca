//! Runs one checkpoint on a short-lived connection, in a child process.
//!
//! Why a child process: POSIX record locks belong to a process, and closing *any* descriptor of
//! a file drops all of that process's locks on it. The sidecar opens `-shm`, `-wal` and database
//! files to read headers and query locks (`F_GETLK`); if its own SQLite connection held CKPT or
//! WRITE at that moment, those locks would silently vanish and an application could checkpoint
//! at the same time (we saw `SQLITE_IOERR_SHORT_READ` in an application when the controller
//! checkpointed in-process). So the sidecar never uses SQLite on a watched database itself: it
//! runs `walwatch checkpoint …` (this module's [`run_here`]) and reads one JSON line back.
//!
//! The connection never creates a database, never changes its journal mode, and holds no
//! transaction of its own: `PRAGMA wal_checkpoint` reads the schema (a brief read transaction,
//! ended before the checkpoint starts) and then checkpoints. Each wait for a lock (WRITE, then the
//! readers) is bounded by `busy_timeout`, with a busy handler that retries every 200 µs: SQLite's
//! default handler sleeps up to 100 ms between tries and would rarely catch the gap between a
//! busy writer's transactions. Writers wait for a TRUNCATE's backfill (it holds WRITE while it
//! copies) plus at most one `busy_timeout` while it waits for readers.

use super::policy::Action;
use rusqlite::{Connection, OpenFlags};
use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

/// How a checkpoint ended, as `walwatch_controller_actions_total{result}` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultKind {
    /// Done: every frame copied (and, for TRUNCATE, `-wal` cut to zero bytes).
    Ok,
    /// SQLite said busy: a reader or writer kept it from finishing. Expected, not an error.
    Busy,
    /// It could not run at all (no permission, not a database, …).
    Error,
}

impl ResultKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Busy => "busy",
            Self::Error => "error",
        }
    }
}

/// What one checkpoint did.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub result: ResultKind,
    /// `wal_checkpoint`'s second and third columns: frames in the WAL, frames checkpointed.
    pub log_frames: i64,
    pub checkpointed_frames: i64,
    pub duration: Duration,
    pub error: Option<String>,
}

thread_local! {
    /// The bound of each wait, and when the current wait must end.
    static WAIT: Cell<(Duration, Option<Instant>)> = const { Cell::new((Duration::ZERO, None)) };
}

/// SQLite calls this while a lock is busy, with `attempt` = 0 at the start of each new wait
/// (for WRITE, then for the readers), so each wait gets its own bound.
fn bounded_busy_handler(attempt: i32) -> bool {
    let (bound, deadline) = WAIT.get();
    let now = Instant::now();
    let deadline = match deadline {
        Some(d) if attempt > 0 => d,
        _ => now + bound,
    };
    WAIT.set((bound, Some(deadline)));
    if now < deadline {
        std::thread::sleep(Duration::from_micros(200));
        true
    } else {
        false
    }
}

impl Outcome {
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "result": self.result.name(),
            "log_frames": self.log_frames,
            "checkpointed_frames": self.checkpointed_frames,
            "duration_seconds": self.duration.as_secs_f64(),
            "error": self.error,
        })
        .to_string()
    }

    fn from_json(text: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
        let result = match v["result"].as_str()? {
            "ok" => ResultKind::Ok,
            "busy" => ResultKind::Busy,
            _ => ResultKind::Error,
        };
        Some(Self {
            result,
            log_frames: v["log_frames"].as_i64()?,
            checkpointed_frames: v["checkpointed_frames"].as_i64()?,
            duration: Duration::from_secs_f64(v["duration_seconds"].as_f64()?),
            error: v["error"].as_str().map(str::to_owned),
        })
    }
}

/// Runs `action` on `db` in a child process (`walwatch checkpoint`), each lock wait bounded
/// by `busy_timeout`.
pub fn run(db: &Path, action: Action, busy_timeout: Duration) -> Outcome {
    let start = Instant::now();
    let failed = |error: String| Outcome {
        result: ResultKind::Error,
        log_frames: -1,
        checkpointed_frames: -1,
        duration: start.elapsed(),
        error: Some(error),
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return failed(format!("cannot find the walwatch executable: {e}")),
    };
    let output = std::process::Command::new(exe)
        .arg("checkpoint")
        .args([
            "--mode",
            action.name(),
            "--busy-timeout-ms",
            &busy_timeout.as_millis().to_string(),
        ])
        .arg(db)
        .stdin(std::process::Stdio::null())
        .output();
    match output {
        Ok(out) => Outcome::from_json(&String::from_utf8_lossy(&out.stdout)).unwrap_or_else(|| {
            failed(format!(
                "checkpoint process failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }),
        Err(e) => failed(format!("cannot start the checkpoint process: {e}")),
    }
}

/// Runs `action` on `db` in this process. Only for `walwatch checkpoint`: see the module
/// documentation for why the sidecar itself must not.
pub fn run_here(db: &Path, action: Action, busy_timeout: Duration) -> Outcome {
    let start = Instant::now();
    let outcome = |result, log_frames, checkpointed_frames, error| Outcome {
        result,
        log_frames,
        checkpointed_frames,
        duration: start.elapsed(),
        error,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match Connection::open_with_flags(db, flags) {
        Ok(c) => c,
        Err(e) => {
            return outcome(
                ResultKind::Error,
                -1,
                -1,
                Some(format!("cannot open {} read-write: {e}", db.display())),
            )
        }
    };
    if let Err(e) = conn.busy_handler(Some(bounded_busy_handler)) {
        return outcome(ResultKind::Error, -1, -1, Some(e.to_string()));
    }
    WAIT.set((busy_timeout, None));
    let sql = match action {
        Action::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Action::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
    };
    let row = conn.query_row(sql, [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    });
    WAIT.set((Duration::ZERO, None));
    match row {
        Ok((0, log, done)) => outcome(ResultKind::Ok, log, done, None),
        Ok((_, log, done)) => outcome(ResultKind::Busy, log, done, None),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::DatabaseBusy =>
        {
            outcome(ResultKind::Busy, -1, -1, None)
        }
        Err(e) => outcome(ResultKind::Error, -1, -1, Some(e.to_string())),
    }
}

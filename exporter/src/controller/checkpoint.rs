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
//! ended before the checkpoint starts) and then checkpoints.
//!
//! A TRUNCATE runs in three steps, to keep writers' stall short and bounded:
//! 1. a PASSIVE pass copies what it can while writers go on writing. The controller asks for it
//!    only while it copies at least twice as fast as writers append: otherwise (a runaway writer
//!    on a disk with slow fsync) the pass only delays step 2 while the WAL grows;
//! 2. the child takes SQLite's WRITE lock itself, waiting in the kernel for up to `busy_timeout`
//!    ([`sys::lock_exclusive_within`]): a busy writer frees it only for microseconds between
//!    transactions, too briefly for SQLite's poll-and-sleep busy handler to catch;
//! 3. `wal_checkpoint(TRUNCATE)` then finds WRITE already held by its own process, copies the
//!    frames written since step 1, and waits for readers to leave the WAL. Writers stall from
//!    step 2 to the end: that copy plus at most `busy_timeout` of waiting for readers, which the
//!    busy handler counts across all of its waits.
//!
//! If WRITE cannot be had within `busy_timeout` the TRUNCATE is reported busy (step 1 did the
//! copying a PASSIVE can do), as SQLite reports a TRUNCATE whose busy handler gives up on WRITE.
//!
//! The child runs with the sidecar's privileges (often root) on a path it found in a file other
//! users write, so before SQLite sees the path it opens the database itself without following a
//! symlink, checks with `fstat` that it is a regular file still owned by the uid the sidecar
//! checked (`--expect-owner`), and keeps that descriptor open until the connection is closed
//! (closing it earlier would drop SQLite's locks, as for `-shm`). SQLite then opens the path
//! with `SQLITE_OPEN_NOFOLLOW`, which refuses a symlink anywhere in it: a database swapped for
//! a link to someone else's after the sidecar looked is not checkpointed. With an expected
//! owner, `-wal` and `-shm` must be regular files with one link (no hard link to another
//! user's file; `fs.protected_hardlinks` already forbids making one on most systems).

use super::policy::Checkpoint;
use crate::sys;
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};
use walwatch::wal_index::SHM_LOCK_BASE;

/// How a checkpoint ended, as `walwatch_controller_actions_total{result}` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// What one checkpoint did. It is also the child's protocol: `walwatch checkpoint` prints it as
/// one JSON object on stdout ([`Outcome::to_json`]) and the controller parses it back
/// ([`Outcome::from_json`]), both through this one derived type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub result: ResultKind,
    /// `wal_checkpoint`'s second and third columns: frames in the WAL, frames checkpointed.
    pub log_frames: i64,
    pub checkpointed_frames: i64,
    #[serde(rename = "duration_seconds", with = "seconds")]
    pub duration: Duration,
    /// How long it held the WRITE lock: how long writers were stalled by it.
    #[serde(rename = "write_lock_held_seconds", with = "seconds", default)]
    pub write_lock_held: Duration,
    /// For a TRUNCATE with a PASSIVE pass first: how fast that pass copied, in bytes per second.
    #[serde(rename = "passive_pass_bytes_per_second", default)]
    pub passive_pass_rate: Option<f64>,
    #[serde(default)]
    pub error: Option<String>,
}

/// A [`Duration`] on the wire: seconds as a float.
mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// The time a TRUNCATE may still wait for readers while it holds WRITE.
#[derive(Clone, Copy)]
struct ReaderWait {
    left: Duration,
    /// When the busy handler last gave control back to SQLite.
    last_return: Option<Instant>,
}

thread_local! {
    static READER_WAIT: Cell<ReaderWait> =
        const { Cell::new(ReaderWait { left: Duration::ZERO, last_return: None }) };
}

/// How often a busy lock is retried while waiting for readers.
const RETRY_EVERY: Duration = Duration::from_micros(200);
/// A pause between two busy-handler calls up to this long was SQLite retrying the lock (part of
/// the wait); a longer one was SQLite copying frames between two waits (not part of it).
const RETRY_GAP: Duration = Duration::from_millis(1);

/// SQLite calls this while a lock it needs is busy. WRITE is already ours when it runs (see the
/// module documentation), so every wait is for readers while writers stall: all of them together
/// get one budget, which counts the sleeps (a stall of this process included) and SQLite's
/// retries between them, but not its copying of frames between two waits.
fn bounded_busy_handler(_attempt: i32) -> bool {
    let ReaderWait { left, last_return } = READER_WAIT.get();
    let now = Instant::now();
    let retrying = last_return.map_or(Duration::ZERO, |t| now - t);
    let left = if retrying <= RETRY_GAP {
        left.saturating_sub(retrying)
    } else {
        left
    };
    if left.is_zero() {
        READER_WAIT.set(ReaderWait { left, last_return });
        return false;
    }
    std::thread::sleep(RETRY_EVERY.min(left));
    let back = Instant::now();
    READER_WAIT.set(ReaderWait {
        left: left.saturating_sub(back - now),
        last_return: Some(back),
    });
    true
}

impl Outcome {
    /// The child's one line of output.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            // Unreachable (plain fields, finite or rejected floats); still a parseable answer.
            format!(r#"{{"result":"error","log_frames":0,"checkpointed_frames":0,"duration_seconds":0,"error":{:?}}}"#, e.to_string())
        })
    }

    /// Parses the child's output; `None` when it is not an outcome.
    fn from_json(text: &str) -> Option<Self> {
        serde_json::from_str(text.trim()).ok()
    }
}

/// Runs `action` on `db` in a child process (`walwatch checkpoint`), each lock wait bounded
/// by `busy_timeout`; a TRUNCATE starts with a PASSIVE pass if `passive_pass`. With `owner`,
/// the child refuses a database file that uid does not own.
pub fn run(
    db: &Path,
    owner: Option<u32>,
    action: Checkpoint,
    busy_timeout: Duration,
    passive_pass: bool,
) -> Outcome {
    let start = Instant::now();
    let failed = |error: String| Outcome {
        result: ResultKind::Error,
        log_frames: -1,
        checkpointed_frames: -1,
        duration: start.elapsed(),
        write_lock_held: Duration::ZERO,
        passive_pass_rate: None,
        error: Some(error),
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return failed(format!("cannot find the walwatch executable: {e}")),
    };
    let output = std::process::Command::new(exe)
        .arg("checkpoint")
        .args(passive_pass.then_some("--passive-pass"))
        .args(owner.map(|uid| format!("--expect-owner={uid}")))
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

/// Opens `path` read-only, never through a symlink nor blocking on a FIFO, and checks with
/// `fstat` that it is a regular file (owned by `owner`, when given).
fn open_checked(path: &Path, write: bool, owner: Option<u32>) -> Result<std::fs::File, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                format!(
                    "refused {}: it is a symbolic link; walwatch checkpoints only the file itself",
                    crate::text::path(path)
                )
            } else {
                format!("cannot open {}: {e}", crate::text::path(path))
            }
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat {}: {e}", crate::text::path(path)))?;
    if !meta.file_type().is_file() {
        return Err(format!(
            "refused {}: it is not a regular file",
            crate::text::path(path)
        ));
    }
    if let Some(uid) = owner.filter(|&uid| uid != meta.uid()) {
        return Err(format!(
            "refused {}: it is now owned by uid {}, not uid {uid} as when the sidecar checked it; it is watched again at the next collection",
            crate::text::path(path),
            meta.uid()
        ));
    }
    Ok(file)
}

/// With `owner` (a database found through a stats file): `-wal` and `-shm`, when they exist,
/// must be regular files with one link each, so that a checkpoint run with the sidecar's
/// privileges never writes or truncates another file through a hard link. (Their owner may
/// differ from the database's: in a group-shared application, whoever opened it first made them.)
fn check_siblings(db: &Path, owner: Option<u32>) -> Result<(), String> {
    if owner.is_none() {
        return Ok(());
    }
    for suffix in ["-wal", "-shm"] {
        let path = crate::collect::wal_files::sibling(db, suffix);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot stat {}: {e}", crate::text::path(&path))),
        };
        if !meta.file_type().is_file() || meta.nlink() != 1 {
            return Err(format!(
                "refused {}: not a regular file with one link; remove it once no process uses the database",
                crate::text::path(&path)
            ));
        }
    }
    Ok(())
}

/// Runs `action` on `db` in this process. Only for `walwatch checkpoint`: see the module
/// documentation for why the sidecar itself must not. With `owner`, a database file that uid
/// does not own is refused.
pub fn run_here(
    db: &Path,
    action: Checkpoint,
    busy_timeout: Duration,
    passive_pass: bool,
    owner: Option<u32>,
) -> Outcome {
    let start = Instant::now();
    let outcome = |(result, log_frames, checkpointed_frames), error| Outcome {
        result,
        log_frames,
        checkpointed_frames,
        duration: start.elapsed(),
        write_lock_held: Duration::ZERO,
        passive_pass_rate: None,
        error,
    };
    // The database, checked before SQLite sees its path, and open until after the connection
    // is closed (declared first, so dropped last).
    let _db_file = match open_checked(db, false, owner) {
        Ok(f) => f,
        Err(e) => return outcome(FAILED, Some(e)),
    };
    if let Err(e) = check_siblings(db, owner) {
        return outcome(FAILED, Some(e));
    }
    // For a TRUNCATE, a descriptor of -shm of our own to take WRITE on in step 2. Opened before
    // the connection so that it is closed after it, on every path: closing it drops all of this
    // process's locks on -shm, SQLite's included. No -shm: no connection has the database open
    // in WAL mode, so nothing writes, and SQLite takes its locks itself.
    let shm_path = crate::collect::wal_files::sibling(db, "-shm");
    let shm = match action {
        Checkpoint::Passive => None,
        Checkpoint::Truncate => match open_checked(&shm_path, true, None) {
            Ok(f) => Some(f),
            Err(_) if !shm_path.exists() => None,
            Err(e) => return outcome(FAILED, Some(e)),
        },
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let conn = match Connection::open_with_flags(db, flags) {
        Ok(c) => c,
        Err(e) => {
            let error = format!("cannot open {} read-write: {e}", db.display());
            return outcome(FAILED, Some(error));
        }
    };
    if let Err(e) = conn.busy_handler(Some(bounded_busy_handler)) {
        return outcome(FAILED, Some(e.to_string()));
    }
    if action == Checkpoint::Passive {
        return match checkpoint(&conn, Checkpoint::Passive) {
            Ok(done) => outcome(done, None),
            Err(e) => outcome(FAILED, Some(e)),
        };
    }
    // Step 1, if asked for: what it copied is what a TRUNCATE that cannot take WRITE reports.
    let (copied, rate) = if passive_pass {
        match passive_pass_on(&conn) {
            Ok((copied, rate)) => (copied, rate),
            Err(e) => return outcome(FAILED, Some(e)),
        }
    } else {
        (BUSY, None)
    };
    let outcome = |done, error| Outcome {
        passive_pass_rate: rate,
        ..outcome(done, error)
    };

    // Step 2: WRITE.
    let Some(shm) = &shm else {
        return truncate(&conn, busy_timeout, outcome);
    };
    let write_lock = SHM_LOCK_BASE + walwatch::layout::SLOT_WRITE as u64;
    match sys::lock_exclusive_within(shm, write_lock, busy_timeout) {
        Ok(true) => {}
        // A writer kept it: report what the PASSIVE step copied.
        Ok(false) => return outcome(copied, None),
        Err(e) => {
            let shm_path = crate::text::path(&shm_path);
            return outcome(FAILED, Some(format!("cannot lock {shm_path}: {e}")));
        }
    }
    let held_since = Instant::now();
    let mut done = truncate(&conn, busy_timeout, outcome);
    // SQLite released WRITE when the checkpoint ended; if it stopped before taking it (another
    // checkpoint held CKPT), the lock is still ours alone: give it back before anything else.
    if let Err(e) = sys::unlock(shm, write_lock) {
        let shm_path = crate::text::path(&shm_path);
        eprintln!("walwatch checkpoint: cannot unlock {shm_path}: {e}");
    }
    done.write_lock_held = held_since.elapsed();
    done
}

/// Step 1 of a TRUNCATE: a PASSIVE checkpoint. Returns its (result, log, checkpointed) as a busy
/// result, and how fast it copied (bytes per second) when it copied enough to tell (1 MiB).
fn passive_pass_on(conn: &Connection) -> Result<(Counts, Option<f64>), String> {
    let page_size: u64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let (_, log, done) = checkpoint(conn, Checkpoint::Passive)?;
    // Frames copied earlier count as copied here: the rate is then too high, which only means
    // another pass, and a pass with little left to copy is quick anyway.
    let copied = done.max(0) as u64 * (page_size + WAL_FRAME_HEADER);
    let rate = (copied >= 1 << 20).then(|| copied as f64 / start.elapsed().as_secs_f64());
    Ok(((ResultKind::Busy, log, done), rate))
}

/// Bytes before each page in a WAL frame.
const WAL_FRAME_HEADER: u64 = 24;

/// What `PRAGMA wal_checkpoint` returns: (result, frames in the WAL, frames checkpointed).
type Counts = (ResultKind, i64, i64);

/// The counts of a checkpoint that could not run.
const FAILED: Counts = (ResultKind::Error, -1, -1);
const BUSY: Counts = (ResultKind::Busy, -1, -1);

/// Step 3 of a TRUNCATE (see the module documentation).
fn truncate(
    conn: &Connection,
    busy_timeout: Duration,
    outcome: impl Fn(Counts, Option<String>) -> Outcome,
) -> Outcome {
    let wait = |left| ReaderWait {
        left,
        last_return: None,
    };
    READER_WAIT.set(wait(busy_timeout));
    let result = checkpoint(conn, Checkpoint::Truncate);
    READER_WAIT.set(wait(Duration::ZERO));
    match result {
        Ok(done) => outcome(done, None),
        Err(e) => outcome(FAILED, Some(e)),
    }
}

/// Runs `PRAGMA wal_checkpoint(mode)`: (result, frames in the WAL, frames checkpointed).
fn checkpoint(conn: &Connection, mode: Checkpoint) -> Result<Counts, String> {
    let pragma = format!("PRAGMA wal_checkpoint({})", mode.name());
    let row = conn.query_row(&pragma, [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    });
    match row {
        Ok((0, log, done)) => Ok((ResultKind::Ok, log, done)),
        Ok((_, log, done)) => Ok((ResultKind::Busy, log, done)),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::DatabaseBusy =>
        {
            Ok(BUSY)
        }
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 9, attack 4: the checkpoint child refuses a database that is a symlink, not a
    /// regular file, or no longer owned by the uid the sidecar checked, before SQLite opens it.
    #[test]
    fn the_child_refuses_a_database_swapped_after_the_check() {
        let dir = std::env::temp_dir().join(format!("walwatch-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("a.db");
        std::fs::write(&db, crate::synth::database(true)).unwrap();
        let me = walwatch::paths::effective_uid();
        assert!(open_checked(&db, false, Some(me)).is_ok());
        let moved = open_checked(&db, false, Some(me + 1)).unwrap_err();
        assert!(
            moved.contains(&format!("now owned by uid {me}, not uid {}", me + 1)),
            "{moved}"
        );
        let link = dir.join("link.db");
        std::os::unix::fs::symlink(&db, &link).unwrap();
        let outcome = run_here(&link, Checkpoint::Passive, Duration::ZERO, false, None);
        assert_eq!(outcome.result, ResultKind::Error);
        assert!(outcome.error.unwrap().contains("symbolic link"));
        let fifo = dir.join("fifo.db");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let outcome = run_here(&fifo, Checkpoint::Truncate, Duration::ZERO, false, None);
        assert!(outcome.error.unwrap().contains("not a regular file"));
        // A -wal hard-linked to another file (someone else's, where hard links are allowed).
        let other = dir.join("other");
        std::fs::write(&other, b"precious").unwrap();
        std::fs::hard_link(&other, dir.join("a.db-wal")).unwrap();
        let outcome = run_here(&db, Checkpoint::Truncate, Duration::ZERO, false, Some(me));
        assert!(outcome
            .error
            .unwrap()
            .contains("a.db-wal: not a regular file with one link"));
        assert_eq!(std::fs::read(&other).unwrap(), b"precious");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_child_protocol_round_trips_through_one_type() {
        let o = Outcome {
            result: ResultKind::Busy,
            log_frames: 12,
            checkpointed_frames: 7,
            duration: Duration::from_millis(250),
            write_lock_held: Duration::from_millis(40),
            passive_pass_rate: Some(1.5e8),
            error: Some("a \"quoted\" error\n".to_owned()),
        };
        let line = o.to_json();
        assert!(!line.contains('\n'), "one line: {line}");
        assert!(line.contains(r#""result":"busy""#), "{line}");
        assert!(line.contains(r#""duration_seconds":0.25"#), "{line}");
        assert_eq!(Outcome::from_json(&line), Some(o));
        // Optional fields may be absent; anything else is not an outcome.
        let minimal =
            r#"{"result":"ok","log_frames":1,"checkpointed_frames":1,"duration_seconds":0.5}"#;
        let parsed = Outcome::from_json(minimal).expect("minimal outcome");
        assert_eq!(parsed.result, ResultKind::Ok);
        assert_eq!(parsed.write_lock_held, Duration::ZERO);
        assert_eq!(Outcome::from_json("Error: no such file"), None);
        assert_eq!(Outcome::from_json(r#"{"result":"maybe"}"#), None);
    }
}

//! # walwatch VFS shim
//!
//! One crate, four names: the directory `vfs/`, the package `walwatch-vfs`, the Rust library
//! `walwatch`, built as the loadable extension `libwalwatch.so`.
//!
//! A SQLite VFS named `walwatch` that wraps the default VFS (`unix`), sees the calls it needs on
//! their way through (the others go to the wrapped VFS directly), and records what happens to
//! each database's WAL: its size, bytes appended, fsyncs, every `-shm`
//! lock per slot (WRITE, CKPT, RECOVER, READ0..READ4; acquired, busy, hold time), busy-handler
//! sleeps, every checkpoint (mode, outcome, frames backfilled, duration, what blocked it), and
//! which process holds which READ slot since when. The records go to a small stats file per
//! database in `$WALWATCH_DIR` (default: the private `/dev/shm/walwatch-<uid>`), shared through `mmap` by every
//! process that uses the shim, where the `walwatch` sidecar reads them.
//!
//! ## Loading it
//! - sqlite3 shell: `.load ./target/release/libwalwatch` then `.open app.db`
//!   (databases opened *after* loading are watched); `SELECT walwatch_stats();`
//! - Python: `c = sqlite3.connect(":memory:"); c.enable_load_extension(True);
//!   c.load_extension("./target/release/libwalwatch")`, then `sqlite3.connect("app.db")`.
//! - Rust, in process: [`register`] (or the `walwatch-rusqlite` crate for rusqlite programs).
//!
//! Loading makes `walwatch` the default VFS for the rest of the process and adds the SQL
//! function `walwatch_stats()` to every connection opened afterwards.
//!
//! ## Guarantees
//! - The shim never changes what SQLite sees: results, errors and file contents are the wrapped
//!   VFS's. Its own problems (stats directory missing, read-only or untrusted, a stats file it
//!   may not trust, a lock held by another process, a full file system, a corrupt or foreign
//!   stats file) are reported once per kind per process through `sqlite3_log` (the problem,
//!   then what to do) and the database goes unrecorded.
//! - It trusts nothing it did not create (rules in `region.rs`, checks in [`trust`]): it opens
//!   the stats directory and file with `O_NOFOLLOW` (never through a symlink), relative to the
//!   directory's descriptor; uses a directory only if it is owned by this effective user or
//!   root and writable by no other user (group-writable only with the sticky bit); maps only a
//!   regular file with one link, owned by this effective user and writable by no one else;
//!   creates directories 0700 and files 0600 (0640 in a set-group-ID directory), whatever the
//!   umask.
//! - It never blocks on another process: the creation lock is tried without waiting, a few
//!   times within 50 ms, and no process-wide lock is held meanwhile. It allocates a file's
//!   space (`posix_fallocate`) before mapping it, so a full file system is a logged `ENOSPC`,
//!   never a `SIGBUS`; a file whose creator died half-way is initialized afresh.
//! - No panic reaches SQLite. Every function SQLite calls (the entry point, the auto-extension,
//!   `walwatch_stats()`, each VFS and io method) runs inside one guard (`unwind.rs`) that turns a
//!   panic into the result SQLite expects from that function when it fails: an `SQLITE_IOERR_*`
//!   code for I/O, `SQLITE_CANTOPEN` for `xOpen`, `SQLITE_ERROR` for the load, and so on,
//!   reported once through `sqlite3_log`. A method the wrapped VFS lacks gives the same result.
//!   Bookkeeping has its own guard: a panic in it leaves the operation's result untouched.
//! - The extension calls SQLite only through the `sqlite3_api_routines` it is handed and links
//!   no SQLite (`nm -D --defined-only libwalwatch.so` shows one `sqlite3_` symbol: the entry
//!   point).
//! - On the I/O path: no allocation, no syscall, no lock; a few relaxed atomic adds and, for
//!   `-shm` locks, a read of the (vDSO) clock.
//!
//! ## Limitations
//! - Mode inference: a RESTART or TRUNCATE checkpoint blocked before its restart step takes the
//!   same locks as FULL and is recorded as `full` (see `shim/recorder.rs`).
//! - A process running as the same user (or root) that truncates a stats file while others
//!   have it mapped makes their next update fault (SIGBUS), as with any shared mapping. No other
//!   user can: files are never writable by others.
//! - In a directory shared with a group (0640 files), members of the group can read the
//!   counters, and can hold a file's lock: a database opened meanwhile goes unrecorded (after
//!   under 50 ms), never blocked.
//! - A database whose stats file cannot be used is retried at each open of the database and of
//!   its WAL (logged once): with a lock held by someone else, each such open takes up to 50 ms
//!   longer.
//! - Pids in the reader table are those of the writer's pid namespace.
//! - `PRAGMA locking_mode=EXCLUSIVE` keeps the wal-index in heap memory: no `-shm` locks to see.

pub mod ffi;
#[forbid(unsafe_code)]
pub mod layout;
pub mod paths;
#[forbid(unsafe_code)]
pub mod snapshot;
#[forbid(unsafe_code)]
pub mod trust;
pub mod wal_index;

mod at;
mod extension;
mod host;
#[forbid(unsafe_code)]
mod json;
mod region;
mod shim;
#[forbid(unsafe_code)]
mod unwind;

pub use host::Host;
pub use json::stats_json;
pub use shim::{RegisterError, VFS_NAME};

/// Registers the `walwatch` VFS around the current default VFS and makes it the default, using
/// the SQLite functions in `host`. For programs that link SQLite themselves; loadable-extension
/// users get this from `sqlite3_walwatch_init`. Calling it again is harmless.
pub fn register(host: Host) -> Result<(), RegisterError> {
    let host = host::set(host);
    shim::register(host, true)
}

/// `walwatch_stats()` for a database file: the JSON stats of the database behind `file` (the
/// main database's `sqlite3_file*`, from `SQLITE_FCNTL_FILE_POINTER`), or `None` if that file
/// was not opened through the shim or has no stats region.
///
/// # Safety
/// `file` must be null or point to a live `sqlite3_file` that stays open during the call: the
/// pointer `SQLITE_FCNTL_FILE_POINTER` returns for a connection that is not closed meanwhile.
pub unsafe fn stats_json_for_file(file: *mut ffi::sqlite3_file) -> Option<String> {
    // SAFETY: the caller guarantees `file` is null or a live, open sqlite3_file.
    let shim_file = unsafe { shim::as_shim_file(file) }?;
    let (region, wal) = shim_file.stats_view()?;
    use std::os::unix::ffi::OsStrExt;
    let mut snap = region::snapshot(region);
    // The shims record the WAL's size only when they open or truncate it (its writers' hot
    // path does not): the file system has it exactly (not followed if a link).
    let mut wal_path = snap.db_path.clone();
    wal_path.extend_from_slice(b"-wal");
    if let Ok(meta) = std::fs::symlink_metadata(std::ffi::OsStr::from_bytes(&wal_path)) {
        snap.wal_bytes = meta.len();
    }
    Some(stats_json(
        &snap,
        wal.as_ref(),
        shim::unix_now_ns(),
        process_alive,
    ))
}

/// Whether a process with this pid exists (in our pid namespace): the one liveness check of the
/// shim and the sidecar. A pid we may not signal (`EPERM`) exists; only `ESRCH` means gone.
/// Pid 0 and pids beyond `pid_t` (never a process) are not alive.
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission; it sends nothing.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Unix time of `t` in nanoseconds (0 before 1970, saturating far in the future): the one
/// conversion of the shim and the sidecar.
pub fn unix_ns(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u64::MAX as u128) as u64)
}

/// Unix time now, in nanoseconds.
pub fn unix_now_ns() -> u64 {
    unix_ns(std::time::SystemTime::now())
}

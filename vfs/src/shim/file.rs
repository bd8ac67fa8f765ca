//! The shim's `sqlite3_io_methods`: what it observes on a file, it sees on the way through to the
//! wrapped VFS's method; everything else goes straight to the wrapped VFS.
//!
//! # Memory layout: the wrapped file first
//! SQLite gives `xOpen` one allocation of `szOsFile` bytes. The wrapped VFS's file object lives at
//! its start, exactly where SQLite's pointer points, and the shim's [`ShimState`] follows it
//! (at [`state_offset`]: the wrapped `szOsFile` rounded up to 8). Once the wrapped `xOpen`
//! succeeds, the shim replaces the file's `pMethods` with a table of its own built from the
//! wrapped file's table ([`table_for`]):
//! - methods walwatch observes (per kind of file, below) are the shim's, and call the wrapped
//!   method with the very same file pointer;
//! - every other member is *the wrapped VFS's own function*: SQLite calls it directly, with no
//!   extra call, no shim code and nothing the shim could get wrong (`xRead`, `xShmBarrier`, …).
//!
//! | file                 | the shim's methods                                                        |
//! |----------------------|---------------------------------------------------------------------------|
//! | main database        | `xClose`, `xWrite` (checkpoints), `xSync`, `xLock`, `xFileControl`, `xShmMap`, `xShmLock`, `xShmUnmap` |
//! | `-wal` (with stats)  | `xTruncate`, `xSync` (what a write transaction appended is read from the wal-index when it releases the write lock) |
//! | anything else        | none: the file keeps the wrapped VFS's table                              |
//!
//! A member the wrapped table lacks stays absent, and the table's `iVersion` is the wrapped one,
//! so SQLite's feature checks see the wrapped VFS. The wrapped VFS never reads its own file's
//! `pMethods` (SQLite's `unix` VFS only sets it in `xOpen`; SQLite clears it after `xClose`).
//!
//! # Hot path
//! After forwarding, a method does at most a few relaxed atomic adds on the mapped stats region
//! (`xShmLock`: see the recorder's module header for what a lock costs). No allocation, no
//! system call, no lock. Bookkeeping never changes the result SQLite gets.

use super::recorder::{Recorder, ShmLock};
use super::LAST_BUSY;
use crate::ffi::*;
use crate::host;
use crate::layout::{FileKind, Region, SLOTS};
use crate::wal_index::{LiveWalIndex, WalIndex};
use std::ffi::{c_int, c_void, CStr};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;
use std::time::Instant;

/// `SQLITE_FCNTL_PRAGMA`: sent to the database file when a `PRAGMA` statement is prepared.
const SQLITE_FCNTL_PRAGMA: c_int = 14;

/// The shim's part of a file object, after the wrapped VFS's file (see the module header).
pub(crate) struct ShimState {
    /// The wrapped VFS's methods for this file (its `pMethods` now points to ours).
    real: &'static sqlite3_io_methods,
    /// The wrapped `xShmLock`, read once (the method of every transaction): where the wrapped
    /// table has none, ours has none either, and this is never called.
    shm_lock: ShmLockFn,
    kind: FileKind,
    region: Option<&'static Region>,
    /// Main database only: what this connection does with the `-shm` locks.
    recorder: Option<Recorder>,
    /// `recorder` is present and [`Recorder::fast`]: the next one-slot lock or unlock takes
    /// the fast path. Kept by [`ShimState::refresh_fast`] after everything that can change it
    /// (the slow path: checkpoints, busy locks); never true without a recorder.
    fast: bool,
    /// Main database only: `-shm` region 0 (the wal-index header) once mapped; before, and
    /// after xShmUnmap, [`LiveWalIndex::NONE`]'s (never null).
    shm0: *const u8,
}

type ShmLockFn = unsafe extern "C" fn(*mut sqlite3_file, c_int, c_int, c_int) -> c_int;

/// Where [`ShimState`] starts in a file object: the wrapped VFS's `szOsFile`, rounded up to 8.
/// Set once, by [`os_file_size`] at registration, before any file can be opened.
static STATE_OFFSET: AtomicUsize = AtomicUsize::new(0);

/// The shim's `szOsFile` for a wrapped VFS whose files take `wrapped` bytes; remembers where the
/// shim's state starts.
pub(crate) fn os_file_size(wrapped: c_int) -> c_int {
    let offset = (wrapped.max(0) as usize).next_multiple_of(8);
    STATE_OFFSET.store(offset, Relaxed);
    c_int::try_from(offset + std::mem::size_of::<ShimState>()).unwrap_or(c_int::MAX)
}

const _: () = assert!(std::mem::align_of::<ShimState>() <= 8);

/// The state of a file whose methods are the shim's.
///
/// # Safety
/// `file` must be a file the shim's `xOpen` wrapped (its `pMethods` is one of ours), not closed,
/// and no other reference to its state may be live (SQLite serializes calls on one file).
#[inline(always)]
unsafe fn state<'a>(file: *mut sqlite3_file) -> &'a mut ShimState {
    // SAFETY: per the contract the allocation holds the wrapped file, then a ShimState that
    // `wrap` wrote at STATE_OFFSET (8-aligned, as SQLite aligns the allocation).
    unsafe {
        &mut *file
            .cast::<u8>()
            .add(STATE_OFFSET.load(Relaxed))
            .cast::<ShimState>()
    }
}

/// Finishes `xOpen` once the wrapped VFS's open returned: for a main database (always) or a WAL
/// with a stats region, writes the shim's state and installs the shim's table. Any other file
/// keeps the wrapped VFS's methods.
///
/// # Safety
/// `file` must be the memory SQLite gave `xOpen` (`szOsFile` bytes as [`os_file_size`] sized it),
/// after the wrapped VFS's `xOpen` returned, and not yet visible to SQLite.
pub(crate) unsafe fn wrap(file: *mut sqlite3_file, kind: FileKind, db_path: Option<&[u8]>) {
    // SAFETY: the wrapped open left its methods (or null) in the file's first member.
    let real = unsafe { (*file).pMethods };
    // SAFETY: non-null io-methods of the wrapped VFS live as long as its files (static tables).
    let Some(real) = (unsafe { real.as_ref() }) else {
        return;
    };
    let region = match kind {
        FileKind::Other => return,
        FileKind::MainDb => db_path.and_then(crate::region::for_database),
        FileKind::Wal => match db_path.and_then(crate::region::for_database) {
            Some(region) => Some(region),
            None => return,
        },
    };
    let ours = table_for(real, kind);
    let shim = ShimState {
        real,
        shm_lock: real.xShmLock.unwrap_or(no_shm_lock),
        kind,
        region,
        recorder: match kind {
            FileKind::MainDb => region.map(Recorder::new),
            _ => None,
        },
        shm0: LiveWalIndex::NONE.as_ptr(),
        fast: false,
    };
    // SAFETY: per the contract the state's place is inside the allocation, 8-aligned, and
    // nobody else uses the file yet.
    unsafe {
        file.cast::<u8>()
            .add(STATE_OFFSET.load(Relaxed))
            .cast::<ShimState>()
            .write(shim)
    };
    // SAFETY: written just above; nobody else uses the file yet.
    unsafe { state(file) }.refresh_fast();
    if let (FileKind::Wal, Some(region), Some(file_size)) = (kind, region, real.xFileSize) {
        let mut size = 0;
        // SAFETY: the file is open; xFileSize writes one i64.
        if unsafe { file_size(file, &mut size) } == SQLITE_OK {
            region.io.wal_bytes.store(size.max(0) as u64, Relaxed);
        }
    }
    // SAFETY: from here SQLite calls our methods; the state they read is written above.
    unsafe { (*file).pMethods = ours };
}

impl ShimState {
    /// Sets [`ShimState::fast`] from the recorder.
    fn refresh_fast(&mut self) {
        self.fast = self.recorder.as_ref().is_some_and(Recorder::fast);
    }

    /// The recorder, on the fast path.
    #[inline(always)]
    fn fast_recorder(&mut self) -> &mut Recorder {
        debug_assert!(self.fast && self.recorder.is_some());
        match &mut self.recorder {
            Some(recorder) => recorder,
            // SAFETY: only called where `self.fast` is true, which it never is without a
            // recorder (refresh_fast), and a file's recorder is never removed.
            None => unsafe { std::hint::unreachable_unchecked() },
        }
    }

    fn wal_index(&self) -> LiveWalIndex {
        live_wal_index(self.shm0)
    }

    /// Our own stats for the SQL function: the region, and the live wal-index header.
    pub(crate) fn stats_view(&self) -> Option<(&'static Region, Option<WalIndex>)> {
        self.region
            .map(|region| (region, self.wal_index().header()))
    }
}

/// Whether `file` is a main database the shim wrapped (for `walwatch_stats()`), and if so the
/// shim's state of it.
///
/// # Safety
/// `file` must be null or point to a live `sqlite3_file` (such as the one
/// `SQLITE_FCNTL_FILE_POINTER` returns) that stays open, and is not closed, while the returned
/// reference is used.
pub(crate) unsafe fn as_shim_file<'a>(file: *mut sqlite3_file) -> Option<&'a ShimState> {
    if file.is_null() {
        return None;
    }
    // SAFETY: per the contract `file` is a live sqlite3_file; reading pMethods is valid for any
    // file.
    let methods = unsafe { (*file).pMethods };
    let ours = tables()
        .iter()
        .any(|t| t.kind == FileKind::MainDb && std::ptr::eq(t.ours, methods));
    // SAFETY: only main-database files whose methods are our main-database table have a state.
    ours.then(|| unsafe { &*state(file) })
}

/// One method table of the shim: built for one wrapped table and kind of file, then kept.
struct Table {
    real: *const sqlite3_io_methods,
    kind: FileKind,
    ours: &'static sqlite3_io_methods,
}

// SAFETY: `real` is only compared, never dereferenced, and `ours` is an immutable static table
// of function pointers.
unsafe impl Send for Table {}

/// Every table built so far. A VFS has a handful of tables (SQLite's `unix` VFS: one per locking
/// style), so this stays tiny; it is locked only in `xOpen` and `walwatch_stats()`.
static TABLES: Mutex<Vec<Table>> = Mutex::new(Vec::new());

fn tables() -> std::sync::MutexGuard<'static, Vec<Table>> {
    // A panic while holding it cannot leave the list inconsistent (one push).
    TABLES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The shim's table for files of `kind` whose wrapped table is `real`, built once and leaked.
fn table_for(real: &'static sqlite3_io_methods, kind: FileKind) -> &'static sqlite3_io_methods {
    let mut tables = tables();
    if let Some(t) = tables
        .iter()
        .find(|t| std::ptr::eq(t.real, real) && t.kind == kind)
    {
        return t.ours;
    }
    let ours: &'static sqlite3_io_methods = Box::leak(Box::new(methods(real, kind)));
    tables.push(Table { real, kind, ours });
    ours
}

/// The shim's method if walwatch observes it on this kind of file and the wrapped table has
/// it; else the wrapped table's own member (present or not).
fn pick<F>(observed: bool, real: Option<F>, ours: F) -> Option<F> {
    match real {
        Some(_) if observed => Some(ours),
        other => other,
    }
}

/// A table for `kind` over `real` (see the module header for which methods are the shim's).
/// Members beyond the wrapped table's `iVersion` are left out, as SQLite never reads them.
fn methods(real: &sqlite3_io_methods, kind: FileKind) -> sqlite3_io_methods {
    let db = kind == FileKind::MainDb;
    let wal = kind == FileKind::Wal;
    let v2 = real.iVersion >= 2;
    let v3 = real.iVersion >= 3;
    sqlite3_io_methods {
        iVersion: real.iVersion,
        xClose: pick(db, real.xClose, entry::x_close),
        xRead: real.xRead,
        xWrite: pick(db, real.xWrite, entry::x_write),
        xTruncate: pick(wal, real.xTruncate, entry::x_truncate),
        xSync: pick(db || wal, real.xSync, entry::x_sync),
        xFileSize: real.xFileSize,
        xLock: pick(db, real.xLock, entry::x_lock),
        xUnlock: real.xUnlock,
        xCheckReservedLock: real.xCheckReservedLock,
        xFileControl: pick(db, real.xFileControl, entry::x_file_control),
        xSectorSize: real.xSectorSize,
        xDeviceCharacteristics: real.xDeviceCharacteristics,
        xShmMap: pick(db, real.xShmMap, entry::x_shm_map).filter(|_| v2),
        xShmLock: pick(db, real.xShmLock, entry::x_shm_lock).filter(|_| v2),
        xShmBarrier: real.xShmBarrier.filter(|_| v2),
        xShmUnmap: pick(db, real.xShmUnmap, entry::x_shm_unmap).filter(|_| v2),
        xFetch: real.xFetch.filter(|_| v3),
        xUnfetch: real.xUnfetch.filter(|_| v3),
    }
}

/// Runs bookkeeping so that a bug in it can never unwind into SQLite or fail the operation.
#[inline(always)]
fn record(f: impl FnOnce()) {
    crate::unwind::guard("recording", (), f);
}

/// What each of the shim's io methods returns when walwatch panics in it: the code SQLite's unix
/// VFS returns for that failure.
#[rustfmt::skip]
macro_rules! failure {
    (xClose)                 => { $crate::ffi::SQLITE_IOERR | (16 << 8) };
    (xWrite)                 => { $crate::ffi::SQLITE_IOERR | (3 << 8) };
    (xTruncate)              => { $crate::ffi::SQLITE_IOERR | (6 << 8) };
    (xSync)                  => { $crate::ffi::SQLITE_IOERR | (4 << 8) };
    (xLock)                  => { $crate::ffi::SQLITE_IOERR | (15 << 8) };
    (xFileControl)           => { $crate::ffi::SQLITE_NOTFOUND };
    (xShmMap)                => { $crate::ffi::SQLITE_IOERR | (21 << 8) };
    (xShmLock)               => { $crate::ffi::SQLITE_IOERR | (20 << 8) };
    (xShmUnmap)              => { $crate::ffi::SQLITE_IOERR };
}
/// [`ShimState::shm_lock`] of a file whose wrapped table has no `xShmLock`.
unsafe extern "C" fn no_shm_lock(_: *mut sqlite3_file, _: c_int, _: c_int, _: c_int) -> c_int {
    failure!(xShmLock)
}

#[cfg(test)]
pub(crate) use failure;

/// Calls the wrapped file's method of the same name with the same file pointer. The shim's
/// method exists only where the wrapped one does ([`pick`]), so `None` cannot happen; it returns
/// the failure code rather than panic.
macro_rules! forward {
    ($f:expr, $state:expr, $method:ident ( $($arg:expr),* )) => {{
        match $state.real.$method {
            // SAFETY: the wrapped file is open and this is its own method, called with the
            // pointer it was opened with and SQLite's arguments.
            Some(method) => unsafe { method($f $(, $arg)*) },
            None => failure!($method),
        }
    }};
}

/// The `extern "C"` functions of the rarely called methods. Each runs the method of the same
/// name (an `unsafe fn` whose contract is SQLite's for that io method) inside
/// [`crate::unwind::guard`], so a panic in it returns `failure!(method)` to SQLite. The three
/// methods of every transaction (`xShmLock`, `xFileControl`) are written out in
/// [`hot`]: the same guarantee, without a guard around the forwarded call.
macro_rules! entry_points {
    ($($method:ident => $name:ident ( $($arg:ident : $ty:ty),* ) $(-> $ret:ty)?;)*) => {
        mod entry {
            use super::*;
            pub(super) use super::hot::{x_file_control, x_shm_lock};
            $(
                pub(super) unsafe extern "C" fn $name($($arg: $ty),*) $(-> $ret)? {
                    crate::unwind::guard(stringify!($method), failure!($method), || {
                        // SAFETY: SQLite calls this io method with the arguments its contract
                        // requires, which is the inner method's contract.
                        unsafe { super::$name($($arg),*) }
                    })
                }
            )*
        }
    };
}

entry_points! {
    xClose => x_close(f: *mut sqlite3_file) -> c_int;
    xWrite => x_write(f: *mut sqlite3_file, buf: *const c_void, amt: c_int, off: i64) -> c_int;
    xTruncate => x_truncate(f: *mut sqlite3_file, size: i64) -> c_int;
    xSync => x_sync(f: *mut sqlite3_file, flags: c_int) -> c_int;
    xLock => x_lock(f: *mut sqlite3_file, level: c_int) -> c_int;
    xShmMap => x_shm_map(f: *mut sqlite3_file, region: c_int, size: c_int, extend: c_int, pp: *mut *mut c_void) -> c_int;
    xShmUnmap => x_shm_unmap(f: *mut sqlite3_file, delete: c_int) -> c_int;
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_close(f: *mut sqlite3_file) -> c_int {
    // SAFETY: SQLite calls xClose once on a file our xOpen wrapped.
    let state = unsafe { state(f) };
    if let Some(recorder) = &mut state.recorder {
        record(|| recorder.close());
    }
    forward!(f, state, xClose())
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_write(f: *mut sqlite3_file, buf: *const c_void, amt: c_int, off: i64) -> c_int {
    // SAFETY: called by SQLite on an open file of ours (a main database: a checkpoint copies
    // frames into it).
    let state = unsafe { state(f) };
    let rc = forward!(f, state, xWrite(buf, amt, off));
    if let (SQLITE_OK, Some(region)) = (rc, state.region) {
        region
            .io
            .db_write_bytes
            .fetch_add(amt.max(0) as u64, Relaxed);
    }
    rc
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_truncate(f: *mut sqlite3_file, size: i64) -> c_int {
    // SAFETY: called by SQLite on an open file of ours (a WAL: only WALs have our xTruncate).
    let state = unsafe { state(f) };
    let rc = forward!(f, state, xTruncate(size));
    if let (SQLITE_OK, Some(region)) = (rc, state.region) {
        region.io.wal_bytes.store(size.max(0) as u64, Relaxed);
        if size == 0 {
            region.io.wal_truncations.fetch_add(1, Relaxed);
        }
    }
    rc
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_sync(f: *mut sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: called by SQLite on an open file of ours.
    let state = unsafe { state(f) };
    let rc = forward!(f, state, xSync(flags));
    if let (SQLITE_OK, Some(region)) = (rc, state.region) {
        if let Some(count) = region.io.fsyncs.get(state.kind as usize) {
            count.fetch_add(1, Relaxed);
        }
    }
    rc
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_lock(f: *mut sqlite3_file, level: c_int) -> c_int {
    // SAFETY: called by SQLite on an open file of ours.
    let state = unsafe { state(f) };
    let rc = forward!(f, state, xLock(level));
    if rc == SQLITE_BUSY {
        LAST_BUSY.set(state.region);
    }
    rc
}

/// Answers `SQLITE_FCNTL_VFSNAME` as SQLite's shims do: "walwatch/" before the wrapped VFS's
/// answer, or before the wrapped VFS's name when it gave none (unix gives none).
///
/// # Safety
/// `out` must be the `char**` argument of `SQLITE_FCNTL_VFSNAME`.
unsafe fn prepend_vfs_name(out: *mut *mut std::ffi::c_char, rc: c_int) -> c_int {
    let inner = if rc == SQLITE_OK {
        // SAFETY: per the contract, `out` is a valid `char**`.
        unsafe { *out }
    } else {
        std::ptr::null_mut()
    };
    let mut name = b"walwatch/".to_vec();
    if inner.is_null() {
        name.extend_from_slice(super::parent_name());
    } else {
        // SAFETY: the wrapped VFS returned a NUL-terminated string.
        name.extend_from_slice(unsafe { CStr::from_ptr(inner) }.to_bytes());
    }
    let ours = host::sqlite_string(&name);
    if ours.is_null() {
        return rc; // out of memory: leave the wrapped VFS's answer untouched
    }
    // SAFETY: `inner` is the wrapped VFS's sqlite3_malloc'd answer, replaced by ours below.
    unsafe { host::sqlite_free(inner.cast()) };
    // SAFETY: per the contract; SQLite frees it with sqlite3_free.
    unsafe { *out = ours };
    SQLITE_OK
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_shm_map(
    f: *mut sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    pp: *mut *mut c_void,
) -> c_int {
    // SAFETY: called by SQLite on an open file of ours.
    let state = unsafe { state(f) };
    let rc = forward!(f, state, xShmMap(region, size, extend, pp));
    if rc == SQLITE_OK && region == 0 && !pp.is_null() && state.recorder.is_some() {
        // SAFETY: on success the real xShmMap stored the region's address in *pp (null when
        // asked not to create a region that does not exist yet).
        let mapped = unsafe { *pp } as *const u8;
        if !mapped.is_null() {
            state.shm0 = mapped;
        }
    }
    rc
}

/// The live wal-index of region 0 as mapped.
fn live_wal_index(shm0: *const u8) -> LiveWalIndex {
    // SAFETY: `shm0` is a file's `shm0`: LiveWalIndex::NONE's pointer, or region 0 from the
    // real xShmMap, mapped until xShmUnmap, which sets it back to NONE's; the value is used only
    // within the current method call.
    unsafe { LiveWalIndex::new(shm0) }
}

/// The methods of every transaction, as `extern "C"` functions: the shim's own work runs in
/// [`crate::unwind::guard`] (before forwarding: a panic returns the method's failure code
/// without calling the wrapped VFS; after: it is bookkeeping, and the wrapped VFS's result is
/// returned whatever happens), the forwarded call itself outside it. The work on these paths
/// has no panic in it (no indexing that can fail, no unwrap, wrapping arithmetic), so the
/// compiler drops the guards and the forwarded call can be a tail call; a test build injects
/// panics at each guard (`crate::unwind::tests`). Two pieces of straight-line bookkeeping run
/// without one ([`Recorder::lock_granted`], [`Recorder::unlocking_plain`]): a guard there only
/// kept the compiler from inlining them.
///
/// How the hot path stays small, instruction by instruction (`bench/callgrind.sh`): one flag
/// per file says whether the fast path applies; a lock keeps only the state pointer across the
/// wrapped call (the lock is remembered in the recorder); every rarer case is a separate
/// function reached by a tail call, which is why those are `extern "C"` (the compiler makes a
/// tail call only between functions of the same calling convention) and why two of them return
/// an opaque value (a constant result would be kept live in the caller instead).
mod hot {
    use super::*;
    use crate::unwind::guard;

    pub(in super::super) unsafe extern "C" fn x_shm_lock(
        f: *mut sqlite3_file,
        offset: c_int,
        count: c_int,
        flags: c_int,
    ) -> c_int {
        // SAFETY: called by SQLite on an open file of ours.
        let state = unsafe { state(f) };
        let real = state.shm_lock;
        // A negative offset becomes a large slot, and takes the other path.
        let slot = offset as u32 as usize;
        // The fast paths: one slot (every lock of a read or write transaction), no checkpoint
        // under way, no busy lock pending. Everything else is timed and followed step by step.
        if !(state.fast && count == 1 && slot < SLOTS) {
            return shm_lock_other(f, offset, count, flags);
        }
        let recorder = state.fast_recorder();
        if flags & SQLITE_SHM_UNLOCK != 0 {
            // An unlock, recorded while the lock is still held. Most need no clock and no
            // call: they end in a tail call to the wrapped VFS.
            if recorder.is_marked(slot) {
                return shm_unlock_marked(f, slot, flags);
            }
            // SQLite sets exactly one of SHARED and EXCLUSIVE; testing SHARED here (EXCLUSIVE
            // on the lock path) keeps the compiler from computing it before the branch.
            let exclusive = flags & SQLITE_SHM_SHARED == 0;
            if !guard("xShmLock", false, || {
                recorder.unlocking_unmarked(slot, exclusive);
                true
            }) {
                return failure!(xShmLock);
            }
            // SAFETY: the wrapped file's own method, with its pointer and SQLite's arguments.
            return unsafe { real(f, offset, count, flags) };
        }
        if !recorder.next_lock_is_plain() {
            return shm_lock_one_timed(f, slot, flags);
        }
        // A plain lock (the most frequent: the tick clock is inline): forwarded with only the
        // state pointer kept across the call (the lock itself is remembered in the recorder),
        // then recorded if granted.
        recorder.locking_one(slot, flags & SQLITE_SHM_EXCLUSIVE != 0);
        // SAFETY: the wrapped file's own method, with its pointer and SQLite's arguments.
        let rc = unsafe { real(f, offset, 1, flags) };
        shm_lock_settled(state, rc, true)
    }

    /// A lock on one slot whose clock is read by a call (the TSC is not the tick clock, or its
    /// rate is not known yet).
    #[inline(never)]
    extern "C" fn shm_lock_one_timed(f: *mut sqlite3_file, slot: usize, flags: c_int) -> c_int {
        // SAFETY: only called from x_shm_lock, on its open file; its borrows have ended.
        let state = unsafe { super::state(f) };
        let real = state.shm_lock;
        state
            .fast_recorder()
            .locking_one(slot, flags & SQLITE_SHM_EXCLUSIVE != 0);
        // SAFETY: the wrapped file's own method, with its pointer and SQLite's arguments.
        let rc = unsafe { real(f, slot as c_int, 1, flags) };
        shm_lock_settled(state, rc, false)
    }

    /// The wrapped VFS answered `rc` to the lock [`Recorder::locking_one`] remembered; `plain`
    /// as for [`Recorder::lock_granted`].
    #[inline(always)]
    fn shm_lock_settled(state: &mut ShimState, rc: c_int, plain: bool) -> c_int {
        if rc != SQLITE_OK {
            return shm_lock_refused(state, rc);
        }
        let wal = live_wal_index(state.shm0);
        // Still fast: forwarding a lock changes nothing the flag depends on. Straight-line
        // code with no panic in it: no guard (one would only keep the compiler from inlining
        // it).
        let follow_up = state.fast_recorder().lock_granted(wal, plain);
        if follow_up != 0 {
            return shm_lock_follow_up(state, follow_up);
        }
        rc
    }

    /// What [`Recorder::lock_granted`] left to do for the lock just granted: a sampled hold's
    /// start, a checkpoint's start. A tail call of [`shm_lock_settled`], so that nothing lives
    /// across it there.
    #[cold]
    #[inline(never)]
    fn shm_lock_follow_up(state: &mut ShimState, follow_up: u8) -> c_int {
        let wal = live_wal_index(state.shm0);
        let recorder = state.fast_recorder();
        record(|| recorder.lock_follow_up(follow_up, wal));
        state.refresh_fast();
        // Opaque, or the compiler sees the constant and keeps it live in the caller across the
        // call instead of making it a tail call.
        std::hint::black_box(SQLITE_OK)
    }

    /// A lock [`Recorder::locking_one`] remembered was not granted (`rc`): a busy lock is
    /// counted.
    #[cold]
    #[inline(never)]
    fn shm_lock_refused(state: &mut ShimState, rc: c_int) -> c_int {
        let wal = state.wal_index();
        if let Some(recorder) = &mut state.recorder {
            if rc == SQLITE_BUSY {
                let lock = recorder.pending_lock();
                shm_lock_busy(recorder, lock, wal);
            }
        }
        state.refresh_fast();
        // Opaque: see shm_lock_sampled.
        std::hint::black_box(rc)
    }

    /// The unlock of a stamped or sampled hold: recorded, then forwarded. A plain one (a short
    /// write transaction, the most frequent) calls nothing but the wrapped VFS, in a tail call.
    #[inline(never)]
    extern "C" fn shm_unlock_marked(f: *mut sqlite3_file, slot: usize, flags: c_int) -> c_int {
        // SAFETY: only called from x_shm_lock, on its open file; its `state` borrow has ended.
        let state = unsafe { state(f) };
        let real = state.shm_lock;
        let wal = live_wal_index(state.shm0);
        let recorder = state.fast_recorder();
        // Straight-line code with no panic in it: no guard (see shm_lock_settled).
        if !recorder.unlocking_plain(slot, wal) {
            return shm_unlock_timed(f, slot, flags);
        }
        // SAFETY: the wrapped file's own method, with its pointer and SQLite's arguments.
        unsafe { real(f, slot as c_int, 1, flags) }
    }

    /// The unlock of a sampled or long hold, the end of a write transaction that restarted the
    /// WAL, or an unlock whose clock is read by a call.
    #[inline(never)]
    extern "C" fn shm_unlock_timed(f: *mut sqlite3_file, slot: usize, flags: c_int) -> c_int {
        // SAFETY: only called from shm_unlock_marked, on its open file; its borrows have ended.
        let state = unsafe { super::state(f) };
        let real = state.shm_lock;
        let wal = live_wal_index(state.shm0);
        if let Some(recorder) = &mut state.recorder {
            let exclusive = flags & SQLITE_SHM_EXCLUSIVE != 0;
            if !guard("xShmLock", false, || {
                recorder.unlocking_one(slot, exclusive, wal);
                true
            }) {
                return failure!(xShmLock);
            }
        }
        // SAFETY: the wrapped file's own method, with its pointer and SQLite's arguments.
        unsafe { real(f, slot as c_int, 1, flags) }
    }

    /// Every `xShmLock` off the fast path: with no stats, forwarded untouched (a tail call,
    /// no frame); else [`shm_lock_followed`].
    #[inline(never)]
    extern "C" fn shm_lock_other(
        f: *mut sqlite3_file,
        offset: c_int,
        count: c_int,
        flags: c_int,
    ) -> c_int {
        // SAFETY: only called from x_shm_lock, on its open file; its `state` borrow has ended.
        let state = unsafe { state(f) };
        if state.recorder.is_some() {
            return shm_lock_followed(f, offset, count, flags);
        }
        // No stats: nothing of the shim's runs. The empty guard is where a test build injects
        // a panic, so every method of ours is tested the same way.
        if !guard("xShmLock", false, || true) {
            return failure!(xShmLock);
        }
        // SAFETY: the wrapped file's own method, with its pointer and SQLite's arguments.
        unsafe { (state.shm_lock)(f, offset, count, flags) }
    }

    /// [`shm_lock_any`] in its guard (a panic returns the failure code), then the fast flag
    /// set again.
    #[inline(never)]
    extern "C" fn shm_lock_followed(
        f: *mut sqlite3_file,
        offset: c_int,
        count: c_int,
        flags: c_int,
    ) -> c_int {
        let rc = guard("xShmLock", failure!(xShmLock), || {
            shm_lock_any(f, offset, count, flags)
        });
        // SAFETY: only called on an open file of ours; shm_lock_any's borrow has ended.
        unsafe { super::state(f) }.refresh_fast();
        rc
    }

    pub(in super::super) unsafe extern "C" fn x_file_control(
        f: *mut sqlite3_file,
        op: c_int,
        arg: *mut c_void,
    ) -> c_int {
        // SAFETY: called by SQLite on an open file of ours.
        let state = unsafe { state(f) };
        let Some(real) = state.real.xFileControl else {
            return failure!(xFileControl);
        };
        // The empty guard is where a test build injects a panic (see x_shm_lock).
        if !guard("xFileControl", false, || true) {
            return failure!(xFileControl);
        }
        if op == SQLITE_FCNTL_PRAGMA || op == SQLITE_FCNTL_VFSNAME {
            return file_control_observed(f, op, arg);
        }
        // SAFETY: the wrapped file's own method, with its pointer and SQLite's arguments.
        unsafe { real(f, op, arg) }
    }

    /// The two file controls the shim looks at: forwarded, then observed.
    #[inline(never)]
    extern "C" fn file_control_observed(
        f: *mut sqlite3_file,
        op: c_int,
        arg: *mut c_void,
    ) -> c_int {
        // SAFETY: only called from x_file_control, on its open file; its borrow has ended.
        let state = unsafe { state(f) };
        let Some(real) = state.real.xFileControl else {
            return failure!(xFileControl);
        };
        // SAFETY: the wrapped file's own method, with its pointer and SQLite's arguments.
        let rc = unsafe { real(f, op, arg) };
        guard("xFileControl", rc, || {
            // SAFETY: SQLite's arguments for this opcode, after the wrapped VFS answered.
            unsafe { observe_file_control(state, op, arg, rc) }
        })
    }

    /// `SQLITE_FCNTL_PRAGMA` (the mode of a `PRAGMA wal_checkpoint`) and `SQLITE_FCNTL_VFSNAME`
    /// (the shim's name before the wrapped VFS's), after the wrapped VFS answered `rc`.
    ///
    /// # Safety
    /// `op` and `arg` are SQLite's arguments of `xFileControl`.
    unsafe fn observe_file_control(
        state: &mut ShimState,
        op: c_int,
        arg: *mut c_void,
        rc: c_int,
    ) -> c_int {
        if op == SQLITE_FCNTL_PRAGMA && rc == SQLITE_NOTFOUND && !arg.is_null() {
            if let Some(recorder) = &mut state.recorder {
                // SAFETY: for SQLITE_FCNTL_PRAGMA, `arg` is SQLite's `char *aFcntl[4]`: [1] is
                // the pragma's name (never null), [2] its argument or null; both
                // NUL-terminated and alive for this call. We only read them, and return the
                // wrapped VFS's result.
                let (name, value) = unsafe {
                    let fcntl = arg as *const *const std::ffi::c_char;
                    let name = *fcntl.add(1);
                    let value = *fcntl.add(2);
                    (
                        (!name.is_null()).then(|| CStr::from_ptr(name).to_bytes()),
                        (!value.is_null()).then(|| CStr::from_ptr(value).to_bytes()),
                    )
                };
                if let Some(name) = name {
                    recorder.pragma(name, value);
                }
            }
        }
        if op == SQLITE_FCNTL_VFSNAME && (rc == SQLITE_OK || rc == SQLITE_NOTFOUND) {
            // SAFETY: for VFSNAME, `arg` is a `char**` that receives a sqlite3_malloc'd string.
            return unsafe { prepend_vfs_name(arg as *mut *mut std::ffi::c_char, rc) };
        }
        rc
    }
}

/// `xShmLock` off the fast path: several slots at once (recovery, a checkpoint's restart step),
/// or any lock while this connection runs a checkpoint (then every lock call is timed: a
/// blocking lock on a SETLK_TIMEOUT build is waiting, and the recorder follows the steps).
#[inline(never)]
fn shm_lock_any(f: *mut sqlite3_file, offset: c_int, count: c_int, flags: c_int) -> c_int {
    // SAFETY: only called from x_shm_lock, on its open file; its `state` borrow has ended.
    let state = unsafe { state(f) };
    let wal = state.wal_index();
    // A negative offset or count (never sent by SQLite) becomes a large u32, then SLOTS.
    let lock = ShmLock {
        offset: (offset as u32).min(SLOTS as u32) as usize,
        count: (count as u32).min(SLOTS as u32) as usize,
        exclusive: flags & SQLITE_SHM_EXCLUSIVE != 0,
    };
    if flags & SQLITE_SHM_UNLOCK != 0 {
        if let Some(recorder) = &mut state.recorder {
            if recorder.checkpointing() {
                record(|| recorder.unlocking_in_checkpoint(lock, wal));
            }
            recorder.unlocking(lock, wal);
        }
        return forward!(f, state, xShmLock(offset, count, flags));
    }
    let timed = state.recorder.as_ref().is_some_and(|r| r.checkpointing());
    let started = timed.then(Instant::now);
    let rc = forward!(f, state, xShmLock(offset, count, flags));
    if let Some(recorder) = &mut state.recorder {
        if rc == SQLITE_OK {
            let took = started.map(|s| s.elapsed());
            if recorder.locked(lock, wal) {
                record(|| recorder.locked_rare(lock, wal, took));
            }
        } else if rc == SQLITE_BUSY {
            shm_lock_busy(recorder, lock, wal);
        }
    }
    rc
}

/// A lock found busy: counted once per busy-handler round.
#[cold]
#[inline(never)]
fn shm_lock_busy(recorder: &mut Recorder, lock: ShmLock, wal: LiveWalIndex) {
    // The busy handler's xSleep takes LAST_BUSY: still set means no sleep since this thread's
    // previous busy lock.
    let slept = LAST_BUSY.get().is_none();
    LAST_BUSY.set(Some(recorder.region()));
    record(|| recorder.busy(lock, wal, slept));
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_shm_unmap(f: *mut sqlite3_file, delete: c_int) -> c_int {
    // SAFETY: called by SQLite on an open file of ours.
    let state = unsafe { state(f) };
    state.shm0 = LiveWalIndex::NONE.as_ptr();
    forward!(f, state, xShmUnmap(delete))
}

//! The shim's `sqlite3_io_methods`: every method forwards to the wrapped VFS's file, then counts.
//!
//! Layout as in SQLite's vfsstat.c: our [`ShimFile`] comes first (its `base` member is what
//! SQLite sees) and the wrapped VFS's file object follows it in the same allocation, so
//! `szOsFile` is `size_of::<ShimFile>() + parent.szOsFile` and no allocation happens per file.
//!
//! Hot-path rule: after forwarding, a method does at most a few relaxed atomic adds on the
//! mapped stats region (and, for `xShmLock`, a read transaction reads the coarse clock; one
//! hold in sixteen reads the monotonic clock). No allocation, no syscall, no lock. Bookkeeping
//! never changes the result SQLite gets.

use super::recorder::{Recorder, ShmLock};
use super::LAST_BUSY;
use crate::ffi::*;
use crate::host;
use crate::layout::{Region, SLOTS};
use crate::wal_index::{LiveWalIndex, WalIndex};
use std::ffi::{c_int, c_void, CStr};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// `SQLITE_FCNTL_PRAGMA`: sent to the database file when a `PRAGMA` statement is prepared.
const SQLITE_FCNTL_PRAGMA: c_int = 14;

/// What a file is to SQLite, decided once in `xOpen` from its open flags.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum FileKind {
    MainDb = 0,
    Wal = 1,
    Other = 2,
}

#[repr(C)]
pub(crate) struct ShimFile {
    /// Must stay first: SQLite only knows this part.
    base: sqlite3_file,
    /// The wrapped VFS's file, right after this struct.
    real: *mut sqlite3_file,
    kind: FileKind,
    region: Option<&'static Region>,
    /// Main database only: what this connection does with the `-shm` locks.
    recorder: Option<Recorder>,
    /// Main database only: `-shm` region 0 (the wal-index header) once mapped.
    shm0: *const u8,
}

impl ShimFile {
    /// Prepares the memory SQLite gave `xOpen`: our part, pointing at the real file after it.
    ///
    /// # Safety
    /// `file` must point to `size_of::<ShimFile>() + parent.szOsFile` writable bytes, aligned
    /// for `ShimFile`.
    pub(crate) unsafe fn init(file: *mut sqlite3_file, kind: FileKind) -> *mut sqlite3_file {
        let shim = file as *mut ShimFile;
        // SAFETY: per the contract the allocation holds a ShimFile followed by the real file;
        // `add(1)` stays inside it, and ShimFile's size keeps the real file 8-byte aligned.
        unsafe {
            let real = shim.add(1) as *mut sqlite3_file;
            (*real).pMethods = std::ptr::null();
            shim.write(ShimFile {
                base: sqlite3_file {
                    pMethods: std::ptr::null(),
                },
                real,
                kind,
                region: None,
                recorder: None,
                shm0: std::ptr::null(),
            });
            real
        }
    }

    /// Finishes `xOpen` once the real open succeeded (or left methods to close).
    pub(crate) fn opened(&mut self, db_path: Option<&[u8]>) {
        // SAFETY: `real` was set in `init` and the real open filled in its methods.
        let real_methods = unsafe { (*self.real).pMethods };
        if real_methods.is_null() {
            return;
        }
        // SAFETY: non-null io-methods of the wrapped VFS live as long as its files.
        let version = unsafe { (*real_methods).iVersion };
        // SAFETY: as above.
        let has_shm = unsafe { (*real_methods).xShmMap.is_some() };
        self.base.pMethods = match version {
            v if v >= 3 && has_shm => &METHODS_V3,
            2 if has_shm => &METHODS_V2,
            _ => &METHODS_V1,
        };
        let Some(path) = db_path else { return };
        self.region = crate::region::for_database(path);
        match self.kind {
            FileKind::MainDb => self.recorder = self.region.map(Recorder::new),
            FileKind::Wal => {
                if let Some(region) = self.region {
                    let mut size = 0;
                    if let Some(file_size) = self.real_methods().xFileSize {
                        // SAFETY: the real file is open; xFileSize writes one i64.
                        if unsafe { file_size(self.real, &mut size) } == SQLITE_OK {
                            region.io.wal_bytes.store(size.max(0) as u64, Relaxed);
                        }
                    }
                }
            }
            FileKind::Other => {}
        }
    }

    /// # Safety
    /// `file` must be a file our `xOpen` set up and that is not closed.
    unsafe fn get<'a>(file: *mut sqlite3_file) -> &'a mut ShimFile {
        // SAFETY: `base` is the first member of the repr(C) ShimFile, and SQLite serializes
        // calls on one file, so no other reference to it is live.
        unsafe { &mut *(file as *mut ShimFile) }
    }

    fn real_methods(&self) -> &sqlite3_io_methods {
        // SAFETY: our methods are installed only when the real file's methods are non-null,
        // and they stay valid until xClose.
        unsafe { &*(*self.real).pMethods }
    }

    fn wal_index(&self) -> LiveWalIndex {
        // SAFETY: shm0 is null or region 0 from the real xShmMap, mapped until xShmUnmap,
        // which clears it; the value is used only within the current method call.
        unsafe { LiveWalIndex::new(self.shm0) }
    }

    /// Our own stats for the SQL function: the region, and the live wal-index header.
    pub(crate) fn stats_view(&self) -> Option<(&'static Region, Option<WalIndex>)> {
        self.region
            .map(|region| (region, self.wal_index().header()))
    }
}

/// Whether `file` is one of ours (for `walwatch_stats()`), and if so the shim's view of it.
///
/// # Safety
/// `file` must be null or point to a live `sqlite3_file` (such as the one
/// `SQLITE_FCNTL_FILE_POINTER` returns) that stays open, and is not closed, while the returned
/// reference is used.
pub(crate) unsafe fn as_shim_file<'a>(file: *mut sqlite3_file) -> Option<&'a ShimFile> {
    if file.is_null() {
        return None;
    }
    // SAFETY: per the contract `file` is a live sqlite3_file; reading pMethods is valid for any
    // file.
    let methods = unsafe { (*file).pMethods };
    let ours = [&METHODS_V1, &METHODS_V2, &METHODS_V3]
        .iter()
        .any(|m| std::ptr::eq(*m, methods));
    // SAFETY: only files whose methods are ours are ShimFiles.
    ours.then(|| unsafe { &*(file as *const ShimFile) })
}

/// Runs bookkeeping so that a bug in it can never unwind into SQLite or fail the operation.
#[inline(always)]
fn record(f: impl FnOnce()) {
    crate::unwind::guard("recording", (), f);
}

/// What each io method returns when the real file lacks it or walwatch panics in it: the code
/// SQLite's unix VFS returns for that failure (`xSectorSize`: SQLite's default sector size).
#[rustfmt::skip]
macro_rules! failure {
    (xClose)                 => { $crate::ffi::SQLITE_IOERR | (16 << 8) };
    (xRead)                  => { $crate::ffi::SQLITE_IOERR | (1 << 8) };
    (xWrite)                 => { $crate::ffi::SQLITE_IOERR | (3 << 8) };
    (xTruncate)              => { $crate::ffi::SQLITE_IOERR | (6 << 8) };
    (xSync)                  => { $crate::ffi::SQLITE_IOERR | (4 << 8) };
    (xFileSize)              => { $crate::ffi::SQLITE_IOERR | (7 << 8) };
    (xLock)                  => { $crate::ffi::SQLITE_IOERR | (15 << 8) };
    (xUnlock)                => { $crate::ffi::SQLITE_IOERR | (8 << 8) };
    (xCheckReservedLock)     => { $crate::ffi::SQLITE_IOERR | (14 << 8) };
    (xFileControl)           => { $crate::ffi::SQLITE_NOTFOUND };
    (xSectorSize)            => { 4096 };
    (xDeviceCharacteristics) => { 0 };
    (xShmMap)                => { $crate::ffi::SQLITE_IOERR | (21 << 8) };
    (xShmLock)               => { $crate::ffi::SQLITE_IOERR | (20 << 8) };
    (xShmBarrier)            => { () };
    (xShmUnmap)              => { $crate::ffi::SQLITE_IOERR };
    (xFetch)                 => { $crate::ffi::SQLITE_IOERR | (24 << 8) };
    (xUnfetch)               => { $crate::ffi::SQLITE_IOERR | (24 << 8) };
}
#[cfg(test)]
pub(crate) use failure;

/// Forwards a call to the real file's method of the same name (its failure code if the real
/// file lacks it: SQLite's own checks let that happen only with a malformed wrapped VFS).
macro_rules! forward {
    ($file:expr, $method:ident ( $($arg:expr),* )) => {{
        let file: &mut ShimFile = $file;
        let real = file.real;
        match file.real_methods().$method {
            // SAFETY: the real file is open and this is its own method, with SQLite's arguments.
            Some(method) => unsafe { method(real $(, $arg)*) },
            None => failure!($method),
        }
    }};
}

/// The `extern "C"` functions in the method tables. Each runs the method of the same name
/// (an `unsafe fn` whose contract is SQLite's for that io method) inside
/// [`crate::unwind::guard`], so a panic in it returns `failure!(method)` to SQLite.
macro_rules! entry_points {
    ($($method:ident => $name:ident ( $($arg:ident : $ty:ty),* ) $(-> $ret:ty)?;)*) => {
        mod entry {
            use super::*;
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
    xRead => x_read(f: *mut sqlite3_file, buf: *mut c_void, amt: c_int, off: i64) -> c_int;
    xWrite => x_write(f: *mut sqlite3_file, buf: *const c_void, amt: c_int, off: i64) -> c_int;
    xTruncate => x_truncate(f: *mut sqlite3_file, size: i64) -> c_int;
    xSync => x_sync(f: *mut sqlite3_file, flags: c_int) -> c_int;
    xFileSize => x_file_size(f: *mut sqlite3_file, size: *mut i64) -> c_int;
    xLock => x_lock(f: *mut sqlite3_file, level: c_int) -> c_int;
    xUnlock => x_unlock(f: *mut sqlite3_file, level: c_int) -> c_int;
    xCheckReservedLock => x_check_reserved_lock(f: *mut sqlite3_file, out: *mut c_int) -> c_int;
    xFileControl => x_file_control(f: *mut sqlite3_file, op: c_int, arg: *mut c_void) -> c_int;
    xSectorSize => x_sector_size(f: *mut sqlite3_file) -> c_int;
    xDeviceCharacteristics => x_device_characteristics(f: *mut sqlite3_file) -> c_int;
    xShmMap => x_shm_map(f: *mut sqlite3_file, region: c_int, size: c_int, extend: c_int, pp: *mut *mut c_void) -> c_int;
    xShmLock => x_shm_lock(f: *mut sqlite3_file, offset: c_int, count: c_int, flags: c_int) -> c_int;
    xShmBarrier => x_shm_barrier(f: *mut sqlite3_file);
    xShmUnmap => x_shm_unmap(f: *mut sqlite3_file, delete: c_int) -> c_int;
    xFetch => x_fetch(f: *mut sqlite3_file, off: i64, amt: c_int, pp: *mut *mut c_void) -> c_int;
    xUnfetch => x_unfetch(f: *mut sqlite3_file, off: i64, p: *mut c_void) -> c_int;
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_close(f: *mut sqlite3_file) -> c_int {
    // SAFETY: SQLite calls xClose once on a file our xOpen set up.
    let file = unsafe { ShimFile::get(f) };
    if let Some(recorder) = &mut file.recorder {
        record(|| recorder.close());
    }
    let rc = forward!(file, xClose());
    file.base.pMethods = std::ptr::null();
    rc
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_read(f: *mut sqlite3_file, buf: *mut c_void, amt: c_int, off: i64) -> c_int {
    // SAFETY: called by SQLite on an open file of ours.
    forward!(unsafe { ShimFile::get(f) }, xRead(buf, amt, off))
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_write(f: *mut sqlite3_file, buf: *const c_void, amt: c_int, off: i64) -> c_int {
    // SAFETY: called by SQLite on an open file of ours.
    let file = unsafe { ShimFile::get(f) };
    let rc = forward!(file, xWrite(buf, amt, off));
    if let (SQLITE_OK, Some(region)) = (rc, file.region) {
        let bytes = amt.max(0) as u64;
        match file.kind {
            FileKind::Wal => {
                region.io.wal_write_bytes.fetch_add(bytes, Relaxed);
                // Only writes past the known end grow the file; after a WAL restart most
                // writes overwrite, so skip the compare-and-swap loop for them.
                let end = off.max(0) as u64 + bytes;
                if end > region.io.wal_bytes.load(Relaxed) {
                    region.io.wal_bytes.fetch_max(end, Relaxed);
                }
            }
            FileKind::MainDb => {
                region.io.db_write_bytes.fetch_add(bytes, Relaxed);
            }
            FileKind::Other => {}
        }
    }
    rc
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_truncate(f: *mut sqlite3_file, size: i64) -> c_int {
    // SAFETY: called by SQLite on an open file of ours.
    let file = unsafe { ShimFile::get(f) };
    let rc = forward!(file, xTruncate(size));
    if let (SQLITE_OK, FileKind::Wal, Some(region)) = (rc, file.kind, file.region) {
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
    let file = unsafe { ShimFile::get(f) };
    let rc = forward!(file, xSync(flags));
    if let (SQLITE_OK, Some(region)) = (rc, file.region) {
        region.io.fsyncs[file.kind as usize].fetch_add(1, Relaxed);
    }
    rc
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_file_size(f: *mut sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: called by SQLite on an open file of ours.
    forward!(unsafe { ShimFile::get(f) }, xFileSize(size))
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_lock(f: *mut sqlite3_file, level: c_int) -> c_int {
    // SAFETY: called by SQLite on an open file of ours.
    let file = unsafe { ShimFile::get(f) };
    let rc = forward!(file, xLock(level));
    if rc == SQLITE_BUSY {
        LAST_BUSY.set(file.region);
    }
    rc
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_unlock(f: *mut sqlite3_file, level: c_int) -> c_int {
    // SAFETY: called by SQLite on an open file of ours.
    forward!(unsafe { ShimFile::get(f) }, xUnlock(level))
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_check_reserved_lock(f: *mut sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: called by SQLite on an open file of ours.
    forward!(unsafe { ShimFile::get(f) }, xCheckReservedLock(out))
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_file_control(f: *mut sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    // SAFETY: called by SQLite on an open file of ours.
    let file = unsafe { ShimFile::get(f) };
    let rc = forward!(file, xFileControl(op, arg));
    if op == SQLITE_FCNTL_PRAGMA && rc == SQLITE_NOTFOUND && !arg.is_null() {
        if let Some(recorder) = &mut file.recorder {
            // SAFETY: for SQLITE_FCNTL_PRAGMA, `arg` is SQLite's `char *aFcntl[4]`: [1] is the
            // pragma's name (never null), [2] its argument or null; both NUL-terminated and
            // alive for this call. We only read them, and return the wrapped VFS's result.
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
                record(|| recorder.pragma(name, value));
            }
        }
    }
    if op == SQLITE_FCNTL_VFSNAME && (rc == SQLITE_OK || rc == SQLITE_NOTFOUND) {
        // SAFETY: for VFSNAME, `arg` is a `char**` that receives a sqlite3_malloc'd string.
        return unsafe { prepend_vfs_name(arg as *mut *mut std::ffi::c_char, rc) };
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
unsafe fn x_sector_size(f: *mut sqlite3_file) -> c_int {
    // SAFETY: called by SQLite on an open file of ours.
    forward!(unsafe { ShimFile::get(f) }, xSectorSize())
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_device_characteristics(f: *mut sqlite3_file) -> c_int {
    // SAFETY: called by SQLite on an open file of ours.
    forward!(unsafe { ShimFile::get(f) }, xDeviceCharacteristics())
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
    let file = unsafe { ShimFile::get(f) };
    let rc = forward!(file, xShmMap(region, size, extend, pp));
    if rc == SQLITE_OK && region == 0 && !pp.is_null() && file.recorder.is_some() {
        // SAFETY: on success the real xShmMap stored the region's address in *pp.
        file.shm0 = unsafe { *pp } as *const u8;
    }
    rc
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_shm_lock(f: *mut sqlite3_file, offset: c_int, count: c_int, flags: c_int) -> c_int {
    // SAFETY: called by SQLite on an open file of ours.
    let file = unsafe { ShimFile::get(f) };
    let checkpointing = match &file.recorder {
        None => return forward!(file, xShmLock(offset, count, flags)),
        Some(recorder) => recorder.checkpointing(),
    };
    // A negative offset or count (never sent by SQLite) becomes a large u32, then SLOTS.
    let lock = ShmLock {
        offset: (offset as u32).min(SLOTS as u32) as usize,
        count: (count as u32).min(SLOTS as u32) as usize,
        exclusive: flags & SQLITE_SHM_EXCLUSIVE != 0,
    };
    if checkpointing {
        return shm_lock_in_checkpoint(file, lock, offset, count, flags);
    }
    if flags & SQLITE_SHM_UNLOCK != 0 {
        if let Some(recorder) = &mut file.recorder {
            // The fast path cannot panic (see the recorder's module header).
            recorder.unlocking(lock);
        }
        return forward!(file, xShmLock(offset, count, flags));
    }
    let wal = file.wal_index();
    let rc = forward!(file, xShmLock(offset, count, flags));
    if let Some(recorder) = &mut file.recorder {
        if rc == SQLITE_OK {
            // The fast path cannot panic (see the recorder's module header).
            if recorder.locked(lock, wal) {
                record(|| recorder.locked_rare(lock, wal, None));
            }
        } else if rc == SQLITE_BUSY {
            shm_lock_busy(recorder, lock, wal);
        }
    }
    rc
}

/// A lock found busy: counted once per busy-handler round.
#[cold]
fn shm_lock_busy(recorder: &mut Recorder, lock: ShmLock, wal: LiveWalIndex) {
    // The busy handler's xSleep takes LAST_BUSY: still set means no sleep since this thread's
    // previous busy lock.
    let slept = LAST_BUSY.get().is_none();
    LAST_BUSY.set(Some(recorder.region()));
    record(|| recorder.busy(lock, wal, slept));
}

/// `xShmLock` while this connection runs a checkpoint: every lock call is timed (a blocking
/// lock on a SETLK_TIMEOUT build is waiting), and the recorder follows the checkpoint's steps.
#[inline(never)]
fn shm_lock_in_checkpoint(
    file: &mut ShimFile,
    lock: ShmLock,
    offset: c_int,
    count: c_int,
    flags: c_int,
) -> c_int {
    let wal = file.wal_index();
    if flags & SQLITE_SHM_UNLOCK != 0 {
        if let Some(recorder) = &mut file.recorder {
            record(|| recorder.unlocking_in_checkpoint(lock, wal));
            recorder.unlocking(lock);
        }
        return forward!(file, xShmLock(offset, count, flags));
    }
    let started = Instant::now();
    let rc = forward!(file, xShmLock(offset, count, flags));
    if let Some(recorder) = &mut file.recorder {
        if rc == SQLITE_OK {
            let took = started.elapsed();
            if recorder.locked(lock, wal) {
                record(|| recorder.locked_rare(lock, wal, Some(took)));
            }
        } else if rc == SQLITE_BUSY {
            shm_lock_busy(recorder, lock, wal);
        }
    }
    rc
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_shm_barrier(f: *mut sqlite3_file) {
    // SAFETY: called by SQLite on an open file of ours.
    forward!(unsafe { ShimFile::get(f) }, xShmBarrier())
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_shm_unmap(f: *mut sqlite3_file, delete: c_int) -> c_int {
    // SAFETY: called by SQLite on an open file of ours.
    let file = unsafe { ShimFile::get(f) };
    file.shm0 = std::ptr::null();
    forward!(file, xShmUnmap(delete))
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_fetch(f: *mut sqlite3_file, off: i64, amt: c_int, pp: *mut *mut c_void) -> c_int {
    // SAFETY: called by SQLite on an open file of ours.
    forward!(unsafe { ShimFile::get(f) }, xFetch(off, amt, pp))
}

#[inline(always)] // into its `entry` wrapper: no extra call on the I/O path
unsafe fn x_unfetch(f: *mut sqlite3_file, off: i64, p: *mut c_void) -> c_int {
    // SAFETY: called by SQLite on an open file of ours.
    forward!(unsafe { ShimFile::get(f) }, xUnfetch(off, p))
}

/// Method tables by io-methods version: a file gets the newest one its real file supports, so
/// SQLite never calls a method the wrapped file lacks.
const fn methods(version: c_int) -> sqlite3_io_methods {
    sqlite3_io_methods {
        iVersion: version,
        xClose: Some(entry::x_close),
        xRead: Some(entry::x_read),
        xWrite: Some(entry::x_write),
        xTruncate: Some(entry::x_truncate),
        xSync: Some(entry::x_sync),
        xFileSize: Some(entry::x_file_size),
        xLock: Some(entry::x_lock),
        xUnlock: Some(entry::x_unlock),
        xCheckReservedLock: Some(entry::x_check_reserved_lock),
        xFileControl: Some(entry::x_file_control),
        xSectorSize: Some(entry::x_sector_size),
        xDeviceCharacteristics: Some(entry::x_device_characteristics),
        xShmMap: if version >= 2 {
            Some(entry::x_shm_map)
        } else {
            None
        },
        xShmLock: if version >= 2 {
            Some(entry::x_shm_lock)
        } else {
            None
        },
        xShmBarrier: if version >= 2 {
            Some(entry::x_shm_barrier)
        } else {
            None
        },
        xShmUnmap: if version >= 2 {
            Some(entry::x_shm_unmap)
        } else {
            None
        },
        xFetch: if version >= 3 {
            Some(entry::x_fetch)
        } else {
            None
        },
        xUnfetch: if version >= 3 {
            Some(entry::x_unfetch)
        } else {
            None
        },
    }
}

static METHODS_V1: sqlite3_io_methods = methods(1);
static METHODS_V2: sqlite3_io_methods = methods(2);
static METHODS_V3: sqlite3_io_methods = methods(3);

// SAFETY-free marker: the method tables hold only function pointers and are never written.
// (sqlite3_io_methods contains no raw data pointers, so it is Sync automatically.)
const _: () = assert!(std::mem::size_of::<ShimFile>() % 8 == 0);

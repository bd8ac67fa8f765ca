//! The `walwatch` VFS: wraps the default VFS (normally `unix`), forwards every call, and hands
//! files of main databases and their WALs to the recorder.
//!
//! VFS-level methods are forwarded unchanged, except `xOpen` (wraps the file), `xDelete` (a
//! deleted `-wal` is a zero-byte WAL) and `xSleep` (busy-handler waits are counted). The shim
//! copies the wrapped VFS's `iVersion` and offers only the methods it has, so SQLite's feature
//! checks see the real VFS.

mod clock;
mod file;
// Denied, not forbidden: one test helper allocates a zeroed region.
#[deny(unsafe_code)]
mod recorder;

use crate::ffi::*;
use crate::layout::FileKind;
use crate::layout::Region;
use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::OnceLock;

pub(crate) use file::as_shim_file;
#[cfg(test)]
mod panic_tests;
pub(crate) use recorder::unix_now_ns;

/// Name under which the shim registers.
pub const VFS_NAME: &CStr = c"walwatch";

thread_local! {
    /// The database whose lock was last found busy on this thread: the busy handler's next
    /// `xSleep` (which has no file argument) is a wait for it. Regions are never unmapped, so
    /// the reference cannot dangle.
    pub(crate) static LAST_BUSY: Cell<Option<&'static Region>> = const { Cell::new(None) };
}

/// The registered VFS. Lives for the rest of the process, as SQLite requires.
struct Registered {
    vfs: *mut sqlite3_vfs,
    parent: *mut sqlite3_vfs,
    parent_name: Vec<u8>,
}

// SAFETY: both pointers are to VFS objects that live for the whole process and that SQLite
// itself shares between threads; we never write through them after registration.
unsafe impl Send for Registered {}
// SAFETY: as above.
unsafe impl Sync for Registered {}

static REGISTERED: OnceLock<Registered> = OnceLock::new();

fn parent() -> *mut sqlite3_vfs {
    REGISTERED.get().map_or(std::ptr::null_mut(), |r| r.parent)
}

/// Whether `vfs` is the registered walwatch VFS object.
pub(crate) fn is_walwatch(vfs: *const sqlite3_vfs) -> bool {
    REGISTERED
        .get()
        .is_some_and(|r| std::ptr::eq(r.vfs.cast_const(), vfs))
}

pub(crate) fn parent_name() -> &'static [u8] {
    REGISTERED.get().map_or(b"unix", |r| &r.parent_name)
}

/// Why the shim could not be registered.
#[derive(Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// The host has no default VFS to wrap.
    NoDefaultVfs,
    /// `sqlite3_vfs_register` failed with this result code.
    Sqlite(c_int),
}

impl std::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoDefaultVfs => f.write_str("SQLite has no default VFS to wrap"),
            Self::Sqlite(rc) => write!(f, "sqlite3_vfs_register failed with code {rc}"),
        }
    }
}

impl std::error::Error for RegisterError {}

/// Registers the shim around the current default VFS. Idempotent: a second call only makes
/// it the default again when asked to.
pub(crate) fn register(host: &crate::Host, make_default: bool) -> Result<(), RegisterError> {
    if let Some(done) = REGISTERED.get() {
        if make_default {
            // SAFETY: re-registering our own VFS object only relinks it as the default.
            let rc = unsafe { (host.vfs_register)(done.vfs, 1) };
            return if rc == SQLITE_OK {
                Ok(())
            } else {
                Err(RegisterError::Sqlite(rc))
            };
        }
        return Ok(());
    }
    // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS or null.
    let parent = unsafe { (host.vfs_find)(std::ptr::null()) };
    if parent.is_null() {
        return Err(RegisterError::NoDefaultVfs);
    }
    // SAFETY: a registered VFS is valid for the life of the process.
    let p = unsafe { &*parent };
    // SAFETY: zName of a registered VFS is a NUL-terminated string.
    let parent_name = unsafe { CStr::from_ptr(p.zName) }.to_bytes().to_vec();
    if parent_name == VFS_NAME.to_bytes() {
        // Another copy of the shim is already the default: wrapping it again would count twice.
        return Ok(());
    }
    let version = p.iVersion.min(3);
    let vfs = Box::leak(Box::new(sqlite3_vfs {
        iVersion: version,
        szOsFile: file::os_file_size(p.szOsFile),
        mxPathname: p.mxPathname,
        pNext: std::ptr::null_mut(),
        zName: VFS_NAME.as_ptr(),
        pAppData: std::ptr::null_mut(),
        xOpen: Some(x_open),
        xDelete: Some(x_delete),
        xAccess: p.xAccess.and(Some(x_access as _)),
        xFullPathname: Some(x_full_pathname),
        xDlOpen: p.xDlOpen.and(Some(x_dl_open as _)),
        xDlError: p.xDlError.and(Some(x_dl_error as _)),
        xDlSym: p.xDlSym.and(Some(x_dl_sym as _)),
        xDlClose: p.xDlClose.and(Some(x_dl_close as _)),
        xRandomness: Some(x_randomness),
        xSleep: Some(x_sleep),
        xCurrentTime: Some(x_current_time),
        xGetLastError: p.xGetLastError.and(Some(x_get_last_error as _)),
        xCurrentTimeInt64: (version >= 2 && p.xCurrentTimeInt64.is_some())
            .then_some(x_current_time_int64 as _),
        xSetSystemCall: (version >= 3 && p.xSetSystemCall.is_some())
            .then_some(x_set_system_call as _),
        xGetSystemCall: (version >= 3 && p.xGetSystemCall.is_some())
            .then_some(x_get_system_call as _),
        xNextSystemCall: (version >= 3 && p.xNextSystemCall.is_some())
            .then_some(x_next_system_call as _),
    }));
    let registered = REGISTERED.get_or_init(|| Registered {
        vfs,
        parent,
        parent_name,
    });
    // SAFETY: `registered.vfs` is a fully initialized VFS that lives forever (leaked).
    let rc = unsafe { (host.vfs_register)(registered.vfs, make_default as c_int) };
    if rc == SQLITE_OK {
        Ok(())
    } else {
        Err(RegisterError::Sqlite(rc))
    }
}

/// The wrapped VFS and the pointer to pass as its `sqlite3_vfs*` argument; `None` only before
/// `register` set the parent, when SQLite cannot call our methods yet.
fn real() -> Option<(&'static sqlite3_vfs, *mut sqlite3_vfs)> {
    let parent = parent();
    // SAFETY: null or set by `register` before our VFS became reachable; a registered VFS lives
    // for the whole process.
    unsafe { parent.as_ref() }.map(|vfs| (vfs, parent))
}

/// Database path of a WAL file name: SQLite names it `<database>-wal`.
fn wal_db_path(wal: &[u8]) -> Option<&[u8]> {
    wal.strip_suffix(b"-wal")
}

/// What each VFS method returns when the wrapped VFS lacks it or walwatch panics in it: the
/// code SQLite's own VFSes return for that failure. Used by the method and by the tests.
#[rustfmt::skip]
macro_rules! failure {
    (xOpen)             => { $crate::ffi::SQLITE_CANTOPEN };
    (xDelete)           => { $crate::ffi::SQLITE_IOERR | (10 << 8) }; // SQLITE_IOERR_DELETE
    (xAccess)           => { $crate::ffi::SQLITE_IOERR | (13 << 8) }; // SQLITE_IOERR_ACCESS
    (xFullPathname)     => { $crate::ffi::SQLITE_CANTOPEN | (3 << 8) }; // SQLITE_CANTOPEN_FULLPATH
    (xDlOpen)           => { std::ptr::null_mut() };
    (xDlError)          => { () };
    (xDlSym)            => { None };
    (xDlClose)          => { () };
    (xRandomness)       => { 0 };
    (xSleep)            => { 0 };
    (xCurrentTime)      => { $crate::ffi::SQLITE_ERROR };
    (xGetLastError)     => { 0 };
    (xCurrentTimeInt64) => { $crate::ffi::SQLITE_ERROR };
    (xSetSystemCall)    => { $crate::ffi::SQLITE_NOTFOUND };
    (xGetSystemCall)    => { None };
    (xNextSystemCall)   => { std::ptr::null() };
}
#[cfg(test)]
pub(crate) use failure;

unsafe extern "C" fn x_open(
    _vfs: *mut sqlite3_vfs,
    name: *const c_char,
    f: *mut sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    crate::unwind::guard("xOpen", failure!(xOpen), || {
        // SAFETY: SQLite calls xOpen with these arguments per its contract.
        unsafe { open(name, f, flags, out_flags) }
    })
}

/// # Safety
/// The arguments of `xOpen`: `f` points to `szOsFile` writable bytes, `name` is null or a
/// NUL-terminated path, `out_flags` null or writable.
unsafe fn open(
    name: *const c_char,
    f: *mut sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let kind = if flags & SQLITE_OPEN_MAIN_DB != 0 {
        FileKind::MainDb
    } else if flags & SQLITE_OPEN_WAL != 0 {
        FileKind::Wal
    } else {
        FileKind::Other
    };
    let Some((parent, parent_ptr)) = real() else {
        return failure!(xOpen);
    };
    let Some(real_open) = parent.xOpen else {
        return failure!(xOpen);
    };
    // SAFETY: SQLite gives xOpen szOsFile bytes, sized by `file::os_file_size`: the wrapped
    // VFS's file comes first, at `f` itself, so its open gets SQLite's own arguments.
    let rc = unsafe { real_open(parent_ptr, name, f, flags, out_flags) };
    let path = if name.is_null() {
        None
    } else {
        // SAFETY: a non-null name is a NUL-terminated path.
        Some(unsafe { CStr::from_ptr(name) }.to_bytes())
    };
    let db_path = match kind {
        FileKind::MainDb if rc == SQLITE_OK => path,
        FileKind::Wal if rc == SQLITE_OK => path.and_then(wal_db_path),
        _ => None,
    };
    if rc == SQLITE_OK {
        // Bookkeeping apart: a panic in it must not lose the file the real open returned
        // (the file then keeps the wrapped VFS's methods, unobserved).
        crate::unwind::guard("xOpen (recording)", (), || {
            // SAFETY: `f` is the file the wrapped xOpen just opened; SQLite has not seen it.
            unsafe { file::wrap(f, kind, db_path) }
        });
    }
    rc
}

unsafe extern "C" fn x_delete(
    _vfs: *mut sqlite3_vfs,
    name: *const c_char,
    sync_dir: c_int,
) -> c_int {
    crate::unwind::guard("xDelete", failure!(xDelete), || {
        let Some((parent, parent_ptr)) = real() else {
            return failure!(xDelete);
        };
        let Some(real_delete) = parent.xDelete else {
            return failure!(xDelete);
        };
        // SAFETY: forwarding to the wrapped VFS with SQLite's own arguments.
        let rc = unsafe { real_delete(parent_ptr, name, sync_dir) };
        if rc == SQLITE_OK && !name.is_null() {
            // SAFETY: a non-null name is a NUL-terminated path.
            let path = unsafe { CStr::from_ptr(name) }.to_bytes();
            if let Some(region) = wal_db_path(path).and_then(crate::region::if_mapped) {
                region.io.wal_bytes.store(0, Relaxed);
            }
        }
        rc
    })
}

unsafe extern "C" fn x_sleep(_vfs: *mut sqlite3_vfs, microseconds: c_int) -> c_int {
    crate::unwind::guard("xSleep", failure!(xSleep), || {
        let Some((parent, parent_ptr)) = real() else {
            return failure!(xSleep);
        };
        let Some(real_sleep) = parent.xSleep else {
            return failure!(xSleep);
        };
        // SAFETY: forwarding to the wrapped VFS.
        let slept = unsafe { real_sleep(parent_ptr, microseconds) };
        if let Some(region) = LAST_BUSY.take() {
            region.io.busy_sleeps.fetch_add(1, Relaxed);
            region
                .io
                .busy_sleep_us
                .fetch_add(microseconds.max(0) as u64, Relaxed);
        }
        slept
    })
}

/// Forwards a VFS method that walwatch does not observe.
macro_rules! pass_through {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        unsafe extern "C" fn $name(_vfs: *mut sqlite3_vfs $(, $arg: $ty)*) -> $ret {
            crate::unwind::guard(stringify!($method), failure!($method), || {
                match real() {
                    Some((parent, parent_ptr)) => match parent.$method {
                        // SAFETY: forwarding to the wrapped VFS's method with SQLite's arguments.
                        Some(method) => unsafe { method(parent_ptr $(, $arg)*) },
                        None => failure!($method),
                    },
                    None => failure!($method),
                }
            })
        }
    };
}

pass_through!(x_access, xAccess, (name: *const c_char, flags: c_int, out: *mut c_int) -> c_int);
pass_through!(x_full_pathname, xFullPathname, (name: *const c_char, n: c_int, out: *mut c_char) -> c_int);
pass_through!(x_dl_open, xDlOpen, (name: *const c_char) -> *mut c_void);
pass_through!(x_dl_error, xDlError, (n: c_int, out: *mut c_char) -> ());
pass_through!(x_dl_sym, xDlSym, (handle: *mut c_void, sym: *const c_char) -> Option<unsafe extern "C" fn()>);
pass_through!(x_dl_close, xDlClose, (handle: *mut c_void) -> ());
pass_through!(x_randomness, xRandomness, (n: c_int, out: *mut c_char) -> c_int);
pass_through!(x_current_time, xCurrentTime, (out: *mut f64) -> c_int);
pass_through!(x_get_last_error, xGetLastError, (n: c_int, out: *mut c_char) -> c_int);
pass_through!(x_current_time_int64, xCurrentTimeInt64, (out: *mut sqlite3_int64) -> c_int);
pass_through!(x_set_system_call, xSetSystemCall, (name: *const c_char, ptr: sqlite3_syscall_ptr) -> c_int);
pass_through!(x_get_system_call, xGetSystemCall, (name: *const c_char) -> sqlite3_syscall_ptr);
pass_through!(x_next_system_call, xNextSystemCall, (name: *const c_char) -> *const c_char);

#[cfg(test)]
mod tests {
    #[test]
    fn wal_names_map_to_their_database() {
        assert_eq!(
            super::wal_db_path(b"/srv/app.db-wal"),
            Some(&b"/srv/app.db"[..])
        );
        assert_eq!(super::wal_db_path(b"/srv/app.db-journal"), None);
    }
}

//! The few SQLite functions the shim calls at run time, taken from its host: from the
//! `sqlite3_api_routines` of a loading program, or from the Rust program that registers the
//! shim in-process. Never linked: see [`crate::ffi`].

use crate::ffi::{FreeFn, LogFn, MallocFn, VfsFindFn, VfsRegisterFn, SQLITE_WARNING};
use std::ffi::{c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// SQLite entry points the shim needs from the program it runs in.
#[derive(Clone, Copy)]
pub struct Host {
    /// `sqlite3_vfs_find`
    pub vfs_find: VfsFindFn,
    /// `sqlite3_vfs_register`
    pub vfs_register: VfsRegisterFn,
    /// `sqlite3_log`: where the shim reports its own problems.
    pub log: LogFn,
    /// `sqlite3_malloc` / `sqlite3_free`: for strings handed to SQLite (`SQLITE_FCNTL_VFSNAME`).
    pub malloc: MallocFn,
    pub free: FreeFn,
}

static HOST: OnceLock<Host> = OnceLock::new();

/// Remembers the host's functions; the first registration wins (one SQLite per process).
pub(crate) fn set(host: Host) -> &'static Host {
    HOST.get_or_init(|| host)
}

pub(crate) fn get() -> Option<&'static Host> {
    HOST.get()
}

/// A problem the shim reports at most once per process, so a misconfigured stats directory
/// cannot flood the application's log.
pub(crate) struct OnceFlag(AtomicBool);

impl OnceFlag {
    pub(crate) const fn new() -> Self {
        Self(AtomicBool::new(false))
    }
}

/// The longest message [`warn_once`] passes on whole: `sqlite3_log` formats into a buffer of
/// 210 bytes (`SQLITE_PRINT_BUF_SIZE * 3`) and silently drops the rest; `walwatch: ` takes 10.
pub(crate) const MESSAGE_MAX: usize = 199;

/// Writes `problem`, then `advice`, to SQLite's error log (`sqlite3_log`, `SQLITE_WARNING`)
/// unless `flag` was already raised. Two messages, because sqlite3_log cuts each one at
/// [`MESSAGE_MAX`] bytes (and so does this function, at a character boundary: callers shorten
/// what matters least themselves).
pub(crate) fn warn_once(flag: &OnceFlag, problem: &str, advice: &str) {
    if flag.0.swap(true, Ordering::Relaxed) {
        return;
    }
    let Some(host) = get() else { return };
    for message in [problem, advice] {
        let end = (0..=message.len().min(MESSAGE_MAX))
            .rev()
            .find(|&i| message.is_char_boundary(i))
            .unwrap_or(0);
        let text = CString::new(format!("walwatch: {}", &message[..end]).replace('\0', "?"))
            .unwrap_or_default();
        // SAFETY: `log` is the host's sqlite3_log; "%s" consumes exactly the one NUL-terminated
        // string passed, which lives until the call returns.
        unsafe { (host.log)(SQLITE_WARNING, c"%s".as_ptr(), text.as_ptr()) };
    }
}

/// Copies `bytes` into a NUL-terminated string allocated with `sqlite3_malloc`, for SQLite to
/// free. Null when allocation fails.
pub(crate) fn sqlite_string(bytes: &[u8]) -> *mut std::ffi::c_char {
    let Some(host) = get() else {
        return std::ptr::null_mut();
    };
    let Ok(len) = std::ffi::c_int::try_from(bytes.len() + 1) else {
        return std::ptr::null_mut();
    };
    // SAFETY: sqlite3_malloc returns null or `len` writable bytes.
    let out = unsafe { (host.malloc)(len) } as *mut u8;
    if !out.is_null() {
        // SAFETY: `out` has room for bytes.len() + 1 bytes and does not overlap `bytes`.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), out, bytes.len());
            *out.add(bytes.len()) = 0;
        }
    }
    out.cast()
}

/// Frees memory that SQLite allocated.
///
/// # Safety
/// `ptr` must be null or memory from `sqlite3_malloc` that nothing uses any more.
pub(crate) unsafe fn sqlite_free(ptr: *mut c_void) {
    if let Some(host) = get() {
        // SAFETY: per the contract: memory from sqlite3_malloc, or null (which is allowed).
        unsafe { (host.free)(ptr) }
    }
}

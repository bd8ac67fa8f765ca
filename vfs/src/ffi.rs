//! The slice of SQLite's C interface that the shim needs, declared here rather than taken from
//! `libsqlite3-sys`.
//!
//! Why not `libsqlite3-sys`: its build script always links a SQLite (system or bundled), and
//! Cargo unifies its features across the workspace, so the sidecar's `bundled` SQLite would end
//! up inside the loadable extension — a second SQLite in the host process, which breaks POSIX
//! locks and can corrupt databases. These declarations are types and constants only; every call
//! into SQLite goes through function pointers handed to us by the host (`sqlite3_api_routines`
//! for the extension, [`crate::Host`] for in-process registration).
//!
//! Layouts follow `sqlite3.h` / `sqlite3ext.h` (stable ABI since 3.7; `iVersion` says which
//! trailing members exist).
#![allow(non_camel_case_types, non_snake_case)]

use std::ffi::{c_char, c_int, c_void};

pub type sqlite3_int64 = i64;

/// Opaque connection handle.
#[repr(C)]
pub struct sqlite3 {
    _private: [u8; 0],
}

/// Opaque SQL-function context.
#[repr(C)]
pub struct sqlite3_context {
    _private: [u8; 0],
}

/// Opaque SQL value.
#[repr(C)]
pub struct sqlite3_value {
    _private: [u8; 0],
}

#[repr(C)]
pub struct sqlite3_file {
    pub pMethods: *const sqlite3_io_methods,
}

pub type sqlite3_syscall_ptr = Option<unsafe extern "C" fn()>;

#[repr(C)]
pub struct sqlite3_io_methods {
    pub iVersion: c_int,
    pub xClose: Option<unsafe extern "C" fn(*mut sqlite3_file) -> c_int>,
    pub xRead:
        Option<unsafe extern "C" fn(*mut sqlite3_file, *mut c_void, c_int, sqlite3_int64) -> c_int>,
    pub xWrite: Option<
        unsafe extern "C" fn(*mut sqlite3_file, *const c_void, c_int, sqlite3_int64) -> c_int,
    >,
    pub xTruncate: Option<unsafe extern "C" fn(*mut sqlite3_file, sqlite3_int64) -> c_int>,
    pub xSync: Option<unsafe extern "C" fn(*mut sqlite3_file, c_int) -> c_int>,
    pub xFileSize: Option<unsafe extern "C" fn(*mut sqlite3_file, *mut sqlite3_int64) -> c_int>,
    pub xLock: Option<unsafe extern "C" fn(*mut sqlite3_file, c_int) -> c_int>,
    pub xUnlock: Option<unsafe extern "C" fn(*mut sqlite3_file, c_int) -> c_int>,
    pub xCheckReservedLock: Option<unsafe extern "C" fn(*mut sqlite3_file, *mut c_int) -> c_int>,
    pub xFileControl: Option<unsafe extern "C" fn(*mut sqlite3_file, c_int, *mut c_void) -> c_int>,
    pub xSectorSize: Option<unsafe extern "C" fn(*mut sqlite3_file) -> c_int>,
    pub xDeviceCharacteristics: Option<unsafe extern "C" fn(*mut sqlite3_file) -> c_int>,
    // iVersion >= 2
    pub xShmMap: Option<
        unsafe extern "C" fn(*mut sqlite3_file, c_int, c_int, c_int, *mut *mut c_void) -> c_int,
    >,
    pub xShmLock: Option<unsafe extern "C" fn(*mut sqlite3_file, c_int, c_int, c_int) -> c_int>,
    pub xShmBarrier: Option<unsafe extern "C" fn(*mut sqlite3_file)>,
    pub xShmUnmap: Option<unsafe extern "C" fn(*mut sqlite3_file, c_int) -> c_int>,
    // iVersion >= 3
    pub xFetch: Option<
        unsafe extern "C" fn(*mut sqlite3_file, sqlite3_int64, c_int, *mut *mut c_void) -> c_int,
    >,
    pub xUnfetch:
        Option<unsafe extern "C" fn(*mut sqlite3_file, sqlite3_int64, *mut c_void) -> c_int>,
}

#[repr(C)]
pub struct sqlite3_vfs {
    pub iVersion: c_int,
    pub szOsFile: c_int,
    pub mxPathname: c_int,
    pub pNext: *mut sqlite3_vfs,
    pub zName: *const c_char,
    pub pAppData: *mut c_void,
    pub xOpen: Option<
        unsafe extern "C" fn(
            *mut sqlite3_vfs,
            *const c_char,
            *mut sqlite3_file,
            c_int,
            *mut c_int,
        ) -> c_int,
    >,
    pub xDelete: Option<unsafe extern "C" fn(*mut sqlite3_vfs, *const c_char, c_int) -> c_int>,
    pub xAccess:
        Option<unsafe extern "C" fn(*mut sqlite3_vfs, *const c_char, c_int, *mut c_int) -> c_int>,
    pub xFullPathname:
        Option<unsafe extern "C" fn(*mut sqlite3_vfs, *const c_char, c_int, *mut c_char) -> c_int>,
    pub xDlOpen: Option<unsafe extern "C" fn(*mut sqlite3_vfs, *const c_char) -> *mut c_void>,
    pub xDlError: Option<unsafe extern "C" fn(*mut sqlite3_vfs, c_int, *mut c_char)>,
    pub xDlSym: Option<
        unsafe extern "C" fn(
            *mut sqlite3_vfs,
            *mut c_void,
            *const c_char,
        ) -> Option<unsafe extern "C" fn()>,
    >,
    pub xDlClose: Option<unsafe extern "C" fn(*mut sqlite3_vfs, *mut c_void)>,
    pub xRandomness: Option<unsafe extern "C" fn(*mut sqlite3_vfs, c_int, *mut c_char) -> c_int>,
    pub xSleep: Option<unsafe extern "C" fn(*mut sqlite3_vfs, c_int) -> c_int>,
    pub xCurrentTime: Option<unsafe extern "C" fn(*mut sqlite3_vfs, *mut f64) -> c_int>,
    pub xGetLastError: Option<unsafe extern "C" fn(*mut sqlite3_vfs, c_int, *mut c_char) -> c_int>,
    // iVersion >= 2
    pub xCurrentTimeInt64:
        Option<unsafe extern "C" fn(*mut sqlite3_vfs, *mut sqlite3_int64) -> c_int>,
    // iVersion >= 3
    pub xSetSystemCall:
        Option<unsafe extern "C" fn(*mut sqlite3_vfs, *const c_char, sqlite3_syscall_ptr) -> c_int>,
    pub xGetSystemCall:
        Option<unsafe extern "C" fn(*mut sqlite3_vfs, *const c_char) -> sqlite3_syscall_ptr>,
    pub xNextSystemCall:
        Option<unsafe extern "C" fn(*mut sqlite3_vfs, *const c_char) -> *const c_char>,
}

pub type VfsFindFn = unsafe extern "C" fn(*const c_char) -> *mut sqlite3_vfs;
pub type VfsRegisterFn = unsafe extern "C" fn(*mut sqlite3_vfs, c_int) -> c_int;
pub type LogFn = unsafe extern "C" fn(c_int, *const c_char, ...);
pub type MallocFn = unsafe extern "C" fn(c_int) -> *mut c_void;
pub type FreeFn = unsafe extern "C" fn(*mut c_void);
pub type ScalarFn = unsafe extern "C" fn(*mut sqlite3_context, c_int, *mut *mut sqlite3_value);
pub type DestructorFn = unsafe extern "C" fn(*mut c_void);

/// A pointer-sized member of `sqlite3_api_routines` that walwatch never calls.
type Unused = *const c_void;

/// `struct sqlite3_api_routines` from `sqlite3ext.h`, up to the last member walwatch uses.
///
/// Members are append-only in SQLite (new ones go at the end), so a prefix of the struct is
/// valid for every SQLite that has the members we name; `auto_extension` (index 192) arrived
/// in 3.8.7. The indexes in the comments are positions in the C struct, checked at compile time
/// below.
#[repr(C)]
pub struct sqlite3_api_routines {
    _unused_0_57: [Unused; 58],
    pub free: Option<FreeFn>, // 58
    _unused_59_66: [Unused; 8],
    pub libversion_number: Option<unsafe extern "C" fn() -> c_int>, // 67
    pub malloc: Option<MallocFn>,                                   // 68
    _unused_69_79: [Unused; 11],
    pub result_error: Option<unsafe extern "C" fn(*mut sqlite3_context, *const c_char, c_int)>, // 80
    _unused_81_84: [Unused; 4],
    pub result_text: Option<
        unsafe extern "C" fn(*mut sqlite3_context, *const c_char, c_int, Option<DestructorFn>),
    >, // 85
    _unused_86_126: [Unused; 41],
    pub file_control:
        Option<unsafe extern "C" fn(*mut sqlite3, *const c_char, c_int, *mut c_void) -> c_int>, // 127
    _unused_128_140: [Unused; 13],
    pub vfs_find: Option<VfsFindFn>,         // 141
    pub vfs_register: Option<VfsRegisterFn>, // 142
    _unused_143_148: [Unused; 6],
    pub context_db_handle: Option<unsafe extern "C" fn(*mut sqlite3_context) -> *mut sqlite3>, // 149
    _unused_150_161: [Unused; 12],
    #[allow(clippy::type_complexity)]
    pub create_function_v2: Option<
        unsafe extern "C" fn(
            *mut sqlite3,
            *const c_char,
            c_int,
            c_int,
            *mut c_void,
            Option<ScalarFn>,
            Option<ScalarFn>,
            Option<unsafe extern "C" fn(*mut sqlite3_context)>,
            Option<DestructorFn>,
        ) -> c_int,
    >, // 162
    _unused_163_166: [Unused; 4],
    pub log: Option<LogFn>, // 167
    _unused_168_191: [Unused; 24],
    pub auto_extension: Option<unsafe extern "C" fn(Option<unsafe extern "C" fn()>) -> c_int>, // 192
}

const PTR: usize = std::mem::size_of::<*const c_void>();
const _: () = {
    use std::mem::offset_of;
    assert!(offset_of!(sqlite3_api_routines, free) == 58 * PTR);
    assert!(offset_of!(sqlite3_api_routines, libversion_number) == 67 * PTR);
    assert!(offset_of!(sqlite3_api_routines, malloc) == 68 * PTR);
    assert!(offset_of!(sqlite3_api_routines, result_error) == 80 * PTR);
    assert!(offset_of!(sqlite3_api_routines, result_text) == 85 * PTR);
    assert!(offset_of!(sqlite3_api_routines, file_control) == 127 * PTR);
    assert!(offset_of!(sqlite3_api_routines, vfs_find) == 141 * PTR);
    assert!(offset_of!(sqlite3_api_routines, vfs_register) == 142 * PTR);
    assert!(offset_of!(sqlite3_api_routines, context_db_handle) == 149 * PTR);
    assert!(offset_of!(sqlite3_api_routines, create_function_v2) == 162 * PTR);
    assert!(offset_of!(sqlite3_api_routines, log) == 167 * PTR);
    assert!(offset_of!(sqlite3_api_routines, auto_extension) == 192 * PTR);
};

// Result codes.
pub const SQLITE_OK: c_int = 0;
pub const SQLITE_ERROR: c_int = 1;
pub const SQLITE_BUSY: c_int = 5;
pub const SQLITE_NOTFOUND: c_int = 12;
pub const SQLITE_CANTOPEN: c_int = 14;
pub const SQLITE_WARNING: c_int = 28;
pub const SQLITE_IOERR: c_int = 10;
pub const SQLITE_OK_LOAD_PERMANENTLY: c_int = SQLITE_OK | (1 << 8);

// xOpen flags.
pub const SQLITE_OPEN_MAIN_DB: c_int = 0x0000_0100;
pub const SQLITE_OPEN_WAL: c_int = 0x0008_0000;

// xShmLock flags.
pub const SQLITE_SHM_UNLOCK: c_int = 1;
pub const SQLITE_SHM_LOCK: c_int = 2;
pub const SQLITE_SHM_SHARED: c_int = 4;
pub const SQLITE_SHM_EXCLUSIVE: c_int = 8;

// File controls.
pub const SQLITE_FCNTL_FILE_POINTER: c_int = 7;
pub const SQLITE_FCNTL_VFSNAME: c_int = 12;
pub const SQLITE_FCNTL_VFS_POINTER: c_int = 27;

// Text encodings and function flags.
pub const SQLITE_UTF8: c_int = 1;
pub const SQLITE_DETERMINISTIC: c_int = 0x800;

/// `SQLITE_TRANSIENT`: SQLite copies the text before the call returns.
pub fn sqlite_transient() -> Option<DestructorFn> {
    // SAFETY: SQLITE_TRANSIENT is defined by SQLite as the destructor value `(void(*)(void*))-1`;
    // SQLite compares against that value and never calls it.
    Some(unsafe { std::mem::transmute::<isize, DestructorFn>(-1) })
}

//! No panic crosses into SQLite (issue 11): every method of the registered `walwatch` VFS and of
//! its io-methods table, called through the very function pointers SQLite gets, returns its
//! failure code when walwatch panics inside it, and the process (this test) goes on. The shim
//! wraps a test VFS whose methods count their calls and return values no failure code uses.
//!
//! The methods are taken from the structs by exhaustive destructuring (no `..`), so a method
//! added to `sqlite3_vfs` or `sqlite3_io_methods` does not compile here until it is tested.
//! Panics are injected with [`crate::unwind::tests::panic_at`], which exists in test builds only.

use super::failure as vfs_failure;
use super::file::failure as io_failure;
use crate::ffi::*;
use crate::unwind::tests::panic_at;
use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

/// What the test VFS's methods return: no failure code is this.
const PARENT: c_int = 4242;

thread_local! {
    /// Calls of the test VFS's methods on this thread.
    static CALLS: Cell<u32> = const { Cell::new(0) };
    /// The io methods the test VFS's xOpen gives the next file opened on this thread.
    static NEXT_FILE_METHODS: Cell<*const sqlite3_io_methods> = const { Cell::new(&FULL) };
}

fn called() {
    CALLS.set(CALLS.get() + 1);
}

unsafe extern "C" fn marker() {}
static MARKER_NAME: &std::ffi::CStr = c"marker";

/// Defines test-VFS methods that count the call and return `$value`.
macro_rules! stubs {
    ($($name:ident ( $($ty:ty),* ) $(-> $ret:ty)? = $value:expr;)*) => {
        $(
            unsafe extern "C" fn $name($(_: $ty),*) $(-> $ret)? {
                called();
                $value
            }
        )*
    };
}

stubs! {
    p_delete(*mut sqlite3_vfs, *const c_char, c_int) -> c_int = PARENT;
    p_access(*mut sqlite3_vfs, *const c_char, c_int, *mut c_int) -> c_int = PARENT;
    p_full_pathname(*mut sqlite3_vfs, *const c_char, c_int, *mut c_char) -> c_int = PARENT;
    p_dl_open(*mut sqlite3_vfs, *const c_char) -> *mut c_void = MARKER_NAME.as_ptr() as *mut c_void;
    p_dl_error(*mut sqlite3_vfs, c_int, *mut c_char) = ();
    p_dl_sym(*mut sqlite3_vfs, *mut c_void, *const c_char) -> Option<unsafe extern "C" fn()> = Some(marker);
    p_dl_close(*mut sqlite3_vfs, *mut c_void) = ();
    p_randomness(*mut sqlite3_vfs, c_int, *mut c_char) -> c_int = PARENT;
    p_sleep(*mut sqlite3_vfs, c_int) -> c_int = PARENT;
    p_current_time(*mut sqlite3_vfs, *mut f64) -> c_int = PARENT;
    p_get_last_error(*mut sqlite3_vfs, c_int, *mut c_char) -> c_int = PARENT;
    p_current_time_int64(*mut sqlite3_vfs, *mut sqlite3_int64) -> c_int = PARENT;
    p_set_system_call(*mut sqlite3_vfs, *const c_char, sqlite3_syscall_ptr) -> c_int = PARENT;
    p_get_system_call(*mut sqlite3_vfs, *const c_char) -> sqlite3_syscall_ptr = Some(marker);
    p_next_system_call(*mut sqlite3_vfs, *const c_char) -> *const c_char = MARKER_NAME.as_ptr();

    f_close(*mut sqlite3_file) -> c_int = PARENT;
    f_read(*mut sqlite3_file, *mut c_void, c_int, i64) -> c_int = PARENT;
    f_write(*mut sqlite3_file, *const c_void, c_int, i64) -> c_int = PARENT;
    f_truncate(*mut sqlite3_file, i64) -> c_int = PARENT;
    f_sync(*mut sqlite3_file, c_int) -> c_int = PARENT;
    f_file_size(*mut sqlite3_file, *mut i64) -> c_int = PARENT;
    f_lock(*mut sqlite3_file, c_int) -> c_int = PARENT;
    f_unlock(*mut sqlite3_file, c_int) -> c_int = PARENT;
    f_check_reserved_lock(*mut sqlite3_file, *mut c_int) -> c_int = PARENT;
    f_file_control(*mut sqlite3_file, c_int, *mut c_void) -> c_int = PARENT;
    f_sector_size(*mut sqlite3_file) -> c_int = PARENT;
    f_device_characteristics(*mut sqlite3_file) -> c_int = PARENT;
    f_shm_map(*mut sqlite3_file, c_int, c_int, c_int, *mut *mut c_void) -> c_int = PARENT;
    f_shm_lock(*mut sqlite3_file, c_int, c_int, c_int) -> c_int = PARENT;
    f_shm_barrier(*mut sqlite3_file) = ();
    f_shm_unmap(*mut sqlite3_file, c_int) -> c_int = PARENT;
    f_fetch(*mut sqlite3_file, i64, c_int, *mut *mut c_void) -> c_int = PARENT;
    f_unfetch(*mut sqlite3_file, i64, *mut c_void) -> c_int = PARENT;
}

/// The test VFS's xOpen: the file gets [`NEXT_FILE_METHODS`].
unsafe extern "C" fn p_open(
    _: *mut sqlite3_vfs,
    _: *const c_char,
    file: *mut sqlite3_file,
    _: c_int,
    _: *mut c_int,
) -> c_int {
    called();
    // SAFETY: the shim passes the real file's part of the memory SQLite gave its xOpen.
    unsafe { (*file).pMethods = NEXT_FILE_METHODS.get() };
    SQLITE_OK
}

/// A file of the test VFS with every io method.
static FULL: sqlite3_io_methods = sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(f_close),
    xRead: Some(f_read),
    xWrite: Some(f_write),
    xTruncate: Some(f_truncate),
    xSync: Some(f_sync),
    xFileSize: Some(f_file_size),
    xLock: Some(f_lock),
    xUnlock: Some(f_unlock),
    xCheckReservedLock: Some(f_check_reserved_lock),
    xFileControl: Some(f_file_control),
    xSectorSize: Some(f_sector_size),
    xDeviceCharacteristics: Some(f_device_characteristics),
    xShmMap: Some(f_shm_map),
    xShmLock: Some(f_shm_lock),
    xShmBarrier: Some(f_shm_barrier),
    xShmUnmap: Some(f_shm_unmap),
    xFetch: Some(f_fetch),
    xUnfetch: Some(f_unfetch),
};

/// A malformed file of the test VFS: version 3 with only `xShmMap` (so the shim installs its
/// full table), every other method missing.
static SPARSE: sqlite3_io_methods = sqlite3_io_methods {
    iVersion: 3,
    xClose: None,
    xRead: None,
    xWrite: None,
    xTruncate: None,
    xSync: None,
    xFileSize: None,
    xLock: None,
    xUnlock: None,
    xCheckReservedLock: None,
    xFileControl: None,
    xSectorSize: None,
    xDeviceCharacteristics: None,
    xShmMap: Some(f_shm_map),
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

struct VfsPtr(*mut sqlite3_vfs);
// SAFETY: the test VFS is leaked, never written after creation, and its methods are stateless
// but for thread-local counters.
unsafe impl Send for VfsPtr {}
// SAFETY: as above.
unsafe impl Sync for VfsPtr {}
static TEST_VFS: OnceLock<VfsPtr> = OnceLock::new();

unsafe extern "C" fn find(_: *const c_char) -> *mut sqlite3_vfs {
    TEST_VFS.get().map_or(std::ptr::null_mut(), |v| v.0)
}
unsafe extern "C" fn register_ok(_: *mut sqlite3_vfs, _: c_int) -> c_int {
    SQLITE_OK
}
unsafe extern "C" fn no_malloc(_: c_int) -> *mut c_void {
    std::ptr::null_mut()
}
unsafe extern "C" fn no_free(_: *mut c_void) {}

/// The shim's registered VFS, wrapping the test VFS (registered once per test process).
fn shim_vfs() -> &'static sqlite3_vfs {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let test_vfs = Box::leak(Box::new(sqlite3_vfs {
            iVersion: 3,
            szOsFile: std::mem::size_of::<sqlite3_file>() as c_int,
            mxPathname: 512,
            pNext: std::ptr::null_mut(),
            zName: c"walwatch-panic-test".as_ptr(),
            pAppData: std::ptr::null_mut(),
            xOpen: Some(p_open),
            xDelete: Some(p_delete),
            xAccess: Some(p_access),
            xFullPathname: Some(p_full_pathname),
            xDlOpen: Some(p_dl_open),
            xDlError: Some(p_dl_error),
            xDlSym: Some(p_dl_sym),
            xDlClose: Some(p_dl_close),
            xRandomness: Some(p_randomness),
            xSleep: Some(p_sleep),
            xCurrentTime: Some(p_current_time),
            xGetLastError: Some(p_get_last_error),
            xCurrentTimeInt64: Some(p_current_time_int64),
            xSetSystemCall: Some(p_set_system_call),
            xGetSystemCall: Some(p_get_system_call),
            xNextSystemCall: Some(p_next_system_call),
        }));
        let _ = TEST_VFS.set(VfsPtr(test_vfs));
        // The host is passed, not installed (`crate::host::set`): the shim's log calls have no
        // host here and go nowhere, so `log` is never called.
        let host = crate::Host {
            vfs_find: find,
            vfs_register: register_ok,
            log: libc::syslog,
            malloc: no_malloc,
            free: no_free,
        };
        super::register(&host, true).expect("the shim registers around the test VFS");
    });
    let vfs = super::REGISTERED.get().expect("registered").vfs;
    // SAFETY: the registered VFS is leaked and never written after registration.
    unsafe { &*vfs }
}

/// Calls `call` normally, then with a panic injected at `site`: the first returns what the test
/// VFS returned (`parent`) after calling it once, the second `failure` without reaching it.
fn check<T: PartialEq + std::fmt::Debug>(
    site: &'static str,
    parent: T,
    failure: T,
    mut call: impl FnMut() -> T,
) {
    CALLS.set(0);
    panic_at(Some(site));
    let got = call();
    panic_at(None);
    assert_eq!(
        got, failure,
        "{site}: a panic in it must return its failure code"
    );
    assert_eq!(CALLS.get(), 0, "{site}: the panic came before forwarding");
    let got = call();
    assert_eq!(got, parent, "{site}: without a panic it forwards");
    assert_eq!(CALLS.get(), 1, "{site}: forwarded once");
}

fn fn_addr(f: Option<unsafe extern "C" fn()>) -> usize {
    f.map_or(0, |f| f as usize)
}

/// Memory for one file of the shim, as SQLite allocates it (`szOsFile` bytes, 8-aligned).
fn file_memory(vfs: &sqlite3_vfs) -> Vec<u64> {
    vec![0u64; (vfs.szOsFile as usize).div_ceil(8)]
}

/// Opens a file through the shim with `flags` and no name (so no stats file is involved).
fn open(
    vfs: &sqlite3_vfs,
    memory: &mut [u64],
    methods: &'static sqlite3_io_methods,
    flags: c_int,
) -> *mut sqlite3_file {
    let file = memory.as_mut_ptr().cast::<sqlite3_file>();
    NEXT_FILE_METHODS.set(methods);
    let mut out = 0;
    let x_open = vfs.xOpen.expect("xOpen");
    let vfs_ptr = vfs as *const sqlite3_vfs as *mut sqlite3_vfs;
    // SAFETY: `file` has szOsFile bytes; a null name is allowed (SQLite uses it for temp files).
    let rc = unsafe { x_open(vfs_ptr, std::ptr::null(), file, flags, &mut out) };
    assert_eq!(rc, SQLITE_OK);
    file
}

/// A main database: the shim installs its own table.
const MAIN_DB: c_int = SQLITE_OPEN_MAIN_DB | 2;

#[test]
fn a_panic_in_any_vfs_method_returns_its_failure_code() {
    let vfs = shim_vfs();
    let vfs_ptr = vfs as *const sqlite3_vfs as *mut sqlite3_vfs;
    // Every member: adding one to sqlite3_vfs breaks this pattern until it is tested below.
    let sqlite3_vfs {
        iVersion,
        szOsFile: _,
        mxPathname: _,
        pNext: _,
        zName: _,
        pAppData: _,
        xOpen,
        xDelete,
        xAccess,
        xFullPathname,
        xDlOpen,
        xDlError,
        xDlSym,
        xDlClose,
        xRandomness,
        xSleep,
        xCurrentTime,
        xGetLastError,
        xCurrentTimeInt64,
        xSetSystemCall,
        xGetSystemCall,
        xNextSystemCall,
    } = vfs;
    assert_eq!(*iVersion, 3, "the shim copies the test VFS's version");
    let name = c"/walwatch-panic-test/x".as_ptr();
    let mut buf = [0 as c_char; 64];
    let out = buf.as_mut_ptr();

    // xOpen: after a panic the file has no methods, so SQLite will not call xClose on it.
    let x_open = xOpen.expect("xOpen");
    let mut memory = file_memory(vfs);
    let file = memory.as_mut_ptr().cast::<sqlite3_file>();
    let mut flags = 0;
    // SAFETY: the shim's own method, with arguments valid for it (and so for each below).
    let open = || unsafe { x_open(vfs_ptr, name, file, 2, &mut flags) };
    check("xOpen", SQLITE_OK, vfs_failure!(xOpen), open);
    // SAFETY: xOpen succeeded and installed the shim's methods; close the file again.
    unsafe { ((*(*file).pMethods).xClose.expect("xClose"))(file) };

    let x = xDelete.expect("xDelete");
    // SAFETY: as above.
    check("xDelete", PARENT, vfs_failure!(xDelete), || unsafe {
        x(vfs_ptr, name, 0)
    });
    let x = xAccess.expect("xAccess");
    let mut res = 0;
    // SAFETY: as above.
    check("xAccess", PARENT, vfs_failure!(xAccess), || unsafe {
        x(vfs_ptr, name, 0, &mut res)
    });
    let x = xFullPathname.expect("xFullPathname");
    // SAFETY: as above.
    check(
        "xFullPathname",
        PARENT,
        vfs_failure!(xFullPathname),
        || unsafe { x(vfs_ptr, name, 64, out) },
    );
    let x = xDlOpen.expect("xDlOpen");
    // SAFETY: as above.
    check(
        "xDlOpen",
        MARKER_NAME.as_ptr() as *mut c_void,
        vfs_failure!(xDlOpen),
        || unsafe { x(vfs_ptr, name) },
    );
    let x = xDlError.expect("xDlError");
    // SAFETY: as above.
    check("xDlError", (), vfs_failure!(xDlError), || unsafe {
        x(vfs_ptr, 64, out)
    });
    let x = xDlSym.expect("xDlSym");
    // SAFETY: as above.
    check(
        "xDlSym",
        fn_addr(Some(marker)),
        fn_addr(vfs_failure!(xDlSym)),
        || fn_addr(unsafe { x(vfs_ptr, std::ptr::null_mut(), name) }),
    );
    let x = xDlClose.expect("xDlClose");
    // SAFETY: as above.
    check("xDlClose", (), vfs_failure!(xDlClose), || unsafe {
        x(vfs_ptr, std::ptr::null_mut())
    });
    let x = xRandomness.expect("xRandomness");
    // SAFETY: as above.
    check(
        "xRandomness",
        PARENT,
        vfs_failure!(xRandomness),
        || unsafe { x(vfs_ptr, 64, out) },
    );
    let x = xSleep.expect("xSleep");
    // SAFETY: as above.
    check("xSleep", PARENT, vfs_failure!(xSleep), || unsafe {
        x(vfs_ptr, 1)
    });
    let x = xCurrentTime.expect("xCurrentTime");
    let mut now = 0.0;
    // SAFETY: as above.
    check(
        "xCurrentTime",
        PARENT,
        vfs_failure!(xCurrentTime),
        || unsafe { x(vfs_ptr, &mut now) },
    );
    let x = xGetLastError.expect("xGetLastError");
    // SAFETY: as above.
    check(
        "xGetLastError",
        PARENT,
        vfs_failure!(xGetLastError),
        || unsafe { x(vfs_ptr, 64, out) },
    );
    let x = xCurrentTimeInt64.expect("xCurrentTimeInt64");
    let mut now = 0;
    // SAFETY: as above.
    check(
        "xCurrentTimeInt64",
        PARENT,
        vfs_failure!(xCurrentTimeInt64),
        || unsafe { x(vfs_ptr, &mut now) },
    );
    let x = xSetSystemCall.expect("xSetSystemCall");
    // SAFETY: as above.
    check(
        "xSetSystemCall",
        PARENT,
        vfs_failure!(xSetSystemCall),
        || unsafe { x(vfs_ptr, name, None) },
    );
    let x = xGetSystemCall.expect("xGetSystemCall");
    // SAFETY: as above.
    check(
        "xGetSystemCall",
        fn_addr(Some(marker)),
        fn_addr(vfs_failure!(xGetSystemCall)),
        || fn_addr(unsafe { x(vfs_ptr, name) }),
    );
    let x = xNextSystemCall.expect("xNextSystemCall");
    // SAFETY: as above.
    check(
        "xNextSystemCall",
        MARKER_NAME.as_ptr(),
        vfs_failure!(xNextSystemCall),
        || unsafe { x(vfs_ptr, name) },
    );
}

/// One io method of an open file of the shim, as [`each_io_method`] hands it to a test.
struct Member<'a> {
    site: &'static str,
    /// The shim's member and the wrapped file's, as addresses (0 when absent).
    shim: usize,
    wrapped: usize,
    /// What the shim's method returns when walwatch panics in it.
    failure: c_int,
    /// Calls the member as SQLite would (`None` when the table lacks it).
    call: Option<&'a dyn Fn() -> c_int>,
}

/// The io methods of an open file of the shim, each called with arguments valid for it.
/// `visit` is asked about each one; the last, `xClose`, closes the file.
///
/// # Safety
/// `file` must be a file the shim's xOpen opened with `wrapped` as the wrapped VFS's table, and
/// not closed.
unsafe fn each_io_method(
    file: *mut sqlite3_file,
    wrapped: &sqlite3_io_methods,
    mut visit: impl FnMut(Member<'_>),
) {
    // SAFETY: the file is open; its methods are the shim's table.
    let methods = unsafe { &*(*file).pMethods };
    // Every member: adding one to sqlite3_io_methods breaks this pattern until it is tested.
    let sqlite3_io_methods {
        iVersion,
        xClose,
        xRead,
        xWrite,
        xTruncate,
        xSync,
        xFileSize,
        xLock,
        xUnlock,
        xCheckReservedLock,
        xFileControl,
        xSectorSize,
        xDeviceCharacteristics,
        xShmMap,
        xShmLock,
        xShmBarrier,
        xShmUnmap,
        xFetch,
        xUnfetch,
    } = methods;
    assert_eq!(*iVersion, wrapped.iVersion, "the wrapped table's version");
    let mut buf = [0u8; 64];
    let data = buf.as_mut_ptr().cast::<c_void>();
    let mut int = 0;
    let mut size = 0i64;
    let mut ptr: *mut c_void = std::ptr::null_mut();
    let (int_ptr, size_ptr, ptr_ptr): (*mut c_int, *mut i64, *mut *mut c_void) =
        (&mut int, &mut size, &mut ptr);
    // A method's failure code: the shim's own (`io_failure!`) for the methods it observes,
    // 0 for the others (never asked: they are the wrapped VFS's functions).
    macro_rules! member {
        ($m:ident, $failure:expr, |$x:ident| $call:expr) => {{
            let addr = |f: Option<_>| f.map_or(0, |f| f as usize);
            // SAFETY: the shim's member on its open file, with valid arguments.
            let call = $m.map(|$x| move || unsafe { $call });
            visit(Member {
                site: stringify!($m),
                shim: addr(*$m),
                wrapped: addr(wrapped.$m),
                failure: $failure,
                call: call.as_ref().map(|c| c as &dyn Fn() -> c_int),
            });
        }};
    }
    member!(xRead, 0, |x| x(file, data, 64, 0));
    member!(xWrite, io_failure!(xWrite), |x| x(file, data, 64, 0));
    member!(xTruncate, io_failure!(xTruncate), |x| x(file, 0));
    member!(xSync, io_failure!(xSync), |x| x(file, 2));
    member!(xFileSize, 0, |x| x(file, size_ptr));
    member!(xLock, io_failure!(xLock), |x| x(file, 1));
    member!(xUnlock, 0, |x| x(file, 0));
    member!(xCheckReservedLock, 0, |x| x(file, int_ptr));
    // Opcode 0 is no opcode SQLite defines.
    member!(xFileControl, io_failure!(xFileControl), |x| x(
        file,
        0,
        std::ptr::null_mut()
    ));
    member!(xSectorSize, 0, |x| x(file));
    member!(xDeviceCharacteristics, 0, |x| x(file));
    member!(xShmMap, io_failure!(xShmMap), |x| x(
        file, 0, 32768, 0, ptr_ptr
    ));
    member!(xShmLock, io_failure!(xShmLock), |x| x(
        file,
        3,
        1,
        SQLITE_SHM_LOCK | SQLITE_SHM_SHARED
    ));
    // No result: the call count tells forwarding from failure.
    member!(xShmBarrier, 0, |x| {
        x(file);
        0
    });
    member!(xShmUnmap, io_failure!(xShmUnmap), |x| x(file, 0));
    member!(xFetch, 0, |x| x(file, 0, 64, ptr_ptr));
    member!(xUnfetch, 0, |x| x(file, 0, std::ptr::null_mut()));
    // Last: closes the file.
    member!(xClose, io_failure!(xClose), |x| x(file));
}

/// What the shim observes on a main database: its own methods; every other member is the
/// wrapped VFS's own function.
const OBSERVED_ON_MAIN_DB: [&str; 8] = [
    "xWrite",
    "xSync",
    "xLock",
    "xFileControl",
    "xShmMap",
    "xShmLock",
    "xShmUnmap",
    "xClose",
];

#[test]
fn a_panic_in_any_io_method_returns_its_failure_code() {
    let vfs = shim_vfs();
    let mut memory = file_memory(vfs);
    let file = open(vfs, &mut memory, &FULL, MAIN_DB);
    let mut ours = Vec::new();
    let mut seen = 0;
    // SAFETY: `file` was just opened by the shim over FULL.
    unsafe {
        each_io_method(file, &FULL, |m| {
            seen += 1;
            let call = m.call.expect("the shim's table has every method FULL has");
            if OBSERVED_ON_MAIN_DB.contains(&m.site) {
                assert_ne!(m.shim, m.wrapped, "{}: the shim's own method", m.site);
                ours.push(m.site);
                let parent = if m.site == "xShmBarrier" { 0 } else { PARENT };
                check(m.site, parent, m.failure, call);
            } else {
                // No walwatch code runs in it, so none can panic.
                assert_eq!(m.shim, m.wrapped, "{}: the wrapped VFS's own", m.site);
                CALLS.set(0);
                let got = call();
                let parent = if m.site == "xShmBarrier" { 0 } else { PARENT };
                assert_eq!(
                    (got, CALLS.get()),
                    (parent, 1),
                    "{}: called directly",
                    m.site
                );
            }
        })
    };
    assert_eq!(seen, 18);
    assert_eq!(ours.len(), OBSERVED_ON_MAIN_DB.len());
}

#[test]
fn the_shim_lacks_exactly_what_the_wrapped_file_lacks() {
    let vfs = shim_vfs();
    let mut memory = file_memory(vfs);
    let file = open(vfs, &mut memory, &SPARSE, MAIN_DB);
    let mut seen = 0;
    // SAFETY: `file` was just opened by the shim over SPARSE; only xShmMap is called (the
    // others are absent), and it does not close the file.
    unsafe {
        each_io_method(file, &SPARSE, |m| {
            seen += 1;
            if m.site == "xShmMap" {
                assert_ne!(m.shim, m.wrapped, "xShmMap is the shim's");
                CALLS.set(0);
                let got = m.call.expect("present")();
                assert_eq!((got, CALLS.get()), (PARENT, 1), "xShmMap forwards");
            } else {
                assert!(
                    m.call.is_none(),
                    "{} is absent, as in the wrapped table",
                    m.site
                );
            }
        })
    };
    assert_eq!(seen, 18);
}

#[test]
fn a_file_walwatch_does_not_observe_keeps_the_wrapped_methods() {
    let vfs = shim_vfs();
    let mut memory = file_memory(vfs);
    // A temporary or journal file: neither main database nor WAL.
    let file = open(vfs, &mut memory, &FULL, 2);
    // SAFETY: the file was just opened.
    assert!(std::ptr::eq(unsafe { (*file).pMethods }, &FULL));
    // SAFETY: as above; closing it through its own (the wrapped) method.
    assert_eq!(unsafe { FULL.xClose.expect("xClose")(file) }, PARENT);
}

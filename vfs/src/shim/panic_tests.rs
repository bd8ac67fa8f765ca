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

/// Opens a file through the shim (not a main database or WAL: no stats file is involved).
fn open(
    vfs: &sqlite3_vfs,
    memory: &mut [u64],
    methods: &'static sqlite3_io_methods,
) -> *mut sqlite3_file {
    let file = memory.as_mut_ptr().cast::<sqlite3_file>();
    NEXT_FILE_METHODS.set(methods);
    let mut out = 0;
    let x_open = vfs.xOpen.expect("xOpen");
    let vfs_ptr = vfs as *const sqlite3_vfs as *mut sqlite3_vfs;
    // SAFETY: `file` has szOsFile bytes; the name is a NUL-terminated string.
    let rc = unsafe {
        x_open(
            vfs_ptr,
            c"/walwatch-panic-test/file".as_ptr(),
            file,
            2,
            &mut out,
        )
    };
    assert_eq!(rc, SQLITE_OK);
    file
}

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

/// The io methods of an open file of the shim, each called with arguments valid for it.
/// `expect(site, parent, failure, call)` is asked about each one; the last closes the file.
///
/// # Safety
/// `file` must be a file the shim's xOpen opened, and not closed.
unsafe fn each_io_method(
    file: *mut sqlite3_file,
    mut expect: impl FnMut(&'static str, c_int, c_int, &dyn Fn() -> c_int),
) {
    // SAFETY: the file is open; its methods are the shim's static table.
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
    assert_eq!(*iVersion, 3, "the shim installs its version-3 table");
    let mut buf = [0u8; 64];
    let data = buf.as_mut_ptr().cast::<c_void>();
    let mut int = 0;
    let mut size = 0i64;
    let mut ptr: *mut c_void = std::ptr::null_mut();
    let x = xRead.expect("xRead");
    // SAFETY: the shim's own method on its open file, with valid arguments (and so below).
    expect("xRead", PARENT, io_failure!(xRead), &|| unsafe {
        x(file, data, 64, 0)
    });
    let x = xWrite.expect("xWrite");
    // SAFETY: as above.
    expect("xWrite", PARENT, io_failure!(xWrite), &|| unsafe {
        x(file, data, 64, 0)
    });
    let x = xTruncate.expect("xTruncate");
    // SAFETY: as above.
    expect("xTruncate", PARENT, io_failure!(xTruncate), &|| unsafe {
        x(file, 0)
    });
    let x = xSync.expect("xSync");
    // SAFETY: as above.
    expect("xSync", PARENT, io_failure!(xSync), &|| unsafe {
        x(file, 2)
    });
    let x = xFileSize.expect("xFileSize");
    let size_ptr: *mut i64 = &mut size;
    // SAFETY: as above.
    expect("xFileSize", PARENT, io_failure!(xFileSize), &|| unsafe {
        x(file, size_ptr)
    });
    let x = xLock.expect("xLock");
    // SAFETY: as above.
    expect("xLock", PARENT, io_failure!(xLock), &|| unsafe {
        x(file, 1)
    });
    let x = xUnlock.expect("xUnlock");
    // SAFETY: as above.
    expect("xUnlock", PARENT, io_failure!(xUnlock), &|| unsafe {
        x(file, 0)
    });
    let x = xCheckReservedLock.expect("xCheckReservedLock");
    let int_ptr: *mut c_int = &mut int;
    // SAFETY: as above.
    expect(
        "xCheckReservedLock",
        PARENT,
        io_failure!(xCheckReservedLock),
        &|| unsafe { x(file, int_ptr) },
    );
    let x = xFileControl.expect("xFileControl");
    // SAFETY: as above (opcode 0 is no opcode SQLite defines).
    expect(
        "xFileControl",
        PARENT,
        io_failure!(xFileControl),
        &|| unsafe { x(file, 0, std::ptr::null_mut()) },
    );
    let x = xSectorSize.expect("xSectorSize");
    // SAFETY: as above.
    expect(
        "xSectorSize",
        PARENT,
        io_failure!(xSectorSize),
        &|| unsafe { x(file) },
    );
    let x = xDeviceCharacteristics.expect("xDeviceCharacteristics");
    // SAFETY: as above.
    expect(
        "xDeviceCharacteristics",
        PARENT,
        io_failure!(xDeviceCharacteristics),
        &|| unsafe { x(file) },
    );
    let x = xShmMap.expect("xShmMap");
    let ptr_ptr: *mut *mut c_void = &mut ptr;
    // SAFETY: as above.
    expect("xShmMap", PARENT, io_failure!(xShmMap), &|| unsafe {
        x(file, 0, 32768, 0, ptr_ptr)
    });
    let x = xShmLock.expect("xShmLock");
    // SAFETY: as above.
    expect("xShmLock", PARENT, io_failure!(xShmLock), &|| unsafe {
        x(file, 3, 1, SQLITE_SHM_LOCK | SQLITE_SHM_SHARED)
    });
    let x = xShmBarrier.expect("xShmBarrier");
    // SAFETY: as above. (No result: the call count tells forwarding from failure.)
    expect("xShmBarrier", 0, 0, &|| unsafe {
        x(file);
        0
    });
    let x = xShmUnmap.expect("xShmUnmap");
    // SAFETY: as above.
    expect("xShmUnmap", PARENT, io_failure!(xShmUnmap), &|| unsafe {
        x(file, 0)
    });
    let x = xFetch.expect("xFetch");
    // SAFETY: as above.
    expect("xFetch", PARENT, io_failure!(xFetch), &|| unsafe {
        x(file, 0, 64, ptr_ptr)
    });
    let x = xUnfetch.expect("xUnfetch");
    // SAFETY: as above.
    expect("xUnfetch", PARENT, io_failure!(xUnfetch), &|| unsafe {
        x(file, 0, std::ptr::null_mut())
    });
    // Last: closes the file.
    let x = xClose.expect("xClose");
    // SAFETY: as above.
    expect("xClose", PARENT, io_failure!(xClose), &|| unsafe {
        x(file)
    });
}

#[test]
fn a_panic_in_any_io_method_returns_its_failure_code() {
    let vfs = shim_vfs();
    let mut memory = file_memory(vfs);
    let file = open(vfs, &mut memory, &FULL);
    let mut seen = Vec::new();
    // SAFETY: `file` was just opened by the shim.
    unsafe {
        each_io_method(file, |site, parent, failure, call| {
            seen.push(site);
            check(site, parent, failure, call);
        })
    };
    assert_eq!(seen.len(), 18);
}

#[test]
fn a_method_the_wrapped_file_lacks_returns_its_failure_code() {
    let vfs = shim_vfs();
    let mut memory = file_memory(vfs);
    let file = open(vfs, &mut memory, &SPARSE);
    // SAFETY: `file` was just opened by the shim.
    unsafe {
        each_io_method(file, |site, parent, failure, call| {
            CALLS.set(0);
            let got = call();
            if site == "xShmMap" {
                assert_eq!(
                    (got, CALLS.get()),
                    (parent, 1),
                    "{site} is there: forwarded"
                );
            } else {
                assert_eq!(
                    (got, CALLS.get()),
                    (failure, 0),
                    "{site} is missing: its failure code"
                );
            }
        })
    };
}

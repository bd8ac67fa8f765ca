//! The loadable-extension entry point and the `walwatch_stats()` SQL function: the only place
//! where SQLite's `sqlite3_api_routines` are read.
//!
//! # What loading changes, and what it cannot
//! Loading makes `walwatch` the default VFS: connections opened *afterwards* are watched.
//! - A database opened *before* the load stays on the VFS it was opened with, unwatched
//!   (sqlite-utils' `--load-extension`, the shell's `.open` before `.load`). `walwatch_stats()` on
//!   it says so and how to watch it: load walwatch first, or open it with the URI parameter
//!   `vfs=walwatch` (the extension stays registered under that name).
//! - Shared cache (`cache=shared`, including `file:x?mode=memory&cache=shared`): SQLite shares a
//!   cache only between connections on the same VFS *object* (`sqlite3BtreeOpen` compares the
//!   pager's VFS pointer), and a registered VFS object must never be modified, so the shim cannot
//!   make itself the object that earlier connections use. A shared-cache database opened before
//!   the load is therefore not shared with connections opened after it (they get a new, empty
//!   in-memory database); connections that name the first VFS (`&vfs=unix`) still share with it.
//!   Loaded first, walwatch is every connection's VFS and shared caches work as without it
//!   (datasette: `examples/datasette/walwatch_first.py`). In-memory databases have no files:
//!   nothing of them is watched, and `walwatch_stats()` says so.

use crate::ffi::*;
use crate::Host;
use std::ffi::{c_char, c_int, c_void, CString};

/// The entry point SQLite looks up for `libwalwatch.so` (`sqlite3_` + `walwatch` + `_init`).
///
/// Registers the shim as the default VFS, arranges for `walwatch_stats()` to exist on every
/// connection opened from now on, and asks SQLite to keep the library loaded
/// (`SQLITE_OK_LOAD_PERMANENTLY`): a VFS must outlive the connection that loaded it.
///
/// # Safety
/// Called by SQLite's extension loader with a valid connection and API routines.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_walwatch_init(
    db: *mut sqlite3,
    err: *mut *mut c_char,
    api: *const sqlite3_api_routines,
) -> c_int {
    crate::unwind::guard("sqlite3_walwatch_init", SQLITE_ERROR, || {
        // SAFETY: SQLite passes its own API routines, valid for the life of the process.
        match unsafe { api.as_ref() } {
            // SAFETY: SQLite's own arguments to the entry point.
            Some(api) => unsafe { init(db, err, api) }.unwrap_or_else(|rc| rc),
            None => SQLITE_ERROR,
        }
    })
}

/// # Safety
/// As for [`sqlite3_walwatch_init`]: `db` is the connection being initialized, `err` null or
/// where SQLite takes an error message.
unsafe fn init(
    db: *mut sqlite3,
    err: *mut *mut c_char,
    api: &sqlite3_api_routines,
) -> Result<c_int, c_int> {
    let missing = |what: &str| {
        let message =
            format!("walwatch: this SQLite lacks {what}; walwatch needs SQLite 3.22 or newer");
        // SAFETY: `err` is the entry point's, per the contract.
        unsafe { set_error(api, err, &message) };
        SQLITE_ERROR
    };
    let host = Host {
        vfs_find: api.vfs_find.ok_or_else(|| missing("sqlite3_vfs_find"))?,
        vfs_register: api
            .vfs_register
            .ok_or_else(|| missing("sqlite3_vfs_register"))?,
        log: api.log.ok_or_else(|| missing("sqlite3_log"))?,
        malloc: api.malloc.ok_or_else(|| missing("sqlite3_malloc"))?,
        free: api.free.ok_or_else(|| missing("sqlite3_free"))?,
    };
    crate::register(host).map_err(|e| {
        // SAFETY: as above.
        unsafe { set_error(api, err, &format!("walwatch: {e}")) };
        SQLITE_ERROR
    })?;
    API.get_or_init(|| ApiPtr(api as *const sqlite3_api_routines));
    // The auto-extension runs for every connection opened later, so they get the SQL function.
    if let Some(auto_extension) = api.auto_extension {
        // SAFETY: `auto_init` has the signature SQLite calls auto-extensions with; registering
        // the same function twice is a no-op in SQLite.
        unsafe {
            auto_extension(Some(std::mem::transmute::<
                AutoInitFn,
                unsafe extern "C" fn(),
            >(auto_init)))
        };
    }
    // SAFETY: `db` is the connection being initialized, per the contract.
    unsafe { create_stats_function(db, api) }?;
    Ok(SQLITE_OK_LOAD_PERMANENTLY)
}

type AutoInitFn =
    unsafe extern "C" fn(*mut sqlite3, *mut *mut c_char, *const sqlite3_api_routines) -> c_int;

struct ApiPtr(*const sqlite3_api_routines);
// SAFETY: the API routines are a static table inside SQLite, read-only and process-wide.
unsafe impl Send for ApiPtr {}
// SAFETY: as above.
unsafe impl Sync for ApiPtr {}
/// The API routines of the SQLite that loaded us (one SQLite per process).
static API: std::sync::OnceLock<ApiPtr> = std::sync::OnceLock::new();

fn loaded_api() -> Option<&'static sqlite3_api_routines> {
    // SAFETY: API holds SQLite's API routines table, which lives as long as the process.
    API.get().and_then(|p| unsafe { p.0.as_ref() })
}

/// Runs for each new connection: adds `walwatch_stats()`. Must return `SQLITE_OK` (any other
/// value makes SQLite fail the open), so a failure here only leaves the function missing.
unsafe extern "C" fn auto_init(
    db: *mut sqlite3,
    _err: *mut *mut c_char,
    api: *const sqlite3_api_routines,
) -> c_int {
    // SQLITE_OK even after a panic: the connection opens, without `walwatch_stats()`.
    crate::unwind::guard("walwatch auto-extension", SQLITE_OK, || {
        // SAFETY: SQLite passes its API routines to auto-extensions (or null on very old
        // versions, in which case we use the ones from the original load).
        if let Some(api) = unsafe { api.as_ref() }.or_else(loaded_api) {
            // SAFETY: `db` is the connection SQLite is opening.
            let _ = unsafe { create_stats_function(db, api) };
        }
        SQLITE_OK
    })
}

/// # Safety
/// `db` must be a live connection (SQLite's argument to the entry point or an auto-extension).
unsafe fn create_stats_function(db: *mut sqlite3, api: &sqlite3_api_routines) -> Result<(), c_int> {
    let Some(create) = api.create_function_v2 else {
        return Ok(());
    };
    // SAFETY: `db` is the live connection being initialized; the name is a static C string.
    let rc = unsafe {
        create(
            db,
            c"walwatch_stats".as_ptr(),
            0,
            SQLITE_UTF8,
            std::ptr::null_mut(),
            Some(stats_function),
            None,
            None,
            None,
        )
    };
    if rc == SQLITE_OK {
        Ok(())
    } else {
        Err(rc)
    }
}

/// `walwatch_stats()`: the stats of the connection's main database as JSON.
unsafe extern "C" fn stats_function(
    ctx: *mut sqlite3_context,
    _argc: c_int,
    _argv: *mut *mut sqlite3_value,
) {
    // A panic before a result is set leaves the result NULL; one while computing the stats
    // becomes an error result.
    crate::unwind::guard("walwatch_stats", (), || {
        let Some(api) = loaded_api() else { return };
        let (Some(result_text), Some(result_error)) = (api.result_text, api.result_error) else {
            return;
        };
        let outcome = crate::unwind::guard("walwatch_stats (stats)", None, || {
            // SAFETY: `ctx` is this call's live context.
            Some(unsafe { stats_for(ctx, api) })
        })
        .unwrap_or_else(|| {
            Err("walwatch_stats: internal error (a bug in walwatch: please report it with the message in SQLite's log)".to_owned())
        });
        match outcome {
            Ok(json) => {
                let text = CString::new(json).unwrap_or_default();
                // SAFETY: SQLITE_TRANSIENT makes SQLite copy the text before `text` is dropped.
                unsafe { result_text(ctx, text.as_ptr(), -1, sqlite_transient()) };
            }
            Err(message) => {
                let text = CString::new(message).unwrap_or_default();
                // SAFETY: -1 length with a NUL-terminated message; SQLite copies it.
                unsafe { result_error(ctx, text.as_ptr(), -1) };
            }
        }
    })
}

/// # Safety
/// `ctx` must be the live function context of a call of `walwatch_stats()`.
unsafe fn stats_for(
    ctx: *mut sqlite3_context,
    api: &sqlite3_api_routines,
) -> Result<String, String> {
    let (Some(db_handle), Some(file_control)) = (api.context_db_handle, api.file_control) else {
        return Err("walwatch_stats: this SQLite lacks sqlite3_file_control".into());
    };
    // SAFETY: ctx is the live function context.
    let db = unsafe { db_handle(ctx) };
    let mut file: *mut sqlite3_file = std::ptr::null_mut();
    // SAFETY: SQLITE_FCNTL_FILE_POINTER writes the main database's sqlite3_file* into `file`.
    let rc = unsafe {
        file_control(
            db,
            c"main".as_ptr(),
            SQLITE_FCNTL_FILE_POINTER,
            &mut file as *mut _ as *mut c_void,
        )
    };
    // SAFETY: a non-null file from SQLITE_FCNTL_FILE_POINTER is the pager's file object;
    // its pMethods is null when no file was opened (in-memory and temporary databases).
    if rc != SQLITE_OK || file.is_null() || unsafe { (*file).pMethods.is_null() } {
        return Err(
            "walwatch_stats: the main database has no file (an in-memory or temporary database): there is no WAL to watch"
                .into(),
        );
    }
    // SAFETY: `file` is the pager's open file (checked above), open for this whole call.
    if let Some(json) = unsafe { crate::stats_json_for_file(file) } {
        return Ok(json);
    }
    // Not watched: say why, and how to watch it.
    let mut vfs: *mut sqlite3_vfs = std::ptr::null_mut();
    // SAFETY: SQLITE_FCNTL_VFS_POINTER (SQLite 3.18+) writes the connection's sqlite3_vfs*;
    // older versions leave `vfs` null and return an error.
    let rc = unsafe {
        file_control(
            db,
            c"main".as_ptr(),
            SQLITE_FCNTL_VFS_POINTER,
            &mut vfs as *mut _ as *mut c_void,
        )
    };
    if rc == SQLITE_OK && !vfs.is_null() && !crate::shim::is_walwatch(vfs) {
        // SAFETY: a VFS a connection uses is registered and lives as long as the process; its
        // zName is a NUL-terminated string (or null).
        let name = unsafe { (*vfs).zName.as_ref() }
            .map(|z| {
                // SAFETY: as above.
                unsafe { std::ffi::CStr::from_ptr(z) }
                    .to_string_lossy()
                    .into_owned()
            })
            .unwrap_or_default();
        return Err(format!(
            "walwatch_stats: this database is not watched: it was opened before walwatch was loaded (on the \"{name}\" VFS); to watch it, load walwatch before opening the database (in the sqlite3 shell: .load, then .open), or open it with the URI parameter vfs=walwatch (file:app.db?vfs=walwatch)"
        ));
    }
    Err("walwatch_stats: this database is on the walwatch VFS but has no stats file: check SQLite's log (sqlite3_log) for the stats-directory problem walwatch reported, and fix it (see `walwatch status`)".into())
}

/// # Safety
/// `err` must be null or point to a writable `char*` that SQLite frees with `sqlite3_free`.
unsafe fn set_error(api: &sqlite3_api_routines, err: *mut *mut c_char, message: &str) {
    if err.is_null() {
        return;
    }
    let Some(malloc) = api.malloc else { return };
    let bytes = message.as_bytes();
    // SAFETY: sqlite3_malloc returns null or enough bytes; SQLite frees *err with sqlite3_free.
    unsafe {
        let out = malloc(bytes.len() as c_int + 1) as *mut u8;
        if !out.is_null() {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), out, bytes.len());
            *out.add(bytes.len()) = 0;
            *err = out.cast();
        }
    }
}

#[cfg(test)]
mod tests {
    //! No panic crosses into SQLite from the extension's entry points (issue 11): each returns
    //! what its caller expects on failure. Panics are injected in test builds only.
    use super::*;
    use crate::unwind::tests::panic_at;

    fn no_routines() -> sqlite3_api_routines {
        // SAFETY: the struct holds only optional function pointers and raw pointers, for which
        // all-zero bytes are `None` and null.
        unsafe { std::mem::zeroed() }
    }

    #[test]
    fn a_panic_in_the_entry_point_fails_the_load() {
        let api = no_routines();
        let mut err: *mut c_char = std::ptr::null_mut();
        panic_at(Some("sqlite3_walwatch_init"));
        // SAFETY: a null connection is never used: the panic comes first.
        let rc = unsafe { sqlite3_walwatch_init(std::ptr::null_mut(), &mut err, &api) };
        panic_at(None);
        assert_eq!(rc, SQLITE_ERROR);
        // Without a panic, routines that lack what walwatch needs fail the load the same way.
        // SAFETY: as above: nothing is called on the null connection.
        let rc = unsafe { sqlite3_walwatch_init(std::ptr::null_mut(), &mut err, &api) };
        assert_eq!(rc, SQLITE_ERROR);
        assert!(err.is_null(), "no sqlite3_malloc, so no message");
    }

    #[test]
    fn a_panic_in_the_auto_extension_still_lets_the_connection_open() {
        let api = no_routines();
        panic_at(Some("walwatch auto-extension"));
        // SAFETY: a null connection is never used: the panic comes first.
        let rc = unsafe { auto_init(std::ptr::null_mut(), std::ptr::null_mut(), &api) };
        panic_at(None);
        assert_eq!(rc, SQLITE_OK);
    }

    #[test]
    fn a_panic_in_walwatch_stats_returns_to_sqlite() {
        for site in ["walwatch_stats", "walwatch_stats (stats)"] {
            panic_at(Some(site));
            // SAFETY: the null context is never used: the panic comes first, or no SQLite
            // loaded this library in the test process, so there are no routines to call.
            unsafe { stats_function(std::ptr::null_mut(), 0, std::ptr::null_mut()) };
            panic_at(None);
        }
    }
}

//! Use walwatch from a Rust program that links SQLite itself (through rusqlite): no loadable
//! extension, same shim, same stats files.
//!
//! ```no_run
//! walwatch_rusqlite::register().expect("walwatch VFS");
//! // Every connection opened from now on goes through the shim.
//! let conn = rusqlite::Connection::open("app.db")?;
//! conn.pragma_update(None, "journal_mode", "WAL")?;
//! println!("{}", walwatch_rusqlite::stats_json(&conn)?);
//! # Ok::<(), rusqlite::Error>(())
//! ```

use rusqlite::ffi;
use std::ffi::{c_char, c_int, c_void};
use walwatch::ffi as ww;

/// Registers the `walwatch` VFS around the process's default VFS and makes it the default, so
/// every connection opened afterwards is watched. Call it once, before opening connections;
/// calling it again is harmless.
pub fn register() -> Result<(), walwatch::RegisterError> {
    walwatch::register(walwatch::Host {
        vfs_find,
        vfs_register,
        log: ffi::sqlite3_log,
        malloc: ffi::sqlite3_malloc,
        free: ffi::sqlite3_free,
    })
}

/// The stats of `conn`'s main database as JSON (the same object `SELECT walwatch_stats()`
/// returns from the loadable extension).
pub fn stats_json(conn: &rusqlite::Connection) -> rusqlite::Result<String> {
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: `conn.handle()` is a live connection; SQLITE_FCNTL_FILE_POINTER writes a
    // `sqlite3_file*` into `file` and needs nothing else.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            &mut file as *mut _ as *mut c_void,
        )
    };
    if rc != ffi::SQLITE_OK || file.is_null() {
        return Err(rusqlite::Error::SqliteFailure(
            ffi::Error::new(rc),
            Some("walwatch: the main database has no file".into()),
        ));
    }
    // SAFETY: `file` is the main database file of `conn`, which stays open during the call.
    unsafe { walwatch::stats_json_for_file(file.cast()) }.ok_or_else(|| {
        rusqlite::Error::SqliteFailure(
            ffi::Error::new(ffi::SQLITE_MISUSE),
            Some("walwatch: this connection was not opened through the walwatch VFS; call walwatch_rusqlite::register() before opening it".into()),
        )
    })
}

/// Adds `walwatch_stats()` to a connection, as the loadable extension does.
pub fn add_stats_function(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "walwatch_stats",
        0,
        rusqlite::functions::FunctionFlags::SQLITE_UTF8,
        |ctx| {
            // SAFETY: the connection outlives the call of its own function.
            let conn = unsafe { ctx.get_connection()? };
            stats_json(&conn)
        },
    )
}

// Thin adapters from rusqlite's FFI types to walwatch's identical C declarations.

unsafe extern "C" fn vfs_find(name: *const c_char) -> *mut ww::sqlite3_vfs {
    // SAFETY: same contract as sqlite3_vfs_find; the struct layouts are the C ones.
    unsafe { ffi::sqlite3_vfs_find(name) }.cast()
}

unsafe extern "C" fn vfs_register(vfs: *mut ww::sqlite3_vfs, make_default: c_int) -> c_int {
    // SAFETY: walwatch passes a complete, leaked sqlite3_vfs with the C layout.
    unsafe { ffi::sqlite3_vfs_register(vfs.cast(), make_default) }
}

//! No panic unwinds into SQLite: every function SQLite (or a loading program) calls runs its body
//! inside [`guard`], which turns a panic into the result the caller expects on failure.
//!
//! A panic cannot cross C frames: since Rust 1.81 one leaving an `extern "C"` function aborts the
//! whole host process (before, it was undefined behaviour). The shim must not take the
//! application down for a bug of its own, so each entry point names the error it returns
//! instead: an I/O method its `SQLITE_IOERR_*` code, `xOpen` `SQLITE_CANTOPEN`, `xSectorSize` a
//! default sector size, and so on (the tables are in `shim/mod.rs` and `shim/file.rs`). The panic
//! is reported once per process through `sqlite3_log`.
//!
//! Cost: `catch_unwind` compiles to an unwind table entry (a landing pad off the normal path); a
//! call that does not panic runs the same instructions as without it, with no allocation and no
//! extra call (the closure is inlined). Around code that cannot panic the compiler drops the
//! guard altogether: the methods of every transaction (`xShmLock`, `xFileControl`) guard the
//! shim's own work that way and call the wrapped VFS outside the guard, so an unlock can end in
//! a tail call to it (`shim/file.rs`, module `hot`).
//!
//! Needs unwinding panics: the workspace does not set `panic = "abort"` (with it, a panic in the
//! shim would abort the host process whatever this module does).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `body`, the whole of an entry point called from C; if it panics, reports the panic and
/// returns `on_panic` instead. `site` names the entry point (`xRead`, `sqlite3_walwatch_init`).
#[inline(always)]
pub(crate) fn guard<T>(site: &'static str, on_panic: T, body: impl FnOnce() -> T) -> T {
    #[cfg(test)]
    let body = || {
        tests::maybe_panic(site);
        body()
    };
    // AssertUnwindSafe: after a panic the caller gets an error code and the shim's state is
    // left as the panic left it: counters in the stats region are plain atomics (never torn),
    // and a file's own state is used again only through SQLite's calls, which handle the error.
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            report(site, payload);
            on_panic
        }
    }
}

static PANICKED: crate::host::OnceFlag = crate::host::OnceFlag::new();

/// Logs the first panic of the process (the panic hook has already printed it to stderr).
#[cold]
#[inline(never)]
fn report(site: &'static str, payload: Box<dyn Any + Send>) {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    crate::host::warn_once(
        &PANICKED,
        &format!("internal error in {site}, which returned an error code to SQLite: {message}"),
        "this is a bug in walwatch: please report it with the message above; the operation failed, the database is unharmed",
    );
    // Never run the payload's destructor: a panicking Drop would unwind out of here.
    std::mem::forget(payload);
}

#[cfg(test)]
pub(crate) mod tests {
    //! Test builds only: make [`super::guard`] panic at a chosen entry point, on this thread.
    //! The shipped extension has no such trigger.
    use std::cell::Cell;

    thread_local! {
        static PANIC_AT: Cell<Option<&'static str>> = const { Cell::new(None) };
    }

    /// From now on, on this thread, the entry point named `site` panics as soon as it is called.
    pub(crate) fn panic_at(site: Option<&'static str>) {
        PANIC_AT.set(site);
    }

    pub(super) fn maybe_panic(site: &'static str) {
        if PANIC_AT.get() == Some(site) {
            panic!("test: injected panic in {site}");
        }
    }

    #[test]
    fn a_panic_becomes_the_fallback_value() {
        panic_at(Some("unit"));
        assert_eq!(super::guard("unit", 7, || 1), 7);
        assert_eq!(super::guard("other", 7, || 1), 1);
        panic_at(None);
        assert_eq!(super::guard("unit", 7, || -> i32 { panic!("boom") }), 7);
        // A payload whose destructor panics is not dropped.
        struct Bomb;
        impl Drop for Bomb {
            fn drop(&mut self) {
                panic!("drop");
            }
        }
        assert_eq!(
            super::guard("unit", 3, || -> i32 { std::panic::panic_any(Bomb) }),
            3
        );
    }
}

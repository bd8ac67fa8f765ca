//! Collector: who holds the `-shm` lock slots, without the shim.
//!
//! SQLite's unix VFS implements `xShmLock` slot `i` as a POSIX byte-range lock on byte
//! `120 + i` of `-shm` (`UNIX_SHM_BASE` in `os_unix.c`). `F_GETLK` on those bytes names a
//! holder's pid even for processes that never loaded walwatch. The `-shm` is opened read-only
//! and only queried: the sidecar never takes a lock.

use std::fs::File;
use walwatch::layout::SLOTS;
use walwatch::wal_index::SHM_LOCK_BASE;

use crate::model::LockHolder;
use crate::sys::{lock_holder, lock_holder_in};

/// The holder of each lock slot (indexed like `SLOT_NAMES`), if any.
pub fn holders(shm: &File) -> std::io::Result<[Option<LockHolder>; SLOTS]> {
    let mut out = [None; SLOTS];
    // Most databases are idle most of the time: one query over every slot's byte says so, and
    // spares the seven others.
    if lock_holder_in(shm, SHM_LOCK_BASE, SLOTS as u64)?.is_none() {
        return Ok(out);
    }
    for (slot, holder) in out.iter_mut().enumerate() {
        *holder = lock_holder(shm, SHM_LOCK_BASE + slot as u64)?;
    }
    Ok(out)
}

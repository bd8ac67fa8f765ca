//! The only unsafe code of the sidecar: two libc calls that `std` does not offer.
//!
//! - [`lock_holder`]: `fcntl(F_GETLK)` asks the kernel which process holds a POSIX byte-range
//!   lock on a file. It only *queries*: it never takes, changes or drops a lock, so it cannot
//!   disturb SQLite. (The sidecar holds no locks on any `-shm`; a process's own locks are never
//!   reported by `F_GETLK`, which is why this must not run inside a process that uses SQLite on
//!   the same file.)
//! - [`pid_alive`]: `kill(pid, 0)` sends no signal, it only checks that the pid exists.

use std::io;
use std::os::fd::AsRawFd;

/// A lock found by [`lock_holder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: u32,
    /// `true` for a write (exclusive) lock, `false` for a read (shared) lock.
    pub exclusive: bool,
}

/// Which process, if any, holds a lock on byte `offset` of `file` that would conflict with an
/// exclusive lock, i.e. any lock at all. Only the first conflicting lock is reported: when
/// several processes share a read lock, the kernel names one of them.
///
/// Works on a file opened read-only (`F_GETLK` does not check the open mode). Returns
/// `Ok(None)` when the byte is unlocked. An OFD lock (not SQLite's kind) reports no pid and is
/// returned with pid 0.
pub fn lock_holder(file: &std::fs::File, offset: u64) -> io::Result<Option<LockHolder>> {
    let start =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `flock` is a plain C struct for which all-zero bytes are a valid value.
    let mut query: libc::flock = unsafe { std::mem::zeroed() };
    query.l_type = libc::F_WRLCK as libc::c_short;
    query.l_whence = libc::SEEK_SET as libc::c_short;
    query.l_start = start;
    query.l_len = 1;
    // SAFETY: the fd is open for the lifetime of `file`; F_GETLK reads and writes only the
    // `flock` struct we pass, which lives on our stack for the duration of the call.
    let rc = unsafe {
        libc::fcntl(
            file.as_raw_fd(),
            libc::F_GETLK,
            &mut query as *mut libc::flock,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    if query.l_type == libc::F_UNLCK as libc::c_short {
        return Ok(None);
    }
    Ok(Some(LockHolder {
        pid: u32::try_from(query.l_pid).unwrap_or(0),
        exclusive: query.l_type == libc::F_WRLCK as libc::c_short,
    }))
}

/// Whether a process with this pid exists (in our pid namespace). A pid we may not signal
/// (`EPERM`) exists; only `ESRCH` means gone.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission checks; nothing is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_pid_is_alive_and_pid_zero_is_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
    }

    #[test]
    fn unlocked_byte_has_no_holder() {
        let dir = std::env::temp_dir().join(format!("walwatch-sys-{}", std::process::id()));
        std::fs::write(&dir, [0u8; 200]).unwrap();
        let file = std::fs::File::open(&dir).unwrap();
        assert_eq!(lock_holder(&file, 120).unwrap(), None);
        std::fs::remove_file(&dir).unwrap();
    }
}

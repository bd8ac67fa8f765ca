//! The only unsafe code of the sidecar: libc calls that `std` does not offer.
//!
//! - [`lock_holder`]: `fcntl(F_GETLK)` asks the kernel which process holds a POSIX byte-range
//!   lock on a file. It only *queries*: it never takes, changes or drops a lock, so it cannot
//!   disturb SQLite. (The sidecar holds no locks on any `-shm`; a process's own locks are never
//!   reported by `F_GETLK`, which is why this must not run inside a process that uses SQLite on
//!   the same file.)
//! - [`lock_exclusive_within`] and [`unlock`]: take and drop a POSIX lock the way SQLite's unix
//!   VFS does. Only the checkpoint child process (`walwatch checkpoint`) calls them, never the
//!   sidecar, which must hold no lock (see above).
//! - [`open_read`], [`open_dir`] and [`open_at`]: how the sidecar opens every file another user
//!   may have planted: read-only, never through a symbolic link (`O_NOFOLLOW`), never waiting
//!   for a writer (`O_NONBLOCK`: a FIFO opens at once instead of hanging the collection), and
//!   not inherited by the checkpoint child (`O_CLOEXEC`). `open_at` is `openat(2)`, so a file
//!   is opened in the directory that was checked, not in whatever a path names a moment later.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Flags of every open of a file the sidecar only reads (`O_RDONLY` is implied).
const READ_FLAGS: libc::c_int = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;

/// Opens `path` read-only without following a symlink in its last component (`ELOOP`) and
/// without blocking on a FIFO. The caller checks what it got with `metadata()` (`fstat`).
pub fn open_read(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(READ_FLAGS)
        .open(path)
}

/// Opens a directory to list it and to open files in it with [`open_at`]. `follow`: whether a
/// symlink in the last component is followed (the operator's `--stats-dir`, `/dev/shm`, which
/// is a link to `/run/shm` on some systems) or refused (a per-user directory found by scanning).
pub fn open_dir(path: &Path, follow: bool) -> io::Result<File> {
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NONBLOCK | libc::O_CLOEXEC | nofollow)
        .open(path)
}

/// `openat(dir, name)` read-only, with the flags of [`open_read`] (plus `O_DIRECTORY` when
/// `directory`). `name` must be a single file name: a `/` in it is refused, so the open never
/// leaves `dir`.
pub fn open_at(dir: &File, name: &OsStr, directory: bool) -> io::Result<File> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.contains(&b'/') || bytes.contains(&0) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let mut c_name = Vec::with_capacity(bytes.len() + 1);
    c_name.extend_from_slice(bytes);
    c_name.push(0);
    let flags = libc::O_RDONLY | READ_FLAGS | if directory { libc::O_DIRECTORY } else { 0 };
    // SAFETY: `dir` keeps its descriptor open for the call; `c_name` is NUL-terminated and
    // outlives the call; openat does not keep the pointer.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c_name.as_ptr().cast(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat, is valid and owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

pub use crate::model::LockHolder;

/// Which process, if any, holds a lock on byte `offset` of `file` that would conflict with an
/// exclusive lock, i.e. any lock at all. Only the first conflicting lock is reported: when
/// several processes share a read lock, the kernel names one of them.
///
/// Works on a file opened read-only (`F_GETLK` does not check the open mode). Returns
/// `Ok(None)` when the byte is unlocked. An OFD lock (not SQLite's kind) reports no pid and is
/// returned with pid 0.
pub fn lock_holder(file: &std::fs::File, offset: u64) -> io::Result<Option<LockHolder>> {
    lock_holder_in(file, offset, 1)
}

/// Like [`lock_holder`], for any byte of `offset..offset + len`: one holder of a lock in that
/// range (the kernel names the first it finds), or `Ok(None)` when the whole range is unlocked.
pub fn lock_holder_in(
    file: &std::fs::File,
    offset: u64,
    len: u64,
) -> io::Result<Option<LockHolder>> {
    let mut query = byte_lock(offset, libc::F_WRLCK)?;
    query.l_len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
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

/// Takes an exclusive POSIX lock on byte `offset` of `file`, waiting in the kernel (`F_SETLKW`)
/// for up to `timeout`. Returns `Ok(false)` when the timeout passed first.
///
/// Why wait in the kernel: a busy writer holds SQLite's WRITE lock nearly all the time and drops
/// it for a few microseconds between transactions. A process that polls (`F_SETLK`, sleep,
/// retry) must land in one of those gaps, and in our runaway-writer tests it often tried for
/// 200 ms without doing so. A process blocked in `F_SETLKW` is woken by the unlock itself.
///
/// The timeout is a timer that signals this thread only (`SIGEV_THREAD_ID`). Its `SIGALRM`,
/// caught without `SA_RESTART`, ends the wait with `EINTR`; it repeats every few milliseconds,
/// so a signal that arrives just before the wait starts cannot leave it waiting for ever. The handler is
/// process-wide, so no other code in the process may use `SIGALRM` meanwhile: the checkpoint
/// child does not, nor do the tests.
pub fn lock_exclusive_within(
    file: &std::fs::File,
    offset: u64,
    timeout: std::time::Duration,
) -> io::Result<bool> {
    extern "C" fn interrupt(_: libc::c_int) {}
    let mut lock = byte_lock(offset, libc::F_WRLCK)?;
    let fail = || Err(io::Error::last_os_error());

    // SAFETY: all-zero bytes are a valid `sigaction`; the fields that matter are set below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
    action.sa_flags = 0; // no SA_RESTART: the signal must end the wait with EINTR
                         // SAFETY: all-zero bytes are a valid `sigaction` (filled in by the kernel below).
    let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: `sa_mask` is a sigset_t inside a live stack value.
    if unsafe { libc::sigemptyset(&mut action.sa_mask) } != 0 {
        return fail();
    }
    // SAFETY: both point to live stack values; the handler does nothing, so it is
    // async-signal-safe.
    if unsafe { libc::sigaction(libc::SIGALRM, &action, &mut previous) } != 0 {
        return fail();
    }

    // SAFETY: all-zero bytes are a valid `sigevent`; we set the notification fields.
    let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
    event.sigev_notify = libc::SIGEV_THREAD_ID;
    event.sigev_signo = libc::SIGALRM;
    // SAFETY: gettid has no preconditions.
    event.sigev_notify_thread_id = unsafe { libc::gettid() };
    let mut timer: libc::timer_t = std::ptr::null_mut();
    // SAFETY: `event` and `timer` live on our stack for the call.
    let result = if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer) }
        != 0
    {
        fail()
    } else {
        let deadline = std::time::Instant::now() + timeout;
        let spec = |t: std::time::Duration| libc::timespec {
            tv_sec: t.as_secs() as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        };
        // (A zero expiry would mean "disarmed": at least a microsecond.)
        let expiry = libc::itimerspec {
            it_interval: spec(std::time::Duration::from_millis(5)),
            it_value: spec(timeout.max(std::time::Duration::from_micros(1))),
        };
        // SAFETY: `timer` was just created; `expiry` lives on our stack; the old value is not
        // wanted (null is allowed).
        let result = if unsafe { libc::timer_settime(timer, 0, &expiry, std::ptr::null_mut()) } != 0
        {
            fail()
        } else {
            loop {
                // SAFETY: the fd is open for the lifetime of `file`; F_SETLKW reads only
                // `lock`, which lives on our stack for the duration of the call.
                let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLKW, &mut lock) };
                let error = io::Error::last_os_error();
                match (rc, error.raw_os_error()) {
                    (-1, Some(libc::EINTR)) if std::time::Instant::now() < deadline => continue,
                    (-1, Some(libc::EINTR | libc::EDEADLK)) => break Ok(false),
                    (-1, _) => break Err(error),
                    _ => break Ok(true),
                }
            }
        };
        // SAFETY: `timer` is ours and deleted once; deleting it also disarms it.
        unsafe { libc::timer_delete(timer) };
        result
    };
    // SAFETY: `previous` is the action the kernel gave us above.
    unsafe { libc::sigaction(libc::SIGALRM, &previous, std::ptr::null_mut()) };
    result
}

/// Drops this process's POSIX lock on byte `offset` of `file` (nothing happens if it holds none).
pub fn unlock(file: &std::fs::File, offset: u64) -> io::Result<()> {
    let mut lock = byte_lock(offset, libc::F_UNLCK)?;
    // SAFETY: as in `lock_exclusive_within`; F_SETLK with F_UNLCK never blocks.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &mut lock) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A `flock` for one byte at `offset`.
fn byte_lock(offset: u64, kind: libc::c_int) -> io::Result<libc::flock> {
    let start =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `flock` is a plain C struct for which all-zero bytes are a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = start;
    lock.l_len = 1;
    Ok(lock)
}

/// Gives free heap memory back to the system (glibc keeps what a large collection freed in its
/// arenas, one per thread that allocated it): called after a collection replaces the previous
/// one, so the resident size follows one collection, not the sum of every thread's high-water
/// mark. A no-op elsewhere than glibc.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own free lists; it takes the
    // arenas' locks itself and has no memory-safety preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn opens_refuse_symlinks_and_never_block_on_a_fifo() {
        let dir = std::env::temp_dir().join(format!("walwatch-sysopen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("file"), b"x").unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("link")).unwrap();
        let fifo = dir.join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let d = open_dir(&dir, false).unwrap();
        assert!(open_at(&d, OsStr::new("file"), false).is_ok());
        let loop_error = open_at(&d, OsStr::new("link"), false).unwrap_err();
        assert_eq!(loop_error.raw_os_error(), Some(libc::ELOOP));
        assert_eq!(
            open_read(&dir.join("link")).unwrap_err().raw_os_error(),
            Some(libc::ELOOP)
        );
        // A FIFO with no writer: opened at once (a blocking open would wait for ever).
        let f = open_at(&d, OsStr::new("fifo"), false).unwrap();
        assert!(f.metadata().unwrap().file_type().is_fifo());
        assert!(open_read(&fifo).is_ok());
        assert!(open_at(&d, OsStr::new("../file"), false).is_err());
        assert_eq!(
            open_at(&d, OsStr::new("file"), true)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENOTDIR)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn own_pid_is_alive_and_pid_zero_is_not() {
        assert!(walwatch::process_alive(std::process::id()));
        assert!(!walwatch::process_alive(0));
        assert!(!walwatch::process_alive(u32::MAX));
    }

    #[test]
    fn unlocked_byte_has_no_holder() {
        let dir = std::env::temp_dir().join(format!("walwatch-sys-{}", std::process::id()));
        std::fs::write(&dir, [0u8; 200]).unwrap();
        let file = std::fs::File::open(&dir).unwrap();
        assert_eq!(lock_holder(&file, 120).unwrap(), None);
        std::fs::remove_file(&dir).unwrap();
    }

    /// Another process (Python's `fcntl.lockf`, a POSIX lock like SQLite's) holds byte 120:
    /// the wait ends unlocked at the timeout, and succeeds as soon as the holder lets go.
    #[test]
    fn exclusive_lock_waits_for_its_holder_at_most_the_timeout() {
        use std::io::{BufRead, Write};
        let path = std::env::temp_dir().join(format!("walwatch-lockw-{}", std::process::id()));
        std::fs::write(&path, [0u8; 200]).unwrap();
        let holder = "import fcntl, os, sys\n\
                      f = open(sys.argv[1], 'r+b')\n\
                      fcntl.lockf(f, fcntl.LOCK_EX, 1, 120)\n\
                      print('HELD', flush=True)\n\
                      sys.stdin.readline()\n";
        let mut child = std::process::Command::new("python3")
            .args(["-c", holder])
            .arg(&path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 on PATH");
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "HELD");

        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let short = std::time::Duration::from_millis(50);
        assert!(!lock_exclusive_within(&file, 120, short).unwrap());
        assert_eq!(
            lock_holder(&file, 120)
                .unwrap()
                .map(|h| (h.pid, h.exclusive)),
            Some((child.id(), true))
        );

        // The holder lets go while we wait.
        let mut stdin = child.stdin.take().unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            stdin.write_all(b"\n").unwrap();
        });
        let long = std::time::Duration::from_secs(30);
        assert!(lock_exclusive_within(&file, 120, long).unwrap());
        release.join().unwrap();
        child.wait().unwrap();
        unlock(&file, 120).unwrap();
        std::fs::remove_file(&path).unwrap();
    }
}

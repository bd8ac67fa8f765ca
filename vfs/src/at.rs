//! File operations relative to an open directory (`openat(2)` and friends), so that a name is
//! looked up once, in the directory that was checked, and never through a symbolic link.
//!
//! Thin safe wrappers: each one calls one system call and turns its result into `io::Result`.
//! The policy (what is created, checked, refused) lives in [`crate::region`].

use crate::trust::Facts;
use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Flags of every open of a stats file: never follow a symlink, never block (a FIFO planted
/// under the name would block an `open` without `O_NONBLOCK`), never leak into `exec`.
const FILE_FLAGS: libc::c_int =
    libc::O_RDWR | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;

/// Opens the directory at `path` itself (`O_DIRECTORY | O_NOFOLLOW`: a symlink in its place
/// fails with `ELOOP`, anything else with `ENOTDIR`).
pub(crate) fn open_dir(path: &Path) -> io::Result<File> {
    // std adds O_CLOEXEC to every open.
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
}

/// The existing file `name` in `dir`, read-write.
pub(crate) fn open_file(dir: &File, name: &CStr) -> io::Result<File> {
    // SAFETY: `name` is NUL-terminated; openat takes no mode without O_CREAT.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), FILE_FLAGS) };
    owned(fd)
}

/// Creates `name` in `dir` (`O_EXCL`: fails with `EEXIST` if anything, a dangling symlink
/// included, has that name), then sets `mode` exactly, whatever the umask.
pub(crate) fn create_file(dir: &File, name: &CStr, mode: u32) -> io::Result<File> {
    // SAFETY: `name` is NUL-terminated; the variadic mode is passed as the C `mode_t` promotes.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            FILE_FLAGS | libc::O_CREAT | libc::O_EXCL,
            mode as libc::c_uint,
        )
    };
    let file = owned(fd)?;
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?; // fchmod
    Ok(file)
}

/// What `name` in `dir` is, without following a symlink; with its device and inode.
pub(crate) fn stat(dir: &File, name: &CStr) -> io::Result<(Facts, (u64, u64))> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is NUL-terminated and `st` has room for one `struct stat`.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatat succeeded, so it filled in `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // nlink_t is u64 on x86_64, u32 on aarch64 and others
    let facts = Facts {
        uid: st.st_uid,
        gid: st.st_gid,
        mode: st.st_mode,
        links: st.st_nlink as u64,
    };
    Ok((facts, (st.st_dev, st.st_ino)))
}

/// Removes `name` from `dir`.
pub(crate) fn unlink(dir: &File, name: &CStr) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Tries once to take `file`'s exclusive flock(2) without waiting: `None` if another open file
/// description holds it.
pub(crate) fn try_lock(file: &File) -> io::Result<Option<FileLock<'_>>> {
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Some(FileLock(file)));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => Ok(None),
        _ => Err(err),
    }
}

/// An flock(2), released when dropped. Explicitly: closing the descriptor is not enough once
/// the file is mapped, because the mapping keeps the open file description (and its lock)
/// alive.
pub(crate) struct FileLock<'a>(&'a File);

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // SAFETY: releases the flock taken in `try_lock` on the same descriptor.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Allocates bytes `0..len` of `file` for real (no holes), so that writing through a mapping
/// of them can never fault for lack of space: a full file system fails here with `ENOSPC`.
pub(crate) fn allocate(file: &File, len: u64) -> io::Result<()> {
    let len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        // SAFETY: posix_fallocate on a descriptor we own; no memory is passed.
        let err = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        match err {
            0 => return Ok(()),
            libc::EINTR => continue,
            // posix_fallocate returns the error number instead of setting errno.
            _ => return Err(io::Error::from_raw_os_error(err)),
        }
    }
}

fn owned(fd: libc::c_int) -> io::Result<File> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

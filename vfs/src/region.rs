//! Stats files: created, validated and mapped at open time (never on the I/O path), then kept
//! mapped for the life of the process so recorders can hold `&'static Region`.
//!
//! Every failure here is the shim's own problem, not the database's: it is reported once through
//! `sqlite3_log` and the database simply goes unrecorded.
//!
//! ## The rules, in the order they are applied
//! 1. The stats directory (`$WALWATCH_DIR`, default `/dev/shm/walwatch-<euid>`) is opened with
//!    `O_DIRECTORY | O_NOFOLLOW`; if it is missing, its parents are created as needed and the
//!    directory itself with mode 0700. `fstat` on that descriptor must pass
//!    [`trust::check_dir`]: owned by this effective user or root, writable by no one else (a
//!    group-writable directory only with the sticky bit). Every later step is relative to that
//!    descriptor: the directory is looked up once.
//! 2. The stats file is opened with `O_RDWR | O_NOFOLLOW | O_NONBLOCK` (a symlink fails, a FIFO
//!    cannot block); if absent it is created with `O_CREAT | O_EXCL`, mode 0600 (0640 in a
//!    set-group-ID directory) set with `fchmod` whatever the umask. `fstat` on the descriptor
//!    must pass [`trust::check_file`]: a regular file with one link, owned by this effective
//!    user, writable by no one else. Nothing is read or written through anything else.
//! 3. Creation and validation are serialized between processes by an exclusive `flock(2)` on
//!    the file, tried without waiting [`LOCK_TRIES`] times [`LOCK_PAUSE`] apart (under 50 ms in
//!    all): a lock held by someone else costs a database open that long, never a hang. No
//!    process-wide lock is held meanwhile, so other databases of the process open unimpeded.
//! 4. The file's [`REGION_SIZE`] bytes are allocated for real (`posix_fallocate`) before they
//!    are mapped: a full file system is an `ENOSPC` here, never a `SIGBUS` later. A file that
//!    was to be initialized and could not be is removed, so it cannot disable recording later.
//! 5. A file shorter than the region, or whose magic is still zero while we hold its lock, was
//!    left by a creator that died before finishing (creators hold the lock until the magic is
//!    written): it is initialized afresh. A complete header of another database or layout
//!    version, or a corrupt one, is left alone and the database goes unrecorded.
//! 6. A stats file made for an earlier database file at the same path (the database was deleted
//!    and re-created: another `st_dev`/`st_ino`, or birth time), or of an older layout version,
//!    is replaced, never rewritten in place: a new file is made and initialized under a
//!    temporary name (`.<name>.<pid>.new`, same rules as above), then renamed over the old one.
//!    Processes that still have the old database open keep their mapping of the old file (an
//!    unlinked inode) and cannot disturb the new one; processes waiting for the old file's lock
//!    find it unlinked and open the new one. The new file starts at zero with a new
//!    `created_unix_ns`: Prometheus sees a normal counter reset.

use crate::at;
use crate::host::{warn_once, OnceFlag, MESSAGE_MAX};
use crate::layout::{Region, MAGIC, MAX_PATH, REGION_SIZE, VERSION};
use crate::paths;
use crate::snapshot::{Snapshot, SnapshotError};
use crate::trust::{self, Facts, Kind, Refusal};
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::mem::offset_of;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Database path → its mapped region. Mappings are never removed: a region is a few KiB per
/// database, and keeping it lets the hot path use plain `&'static` references.
/// Held only to look up or insert, never across file-system calls.
static MAPPED: Mutex<Vec<Mapped>> = Mutex::new(Vec::new());

/// A database path, the identity of the database file it was mapped for, and its region.
type Mapped = (Box<[u8]>, DbIdentity, &'static Region);

/// Which file a database path named when its stats file was made: another identity at the
/// same path is another database (deleted and re-created, or replaced by a rename).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DbIdentity {
    pub dev: u64,
    pub ino: u64,
    /// Birth time in ns since the epoch, 0 where the file system does not keep it.
    pub birth_ns: u64,
}

impl DbIdentity {
    /// The identity of the file at `db_path` now (all zero when it cannot be read).
    pub(crate) fn of(db_path: &[u8]) -> Self {
        use std::os::unix::ffi::OsStrExt;
        let Ok(meta) = std::fs::metadata(std::ffi::OsStr::from_bytes(db_path)) else {
            return Self::default();
        };
        let birth_ns = meta.created().map_or(0, crate::unix_ns);
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            birth_ns,
        }
    }

    fn known(self) -> bool {
        self != Self::default()
    }

    /// Whether `self` and `other` are surely different files (unknown identities never are).
    pub(crate) fn differs(self, other: Self) -> bool {
        if !self.known() || !other.known() {
            return false;
        }
        self.dev != other.dev
            || self.ino != other.ino
            || (self.birth_ns != 0 && other.birth_ns != 0 && self.birth_ns != other.birth_ns)
    }
}

/// Attempts at the creation lock, and the pause between two of them.
pub(crate) const LOCK_TRIES: u32 = 10;
pub(crate) const LOCK_PAUSE: Duration = Duration::from_millis(5);

/// How often the file is opened again when the one we locked was removed meanwhile (by a
/// process that could not initialize it).
const REOPENS: usize = 3;

/// The region of `db_path`, mapping (and if needed creating) its stats file on first use, or
/// again when the file at `db_path` is another database than the one mapped.
pub(crate) fn for_database(db_path: &[u8]) -> Option<&'static Region> {
    let id = DbIdentity::of(db_path);
    if let Some(region) = find(&lock_mapped(), db_path, Some(id)) {
        return Some(region);
    }
    // Opening may wait for another process's lock (boundedly): do it without MAPPED, so other
    // threads opening other databases are not delayed.
    let opened = open(db_path, id);
    let mut mapped = lock_mapped();
    if let Some(region) = find(&mapped, db_path, Some(id)) {
        // Another thread mapped it meanwhile: use theirs (ours is unmapped when dropped).
        return Some(region);
    }
    match opened {
        Ok(mapping) => {
            let region = mapping.leak();
            mapped.push((db_path.into(), id, region));
            Some(region)
        }
        Err(problem) => {
            drop(mapped);
            report(&problem);
            None
        }
    }
}

/// The region of `db_path` if this process already mapped it (the newest, if the database was
/// re-created).
pub(crate) fn if_mapped(db_path: &[u8]) -> Option<&'static Region> {
    find(&lock_mapped(), db_path, None)
}

fn lock_mapped() -> MutexGuard<'static, Vec<Mapped>> {
    MAPPED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The newest mapping of `db_path` (made for the database file `id`, when given).
fn find(mapped: &[Mapped], db_path: &[u8], id: Option<DbIdentity>) -> Option<&'static Region> {
    mapped
        .iter()
        .rev()
        .find(|(path, mapped_id, _)| {
            **path == *db_path && id.is_none_or(|id| !id.differs(*mapped_id))
        })
        .map(|(_, _, region)| *region)
}

/// Why a database goes unrecorded. Each kind is logged once per process.
#[derive(Debug)]
enum Problem {
    /// The stats directory exists but may not be trusted.
    DirRefused(PathBuf, Refusal),
    /// The stats directory cannot be opened or created.
    Dir(PathBuf, io::Error),
    /// The stats file exists but may not be trusted.
    FileRefused(PathBuf, Refusal),
    /// Another process held the creation lock for longer than we try.
    Locked(PathBuf),
    /// No room to allocate the file.
    NoSpace(PathBuf, io::Error),
    /// A complete file of another database or layout version, or a corrupt one.
    Unusable(PathBuf, String),
    /// Any other failure to open, read or map the file.
    File(PathBuf, String),
}

static DIR_REFUSED: OnceFlag = OnceFlag::new();
static DIR_PROBLEM: OnceFlag = OnceFlag::new();
static FILE_REFUSED: OnceFlag = OnceFlag::new();
static FILE_LOCKED: OnceFlag = OnceFlag::new();
static FILE_NO_SPACE: OnceFlag = OnceFlag::new();
static FILE_UNUSABLE: OnceFlag = OnceFlag::new();
static FILE_PROBLEM: OnceFlag = OnceFlag::new();

/// Logs `problem` (once per kind per process): what is wrong, then what to do.
fn report(problem: &Problem) {
    let (flag, text, advice) = describe(problem);
    warn_once(flag, &text, &advice);
}

/// The once-flag, the problem line and the advice line for `problem`. Each line fits what
/// `sqlite3_log` keeps: a long path is shortened in its middle, never the reason.
fn describe(problem: &Problem) -> (&'static OnceFlag, String, String) {
    const UNRECORDED: &str = "databases work but are not recorded;";
    match problem {
        Problem::DirRefused(dir, refusal) => (
            &DIR_REFUSED,
            with_path("stats directory ", dir, &format!(" refused: {refusal}")),
            format!("{UNRECORDED} stats directory: {}", refusal.advice()),
        ),
        Problem::Dir(dir, err) => (
            &DIR_PROBLEM,
            with_path("stats directory ", dir, &format!(" unusable: {err}")),
            format!("{UNRECORDED} create it (mode 0700) or set WALWATCH_DIR to a directory this user owns"),
        ),
        Problem::FileRefused(file, refusal) => (
            &FILE_REFUSED,
            with_path("stats file ", file, &format!(" refused: {refusal}")),
            format!("{UNRECORDED} stats file: {}", refusal.advice()),
        ),
        Problem::Locked(file) => (
            &FILE_LOCKED,
            with_path("stats file ", file, " is locked by another process"),
            format!("{UNRECORDED} walwatch does not wait for it; find the holder with fuser -v FILE"),
        ),
        Problem::NoSpace(file, err) => (
            &FILE_NO_SPACE,
            with_path("stats file ", file, &format!(" cannot be allocated: {err}")),
            format!("{UNRECORDED} free space where the stats directory is (df); new opens record again"),
        ),
        Problem::Unusable(file, why) => (
            &FILE_UNUSABLE,
            with_path("stats file ", file, &format!(" unusable: {why}")),
            format!("{UNRECORDED} remove the file once no process uses it (walwatch makes a new one)"),
        ),
        Problem::File(file, why) => (
            &FILE_PROBLEM,
            with_path("stats file ", file, &format!(" unusable: {why}")),
            format!("{UNRECORDED} check the stats directory (permissions, file system) or set WALWATCH_DIR"),
        ),
    }
}

/// `before` + `path` + `after`, the path shortened in its middle so the whole fits in
/// [`MESSAGE_MAX`] bytes: its end (the file name) says the most.
fn with_path(before: &str, path: &Path, after: &str) -> String {
    let room = MESSAGE_MAX.saturating_sub(before.len() + after.len());
    format!("{before}{}{after}", shorten(&path.to_string_lossy(), room))
}

/// `text` if it has at most `room` bytes (24 at least), else its start and its longer end
/// around `...`, cut at character boundaries.
fn shorten(text: &str, room: usize) -> String {
    let room = room.max(24);
    if text.len() <= room {
        return text.to_owned();
    }
    let keep = room - 3;
    let (head, tail) = (keep / 3, keep - keep / 3);
    let head_end = (0..=head)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let tail_start = (text.len() - tail..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    format!("{}...{}", &text[..head_end], &text[tail_start..])
}

fn open(db_path: &[u8], id: DbIdentity) -> Result<Mapping, Problem> {
    let dir_path = paths::stats_dir();
    if db_path.len() > MAX_PATH {
        return Err(Problem::File(
            dir_path,
            format!("database path longer than {MAX_PATH} bytes"),
        ));
    }
    let euid = paths::effective_uid();
    let (dir, dir_facts) = open_dir(&dir_path, euid)?;
    let name = paths::stats_file_name(db_path);
    let file_path = dir_path.join(&name);
    // Stats file names are made of [A-Za-z0-9._-]: never a NUL.
    let name = CString::new(name).map_err(|e| Problem::File(file_path.clone(), e.to_string()))?;
    let io_problem = |err: io::Error| Problem::File(file_path.clone(), err.to_string());
    for _ in 0..REOPENS {
        let file = open_file(&dir, &name, &dir_facts, euid, &file_path)?;
        let Some(_lock) = lock(&file).map_err(io_problem)? else {
            return Err(Problem::Locked(file_path));
        };
        let meta = file.metadata().map_err(io_problem)?;
        let facts = Facts::of(&meta);
        if facts.links == 0 {
            // The process that held the lock removed the file: open whatever has the name now.
            continue;
        }
        trust::check_file(&facts, euid).map_err(|r| Problem::FileRefused(file_path.clone(), r))?;
        return prepare(
            &dir,
            &dir_facts,
            &name,
            &file,
            meta.len(),
            db_path,
            id,
            &file_path,
        );
        // `_lock` is released here, after the mapping is made (before `file` closes).
    }
    Err(Problem::File(
        file_path,
        "removed by another process each time it was opened".into(),
    ))
}

/// Opens (creating if needed) the stats directory and checks it.
fn open_dir(path: &Path, euid: u32) -> Result<(File, Facts), Problem> {
    let dir_problem = |err: io::Error| Problem::Dir(path.to_owned(), err);
    let dir = match at::open_dir(path) {
        Ok(dir) => dir,
        Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(dir_problem)?;
            }
            let created = match std::fs::DirBuilder::new().mode(0o700).create(path) {
                Ok(()) => true,
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => false,
                Err(err) => return Err(dir_problem(err)),
            };
            let dir = at::open_dir(path).map_err(|e| dir_open_problem(e, path, euid))?;
            if created {
                // Exactly 0700, whatever the umask (fchmod on the descriptor we checked).
                dir.set_permissions(std::fs::Permissions::from_mode(0o700))
                    .map_err(dir_problem)?;
            }
            dir
        }
        Err(err) => return Err(dir_open_problem(err, path, euid)),
    };
    let facts = Facts::of(&dir.metadata().map_err(dir_problem)?);
    trust::check_dir(&facts, euid).map_err(|r| Problem::DirRefused(path.to_owned(), r))?;
    Ok((dir, facts))
}

/// An open error of `path`: `ELOOP` (from `O_NOFOLLOW`) means a symlink stands in its place,
/// which is a refusal; anything else is an I/O problem.
fn refused_link(err: io::Error, expected: Kind, path: &Path) -> Problem {
    let refusal = Refusal::WrongKind {
        found: Kind::Symlink,
        expected,
    };
    match (expected, err.raw_os_error() == Some(libc::ELOOP)) {
        (Kind::Directory, true) => Problem::DirRefused(path.to_owned(), refusal),
        (Kind::Directory, false) => Problem::Dir(path.to_owned(), err),
        (_, true) => Problem::FileRefused(path.to_owned(), refusal),
        (_, false) => Problem::File(path.to_owned(), err.to_string()),
    }
}

/// An open error of the directory `path`. With `O_DIRECTORY | O_NOFOLLOW`, Linux answers
/// `ENOTDIR` for a symlink as for a file: say which it is (a refusal) when `lstat` can tell.
fn dir_open_problem(err: io::Error, path: &Path, euid: u32) -> Problem {
    if matches!(err.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::ELOOP)) {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if let Err(refusal) = trust::check_dir(&Facts::of(&meta), euid) {
                return Problem::DirRefused(path.to_owned(), refusal);
            }
        }
    }
    refused_link(err, Kind::Directory, path)
}

/// Opens the stats file `name` in `dir`, creating it (empty) if absent.
fn open_file(
    dir: &File,
    name: &CStr,
    dir_facts: &Facts,
    euid: u32,
    path: &Path,
) -> Result<File, Problem> {
    for _ in 0..REOPENS {
        // What the name is before opening it: refuses a FIFO, socket or device without
        // opening it at all. The descriptor's own fstat decides afterwards.
        match at::stat(dir, name) {
            Ok((facts, _)) => {
                trust::check_file(&facts, euid)
                    .map_err(|r| Problem::FileRefused(path.to_owned(), r))?;
                match at::open_file(dir, name) {
                    Ok(file) => return Ok(file),
                    Err(err) if err.raw_os_error() == Some(libc::ENOENT) => continue,
                    Err(err) => return Err(refused_link(err, Kind::Regular, path)),
                }
            }
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                match at::create_file(dir, name, trust::new_file_mode(dir_facts)) {
                    Ok(file) => return Ok(file),
                    // Someone else made it (or planted something) meanwhile: look again.
                    Err(err) if err.raw_os_error() == Some(libc::EEXIST) => continue,
                    Err(err) => return Err(Problem::File(path.to_owned(), err.to_string())),
                }
            }
            Err(err) => return Err(Problem::File(path.to_owned(), err.to_string())),
        }
    }
    Err(Problem::File(
        path.to_owned(),
        "its name kept changing while it was opened".into(),
    ))
}

/// Takes the creation lock: [`LOCK_TRIES`] attempts without blocking, [`LOCK_PAUSE`] apart.
fn lock(file: &File) -> io::Result<Option<at::FileLock<'_>>> {
    for attempt in 0..LOCK_TRIES {
        if let Some(lock) = at::try_lock(file)? {
            return Ok(Some(lock));
        }
        if attempt + 1 < LOCK_TRIES {
            std::thread::sleep(LOCK_PAUSE);
        }
    }
    Ok(None)
}

/// With the creation lock held on `file`: validates or (re)initializes it, allocates it and
/// maps it; or replaces it with a new file when it was made for an earlier database file at
/// this path or by an older layout.
#[allow(clippy::too_many_arguments)]
fn prepare(
    dir: &File,
    dir_facts: &Facts,
    name: &CStr,
    file: &File,
    len: u64,
    db_path: &[u8],
    id: DbIdentity,
    path: &Path,
) -> Result<Mapping, Problem> {
    // Decided on what the file holds under the lock, not on who created it: another process
    // may have locked and initialized our new file before we took the lock.
    let initialize_it = if len < REGION_SIZE as u64 {
        if older_layout(file, len) {
            // Made by an older walwatch whose users may still map it: replace, never rewrite.
            return replace(dir, dir_facts, name, db_path, id, path);
        }
        // New, or left short by a creator that died before allocating it.
        true
    } else {
        let mut bytes = vec![0u8; len.min(REGION_SIZE as u64 * 2) as usize];
        file.read_exact_at(&mut bytes, 0)
            .map_err(|e| Problem::File(path.to_owned(), e.to_string()))?;
        match Snapshot::parse(&bytes) {
            Ok(snapshot) if snapshot.db_path == db_path => {
                let made_for = DbIdentity {
                    dev: snapshot.db_dev,
                    ino: snapshot.db_ino,
                    birth_ns: snapshot.db_birth_ns,
                };
                if made_for.differs(id) {
                    return replace(dir, dir_facts, name, db_path, id, path);
                }
                false
            }
            Ok(snapshot) => {
                return Err(Problem::Unusable(
                    path.to_owned(),
                    format!(
                        "it belongs to {}",
                        shorten(&String::from_utf8_lossy(&snapshot.db_path), 60)
                    ),
                ))
            }
            // Magic still zero while we hold the lock: its creator died before finishing.
            Err(SnapshotError::Uninitialized) => true,
            // Made by an older walwatch: replace it (its users keep their mapping).
            Err(SnapshotError::WrongVersion { found }) if found < VERSION => {
                return replace(dir, dir_facts, name, db_path, id, path);
            }
            Err(err) => return Err(Problem::Unusable(path.to_owned(), err.to_string())),
        }
    };
    // A file we could not make usable must not stay behind to disable recording later.
    let give_up = |problem: Problem| {
        if initialize_it {
            remove_if_same(dir, name, file);
        }
        problem
    };
    let mapping = allocate_and_map(file, path).map_err(give_up)?;
    if initialize_it {
        // SAFETY: the mapping is REGION_SIZE allocated bytes; we hold the creation lock and
        // the magic is not set, so no other process reads or writes the region yet.
        unsafe { initialize(mapping.0, db_path, id) };
    }
    Ok(mapping)
}

/// Whether `file` (`len` bytes) is a complete stats file of an older layout version.
fn older_layout(file: &File, len: u64) -> bool {
    let mut head = [0u8; 16];
    if len < head.len() as u64 || file.read_exact_at(&mut head, 0).is_err() {
        return false;
    }
    let version = u32::from_ne_bytes(head[8..12].try_into().expect("4 bytes"));
    head[..8] == MAGIC && version < VERSION
}

/// Allocates `file`'s REGION_SIZE bytes for real, then maps them.
fn allocate_and_map(file: &File, path: &Path) -> Result<Mapping, Problem> {
    // Always, not only for new files: a valid file left sparse by an older walwatch would
    // otherwise still fault on a full file system.
    at::allocate(file, REGION_SIZE as u64).map_err(|err| match err.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => Problem::NoSpace(path.to_owned(), err),
        _ => Problem::File(path.to_owned(), format!("allocating it: {err}")),
    })?;
    Mapping::new(file).map_err(|err| Problem::File(path.to_owned(), format!("mmap: {err}")))
}

/// Replaces the stats file `name` (whose creation lock we hold) by a new, initialized one,
/// renamed over it: processes that mapped the old file keep it, unlinked.
fn replace(
    dir: &File,
    dir_facts: &Facts,
    name: &CStr,
    db_path: &[u8],
    id: DbIdentity,
    path: &Path,
) -> Result<Mapping, Problem> {
    let mut temp = b".".to_vec();
    temp.extend_from_slice(name.to_bytes());
    temp.extend_from_slice(format!(".{}.new", std::process::id()).as_bytes());
    let temp = CString::new(temp).map_err(|e| Problem::File(path.to_owned(), e.to_string()))?;
    let io_problem = |what: &str, err: io::Error| {
        Problem::File(path.to_owned(), format!("replacing it ({what}): {err}"))
    };
    // A temporary file of ours left by a crash of an earlier process with our pid.
    if let Ok((facts, _)) = at::stat(dir, &temp) {
        if trust::check_file(&facts, paths::effective_uid()).is_ok() {
            let _ = at::unlink(dir, &temp);
        }
    }
    let new = at::create_file(dir, &temp, trust::new_file_mode(dir_facts))
        .map_err(|e| io_problem("creating a new file", e))?;
    let made = allocate_and_map(&new, path).and_then(|mapping| {
        // SAFETY: the mapping is REGION_SIZE allocated bytes of a file no one else knows yet.
        unsafe { initialize(mapping.0, db_path, id) };
        // SAFETY: both names are NUL-terminated and relative to the directory we checked;
        // renameat replaces the old name atomically and follows no symlink in either name.
        let rc = unsafe {
            libc::renameat(
                dir.as_raw_fd(),
                temp.as_ptr(),
                dir.as_raw_fd(),
                name.as_ptr(),
            )
        };
        if rc != 0 {
            return Err(io_problem("renaming it", io::Error::last_os_error()));
        }
        Ok(mapping)
    });
    if made.is_err() {
        remove_if_same(dir, &temp, &new);
    }
    made
}

/// Removes `name` from `dir` if it still is `file` (not something put there meanwhile).
fn remove_if_same(dir: &File, name: &CStr, file: &File) {
    let Ok(meta) = file.metadata() else { return };
    if let Ok((_, id)) = at::stat(dir, name) {
        if id == (meta.dev(), meta.ino()) {
            let _ = at::unlink(dir, name);
        }
    }
}

/// A shared mapping of a stats file's REGION_SIZE bytes, unmapped when dropped unless leaked.
struct Mapping(*mut Region);

impl Mapping {
    fn new(file: &File) -> io::Result<Self> {
        // SAFETY: mapping REGION_SIZE bytes of a file allocated to at least that; the kernel
        // picks the address. The mapping outlives `file`'s descriptor by design.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                REGION_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(ptr.cast()))
    }

    /// Keeps the mapping for the rest of the process.
    fn leak(self) -> &'static Region {
        let region = self.0;
        std::mem::forget(self);
        // SAFETY: the mapping is valid, aligned (page aligned), REGION_SIZE long, and never
        // unmapped now; every field after the header is atomic and the header is no longer
        // written.
        unsafe { &*region }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, which no reference outlives (a
        // leaked mapping is never dropped).
        unsafe { libc::munmap(self.0.cast(), REGION_SIZE) };
    }
}

/// Writes the header of a region that is new or was abandoned half-made: zeroes it all,
/// then writes the header, magic last.
///
/// # Safety
/// `region` must be a valid, writable mapping of REGION_SIZE bytes that no one else uses.
unsafe fn initialize(region: *mut Region, db_path: &[u8], id: DbIdentity) {
    let created = crate::unix_now_ns();
    // SAFETY: per the contract, `region` is ours to write; the header is plain data and every
    // other field is an atomic or plain integer for which all-zero bytes are valid.
    unsafe {
        std::ptr::write_bytes(region.cast::<u8>(), 0, REGION_SIZE);
        let header = &raw mut (*region).header;
        (*header).version = VERSION;
        (*header).size = REGION_SIZE as u32;
        (*header).created_unix_ns = created;
        (*header).db_path_len = db_path.len() as u32;
        (*header).db_dev = id.dev;
        (*header).db_ino = id.ino;
        (*header).db_birth_ns = id.birth_ns;
        (&mut (*header).db_path)[..db_path.len()].copy_from_slice(db_path);
        fence(Ordering::Release);
        (*header).magic = MAGIC;
    }
}

/// A copy of a live region, read word by word with atomic loads (other processes write it
/// concurrently), parsed like a stats file read from disk.
pub(crate) fn snapshot(region: &Region) -> Snapshot {
    let base = region as *const Region as *const AtomicU64;
    let mut bytes = Vec::with_capacity(REGION_SIZE);
    for word in 0..REGION_SIZE / 8 {
        // SAFETY: the region is 8-aligned and REGION_SIZE (a multiple of 8) long; reading
        // through AtomicU64 is how memory shared with other writers must be read.
        let value = unsafe { &*base.add(word) }.load(Ordering::Relaxed);
        bytes.extend_from_slice(&value.to_ne_bytes());
    }
    Snapshot::parse(&bytes).unwrap_or_default()
}

const _: () = assert!(REGION_SIZE % 8 == 0 && offset_of!(Region, io) % 8 == 0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_fit_what_sqlite3_log_keeps() {
        let long = PathBuf::from(format!(
            "/srv/{}/app.db.0123456789abcdef.walwatch",
            "d".repeat(300)
        ));
        for problem in [
            Problem::FileRefused(
                long.clone(),
                Refusal::Owner {
                    found: u32::MAX,
                    expected: u32::MAX - 1,
                },
            ),
            Problem::DirRefused(long.clone(), Refusal::Writable { mode: 0o41777 }),
            Problem::Locked(long.clone()),
            Problem::NoSpace(long.clone(), io::Error::from_raw_os_error(libc::ENOSPC)),
            Problem::Unusable(
                long.clone(),
                format!("it belongs to {}", shorten(&"/x".repeat(900), 60)),
            ),
            Problem::File(long.clone(), "x".into()),
            Problem::Dir(long.clone(), io::Error::from_raw_os_error(libc::ENOTDIR)),
        ] {
            let (_, text, advice) = describe(&problem);
            assert!(text.len() <= MESSAGE_MAX, "{} bytes: {text}", text.len());
            assert!(
                advice.len() <= MESSAGE_MAX,
                "{} bytes: {advice}",
                advice.len()
            );
            assert!(
                text.contains(".walwatch") || text.contains("app.db"),
                "{text}"
            );
        }
        let (_, text, _) = describe(&Problem::FileRefused(
            long,
            Refusal::Owner {
                found: 65534,
                expected: 0,
            },
        ));
        assert!(
            text.ends_with("refused: it is owned by uid 65534, not uid 0"),
            "{text}"
        );
        assert!(text.contains("..."), "{text}");
        let short = with_path("stats file ", Path::new("/tmp/s/a.walwatch"), " refused");
        assert_eq!(short, "stats file /tmp/s/a.walwatch refused");
    }

    #[test]
    fn shortening_respects_characters() {
        let path = PathBuf::from("/é".repeat(200));
        let text = with_path("x ", &path, " y");
        assert!(text.len() <= MESSAGE_MAX && text.starts_with("x /") && text.ends_with(" y"));
    }
}

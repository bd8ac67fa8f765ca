//! Stats files: created, validated and mapped at open time (never on the I/O path), then kept
//! mapped for the life of the process so recorders can hold `&'static Region`.
//!
//! Every failure here is the shim's own problem, not the database's: it is reported once through
//! `sqlite3_log` and the database simply goes unrecorded.

use crate::host::{warn_once, OnceFlag};
use crate::layout::{Region, MAGIC, MAX_PATH, REGION_SIZE, VERSION};
use crate::paths;
use crate::snapshot::Snapshot;
use std::fs::{File, OpenOptions};
use std::io;
use std::mem::offset_of;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Database path → its mapped region. Mappings are never removed: a region is a few KiB per
/// database, and keeping it lets the hot path use plain `&'static` references.
static MAPPED: Mutex<Vec<Mapped>> = Mutex::new(Vec::new());

/// A database path and its region.
type Mapped = (Box<[u8]>, &'static Region);

static DIR_PROBLEM: OnceFlag = OnceFlag::new();
static FILE_PROBLEM: OnceFlag = OnceFlag::new();

/// The region of `db_path`, mapping (and if needed creating) its stats file on first use.
pub(crate) fn for_database(db_path: &[u8]) -> Option<&'static Region> {
    let mut mapped = MAPPED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, region)) = mapped.iter().find(|(path, _)| **path == *db_path) {
        return Some(region);
    }
    let dir = paths::stats_dir();
    match open(&dir, db_path) {
        Ok(region) => {
            mapped.push((db_path.into(), region));
            Some(region)
        }
        Err(Problem::Dir(err)) => {
            let problem = format!("stats directory {} unusable: {err}", dir.display());
            let advice = "databases work but are not recorded; make the stats directory writable or set WALWATCH_DIR";
            warn_once(&DIR_PROBLEM, &problem, advice);
            None
        }
        Err(Problem::File(file, err)) => {
            let problem = format!("stats file {} unusable: {err}", file.display());
            let advice =
                "the database works but is not recorded; Remove the file once no process uses it";
            warn_once(&FILE_PROBLEM, &problem, advice);
            None
        }
    }
}

/// The region of `db_path` if this process already mapped it.
pub(crate) fn if_mapped(db_path: &[u8]) -> Option<&'static Region> {
    let mapped = MAPPED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    mapped
        .iter()
        .find(|(path, _)| **path == *db_path)
        .map(|(_, region)| *region)
}

enum Problem {
    Dir(io::Error),
    File(std::path::PathBuf, String),
}

fn open(dir: &Path, db_path: &[u8]) -> Result<&'static Region, Problem> {
    if db_path.len() > MAX_PATH {
        return Err(Problem::File(
            dir.into(),
            format!("database path longer than {MAX_PATH} bytes"),
        ));
    }
    if !dir.is_dir() {
        // World-writable and sticky like /tmp, so processes of several users can share it.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o1777)
            .create(dir)
            .map_err(Problem::Dir)?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
    }
    let path = dir.join(paths::stats_file_name(db_path));
    let file_problem = |err: String| Problem::File(path.clone(), err);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o666)
        .open(&path)
        .map_err(|e| file_problem(e.to_string()))?;
    // Creation races with other processes opening the same database: serialize on flock(2),
    // which is independent of the fcntl locks SQLite uses and is released when `file` closes.
    let _lock = FileLock::exclusive(&file).map_err(|e| file_problem(e.to_string()))?;
    let len = file
        .metadata()
        .map_err(|e| file_problem(e.to_string()))?
        .len();
    let fresh = len == 0;
    if fresh {
        file.set_len(REGION_SIZE as u64)
            .map_err(|e| file_problem(e.to_string()))?;
    } else {
        let mut bytes = vec![0u8; REGION_SIZE];
        file.read_exact_at(&mut bytes, 0)
            .map_err(|e| file_problem(format!("{e}: {len} bytes, expected {REGION_SIZE}")))?;
        let snapshot = Snapshot::parse(&bytes).map_err(|e| file_problem(e.to_string()))?;
        if snapshot.db_path != db_path {
            return Err(file_problem(format!(
                "it belongs to {}, not this database",
                String::from_utf8_lossy(&snapshot.db_path)
            )));
        }
    }
    let region = map(&file).map_err(|e| file_problem(format!("mmap: {e}")))?;
    if fresh {
        // SAFETY: `region` points to REGION_SIZE fresh zero bytes that we hold the creation
        // flock for; no other process reads the header before the magic is set.
        unsafe { initialize(region, db_path) };
    }
    // SAFETY: the mapping is valid, aligned (page aligned), REGION_SIZE long, and never unmapped;
    // every field after the header is atomic and the header is no longer written.
    Ok(unsafe { &*region })
}

fn map(file: &File) -> io::Result<*mut Region> {
    // SAFETY: mapping REGION_SIZE bytes of a file we just sized to at least that; the kernel
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
    Ok(ptr.cast())
}

/// Writes the header of a freshly created (all-zero) region, magic last.
///
/// # Safety
/// `region` must be a valid, writable mapping of REGION_SIZE bytes that no one else writes.
unsafe fn initialize(region: *mut Region, db_path: &[u8]) {
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // SAFETY: per the contract, `region` is ours to write; the header is plain data.
    unsafe {
        let header = &raw mut (*region).header;
        (*header).version = VERSION;
        (*header).size = REGION_SIZE as u32;
        (*header).created_unix_ns = created;
        (*header).db_path_len = db_path.len() as u32;
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

/// flock(2) held until dropped.
struct FileLock<'a>(&'a File);

impl<'a> FileLock<'a> {
    fn exclusive(file: &'a File) -> io::Result<Self> {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(file))
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // SAFETY: releases the flock taken in `exclusive` on the same descriptor.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

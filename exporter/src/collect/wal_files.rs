//! Collector: the database, `-wal` and `-shm` files, read the way any process may read them.
//!
//! - database header (first 100 bytes): bytes 18 and 19 (file format write/read version) are
//!   2 for a database in WAL mode;
//! - `-wal` size from `lstat` (0 when absent: the last connection deletes it on close);
//! - the wal-index header: a `pread` of the first 136 bytes of `-shm`, parsed by
//!   [`WalIndex::parse`] and read again when a writer was mid-update.
//!
//! Each file must be a regular file: the database and `-shm` are opened with
//! [`sys::open_read`] (no symlink followed, no wait on a FIFO) and checked with `fstat` before
//! a byte is read, and no more than a header is read from either. A FIFO passed as `--db`, or
//! planted as a `-shm`, is reported as an error of that database and never stalls a collection.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use walwatch::trust::Kind;
use walwatch::wal_index::{WalIndex, WalIndexError, HEADER_BYTES};

use crate::stats_file::read_up_to;
use crate::sys;

/// What the first 100 bytes of a database file say about it.
#[derive(Debug, PartialEq, Eq)]
pub enum DbHeader {
    Wal,
    /// Rollback-journal mode (`journal_mode` DELETE, TRUNCATE, PERSIST, MEMORY or OFF).
    Rollback,
    /// A zero-length file: SQLite writes the header with the first table.
    Empty,
    NotSqlite,
}

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Classifies a database file from its first bytes.
pub fn parse_db_header(bytes: &[u8]) -> DbHeader {
    if bytes.is_empty() {
        return DbHeader::Empty;
    }
    if bytes.len() < 20 || &bytes[..16] != SQLITE_MAGIC {
        return DbHeader::NotSqlite;
    }
    if bytes[18] == 2 && bytes[19] == 2 {
        DbHeader::Wal
    } else {
        DbHeader::Rollback
    }
}

/// `<db>-wal` / `<db>-shm`.
pub fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The database cannot be watched.
#[derive(Debug)]
pub enum DbError {
    NotFound,
    NotWal(DbHeader),
    /// The database (`""`) or its `-wal` is a symlink, FIFO, device… (`found`).
    NotRegular {
        file: &'static str,
        found: Kind,
    },
    Io(io::Error),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound => f.write_str("database file does not exist"),
            Self::NotWal(DbHeader::Rollback) => {
                f.write_str("database is not in WAL mode (rollback journal); run `PRAGMA journal_mode=WAL` on it to use walwatch")
            }
            Self::NotWal(DbHeader::Empty) => f.write_str("database file is empty (no header yet), so not in WAL mode"),
            Self::NotWal(_) => f.write_str("not an SQLite database (bad header)"),
            Self::NotRegular { file: "", found } => write!(f, "database file is {}, not a regular file: walwatch does not open it (name the file itself with --db)", found.name()),
            Self::NotRegular { file, found } => write!(f, "{file} is {}, not a regular file, so the database cannot be used in WAL mode: remove it once no process uses the database", found.name()),
            Self::Io(e) => write!(f, "cannot read database file: {e}"),
        }
    }
}

/// The files of one database.
#[derive(Debug)]
pub struct WalFiles {
    pub db_bytes: u64,
    pub wal_bytes: u64,
    /// The `-shm` file, opened read-only, for the lock collector (None when absent).
    pub shm: Option<File>,
    /// The wal-index header (None when `-shm` is absent or not initialized yet).
    pub wal_index: Option<WalIndex>,
    /// A `-shm` that exists but could not be read or parsed.
    pub shm_error: Option<String>,
    /// A wal-index header that stays torn: corrupt, not mid-update.
    pub shm_inconsistent: Option<crate::plausible::Inconsistency>,
}

/// What a file is, from `lstat` or `fstat`.
fn kind_of(meta: &std::fs::Metadata) -> Kind {
    crate::discovery::kind_of(&meta.file_type())
}

/// Opens `path` read-only when it is a regular file: `lstat` first (a device or FIFO is
/// never opened), then [`sys::open_read`], then `fstat` (what was opened is what is read).
pub fn open_regular(path: &Path) -> io::Result<Result<File, Kind>> {
    let kind = kind_of(&std::fs::symlink_metadata(path)?);
    if kind != Kind::Regular {
        return Ok(Err(kind));
    }
    open_checked(path)
}

/// [`sys::open_read`], then `fstat`: `Err(kind)` when what was opened is not a regular file.
fn open_checked(path: &Path) -> io::Result<Result<File, Kind>> {
    let file = match sys::open_read(path) {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(Err(Kind::Symlink)),
        Err(e) => return Err(e),
    };
    match kind_of(&file.metadata()?) {
        Kind::Regular => Ok(Ok(file)),
        other => Ok(Err(other)),
    }
}

/// A file's identity and times: while they stay the same, so do its bytes. Every write moves
/// mtime and ctime, and no one can set ctime back; another file has another `(dev, ino)` or,
/// when it reuses the inode, a newer ctime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileId {
    pub fn of(m: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Self {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        }
    }

    /// Whether both times are at least [`SETTLED`] older than `now_ns`. File times come from a
    /// coarse clock: a write in the same tick as the last one, just after the header was read,
    /// would leave them unchanged. Past that delay, a later write has a later time.
    fn settled(&self, now_ns: i128) -> bool {
        let limit = now_ns - SETTLED.as_nanos() as i128;
        self.mtime_ns < limit && self.ctime_ns < limit
    }
}

/// See [`FileId::settled`]: far longer than any file system's timestamp granularity (ext4 and
/// tmpfs: a jiffy, at most 10 ms; FAT's 2 s excepted, where the header is simply read again).
const SETTLED: std::time::Duration = std::time::Duration::from_secs(3);

/// Databases whose header said WAL mode, by path, with the identity their file had then: while
/// `lstat` finds the same identity, the header is not opened and read again (at 10,000 idle
/// databases, 40,000 system calls a collection). Only a settled file is remembered (see
/// [`FileId::settled`]); a changed one is opened and checked like any other.
#[derive(Debug, Default)]
pub struct HeaderCache {
    last: std::collections::HashMap<PathBuf, FileId>,
    next: std::collections::HashMap<PathBuf, FileId>,
}

impl HeaderCache {
    /// Starts a collection: databases the last one did not see are forgotten.
    pub fn start(&mut self) {
        self.last = std::mem::take(&mut self.next);
    }
}

/// Reads the database header, stats `-wal` and reads the `-shm` header.
pub fn read(db: &Path) -> Result<WalFiles, DbError> {
    read_with(db, &mut HeaderCache::default())
}

/// [`read`], skipping the header of a database `headers` knows unchanged.
pub fn read_with(db: &Path, headers: &mut HeaderCache) -> Result<WalFiles, DbError> {
    read_at(db, headers, walwatch::unix_now_ns() as i128)
}

/// [`read_with`] at `now_ns` (Unix time), which tells whether the file is settled.
fn read_at(db: &Path, headers: &mut HeaderCache, now_ns: i128) -> Result<WalFiles, DbError> {
    let io_error = |e: io::Error| {
        if e.kind() == io::ErrorKind::NotFound {
            DbError::NotFound
        } else {
            DbError::Io(e)
        }
    };
    let meta = std::fs::symlink_metadata(db).map_err(io_error)?;
    match kind_of(&meta) {
        Kind::Regular => {}
        found => return Err(DbError::NotRegular { file: "", found }),
    }
    let id = FileId::of(&meta);
    let known = headers
        .last
        .remove_entry(db)
        .filter(|(_, known)| *known == id);
    let db_bytes = if let Some((path, known)) = known {
        headers.next.insert(path, known);
        meta.len()
    } else {
        let file = open_checked(db)
            .map_err(io_error)?
            .map_err(|found| DbError::NotRegular { file: "", found })?;
        let opened = file.metadata().map_err(DbError::Io)?;
        let mut header = [0u8; 100];
        let n = read_up_to(&file, &mut header).map_err(DbError::Io)?;
        match parse_db_header(&header[..n]) {
            DbHeader::Wal => {}
            other => return Err(DbError::NotWal(other)),
        }
        let read = FileId::of(&opened);
        if read == id && read.settled(now_ns) {
            headers.next.insert(db.to_owned(), read);
        }
        opened.len()
    };
    let wal_bytes = match std::fs::symlink_metadata(sibling(db, "-wal")) {
        Ok(m) if m.file_type().is_file() => m.len(),
        Ok(m) => {
            let found = kind_of(&m);
            return Err(DbError::NotRegular {
                file: "-wal",
                found,
            });
        }
        Err(_) => 0,
    };
    let mut out = WalFiles {
        db_bytes,
        wal_bytes,
        shm: None,
        wal_index: None,
        shm_error: None,
        shm_inconsistent: None,
    };
    match open_regular(&sibling(db, "-shm")) {
        Ok(Ok(shm)) => {
            match read_wal_index(&shm) {
                Ok(idx) => out.wal_index = Some(idx),
                Err(WalIndexError::NotInitialized) => {}
                Err(WalIndexError::TooShort(0)) => {} // just created
                Err(WalIndexError::Torn) if torn_for_good(&shm) => {
                    out.shm_inconsistent = Some(crate::plausible::corrupt_shm_header(TORN_READS));
                }
                Err(e) => out.shm_error = Some(e.to_string()),
            }
            out.shm = Some(shm);
        }
        Ok(Err(found)) => {
            out.shm_error = Some(format!(
            "-shm is {}, not a regular file: not read; remove it once no process uses the database",
            found.name()
        ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => out.shm_error = Some(format!("cannot open -shm: {e}")),
    }
    Ok(out)
}

/// Reads the wal-index header, retrying while the two copies differ (a writer mid-update).
pub fn read_wal_index(shm: &File) -> Result<WalIndex, WalIndexError> {
    let mut bytes = [0u8; HEADER_BYTES];
    let mut last = Err(WalIndexError::Torn);
    for _ in 0..5 {
        let n = read_up_to(shm, &mut bytes).map_err(|_| WalIndexError::TooShort(0))?;
        last = WalIndex::parse(&bytes[..n]);
        if last != Err(WalIndexError::Torn) {
            break;
        }
        std::thread::yield_now();
    }
    last
}

/// Reads of a torn header, 1 ms apart, that tell corruption from a write in progress (SQLite
/// rewrites both copies within microseconds). At most 1 ms per torn header per collection.
const TORN_READS: usize = 2;

/// Whether the header's two copies differ the same way over [`TORN_READS`] reads (see
/// [`crate::plausible::persistent_mismatch`]). Runs only after [`read_wal_index`] found it torn.
fn torn_for_good(shm: &File) -> bool {
    let mut reads = Vec::with_capacity(TORN_READS);
    for i in 0..TORN_READS {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut bytes = vec![0u8; HEADER_BYTES];
        match read_up_to(shm, &mut bytes) {
            Ok(HEADER_BYTES) if WalIndex::parse(&bytes) == Err(WalIndexError::Torn) => {
                reads.push(bytes)
            }
            _ => return false,
        }
    }
    crate::plausible::persistent_mismatch(&reads)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(write: u8, read: u8) -> Vec<u8> {
        let mut b = vec![0u8; 100];
        b[..16].copy_from_slice(SQLITE_MAGIC);
        b[18] = write;
        b[19] = read;
        b
    }

    #[test]
    fn classifies_headers() {
        assert_eq!(parse_db_header(&header(2, 2)), DbHeader::Wal);
        assert_eq!(parse_db_header(&header(1, 1)), DbHeader::Rollback);
        assert_eq!(parse_db_header(b""), DbHeader::Empty);
        assert_eq!(
            parse_db_header(b"hello world, not a database at all"),
            DbHeader::NotSqlite
        );
    }

    /// A header is trusted from the cache only while the file keeps its identity and times, and
    /// only once they are settled.
    #[test]
    fn a_header_is_read_again_when_its_file_changed() {
        let dir = std::env::temp_dir().join(format!("walwatch-hdr-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("a.db");
        std::fs::write(&db, header(2, 2)).unwrap();
        let now = walwatch::unix_now_ns() as i128;
        let later = now + 10 * SETTLED.as_nanos() as i128;
        let mut headers = HeaderCache::default();
        // Just written: not settled, not remembered.
        read_at(&db, &mut headers, now).unwrap();
        assert!(headers.next.is_empty());
        // Settled: remembered, and trusted while lstat finds the same file. To show that the
        // header is not read, the cache is told the file said WAL while it now says rollback
        // (something no write can do without changing the file's times).
        read_at(&db, &mut headers, later).unwrap();
        assert_eq!(headers.next.len(), 1);
        std::fs::write(&db, header(1, 1)).unwrap();
        let id = FileId::of(&std::fs::symlink_metadata(&db).unwrap());
        headers.next.insert(db.clone(), id);
        headers.start();
        assert!(read_at(&db, &mut headers, later).is_ok(), "cache not used");
        // The file is rewritten (same size): its times change, the header is read again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&db, header(1, 1)).unwrap();
        headers.start();
        let e = read_at(&db, &mut headers, later).err();
        assert!(
            matches!(e, Some(DbError::NotWal(DbHeader::Rollback))),
            "{e:?}"
        );
        assert!(headers.next.is_empty());
        // Replaced by a symlink: refused from lstat whatever the cache says.
        std::fs::remove_file(&db).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &db).unwrap();
        headers.next.insert(db.clone(), id);
        headers.start();
        let e = read_at(&db, &mut headers, later).err();
        assert!(
            matches!(
                e,
                Some(DbError::NotRegular {
                    file: "",
                    found: Kind::Symlink
                })
            ),
            "{e:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn siblings_append_to_the_name() {
        assert_eq!(
            sibling(Path::new("/a/b.db"), "-wal"),
            PathBuf::from("/a/b.db-wal")
        );
    }
}

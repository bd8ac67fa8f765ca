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

/// Reads the database header, stats `-wal` and reads the `-shm` header.
pub fn read(db: &Path) -> Result<WalFiles, DbError> {
    let io_error = |e: io::Error| {
        if e.kind() == io::ErrorKind::NotFound {
            DbError::NotFound
        } else {
            DbError::Io(e)
        }
    };
    let file = open_regular(db)
        .map_err(io_error)?
        .map_err(|found| DbError::NotRegular { file: "", found })?;
    let db_bytes = file.metadata().map_err(DbError::Io)?.len();
    let mut header = [0u8; 100];
    let n = read_up_to(&file, &mut header).map_err(DbError::Io)?;
    match parse_db_header(&header[..n]) {
        DbHeader::Wal => {}
        other => return Err(DbError::NotWal(other)),
    }
    drop(file);
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

    #[test]
    fn siblings_append_to_the_name() {
        assert_eq!(
            sibling(Path::new("/a/b.db"), "-wal"),
            PathBuf::from("/a/b.db-wal")
        );
    }
}

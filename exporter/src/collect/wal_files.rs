//! Collector: the database, `-wal` and `-shm` files, read the way any process may read them.
//!
//! - database header (first 100 bytes): bytes 18 and 19 (file format write/read version) are
//!   2 for a database in WAL mode;
//! - `-wal` size from `stat` (0 when absent: the last connection deletes it on close);
//! - the wal-index header: a `pread` of the first 136 bytes of `-shm`, parsed by
//!   [`WalIndex::parse`] and read again when a writer was mid-update.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use walwatch::wal_index::{WalIndex, WalIndexError, HEADER_BYTES};

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

/// Reads the database header, stats `-wal` and reads the `-shm` header.
pub fn read(db: &Path) -> Result<WalFiles, DbError> {
    let file = File::open(db).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            DbError::NotFound
        } else {
            DbError::Io(e)
        }
    })?;
    let db_bytes = file.metadata().map_err(DbError::Io)?.len();
    let mut header = [0u8; 100];
    let n = read_up_to(&file, &mut header).map_err(DbError::Io)?;
    match parse_db_header(&header[..n]) {
        DbHeader::Wal => {}
        other => return Err(DbError::NotWal(other)),
    }
    drop(file);
    let wal_bytes = std::fs::metadata(sibling(db, "-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    let mut out = WalFiles {
        db_bytes,
        wal_bytes,
        shm: None,
        wal_index: None,
        shm_error: None,
        shm_inconsistent: None,
    };
    match File::open(sibling(db, "-shm")) {
        Ok(shm) => {
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

fn read_up_to(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
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

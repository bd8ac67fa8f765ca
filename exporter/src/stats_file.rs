//! Collector: one stats file written by the shim.
//!
//! A stats file sits in a directory other users may have written to, so it is read as a
//! stranger's file: opened with `openat` in the directory that was checked, never through a
//! symlink and never blocking (a FIFO opens at once), then `fstat`: it must pass
//! [`trust::check_file`] (a regular file with one link, writable by its owner only) and be
//! exactly [`REGION_SIZE`] bytes, and no more than that is read (never mapped: a truncated or
//! hostile file can only produce an error). [`Snapshot::parse`] then checks the content.
//! Reader entries whose process is gone are dropped: a stats file outlives its writers.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::FileExt;
use walwatch::layout::REGION_SIZE;
use walwatch::snapshot::{Snapshot, SnapshotError};
use walwatch::trust::{self, Facts, Kind, Refusal};

/// Why a stats file (or a stats directory) could not be used.
#[derive(Debug)]
pub enum StatsFileError {
    Io(std::io::Error),
    /// The file breaks the rules of [`trust::check_file`] (a FIFO, a symlink, another user's
    /// file, writable by others, hard-linked).
    Refused(Refusal),
    /// A per-user stats directory breaks the rules of [`trust::check_dir`]; its files are not read.
    RefusedDir(Refusal),
    /// The file is not [`REGION_SIZE`] bytes long (a sparse 2 GiB file is refused unread).
    Size {
        len: u64,
    },
    Invalid(SnapshotError),
    /// The database it names is not its owner's (or does not exist): see `discovery`. The
    /// message never names the database, so `/status` is no oracle for paths its reader
    /// could not list.
    NotOwner {
        stats_owner: u32,
    },
    /// A directory holds more files than one collection reads from it.
    TooMany {
        limit: usize,
    },
}

/// Every `reason` label of `walwatch_stats_file_errors`, in the order the metric lists them.
pub const REASONS: [&str; 14] = [
    "truncated",
    "bad_magic",
    "wrong_version",
    "wrong_size",
    "bad_path",
    "uninitialized",
    "io",
    "not_regular",
    "owner",
    "writable_by_others",
    "hard_linked",
    "not_owner",
    "dir_refused",
    "too_many_files",
];

impl StatsFileError {
    /// Short label for the `reason` of `walwatch_stats_file_errors` (one of [`REASONS`]).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Io(_) => "io",
            Self::Refused(r) => r.reason(),
            Self::RefusedDir(_) => "dir_refused",
            Self::Size { len } if *len < REGION_SIZE as u64 => "truncated",
            Self::Size { .. } => "wrong_size",
            Self::Invalid(SnapshotError::TooShort { .. }) => "truncated",
            Self::Invalid(SnapshotError::BadMagic) => "bad_magic",
            Self::Invalid(SnapshotError::Uninitialized) => "uninitialized",
            Self::Invalid(SnapshotError::WrongVersion { .. }) => "wrong_version",
            Self::Invalid(SnapshotError::WrongSize { .. }) => "wrong_size",
            Self::Invalid(SnapshotError::BadPath) => "bad_path",
            Self::NotOwner { .. } => "not_owner",
            Self::TooMany { .. } => "too_many_files",
        }
    }

    /// The error of an `open` that failed: `ELOOP` is the symlink `O_NOFOLLOW` refused.
    pub fn from_open(e: std::io::Error) -> Self {
        if e.raw_os_error() == Some(libc::ELOOP) {
            Self::Refused(Refusal::WrongKind {
                found: Kind::Symlink,
                expected: Kind::Regular,
            })
        } else {
            Self::Io(e)
        }
    }
}

impl std::fmt::Display for StatsFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "cannot read: {e}"),
            Self::Refused(r) => write!(f, "not read: {r}; {}", r.advice()),
            Self::RefusedDir(r) => write!(
                f,
                "stats directory refused, none of its files is read: {r}; {}",
                r.advice()
            ),
            Self::Size { len } if *len < REGION_SIZE as u64 => write!(
                f,
                "not read: {len} bytes, not {REGION_SIZE}: truncated, or not a walwatch stats file; remove it once no process uses it"
            ),
            Self::Size { len } => write!(
                f,
                "not read: {len} bytes, more than the {REGION_SIZE} of a walwatch stats file; remove it"
            ),
            Self::Invalid(e) => {
                let hint = match e {
                    SnapshotError::WrongVersion { .. } => {
                        "; upgrade walwatch, or remove the file once no process uses it"
                    }
                    SnapshotError::Uninitialized => "",
                    _ => "; remove the file once no process uses it",
                };
                write!(f, "{e}{hint}")
            }
            Self::NotOwner { stats_owner } => write!(
                f,
                "not used: the database it names does not exist or is not owned by uid {stats_owner}, the owner of this stats file, so walwatch neither shows nor checkpoints it; remove the file if its database is gone, or name the database with --db to watch it"
            ),
            Self::TooMany { limit } => write!(
                f,
                "more than {limit} files: only the first {limit} are read; remove stats files of databases that are gone"
            ),
        }
    }
}

/// Reads and parses the stats file `name` of the directory `dir` (opened with
/// [`crate::sys::open_dir`] and checked). `owner`: the uid the file must belong to (a per-user
/// directory's), or `None` for any owner (the operator's directory; its owner is then
/// returned, and is who the file speaks for).
pub fn read_in(
    dir: &File,
    name: &OsStr,
    owner: Option<u32>,
) -> Result<(Snapshot, u32), StatsFileError> {
    let file = crate::sys::open_at(dir, name, false).map_err(StatsFileError::from_open)?;
    let meta = file.metadata().map_err(StatsFileError::Io)?;
    let facts = Facts::of(&meta);
    trust::check_file(&facts, owner.unwrap_or(facts.uid)).map_err(StatsFileError::Refused)?;
    if meta.len() != REGION_SIZE as u64 {
        // Another layout version has another size (v1: 7,904 bytes): say so from its header.
        let mut head = [0u8; 16];
        if let Ok(16) = read_up_to(&file, &mut head) {
            if let Err(e @ SnapshotError::WrongVersion { .. }) = Snapshot::parse(&head) {
                return Err(StatsFileError::Invalid(e));
            }
        }
        return Err(StatsFileError::Size { len: meta.len() });
    }
    let mut bytes = vec![0u8; REGION_SIZE];
    let n = read_up_to(&file, &mut bytes).map_err(StatsFileError::Io)?;
    let snapshot = Snapshot::parse(&bytes[..n]).map_err(StatsFileError::Invalid)?;
    // The shim records SQLite's full pathname: absolute, no NUL. Anything else would be
    // resolved against the sidecar's working directory.
    if !snapshot.db_path.starts_with(b"/") || snapshot.db_path.contains(&0) {
        return Err(StatsFileError::Invalid(SnapshotError::BadPath));
    }
    Ok((snapshot, facts.uid))
}

/// Reads at most `buf.len()` bytes from the start of `file`.
pub fn read_up_to(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Drops reader entries of processes that no longer exist.
pub fn drop_dead_readers(snapshot: &mut Snapshot, alive: &mut dyn FnMut(u32) -> bool) {
    snapshot.readers.retain(|r| alive(r.pid));
}

#[cfg(test)]
mod tests {
    use super::*;
    use walwatch::snapshot::ReaderSnapshot;

    #[test]
    fn dead_readers_are_dropped() {
        let reader = |pid| ReaderSnapshot {
            pid,
            read_index: 1,
            read_mark: 3,
            since_unix_ns: 1,
        };
        let mut snap = Snapshot {
            readers: vec![reader(10), reader(11)],
            ..Default::default()
        };
        drop_dead_readers(&mut snap, &mut |pid| pid == 11);
        assert_eq!(snap.readers, vec![reader(11)]);
    }

    #[test]
    fn reasons_name_the_problem() {
        assert_eq!(
            StatsFileError::Invalid(SnapshotError::WrongVersion { found: 2 }).reason(),
            "wrong_version"
        );
        assert!(StatsFileError::Invalid(SnapshotError::TooShort { len: 3 })
            .to_string()
            .contains("truncated"));
        assert_eq!(StatsFileError::Size { len: 1 << 31 }.reason(), "wrong_size");
        assert_eq!(StatsFileError::Size { len: 100 }.reason(), "truncated");
        let e = StatsFileError::from_open(std::io::Error::from_raw_os_error(libc::ELOOP));
        assert_eq!(e.reason(), "not_regular");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        // Every reason is one the metric lists.
        for e in [
            e,
            StatsFileError::NotOwner { stats_owner: 1 },
            StatsFileError::TooMany { limit: 1 },
            StatsFileError::RefusedDir(Refusal::Links { links: 2 }),
            StatsFileError::Refused(Refusal::Writable { mode: 0o666 }),
        ] {
            assert!(REASONS.contains(&e.reason()), "{}", e.reason());
        }
    }

    #[test]
    fn reads_exactly_one_region_of_a_checked_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("walwatch-sf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("good"), crate::synth::stats_file(b"/a.db", 1)).unwrap();
        let long = std::fs::File::create(dir.join("long")).unwrap();
        long.set_len(1 << 31).unwrap(); // sparse: costs nothing unless read
        std::fs::write(dir.join("open"), crate::synth::stats_file(b"/a.db", 1)).unwrap();
        std::fs::set_permissions(dir.join("open"), std::fs::Permissions::from_mode(0o666)).unwrap();
        std::fs::hard_link(dir.join("good"), dir.join("linked")).unwrap();
        let d = crate::sys::open_dir(&dir, false).unwrap();
        let me = walwatch::paths::effective_uid();
        let read = |name: &str, owner| read_in(&d, OsStr::new(name), owner);
        assert_eq!(
            read("long", None).unwrap_err().reason(),
            "wrong_size",
            "a 2 GiB file is refused from its size"
        );
        assert_eq!(
            read("open", None).unwrap_err().reason(),
            "writable_by_others"
        );
        assert_eq!(read("linked", None).unwrap_err().reason(), "hard_linked");
        std::fs::remove_file(dir.join("linked")).unwrap();
        std::fs::write(dir.join("relative"), crate::synth::stats_file(b"a.db", 1)).unwrap();
        assert_eq!(read("relative", None).unwrap_err().reason(), "bad_path");
        let (snap, owner) = read("good", Some(me)).unwrap();
        assert_eq!((snap.db_path.as_slice(), owner), (&b"/a.db"[..], me));
        assert_eq!(read("good", Some(me + 1)).unwrap_err().reason(), "owner");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

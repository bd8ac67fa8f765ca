//! Which databases to watch, and whether walwatch may act on them.
//!
//! **Where the sidecar looks** ([`StatsDirs`]):
//! - with no `--stats-dir` (nor `stats_dir` in the config, nor `WALWATCH_DIR`): every per-user
//!   directory `<base>/walwatch-<uid>` (base: `/dev/shm`, or `--stats-base`), where the shim
//!   writes by default. Each must pass [`trust::check_dir`] for the uid in its name (owned by
//!   that uid or root, writable by no one else); its files must be owned by that uid. A
//!   directory the sidecar may not open (a non-root sidecar and another user's 0700 directory)
//!   is skipped quietly and counted; one that breaks the rules is refused and reported. The
//!   base is listed again at every collection, so new users' directories appear without a
//!   restart.
//! - with `--stats-dir DIR`: that one directory, which must pass [`trust::check_dir`] for its
//!   own owner (not writable by others, except a group directory with the sticky bit); its
//!   files may belong to anyone (each file speaks for its owner).
//!
//! **When a database is published and acted on** ([`Trust`]): a database named in a stats file
//! is watched (shown on `/metrics` and `/status`, checkpointed) only when its owner put it in
//! reach: the database file (`lstat`, not followed) is owned by the stats file's owner, or the
//! stats file is root's. Otherwise the stats file is reported (`not_owner`) without naming the
//! database, with one message whether the database is missing or someone else's: no oracle for
//! paths the writer of the stats file cannot list. Databases the operator names (`--db`,
//! `databases` in the config) are always watched.
//!
//! Every directory is scanned again at every collection, so new databases appear and databases
//! whose stats file was removed disappear without a restart.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use walwatch::paths::{self, SUFFIX};
use walwatch::snapshot::Snapshot;
use walwatch::trust::{self, Facts, Kind, Refusal};

use crate::model::{Counters, Inconsistency, RecentCheckpoint};
use crate::stats_file::{self, StatsFileError};

/// Files read from one directory in one collection, at most: a user who fills their own
/// directory cannot make a root sidecar's collection last for ever.
pub const MAX_FILES_PER_DIR: usize = 10_000;

/// Where stats files are looked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatsDirs {
    /// One directory named by the operator (`--stats-dir`, `stats_dir`, `WALWATCH_DIR`).
    Configured(PathBuf),
    /// Every `<base>/walwatch-<uid>`, the shim's per-user default.
    PerUser { base: PathBuf },
}

impl StatsDirs {
    /// `dir` when the operator named one, else the per-user directories under `base` (default
    /// [`paths::default_base_dir`], the shim's).
    pub fn resolve(dir: Option<PathBuf>, base: Option<PathBuf>) -> Self {
        match dir {
            Some(dir) => Self::Configured(dir),
            None => Self::PerUser {
                base: base.unwrap_or_else(paths::default_base_dir),
            },
        }
    }
}

/// `/dev/shm/walwatch-<uid> (every user's)` or the configured directory, for logs and reports.
impl std::fmt::Display for StatsDirs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Configured(dir) => write!(f, "{}", crate::text::path(dir)),
            Self::PerUser { base } => write!(
                f,
                "{}/{}<uid> (per-user directories)",
                crate::text::path(base),
                paths::PER_USER_PREFIX
            ),
        }
    }
}

/// `{"per_user": {"base": "/dev/shm"}}` or `{"configured": "/srv/stats"}` in `/status`.
impl serde::Serialize for StatsDirs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(2))?;
        match self {
            Self::Configured(dir) => {
                map.serialize_entry("kind", "configured")?;
                map.serialize_entry("dir", &dir.to_string_lossy())?;
            }
            Self::PerUser { base } => {
                map.serialize_entry("kind", "per_user")?;
                map.serialize_entry(
                    "dirs",
                    &format!("{}/{}<uid>", base.to_string_lossy(), paths::PER_USER_PREFIX),
                )?;
            }
        }
        map.end()
    }
}

pub use crate::model::Trust;

/// A stats file and what it holds.
#[derive(Debug)]
pub struct Found {
    pub stats_file: PathBuf,
    /// Path, creation time and readers; its counters are in `counters`, its recent
    /// checkpoints in `recent`.
    pub snapshot: Snapshot,
    pub counters: Counters,
    /// The recent checkpoints that can be true, and what was wrong with the others and with
    /// the creation time ([`plausible::review_recent`]).
    pub recent: Vec<RecentCheckpoint>,
    pub inconsistent: Vec<Inconsistency>,
    /// The stats file's owner: whom it speaks for.
    pub owner: u32,
}

/// Why a stats directory could not be listed.
#[derive(Debug)]
pub enum DirError {
    NotFound,
    Io(std::io::Error),
    Refused(Refusal),
}

impl std::fmt::Display for DirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound => f.write_str("it does not exist (the shim creates it)"),
            Self::Io(e) => write!(f, "{e}"),
            Self::Refused(r) => write!(f, "refused: {r}; {}", r.advice()),
        }
    }
}

/// Result of one scan of the stats directories.
#[derive(Debug, Default)]
pub struct Scan {
    /// Boxed: ten thousand of them are moved into a map and a list of targets, and a box
    /// moves as 8 bytes, not 600.
    pub found: Vec<Box<Found>>,
    /// Stats files and per-user directories that could not be used, and why.
    pub errors: Vec<(PathBuf, StatsFileError)>,
    /// The configured directory, or the base of the per-user ones, could not be listed.
    pub dir_error: Option<DirError>,
    /// Per-user directories this sidecar may not open (another user's, for a non-root sidecar).
    pub unreadable_dirs: usize,
}

/// Reads every `*.walwatch` file of the stats directories; `detailed`: keep the per-slot and
/// per-mode counters (see [`Counters::take`]).
pub fn scan(dirs: &StatsDirs, detailed: bool) -> Scan {
    let mut scan = Scan::default();
    match dirs {
        StatsDirs::Configured(dir) => match open_checked_dir(dir, None) {
            Ok(fd) => scan_dir(&fd, dir, None, detailed, &mut scan),
            Err(e) => scan.dir_error = Some(e),
        },
        StatsDirs::PerUser { base } => {
            let base_fd = match crate::sys::open_dir(base, true) {
                Ok(fd) => fd,
                Err(e) => {
                    scan.dir_error = Some(io_dir_error(e));
                    return scan;
                }
            };
            let entries = match list(&base_fd, base) {
                Ok(entries) => entries,
                Err(e) => {
                    scan.dir_error = Some(DirError::Io(e));
                    return scan;
                }
            };
            let mut users: Vec<(u32, std::ffi::OsString)> = entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name();
                    paths::uid_of_per_user_dir(name.as_bytes()).map(|uid| (uid, name))
                })
                .collect();
            users.sort();
            for (uid, name) in users {
                let path = base.join(&name);
                let fd = match crate::sys::open_at(&base_fd, &name, true) {
                    Ok(fd) => fd,
                    Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                        scan.unreadable_dirs += 1;
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        let error = match e.raw_os_error() {
                            Some(libc::ELOOP) => StatsFileError::RefusedDir(Refusal::WrongKind {
                                found: Kind::Symlink,
                                expected: Kind::Directory,
                            }),
                            Some(libc::ENOTDIR) => StatsFileError::RefusedDir(Refusal::WrongKind {
                                found: Kind::Other,
                                expected: Kind::Directory,
                            }),
                            _ => StatsFileError::Io(e),
                        };
                        scan.errors.push((path, error));
                        continue;
                    }
                };
                let checked = fd.metadata().map_err(StatsFileError::Io).and_then(|m| {
                    trust::check_dir(&Facts::of(&m), uid).map_err(StatsFileError::RefusedDir)
                });
                match checked {
                    Ok(()) => scan_dir(&fd, &path, Some(uid), detailed, &mut scan),
                    Err(e) => scan.errors.push((path, e)),
                }
            }
        }
    }
    scan
}

fn io_dir_error(e: std::io::Error) -> DirError {
    if e.kind() == std::io::ErrorKind::NotFound {
        DirError::NotFound
    } else {
        DirError::Io(e)
    }
}

/// Opens the operator's directory and checks it (for its own owner, or for `uid`).
fn open_checked_dir(dir: &Path, uid: Option<u32>) -> Result<File, DirError> {
    let fd = crate::sys::open_dir(dir, true).map_err(io_dir_error)?;
    let facts = Facts::of(&fd.metadata().map_err(DirError::Io)?);
    trust::check_dir(&facts, uid.unwrap_or(facts.uid)).map_err(DirError::Refused)?;
    Ok(fd)
}

/// Lists the directory open as `fd` (through `/proc/self/fd`, so the names come from the
/// directory that was checked), or by its path when `/proc` is not mounted.
fn list(fd: &File, path: &Path) -> std::io::Result<std::fs::ReadDir> {
    std::fs::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .or_else(|_| std::fs::read_dir(path))
}

/// Reads the stats files of one checked directory; `owner`: the uid they must belong to.
fn scan_dir(fd: &File, dir: &Path, owner: Option<u32>, detailed: bool, scan: &mut Scan) {
    let entries = match list(fd, dir) {
        Ok(entries) => entries,
        Err(e) => {
            scan.errors.push((dir.to_owned(), StatsFileError::Io(e)));
            return;
        }
    };
    let mut read = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.as_bytes().ends_with(SUFFIX.as_bytes()) {
            continue;
        }
        let path = dir.join(&name);
        if read == MAX_FILES_PER_DIR {
            let limit = MAX_FILES_PER_DIR;
            scan.errors
                .push((dir.to_owned(), StatsFileError::TooMany { limit }));
            break;
        }
        read += 1;
        // The entry's type (from the directory itself, no stat): a FIFO, socket or device is
        // never opened; what is opened is checked again with fstat.
        if let Ok(kind) = entry.file_type() {
            if !kind.is_file() {
                let found = kind_of(&kind);
                let refusal = Refusal::WrongKind {
                    found,
                    expected: Kind::Regular,
                };
                scan.errors.push((path, StatsFileError::Refused(refusal)));
                continue;
            }
        }
        match stats_file::read_in(fd, &name, owner) {
            Ok((snapshot, owner)) => scan
                .found
                .push(Box::new(Found::new(path, snapshot, owner, detailed))),
            Err(e) => scan.errors.push((path, e)),
        }
    }
}

impl Found {
    /// Keeps what a collection needs of a parsed stats file, compact: every stats file is held
    /// until its database is collected. Counters are summed (the per-slot tables kept only when
    /// `detailed`), recent checkpoints reviewed and kept as [`RecentCheckpoint`]s, and lists
    /// lose the spare room they grew (a list of one reader has room for four).
    fn new(stats_file: PathBuf, mut snapshot: Snapshot, owner: u32, detailed: bool) -> Self {
        let counters = Counters::take(&mut snapshot, detailed);
        let inconsistent = crate::plausible::review_recent(&mut snapshot, walwatch::unix_now_ns());
        let recent = std::mem::take(&mut snapshot.recent)
            .iter()
            .map(RecentCheckpoint::from)
            .collect();
        snapshot.readers.shrink_to_fit();
        snapshot.db_path.shrink_to_fit();
        Self {
            stats_file,
            snapshot,
            counters,
            recent,
            inconsistent,
            owner,
        }
    }
}

/// What a directory entry or `stat` says a file is.
pub fn kind_of(t: &std::fs::FileType) -> Kind {
    if t.is_file() {
        return Kind::Regular;
    }
    use std::os::unix::fs::FileTypeExt;
    if t.is_symlink() {
        Kind::Symlink
    } else if t.is_dir() {
        Kind::Directory
    } else if t.is_fifo() {
        Kind::Fifo
    } else if t.is_socket() {
        Kind::Socket
    } else if t.is_block_device() || t.is_char_device() {
        Kind::Device
    } else {
        Kind::Other
    }
}

/// The stats file of `db` for a fresh look between collections (the controller naming a
/// blocker), found by name where the shim puts it and kept only under the rules of [`targets`].
pub fn find_stats_of(dirs: &StatsDirs, db: &Path) -> Option<Found> {
    let name = paths::stats_file_name(db.as_os_str().as_bytes());
    let name = OsStr::new(&name);
    let db_owner = std::fs::symlink_metadata(db).ok()?.uid();
    let candidates: Vec<(PathBuf, Option<u32>)> = match dirs {
        StatsDirs::Configured(dir) => vec![(dir.clone(), None)],
        StatsDirs::PerUser { base } => [db_owner, 0]
            .into_iter()
            .map(|uid| (paths::per_user_dir(base, uid), Some(uid)))
            .collect(),
    };
    candidates.into_iter().find_map(|(dir, uid)| {
        let fd = open_checked_dir(&dir, uid).ok()?;
        let (snapshot, owner) = stats_file::read_in(&fd, name, uid).ok()?;
        let trusted =
            (owner == db_owner || owner == 0) && snapshot.db_path == db.as_os_str().as_bytes();
        trusted.then(|| Found::new(dir.join(name), snapshot, owner, false))
    })
}

/// One database to collect.
#[derive(Debug)]
pub struct Target {
    pub path: PathBuf,
    pub stats: Option<Box<Found>>,
    /// Named with `--db` (kept and reported even when it does not exist).
    pub explicit: bool,
    pub trust: Trust,
}

/// `--db` paths are made absolute and resolved like SQLite's `xFullPathname` does, so they
/// match the path the shim records. A path that does not exist is kept as given (absolute).
pub fn normalize(path: &Path) -> PathBuf {
    if let Ok(canonical) = std::fs::canonicalize(path) {
        return canonical;
    }
    if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_owned())
    }
}

/// Who owns the database file at `path`, without following a symlink in its last component;
/// `None` when it cannot be found (missing, or in a directory this process may not search).
pub fn owner_of(path: &Path) -> Option<u32> {
    std::fs::symlink_metadata(path).ok().map(|m| m.uid())
}

/// Merges the stats files found with the `--db` list (already normalized): one target per
/// database path, sorted by path. A stats file is used only when its owner owns the database
/// (or is root); the others come back as errors (`not_owner`). When several stats files name
/// one database, the database owner's wins over root's, then the newest.
pub fn targets(
    found: Vec<Box<Found>>,
    explicit: &[PathBuf],
    owner_of: &mut dyn FnMut(&Path) -> Option<u32>,
) -> (Vec<Target>, Vec<(PathBuf, StatsFileError)>) {
    let mut by_path: HashMap<Vec<u8>, Target> = HashMap::new();
    let mut refused = Vec::new();
    // Rank of a stats file for its database: its owner's (2) before root's (1), then newest.
    let rank = |f: &Found, db_owner: Option<u32>| {
        (
            u8::from(Some(f.owner) == db_owner) + 1,
            f.snapshot.created_unix_ns,
        )
    };
    for f in found {
        let key = f.snapshot.db_path.clone();
        let path = PathBuf::from(OsStr::from_bytes(&key));
        let db_owner = owner_of(&path);
        let trust = match db_owner {
            Some(uid) if uid == f.owner || f.owner == 0 => Trust::Owner { uid },
            // Root's stats file naming a database that is gone: dropped below like any other.
            None if f.owner == 0 => Trust::Owner { uid: 0 },
            _ => {
                let stats_owner = f.owner;
                refused.push((f.stats_file, StatsFileError::NotOwner { stats_owner }));
                continue;
            }
        };
        let better = by_path
            .get(&key)
            .and_then(|t| t.stats.as_ref())
            .is_none_or(|old| rank(&f, db_owner) >= rank(old, db_owner));
        if better {
            by_path.insert(
                key,
                Target {
                    path,
                    stats: Some(f),
                    explicit: false,
                    trust,
                },
            );
        }
    }
    for path in explicit {
        let key = path.as_os_str().as_bytes().to_vec();
        let target = by_path.entry(key).or_insert_with(|| Target {
            path: path.clone(),
            stats: None,
            explicit: true,
            trust: Trust::Operator,
        });
        target.explicit = true;
        target.trust = Trust::Operator;
    }
    let mut out: Vec<Target> = by_path.into_values().collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    (out, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(db: &str, created: u64, owner: u32) -> Box<Found> {
        Box::new(Found {
            stats_file: PathBuf::from(format!("/s/{created}")),
            snapshot: Snapshot {
                db_path: db.as_bytes().to_vec(),
                created_unix_ns: created,
                ..Default::default()
            },
            counters: Counters::default(),
            recent: Vec::new(),
            inconsistent: Vec::new(),
            owner,
        })
    }

    #[test]
    fn merges_shim_and_explicit_databases() {
        let (t, refused) = targets(
            vec![
                found("/b.db", 1, 7),
                found("/a.db", 1, 7),
                found("/b.db", 5, 7),
            ],
            &[PathBuf::from("/a.db"), PathBuf::from("/c.db")],
            &mut |_| Some(7),
        );
        assert!(refused.is_empty());
        let summary: Vec<_> = t
            .iter()
            .map(|t| {
                (
                    t.path.to_str().unwrap(),
                    t.explicit,
                    t.stats.as_ref().map(|s| s.snapshot.created_unix_ns),
                    t.trust,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("/a.db", true, Some(1), Trust::Operator),
                ("/b.db", false, Some(5), Trust::Owner { uid: 7 }),
                ("/c.db", true, None, Trust::Operator)
            ]
        );
    }

    /// Issue 9, attack 4: a stats file naming a database its owner does not own is refused,
    /// and the refusal reads the same whether the database exists or not.
    #[test]
    fn stats_files_speak_only_for_their_owner() {
        let owners = |p: &Path| match p.to_str().unwrap() {
            "/root.db" => Some(0),
            "/alice.db" => Some(1000),
            _ => None,
        };
        let (t, refused) = targets(
            vec![
                found("/root.db", 1, 1001),
                found("/missing.db", 1, 1001),
                // Root's file and Alice's own name her database: hers is used, even if older.
                found("/alice.db", 9, 0),
                found("/alice.db", 2, 1000),
                // Root's file may name anyone's database.
                found("/root.db", 3, 0),
            ],
            &[],
            &mut |p| owners(p),
        );
        let kept: Vec<_> = t
            .iter()
            .map(|t| {
                (
                    t.path.to_str().unwrap(),
                    t.stats.as_ref().unwrap().owner,
                    t.trust,
                )
            })
            .collect();
        assert_eq!(
            kept,
            vec![
                ("/alice.db", 1000, Trust::Owner { uid: 1000 }),
                ("/root.db", 0, Trust::Owner { uid: 0 })
            ]
        );
        assert_eq!(refused.len(), 2);
        let messages: Vec<String> = refused.iter().map(|(_, e)| e.to_string()).collect();
        assert_eq!(messages[0], messages[1], "no existence oracle");
        assert!(!messages[0].contains("root.db") && !messages[0].contains("missing"));
        assert!(refused.iter().all(|(_, e)| e.reason() == "not_owner"));
    }

    #[test]
    fn scan_reports_bad_files_and_skips_others() {
        let dir = std::env::temp_dir().join(format!("walwatch-scan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("x{SUFFIX}")), b"short").unwrap();
        std::fs::write(dir.join("unrelated.txt"), b"hello").unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join(format!("zero{SUFFIX}"))).unwrap();
        let dirs = StatsDirs::Configured(dir.clone());
        let scan = scan(&dirs, false);
        assert!(scan.found.is_empty());
        let mut reasons: Vec<_> = scan.errors.iter().map(|e| e.1.reason()).collect();
        reasons.sort();
        assert_eq!(reasons, ["not_regular", "truncated"]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            super::scan(&dirs, false).dir_error,
            Some(DirError::NotFound)
        ));
    }

    /// An operator's directory must not be writable by others (a sticky group directory is).
    #[test]
    fn the_operators_directory_is_checked_for_its_own_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("walwatch-opdir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let set = |mode| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
        set(0o1777).unwrap();
        let dirs = StatsDirs::Configured(dir.clone());
        let refused = scan(&dirs, false).dir_error;
        assert!(
            matches!(refused, Some(DirError::Refused(Refusal::Writable { .. }))),
            "{refused:?}"
        );
        set(0o3770).unwrap();
        assert!(scan(&dirs, false).dir_error.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn per_user_directories_are_checked_against_the_uid_they_name() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("walwatch-base-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let me = paths::effective_uid();
        let mine = paths::per_user_dir(&base, me);
        std::fs::create_dir_all(&mine).unwrap();
        std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(
            mine.join(format!("a{SUFFIX}")),
            crate::synth::stats_file(b"/a.db", 1),
        )
        .unwrap();
        // A directory named for another uid but owned by neither it nor root: refused (as root,
        // the test gives it to a third uid; root may own anyone's directory).
        let other = paths::per_user_dir(&base, me + 1);
        std::fs::create_dir_all(&other).unwrap();
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o700)).unwrap();
        if me == 0 {
            std::os::unix::fs::chown(&other, Some(4242), None).unwrap();
        }
        // A symlink named like a per-user directory: refused, never followed.
        std::os::unix::fs::symlink(&mine, paths::per_user_dir(&base, me + 2)).unwrap();
        std::fs::create_dir_all(base.join("walwatch-x")).unwrap(); // not a uid: ignored
        let scan = scan(&StatsDirs::PerUser { base: base.clone() }, false);
        assert_eq!(scan.found.len(), 1, "{scan:?}");
        assert_eq!(scan.found[0].owner, me);
        let errors: Vec<_> = scan
            .errors
            .iter()
            .map(|(p, e)| {
                (
                    p.file_name().unwrap().to_str().unwrap().to_owned(),
                    e.reason(),
                )
            })
            .collect();
        let expected = vec![
            (format!("walwatch-{}", me + 1), "dir_refused"),
            (format!("walwatch-{}", me + 2), "dir_refused"),
        ];
        assert_eq!(errors, expected);
        std::fs::remove_dir_all(&base).unwrap();
    }
}

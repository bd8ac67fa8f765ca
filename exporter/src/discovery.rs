//! Which databases to watch: every database with a stats file in the stats directory (opened
//! through the shim on this host, no configuration needed) plus the databases named with
//! `--db` (watched from their files alone).
//!
//! The directory is scanned again at every collection, so new databases appear and databases
//! whose stats file was removed disappear without a restart.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use walwatch::paths::SUFFIX;
use walwatch::snapshot::Snapshot;

use crate::collect::stats_file::{self, StatsFileError};

/// A stats file and what it holds.
#[derive(Debug)]
pub struct Found {
    pub stats_file: PathBuf,
    pub snapshot: Snapshot,
}

/// Result of one scan of the stats directory.
#[derive(Debug, Default)]
pub struct Scan {
    pub found: Vec<Found>,
    /// Stats files that could not be used, and why.
    pub errors: Vec<(PathBuf, StatsFileError)>,
    /// The directory itself could not be listed (it does not exist until the shim creates it).
    pub dir_error: Option<std::io::Error>,
}

/// Reads every `*.walwatch` file of `dir`.
pub fn scan(dir: &Path) -> Scan {
    let mut scan = Scan::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            scan.dir_error = Some(e);
            return scan;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.as_bytes().ends_with(SUFFIX.as_bytes()) {
            continue;
        }
        let path = entry.path();
        match stats_file::read(&path) {
            Ok(snapshot) => scan.found.push(Found {
                stats_file: path,
                snapshot,
            }),
            Err(e) => scan.errors.push((path, e)),
        }
    }
    scan
}

/// One database to collect.
#[derive(Debug)]
pub struct Target {
    pub path: PathBuf,
    pub stats: Option<Found>,
    /// Named with `--db` (kept and reported even when it does not exist).
    pub explicit: bool,
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

/// Merges the stats files found with the `--db` list (already normalized): one target per
/// database path, sorted by path. When two stats files name one database, the newest wins.
pub fn targets(found: Vec<Found>, explicit: &[PathBuf]) -> Vec<Target> {
    let mut by_path: HashMap<Vec<u8>, Target> = HashMap::new();
    for f in found {
        let key = f.snapshot.db_path.clone();
        let newer = by_path
            .get(&key)
            .and_then(|t| t.stats.as_ref())
            .map_or(true, |old| {
                f.snapshot.created_unix_ns >= old.snapshot.created_unix_ns
            });
        if newer {
            let path = PathBuf::from(std::ffi::OsStr::from_bytes(&key));
            by_path.insert(
                key,
                Target {
                    path,
                    stats: Some(f),
                    explicit: false,
                },
            );
        }
    }
    for path in explicit {
        let key = path.as_os_str().as_bytes().to_vec();
        by_path
            .entry(key)
            .or_insert_with(|| Target {
                path: path.clone(),
                stats: None,
                explicit: true,
            })
            .explicit = true;
    }
    let mut out: Vec<Target> = by_path.into_values().collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(db: &str, created: u64) -> Found {
        Found {
            stats_file: PathBuf::from(format!("/s/{created}")),
            snapshot: Snapshot {
                db_path: db.as_bytes().to_vec(),
                created_unix_ns: created,
                ..Default::default()
            },
        }
    }

    #[test]
    fn merges_shim_and_explicit_databases() {
        let t = targets(
            vec![found("/b.db", 1), found("/a.db", 1), found("/b.db", 5)],
            &[PathBuf::from("/a.db"), PathBuf::from("/c.db")],
        );
        let summary: Vec<_> = t
            .iter()
            .map(|t| {
                (
                    t.path.to_str().unwrap(),
                    t.explicit,
                    t.stats.as_ref().map(|s| s.snapshot.created_unix_ns),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("/a.db", true, Some(1)),
                ("/b.db", false, Some(5)),
                ("/c.db", true, None)
            ]
        );
    }

    #[test]
    fn scan_reports_bad_files_and_skips_others() {
        let dir = std::env::temp_dir().join(format!("walwatch-scan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("x{SUFFIX}")), b"short").unwrap();
        std::fs::write(dir.join("unrelated.txt"), b"hello").unwrap();
        let scan = scan(&dir);
        assert!(scan.found.is_empty());
        assert_eq!(scan.errors.len(), 1);
        assert_eq!(scan.errors[0].1.reason(), "truncated");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(super::scan(&dir).dir_error.is_some());
    }
}

//! Collector: one stats file written by the shim.
//!
//! The file is read whole with `std::fs::read` (never mapped: a truncated or hostile file can
//! only produce an error) and parsed by [`Snapshot::parse`]. Reader entries whose process is
//! gone are dropped: a stats file outlives the processes that wrote it.

use std::path::Path;
use walwatch::snapshot::{Snapshot, SnapshotError};

/// Why a stats file could not be used.
#[derive(Debug)]
pub enum StatsFileError {
    Io(std::io::Error),
    Invalid(SnapshotError),
}

impl StatsFileError {
    /// Short label for the `reason` of `walwatch_stats_file_errors`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Io(_) => "io",
            Self::Invalid(SnapshotError::TooShort { .. }) => "truncated",
            Self::Invalid(SnapshotError::BadMagic) => "bad_magic",
            Self::Invalid(SnapshotError::Uninitialized) => "uninitialized",
            Self::Invalid(SnapshotError::WrongVersion { .. }) => "wrong_version",
            Self::Invalid(SnapshotError::WrongSize { .. }) => "wrong_size",
            Self::Invalid(SnapshotError::BadPath) => "bad_path",
        }
    }
}

impl std::fmt::Display for StatsFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "cannot read: {e}"),
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
        }
    }
}

/// Reads and parses a stats file.
pub fn read(path: &Path) -> Result<Snapshot, StatsFileError> {
    let bytes = std::fs::read(path).map_err(StatsFileError::Io)?;
    Snapshot::parse(&bytes).map_err(StatsFileError::Invalid)
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
    }
}

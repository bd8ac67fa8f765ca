//! A plain, owned copy of a stats file, parsed from bytes. This is how the sidecar reads stats
//! files: `std::fs::read` then [`Snapshot::parse`], so a hostile, truncated or foreign file can
//! only produce an error, never a crash or a misread.

use crate::layout::*;
use std::mem::offset_of;

/// Why a stats file could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum SnapshotError {
    TooShort {
        len: usize,
    },
    BadMagic,
    /// Not yet initialized by its creator (all zero): try again later.
    Uninitialized,
    WrongVersion {
        found: u32,
    },
    WrongSize {
        found: u32,
    },
    BadPath,
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooShort { len } => write!(
                f,
                "{len} bytes, not {REGION_SIZE}: truncated or not a walwatch file"
            ),
            Self::BadMagic => f.write_str("not a walwatch stats file (bad magic)"),
            Self::Uninitialized => f.write_str("still being created"),
            Self::WrongVersion { found } if *found < VERSION => write!(
                f,
                "layout version {found} (an older walwatch), this walwatch reads version {VERSION}: the shim replaces it when the database is next opened"
            ),
            Self::WrongVersion { found } => write!(
                f,
                "layout version {found}, this walwatch reads version {VERSION}: upgrade this walwatch"
            ),
            Self::WrongSize { found } => write!(
                f,
                "declares {found} bytes, version {VERSION} has {REGION_SIZE}"
            ),
            Self::BadPath => f.write_str("names no valid database path"),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// Traffic on one lock slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotSnapshot {
    pub acquired: [u64; 2],
    pub busy: [u64; 2],
    pub hold_buckets: [u64; BUCKETS],
    pub hold_sum_ns: u64,
}

/// Checkpoints of one mode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModeSnapshot {
    /// Indexed by [`Outcome`].
    pub outcomes: [u64; 4],
    pub frames_backfilled: u64,
    pub duration_buckets: [u64; BUCKETS],
    pub duration_sum_ns: u64,
}

/// One recent checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointSnapshot {
    pub seq: u64,
    pub started_unix_ns: u64,
    pub duration_ns: u64,
    /// Time spent waiting for busy locks (granted in the end or not).
    pub waited_ns: u64,
    pub pid: u32,
    /// Index into [`CHECKPOINT_MODE_NAMES`] (a [`Mode`]).
    pub mode: usize,
    /// Index into [`MODE_SOURCE_NAMES`].
    pub mode_source: usize,
    /// Index into [`OUTCOME_NAMES`] (an [`Outcome`]).
    pub outcome: usize,
    /// The triple the application was told.
    pub triple: Triple,
    /// `mxFrame` and `nBackfill` before any reset of the WAL.
    pub wal_frames: u32,
    pub backfilled_frames: u32,
    pub frames_moved: u32,
    /// First lock slot waited for, if any.
    pub waited_slot: Option<usize>,
    /// Lock slot never granted, if any.
    pub blocked_slot: Option<usize>,
    pub blocked_read_mark: u32,
    /// Pid holding the blocked slot, when known.
    pub blocked_pid: Option<u32>,
}

/// A connection holding a READ lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaderSnapshot {
    pub pid: u32,
    /// READ index 0..=4 (lock slot `SLOT_READ0 + read_index`).
    pub read_index: usize,
    pub read_mark: u32,
    pub since_unix_ns: u64,
}

/// Everything a stats file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub db_path: Vec<u8>,
    pub created_unix_ns: u64,
    /// Identity of the database file the stats file was made for (0 when unknown).
    pub db_dev: u64,
    pub db_ino: u64,
    pub db_birth_ns: u64,
    pub wal_bytes: u64,
    pub wal_write_bytes: u64,
    pub db_write_bytes: u64,
    pub fsyncs: [u64; 3],
    pub busy_sleeps: u64,
    pub busy_sleep_us: u64,
    pub wal_truncations: u64,
    pub checkpoints: u64,
    pub reader_table_overflows: u64,
    pub page_size: u32,
    pub locks: Vec<SlotSnapshot>,
    pub modes: Vec<ModeSnapshot>,
    /// Recent checkpoints, newest first.
    pub recent: Vec<CheckpointSnapshot>,
    /// Connections holding a READ lock (entries whose pid may be dead: the caller checks).
    pub readers: Vec<ReaderSnapshot>,
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes(self.0[off..off + 4].try_into().expect("4 bytes"))
    }
    fn u64(&self, off: usize) -> u64 {
        u64::from_ne_bytes(self.0[off..off + 8].try_into().expect("8 bytes"))
    }
    fn u64s<const N: usize>(&self, off: usize) -> [u64; N] {
        std::array::from_fn(|i| self.u64(off + 8 * i))
    }
}

impl Snapshot {
    /// Parses a whole stats file.
    pub fn parse(bytes: &[u8]) -> Result<Self, SnapshotError> {
        // Magic and version first: a file of another layout version has another size, and
        // is reported as that version (from its first 16 bytes), not as a truncated file.
        let version_end = offset_of!(Header, version) + 4;
        if bytes.len() >= version_end {
            let b = Bytes(bytes);
            let magic = &bytes[offset_of!(Header, magic)..][..8];
            if magic == MAGIC {
                let version = b.u32(offset_of!(Header, version));
                if version != VERSION {
                    return Err(SnapshotError::WrongVersion { found: version });
                }
            }
        }
        if bytes.len() < REGION_SIZE {
            return Err(SnapshotError::TooShort { len: bytes.len() });
        }
        let b = Bytes(bytes);
        let magic = &bytes[offset_of!(Header, magic)..][..8];
        if magic != MAGIC {
            return Err(if magic == [0; 8] {
                SnapshotError::Uninitialized
            } else {
                SnapshotError::BadMagic
            });
        }
        let size = b.u32(offset_of!(Header, size));
        if size as usize != REGION_SIZE {
            return Err(SnapshotError::WrongSize { found: size });
        }
        let path_len = b.u32(offset_of!(Header, db_path_len)) as usize;
        if path_len == 0 || path_len > MAX_PATH {
            return Err(SnapshotError::BadPath);
        }
        let db_path = bytes[offset_of!(Header, db_path)..][..path_len].to_vec();

        let io = offset_of!(Region, io);
        let mut snap = Snapshot {
            db_path,
            created_unix_ns: b.u64(offset_of!(Header, created_unix_ns)),
            db_dev: b.u64(offset_of!(Header, db_dev)),
            db_ino: b.u64(offset_of!(Header, db_ino)),
            db_birth_ns: b.u64(offset_of!(Header, db_birth_ns)),
            wal_bytes: b.u64(io + offset_of!(IoCounters, wal_bytes)),
            wal_write_bytes: b.u64(io + offset_of!(IoCounters, wal_write_bytes)),
            db_write_bytes: b.u64(io + offset_of!(IoCounters, db_write_bytes)),
            fsyncs: b.u64s(io + offset_of!(IoCounters, fsyncs)),
            busy_sleeps: b.u64(io + offset_of!(IoCounters, busy_sleeps)),
            busy_sleep_us: b.u64(io + offset_of!(IoCounters, busy_sleep_us)),
            wal_truncations: b.u64(io + offset_of!(IoCounters, wal_truncations)),
            checkpoints: b.u64(io + offset_of!(IoCounters, checkpoints)),
            reader_table_overflows: b.u64(io + offset_of!(IoCounters, reader_table_overflows)),
            page_size: b.u32(io + offset_of!(IoCounters, page_size)),
            ..Default::default()
        };

        for slot in 0..SLOTS {
            let at = offset_of!(Region, locks) + slot * std::mem::size_of::<SlotCounters>();
            snap.locks.push(SlotSnapshot {
                acquired: b.u64s(at + offset_of!(SlotCounters, acquired)),
                busy: b.u64s(at + offset_of!(SlotCounters, busy)),
                hold_buckets: b.u64s(at + offset_of!(SlotCounters, hold_buckets)),
                hold_sum_ns: b.u64(at + offset_of!(SlotCounters, hold_sum_ns)),
            });
        }
        for mode in 0..CHECKPOINT_MODE_NAMES.len() {
            let at =
                offset_of!(Region, checkpoints) + mode * std::mem::size_of::<CheckpointCounters>();
            snap.modes.push(ModeSnapshot {
                outcomes: b.u64s(at + offset_of!(CheckpointCounters, outcomes)),
                frames_backfilled: b.u64(at + offset_of!(CheckpointCounters, frames_backfilled)),
                duration_buckets: b.u64s(at + offset_of!(CheckpointCounters, duration_buckets)),
                duration_sum_ns: b.u64(at + offset_of!(CheckpointCounters, duration_sum_ns)),
            });
        }
        for i in 0..RECENT {
            let at = offset_of!(Region, recent) + i * std::mem::size_of::<CheckpointRecord>();
            let field = |off: usize| b.u32(at + off);
            let seq = b.u64(at + offset_of!(CheckpointRecord, seq));
            let mode = Mode::from_u32(field(offset_of!(CheckpointRecord, mode)));
            let outcome = Outcome::from_u32(field(offset_of!(CheckpointRecord, outcome)));
            let source = field(offset_of!(CheckpointRecord, mode_source)) as usize;
            let busy = field(offset_of!(CheckpointRecord, busy));
            // A hostile or torn record is skipped rather than trusted.
            let (Some(mode), Some(outcome)) = (mode, outcome) else {
                continue;
            };
            if seq == 0 || source >= MODE_SOURCE_NAMES.len() || busy > 1 {
                continue;
            }
            let slot = |off: usize| Some(field(off) as usize).filter(|&s| s < SLOTS);
            let pid = field(offset_of!(CheckpointRecord, blocked_pid));
            snap.recent.push(CheckpointSnapshot {
                seq,
                started_unix_ns: b.u64(at + offset_of!(CheckpointRecord, started_unix_ns)),
                duration_ns: b.u64(at + offset_of!(CheckpointRecord, duration_ns)),
                waited_ns: b.u64(at + offset_of!(CheckpointRecord, waited_ns)),
                pid: field(offset_of!(CheckpointRecord, pid)),
                mode: mode as usize,
                mode_source: source,
                outcome: outcome as usize,
                triple: Triple {
                    busy: busy == 1,
                    log: field(offset_of!(CheckpointRecord, log)) as i32,
                    checkpointed: field(offset_of!(CheckpointRecord, checkpointed)) as i32,
                },
                wal_frames: field(offset_of!(CheckpointRecord, wal_frames)),
                backfilled_frames: field(offset_of!(CheckpointRecord, backfilled_frames)),
                frames_moved: field(offset_of!(CheckpointRecord, frames_moved)),
                waited_slot: slot(offset_of!(CheckpointRecord, waited_slot)),
                blocked_slot: slot(offset_of!(CheckpointRecord, blocked_slot)),
                blocked_read_mark: field(offset_of!(CheckpointRecord, blocked_read_mark)),
                blocked_pid: (pid != 0).then_some(pid),
            });
        }
        snap.recent.sort_by_key(|c| std::cmp::Reverse(c.seq));
        for i in 0..READERS {
            let at = offset_of!(Region, readers) + i * std::mem::size_of::<ReaderEntry>();
            let pid = b.u32(at + offset_of!(ReaderEntry, pid));
            let slot = b.u32(at + offset_of!(ReaderEntry, read_slot)) as usize;
            if pid == 0 || slot == 0 || slot > crate::wal_index::READ_MARKS {
                continue;
            }
            snap.readers.push(ReaderSnapshot {
                pid,
                read_index: slot - 1,
                read_mark: b.u32(at + offset_of!(ReaderEntry, read_mark)),
                since_unix_ns: b.u64(at + offset_of!(ReaderEntry, since_unix_ns)),
            });
        }
        Ok(snap)
    }

    /// Database path as text (lossy for non-UTF-8 paths).
    pub fn db_path_lossy(&self) -> String {
        String::from_utf8_lossy(&self.db_path).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank() -> Vec<u8> {
        let mut bytes = vec![0u8; REGION_SIZE];
        bytes[..8].copy_from_slice(&MAGIC);
        bytes[offset_of!(Header, version)..][..4].copy_from_slice(&VERSION.to_ne_bytes());
        bytes[offset_of!(Header, size)..][..4].copy_from_slice(&(REGION_SIZE as u32).to_ne_bytes());
        bytes[offset_of!(Header, db_path_len)..][..4].copy_from_slice(&7u32.to_ne_bytes());
        bytes[offset_of!(Header, db_path)..][..7].copy_from_slice(b"/tmp/db");
        bytes
    }

    #[test]
    fn parses_a_blank_file() {
        let snap = Snapshot::parse(&blank()).unwrap();
        assert_eq!(snap.db_path, b"/tmp/db");
        assert_eq!(snap.locks.len(), SLOTS);
        assert!(snap.readers.is_empty() && snap.recent.is_empty());
    }

    #[test]
    fn rejects_what_it_cannot_trust() {
        assert_eq!(
            Snapshot::parse(&[0u8; 100]),
            Err(SnapshotError::TooShort { len: 100 })
        );
        assert_eq!(
            Snapshot::parse(&vec![0u8; REGION_SIZE]),
            Err(SnapshotError::Uninitialized)
        );
        let mut foreign = blank();
        foreign[..8].copy_from_slice(b"SQLite f");
        assert_eq!(Snapshot::parse(&foreign), Err(SnapshotError::BadMagic));
        let mut v1 = blank();
        v1[offset_of!(Header, version)] = 1;
        assert_eq!(
            Snapshot::parse(&v1),
            Err(SnapshotError::WrongVersion { found: 1 })
        );
        let mut long_path = blank();
        long_path[offset_of!(Header, db_path_len)..][..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(Snapshot::parse(&long_path), Err(SnapshotError::BadPath));
    }

    #[test]
    fn skips_hostile_records() {
        let mut bytes = blank();
        let rec = offset_of!(Region, recent);
        bytes[rec..][..8].copy_from_slice(&1u64.to_ne_bytes());
        bytes[rec + offset_of!(CheckpointRecord, mode)..][..4]
            .copy_from_slice(&99u32.to_ne_bytes());
        let reader = offset_of!(Region, readers);
        bytes[reader..][..4].copy_from_slice(&42u32.to_ne_bytes());
        bytes[reader + 4..][..4].copy_from_slice(&77u32.to_ne_bytes());
        let snap = Snapshot::parse(&bytes).unwrap();
        assert!(snap.recent.is_empty() && snap.readers.is_empty());
    }
}

/// Real stats files captured from SQLite processes (`tests/fixtures/`, see its README.md):
/// a change of layout that is not a version bump fails here.
#[cfg(test)]
mod fixtures {
    use super::*;

    const V2: &[u8] = include_bytes!("../../tests/fixtures/stats-v2.bin");
    const V1: &[u8] = include_bytes!("../../tests/fixtures/stats-v1.bin");

    /// Python's sqlite3 (SQLite 3.40.1) with the extension: 25 commits, a TRUNCATE stopped by
    /// a reader at frame 25 of 30, a PASSIVE that copied the last 5, then 3 commits.
    #[test]
    fn layout_v2_file_parses_to_what_the_capture_did() {
        assert_eq!(V2.len(), 8808);
        let s = Snapshot::parse(V2).unwrap();
        assert_eq!(s.db_path, b"/tmp/walwatch-fixture/app.db");
        assert_eq!(s.created_unix_ns, 1_795_989_407_507_187_474);
        assert_eq!((s.db_dev, s.db_ino), (65024, 10_142_238));
        assert_eq!(s.db_birth_ns, 1_795_989_407_500_014_186);
        assert_eq!(s.page_size, 4096);
        assert_eq!((s.wal_write_bytes, s.db_write_bytes), (144_264, 36_864));
        assert_eq!(s.fsyncs, [3, 34, 0]);
        assert_eq!(
            (s.busy_sleeps, s.busy_sleep_us, s.wal_truncations),
            (0, 0, 0)
        );
        assert_eq!((s.checkpoints, s.reader_table_overflows), (2, 0));
        assert!(s.readers.is_empty(), "captured with every connection idle");

        let acquired: Vec<[u64; 2]> = s.locks.iter().map(|l| l.acquired).collect();
        assert_eq!(
            acquired,
            [
                [0, 31],
                [0, 3],
                [0, 1],
                [2, 2],
                [27, 27],
                [4, 7],
                [0, 2],
                [0, 2]
            ]
        );
        // The TRUNCATE found READ1 (slot 4) held by the reader, 5 times (its busy handler).
        let busy: Vec<[u64; 2]> = s.locks.iter().map(|l| l.busy).collect();
        assert_eq!(
            busy,
            [
                [0, 0],
                [0, 0],
                [0, 0],
                [0, 0],
                [0, 5],
                [0, 0],
                [0, 0],
                [0, 0]
            ]
        );
        assert_eq!(s.locks[0].hold_buckets, [0, 2, 27, 2, 0, 0, 0, 0]);
        assert_eq!(s.locks[0].hold_sum_ns, 12_238_572);

        let outcomes: Vec<[u64; 4]> = s.modes.iter().map(|m| m.outcomes).collect();
        let mut expected = [[0; 4]; 7];
        expected[0][0] = 1; // passive, complete
        expected[3][2] = 1; // truncate, partial
        assert_eq!(outcomes, expected);
        assert_eq!(
            (s.modes[0].frames_backfilled, s.modes[3].frames_backfilled),
            (5, 25)
        );
        assert_eq!(s.modes[3].duration_buckets, [0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(s.modes[3].duration_sum_ns, 59_178);

        let [passive, truncate] = &s.recent[..] else {
            panic!("two recent checkpoints expected: {:?}", s.recent)
        };
        let name = |c: &CheckpointSnapshot| {
            (
                CHECKPOINT_MODE_NAMES[c.mode],
                MODE_SOURCE_NAMES[c.mode_source],
                OUTCOME_NAMES[c.outcome],
            )
        };
        assert_eq!(name(passive), ("passive", "pragma", "complete"));
        assert_eq!(passive.seq, 2);
        assert_eq!(passive.started_unix_ns, 1_795_989_407_527_569_062);
        assert_eq!((passive.duration_ns, passive.waited_ns), (232_836, 0));
        assert_eq!(
            (
                passive.triple.busy,
                passive.triple.log,
                passive.triple.checkpointed
            ),
            (false, 30, 30)
        );
        assert_eq!(
            (
                passive.wal_frames,
                passive.backfilled_frames,
                passive.frames_moved
            ),
            (30, 30, 5)
        );
        assert_eq!((passive.waited_slot, passive.blocked_slot), (None, None));
        assert_eq!(passive.pid, 18707);

        assert_eq!(name(truncate), ("truncate", "pragma", "partial"));
        assert_eq!(truncate.seq, 1);
        assert_eq!(truncate.started_unix_ns, 1_795_989_407_527_452_780);
        assert_eq!((truncate.duration_ns, truncate.waited_ns), (59_178, 2_243));
        assert_eq!(
            (
                truncate.triple.busy,
                truncate.triple.log,
                truncate.triple.checkpointed
            ),
            (true, 30, 25)
        );
        assert_eq!(
            (
                truncate.wal_frames,
                truncate.backfilled_frames,
                truncate.frames_moved
            ),
            (30, 25, 25)
        );
        assert_eq!(
            (truncate.waited_slot, truncate.blocked_slot),
            (Some(4), Some(4))
        );
        assert_eq!(truncate.blocked_read_mark, 25);
        assert_eq!(
            truncate.blocked_pid,
            Some(18707),
            "the reader was the same process"
        );
    }

    /// The sqlite3 shell with the extension of layout v1 (7,904 bytes): refused by version,
    /// from its first 16 bytes, not taken for a truncated file.
    #[test]
    fn layout_v1_file_is_refused_as_an_older_version() {
        assert_eq!(V1.len(), 7904);
        assert_eq!(&V1[..8], b"WALWATCH");
        assert_eq!(
            Snapshot::parse(V1),
            Err(SnapshotError::WrongVersion { found: 1 })
        );
        assert_eq!(
            Snapshot::parse(&V1[..16]),
            Err(SnapshotError::WrongVersion { found: 1 })
        );
        assert!(Snapshot::parse(V1)
            .unwrap_err()
            .to_string()
            .contains("layout version 1 (an older walwatch)"));
    }
}

//! The stats region: the binary interface between the shim (writer, in every application
//! process) and the sidecar (reader).
//!
//! One file per database in the stats directory, `mmap`ed `MAP_SHARED` by every process that
//! opens that database through the shim. Every field after the header is an atomic that is
//! only ever updated with single atomic operations (`fetch_add`, `fetch_max`, `store`), so any
//! number of processes can record at once without a lock and without a syscall.
//!
//! Compatibility rule: this is version [`VERSION`]. Any change to the layout (a field added,
//! moved or resized) bumps the version; a shim or sidecar that meets a file of another version
//! ignores it (and says so) rather than misreading it. The compile-time assertions at the end of
//! this file pin every offset. Version 2 (issue 10) added the database file's identity to the
//! header, the `not_reset` outcome, the honest mode labels and the application's
//! `(busy, log, checkpointed)` triple to each checkpoint record.
//!
//! # Checkpoint vocabulary
//! `PRAGMA wal_checkpoint(MODE)` and `sqlite3_wal_checkpoint_v2` tell the application a triple
//! `(busy, log, checkpointed)`: `busy` is 1 when SQLite returned `SQLITE_BUSY`, `log` is the
//! number of frames in the WAL (`mxFrame`) and `checkpointed` the number of frames in the
//! database file (`nBackfill`) when the checkpoint ended; both are -1 when the checkpoint lock
//! itself was busy (another checkpoint was running). Every checkpoint record holds that triple
//! and an [`Outcome`] that is a function of it and of the frames this checkpoint copied:
//!
//! | outcome     | triple                         | meaning                                              |
//! |-------------|--------------------------------|------------------------------------------------------|
//! | `complete`  | `(0, N, N)`, TRUNCATE `(0,0,0)`| every frame copied; RESTART/TRUNCATE also reset the WAL |
//! | `not_reset` | `(1, N, N)`                    | every frame copied, but the final step failed: RESTART/TRUNCATE could not reset the WAL (a reader still uses it: rqlite's "1 ok, 1031 pages, 1031 moved"), or FULL never got the write lock |
//! | `partial`   | `(b, N, M)`, `M < N`, moved > 0| this checkpoint copied some frames, not all (a reader pins an older snapshot; PASSIVE returns b = 0) |
//! | `busy`      | `(b, N, M)`, `M < N`, moved = 0, or `(1, -1, -1)` | this checkpoint copied no frame |
//!
//! Waiting is not failure: a lock found busy and then granted (through the busy handler, or a
//! blocking lock on `SQLITE_ENABLE_SETLK_TIMEOUT` builds) adds to the record's `waited_ns` and
//! names `waited_slot`; only a lock never granted names `blocked_slot`.
//!
//! Modes: the exact mode when the checkpoint came from `PRAGMA wal_checkpoint` (seen as
//! `SQLITE_FCNTL_PRAGMA`), else what the locks prove (see [`Mode`]).

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64};

/// First 8 bytes of every stats file.
pub const MAGIC: [u8; 8] = *b"WALWATCH";
/// Layout version of this definition.
pub const VERSION: u32 = 2;
/// Longest database path a stats file can name (Linux `PATH_MAX`).
pub const MAX_PATH: usize = 4096;

/// `-shm` lock slots, as `xShmLock` numbers them.
pub const SLOT_NAMES: [&str; SLOTS] = [
    "WRITE", "CKPT", "RECOVER", "READ0", "READ1", "READ2", "READ3", "READ4",
];
pub const SLOTS: usize = 8;
pub const SLOT_WRITE: usize = 0;
pub const SLOT_CKPT: usize = 1;
pub const SLOT_RECOVER: usize = 2;
pub const SLOT_READ0: usize = 3;

/// Lock modes, indexing [`SlotCounters::acquired`] and [`SlotCounters::busy`].
pub const LOCK_MODE_NAMES: [&str; 2] = ["shared", "exclusive"];
pub const SHARED: usize = 0;
pub const EXCLUSIVE: usize = 1;

/// Upper bounds (nanoseconds) of the duration histogram buckets shared by lock hold times and
/// checkpoint durations: 10µs, 100µs, 1ms, 10ms, 100ms, 1s, 10s; the last bucket is +Inf.
pub const BUCKET_BOUNDS_NS: [u64; BUCKETS - 1] = [
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
];
pub const BUCKETS: usize = 8;

/// Index of the histogram bucket a duration falls in (non-cumulative buckets).
pub fn bucket_index(ns: u64) -> usize {
    BUCKET_BOUNDS_NS
        .iter()
        .position(|&bound| ns <= bound)
        .unwrap_or(BUCKETS - 1)
}

/// How a checkpoint ended, as a function of the `(busy, log, checkpointed)` triple the
/// application was told and of the frames the checkpoint itself copied. Indexes
/// [`CheckpointCounters::outcomes`]; stored as `u32` in [`CheckpointRecord::outcome`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// `busy = 0` and `checkpointed = log`: every frame in the WAL is in the database file, and
    /// a RESTART or TRUNCATE also reset the WAL (TRUNCATE returns `(0, 0, 0)`). Time spent
    /// waiting for a lock that was then granted does not change this.
    Complete = 0,
    /// `busy = 1` and `checkpointed = log >= 0`: every frame copied, but the last step failed.
    /// For RESTART/TRUNCATE, the WAL could not be reset because a reader still uses it (rqlite's
    /// "1 ok, 1031 pages, 1031 moved"); for FULL (or any mode degraded to PASSIVE), a writer held
    /// the write lock throughout.
    NotReset = 1,
    /// `checkpointed < log` and this checkpoint copied at least one frame: a reader pinned an
    /// older snapshot (`busy = 1` for FULL and above, `0` for PASSIVE).
    Partial = 2,
    /// This checkpoint copied no frame while frames were pending (`checkpointed < log`), or the
    /// checkpoint lock itself was busy (`(1, -1, -1)`: another checkpoint was running).
    Busy = 3,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Complete,
        Outcome::NotReset,
        Outcome::Partial,
        Outcome::Busy,
    ];

    pub fn name(self) -> &'static str {
        OUTCOME_NAMES[self as usize]
    }

    pub fn from_u32(value: u32) -> Option<Self> {
        Self::ALL.get(value as usize).copied()
    }

    /// The outcome of a checkpoint that ended with `triple` after copying `moved` frames.
    /// `log = -1` means the checkpoint lock was busy.
    pub fn of(triple: Triple, moved: u32) -> Self {
        if triple.log < 0 {
            Outcome::Busy
        } else if triple.checkpointed >= triple.log {
            if triple.busy {
                Outcome::NotReset
            } else {
                Outcome::Complete
            }
        } else if moved > 0 {
            Outcome::Partial
        } else {
            Outcome::Busy
        }
    }
}

/// Names of [`Outcome`]s, indexed by their value (the `outcome` label).
pub const OUTCOME_NAMES: [&str; 4] = ["complete", "not_reset", "partial", "busy"];

/// What `PRAGMA wal_checkpoint` returns: `(busy, log, checkpointed)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Triple {
    /// SQLite returned `SQLITE_BUSY`.
    pub busy: bool,
    /// Frames in the WAL (`mxFrame`), -1 when the checkpoint lock was busy.
    pub log: i32,
    /// Frames copied into the database (`nBackfill`), -1 when the checkpoint lock was busy.
    pub checkpointed: i32,
}

/// A checkpoint's mode: exact when the application asked through `PRAGMA wal_checkpoint`
/// (the shim sees it as `SQLITE_FCNTL_PRAGMA`), otherwise the most the `-shm` locks prove.
/// A VFS sees locks, not the mode asked: FULL, RESTART and TRUNCATE take the same locks until
/// every frame is copied, and RESTART and TRUNCATE differ only once the WAL is reset.
/// Indexes [`Region::checkpoints`]; stored as `u32` in [`CheckpointRecord::mode`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `SQLITE_CHECKPOINT_PASSIVE` (also every auto-checkpoint): never takes the write lock.
    Passive = 0,
    /// `SQLITE_CHECKPOINT_FULL`.
    Full = 1,
    /// `SQLITE_CHECKPOINT_RESTART`; from the locks: the restart step (READ1..4 exclusive) was
    /// granted and the WAL was not truncated.
    Restart = 2,
    /// `SQLITE_CHECKPOINT_TRUNCATE`; from the locks: the WAL was truncated to 0 bytes.
    Truncate = 3,
    /// From the locks: the restart step was tried but never granted (a reader still used the
    /// WAL), so RESTART and TRUNCATE cannot be told apart.
    RestartOrTruncate = 4,
    /// From the locks: the write lock was tried but the restart step never was (frames were
    /// left, or the write lock was not granted): FULL, RESTART or TRUNCATE.
    FullRestartOrTruncate = 5,
    /// From the locks: the checkpoint lock itself was busy, so nothing tells the mode.
    Unknown = 6,
}

impl Mode {
    pub const ALL: [Mode; 7] = [
        Mode::Passive,
        Mode::Full,
        Mode::Restart,
        Mode::Truncate,
        Mode::RestartOrTruncate,
        Mode::FullRestartOrTruncate,
        Mode::Unknown,
    ];

    pub fn name(self) -> &'static str {
        CHECKPOINT_MODE_NAMES[self as usize]
    }

    pub fn from_u32(value: u32) -> Option<Self> {
        Self::ALL.get(value as usize).copied()
    }
}

/// Names of [`Mode`]s, indexed by their value (the `mode` label).
pub const CHECKPOINT_MODE_NAMES: [&str; MODES] = [
    "passive",
    "full",
    "restart",
    "truncate",
    "restart_or_truncate",
    "full_restart_or_truncate",
    "unknown",
];
pub const MODES: usize = 7;

/// Where a record's mode comes from ([`CheckpointRecord::mode_source`]).
pub const MODE_SOURCE_NAMES: [&str; 2] = ["locks", "pragma"];

/// Where a checkpoint record's mode comes from; stored as `u32` in
/// [`CheckpointRecord::mode_source`], named by [`MODE_SOURCE_NAMES`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModeSource {
    /// What the checkpoint's locks prove (no `PRAGMA wal_checkpoint` was heard, or the locks
    /// disagreed with it).
    Locks = 0,
    /// The mode of the `PRAGMA wal_checkpoint(MODE)` that ran it, which the locks agree with.
    Pragma = 1,
}

impl ModeSource {
    pub fn name(self) -> &'static str {
        MODE_SOURCE_NAMES[self as usize]
    }
}

/// Files whose syncs are counted separately, named by [`FileKind::name`].
pub const FSYNC_FILE_NAMES: [&str; 3] = ["db", "wal", "other"];

/// What a file is to SQLite, decided once when it is opened; indexes [`IoCounters::fsyncs`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A main database file.
    MainDb = 0,
    /// A `-wal` file.
    Wal = 1,
    /// Anything else (journals, temporary files): its syncs are not counted.
    Other = 2,
}

impl FileKind {
    pub fn name(self) -> &'static str {
        FSYNC_FILE_NAMES[self as usize]
    }
}

/// How many connections' read locks the reader table can show at once.
pub const READERS: usize = 64;
/// How many recent checkpoints are kept.
pub const RECENT: usize = 16;

/// Written once, when the file is created, before the magic (which is written last).
#[repr(C)]
pub struct Header {
    pub magic: [u8; 8],
    pub version: u32,
    /// `size_of::<Region>()` of the writer.
    pub size: u32,
    pub created_unix_ns: u64,
    pub db_path_len: u32,
    pub _reserved: u32,
    /// Identity of the database file this stats file was made for (`st_dev`, `st_ino` when it
    /// was created; 0 when the database did not exist yet). A database deleted and re-created
    /// at the same path has another identity, and gets a fresh stats file.
    pub db_dev: u64,
    pub db_ino: u64,
    /// Birth time of the database file (`statx` `STATX_BTIME`, in ns since the epoch), or 0
    /// where the file system does not keep it. Inode numbers are reused; birth times are not.
    pub db_birth_ns: u64,
    /// Absolute path of the database, UTF-8 or not, `db_path_len` bytes.
    pub db_path: [u8; MAX_PATH],
}

/// I/O, sleep and WAL-size counters of one database.
#[repr(C)]
pub struct IoCounters {
    /// Gauge: size of `-wal` in bytes when a shim last opened or truncated it (what writers
    /// appended since is in the wal-index header: `walwatch_stats()` reports the larger).
    pub wal_bytes: AtomicU64,
    pub wal_write_bytes: AtomicU64,
    pub db_write_bytes: AtomicU64,
    /// Indexed by [`FileKind`].
    pub fsyncs: [AtomicU64; 3],
    /// Busy-handler sleeps (`xSleep` after a busy lock) and their requested total.
    pub busy_sleeps: AtomicU64,
    pub busy_sleep_us: AtomicU64,
    /// `-wal` truncated to zero bytes (the end of a TRUNCATE checkpoint).
    pub wal_truncations: AtomicU64,
    /// Checkpoints recorded so far; also the next index into [`Region::recent`].
    pub checkpoints: AtomicU64,
    /// Connections that found the reader table full.
    pub reader_table_overflows: AtomicU64,
    /// Page size last seen in the wal-index header (0 before any).
    pub page_size: AtomicU32,
    pub _reserved: AtomicU32,
}

/// Traffic on one `-shm` lock slot.
#[repr(C)]
pub struct SlotCounters {
    /// Indexed by [`SHARED`] / [`EXCLUSIVE`].
    pub acquired: [AtomicU64; 2],
    pub busy: [AtomicU64; 2],
    /// Hold time histogram (non-cumulative counts per [`BUCKET_BOUNDS_NS`] bucket).
    pub hold_buckets: [AtomicU64; BUCKETS],
    pub hold_sum_ns: AtomicU64,
}

/// Checkpoints of one mode.
#[repr(C)]
pub struct CheckpointCounters {
    /// Indexed by [`Outcome`].
    pub outcomes: [AtomicU64; 4],
    pub frames_backfilled: AtomicU64,
    pub duration_buckets: [AtomicU64; BUCKETS],
    pub duration_sum_ns: AtomicU64,
}

/// One recent checkpoint. Written only by the process holding the CKPT lock, so records are
/// never written concurrently; `seq` is cleared first and set last so a reader can tell a
/// record being rewritten. (A checkpoint whose CKPT lock was busy is recorded without holding
/// it; two such records racing for one slot are told apart by `seq`.)
#[repr(C)]
pub struct CheckpointRecord {
    /// 1-based checkpoint number; 0 while empty or being written.
    pub seq: AtomicU64,
    pub started_unix_ns: AtomicU64,
    pub duration_ns: AtomicU64,
    /// Time spent waiting for busy locks, whether or not they were granted in the end.
    pub waited_ns: AtomicU64,
    pub pid: AtomicU32,
    /// A [`Mode`].
    pub mode: AtomicU32,
    /// A [`ModeSource`].
    pub mode_source: AtomicU32,
    /// An [`Outcome`].
    pub outcome: AtomicU32,
    /// The triple the application was told: `busy` (0 or 1), `log` and `checkpointed`
    /// (`i32` values stored as `u32`; -1 when the checkpoint lock was busy).
    pub busy: AtomicU32,
    pub log: AtomicU32,
    pub checkpointed: AtomicU32,
    /// `mxFrame` and `nBackfill` when the backfill ended, before any reset of the WAL (a
    /// TRUNCATE that says `(0, 0, 0)` shows here how many frames it copied).
    pub wal_frames: AtomicU32,
    pub backfilled_frames: AtomicU32,
    /// Frames this checkpoint copied into the database.
    pub frames_moved: AtomicU32,
    /// First lock slot found busy and waited for (granted in the end or not), or [`NO_SLOT`].
    pub waited_slot: AtomicU32,
    /// Lock slot found busy and never granted, which stopped the checkpoint, or [`NO_SLOT`].
    pub blocked_slot: AtomicU32,
    /// Read mark of the reader holding `blocked_slot` when it is a READ slot (for the restart
    /// step, which locks READ1..4 at once, the slot really held), else 0.
    pub blocked_read_mark: AtomicU32,
    /// Pid holding `blocked_slot`, when known, else 0.
    pub blocked_pid: AtomicU32,
}

pub const NO_SLOT: u32 = u32::MAX;

/// One connection's read lock. Claimed by a connection when it opens the database (CAS on
/// `pid` from 0 or from a dead pid) and released when it closes.
#[repr(C)]
pub struct ReaderEntry {
    pub pid: AtomicU32,
    /// 0 when no read lock is held, else 1 + the READ index (1 = READ0 … 5 = READ4).
    pub read_slot: AtomicU32,
    /// `aReadMark[i]` when the lock was taken: the last WAL frame this reader can see.
    pub read_mark: AtomicU32,
    pub _reserved: AtomicU32,
    /// When the read lock was taken; meaningful only while `read_slot` is not 0.
    pub since_unix_ns: AtomicU64,
}

/// The whole stats file.
#[repr(C)]
pub struct Region {
    pub header: Header,
    pub io: IoCounters,
    pub locks: [SlotCounters; SLOTS],
    pub checkpoints: [CheckpointCounters; MODES],
    pub recent: [CheckpointRecord; RECENT],
    pub readers: [ReaderEntry; READERS],
}

/// Size of a version-2 stats file in bytes.
pub const REGION_SIZE: usize = size_of::<Region>();

// The layout is an interface: pin it. A failing assertion here means the version must change.
const _: () = {
    assert!(offset_of!(Region, header) == 0);
    assert!(offset_of!(Header, version) == 8);
    assert!(offset_of!(Header, db_dev) == 32);
    assert!(offset_of!(Header, db_path) == 56);
    assert!(size_of::<Header>() == 4152);
    assert!(offset_of!(Region, io) == 4152);
    assert!(size_of::<IoCounters>() == 96);
    assert!(size_of::<SlotCounters>() == 104);
    assert!(size_of::<CheckpointCounters>() == 112);
    assert!(size_of::<CheckpointRecord>() == 88);
    assert!(size_of::<ReaderEntry>() == 24);
    assert!(offset_of!(Region, locks) == 4248);
    assert!(offset_of!(Region, checkpoints) == 5080);
    assert!(offset_of!(Region, recent) == 5864);
    assert!(offset_of!(Region, readers) == 7272);
    assert!(REGION_SIZE == 8808);
    assert!(OUTCOME_NAMES.len() == Outcome::ALL.len());
    assert!(CHECKPOINT_MODE_NAMES.len() == Mode::ALL.len());
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_upper_bounds() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(10_000), 0);
        assert_eq!(bucket_index(10_001), 1);
        assert_eq!(bucket_index(2_000_000), 3);
        assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
    }

    fn t(busy: bool, log: i32, checkpointed: i32) -> Triple {
        Triple {
            busy,
            log,
            checkpointed,
        }
    }

    #[test]
    fn outcomes_follow_the_triple() {
        // No reader: every frame copied; TRUNCATE reports an empty WAL.
        assert_eq!(Outcome::of(t(false, 26, 26), 26), Outcome::Complete);
        assert_eq!(Outcome::of(t(false, 0, 0), 0), Outcome::Complete);
        // rqlite's "1 ok, 1031 pages, 1031 moved".
        assert_eq!(Outcome::of(t(true, 1031, 1031), 1031), Outcome::NotReset);
        // A reader pinned an earlier snapshot.
        assert_eq!(Outcome::of(t(true, 1031, 2), 2), Outcome::Partial);
        assert_eq!(Outcome::of(t(false, 40, 20), 20), Outcome::Partial);
        assert_eq!(Outcome::of(t(true, 40, 20), 0), Outcome::Busy);
        assert_eq!(Outcome::of(t(true, -1, -1), 0), Outcome::Busy);
        for o in Outcome::ALL {
            assert_eq!(Outcome::from_u32(o as u32), Some(o));
        }
        assert_eq!(Outcome::from_u32(4), None);
        assert_eq!(Mode::from_u32(Mode::Unknown as u32), Some(Mode::Unknown));
        assert_eq!(Mode::RestartOrTruncate.name(), "restart_or_truncate");
    }
}

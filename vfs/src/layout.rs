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
//! ignores it (and says so) rather than misreading it. `tests/fixtures/stats-v1.bin`, checked by
//! the unit tests in [`crate::snapshot`], catches accidental drift.

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64};

/// First 8 bytes of every stats file.
pub const MAGIC: [u8; 8] = *b"WALWATCH";
/// Layout version of this definition.
pub const VERSION: u32 = 1;
/// Longest database path a stats file can name (Linux `PATH_MAX`).
pub const MAX_PATH: usize = 4096;

/// `-shm` lock slots, as `xShmLock` numbers them.
pub const SLOT_NAMES: [&str; SLOTS] = [
    "WRITE", "CKPT", "RECOVER", "READ0", "READ1", "READ2", "READ3", "READ4",
];
pub const SLOTS: usize = 8;
pub const SLOT_WRITE: usize = 0;
pub const SLOT_CKPT: usize = 1;
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

/// Checkpoint modes, as inferred from the locks a checkpoint takes (see `shim::checkpoint`).
pub const CHECKPOINT_MODE_NAMES: [&str; 4] = ["passive", "full", "restart", "truncate"];
/// Checkpoint outcomes: every frame backfilled; some progress but not all; no progress.
pub const OUTCOME_NAMES: [&str; 3] = ["complete", "partial", "busy"];

/// Files whose syncs are counted separately.
pub const FSYNC_FILE_NAMES: [&str; 3] = ["db", "wal", "other"];

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
    /// Absolute path of the database, UTF-8 or not, `db_path_len` bytes.
    pub db_path: [u8; MAX_PATH],
}

/// I/O, sleep and WAL-size counters of one database.
#[repr(C)]
pub struct IoCounters {
    /// Gauge: size of `-wal` in bytes, as the shims last saw it.
    pub wal_bytes: AtomicU64,
    pub wal_write_bytes: AtomicU64,
    pub db_write_bytes: AtomicU64,
    /// Indexed like [`FSYNC_FILE_NAMES`].
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
    /// Indexed like [`OUTCOME_NAMES`].
    pub outcomes: [AtomicU64; 3],
    pub frames_backfilled: AtomicU64,
    pub duration_buckets: [AtomicU64; BUCKETS],
    pub duration_sum_ns: AtomicU64,
}

/// One recent checkpoint. Written only by the process holding the CKPT lock, so records are
/// never written concurrently; `seq` is cleared first and set last so a reader can tell a
/// record being rewritten.
#[repr(C)]
pub struct CheckpointRecord {
    /// 1-based checkpoint number; 0 while empty or being written.
    pub seq: AtomicU64,
    pub started_unix_ns: AtomicU64,
    pub duration_ns: AtomicU64,
    pub pid: AtomicU32,
    /// Index into [`CHECKPOINT_MODE_NAMES`].
    pub mode: AtomicU32,
    /// Index into [`OUTCOME_NAMES`].
    pub outcome: AtomicU32,
    /// First lock slot found busy during the checkpoint, or [`NO_SLOT`].
    pub blocked_slot: AtomicU32,
    /// Read mark of `blocked_slot` when it was a READ slot.
    pub blocked_read_mark: AtomicU32,
    /// `mxFrame` of the wal-index when the checkpoint ended (before any restart).
    pub wal_frames: AtomicU32,
    /// `nBackfill` when the checkpoint ended (before any restart).
    pub backfilled_frames: AtomicU32,
    /// Frames this checkpoint copied into the database.
    pub frames_moved: AtomicU32,
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
    /// When the read lock was taken (0 when none).
    pub since_unix_ns: AtomicU64,
}

/// The whole stats file.
#[repr(C)]
pub struct Region {
    pub header: Header,
    pub io: IoCounters,
    pub locks: [SlotCounters; SLOTS],
    pub checkpoints: [CheckpointCounters; 4],
    pub recent: [CheckpointRecord; RECENT],
    pub readers: [ReaderEntry; READERS],
}

/// Size of a version-1 stats file in bytes.
pub const REGION_SIZE: usize = size_of::<Region>();

// The layout is an interface: pin it. A failing assertion here means the version must change.
const _: () = {
    assert!(offset_of!(Region, header) == 0);
    assert!(size_of::<Header>() == 4128);
    assert!(offset_of!(Region, io) == 4128);
    assert!(size_of::<IoCounters>() == 96);
    assert!(size_of::<SlotCounters>() == 104);
    assert!(size_of::<CheckpointCounters>() == 104);
    assert!(size_of::<CheckpointRecord>() == 56);
    assert!(size_of::<ReaderEntry>() == 24);
    assert!(offset_of!(Region, locks) == 4224);
    assert!(offset_of!(Region, checkpoints) == 5056);
    assert!(offset_of!(Region, recent) == 5472);
    assert!(offset_of!(Region, readers) == 6368);
    assert!(REGION_SIZE == 7904);
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
}

//! What the shim records about one connection's use of one database: `-shm` lock traffic, the
//! reader table entry, and the checkpoints it runs. Safe code over the shared [`Region`]; the
//! wal-index comes as a [`LiveWalIndex`], so this logic does not touch raw memory.
//!
//! # How a checkpoint is recognized (see `sqlite3WalCheckpoint` and `walCheckpoint` in wal.c)
//! - Every checkpoint takes CKPT (slot 1) exclusive, alone (`ofst=1, n=1`); recovery takes
//!   CKPT together with RECOVER (`n=2`), so it is not mistaken for one.
//! - FULL, RESTART and TRUNCATE then take WRITE exclusive (through the busy handler). If WRITE
//!   stays busy, SQLite degrades to PASSIVE and the call returns `SQLITE_BUSY`.
//! - Once every frame is backfilled, RESTART and TRUNCATE take READ1..READ4 exclusive in one call
//!   (`ofst=4, n=4`), and TRUNCATE then truncates `-wal` to 0 bytes.
//! - The checkpoint ends when CKPT is released. We record it just *before* forwarding that
//!   unlock, while we still hold CKPT, so recent-checkpoint records are never written by two
//!   processes at once.
//!
//! A VFS sees locks, not the mode asked for: a RESTART or TRUNCATE that is blocked before its
//! restart step takes the same locks as FULL, and is recorded as `full`.

use crate::layout::*;
use crate::wal_index::{LiveWalIndex, WalIndex};
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const MODE_PASSIVE: usize = 0;
const MODE_FULL: usize = 1;
const MODE_RESTART: usize = 2;
const MODE_TRUNCATE: usize = 3;
const OUTCOME_COMPLETE: u32 = 0;
const OUTCOME_PARTIAL: u32 = 1;
const OUTCOME_BUSY: u32 = 2;
/// First of the four slots a restart locks together (READ1).
const SLOT_READ1: usize = SLOT_READ0 + 1;

/// Per-connection recording state, kept in the shim's file object of a main database.
pub(crate) struct Recorder {
    region: &'static Region,
    /// Since when this connection holds each slot (for hold-time histograms).
    held_since: [Option<Instant>; SLOTS],
    /// This connection's row in the reader table, if it got one.
    reader_entry: Option<&'static ReaderEntry>,
    checkpoint: Option<Checkpoint>,
}

struct Checkpoint {
    started: Instant,
    started_unix_ns: u64,
    mode: usize,
    start: Option<WalIndex>,
    /// The header when the restart lock (READ1..4) was granted: all frames backfilled.
    at_restart: Option<WalIndex>,
    write_busy: bool,
    restart_busy: bool,
    blocked_slot: Option<usize>,
    blocked_read_mark: u32,
    truncations_at_start: u64,
}

/// A `-shm` lock request as `xShmLock` receives it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ShmLock {
    pub offset: usize,
    pub count: usize,
    pub exclusive: bool,
}

impl ShmLock {
    fn slots(self) -> std::ops::Range<usize> {
        self.offset.min(SLOTS)..(self.offset + self.count).min(SLOTS)
    }
    fn mode(self) -> usize {
        if self.exclusive {
            EXCLUSIVE
        } else {
            SHARED
        }
    }
    fn is(self, offset: usize, count: usize) -> bool {
        self.offset == offset && self.count == count
    }
}

pub(crate) fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The Unix time of a monotonic instant, from one (Instant, Unix time) pair taken when the first
/// database was opened: turns the clock read a lock already makes into a reader's start time,
/// instead of reading the wall clock again on every read transaction. It is off only by as much
/// as the wall clock was stepped since; reader ages are shown in seconds.
fn unix_ns_at(instant: Instant) -> u64 {
    static ANCHOR: std::sync::OnceLock<(Instant, u64)> = std::sync::OnceLock::new();
    let (anchor, anchor_unix) = *ANCHOR.get_or_init(|| (Instant::now(), unix_now_ns()));
    let since_anchor = instant.saturating_duration_since(anchor).as_nanos() as u64;
    anchor_unix.saturating_add(since_anchor)
}

fn elapsed_ns(since: Instant) -> u64 {
    since.elapsed().as_nanos().min(u64::MAX as u128) as u64
}

impl Recorder {
    /// Starts recording a connection; claims a reader-table row for it.
    pub(crate) fn new(region: &'static Region) -> Self {
        unix_ns_at(Instant::now()); // sets the anchor here, at open time, not on the I/O path
        let reader_entry = claim_reader_entry(region);
        if reader_entry.is_none() {
            region.io.reader_table_overflows.fetch_add(1, Relaxed);
        }
        Self {
            region,
            held_since: [None; SLOTS],
            reader_entry,
            checkpoint: None,
        }
    }

    pub(crate) fn region(&self) -> &'static Region {
        self.region
    }

    /// A lock request was granted.
    pub(crate) fn locked(&mut self, lock: ShmLock, wal: LiveWalIndex) {
        let now = Instant::now();
        for slot in lock.slots() {
            self.region.locks[slot].acquired[lock.mode()].fetch_add(1, Relaxed);
            self.held_since[slot] = Some(now);
        }
        if lock.exclusive && lock.is(SLOT_CKPT, 1) {
            let start = wal.header();
            if let Some(h) = start {
                self.region.io.page_size.store(h.page_size, Relaxed);
            }
            self.checkpoint = Some(Checkpoint {
                started: now,
                started_unix_ns: unix_ns_at(now),
                mode: MODE_PASSIVE,
                start,
                at_restart: None,
                write_busy: false,
                restart_busy: false,
                blocked_slot: None,
                blocked_read_mark: 0,
                truncations_at_start: self.region.io.wal_truncations.load(Relaxed),
            });
        } else if let Some(ckpt) = &mut self.checkpoint {
            if lock.exclusive && lock.is(SLOT_WRITE, 1) {
                ckpt.mode = ckpt.mode.max(MODE_FULL);
            } else if lock.exclusive && lock.is(SLOT_READ1, 4) {
                ckpt.mode = ckpt.mode.max(MODE_RESTART);
                ckpt.at_restart = wal.header();
            }
        }
        if !lock.exclusive && lock.count == 1 && (SLOT_READ0..SLOTS).contains(&lock.offset) {
            if let Some(entry) = self.reader_entry {
                let read_index = lock.offset - SLOT_READ0;
                let mark = wal.read_mark(read_index).unwrap_or(0);
                entry.read_mark.store(mark, Relaxed);
                entry.since_unix_ns.store(unix_ns_at(now), Relaxed);
                entry.read_slot.store(read_index as u32 + 1, Release);
            }
        }
    }

    /// A lock request returned `SQLITE_BUSY`.
    pub(crate) fn busy(&mut self, lock: ShmLock, wal: LiveWalIndex) {
        for slot in lock.slots() {
            self.region.locks[slot].busy[lock.mode()].fetch_add(1, Relaxed);
        }
        let Some(ckpt) = &mut self.checkpoint else {
            return;
        };
        if !lock.exclusive {
            return;
        }
        if lock.is(SLOT_WRITE, 1) {
            ckpt.mode = ckpt.mode.max(MODE_FULL);
            ckpt.write_busy = true;
        } else if lock.is(SLOT_READ1, 4) {
            ckpt.mode = ckpt.mode.max(MODE_RESTART);
            ckpt.restart_busy = true;
        }
        if ckpt.blocked_slot.is_none() {
            ckpt.blocked_slot = Some(lock.offset.min(SLOTS - 1));
            if lock.count == 1 && (SLOT_READ0..SLOTS).contains(&lock.offset) {
                ckpt.blocked_read_mark = wal.read_mark(lock.offset - SLOT_READ0).unwrap_or(0);
            }
        }
    }

    /// Called just before an unlock is forwarded (the lock is still held).
    pub(crate) fn unlocking(&mut self, lock: ShmLock, wal: LiveWalIndex) {
        if lock.slots().contains(&SLOT_CKPT) {
            if let Some(ckpt) = self.checkpoint.take() {
                self.finish_checkpoint(ckpt, wal.header());
            }
        }
        let now = Instant::now();
        for slot in lock.slots() {
            if let Some(since) = self.held_since[slot].take() {
                let ns = now
                    .saturating_duration_since(since)
                    .as_nanos()
                    .min(u64::MAX as u128) as u64;
                let counters = &self.region.locks[slot];
                counters.hold_buckets[bucket_index(ns)].fetch_add(1, Relaxed);
                counters.hold_sum_ns.fetch_add(ns, Relaxed);
            }
        }
        if !lock.exclusive && lock.count == 1 && (SLOT_READ0..SLOTS).contains(&lock.offset) {
            if let Some(entry) = self.reader_entry {
                entry.read_slot.store(0, Release);
                entry.since_unix_ns.store(0, Relaxed);
            }
        }
    }

    fn finish_checkpoint(&self, mut ckpt: Checkpoint, end: Option<WalIndex>) {
        let region = self.region;
        let duration_ns = elapsed_ns(ckpt.started);
        // After a TRUNCATE the header is already reset to an empty WAL: the state that tells
        // what the checkpoint achieved is the one seen when the restart lock was granted.
        let last = ckpt.at_restart.or(end).unwrap_or_default();
        let start_backfill = ckpt.start.map_or(0, |h| h.n_backfill);
        let frames_moved = last.n_backfill.saturating_sub(start_backfill);
        if ckpt.at_restart.is_some()
            && region.io.wal_truncations.load(Relaxed) != ckpt.truncations_at_start
        {
            ckpt.mode = MODE_TRUNCATE;
        }
        let all_backfilled = last.n_backfill >= last.mx_frame;
        let outcome = if all_backfilled && !ckpt.write_busy && !ckpt.restart_busy {
            OUTCOME_COMPLETE
        } else if frames_moved > 0 || all_backfilled {
            OUTCOME_PARTIAL
        } else {
            OUTCOME_BUSY
        };

        let counters = &region.checkpoints[ckpt.mode];
        counters.outcomes[outcome as usize].fetch_add(1, Relaxed);
        counters
            .frames_backfilled
            .fetch_add(frames_moved as u64, Relaxed);
        counters.duration_buckets[bucket_index(duration_ns)].fetch_add(1, Relaxed);
        counters.duration_sum_ns.fetch_add(duration_ns, Relaxed);

        // We hold CKPT, so no other process writes a record now; `seq` is cleared first and
        // published last so readers can skip a record being rewritten.
        let seq = region.io.checkpoints.fetch_add(1, Relaxed) + 1;
        let record = &region.recent[(seq as usize - 1) % RECENT];
        record.seq.store(0, Release);
        record.started_unix_ns.store(ckpt.started_unix_ns, Relaxed);
        record.duration_ns.store(duration_ns, Relaxed);
        record.pid.store(std::process::id(), Relaxed);
        record.mode.store(ckpt.mode as u32, Relaxed);
        record.outcome.store(outcome, Relaxed);
        record
            .blocked_slot
            .store(ckpt.blocked_slot.map_or(NO_SLOT, |s| s as u32), Relaxed);
        record
            .blocked_read_mark
            .store(ckpt.blocked_read_mark, Relaxed);
        record.wal_frames.store(last.mx_frame, Relaxed);
        record.backfilled_frames.store(last.n_backfill, Relaxed);
        record.frames_moved.store(frames_moved, Relaxed);
        record.seq.store(seq, Release);
    }

    /// The connection is closing: give back its reader-table row.
    pub(crate) fn close(&mut self) {
        if let Some(entry) = self.reader_entry.take() {
            entry.read_slot.store(0, Relaxed);
            entry.since_unix_ns.store(0, Relaxed);
            entry.pid.store(0, Release);
        }
    }
}

/// Claims a free row of the reader table, or one left by a process that died. Runs when a
/// database is opened, never on the I/O path.
fn claim_reader_entry(region: &'static Region) -> Option<&'static ReaderEntry> {
    let me = std::process::id();
    let free = region
        .readers
        .iter()
        .find(|e| e.pid.compare_exchange(0, me, Relaxed, Relaxed).is_ok());
    let entry = free.or_else(|| {
        region.readers.iter().find(|e| {
            let owner = e.pid.load(Relaxed);
            owner != me
                && !crate::process_alive(owner)
                && e.pid.compare_exchange(owner, me, Relaxed, Relaxed).is_ok()
        })
    })?;
    entry.read_slot.store(0, Relaxed);
    entry.since_unix_ns.store(0, Relaxed);
    Some(entry)
}

//! What the shim records about one connection's use of one database: `-shm` lock traffic, the
//! reader table entry, and the checkpoints it runs. Safe code over the shared [`Region`]; the
//! wal-index comes as a [`LiveWalIndex`], so this logic does not touch raw memory.
//!
//! # What a checkpoint record says (the vocabulary is defined in [`crate::layout`])
//! Each record holds the `(busy, log, checkpointed)` triple that `PRAGMA wal_checkpoint` (or
//! `sqlite3_wal_checkpoint_v2`) told the application, and an outcome that is a function of it:
//!
//! | outcome     | triple the application saw               | what happened                          |
//! |-------------|------------------------------------------|----------------------------------------|
//! | `complete`  | `(0, N, N)`; TRUNCATE `(0, 0, 0)`        | every frame copied (and RESTART/TRUNCATE reset the WAL) |
//! | `not_reset` | `(1, N, N)`                              | every frame copied, the WAL not reset: a reader still uses it (RESTART/TRUNCATE), or FULL never got the write lock |
//! | `partial`   | `(1, N, M<N)`; PASSIVE `(0, N, M<N)`     | some frames copied by this checkpoint, not all: a reader pins an older snapshot |
//! | `busy`      | as partial with no frame copied; `(1, -1, -1)` | no frame copied (or another checkpoint held the checkpoint lock) |
//!
//! A lock found busy and then granted is *waiting*, not failure: the record's `waited_ns` and
//! `waited_slot` say how long and on what (a FULL that waited 0.5 s for a writer and returned
//! `(0, 26, 26)` is `complete`). Only a lock never granted names `blocked_slot`, with the
//! blocking reader's read mark and pid: for the restart step, which locks READ1..READ4 in one
//! call, the slot really held is found in the reader table, or in `/proc/locks` for processes
//! that do not use walwatch (read once, when a checkpoint ends stopped by a lock; never on the
//! I/O path).
//!
//! # How a checkpoint is recognized (see `sqlite3WalCheckpoint` and `walCheckpoint` in wal.c)
//! - Every checkpoint takes CKPT (slot 1) exclusive, alone (`ofst=1, n=1`), without the busy
//!   handler; recovery takes CKPT together with RECOVER (`n=2`), so it is not mistaken for one.
//!   CKPT found busy is a checkpoint that could not start: SQLite returns `(1, -1, -1)`.
//! - FULL, RESTART and TRUNCATE then take WRITE exclusive (through the busy handler). If WRITE
//!   stays busy, SQLite degrades to PASSIVE and the call returns `SQLITE_BUSY`.
//! - Backfilling past a reader's mark needs READ(i) exclusive (busy handler) for each reader
//!   slot; one never granted caps the copy at that reader's mark.
//! - Once every frame is backfilled, RESTART and TRUNCATE take READ1..READ4 exclusive in one call
//!   (`ofst=4, n=4`), and TRUNCATE then resets the header and truncates `-wal` to 0 bytes.
//! - SQLite sets the triple, releases WRITE, then CKPT. The triple is read from the wal-index
//!   when WRITE is released (while it is still held, nothing else can change it), or, for a
//!   checkpoint without WRITE, when CKPT is released: `nBackfill` is final by then (it is not
//!   yet at `SQLITE_FCNTL_CKPT_DONE`).
//!
//! # The mode, and its limits
//! A VFS sees locks, not the mode asked for. But every `PRAGMA wal_checkpoint(MODE)` reaches
//! the database file's `xFileControl` as `SQLITE_FCNTL_PRAGMA` when it is prepared: the mode
//! asked is remembered there (the file control's result is never changed) and used by the
//! connection's next checkpoint if the locks agree with it; another pragma forgets it. Without
//! it (`sqlite3_wal_checkpoint_v2`, apsw's `wal_checkpoint()`, auto-checkpoints, an attached
//! database checkpointed by an unqualified `PRAGMA wal_checkpoint`, which only the main
//! database's file hears; a re-run prepared pragma is re-prepared by SQLite, so it is heard)
//! the mode is what the locks prove, and labels say what cannot be told apart: `passive` (no
//! write lock tried: PASSIVE, auto-checkpoints), `full` (write lock held, every frame copied, no
//! restart step), `restart`/`truncate` (restart step granted; the WAL truncated or not),
//! `restart_or_truncate` (restart step refused), `full_restart_or_truncate` (write lock refused,
//! or frames left), `unknown` (CKPT busy). The record's `mode_source` says `pragma` or `locks`.
//! For a PASSIVE checkpoint racing a writer, `log` is the WAL's size when the checkpoint took its
//! lock; SQLite may have read it a few microseconds later.
//!
//! # What a lock costs (the hot path)
//! A lock granted or released on one slot outside a checkpoint (every lock of a read or write
//! transaction) costs a few relaxed atomic adds and plain stores: no system call, no
//! allocation, no lock, and where the CPU's counter is the tick clock (`clock.rs`) no call at
//! all but the wrapped VFS's. Before a lock is forwarded, [`Recorder::locking_one`] only
//! remembers it, so that nothing but the file's state pointer lives across the wrapped call;
//! [`Recorder::lock_granted`] records it after. It and [`Recorder::unlocking_unmarked`] and
//! [`Recorder::unlocking_plain`] are straight-line code with no panic in them (slots are
//! reduced modulo `SLOTS`, arithmetic wraps, nothing is unwrapped); the rarer work (a sampled
//! hold, a checkpoint starting, a long hold, a lock granted after a busy one) is left to
//! [`Recorder::lock_follow_up`] and [`Recorder::unlocking_one`], each in a guard.
//! - every `xShmLock` is counted (`acquired`, one add per slot);
//! - hold times are *sampled*: one hold in [`HOLD_SAMPLE`], picked at random (a per-connection
//!   xorshift, so no periodic workload can alias with it), is timed with the monotonic clock
//!   (from the CPU's counter, re-anchored on `CLOCK_MONOTONIC` at least once a second; else read
//!   as an integer: no `Instant`/`Duration` arithmetic) at grant and release, and recorded with
//!   weight `HOLD_SAMPLE` (its bucket gets `HOLD_SAMPLE`, the sum `HOLD_SAMPLE × ns`). The
//!   histograms' count and sum therefore estimate every hold, without bias; quantiles are those
//!   of the sample;
//! - exclusive holds of WRITE, CKPT and RECOVER (the holds that make other connections wait;
//!   exclusive READ locks are a reader updating a read mark, or a checkpoint's steps, whose
//!   duration the checkpoint record has) are also stamped with the tick clock at grant and
//!   checked at release: every exclusive hold of at least `long_hold_ns` (eight kernel ticks,
//!   and at least 10 ms) is recorded exactly once, with weight 1 (timed precisely if it was
//!   sampled, else from its ticks: the counter's rate, or to within one kernel tick); shorter
//!   ones are estimated as above. Each hold's expected weight is 1 either way;
//! - a read transaction stamps its reader-table row with the tick clock turned into Unix time
//!   (the counter's rate and an anchor, or the coarse clock and an offset taken once): reader
//!   ages are shown in seconds, and a long read transaction is found there whether or not its
//!   hold was sampled. Whether the connection is in a read transaction is the row's
//!   `read_slot` (no flag of its own);
//! - what a write transaction appended to `-wal` is read from the wal-index header when it
//!   releases the write lock (frames since it took the lock, and the WAL header if it started
//!   the WAL afresh): the shim does not wrap `-wal` writes at all. (In `locking_mode=EXCLUSIVE`
//!   SQLite keeps the wal-index in heap memory and takes no `-shm` locks; such a database's
//!   `wal_write_bytes` stays 0, and the sidecar still sees the `-wal` file's size.)
//!
//! What each part costs, in instructions per transaction, is measured by `bench/callgrind.sh`
//! (README, "The shim's overhead").
//!
//! Checkpoints (rare) keep the precise clock (`Instant`) for their start, duration and waits,
//! and every lock call made during one is timed, as before.
//!
//! # Lock counters mean the same on every build
//! `shm_lock_busy_total` counts one per failed attempt the application's busy handler saw. On
//! `SQLITE_ENABLE_SETLK_TIMEOUT` builds SQLite may try a lock twice in one busy-handler round
//! (`BEGIN IMMEDIATE` first tries WRITE through `sqlite3WalWriteLock`, then again in
//! `sqlite3WalBeginWriteTransaction`): a busy on the same lock as this connection's previous
//! busy, with no busy-handler sleep (`xSleep`), no grant of it and no end of a read transaction
//! in between, is the same round and is not counted again. A busy handler that sleeps without the
//! VFS's `xSleep` (a host-language callback) makes such repeats look like one round.

use super::clock::{self, Ticks};
use crate::layout::*;
use crate::wal_index::{LiveWalIndex, WalFrames, WalIndex};
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::time::{Duration, Instant};

/// First of the four slots a restart locks together (READ1).
const SLOT_READ1: usize = SLOT_READ0 + 1;
/// A lock call that took this long blocked in the kernel (a `SQLITE_ENABLE_SETLK_TIMEOUT`
/// build's blocking lock): that time is waiting.
const BLOCKED_CALL: Duration = Duration::from_millis(1);

/// One in this many lock holds is timed (see the module header).
pub(crate) const HOLD_SAMPLE: u64 = 64;

/// An exclusive hold at least this long (by the coarse clock) is always recorded, with weight 1:
/// eight ticks of the coarse clock (`clock_getres`), and at least 10 ms. Taken once.
fn long_hold_ns() -> u64 {
    static LONG: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LONG.get_or_init(|| {
        let tick = clock::coarse_tick_ns().unwrap_or(10_000_000);
        tick.saturating_mul(8).max(10_000_000)
    })
}

/// Unix time minus monotonic time, in ns, taken once (when the first database is opened):
/// turns a monotonic reading into a Unix time. Off only by as much as the wall clock was stepped
/// since; reader ages are shown in seconds.
fn unix_offset_ns() -> u64 {
    static OFFSET: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| unix_now_ns().wrapping_sub(clock::precise()))
}

/// What [`Recorder::lock_granted`] leaves to [`Recorder::lock_follow_up`], as bits.
pub(crate) struct FollowUp;

impl FollowUp {
    /// This hold is one of the sampled ones.
    pub(crate) const SAMPLE: u8 = 1;
    /// CKPT taken exclusive: a checkpoint may start.
    pub(crate) const CHECKPOINT: u8 = 2;
}

/// The lock a connection is forwarding on the fast path, recorded as if granted
/// ([`Recorder::locking_one`]) until the wrapped VFS answers.
#[derive(Clone, Copy, Default)]
struct Pending {
    slot: usize,
    exclusive: bool,
}

/// Per-connection recording state, kept in the shim's file object of a main database.
pub(crate) struct Recorder {
    region: &'static Region,
    /// The hot path's clock (ticks; see `clock.rs`).
    ticks: Ticks,
    /// The one-slot lock being forwarded on the fast path.
    pending: Pending,
    /// One bit per slot whose release needs more than a count: its hold is sampled (timed in
    /// `held_since`) or stamped (`held_coarse`).
    marked: u8,
    /// Per slot whose hold is sampled: the precise clock (ns) when this connection took it;
    /// else 0.
    held_since: [u64; SLOTS],
    /// Per slot held exclusive (WRITE, CKPT, RECOVER): the tick clock when this connection
    /// took it; else 0.
    held_ticks: [u64; SLOTS],
    /// The wal-index's frames when this connection took the write lock.
    /// (All zero when unknown.)
    write_start: WalFrames,
    /// Locks to grant before the next sampled one (1 = the next one).
    sample_countdown: u32,
    /// xorshift state that draws the gaps between sampled holds (never 0).
    sample_rng: u64,
    /// This connection's row in the reader table, if it got one.
    reader_entry: Option<&'static ReaderEntry>,
    checkpoint: Option<Checkpoint>,
    /// The mode of the last `PRAGMA wal_checkpoint` prepared on this connection, until its
    /// next checkpoint or pragma.
    requested: Option<Mode>,
    /// The last busy lock counted, while it may still be the same busy-handler round.
    last_busy: Option<ShmLock>,
}

/// A lock found busy and not (yet) granted.
#[derive(Clone, Copy)]
struct Wait {
    lock: ShmLock,
    since: Instant,
    /// `aReadMark` of the slot when it is one READ slot.
    read_mark: u32,
}

struct Checkpoint {
    started: Instant,
    started_unix_ns: u64,
    requested: Option<Mode>,
    start: Option<WalIndex>,
    write_tried: bool,
    write_granted: bool,
    restart_tried: bool,
    restart_granted: bool,
    /// The header when the restart lock (READ1..4) was granted: all frames backfilled.
    at_restart: Option<WalIndex>,
    /// The header when WRITE was released: what SQLite told the application.
    at_write_release: Option<WalIndex>,
    /// The header when the write lock was given up (SQLite then read its own).
    after_write_refused: Option<WalIndex>,
    waiting: Option<Wait>,
    waited_ns: u64,
    waited_slot: Option<usize>,
    /// The last lock given up.
    blocked: Option<Wait>,
    truncations_at_start: u64,
}

impl Checkpoint {
    fn new(
        now: Instant,
        requested: Option<Mode>,
        start: Option<WalIndex>,
        region: &Region,
    ) -> Self {
        Self {
            started: now,
            started_unix_ns: unix_ns_at(now),
            requested,
            start,
            write_tried: false,
            write_granted: false,
            restart_tried: false,
            restart_granted: false,
            at_restart: None,
            at_write_release: None,
            after_write_refused: None,
            waiting: None,
            waited_ns: 0,
            waited_slot: None,
            blocked: None,
            truncations_at_start: region.io.wal_truncations.load(Relaxed),
        }
    }

    /// A lock event (`event`, or the end of the checkpoint when `None`) while a lock was found
    /// busy: the same lock granted ends a wait; anything else means SQLite gave the wait up.
    fn settle_wait(
        &mut self,
        event: Option<ShmLock>,
        granted: bool,
        now: Instant,
        wal: LiveWalIndex,
    ) {
        let Some(wait) = self.waiting else { return };
        if event.is_some_and(|e| e.same(wait.lock)) {
            if granted {
                self.waited_ns += ns_between(wait.since, now);
                self.waiting = None;
            }
            return;
        }
        self.waited_ns += ns_between(wait.since, now);
        self.waiting = None;
        self.blocked = Some(wait);
        if wait.lock.is(SLOT_WRITE, 1) {
            self.after_write_refused = wal.header();
        }
    }
}

fn ns_between(since: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(since)
        .as_nanos()
        .min(u64::MAX as u128) as u64
}

/// A `-shm` lock request as `xShmLock` receives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    fn same(self, other: ShmLock) -> bool {
        self == other
    }
    fn overlaps(self, other: ShmLock) -> bool {
        let (a, b) = (self.slots(), other.slots());
        a.start < b.end && b.start < a.end
    }
    /// An exclusive lock on WRITE, CKPT or RECOVER: the holds that make other connections wait
    /// (exclusive READ locks are a reader updating a read mark, or a checkpoint's steps).
    #[inline]
    fn blocks_others(self) -> bool {
        self.exclusive && self.offset < SLOT_READ0
    }
    /// One READ slot (READ0..READ4), by its READ index.
    fn read_index(self) -> Option<usize> {
        (self.count == 1 && (SLOT_READ0..SLOTS).contains(&self.offset))
            .then(|| self.offset - SLOT_READ0)
    }
}

pub(crate) fn unix_now_ns() -> u64 {
    crate::unix_now_ns()
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

/// The mode `PRAGMA wal_checkpoint(arg)` runs, exactly as `sqlite3Pragma` (pragma.c) decides
/// it: "full", "restart" or "truncate" in any case, anything else (or no argument) PASSIVE.
pub(crate) fn pragma_mode(arg: Option<&[u8]>) -> Mode {
    match arg {
        Some(a) if a.eq_ignore_ascii_case(b"full") => Mode::Full,
        Some(a) if a.eq_ignore_ascii_case(b"restart") => Mode::Restart,
        Some(a) if a.eq_ignore_ascii_case(b"truncate") => Mode::Truncate,
        _ => Mode::Passive,
    }
}

/// What the locks of a checkpoint prove about its mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    pub ckpt_busy: bool,
    pub write_tried: bool,
    pub write_granted: bool,
    pub restart_tried: bool,
    pub restart_granted: bool,
    pub truncated: bool,
    pub all_copied: bool,
}

impl Seen {
    /// The most the locks tell.
    pub(crate) fn inferred(self) -> Mode {
        if self.ckpt_busy {
            Mode::Unknown
        } else if !self.write_tried {
            Mode::Passive
        } else if self.restart_granted {
            if self.truncated {
                Mode::Truncate
            } else {
                Mode::Restart
            }
        } else if self.restart_tried {
            Mode::RestartOrTruncate
        } else if self.write_granted && self.all_copied {
            // RESTART and TRUNCATE always try the restart step once every frame is copied.
            Mode::Full
        } else {
            Mode::FullRestartOrTruncate
        }
    }

    /// The mode to record: the one asked, if the locks agree with it, else the inferred one.
    pub(crate) fn mode(self, requested: Option<Mode>) -> (Mode, ModeSource) {
        let inferred = self.inferred();
        let agrees = |m: Mode| match inferred {
            Mode::Unknown => true,
            Mode::RestartOrTruncate => matches!(m, Mode::Restart | Mode::Truncate),
            Mode::FullRestartOrTruncate => {
                matches!(m, Mode::Full | Mode::Restart | Mode::Truncate)
            }
            exact => m == exact,
        };
        match requested {
            Some(m) if agrees(m) => (m, ModeSource::Pragma),
            _ => (inferred, ModeSource::Locks),
        }
    }
}

/// Who holds a blocking lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Holder {
    pub pid: u32,
    /// READ index of the slot held, for READ slots.
    pub read_index: Option<usize>,
}

impl Recorder {
    /// Starts recording a connection; claims a reader-table row for it.
    pub(crate) fn new(region: &'static Region) -> Self {
        unix_ns_at(Instant::now()); // sets the anchor here, at open time, not on the I/O path
        let reader_entry = claim_reader_entry(region);
        if reader_entry.is_none() {
            region.io.reader_table_overflows.fetch_add(1, Relaxed);
        }
        // Any nonzero seed; connections differ by address and time.
        let seed = (region as *const Region as u64) ^ clock::precise().rotate_left(32) | 1;
        Self {
            region,
            ticks: Ticks::new(unix_offset_ns(), long_hold_ns()),
            pending: Pending::default(),
            marked: 0,
            held_since: [0; SLOTS],
            held_ticks: [0; SLOTS],
            write_start: WalFrames::default(),
            sample_countdown: 1,
            sample_rng: seed,
            reader_entry,
            checkpoint: None,
            requested: None,
            last_busy: None,
        }
    }

    pub(crate) fn region(&self) -> &'static Region {
        self.region
    }

    /// Whether a checkpoint is under way (lock calls are then timed).
    #[inline]
    pub(crate) fn checkpointing(&self) -> bool {
        self.checkpoint.is_some()
    }

    /// `SQLITE_FCNTL_PRAGMA` reached the database file: `PRAGMA <name>(<arg>)` is being
    /// prepared on this connection.
    pub(crate) fn pragma(&mut self, name: &[u8], arg: Option<&[u8]>) {
        self.requested = name
            .eq_ignore_ascii_case(b"wal_checkpoint")
            .then(|| pragma_mode(arg));
    }

    /// Whether this connection's next lock or unlock of one slot can take the fast path: no
    /// checkpoint under way, no busy lock that a grant may follow.
    #[inline(always)]
    pub(crate) fn fast(&self) -> bool {
        self.checkpoint.is_none() && self.last_busy.is_none()
    }

    /// Whether the next lock on the fast path is a plain one: the tick clock is the TSC with
    /// its rate known, so that recording it (sampled or not) calls nothing.
    #[inline(always)]
    pub(crate) fn next_lock_is_plain(&self) -> bool {
        self.ticks.is_inline()
    }

    /// Before a lock on one slot is forwarded, on the fast path:
    /// remembers it, so that only the file pointer needs to live across the wrapped call (the
    /// smallest frame); [`Recorder::lock_granted`] follows if it is granted.
    #[inline(always)]
    pub(crate) fn locking_one(&mut self, slot: usize, exclusive: bool) {
        self.pending = Pending { slot, exclusive };
    }

    /// The lock [`Recorder::locking_one`] remembered was granted: counted, and the hold
    /// stamped (WRITE, CKPT, RECOVER exclusive: with the tick clock, and for WRITE the
    /// wal-index's frames, which no other writer can change now; a READ slot shared: the
    /// reader-table row). Straight-line code with no panic in it (see the module header).
    /// `plain` (a constant at each call) says [`Recorder::next_lock_is_plain`] held: then no
    /// clock is called. Returns the [`FollowUp`] bits for [`Recorder::lock_follow_up`] (0:
    /// nothing left to do).
    #[inline(always)]
    pub(crate) fn lock_granted(&mut self, wal: LiveWalIndex, plain: bool) -> u8 {
        let Pending { slot, exclusive } = self.pending;
        let slot = slot % SLOTS; // already in range: this only lets the compiler drop the checks
        self.region.locks[slot].acquired[exclusive as usize].fetch_add(1, Relaxed);
        let mut follow_up = 0;
        if exclusive {
            if slot < SLOT_READ0 {
                let now = if plain {
                    self.ticks.now_inline()
                } else {
                    self.ticks.now()
                };
                self.stamp_at(slot, now);
                if slot == SLOT_WRITE {
                    self.write_start = wal.frames();
                } else if slot == SLOT_CKPT {
                    follow_up = FollowUp::CHECKPOINT;
                }
            }
        } else if slot >= SLOT_READ0 {
            let since = if plain {
                self.ticks.unix_now_inline()
            } else {
                self.ticks.unix_now()
            };
            self.read_begins_at(slot - SLOT_READ0, wal, since);
        }
        self.sample_countdown = self.sample_countdown.wrapping_sub(1);
        if self.sample_countdown == 0 {
            follow_up |= FollowUp::SAMPLE;
        }
        follow_up
    }

    /// What [`Recorder::lock_granted`] left to do (`follow_up` is not 0): off the hot path.
    #[cold]
    #[inline(never)]
    pub(crate) fn lock_follow_up(&mut self, follow_up: u8, wal: LiveWalIndex) {
        let lock = self.pending_lock();
        if follow_up & FollowUp::SAMPLE != 0 {
            self.start_sample(lock.offset);
        }
        if follow_up & FollowUp::CHECKPOINT != 0 {
            self.locked_rare(lock, wal, None);
        }
    }

    /// The lock [`Recorder::locking_one`] remembered (if it was not granted, nothing was
    /// recorded of it).
    #[inline(always)]
    pub(crate) fn pending_lock(&self) -> ShmLock {
        ShmLock {
            offset: self.pending.slot,
            count: 1,
            exclusive: self.pending.exclusive,
        }
    }

    /// A lock request was granted: any number of slots, or during a checkpoint (no panic).
    /// Returns whether [`Recorder::locked_rare`] must run too (a checkpoint starts or is under
    /// way).
    pub(crate) fn locked(&mut self, lock: ShmLock, wal: LiveWalIndex) -> bool {
        let sampled = {
            self.sample_countdown = self.sample_countdown.wrapping_sub(1);
            self.sample_countdown == 0
        };
        for slot in lock.slots() {
            self.region.locks[slot].acquired[lock.mode()].fetch_add(1, Relaxed);
            if sampled {
                self.start_sample(slot);
            }
            if lock.blocks_others() {
                self.stamp(slot);
                if slot == SLOT_WRITE {
                    self.write_start = wal.frames();
                }
            }
        }
        if !lock.exclusive {
            if let Some(read_index) = lock.read_index() {
                self.read_begins(read_index, wal);
            }
        }
        if self.last_busy.is_some() {
            self.granted_after_busy(lock);
        }
        self.checkpoint.is_some() || (lock.exclusive && lock.is(SLOT_CKPT, 1))
    }

    /// A read transaction begins on READ`read_index`: this connection's reader-table row says
    /// since when (tick clock, as Unix time) and at which read mark.
    #[inline(always)]
    fn read_begins(&mut self, read_index: usize, wal: LiveWalIndex) {
        let since = self.ticks.unix_now();
        self.read_begins_at(read_index, wal, since);
    }

    /// [`Recorder::read_begins`] at Unix time `since` (ns).
    #[inline(always)]
    fn read_begins_at(&mut self, read_index: usize, wal: LiveWalIndex, since: u64) {
        if let Some(entry) = self.reader_entry {
            let mark = wal.read_mark(read_index);
            entry.read_mark.store(mark, Relaxed);
            entry.since_unix_ns.store(since, Relaxed);
            entry.read_slot.store(read_index as u32 + 1, Release);
        }
    }

    /// A lock that overlaps the last busy one was granted: a new busy-handler round may follow.
    #[cold]
    #[inline(never)]
    fn granted_after_busy(&mut self, lock: ShmLock) {
        if self.last_busy.is_some_and(|b| b.overlaps(lock)) {
            self.last_busy = None;
        }
    }

    /// This hold of `slot` is one of the sampled ones: timed with the monotonic clock (from
    /// the TSC where it is inline; else, or when its anchor is stale, read, and the TSC
    /// re-anchored on the reading).
    #[cold]
    #[inline(never)]
    pub(crate) fn start_sample(&mut self, slot: usize) {
        let slot = slot % SLOTS;
        self.refill_sample_countdown();
        let now = match self.ticks.mono_now_fresh() {
            Some(now) => now,
            None => {
                let now = clock::precise();
                self.ticks.refresh(now);
                now
            }
        };
        self.held_since[slot] = now.max(1);
        self.marked |= 1 << slot;
    }

    /// An exclusive hold of WRITE, CKPT or RECOVER: stamped with the tick clock, so that every
    /// long one is recorded (see the module header).
    #[inline(always)]
    fn stamp(&mut self, slot: usize) {
        let now = self.ticks.now();
        self.stamp_at(slot, now);
    }

    /// [`Recorder::stamp`] at tick `now`.
    #[inline(always)]
    fn stamp_at(&mut self, slot: usize, now: u64) {
        let slot = slot % SLOTS;
        self.held_ticks[slot] = now.max(1);
        self.marked |= 1 << slot;
    }

    /// Draws the gap to the next sampled hold: uniformly from 1..=2·HOLD_SAMPLE−1 (mean
    /// HOLD_SAMPLE), so no periodic pattern of locks can alias with the sampling.
    fn refill_sample_countdown(&mut self) {
        let mut x = self.sample_rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.sample_rng = x;
        self.sample_countdown = 1 + (x % (2 * HOLD_SAMPLE - 1)) as u32;
    }

    /// One slot is released: records its hold if it was sampled or stamped (a marked slot).
    /// `now` is the precise clock, read at most once per unlock call (0 until then).
    #[inline(always)]
    fn release_slot(&mut self, slot: usize, wal: LiveWalIndex, now: &mut u64) {
        let slot = slot % SLOTS;
        if self.marked & (1 << slot) != 0 {
            self.release_marked(slot, wal, now);
        }
    }

    /// [`Recorder::release_slot`] of a marked slot: a sampled hold counts with weight
    /// `HOLD_SAMPLE` (or 1 if long), a stamped long one with weight 1, a stamped short one not
    /// at all (the sample estimates it).
    #[inline(always)] // into the unlock of a marked hold: one function frame
    fn release_marked(&mut self, slot: usize, wal: LiveWalIndex, now: &mut u64) {
        let slot = slot % SLOTS;
        self.marked &= !(1 << slot);
        let since = std::mem::take(&mut self.held_since[slot]);
        let stamped = std::mem::take(&mut self.held_ticks[slot]);
        if slot == SLOT_WRITE && stamped != 0 {
            self.write_ends(wal);
        }
        let long = if stamped != 0 {
            self.ticks.long_hold(stamped)
        } else {
            None
        };
        let (ns, weight) = if since != 0 {
            if *now == 0 {
                *now = self.ticks.mono_now_fresh().unwrap_or_else(clock::precise);
            }
            // A long hold counts once whether sampled or not; a short one is estimated.
            let weight = if long.is_some() { 1 } else { HOLD_SAMPLE };
            (now.saturating_sub(since), weight)
        } else if let Some(long_ns) = long {
            (long_ns, 1)
        } else {
            return;
        };
        self.record_hold(slot, ns, weight);
    }

    /// [`Recorder::locked`]'s part for a checkpoint's locks; `took` is how long the lock call
    /// blocked.
    #[inline(never)]
    pub(crate) fn locked_rare(&mut self, lock: ShmLock, wal: LiveWalIndex, took: Option<Duration>) {
        let now = Instant::now();
        if lock.exclusive && lock.is(SLOT_CKPT, 1) && !self.in_read_transaction() {
            let start = wal.header();
            if let Some(h) = start {
                self.region.io.page_size.store(h.page_size, Relaxed);
            }
            let requested = self.requested.take();
            self.checkpoint = Some(Checkpoint::new(now, requested, start, self.region));
        } else if let Some(ckpt) = &mut self.checkpoint {
            ckpt.settle_wait(Some(lock), true, now, wal);
            if let Some(took) = took.filter(|t| *t >= BLOCKED_CALL) {
                ckpt.waited_ns += took.as_nanos().min(u64::MAX as u128) as u64;
                ckpt.waited_slot.get_or_insert(lock.offset.min(SLOTS - 1));
            }
            if lock.exclusive && lock.is(SLOT_WRITE, 1) {
                ckpt.write_tried = true;
                ckpt.write_granted = true;
            } else if lock.exclusive && lock.is(SLOT_READ1, 4) {
                ckpt.restart_tried = true;
                ckpt.restart_granted = true;
                ckpt.at_restart = wal.header();
            }
        }
    }

    /// A lock request returned `SQLITE_BUSY`. `slept` says whether this thread's busy handler
    /// slept since its previous busy lock.
    pub(crate) fn busy(&mut self, lock: ShmLock, wal: LiveWalIndex, slept: bool) {
        // One busy per busy-handler round (see the module header).
        let same_round = !slept && self.last_busy == Some(lock);
        if !same_round {
            for slot in lock.slots() {
                self.region.locks[slot].busy[lock.mode()].fetch_add(1, Relaxed);
            }
        }
        self.last_busy = Some(lock);
        if !lock.exclusive {
            return;
        }
        let now = Instant::now();
        if lock.is(SLOT_CKPT, 1) && self.checkpoint.is_none() && !self.in_read_transaction() {
            // Another checkpoint holds CKPT: this one returns (1, -1, -1) at once.
            let mut ckpt = Checkpoint::new(now, self.requested.take(), wal.header(), self.region);
            ckpt.blocked = Some(Wait {
                lock,
                since: now,
                read_mark: 0,
            });
            self.finish_checkpoint(ckpt, None, true);
            return;
        }
        let Some(ckpt) = &mut self.checkpoint else {
            return;
        };
        ckpt.settle_wait(Some(lock), false, now, wal);
        if ckpt.waiting.is_none() {
            ckpt.waiting = Some(Wait {
                lock,
                since: now,
                read_mark: lock.read_index().map(|i| wal.read_mark(i)).unwrap_or(0),
            });
            ckpt.waited_slot.get_or_insert(lock.offset.min(SLOTS - 1));
        }
        if lock.is(SLOT_WRITE, 1) {
            ckpt.write_tried = true;
        } else if lock.is(SLOT_READ1, 4) {
            ckpt.restart_tried = true;
        }
    }

    /// The write lock is about to be released: what the transaction appended to `-wal`, from
    /// the wal-index header now and when the lock was taken (SQLite commits, and updates the
    /// header, before it releases the lock). The shim does not watch `-wal` writes.
    #[inline(always)]
    fn write_ends(&mut self, wal: LiveWalIndex) {
        let start = std::mem::take(&mut self.write_start);
        let end = wal.frames();
        let appended = start.appended_bytes(end);
        if appended != 0 {
            self.region.io.wal_write_bytes.fetch_add(appended, Relaxed);
        }
    }

    /// One slot is about to be released, outside a checkpoint (the lock is still held): the
    /// fast path (no panic). `slot` is below `SLOTS`.
    #[inline(always)]
    pub(crate) fn unlocking_one(&mut self, slot: usize, exclusive: bool, wal: LiveWalIndex) {
        let mut now = 0;
        self.release_slot(slot, wal, &mut now);
        if !exclusive && slot >= SLOT_READ0 {
            self.read_ends();
        }
    }

    /// The release of a marked `slot` (the lock still held), recorded if it is plain: not
    /// sampled, the tick clock inline, the stamped hold short, and for WRITE, frames appended to
    /// the WAL the transaction started in (no restart). Else returns false having changed
    /// nothing, and [`Recorder::unlocking_one`] records it. A plain release of a short hold
    /// leaves its time to the sample; only a write transaction's bytes are recorded.
    /// Straight-line code with no panic in it.
    #[inline(always)]
    pub(crate) fn unlocking_plain(&mut self, slot: usize, wal: LiveWalIndex) -> bool {
        let slot = slot % SLOTS;
        if self.held_since[slot] != 0
            || !self.ticks.is_inline()
            || self
                .ticks
                .now_inline()
                .saturating_sub(self.held_ticks[slot])
                >= self.ticks.long_ticks()
        {
            return false;
        }
        if slot == SLOT_WRITE {
            let start = self.write_start;
            let end = wal.frames();
            if end.salt != start.salt || start.mx_frame == 0 {
                return false;
            }
            self.write_start = WalFrames::default();
            // The WAL continued (checked above): only the frames, no header.
            let appended = start.appended_bytes(end);
            if appended != 0 {
                self.region.io.wal_write_bytes.fetch_add(appended, Relaxed);
            }
        }
        self.marked &= !(1 << slot);
        self.held_ticks[slot] = 0;
        true
    }

    /// One hold of `slot`, `ns` long, counted `weight` times.
    #[inline(always)]
    fn record_hold(&self, slot: usize, ns: u64, weight: u64) {
        let counters = &self.region.locks[slot % SLOTS];
        if let Some(bucket) = counters.hold_buckets.get(bucket_index(ns)) {
            bucket.fetch_add(weight, Relaxed);
        }
        counters
            .hold_sum_ns
            .fetch_add(ns.saturating_mul(weight), Relaxed);
    }

    /// Whether releasing `slot` needs [`Recorder::unlocking_one`] (its hold is sampled or
    /// stamped), rather than [`Recorder::unlocking_unmarked`].
    #[inline(always)]
    pub(crate) fn is_marked(&self, slot: usize) -> bool {
        self.marked & (1 << (slot % SLOTS)) != 0
    }

    /// [`Recorder::unlocking_one`] of a slot that is not marked, on the fast path (no busy
    /// lock pending): no clock, no call.
    #[inline(always)]
    pub(crate) fn unlocking_unmarked(&mut self, slot: usize, exclusive: bool) {
        if !exclusive && slot >= SLOT_READ0 {
            self.clear_reader_entry();
        }
    }

    /// Called just before an unlock is forwarded (the lock is still held), after
    /// [`Recorder::unlocking_in_checkpoint`] when a checkpoint is under way (no panic).
    pub(crate) fn unlocking(&mut self, lock: ShmLock, wal: LiveWalIndex) {
        let mut now = 0;
        for slot in lock.slots() {
            self.release_slot(slot, wal, &mut now);
        }
        if !lock.exclusive && lock.read_index().is_some() {
            self.read_ends();
        }
    }

    /// Whether this connection holds a READ slot shared (is in a read transaction), as its
    /// reader-table row says. Checkpoints never run inside one; `sqlite3_snapshot_recover`
    /// takes CKPT inside one and is no checkpoint. (Without a row, when the table is full,
    /// such a call is taken for a checkpoint.)
    fn in_read_transaction(&self) -> bool {
        self.reader_entry
            .is_some_and(|e| e.read_slot.load(Relaxed) != 0)
    }

    /// The end of a read transaction: also the end of a busy-handler round.
    #[inline(always)]
    fn read_ends(&mut self) {
        self.last_busy = None;
        self.clear_reader_entry();
    }

    /// This connection's reader-table row says it reads nothing (its other fields mean
    /// nothing while `read_slot` is 0).
    #[inline(always)]
    fn clear_reader_entry(&self) {
        if let Some(entry) = self.reader_entry {
            entry.read_slot.store(0, Release);
        }
    }

    /// [`Recorder::unlocking`]'s part for a checkpoint under way (the lock is still held).
    #[inline(never)]
    pub(crate) fn unlocking_in_checkpoint(&mut self, lock: ShmLock, wal: LiveWalIndex) {
        let now = Instant::now();
        if let Some(ckpt) = &mut self.checkpoint {
            ckpt.settle_wait(Some(lock), false, now, wal);
            if lock.exclusive && lock.is(SLOT_WRITE, 1) && ckpt.write_granted {
                ckpt.at_write_release = wal.header();
            }
        }
        if lock.slots().contains(&SLOT_CKPT) {
            if let Some(ckpt) = self.checkpoint.take() {
                self.finish_checkpoint(ckpt, Some(wal), false);
            }
        }
    }

    fn finish_checkpoint(&self, mut ckpt: Checkpoint, wal: Option<LiveWalIndex>, ckpt_busy: bool) {
        let region = self.region;
        let now = Instant::now();
        let live = wal.unwrap_or(LiveWalIndex::NONE);
        ckpt.settle_wait(None, false, now, live);
        let duration_ns = ns_between(ckpt.started, now);
        let end = wal.and_then(|w| w.header()).unwrap_or_default();
        let start = ckpt.start.unwrap_or_default();

        // The triple SQLite told the application.
        let (triple, before_reset) = if ckpt_busy {
            let t = Triple {
                busy: true,
                log: -1,
                checkpointed: -1,
            };
            (t, (start.mx_frame, start.n_backfill))
        } else {
            let (log, checkpointed) = match ckpt.at_write_release {
                Some(h) => (h.mx_frame, h.n_backfill),
                None => {
                    let seen = ckpt.after_write_refused.unwrap_or(start);
                    (seen.mx_frame.max(end.n_backfill), end.n_backfill)
                }
            };
            let write_refused = ckpt.write_tried && !ckpt.write_granted;
            let restart_refused = ckpt.restart_tried && !ckpt.restart_granted;
            let busy =
                write_refused || restart_refused || (ckpt.write_granted && checkpointed < log);
            let t = Triple {
                busy,
                log: log.min(i32::MAX as u32) as i32,
                checkpointed: checkpointed.min(i32::MAX as u32) as i32,
            };
            let before = ckpt
                .at_restart
                .map_or((log, checkpointed), |h| (h.mx_frame, h.n_backfill));
            (t, before)
        };
        let frames_moved = before_reset.1.saturating_sub(start.n_backfill);
        let seen = Seen {
            ckpt_busy,
            write_tried: ckpt.write_tried,
            write_granted: ckpt.write_granted,
            restart_tried: ckpt.restart_tried,
            restart_granted: ckpt.restart_granted,
            truncated: ckpt.restart_granted
                && region.io.wal_truncations.load(Relaxed) != ckpt.truncations_at_start,
            all_copied: triple.checkpointed >= triple.log,
        };
        let (mode, mode_source) = seen.mode(ckpt.requested);
        let outcome = Outcome::of(triple, frames_moved);
        let blocker = ckpt.blocked.map(|b| {
            let holder = holder_of(region, b.lock);
            let read_mark = match (b.lock.read_index(), holder.read_index) {
                (Some(_), _) => b.read_mark,
                (None, Some(i)) => live.read_mark(i),
                (None, None) => 0,
            };
            let slot = match holder.read_index {
                Some(i) if b.lock.is(SLOT_READ1, 4) => SLOT_READ0 + i,
                _ => b.lock.offset.min(SLOTS - 1),
            };
            (slot, read_mark, holder.pid)
        });

        let counters = &region.checkpoints[mode as usize];
        counters.outcomes[outcome as usize].fetch_add(1, Relaxed);
        counters
            .frames_backfilled
            .fetch_add(frames_moved as u64, Relaxed);
        counters.duration_buckets[bucket_index(duration_ns)].fetch_add(1, Relaxed);
        counters.duration_sum_ns.fetch_add(duration_ns, Relaxed);

        // We hold CKPT (or, for a checkpoint that could not take it, have a sequence number of
        // our own), so no other process writes this record now; `seq` is cleared first and
        // published last so readers can skip a record being rewritten.
        let seq = region.io.checkpoints.fetch_add(1, Relaxed) + 1;
        let record = &region.recent[(seq as usize - 1) % RECENT];
        record.seq.store(0, Release);
        record.started_unix_ns.store(ckpt.started_unix_ns, Relaxed);
        record.duration_ns.store(duration_ns, Relaxed);
        record.waited_ns.store(ckpt.waited_ns, Relaxed);
        record.pid.store(std::process::id(), Relaxed);
        record.mode.store(mode as u32, Relaxed);
        record.mode_source.store(mode_source as u32, Relaxed);
        record.outcome.store(outcome as u32, Relaxed);
        record.busy.store(triple.busy as u32, Relaxed);
        record.log.store(triple.log as u32, Relaxed);
        record
            .checkpointed
            .store(triple.checkpointed as u32, Relaxed);
        record.wal_frames.store(before_reset.0, Relaxed);
        record.backfilled_frames.store(before_reset.1, Relaxed);
        record.frames_moved.store(frames_moved, Relaxed);
        record
            .waited_slot
            .store(ckpt.waited_slot.map_or(NO_SLOT, |s| s as u32), Relaxed);
        let (slot, mark, pid) = blocker.map_or((NO_SLOT, 0, 0), |(s, m, p)| (s as u32, m, p));
        record.blocked_slot.store(slot, Relaxed);
        record.blocked_read_mark.store(mark, Relaxed);
        record.blocked_pid.store(pid, Relaxed);
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

/// Who holds (part of) `lock` now: a live reader in the reader table (walwatch's own
/// connections: no system call but `kill(pid, 0)`), else `/proc/locks` (any process, walwatch or
/// not). Runs only when a checkpoint ends stopped by a lock, never on the I/O path.
fn holder_of(region: &Region, lock: ShmLock) -> Holder {
    let wanted = lock.slots();
    let me = std::process::id();
    let from_table = region.readers.iter().find_map(|e| {
        let slot = e.read_slot.load(Relaxed) as usize;
        let pid = e.pid.load(Relaxed);
        let held = slot.checked_sub(1).map(|i| SLOT_READ0 + i)?;
        (wanted.contains(&held) && (pid == me || crate::process_alive(pid))).then_some(Holder {
            pid,
            read_index: Some(held - SLOT_READ0),
        })
    });
    if let Some(holder) = from_table {
        return holder;
    }
    let header = &region.header;
    let len = (header.db_path_len as usize).min(MAX_PATH);
    let mut shm = header.db_path[..len].to_vec();
    shm.extend_from_slice(b"-shm");
    crate::wal_index::shm_lock_holders(&shm, wanted)
        .first()
        .map(|h| Holder {
            pid: h.pid,
            read_index: (h.slot >= SLOT_READ0).then(|| h.slot - SLOT_READ0),
        })
        .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A zeroed stats region that lives for the rest of the test process.
    #[allow(unsafe_code)]
    fn leaked_region() -> &'static Region {
        let layout = std::alloc::Layout::new::<Region>();
        // SAFETY: Region is made of integers and atomics only, for which all-zero bytes are a
        // valid value; the allocation has Region's layout and is never freed.
        unsafe {
            let p = std::alloc::alloc_zeroed(layout) as *mut Region;
            assert!(!p.is_null(), "out of memory");
            &*p
        }
    }

    fn read(i: usize) -> ShmLock {
        ShmLock {
            offset: SLOT_READ0 + i,
            count: 1,
            exclusive: false,
        }
    }

    const WRITE: ShmLock = ShmLock {
        offset: SLOT_WRITE,
        count: 1,
        exclusive: true,
    };

    #[test]
    fn every_lock_is_counted_and_holds_are_estimated_without_bias() {
        let region = leaked_region();
        let mut r = Recorder::new(region);
        let n = 32_000u64;
        for _ in 0..n {
            r.locked(read(1), LiveWalIndex::NONE);
            assert!(!r.locked(WRITE, LiveWalIndex::NONE), "no checkpoint here");
            r.unlocking(WRITE, LiveWalIndex::NONE);
            r.unlocking(read(1), LiveWalIndex::NONE);
        }
        // Unlocking what this connection does not hold records no hold.
        r.unlocking(read(2), LiveWalIndex::NONE);
        for (slot, mode) in [(SLOT_READ0 + 1, SHARED), (SLOT_WRITE, EXCLUSIVE)] {
            let c = &region.locks[slot];
            assert_eq!(c.acquired[mode].load(Relaxed), n, "slot {slot}");
            assert_eq!(c.acquired[1 - mode].load(Relaxed), 0);
            let holds: u64 = c.hold_buckets.iter().map(|b| b.load(Relaxed)).sum();
            // One hold in HOLD_SAMPLE is timed, weighted HOLD_SAMPLE: the count estimates n.
            // (About 1,000 samples per slot: a 15% error is over six standard deviations.)
            assert_eq!(holds % HOLD_SAMPLE, 0);
            assert!(
                holds > n * 85 / 100 && holds < n * 115 / 100,
                "slot {slot}: {holds} holds estimated for {n}"
            );
            assert!(c.hold_sum_ns.load(Relaxed) > 0);
        }
        let other = &region.locks[SLOT_READ0 + 2];
        assert_eq!(
            other
                .hold_buckets
                .iter()
                .map(|b| b.load(Relaxed))
                .sum::<u64>(),
            0
        );
    }

    #[test]
    fn a_long_write_hold_is_recorded_once_sampled_or_not() {
        let region = leaked_region();
        let mut r = Recorder::new(region);
        // Longer than the long-hold limit even by the coarse clock (which may lag a tick).
        let hold = Duration::from_nanos(long_hold_ns()) + Duration::from_millis(20);
        for _ in 0..3 {
            r.locked(WRITE, LiveWalIndex::NONE);
            std::thread::sleep(hold);
            r.unlocking(WRITE, LiveWalIndex::NONE);
        }
        let c = &region.locks[SLOT_WRITE];
        let buckets: Vec<u64> = c.hold_buckets.iter().map(|b| b.load(Relaxed)).collect();
        // Weight 1 each, in a bucket above 10 ms (index 4 and up).
        assert_eq!(buckets.iter().sum::<u64>(), 3, "{buckets:?}");
        assert_eq!(buckets[..4].iter().sum::<u64>(), 0, "{buckets:?}");
        assert!(c.hold_sum_ns.load(Relaxed) >= 3 * long_hold_ns());
    }

    #[test]
    fn a_read_transaction_is_in_the_reader_table_while_it_lasts() {
        let region = leaked_region();
        let mut r = Recorder::new(region);
        let entry = r.reader_entry.expect("an empty table has a row");
        let before = unix_now_ns();
        r.locked(read(3), LiveWalIndex::NONE);
        assert_eq!(entry.read_slot.load(Relaxed), 4, "READ3 is stored as 1 + 3");
        let since = entry.since_unix_ns.load(Relaxed);
        // The coarse clock lags by at most one tick (a few ms); allow 1 s either way.
        assert!(
            since + 1_000_000_000 > before && since < unix_now_ns() + 1_000_000_000,
            "since {since}, now {before}"
        );
        r.unlocking(read(3), LiveWalIndex::NONE);
        assert_eq!(entry.read_slot.load(Relaxed), 0);
        r.close();
        assert_eq!(entry.pid.load(Relaxed), 0);
    }

    #[test]
    fn pragma_argument_is_read_as_sqlite_reads_it() {
        assert_eq!(pragma_mode(Some(b"TRUNCATE")), Mode::Truncate);
        assert_eq!(pragma_mode(Some(b"Restart")), Mode::Restart);
        assert_eq!(pragma_mode(Some(b"full")), Mode::Full);
        assert_eq!(pragma_mode(Some(b"passive")), Mode::Passive);
        assert_eq!(pragma_mode(Some(b"bogus")), Mode::Passive);
        assert_eq!(pragma_mode(None), Mode::Passive);
    }

    #[test]
    fn the_locks_prove_only_so_much() {
        let write = Seen {
            write_tried: true,
            write_granted: true,
            ..Seen::default()
        };
        assert_eq!(Seen::default().inferred(), Mode::Passive);
        let full = Seen {
            all_copied: true,
            ..write
        };
        assert_eq!(full.inferred(), Mode::Full);
        assert_eq!(write.inferred(), Mode::FullRestartOrTruncate);
        let refused = Seen {
            restart_tried: true,
            ..full
        };
        assert_eq!(refused.inferred(), Mode::RestartOrTruncate);
        let restarted = Seen {
            restart_granted: true,
            ..refused
        };
        assert_eq!(restarted.inferred(), Mode::Restart);
        let truncated = Seen {
            truncated: true,
            ..restarted
        };
        assert_eq!(truncated.inferred(), Mode::Truncate);
        let ckpt_busy = Seen {
            ckpt_busy: true,
            ..Seen::default()
        };
        assert_eq!(ckpt_busy.inferred(), Mode::Unknown);

        // The mode asked is used when the locks agree with it, else the inferred one.
        assert_eq!(
            refused.mode(Some(Mode::Truncate)),
            (Mode::Truncate, ModeSource::Pragma)
        );
        assert_eq!(
            write.mode(Some(Mode::Restart)),
            (Mode::Restart, ModeSource::Pragma)
        );
        // A TRUNCATE prepared, then an auto-checkpoint (PASSIVE) ran first.
        assert_eq!(
            Seen::default().mode(Some(Mode::Truncate)),
            (Mode::Passive, ModeSource::Locks)
        );
        assert_eq!(
            full.mode(Some(Mode::Restart)),
            (Mode::Full, ModeSource::Locks)
        );
        assert_eq!(
            ckpt_busy.mode(Some(Mode::Full)),
            (Mode::Full, ModeSource::Pragma)
        );
    }
}

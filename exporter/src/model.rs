//! Everything known about one database after one collection ([`DbState`]), and the pure
//! reasoning that turns raw facts (wal-index header, shim reader table, lock holders) into
//! readers and blockers.
//!
//! `/metrics`, `/status` and `walwatch status` all render a `DbState`, so they never disagree.
//!
//! It is the bottom of the exporter: plain data and pure functions, depending on no other
//! module of it. What the layers above share lives here as plain data that they fill: lock
//! holders ([`LockHolder`], found by `sys`), values that cannot be true ([`Inconsistency`],
//! judged by `plausible`), whether walwatch may act on a database ([`Trust`], decided by
//! `discovery`) and the checkpoint controller's view ([`ControllerView`], filled by
//! `controller`).

use serde::Serialize;
use walwatch::layout::{
    CHECKPOINT_MODE_NAMES, MODE_SOURCE_NAMES, OUTCOME_NAMES, SLOT_NAMES, SLOT_READ0,
};
use walwatch::snapshot::{
    CheckpointSnapshot, ModeSnapshot, ReaderSnapshot, SlotSnapshot, Snapshot,
};
use walwatch::wal_index::{WalIndex, READ_MARKS, READ_MARK_NOT_USED};

/// One database after one collection.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DbState {
    /// Database path, as the shim recorded it or as given with `--db`.
    pub path: String,
    /// Whether the database could be read (exists, is in WAL mode, its files were readable).
    pub up: bool,
    /// Why `up` is false, or what else went wrong reading it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How walwatch knows about this database: `shim` (a stats file), `path` (`--db`), or both.
    pub sources: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_bytes: Option<u64>,
    /// Size of `-wal` from the file system (0 when there is no `-wal`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_index: Option<WalIndexView>,
    /// Connections holding a READ lock, from the shim's reader table and/or `F_GETLK`.
    pub readers: Vec<Reader>,
    /// Holders of the WRITE, CKPT and RECOVER locks, and exclusive holders of READ locks
    /// (a RESTART/TRUNCATE checkpoint), from `F_GETLK`.
    pub lock_holders: Vec<Holder>,
    /// Frames are pending and a reader keeps a checkpoint from copying them all.
    pub checkpoint_blocked: bool,
    /// Who keeps the WAL from being checkpointed or reset, and why.
    pub blockers: Vec<Blocker>,
    /// Age of the oldest read transaction the shim knows of (0 when none).
    pub oldest_reader_age_seconds: f64,
    /// Recent checkpoints recorded by the shim, newest first (see [`RecentCheckpoint::view`]).
    pub recent_checkpoints: Vec<RecentCheckpoint>,
    /// Values read that cannot be true (left out of everything above; see [`crate::plausible`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inconsistent: Vec<Inconsistency>,
    /// Counters recorded by the shim (absent when only `--db` watches this database).
    #[serde(skip)]
    pub counters: Option<Counters>,
    /// The checkpoint controller's limits, growth estimate and actions (absent when it is off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller: Option<ControllerView>,
    /// Whether walwatch may checkpoint it (see `discovery`); untrusted by default.
    #[serde(skip)]
    pub trust: Trust,
}

/// Lock classes (the `lock` label): what a lock on a -shm slot is for.
/// `write`: the WRITE slot (a write transaction); `checkpoint`: the CKPT slot and the RECOVER
/// slot (a checkpoint, or a rebuild of the wal-index, which takes both); `read`: a shared lock on
/// READ0..4 (a read transaction); `read_mark`: an exclusive lock on READ0..4 (a checkpoint, or a
/// reader, moving a read mark).
pub const LOCK_CLASSES: [&str; 4] = ["write", "checkpoint", "read", "read_mark"];
/// Hold-time classes: the stats file keeps hold times by slot, not by mode, so `read` there is
/// every lock on READ0..4, shared or exclusive.
pub const HOLD_CLASSES: [&str; 3] = ["write", "checkpoint", "read"];

/// Index into [`HOLD_CLASSES`] of a slot's locks.
pub fn hold_class(slot: usize) -> usize {
    match slot {
        0 => 0,
        s if s < SLOT_READ0 => 1,
        _ => 2,
    }
}

/// Index into [`LOCK_CLASSES`] of a lock on `slot` in `mode` (index into `LOCK_MODE_NAMES`).
pub fn lock_class(slot: usize, mode: usize) -> usize {
    match (hold_class(slot), mode) {
        (2, 0) => 2,
        (2, _) => 3,
        (c, _) => c,
    }
}

/// The shim's counters of one database, as `/metrics` shows them: the sums by lock class and
/// checkpoint outcome that the default series set exposes (about 250 bytes), and the per-slot
/// and per-mode tables (about 1.6 KB more) only when the detailed set is served. At 10,000
/// databases that is the difference between 2.5 MB and 19 MB per collection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub wal_write_bytes: u64,
    pub db_write_bytes: u64,
    /// By file, as `FSYNC_FILE_NAMES`.
    pub fsyncs: [u64; 3],
    pub busy_sleeps: u64,
    pub busy_sleep_us: u64,
    pub wal_truncations: u64,
    pub reader_table_overflows: u64,
    /// Lock acquisitions and lock attempts found busy, by [`LOCK_CLASSES`].
    pub acquired: [u64; 4],
    pub busy: [u64; 4],
    /// Time locks were held (estimated by the shim's sampling), by [`HOLD_CLASSES`].
    pub held_ns: [u64; 3],
    /// Checkpoints by outcome (as `OUTCOME_NAMES`), every mode together.
    pub outcomes: [u64; 4],
    /// Time spent in checkpoints, every mode together.
    pub checkpoint_ns: u64,
    /// Per lock slot and per checkpoint mode: kept for the detailed set only (empty otherwise).
    pub locks: Vec<SlotSnapshot>,
    pub modes: Vec<ModeSnapshot>,
}

impl Counters {
    /// Sums the counters of `snap` and takes its per-slot and per-mode tables when `detailed`
    /// (they are dropped otherwise). What `snap` keeps (path, readers, recent checkpoints,
    /// creation time, checkpoint count) is what the plausibility rules and `/status` read.
    pub fn take(snap: &mut Snapshot, detailed: bool) -> Self {
        let add = |a: &mut u64, v: u64| *a = a.saturating_add(v);
        let mut c = Self {
            wal_write_bytes: snap.wal_write_bytes,
            db_write_bytes: snap.db_write_bytes,
            fsyncs: snap.fsyncs,
            busy_sleeps: snap.busy_sleeps,
            busy_sleep_us: snap.busy_sleep_us,
            wal_truncations: snap.wal_truncations,
            reader_table_overflows: snap.reader_table_overflows,
            ..Default::default()
        };
        for (slot, lock) in snap.locks.iter().enumerate() {
            for mode in 0..lock.acquired.len() {
                let class = lock_class(slot, mode);
                add(&mut c.acquired[class], lock.acquired[mode]);
                add(&mut c.busy[class], lock.busy[mode]);
            }
            add(&mut c.held_ns[hold_class(slot)], lock.hold_sum_ns);
        }
        for m in &snap.modes {
            for (sum, v) in c.outcomes.iter_mut().zip(m.outcomes) {
                add(sum, v);
            }
            add(&mut c.checkpoint_ns, m.duration_sum_ns);
        }
        let (locks, modes) = (
            std::mem::take(&mut snap.locks),
            std::mem::take(&mut snap.modes),
        );
        if detailed {
            (c.locks, c.modes) = (locks, modes);
        }
        c
    }
}

/// The wal-index header of `-shm`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WalIndexView {
    pub page_size: u32,
    /// `mxFrame`: frames in the WAL.
    pub frames: u32,
    /// `nBackfill`: frames already copied into the database.
    pub backfilled_frames: u32,
    pub backfill_attempted_frames: u32,
    pub pending_frames: u32,
    /// `aReadMark[0..5]`; `null` for an unused slot.
    pub read_marks: [Option<u32>; READ_MARKS],
}

impl From<&WalIndex> for WalIndexView {
    fn from(w: &WalIndex) -> Self {
        Self {
            page_size: w.page_size,
            frames: w.mx_frame,
            backfilled_frames: w.n_backfill,
            backfill_attempted_frames: w.n_backfill_attempted,
            pending_frames: w.frames_pending(),
            read_marks: w.read_marks.map(|m| (m != READ_MARK_NOT_USED).then_some(m)),
        }
    }
}

/// A connection holding a READ lock.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reader {
    /// `READ0` … `READ4`.
    pub slot: &'static str,
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// Last WAL frame this reader sees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_mark: Option<u32>,
    /// How long the read transaction has been open (known only through the shim).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<f64>,
    /// `shim` (reader table), `lock` (`F_GETLK`), or `shim+lock`.
    pub seen_by: &'static str,
    #[serde(skip)]
    pub read_index: usize,
}

/// A holder of a lock slot found with `F_GETLK`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Holder {
    pub slot: &'static str,
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// `shared` or `exclusive`.
    pub mode: &'static str,
}

/// Why a checkpoint cannot finish.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Blocker {
    pub slot: &'static str,
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_mark: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<f64>,
    pub blocks: Blocks,
    pub reason: String,
}

/// What a blocker keeps a checkpoint from doing (serialized as its [`Blocks::name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Blocks {
    /// No checkpoint can copy the frames after the blocker's `read_mark`.
    Backfill,
    /// RESTART and TRUNCATE cannot restart the WAL.
    WalReset,
    /// FULL, RESTART and TRUNCATE wait for the WRITE lock it holds.
    WriteLock,
}

impl Blocks {
    pub fn name(self) -> &'static str {
        match self {
            Self::Backfill => "backfill",
            Self::WalReset => "wal_reset",
            Self::WriteLock => "write_lock",
        }
    }
}

/// One recent checkpoint, as the shim recorded it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckpointView {
    pub seq: u64,
    pub pid: u32,
    /// `passive`, `full`, `restart`, `truncate`, or what the locks could not tell apart:
    /// `restart_or_truncate`, `full_restart_or_truncate`, `unknown`.
    pub mode: &'static str,
    /// `pragma` (the application's `PRAGMA wal_checkpoint(MODE)`) or `locks` (inferred).
    pub mode_source: &'static str,
    /// `complete`, `not_reset`, `partial` or `busy`: a function of the triple below.
    pub outcome: &'static str,
    /// The `(busy, log, checkpointed)` triple SQLite returned to the application.
    pub busy: u8,
    pub log: i32,
    pub checkpointed: i32,
    pub started_unix_seconds: f64,
    pub duration_seconds: f64,
    /// Time spent waiting for busy locks, and the first slot waited for.
    pub waited_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waited_slot: Option<&'static str>,
    /// Lock slot never granted, which stopped the checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_slot: Option<&'static str>,
    /// Read mark of the reader holding `blocked_slot` (READ slots only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_read_mark: Option<u32>,
    /// Pid holding `blocked_slot`, when the shim could tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_pid: Option<u32>,
    /// Frames in the WAL and frames copied before any reset (a TRUNCATE reports `(0, 0, 0)`).
    pub wal_frames: u32,
    pub backfilled_frames: u32,
    pub frames_moved: u32,
}

impl From<&CheckpointSnapshot> for CheckpointView {
    fn from(c: &CheckpointSnapshot) -> Self {
        RecentCheckpoint::from(c).view()
    }
}

/// One recent checkpoint as a collection keeps it: 80 bytes where its [`CheckpointView`] takes
/// 160 (names as indices, times in nanoseconds). A stats file records up to 16: at 10,000
/// databases, 13 MB instead of 26 MB per collection. It serializes as its view, so `/status`
/// is the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecentCheckpoint {
    seq: u64,
    started_unix_ns: u64,
    duration_ns: u64,
    waited_ns: u64,
    pid: u32,
    log: i32,
    checkpointed: i32,
    blocked_read_mark: u32,
    wal_frames: u32,
    backfilled_frames: u32,
    frames_moved: u32,
    blocked_pid: Option<u32>,
    /// Indices into `CHECKPOINT_MODE_NAMES`, `MODE_SOURCE_NAMES`, `OUTCOME_NAMES` and
    /// `SLOT_NAMES` (all shorter than 256).
    mode: u8,
    mode_source: u8,
    outcome: u8,
    busy: bool,
    waited_slot: Option<u8>,
    blocked_slot: Option<u8>,
}

impl From<&CheckpointSnapshot> for RecentCheckpoint {
    fn from(c: &CheckpointSnapshot) -> Self {
        // `Snapshot::parse` keeps every index within its table of names.
        let index = |i: usize| u8::try_from(i).unwrap_or(u8::MAX);
        Self {
            seq: c.seq,
            started_unix_ns: c.started_unix_ns,
            duration_ns: c.duration_ns,
            waited_ns: c.waited_ns,
            pid: c.pid,
            log: c.triple.log,
            checkpointed: c.triple.checkpointed,
            blocked_read_mark: c.blocked_read_mark,
            wal_frames: c.wal_frames,
            backfilled_frames: c.backfilled_frames,
            frames_moved: c.frames_moved,
            blocked_pid: c.blocked_pid,
            mode: index(c.mode),
            mode_source: index(c.mode_source),
            outcome: index(c.outcome),
            busy: c.triple.busy,
            waited_slot: c.waited_slot.map(index),
            blocked_slot: c.blocked_slot.map(index),
        }
    }
}

impl RecentCheckpoint {
    /// What `/status` and `walwatch status` show.
    pub fn view(&self) -> CheckpointView {
        let slot = |s: u8| SLOT_NAMES[usize::from(s)];
        CheckpointView {
            seq: self.seq,
            pid: self.pid,
            mode: CHECKPOINT_MODE_NAMES[usize::from(self.mode)],
            mode_source: MODE_SOURCE_NAMES[usize::from(self.mode_source)],
            outcome: OUTCOME_NAMES[usize::from(self.outcome)],
            busy: u8::from(self.busy),
            log: self.log,
            checkpointed: self.checkpointed,
            started_unix_seconds: self.started_unix_ns as f64 / 1e9,
            duration_seconds: self.duration_ns as f64 / 1e9,
            waited_seconds: self.waited_ns as f64 / 1e9,
            waited_slot: self.waited_slot.map(slot),
            blocked_slot: self.blocked_slot.map(slot),
            blocked_read_mark: self
                .blocked_slot
                .filter(|&s| usize::from(s) >= SLOT_READ0)
                .map(|_| self.blocked_read_mark),
            blocked_pid: self.blocked_pid,
            wal_frames: self.wal_frames,
            backfilled_frames: self.backfilled_frames,
            frames_moved: self.frames_moved,
        }
    }
}

impl Serialize for RecentCheckpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.view().serialize(s)
    }
}

/// What the current blockers keep a checkpoint from doing, most serious first: `backfill`
/// (frames that no checkpoint can copy now), `reset` (every frame can be copied, but RESTART and
/// TRUNCATE cannot reset the WAL: they return `(1, N, N)`), `write_lock` (FULL, RESTART and
/// TRUNCATE wait for a writer), or `nothing`.
pub fn blocked_what(blockers: &[Blocker]) -> &'static str {
    let has = |what: Blocks| blockers.iter().any(|b| b.blocks == what);
    if has(Blocks::Backfill) {
        "backfill"
    } else if has(Blocks::WalReset) {
        "reset"
    } else if has(Blocks::WriteLock) {
        "write_lock"
    } else {
        "nothing"
    }
}

/// Merges the shim's reader table (already stripped of dead pids) with the shared holders of
/// READ slots found by `F_GETLK`. `holders` is indexed by lock slot (0..8).
pub fn readers(
    shim: &[ReaderSnapshot],
    holders: &[Option<LockHolder>],
    wal: Option<&WalIndex>,
    now_unix_ns: u64,
    name: &mut dyn FnMut(u32) -> Option<String>,
) -> Vec<Reader> {
    let mark_in_shm = |index: usize| {
        wal.map(|w| w.read_marks[index])
            .filter(|&m| m != READ_MARK_NOT_USED)
    };
    let mut out: Vec<Reader> = shim
        .iter()
        .map(|r| Reader {
            slot: SLOT_NAMES[SLOT_READ0 + r.read_index],
            pid: r.pid,
            process: None,
            read_mark: Some(r.read_mark),
            age_seconds: (r.since_unix_ns > 0)
                .then(|| now_unix_ns.saturating_sub(r.since_unix_ns) as f64 / 1e9),
            seen_by: "shim",
            read_index: r.read_index,
        })
        .collect();
    for index in 0..READ_MARKS {
        let Some(holder) = holders.get(SLOT_READ0 + index).copied().flatten() else {
            continue;
        };
        if holder.exclusive {
            continue; // a checkpointer or recovery, not a reader: listed in lock_holders
        }
        match out
            .iter_mut()
            .find(|r| r.pid == holder.pid && r.read_index == index)
        {
            Some(known) => known.seen_by = "shim+lock",
            None => out.push(Reader {
                slot: SLOT_NAMES[SLOT_READ0 + index],
                pid: holder.pid,
                process: None,
                read_mark: mark_in_shm(index),
                age_seconds: None,
                seen_by: "lock",
                read_index: index,
            }),
        }
    }
    for reader in &mut out {
        reader.process = name(reader.pid);
    }
    out.sort_by_key(|r| (r.read_index, r.pid));
    out
}

/// Lock holders that are not plain readers: WRITE, CKPT, RECOVER, and exclusive READ holders.
pub fn lock_holders(
    holders: &[Option<LockHolder>],
    name: &mut dyn FnMut(u32) -> Option<String>,
) -> Vec<Holder> {
    holders
        .iter()
        .enumerate()
        .filter_map(|(slot, h)| h.map(|h| (slot, h)))
        .filter(|(slot, h)| *slot < SLOT_READ0 || h.exclusive)
        .map(|(slot, h)| Holder {
            slot: SLOT_NAMES[slot],
            pid: h.pid,
            process: name(h.pid),
            mode: if h.exclusive { "exclusive" } else { "shared" },
        })
        .collect()
}

/// Who keeps the WAL from being checkpointed, following `walCheckpoint()` in `wal.c`:
/// - a checkpoint copies frames only up to the smallest read mark of READ1..4 holders, so a
///   reader whose mark is below `mxFrame` blocks the backfill of every later frame;
/// - backfilling takes READ0 exclusive, so any READ0 holder blocks it while frames are pending;
/// - RESTART and TRUNCATE must wait for every reader before the WAL starts over;
/// - FULL, RESTART and TRUNCATE also wait for the WRITE lock.
///
/// Returns the blockers and whether the checkpoint is blocked (frames pending that no
/// checkpoint can copy now).
pub fn blockers(
    wal: Option<&WalIndex>,
    readers: &[Reader],
    holders: &[Holder],
) -> (Vec<Blocker>, bool) {
    let Some(wal) = wal else {
        return (Vec::new(), false);
    };
    let pending = wal.frames_pending() > 0;
    let mut out = Vec::new();
    let mut blocked = false;
    for r in readers {
        let (blocks, reason) = match r.read_mark {
            _ if r.read_index == 0 && pending => {
                (Blocks::Backfill, format!("reads the database without the WAL (READ0) while {} frames are pending: no checkpoint can copy them", wal.frames_pending()))
            }
            Some(mark) if r.read_index > 0 && mark < wal.mx_frame && pending => (
                Blocks::Backfill,
                format!("read transaction sees WAL frames up to {mark} of {}: checkpoints cannot copy frames after {mark}", wal.mx_frame),
            ),
            _ if wal.mx_frame > 0 => (Blocks::WalReset, "open read transaction: RESTART and TRUNCATE checkpoints cannot restart the WAL".to_owned()),
            _ => continue,
        };
        blocked |= blocks == Blocks::Backfill;
        out.push(Blocker {
            slot: r.slot,
            pid: r.pid,
            process: r.process.clone(),
            read_mark: r.read_mark,
            age_seconds: r.age_seconds,
            blocks,
            reason,
        });
    }
    if pending {
        for h in holders.iter().filter(|h| h.slot == SLOT_NAMES[0]) {
            out.push(Blocker {
                slot: h.slot,
                pid: h.pid,
                process: h.process.clone(),
                read_mark: None,
                age_seconds: None,
                blocks: Blocks::WriteLock,
                reason: "holds the WRITE lock: FULL, RESTART and TRUNCATE checkpoints wait for it"
                    .to_owned(),
            });
        }
    }
    (out, blocked)
}

/// A lock found by [`lock_holder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: u32,
    /// `true` for a write (exclusive) lock, `false` for a read (shared) lock.
    pub exclusive: bool,
}

/// Whether walwatch may publish and checkpoint a database.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Trust {
    /// Nothing puts it in reach: never checkpointed (the default, so a state made anywhere
    /// else is never acted on by mistake).
    #[default]
    Untrusted,
    /// Named by the operator (`--db`, `databases`).
    Operator,
    /// Named in a stats file of its owner, or in one of root's. `uid`: the database file's
    /// owner when it was checked, which the checkpoint child checks again when it opens it.
    Owner { uid: u32 },
}

impl Trust {
    /// Whether the controller may checkpoint it.
    pub fn may_act(self) -> bool {
        self != Trust::Untrusted
    }

    /// The owner the database file must still have when the checkpoint opens it.
    pub fn expected_owner(self) -> Option<u32> {
        match self {
            Trust::Owner { uid } => Some(uid),
            _ => None,
        }
    }
}

/// A value that cannot be true, and what it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Inconsistency {
    /// One of `plausible::WHATS`.
    pub what: &'static str,
    /// What was read, in words.
    pub detail: String,
    /// `stats_file` or `shm`: which file holds it, so the advice can name what to do.
    pub source: &'static str,
}

/// What `/status` and `/metrics` show about the controller and one database.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ControllerView {
    pub mode: &'static str,
    pub soft_limit_bytes: u64,
    pub hard_limit_bytes: u64,
    pub growth_bytes_per_second: f64,
    /// Time the controller's TRUNCATEs held the WRITE lock, in total: writers' stall.
    pub write_lock_held_seconds: f64,
    /// Checkpoints run, by (action, result).
    pub actions: Vec<ActionCount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<LastAction>,
    /// A checkpoint the strategy wants but holds back, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holding: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ActionCount {
    pub action: &'static str,
    pub result: &'static str,
    pub count: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct LastAction {
    pub action: &'static str,
    pub result: &'static str,
    pub reason: String,
    pub seconds_ago: f64,
    pub duration_seconds: f64,
    /// How long it held the WRITE lock (writers waited that long at most).
    pub write_lock_held_seconds: f64,
    pub log_frames: i64,
    pub checkpointed_frames: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Who kept it from finishing, when it was busy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<Blocker>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal(mx_frame: u32, n_backfill: u32, marks: [u32; 5]) -> WalIndex {
        WalIndex {
            page_size: 4096,
            mx_frame,
            n_page: 2,
            n_backfill,
            n_backfill_attempted: n_backfill,
            read_marks: marks,
        }
    }

    fn holder(pid: u32, exclusive: bool) -> Option<LockHolder> {
        Some(LockHolder { pid, exclusive })
    }

    fn no_name(_: u32) -> Option<String> {
        None
    }

    #[test]
    fn a_lock_only_reader_below_mx_frame_blocks_backfill() {
        let w = wal(
            12,
            3,
            [
                0,
                7,
                READ_MARK_NOT_USED,
                READ_MARK_NOT_USED,
                READ_MARK_NOT_USED,
            ],
        );
        let mut holders = [None; 8];
        holders[SLOT_READ0 + 1] = holder(4242, false);
        let readers = readers(&[], &holders, Some(&w), 0, &mut |pid| {
            Some(format!("p{pid}"))
        });
        assert_eq!(readers.len(), 1);
        assert_eq!(
            (
                readers[0].slot,
                readers[0].pid,
                readers[0].read_mark,
                readers[0].seen_by
            ),
            ("READ1", 4242, Some(7), "lock")
        );
        assert_eq!(readers[0].process.as_deref(), Some("p4242"));
        let (blockers, blocked) = blockers(Some(&w), &readers, &[]);
        assert!(blocked);
        assert_eq!(blockers[0].blocks, Blocks::Backfill);
    }

    #[test]
    fn shim_and_lock_views_merge_and_give_an_age() {
        let w = wal(5, 5, [0, 5, 0, 0, 0]);
        let shim = [ReaderSnapshot {
            pid: 7,
            read_index: 1,
            read_mark: 5,
            since_unix_ns: 1_000_000_000,
        }];
        let mut holders = [None; 8];
        holders[SLOT_READ0 + 1] = holder(7, false);
        holders[0] = holder(9, true);
        let readers = readers(&shim, &holders, Some(&w), 3_500_000_000, &mut no_name);
        assert_eq!(readers.len(), 1);
        assert_eq!(readers[0].seen_by, "shim+lock");
        assert_eq!(readers[0].age_seconds, Some(2.5));
        let holders = lock_holders(&holders, &mut no_name);
        assert_eq!(
            holders,
            vec![Holder {
                slot: "WRITE",
                pid: 9,
                process: None,
                mode: "exclusive"
            }]
        );
        // Everything is backfilled: the reader only keeps the WAL from being reset.
        let (blockers, blocked) = blockers(Some(&w), &readers, &holders);
        assert!(!blocked);
        assert_eq!(blockers.len(), 1);
        assert_eq!(blockers[0].blocks, Blocks::WalReset);
    }

    #[test]
    fn exclusive_read_locks_are_checkpointers_not_readers() {
        let mut holders = [None; 8];
        holders[SLOT_READ0 + 2] = holder(11, true);
        assert!(readers(&[], &holders, None, 0, &mut no_name).is_empty());
        assert_eq!(lock_holders(&holders, &mut no_name)[0].slot, "READ2");
    }

    #[test]
    fn counters_are_summed_by_class_and_the_tables_kept_only_when_detailed() {
        let mut snap = Snapshot {
            locks: (0..8)
                .map(|slot| SlotSnapshot {
                    acquired: [slot as u64, 100],
                    busy: [1, 2],
                    hold_sum_ns: 10,
                    ..Default::default()
                })
                .collect(),
            modes: vec![
                ModeSnapshot {
                    outcomes: [1, 2, 3, 4],
                    duration_sum_ns: 5,
                    ..Default::default()
                };
                7
            ],
            ..Default::default()
        };
        let summed = Counters::take(&mut snap.clone(), false);
        // write: WRITE; checkpoint: CKPT and RECOVER; read: shared READ0..4; read_mark: exclusive.
        assert_eq!(summed.acquired, [100, 1 + 2 + 200, 3 + 4 + 5 + 6 + 7, 500]);
        assert_eq!(summed.busy, [1 + 2, 2 * 3, 5, 10]);
        assert_eq!(summed.held_ns, [10, 20, 50]);
        assert_eq!(
            (summed.outcomes, summed.checkpoint_ns),
            ([7, 14, 21, 28], 35)
        );
        assert!(summed.locks.is_empty() && summed.modes.is_empty());
        let detailed = Counters::take(&mut snap, true);
        assert_eq!((detailed.locks.len(), detailed.modes.len()), (8, 7));
        assert_eq!(detailed.acquired, summed.acquired);
        assert!(snap.locks.is_empty(), "the tables are moved, not copied");
    }

    /// A recent checkpoint is kept compact and shown (and serialized) as its full view.
    #[test]
    fn a_recent_checkpoint_is_kept_in_80_bytes_and_shown_in_full() {
        assert!(std::mem::size_of::<RecentCheckpoint>() <= 80);
        let snap = CheckpointSnapshot {
            seq: 7,
            started_unix_ns: 1_700_000_000_500_000_000,
            duration_ns: 2_000_000,
            waited_ns: 1_500_000,
            pid: 42,
            mode: 3,
            mode_source: 1,
            outcome: 2,
            triple: walwatch::layout::Triple {
                busy: true,
                log: 10,
                checkpointed: 5,
            },
            wal_frames: 10,
            backfilled_frames: 5,
            frames_moved: 5,
            waited_slot: Some(SLOT_READ0 + 1),
            blocked_slot: Some(SLOT_READ0 + 1),
            blocked_read_mark: 5,
            blocked_pid: Some(43),
        };
        let kept = RecentCheckpoint::from(&snap);
        let json = serde_json::to_value(&kept).unwrap();
        assert_eq!(json, serde_json::to_value(kept.view()).unwrap());
        let expected = serde_json::json!({
            "seq": 7, "pid": 42, "mode": "truncate", "mode_source": "pragma",
            "outcome": "partial", "busy": 1, "log": 10, "checkpointed": 5,
            "started_unix_seconds": 1_700_000_000.5, "duration_seconds": 0.002,
            "waited_seconds": 0.0015, "waited_slot": "READ1", "blocked_slot": "READ1",
            "blocked_read_mark": 5, "blocked_pid": 43, "wal_frames": 10,
            "backfilled_frames": 5, "frames_moved": 5
        });
        assert_eq!(json, expected);
        // A read mark means something only for a READ slot.
        let write = RecentCheckpoint::from(&CheckpointSnapshot {
            blocked_slot: Some(0),
            ..snap
        });
        assert_eq!(write.view().blocked_read_mark, None);
        assert_eq!(write.view().blocked_slot, Some("WRITE"));
    }

    #[test]
    fn read0_blocks_backfill_only_while_frames_are_pending() {
        let r = Reader {
            slot: "READ0",
            pid: 1,
            process: None,
            read_mark: Some(0),
            age_seconds: None,
            seen_by: "lock",
            read_index: 0,
        };
        let (_, blocked) = blockers(Some(&wal(10, 4, [0; 5])), std::slice::from_ref(&r), &[]);
        assert!(blocked);
        let (b, blocked) = blockers(Some(&wal(0, 0, [0; 5])), &[r], &[]);
        assert!(!blocked && b.is_empty());
    }
}

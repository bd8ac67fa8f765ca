//! Plausibility rules for values read from files that other processes write (stats files, the
//! `-shm` header). A value that cannot be true is not shown as a fact: it is left out (a
//! checkpoint record, a reader entry, the wal-index header) or made unknown (a reader's age),
//! and an [`Inconsistency`] says what was wrong, so `/status`, `walwatch status` and
//! `walwatch_inconsistent_values{what}` report it instead.
//!
//! The rules, each with its `what` label:
//! - `checkpoint_seq`: a recent checkpoint numbered beyond the checkpoints the file counted;
//! - `checkpoint_frames`: a checkpoint that backfilled or moved more frames than the WAL held;
//! - `checkpoint_triple`: a checkpoint whose `(busy, log, checkpointed)` triple cannot be what
//!   SQLite returned (more frames checkpointed than logged, values below -1), or whose outcome is
//!   not the one that triple gives (see `walwatch::layout::Outcome::of`);
//! - `checkpoint_time`: a checkpoint that started before the stats file was created, or in the
//!   future;
//! - `created_time`: a stats file created in the future;
//! - `reader_age`: a read transaction that began before the stats file was created, or in the
//!   future (its age becomes unknown);
//! - `reader_duplicate`: the same pid on the same READ slot more than once (kept once);
//! - `reader_unlocked`: a reader on a READ slot that no process holds a lock on;
//! - `reader_stale`: a reader entry older than the process with its pid (left by an earlier
//!   process whose pid was reused);
//! - `wal_backfill`: a wal-index header with more frames backfilled (or attempted) than in the
//!   WAL (the header is not used);
//! - `shm_header`: the two copies of the wal-index header differ and stay so over several reads
//!   (see [`persistent_mismatch`]).
//!
//! Pure functions over parsed values: no I/O here.

use walwatch::layout::SLOT_READ0;
use walwatch::snapshot::Snapshot;
use walwatch::wal_index::WalIndex;

use crate::model::LockHolder;

/// Every `what` label, for the metric's documentation and tests.
pub const WHATS: [&str; 10] = [
    "checkpoint_seq",
    "checkpoint_frames",
    "checkpoint_time",
    "created_time",
    "reader_age",
    "reader_duplicate",
    "reader_unlocked",
    "reader_stale",
    "wal_backfill",
    "shm_header",
];

/// Clocks of two processes, and a record written just before it is read, may disagree by this
/// much without it meaning anything.
pub const CLOCK_SLACK_NS: u64 = 5_000_000_000;

pub use crate::model::Inconsistency;

impl Inconsistency {
    fn stats(what: &'static str, detail: String) -> Self {
        Self {
            what,
            detail,
            source: "stats_file",
        }
    }
}

/// What `walwatch status` and `/status` tell the user to do about inconsistencies from `source`.
pub fn advice(source: &str, stats_file: Option<&str>) -> String {
    match source {
        "stats_file" => format!(
            "values in stats file {} are inconsistent and are not shown; remove the file once no process uses it (the shim creates a new one)",
            stats_file.unwrap_or("?")
        ),
        _ => "the -shm wal-index header is inconsistent and is not used; if this persists, close every connection to the database so SQLite rebuilds -shm, or check that every process uses a supported SQLite version".to_owned(),
    }
}

/// Checks a stats file's recent checkpoints and reader table against its own counters, its
/// creation time and `now`; removes what cannot be true (and makes implausible reader ages
/// unknown by zeroing `since_unix_ns`). `holders` are the `-shm` lock holders by slot, when the
/// lock query worked: a reader on a slot nobody holds is not reading. `started` tells when a
/// pid's process started (Unix ns), when known.
pub fn review_stats(
    snap: &mut Snapshot,
    holders: Option<&[Option<LockHolder>]>,
    started: &mut dyn FnMut(u32) -> Option<u64>,
    now_unix_ns: u64,
) -> Vec<Inconsistency> {
    let mut out = review_recent(snap, now_unix_ns);
    out.extend(review_readers(snap, holders, started, now_unix_ns));
    out
}

/// The creation time and recent checkpoints of [`review_stats`]: what needs no other file, so a
/// collection reviews it as soon as the stats file is read, and keeps the records compact.
pub fn review_recent(snap: &mut Snapshot, now_unix_ns: u64) -> Vec<Inconsistency> {
    let mut out = Vec::new();
    let (created, future, before_creation) = times(snap, now_unix_ns);
    if created > future {
        out.push(Inconsistency::stats(
            "created_time",
            format!(
                "the file says it was created {} in the future",
                crate::text::human_age((created - now_unix_ns) as f64 / 1e9)
            ),
        ));
    }
    let counted = snap.checkpoints;
    snap.recent.retain(|c| {
        let problem = if c.seq > counted.saturating_add(1) {
            Some((
                "checkpoint_seq",
                format!(
                    "checkpoint #{} recorded, but only {counted} checkpoints were counted",
                    c.seq
                ),
            ))
        } else if c.backfilled_frames > c.wal_frames || c.frames_moved > c.wal_frames {
            Some((
                "checkpoint_frames",
                format!(
                    "checkpoint #{}: {} frames backfilled and {} moved of {} frames in the WAL",
                    c.seq, c.backfilled_frames, c.frames_moved, c.wal_frames
                ),
            ))
        } else if !triple_plausible(c) {
            Some((
                "checkpoint_triple",
                format!(
                    "checkpoint #{}: recorded {} for a checkpoint that returned ({}, {}, {}) after moving {} frames",
                    c.seq,
                    walwatch::layout::OUTCOME_NAMES[c.outcome],
                    c.triple.busy as u8,
                    c.triple.log,
                    c.triple.checkpointed,
                    c.frames_moved
                ),
            ))
        } else if c.started_unix_ns > future || before_creation(c.started_unix_ns) {
            Some((
                "checkpoint_time",
                format!(
                    "checkpoint #{} started {}",
                    c.seq,
                    when(c.started_unix_ns, created, now_unix_ns)
                ),
            ))
        } else {
            None
        };
        let keep = problem.is_none();
        if let Some((what, detail)) = problem {
            out.push(Inconsistency::stats(what, detail));
        }
        keep
    });

    out
}

/// The stats file's creation time, the latest plausible time, and whether a time is before the
/// creation (when the creation time is known).
fn times(snap: &Snapshot, now_unix_ns: u64) -> (u64, u64, impl Fn(u64) -> bool) {
    let created = snap.created_unix_ns;
    let future = now_unix_ns.saturating_add(CLOCK_SLACK_NS);
    let created_known = created > 0 && created <= future;
    let before_creation = move |t: u64| created_known && t.saturating_add(CLOCK_SLACK_NS) < created;
    (created, future, before_creation)
}

/// The reader table of [`review_stats`], once the `-shm` lock holders are known.
pub fn review_readers(
    snap: &mut Snapshot,
    holders: Option<&[Option<LockHolder>]>,
    started: &mut dyn FnMut(u32) -> Option<u64>,
    now_unix_ns: u64,
) -> Vec<Inconsistency> {
    let mut out = Vec::new();
    let (created, future, before_creation) = times(snap, now_unix_ns);
    let mut seen = std::collections::HashSet::new();
    let mut duplicates = std::collections::BTreeMap::<(u32, usize), usize>::new();
    snap.readers.retain(|r| {
        if seen.insert((r.pid, r.read_index)) {
            true
        } else {
            *duplicates.entry((r.pid, r.read_index)).or_default() += 1;
            false
        }
    });
    for ((pid, index), extra) in duplicates {
        out.push(Inconsistency::stats(
            "reader_duplicate",
            format!(
                "pid {pid} listed {} times as a reader on READ{index} (one connection per process holds a slot once)",
                extra + 1
            ),
        ));
    }
    if let Some(holders) = holders {
        snap.readers.retain(|r| {
            let held = holders
                .get(SLOT_READ0 + r.read_index)
                .is_some_and(|h| h.is_some());
            if !held {
                out.push(Inconsistency::stats(
                    "reader_unlocked",
                    format!(
                        "pid {} listed as a reader on READ{}, but no process holds that lock",
                        r.pid, r.read_index
                    ),
                ));
            }
            held
        });
    }
    snap.readers.retain(|r| {
        let stale = r.since_unix_ns > 0
            && started(r.pid).is_some_and(|s| r.since_unix_ns.saturating_add(CLOCK_SLACK_NS) < s);
        if stale {
            out.push(Inconsistency::stats(
                "reader_stale",
                format!(
                    "pid {} listed as a reader on READ{} since before that process started (an earlier process with the same pid left it)",
                    r.pid, r.read_index
                ),
            ));
        }
        !stale
    });
    for r in &mut snap.readers {
        let since = r.since_unix_ns;
        if since > 0 && (since > future || before_creation(since)) {
            out.push(Inconsistency::stats(
                "reader_age",
                format!(
                    "pid {} on READ{} reading since {}",
                    r.pid,
                    r.read_index,
                    when(since, created, now_unix_ns)
                ),
            ));
            r.since_unix_ns = 0;
        }
    }
    out
}

/// `…before the stats file was created (1h02m earlier)` / `…in the future (3s from now)`.
fn when(t: u64, created: u64, now: u64) -> String {
    if t > now {
        format!(
            "in the future ({} from now)",
            crate::text::human_age((t - now) as f64 / 1e9)
        )
    } else {
        format!(
            "before the stats file was created ({} earlier)",
            crate::text::human_age(created.saturating_sub(t) as f64 / 1e9)
        )
    }
}

/// The wal-index header, when it can be true: SQLite never backfills (nor attempts to) more
/// frames than the WAL holds.
pub fn review_wal_index(w: WalIndex) -> Result<WalIndex, Inconsistency> {
    if w.n_backfill > w.mx_frame || w.n_backfill_attempted > w.mx_frame {
        return Err(Inconsistency {
            what: "wal_backfill",
            detail: format!(
                "{} frames backfilled ({} attempted) of {} frames in the WAL",
                w.n_backfill, w.n_backfill_attempted, w.mx_frame
            ),
            source: "shm",
        });
    }
    Ok(w)
}

/// Whether several reads of a wal-index header whose two copies differ were all the same bytes:
/// SQLite rewrites both copies within microseconds, so a mismatch that stays put over reads
/// milliseconds apart is no write in progress but a corrupt header, or one laid out by an
/// SQLite version this walwatch does not know.
pub fn persistent_mismatch(reads: &[Vec<u8>]) -> bool {
    reads.len() >= 2 && reads.windows(2).all(|w| w[0] == w[1])
}

/// The inconsistency of a header found by [`persistent_mismatch`].
pub fn corrupt_shm_header(reads: usize) -> Inconsistency {
    Inconsistency {
        what: "shm_header",
        detail: format!(
            "the two copies of the wal-index header differ and stayed the same over {reads} reads 1 ms apart: corrupt, or from an unsupported SQLite version (not a write in progress)"
        ),
        source: "shm",
    }
}

/// Whether a record's triple could be SQLite's answer and its outcome is the one it gives.
fn triple_plausible(c: &walwatch::snapshot::CheckpointSnapshot) -> bool {
    let t = c.triple;
    let shape = if t.log < 0 {
        t.log == -1 && t.checkpointed == -1 && t.busy
    } else {
        (0..=t.log).contains(&t.checkpointed)
    };
    shape && walwatch::layout::Outcome::of(t, c.frames_moved) as usize == c.outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;

    const NOW: u64 = 1_700_000_100_000_000_000; // synth files are created 100 s before
    const CREATED: u64 = 1_700_000_000_000_000_000;

    fn unknown(_: u32) -> Option<u64> {
        None
    }

    #[test]
    fn a_reader_older_than_its_process_is_left_by_a_reused_pid() {
        let mut bytes = synth::stats_file(b"/srv/a.db", 0);
        synth::set_reader(&mut bytes, 0, 42, 1, 7, CREATED + 10_000_000_000);
        synth::set_reader(&mut bytes, 1, 43, 2, 7, CREATED + 90_000_000_000);
        let mut snap = Snapshot::parse(&bytes).unwrap();
        // Both processes started 80 s after the file was created.
        let found = review_stats(
            &mut snap,
            None,
            &mut |_| Some(CREATED + 80_000_000_000),
            NOW,
        );
        assert_eq!(whats(&found), ["reader_stale"]);
        assert!(found[0].detail.contains("pid 42"), "{found:?}");
        assert_eq!(snap.readers.len(), 1);
        assert_eq!(snap.readers[0].pid, 43);
    }

    fn whats(found: &[Inconsistency]) -> Vec<&str> {
        found.iter().map(|i| i.what).collect()
    }

    fn holders_on(indexes: &[usize]) -> Vec<Option<LockHolder>> {
        let mut h = vec![None; 8];
        for &i in indexes {
            h[SLOT_READ0 + i] = Some(LockHolder {
                pid: 1,
                exclusive: false,
            });
        }
        h
    }

    #[test]
    fn a_consistent_file_is_left_alone() {
        let mut bytes = synth::stats_file(b"/srv/a.db", 3);
        synth::set_reader(&mut bytes, 0, 42, 1, 7, CREATED + 50_000_000_000);
        let mut snap = Snapshot::parse(&bytes).unwrap();
        let before = snap.clone();
        assert_eq!(
            review_stats(&mut snap, Some(&holders_on(&[1])), &mut unknown, NOW),
            vec![]
        );
        assert_eq!(snap, before);
    }

    #[test]
    fn a_checkpoint_numbered_beyond_the_count_is_dropped() {
        let mut snap = Snapshot::parse(&synth::stats_file(b"/srv/a.db", 3)).unwrap();
        snap.checkpoints = 2;
        snap.recent[0].seq = u64::MAX;
        let found = review_stats(&mut snap, None, &mut unknown, NOW);
        assert_eq!(whats(&found), ["checkpoint_seq"]);
        assert!(
            found[0]
                .detail
                .contains("#18446744073709551615 recorded, but only 2"),
            "{found:?}"
        );
        assert!(snap.recent.is_empty());
        // The record written just after the counter was read is fine.
        let mut snap = Snapshot::parse(&synth::stats_file(b"/srv/a.db", 3)).unwrap();
        snap.checkpoints = snap.recent[0].seq - 1;
        assert!(review_stats(&mut snap, None, &mut unknown, NOW).is_empty());
    }

    #[test]
    fn an_outcome_that_disagrees_with_the_triple_is_dropped() {
        let mut snap = Snapshot::parse(&synth::stats_file(b"/srv/a.db", 3)).unwrap();
        assert!(review_stats(&mut snap.clone(), None, &mut unknown, NOW).is_empty());
        snap.recent[0].outcome = walwatch::layout::Outcome::Complete as usize;
        let found = review_stats(&mut snap, None, &mut unknown, NOW);
        assert_eq!(whats(&found), ["checkpoint_triple"]);
        assert!(
            found[0]
                .detail
                .contains("recorded complete for a checkpoint that returned (1, 10, 5)"),
            "{found:?}"
        );
        assert!(snap.recent.is_empty());
    }

    #[test]
    fn more_frames_backfilled_than_in_the_wal_is_dropped() {
        let mut snap = Snapshot::parse(&synth::stats_file(b"/srv/a.db", 3)).unwrap();
        snap.recent[0].wal_frames = 2;
        snap.recent[0].backfilled_frames = 237_493_113;
        let found = review_stats(&mut snap, None, &mut unknown, NOW);
        assert_eq!(whats(&found), ["checkpoint_frames"]);
        assert!(
            found[0].detail.contains("237493113 frames backfilled"),
            "{found:?}"
        );
        assert!(snap.recent.is_empty());
    }

    #[test]
    fn times_before_creation_or_in_the_future_are_unknown() {
        let mut bytes = synth::stats_file(b"/srv/a.db", 3);
        // A reader "for 498725h": since 1970.
        synth::set_reader(&mut bytes, 0, 42, 1, 7, 1);
        synth::set_reader(&mut bytes, 1, 43, 2, 7, NOW + 3_600_000_000_000);
        let mut snap = Snapshot::parse(&bytes).unwrap();
        snap.recent[0].started_unix_ns = CREATED - 7_200_000_000_000;
        let found = review_stats(&mut snap, None, &mut unknown, NOW);
        assert_eq!(
            whats(&found),
            ["checkpoint_time", "reader_age", "reader_age"]
        );
        assert!(
            found[0]
                .detail
                .contains("before the stats file was created (2h00m earlier)"),
            "{found:?}"
        );
        assert!(
            found[2].detail.contains("in the future (1h00m from now)"),
            "{found:?}"
        );
        // The readers stay (their locks may be real); their age is unknown.
        assert_eq!(snap.readers.len(), 2);
        assert!(snap.readers.iter().all(|r| r.since_unix_ns == 0));

        let mut snap = Snapshot::parse(&synth::stats_file(b"/srv/a.db", 0)).unwrap();
        snap.created_unix_ns = NOW + 86_400_000_000_000;
        assert_eq!(
            whats(&review_stats(&mut snap, None, &mut unknown, NOW)),
            ["created_time"]
        );
    }

    #[test]
    fn phantom_readers_are_deduplicated_and_checked_against_the_locks() {
        let mut bytes = synth::stats_file(b"/srv/a.db", 0);
        for entry in 0..64 {
            synth::set_reader(&mut bytes, entry, 1, 1, 5, CREATED + 1);
        }
        synth::set_reader(&mut bytes, 63, 77, 2, 5, CREATED + 1);
        let mut snap = Snapshot::parse(&bytes).unwrap();
        assert_eq!(snap.readers.len(), 64);
        // Nobody holds READ1; READ2 is held.
        let found = review_stats(&mut snap, Some(&holders_on(&[2])), &mut unknown, NOW);
        assert_eq!(whats(&found), ["reader_duplicate", "reader_unlocked"]);
        assert!(
            found[0].detail.contains("pid 1 listed 63 times"),
            "{found:?}"
        );
        assert_eq!(snap.readers.len(), 1);
        assert_eq!(snap.readers[0].pid, 77);
        // Without a lock query (no -shm), the entries stay, deduplicated.
        let mut snap = Snapshot::parse(&bytes).unwrap();
        review_stats(&mut snap, None, &mut unknown, NOW);
        assert_eq!(snap.readers.len(), 2);
    }

    #[test]
    fn a_wal_index_that_backfilled_more_than_the_wal_is_refused() {
        let w = WalIndex {
            mx_frame: 2,
            n_backfill: 237_493_113,
            ..Default::default()
        };
        assert_eq!(review_wal_index(w).unwrap_err().what, "wal_backfill");
        let ok = WalIndex {
            mx_frame: 10,
            n_backfill: 4,
            n_backfill_attempted: 10,
            ..Default::default()
        };
        assert_eq!(review_wal_index(ok), Ok(ok));
    }

    #[test]
    fn a_mismatch_that_stays_put_is_corruption() {
        let a = synth::wal_index(9, 2, [0; 5])[..136].to_vec();
        let mut b = a.clone();
        b[16] ^= 1;
        assert!(persistent_mismatch(&[b.clone(), b.clone(), b.clone()]));
        assert!(!persistent_mismatch(&[b.clone(), a.clone(), b.clone()]));
        assert!(!persistent_mismatch(std::slice::from_ref(&b)));
        assert!(corrupt_shm_header(3)
            .detail
            .contains("unsupported SQLite version"));
    }
}

//! The checkpoint policy: what to do about one database, given what was just measured. Pure:
//! no clock, no I/O, no strings to match, so every tier is tested with made-up numbers. Every
//! rule the controller follows is here; `super` (the controller) only measures, remembers and
//! carries out.
//!
//! # Checkpoint strategy (per database, at every collection and every WAL-growth notification)
//! [`decide`] first asks what the WAL needs ([`wanted`]), then whether to hold it back ([`held`]):
//! - **Priority 1 — off.** With the controller off, nothing is decided.
//! - **Priority 2 — hard limit: TRUNCATE.** When the WAL is at or over the hard limit, run
//!   TRUNCATE with a short, bounded busy timeout (TRUNCATE holds the WRITE lock while it waits
//!   for readers, so writers stall for at most that long, plus the copy of the frames it
//!   backfills; [`super::checkpoint`] keeps that copy short). It backfills every frame and cuts
//!   `-wal` to zero bytes.
//! - **Priority 3 — on course for the hard limit: TRUNCATE.** When the WAL will reach the hard
//!   limit before the controller can react again at its current growth rate, or is past the
//!   soft limit and on course to reach the hard one within an interval (PASSIVE would not stop
//!   it: it never holds writers back).
//! - **Priority 4 — soft limit: PASSIVE.** When the WAL is at or over the soft limit, growing
//!   slowly enough that it will not reach the hard limit within an interval, and frames are
//!   waiting to be copied, run PASSIVE (at most every 100 ms): it never waits for a lock and
//!   never blocks the application, and once every frame is copied the next writer starts the
//!   WAL over from its beginning, so the file stops growing.
//! - **Priority 5 — one at a time.** While a checkpoint of this database runs, nothing else
//!   starts ([`Held::InProgress`]: routine, not logged, see [`log_hold`]).
//! - **Priority 6 — back-off.** After a TRUNCATE blocked by a reader that pins the WAL
//!   ([`pinned_by_reader`]: its read mark is behind, or it has been reading for over a second),
//!   the next one waits `backoff`, doubling up to `max_backoff` ([`after_truncate`],
//!   [`next_backoff`]), so a database pinned by a long reader is not hammered — except that it
//!   is retried at once when the reader that blocked it is gone. A TRUNCATE that lost to a
//!   writer's transaction (over in milliseconds) may be retried at the next chance.
//! - **Priority 7 — observe only.** In `observe` mode the decision is computed, logged and
//!   exported, but never carried out.
//!
//! Carrying out a TRUNCATE, the controller first runs a PASSIVE pass unless writers append
//! faster than half the rate such a pass copied at last time ([`passive_pass`]).

use std::time::Duration;

use crate::model::{Blocker, Blocks};

/// What the controller does when a limit is crossed.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, clap::ValueEnum, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ControllerMode {
    /// Checkpoint as the strategy says.
    Act,
    /// Decide, log and export, but never checkpoint.
    Observe,
    /// No controller.
    Off,
}

impl ControllerMode {
    /// Its name in the configuration, on `/status` and in `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Act => "act",
            Self::Observe => "observe",
            Self::Off => "off",
        }
    }
}

/// A checkpoint the controller runs: the two of SQLite's checkpoint modes it uses. Its own
/// type rather than [`walwatch::layout::Mode`], which also holds modes that are only inferred
/// from locks and that the controller never runs, so that every `match` here covers exactly
/// what can happen; it converts into that `Mode` ([`From`]) and takes its names from it, so the
/// controller, the `walwatch checkpoint --mode` flag and the stats files share one vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Checkpoint {
    Passive,
    Truncate,
}

impl Checkpoint {
    /// Its name: the `mode` label, `--mode` value and `PRAGMA wal_checkpoint` argument.
    pub fn name(self) -> &'static str {
        walwatch::layout::Mode::from(self).name()
    }
}

impl From<Checkpoint> for walwatch::layout::Mode {
    fn from(c: Checkpoint) -> Self {
        match c {
            Checkpoint::Passive => Self::Passive,
            Checkpoint::Truncate => Self::Truncate,
        }
    }
}

/// Limits of one database, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub soft: u64,
    pub hard: u64,
}

/// What was measured, and the controller's memory of this database.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Observation {
    pub wal_bytes: u64,
    /// Frames written but not yet copied into the database (`None` when unknown).
    pub pending_frames: Option<u32>,
    /// Smoothed growth of `-wal`, bytes per second (negative when it shrank).
    pub growth_bytes_per_second: f64,
    /// A checkpoint of this database is running now.
    pub in_progress: bool,
    /// Time until the back-off after a failed TRUNCATE ends (zero when none).
    pub backoff_remaining: Duration,
    /// The reader that blocked the last TRUNCATE has gone since.
    pub blocker_gone: bool,
    /// A PASSIVE checkpoint ran moments ago (they are not repeated on every notification).
    pub passive_recent: bool,
}

/// Why a checkpoint is wanted (its `Display` is the reason that goes in the log).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Why {
    /// Priority 2: the WAL is at or over the hard limit.
    OverHard { wal: u64, hard: u64 },
    /// Priority 3: the WAL grows fast enough to reach the hard limit soon.
    OnCourse { wal: u64, rate: f64, hard: u64 },
    /// Priority 4: the WAL is at or over the soft limit, growing slowly.
    OverSoft { wal: u64, soft: u64 },
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = |b: f64| b / (1 << 20) as f64;
        match *self {
            Why::OverHard { wal, hard } => write!(
                f,
                "WAL {:.1} MiB is over the hard limit {:.1} MiB",
                mb(wal as f64),
                mb(hard as f64)
            ),
            Why::OnCourse { wal, rate, hard } => write!(
                f,
                "WAL {:.1} MiB growing {:.1} MiB/s is on course for the hard limit {:.1} MiB",
                mb(wal as f64),
                mb(rate),
                mb(hard as f64)
            ),
            Why::OverSoft { wal, soft } => write!(
                f,
                "WAL {:.1} MiB is over the soft limit {:.1} MiB",
                mb(wal as f64),
                mb(soft as f64)
            ),
        }
    }
}

/// Why a wanted checkpoint is held back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// Priority 5: a checkpoint of this database is already running.
    InProgress,
    /// Priority 6: backing off (for this long still) after a TRUNCATE a reader blocked.
    BackingOff(Duration),
    /// Priority 7: observe mode.
    Observe,
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Held::InProgress => f.write_str("a checkpoint is already running"),
            Held::BackingOff(left) => write!(f, "backing off {left:?} after a blocked attempt"),
            Held::Observe => f.write_str("observe mode"),
        }
    }
}

/// The decision, with its reasons.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Nothing,
    Run(Checkpoint, Why),
    /// A checkpoint would run but is held back.
    Hold(Checkpoint, Why, Held),
}

/// How far ahead the policy projects growth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Horizons {
    /// How soon the controller can react again (milliseconds with notifications, else one
    /// collection interval).
    pub reaction: Duration,
    /// One collection interval.
    pub interval: Duration,
}

/// Applies the strategy above: what the WAL needs ([`wanted`]), unless it is [`held`] back.
pub fn decide(
    mode: ControllerMode,
    limits: Limits,
    horizons: Horizons,
    o: &Observation,
) -> Decision {
    // Priority 1: the controller is off.
    if mode == ControllerMode::Off {
        return Decision::Nothing;
    }
    let Some((action, why)) = wanted(limits, horizons, o) else {
        return Decision::Nothing;
    };
    match held(mode, action, o) {
        Some(held) => Decision::Hold(action, why, held),
        None => Decision::Run(action, why),
    }
}

/// Priorities 2 to 4: the checkpoint the WAL needs now, if any.
pub fn wanted(limits: Limits, horizons: Horizons, o: &Observation) -> Option<(Checkpoint, Why)> {
    let rate = o.growth_bytes_per_second.max(0.0);
    let wal = o.wal_bytes as f64;
    let soon = wal + rate * horizons.reaction.as_secs_f64();
    let within_interval = wal + rate * horizons.interval.as_secs_f64();
    let (hard, soft) = (limits.hard as f64, limits.soft as f64);
    let (wal_bytes, hard_bytes) = (o.wal_bytes, limits.hard);
    // Priority 2: at or over the hard limit.
    if wal >= hard {
        return Some((
            Checkpoint::Truncate,
            Why::OverHard {
                wal: wal_bytes,
                hard: hard_bytes,
            },
        ));
    }
    // Priority 3: on course for the hard limit before the next reaction, or past the soft limit
    // and on course for it within an interval: PASSIVE cannot stop that (it does not hold
    // writers back), so truncate now rather than after overshooting.
    if soon >= hard || (wal >= soft && within_interval >= hard) {
        return Some((
            Checkpoint::Truncate,
            Why::OnCourse {
                wal: wal_bytes,
                rate,
                hard: hard_bytes,
            },
        ));
    }
    // Priority 4: over the soft limit, growing slowly, with frames to copy and no PASSIVE moments ago.
    if wal >= soft && o.pending_frames != Some(0) && !o.passive_recent {
        return Some((
            Checkpoint::Passive,
            Why::OverSoft {
                wal: wal_bytes,
                soft: limits.soft,
            },
        ));
    }
    None
}

/// Priorities 5 to 7: whether a wanted `action` is held back, and why.
pub fn held(mode: ControllerMode, action: Checkpoint, o: &Observation) -> Option<Held> {
    // Priority 5: one at a time.
    if o.in_progress {
        return Some(Held::InProgress);
    }
    // Priority 6: back-off after a TRUNCATE a reader blocked, unless that reader has gone.
    if action == Checkpoint::Truncate && !o.backoff_remaining.is_zero() && !o.blocker_gone {
        return Some(Held::BackingOff(o.backoff_remaining));
    }
    // Priority 7: observe only.
    if mode == ControllerMode::Observe {
        return Some(Held::Observe);
    }
    None
}

/// Whether a hold is logged: a checkpoint already running is routine; holds for observe mode
/// and back-off are news, logged once when they start (`was_holding`: a hold was in force at
/// the previous decision).
pub fn log_hold(held: Held, was_holding: bool) -> bool {
    match held {
        Held::InProgress => false,
        Held::BackingOff(_) | Held::Observe => !was_holding,
    }
}

/// Whether a failed checkpoint was held up by a reader that keeps an old snapshot (rather than
/// by a writer's transaction, which ends in milliseconds): one whose read mark is behind the
/// WAL, or a reader that has been reading for over a second.
pub fn pinned_by_reader(blockers: &[Blocker]) -> bool {
    blockers.iter().any(|b| match b.blocks {
        Blocks::Backfill => true,
        Blocks::WalReset => b.age_seconds.is_some_and(|a| a >= 1.0),
        Blocks::WriteLock => false,
    })
}

/// What a finished TRUNCATE does to the back-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterTruncate {
    /// It completed: the back-off and the remembered blockers are cleared.
    Reset,
    /// A reader pins the WAL: retrying cannot help until it leaves, so back off (and retry at
    /// once when it is gone).
    BackOff,
    /// It lost to a writer's transaction, which ends in milliseconds, or failed otherwise: the
    /// next notification of growth may try again at once.
    RetrySoon,
}

/// Priority 6's memory: what a TRUNCATE that ended `ok` (or not), blocked by `blockers`, does
/// to the back-off.
pub fn after_truncate(ok: bool, blockers: &[Blocker]) -> AfterTruncate {
    if ok {
        AfterTruncate::Reset
    } else if pinned_by_reader(blockers) {
        AfterTruncate::BackOff
    } else {
        AfterTruncate::RetrySoon
    }
}

/// Whether a TRUNCATE starts with a PASSIVE pass: yes, unless writers append (`growth`, bytes
/// per second) faster than half the rate the last pass copied at (`last_pass_rate`): then it
/// would copy little net, while the WAL grows until the TRUNCATE proper.
pub fn passive_pass(growth: f64, last_pass_rate: Option<f64>) -> bool {
    last_pass_rate.is_none_or(|rate| growth < rate / 2.0)
}

/// Next back-off after a failed TRUNCATE: doubles from `initial`, capped at `max`.
pub fn next_backoff(previous: Duration, initial: Duration, max: Duration) -> Duration {
    if previous.is_zero() {
        initial.min(max)
    } else {
        (previous * 2).min(max)
    }
}

/// Exponentially smoothed growth rate: `previous` updated with a new sample of `delta_bytes`
/// over `elapsed`; weight of the new sample grows with elapsed time (time constant `tau`).
pub fn smooth_growth(previous: f64, delta_bytes: f64, elapsed: Duration, tau: Duration) -> f64 {
    let dt = elapsed.as_secs_f64();
    if dt <= 0.0 {
        return previous;
    }
    let sample = delta_bytes / dt;
    let alpha = 1.0 - (-dt / tau.as_secs_f64().max(1e-3)).exp();
    previous + alpha * (sample - previous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_vocabulary_for_checkpoint_modes() {
        use clap::ValueEnum;
        for c in Checkpoint::value_variants() {
            // The child is started with `--mode <name>`: clap must read back the same mode.
            assert_eq!(Checkpoint::from_str(c.name(), false), Ok(*c));
            // SQLite's SQLITE_CHECKPOINT_* numbers, which layout::Mode's values are.
            let sqlite = match c {
                Checkpoint::Passive => 0,
                Checkpoint::Truncate => 3,
            };
            assert_eq!(walwatch::layout::Mode::from(*c) as u32, sqlite);
        }
        for m in ControllerMode::value_variants() {
            let toml = serde_json::to_string(m).unwrap();
            assert_eq!(toml, format!("\"{}\"", m.name()));
        }
    }

    const MIB: u64 = 1 << 20;
    const LIMITS: Limits = Limits {
        soft: 16 * MIB,
        hard: 32 * MIB,
    };
    const HORIZON: Horizons = Horizons {
        reaction: Duration::from_millis(200),
        interval: Duration::from_secs(1),
    };

    fn obs(wal_mib: u64) -> Observation {
        Observation {
            wal_bytes: wal_mib * MIB,
            pending_frames: Some(10),
            ..Default::default()
        }
    }

    fn action(d: Decision) -> Option<Checkpoint> {
        match d {
            Decision::Run(a, _) => Some(a),
            _ => None,
        }
    }

    #[test]
    fn tiers() {
        assert_eq!(
            decide(ControllerMode::Act, LIMITS, HORIZON, &obs(1)),
            Decision::Nothing
        );
        assert_eq!(
            action(decide(ControllerMode::Act, LIMITS, HORIZON, &obs(20))),
            Some(Checkpoint::Passive)
        );
        assert_eq!(
            action(decide(ControllerMode::Act, LIMITS, HORIZON, &obs(40))),
            Some(Checkpoint::Truncate)
        );
    }

    #[test]
    fn nothing_to_copy_or_just_copied_means_no_passive() {
        let o = Observation {
            pending_frames: Some(0),
            ..obs(20)
        };
        assert_eq!(
            decide(ControllerMode::Act, LIMITS, HORIZON, &o),
            Decision::Nothing
        );
        let o = Observation {
            passive_recent: true,
            ..obs(20)
        };
        assert_eq!(
            decide(ControllerMode::Act, LIMITS, HORIZON, &o),
            Decision::Nothing
        );
    }

    #[test]
    fn predicts_the_crossing() {
        let at = |wal_mib: u64, mib_per_s: f64| {
            let o = Observation {
                growth_bytes_per_second: mib_per_s * MIB as f64,
                ..obs(wal_mib)
            };
            decide(ControllerMode::Act, LIMITS, HORIZON, &o)
        };
        // 10 MiB growing 120 MiB/s reaches 32 MiB before the next reaction (200 ms): TRUNCATE.
        assert_eq!(action(at(10, 120.0)), Some(Checkpoint::Truncate));
        // 10 MiB growing 40 MiB/s: under the soft limit and the hard one out of reach before
        // the next reaction: nothing yet (a PASSIVE now would only keep the controller busy
        // while the writer outruns it).
        assert_eq!(at(10, 40.0), Decision::Nothing);
        // Over the soft limit and on course for the hard one within the interval: TRUNCATE.
        assert_eq!(action(at(17, 20.0)), Some(Checkpoint::Truncate));
        // Over the soft limit, growing slowly: PASSIVE.
        assert_eq!(action(at(17, 2.0)), Some(Checkpoint::Passive));
    }

    #[test]
    fn holds_back() {
        assert!(matches!(
            decide(ControllerMode::Observe, LIMITS, HORIZON, &obs(40)),
            Decision::Hold(Checkpoint::Truncate, _, Held::Observe)
        ));
        assert_eq!(
            decide(ControllerMode::Off, LIMITS, HORIZON, &obs(40)),
            Decision::Nothing
        );
        let running = Observation {
            in_progress: true,
            ..obs(40)
        };
        assert!(matches!(
            decide(ControllerMode::Act, LIMITS, HORIZON, &running),
            Decision::Hold(_, _, Held::InProgress)
        ));
        let backing_off = Observation {
            backoff_remaining: Duration::from_secs(2),
            ..obs(40)
        };
        assert!(matches!(
            decide(ControllerMode::Act, LIMITS, HORIZON, &backing_off),
            Decision::Hold(_, _, Held::BackingOff(_))
        ));
        let reader_left = Observation {
            blocker_gone: true,
            ..backing_off
        };
        assert_eq!(
            action(decide(ControllerMode::Act, LIMITS, HORIZON, &reader_left)),
            Some(Checkpoint::Truncate)
        );
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        let (i, m) = (Duration::from_secs(1), Duration::from_secs(5));
        let b1 = next_backoff(Duration::ZERO, i, m);
        let b2 = next_backoff(b1, i, m);
        let b4 = next_backoff(next_backoff(b2, i, m), i, m);
        assert_eq!((b1, b2, b4), (i, 2 * i, m));
    }

    #[test]
    fn growth_is_smoothed() {
        let tau = Duration::from_secs(1);
        let r = smooth_growth(0.0, 100.0, Duration::from_secs(1), tau);
        assert!(r > 50.0 && r < 100.0, "{r}");
        assert_eq!(smooth_growth(7.0, 100.0, Duration::ZERO, tau), 7.0);
    }

    /// Tiny limits (soft 100 B, hard 1000 B) drive each tier with one-line observations.
    const TINY: Limits = Limits {
        soft: 100,
        hard: 1000,
    };

    fn bytes(wal_bytes: u64) -> Observation {
        Observation {
            wal_bytes,
            pending_frames: Some(1),
            ..Default::default()
        }
    }

    #[test]
    fn priority_1_off_decides_nothing_even_over_the_hard_limit() {
        assert_eq!(
            decide(ControllerMode::Off, TINY, HORIZON, &bytes(5000)),
            Decision::Nothing
        );
    }

    #[test]
    fn priority_2_hard_limit_truncates() {
        let d = decide(ControllerMode::Act, TINY, HORIZON, &bytes(1000));
        assert_eq!(
            d,
            Decision::Run(
                Checkpoint::Truncate,
                Why::OverHard {
                    wal: 1000,
                    hard: 1000
                }
            )
        );
        assert_eq!(
            wanted(TINY, HORIZON, &bytes(999)).map(|w| w.0),
            Some(Checkpoint::Passive)
        );
    }

    #[test]
    fn priority_3_on_course_truncates() {
        // 50 B (under the soft limit) growing 5000 B/s: 1050 B within the 200 ms reaction.
        let o = Observation {
            growth_bytes_per_second: 5000.0,
            ..bytes(50)
        };
        assert!(matches!(
            wanted(TINY, HORIZON, &o),
            Some((Checkpoint::Truncate, Why::OnCourse { wal: 50, .. }))
        ));
        // 200 B (over soft) growing 900 B/s: under the hard limit within the reaction, over it
        // within the interval.
        let o = Observation {
            growth_bytes_per_second: 900.0,
            ..bytes(200)
        };
        assert!(matches!(
            wanted(TINY, HORIZON, &o),
            Some((Checkpoint::Truncate, Why::OnCourse { .. }))
        ));
        // Shrinking counts as no growth.
        let o = Observation {
            growth_bytes_per_second: -1e9,
            ..bytes(50)
        };
        assert_eq!(wanted(TINY, HORIZON, &o), None);
    }

    #[test]
    fn priority_4_soft_limit_passive_only_with_frames_to_copy() {
        assert_eq!(
            wanted(TINY, HORIZON, &bytes(100)),
            Some((
                Checkpoint::Passive,
                Why::OverSoft {
                    wal: 100,
                    soft: 100
                }
            ))
        );
        assert_eq!(wanted(TINY, HORIZON, &bytes(99)), None);
        let unknown = Observation {
            pending_frames: None,
            ..bytes(100)
        };
        assert!(wanted(TINY, HORIZON, &unknown).is_some());
        let none = Observation {
            pending_frames: Some(0),
            ..bytes(100)
        };
        assert_eq!(wanted(TINY, HORIZON, &none), None);
    }

    #[test]
    fn priority_5_to_7_hold_in_order() {
        let all = Observation {
            in_progress: true,
            backoff_remaining: Duration::from_secs(1),
            ..bytes(1000)
        };
        assert_eq!(
            held(ControllerMode::Observe, Checkpoint::Truncate, &all),
            Some(Held::InProgress)
        );
        let backing_off = Observation {
            in_progress: false,
            ..all
        };
        assert_eq!(
            held(ControllerMode::Observe, Checkpoint::Truncate, &backing_off),
            Some(Held::BackingOff(Duration::from_secs(1)))
        );
        // The back-off holds TRUNCATE only: PASSIVE never waits for a lock.
        assert_eq!(
            held(ControllerMode::Act, Checkpoint::Passive, &backing_off),
            None
        );
        assert_eq!(
            held(ControllerMode::Observe, Checkpoint::Passive, &backing_off),
            Some(Held::Observe)
        );
        assert_eq!(
            held(ControllerMode::Act, Checkpoint::Truncate, &bytes(1000)),
            None
        );
    }

    #[test]
    fn holds_are_logged_once_and_running_ones_never() {
        assert!(!log_hold(Held::InProgress, false));
        assert!(log_hold(Held::Observe, false));
        assert!(!log_hold(Held::Observe, true));
        assert!(log_hold(Held::BackingOff(Duration::from_secs(1)), false));
        let why = Why::OverHard {
            wal: 40 * MIB,
            hard: 32 * MIB,
        };
        assert_eq!(
            format!("{why}; {}", Held::InProgress),
            "WAL 40.0 MiB is over the hard limit 32.0 MiB; a checkpoint is already running"
        );
    }

    fn blocker(blocks: Blocks, age_seconds: Option<f64>) -> Blocker {
        Blocker {
            slot: "READ1",
            pid: 1,
            process: None,
            read_mark: None,
            age_seconds,
            blocks,
            reason: String::new(),
        }
    }

    #[test]
    fn back_off_only_for_a_reader_that_pins_the_wal() {
        let behind = blocker(Blocks::Backfill, None);
        let long_reader = blocker(Blocks::WalReset, Some(1.0));
        let short_reader = blocker(Blocks::WalReset, Some(0.2));
        let writer = blocker(Blocks::WriteLock, Some(5.0));
        assert_eq!(
            after_truncate(true, std::slice::from_ref(&behind)),
            AfterTruncate::Reset
        );
        assert_eq!(after_truncate(false, &[behind]), AfterTruncate::BackOff);
        assert_eq!(
            after_truncate(false, &[long_reader]),
            AfterTruncate::BackOff
        );
        assert_eq!(
            after_truncate(false, &[short_reader, writer]),
            AfterTruncate::RetrySoon
        );
        assert_eq!(after_truncate(false, &[]), AfterTruncate::RetrySoon);
    }

    #[test]
    fn passive_pass_unless_writers_outrun_it() {
        assert!(passive_pass(1e9, None));
        assert!(passive_pass(49.0, Some(100.0)));
        assert!(!passive_pass(50.0, Some(100.0)));
    }
}

//! The checkpoint policy: what to do about one database, given what was just measured. Pure:
//! no clock, no I/O, so every branch is tested with made-up numbers.
//!
//! # Checkpoint strategy (per database, at every collection and every WAL-growth notification)
//! - **Priority 1 — observe only.** In `observe` mode the decision is computed, logged and
//!   exported, but never carried out.
//! - **Priority 2 — one at a time.** While a checkpoint of this database runs, nothing else
//!   starts.
//! - **Priority 3 — hard limit: TRUNCATE.** When the WAL is at or over the hard limit, or will
//!   reach it before the controller can react again at its current growth rate, or is past the
//!   soft limit and on course to reach the hard one within an interval (PASSIVE would not stop
//!   it: it never holds writers back), run TRUNCATE with a short, bounded busy timeout
//!   (TRUNCATE holds the WRITE lock while it waits for readers, so writers stall for at most
//!   that long, plus the copy of the frames it backfills; [`super::checkpoint`] keeps that copy
//!   short). It backfills every frame and cuts `-wal` to zero bytes.
//! - **Priority 4 — soft limit: PASSIVE.** When the WAL is at or over the soft limit, growing
//!   slowly enough that it will not reach the hard limit within an interval, and frames are
//!   waiting to be copied, run PASSIVE (at most every 100 ms): it never
//!   waits for a lock and never blocks the application, and once every frame is copied the next
//!   writer starts the WAL over from its beginning, so the file stops growing.
//! - **Back-off.** After a TRUNCATE blocked by a reader that pins the WAL (its read mark is
//!   behind, or it has been reading for over a second), the next one waits `backoff`, doubling
//!   up to `max_backoff`, so a database pinned by a long reader is not hammered — except that it
//!   is retried at once when the reader that blocked it is gone. A TRUNCATE that lost to a
//!   writer's transaction (over in milliseconds) may be retried at the next chance.

use std::time::Duration;

/// What the controller does when a limit is crossed.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, clap::ValueEnum, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Checkpoint as the strategy says.
    Act,
    /// Decide, log and export, but never checkpoint.
    Observe,
    /// No controller.
    Off,
}

/// A checkpoint the controller runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Passive,
    Truncate,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Self::Passive => "passive",
            Self::Truncate => "truncate",
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

/// The decision, with the reason that goes in the log.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Nothing,
    Run(Action, String),
    /// A checkpoint would run but is held back (observe mode, back-off, one in progress).
    Hold(Action, String),
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

/// Applies the strategy above.
pub fn decide(mode: Mode, limits: Limits, horizons: Horizons, o: &Observation) -> Decision {
    if mode == Mode::Off {
        return Decision::Nothing;
    }
    let rate = o.growth_bytes_per_second.max(0.0);
    let wal = o.wal_bytes as f64;
    let soon = wal + rate * horizons.reaction.as_secs_f64();
    let within_interval = wal + rate * horizons.interval.as_secs_f64();
    let (hard, soft) = (limits.hard as f64, limits.soft as f64);
    let mb = |b: f64| b / (1 << 20) as f64;
    let (action, reason) = if wal >= hard {
        (
            Action::Truncate,
            format!(
                "WAL {:.1} MiB is over the hard limit {:.1} MiB",
                mb(wal),
                mb(hard)
            ),
        )
    } else if soon >= hard || (wal >= soft && within_interval >= hard) {
        // Past the soft limit and on course for the hard one: PASSIVE cannot stop that (it does
        // not hold writers back), so truncate now rather than after overshooting.
        (
            Action::Truncate,
            format!(
                "WAL {:.1} MiB growing {:.1} MiB/s is on course for the hard limit {:.1} MiB",
                mb(wal),
                mb(rate),
                mb(hard)
            ),
        )
    } else if wal >= soft && o.pending_frames != Some(0) && !o.passive_recent {
        (
            Action::Passive,
            format!(
                "WAL {:.1} MiB is over the soft limit {:.1} MiB",
                mb(wal),
                mb(soft)
            ),
        )
    } else {
        return Decision::Nothing;
    };
    if o.in_progress {
        return Decision::Hold(action, format!("{reason}; a checkpoint is already running"));
    }
    if action == Action::Truncate && !o.backoff_remaining.is_zero() && !o.blocker_gone {
        return Decision::Hold(
            action,
            format!(
                "{reason}; backing off {:?} after a blocked attempt",
                o.backoff_remaining
            ),
        );
    }
    if mode == Mode::Observe {
        return Decision::Hold(action, format!("{reason}; observe mode"));
    }
    Decision::Run(action, reason)
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

    fn action(d: Decision) -> Option<Action> {
        match d {
            Decision::Run(a, _) => Some(a),
            _ => None,
        }
    }

    #[test]
    fn tiers() {
        assert_eq!(
            decide(Mode::Act, LIMITS, HORIZON, &obs(1)),
            Decision::Nothing
        );
        assert_eq!(
            action(decide(Mode::Act, LIMITS, HORIZON, &obs(20))),
            Some(Action::Passive)
        );
        assert_eq!(
            action(decide(Mode::Act, LIMITS, HORIZON, &obs(40))),
            Some(Action::Truncate)
        );
    }

    #[test]
    fn nothing_to_copy_or_just_copied_means_no_passive() {
        let o = Observation {
            pending_frames: Some(0),
            ..obs(20)
        };
        assert_eq!(decide(Mode::Act, LIMITS, HORIZON, &o), Decision::Nothing);
        let o = Observation {
            passive_recent: true,
            ..obs(20)
        };
        assert_eq!(decide(Mode::Act, LIMITS, HORIZON, &o), Decision::Nothing);
    }

    #[test]
    fn predicts_the_crossing() {
        let at = |wal_mib: u64, mib_per_s: f64| {
            let o = Observation {
                growth_bytes_per_second: mib_per_s * MIB as f64,
                ..obs(wal_mib)
            };
            decide(Mode::Act, LIMITS, HORIZON, &o)
        };
        // 10 MiB growing 120 MiB/s reaches 32 MiB before the next reaction (200 ms): TRUNCATE.
        assert_eq!(action(at(10, 120.0)), Some(Action::Truncate));
        // 10 MiB growing 40 MiB/s: under the soft limit and the hard one out of reach before
        // the next reaction: nothing yet (a PASSIVE now would only keep the controller busy
        // while the writer outruns it).
        assert_eq!(at(10, 40.0), Decision::Nothing);
        // Over the soft limit and on course for the hard one within the interval: TRUNCATE.
        assert_eq!(action(at(17, 20.0)), Some(Action::Truncate));
        // Over the soft limit, growing slowly: PASSIVE.
        assert_eq!(action(at(17, 2.0)), Some(Action::Passive));
    }

    #[test]
    fn holds_back() {
        assert!(matches!(
            decide(Mode::Observe, LIMITS, HORIZON, &obs(40)),
            Decision::Hold(Action::Truncate, _)
        ));
        assert_eq!(
            decide(Mode::Off, LIMITS, HORIZON, &obs(40)),
            Decision::Nothing
        );
        let running = Observation {
            in_progress: true,
            ..obs(40)
        };
        assert!(matches!(
            decide(Mode::Act, LIMITS, HORIZON, &running),
            Decision::Hold(..)
        ));
        let backing_off = Observation {
            backoff_remaining: Duration::from_secs(2),
            ..obs(40)
        };
        assert!(matches!(
            decide(Mode::Act, LIMITS, HORIZON, &backing_off),
            Decision::Hold(..)
        ));
        let reader_left = Observation {
            blocker_gone: true,
            ..backing_off
        };
        assert_eq!(
            action(decide(Mode::Act, LIMITS, HORIZON, &reader_left)),
            Some(Action::Truncate)
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
}

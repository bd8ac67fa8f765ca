//! When to log a checkpoint that keeps failing the same way (a read-only mount, a missing
//! permission): the first failure, then "still failing (N times)" at a pace that slows from one
//! minute to an hour, then "recovered". The metrics count every attempt; only the log is
//! thinned. Pure: the caller passes the time.

use std::time::{Duration, Instant};

/// First "still failing" line after this long; each later one waits twice as long…
pub const FIRST_REMINDER: Duration = Duration::from_secs(60);
/// …up to this.
pub const MAX_REMINDER: Duration = Duration::from_secs(3600);

/// A failure that has been logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failing {
    pub error: String,
    pub since: Instant,
    /// Failures with this error, the first included.
    pub count: u64,
    pub next_log: Instant,
    reminder: Duration,
}

/// What to log about one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// Nothing about failures: log the outcome as usual.
    Normal,
    /// A new failure (or a different error than before): log it in full.
    First,
    /// The same failure again, not yet time for a reminder: log nothing.
    Quiet,
    /// The same failure, `count` times since `for_`: log a reminder.
    Still { count: u64, for_: Duration },
    /// It works again after `count` failures over `for_`: log that, then the outcome.
    Recovered { count: u64, for_: Duration },
}

/// Updates `state` with an attempt that failed with `error` (or did not fail: `None`).
pub fn track(state: &mut Option<Failing>, error: Option<&str>, now: Instant) -> Report {
    match (state.as_mut(), error) {
        (None, None) => Report::Normal,
        (Some(f), None) => {
            let report = Report::Recovered {
                count: f.count,
                for_: now - f.since,
            };
            *state = None;
            report
        }
        (Some(f), Some(e)) if f.error == e => {
            f.count += 1;
            if now < f.next_log {
                return Report::Quiet;
            }
            f.reminder = (f.reminder * 2).min(MAX_REMINDER);
            f.next_log = now + f.reminder;
            Report::Still {
                count: f.count,
                for_: now - f.since,
            }
        }
        (_, Some(e)) => {
            *state = Some(Failing {
                error: e.to_owned(),
                since: now,
                count: 1,
                next_log: now + FIRST_REMINDER,
                reminder: FIRST_REMINDER,
            });
            Report::First
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_first_failure_then_reminders_that_slow_down_then_recovery() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut state = None;
        let ro = Some("attempt to write a readonly database");
        assert_eq!(track(&mut state, None, at(0)), Report::Normal);
        assert_eq!(track(&mut state, ro, at(0)), Report::First);
        // One attempt a second for an hour: reminders at 1, 3, 7, 15, 31 minutes…
        let mut reminders = Vec::new();
        for s in 1..=3600 {
            match track(&mut state, ro, at(s)) {
                Report::Quiet => {}
                Report::Still { count, for_ } => {
                    assert_eq!(count, s + 1);
                    assert_eq!(for_, Duration::from_secs(s));
                    reminders.push(s / 60);
                }
                other => panic!("{other:?} at {s}s"),
            }
        }
        assert_eq!(reminders, [1, 3, 7, 15, 31]);
        // Another error is news.
        assert_eq!(
            track(&mut state, Some("disk I/O error"), at(3601)),
            Report::First
        );
        assert_eq!(
            track(&mut state, None, at(3661)),
            Report::Recovered {
                count: 1,
                for_: Duration::from_secs(60)
            }
        );
        assert_eq!(state, None);
        assert_eq!(track(&mut state, None, at(3662)), Report::Normal);
    }

    #[test]
    fn reminders_are_at_most_an_hour_apart() {
        let t0 = Instant::now();
        let mut state = None;
        track(&mut state, Some("e"), t0);
        let mut last = t0;
        let mut gaps = Vec::new();
        for m in 1..=24 * 60 {
            let now = t0 + Duration::from_secs(60 * m);
            if let Report::Still { .. } = track(&mut state, Some("e"), now) {
                gaps.push((now - last).as_secs() / 60);
                last = now;
            }
        }
        assert_eq!(&gaps[..7], [1, 2, 4, 8, 16, 32, 60]);
        assert!(gaps[7..].iter().all(|&g| g == 60), "{gaps:?}");
    }
}

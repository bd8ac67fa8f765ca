//! What the accept loop does when `accept` fails: back off (10 ms, doubling to 1 s) rather
//! than spin, and log a bounded number of lines: the first error of an episode, then at most one
//! summary per [`SUMMARY_EVERY`] with the count of errors not logged, and one line when accepting
//! works again.

use std::io;
use std::time::{Duration, Instant};

/// First pause after a failed accept.
pub const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// Longest pause.
pub const MAX_PAUSE: Duration = Duration::from_secs(1);
/// At most one summary line per this interval.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Whether an accept error concerns only the connection being accepted (retry at once).
pub fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Whether an accept error means the process or system is out of descriptors or memory.
pub fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Back-off and log state of the accept loop. An episode of errors starts with a logged error
/// and ends once accepting has worked for [`SUMMARY_EVERY`] without an error; successes in
/// between (a connection accepted after another one closed) reset the pause, not the log.
#[derive(Default)]
pub struct Backoff {
    pause: Option<Duration>,
    /// When the last line was logged, during an episode.
    logged_at: Option<Instant>,
    last_error_at: Option<Instant>,
    /// Errors since the last line.
    suppressed: u64,
}

impl Backoff {
    /// Records a failed accept; returns how long to pause before the next one.
    pub fn failed(&mut self, e: &io::Error) -> Duration {
        let now = Instant::now();
        self.last_error_at = Some(now);
        match self.logged_at {
            None => {
                let hint = if out_of_resources(e) {
                    "; out of file descriptors or memory: lower --web.max-connections or raise the open-files limit (LimitNOFILE=, ulimit -n)"
                } else {
                    ""
                };
                tracing::error!(error = %e, "cannot accept connections{hint}; retrying with back-off up to {MAX_PAUSE:?}, further errors summarised every {SUMMARY_EVERY:?}");
                self.logged_at = Some(now);
            }
            Some(at) if now.duration_since(at) >= SUMMARY_EVERY => {
                tracing::error!(error = %e, "accept failed {} more times in the last {:.0?}", self.suppressed + 1, now.duration_since(at));
                self.logged_at = Some(now);
                self.suppressed = 0;
            }
            Some(_) => self.suppressed += 1,
        }
        let pause = self.pause.map_or(FIRST_PAUSE, |p| (p * 2).min(MAX_PAUSE));
        self.pause = Some(pause);
        pause
    }

    /// Records a successful accept.
    pub fn succeeded(&mut self) {
        self.pause = None;
        let Some(last) = self.last_error_at else {
            return;
        };
        if last.elapsed() >= SUMMARY_EVERY {
            tracing::info!(
                "accepting connections again ({} more failed attempts before)",
                self.suppressed
            );
            *self = Self::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_a_second_and_reset() {
        let mut b = Backoff::default();
        let e = io::Error::from_raw_os_error(libc::EMFILE);
        assert!(out_of_resources(&e) && !per_connection(&e));
        let pauses: Vec<_> = (0..10).map(|_| b.failed(&e).as_millis()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        assert_eq!(b.suppressed, 9);
        b.succeeded();
        assert_eq!(b.failed(&e), FIRST_PAUSE);
        // A success between errors resets the pause but not the episode: nothing new is logged.
        assert_eq!(b.suppressed, 10);
    }
}

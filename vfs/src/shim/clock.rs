//! The clocks of the shim, as nanosecond integers (no `Instant`, no `Duration` arithmetic), and
//! the hot path's *tick* counter. The only unsafe code the recorder needs lives here, so
//! `recorder.rs` can forbid unsafe code.
//!
//! # Ticks
//! Where the kernel itself keeps time with the CPU's time-stamp counter (clocksource `tsc`,
//! which Linux keeps only while the TSC runs at a constant rate and agrees across CPUs), a tick
//! is one TSC count: one instruction (`rdtsc`), no call, no vDSO page to read. Its rate is
//! measured against `CLOCK_MONOTONIC` off the hot path ([`calibrate`]). Everywhere else (other
//! clocksources, other architectures) a tick is one nanosecond of the coarse clock.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

/// `clock_gettime(id)` in ns; 0 if the clock cannot be read (never on Linux): the timespec is
/// zeroed first, so a failed call reads as 0 without a check on the result.
#[inline]
fn read(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which lives across the call.
    unsafe { libc::clock_gettime(id, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The coarse monotonic clock: the last kernel tick (vDSO, no syscall).
#[inline]
pub(crate) fn coarse() -> u64 {
    read(libc::CLOCK_MONOTONIC_COARSE)
}

/// The precise monotonic clock (the clock behind `std::time::Instant`).
#[inline]
pub(crate) fn precise() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}

/// The resolution of [`coarse`] in ns (`clock_getres`), or `None` if it cannot be read.
pub(crate) fn coarse_tick_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_getres writes one timespec into `ts`, which lives across the call.
    if unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } != 0 {
        return None;
    }
    Some(
        (ts.tv_sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec as u64),
    )
}

/// Whether ticks are TSC counts in this process: x86-64, and the kernel's clocksource is `tsc`.
/// Decided once (one read of a sysfs file, when the first database is opened).
pub(crate) fn tsc_ticks() -> bool {
    static TSC: OnceLock<bool> = OnceLock::new();
    *TSC.get_or_init(|| {
        cfg!(target_arch = "x86_64")
            && std::fs::read("/sys/devices/system/clocksource/clocksource0/current_clocksource")
                .is_ok_and(|name| name.trim_ascii() == b"tsc")
    })
}

/// The time-stamp counter (0 off x86-64, where [`tsc_ticks`] is false and it is never read).
#[inline(always)]
pub(crate) fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `rdtsc` exists on every x86-64 CPU, reads no memory and has no precondition (the
    // intrinsic is an `unsafe fn` on older compilers only).
    #[allow(unused_unsafe)]
    let ticks = unsafe { core::arch::x86_64::_rdtsc() };
    #[cfg(not(target_arch = "x86_64"))]
    let ticks = 0;
    ticks
}

/// The TSC's rate in ns per count, as 32.32 fixed point: 0 until the process has run long
/// enough to measure it. See [`Calibration::rate`].
pub(crate) fn calibrate(tsc: u64, mono_ns: u64) -> u64 {
    static PROCESS: Calibration = Calibration::new();
    PROCESS.rate(tsc, mono_ns)
}

/// The TSC's rate, measured from the first (TSC, `CLOCK_MONOTONIC`) pair offered to the
/// latest.
pub(crate) struct Calibration {
    first: OnceLock<(u64, u64)>,
    rate: AtomicU64,
    span: AtomicU64,
}

impl Calibration {
    pub(crate) const fn new() -> Self {
        Self {
            first: OnceLock::new(),
            rate: AtomicU64::new(0),
            span: AtomicU64::new(0),
        }
    }

    /// The rate (32.32 ns per count) from the first pair to this one, once they are
    /// [`MIN_SPAN_NS`] apart, measured again each time the span has doubled (the longer the
    /// span, the smaller the error of the two clock reads in it); 0 before. A rate no real TSC
    /// runs at (below 100 MHz or above 100 GHz: a suspended machine, a migrated VM) is ignored.
    /// Threads may race here: each stores a valid measurement.
    pub(crate) fn rate(&self, tsc: u64, mono_ns: u64) -> u64 {
        let (tsc0, mono0) = *self.first.get_or_init(|| (tsc, mono_ns));
        let span = mono_ns.saturating_sub(mono0);
        let counts = tsc.saturating_sub(tsc0);
        if span >= MIN_SPAN_NS && counts > 0 && span / 2 >= self.span.load(Relaxed) {
            let rate = ((span as u128) << 32) / counts as u128;
            if (MIN_RATE..=MAX_RATE).contains(&rate) {
                self.rate.store(rate as u64, Relaxed);
                self.span.store(span, Relaxed);
            }
        }
        self.rate.load(Relaxed)
    }
}

/// The shortest span a TSC rate is measured over: 10 ms.
pub(crate) const MIN_SPAN_NS: u64 = 10_000_000;
/// Rates, in 32.32 ns per count, of a 100 GHz and a 100 MHz counter.
const MIN_RATE: u128 = (1 << 32) / 100;
const MAX_RATE: u128 = 10 << 32;

/// `ticks` TSC counts in ns at `rate` (32.32 ns per count): exact below 2^64 ns (585 years),
/// which a TSC reading (counts since the machine started) is.
#[inline(always)]
pub(crate) fn tsc_ns(ticks: u64, rate: u64) -> u64 {
    ((ticks as u128 * rate as u128) >> 32) as u64
}

/// A lower bound, in TSC counts, of `ns` nanoseconds before the rate is known: no TSC counts
/// slower than 100 MHz.
pub(crate) fn tsc_counts_at_least(ns: u64) -> u64 {
    ns / 10
}

/// One connection's tick clock: reads ticks, and turns them into nanoseconds and Unix time.
/// Its TSC anchor and rate are refreshed off the hot path ([`Ticks::refresh`], at each sampled
/// hold), so turning a TSC reading into Unix time extrapolates over a short span.
pub(crate) struct Ticks {
    /// Ticks are TSC counts ([`tsc_ticks`]); else coarse-clock nanoseconds.
    tsc: bool,
    /// The TSC's rate (32.32 ns per count); 0 while unknown, and when ticks are not TSC counts.
    rate: u64,
    /// The TSC reading of the last refresh.
    anchor_tsc: u64,
    /// The monotonic and the Unix time of TSC count 0 by the anchor and the rate: a TSC
    /// reading in ns plus these is the time now (one multiplication, one addition).
    mono_base_ns: u64,
    unix_base_ns: u64,
    /// Unix time minus monotonic time, in ns.
    unix_offset_ns: u64,
    /// What counts as a long hold, in ns, and in ticks (a lower bound while the rate is unknown).
    long_ns: u64,
    long_ticks: u64,
}

impl Ticks {
    pub(crate) fn new(unix_offset_ns: u64, long_ns: u64) -> Self {
        let mut ticks = Self {
            tsc: tsc_ticks(),
            rate: 0,
            anchor_tsc: 0,
            mono_base_ns: 0,
            unix_base_ns: 0,
            unix_offset_ns,
            long_ns,
            long_ticks: long_ns,
        };
        if ticks.tsc {
            ticks.long_ticks = tsc_counts_at_least(long_ns);
        }
        ticks.refresh(precise());
        ticks
    }

    /// Re-anchors the TSC at `mono_ns` (a [`precise`] reading just taken) and picks up the
    /// process's latest rate. Off the hot path.
    pub(crate) fn refresh(&mut self, mono_ns: u64) {
        if !self.tsc {
            return;
        }
        let now = tsc();
        let rate = calibrate(now, mono_ns);
        self.anchor_tsc = now;
        if rate != self.rate && rate != 0 {
            self.rate = rate;
            self.long_ticks = (((self.long_ns as u128) << 32) / rate as u128) as u64;
        }
        // Wrapping: the base may be "before" 0; adding a later reading wraps back.
        self.mono_base_ns = mono_ns.wrapping_sub(tsc_ns(now, self.rate));
        self.unix_base_ns = self.mono_base_ns.wrapping_add(self.unix_offset_ns);
    }

    /// What counts as a long hold, in ticks (a lower bound while the TSC's rate is unknown).
    #[inline(always)]
    pub(crate) fn long_ticks(&self) -> u64 {
        self.long_ticks
    }

    /// Now, in ticks: one instruction where ticks are TSC counts.
    #[inline(always)]
    pub(crate) fn now(&self) -> u64 {
        if self.tsc {
            tsc()
        } else {
            coarse()
        }
    }

    /// Whether [`Ticks::now_inline`] and [`Ticks::unix_now_inline`] may be used: ticks are TSC
    /// counts and their rate is known.
    #[inline(always)]
    pub(crate) fn is_inline(&self) -> bool {
        self.rate != 0
    }

    /// [`Ticks::now`] when [`Ticks::is_inline`]: no branch, no call.
    #[inline(always)]
    pub(crate) fn now_inline(&self) -> u64 {
        tsc()
    }

    /// [`Ticks::unix_now`] when [`Ticks::is_inline`]: no branch, no call.
    #[inline(always)]
    pub(crate) fn unix_now_inline(&self) -> u64 {
        self.unix_base_ns.wrapping_add(tsc_ns(tsc(), self.rate))
    }

    /// The precise monotonic clock from the TSC (one read), if it is inline and its anchor is
    /// under 2^30 counts old (a quarter to one second at today's rates); else `None`, and the
    /// caller reads [`precise`] and re-anchors.
    #[inline(always)]
    pub(crate) fn mono_now_fresh(&self) -> Option<u64> {
        let now = tsc();
        (self.is_inline() && now.wrapping_sub(self.anchor_tsc) >> 30 == 0)
            .then(|| self.mono_base_ns.wrapping_add(tsc_ns(now, self.rate)))
    }

    /// Now, as Unix time in ns: from the TSC once its rate is known, else from the coarse
    /// clock (resolution one kernel tick either way is enough: reader ages are shown in
    /// seconds).
    #[inline(always)]
    pub(crate) fn unix_now(&self) -> u64 {
        if self.is_inline() {
            self.unix_now_inline()
        } else {
            coarse().wrapping_add(self.unix_offset_ns)
        }
    }

    /// The length in ns of a hold that began at tick `since`, if it is a long one.
    #[inline(always)]
    pub(crate) fn long_hold(&mut self, since: u64) -> Option<u64> {
        let ticks = self.now().saturating_sub(since);
        if ticks < self.long_ticks {
            return None;
        }
        self.long_hold_ns(ticks)
    }

    #[cold]
    #[inline(never)]
    fn long_hold_ns(&mut self, ticks: u64) -> Option<u64> {
        let ns = if self.tsc {
            if self.rate == 0 {
                // The process has run for at least this hold: long enough to measure the
                // rate if the hold is long (else it is not).
                self.refresh(precise());
            }
            if self.rate == 0 {
                return None;
            }
            tsc_ns(ticks, self.rate)
        } else {
            ticks
        };
        (ns >= self.long_ns).then_some(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_measured_once_the_span_is_long_enough() {
        // A 2.5 GHz counter: 0.4 ns per count.
        let c = Calibration::new();
        let calibrate = |t, m| c.rate(t, m);
        let base = (1u64 << 40, 5_000_000_000u64);
        assert_eq!(calibrate(base.0, base.1), 0, "no span yet");
        let at = |ns: u64| (base.0 + ns * 5 / 2, base.1 + ns);
        let (t, m) = at(MIN_SPAN_NS / 2);
        assert_eq!(calibrate(t, m), 0, "too short a span");
        let (t, m) = at(MIN_SPAN_NS * 4);
        let rate = calibrate(t, m);
        assert!(
            (tsc_ns(2_500_000_000, rate) as i64 - 1_000_000_000).abs() < 10,
            "2.5e9 counts are one second, rate {rate}"
        );
        // An absurd pair (the counter stood still) is ignored: the known rate stays.
        assert_eq!(calibrate(t, m + 1_000_000_000_000), rate);
    }

    #[test]
    fn ticks_are_the_tsc_only_where_the_kernel_uses_it() {
        let source = std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .unwrap_or_default();
        assert_eq!(
            tsc_ticks(),
            cfg!(target_arch = "x86_64") && source.trim() == "tsc"
        );
        if tsc_ticks() {
            let (a, b) = (tsc(), tsc());
            assert!(b >= a, "the TSC does not run backwards on one thread");
        }
    }
}

//! The two clocks of the shim's hot path, as nanosecond integers (no `Instant`, no
//! `Duration` arithmetic): read through the vDSO, no system call. The only unsafe code the
//! recorder needs lives here, so `recorder.rs` can forbid unsafe code.

/// `clock_gettime(id)` in ns; 0 if the clock cannot be read (never on Linux).
#[inline]
fn read(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which lives across the call.
    if unsafe { libc::clock_gettime(id, &mut ts) } != 0 {
        return 0;
    }
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

//! The attacks of issue 9 ("Safe on a shared host"), replayed with two unprivileged users
//! (`walwatch-victim`, `walwatch-attacker`) and a root sidecar, each scenario in a private
//! mount namespace with its own `/dev/shm`. Every test names the attack it replays.
//!
//! Run: `cargo build --release && cargo test --release -p walwatch-tests --test attacks`.
//! Needs root (CI runs as root; elsewhere the tests skip with a notice), `/usr/bin/python3`,
//! `unshare`, `setpriv`, `flock`, `useradd`, `curl`. The users stay (creating them again is a
//! no-op); every file a scenario makes is on tmpfs mounts that vanish with its namespace.
//!
//! Each scenario asserts what the issue promises: no committed row lost across a crash, no
//! application killed or hung (bounded waits), no file outside the stats directory created or
//! changed, no checkpoint caused by a forged stats file, no collection stalled.
#![deny(unsafe_code)]

#[allow(unsafe_code)] // libc calls std does not offer
mod harness;

mod output;
mod sidecar;
mod stats_files;

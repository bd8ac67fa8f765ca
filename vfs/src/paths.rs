//! Where stats files live and what they are called. Shared by the shim and the sidecar so both
//! agree without configuration.
//!
//! By default every user gets a private directory, `/dev/shm/walwatch-<uid>` (mode 0700), as
//! `XDG_RUNTIME_DIR` gives every user a private runtime directory: no other unprivileged user
//! can plant, replace, lock or truncate a file in it. The sidecar finds these directories by
//! their name (a root sidecar reads all of them) and checks that each is owned by the uid it
//! names. Sharing across users is the operator's choice: set `WALWATCH_DIR` to a directory whose
//! group they chose (see [`crate::trust`]).

use std::path::{Path, PathBuf};

/// Environment variable that overrides the stats directory.
pub const DIR_ENV: &str = "WALWATCH_DIR";
/// File-name suffix of stats files.
pub const SUFFIX: &str = ".walwatch";
/// Name prefix of the per-user default directories: `walwatch-<uid>`.
pub const PER_USER_PREFIX: &str = "walwatch-";

/// The stats directory of this process: `$WALWATCH_DIR` when set and not empty, else its
/// effective user's default directory ([`default_stats_dir`]).
pub fn stats_dir() -> PathBuf {
    match std::env::var_os(DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => default_stats_dir(),
    }
}

/// The default stats directory of the effective user: `<base>/walwatch-<euid>`.
pub fn default_stats_dir() -> PathBuf {
    per_user_dir(&default_base_dir(), effective_uid())
}

/// Where the per-user directories are made: `/dev/shm` (a tmpfs on Linux, so the shared
/// counters never cause disk writeback), else the temporary directory.
pub fn default_base_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// `<base>/walwatch-<uid>`.
pub fn per_user_dir(base: &Path, uid: u32) -> PathBuf {
    base.join(format!("{PER_USER_PREFIX}{uid}"))
}

/// The uid a per-user directory name stands for: `walwatch-1000` → 1000. Only canonical
/// decimal numbers count (`walwatch-01` and `walwatch-+1` do not), so one uid has one name.
pub fn uid_of_per_user_dir(name: &[u8]) -> Option<u32> {
    let digits = name.strip_prefix(PER_USER_PREFIX.as_bytes())?;
    let text = std::str::from_utf8(digits).ok()?;
    let uid: u32 = text.parse().ok()?;
    (uid.to_string() == text).then_some(uid)
}

/// The effective uid of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// Stats file name for a database: a readable prefix from the database's file name and a hash
/// of its full path, so two `app.db` in different directories never share a file.
/// The header inside names the full path; readers check it.
pub fn stats_file_name(db_path: &[u8]) -> String {
    let base = db_path.rsplit(|&b| b == b'/').next().unwrap_or(db_path);
    let readable: String = base
        .iter()
        .take(48)
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_' {
                b as char
            } else {
                '_'
            }
        })
        .collect();
    format!("{readable}.{:016x}{SUFFIX}", fnv1a64(db_path))
}

/// FNV-1a, 64-bit: stable across versions and platforms, unlike `std`'s hasher.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_distinct() {
        let a = stats_file_name(b"/srv/a/app.db");
        let b = stats_file_name(b"/srv/b/app.db");
        assert!(a.starts_with("app.db.") && a.ends_with(SUFFIX));
        assert_ne!(a, b);
        assert_eq!(a, stats_file_name(b"/srv/a/app.db"));
        assert_eq!(
            stats_file_name(b"/x/we ird\n.db"),
            format!("we_ird_.db.{:016x}{SUFFIX}", fnv1a64(b"/x/we ird\n.db"))
        );
    }

    #[test]
    fn per_user_directories_name_one_uid_each() {
        assert_eq!(
            per_user_dir(Path::new("/dev/shm"), 1000),
            Path::new("/dev/shm/walwatch-1000")
        );
        assert_eq!(uid_of_per_user_dir(b"walwatch-1000"), Some(1000));
        assert_eq!(uid_of_per_user_dir(b"walwatch-0"), Some(0));
        for other in [
            &b"walwatch-01"[..],
            b"walwatch-+1",
            b"walwatch-",
            b"walwatch",
            b"walwatch-1x",
            b"walwatch-99999999999",
        ] {
            assert_eq!(
                uid_of_per_user_dir(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
        assert!(default_stats_dir().ends_with(format!("walwatch-{}", effective_uid())));
    }
}

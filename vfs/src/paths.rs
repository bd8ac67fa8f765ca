//! Where stats files live and what they are called. Shared by the shim and the sidecar so both
//! agree without configuration.

use std::path::{Path, PathBuf};

/// Environment variable that overrides the stats directory.
pub const DIR_ENV: &str = "WALWATCH_DIR";
/// File-name suffix of stats files.
pub const SUFFIX: &str = ".walwatch";

/// The stats directory: `$WALWATCH_DIR` when set and not empty, else `/dev/shm/walwatch` (a
/// tmpfs on Linux, so the shared counters never cause disk writeback), else
/// `$TMPDIR/walwatch`.
pub fn stats_dir() -> PathBuf {
    match std::env::var_os(DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => default_stats_dir(),
    }
}

/// The stats directory when `WALWATCH_DIR` is not set.
pub fn default_stats_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.join("walwatch")
    } else {
        std::env::temp_dir().join("walwatch")
    }
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
}

//! Facts about other processes, from `/proc` and `kill(pid, 0)`.

use std::path::Path;

/// The process name (`/proc/<pid>/comm`, at most 15 bytes, as `ps` shows it), if readable.
pub fn name(pid: u32) -> Option<String> {
    name_in(Path::new("/proc"), pid)
}

fn name_in(proc_root: &Path, pid: u32) -> Option<String> {
    let raw = std::fs::read(proc_root.join(pid.to_string()).join("comm")).ok()?;
    parse_comm(&raw)
}

/// `comm` ends with a newline; a name may hold any bytes but NUL and `/`.
pub fn parse_comm(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let name = text.trim_end_matches('\n');
    (!name.is_empty()).then(|| name.to_owned())
}

/// When `pid` started, in Unix nanoseconds (to within a second), from `/proc/<pid>/stat` and the
/// boot time in `/proc/stat`: a reader entry older than its process was left by an earlier
/// process with the same pid.
pub fn started_unix_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    start_time(&stat, boot_time()?)
}

/// The `btime` line of `/proc/stat`, read until it is found once: boot time does not change
/// while the system runs, and `/proc/stat` is kilobytes of per-CPU figures the kernel formats
/// at every read (it was read once per reader entry, 10,000 times a collection at 10,000
/// databases).
fn boot_time() -> Option<&'static str> {
    static BOOT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(line) = BOOT.get() {
        return Some(line);
    }
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("btime "))?;
    Some(BOOT.get_or_init(|| line.to_owned()))
}

/// `/proc` reports times in `USER_HZ` ticks, 100 a second on every architecture Linux offers
/// this interface on today (it is fixed by the ABI, not the kernel's `HZ`).
const USER_HZ: u64 = 100;

/// Pure part of [`started_unix_ns`]: `starttime` (field 22 of `/proc/<pid>/stat`, after the
/// parenthesised name, which may hold spaces and parentheses) plus `btime` of `/proc/stat`.
pub fn start_time(stat: &str, proc_stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    let btime: u64 = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(btime * 1_000_000_000 + ticks * (1_000_000_000 / USER_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comm() {
        assert_eq!(parse_comm(b"sqlite3\n").as_deref(), Some("sqlite3"));
        assert_eq!(parse_comm(b"python3"), Some("python3".to_owned()));
        assert_eq!(parse_comm(b"\n"), None);
    }

    #[test]
    fn start_time_of_a_process() {
        let stat =
            "4242 (a) b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000 10";
        assert_eq!(
            start_time(stat, "cpu 1 2\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000_000_000_000 + 123_450_000_000)
        );
        assert_eq!(start_time("garbage", "btime 1"), None);
        let me = started_unix_ns(std::process::id()).expect("own start time");
        let now = walwatch::unix_now_ns();
        assert!(
            me <= now + 2_000_000_000,
            "started in the future: {me} > {now}"
        );
    }

    #[test]
    fn names_this_process() {
        let me = name(std::process::id()).expect("own comm");
        assert!(!me.is_empty());
        assert!(walwatch::process_alive(std::process::id()));
    }
}

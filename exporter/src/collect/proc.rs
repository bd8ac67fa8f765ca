//! Facts about other processes, from `/proc` and `kill(pid, 0)`.

use std::path::Path;

/// Whether `pid` is a live process. A stats file outlives the processes that wrote it, so
/// every pid read from one is checked before it is shown.
pub fn alive(pid: u32) -> bool {
    crate::sys::pid_alive(pid)
}

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
    fn names_this_process() {
        let me = name(std::process::id()).expect("own comm");
        assert!(!me.is_empty());
        assert!(alive(std::process::id()));
    }
}

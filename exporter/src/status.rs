//! `walwatch status DB…`: a one-shot human report of each database, from the same
//! [`DbState`] that `/status` and `/metrics` render. Works without the shim: the WAL, the
//! wal-index header and the lock holders come from the files themselves.

use std::fmt::Write;

use crate::model::DbState;
use crate::text::escaped;

/// Text from a file or another process, safe for a terminal.
fn safe(s: &str) -> String {
    escaped(s.as_bytes())
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `75.2` → `1m15s`.
pub fn human_age(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 10.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        let s = s as u64;
        if s < 60 {
            format!("{s}s")
        } else {
            format!("{}m{:02}s", s / 60, s % 60)
        }
    } else {
        let s = s as u64;
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

fn who(pid: u32, process: Option<&str>) -> String {
    match process {
        Some(name) => format!("pid {pid} ({})", safe(name)),
        None => format!("pid {pid}"),
    }
}

/// The report of one database.
pub fn report(db: &DbState, now_unix_seconds: f64) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", safe(&db.path));
    let via = if db.sources.contains(&"shim") {
        "shim stats file"
    } else {
        "files only (no stats file: the shim has not opened it)"
    };
    if !db.up {
        let _ = writeln!(
            o,
            "  DOWN: {}",
            safe(db.error.as_deref().unwrap_or("unreadable"))
        );
        return o;
    }
    let _ = writeln!(o, "  source:      {via}");
    if let Some(e) = &db.error {
        let _ = writeln!(o, "  warning:     {}", safe(e));
    }
    let _ = writeln!(
        o,
        "  database:    {}",
        human_bytes(db.db_bytes.unwrap_or(0))
    );
    let wal_bytes = db.wal_bytes.unwrap_or(0);
    match &db.wal_index {
        Some(w) => {
            let _ = writeln!(
                o,
                "  WAL:         {} in {} frames; {} backfilled, {} pending (page size {})",
                human_bytes(wal_bytes),
                w.frames,
                w.backfilled_frames,
                w.pending_frames,
                w.page_size
            );
            let marks: Vec<String> = w
                .read_marks
                .iter()
                .enumerate()
                .map(|(i, m)| format!("READ{i}={}", m.map_or("-".to_owned(), |m| m.to_string())))
                .collect();
            let _ = writeln!(o, "  read marks:  {}", marks.join(" "));
        }
        None if db.inconsistent.iter().any(|i| i.source == "shm") => {
            let _ = writeln!(
                o,
                "  WAL:         {} (wal-index header inconsistent: not used, see below)",
                human_bytes(wal_bytes)
            );
        }
        None => {
            let _ = writeln!(
                o,
                "  WAL:         {} (no wal-index: no connection has the database open)",
                human_bytes(wal_bytes)
            );
        }
    }
    if db.readers.is_empty() {
        let _ = writeln!(o, "  readers:     none");
    } else {
        let _ = writeln!(o, "  readers:     {}", db.readers.len());
        for r in &db.readers {
            let mark = r
                .read_mark
                .map(|m| format!(", read mark {m}"))
                .unwrap_or_default();
            let age = r
                .age_seconds
                .map(|a| format!(", for {}", human_age(a)))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "    {:<6} {}{mark}{age} [seen by {}]",
                r.slot,
                who(r.pid, r.process.as_deref()),
                r.seen_by
            );
        }
    }
    for h in &db.lock_holders {
        let _ = writeln!(
            o,
            "  lock:        {} held {} by {}",
            h.slot,
            h.mode,
            who(h.pid, h.process.as_deref())
        );
    }
    let state = if db.checkpoint_blocked {
        "BLOCKED"
    } else {
        "not blocked"
    };
    let _ = writeln!(o, "  checkpoint:  {state}");
    for b in &db.blockers {
        let age = b
            .age_seconds
            .map(|a| format!(", for {}", human_age(a)))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "    blocker: {} on {}{age}: {}",
            who(b.pid, b.process.as_deref()),
            b.slot,
            safe(&b.reason)
        );
    }
    if !db.recent_checkpoints.is_empty() {
        let _ = writeln!(o, "  recent checkpoints (newest first):");
        for c in db.recent_checkpoints.iter().take(8) {
            let ago = human_age(now_unix_seconds - c.started_unix_seconds);
            let blocked = c
                .blocked_slot
                .map(|s| format!(", busy on {s}"))
                .unwrap_or_default();
            let mark = c
                .blocked_read_mark
                .map(|m| format!(" (read mark {m})"))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "    #{:<4} {ago} ago  {:<8} {:<8} {} frames moved, {}/{} backfilled, {:.1} ms, pid {}{blocked}{mark}",
                c.seq,
                c.mode,
                c.outcome,
                c.frames_moved,
                c.backfilled_frames,
                c.wal_frames,
                c.duration_seconds * 1e3,
                c.pid
            );
        }
    } else if db.sources.contains(&"shim") {
        let _ = writeln!(o, "  recent checkpoints: none recorded");
    }
    inconsistencies(&mut o, db);
    o
}

/// `INCONSISTENT:` lines: what to do, then each value read that cannot be true, per file.
fn inconsistencies(o: &mut String, db: &DbState) {
    for source in ["stats_file", "shm"] {
        let found: Vec<_> = db
            .inconsistent
            .iter()
            .filter(|i| i.source == source)
            .collect();
        if found.is_empty() {
            continue;
        }
        let stats_file = db.stats_file.as_deref().map(safe);
        let _ = writeln!(
            o,
            "  INCONSISTENT: {}",
            crate::plausible::advice(source, stats_file.as_deref())
        );
        for i in found {
            let _ = writeln!(o, "    {}: {}", i.what, safe(&i.detail));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Blocker, Reader, WalIndexView};

    #[test]
    fn formats_sizes_and_ages() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_age(3.25), "3.2s");
        assert_eq!(human_age(75.0), "1m15s");
        assert_eq!(human_age(7300.0), "2h01m");
    }

    #[test]
    fn report_names_the_blocker() {
        let db = DbState {
            path: "/srv/app.db".into(),
            up: true,
            sources: vec!["path"],
            db_bytes: Some(4096),
            wal_bytes: Some(41_232),
            wal_index: Some(WalIndexView {
                frames: 10,
                pending_frames: 10,
                ..Default::default()
            }),
            readers: vec![Reader {
                slot: "READ1",
                pid: 77,
                process: Some("sqlite3".into()),
                read_mark: Some(4),
                age_seconds: None,
                seen_by: "lock",
                read_index: 1,
            }],
            checkpoint_blocked: true,
            blockers: vec![Blocker {
                slot: "READ1",
                pid: 77,
                process: Some("sqlite3".into()),
                read_mark: Some(4),
                age_seconds: None,
                blocks: "backfill",
                reason: "r".into(),
            }],
            ..Default::default()
        };
        let text = report(&db, 0.0);
        assert!(
            text.contains("READ1  pid 77 (sqlite3), read mark 4 [seen by lock]"),
            "{text}"
        );
        assert!(text.contains("checkpoint:  BLOCKED"), "{text}");
        assert!(
            text.contains("blocker: pid 77 (sqlite3) on READ1: r"),
            "{text}"
        );
        let down = DbState {
            path: "/x".into(),
            error: Some("database file does not exist".into()),
            ..Default::default()
        };
        assert!(report(&down, 0.0).contains("DOWN: database file does not exist"));
    }

    #[test]
    fn report_escapes_what_others_wrote_and_marks_inconsistent_values() {
        use crate::plausible::Inconsistency;
        let db = DbState {
            path: "/srv/\x1b[2J\nfake.db".into(),
            up: true,
            sources: vec!["shim"],
            stats_file: Some("/dev/shm/walwatch-0/fake.walwatch".into()),
            readers: vec![Reader {
                slot: "READ1",
                pid: 77,
                process: Some("\x1b]0;x\x07".into()),
                read_mark: None,
                age_seconds: None,
                seen_by: "lock",
                read_index: 1,
            }],
            inconsistent: vec![Inconsistency {
                what: "reader_age",
                detail: "pid 77 on READ1 reading since before the stats file was created".into(),
                source: "stats_file",
            }],
            ..Default::default()
        };
        let text = report(&db, 0.0);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.starts_with("/srv/\\u{1b}[2J\\nfake.db\n"), "{text}");
        assert!(text.contains("pid 77 (\\u{1b}]0;x\\u{7})"), "{text}");
        assert!(
            text.contains("INCONSISTENT: values in stats file /dev/shm/walwatch-0/fake.walwatch are inconsistent"),
            "{text}"
        );
        assert!(text.contains("    reader_age: pid 77 on READ1"), "{text}");
    }
}

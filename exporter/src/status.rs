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

pub use crate::text::human_age;

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
    // Never "not blocked" above a blocker: say what the blockers block.
    let state = match crate::model::blocked_what(&db.blockers) {
        "backfill" => "BLOCKED (backfill: frames after a reader's read mark cannot be copied)",
        "reset" => "WAL reset blocked (every frame can be copied; RESTART/TRUNCATE cannot reset the WAL while a reader uses it)",
        "write_lock" => "waiting for the write lock (FULL/RESTART/TRUNCATE wait for the writer)",
        _ if db.checkpoint_blocked => "BLOCKED",
        _ => "not blocked",
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
            let _ = writeln!(o, "{}", checkpoint_line(&c.view(), now_unix_seconds));
        }
    } else if db.sources.contains(&"shim") {
        let _ = writeln!(o, "  recent checkpoints: none recorded");
    }
    inconsistencies(&mut o, db);
    o
}

/// One recent checkpoint: mode (and where it comes from), outcome, the triple the application
/// was told, what it copied, what it waited for and what stopped it.
fn checkpoint_line(c: &crate::model::CheckpointView, now_unix_seconds: f64) -> String {
    let ago = human_age(now_unix_seconds - c.started_unix_seconds);
    let source = if c.mode_source == "pragma" {
        ""
    } else {
        " (from locks)"
    };
    let waited = match c.waited_slot {
        Some(slot) if c.waited_seconds > 0.0 => {
            format!(", waited {:.1} ms on {slot}", c.waited_seconds * 1e3)
        }
        _ => String::new(),
    };
    let blocked = c.blocked_slot.map_or(String::new(), |slot| {
        let by = c
            .blocked_pid
            .map_or(String::new(), |p| format!(" by pid {p}"));
        let mark = c
            .blocked_read_mark
            .map_or(String::new(), |m| format!(" (read mark {m})"));
        format!(", stopped on {slot}{by}{mark}")
    });
    format!(
        "    #{:<4} {ago} ago  {}{source} {}: returned ({}, {}, {}), {} frames moved ({}/{} before any reset), {:.1} ms{waited}{blocked}, pid {}",
        c.seq,
        c.mode,
        c.outcome,
        c.busy,
        c.log,
        c.checkpointed,
        c.frames_moved,
        c.backfilled_frames,
        c.wal_frames,
        c.duration_seconds * 1e3,
        c.pid
    )
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
                blocks: crate::model::Blocks::Backfill,
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
        let reset = DbState {
            checkpoint_blocked: false,
            blockers: vec![Blocker {
                blocks: crate::model::Blocks::WalReset,
                ..db.blockers[0].clone()
            }],
            ..db.clone()
        };
        let text = report(&reset, 0.0);
        assert!(!text.contains("not blocked"), "{text}");
        assert!(text.contains("checkpoint:  WAL reset blocked"), "{text}");
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

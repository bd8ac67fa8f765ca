//! `walwatch_stats()` output: one database's stats as a JSON object. Hand-written (numbers,
//! names and one escaped path) to keep the extension free of dependencies.

use crate::layout::*;
use crate::snapshot::Snapshot;
use crate::wal_index::{WalIndex, READ_MARK_NOT_USED};
use std::fmt::Write;

/// Renders `snap` (and the live wal-index header, when the database has one mapped).
/// `alive` tells whether a reader's pid still exists; `now_ns` is the current Unix time.
pub fn stats_json(
    snap: &Snapshot,
    wal: Option<&WalIndex>,
    now_ns: u64,
    alive: impl Fn(u32) -> bool,
) -> String {
    let mut out = String::with_capacity(4096);
    let w = &mut out;
    let wal = wal.copied().unwrap_or_default();
    let _ = write!(w, "{{\"db\":{}", quote(&snap.db_path_lossy()));
    // `snap.wal_bytes` is the file's size (`stats_json_for_file` stats it); if it could not,
    // the size when a shim last opened or truncated it, and at least what the header holds.
    let appended = if wal.mx_frame > 0 && wal.page_size > 0 {
        32 + wal.mx_frame as u64 * (wal.page_size as u64 + 24)
    } else {
        0
    };
    let _ = write!(
        w,
        ",\"wal_bytes\":{},\"wal_frames\":{},\"wal_backfilled_frames\":{}",
        snap.wal_bytes.max(appended),
        wal.mx_frame,
        wal.n_backfill
    );
    let _ = write!(
        w,
        ",\"page_size\":{}",
        if wal.page_size > 0 {
            wal.page_size
        } else {
            snap.page_size
        }
    );
    let marks: Vec<String> = wal
        .read_marks
        .iter()
        .map(|&m| {
            if m == READ_MARK_NOT_USED {
                "null".into()
            } else {
                m.to_string()
            }
        })
        .collect();
    let _ = write!(w, ",\"read_marks\":[{}]", marks.join(","));
    let _ = write!(
        w,
        ",\"wal_write_bytes\":{},\"db_write_bytes\":{},\"wal_truncations\":{}",
        snap.wal_write_bytes, snap.db_write_bytes, snap.wal_truncations
    );
    let _ = write!(
        w,
        ",\"fsyncs\":{{{}}}",
        join(
            FSYNC_FILE_NAMES
                .iter()
                .zip(snap.fsyncs)
                .map(|(n, v)| format!("\"{n}\":{v}"))
        )
    );
    let _ = write!(
        w,
        ",\"busy_sleeps\":{},\"busy_sleep_seconds\":{}",
        snap.busy_sleeps,
        snap.busy_sleep_us as f64 / 1e6
    );

    let slots = SLOT_NAMES.iter().zip(&snap.locks).map(|(name, s)| {
        let hold_count: u64 = s.hold_buckets.iter().sum();
        format!(
            "\"{name}\":{{\"shared\":{{\"acquired\":{},\"busy\":{}}},\"exclusive\":{{\"acquired\":{},\"busy\":{}}},\"hold_count\":{hold_count},\"hold_seconds\":{}}}",
            s.acquired[SHARED], s.busy[SHARED], s.acquired[EXCLUSIVE], s.busy[EXCLUSIVE], s.hold_sum_ns as f64 / 1e9
        )
    });
    let _ = write!(w, ",\"shm_locks\":{{{}}}", join(slots));

    let modes = CHECKPOINT_MODE_NAMES
        .iter()
        .zip(&snap.modes)
        .map(|(name, m)| {
            let outcomes = join(
                OUTCOME_NAMES
                    .iter()
                    .zip(m.outcomes)
                    .map(|(o, v)| format!("\"{o}\":{v}")),
            );
            format!(
                "\"{name}\":{{{outcomes},\"frames_backfilled\":{},\"seconds\":{}}}",
                m.frames_backfilled,
                m.duration_sum_ns as f64 / 1e9
            )
        });
    // Values that cannot be true are not shown as facts: a checkpoint numbered beyond the count
    // or that backfilled more than the WAL held is left out, an age from before the file was
    // created (or from the future) is null. The sidecar applies the same rules
    // (exporter/src/plausible.rs) and says why.
    let age = |since: u64| -> String {
        let slack = 5_000_000_000;
        let created = snap.created_unix_ns;
        if since == 0
            || since > now_ns.saturating_add(slack)
            || since.saturating_add(slack) < created
        {
            "null".into()
        } else {
            (now_ns.saturating_sub(since) as f64 / 1e9).to_string()
        }
    };
    let plausible = |c: &&crate::snapshot::CheckpointSnapshot| {
        c.seq <= snap.checkpoints.saturating_add(1)
            && c.backfilled_frames <= c.wal_frames
            && c.frames_moved <= c.wal_frames
    };
    let recent = snap.recent.iter().filter(plausible).map(|c| {
        let slot = |s: Option<usize>| s.map_or("null".to_string(), |s| format!("\"{}\"", SLOT_NAMES[s]));
        let blocked_pid = c.blocked_pid.map_or("null".to_string(), |p| p.to_string());
        format!(
            "{{\"seq\":{},\"mode\":\"{}\",\"mode_source\":\"{}\",\"outcome\":\"{}\",\"busy\":{},\"log\":{},\"checkpointed\":{},\"pid\":{},\"wal_frames\":{},\"backfilled_frames\":{},\"frames_moved\":{},\"waited_slot\":{},\"waited_seconds\":{},\"blocked_slot\":{},\"blocked_read_mark\":{},\"blocked_pid\":{blocked_pid},\"seconds\":{},\"age_seconds\":{}}}",
            c.seq,
            CHECKPOINT_MODE_NAMES[c.mode],
            MODE_SOURCE_NAMES[c.mode_source],
            OUTCOME_NAMES[c.outcome],
            c.triple.busy as u8,
            c.triple.log,
            c.triple.checkpointed,
            c.pid,
            c.wal_frames,
            c.backfilled_frames,
            c.frames_moved,
            slot(c.waited_slot),
            c.waited_ns as f64 / 1e9,
            slot(c.blocked_slot),
            c.blocked_read_mark,
            c.duration_ns as f64 / 1e9,
            age(c.started_unix_ns)
        )
    });
    let _ = write!(
        w,
        ",\"checkpoints\":{{\"total\":{},\"by_mode\":{{{}}},\"recent\":[{}]}}",
        snap.checkpoints,
        join(modes),
        join(recent)
    );

    let readers = snap.readers.iter().filter(|r| alive(r.pid)).map(|r| {
        format!(
            "{{\"pid\":{},\"slot\":\"READ{}\",\"read_mark\":{},\"age_seconds\":{}}}",
            r.pid,
            r.read_index,
            r.read_mark,
            age(r.since_unix_ns)
        )
    });
    let _ = write!(w, ",\"readers\":[{}]}}", join(readers));
    out
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(",")
}

/// A JSON string literal.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            // C0, DEL and C1 (U+009B is a CSI to some terminals): escaped, as JSON allows.
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_hostile_paths() {
        assert_eq!(quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\u000ad\"");
        assert_eq!(quote("\u{7f}\u{9b}2J"), "\"\\u007f\\u009b2J\"");
    }

    #[test]
    fn implausible_values_are_left_out_or_null() {
        let created = 1_700_000_000_000_000_000;
        let now = created + 10_000_000_000;
        let checkpoint = |seq, wal_frames, backfilled_frames| crate::snapshot::CheckpointSnapshot {
            seq,
            started_unix_ns: created + 1_000_000_000,
            wal_frames,
            backfilled_frames,
            ..Default::default()
        };
        let reader = |pid, since_unix_ns| crate::snapshot::ReaderSnapshot {
            pid,
            read_index: 1,
            read_mark: 3,
            since_unix_ns,
        };
        let snap = Snapshot {
            db_path: b"/tmp/x.db".to_vec(),
            created_unix_ns: created,
            checkpoints: 2,
            locks: vec![Default::default(); SLOTS],
            modes: vec![Default::default(); 4],
            recent: vec![
                checkpoint(u64::MAX, 2, 2),
                checkpoint(2, 2, 237_493_113),
                checkpoint(1, 4, 2),
            ],
            readers: vec![reader(7, 1), reader(8, created + 2_000_000_000)],
            ..Default::default()
        };
        let json = stats_json(&snap, None, now, |_| true);
        assert!(
            !json.contains("18446744073709551615") && !json.contains("237493113"),
            "{json}"
        );
        assert!(json.contains("\"seq\":1,"), "{json}");
        assert!(
            json.contains("{\"pid\":7,\"slot\":\"READ1\",\"read_mark\":3,\"age_seconds\":null}"),
            "{json}"
        );
        assert!(
            json.contains("{\"pid\":8,\"slot\":\"READ1\",\"read_mark\":3,\"age_seconds\":8}"),
            "{json}"
        );
    }

    #[test]
    fn renders_required_keys() {
        let snap = Snapshot {
            db_path: b"/tmp/x.db".to_vec(),
            locks: vec![Default::default(); SLOTS],
            modes: vec![Default::default(); 4],
            ..Default::default()
        };
        let json = stats_json(&snap, None, 0, |_| true);
        for key in [
            "\"wal_bytes\"",
            "\"wal_frames\"",
            "\"checkpoints\"",
            "\"shm_locks\"",
            "\"readers\"",
        ] {
            assert!(json.contains(key), "{key} missing from {json}");
        }
    }
}

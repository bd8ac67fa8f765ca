//! The scenario suite on each host. Every check compares walwatch's record with the triple that
//! `PRAGMA wal_checkpoint` returned to the application in the same run.

use crate::harness::*;
use serde_json::Value;

/// The four modes, no reader: every frame copied, TRUNCATE also empties the WAL.
fn no_reader(host: &str) {
    let results = run(host, &["passive", "full", "restart", "truncate"]);
    for (r, mode) in results
        .iter()
        .zip(["passive", "full", "restart", "truncate"])
    {
        let (busy, log, ckpt) = triple(r);
        let rec = record(r);
        if mode == "truncate" {
            assert_eq!((busy, log, ckpt), (0, 0, 0), "{host} {mode}: {r}");
        } else {
            assert_eq!(busy, 0, "{host} {mode}: {r}");
            assert!(
                log > 0 && ckpt == log,
                "{host} {mode}: every frame copied: {r}"
            );
            assert_eq!(rec["wal_frames"], log, "{host} {mode}: {rec}");
        }
        assert_same_triple(host, r);
        assert_eq!(rec["mode"], mode, "{host}: the mode asked for: {rec}");
        assert_eq!(rec["outcome"], "complete", "{host} {mode}: {rec}");
        assert_eq!(
            rec["backfilled_frames"], rec["wal_frames"],
            "{host} {mode}: {rec}"
        );
        assert!(
            rec["blocked_slot"].is_null(),
            "{host} {mode}: nothing blocked: {rec}"
        );
        assert!(
            rec["waited_slot"].is_null(),
            "{host} {mode}: nothing waited: {rec}"
        );
    }
}

/// FULL waits for another process's write transaction, then copies everything; TRUNCATE waits
/// for a reader that leaves, then truncates. Both are complete: the waiting is recorded as
/// waiting (slot and time), not as failure.
fn waiting(host: &str) {
    let results = run(
        host,
        &["full_waits_for_writer", "truncate_waits_for_reader"],
    );
    let (full, truncate) = (&results[0], &results[1]);
    for r in &results {
        let stats = &r["stats"];
        assert!(
            stats["busy_sleeps"].as_u64().unwrap() >= 3,
            "{host}: the checkpoint waited for the helper (its busy handler slept): {stats}"
        );
        assert_same_triple(host, r);
    }
    let (busy, log, ckpt) = triple(full);
    assert_eq!(
        busy, 0,
        "{host}: FULL got the write lock once the writer committed: {full}"
    );
    assert!(log > 0 && ckpt == log, "{host}: {full}");
    assert_eq!(triple(truncate), (0, 0, 0), "{host}: {truncate}");
    let stats = &full["stats"];
    assert_eq!(
        stats["shm_locks"]["WRITE"]["exclusive"]["busy"], stats["busy_sleeps"],
        "{host}: one WRITE busy per busy-handler sleep, on every build: {stats}"
    );

    let (f, t) = (record(full), record(truncate));
    assert_eq!(
        (f["mode"].as_str(), f["outcome"].as_str()),
        (Some("full"), Some("complete")),
        "{host}: FULL that waited, then succeeded: {f}"
    );
    assert_eq!(
        (f["wal_frames"].as_u64(), f["backfilled_frames"].as_u64()),
        (Some(log), Some(log)),
        "{host}: {f}"
    );
    assert_eq!(
        f["waited_slot"], "WRITE",
        "{host}: FULL waited for the writer: {f}"
    );
    assert_eq!(
        (t["mode"].as_str(), t["outcome"].as_str()),
        (Some("truncate"), Some("complete")),
        "{host}: TRUNCATE that waited, then truncated: {t}"
    );
    assert_eq!(t["backfilled_frames"], t["wal_frames"], "{host}: {t}");
    assert!(
        t["waited_slot"]
            .as_str()
            .is_some_and(|s| s.starts_with("READ")),
        "{host}: TRUNCATE waited for the reader: {t}"
    );
    for rec in [f, t] {
        assert!(
            rec["waited_seconds"].as_f64().unwrap() > 0.0,
            "{host}: {rec}"
        );
        assert!(
            rec["blocked_slot"].is_null(),
            "{host}: waiting is not being blocked: {rec}"
        );
    }
}

/// The three blocked cases: the rqlite case (a reader that began after the last commit: every
/// frame copied, not reset), a reader that began before the inserts (TRUNCATE and PASSIVE stop
/// at its mark).
fn blocked(host: &str) {
    let results = run(
        host,
        &[
            "truncate_reader_after_commit",
            "truncate_reader_before_inserts",
            "passive_reader_mid_wal",
        ],
    );

    // rqlite: "failed to completely checkpoint WAL (1 ok, N pages, N moved)".
    let r = &results[0];
    let (busy, log, ckpt) = triple(r);
    assert!(
        busy == 1 && log > 0 && ckpt == log,
        "{host}: every frame copied, not reset: {r}"
    );
    let reader_pid = r["reader_pid"].as_u64().unwrap();
    let reader = reader_entry(r, reader_pid);
    assert_eq!(
        reader["read_mark"], log,
        "{host}: the reader's snapshot is the whole WAL: {r}"
    );
    let rec = record(r);
    assert_same_triple(host, r);
    assert_eq!(
        rec["outcome"], "not_reset",
        "{host}: every frame copied, WAL not reset: {rec}"
    );
    assert_eq!(rec["mode"], "truncate", "{host}: the mode asked for: {rec}");
    assert_eq!(
        (
            rec["wal_frames"].as_u64(),
            rec["backfilled_frames"].as_u64()
        ),
        (Some(log), Some(ckpt)),
        "{host}: {rec}"
    );
    assert_eq!(
        rec["blocked_slot"], reader["slot"],
        "{host}: the reader's slot: {rec}"
    );
    assert_eq!(
        rec["blocked_read_mark"], log,
        "{host}: the blocker's real read mark: {rec}"
    );
    assert_eq!(
        rec["blocked_pid"], reader_pid,
        "{host}: the blocker's pid: {rec}"
    );

    let status = &r["status"]["json"][0];
    let status_text = r["status"]["text"].as_str().expect("walwatch status text");
    let blocker = status["blockers"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["pid"] == reader_pid))
        .unwrap_or_else(|| {
            panic!("{host}: walwatch status names the reader {reader_pid}: {status}")
        });
    assert_eq!(
        blocker["read_mark"], log,
        "{host}: status shows the reader's real mark: {blocker}"
    );
    assert_eq!(blocker["blocks"], "wal_reset", "{host}: {blocker}");
    assert!(
        !status_text.contains("not blocked") && status_text.contains("WAL reset blocked"),
        "{host}: status says what is blocked (the reset), never 'not blocked' above a blocker:\n{status_text}"
    );

    // A reader from before the inserts: TRUNCATE returns busy, both copy up to its mark.
    for (r, mode, busy_expected) in [(&results[1], "truncate", 1), (&results[2], "passive", 0)] {
        let (busy, log, ckpt) = triple(r);
        assert_eq!(busy, busy_expected, "{host} {mode}: {r}");
        assert!(
            0 < ckpt && ckpt < log,
            "{host} {mode}: stopped at the reader's mark: {r}"
        );
        let reader_pid = r["reader_pid"].as_u64().unwrap();
        let reader = reader_entry(r, reader_pid);
        assert_eq!(
            reader["read_mark"], ckpt,
            "{host} {mode}: the reader's mark is where it stopped: {r}"
        );
        let rec = record(r);
        assert_same_triple(host, r);
        assert_eq!(
            (rec["mode"].as_str(), rec["outcome"].as_str()),
            (Some(mode), Some("partial")),
            "{host}: some frames copied: {rec}"
        );
        assert_eq!(
            (
                rec["wal_frames"].as_u64(),
                rec["backfilled_frames"].as_u64()
            ),
            (Some(log), Some(ckpt)),
            "{host} {mode}: {rec}"
        );
        assert_eq!(rec["blocked_slot"], reader["slot"], "{host} {mode}: {rec}");
        assert_eq!(rec["blocked_read_mark"], ckpt, "{host} {mode}: {rec}");
        assert_eq!(
            rec["blocked_pid"], reader_pid,
            "{host} {mode}: the blocker's pid: {rec}"
        );
    }
}

/// The record carries the triple the application was told: it must be that triple, and the
/// mode must come from the pragma itself.
fn assert_same_triple(host: &str, r: &Value) {
    let (busy, log, ckpt) = triple(r);
    let rec = record(r);
    assert_eq!(
        (
            rec["busy"].as_u64(),
            rec["log"].as_u64(),
            rec["checkpointed"].as_u64()
        ),
        (Some(busy), Some(log), Some(ckpt)),
        "{host} {}: the record's triple is the one PRAGMA wal_checkpoint returned: {rec}",
        r["scenario"]
    );
    assert_eq!(rec["mode_source"], "pragma", "{host}: {rec}");
}

/// Counters mean the same on every build: a `BEGIN IMMEDIATE` that waits for another process's
/// write transaction counts one WRITE busy per busy-handler sleep (issue 10, item 5: apsw's
/// `SQLITE_ENABLE_SETLK_TIMEOUT` build tries the lock twice per round, and counted 27 for 14).
fn busy_counters(host: &str) {
    let r = &run(host, &["begin_immediate_waits"])[0];
    let stats = &r["stats"];
    let sleeps = stats["busy_sleeps"].as_u64().unwrap();
    assert!(
        sleeps >= 1,
        "{host}: the busy handler slept while the writer held the lock: {r}"
    );
    assert_eq!(
        stats["shm_locks"]["WRITE"]["exclusive"]["busy"].as_u64(),
        Some(sleeps),
        "{host}: one WRITE busy per busy-handler sleep: {stats}"
    );
}

#[test]
fn busy_counters_debian_python() {
    busy_counters("python-debian")
}

#[test]
fn busy_counters_sqlean() {
    busy_counters("sqlean")
}

#[test]
fn busy_counters_pysqlite3() {
    busy_counters("pysqlite3")
}

#[test]
fn busy_counters_apsw() {
    busy_counters("apsw")
}

fn reader_entry(result: &Value, pid: u64) -> &Value {
    result["stats"]["readers"]
        .as_array()
        .and_then(|readers| readers.iter().find(|r| r["pid"] == pid))
        .unwrap_or_else(|| panic!("reader {pid} not in walwatch_stats(): {result}"))
}

/// One test per host and scenario group, so a failure names both.
macro_rules! host_tests {
    ($($module:ident => $host:literal),* $(,)?) => {$(
        mod $module {
            #[test]
            fn no_reader() {
                super::no_reader($host)
            }
            #[test]
            fn waiting_then_complete() {
                super::waiting($host)
            }
            #[test]
            fn blocked_by_a_reader() {
                super::blocked($host)
            }
        }
    )*};
}

host_tests! {
    debian_shell => "shell",
    debian_python => "python-debian",
    rusqlite_bundled => "rusqlite",
    apsw => "apsw",
    sqlean => "sqlean",
    pysqlite3 => "pysqlite3",
}

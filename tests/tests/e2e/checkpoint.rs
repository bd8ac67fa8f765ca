//! The rqlite failure, reproduced: a reader pins the WAL, TRUNCATE cannot complete, and the
//! stats say which slot and which pid; once the reader ends, TRUNCATE completes.

use crate::harness::*;
use std::io::{BufReader, Write};

#[test]
fn reader_blocks_truncate_and_is_named() {
    let s = Scratch::new();
    let db = s.db("pinned.db");
    assert_ok(&s.python("init", &db, &[]));
    assert_ok(&s.python("write", &db, &["--rows", "10"]));

    let mut reader = s.spawn_python("hold-read", &db, &[]);
    let mut reader_out = BufReader::new(reader.stdout.take().unwrap());
    let ready = read_line(&mut reader_out);
    let reader_pid: u64 = ready
        .strip_prefix("READING ")
        .expect(&ready)
        .parse()
        .unwrap();

    assert_ok(&s.python("write", &db, &["--rows", "200"]));
    let (result, stats) = s.python_then_stats(
        "checkpoint",
        &db,
        &["--mode", "TRUNCATE", "--timeout", "0.2"],
    );
    let result: Vec<i64> = serde_json::from_str(&result[0]).unwrap();
    assert_eq!(
        result[0], 1,
        "TRUNCATE must report busy while the reader holds its snapshot"
    );

    let last = &stats["checkpoints"]["recent"][0];
    assert_eq!(
        last["mode"], "full",
        "a blocked TRUNCATE takes FULL's locks: {stats}"
    );
    assert_ne!(last["outcome"], "complete", "{stats}");
    assert!(
        last["wal_frames"].as_u64().unwrap() > last["backfilled_frames"].as_u64().unwrap(),
        "{stats}"
    );
    let blocked = last["blocked_slot"].as_str().expect("a blocked slot");
    assert!(blocked.starts_with("READ"), "{stats}");
    assert!(
        stats["shm_locks"][blocked]["exclusive"]["busy"]
            .as_u64()
            .unwrap()
            >= 1,
        "{stats}"
    );
    assert!(
        stats["busy_sleeps"].as_u64().unwrap() >= 1,
        "the busy handler slept: {stats}"
    );
    let readers = stats["readers"].as_array().unwrap();
    let holder = readers
        .iter()
        .find(|r| r["pid"] == reader_pid)
        .unwrap_or_else(|| panic!("reader {reader_pid} not in {stats}"));
    assert_eq!(
        holder["slot"], blocked,
        "the reader holds the slot that blocked the checkpoint"
    );
    assert_eq!(holder["read_mark"], last["blocked_read_mark"]);

    reader.stdin.take().unwrap().write_all(b"\n").unwrap();
    assert_eq!(read_line(&mut reader_out), "DONE");
    reader.wait().unwrap();

    let (result, stats) = s.python_then_stats(
        "write-checkpoint",
        &db,
        &["--rows", "5", "--mode", "TRUNCATE", "--timeout", "0.2"],
    );
    let result: Vec<i64> = serde_json::from_str(&result[0]).unwrap();
    assert_eq!(result[0], 0, "not busy once the reader is gone");
    let last = &stats["checkpoints"]["recent"][0];
    assert_eq!(
        (last["mode"].as_str(), last["outcome"].as_str()),
        (Some("truncate"), Some("complete")),
        "{stats}"
    );
    assert!(last["frames_moved"].as_u64().unwrap() >= 5, "{stats}");
    assert_eq!(stats["wal_bytes"], 0, "{stats}");
    assert!(stats["readers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["pid"] != reader_pid));
}

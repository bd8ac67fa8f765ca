//! Python's sqlite3 loads the extension and sees the same stats.

use walwatch_tests::*;

#[test]
fn python_loads_extension_and_reports_wal_and_checkpoint() {
    let s = Scratch::new();
    let db = s.db("py.db");
    assert_ok(&s.python("init", &db, &[]));
    let (_, stats) = s.python_then_stats("write", &db, &["--rows", "300"]);
    assert!(stats["wal_bytes"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["wal_frames"].as_u64().unwrap() > 0, "{stats}");
    assert!(
        stats["wal_write_bytes"].as_u64().unwrap() > 100 * 300,
        "{stats}"
    );
    // The `-wal` file holds its header and every frame; what write transactions appended
    // (read from the wal-index at each write lock's release) counts these and those of the
    // earlier `init`, whose WAL SQLite deleted when it closed.
    assert!(
        stats["wal_write_bytes"].as_u64() >= stats["wal_bytes"].as_u64(),
        "{stats}"
    );
    let frame = stats["page_size"].as_u64().unwrap() + 24;
    assert_eq!(
        stats["wal_bytes"].as_u64().unwrap(),
        32 + stats["wal_frames"].as_u64().unwrap() * frame,
        "{stats}"
    );

    let (result, stats) = s.python_then_stats(
        "write-checkpoint",
        &db,
        &["--rows", "50", "--mode", "TRUNCATE"],
    );
    let result: Vec<i64> = serde_json::from_str(&result[0]).unwrap();
    // A successful TRUNCATE resets the wal-index, so SQLite reports (0, 0, 0).
    assert_eq!(result, [0, 0, 0], "TRUNCATE not busy");
    assert_eq!(stats["wal_bytes"], 0, "{stats}");
    let last = &stats["checkpoints"]["recent"][0];
    assert_eq!(
        (last["mode"].as_str(), last["outcome"].as_str()),
        (Some("truncate"), Some("complete")),
        "{stats}"
    );
    assert!(last["frames_moved"].as_u64().unwrap() >= 50, "{stats}");
    assert!(stats["wal_truncations"].as_u64().unwrap() >= 1, "{stats}");
}

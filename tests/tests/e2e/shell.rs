//! The sqlite3 shell loads the extension, watches a WAL database and answers walwatch_stats().

use walwatch_tests::*;

#[test]
fn shell_loads_extension_and_reports_wal_and_checkpoint() {
    let s = Scratch::new();
    let db = s.db("shell.db");
    let script = format!(
        ".load {ext}\n.open {db}\n.vfsname\nPRAGMA journal_mode=WAL;\n\
         CREATE TABLE t(x);\nINSERT INTO t SELECT randomblob(500) FROM generate_series(1,200);\n\
         PRAGMA wal_checkpoint(PASSIVE);\nINSERT INTO t VALUES(1);\nSELECT walwatch_stats();\n",
        ext = extension().display(),
        db = db.display()
    );
    let (out, err) = s.shell(&script);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"walwatch/unix"),
        "stdout: {out}\nstderr: {err}"
    );
    assert_eq!(lines.get(1), Some(&"wal"));
    let stats: serde_json::Value = serde_json::from_str(lines.last().unwrap()).expect("JSON");
    assert_eq!(stats["db"], db.to_str().unwrap());
    assert!(stats["wal_bytes"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["wal_frames"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["checkpoints"]["total"], 1, "{stats}");
    let last = &stats["checkpoints"]["recent"][0];
    assert_eq!(last["mode"], "passive");
    assert_eq!(last["outcome"], "complete");
    assert!(last["frames_moved"].as_u64().unwrap() > 0);
    assert!(
        stats["shm_locks"]["WRITE"]["exclusive"]["acquired"]
            .as_u64()
            .unwrap()
            >= 3
    );
    assert!(stats["fsyncs"]["wal"].as_u64().unwrap() >= 1);
    // After the complete checkpoint the last INSERT restarted the WAL from its first frame: the
    // file kept its size (header and the first run of frames), and what write transactions
    // appended (read from the wal-index at each write lock's release) is that, plus a new header
    // and the frames since the restart.
    let n = |key: &str| stats[key].as_u64().unwrap();
    let frame = n("page_size") + 24;
    assert_eq!(
        n("wal_write_bytes"),
        n("wal_bytes") + 32 + n("wal_frames") * frame,
        "{stats}"
    );
    assert_eq!((n("wal_bytes") - 32) % frame, 0, "{stats}");
}

#[test]
fn extension_links_no_sqlite() {
    let lib = extension().with_extension("so");
    let out = std::process::Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&lib)
        .output()
        .expect("nm (binutils)");
    let defined = stdout(&out);
    let sqlite_symbols: Vec<&str> = defined.lines().filter(|l| l.contains("sqlite3")).collect();
    assert_eq!(sqlite_symbols.len(), 1, "{sqlite_symbols:?}");
    assert!(sqlite_symbols[0].ends_with(" T sqlite3_walwatch_init"));
    let ldd = std::process::Command::new("ldd")
        .arg(&lib)
        .output()
        .expect("ldd");
    assert!(!stdout(&ldd).contains("libsqlite3"), "{}", stdout(&ldd));
}

#[test]
fn databases_opened_before_loading_are_left_alone() {
    let s = Scratch::new();
    let db = s.db("early.db");
    let script = format!(
        ".open {db}\n.load {ext}\nSELECT walwatch_stats();\n",
        ext = extension().display(),
        db = db.display()
    );
    let (_, err) = s.shell(&script);
    assert!(
        err.contains("opened before walwatch was loaded") && err.contains(".load, then .open"),
        "{err}"
    );
}

//! The shim's own problems never become the database's: a missing, unwritable or foreign stats
//! directory or file leaves SQLite working, and is reported once through sqlite3_log.
//! (Files and directories it must not trust: `stats_trust.rs`. A short or all-zero file is a
//! half-made one and is recovered, not refused: also there.)

use std::path::Path;
use walwatch_tests::*;

/// Opens two databases in one shell with SQLite's log on stderr, writes to both, reads back.
fn run_two_databases(s: &Scratch, stats_dir: &Path) -> (String, String) {
    let script = format!(
        ".log stderr\n.load {ext}\n\
         .open {a}\nPRAGMA journal_mode=WAL;\nCREATE TABLE t(x);\nINSERT INTO t VALUES(1),(2);\nSELECT count(*) FROM t;\n\
         .open {b}\nPRAGMA journal_mode=WAL;\nCREATE TABLE t(x);\nINSERT INTO t VALUES(3);\nPRAGMA integrity_check;\nSELECT sum(x) FROM t;\n",
        ext = extension().display(),
        a = s.db("a.db").display(),
        b = s.db("b.db").display()
    );
    s.shell_with_dir(&script, stats_dir)
}

fn assert_works_and_logs_once(out: &str, err: &str, needle: &str) {
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["wal", "2", "wal", "ok", "3"],
        "stderr: {err}"
    );
    assert_eq!(err.matches(needle).count(), 1, "logged exactly once: {err}");
}

#[test]
fn stats_directory_that_cannot_be_created() {
    let s = Scratch::new();
    let file = s.db("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    let (out, err) = run_two_databases(&s, &file.join("stats"));
    assert_works_and_logs_once(&out, &err, "walwatch: stats directory");
}

#[test]
fn stats_directory_that_is_read_only() {
    let s = Scratch::new();
    // Root ignores permission bits, so use a directory where no file can be created (root's
    // own and not writable by others, so it passes the trust checks).
    let (out, err) = run_two_databases(&s, Path::new("/proc"));
    assert_works_and_logs_once(&out, &err, "walwatch: stats file");
}

#[test]
fn corrupt_and_foreign_stats_files() {
    for (name, content) in [
        ("garbage", b"this is not a walwatch stats file".repeat(300)),
        ("empty-magic-other-version", {
            let mut v = b"WALWATCH".to_vec();
            v.extend_from_slice(&2u32.to_ne_bytes());
            v.resize(walwatch::layout::REGION_SIZE, 0);
            v
        }),
    ] {
        let s = Scratch::new();
        std::fs::create_dir_all(&s.stats_dir).unwrap();
        for db in ["a.db", "b.db"] {
            let path = s.db(db);
            let file = s.stats_dir.join(walwatch::paths::stats_file_name(
                path.to_str().unwrap().as_bytes(),
            ));
            std::fs::write(&file, &content).unwrap();
        }
        let (out, err) = run_two_databases(&s, &s.stats_dir);
        assert_works_and_logs_once(&out, &err, "walwatch: stats file");
        assert!(
            err.contains("remove the file once no process uses it"),
            "{name}: the message says what to do: {err}"
        );
    }
}

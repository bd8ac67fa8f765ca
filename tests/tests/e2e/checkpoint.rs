//! Checkpoint records agree with what SQLite told the application (issue 10): each scenario
//! runs `tests/checkpoint_scenarios.py` (a real Python process, with real reader and writer
//! processes beside it) and asserts the `(busy, log, checkpointed)` triple that
//! `PRAGMA wal_checkpoint` returned and walwatch's record of that checkpoint side by side.
//!
//! The scenarios run on Debian's SQLite 3.40.1 (`/usr/bin/python3`) and on apsw 3.54.1 (a
//! `SQLITE_ENABLE_SETLK_TIMEOUT` build) from the version matrix's virtualenv
//! (`walwatch_tests::venv_python`, made on first use), with `--driver apsw`;
//! `$WALWATCH_APSW_PYTHON` (space-separated) replaces that virtualenv's python.

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use walwatch_tests::*;

/// The Pythons and drivers to run every scenario with.
fn drivers() -> Vec<(String, &'static str)> {
    let mut out = vec![("/usr/bin/python3".to_owned(), "sqlite3")];
    match std::env::var("WALWATCH_APSW_PYTHON") {
        Ok(list) => out.extend(list.split_whitespace().map(|p| (p.to_owned(), "apsw"))),
        Err(_) => out.push((
            walwatch_tests::venv_python().to_string_lossy().into_owned(),
            "apsw",
        )),
    }
    out
}

fn scenario_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoint_scenarios.py")
}

/// Runs one scenario on a fresh database; returns its JSON line.
fn scenario(s: &Scratch, python: &str, driver: &str, name: &str, extra: &[&str]) -> Value {
    let db = s.db(&format!("{name}-{driver}.db"));
    let out = Command::new(python)
        .arg(scenario_script())
        .arg(name)
        .arg(&db)
        .args(["--driver", driver])
        .args(extra)
        .env("WALWATCH_EXT", extension())
        .env("WALWATCH_DIR", &s.stats_dir)
        .env("WALWATCH_BIN", WALWATCH)
        .output()
        .expect("run the scenario");
    assert_ok(&out);
    let text = stdout(&out);
    serde_json::from_str(text.lines().last().expect("a JSON line")).expect("JSON")
}

/// The record says what the application was told: same triple, and the expected mode (told by
/// the pragma) and outcome.
fn assert_record(v: &Value, triple: &Value, record: &Value, mode: &str, outcome: &str) {
    let context = format!(
        "SQLite {} ({}): pragma returned {triple}, walwatch recorded {record}",
        v["sqlite_version"], v["driver"]
    );
    let t = triple.as_array().expect("a triple");
    assert_eq!(
        (&record["busy"], &record["log"], &record["checkpointed"]),
        (&t[0], &t[1], &t[2]),
        "{context}"
    );
    assert_eq!(record["mode"], mode, "{context}");
    assert_eq!(record["mode_source"], "pragma", "{context}");
    assert_eq!(record["outcome"], outcome, "{context}");
}

fn frames(v: &Value) -> u64 {
    v.as_u64().expect("a frame count")
}

#[test]
fn four_modes_without_a_reader_are_complete() {
    let s = Scratch::new();
    for (python, driver) in drivers() {
        let v = scenario(&s, &python, driver, "modes", &[]);
        for run in v["runs"].as_array().unwrap() {
            let mode = run["mode"].as_str().unwrap().to_lowercase();
            let (triple, record) = (&run["triple"], &run["record"]);
            assert_record(&v, triple, record, &mode, "complete");
            assert_eq!(triple[0], 0, "{run}");
            if mode == "truncate" {
                // SQLite reports an emptied WAL as (0, 0, 0); the record keeps what was copied.
                assert_eq!(triple, &serde_json::json!([0, 0, 0]), "{run}");
            } else {
                assert!(frames(&triple[1]) >= 20, "{run}");
            }
            assert!(frames(&record["frames_moved"]) >= 20, "{run}");
            assert!(record["blocked_slot"].is_null(), "{run}");
        }
    }
}

#[test]
fn full_that_waited_for_a_writer_is_complete() {
    let s = Scratch::new();
    for (python, driver) in drivers() {
        let v = scenario(&s, &python, driver, "full-waits-for-writer", &[]);
        let (triple, record) = (&v["triple"], &v["record"]);
        assert_record(&v, triple, record, "full", "complete");
        assert_eq!(triple[0], 0, "{v}");
        assert_eq!(triple[1], triple[2], "{v}");
        assert_eq!(record["waited_slot"], "WRITE", "{record}");
        assert!(
            // Released after three busy-handler sleeps: 1 + 2 + 5 ms at least.
            record["waited_seconds"].as_f64().unwrap() >= 0.008,
            "the wait for the writer is recorded as waiting: {record}"
        );
        assert!(record["blocked_slot"].is_null(), "{record}");
    }
}

/// FULL that gives up on a writer degrades to PASSIVE and copies what it sees: `(1, N, N)`,
/// every frame copied but the checkpoint not done, with the writer named.
#[test]
fn full_that_gave_up_on_a_writer_is_not_reset_and_names_it() {
    let s = Scratch::new();
    for (python, driver) in drivers() {
        let v = scenario(
            &s,
            &python,
            driver,
            "full-gives-up-on-writer",
            &["--timeout", "0.2"],
        );
        let (triple, record) = (&v["triple"], &v["record"]);
        assert_record(&v, triple, record, "full", "not_reset");
        assert_eq!(triple[0], 1, "{v}");
        assert_eq!(record["blocked_slot"], "WRITE", "{record}");
        assert_eq!(record["blocked_pid"], v["writer_pid"], "{record}");
    }
}

#[test]
fn truncate_that_waited_for_a_reader_is_complete() {
    let s = Scratch::new();
    for (python, driver) in drivers() {
        let v = scenario(&s, &python, driver, "truncate-waits-for-reader", &[]);
        let (triple, record) = (&v["triple"], &v["record"]);
        assert_record(&v, triple, record, "truncate", "complete");
        assert_eq!(triple, &serde_json::json!([0, 0, 0]), "{v}");
        assert_eq!(v["wal_bytes"], 0, "the WAL was truncated: {v}");
        assert!(record["waited_slot"].as_str().unwrap().starts_with("READ"));
        assert!(
            record["waited_seconds"].as_f64().unwrap() >= 0.008,
            "released after three busy-handler sleeps (1 + 2 + 5 ms at least): {record}"
        );
        assert!(record["blocked_slot"].is_null(), "{record}");
    }
}

/// rqlite's "failed to completely checkpoint WAL (1 ok, 1031 pages, 1031 moved)": every frame
/// copied, the WAL not reset, because a reader whose snapshot holds the whole WAL stays.
#[test]
fn truncate_against_a_reader_after_the_last_commit_is_not_reset() {
    let s = Scratch::new();
    for (python, driver) in drivers() {
        let v = scenario(
            &s,
            &python,
            driver,
            "truncate-reader-after-commit",
            &["--timeout", "0.2"],
        );
        let (triple, record) = (&v["triple"], &v["record"]);
        assert_record(&v, triple, record, "truncate", "not_reset");
        assert_eq!(triple[0], 1, "{v}");
        let n = frames(&triple[1]);
        assert!(n >= 30, "{v}");
        assert_eq!(frames(&triple[2]), n, "every frame copied: {v}");
        // The reader that stopped the reset, with its real read mark: N, the whole WAL.
        assert_eq!(record["blocked_pid"], v["reader_pid"], "{record}");
        assert_eq!(frames(&record["blocked_read_mark"]), n, "{record}");
        assert!(record["blocked_slot"]
            .as_str()
            .is_some_and(|s| s.starts_with("READ") && s != "READ0"));
        let reader = v["stats"]["readers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["pid"] == v["reader_pid"])
            .unwrap_or_else(|| panic!("reader not in {}", v["stats"]));
        assert_eq!(reader["slot"], record["blocked_slot"], "{v}");

        // `walwatch status`, run while the reader still reads, says what is blocked.
        let all = v["status"].as_str().expect("walwatch status output");
        let path = v["stats"]["db"].as_str().unwrap();
        let status = all
            .split("\n\n")
            .find(|section| section.starts_with(path))
            .unwrap_or_else(|| panic!("{path} not in {all}"));
        assert!(!status.contains("not blocked"), "{status}");
        assert!(status.contains("WAL reset blocked"), "{status}");
        assert!(
            status.contains(&format!("pid {}", v["reader_pid"])),
            "the reader is named: {status}"
        );
        assert!(
            status.contains(&format!("truncate not_reset: returned (1, {n}, {n})")),
            "{status}"
        );
    }
}

/// The same, with a reader that does not use walwatch: the record names it from `/proc/locks`.
#[test]
fn a_reader_without_walwatch_is_named_from_the_kernel_locks() {
    let s = Scratch::new();
    for (python, driver) in drivers() {
        let v = scenario(
            &s,
            &python,
            driver,
            "truncate-reader-after-commit",
            &["--timeout", "0.2", "--no-shim-helpers"],
        );
        let (triple, record) = (&v["triple"], &v["record"]);
        assert_record(&v, triple, record, "truncate", "not_reset");
        assert_eq!(record["blocked_pid"], v["reader_pid"], "{record}");
        assert_eq!(record["blocked_read_mark"], triple[1], "{record}");
    }
}

#[test]
fn truncate_against_a_reader_before_the_inserts_is_partial() {
    let s = Scratch::new();
    for (python, driver) in drivers() {
        let v = scenario(
            &s,
            &python,
            driver,
            "truncate-reader-before-inserts",
            &["--timeout", "0.2"],
        );
        let (triple, record) = (&v["triple"], &v["record"]);
        assert_record(&v, triple, record, "truncate", "partial");
        assert_eq!(triple[0], 1, "{v}");
        let (log, copied) = (frames(&triple[1]), frames(&triple[2]));
        assert!(0 < copied && copied < log, "{v}");
        assert_eq!(record["blocked_pid"], v["reader_pid"], "{record}");
        assert_eq!(frames(&record["blocked_read_mark"]), copied, "{record}");
    }
}

#[test]
fn passive_against_a_pinned_reader_is_partial() {
    let s = Scratch::new();
    for (python, driver) in drivers() {
        let v = scenario(&s, &python, driver, "passive-pinned", &[]);
        let (triple, record) = (&v["triple"], &v["record"]);
        assert_record(&v, triple, record, "passive", "partial");
        assert_eq!(triple[0], 0, "PASSIVE never says busy: {v}");
        let (log, copied) = (frames(&triple[1]), frames(&triple[2]));
        assert!(0 < copied && copied < log, "{v}");
        assert_eq!(frames(&record["blocked_read_mark"]), copied, "{record}");
        assert_eq!(record["blocked_pid"], v["reader_pid"], "{record}");
    }
}

/// One WRITE busy per busy-handler round, whatever the build (SETLK_TIMEOUT builds try the
/// write lock twice per round).
#[test]
fn begin_immediate_counts_one_busy_per_busy_handler_sleep() {
    let s = Scratch::new();
    for (python, driver) in drivers() {
        let v = scenario(
            &s,
            &python,
            driver,
            "begin-immediate-waits",
            &["--hold", "0.3"],
        );
        let sleeps = v["sleeps"].as_u64().unwrap();
        assert!(sleeps >= 3, "the busy handler slept: {v}");
        assert_eq!(v["write_busy"].as_u64().unwrap(), sleeps, "{v}");
    }
}

/// A database deleted and re-created at the same path starts with fresh counters, while a
/// process that still has the old database open keeps recording into the old (unlinked) file.
#[test]
fn recreated_database_starts_at_zero() {
    let s = Scratch::new();
    let db = s.db("again.db");
    let shell = |sql: &str| {
        let (out, err) = s.shell(&format!(
            ".load {}\n.open {}\n{sql}\nSELECT walwatch_stats();\n",
            extension().display(),
            db.display()
        ));
        let line = out.lines().last().unwrap_or_default().to_owned();
        serde_json::from_str::<Value>(&line)
            .unwrap_or_else(|e| panic!("{e}: stdout {out}\nstderr {err}"))
    };
    let old = shell(
        "PRAGMA journal_mode=WAL;\nCREATE TABLE t(x);\n\
         INSERT INTO t SELECT randomblob(300) FROM generate_series(1,50);\n\
         PRAGMA wal_checkpoint(FULL);\nPRAGMA wal_checkpoint(PASSIVE);",
    );
    assert_eq!(old["checkpoints"]["total"], 2, "{old}");

    // A process keeps the old database open (a read transaction) through the re-creation.
    let mut reader = s.spawn_python("hold-read", &db, &[]);
    let mut reader_out = std::io::BufReader::new(reader.stdout.take().unwrap());
    assert!(read_line(&mut reader_out).starts_with("READING"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }

    let new = shell("PRAGMA journal_mode=WAL;\nCREATE TABLE u(y);");
    assert_eq!(new["checkpoints"]["total"], 0, "{new}");
    assert!(
        new["checkpoints"]["recent"].as_array().unwrap().is_empty(),
        "{new}"
    );
    let old_writes = old["shm_locks"]["WRITE"]["exclusive"]["acquired"]
        .as_u64()
        .unwrap();
    let new_writes = new["shm_locks"]["WRITE"]["exclusive"]["acquired"]
        .as_u64()
        .unwrap();
    assert!(new_writes < old_writes, "old {old}\nnew {new}");

    // The old process finishes on the old database: the new stats do not move.
    use std::io::Write;
    reader.stdin.take().unwrap().write_all(b"\n").unwrap();
    assert_eq!(read_line(&mut reader_out), "DONE");
    assert!(reader.wait().unwrap().success());
    let after = shell("");
    assert_eq!(after["checkpoints"]["total"], 0, "{after}");
    assert!(after["readers"].as_array().unwrap().is_empty(), "{after}");

    // One stats file for the path, and no temporary file left behind.
    let names: Vec<String> = std::fs::read_dir(&s.stats_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("again.db.") && names[0].ends_with(".walwatch"));
}

/// Auto-checkpoints go through the C API (no pragma): PASSIVE, told by the locks.
#[test]
fn auto_checkpoints_are_passive_from_the_locks() {
    let s = Scratch::new();
    for (python, driver) in drivers() {
        let v = scenario(&s, &python, driver, "auto-checkpoint", &[]);
        let record = &v["record"];
        assert_eq!(record["mode"], "passive", "{v}");
        assert_eq!(record["mode_source"], "locks", "{v}");
        assert_eq!(record["outcome"], "complete", "{v}");
        assert_eq!(record["log"], record["checkpointed"], "{v}");
        assert!(
            v["stats"]["checkpoints"]["total"].as_u64().unwrap() >= 2,
            "{v}"
        );
    }
}

/// `sqlite3_wal_checkpoint_v2` (apsw's `wal_checkpoint()`): no pragma, so the mode is what the
/// locks prove; a refused restart step cannot tell RESTART from TRUNCATE and says so.
#[test]
fn c_api_checkpoints_are_labelled_from_the_locks() {
    let s = Scratch::new();
    for (python, driver) in drivers().into_iter().filter(|(_, d)| *d == "apsw") {
        let v = scenario(&s, &python, driver, "c-api", &[]);
        let full = &v["full_record"];
        assert_eq!(
            (&full["mode"], &full["mode_source"], &full["outcome"]),
            (&"full".into(), &"locks".into(), &"complete".into()),
            "{v}"
        );
        assert_eq!(
            [&full["busy"], &full["log"], &full["checkpointed"]],
            [&v["full"][0], &v["full"][1], &v["full"][2]],
            "{v}"
        );
        let record = &v["record"];
        assert_eq!(record["mode"], "restart_or_truncate", "{v}");
        assert_eq!(record["mode_source"], "locks", "{v}");
        assert_eq!(record["outcome"], "not_reset", "{v}");
        assert_eq!(record["busy"], 1, "{v}");
        assert_eq!(record["log"], record["checkpointed"], "{v}");
        assert_eq!(record["blocked_pid"], v["reader_pid"], "{v}");
        assert_eq!(record["blocked_read_mark"], record["log"], "{v}");
    }
}

/// A checkpoint that cannot take the checkpoint lock (another process's TRUNCATE holds it while
/// it waits for a reader) returns `(1, -1, -1)` at once: recorded `busy`, naming the holder.
#[test]
fn checkpoint_lock_held_by_another_checkpoint_is_busy() {
    let s = Scratch::new();
    for (python, driver) in drivers() {
        // The holder is looked up in /proc/locks after SQLite gave up, so on a loaded machine
        // the lookup can, rarely, come after the other checkpoint let go: it is then (honestly)
        // not named. Every attempt must be right in everything else; one of three must name it.
        let mut misses = Vec::new();
        for _attempt in 0..3 {
            let v = scenario(&s, &python, driver, "checkpoint-lock-busy", &[]);
            let (triple, record) = (&v["triple"], &v["record"]);
            assert_eq!(triple, &serde_json::json!([1, -1, -1]), "{v}");
            assert_record(&v, triple, record, "passive", "busy");
            assert_eq!(record["frames_moved"], 0, "{v}");
            assert_eq!(record["blocked_slot"], "CKPT", "{v}");
            if record["blocked_pid"] == v["other_pid"] {
                misses.clear();
                break;
            }
            assert!(record["blocked_pid"].is_null(), "a wrong holder named: {v}");
            misses.push(v);
        }
        assert!(misses.len() < 3, "the holder was never named: {misses:?}");
    }
}

/// A stats file of the older layout version 1 (left in /dev/shm by an older walwatch, perhaps
/// still mapped by its processes) is replaced by a new file, not rewritten in place: recording
/// goes on, and a process that had the old file open still has its bytes untouched.
#[test]
fn stats_file_of_an_older_layout_is_replaced_not_rewritten() {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let s = Scratch::new();
    let db = s.db("upgraded.db");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&s.stats_dir)
        .unwrap();
    let name = walwatch::paths::stats_file_name(db.to_str().unwrap().as_bytes());
    let path = s.stats_dir.join(&name);
    // A version-1 file: magic, version 1, its size (7904 bytes), this database's path.
    let mut v1 = vec![0u8; 7904];
    v1[..8].copy_from_slice(&walwatch::layout::MAGIC);
    v1[8..12].copy_from_slice(&1u32.to_ne_bytes());
    v1[12..16].copy_from_slice(&7904u32.to_ne_bytes());
    v1[16..24].copy_from_slice(&42u64.to_ne_bytes());
    let db_bytes = db.to_str().unwrap().as_bytes();
    v1[24..28].copy_from_slice(&(db_bytes.len() as u32).to_ne_bytes());
    v1[32..32 + db_bytes.len()].copy_from_slice(db_bytes);
    std::fs::write(&path, &v1).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let old = std::fs::File::open(&path).unwrap(); // an older process's view of the old file
    let old_ino = old.metadata().unwrap().ino();

    let (out, err) = s.shell(&format!(
        ".log stderr\n.load {}\n.open {}\nPRAGMA journal_mode=WAL;\nCREATE TABLE t(x);\n\
         INSERT INTO t VALUES(1);\nPRAGMA wal_checkpoint(TRUNCATE);\nSELECT walwatch_stats();\n",
        extension().display(),
        db.display()
    ));
    let stats: Value = serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: stdout {out}\nstderr {err}"));
    assert_eq!(stats["checkpoints"]["total"], 1, "{stats}\nstderr {err}");
    assert!(!err.contains("unusable"), "{err}");
    let new = std::fs::metadata(&path).unwrap();
    assert_ne!(new.ino(), old_ino, "a new file under the same name");
    assert_eq!(new.len(), walwatch::layout::REGION_SIZE as u64);
    assert_eq!(new.mode() & 0o777, 0o600);
    let mut kept = Vec::new();
    std::io::Read::read_to_end(&mut &old, &mut kept).unwrap();
    assert_eq!(kept, v1, "the old file's bytes are untouched");
    let names = std::fs::read_dir(&s.stats_dir).unwrap().count();
    assert_eq!(names, 1, "no temporary file left behind");
}

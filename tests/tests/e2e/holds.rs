//! Lock holds and reader ages as a long-running application's connections record them: after
//! a warm-up, the shim times them from the CPU's counter where the kernel keeps time with it
//! (`shim/clock.rs`), so these check that the counter's rate and anchor turn into true times.
//! On other machines the same assertions check the clock-read paths.

use std::io::Write;
use std::time::Instant;
use walwatch_tests::*;

#[test]
fn a_reader_age_is_the_age_of_its_read_transaction() {
    let s = Scratch::new();
    let db = s.db("ages.db");
    assert_ok(&s.python("init", &db, &[]));
    assert_ok(&s.python("write", &db, &["--rows", "50"]));
    let mut reader = s.spawn_python("hold-read-warm", &db, &["--warmup-ms", "60"]);
    let mut out = std::io::BufReader::new(reader.stdout.take().unwrap());
    let line = read_line(&mut out);
    // The read transaction began before READING was printed.
    let began_by = Instant::now();
    let pid: u64 = line
        .strip_prefix("READING ")
        .unwrap_or_else(|| panic!("{line}"))
        .parse()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let asked = Instant::now();
    let (_, stats) = s.python_then_stats("write", &db, &["--rows", "0"]);
    let answered = Instant::now();
    let reader_row = stats["readers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["pid"] == pid)
        .unwrap_or_else(|| panic!("reader {pid} in {stats}"))
        .clone();
    let age = reader_row["age_seconds"].as_f64().expect("an age");
    // At least the time since READING was read here, at most the time until the answer plus
    // the time READING took to reach us (generous: a loaded machine); a coarse clock may lag
    // one kernel tick (up to 10 ms).
    let low = (asked - began_by).as_secs_f64() - 0.02;
    let high = (answered - began_by).as_secs_f64() + 1.0;
    assert!(
        low <= age && age <= high,
        "age {age}, expected {low}..{high}: {stats}"
    );
    reader.stdin.take().unwrap().write_all(b"\n").unwrap();
    assert_eq!(read_line(&mut out), "DONE");
    assert!(reader.wait().unwrap().success());
}

#[test]
fn a_long_write_lock_is_counted_whole() {
    let s = Scratch::new();
    let db = s.db("holds.db");
    assert_ok(&s.python("init", &db, &[]));
    let (out, stats) = s.python_then_stats(
        "long-write",
        &db,
        &["--warmup-ms", "60", "--hold-ms", "1000"],
    );
    let held: f64 = out[0].parse().unwrap();
    assert!(held >= 1.0, "{out:?}");
    // Sampling alone would miss this one hold 63 times in 64: a hold of 10 ms or more is
    // always recorded, with its length.
    // Its length is the length the application saw (the write lock is taken in BEGIN
    // IMMEDIATE and released in COMMIT), give or take sampled short holds (the table's
    // creation) and a preemption between the grant and Python's clock: a counter rate off by
    // a few percent would show.
    let write = &stats["shm_locks"]["WRITE"];
    let seconds = write["hold_seconds"].as_f64().unwrap();
    assert!(
        held * 0.99 <= seconds && seconds <= held * 1.02 + 0.05,
        "held {held} s: {stats}"
    );
    assert!(write["hold_count"].as_u64().unwrap() >= 1, "{stats}");
}

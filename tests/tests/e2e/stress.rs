//! Several processes write and read through the shim at once; nothing is lost or corrupted.

use std::io::BufRead;
use walwatch_tests::*;

const WRITERS: u32 = 4;
const ROWS_PER_WRITER: u32 = 400;

#[test]
fn concurrent_writers_and_readers_lose_nothing() {
    let s = Scratch::new();
    let db = s.db("stress.db");
    assert_ok(&s.python("init", &db, &[]));

    let count = ROWS_PER_WRITER.to_string();
    let mut children = Vec::new();
    for id in 1..=WRITERS {
        let id = id.to_string();
        children.push(s.spawn_python(
            "writer",
            &db,
            &["--id", &id, "--count", &count, "--timeout", "30"],
        ));
    }
    for _ in 0..2 {
        children.push(s.spawn_python("reader", &db, &["--count", "300", "--timeout", "30"]));
    }
    for mut child in children {
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let last = out.lines().map_while(Result::ok).last().unwrap_or_default();
        assert!(
            child.wait().unwrap().success(),
            "a client failed; last line {last:?}"
        );
        assert!(last.starts_with("FINISHED"), "{last}");
    }

    let (lines, stats) = s.python_then_stats("verify", &db, &[]);
    assert_eq!(lines[0], "ok", "integrity_check");
    let expected: Vec<String> = (1..=WRITERS)
        .map(|w| format!("{w} {} {ROWS_PER_WRITER}", ROWS_PER_WRITER - 1))
        .collect();
    assert_eq!(
        &lines[1..],
        expected.as_slice(),
        "writer, max(seq), count(*)"
    );
    let write_locks = stats["shm_locks"]["WRITE"]["exclusive"]["acquired"]
        .as_u64()
        .unwrap();
    assert!(
        write_locks >= u64::from(WRITERS),
        "every writer's transactions were seen: {stats}"
    );
}

//! Writers killed with SIGKILL in the middle of transactions, again and again: the database
//! stays intact and every commit a writer acknowledged is still there.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::time::Duration;
use walwatch_tests::*;

const ROUNDS: u32 = 8;

#[test]
fn sigkilled_writers_never_lose_acknowledged_commits() {
    let s = Scratch::new();
    let db = s.db("crash.db");
    assert_ok(&s.python("init", &db, &[]));
    // Highest acknowledged seq per writer id (each round uses new writer ids).
    let mut acknowledged: HashMap<u32, i64> = HashMap::new();

    for round in 0..ROUNDS {
        let mut running = Vec::new();
        for k in 0..2 {
            let id = round * 2 + k + 1;
            let mut child = s.spawn_python(
                "writer",
                &db,
                &[
                    "--id",
                    &id.to_string(),
                    "--count",
                    "1000000",
                    "--timeout",
                    "30",
                ],
            );
            let out = BufReader::new(child.stdout.take().unwrap());
            // Collect acknowledgements on a thread; they stop when the child dies.
            let reader = std::thread::spawn(move || {
                let mut last = -1;
                for line in out.lines().map_while(Result::ok) {
                    // "COMMITTED <writer> <seq>"; a line cut short by the kill is ignored.
                    if let Some(seq) = line
                        .strip_prefix("COMMITTED ")
                        .and_then(|rest| rest.split(' ').nth(1))
                    {
                        last = seq.parse().unwrap_or(last);
                    }
                }
                last
            });
            running.push((id, child, reader));
        }
        // Let them get well into their work, at a point that differs from round to round.
        std::thread::sleep(Duration::from_millis(300 + 70 * u64::from(round)));
        for (id, mut child, reader) in running {
            child.kill().expect("SIGKILL");
            child.wait().unwrap();
            acknowledged.insert(id, reader.join().unwrap());
        }
    }

    let (lines, _) = s.python_then_stats("verify", &db, &[]);
    assert_eq!(
        lines[0], "ok",
        "integrity_check after {ROUNDS} rounds of SIGKILL"
    );
    let found: HashMap<u32, (i64, i64)> = lines[1..]
        .iter()
        .map(|l| {
            let v: Vec<i64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
            (v[0] as u32, (v[1], v[2]))
        })
        .collect();
    let mut commits = 0;
    for (id, last) in &acknowledged {
        if *last < 0 {
            continue;
        }
        let (max_seq, count) = found
            .get(id)
            .copied()
            .unwrap_or_else(|| panic!("writer {id} acknowledged seq {last} but has no rows"));
        assert!(
            max_seq >= *last,
            "writer {id}: acknowledged {last}, found max {max_seq}"
        );
        assert_eq!(
            count,
            max_seq + 1,
            "writer {id}: rows 0..={max_seq} all present, none torn"
        );
        commits += 1;
    }
    assert!(
        commits >= ROUNDS as usize,
        "most writers committed something before being killed"
    );
}

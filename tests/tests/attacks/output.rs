//! Attack 7 of issue 9, "Output": control characters in a database path reach root's
//! terminal raw.

use crate::harness::*;

/// Attack 7, "Output" (the brief's scenario 6): the attacker opens a database whose path holds
/// a terminal title sequence, a clear-screen sequence and a newline. `walwatch status`, run by
/// root over every stats file and over that path, prints no ESC or BEL byte, yet names it.
#[test]
fn attack7_control_characters_in_a_database_path_never_reach_the_terminal() {
    isolated(|s| {
        let evil = s.attacker.db("\x1b]0;pwned\x07\x1b[2J\nevil.db");
        let evil = evil.to_str().unwrap();
        s.run_client(
            &s.attacker,
            None,
            &["commit", "--rows", "5", "--leave-wal", evil],
        );

        let every = walwatch(&["status"]);
        let named = walwatch(&["status", evil]);
        for (what, out) in [
            ("walwatch status", &every),
            ("walwatch status <path>", &named),
        ] {
            for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
                let raw: Vec<String> = lines(bytes)
                    .into_iter()
                    .filter(|l| l.contains(['\x1b', '\x07']))
                    .map(|l| format!("{l:?}"))
                    .collect();
                assert!(
                    raw.is_empty(),
                    "{what} printed control bytes on {stream}: {raw:#?}"
                );
            }
        }
        let named = String::from_utf8_lossy(&named.stdout);
        assert!(
            named.contains("pwned"),
            "walwatch status <path> names the database:\n{named}"
        );
    });
}

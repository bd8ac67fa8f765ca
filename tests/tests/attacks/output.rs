//! Attack 7 of issue 9, "Output": control characters in database paths and file names reach
//! root's terminal and logs raw.

use crate::harness::*;

/// What the attacker puts in names: a terminal title sequence, a clear-screen sequence, a newline.
const EVIL: &str = "\x1b]0;pwned\x07\x1b[2J\n";

/// Attack 7, "Output" (the brief's scenario 6): the attacker opens a database whose path holds
/// control sequences and a newline, and plants a garbage stats file whose name holds them too.
/// `walwatch status`, run by root over every stats file and over that path, and the log of a
/// root `walwatch serve`, contain no ESC or BEL byte; `status` still names the database.
#[test]
fn attack7_control_characters_in_names_never_reach_the_terminal_or_the_log() {
    isolated(|s| {
        let evil = s.attacker.db(&format!("{EVIL}evil.db"));
        let evil = evil.to_str().unwrap();
        s.run_client(
            &s.attacker,
            None,
            &["commit", "--rows", "5", "--leave-wal", evil],
        );
        let garbage = s
            .attacker
            .default_stats_dir()
            .join(format!("{EVIL}.walwatch"));
        s.attacker.write_file(&garbage, b"not a stats file", "0600");

        let every = walwatch(&["status"]);
        let named = walwatch(&["status", evil]);
        let sidecar = Sidecar::start(&[]);
        sidecar.wait_collections(2);
        let log = sidecar.log_text();
        println!(
            "serve's log names the attacker's files: {}",
            log.contains("pwned")
        );
        let raw: Vec<String> = [
            ("walwatch status: stdout", &every.stdout),
            ("walwatch status: stderr", &every.stderr),
            ("walwatch status <path>: stdout", &named.stdout),
            ("walwatch status <path>: stderr", &named.stderr),
            ("walwatch serve's log", &log.into_bytes()),
        ]
        .into_iter()
        .flat_map(|(what, bytes)| {
            lines(bytes)
                .into_iter()
                .filter(|l| l.contains(['\x1b', '\x07']))
                .map(move |l| format!("{what}: {l:?}"))
        })
        .collect();
        assert!(raw.is_empty(), "raw control bytes: {raw:#?}");
        let named = String::from_utf8_lossy(&named.stdout);
        assert!(
            named.contains("pwned"),
            "walwatch status <path> names the database:\n{named}"
        );
    });
}

//! The README quickstart and the examples run as written (paths to the built extension and
//! scratch databases aside).

use std::path::{Path, PathBuf};
use std::process::Command;
use walwatch_tests::*;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Points a text written for `./target/release/libwalwatch` at the extension under test.
fn with_extension(text: &str) -> String {
    text.replace(
        "./target/release/libwalwatch",
        extension().to_str().unwrap(),
    )
}

/// The first ```sh block after the "## Quickstart" heading.
fn quickstart_script() -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = &readme[readme.find("## Quickstart").expect("a Quickstart section")..];
    let start = section.find("```sh\n").expect("a sh block") + 6;
    let end = start + section[start..].find("\n```").unwrap();
    section[start..end].to_string()
}

#[test]
fn readme_quickstart_runs_as_written() {
    let s = Scratch::new();
    let script = quickstart_script();
    assert!(
        script.contains("cargo build --release"),
        "the quickstart builds first"
    );
    // The build already happened (the test command runs it); the rest runs verbatim.
    let script: String = script
        .lines()
        .filter(|l| !l.starts_with("cargo build"))
        .collect::<Vec<_>>()
        .join("\n");
    let db = s.db("demo.db");
    let script = with_extension(&script).replace("/tmp/demo.db", db.to_str().unwrap());
    let out = Command::new("bash")
        .arg("-ec")
        .arg(&script)
        .current_dir(repo_root())
        .env("WALWATCH_DIR", &s.stats_dir)
        .output()
        .unwrap();
    assert_ok(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "walwatch/unix", "{text}");
    let stats: serde_json::Value =
        serde_json::from_str(lines.last().unwrap()).expect("walwatch_stats() JSON");
    assert!(stats["wal_bytes"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(
        stats["checkpoints"]["recent"][0]["outcome"], "complete",
        "{stats}"
    );
}

#[test]
fn sqlite3_shell_example_runs() {
    let s = Scratch::new();
    let script =
        std::fs::read_to_string(repo_root().join("examples/sqlite3-shell/demo.sql")).unwrap();
    let db = s.db("shell-demo.db");
    let (out, err) = s.shell(
        &with_extension(&script).replace("/tmp/walwatch-shell-demo.db", db.to_str().unwrap()),
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["walwatch/unix", "wal", "0|0|0", "truncate|complete|0"],
        "stderr: {err}"
    );
}

#[test]
fn python_example_runs() {
    let s = Scratch::new();
    let db = s.db("app.db");
    let out = Command::new("/usr/bin/python3")
        .arg(repo_root().join("examples/python/app.py"))
        .arg(&db)
        .env("WALWATCH_EXT", extension())
        .env("WALWATCH_DIR", &s.stats_dir)
        .output()
        .unwrap();
    assert_ok(&out);
    let text = stdout(&out);
    let write_locks: u64 = text
        .split("WRITE lock taken ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        text.starts_with("WAL: ") && write_locks >= 2000,
        "one WRITE lock per insert: {text}"
    );
}

#[test]
fn rust_example_runs() {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let binary = repo_root()
        .join("target")
        .join(profile)
        .join("examples/rusqlite-app");
    assert!(
        binary.exists(),
        "{} is built by `cargo test --workspace`",
        binary.display()
    );
    let s = Scratch::new();
    let db = s.db("rust.db");
    let out = Command::new(&binary)
        .arg(&db)
        .env("WALWATCH_DIR", &s.stats_dir)
        .output()
        .unwrap();
    assert_ok(&out);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(stats["db"], db.to_str().unwrap());
    assert_eq!(
        stats["checkpoints"]["recent"][0]["mode"], "truncate",
        "{stats}"
    );
    assert!(
        stats["shm_locks"]["WRITE"]["exclusive"]["acquired"]
            .as_u64()
            .unwrap()
            >= 1000,
        "{stats}"
    );
}

//! Golden `/metrics`: a real `walwatch serve` reads the captured fixtures of `tests/fixtures/`
//! (a layout-v2 stats file, the database, `-wal` and `-shm` of the same moment, and a layout-v1
//! stats file) and its `/metrics`, default and `--metrics.detail`, must equal
//! `tests/fixtures/golden/metrics.prom` and `metrics-detail.prom` line for line, after
//! [`normalize`] (which lists everything that may vary between runs). Any change to a series
//! name, label, help text or value shows up as a diff to review.
//!
//! To accept a change: `UPDATE_GOLDEN=1 cargo test --release -p walwatch-tests --test sidecar golden::`
//! rewrites the two files; review them with `git diff` and commit them.
//!
//! The raw output (before normalizing) must also pass `promtool check metrics`.
#![forbid(unsafe_code)]

use std::mem::offset_of;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use walwatch::layout::{Header, MAX_PATH};

use walwatch_tests::*;

fn fixtures() -> PathBuf {
    workspace_root().join("tests/fixtures")
}

/// The fixtures laid out as an application leaves them: `<dir>/app.db` with its `-wal` and
/// `-shm`, and `<dir>/stats` (0700) holding the v2 stats file (0600), its database path
/// rewritten to `<dir>/app.db` (the only byte change: the capture ran in
/// /tmp/walwatch-fixture), and the v1 stats file, which must be reported as an older layout.
fn lay_out(dir: &Path) -> PathBuf {
    let f = fixtures();
    let db = dir.join("app.db");
    std::fs::copy(f.join("app.db"), &db).unwrap();
    std::fs::copy(f.join("app.db-wal"), dir.join("app.db-wal")).unwrap();
    std::fs::copy(f.join("sqlite-3.40.1.shm"), dir.join("app.db-shm")).unwrap();
    let stats = dir.join("stats");
    std::fs::create_dir(&stats).unwrap();
    std::fs::set_permissions(&stats, PermissionsExt::from_mode(0o700)).unwrap();

    let mut v2 = std::fs::read(f.join("stats-v2.bin")).unwrap();
    let path = db.as_os_str().as_encoded_bytes();
    let at = offset_of!(Header, db_path);
    v2[at..at + MAX_PATH].fill(0);
    v2[at..at + path.len()].copy_from_slice(path);
    let len_at = offset_of!(Header, db_path_len);
    v2[len_at..len_at + 4].copy_from_slice(&(path.len() as u32).to_ne_bytes());
    let v1 = std::fs::read(f.join("stats-v1.bin")).unwrap();
    let files = [
        (walwatch::paths::stats_file_name(path), v2),
        (
            walwatch::paths::stats_file_name(b"/tmp/walwatch-fixture-v1/app.db"),
            v1,
        ),
    ];
    for (name, bytes) in files {
        let file = stats.join(name);
        std::fs::write(&file, bytes).unwrap();
        std::fs::set_permissions(&file, PermissionsExt::from_mode(0o600)).unwrap();
    }
    stats
}

/// `/metrics` and `/status` of a `walwatch serve` over `stats`, once it has collected the
/// database.
fn scrape(dir: &Path, stats: &Path, extra: &[&str]) -> (String, String) {
    let stats = stats.to_str().unwrap();
    // Nothing may change the fixtures while they are read.
    let mut args = vec!["--stats-dir", stats, "--controller", "off"];
    args.extend_from_slice(extra);
    let mut serve = Serve::start(dir, &args);
    let body = wait_within(
        "/metrics with the fixture database",
        Duration::from_secs(20),
        || {
            serve.assert_running();
            serve.get("/metrics").filter(|body| body.contains("app.db"))
        },
    );
    let (_, status) = raw_get(serve.addr, "/status", None).unwrap();
    (body, status)
}

/// Series whose value differs from run to run, by exact name; their lines are kept with the
/// value replaced by `<varies>`. Every other value, the fixture's own timings and timestamps
/// included, must match exactly.
const VARYING_VALUES: &[&str] = &[
    // Time the sidecar itself spent.
    "walwatch_collection_duration_seconds",
    "walwatch_collect_duration_seconds",
    "walwatch_render_duration_seconds",
    // The clock at the time of the scrape.
    "walwatch_last_collect_timestamp_seconds",
    "walwatch_oldest_reader_age_seconds",
];

/// Series left out altogether, by name prefix: a process collector's (CPU, memory, file
/// descriptors, start time) and build info (version, commit). walwatch exports neither today;
/// the rule keeps them out of the golden files should they come.
const DROPPED: &[&str] = &["process_", "walwatch_build_info"];

/// Makes a `/metrics` body comparable across runs: the temporary directory becomes `<dir>`,
/// [`DROPPED`] series go, [`VARYING_VALUES`] get the value `<varies>`.
fn normalize(body: &str, dir: &Path) -> String {
    let dir = dir.to_str().unwrap();
    let mut out = String::new();
    for line in body.lines() {
        let line = line.replace(dir, "<dir>");
        let name = match line.strip_prefix("# ") {
            Some(comment) => comment.split(' ').nth(1).unwrap_or(""),
            None => line.split(['{', ' ']).next().unwrap_or(""),
        };
        if DROPPED.iter().any(|d| name.starts_with(d)) {
            continue;
        }
        let varies = VARYING_VALUES.contains(&name);
        match line.rsplit_once(' ') {
            Some((series, _value)) if varies && !line.starts_with('#') => {
                out.push_str(series);
                out.push_str(" <varies>");
            }
            _ => out.push_str(&line),
        }
        out.push('\n');
    }
    out
}

/// Compares with the golden file, or rewrites it under `UPDATE_GOLDEN=1`.
fn check_golden(name: &str, actual: &str) {
    let path = fixtures().join("golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        eprintln!("rewrote {}", path.display());
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with UPDATE_GOLDEN=1 cargo test --release -p walwatch-tests --test sidecar golden::",
            path.display()
        )
    });
    if expected == actual {
        return;
    }
    let (old, new): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let mut diff = String::new();
    for line in old.iter().filter(|l| !new.contains(l)) {
        diff.push_str(&format!("- {line}\n"));
    }
    for line in new.iter().filter(|l| !old.contains(l)) {
        diff.push_str(&format!("+ {line}\n"));
    }
    if diff.is_empty() {
        diff.push_str("(same lines, another order)\n");
    }
    panic!(
        "/metrics differs from {} (- golden, + now):\n{diff}\nIf the change is intended: UPDATE_GOLDEN=1 cargo test --release -p walwatch-tests --test sidecar golden::, then review and commit the file",
        path.display()
    );
}

/// Scrapes the fixtures and checks the result against `<name>.prom`; returns the `/status`
/// body of the same sidecar.
fn golden(name: &str, extra: &[&str]) -> String {
    let dir = TempDir::new(name);
    let stats = lay_out(&dir.0);
    let (body, status) = scrape(&dir.0, &stats, extra);
    promtool_check(&body);
    check_golden(&format!("{name}.prom"), &normalize(&body, &dir.0));
    status
}

#[test]
fn default_metrics_match_the_golden_file() {
    let status = golden("metrics", &[]);
    // The real layout-v1 file (7,904 bytes) is named as an older layout, not as truncated.
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let bad = status["bad_stats_files"].as_array().unwrap();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0]["reason"], "wrong_version", "{bad:?}");
    let message = bad[0]["message"].as_str().unwrap();
    assert!(
        message.contains("layout version 1 (an older walwatch)"),
        "{message}"
    );
}

#[test]
fn detailed_metrics_match_the_golden_file() {
    golden("metrics-detail", &["--metrics.detail"]);
}

/// The database header of the captured database, read by the sidecar's own parser.
#[test]
fn captured_database_header_says_wal() {
    use walwatch_exporter::collect::wal_files::{parse_db_header, DbHeader};
    let db = std::fs::read(fixtures().join("app.db")).unwrap();
    assert_eq!(db.len(), 4 * 4096);
    assert_eq!(parse_db_header(&db), DbHeader::Wal);
    assert_eq!(parse_db_header(&db[..100]), DbHeader::Wal);
    assert_eq!(parse_db_header(&db[..19]), DbHeader::NotSqlite);
}

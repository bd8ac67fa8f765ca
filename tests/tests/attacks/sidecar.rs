//! Attacks 4 and 5 of issue 9, on a root sidecar: stats files forged to make it act on (or
//! reveal) databases their writer does not own, and files planted to stall it or blow up its
//! memory.

use crate::harness::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Rows of 8000-byte blobs with auto-checkpoint off: a WAL of a few MiB, over the hard limit.
const BIG_WAL: [&str; 6] = ["--rows", "300", "--size", "8000", "--autocheckpoint", "0"];
const LIMITS: [&str; 6] = [
    "--controller",
    "act",
    "--soft-limit",
    "256KiB",
    "--hard-limit",
    "1MiB",
];

/// Attack 4, "A root sidecar acts for anyone": the attacker, who cannot even list
/// `/srv/secret` (0700 root), forges stats files in its own per-user directory naming
/// `/srv/secret/app.db` (a root database with a WAL over the hard limit) and
/// `/srv/secret/missing.db` (which does not exist). A root `walwatch serve`, controller on, runs
/// several collections: it checkpoints the attacker's own database (so it did read the
/// attacker's directory and act), but not the root database, names neither secret path on
/// `/metrics` or `/status`, and answers the same for the existing and the missing one.
#[test]
fn attack4_forged_stats_file_naming_a_root_only_database() {
    isolated(|s| {
        let secret_dir = Path::new("/srv/secret");
        std::fs::create_dir(secret_dir).unwrap();
        std::fs::set_permissions(secret_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let secret = secret_dir.join("app.db");
        let missing = secret_dir.join("missing.db");
        let root_app = [
            &["commit", "--no-shim", "--leave-wal"][..],
            &BIG_WAL,
            &[secret.to_str().unwrap()],
        ]
        .concat();
        s.run_client(&s.root, None, &root_app);
        let secret_wal = secret_dir.join("app.db-wal");
        let wal_before = size_and_mtime(&secret_wal);
        let db_before = contents(&secret);
        assert!(
            wal_before.0 > 1 << 20,
            "the root WAL is over the hard limit: {wal_before:?}"
        );

        // The attacker's own database, through the shim: a genuine stats file in its
        // per-user directory and a WAL over the hard limit (the control).
        let own = s.attacker.db("own.db");
        let own_app = [
            &["commit", "--leave-wal"][..],
            &BIG_WAL,
            &[own.to_str().unwrap()],
        ]
        .concat();
        s.run_client(&s.attacker, None, &own_app);
        let own_wal = s.attacker.db("own.db-wal");

        let attacker_dir = s.attacker.default_stats_dir();
        let mut forged_names = Vec::new();
        for db in [&secret, &missing] {
            let file = predicted_stats_file(&attacker_dir, db);
            let bytes = forged_stats_file(db.to_str().unwrap().as_bytes(), None);
            s.attacker.write_file(&file, &bytes, "0600");
            forged_names.push(file.file_name().unwrap().to_str().unwrap().to_string());
        }

        let sidecar = Sidecar::start(&LIMITS);
        sidecar.wait_for("the controller to checkpoint the attacker's own database (does the root sidecar read every per-user directory?)", |_| {
            std::fs::metadata(&own_wal).map_or(true, |m| m.len() < 1 << 20)
        });
        sidecar.wait_collections(3);

        assert_eq!(
            size_and_mtime(&secret_wal),
            wal_before,
            "the root database's WAL was checkpointed because of a forged stats file"
        );
        assert_unchanged(&secret, &db_before, &contents(&secret));
        let metrics = sidecar.get("/metrics").expect("/metrics answers");
        let status = sidecar.get("/status").expect("/status answers");
        for (what, body) in [("/metrics", &metrics), ("/status", &status)] {
            assert!(
                !body.contains("/srv/secret"),
                "{what} names a root-only path from a forged stats file:\n{}",
                lines_with(body, "/srv/secret")
            );
        }
        assert!(
            !metrics
                .lines()
                .any(|l| l.starts_with("walwatch_controller_actions_total") && l.contains("secret")),
            "the controller acted on the forged database"
        );

        // What /status says about each forged file, names blanked: the same for both.
        let status: Value = serde_json::from_str(&status).unwrap();
        let about = |name: &str, db: &Path| -> Vec<String> {
            mentions(&status, name)
                .into_iter()
                .map(|v| {
                    v.to_string()
                        .replace(name, "<forged>")
                        .replace(db.to_str().unwrap(), "<db>")
                })
                .collect()
        };
        println!(
            "/status about the forged files: {:?}",
            about(&forged_names[0], &secret)
        );
        assert_eq!(
            about(&forged_names[0], &secret),
            about(&forged_names[1], &missing),
            "/status tells an existing root-only database from a missing one"
        );
    });
}

/// Attack 4, "A directory owner can delete a victim's stats file and forge one": in the old
/// shared layout (`/dev/shm/walwatch`, 1777, made by the attacker), the attacker replaces the
/// victim's stats file with one showing pid 1 reading at frame 1 for an hour. Root's
/// `walwatch status` does not report the victim's database BLOCKED by pid 1.
#[test]
fn attack4_forged_blocker_for_a_victims_database_in_a_shared_directory() {
    isolated(|s| {
        let shared = Path::new("/dev/shm/walwatch");
        s.attacker.sh_ok(
            "mkdir \"$1\" && chmod 1777 \"$1\"",
            &[shared.to_str().unwrap()],
        );
        let app = s.victim.db("app.db");
        let args = [
            "commit",
            "--rows",
            "100",
            "--autocheckpoint",
            "0",
            "--leave-wal",
            app.to_str().unwrap(),
        ];
        s.run_client(&s.victim, Some(shared), &args);

        let file = predicted_stats_file(shared, &app);
        s.attacker.sh_ok("rm -f \"$1\"", &[file.to_str().unwrap()]);
        let forged = forged_stats_file(app.to_str().unwrap().as_bytes(), Some(1));
        s.attacker.write_file(&file, &forged, "0644");

        let dir = ["--stats-dir", shared.to_str().unwrap()];
        let json = walwatch(&[&["status", "--json"][..], &dir].concat());
        let text = walwatch(&[&["status"][..], &dir].concat());
        assert_no_forged_blocker(&json.stdout, &text.stdout, &app, false);
    });
}

/// Attack 4, "forge one ('BLOCKED by pid 1 for 1h')", in the default layout: the victim
/// records into its private directory, and the attacker puts a forged stats file naming the
/// victim's database, with pid 1 reading for an hour, in its own per-user directory. Neither
/// root's `walwatch status` nor a root `walwatch serve` shows the victim's database blocked.
#[test]
fn attack4_forged_blocker_for_a_victims_database_from_the_attackers_directory() {
    isolated(|s| {
        let app = s.victim.db("app.db");
        let args = [
            "commit",
            "--rows",
            "100",
            "--autocheckpoint",
            "0",
            "--leave-wal",
            app.to_str().unwrap(),
        ];
        s.run_client(&s.victim, None, &args);
        s.run_client(
            &s.attacker,
            None,
            &[
                "commit",
                "--rows",
                "1",
                s.attacker.db("own.db").to_str().unwrap(),
            ],
        );
        let file = predicted_stats_file(&s.attacker.default_stats_dir(), &app);
        let forged = forged_stats_file(app.to_str().unwrap().as_bytes(), Some(1));
        s.attacker.write_file(&file, &forged, "0600");

        let json = walwatch(&["status", "--json"]);
        let text = walwatch(&["status"]);
        assert_no_forged_blocker(&json.stdout, &text.stdout, &app, true);
        let sidecar = Sidecar::start(&[]);
        sidecar.wait_collections(2);
        let status = sidecar.get("/status").expect("/status answers");
        assert_no_forged_blocker(status.as_bytes(), b"", &app, true);
        let metrics = sidecar.get("/metrics").expect("/metrics answers");
        let blocked = metrics.lines().find(|l| {
            l.starts_with("walwatch_checkpoint_blocked")
                && l.contains("app.db")
                && l.ends_with(" 1")
        });
        assert!(blocked.is_none(), "/metrics: {blocked:?}");
    });
}

/// What root's sidecar says about the victim's `db` (JSON of `status --json` or `/status`,
/// and the text report) shows no checkpoint blocked and no pid 1 reader or blocker; with
/// `listed`, it does show the database (from the victim's own stats file).
fn assert_no_forged_blocker(json: &[u8], text: &[u8], db: &Path, listed: bool) {
    let text = String::from_utf8_lossy(text);
    println!("{text}");
    let json: Value = serde_json::from_slice(json).expect("status JSON");
    let entries = find_by_path(&json, db.to_str().unwrap());
    assert!(
        !listed || !entries.is_empty(),
        "the victim's database, recorded in its own directory, is not listed: {json:#}"
    );
    for entry in entries {
        assert_ne!(
            entry["checkpoint_blocked"], true,
            "the victim's database shown blocked: {entry:#}"
        );
        for key in ["readers", "blockers"] {
            let by_pid_1 = entry[key]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["pid"] == 1);
            assert!(!by_pid_1, "a forged pid 1 among the {key}: {entry:#}");
        }
    }
    assert!(!text.contains("BLOCKED"), "walwatch status:\n{text}");
}

/// Attack 5, "Sidecar stalls and memory blow-up": in its own per-user directory the attacker
/// plants a FIFO named `x.walwatch`, a symlink to `/dev/zero` named `z.walwatch`, and a sparse
/// 2 GiB `big.walwatch`; one of its databases gets a FIFO as its `-shm`, and another database
/// path is a FIFO that the operator names with `--db`. A root `walwatch serve` answers at
/// startup and keeps collecting (a database opened later appears on `/metrics`), `/healthz` is
/// ok, `walwatch status` returns, and the sidecar's peak memory stays under 200 MiB.
#[test]
fn attack5_fifos_dev_zero_and_sparse_files_stall_nothing() {
    isolated(|s| {
        let fifo_db = s.attacker.db("fifo.db");
        let pipe_db = s.attacker.db("pipe.db");
        s.run_client(
            &s.attacker,
            None,
            &[
                "commit",
                "--rows",
                "10",
                "--leave-wal",
                fifo_db.to_str().unwrap(),
            ],
        );
        let dir = s.attacker.default_stats_dir();
        s.attacker.sh_ok(
            "set -e; rm \"$2-shm\"; mkfifo \"$2-shm\"; mkfifo \"$3\"; cd \"$1\"; \
             mkfifo x.walwatch; ln -s /dev/zero z.walwatch; truncate -s 2G big.walwatch",
            &[
                dir.to_str().unwrap(),
                fifo_db.to_str().unwrap(),
                pipe_db.to_str().unwrap(),
            ],
        );

        let sidecar = Sidecar::start(&["--db", pipe_db.to_str().unwrap()]);
        let late = s.victim.db("late.db");
        s.run_client(
            &s.victim,
            None,
            &["commit", "--rows", "10", late.to_str().unwrap()],
        );
        let late_label = format!("db=\"{}\"", late.display());
        sidecar.wait_for("a database opened later to appear on /metrics", |s| {
            s.get("/metrics").is_some_and(|m| m.contains(&late_label))
        });
        assert!(sidecar.get("/healthz").is_some(), "/healthz is not ok");

        for args in [
            &["status"][..],
            &["status", "--json"],
            &[
                "status",
                pipe_db.to_str().unwrap(),
                fifo_db.to_str().unwrap(),
            ],
        ] {
            let out = walwatch(args);
            println!("walwatch {args:?}: {}", out.status);
        }
        let peak = sidecar.peak_rss_kib();
        println!("sidecar VmHWM: {peak} KiB");
        assert!(
            peak < 200 * 1024,
            "the sidecar's peak memory is {peak} KiB (limit 200 MiB)"
        );
        assert!(sidecar.get("/healthz").is_some(), "/healthz is not ok");
    });
}

/// The lines of `text` that contain `needle`.
fn lines_with(text: &str, needle: &str) -> String {
    text.lines()
        .filter(|l| l.contains(needle))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Entries of the top-level arrays of `status` (databases, bad files…) that mention `needle`.
fn mentions(status: &Value, needle: &str) -> Vec<Value> {
    status
        .as_object()
        .into_iter()
        .flat_map(|o| o.values())
        .filter_map(Value::as_array)
        .flatten()
        .filter(|v| v.to_string().contains(needle))
        .cloned()
        .collect()
}

/// Objects anywhere in `json` whose `path` is `path`.
fn find_by_path<'a>(json: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut found = Vec::new();
    let mut stack = vec![json];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(o) => {
                if o.get("path").and_then(Value::as_str) == Some(path) {
                    found.push(v);
                }
                stack.extend(o.values());
            }
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    found
}

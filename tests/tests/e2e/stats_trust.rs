//! Issue 9, attacks 1-3, replayed against the shim with real processes (one user, root): the
//! shim trusts no stats file or directory it did not create, never follows a symlink, never
//! blocks on another process's lock, never maps space it has not allocated, and recovers a
//! file whose creator died. In every case the database keeps working and nothing outside the
//! stats directory is touched. (The two-user versions of these attacks are in the attack suite.)

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use walwatch::layout::REGION_SIZE;
use walwatch_tests::*;

/// Far beyond any bounded wait of the shim (under 50 ms per open), far below the 30 s a
/// lock holder below keeps its lock: reaching it means something blocked.
const HANG: Duration = Duration::from_secs(10);

/// A finished (or killed, if it ran past [`HANG`]) process.
struct Run {
    out: String,
    err: String,
    status: ExitStatus,
    elapsed: Duration,
}

/// Runs `cmd` with `stdin`, killing it if it runs past [`HANG`] (the test then fails).
fn run_bounded(mut cmd: Command, stdin: &str) -> Run {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_owned();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {HANG:?}: it hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    writer.join().unwrap();
    Run {
        out: out.join().unwrap(),
        err: err.join().unwrap(),
        status,
        elapsed,
    }
}

/// The sqlite3 shell with the extension and `stats_dir`, bounded.
fn shell(stats_dir: &Path, script: &str) -> Run {
    let mut cmd = Command::new("sqlite3");
    cmd.env("WALWATCH_DIR", stats_dir);
    run_bounded(cmd, script)
}

/// Opens `db` through the shim, commits `rows` more rows in one transaction, prints the row
/// count (`rows=N`) and, when the database is recorded, `walwatch_stats()` (a JSON line).
fn write_rows(db: &Path, rows: u32) -> String {
    format!(
        ".open {db}\nPRAGMA journal_mode=WAL;\nCREATE TABLE IF NOT EXISTS t(x);\n\
         BEGIN;\nINSERT INTO t SELECT value FROM generate_series(1,{rows});\nCOMMIT;\n\
         SELECT 'rows=' || count(*) FROM t;\nSELECT walwatch_stats();\n",
        db = db.display()
    )
}

fn script(body: &str) -> String {
    format!(
        ".log stderr\n.load {ext}\n{body}",
        ext = extension().display()
    )
}

/// Whether the run printed a `walwatch_stats()` line for `db`.
fn recorded(out: &str, db: &Path) -> bool {
    out.lines().any(|line| {
        line.starts_with('{')
            && serde_json::from_str::<serde_json::Value>(line)
                .is_ok_and(|stats| stats["db"] == db.to_str().unwrap())
    })
}

/// Row count and integrity check of `db`, read by a plain sqlite3 without the extension.
fn rows_without_walwatch(db: &Path) -> (u64, String) {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg("SELECT count(*) FROM t; PRAGMA integrity_check;")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let count = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    (count, lines.collect::<Vec<_>>().join("\n"))
}

fn stats_file(stats_dir: &Path, db: &Path) -> PathBuf {
    stats_dir.join(walwatch::paths::stats_file_name(
        db.to_str().unwrap().as_bytes(),
    ))
}

/// Whether the shell exited by itself (not killed by SIGBUS or any signal) with 0, or with 1
/// because `walwatch_stats()` said the database is not recorded (the shell's status when a
/// statement failed).
fn exited_normally(status: ExitStatus) -> bool {
    matches!(status.code(), Some(0 | 1))
}

/// Asserts the database worked (`rows=expected`) while unrecorded, and the log said `why`.
fn assert_unrecorded(run: &Run, db: &Path, expected_rows: u32, why: &str) {
    let context = format!("stdout: {}\nstderr: {}", run.out, run.err);
    assert!(exited_normally(run.status), "{}: {context}", run.status);
    assert!(
        run.out
            .lines()
            .any(|l| l == format!("rows={expected_rows}")),
        "the database works: {context}"
    );
    assert!(!recorded(&run.out, db), "not recorded: {context}");
    assert_eq!(
        run.err.matches(why).count(),
        1,
        "the log says why, once: {context}"
    );
    assert!(
        run.err
            .contains("walwatch: databases work but are not recorded;"),
        "the log says what to do: {context}"
    );
}

fn private_dir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// Issue 9, attack 1: a symlink planted under a database's (predictable) stats file name. The
/// shim used to write its counters through it: into the victim's `-wal` (committed rows lost
/// after a crash), into another file, or into a new file wherever the victim could write.
#[test]
fn attack_1_symlink_at_the_stats_file_name_is_refused() {
    for target in ["own-wal", "existing-file", "new-path"] {
        let s = Scratch::new();
        let db = s.db("victim.db");
        private_dir(&s.stats_dir);
        // The database exists, in WAL mode, before the attack.
        let setup = Command::new("sqlite3")
            .arg(&db)
            .arg("PRAGMA journal_mode=WAL; CREATE TABLE t(x);")
            .output()
            .unwrap();
        assert_ok(&setup);
        let elsewhere = s.db("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let existing = elsewhere.join("precious.bin");
        let precious: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + 3) as u8).collect();
        std::fs::write(&existing, &precious).unwrap();
        let new_path = elsewhere.join("created-by-victim");
        let link_target = match target {
            "own-wal" => PathBuf::from(format!("{}-wal", db.display())),
            "existing-file" => existing.clone(),
            _ => new_path.clone(),
        };
        let link = stats_file(&s.stats_dir, &db);
        std::os::unix::fs::symlink(&link_target, &link).unwrap();

        // The victim commits 100 rows and crashes (SIGKILL, no clean close).
        let run = shell(
            &s.stats_dir,
            &script(&format!("{}.system kill -9 $PPID\n", write_rows(&db, 100))),
        );
        let context = format!("{target}: stdout: {}\nstderr: {}", run.out, run.err);
        assert!(run.out.contains("rows=100"), "{context}");
        assert!(!recorded(&run.out, &db), "{context}");
        assert!(
            run.err
                .contains("refused: it is a symbolic link, not a regular file"),
            "{context}"
        );
        // After the restart every committed row is there.
        assert_eq!(rows_without_walwatch(&db), (100, "ok".into()), "{context}");
        assert_eq!(std::fs::read(&existing).unwrap(), precious, "{context}");
        assert!(
            !new_path.exists(),
            "nothing created at the target: {context}"
        );
        assert!(
            std::fs::symlink_metadata(&link).unwrap().is_symlink(),
            "{context}"
        );
    }
}

/// Issue 9, attacks 1 and 3: other things planted under the stats file's name. A FIFO would
/// block an open without O_NONBLOCK; a hard link to another file has that file's bytes; a file
/// of another user, or one others can write (attack 2: the old 0666 files), is one they can
/// truncate under the mapping or lock. All refused; the database works.
#[test]
fn attack_1_fifo_hard_link_and_foreign_owner_are_refused() {
    for (case, why) in [
        ("fifo", "refused: it is a FIFO, not a regular file"),
        ("hard-link", "refused: it has 2 hard links, not 1"),
        (
            "other-owner",
            "refused: it is owned by uid 65534, not uid 0",
        ),
        // The old default: 0666, so anyone could truncate it under the mapping (SIGBUS).
        (
            "world-writable",
            "refused: other users can write it (mode 0666)",
        ),
    ] {
        let s = Scratch::new();
        let db = s.db("victim.db");
        private_dir(&s.stats_dir);
        let name = stats_file(&s.stats_dir, &db);
        let other = s.db("other-file");
        let bytes = b"someone else's bytes".repeat(500);
        std::fs::write(&other, &bytes).unwrap();
        match case {
            "fifo" => assert_ok(&Command::new("mkfifo").arg(&name).output().unwrap()),
            "hard-link" => std::fs::hard_link(&other, &name).unwrap(),
            "world-writable" => {
                std::fs::write(&name, b"").unwrap();
                std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o666)).unwrap();
            }
            _ => {
                std::fs::write(&name, b"").unwrap();
                std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600)).unwrap();
                std::os::unix::fs::chown(&name, Some(65534), Some(65534)).unwrap();
            }
        }
        let run = shell(&s.stats_dir, &script(&write_rows(&db, 10)));
        assert_unrecorded(&run, &db, 10, why);
        assert_eq!(std::fs::read(&other).unwrap(), bytes, "{case}");
        if case == "other-owner" || case == "world-writable" {
            assert_eq!(std::fs::metadata(&name).unwrap().len(), 0, "untouched");
        }
        assert_eq!(rows_without_walwatch(&db), (10, "ok".into()), "{case}");
    }
}

/// Issue 9, attack 1: a stats directory other users can write (the old default was created
/// 1777 by whoever came first) or that another user owns. Refused before anything is created
/// in it.
#[test]
fn attack_1_writable_or_foreign_stats_directory_is_refused() {
    for (mode, owner, why) in [
        (
            0o1777,
            0,
            "refused: other users can write it (mode 1777)".to_string(),
        ),
        (
            0o770,
            0,
            "refused: other users can write it (mode 0770)".into(),
        ),
        (
            0o700,
            65534,
            "refused: it is owned by uid 65534, not uid 0".into(),
        ),
    ] {
        let s = Scratch::new();
        let db = s.db("a.db");
        std::fs::create_dir(&s.stats_dir).unwrap();
        std::fs::set_permissions(&s.stats_dir, std::fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::chown(&s.stats_dir, Some(owner), None).unwrap();
        let run = shell(&s.stats_dir, &script(&write_rows(&db, 5)));
        assert_unrecorded(&run, &db, 5, &why);
        assert!(
            run.err.contains("walwatch: stats directory "),
            "{}",
            run.err
        );
        assert_eq!(
            std::fs::read_dir(&s.stats_dir).unwrap().count(),
            0,
            "nothing created in it"
        );
    }
}

/// The problem line fits what sqlite3_log keeps (about 200 bytes): with a long stats directory
/// path, the path is shortened, never the reason.
#[test]
fn refusal_of_a_long_path_keeps_its_reason() {
    let s = Scratch::new();
    let db = s.db("a.db");
    let deep = (0..6).fold(s.stats_dir.clone(), |dir, i| {
        dir.join(format!("{i}{}", "long-directory-name-".repeat(3)))
    });
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::set_permissions(&deep, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(deep.as_os_str().len() > 300);
    let run = shell(&deep, &script(&write_rows(&db, 1)));
    assert_unrecorded(
        &run,
        &db,
        1,
        "refused: other users can write it (mode 0777)\n",
    );
    assert!(run.err.contains("..."), "{}", run.err);
}

/// Issue 9, attack 3: another process holds the stats file's flock forever. The shim used to
/// wait for it while holding its process-wide mutex: this database's open hung, and so did every
/// other database's open in the process. Now each open tries a few times (under 50 ms in all),
/// then the database works unrecorded; a second database in the same process is recorded.
#[test]
fn attack_3_flock_held_by_another_process_does_not_hang() {
    use std::os::unix::process::CommandExt;
    let s = Scratch::new();
    let (locked_db, other_db) = (s.db("locked.db"), s.db("other.db"));
    // A recorded first run creates the stats file.
    let first = shell(&s.stats_dir, &script(&write_rows(&locked_db, 1)));
    assert!(recorded(&first.out, &locked_db), "{}", first.err);
    let file = stats_file(&s.stats_dir, &locked_db);

    let mut holder = Command::new("flock")
        .arg("-x")
        .arg(&file)
        .args(["sh", "-c", "echo locked; exec sleep 30"])
        .process_group(0)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run flock (util-linux)");
    let mut holder_out = BufReader::new(holder.stdout.take().unwrap());
    let holder = KillGroupOnDrop(holder);
    let mut line = String::new();
    holder_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "locked");

    let run = shell(
        &s.stats_dir,
        &script(&format!(
            "{}{}",
            write_rows(&locked_db, 1),
            write_rows(&other_db, 3)
        )),
    );
    drop(holder);

    let context = format!("stdout: {}\nstderr: {}", run.out, run.err);
    assert!(exited_normally(run.status), "{context}");
    assert!(run.elapsed < HANG, "{:?}: {context}", run.elapsed);
    assert!(run.out.contains("rows=2\n"), "{context}");
    assert!(!recorded(&run.out, &locked_db), "{context}");
    assert!(recorded(&run.out, &other_db), "{context}");
    assert_eq!(
        run.err.matches("is locked by another process").count(),
        1,
        "{context}"
    );
    // With the lock gone, the file records again (it was never damaged).
    let after = shell(&s.stats_dir, &script(&write_rows(&locked_db, 1)));
    assert!(recorded(&after.out, &locked_db), "{}", after.err);
}

/// A child that leads its own process group (flock and the command it runs with the lock):
/// the whole group is killed when the test ends, passed or failed.
struct KillGroupOnDrop(std::process::Child);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        // SAFETY: signals only the process group this test started (the child leads it).
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// Runs `sh -c body` in a private mount namespace (`unshare -m`), bounded; `body` may mount.
fn in_mount_namespace(body: &str, env: &[(&str, &Path)]) -> Run {
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", body]);
    cmd.env_remove("WALWATCH_DIR");
    for (key, value) in env {
        cmd.env(key, value);
    }
    run_bounded(cmd, "")
}

/// Issue 9, attack 2: a full file system. The shim used to size the file sparse (`set_len`)
/// and die of SIGBUS at the first write through the mapping; the zero-filled file left behind
/// then disabled recording for good. Now allocation fails with ENOSPC, the database works
/// unrecorded, no file is left, and once space is free a new process records.
#[test]
fn attack_2_full_tmpfs_is_enospc_not_sigbus() {
    let s = Scratch::new();
    let db = s.db("full.db");
    std::fs::create_dir(&s.stats_dir).unwrap();
    std::fs::write(s.db("write.sql"), script(&write_rows(&db, 20))).unwrap();
    let body = r#"
        set -u
        mount -t tmpfs -o size=64k,mode=0700 tmpfs "$STATS" || exit 99
        dd if=/dev/zero of="$STATS/fill" bs=4096 count=64 2>/dev/null
        export WALWATCH_DIR="$STATS"
        sqlite3 < "$SCRATCH/write.sql" > "$SCRATCH/out1" 2> "$SCRATCH/err1"; echo $? > "$SCRATCH/rc1"
        ls -A "$STATS" > "$SCRATCH/ls1"
        rm "$STATS/fill"
        sqlite3 < "$SCRATCH/write.sql" > "$SCRATCH/out2" 2> "$SCRATCH/err2"; echo $? > "$SCRATCH/rc2"
        ls -A "$STATS" > "$SCRATCH/ls2"
    "#;
    let run = in_mount_namespace(body, &[("STATS", &s.stats_dir), ("SCRATCH", &s.dir.0)]);
    assert!(run.status.success(), "{}: {}", run.status, run.err);
    let read = |name: &str| std::fs::read_to_string(s.db(name)).unwrap_or_default();
    let name = walwatch::paths::stats_file_name(db.to_str().unwrap().as_bytes());

    let context = format!("stdout: {}\nstderr: {}", read("out1"), read("err1"));
    // 1: walwatch_stats() failed (unrecorded). A SIGBUS would be 135.
    assert_eq!(read("rc1").trim(), "1", "no SIGBUS (135): {context}");
    assert!(read("out1").contains("rows=20\n"), "{context}");
    assert!(!recorded(&read("out1"), &db), "{context}");
    assert_eq!(
        read("err1")
            .matches("cannot be allocated: No space left on device")
            .count(),
        1,
        "{context}"
    );
    assert_eq!(
        read("ls1").trim(),
        "fill",
        "no half-made file left: {context}"
    );

    let context = format!("stdout: {}\nstderr: {}", read("out2"), read("err2"));
    assert_eq!(read("rc2").trim(), "0", "{context}");
    assert!(read("out2").contains("rows=40\n"), "{context}");
    assert!(recorded(&read("out2"), &db), "records again: {context}");
    assert_eq!(read("ls2").trim(), name, "{context}");
    assert_eq!(rows_without_walwatch(&db), (40, "ok".into()));
}

/// Issue 9, attack 2: a file left half-made by a creator that died (right size and zero magic,
/// sparse or not, or short), with no one holding its lock, is initialized afresh by the next
/// open instead of disabling recording for good.
#[test]
fn attack_2_half_created_file_is_recovered() {
    for case in ["zero-filled", "sparse", "short", "empty"] {
        let s = Scratch::new();
        let db = s.db("a.db");
        private_dir(&s.stats_dir);
        let file = stats_file(&s.stats_dir, &db);
        let f = std::fs::File::create(&file).unwrap();
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .unwrap();
        match case {
            "zero-filled" => (&f).write_all(&vec![0; REGION_SIZE]).unwrap(),
            "sparse" => f.set_len(REGION_SIZE as u64).unwrap(),
            "short" => (&f).write_all(b"WALWATCH\x01\0\0\0").unwrap(),
            _ => {}
        }
        drop(f);
        let run = shell(&s.stats_dir, &script(&write_rows(&db, 7)));
        let context = format!("{case}: stdout: {}\nstderr: {}", run.out, run.err);
        assert!(run.out.contains("rows=7\n"), "{context}");
        assert!(recorded(&run.out, &db), "recovered: {context}");
        assert!(
            !run.err.contains("walwatch:"),
            "nothing to report: {context}"
        );
        let bytes = std::fs::read(&file).unwrap();
        let snapshot = walwatch::snapshot::Snapshot::parse(&bytes).expect(&context);
        assert_eq!(snapshot.db_path, db.to_str().unwrap().as_bytes());
    }
}

/// New stats files are private (0600), or group-readable (0640, the directory's group) in a
/// set-group-ID directory the operator shares; a directory the shim creates is 0700; the umask
/// changes neither.
#[test]
fn new_files_and_directories_are_private() {
    let s = Scratch::new();
    let db = s.db("a.db");
    // Made by the shim, parents included, under a umask that would open them wide.
    let made = s.db("made").join("by").join("shim");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "umask 000; exec sqlite3"])
        .env("WALWATCH_DIR", &made);
    let run = run_bounded(cmd, &script(&write_rows(&db, 1)));
    assert!(recorded(&run.out, &db), "{}", run.err);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&made), 0o700);
    assert_eq!(mode(&stats_file(&made, &db)), 0o600);

    // Shared by the operator with a group: setgid (and sticky when group-writable).
    for dir_mode in [0o2750, 0o3770] {
        let shared = s.db(&format!("shared-{dir_mode:o}"));
        std::fs::create_dir(&shared).unwrap();
        std::os::unix::fs::chown(&shared, None, Some(65534)).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(dir_mode)).unwrap();
        let run = shell(&shared, &script(&write_rows(&db, 1)));
        assert!(recorded(&run.out, &db), "{dir_mode:o}: {}", run.err);
        let file = std::fs::metadata(stats_file(&shared, &db)).unwrap();
        assert_eq!(file.mode() & 0o7777, 0o640, "{dir_mode:o}");
        assert_eq!(file.gid(), 65534, "the directory's group");
    }
}

/// The zero-configuration default, `/dev/shm/walwatch-<euid>`, is created 0700 (in a private
/// mount namespace with its own /dev/shm, so the host's is untouched).
#[test]
fn default_directory_is_private_per_user() {
    let s = Scratch::new();
    let db = s.db("a.db");
    std::fs::write(s.db("write.sql"), script(&write_rows(&db, 1))).unwrap();
    let body = r#"
        mount -t tmpfs tmpfs /dev/shm || exit 99
        sqlite3 < "$SCRATCH/write.sql" || exit 98
        stat -c '%a %u' "/dev/shm/walwatch-$(id -u)" "/dev/shm/walwatch-$(id -u)"/*
    "#;
    let run = in_mount_namespace(body, &[("SCRATCH", &s.dir.0)]);
    assert!(
        run.status.success(),
        "{}: {}\n{}",
        run.status,
        run.out,
        run.err
    );
    assert!(recorded(&run.out, &db), "{}", run.err);
    let stats: Vec<&str> = run.out.lines().rev().take(2).collect();
    assert_eq!(stats, ["600 0", "700 0"], "{}", run.out);
}

/// Processes that open a new database at the same moment race to create its stats file: one
/// creates it, the others wait briefly for its lock and map the same file. All record into it.
#[test]
fn simultaneous_first_opens_share_one_file() {
    let s = Scratch::new();
    let db = s.db("race.db");
    let setup = Command::new("sqlite3")
        .arg(&db)
        .arg("PRAGMA journal_mode=WAL; CREATE TABLE t(x);")
        .output()
        .unwrap();
    assert_ok(&setup);
    // `.timeout` applies to the connection `.open` made, so it comes after it.
    let body = write_rows(&db, 1)
        .replace("PRAGMA journal_mode", ".timeout 5000\nPRAGMA journal_mode")
        .replace("CREATE TABLE IF NOT EXISTS t(x);\n", "")
        .replace("BEGIN;", "BEGIN IMMEDIATE;"); // waits (.timeout) for the other writers
    let shells: Vec<_> = (0..8)
        .map(|_| {
            let dir = s.stats_dir.clone();
            let text = script(&body);
            std::thread::spawn(move || shell(&dir, &text))
        })
        .collect();
    for run in shells.into_iter().map(|t| t.join().unwrap()) {
        assert!(recorded(&run.out, &db), "{}\n{}", run.out, run.err);
        assert!(!run.err.contains("walwatch:"), "{}", run.err);
    }
    assert_eq!(std::fs::read_dir(&s.stats_dir).unwrap().count(), 1);
    assert_eq!(rows_without_walwatch(&db), (8, "ok".into()));
}

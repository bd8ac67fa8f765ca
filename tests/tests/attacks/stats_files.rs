//! Attacks 1–3 of issue 9, on the shim's stats files: symlinks planted under a victim's
//! predicted stats file name, a stats file truncated under the victim's mapping, a full tmpfs,
//! and locks held on stats files.

use crate::harness::*;
use std::path::{Path, PathBuf};

/// Where the victim's stats files go, and how the attacker got there first.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// The default per-user directory `/dev/shm/walwatch-<victim uid>`, created (0777) by the
    /// attacker before the victim ever ran; the victim configures nothing.
    SquattedDefault,
    /// The old shared layout: `/dev/shm/walwatch` made 1777 by the attacker, who came first;
    /// the victim sets `WALWATCH_DIR` to it.
    SharedByAttacker,
}

impl Layout {
    /// The attacker creates the directory for `victim`; returns it.
    fn squat(self, s: &Scene, victim: &User) -> PathBuf {
        let (dir, mode) = match self {
            Layout::SquattedDefault => (victim.default_stats_dir(), "0777"),
            Layout::SharedByAttacker => (PathBuf::from("/dev/shm/walwatch"), "1777"),
        };
        s.attacker.sh_ok(
            "mkdir \"$1\" && chmod \"$2\" \"$1\"",
            &[dir.to_str().unwrap(), mode],
        );
        dir
    }

    /// The victim's `WALWATCH_DIR`, if it sets one.
    fn victim_env(self) -> Option<&'static Path> {
        match self {
            Layout::SquattedDefault => None,
            Layout::SharedByAttacker => Some(Path::new("/dev/shm/walwatch")),
        }
    }
}

/// Attack 1, "Data loss through a symlink", in the victim's default per-user directory that
/// the attacker created first.
#[test]
fn attack1_symlinks_in_a_squatted_default_directory_lose_no_row_and_touch_no_file() {
    isolated(|s| symlink_attack(s, &s.victim, Layout::SquattedDefault));
}

/// Attack 1, "Data loss through a symlink … or a root application": the attacker squats
/// root's default directory `/dev/shm/walwatch-0`; a root application is the victim.
#[test]
fn attack1_symlinks_in_roots_squatted_default_directory_lose_no_row_and_touch_no_file() {
    isolated(|s| symlink_attack(s, &s.root, Layout::SquattedDefault));
}

/// Attack 1, "Data loss through a symlink", in a shared 1777 `WALWATCH_DIR` the attacker made.
#[test]
fn attack1_symlinks_in_a_shared_directory_lose_no_row_and_touch_no_file() {
    isolated(|s| symlink_attack(s, &s.victim, Layout::SharedByAttacker));
}

/// The attacker points the victim's predicted stats file names at the victim's empty `-wal`
/// (after a TRUNCATE), at a path that does not exist, and at a file of the victim's. The
/// victim commits 100 rows to each database, crashes (SIGKILL) and reopens.
fn symlink_attack(s: &Scene, victim: &User, layout: Layout) {
    let app = victim.db("app.db");
    let fresh = victim.db("fresh.db");
    let notes = victim.db("notes.db");
    let new_path = victim.db("created-by-walwatch");
    let precious = victim.db("precious.txt");
    let dbs = [&app, &fresh, &notes].map(|p| p.to_str().unwrap());

    // The victim's databases exist, each with an empty -wal left by a TRUNCATE checkpoint.
    let prepared = s.run_client(
        victim,
        None,
        &[&["prepare", "--no-shim"][..], &dbs].concat(),
    );
    assert!(prepared.iter().all(|l| l.ends_with(" 0")), "{prepared:?}");
    victim.write_file(&precious, b"the victim's own data\n", "0644");

    let dir = layout.squat(s, victim);
    let wal = PathBuf::from(format!("{}-wal", app.display()));
    for (db, target) in [(&app, &wal), (&fresh, &new_path), (&notes, &precious)] {
        let link = predicted_stats_file(&dir, db);
        s.attacker.sh_ok(
            "ln -s \"$1\" \"$2\"",
            &[target.to_str().unwrap(), link.to_str().unwrap()],
        );
    }
    let before: Vec<_> = [&app, &fresh, &notes, &precious]
        .iter()
        .map(|p| contents(p))
        .collect();

    // 100 committed rows in each (auto-checkpoint off: they stay in the WAL), then a crash.
    let mut app_process = Running::spawn(
        &mut s.client(
            victim,
            layout.victim_env(),
            &[
                &["commit", "--rows", "100", "--autocheckpoint", "0", "--hold"][..],
                &dbs,
            ]
            .concat(),
        ),
        "victim committing 100 rows",
    );
    assert_eq!(
        app_process.expect_line("COMMITTED"),
        "COMMITTED 100 100 100"
    );
    app_process.kill9();

    // Right after the crash, before anything reopens (and checkpoints) them.
    let after_crash: Vec<_> = [&app, &fresh, &notes, &precious]
        .iter()
        .map(|p| contents(p))
        .collect();
    let created = new_path.exists();

    // Every committed row is there.
    let after = s.verify(victim, layout.victim_env(), &[&app, &fresh, &notes]);
    for (db, (check, rows)) in dbs.iter().zip(&after) {
        assert_eq!(check, "ok", "{db}: integrity_check after the crash");
        assert_eq!(
            *rows, 100,
            "{db}: committed rows after the crash and reopen"
        );
    }
    // Nothing outside the stats directory changed: the database files (their commits are
    // in the WALs) and the victim's file; nothing was created at the new path.
    for ((path, before), after) in [&app, &fresh, &notes, &precious]
        .iter()
        .zip(&before)
        .zip(after_crash)
    {
        assert_unchanged(path, before, &after);
    }
    assert!(
        !created,
        "{} was created through a symlink",
        new_path.display()
    );
}

/// Attack 2, "Application killed by SIGBUS": the attacker pre-creates an empty 0666 stats file
/// under the victim's predicted name in the squatted default directory, and truncates it to
/// zero bytes while the victim is writing.
#[test]
fn attack2_stats_file_truncated_under_the_victim_in_a_squatted_default_directory() {
    isolated(|s| truncate_attack(s, Layout::SquattedDefault));
}

/// Attack 2, "Application killed by SIGBUS", in a shared 1777 `WALWATCH_DIR`.
#[test]
fn attack2_stats_file_truncated_under_the_victim_in_a_shared_directory() {
    isolated(|s| truncate_attack(s, Layout::SharedByAttacker));
}

fn truncate_attack(s: &Scene, layout: Layout) {
    let app = s.victim.db("app.db");
    let dir = layout.squat(s, &s.victim);
    let planted = predicted_stats_file(&dir, &app);
    s.attacker.sh_ok(
        "umask 0 && : > \"$1\" && chmod 0666 \"$1\"",
        &[planted.to_str().unwrap()],
    );

    let mut victim = Running::spawn(
        &mut s.client(
            &s.victim,
            layout.victim_env(),
            &[
                "commit",
                "--rows",
                "50",
                "--then",
                "50",
                app.to_str().unwrap(),
            ],
        ),
        "victim writing",
    );
    assert_eq!(victim.expect_line("COMMITTED"), "COMMITTED 50");
    // The victim has the database open (and the file mapped, if it took it): cut it to 0.
    let truncated = s
        .attacker
        .sh("truncate -s 0 \"$1\"", &[planted.to_str().unwrap()]);
    println!(
        "attacker's truncate: {} {}",
        truncated.status,
        String::from_utf8_lossy(&truncated.stderr)
    );
    victim.send_line("go on");
    let (status, rest) = victim.finish();
    assert!(
        status.success(),
        "the victim was killed or failed while its stats file was truncated: {status}; \
         output: {rest:?}"
    );
    assert_eq!(rest.first().map(String::as_str), Some("COMMITTED 100"));
    assert_eq!(
        s.verify(&s.victim, layout.victim_env(), &[&app]),
        [("ok".into(), 100)]
    );
}

/// Attack 2, "on a full tmpfs": `/dev/shm` is tiny and full when the victim opens its
/// database. The victim opens, writes and reads normally; once space is freed, a new victim
/// process records again (nothing half-created is left to disable recording for good).
#[test]
fn attack2_full_tmpfs_leaves_the_database_working_and_recording_resumes() {
    isolated(|s| {
        let run = |cmd: &str, args: &[&str]| {
            let out = bounded(std::process::Command::new(cmd).args(args), cmd);
            assert_success(&out, &format!("{cmd} {args:?}"));
        };
        run("mount", &["-o", "remount,size=256k", "/dev/shm"]);
        // Fill it (dd stops at ENOSPC, which is the point).
        let _ = bounded(
            std::process::Command::new("dd").args(["if=/dev/zero", "of=/dev/shm/filler", "bs=4k"]),
            "dd filling /dev/shm",
        );
        let df = bounded(std::process::Command::new("df").arg("/dev/shm"), "df");
        println!("{}", String::from_utf8_lossy(&df.stdout));

        let app = s.victim.db("app.db");
        let db = app.to_str().unwrap();
        let out = s.run_client(&s.victim, None, &["commit", "--rows", "100", db]);
        assert_eq!(out, ["COMMITTED 100", "CLOSED"]);
        assert_eq!(s.verify(&s.victim, None, &[&app]), [("ok".into(), 100)]);

        std::fs::remove_file("/dev/shm/filler").unwrap();
        let stats = s.run_client(&s.victim, None, &["stats", db]);
        println!("walwatch_stats() after space was freed: {stats:?}");
        let file = predicted_stats_file(&s.victim.default_stats_dir(), &app);
        let bytes = contents(&file).unwrap_or_else(|| {
            panic!(
                "after space was freed, a new victim process did not record: no {}",
                file.display()
            )
        });
        assert_eq!(
            bytes.len(),
            walwatch::layout::REGION_SIZE,
            "{}: a whole stats file",
            file.display()
        );
        assert_eq!(
            &bytes[..8],
            &walwatch::layout::MAGIC,
            "{}: initialized",
            file.display()
        );
        let path_at = std::mem::offset_of!(walwatch::layout::Header, db_path);
        assert_eq!(&bytes[path_at..path_at + db.len()], db.as_bytes());
    });
}

/// Attack 3, "Application hang": the attacker squats the victim's default directory, creates
/// the victim's stats file and holds `flock -x` on it for 60 s. The victim's open completes,
/// and a second database opened in the same process is not blocked.
#[test]
fn attack3_flock_on_a_planted_stats_file_in_a_squatted_default_directory() {
    isolated(|s| {
        let (app, other) = (s.victim.db("app.db"), s.victim.db("other.db"));
        let dir = Layout::SquattedDefault.squat(s, &s.victim);
        let planted = predicted_stats_file(&dir, &app);
        s.attacker
            .sh_ok("umask 022 && : > \"$1\"", &[planted.to_str().unwrap()]);
        let _lock = hold_flock(&s.attacker, &planted).expect("the attacker locks its own file");
        open_both_within_bound(s, None, &app, &other);
    });
}

/// Attack 3, "Application hang", in the default layout the victim made itself: the
/// attacker cannot reach the victim's stats file to lock it, and the victim is not blocked.
#[test]
fn attack3_flock_on_the_victims_own_default_directory() {
    isolated(|s| {
        let (app, other) = (s.victim.db("app.db"), s.victim.db("other.db"));
        s.run_client(
            &s.victim,
            None,
            &["commit", "--rows", "1", app.to_str().unwrap()],
        );
        let file = predicted_stats_file(&s.victim.default_stats_dir(), &app);
        assert!(file.exists(), "the victim records into {}", file.display());
        assert!(
            hold_flock(&s.attacker, &file).is_none(),
            "the attacker could open and lock the victim's stats file {}",
            file.display()
        );
        open_both_within_bound(s, None, &app, &other);
    });
}

/// Attack 3, "Application hang", in a shared 1777 `WALWATCH_DIR`: the attacker locks every
/// stats file it can open there, the victim's included, plus one it planted.
#[test]
fn attack3_flock_on_every_stats_file_of_a_shared_directory() {
    isolated(|s| {
        let layout = Layout::SharedByAttacker;
        let (app, other) = (s.victim.db("app.db"), s.victim.db("other.db"));
        let dir = layout.squat(s, &s.victim);
        s.run_client(
            &s.victim,
            layout.victim_env(),
            &["commit", "--rows", "1", app.to_str().unwrap()],
        );
        let planted = predicted_stats_file(&dir, &other);
        s.attacker
            .sh_ok("umask 022 && : > \"$1\"", &[planted.to_str().unwrap()]);
        let locks: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| hold_flock(&s.attacker, &e.unwrap().path()))
            .collect();
        println!(
            "the attacker holds {} locks in {}",
            locks.len(),
            dir.display()
        );
        assert!(
            !locks.is_empty(),
            "the attacker locks at least its own file"
        );
        open_both_within_bound(s, layout.victim_env(), &app, &other);
    });
}

/// The threat within one user: a stuck process of the victim's own (here `flock -x` run as
/// the victim) holds the victim's stats file; the shim never waits on another process.
#[test]
fn attack3_a_stuck_process_of_the_same_user_holds_the_stats_file() {
    isolated(|s| {
        let (app, other) = (s.victim.db("app.db"), s.victim.db("other.db"));
        s.run_client(
            &s.victim,
            None,
            &["commit", "--rows", "1", app.to_str().unwrap()],
        );
        let file = predicted_stats_file(&s.victim.default_stats_dir(), &app);
        let _lock = hold_flock(&s.victim, &file).expect("the victim can lock its own file");
        open_both_within_bound(s, None, &app, &other);
    });
}

/// `flock -x FILE sleep 60` as `user`; `None` when the user cannot open or lock the file.
fn hold_flock(user: &User, file: &Path) -> Option<Running> {
    let mut holder = Running::spawn(
        user.command("flock").args(["-x", "-n"]).arg(file).args([
            "sh",
            "-c",
            "echo LOCKED && exec sleep 60",
        ]),
        &format!("{} holding flock -x on {}", user.name, file.display()),
    );
    (holder.next_line().as_deref() == Some("LOCKED")).then_some(holder)
}

/// The victim opens `first` (whose stats file is locked) and then `second`, each in its own
/// thread of one process: both complete, and the process exits 0, within the bound.
fn open_both_within_bound(s: &Scene, stats_dir: Option<&Path>, first: &Path, second: &Path) {
    let out = bounded(
        &mut s.client(
            &s.victim,
            stats_dir,
            &[
                "open-many",
                first.to_str().unwrap(),
                second.to_str().unwrap(),
            ],
        ),
        "victim opening two databases while a stats file is locked",
    );
    let lines = lines(&out.stdout);
    assert_success(&out, "victim opening two databases");
    for db in [first, second] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("OPENED {} ", db.display()))),
            "{} did not open: {lines:?}",
            db.display()
        );
    }
}

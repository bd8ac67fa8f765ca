//! Host programs that must keep working with walwatch loaded: datasette, shared-cache
//! connections, and sqlite-utils-style "load after open" (told clearly, not silently unwatched).

use crate::harness::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Makes a WAL database with one table `t` (without walwatch).
fn make_db(path: &Path) {
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA journal_mode=WAL');\
             c.execute('CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT)');\
             c.executemany('INSERT INTO t(name) VALUES (?)', [('a',), ('b',)]); c.commit()",
        )
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `GET url` with curl: (HTTP status, body); status 0 when nothing answered.
fn get(url: &str) -> (u32, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}", url])
        .output()
        .expect("run curl (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts datasette (from the virtualenv, on Debian's SQLite 3.40.1: the shared-cache build
/// where the failure was seen) serving `db` with `--load-extension`, plus `extra` arguments;
/// waits until it answers.
fn datasette(s: &Scratch, db: &Path, extra: &[&str]) -> (Server, String) {
    let python = venv_python();
    let port = free_port();
    let mut cmd = Command::new(&python);
    // Datasette prefers pysqlite3 when it is installed (it is, for the matrix): hide it, so
    // datasette runs on the virtualenv's own sqlite3 module, Debian's SQLite 3.40.1.
    cmd.args([
        "-c",
        "import sys; sys.modules['pysqlite3'] = None; from datasette.cli import cli; sys.exit(cli())",
        "serve",
    ])
    .arg(db)
    .arg("--load-extension")
    .arg(extension())
    .args(["--port", &port.to_string()])
    .args(extra)
    .env("WALWATCH_EXTENSION", extension())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    host_env(s, &mut cmd);
    let server = Server(cmd.spawn().expect("start datasette"));
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    // A static file: probing with a page that opens a connection (like /-/versions, which
    // opens one and loads the extensions into it) could load walwatch before datasette's
    // internal database and hide the ordering problem this file tests.
    while get(&format!("{base}/-/static/app.css")).0 == 0 {
        assert!(
            Instant::now() < deadline,
            "datasette did not answer on {base} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, base)
}

const PAGES: &[&str] = &[
    "/",
    "/-/versions",
    "/-/versions.json",
    "/-/databases.json",
    "/db",
    "/db.json",
    "/db/t",
    "/db/t.json",
    "/db?sql=select+count(*)+from+t",
    "/db.json?sql=select+walwatch_stats()",
];

/// datasette with walwatch loaded before it opens any database (the `walwatch_first` plugin in
/// examples/datasette/) and `--load-extension`: every page answers 200, and the database is
/// watched: it is in `walwatch status` and `walwatch_stats()` works from datasette's own SQL.
#[test]
fn datasette_serves_every_page_and_its_database_is_watched() {
    let s = Scratch::new();
    let db = s.dir.path("db.db");
    make_db(&db);
    let plugins = workspace_root().join("examples/datasette");
    let (_server, base) = datasette(&s, &db, &["--plugins-dir", plugins.to_str().unwrap()]);
    for page in PAGES {
        let (code, body) = get(&format!("{base}{page}"));
        assert_eq!(code, 200, "datasette {page}: {body}");
    }
    let (_, body) = get(&format!(
        "{base}/db.json?sql=select+walwatch_stats()&_shape=array"
    ));
    let rows: Value = serde_json::from_str(&body).expect("JSON rows");
    let stats: Value = serde_json::from_str(rows[0]["walwatch_stats()"].as_str().expect(&body))
        .expect("walwatch_stats() is JSON");
    assert_eq!(stats["db"], db.to_str().unwrap(), "{stats}");
    let (_, versions) = get(&format!("{base}/-/versions.json"));
    assert!(
        versions.contains("3.40.1"),
        "datasette runs on Debian's SQLite: {versions}"
    );

    // The sidecar finds the stats directory the way the application did: $WALWATCH_DIR.
    let out = Command::new(built("walwatch"))
        .args(["status", "--json"])
        .env("WALWATCH_DIR", &s.stats_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["path"] == db.to_str().unwrap() && d["sources"].to_string().contains("shim")),
        "datasette's database is in walwatch status: {status}"
    );
}

/// Runs a Python program on Debian's /usr/bin/python3 with WALWATCH_EXT set; returns stdout.
fn python(s: &Scratch, program: &str) -> String {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg("-c").arg(program).current_dir(&s.dir.0);
    host_env(s, &mut cmd);
    let out = cmd.output().expect("run /usr/bin/python3");
    assert!(
        out.status.success(),
        "python failed: {}\n{program}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const LOAD: &str = "import os, sqlite3\n\
    def load():\n\
    \x20   c = sqlite3.connect(':memory:'); c.enable_load_extension(True)\n\
    \x20   c.load_extension(os.environ['WALWATCH_EXT']); c.close()\n\
    def shared():\n\
    \x20   return sqlite3.connect('file:x?mode=memory&cache=shared', uri=True)\n";

/// Shared-cache connections opened after walwatch is loaded share one database, as without it.
#[test]
fn shared_cache_connections_share_when_walwatch_is_loaded_first() {
    let s = Scratch::new();
    let out = python(
        &s,
        &format!(
            "{LOAD}load()\na = shared(); a.execute('CREATE TABLE made_by_a(x)')\n\
             b = shared(); print([r[0] for r in b.execute(\"SELECT name FROM sqlite_master\")])\n"
        ),
    );
    assert_eq!(out.trim(), "['made_by_a']");
}

/// A shared-cache database opened before walwatch is loaded is not shared with connections
/// opened after (SQLite's `sqlite3BtreeOpen` shares a cache only between connections on the same
/// VFS object, and a registered VFS object must not be modified): pinned, as documented.
#[test]
fn shared_cache_opened_before_the_load_is_not_shared_after_it() {
    let s = Scratch::new();
    let out = python(
        &s,
        &format!(
            "{LOAD}a = shared(); a.execute('CREATE TABLE made_by_a(x)')\nload()\n\
             b = shared(); print([r[0] for r in b.execute(\"SELECT name FROM sqlite_master\")])\n\
             c = sqlite3.connect('file:x?mode=memory&cache=shared&vfs=unix', uri=True)\n\
             print([r[0] for r in c.execute(\"SELECT name FROM sqlite_master\")])\n"
        ),
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["[]", "['made_by_a']"],
        "after the load a new connection gets its own database; naming the first VFS (vfs=unix) shares again"
    );
}

/// sqlite-utils loads extensions after opening the database: that database is not watched, and
/// `walwatch_stats()` says so and how to watch it; opened with `vfs=walwatch` it is watched.
#[test]
fn load_after_open_is_told_and_vfs_walwatch_watches() {
    let s = Scratch::new();
    let db = s.dir.path("app.db");
    make_db(&db);
    let mut cmd = Command::new(venv_python().with_file_name("sqlite-utils"));
    cmd.arg("query")
        .arg(&db)
        .arg("select walwatch_stats()")
        .arg("--load-extension")
        .arg(extension());
    host_env(&s, &mut cmd);
    let out = cmd.output().expect("run sqlite-utils");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        err.contains("opened before walwatch was loaded") && err.contains("vfs=walwatch"),
        "a clear message with the way out: {err}"
    );

    let out = python(
        &s,
        &format!(
            "{LOAD}c = sqlite3.connect('app.db')\n\
             c.enable_load_extension(True); c.load_extension(os.environ['WALWATCH_EXT'])\n\
             try:\n    c.execute('SELECT walwatch_stats()').fetchone()\nexcept sqlite3.Error as e:\n    print('ERROR', e)\n\
             w = sqlite3.connect('file:app.db?vfs=walwatch', uri=True)\n\
             print(w.execute('SELECT walwatch_stats()').fetchone()[0])\n"
        ),
    );
    let mut lines = out.lines();
    let error = lines.next().unwrap();
    assert!(
        error.starts_with("ERROR walwatch_stats: this database is not watched"),
        "{error}"
    );
    let stats: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(stats["db"], db.to_str().unwrap(), "{stats}");

    let out = python(
        &s,
        &format!(
            "{LOAD}load()\ntry:\n    sqlite3.connect(':memory:').execute('SELECT walwatch_stats()').fetchone()\n\
             except sqlite3.Error as e:\n    print(e)\n"
        ),
    );
    assert!(out.contains("in-memory"), "{out}");
}

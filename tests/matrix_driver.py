"""The version matrix's scenario suite: one script, parametrized by host.

    python matrix_driver.py run HOST SCENARIO... --dir DIR   (prints one JSON line per scenario)

HOST is the SQLite the checkpointing connection runs on, loaded the way that host loads an
extension:
  python-debian  the sqlite3 module of the Python running this script (Debian's /usr/bin/python3)
  sqlean         sqlean.py          (import sqlean; enable_load_extension / load_extension)
  pysqlite3      pysqlite3-binary   (import pysqlite3.dbapi2)
  apsw           apsw               (Connection.enable_load_extension(True); load_extension(path))
  shell          the sqlite3 shell  (.load, then .open), run as a child process per checkpoint
  rusqlite       rusqlite's bundled SQLite, walwatch_rusqlite::register() (the Rust program in
                 $WALWATCH_RUSQLITE), run as a child process per checkpoint

Helpers (a reader holding a snapshot, a writer holding the write lock) are child processes of this
script with the same host (Debian's sqlite3 module for shell and rusqlite), each loading walwatch,
and each holding its lock until the driver says "release" on its stdin.

Each scenario prints {"scenario", "host", "sqlite_version", "triple": [busy, log, checkpointed],
"stats": walwatch_stats() of the checkpointing connection right after the checkpoint, ...}; the
Rust test (tests/tests/matrix/) asserts the triple and the record side by side.

Environment: WALWATCH_EXT (the extension, without .so), WALWATCH_DIR (stats directory).
"""
import json
import os
import subprocess
import sys
import threading
import time

EXT = os.environ.get("WALWATCH_EXT", "")


# --- hosts -------------------------------------------------------------------------------------

class DbApiHost:
    """A DB-API module with sqlite3's interface (stdlib sqlite3, sqlean, pysqlite3)."""

    def __init__(self, module):
        self.m = module

    def load(self):
        loader = self.m.connect(":memory:")
        loader.enable_load_extension(True)
        loader.load_extension(EXT)
        loader.close()  # walwatch stays loaded (SQLITE_OK_LOAD_PERMANENTLY)

    def connect(self, path, timeout_s):
        conn = self.m.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
        return Conn(lambda sql, params=(): conn.execute(sql, params).fetchall(), conn.close)


class ApswHost:
    def __init__(self):
        import apsw

        self.apsw = apsw

    def load(self):
        loader = self.apsw.Connection(":memory:")
        loader.enable_load_extension(True)
        loader.load_extension(EXT)
        loader.close()

    def connect(self, path, timeout_s):
        conn = self.apsw.Connection(path)
        conn.setbusytimeout(int(timeout_s * 1000))
        return Conn(lambda sql, params=(): list(conn.execute(sql, params)), conn.close)


class Conn:
    def __init__(self, execute, close):
        self.execute = execute
        self.close = close

    def one(self, sql, params=()):
        rows = self.execute(sql, params)
        return rows[0] if rows else None


def module_host(name):
    if name in ("python-debian", "shell", "rusqlite"):
        import sqlite3

        return DbApiHost(sqlite3)
    if name == "sqlean":
        import sqlean

        return DbApiHost(sqlean)
    if name == "pysqlite3":
        import pysqlite3.dbapi2

        return DbApiHost(pysqlite3.dbapi2)
    if name == "apsw":
        return ApswHost()
    raise SystemExit(f"matrix_driver: unknown host {name!r}")


class Checkpointer:
    """The connection whose checkpoint is tested: in this process for Python hosts, a child
    process for the shell and rusqlite. `checkpoint` returns (version, triple, stats)."""

    def __init__(self, host_name, db):
        self.host_name, self.db = host_name, db
        self.conn = None
        if host_name not in ("shell", "rusqlite"):
            self.conn = module_host(host_name).connect(db, 10.0)

    def checkpoint(self, mode, timeout_s):
        if self.conn is not None:
            self.conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
            version = self.conn.one("SELECT sqlite_version()")[0]
            triple = list(self.conn.one(f"PRAGMA wal_checkpoint({mode})"))
            stats = json.loads(self.conn.one("SELECT walwatch_stats()")[0])
            return version, triple, stats
        if self.host_name == "shell":
            script = (
                f".load {EXT}\n.open {self.db}\n.mode list\n.timeout {int(timeout_s * 1000)}\n"
                f"SELECT sqlite_version();\nPRAGMA wal_checkpoint({mode});\nSELECT walwatch_stats();\n"
            )
            out = subprocess.run(["sqlite3"], input=script, capture_output=True, text=True, check=True)
            if out.stderr.strip():
                raise SystemExit(f"sqlite3 shell: {out.stderr}")
            version, triple, stats = out.stdout.strip().split("\n")
            return version, [int(x) for x in triple.split("|")], json.loads(stats)
        exe = os.environ["WALWATCH_RUSQLITE"]
        out = subprocess.run(
            [exe, self.db, mode, str(int(timeout_s * 1000))], capture_output=True, text=True, check=True
        )
        version, triple, stats = out.stdout.strip().split("\n")
        return version, json.loads(triple), json.loads(stats)

    def close(self):
        if self.conn is not None:
            self.conn.close()


# --- helpers: child processes holding a lock until told ----------------------------------------

def helper_main(host_name, role, db):
    host = module_host(host_name)
    host.load()
    conn = host.connect(db, 10.0)
    if role == "reader":
        conn.execute("BEGIN")
        conn.one("SELECT count(*) FROM t")
    elif role == "writer":
        conn.execute("BEGIN IMMEDIATE")
        for i in range(20):
            conn.execute("INSERT INTO t(v) VALUES (randomblob(300))")
    print("HOLDING", os.getpid(), flush=True)
    sys.stdin.readline()
    conn.execute("COMMIT")
    print("RELEASED", flush=True)
    sys.stdin.readline()  # stays connected (keeps the WAL) until the driver ends it
    conn.close()


class Helper:
    def __init__(self, host_name, role, db):
        self.p = subprocess.Popen(
            [sys.executable, __file__, "helper", host_name, role, db],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        line = self.p.stdout.readline().split()
        if not line or line[0] != "HOLDING":
            raise SystemExit(f"matrix_driver: helper {role} did not start: {line}")
        self.pid = int(line[1])

    def release(self):
        self.p.stdin.write("\n")
        self.p.stdin.flush()
        assert self.p.stdout.readline().strip() == "RELEASED"

    def end(self):
        try:
            self.p.stdin.write("\n")
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        self.p.wait(timeout=10)


# --- scenarios ---------------------------------------------------------------------------------

class Scenario:
    """A fresh WAL database with a keeper connection (so no close checkpoints the WAL away)."""

    def __init__(self, host_name, directory, name):
        self.host_name = host_name
        self.helper_host = "python-debian" if host_name in ("shell", "rusqlite") else host_name
        self.db = os.path.join(directory, f"{name}.db")
        self.keeper = module_host(self.helper_host).connect(self.db, 10.0)
        assert self.keeper.one("PRAGMA journal_mode=WAL")[0] == "wal"
        self.keeper.execute("PRAGMA wal_autocheckpoint=0")
        self.keeper.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        self.ckpt = Checkpointer(host_name, self.db)

    def write(self, rows):
        self.keeper.execute("BEGIN")
        for _ in range(rows):
            self.keeper.execute("INSERT INTO t(v) VALUES (randomblob(300))")
        self.keeper.execute("COMMIT")

    def checkpoint(self, mode, timeout_s, release=None):
        """Checkpoints; with `release`, the helper is released once the checkpoint is seen
        waiting for it (its busy handler slept)."""
        result = {}

        def run():
            started = time.monotonic()
            try:
                result["value"] = self.ckpt.checkpoint(mode, timeout_s)
            except BaseException as e:  # reported by the caller
                result["error"] = e
            result["seconds"] = time.monotonic() - started

        sleeps_before = self.busy_sleeps()
        t = threading.Thread(target=run)
        t.start()
        if release is not None:
            self.wait_until_waiting(sleeps_before, t)
            release.release()
        t.join(30)
        if t.is_alive():
            raise SystemExit(f"matrix_driver: PRAGMA wal_checkpoint({mode}) did not return within 30 s")
        if "error" in result:
            raise result["error"]
        version, triple, stats = result["value"]
        return {"sqlite_version": version, "triple": triple, "stats": stats, "seconds": result["seconds"]}

    def busy_sleeps(self):
        return json.loads(self.keeper.one("SELECT walwatch_stats()")[0])["busy_sleeps"]

    def wait_until_waiting(self, sleeps_before, thread):
        """Returns once the checkpointing connection's busy handler has slept three times
        (it is waiting for the helper's lock), so the helper is released only then."""
        deadline = time.monotonic() + 20
        while self.busy_sleeps() < sleeps_before + 3:
            if not thread.is_alive():
                return  # it did not wait: the test sees that in the counters
            if time.monotonic() > deadline:
                raise SystemExit("matrix_driver: the checkpoint did not wait for the helper within 20 s")
            time.sleep(0.01)

    def close(self):
        self.ckpt.close()
        self.keeper.close()


def scenario_no_reader(s, mode):
    s.write(40)
    return s.checkpoint(mode, 1.0)


def scenario_full_waits_for_writer(s):
    s.write(40)
    writer = Helper(s.helper_host, "writer", s.db)
    try:
        out = s.checkpoint("FULL", 10.0, release=writer)
    finally:
        writer.end()
    out["writer_pid"] = writer.pid
    return out


def scenario_truncate_waits_for_reader(s):
    s.write(40)
    reader = Helper(s.helper_host, "reader", s.db)
    try:
        out = s.checkpoint("TRUNCATE", 10.0, release=reader)
    finally:
        reader.end()
    out["reader_pid"] = reader.pid
    return out


def scenario_reader_after_commit(s):
    """rqlite's case: the reader's snapshot is the whole WAL."""
    s.write(40)
    reader = Helper(s.helper_host, "reader", s.db)
    try:
        out = s.checkpoint("TRUNCATE", 0.2)
        out["status"] = sidecar_status(s.db)
    finally:
        reader.end()
    out["reader_pid"] = reader.pid
    return out


def scenario_reader_before_inserts(s, mode):
    s.write(10)
    reader = Helper(s.helper_host, "reader", s.db)
    try:
        s.write(60)
        out = s.checkpoint(mode, 0.2)
    finally:
        reader.end()
    out["reader_pid"] = reader.pid
    return out


def sidecar_status(db):
    """`walwatch status --json DB` and `walwatch status DB` while the blocker is still there,
    or None without a sidecar."""
    exe = os.environ.get("WALWATCH_SIDECAR")
    if not exe:
        return None
    out = subprocess.run([exe, "status", "--json", db], capture_output=True, text=True)
    text = subprocess.run([exe, "status", db], capture_output=True, text=True)
    if out.returncode != 0 or text.returncode != 0:
        return {"error": out.stderr + text.stderr}
    return {"json": json.loads(out.stdout), "text": text.stdout}


def scenario_begin_immediate_waits(s):
    """Counters mean the same on every build: a BEGIN IMMEDIATE that waits for another
    process's write transaction (Python hosts only: the connection is in this process)."""
    if s.ckpt.conn is None:
        raise SystemExit("matrix_driver: begin_immediate_waits runs on Python hosts only")
    s.write(10)
    writer = Helper(s.helper_host, "writer", s.db)
    conn = s.ckpt.conn
    result = {}

    def run():
        conn.execute("PRAGMA busy_timeout=10000")
        started = time.monotonic()
        conn.execute("BEGIN IMMEDIATE")
        result["seconds"] = time.monotonic() - started
        conn.execute("COMMIT")

    try:
        sleeps_before = s.busy_sleeps()
        t = threading.Thread(target=run)
        t.start()
        s.wait_until_waiting(sleeps_before, t)
        writer.release()
        t.join(30)
    finally:
        writer.end()
    return {
        "sqlite_version": conn.one("SELECT sqlite_version()")[0],
        "seconds": result.get("seconds"),
        "stats": json.loads(conn.one("SELECT walwatch_stats()")[0]),
    }


SCENARIOS = {
    "begin_immediate_waits": scenario_begin_immediate_waits,
    "passive": lambda s: scenario_no_reader(s, "PASSIVE"),
    "full": lambda s: scenario_no_reader(s, "FULL"),
    "restart": lambda s: scenario_no_reader(s, "RESTART"),
    "truncate": lambda s: scenario_no_reader(s, "TRUNCATE"),
    "full_waits_for_writer": scenario_full_waits_for_writer,
    "truncate_waits_for_reader": scenario_truncate_waits_for_reader,
    "truncate_reader_after_commit": scenario_reader_after_commit,
    "truncate_reader_before_inserts": lambda s: scenario_reader_before_inserts(s, "TRUNCATE"),
    "passive_reader_mid_wal": lambda s: scenario_reader_before_inserts(s, "PASSIVE"),
}


def run_main(host_name, names, directory):
    module_host(host_name if host_name not in ("shell", "rusqlite") else "python-debian").load()
    for name in names:
        s = Scenario(host_name, directory, name)
        try:
            out = SCENARIOS[name](s)
        finally:
            s.close()
        out.update({"scenario": name, "host": host_name, "db": s.db})
        print(json.dumps(out), flush=True)


def main():
    args = sys.argv[1:]
    if args and args[0] == "helper":
        return helper_main(*args[1:4])
    if len(args) >= 3 and args[0] == "run":
        if "--dir" not in args:
            raise SystemExit("usage: matrix_driver.py run HOST SCENARIO... --dir DIR")
        i = args.index("--dir")
        directory = args[i + 1]
        names = args[2:i] + args[i + 2:]
        unknown = [n for n in names if n not in SCENARIOS]
        if unknown:
            raise SystemExit(f"matrix_driver: unknown scenarios {unknown}; known: {sorted(SCENARIOS)}")
        return run_main(args[1], names, directory)
    raise SystemExit(__doc__)


if __name__ == "__main__":
    main()

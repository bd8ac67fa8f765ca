"""Checkpoint scenarios for walwatch's end-to-end tests (issue 10): each prints one JSON line with
the (busy, log, checkpointed) triple that PRAGMA wal_checkpoint returned to the application and
walwatch's own record of that checkpoint (walwatch_stats(), read by the same process).

    python3 checkpoint_scenarios.py SCENARIO DB [--driver sqlite3|apsw]

The walwatch extension is loaded from $WALWATCH_EXT; other processes (readers, writers) are this
same script started with a helper role. `--driver apsw` runs the same scenarios on apsw (a
SQLITE_ENABLE_SETLK_TIMEOUT build of a newer SQLite), from a virtualenv's python.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time


class Db:
    """The few calls the scenarios need, on sqlite3 or apsw."""

    def __init__(self, driver, path, timeout, shim=True):
        self.driver = driver
        if driver == "apsw":
            import apsw

            if shim:
                loader = apsw.Connection(":memory:")
                loader.enable_load_extension(True)
                loader.load_extension(os.environ["WALWATCH_EXT"])
                loader.close()
            self.conn = apsw.Connection(path)
            self.conn.setbusytimeout(int(timeout * 1000))
        else:
            import sqlite3

            if shim:
                loader = sqlite3.connect(":memory:")
                loader.enable_load_extension(True)
                loader.load_extension(os.environ["WALWATCH_EXT"])
                loader.close()
            self.conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)

    def all(self, sql, params=()):
        return [tuple(r) for r in self.conn.execute(sql, params).fetchall()]

    def one(self, sql, params=()):
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def run(self, sql, params=()):
        self.conn.execute(sql, params).fetchall()

    def version(self):
        return self.one("SELECT sqlite_version()")[0]

    def stats(self):
        return json.loads(self.one("SELECT walwatch_stats()")[0])

    def close(self):
        self.conn.close()


def say(*parts):
    print(*parts, flush=True)


def write_rows(db, rows):
    for i in range(rows):
        db.run("INSERT INTO t(payload) VALUES (randomblob(300))")


def setup(args):
    db = Db(args.driver, args.db, args.timeout)
    db.one("PRAGMA journal_mode=WAL")
    db.run("PRAGMA wal_autocheckpoint=0")  # rqlite's setting: only the scenario checkpoints
    db.run("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload BLOB)")
    return db


def helper(role, args, *extra):
    cmd = [sys.executable, os.path.abspath(__file__), role, args.db, "--driver", args.driver]
    if args.no_shim_helpers:
        cmd.append("--no-shim")
    child = subprocess.Popen(cmd + list(extra), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    line = child.stdout.readline().split()
    assert line and line[0] in ("READING", "WRITING"), line
    return child, int(line[1])


def release(child):
    child.stdin.write("\n")
    child.stdin.flush()
    child.wait(timeout=20)


def release_once_waited(args, child):
    """Releases `child` (a helper holding a lock) once this database's busy handlers have slept
    three times: the checkpoint that runs meanwhile is then certainly waiting for that lock, on
    a loaded machine too, so the scenario never depends on how long a fixed hold lasts. Polls
    walwatch_stats() on a connection of its own (a statement that reads no table takes no
    lock)."""
    def run():
        keeper = Db(args.driver, args.db, args.timeout)
        before = keeper.stats()["busy_sleeps"]
        deadline = time.monotonic() + 20
        while keeper.stats()["busy_sleeps"] < before + 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        keeper.close()
        release(child)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def checkpoint(db, mode):
    return list(db.one(f"PRAGMA wal_checkpoint({mode})"))


def result(db, triple, **extra):
    stats = db.stats()
    recent = stats["checkpoints"]["recent"]
    out = {"sqlite_version": db.version(), "driver": db.driver, "triple": triple,
           "record": recent[0] if recent else None, "stats": stats}
    out.update(extra)
    say(json.dumps(out))


# Helper roles (other processes).

def role_hold_read(args):
    """A read transaction, held until --seconds pass or a line arrives on stdin."""
    db = Db(args.driver, args.db, args.timeout, shim=not args.no_shim)
    db.run("BEGIN")
    db.one("SELECT count(*) FROM t")
    say("READING", os.getpid())
    if args.seconds:
        time.sleep(args.seconds)
    else:
        sys.stdin.readline()
    db.run("COMMIT")
    db.close()


def role_hold_write(args):
    """A write transaction (one row), committed after --seconds or a line on stdin."""
    db = Db(args.driver, args.db, args.timeout)
    db.run("BEGIN IMMEDIATE")
    db.run("INSERT INTO t(payload) VALUES (randomblob(300))")
    say("WRITING", os.getpid())
    if args.seconds:
        time.sleep(args.seconds)
    else:
        sys.stdin.readline()
    db.run("COMMIT")
    db.close()


def role_checkpoint(args):
    """Runs PRAGMA wal_checkpoint(--mode) and prints its triple (after a READY line)."""
    db = Db(args.driver, args.db, args.timeout)
    say("WRITING", os.getpid())  # ready: the caller goes on at once
    say(json.dumps(checkpoint(db, args.mode)))
    db.close()


# Scenarios.

def scenario_modes(args):
    """The four modes with no reader and no writer."""
    db = setup(args)
    out = []
    for mode in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
        write_rows(db, 20)
        triple = checkpoint(db, mode)
        out.append({"mode": mode, "triple": triple, "record": db.stats()["checkpoints"]["recent"][0]})
    say(json.dumps({"sqlite_version": db.version(), "driver": db.driver, "runs": out}))


def scenario_full_waits_for_writer(args):
    """FULL while another process holds a write transaction until FULL has waited for it."""
    db = setup(args)
    write_rows(db, 20)
    writer, pid = helper("hold-write", args)
    releaser = release_once_waited(args, writer)
    triple = checkpoint(db, "FULL")
    releaser.join(30)
    result(db, triple, writer_pid=pid)


def scenario_full_gives_up_on_writer(args):
    """FULL while another process holds a write transaction until FULL has returned: FULL's
    busy timeout (--timeout) runs out first."""
    db = setup(args)
    write_rows(db, 20)
    writer, pid = helper("hold-write", args)
    triple = checkpoint(db, "FULL")
    release(writer)
    result(db, triple, writer_pid=pid)


def scenario_truncate_waits_for_reader(args):
    """TRUNCATE while a reader (begun after the last commit) stays until TRUNCATE has waited."""
    db = setup(args)
    write_rows(db, 20)
    reader, pid = helper("hold-read", args)
    releaser = release_once_waited(args, reader)
    triple = checkpoint(db, "TRUNCATE")
    releaser.join(30)
    result(db, triple, reader_pid=pid, wal_bytes=os.stat(args.db + "-wal").st_size)


def scenario_truncate_reader_after_commit(args):
    """rqlite's failure: a reader whose snapshot holds the whole WAL stays; TRUNCATE gives up
    after --timeout. Runs `walwatch status` (from $WALWATCH_BIN) while the reader still reads."""
    db = setup(args)
    write_rows(db, 30)
    reader, pid = helper("hold-read", args)
    triple = checkpoint(db, "TRUNCATE")
    status = None
    if os.environ.get("WALWATCH_BIN"):
        status = subprocess.run([os.environ["WALWATCH_BIN"], "status"], capture_output=True,
                                text=True, timeout=30).stdout
    stats = db.stats()
    release(reader)
    out = {"sqlite_version": db.version(), "driver": db.driver, "triple": triple,
           "record": stats["checkpoints"]["recent"][0], "stats": stats, "reader_pid": pid,
           "status": status}
    say(json.dumps(out))


def scenario_truncate_reader_before_inserts(args):
    """A reader begins, then more rows are written: TRUNCATE can copy only what it sees."""
    db = setup(args)
    write_rows(db, 10)
    reader, pid = helper("hold-read", args)
    write_rows(db, 30)
    triple = checkpoint(db, "TRUNCATE")
    stats = db.stats()
    release(reader)
    say(json.dumps({"sqlite_version": db.version(), "driver": db.driver, "triple": triple,
                    "record": stats["checkpoints"]["recent"][0], "stats": stats,
                    "reader_pid": pid}))


def scenario_passive_pinned(args):
    """PASSIVE against a reader pinned mid-WAL."""
    db = setup(args)
    write_rows(db, 10)
    reader, pid = helper("hold-read", args)
    write_rows(db, 30)
    triple = checkpoint(db, "PASSIVE")
    stats = db.stats()
    release(reader)
    say(json.dumps({"sqlite_version": db.version(), "driver": db.driver, "triple": triple,
                    "record": stats["checkpoints"]["recent"][0], "stats": stats,
                    "reader_pid": pid}))


def scenario_auto_checkpoint(args):
    """Auto-checkpoints (PASSIVE, through the C API: no pragma tells the mode)."""
    db = setup(args)
    db.run("PRAGMA wal_autocheckpoint=10")
    write_rows(db, 30)
    stats = db.stats()
    say(json.dumps({"sqlite_version": db.version(), "driver": db.driver,
                    "record": stats["checkpoints"]["recent"][0], "stats": stats}))


def scenario_c_api(args):
    """apsw's Connection.wal_checkpoint (sqlite3_wal_checkpoint_v2): FULL with no reader, then
    TRUNCATE against a reader that began after the last commit; the mode comes from the locks."""
    import apsw

    db = setup(args)
    write_rows(db, 20)
    full = list(db.conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_FULL))
    full_record = db.stats()["checkpoints"]["recent"][0]
    write_rows(db, 20)
    reader, pid = helper("hold-read", args)
    db.conn.setbusytimeout(200)
    try:
        truncate = [0] + list(db.conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE))
    except apsw.BusyError:
        # apsw raises on SQLITE_BUSY; the frame counts are the wal-index's after the call.
        truncate = None
    stats = db.stats()
    release(reader)
    say(json.dumps({"sqlite_version": db.version(), "driver": db.driver,
                    "full": [0] + full, "full_record": full_record, "truncate": truncate,
                    "record": stats["checkpoints"]["recent"][0], "reader_pid": pid}))


def scenario_checkpoint_lock_busy(args):
    """Another process's TRUNCATE holds the checkpoint lock (it waits for a reader): this
    process's PASSIVE cannot start and SQLite returns (1, -1, -1)."""
    db = setup(args)
    write_rows(db, 20)
    reader, reader_pid = helper("hold-read", args)
    ckpt_locks = lambda: db.stats()["shm_locks"]["CKPT"]["exclusive"]["acquired"]
    before = ckpt_locks()
    other, other_pid = helper("checkpoint", args, "--mode", "TRUNCATE", "--timeout", "5")
    # Wait until the other process holds CKPT (its acquisition shows in the shared counters),
    # then a little more, well inside its 5 s wait for the reader.
    deadline = time.monotonic() + 10
    while ckpt_locks() == before and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    triple = checkpoint(db, "PASSIVE")
    stats = db.stats()
    release(reader)
    other_triple = json.loads(other.stdout.readline())
    other.wait(timeout=20)
    mine = [c for c in stats["checkpoints"]["recent"] if c["pid"] == os.getpid()]
    say(json.dumps({"sqlite_version": db.version(), "driver": db.driver, "triple": triple,
                    "record": mine[0] if mine else None, "other_triple": other_triple,
                    "other_pid": other_pid, "stats": stats}))


def scenario_begin_immediate_waits(args):
    """BEGIN IMMEDIATE while another process holds the write lock for --hold seconds: prints
    how many times the busy handler slept and how many WRITE busy walwatch counted."""
    db = setup(args)
    write_rows(db, 1)
    before = db.stats()
    writer, _ = helper("hold-write", args, "--seconds", str(args.hold))
    db.run("BEGIN IMMEDIATE")
    db.run("COMMIT")
    writer.wait(timeout=20)
    after = db.stats()
    say(json.dumps({
        "sqlite_version": db.version(), "driver": db.driver,
        "sleeps": after["busy_sleeps"] - before["busy_sleeps"],
        "write_busy": after["shm_locks"]["WRITE"]["exclusive"]["busy"]
        - before["shm_locks"]["WRITE"]["exclusive"]["busy"],
    }))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("scenario")
    p.add_argument("db")
    p.add_argument("--driver", default="sqlite3", choices=["sqlite3", "apsw"])
    p.add_argument("--timeout", type=float, default=5.0, help="busy timeout, seconds")
    p.add_argument("--seconds", type=float, default=0, help="helper roles: how long to hold")
    p.add_argument("--hold", type=float, default=0.5, help="how long the other process holds")
    p.add_argument("--mode", default="PASSIVE", help="checkpoint role: the mode")
    p.add_argument("--no-shim", action="store_true", help="helper roles: without walwatch")
    p.add_argument("--no-shim-helpers", action="store_true",
                   help="readers and writers run without walwatch (seen only through locks)")
    args = p.parse_args()
    roles = {"hold-read": role_hold_read, "hold-write": role_hold_write,
             "checkpoint": role_checkpoint}
    if args.scenario in roles:
        return roles[args.scenario](args)
    globals()["scenario_" + args.scenario.replace("-", "_")](args)


if __name__ == "__main__":
    main()

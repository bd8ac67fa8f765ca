"""The applications of walwatch's attack suite (tests/tests/attacks/): a victim's or an attacker's
SQLite program, run as that user by the test.

Every subcommand loads the walwatch extension from $WALWATCH_EXT (unless --no-shim) and opens
the databases with Python's sqlite3 module, as an application would. It prints what the test
checks, one line at a time, flushed. Run with Debian's /usr/bin/python3 (its sqlite3 module can
load extensions).
"""
import argparse
import os
import sqlite3
import sys
import threading


def say(*parts):
    print(*parts, flush=True)


def load_shim(args):
    if args.no_shim:
        return
    loader = sqlite3.connect(":memory:")
    loader.enable_load_extension(True)
    loader.load_extension(os.environ["WALWATCH_EXT"])
    loader.close()  # the shim stays registered: the extension loads permanently


def open_db(path, autocheckpoint=None):
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL").fetchone()
    if autocheckpoint is not None:
        conn.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
    conn.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")
    return conn


def commit_rows(conn, rows, size):
    """One transaction per row: every row is a committed, acknowledged transaction."""
    for _ in range(rows):
        conn.execute("INSERT INTO t(v) VALUES (randomblob(?))", (size,))


def count(conn):
    return conn.execute("SELECT count(*) FROM t").fetchone()[0]


def cmd_prepare(args):
    """Creates each database in WAL mode, empties its WAL with a TRUNCATE checkpoint and exits
    without closing, so an empty -wal stays on disk (as after a crash)."""
    for path in args.dbs:
        conn = open_db(path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        say("PREPARED", path, os.stat(path + "-wal").st_size)
    os._exit(0)


def cmd_commit(args):
    """Commits --rows rows into each database and says so; with --hold, then waits on stdin
    (the test kills it there, a crash with the WAL not checkpointed); with --then, waits for a
    line, commits --then more rows, prints the counts and closes."""
    conns = [open_db(path, args.autocheckpoint) for path in args.dbs]
    for conn in conns:
        commit_rows(conn, args.rows, args.size)
    say("COMMITTED", *[count(c) for c in conns])
    if args.hold or args.then:
        sys.stdin.readline()
    if args.then:
        for conn in conns:
            commit_rows(conn, args.then, args.size)
        say("COMMITTED", *[count(c) for c in conns])
    if args.leave_wal:
        os._exit(0)
    for conn in conns:
        conn.close()
    say("CLOSED")


def cmd_verify(args):
    """Prints 'integrity_check row_count' for each database."""
    for path in args.dbs:
        conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
        say(conn.execute("PRAGMA integrity_check").fetchone()[0], count(conn))
        conn.close()


def cmd_open_many(args):
    """Opens, writes and reads each database in its own thread, started one after another, and
    prints 'OPENED <path>' as each completes. A thread stuck in an open never blocks the exit
    (daemon threads); the process exits 1 when any did not complete within --wait seconds."""
    done = threading.Event()
    finished = []

    def work(path):
        conn = open_db(path)
        commit_rows(conn, 1, 10)
        say("OPENED", path, count(conn))
        conn.close()
        finished.append(path)
        if len(finished) == len(args.dbs):
            done.set()

    for path in args.dbs:
        threading.Thread(target=work, args=(path,), daemon=True).start()
        threading.Event().wait(0.3)  # the first database enters the shim first
    if not done.wait(args.wait):
        say("STUCK", *[p for p in args.dbs if p not in finished])
        os._exit(1)
    os._exit(0)


def cmd_stats(args):
    conn = open_db(args.dbs[0])
    say(conn.execute("SELECT walwatch_stats()").fetchone()[0])
    conn.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("dbs", nargs="+")
    parser.add_argument("--no-shim", action="store_true")
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--then", type=int, default=0)
    parser.add_argument("--hold", action="store_true")
    parser.add_argument("--leave-wal", action="store_true")
    parser.add_argument("--autocheckpoint", type=int)
    parser.add_argument("--wait", type=float, default=15.0)
    args = parser.parse_args()
    load_shim(args)
    globals()["cmd_" + args.command.replace("-", "_")](args)


if __name__ == "__main__":
    main()

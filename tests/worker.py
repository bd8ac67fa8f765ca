"""One real SQLite client per invocation, for walwatch's end-to-end tests.

Each subcommand opens the database through Python's sqlite3 module after loading the walwatch
extension from $WALWATCH_EXT (unless --no-shim), does one job, and prints what the test checks.
Run with Debian's /usr/bin/python3, whose sqlite3 module can load extensions.
"""
import argparse
import json
import os
import random
import sqlite3
import sys
import time


def connect(args):
    if not args.no_shim:
        loader = sqlite3.connect(":memory:")
        loader.enable_load_extension(True)
        loader.load_extension(os.environ["WALWATCH_EXT"])
        loader.close()  # the shim stays registered: the extension loads permanently
    return sqlite3.connect(args.db, timeout=args.timeout, isolation_level=None)


def say(*parts):
    print(*parts, flush=True)


def cmd_init(conn, args):
    say(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
    conn.execute(
        "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, writer INT, seq INT, payload BLOB)"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS t_writer_seq ON t(writer, seq)")


def cmd_write(conn, args):
    for i in range(args.rows):
        conn.execute("INSERT INTO t(writer, seq, payload) VALUES (0, ?, randomblob(100))", (i,))


def cmd_hold_read(conn, args):
    """Holds a read transaction until a line arrives on stdin."""
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM t").fetchone()
    say("READING", os.getpid())
    sys.stdin.readline()
    conn.execute("COMMIT")
    say("DONE")


def warm_up(conn, args):
    """Runs autocommit reads for --warmup-ms (and at least 500): long enough for the shim to
    have measured the CPU counter's rate, so that the transaction after it is timed the way a
    long-running application's are."""
    if args.warmup_ms <= 0:
        return
    deadline = time.monotonic() + args.warmup_ms / 1000
    n = 0
    while n < 500 or time.monotonic() < deadline:
        conn.execute("SELECT count(*) FROM t WHERE id = ?", (n,)).fetchone()
        n += 1


def cmd_hold_read_warm(conn, args):
    """warm_up, then hold-read."""
    warm_up(conn, args)
    cmd_hold_read(conn, args)


def cmd_long_write(conn, args):
    """warm_up, then one write transaction that holds the write lock for --hold-ms."""
    warm_up(conn, args)
    conn.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    conn.execute("INSERT INTO t(writer, seq, payload) VALUES (0, 0, randomblob(100))")
    time.sleep(args.hold_ms / 1000)
    conn.execute("COMMIT")
    say(time.monotonic() - started)


def cmd_checkpoint(conn, args):
    say(json.dumps(conn.execute(f"PRAGMA wal_checkpoint({args.mode})").fetchone()))


def cmd_write_checkpoint(conn, args):
    """Writes --rows rows, then checkpoints with --mode, in one connection (a closing last
    connection checkpoints by itself, so separate processes would hide the work)."""
    cmd_write(conn, args)
    cmd_checkpoint(conn, args)


def cmd_stats(conn, args):
    say(conn.execute("SELECT walwatch_stats()").fetchone()[0])


def cmd_writer(conn, args):
    """Commits rows (writer=id, seq=0..count) in transactions of random size; prints each
    committed seq only after COMMIT returned: what is printed is acknowledged."""
    conn.execute("PRAGMA synchronous=NORMAL")
    rng = random.Random(args.id)
    seq = 0
    while seq < args.count:
        batch = list(range(seq, min(args.count, seq + rng.randint(1, 20))))
        conn.execute("BEGIN IMMEDIATE")
        for s in batch:
            conn.execute(
                "INSERT INTO t(writer, seq, payload) VALUES (?, ?, randomblob(200))", (args.id, s)
            )
        conn.execute("COMMIT")
        say("COMMITTED", args.id, batch[-1])
        seq = batch[-1] + 1
    say("FINISHED", args.id)


def cmd_reader(conn, args):
    for _ in range(args.count):
        conn.execute("BEGIN")
        conn.execute("SELECT count(*), max(seq) FROM t").fetchone()
        conn.execute("SELECT payload FROM t WHERE writer = 1 AND seq = 5").fetchone()
        conn.execute("COMMIT")
    say("FINISHED reader")


def cmd_runaway(conn, args):
    """Writes as fast as it can for --seconds with auto-checkpoint off (rqlite's setting),
    sampling the -wal size after every commit. Prints one JSON line: peak and final WAL bytes,
    commits, and commit latency percentiles (ms)."""
    import time

    conn.execute(f"PRAGMA wal_autocheckpoint={args.autocheckpoint}")
    conn.execute("PRAGMA synchronous=NORMAL")
    wal = args.db + "-wal"
    peak, peak_at, commits, latencies = 0, 0.0, 0, []
    payload = os.urandom(1000)
    started = time.monotonic()
    deadline = started + args.seconds
    while time.monotonic() < deadline and peak < args.until_wal_bytes:
        if args.pause_ms:
            time.sleep(args.pause_ms / 1000)
        if args.own_checkpoint_every and commits % args.own_checkpoint_every == 0:
            conn.execute(f"PRAGMA wal_checkpoint({args.mode})").fetchone()
        start = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO t(writer, seq, payload) VALUES (?, ?, ?)",
            ((args.id, commits * args.rows + i, payload) for i in range(args.rows)),
        )
        conn.execute("COMMIT")
        latencies.append((time.perf_counter() - start) * 1e3)
        commits += 1
        try:
            size = os.stat(wal).st_size
            if size > peak:
                peak, peak_at = size, time.time()
        except FileNotFoundError:
            pass
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else 0
    try:
        final = os.stat(wal).st_size
    except FileNotFoundError:
        final = 0
    say(json.dumps({"peak_wal_bytes": peak, "final_wal_bytes": final, "commits": commits,
                    "rows": commits * args.rows, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
                    "max_ms": latencies[-1] if latencies else 0, "peak_at_unix": peak_at,
                    "commits_per_s": commits / max(1e-9, time.monotonic() - started)}))


def cmd_verify(conn, args):
    """Prints integrity_check, then one line 'writer max_seq count' per writer."""
    say(conn.execute("PRAGMA integrity_check").fetchone()[0])
    for row in conn.execute("SELECT writer, max(seq), count(*) FROM t GROUP BY writer ORDER BY writer"):
        say(*row)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("db")
    parser.add_argument("--no-shim", action="store_true")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--mode", default="TRUNCATE")
    parser.add_argument("--id", type=int, default=0)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--until-wal-bytes", type=int, default=1 << 62)
    parser.add_argument("--pause-ms", type=float, default=0)
    parser.add_argument("--autocheckpoint", type=int, default=0)
    parser.add_argument("--own-checkpoint-every", type=int, default=0)
    parser.add_argument("--warmup-ms", type=float, default=0)
    parser.add_argument("--hold-ms", type=float, default=300)
    parser.add_argument(
        "--stats",
        action="store_true",
        help="then print walwatch_stats() (before closing: the last close checkpoints and deletes the WAL)",
    )
    args = parser.parse_args()
    conn = connect(args)
    try:
        globals()["cmd_" + args.command.replace("-", "_")](conn, args)
    except sqlite3.Error as e:
        code = getattr(e, "sqlite_errorname", "?")
        print(f"worker {args.command}: {code}: {e}", file=sys.stderr, flush=True)
        raise
    if args.stats:
        cmd_stats(conn, args)


if __name__ == "__main__":
    main()

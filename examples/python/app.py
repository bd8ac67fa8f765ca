"""A Python application watched by walwatch.

    /usr/bin/python3 examples/python/app.py /tmp/app.db

Run from the repository root after `cargo build --release`. Needs a Python whose sqlite3 module
can load extensions (Debian's /usr/bin/python3 can).
"""
import json
import os
import sqlite3
import sys

EXTENSION = os.environ.get("WALWATCH_EXT", "./target/release/libwalwatch")


def enable_walwatch():
    """Registers the walwatch VFS for the whole process; connect() calls after this are watched."""
    loader = sqlite3.connect(":memory:")
    loader.enable_load_extension(True)
    loader.load_extension(EXTENSION)
    loader.close()


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "app.db"
    enable_walwatch()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS orders(id INTEGER PRIMARY KEY, total REAL)")
    for i in range(2000):
        conn.execute("INSERT INTO orders(total) VALUES (?)", (i * 1.5,))
    stats = json.loads(conn.execute("SELECT walwatch_stats()").fetchone()[0])
    print(f"WAL: {stats['wal_bytes']} bytes, {stats['wal_frames']} frames, "
          f"{stats['checkpoints']['total']} checkpoints, "
          f"WRITE lock taken {stats['shm_locks']['WRITE']['exclusive']['acquired']} times")


if __name__ == "__main__":
    main()

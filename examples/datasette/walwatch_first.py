"""Datasette plugin: load walwatch before Datasette opens any database.

    WALWATCH_EXTENSION=/path/to/libwalwatch \
      datasette app.db --plugins-dir examples/datasette [--load-extension /path/to/libwalwatch]

Why: `--load-extension` alone loads walwatch into each connection *after* opening it. The first
connection Datasette opens is to its internal in-memory database
(`file:<random>?mode=memory&cache=shared`), on SQLite's default VFS; loading walwatch then makes
`walwatch` the default, and SQLite shares a cache only between connections on the same VFS
object, so every later connection to that internal database gets a new, empty one and each page
answers HTTP 500 "no such table: databases". Loaded here, when Datasette imports its plugins,
walwatch is the default VFS before the first connection: every connection, the internal
database's included, is on the same VFS, and the file databases are watched.
"""
import os

from datasette.utils.sqlite import sqlite3  # the module Datasette itself uses (pysqlite3 or sqlite3)

_extension = os.environ.get("WALWATCH_EXTENSION")
if not _extension:
    raise RuntimeError(
        "walwatch_first plugin: set WALWATCH_EXTENSION to the path of libwalwatch (without .so), "
        "e.g. WALWATCH_EXTENSION=/usr/local/lib/libwalwatch"
    )
_loader = sqlite3.connect(":memory:")
_loader.enable_load_extension(True)
_loader.load_extension(_extension)  # walwatch stays loaded (SQLITE_OK_LOAD_PERMANENTLY)
_loader.close()

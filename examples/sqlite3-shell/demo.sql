-- walwatch in the sqlite3 shell. From the repository root, after `cargo build --release`:
--   sqlite3 < examples/sqlite3-shell/demo.sql
-- Load first, then open: only databases opened after .load go through the walwatch VFS.
.load ./target/release/libwalwatch
.open /tmp/walwatch-shell-demo.db
.vfsname
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, body BLOB);
INSERT INTO events(body) SELECT randomblob(400) FROM generate_series(1, 5000);
PRAGMA wal_checkpoint(TRUNCATE);
-- What the shim saw, as JSON; json_extract picks single values.
SELECT json_extract(walwatch_stats(), '$.checkpoints.recent[0].mode') AS last_mode,
       json_extract(walwatch_stats(), '$.checkpoints.recent[0].outcome') AS last_outcome,
       json_extract(walwatch_stats(), '$.wal_bytes') AS wal_bytes;

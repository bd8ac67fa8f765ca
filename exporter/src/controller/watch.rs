//! Reaction between collections: inotify on the directories of watched databases. A write to a
//! `-wal` file makes the controller look at its size at once (at most every [`MIN_GAP`] per
//! database), so a runaway writer is caught within milliseconds of crossing a limit instead of
//! at the next collection. Collections still run: inotify can overflow, and this only adds speed.

use super::Controller;
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Shortest time between two looks at the same WAL.
const MIN_GAP: Duration = Duration::from_millis(5);

/// `-wal` path → (database path, when we last looked).
type Wals = HashMap<PathBuf, (PathBuf, Option<Instant>)>;

pub struct WalWatcher {
    watcher: notify::RecommendedWatcher,
    wals: Arc<Mutex<Wals>>,
    dirs: HashSet<PathBuf>,
}

impl WalWatcher {
    pub fn start(controller: Arc<Controller>) -> notify::Result<Self> {
        let wals: Arc<Mutex<Wals>> = Arc::default();
        let seen = wals.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if !matches!(event.kind, EventKind::Modify(_) | EventKind::Create(_)) {
                return;
            }
            for path in event.paths {
                let db = {
                    let mut wals = seen.lock().unwrap_or_else(|e| e.into_inner());
                    let Some((db, last)) = wals.get_mut(&path) else {
                        continue;
                    };
                    let now = Instant::now();
                    if last.is_some_and(|t| now - t < MIN_GAP) {
                        continue;
                    }
                    *last = Some(now);
                    db.clone()
                };
                if let Ok(meta) = std::fs::metadata(&path) {
                    controller.on_wal_size(&db, meta.len());
                }
            }
        })?;
        Ok(Self {
            watcher,
            wals,
            dirs: HashSet::new(),
        })
    }

    /// Watches the WALs of `dbs` (and only those); called after each collection.
    pub fn set_databases<'a>(&mut self, dbs: impl Iterator<Item = &'a Path>) {
        let mut wals = self.wals.lock().unwrap_or_else(|e| e.into_inner());
        let mut next: Wals = HashMap::new();
        for db in dbs {
            let mut wal = db.as_os_str().to_owned();
            wal.push("-wal");
            let wal = PathBuf::from(wal);
            let last = wals.get(&wal).and_then(|(_, t)| *t);
            next.insert(wal, (db.to_owned(), last));
            if let Some(dir) = db.parent() {
                if !self.dirs.contains(dir) {
                    match self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                        Ok(()) => {
                            self.dirs.insert(dir.to_owned());
                        }
                        Err(e) => {
                            tracing::debug!(dir = %crate::text::path(dir), error = %e, "cannot watch directory; relying on the collection interval")
                        }
                    }
                }
            }
        }
        *wals = next;
    }
}

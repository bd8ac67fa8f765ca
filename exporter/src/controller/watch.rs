//! Reaction between collections: inotify on the directories of watched databases. A write to a
//! `-wal` file makes the controller look at its size at once (at most every [`MIN_GAP`] per
//! database), so a runaway writer is caught within milliseconds of crossing a limit instead of
//! at the next collection. Collections still run: inotify can overflow, and this only adds speed.
//!
//! The watches ask for writes, creations and renames only (`IN_MODIFY | IN_CREATE |
//! IN_MOVED_TO`): the sidecar opens every database's `-shm` at each collection, and a mask with
//! `IN_OPEN` (notify's, which this module used before) woke this thread for each of those opens.
//! One thread reads the events for the rest of the process.

use super::Controller;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Shortest time between two looks at the same WAL.
const MIN_GAP: Duration = Duration::from_millis(5);

/// What a watch reports: a file written (or truncated), created, or renamed into the directory.
const MASK: WatchMask = WatchMask::MODIFY
    .union(WatchMask::CREATE)
    .union(WatchMask::MOVED_TO);

/// `-wal` path → (database path, when we last looked).
type Wals = HashMap<PathBuf, (PathBuf, Option<Instant>)>;

/// What the reading thread shares with [`WalWatcher::set_databases`].
#[derive(Default)]
struct Shared {
    wals: Wals,
    /// Watched directory of each watch.
    dirs: HashMap<WatchDescriptor, PathBuf>,
}

pub struct WalWatcher {
    watches: Watches,
    shared: Arc<Mutex<Shared>>,
    /// Directories already watched (or refused: not tried again).
    tried: HashSet<PathBuf>,
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // A panic while holding it leaves plain maps, which stay usable.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl WalWatcher {
    pub fn start(controller: Arc<Controller>) -> std::io::Result<Self> {
        let mut inotify = Inotify::init()?;
        let watches = inotify.watches();
        let shared: Arc<Mutex<Shared>> = Arc::default();
        let seen = shared.clone();
        std::thread::Builder::new()
            .name("walwatch-inotify".into())
            .spawn(move || {
                let mut buffer = [0u8; 16384];
                loop {
                    let events = match inotify.read_events_blocking(&mut buffer) {
                        Ok(events) => events,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot read inotify events; the controller reacts at each collection only");
                            return;
                        }
                    };
                    for event in events {
                        if event.mask.contains(EventMask::Q_OVERFLOW) {
                            continue; // the next collection sees every WAL anyway
                        }
                        if let Some(name) = event.name {
                            wal_changed(&controller, &seen, &event.wd, name);
                        }
                    }
                }
            })?;
        Ok(Self {
            watches,
            shared,
            tried: HashSet::new(),
        })
    }

    /// Watches the WALs of `dbs` (and only those); called after each collection.
    pub fn set_databases<'a>(&mut self, dbs: impl Iterator<Item = &'a Path>) {
        let mut next: Wals = HashMap::new();
        let mut new_dirs = Vec::new();
        {
            let shared = lock(&self.shared);
            for db in dbs {
                let mut wal = db.as_os_str().to_owned();
                wal.push("-wal");
                let wal = PathBuf::from(wal);
                let last = shared.wals.get(&wal).and_then(|(_, t)| *t);
                next.insert(wal, (db.to_owned(), last));
                if let Some(dir) = db.parent() {
                    if self.tried.insert(dir.to_owned()) {
                        new_dirs.push(dir.to_owned());
                    }
                }
            }
        }
        // Watches are added outside the lock: the reading thread may be waiting for it.
        let mut added = Vec::new();
        for dir in new_dirs {
            match self.watches.add(&dir, MASK) {
                Ok(wd) => added.push((wd, dir)),
                Err(e) => {
                    tracing::debug!(dir = %crate::text::path(&dir), error = %e, "cannot watch directory; relying on the collection interval")
                }
            }
        }
        let mut shared = lock(&self.shared);
        shared.wals = next;
        shared.dirs.extend(added);
    }
}

/// `name` in the directory of watch `wd` was written, created or renamed into place: if it is
/// the `-wal` of a watched database, the controller looks at its size now.
fn wal_changed(
    controller: &Arc<Controller>,
    shared: &Mutex<Shared>,
    wd: &WatchDescriptor,
    name: &OsStr,
) {
    if !name.as_bytes().ends_with(b"-wal") {
        return;
    }
    let (path, db) = {
        let mut shared = lock(shared);
        let Some(path) = shared.dirs.get(wd).map(|dir| dir.join(name)) else {
            return;
        };
        let Some((db, last)) = shared.wals.get_mut(&path) else {
            return;
        };
        let now = Instant::now();
        if last.is_some_and(|t| now - t < MIN_GAP) {
            return;
        }
        *last = Some(now);
        (path, db.clone())
    };
    // Not followed: a real `-wal` is never a symbolic link.
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        if meta.is_file() {
            controller.on_wal_size(&db, meta.len());
        }
    }
}

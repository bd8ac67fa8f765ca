//! One collection: discover databases, then run the collectors on each (one per file):
//! [`stats_file`] (the shim's counters and reader table), [`wal_files`] (database, `-wal` and
//! `-shm` header), [`locks`] (`F_GETLK` on the `-shm` lock bytes), with [`proc`] naming pids.

pub mod locks;
pub mod proc;
pub mod wal_files;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::discovery::{self, DirError, Found, StatsDirs, Target};
use crate::model::{self, DbState, WalIndexView};
use crate::plausible;

/// Time spent in each collector during one collection.
#[derive(Clone, Debug, Default)]
pub struct Timings {
    pub stats_files: Duration,
    pub wal_files: Duration,
    pub locks: Duration,
}

/// A stats file that could not be used.
#[derive(Clone, Debug)]
pub struct BadStatsFile {
    pub path: PathBuf,
    pub reason: &'static str,
    pub message: String,
}

/// Everything one collection found.
#[derive(Clone, Debug, Default)]
pub struct Collection {
    pub dbs: Vec<DbState>,
    pub bad_stats_files: Vec<BadStatsFile>,
    /// The stats directory (or the base of the per-user ones) could not be listed, or was
    /// refused.
    pub stats_dir_error: Option<String>,
    /// Per-user stats directories this sidecar may not open (skipped quietly: another user's
    /// private directory, for a sidecar that is not root).
    pub unreadable_stats_dirs: usize,
    pub timings: Timings,
    pub duration: Duration,
    pub finished_unix_seconds: f64,
    /// The checkpoint controller's mode (`act`, `observe`), when it runs.
    pub controller_mode: Option<&'static str>,
}

use walwatch::unix_ns;

/// Runs one collection over the stats directories and the `--db` list (normalized paths),
/// keeping every counter (the detailed set's too).
pub fn collect(dirs: &StatsDirs, explicit: &[PathBuf]) -> Collection {
    Collector::new(dirs.clone(), explicit.to_vec(), true).collect()
}

/// Collects the same databases again and again (`walwatch serve`).
pub struct Collector {
    dirs: StatsDirs,
    explicit: Vec<PathBuf>,
    /// Keep the per-slot and per-mode counters that only the detailed series set shows.
    detailed: bool,
    headers: wal_files::HeaderCache,
}

/// What one collection learns about processes, asked once per pid: a pid holds many databases'
/// read locks (a pool of connections, a worker serving many tenants).
#[derive(Default)]
pub struct Procs {
    names: HashMap<u32, Option<String>>,
    started: HashMap<u32, Option<u64>>,
}

impl Procs {
    fn name(&mut self, pid: u32) -> Option<String> {
        self.names
            .entry(pid)
            .or_insert_with(|| proc::name(pid))
            .clone()
    }

    fn started(&mut self, pid: u32) -> Option<u64> {
        *self
            .started
            .entry(pid)
            .or_insert_with(|| proc::started_unix_ns(pid))
    }
}

impl Collector {
    /// `explicit`: the `--db` list, normalized; `detailed`: whether the detailed series set is
    /// served (see [`Counters::take`]).
    pub fn new(dirs: StatsDirs, explicit: Vec<PathBuf>, detailed: bool) -> Self {
        Self {
            dirs,
            explicit,
            detailed,
            headers: wal_files::HeaderCache::default(),
        }
    }

    /// Runs one collection.
    pub fn collect(&mut self) -> Collection {
        self.headers.start();
        collect_with(&self.dirs, &self.explicit, self.detailed, &mut self.headers)
    }
}

fn collect_with(
    dirs: &StatsDirs,
    explicit: &[PathBuf],
    detailed: bool,
    headers: &mut wal_files::HeaderCache,
) -> Collection {
    let start = Instant::now();
    let mut timings = Timings::default();
    let scan = discovery::scan(dirs, detailed);
    let (targets, refused) = discovery::targets(scan.found, explicit, &mut discovery::owner_of);
    timings.stats_files += start.elapsed();
    let bad_stats_files = scan
        .errors
        .iter()
        .chain(&refused)
        .map(|(path, e)| BadStatsFile {
            path: path.clone(),
            reason: e.reason(),
            message: e.to_string(),
        })
        .collect();
    let stats_dir_error = scan
        .dir_error
        .as_ref()
        .filter(|e| !matches!(e, DirError::NotFound) || !explicit.is_empty())
        .map(|e| match (dirs, e) {
            (StatsDirs::Configured(dir), DirError::Refused(_)) => {
                format!("stats directory {} {e}", crate::text::path(dir))
            }
            _ => format!("cannot list stats directory {dirs}: {e}"),
        });
    let mut procs = Procs::default();
    // Sized once: a Vec grown by doubling would hold up to twice the room (10,000 databases:
    // 6 MB more per collection).
    let mut dbs = Vec::with_capacity(targets.len());
    dbs.extend(
        targets
            .into_iter()
            .filter_map(|t| collect_db(t, &mut timings, &mut procs, headers)),
    );
    dbs.shrink_to_fit();
    let now = SystemTime::now();
    Collection {
        dbs,
        bad_stats_files,
        stats_dir_error,
        unreadable_stats_dirs: scan.unreadable_dirs,
        timings,
        duration: start.elapsed(),
        finished_unix_seconds: unix_ns(now) as f64 / 1e9,
        controller_mode: None,
    }
}

/// A fresh look at one database (its stats file found by name, under the same rules as a
/// collection's): what the controller uses to name the blocker of a checkpoint that just failed
/// between collections.
pub fn collect_path(dirs: &StatsDirs, db: &Path) -> Option<DbState> {
    let stats = discovery::find_stats_of(dirs, db).map(Box::new);
    let target = discovery::Target {
        path: db.to_owned(),
        stats,
        explicit: true,
        trust: discovery::Trust::Untrusted,
    };
    let headers = &mut wal_files::HeaderCache::default();
    collect_db(
        target,
        &mut Timings::default(),
        &mut Procs::default(),
        headers,
    )
}

/// Collects one database. Returns `None` for a database known only from a stats file whose
/// database file is gone (a deleted database is dropped, not reported down).
/// `headers`: databases whose header need not be read again (see [`wal_files::HeaderCache`]).
pub fn collect_db(
    target: Target,
    timings: &mut Timings,
    procs: &mut Procs,
    headers: &mut wal_files::HeaderCache,
) -> Option<DbState> {
    let mut state = DbState {
        path: target.path.to_string_lossy().into_owned(),
        trust: target.trust,
        ..Default::default()
    };
    if target.stats.is_some() {
        state.sources.push("shim");
    }
    if target.explicit {
        state.sources.push("path");
    }

    let t = Instant::now();
    let mut snapshot = None;
    let mut reviewed = (Vec::new(), Vec::new());
    if let Some(found) = target.stats {
        let Found {
            stats_file,
            snapshot: mut snap,
            counters,
            recent,
            inconsistent,
            ..
        } = *found;
        state.stats_file = Some(stats_file.to_string_lossy().into_owned());
        crate::stats_file::drop_dead_readers(&mut snap, &mut walwatch::process_alive);
        state.counters = Some(counters);
        snapshot = Some(snap);
        reviewed = (recent, inconsistent);
    }
    timings.stats_files += t.elapsed();

    let t = Instant::now();
    let files = wal_files::read_with(&target.path, headers);
    timings.wal_files += t.elapsed();
    let files = match files {
        Ok(files) => files,
        Err(wal_files::DbError::NotFound) if !target.explicit => return None,
        Err(e) => {
            state.error = Some(e.to_string());
            return Some(state);
        }
    };
    state.up = true;
    state.db_bytes = Some(files.db_bytes);
    state.wal_bytes = Some(files.wal_bytes);
    state.wal_index = files.wal_index.as_ref().map(WalIndexView::from);
    state.error = files.shm_error.clone();

    let t = Instant::now();
    let (holders, locks_known) = match files.shm.as_ref().map(locks::holders).transpose() {
        Ok(h) => (h.unwrap_or_default(), h.is_some()),
        Err(e) => {
            state.error = Some(format!("cannot query -shm locks: {e}"));
            Default::default()
        }
    };
    timings.locks += t.elapsed();

    let now = unix_ns(SystemTime::now());
    // Values that cannot be true are left out, and listed (see plausible.rs).
    let known_holders = locks_known.then_some(&holders[..]);
    let (recent, mut inconsistent) = reviewed;
    if let Some(c) = snapshot.as_mut() {
        let started = &mut |pid| procs.started(pid);
        inconsistent.extend(plausible::review_readers(c, known_holders, started, now));
        state.inconsistent = inconsistent;
    }
    let wal_index = match files.wal_index.map(plausible::review_wal_index).transpose() {
        Ok(w) => w,
        Err(found) => {
            state.wal_index = None;
            state.inconsistent.push(found);
            None
        }
    };
    state.inconsistent.extend(files.shm_inconsistent.clone());
    let shim_readers = snapshot.map(|s| s.readers).unwrap_or_default();
    let mut name = |pid| procs.name(pid);
    state.readers = model::readers(&shim_readers, &holders, wal_index.as_ref(), now, &mut name);
    state.lock_holders = model::lock_holders(&holders, &mut name);
    (state.blockers, state.checkpoint_blocked) =
        model::blockers(wal_index.as_ref(), &state.readers, &state.lock_holders);
    state.oldest_reader_age_seconds = state
        .readers
        .iter()
        .filter_map(|r| r.age_seconds)
        .fold(0.0, f64::max);
    state.recent_checkpoints = recent;
    // Held until the next collection replaces it: without the room the lists grew.
    state.inconsistent.shrink_to_fit();
    state.blockers.shrink_to_fit();
    Some(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;
    use walwatch::layout::SLOT_READ0;

    /// A python process holding a shared POSIX lock on byte `offset` of `file`, as SQLite
    /// holds a READ slot; killed when dropped.
    struct Locker(std::process::Child);

    impl Drop for Locker {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn lock_holder(file: &Path, offset: u64) -> Locker {
        use std::io::BufRead;
        let script = "import fcntl,sys,time\nf=open(sys.argv[1],'rb')\nfcntl.lockf(f,fcntl.LOCK_SH,1,int(sys.argv[2]))\nprint('locked',flush=True)\ntime.sleep(600)\n";
        let mut child = std::process::Command::new("/usr/bin/python3")
            .args(["-c", script])
            .arg(file)
            .arg(offset.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("/usr/bin/python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        Locker(child)
    }

    #[test]
    fn collects_synthetic_databases_drops_dead_readers_and_deleted_databases() {
        let dir = std::env::temp_dir().join(format!("walwatch-collect-{}", std::process::id()));
        let stats = dir.join("stats");
        std::fs::create_dir_all(&stats).unwrap();
        let db = dir.join("a.db");
        std::fs::write(&db, synth::database(true)).unwrap();
        std::fs::write(
            wal_files::sibling(&db, "-shm"),
            synth::wal_index(9, 2, [0, 2, 9, u32::MAX, u32::MAX]),
        )
        .unwrap();
        // A live reader really holds its READ2 lock: a reader entry on a slot nobody holds is
        // dropped as inconsistent (plausible.rs).
        let shm = wal_files::sibling(&db, "-shm");
        let reader = lock_holder(
            &shm,
            walwatch::wal_index::SHM_LOCK_BASE + SLOT_READ0 as u64 + 2,
        );
        let path = db.to_str().unwrap().as_bytes();
        let mut file = synth::stats_file(path, 1);
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        dead.wait().unwrap();
        let since = unix_ns(SystemTime::now()); // after the reader started, as the shim writes it
        synth::set_reader(&mut file, 0, dead.id(), 1, 2, since);
        synth::set_reader(&mut file, 1, reader.0.id(), 2, 9, since);
        std::fs::write(stats.join(walwatch::paths::stats_file_name(path)), file).unwrap();
        // A stats file whose database was deleted.
        let gone = synth::stats_file(dir.join("gone.db").to_str().unwrap().as_bytes(), 1);
        std::fs::write(stats.join("gone.walwatch"), gone).unwrap();

        let c = collect(&StatsDirs::Configured(stats.clone()), &[]);
        assert_eq!(c.dbs.len(), 1, "{:?}", c.dbs);
        let state = &c.dbs[0];
        assert!(state.up);
        let me = walwatch::paths::effective_uid();
        assert_eq!(state.trust, discovery::Trust::Owner { uid: me });
        // The stats file of the deleted database: root's is dropped quietly, another user's
        // is reported like a stats file naming someone else's database.
        let not_owner = c.bad_stats_files.iter().filter(|b| b.reason == "not_owner");
        assert_eq!(not_owner.count(), usize::from(me != 0));
        assert_eq!(state.readers.len(), 1);
        assert_eq!(
            (state.readers[0].pid, state.readers[0].slot),
            (reader.0.id(), "READ2")
        );
        assert_eq!(state.readers[0].seen_by, "shim+lock");
        assert!(state.inconsistent.is_empty(), "{:?}", state.inconsistent);
        assert_eq!(state.wal_index.as_ref().unwrap().pending_frames, 7);
        // The live reader sees every frame: it only keeps the WAL from being reset.
        assert!(!state.checkpoint_blocked);
        assert_eq!(state.blockers[0].blocks, crate::model::Blocks::WalReset);
        assert_eq!(state.recent_checkpoints.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The checkpoint controller: keeps every watched WAL under its limits, and says what blocks it
//! when it cannot. The strategy is written down in [`policy`]; this file keeps the per-database
//! memory it needs (growth rate, back-off, who blocked the last attempt), runs the checkpoints
//! ([`checkpoint`]) and records what happened for `/metrics`, `/status` and the log.
//!
//! It is driven from two places: every collection (with the blockers the collection found), and
//! [`watch`], which reacts to `-wal` growth between collections through inotify.
//!
//! It acts only on databases the collection marked as within reach ([`Trust::may_act`]: named
//! by the operator, or by a stats file of the database's owner or of root; see `discovery`).
//! The check is made where it decides ([`Controller::consider`]), for both drivers, and again
//! by the checkpoint child when it opens the database ([`checkpoint::run_here`]).

pub mod checkpoint;
pub mod failures;
pub mod limits;
pub mod policy;
pub mod watch;

use checkpoint::{Outcome, ResultKind};
use limits::Limit;
use policy::{AfterTruncate, Checkpoint, ControllerMode, Decision, Limits, Observation};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::discovery::Trust;
use crate::model::{Blocker, DbState};

/// What the controller needs of the configuration: its part of [`crate::config::Settings`],
/// built from the file and flags in `config::resolve`.
#[derive(Clone, Debug, PartialEq)]
pub struct ControllerSettings {
    pub mode: ControllerMode,
    pub soft_limit: Limit,
    pub hard_limit: Limit,
    /// Limits of particular databases (normalized paths).
    pub per_db: HashMap<PathBuf, (Option<Limit>, Option<Limit>)>,
    /// Longest a TRUNCATE waits for WRITE, and then, holding it (writers stall), for readers.
    pub truncate_timeout: Duration,
    /// Longest the back-off between blocked TRUNCATEs grows to.
    pub max_backoff: Duration,
    /// How far ahead growth is projected (the collection interval).
    pub horizon: Duration,
    /// Where the shim's stats files are (to name blockers between collections).
    pub stats_dirs: crate::discovery::StatsDirs,
}

pub const DEFAULT_SOFT_LIMIT: Limit = Limit::Bytes(64 << 20);
pub const DEFAULT_HARD_LIMIT: Limit = Limit::Bytes(256 << 20);
pub const DEFAULT_TRUNCATE_TIMEOUT: Duration = Duration::from_millis(100);
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How far ahead growth is projected when notifications make reaction fast.
const FAST_HORIZON: Duration = Duration::from_millis(200);
/// Shortest time between two PASSIVE checkpoints of one database.
const PASSIVE_GAP: Duration = Duration::from_millis(100);
/// Growth-rate smoothing time constant.
const GROWTH_TAU: Duration = Duration::from_millis(500);

pub use crate::model::{ActionCount, ControllerView, LastAction};

/// The controller's memory of one database.
#[derive(Default)]
struct DbControl {
    last_sample: Option<(Instant, u64)>,
    growth: f64,
    in_progress: bool,
    backoff: Duration,
    backoff_until: Option<Instant>,
    /// Pids that blocked the last TRUNCATE.
    blocked_by: Vec<u32>,
    counts: BTreeMap<(&'static str, &'static str), u64>,
    write_lock_held: Duration,
    last: Option<(Instant, LastAction)>,
    holding: Option<String>,
    limits: Option<Limits>,
    last_passive: Option<Instant>,
    /// Whether the last collection put it in reach (see the module documentation).
    trust: Trust,
    /// How fast the last PASSIVE pass of a TRUNCATE copied, in bytes per second.
    passive_pass_rate: Option<f64>,
    /// The checkpoint error logged last, while it repeats (see [`failures`]).
    failing: Option<failures::Failing>,
}

pub struct Controller {
    settings: ControllerSettings,
    /// Set once [`watch`] runs: WAL growth is then seen within milliseconds, so growth is
    /// projected over [`FAST_HORIZON`] instead of a whole collection interval.
    fast_reaction: std::sync::atomic::AtomicBool,
    dbs: Mutex<HashMap<PathBuf, DbControl>>,
    available_memory: Mutex<Option<u64>>,
}

impl Controller {
    pub fn new(settings: ControllerSettings) -> Self {
        let controller = Self {
            settings,
            fast_reaction: Default::default(),
            dbs: Mutex::default(),
            available_memory: Mutex::default(),
        };
        controller.refresh_memory();
        controller
    }

    pub fn settings(&self) -> &ControllerSettings {
        &self.settings
    }

    /// Called when WAL growth notifications work (see [`watch`]).
    pub fn enable_fast_reaction(&self) {
        self.fast_reaction
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn horizons(&self) -> policy::Horizons {
        let interval = self.settings.horizon;
        let fast = self
            .fast_reaction
            .load(std::sync::atomic::Ordering::Relaxed);
        let reaction = if fast {
            FAST_HORIZON
                .max(2 * self.settings.truncate_timeout)
                .min(interval)
        } else {
            interval
        };
        policy::Horizons { reaction, interval }
    }

    fn refresh_memory(&self) {
        let uses_memory = |l: &Limit| matches!(l, Limit::OfAvailableMemory(_));
        let any = uses_memory(&self.settings.soft_limit)
            || uses_memory(&self.settings.hard_limit)
            || self
                .settings
                .per_db
                .values()
                .any(|(s, h)| s.iter().chain(h).any(uses_memory));
        if any {
            *lock(&self.available_memory) = limits::available_memory();
        }
    }

    /// The limits of `db`, in bytes now. A fraction of memory that cannot be read falls back to
    /// the default absolute limit (and the view shows the bytes used).
    fn limits_for(&self, db: &Path) -> Limits {
        let available = *lock(&self.available_memory);
        let (soft, hard) = self
            .settings
            .per_db
            .get(db)
            .copied()
            .unwrap_or((None, None));
        let resolve = |l: Limit, fallback: Limit| {
            l.resolve(available)
                .or(fallback.resolve(None))
                .unwrap_or(u64::MAX)
        };
        let hard = resolve(hard.unwrap_or(self.settings.hard_limit), DEFAULT_HARD_LIMIT);
        let soft = resolve(soft.unwrap_or(self.settings.soft_limit), DEFAULT_SOFT_LIMIT).min(hard);
        Limits { soft, hard }
    }

    /// After a collection: act on each database as the strategy says, then attach the
    /// controller's view to it. Runs on a blocking thread (checkpoints are blocking I/O).
    pub fn after_collection(self: &Arc<Self>, dbs: &mut [DbState]) {
        if self.settings.mode == ControllerMode::Off {
            return;
        }
        self.refresh_memory();
        for db in dbs.iter_mut() {
            let path = PathBuf::from(&db.path);
            lock(&self.dbs).entry(path.clone()).or_default().trust = db.trust;
            if let (true, Some(wal_bytes)) = (db.up, db.wal_bytes) {
                let pending = db.wal_index.as_ref().map(|w| w.pending_frames);
                let blocker_pids: Vec<u32> = db.blockers.iter().map(|b| b.pid).collect();
                self.consider(&path, wal_bytes, pending, Some(&blocker_pids), &db.blockers);
            }
            db.controller = Some(self.view(&path));
        }
        let present: std::collections::HashSet<&str> =
            dbs.iter().map(|d| d.path.as_str()).collect();
        lock(&self.dbs).retain(|p, _| present.contains(p.to_string_lossy().as_ref()));
    }

    /// Between collections: `-wal` of `db` is now `wal_bytes` long (from [`watch`]).
    pub fn on_wal_size(self: &Arc<Self>, db: &Path, wal_bytes: u64) {
        if self.settings.mode != ControllerMode::Off {
            self.consider(db, wal_bytes, None, None, &[]);
        }
    }

    /// Updates the growth estimate, decides, and runs the checkpoint if there is one to run.
    /// A database the last collection did not put in reach ([`Trust`]), or has not seen, is
    /// left alone.
    fn consider(
        self: &Arc<Self>,
        db: &Path,
        wal_bytes: u64,
        pending: Option<u32>,
        blockers_now: Option<&[u32]>,
        blockers: &[Blocker],
    ) {
        let now = Instant::now();
        let limits = self.limits_for(db);
        let (decision, was_holding, trust) = {
            let mut dbs = lock(&self.dbs);
            let Some(c) = dbs.get_mut(db).filter(|c| c.trust.may_act()) else {
                return;
            };
            // A WAL that shrank was checkpointed (by us or the application): that says nothing
            // about how fast writers fill it, so only growth updates the estimate.
            if let Some((at, size)) = c.last_sample.filter(|&(_, size)| wal_bytes >= size) {
                c.growth = policy::smooth_growth(
                    c.growth,
                    wal_bytes as f64 - size as f64,
                    now - at,
                    GROWTH_TAU,
                );
            }
            c.last_sample = Some((now, wal_bytes));
            c.limits = Some(limits);
            let observation = Observation {
                wal_bytes,
                pending_frames: pending,
                growth_bytes_per_second: c.growth,
                in_progress: c.in_progress,
                backoff_remaining: c
                    .backoff_until
                    .map_or(Duration::ZERO, |t| t.saturating_duration_since(now)),
                passive_recent: c.last_passive.is_some_and(|t| now - t < PASSIVE_GAP),
                blocker_gone: blockers_now.is_some_and(|pids| {
                    !c.blocked_by.is_empty() && !c.blocked_by.iter().any(|p| pids.contains(p))
                }),
            };
            let decision =
                policy::decide(self.settings.mode, limits, self.horizons(), &observation);
            let was_holding = c.holding.take();
            match &decision {
                Decision::Run(..) => c.in_progress = true,
                Decision::Hold(_, why, held) => c.holding = Some(format!("{why}; {held}")),
                Decision::Nothing => {}
            }
            (decision, was_holding, c.trust)
        };
        match decision {
            Decision::Nothing => {}
            Decision::Hold(action, why, held) => {
                if policy::log_hold(held, was_holding.is_some()) {
                    tracing::info!(db = %crate::text::path(db), action = action.name(), "holding a checkpoint: {why}; {held}");
                }
            }
            Decision::Run(action, why) => {
                let why = why.to_string();
                // Each checkpoint waits on its own thread, so a long one (a big backfill, a
                // wait for readers) never delays the reaction to another database.
                let (this, db, blockers) = (self.clone(), db.to_owned(), blockers.to_vec());
                let owner = trust.expected_owner();
                std::thread::spawn(move || this.run(&db, owner, action, why, &blockers));
            }
        }
    }

    /// Runs one checkpoint; `owner`: the uid the database file must still belong to.
    fn run(
        &self,
        db: &Path,
        owner: Option<u32>,
        action: Checkpoint,
        reason: String,
        known_blockers: &[Blocker],
    ) {
        let timeout = match action {
            Checkpoint::Passive => Duration::ZERO,
            Checkpoint::Truncate => self.settings.truncate_timeout,
        };
        let passive_pass = lock(&self.dbs)
            .get(db)
            .is_none_or(|c| policy::passive_pass(c.growth, c.passive_pass_rate));
        let outcome = checkpoint::run(db, owner, action, timeout, passive_pass);
        let blockers = if outcome.result == ResultKind::Busy {
            self.blockers_of(db, known_blockers)
        } else {
            Vec::new()
        };
        let mut dbs = lock(&self.dbs);
        let c = dbs.entry(db.to_owned()).or_default();
        let error = (outcome.result == ResultKind::Error)
            .then(|| outcome.error.as_deref().unwrap_or("unknown error"));
        let report = failures::track(&mut c.failing, error, Instant::now());
        drop(dbs);
        self.log(db, action, &reason, &outcome, &blockers, report);
        let mut dbs = lock(&self.dbs);
        let c = dbs.entry(db.to_owned()).or_default();
        c.in_progress = false;
        c.write_lock_held += outcome.write_lock_held;
        *c.counts
            .entry((action.name(), outcome.result.name()))
            .or_default() += 1;
        if action == Checkpoint::Passive {
            c.last_passive = Some(Instant::now());
        }
        if action == Checkpoint::Truncate {
            if let Some(rate) = outcome.passive_pass_rate {
                c.passive_pass_rate = Some(rate);
            }
            match policy::after_truncate(outcome.result == ResultKind::Ok, &blockers) {
                AfterTruncate::Reset => {
                    c.backoff = Duration::ZERO;
                    c.backoff_until = None;
                    c.blocked_by.clear();
                }
                AfterTruncate::BackOff => {
                    c.backoff = policy::next_backoff(
                        c.backoff,
                        self.settings.horizon / 2,
                        self.settings.max_backoff,
                    );
                    c.backoff_until = Some(Instant::now() + c.backoff);
                    c.blocked_by = blockers.iter().map(|b| b.pid).collect();
                }
                AfterTruncate::RetrySoon => {}
            }
        }
        c.last = Some((
            Instant::now(),
            LastAction {
                action: action.name(),
                result: outcome.result.name(),
                reason,
                seconds_ago: 0.0,
                duration_seconds: outcome.duration.as_secs_f64(),
                write_lock_held_seconds: outcome.write_lock_held.as_secs_f64(),
                log_frames: outcome.log_frames,
                checkpointed_frames: outcome.checkpointed_frames,
                error: outcome.error,
                blockers,
            },
        ));
    }

    /// Who blocks `db` right now: the collection's blockers when it just made them, else a fresh
    /// look at the shim's reader table and the `-shm` locks.
    fn blockers_of(&self, db: &Path, known: &[Blocker]) -> Vec<Blocker> {
        if !known.is_empty() {
            return known.to_vec();
        }
        crate::collect::collect_path(&self.settings.stats_dirs, db)
            .map(|s| s.blockers)
            .unwrap_or_default()
    }

    /// Logs one checkpoint: every success and busy result, and a failure when it is news (see
    /// [`failures`]). Paths and process names are escaped (`crate::text`).
    fn log(
        &self,
        db: &Path,
        action: Checkpoint,
        reason: &str,
        o: &Outcome,
        blockers: &[Blocker],
        report: failures::Report,
    ) {
        use failures::Report;
        let db = crate::text::path(db);
        if let Report::Recovered { count, for_ } = report {
            tracing::info!(%db, action = action.name(), failures = count, "checkpoints work again after {count} failures over {}", crate::text::human_age(for_.as_secs_f64()));
        }
        let ms = o.duration.as_secs_f64() * 1e3;
        let stall_ms = o.write_lock_held.as_secs_f64() * 1e3;
        let passive_pass = match (action, o.passive_pass_rate) {
            (Checkpoint::Passive, _) => "-".to_owned(),
            (Checkpoint::Truncate, Some(rate)) => format!("{:.0} MiB/s", rate / (1 << 20) as f64),
            (Checkpoint::Truncate, None) => "none".to_owned(),
        };
        match o.result {
            ResultKind::Ok => {
                tracing::info!(%db, action = action.name(), result = "ok", duration_ms = ms, write_lock_held_ms = stall_ms, %passive_pass, frames = o.log_frames, checkpointed = o.checkpointed_frames, "checkpointed: {reason}")
            }
            ResultKind::Busy => {
                let named: Vec<String> = blockers.iter().map(describe_blocker).collect();
                let named = if named.is_empty() {
                    "no reader or writer found holding a lock (it may have just finished)"
                        .to_owned()
                } else {
                    named.join("; ")
                };
                tracing::warn!(%db, action = action.name(), result = "busy", duration_ms = ms, write_lock_held_ms = stall_ms, %passive_pass, frames = o.log_frames, checkpointed = o.checkpointed_frames, "checkpoint could not complete: blocked by {named}");
            }
            ResultKind::Error => {
                let error =
                    crate::text::escaped(o.error.as_deref().unwrap_or("unknown error").as_bytes());
                match report {
                    Report::Quiet => {}
                    Report::Still { count, for_ } => {
                        tracing::error!(%db, action = action.name(), result = "error", failures = count, "checkpoints still failing ({count} times over {}): {error}; the sidecar needs read-write access to the database and its directory", crate::text::human_age(for_.as_secs_f64()))
                    }
                    _ => {
                        tracing::error!(%db, action = action.name(), result = "error", "checkpoint failed: {error}; the sidecar needs read-write access to the database and its directory (while it keeps failing this way, reminders follow after {} min, then ever less often, at least hourly; every attempt is counted in walwatch_controller_actions_total)", failures::FIRST_REMINDER.as_secs() / 60)
                    }
                }
            }
        }
    }

    /// The controller's view of one database, for `/status` and `/metrics`.
    pub fn view(&self, db: &Path) -> ControllerView {
        let limits = self.limits_for(db);
        let dbs = lock(&self.dbs);
        let c = dbs.get(db);
        ControllerView {
            mode: self.settings.mode.name(),
            soft_limit_bytes: limits.soft,
            hard_limit_bytes: limits.hard,
            growth_bytes_per_second: c.map_or(0.0, |c| c.growth),
            write_lock_held_seconds: c.map_or(0.0, |c| c.write_lock_held.as_secs_f64()),
            actions: c
                .map(|c| {
                    c.counts
                        .iter()
                        .map(|(&(action, result), &count)| ActionCount {
                            action,
                            result,
                            count,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            last: c
                .and_then(|c| c.last.as_ref())
                .map(|(at, last)| LastAction {
                    seconds_ago: at.elapsed().as_secs_f64(),
                    ..last.clone()
                }),
            holding: c.and_then(|c| c.holding.clone()),
        }
    }
}

/// `pid 123 (python3) on READ1, read mark 5, reading for 3.2 s: <reason>`
pub fn describe_blocker(b: &Blocker) -> String {
    let mut s = format!("pid {}", b.pid);
    if let Some(p) = &b.process {
        s += &format!(" ({})", crate::text::escaped(p.as_bytes()));
    }
    s += &format!(" on {}", b.slot);
    if let Some(m) = b.read_mark {
        s += &format!(", read mark {m}");
    }
    if let Some(age) = b.age_seconds {
        s += &format!(", reading for {age:.1} s");
    }
    s + ": " + &b.reason
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

//! The metric catalogue and its exposition, in the Prometheus text format 0.0.4 (the default)
//! or OpenMetrics 1.0.0 (when the scraper's `Accept` asks for it).
//!
//! Each metric is declared once, in [`SELF_FAMILIES`] (the exporter itself) or [`DB_FAMILIES`]
//! (one series set per database, `db` label first): name, type, unit, help, labels and the
//! function that reads its values from a [`DbState`]. A later feature adds a metric by adding
//! an entry (for instance `walwatch_controller_actions_total{db,action,result}` reading a
//! controller field of `DbState`); the README table is generated from the same entries
//! (`walwatch catalogue`).
//!
//! Values come from stats files as absolute numbers, so nothing is accumulated here: every
//! scrape renders the latest [`Collection`]. [`Renderer`] yields the exposition in chunks (one
//! family, a few dozen databases at a time), so a scrape of thousands of databases never holds
//! the whole text in memory.

use std::fmt::{Display, Write};
use std::sync::{Arc, OnceLock};
use walwatch::layout::{
    BUCKETS, BUCKET_BOUNDS_NS, CHECKPOINT_MODE_NAMES, FSYNC_FILE_NAMES, LOCK_MODE_NAMES,
    OUTCOME_NAMES, SLOT_NAMES, SLOT_READ0,
};
use walwatch::wal_index::READ_MARKS;

use crate::collect::Collection;
use crate::model::DbState;

/// Exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the `Accept` header lists it (Prometheus sends it first when
    /// configured to), else the Prometheus text format.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(a)
                if a.split(',')
                    .any(|part| part.trim().starts_with("application/openmetrics-text")) =>
            {
                Self::OpenMetrics
            }
            _ => Self::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Metric type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Counter,
    Gauge,
    Histogram,
    /// An `_info` metric: OpenMetrics type `info`, a gauge of value 1 in the Prometheus format.
    Info,
}

impl Type {
    fn name(self, format: Format) -> &'static str {
        match (self, format) {
            (Self::Counter, _) => "counter",
            (Self::Gauge, _) | (Self::Info, Format::Prometheus) => "gauge",
            (Self::Histogram, _) => "histogram",
            (Self::Info, Format::OpenMetrics) => "info",
        }
    }
}

/// A metric family's declaration.
#[derive(Debug)]
pub struct Desc {
    /// Family name: without the `_total` of counters and the `_info` of info metrics (the
    /// OpenMetrics convention); the samples carry the suffix.
    pub name: &'static str,
    pub kind: Type,
    /// Base unit, when the name ends with it (`bytes`, `seconds`).
    pub unit: Option<&'static str>,
    pub help: &'static str,
    /// Labels besides `db` (per-database families) or all labels (exporter families).
    pub labels: &'static [&'static str],
}

impl Desc {
    /// Name of the (first) sample, as Prometheus stores it.
    pub fn sample_name(&self) -> String {
        match self.kind {
            Type::Counter => format!("{}_total", self.name),
            Type::Info => format!("{}_info", self.name),
            _ => self.name.to_owned(),
        }
    }
}

/// Which series `/metrics` exposes: `--metrics.detail` (config `metrics = "detailed"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Detail {
    /// At most 40 series per database: every dashboard panel and alert.
    #[default]
    Default,
    /// Also per-slot, per-lock-mode and per-checkpoint-mode series and histograms (about 190
    /// series per active database).
    Detailed,
}

/// A per-database family: its declaration and how to read its samples from a `DbState`.
pub struct Family {
    pub desc: Desc,
    /// Labels in detailed mode, when they differ from `desc.labels` (more of them).
    pub detailed_labels: &'static [&'static str],
    /// Exposed in detailed mode only.
    pub detailed_only: bool,
    pub emit: fn(&mut Samples<'_>, &DbState),
}

impl Family {
    fn shown(&self, detail: Detail) -> bool {
        !self.detailed_only || detail == Detail::Detailed
    }
}

/// Writes exposition lines, and counts them. A dry writer only counts.
pub struct Writer<'a> {
    out: &'a mut String,
    format: Format,
    dry: bool,
    /// Sample lines written.
    pub series: usize,
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut String, format: Format) -> Self {
        Self {
            out,
            format,
            dry: false,
            series: 0,
        }
    }

    fn dry(out: &'a mut String) -> Self {
        Self {
            out,
            format: Format::Prometheus,
            dry: true,
            series: 0,
        }
    }

    /// `# HELP`, `# TYPE` (and `# UNIT` in OpenMetrics) lines.
    pub fn header(&mut self, d: &Desc) {
        if self.dry {
            return;
        }
        let name = match self.format {
            Format::OpenMetrics => d.name.to_owned(),
            Format::Prometheus => d.sample_name(),
        };
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(d.help));
        let _ = writeln!(self.out, "# TYPE {name} {}", d.kind.name(self.format));
        if let (Format::OpenMetrics, Some(unit)) = (self.format, d.unit) {
            let _ = writeln!(self.out, "# UNIT {name} {unit}");
        }
    }

    /// One sample line. `labels` is already formatted (`a="x",b="y"`), possibly empty.
    pub fn sample(
        &mut self,
        name: &str,
        suffix: &str,
        labels: &str,
        extra: &[(&str, &str)],
        value: impl Display,
    ) {
        self.series += 1;
        if self.dry {
            return;
        }
        self.out.push_str(name);
        self.out.push_str(suffix);
        if !labels.is_empty() || !extra.is_empty() {
            self.out.push('{');
            self.out.push_str(labels);
            for (i, (k, v)) in extra.iter().enumerate() {
                if i > 0 || !labels.is_empty() {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                push_escaped_label(self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Samples of one family for one database: the `db` label comes first on every line.
pub struct Samples<'w> {
    w: Writer<'w>,
    desc: &'static Desc,
    db_label: &'w str,
    /// Detailed mode: families add labels.
    pub detailed: bool,
}

impl Samples<'_> {
    pub fn gauge(&mut self, extra: &[(&str, &str)], value: impl Display) {
        self.w
            .sample(self.desc.name, "", self.db_label, extra, value);
    }

    pub fn counter(&mut self, extra: &[(&str, &str)], value: impl Display) {
        self.w
            .sample(self.desc.name, "_total", self.db_label, extra, value);
    }

    /// A histogram from non-cumulative bucket counts (as the stats file keeps them).
    pub fn histogram(&mut self, extra: &[(&str, &str)], buckets: &[u64; BUCKETS], sum_ns: u64) {
        if self.w.dry {
            self.w.series += BUCKETS + 2;
            return;
        }
        let mut labels: Vec<(&str, &str)> = extra.to_vec();
        labels.push(("le", ""));
        let mut cumulative = 0u64;
        for (bucket, le) in buckets.iter().zip(le_values()) {
            cumulative = cumulative.saturating_add(*bucket);
            *labels.last_mut().expect("le") = ("le", le.as_str());
            self.w.sample(
                self.desc.name,
                "_bucket",
                self.db_label,
                &labels,
                cumulative,
            );
        }
        self.w.sample(
            self.desc.name,
            "_sum",
            self.db_label,
            extra,
            Seconds(sum_ns),
        );
        self.w
            .sample(self.desc.name, "_count", self.db_label, extra, cumulative);
    }
}

/// Nanoseconds shown as seconds.
struct Seconds(u64);

impl Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0 as f64 / 1e9)
    }
}

/// `le` label values: the bucket bounds in seconds, then `+Inf`.
fn le_values() -> &'static [String] {
    static LE: OnceLock<Vec<String>> = OnceLock::new();
    LE.get_or_init(|| {
        BUCKET_BOUNDS_NS
            .iter()
            .map(|&ns| format!("{}", ns as f64 / 1e9))
            .chain(std::iter::once("+Inf".to_owned()))
            .collect()
    })
}

fn escape_help(help: &str) -> String {
    help.replace('\\', r"\\").replace('\n', r"\n")
}

fn push_escaped_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str(r"\n"),
            c => out.push(c),
        }
    }
}

/// `db="<escaped path>"`.
pub fn db_label(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 6);
    push_db_label(&mut out, path);
    out
}

fn push_db_label(out: &mut String, path: &str) {
    out.push_str("db=\"");
    push_escaped_label(out, path);
    out.push('"');
}

fn flag(b: bool) -> u8 {
    u8::from(b)
}

macro_rules! family {
    ($name:literal, $kind:ident, $unit:expr, [$($label:literal),*], $help:literal, $emit:expr) => {
        Family { desc: Desc { name: $name, kind: Type::$kind, unit: $unit, help: $help, labels: &[$($label),*] }, detailed_labels: &[], detailed_only: false, emit: $emit }
    };
    ($name:literal, $kind:ident, $unit:expr, [$($label:literal),*], detailed [$($dlabel:literal),*], $help:literal, $emit:expr) => {
        Family { desc: Desc { name: $name, kind: Type::$kind, unit: $unit, help: $help, labels: &[$($label),*] }, detailed_labels: &[$($dlabel),*], detailed_only: false, emit: $emit }
    };
    (detailed only $name:literal, $kind:ident, $unit:expr, [$($label:literal),*], $help:literal, $emit:expr) => {
        Family { desc: Desc { name: $name, kind: Type::$kind, unit: $unit, help: $help, labels: &[$($label),*] }, detailed_labels: &[], detailed_only: true, emit: $emit }
    };
}

use crate::model::{hold_class, lock_class};
pub use crate::model::{HOLD_CLASSES, LOCK_CLASSES};

/// Lock counters: by slot and lock mode in detailed mode, by lock class otherwise.
fn lock_counters(s: &mut Samples<'_>, db: &DbState, busy: bool) {
    let Some(c) = &db.counters else { return };
    if s.detailed {
        for (slot, lock) in c.locks.iter().enumerate() {
            let counts = if busy { lock.busy } else { lock.acquired };
            for (mode, v) in counts.iter().enumerate() {
                s.counter(
                    &[
                        ("lock", LOCK_CLASSES[lock_class(slot, mode)]),
                        ("slot", SLOT_NAMES[slot]),
                        ("lock_mode", LOCK_MODE_NAMES[mode]),
                    ],
                    v,
                );
            }
        }
    } else {
        let counts = if busy { c.busy } else { c.acquired };
        for (class, v) in LOCK_CLASSES.iter().zip(counts) {
            s.counter(&[("lock", class)], v);
        }
    }
}

/// Per-database metric families, all labelled `db` (the database path) first. The default set
/// answers every dashboard panel and alert in at most 40 series per database; `detailed`
/// (`--metrics.detail`) adds labels to some families (`slot`, `lock_mode`, `checkpoint_mode`)
/// and the families marked detailed-only. Every family of the default set is in the detailed
/// one, with the same labels or more, so a query that aggregates by the default labels works
/// in both. Counters of a database with a stats file are always written, zeros included, so
/// that `rate()` and `increase()` see a series from its first sample.
pub static DB_FAMILIES: &[Family] = &[
    family!("walwatch_up", Gauge, None, [], "Whether the database could be read (1) or not (0: missing, not in WAL mode, unreadable; see /status)", |s, db| s.gauge(&[], flag(db.up))),
    family!("walwatch_db_bytes", Gauge, Some("bytes"), [], "Size of the database file in bytes", |s, db| {
        if let Some(v) = db.db_bytes {
            s.gauge(&[], v)
        }
    }),
    family!("walwatch_wal_bytes", Gauge, Some("bytes"), [], "Size of the -wal file in bytes (0 when there is none)", |s, db| {
        if let Some(v) = db.wal_bytes {
            s.gauge(&[], v)
        }
    }),
    family!("walwatch_wal_frames", Gauge, None, [], "Frames in the WAL (mxFrame of the wal-index header)", |s, db| {
        if let Some(w) = &db.wal_index {
            s.gauge(&[], w.frames)
        } else if db.up && db.wal_bytes == Some(0) {
            s.gauge(&[], 0)
        }
    }),
    family!("walwatch_wal_backfilled_frames", Gauge, None, [], "WAL frames already copied into the database (nBackfill of the wal-index header)", |s, db| {
        if let Some(w) = &db.wal_index {
            s.gauge(&[], w.backfilled_frames)
        } else if db.up && db.wal_bytes == Some(0) {
            s.gauge(&[], 0)
        }
    }),
    family!(detailed only "walwatch_wal_read_mark", Gauge, None, ["slot"], "Read mark of each READ lock slot in use: the last WAL frame a reader on that slot may see", |s, db| {
        if let Some(w) = &db.wal_index {
            for i in 0..READ_MARKS {
                if let Some(mark) = w.read_marks[i] {
                    s.gauge(&[("slot", SLOT_NAMES[SLOT_READ0 + i])], mark);
                }
            }
        }
    }),
    family!("walwatch_readers", Gauge, None, [], "Connections holding a READ lock (read transactions), from the shim's reader table and F_GETLK", |s, db| {
        if db.up {
            s.gauge(&[], db.readers.len())
        }
    }),
    family!("walwatch_oldest_reader_age_seconds", Gauge, Some("seconds"), [], "Age of the oldest read transaction the shim knows of (0 when none)", |s, db| {
        if db.up {
            s.gauge(&[], db.oldest_reader_age_seconds)
        }
    }),
    family!("walwatch_checkpoint_blocked", Gauge, None, [], "1 when WAL frames are pending and a reader keeps any checkpoint from copying them all (see /status for the blocker)", |s, db| {
        if db.up {
            s.gauge(&[], flag(db.checkpoint_blocked))
        }
    }),
    family!("walwatch_inconsistent_values", Gauge, None, ["what"], "Values read in the last collection that cannot be true, by rule (see /status); they are left out of the other metrics. Only rules that found something are listed", |s, db| {
        for what in crate::plausible::WHATS {
            let n = db.inconsistent.iter().filter(|i| i.what == what).count();
            if n > 0 {
                s.gauge(&[("what", what)], n);
            }
        }
    }),
    family!("walwatch_wal_write_bytes", Counter, Some("bytes"), [], "Bytes committed write transactions appended to the -wal file (their frames, and the WAL header when they restarted it), read by the shim from the wal-index", |s, db| {
        if let Some(c) = &db.counters {
            s.counter(&[], c.wal_write_bytes)
        }
    }),
    family!("walwatch_db_write_bytes", Counter, Some("bytes"), [], "Bytes written to the database file through the shim (checkpoints)", |s, db| {
        if let Some(c) = &db.counters {
            s.counter(&[], c.db_write_bytes)
        }
    }),
    family!("walwatch_fsync", Counter, None, ["file"], "fsync calls by file (db, wal, other)", |s, db| {
        if let Some(c) = &db.counters {
            for (file, v) in FSYNC_FILE_NAMES.iter().zip(c.fsyncs) {
                s.counter(&[("file", file)], v);
            }
        }
    }),
    family!("walwatch_shm_lock_acquired", Counter, None, ["lock"], detailed ["lock", "slot", "lock_mode"], "-shm lock acquisitions by lock class (write, checkpoint: CKPT and RECOVER slots, read: shared on READ0..4, read_mark: exclusive on READ0..4); detailed: also by slot and lock_mode (shared, exclusive)", |s, db| lock_counters(s, db, false)),
    family!("walwatch_shm_lock_busy", Counter, None, ["lock"], detailed ["lock", "slot", "lock_mode"], "-shm lock attempts that found the lock busy (SQLITE_BUSY), by lock class; detailed: also by slot and lock_mode", |s, db| lock_counters(s, db, true)),
    family!("walwatch_shm_lock_held_seconds", Counter, Some("seconds"), ["lock"], "Time -shm locks were held, summed, by lock class (write, checkpoint, read: any lock on READ0..4); its rate is the share of time the lock was held. Estimated: one hold in 64 is timed and counted 64 times, and every WRITE/CKPT/RECOVER hold of 10 ms or more is counted once", |s, db| {
        if let Some(c) = &db.counters {
            for (class, ns) in HOLD_CLASSES.iter().zip(c.held_ns) {
                s.counter(&[("lock", class)], Seconds(ns));
            }
        }
    }),
    family!(detailed only "walwatch_shm_lock_hold_seconds", Histogram, Some("seconds"), ["lock", "slot"], "How long -shm locks were held, by slot. Estimated: one hold in 64 is timed and counted 64 times, and every WRITE/CKPT/RECOVER hold of 10 ms or more is counted once", |s, db| {
        if let Some(c) = &db.counters {
            for (slot, lock) in c.locks.iter().enumerate() {
                s.histogram(&[("lock", HOLD_CLASSES[hold_class(slot)]), ("slot", SLOT_NAMES[slot])], &lock.hold_buckets, lock.hold_sum_ns);
            }
        }
    }),
    family!(detailed only "walwatch_busy_sleeps", Counter, None, [], "Busy-handler sleeps (xSleep calls while waiting for a lock)", |s, db| {
        if let Some(c) = &db.counters {
            s.counter(&[], c.busy_sleeps)
        }
    }),
    family!("walwatch_busy_sleep_seconds", Counter, Some("seconds"), [], "Time requested by busy-handler sleeps", |s, db| {
        if let Some(c) = &db.counters {
            s.counter(&[], c.busy_sleep_us as f64 / 1e6)
        }
    }),
    family!("walwatch_checkpoints", Counter, None, ["outcome"], detailed ["checkpoint_mode", "outcome"], "Checkpoints by outcome (complete; not_reset: all copied but the WAL not reset; partial; busy), as SQLite told the application; detailed: also by checkpoint_mode (passive, full, restart, truncate; from the locks alone: restart_or_truncate, full_restart_or_truncate, unknown)", |s, db| {
        if let Some(c) = &db.counters {
            if s.detailed {
                for (mode, m) in CHECKPOINT_MODE_NAMES.iter().zip(&c.modes) {
                    for (outcome, v) in OUTCOME_NAMES.iter().zip(m.outcomes) {
                        s.counter(&[("checkpoint_mode", mode), ("outcome", outcome)], v);
                    }
                }
            } else {
                for (outcome, n) in OUTCOME_NAMES.iter().zip(c.outcomes) {
                    s.counter(&[("outcome", outcome)], n);
                }
            }
        }
    }),
    family!("walwatch_checkpoint_seconds", Counter, Some("seconds"), [], "Time spent in checkpoints, summed (divided by the rate of walwatch_checkpoints_total: their mean duration)", |s, db| {
        if let Some(c) = &db.counters {
            s.counter(&[], Seconds(c.checkpoint_ns))
        }
    }),
    family!(detailed only "walwatch_checkpoint_frames_backfilled", Counter, None, ["checkpoint_mode"], "WAL frames copied into the database by checkpoints, by checkpoint mode", |s, db| {
        if let Some(c) = &db.counters {
            for (mode, m) in CHECKPOINT_MODE_NAMES.iter().zip(&c.modes) {
                s.counter(&[("checkpoint_mode", mode)], m.frames_backfilled);
            }
        }
    }),
    family!(detailed only "walwatch_checkpoint_duration_seconds", Histogram, Some("seconds"), ["checkpoint_mode"], "Duration of checkpoints, by checkpoint mode", |s, db| {
        if let Some(c) = &db.counters {
            for (mode, m) in CHECKPOINT_MODE_NAMES.iter().zip(&c.modes) {
                s.histogram(&[("checkpoint_mode", mode)], &m.duration_buckets, m.duration_sum_ns);
            }
        }
    }),
    family!(detailed only "walwatch_wal_truncations", Counter, None, [], "Times the -wal file was truncated to zero bytes (end of a TRUNCATE checkpoint)", |s, db| {
        if let Some(c) = &db.counters {
            s.counter(&[], c.wal_truncations)
        }
    }),
    family!(detailed only "walwatch_reader_table_overflows", Counter, None, [], "Connections the shim's reader table had no room for (their read locks are seen only through F_GETLK)", |s, db| {
        if let Some(c) = &db.counters {
            s.counter(&[], c.reader_table_overflows)
        }
    }),
    family!("walwatch_wal_soft_limit_bytes", Gauge, Some("bytes"), [], "WAL size over which the controller runs PASSIVE checkpoints", |s, db| {
        if let Some(c) = &db.controller {
            s.gauge(&[], c.soft_limit_bytes)
        }
    }),
    family!("walwatch_wal_hard_limit_bytes", Gauge, Some("bytes"), [], "WAL size at which the controller runs TRUNCATE checkpoints", |s, db| {
        if let Some(c) = &db.controller {
            s.gauge(&[], c.hard_limit_bytes)
        }
    }),
    family!(detailed only "walwatch_wal_growth_bytes_per_second", Gauge, None, [], "Smoothed growth rate of the -wal file in bytes per second while it grows (checkpoints that shrink it are not counted)", |s, db| {
        if let Some(c) = &db.controller {
            s.gauge(&[], c.growth_bytes_per_second)
        }
    }),
    family!("walwatch_controller_actions", Counter, None, ["action", "result"], "Checkpoints the controller ran, by action (passive, truncate) and result (ok, busy, error)", |s, db| {
        if let Some(c) = &db.controller {
            for action in ["passive", "truncate"] {
                for result in ["ok", "busy", "error"] {
                    let n = c.actions.iter().find(|a| a.action == action && a.result == result).map_or(0, |a| a.count);
                    s.counter(&[("action", action), ("result", result)], n);
                }
            }
        }
    }),
    family!("walwatch_controller_write_lock_held_seconds", Counter, Some("seconds"), [], "Time the controller's TRUNCATE checkpoints held the WRITE lock, i.e. the longest writers can have waited for them, summed", |s, db| {
        if let Some(c) = &db.controller {
            s.counter(&[], c.write_lock_held_seconds)
        }
    }),
];

/// The exporter's own families (no `db` label), each named once: [`render_self`] writes them in
/// the order of [`SELF_FAMILIES`] (the catalogue's).
mod own {
    use super::{Desc, Type};

    pub const BUILD: Desc = Desc {
        name: "walwatch_build",
        kind: Type::Info,
        unit: None,
        help: "walwatch build information",
        labels: &["version"],
    };
    pub const DATABASES: Desc = Desc {
        name: "walwatch_databases",
        kind: Type::Gauge,
        unit: None,
        help: "Databases watched, by source (shim: a stats file; path: --db)",
        labels: &["source"],
    };
    pub const STATS_FILE_ERRORS: Desc = Desc {
        name: "walwatch_stats_file_errors",
        kind: Type::Gauge,
        unit: None,
        help: "Stats files and per-user stats directories not used, by reason (truncated, bad_magic, wrong_version, wrong_size, bad_path, uninitialized, io, not_regular, owner, writable_by_others, hard_linked, not_owner, dir_refused, too_many_files)",
        labels: &["reason"],
    };
    pub const COLLECTION_DURATION: Desc = Desc {
        name: "walwatch_collection_duration_seconds",
        kind: Type::Gauge,
        unit: Some("seconds"),
        help: "Duration of the last collection, all collectors and the controller's turn included",
        labels: &[],
    };
    pub const COLLECT_DURATION: Desc = Desc {
        name: "walwatch_collect_duration_seconds",
        kind: Type::Gauge,
        unit: Some("seconds"),
        help: "Time each collector took in the last collection (their sum is at most walwatch_collection_duration_seconds)",
        labels: &["collector"],
    };
    pub const COLLECT_SUCCESS: Desc = Desc {
        name: "walwatch_collect_success",
        kind: Type::Gauge,
        unit: None,
        help: "Whether the last collection could list the stats directory",
        labels: &[],
    };
    pub const LAST_COLLECT: Desc = Desc {
        name: "walwatch_last_collect_timestamp_seconds",
        kind: Type::Gauge,
        unit: Some("seconds"),
        help: "When the last collection finished (Unix time)",
        labels: &[],
    };
    pub const CONTROLLER_OBSERVE_ONLY: Desc = Desc { name: "walwatch_controller_observe_only", kind: Type::Gauge, unit: None, help: "1 when the checkpoint controller only observes (decides and reports, never checkpoints), 0 when it acts", labels: &[] };
    pub const METRICS_DETAILED: Desc = Desc { name: "walwatch_metrics_detailed", kind: Type::Gauge, unit: None, help: "1 when /metrics exposes the detailed series set (--metrics.detail), 0 for the default set", labels: &[] };
    pub const EXPOSED_SERIES: Desc = Desc {
        name: "walwatch_exposed_series",
        kind: Type::Gauge,
        unit: None,
        help: "Series in this /metrics response, this one included",
        labels: &[],
    };
    pub const RENDER_DURATION: Desc = Desc { name: "walwatch_render_duration_seconds", kind: Type::Gauge, unit: Some("seconds"), help: "Time the previous /metrics response took to render (compression and sending not included)", labels: &[] };
    pub const PROCESS_CPU: Desc = Desc {
        name: "process_cpu_seconds",
        kind: Type::Counter,
        unit: Some("seconds"),
        help: "Total user and system CPU time spent in seconds",
        labels: &[],
    };
    pub const PROCESS_RESIDENT: Desc = Desc {
        name: "process_resident_memory_bytes",
        kind: Type::Gauge,
        unit: Some("bytes"),
        help: "Resident memory size in bytes",
        labels: &[],
    };
    pub const PROCESS_VIRTUAL: Desc = Desc {
        name: "process_virtual_memory_bytes",
        kind: Type::Gauge,
        unit: Some("bytes"),
        help: "Virtual memory size in bytes",
        labels: &[],
    };
    pub const PROCESS_OPEN_FDS: Desc = Desc {
        name: "process_open_fds",
        kind: Type::Gauge,
        unit: None,
        help: "Number of open file descriptors",
        labels: &[],
    };
    pub const PROCESS_MAX_FDS: Desc = Desc {
        name: "process_max_fds",
        kind: Type::Gauge,
        unit: None,
        help: "Maximum number of open file descriptors",
        labels: &[],
    };
    pub const PROCESS_START: Desc = Desc {
        name: "process_start_time_seconds",
        kind: Type::Gauge,
        unit: Some("seconds"),
        help: "Start time of the process since unix epoch in seconds",
        labels: &[],
    };
}

/// Exporter families (no `db` label), in the order [`render_self`] writes them.
pub static SELF_FAMILIES: &[Desc] = &[
    own::BUILD,
    own::DATABASES,
    own::STATS_FILE_ERRORS,
    own::COLLECTION_DURATION,
    own::COLLECT_DURATION,
    own::COLLECT_SUCCESS,
    own::LAST_COLLECT,
    own::CONTROLLER_OBSERVE_ONLY,
    own::METRICS_DETAILED,
    own::EXPOSED_SERIES,
    own::RENDER_DURATION,
    own::PROCESS_CPU,
    own::PROCESS_RESIDENT,
    own::PROCESS_VIRTUAL,
    own::PROCESS_OPEN_FDS,
    own::PROCESS_MAX_FDS,
    own::PROCESS_START,
];

const STATS_FILE_REASONS: [&str; 14] = crate::stats_file::REASONS;

/// What a response says about the exposition itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct Exposition {
    pub detail: Detail,
    /// Series of the whole response ([`count_series`]).
    pub series: usize,
    /// Render time of the previous response (0 before the first).
    pub last_render_seconds: f64,
}

/// The process's own figures, from /proc/self (as node_exporter's client library reads them).
#[derive(Clone, Copy, Debug, Default)]
struct ProcessStats {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    open_fds: Option<usize>,
    max_fds: Option<u64>,
    start_time_seconds: Option<f64>,
}

/// Clock ticks per second of /proc/<pid>/stat times: USER_HZ, 100 on every Linux architecture
/// walwatch builds for.
const USER_HZ: f64 = 100.0;

impl ProcessStats {
    fn read() -> Self {
        let mut p = Self::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after "pid (comm) ": state is field 3, utime 14, stime 15, starttime 22.
            if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) {
                let f: Vec<&str> = rest.split(' ').collect();
                let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
                if let (Some(u), Some(s)) = (num(11), num(12)) {
                    p.cpu_seconds = Some((u + s) as f64 / USER_HZ);
                }
                let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("btime "))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                });
                if let (Some(start), Some(boot)) = (num(19), boot) {
                    p.start_time_seconds = Some(boot as f64 + start as f64 / USER_HZ);
                }
            }
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            let kb = |key: &str| {
                status.lines().find_map(|l| {
                    l.strip_prefix(key)?
                        .trim()
                        .strip_suffix("kB")?
                        .trim()
                        .parse::<u64>()
                        .ok()
                        .map(|v| v * 1024)
                })
            };
            p.resident_bytes = kb("VmRSS:");
            p.virtual_bytes = kb("VmSize:");
        }
        p.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count().saturating_sub(1)); // read_dir's own descriptor
        p.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3))
                    .and_then(|v| v.parse().ok())
            });
        p
    }
}

fn render_self(w: &mut Writer<'_>, c: &Collection, e: &Exposition) {
    use own::*;
    w.header(&BUILD);
    w.sample(
        BUILD.name,
        "_info",
        "",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    w.header(&DATABASES);
    for source in ["shim", "path"] {
        let n = c.dbs.iter().filter(|d| d.sources.contains(&source)).count();
        w.sample(DATABASES.name, "", "", &[("source", source)], n);
    }
    w.header(&STATS_FILE_ERRORS);
    for reason in STATS_FILE_REASONS {
        let n = c
            .bad_stats_files
            .iter()
            .filter(|b| b.reason == reason)
            .count();
        w.sample(STATS_FILE_ERRORS.name, "", "", &[("reason", reason)], n);
    }
    w.header(&COLLECTION_DURATION);
    w.sample(
        COLLECTION_DURATION.name,
        "",
        "",
        &[],
        c.duration.as_secs_f64(),
    );
    w.header(&COLLECT_DURATION);
    let t = &c.timings;
    for (collector, d) in [
        ("stats_files", t.stats_files),
        ("wal_files", t.wal_files),
        ("locks", t.locks),
    ] {
        w.sample(
            COLLECT_DURATION.name,
            "",
            "",
            &[("collector", collector)],
            d.as_secs_f64(),
        );
    }
    let gauge = |w: &mut Writer<'_>, d: &Desc, v: f64| {
        w.header(d);
        w.sample(d.name, "", "", &[], v);
    };
    gauge(
        w,
        &COLLECT_SUCCESS,
        flag(c.stats_dir_error.is_none()) as f64,
    );
    gauge(w, &LAST_COLLECT, c.finished_unix_seconds);
    if let Some(mode) = c.controller_mode {
        gauge(w, &CONTROLLER_OBSERVE_ONLY, flag(mode == "observe") as f64);
    }
    gauge(
        w,
        &METRICS_DETAILED,
        flag(e.detail == Detail::Detailed) as f64,
    );
    gauge(w, &EXPOSED_SERIES, e.series as f64);
    gauge(w, &RENDER_DURATION, e.last_render_seconds);
    let p = if w.dry {
        // Counting: which of these exist does not depend on the moment.
        ProcessStats {
            cpu_seconds: Some(0.0),
            resident_bytes: Some(0),
            virtual_bytes: Some(0),
            open_fds: Some(0),
            max_fds: Some(0),
            start_time_seconds: Some(0.0),
        }
    } else {
        ProcessStats::read()
    };
    let process: [(&Desc, Option<f64>); 6] = [
        (&PROCESS_CPU, p.cpu_seconds),
        (&PROCESS_RESIDENT, p.resident_bytes.map(|v| v as f64)),
        (&PROCESS_VIRTUAL, p.virtual_bytes.map(|v| v as f64)),
        (&PROCESS_OPEN_FDS, p.open_fds.map(|v| v as f64)),
        (&PROCESS_MAX_FDS, p.max_fds.map(|v| v as f64)),
        (&PROCESS_START, p.start_time_seconds),
    ];
    for (d, value) in process {
        if let Some(v) = value {
            w.header(d);
            let suffix = if d.kind == Type::Counter {
                "_total"
            } else {
                ""
            };
            w.sample(d.name, suffix, "", &[], v);
        }
    }
}

/// Series a response for `collection` holds, at `detail` (counted without formatting them).
pub fn count_series(collection: &Collection, detail: Detail) -> usize {
    let mut scratch = String::new();
    let mut w = Writer::dry(&mut scratch);
    render_self(
        &mut w,
        collection,
        &Exposition {
            detail,
            series: 0,
            last_render_seconds: 0.0,
        },
    );
    let mut n = w.series;
    for family in DB_FAMILIES.iter().filter(|f| f.shown(detail)) {
        for db in &collection.dbs {
            let mut samples = Samples {
                w: Writer::dry(&mut scratch),
                desc: &family.desc,
                db_label: "",
                detailed: detail == Detail::Detailed,
            };
            (family.emit)(&mut samples, db);
            n += samples.w.series;
        }
    }
    n
}

/// Target size of one chunk of exposition text.
const CHUNK_BYTES: usize = 128 * 1024;

/// Yields the exposition of a [`Collection`] in chunks of about [`CHUNK_BYTES`].
pub struct Renderer {
    collection: Arc<Collection>,
    format: Format,
    exposition: Exposition,
    /// 0 = exporter families, 1.. = `DB_FAMILIES[family - 1]`, past the end = done.
    family: usize,
    db: usize,
    done: bool,
    /// Reused `db="…"` label.
    label: String,
    /// Time spent rendering so far.
    pub elapsed: std::time::Duration,
}

impl Renderer {
    pub fn new(collection: Arc<Collection>, format: Format, exposition: Exposition) -> Self {
        Self {
            collection,
            format,
            exposition,
            family: 0,
            db: 0,
            done: false,
            label: String::new(),
            elapsed: std::time::Duration::ZERO,
        }
    }

    /// Whether every chunk has been yielded.
    pub fn done(&self) -> bool {
        self.done
    }
}

impl Iterator for Renderer {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        if self.done {
            return None;
        }
        let started = std::time::Instant::now();
        let detailed = self.exposition.detail == Detail::Detailed;
        let mut out = String::with_capacity(CHUNK_BYTES + 16 * 1024);
        while out.len() < CHUNK_BYTES {
            if self.family == 0 {
                render_self(
                    &mut Writer::new(&mut out, self.format),
                    &self.collection,
                    &self.exposition,
                );
                self.family = 1;
                continue;
            }
            let Some(family) = DB_FAMILIES.get(self.family - 1) else {
                if self.format == Format::OpenMetrics {
                    out.push_str("# EOF\n");
                }
                self.done = true;
                break;
            };
            if !family.shown(self.exposition.detail) {
                self.family += 1;
                continue;
            }
            if self.db == 0 {
                Writer::new(&mut out, self.format).header(&family.desc);
            }
            while self.db < self.collection.dbs.len() && out.len() < CHUNK_BYTES {
                let db = &self.collection.dbs[self.db];
                self.label.clear();
                push_db_label(&mut self.label, &db.path);
                let mut samples = Samples {
                    w: Writer::new(&mut out, self.format),
                    desc: &family.desc,
                    db_label: &self.label,
                    detailed,
                };
                (family.emit)(&mut samples, db);
                self.db += 1;
            }
            if self.db >= self.collection.dbs.len() {
                self.family += 1;
                self.db = 0;
            }
        }
        self.elapsed += started.elapsed();
        Some(out)
    }
}

/// The whole exposition as one string (tests and `walwatch status --metrics`).
pub fn render(collection: Arc<Collection>, format: Format, detail: Detail) -> String {
    let series = count_series(&collection, detail);
    let exposition = Exposition {
        detail,
        series,
        last_render_seconds: 0.0,
    };
    Renderer::new(collection, format, exposition).collect()
}

/// The metric catalogue as a Markdown table (for the README).
pub fn catalogue_markdown() -> String {
    let mut out = String::from(
        "| Metric | Type | Labels | Detailed labels | Help |\n|---|---|---|---|---|\n",
    );
    let rows = SELF_FAMILIES
        .iter()
        .map(|d| (d, d.labels.join(", "), String::new()))
        .chain(DB_FAMILIES.iter().map(|f| {
            let with_db = |labels: &[&str]| {
                std::iter::once("db")
                    .chain(labels.iter().copied())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let (labels, detailed) = if f.detailed_only {
                ("(detailed only)".to_owned(), with_db(f.desc.labels))
            } else if f.detailed_labels.is_empty() {
                (with_db(f.desc.labels), "same".to_owned())
            } else {
                (with_db(f.desc.labels), with_db(f.detailed_labels))
            };
            (&f.desc, labels, detailed)
        }));
    for (d, labels, detailed) in rows {
        let kind = if d.kind == Type::Info {
            "gauge (info)"
        } else {
            d.kind.name(Format::Prometheus)
        };
        let _ = writeln!(
            out,
            "| `{}` | {kind} | {labels} | {detailed} | {} |",
            d.sample_name(),
            d.help.replace('|', "\\|")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Counters, WalIndexView};
    use walwatch::layout::SLOTS;
    use walwatch::snapshot::{ModeSnapshot, SlotSnapshot, Snapshot};

    fn collection() -> Arc<Collection> {
        let mut counters = Snapshot {
            wal_write_bytes: 4096,
            ..Default::default()
        };
        counters.locks = vec![SlotSnapshot::default(); SLOTS];
        counters.locks[0].hold_buckets = [1, 0, 2, 0, 0, 0, 0, 1];
        counters.locks[0].hold_sum_ns = 1_500_000_000;
        counters.modes = vec![ModeSnapshot::default(); CHECKPOINT_MODE_NAMES.len()];
        let up = DbState {
            path: "/srv/a \"quoted\".db".into(),
            up: true,
            sources: vec!["shim"],
            db_bytes: Some(8192),
            wal_bytes: Some(0),
            wal_index: Some(WalIndexView {
                frames: 3,
                read_marks: [Some(0), Some(3), None, None, None],
                ..Default::default()
            }),
            counters: Some(Counters::take(&mut counters, true)),
            ..Default::default()
        };
        let down = DbState {
            path: "/srv/missing.db".into(),
            sources: vec!["path"],
            ..Default::default()
        };
        Arc::new(Collection {
            dbs: vec![up, down],
            ..Default::default()
        })
    }

    #[test]
    fn prometheus_text_has_total_names_and_cumulative_buckets() {
        let text = render(collection(), Format::Prometheus, Detail::Detailed);
        assert!(text.contains("# TYPE walwatch_wal_write_bytes_total counter\n"));
        assert!(
            text.contains("walwatch_wal_write_bytes_total{db=\"/srv/a \\\"quoted\\\".db\"} 4096\n")
        );
        assert!(text.contains("walwatch_up{db=\"/srv/missing.db\"} 0\n"));
        assert!(text.contains(
            "walwatch_wal_read_mark{db=\"/srv/a \\\"quoted\\\".db\",slot=\"READ1\"} 3\n"
        ));
        assert!(text.contains("lock=\"write\",slot=\"WRITE\",le=\"0.001\"} 3\n"));
        assert!(text.contains("lock=\"write\",slot=\"WRITE\",le=\"+Inf\"} 4\n"));
        assert!(text.contains("walwatch_shm_lock_hold_seconds_sum{db=\"/srv/a \\\"quoted\\\".db\",lock=\"write\",slot=\"WRITE\"} 1.5\n"));
        assert!(text.contains("# TYPE walwatch_build_info gauge\nwalwatch_build_info{version="));
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
    }

    #[test]
    fn openmetrics_has_family_names_units_and_eof() {
        let text = render(collection(), Format::OpenMetrics, Detail::Default);
        assert!(text.contains(
            "# TYPE walwatch_wal_write_bytes counter\n# UNIT walwatch_wal_write_bytes bytes\n"
        ));
        assert!(text.contains("# TYPE walwatch_build info\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn chunks_join_to_the_whole() {
        let mut dbs = Vec::new();
        for i in 0..300 {
            let mut db = collection().dbs[0].clone();
            db.path = format!("/db/{i}");
            dbs.push(db);
        }
        let c = Arc::new(Collection {
            dbs,
            ..Default::default()
        });
        let chunks: Vec<String> =
            Renderer::new(c.clone(), Format::Prometheus, Exposition::default()).collect();
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| c.len() < CHUNK_BYTES + 16 * 1024));
        // Every family header appears once, followed by all its samples.
        let text = chunks.concat();
        assert_eq!(text.matches("# TYPE walwatch_wal_frames gauge").count(), 1);
        assert_eq!(text.matches("walwatch_wal_frames{").count(), 300);
    }

    #[test]
    fn negotiates_openmetrics_only_when_asked() {
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")),
            Format::Prometheus
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5")),
            Format::OpenMetrics
        );
    }

    #[test]
    fn counters_end_in_total_and_units_match_names() {
        for d in SELF_FAMILIES
            .iter()
            .chain(DB_FAMILIES.iter().map(|f| &f.desc))
        {
            assert!(
                d.name.starts_with("walwatch_") || d.name.starts_with("process_"),
                "{}",
                d.name
            );
            assert!(
                !d.name.ends_with("_total"),
                "{}: the family name carries no _total",
                d.name
            );
            if let Some(unit) = d.unit {
                assert!(
                    d.name.ends_with(&format!("_{unit}")),
                    "{} must end with its unit {unit}",
                    d.name
                );
            }
        }
    }

    /// A database with activity on every slot, lock mode, checkpoint mode and outcome, and
    /// the controller's figures.
    fn busiest() -> DbState {
        let mut counters = Snapshot {
            locks: vec![
                SlotSnapshot {
                    acquired: [5, 6],
                    busy: [1, 2],
                    hold_buckets: [1; BUCKETS],
                    hold_sum_ns: 7,
                };
                SLOTS
            ],
            modes: vec![
                ModeSnapshot {
                    outcomes: [3; OUTCOME_NAMES.len()],
                    frames_backfilled: 9,
                    duration_buckets: [1; BUCKETS],
                    duration_sum_ns: 11,
                };
                CHECKPOINT_MODE_NAMES.len()
            ],
            fsyncs: [1, 2, 3],
            ..Default::default()
        };
        let mut db = collection().dbs[0].clone();
        db.counters = Some(Counters::take(&mut counters, true));
        db.wal_index.as_mut().unwrap().read_marks = [Some(1); READ_MARKS];
        db.controller = Some(crate::controller::ControllerView {
            soft_limit_bytes: 1,
            hard_limit_bytes: 2,
            ..Default::default()
        });
        db
    }

    fn series_of(text: &str, db: &str) -> usize {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(db))
            .count()
    }

    #[test]
    fn default_set_is_at_most_40_series_per_database_and_detailed_keeps_everything() {
        let db = busiest();
        let c = Arc::new(Collection {
            dbs: vec![db],
            ..Default::default()
        });
        let default = render(c.clone(), Format::Prometheus, Detail::Default);
        let detailed = render(c.clone(), Format::Prometheus, Detail::Detailed);
        let (d, full) = (series_of(&default, "db=\""), series_of(&detailed, "db=\""));
        assert!(d <= 40, "{d} series by default:\n{default}");
        assert!(full > 150, "{full} series in detailed mode");
        // Sums by lock class equal the per-slot detail: WRITE 5 + 6 acquired, CKPT and RECOVER
        // 22, READ0..4 shared 25 and exclusive 30.
        for (class, n) in [
            ("write", 11),
            ("checkpoint", 22),
            ("read", 25),
            ("read_mark", 30),
        ] {
            let line = format!("walwatch_shm_lock_acquired_total{{db=\"/srv/a \\\"quoted\\\".db\",lock=\"{class}\"}} {n}\n");
            assert!(default.contains(&line), "{line} in\n{default}");
        }
        assert!(
            detailed.contains(",lock=\"read_mark\",slot=\"READ3\",lock_mode=\"exclusive\"} 6\n")
        );
        // Every default family is in the detailed set.
        let names = |t: &str| -> std::collections::BTreeSet<String> {
            t.lines()
                .filter_map(|l| l.strip_prefix("# TYPE "))
                .map(|l| l.split(' ').next().unwrap().to_owned())
                .collect()
        };
        assert!(names(&default).is_subset(&names(&detailed)));
        // The self-count is right in both modes.
        for (text, detail) in [(&default, Detail::Default), (&detailed, Detail::Detailed)] {
            let lines = text.lines().filter(|l| !l.starts_with('#')).count();
            assert_eq!(count_series(&c, detail), lines);
            assert!(
                text.contains(&format!("walwatch_exposed_series {lines}\n")),
                "{detail:?}"
            );
        }
    }

    #[test]
    fn process_metrics_are_read_from_proc_self() {
        let text = render(collection(), Format::Prometheus, Detail::Default);
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
        ] {
            let value: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} missing"))
                .parse()
                .unwrap();
            assert!(value >= 0.0);
            if name != "process_cpu_seconds_total " {
                assert!(value > 0.0, "{name}{value}");
            }
        }
    }
}

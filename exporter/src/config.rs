//! Settings of `walwatch serve`: built-in defaults, then a TOML file (`--config`), then
//! environment variables (`WALWATCH_*`) and flags, each overriding the one before. `--db`
//! adds to the file's `databases`.
//!
//! ```toml
//! listen = "127.0.0.1:9866"        # address of the HTTP server
//! # stats_dir = "/srv/walwatch"    # one stats directory (WALWATCH_DIR of the applications);
//!                                  # unset: every per-user /dev/shm/walwatch-<uid>
//! # stats_base = "/dev/shm"        # where the per-user directories are (without stats_dir)
//! interval = "1s"                  # collection interval: "500ms", "5s", "1m" (100ms to 1h)
//! databases = ["/srv/app.db"]      # also watch these, with or without the shim
//! log_format = "human"             # or "json"
//! log_level = "info"               # tracing-subscriber EnvFilter syntax
//! metrics = "default"              # or "detailed": per-slot/mode series (--metrics.detail)
//!
//! [web]                            # the HTTP server (see web/mod.rs)
//! config_file = "/etc/walwatch/web.yml"  # TLS and basic auth, exporter-toolkit's YAML format
//! max_connections = 64             # idle connections give way to new ones beyond this
//! header_timeout = "10s"           # to send request headers (and most idle time between requests)
//! max_requests = 40                # /metrics and /status responses at once; beyond: 503
//!
//! [controller]                     # the checkpoint controller (see controller/policy.rs)
//! mode = "act"                     # act | observe | off
//! soft_limit = "64MiB"             # PASSIVE above this; sizes or "10%" of available memory
//! hard_limit = "256MiB"            # TRUNCATE at this (sizes: 4KiB to 16TiB; soft ≤ hard)
//! truncate_timeout = "100ms"       # longest a TRUNCATE waits for WRITE, then for readers (writers wait; 1ms to 1m)
//! max_backoff = "30s"              # longest pause between blocked TRUNCATEs (100ms to 1h)
//!
//! [controller.databases."/srv/app.db"]   # per-database limits
//! hard_limit = "32MiB"
//! ```

use crate::controller::{self, limits::Limit, policy::ControllerMode};
use crate::discovery::StatsDirs;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default listen address: loopback only; 9866 is walwatch's port (see the README).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9866";
/// Default collection interval.
pub const DEFAULT_INTERVAL: Duration = INTERVAL.default;
/// Shortest interval accepted.
pub const MIN_INTERVAL: Duration = INTERVAL.min;

/// A setting that takes a duration or a size: where it is set (config key, flag and
/// environment variable, as errors name them), its default and the values accepted. Every
/// range check goes through [`Setting::check`]; the README's table lists these.
#[derive(Debug)]
pub struct Setting<T: 'static> {
    /// Key in the config file.
    pub key: &'static str,
    /// Flag and environment variable (empty for a file-only setting).
    pub flag: &'static str,
    pub default: T,
    pub min: T,
    pub max: T,
}

/// Collection interval: under 100 ms the collections themselves cost more than they tell; over
/// an hour `/healthz` and every gauge go stale.
pub const INTERVAL: Setting<Duration> = Setting {
    key: "interval",
    flag: "--interval (WALWATCH_INTERVAL)",
    default: Duration::from_secs(5),
    min: Duration::from_millis(100),
    max: Duration::from_secs(3600),
};
/// Longest a TRUNCATE waits for WRITE, then (holding it) for readers: writers stall that long,
/// so it must stay below the applications' busy timeout.
pub const TRUNCATE_TIMEOUT: Setting<Duration> = Setting {
    key: "truncate_timeout",
    flag: "--truncate-timeout (WALWATCH_TRUNCATE_TIMEOUT)",
    default: controller::DEFAULT_TRUNCATE_TIMEOUT,
    min: Duration::from_millis(1),
    max: Duration::from_secs(60),
};
/// Longest pause between blocked TRUNCATEs.
pub const MAX_BACKOFF: Setting<Duration> = Setting {
    key: "max_backoff",
    flag: "",
    default: controller::DEFAULT_MAX_BACKOFF,
    min: Duration::from_millis(100),
    max: Duration::from_secs(3600),
};
/// Smallest and largest absolute WAL limit: one page of the default size, and the largest
/// database SQLite makes with its default page count and size (16 TiB). Percentages of
/// available memory are checked by [`Limit::parse`]: (0, 100].
const MIN_LIMIT: Limit = Limit::Bytes(4 << 10);
const MAX_LIMIT: Limit = Limit::Bytes(16 << 40);
/// WAL size over which the controller runs PASSIVE checkpoints.
pub const SOFT_LIMIT: Setting<Limit> = Setting {
    key: "soft_limit",
    flag: "--soft-limit (WALWATCH_SOFT_LIMIT)",
    default: controller::DEFAULT_SOFT_LIMIT,
    min: MIN_LIMIT,
    max: MAX_LIMIT,
};
/// WAL size at which the controller runs TRUNCATE checkpoints.
pub const HARD_LIMIT: Setting<Limit> = Setting {
    key: "hard_limit",
    flag: "--hard-limit (WALWATCH_HARD_LIMIT)",
    default: controller::DEFAULT_HARD_LIMIT,
    min: MIN_LIMIT,
    max: MAX_LIMIT,
};

/// How a setting's values are compared and shown in errors.
pub trait Bounded: Sized + Copy {
    /// `Less`/`Greater` when `self` is outside `min..=max`; `None` when it cannot be compared
    /// (a percentage of memory against byte bounds).
    fn outside(&self, min: &Self, max: &Self) -> Option<std::cmp::Ordering>;
    fn show(&self) -> String;
}

/// [`Bounded::outside`] for totally ordered values (durations, byte counts).
fn outside_ordered<T: PartialOrd>(v: &T, min: &T, max: &T) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering::*;
    (v < min).then_some(Less).or((v > max).then_some(Greater))
}

impl Bounded for Duration {
    fn outside(&self, min: &Self, max: &Self) -> Option<std::cmp::Ordering> {
        outside_ordered(self, min, max)
    }
    fn show(&self) -> String {
        show_duration(*self)
    }
}

impl Bounded for Limit {
    fn outside(&self, min: &Self, max: &Self) -> Option<std::cmp::Ordering> {
        match (self, min, max) {
            (Limit::Bytes(v), Limit::Bytes(lo), Limit::Bytes(hi)) => v.outside(lo, hi),
            _ => None,
        }
    }
    fn show(&self) -> String {
        match self {
            Limit::Bytes(b) => show_bytes(*b),
            Limit::OfAvailableMemory(f) => format!("{}%", f * 100.0),
        }
    }
}

impl Bounded for u64 {
    fn outside(&self, min: &Self, max: &Self) -> Option<std::cmp::Ordering> {
        outside_ordered(self, min, max)
    }
    fn show(&self) -> String {
        show_bytes(*self)
    }
}

impl<T: Bounded> Setting<T> {
    /// `value` (parsed from `text`) when it is within range, else an error that gives the value
    /// as written and the accepted range.
    pub fn check(&self, text: &str, value: T) -> Result<T, String> {
        let (what, bound) = match value.outside(&self.min, &self.max) {
            None => return Ok(value),
            Some(std::cmp::Ordering::Less) => ("below", "at least"),
            Some(_) => ("above", "at most"),
        };
        let limit = if bound == "at least" {
            &self.min
        } else {
            &self.max
        };
        Err(format!(
            "`{}` is {what} the accepted range: it must be {bound} {} (accepted: {} to {})",
            text.trim(),
            limit.show(),
            self.min.show(),
            self.max.show()
        ))
    }

    /// The accepted range, as the README and `--help` show it: `1ms to 60s`.
    pub fn range(&self) -> String {
        format!("{} to {}", self.min.show(), self.max.show())
    }
}

/// `100ms`, `5s`, `1m`, `1h`, `1.5s`: the shortest exact form of the units `parse_duration` reads.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if d.subsec_nanos() % 1_000_000 != 0 || ms == 0 {
        format!("{d:?}")
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// `4KiB`, `64MiB`, `16TiB`, or bytes when no binary unit divides it.
pub fn show_bytes(b: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if b >= 1 << shift && b % (1 << shift) == 0 {
            return format!("{}{unit}", b >> shift);
        }
    }
    format!("{b}B")
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// The config file, as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub telemetry_path: Option<String>,
    pub stats_dir: Option<PathBuf>,
    pub stats_base: Option<PathBuf>,
    pub interval: Option<String>,
    #[serde(default)]
    pub databases: Vec<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub log_level: Option<String>,
    pub controller: Option<ControllerConfig>,
    pub web: Option<WebFileConfig>,
    pub metrics: Option<crate::metrics::Detail>,
}

/// The `[web]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebFileConfig {
    pub config_file: Option<PathBuf>,
    pub max_connections: Option<u64>,
    pub header_timeout: Option<String>,
    pub max_requests: Option<u64>,
}

/// Accepted range of `--web.max-requests`.
pub const MAX_REQUESTS_RANGE: std::ops::RangeInclusive<u64> = 1..=1024;
/// Accepted range of `--web.max-connections`.
pub const MAX_CONNECTIONS_RANGE: std::ops::RangeInclusive<u64> = 1..=65536;
/// Time to send request headers (and most idle time between keep-alive requests).
pub const WEB_HEADER_TIMEOUT: Setting<Duration> = Setting {
    key: "header_timeout",
    flag: "--web.header-timeout (WALWATCH_WEB_HEADER_TIMEOUT)",
    default: crate::web::DEFAULT_HEADER_TIMEOUT,
    min: Duration::from_millis(100),
    max: Duration::from_secs(3600),
};

/// The `[controller]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    pub mode: Option<ControllerMode>,
    pub soft_limit: Option<String>,
    pub hard_limit: Option<String>,
    pub truncate_timeout: Option<String>,
    pub max_backoff: Option<String>,
    #[serde(default)]
    pub databases: std::collections::BTreeMap<PathBuf, DbLimits>,
}

/// Limits of one database, under `[controller.databases."<path>"]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbLimits {
    pub soft_limit: Option<String>,
    pub hard_limit: Option<String>,
}

/// What flags and the environment say (clap fills these; `None` = not given).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub telemetry_path: Option<String>,
    pub stats_dir: Option<PathBuf>,
    pub stats_base: Option<PathBuf>,
    pub interval: Option<String>,
    pub databases: Vec<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub log_level: Option<String>,
    pub controller_mode: Option<ControllerMode>,
    pub soft_limit: Option<String>,
    pub hard_limit: Option<String>,
    pub truncate_timeout: Option<String>,
    pub web_config_file: Option<PathBuf>,
    pub web_max_connections: Option<String>,
    pub web_header_timeout: Option<String>,
    pub web_max_requests: Option<String>,
    pub metrics_detail: Option<crate::metrics::Detail>,
}

/// Everything `walwatch serve` runs with, resolved from defaults, the file and the flags. The
/// parts that other modules take whole have their own types: [`controller::ControllerSettings`]
/// and [`crate::web::WebSettings`].
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Where `/metrics` is served (`--web.telemetry-path`).
    pub telemetry_path: String,
    pub stats_dirs: StatsDirs,
    pub interval: Duration,
    pub databases: Vec<PathBuf>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub controller: controller::ControllerSettings,
    pub web: crate::web::WebSettings,
    pub metrics: crate::metrics::Detail,
}

/// A configuration error, with where it is when it comes from the file.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Parses a config file's text. Errors name the file, line, column and key.
pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e: toml::de::Error| {
        let message = e.message().trim_end().to_owned();
        match e.span() {
            Some(span) => {
                let (line, col) = line_col(text, span.start);
                let key = key_of_line(text, line, &text[span.clone()]);
                let key = key.map(|k| format!(", key `{k}`")).unwrap_or_default();
                ConfigError(format!(
                    "invalid config file {}: line {line}, column {col}{key}: {message}",
                    path.display()
                ))
            }
            None => ConfigError(format!("invalid config file {}: {message}", path.display())),
        }
    })
}

/// Reads and parses a config file.
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    parse_file(path, &text)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
    (line, col)
}

/// The key a config line sets: the text before `=`, or the span itself when it is a bare key.
fn key_of_line(text: &str, line: usize, span_text: &str) -> Option<String> {
    let line_text = text.lines().nth(line - 1)?;
    match line_text.split_once('=') {
        Some((key, _)) => Some(key.trim().trim_matches('"').to_owned()).filter(|k| !k.is_empty()),
        None => Some(span_text.trim().to_owned()).filter(|k| !k.is_empty() && !k.starts_with('[')),
    }
}

/// Line of `key = …` in the config text, for errors found after parsing.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// Parses a duration: `500ms`, `5s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (use e.g. 500ms, 5s, 1m)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!(
            "`{text}` is not a duration (use e.g. 500ms, 5s, 1m)"
        ));
    }
    // Finite and not negative: only overflow fails, and a range check then refuses it.
    Ok(Duration::try_from_secs_f64(value * scale).unwrap_or(Duration::MAX))
}

/// Whether a soft limit is above a hard one, when the two can be compared (both in bytes or
/// both fractions of memory; a mix is resolved at run time, where the soft limit is capped at
/// the hard one).
fn soft_above_hard(soft: Limit, hard: Limit) -> bool {
    match (soft, hard) {
        (Limit::Bytes(s), Limit::Bytes(h)) => s > h,
        (Limit::OfAvailableMemory(s), Limit::OfAvailableMemory(h)) => s > h,
        _ => false,
    }
}

/// Where metrics are served unless `--web.telemetry-path` says otherwise.
pub const DEFAULT_TELEMETRY_PATH: &str = "/metrics";

/// Checks a telemetry path: absolute, made of URL-safe characters (it goes into the landing
/// page's link as is), and none of the other pages (`/`, `/status`, `/healthz`).
pub fn parse_telemetry_path(text: &str) -> Result<String, String> {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/-._~".contains(c);
    if !text.starts_with('/') || text.len() < 2 || !text.chars().all(safe) || text.contains("//") {
        return Err(format!(
            "`{}` is not a telemetry path: use an absolute path of letters, digits and - . _ ~ such as /metrics",
            crate::text::escaped(text.as_bytes())
        ));
    }
    if matches!(text, "/status" | "/healthz") {
        return Err(format!(
            "`{text}` is already served (the JSON status or the health check): choose another telemetry path, such as /metrics"
        ));
    }
    Ok(text.to_owned())
}

/// Parses a listen address: `host:port`, `[v6]:port`, or `:port` (all IPv4 interfaces).
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let t = text.trim();
    let full = if t.starts_with(':') {
        format!("0.0.0.0{t}")
    } else {
        t.to_owned()
    };
    full.parse().map_err(|_| {
        format!("`{text}` is not a listen address (use e.g. 127.0.0.1:9866, [::1]:9866 or :9866)")
    })
}

/// Where a setting's value came from, for errors that compare two settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// A flag or the environment.
    Flag,
    File,
    Default,
}

/// A setting from a flag or the environment (`over`), else the config file (`file`), else its
/// default; parsed, then checked against its range. An invalid value comes back with whether it
/// came from the file, so the error can name the file's line and key rather than the flag.
fn overridden<T: Bounded>(
    setting: &Setting<T>,
    over: Option<String>,
    file: Option<String>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<(T, Origin), (bool, String)> {
    let origin = match (&over, &file) {
        (Some(_), _) => Origin::Flag,
        (None, Some(_)) => Origin::File,
        (None, None) => Origin::Default,
    };
    match over.or(file) {
        Some(text) => parse(&text)
            .and_then(|v| setting.check(&text, v))
            .map(|v| (v, origin))
            .map_err(|m| (origin == Origin::File, m)),
        None => Ok((setting.default, origin)),
    }
}

/// Merges defaults, the config file (with its text, to locate errors) and overrides.
pub fn resolve(
    file: Option<(&Path, &str, FileConfig)>,
    over: Overrides,
) -> Result<Settings, ConfigError> {
    let (path, text, cfg) = match file {
        Some((p, t, c)) => (Some(p), t, c),
        None => (None, "", FileConfig::default()),
    };
    // Where a key is in the file: `config file w.toml, line 3, key `soft_limit``.
    let in_file = |key: &str| -> String {
        let line = line_of_key(text, key)
            .map(|l| format!(", line {l}"))
            .unwrap_or_default();
        let file = path.map_or_else(|| "?".into(), |p| crate::text::path(p).to_string());
        format!("config file {file}{line}, key `{key}`")
    };
    // An invalid value from the file names the file, line and key; one from a flag or the
    // environment names the flag.
    let locate = |key: &str, flag: &str, from_file: bool, msg: String| -> ConfigError {
        match (from_file, path) {
            (true, Some(_)) => ConfigError(format!("invalid {}: {msg}", in_file(key))),
            _ => ConfigError(format!("invalid {flag}: {msg}")),
        }
    };
    let setting = |s: &Setting<Duration>, over: Option<String>, file: Option<String>| {
        overridden(s, over, file, parse_duration)
            .map(|(v, _)| v)
            .map_err(|(f, m)| locate(s.key, s.flag, f, m))
    };

    let listen_from_file = over.listen.is_none() && cfg.listen.is_some();
    let listen_text = over
        .listen
        .or(cfg.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listen = parse_listen(&listen_text).map_err(|m| {
        locate(
            "listen",
            "--web.listen-address (--listen, WALWATCH_LISTEN)",
            listen_from_file,
            m,
        )
    })?;

    let interval = setting(&INTERVAL, over.interval, cfg.interval)?;

    let stats_dirs = StatsDirs::resolve(
        over.stats_dir.or(cfg.stats_dir),
        over.stats_base.or(cfg.stats_base),
    );
    let mut databases = cfg.databases;
    databases.extend(over.databases);

    let ctl = cfg.controller.unwrap_or_default();
    let limit = |s: &Setting<Limit>, over: Option<String>, file: Option<String>| {
        overridden(s, over, file, Limit::parse).map_err(|(f, m)| locate(s.key, s.flag, f, m))
    };
    let (soft_limit, soft_origin) = limit(&SOFT_LIMIT, over.soft_limit, ctl.soft_limit)?;
    let (hard_limit, hard_origin) = limit(&HARD_LIMIT, over.hard_limit, ctl.hard_limit)?;
    let truncate_timeout = setting(
        &TRUNCATE_TIMEOUT,
        over.truncate_timeout,
        ctl.truncate_timeout,
    )?;
    let max_backoff = setting(&MAX_BACKOFF, None, ctl.max_backoff)?;
    // Names a limit and where it was set: `hard limit 256MiB (the default)`.
    let described = |s: &Setting<Limit>, value: Limit, origin: Origin| {
        let from = match origin {
            Origin::Flag => s.flag.to_owned(),
            Origin::File => in_file(s.key),
            Origin::Default => "the default".to_owned(),
        };
        format!("{} {} ({from})", s.key, value.show())
    };
    // Both set, soft above hard: refused. A default soft limit above a hard limit that was set
    // is simply lowered to it (see `Controller::limits_for`).
    let set = |o: Origin| o != Origin::Default;
    if set(soft_origin) && set(hard_origin) && soft_above_hard(soft_limit, hard_limit) {
        return Err(ConfigError(format!(
            "invalid limits: {} is above {}; the soft limit (PASSIVE checkpoints) must be at most the hard limit (TRUNCATE checkpoints): lower the first or raise the second",
            described(&SOFT_LIMIT, soft_limit, soft_origin),
            described(&HARD_LIMIT, hard_limit, hard_origin)
        )));
    }
    let mut per_db = std::collections::HashMap::new();
    for (path, l) in ctl.databases {
        // A per-database limit from `[controller.databases."<path>"]`; errors name the path.
        let shown = crate::text::path(&path).to_string();
        let db_limit = |s: &Setting<Limit>, text: Option<String>| {
            text.map(|t| {
                Limit::parse(&t)
                    .and_then(|v| s.check(&t, v))
                    .map_err(|m| locate(s.key, s.key, true, format!("{shown}: {m}")))
            })
            .transpose()
        };
        let soft = db_limit(&SOFT_LIMIT, l.soft_limit)?;
        let hard = db_limit(&HARD_LIMIT, l.hard_limit)?;
        let (s, h) = (soft.unwrap_or(soft_limit), hard.unwrap_or(hard_limit));
        let origin = |own: bool, global: Origin| if own { Origin::File } else { global };
        let (so, ho) = (
            origin(soft.is_some(), soft_origin),
            origin(hard.is_some(), hard_origin),
        );
        if set(so) && set(ho) && soft_above_hard(s, h) {
            return Err(ConfigError(format!(
                "invalid limits of [controller.databases.\"{shown}\"]: {} is above {}; the soft limit (PASSIVE checkpoints) must be at most the hard limit (TRUNCATE checkpoints)",
                described(&SOFT_LIMIT, s, so),
                described(&HARD_LIMIT, h, ho)
            )));
        }
        per_db.insert(crate::discovery::normalize(&path), (soft, hard));
    }
    let controller = controller::ControllerSettings {
        mode: over
            .controller_mode
            .or(ctl.mode)
            .unwrap_or(ControllerMode::Act),
        soft_limit,
        hard_limit,
        per_db,
        truncate_timeout,
        max_backoff,
        horizon: interval,
        stats_dirs: stats_dirs.clone(),
    };
    let web_cfg = cfg.web.unwrap_or_default();
    // A count (connections, requests): flag or environment, else the `[web]` table, else the
    // default; outside its range an error naming the key as written, the value and the range.
    let count = |key: &str,
                 flag: &str,
                 what: &str,
                 over: Option<String>,
                 file: Option<u64>,
                 default: usize,
                 range: std::ops::RangeInclusive<u64>| {
        let (text, from_file) = match (over, file) {
            (Some(t), _) => (t, false),
            (None, Some(n)) => (n.to_string(), true),
            (None, None) => return Ok(default),
        };
        match text.trim().parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(n as usize),
            _ => Err(locate(
                key,
                flag,
                from_file,
                format!(
                    "`{}` is not a number of {what} in the accepted range, {} to {}",
                    text.trim(),
                    range.start(),
                    range.end()
                ),
            )),
        }
    };
    let max_connections = count(
        "max_connections",
        "--web.max-connections (WALWATCH_WEB_MAX_CONNECTIONS)",
        "connections",
        over.web_max_connections,
        web_cfg.max_connections,
        crate::web::DEFAULT_MAX_CONNECTIONS,
        MAX_CONNECTIONS_RANGE,
    )?;
    let header_timeout = setting(
        &WEB_HEADER_TIMEOUT,
        over.web_header_timeout,
        web_cfg.header_timeout,
    )?;
    let max_requests = count(
        "max_requests",
        "--web.max-requests (WALWATCH_WEB_MAX_REQUESTS)",
        "requests",
        over.web_max_requests,
        web_cfg.max_requests,
        crate::web::DEFAULT_MAX_REQUESTS,
        MAX_REQUESTS_RANGE,
    )?;
    let web = crate::web::WebSettings {
        config_file: over.web_config_file.or(web_cfg.config_file),
        max_connections,
        header_timeout,
        max_requests,
    };
    let path_from_file = over.telemetry_path.is_none() && cfg.telemetry_path.is_some();
    let telemetry_path = match over.telemetry_path.or(cfg.telemetry_path) {
        None => DEFAULT_TELEMETRY_PATH.to_owned(),
        Some(p) => parse_telemetry_path(&p).map_err(|m| {
            locate(
                "telemetry_path",
                "--web.telemetry-path (WALWATCH_WEB_TELEMETRY_PATH)",
                path_from_file,
                m,
            )
        })?,
    };
    Ok(Settings {
        telemetry_path,
        web,
        metrics: over.metrics_detail.or(cfg.metrics).unwrap_or_default(),
        listen,
        stats_dirs,
        interval,
        databases,
        log_format: over.log_format.or(cfg.log_format).unwrap_or_default(),
        log_level: over
            .log_level
            .or(cfg.log_level)
            .unwrap_or_else(|| "info".to_owned()),
        controller,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, String> {
        parse_file(Path::new("w.toml"), text).map_err(|e| e.0)
    }

    #[test]
    fn controller_limits_resolve_globally_and_per_database() {
        let text = "[controller]\nmode = \"observe\"\nhard_limit = \"32MiB\"\n\n[controller.databases.\"/srv/q.db\"]\nhard_limit = \"10%\"\n";
        let cfg = parse(text).unwrap();
        let s = resolve(Some((Path::new("w.toml"), text, cfg)), Overrides::default()).unwrap();
        assert_eq!(s.controller.mode, ControllerMode::Observe);
        assert_eq!(s.controller.hard_limit, Limit::Bytes(32 << 20));
        assert_eq!(
            s.controller.per_db.get(Path::new("/srv/q.db")),
            Some(&(None, Some(Limit::OfAvailableMemory(0.1))))
        );

        let bad = "[controller.databases.\"/srv/q.db\"]\nsoft_limit = \"lots\"\n";
        let err = resolve(
            Some((Path::new("w.toml"), bad, parse(bad).unwrap())),
            Overrides::default(),
        )
        .unwrap_err()
        .0;
        assert!(
            err.contains("line 2") && err.contains("soft_limit") && err.contains("/srv/q.db"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = parse("listen = \"127.0.0.1:1\"\n\nlisten_adress = \"x\"\n").unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("key `listen_adress`"), "{err}");
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn wrong_type_is_named_with_its_line() {
        let err = parse("interval = \"1s\"\ndatabases = \"/a.db\"\n").unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("key `databases`"),
            "{err}"
        );
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = parse("listen = \n").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let text = "listen = \":9999\"\ninterval = \"2s\"\ndatabases = [\"/a.db\"]\nlog_format = \"json\"\n";
        let cfg = parse(text).unwrap();
        let over = Overrides {
            interval: Some("250ms".into()),
            databases: vec!["/b.db".into()],
            ..Default::default()
        };
        let s = resolve(Some((Path::new("w.toml"), text, cfg)), over).unwrap();
        assert_eq!(s.listen, "0.0.0.0:9999".parse().unwrap());
        assert_eq!(s.interval, Duration::from_millis(250));
        assert_eq!(
            s.databases,
            vec![PathBuf::from("/a.db"), PathBuf::from("/b.db")]
        );
        assert_eq!(s.log_format, LogFormat::Json);
        let d = resolve(None, Overrides::default()).unwrap();
        assert_eq!(d.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(d.interval, DEFAULT_INTERVAL);
    }

    #[test]
    fn invalid_values_from_the_file_name_line_and_key() {
        let text = "# walwatch\ninterval = \"soon\"\n";
        let cfg = parse(text).unwrap();
        let err = resolve(Some((Path::new("w.toml"), text, cfg)), Overrides::default())
            .unwrap_err()
            .0;
        assert!(err.contains("line 2, key `interval`"), "{err}");
        let err = resolve(
            None,
            Overrides {
                listen: Some("localhost".into()),
                ..Default::default()
            },
        )
        .unwrap_err()
        .0;
        assert!(err.contains("--listen"), "{err}");
    }

    #[test]
    fn example_config_is_valid() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/walwatch.example.toml"
        ));
        let text = std::fs::read_to_string(path).unwrap();
        let cfg = parse_file(path, &text).unwrap();
        let s = resolve(Some((path, &text, cfg)), Overrides::default()).unwrap();
        assert_eq!(s.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(s.interval, DEFAULT_INTERVAL);
    }

    fn flag_error(over: Overrides) -> String {
        resolve(None, over).unwrap_err().0
    }

    #[test]
    fn ranges_name_the_key_the_value_and_the_range() {
        assert_eq!(TRUNCATE_TIMEOUT.range(), "1ms to 1m");
        assert_eq!(INTERVAL.range(), "100ms to 1h");
        assert_eq!(SOFT_LIMIT.range(), "4KiB to 16TiB");
        let err = flag_error(Overrides {
            truncate_timeout: Some("1e17s".into()),
            ..Default::default()
        });
        assert_eq!(
            err,
            "invalid --truncate-timeout (WALWATCH_TRUNCATE_TIMEOUT): `1e17s` is above the accepted range: it must be at most 1m (accepted: 1ms to 1m)"
        );
        let err = flag_error(Overrides {
            interval: Some("1e18s".into()),
            ..Default::default()
        });
        assert!(
            err.starts_with("invalid --interval")
                && err.contains("`1e18s`")
                && err.contains("at most 1h"),
            "{err}"
        );
        let err = flag_error(Overrides {
            interval: Some("10ms".into()),
            ..Default::default()
        });
        assert!(err.contains("at least 100ms"), "{err}");
        let err = flag_error(Overrides {
            hard_limit: Some("20TiB".into()),
            ..Default::default()
        });
        assert!(
            err.contains("--hard-limit") && err.contains("at most 16TiB"),
            "{err}"
        );
        // In range at both ends.
        let s = resolve(
            None,
            Overrides {
                truncate_timeout: Some("60s".into()),
                interval: Some("100ms".into()),
                soft_limit: Some("4KiB".into()),
                hard_limit: Some("16TiB".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.controller.truncate_timeout, Duration::from_secs(60));

        let text = "[controller]\nmax_backoff = \"2h\"\n";
        let err = resolve(
            Some((Path::new("w.toml"), text, parse(text).unwrap())),
            Overrides::default(),
        )
        .unwrap_err()
        .0;
        assert!(
            err.contains("line 2, key `max_backoff`") && err.contains("at most 1h"),
            "{err}"
        );
    }

    #[test]
    fn soft_limit_above_hard_limit_is_refused() {
        let err = flag_error(Overrides {
            soft_limit: Some("300MiB".into()),
            hard_limit: Some("256MiB".into()),
            ..Default::default()
        });
        assert!(
            err.contains("soft_limit 300MiB (--soft-limit (WALWATCH_SOFT_LIMIT)) is above hard_limit 256MiB (--hard-limit (WALWATCH_HARD_LIMIT))"),
            "{err}"
        );
        // A default on one side is not a contradiction: the soft limit is capped at run time.
        for over in [
            Overrides {
                soft_limit: Some("300MiB".into()),
                ..Default::default()
            },
            Overrides {
                hard_limit: Some("32MiB".into()),
                ..Default::default()
            },
        ] {
            assert!(resolve(None, over).is_ok());
        }
        assert!(flag_error(Overrides {
            soft_limit: Some("20%".into()),
            hard_limit: Some("10%".into()),
            ..Default::default()
        })
        .contains("is above"));
        // Bytes against a share of memory: resolved at run time, not refused.
        assert!(resolve(
            None,
            Overrides {
                soft_limit: Some("1GiB".into()),
                hard_limit: Some("10%".into()),
                ..Default::default()
            }
        )
        .is_ok());
        let text = "[controller]\nhard_limit = \"64MiB\"\n[controller.databases.\"/srv/q.db\"]\nsoft_limit = \"100MiB\"\n";
        let err = resolve(
            Some((Path::new("w.toml"), text, parse(text).unwrap())),
            Overrides::default(),
        )
        .unwrap_err()
        .0;
        assert!(
            err.contains("/srv/q.db")
                && err.contains("soft_limit 100MiB")
                && err.contains("hard_limit 64MiB"),
            "{err}"
        );
    }

    #[test]
    fn shows_durations_and_sizes_in_the_units_they_are_written_in() {
        assert_eq!(show_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(show_duration(Duration::from_secs(120)), "2m");
        assert_eq!(show_duration(Duration::from_micros(5)), "5µs");
        assert_eq!(show_bytes(3 << 20), "3MiB");
        assert_eq!(show_bytes(1000), "1000B");
        for d in ["1ms", "100ms", "1m", "1h", "1500ms"] {
            assert_eq!(show_duration(parse_duration(d).unwrap()), d);
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("-1s").is_err() && parse_duration("x").is_err());
        assert_eq!(parse_duration("1e300h").unwrap(), Duration::MAX);
        assert!(INTERVAL
            .check("1e300h", Duration::MAX)
            .unwrap_err()
            .contains("at most 1h"));
    }

    #[test]
    fn metrics_detail_and_max_requests_resolve_from_file_and_flags() {
        let text = "metrics = \"detailed\"\n[web]\nmax_requests = 3\n";
        let cfg = parse(text).unwrap();
        let s = resolve(Some((Path::new("w.toml"), text, cfg)), Overrides::default()).unwrap();
        assert_eq!(s.metrics, crate::metrics::Detail::Detailed);
        assert_eq!(s.web.max_requests, 3);
        let s = resolve(None, Overrides::default()).unwrap();
        assert_eq!(s.metrics, crate::metrics::Detail::Default);
        assert_eq!(s.web.max_requests, crate::web::DEFAULT_MAX_REQUESTS);
        let err = flag_error(Overrides {
            web_max_requests: Some("0".into()),
            ..Default::default()
        });
        assert!(
            err.contains("--web.max-requests") && err.contains("1 to 1024"),
            "{err}"
        );
        assert!(parse("metrics = \"everything\"\n")
            .unwrap_err()
            .contains("metrics"));
    }

    #[test]
    fn telemetry_path_is_checked_and_defaults_to_metrics() {
        let d = resolve(None, Overrides::default()).unwrap();
        assert_eq!(d.telemetry_path, "/metrics");
        let over = Overrides {
            telemetry_path: Some("/walwatch/metrics".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve(None, over).unwrap().telemetry_path,
            "/walwatch/metrics"
        );
        for bad in [
            "metrics", "/", "/status", "/healthz", "/a b", "/<x>", "//x", "",
        ] {
            let over = Overrides {
                telemetry_path: Some(bad.into()),
                ..Default::default()
            };
            let err = resolve(None, over).unwrap_err().to_string();
            assert!(err.contains("--web.telemetry-path"), "{bad}: {err}");
        }
        let file = parse("telemetry_path = \"/m\"\nlisten = \":9999\"\n").unwrap();
        let s = resolve(Some((Path::new("w.toml"), "", file)), Overrides::default()).unwrap();
        assert_eq!((s.telemetry_path.as_str(), s.listen.port()), ("/m", 9999));
    }
}

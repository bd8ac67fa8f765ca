//! Settings of `walwatch serve`: built-in defaults, then a TOML file (`--config`), then
//! environment variables (`WALWATCH_*`) and flags, each overriding the one before. `--db`
//! adds to the file's `databases`.
//!
//! ```toml
//! listen = "127.0.0.1:9866"        # address of the HTTP server
//! stats_dir = "/dev/shm/walwatch"  # where the shim writes stats files
//! interval = "1s"                  # collection interval: "500ms", "5s", "1m"
//! databases = ["/srv/app.db"]      # also watch these, with or without the shim
//! log_format = "human"             # or "json"
//! log_level = "info"               # tracing-subscriber EnvFilter syntax
//!
//! [web]                            # the HTTP server (see web/mod.rs)
//! config_file = "/etc/walwatch/web.yml"  # TLS and basic auth, exporter-toolkit's YAML format
//! max_connections = 64             # idle connections give way to new ones beyond this
//! header_timeout = "10s"           # to send request headers (and most idle time between requests)
//!
//! [controller]                     # the checkpoint controller (see controller/policy.rs)
//! mode = "act"                     # act | observe | off
//! soft_limit = "64MiB"             # PASSIVE above this; sizes or "10%" of available memory
//! hard_limit = "256MiB"            # TRUNCATE at this
//! truncate_timeout = "100ms"       # longest a TRUNCATE waits for WRITE, then for readers (writers wait)
//! max_backoff = "30s"              # longest pause between blocked TRUNCATEs
//!
//! [controller.databases."/srv/app.db"]   # per-database limits
//! hard_limit = "32MiB"
//! ```

use crate::controller::{self, limits::Limit, policy::Mode};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default listen address: loopback only; 9866 is walwatch's port (see the README).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9866";
/// Default collection interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Shortest interval accepted.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

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
    pub stats_dir: Option<PathBuf>,
    pub interval: Option<String>,
    #[serde(default)]
    pub databases: Vec<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub log_level: Option<String>,
    pub controller: Option<ControllerConfig>,
    pub web: Option<WebFileConfig>,
}

/// The `[web]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebFileConfig {
    pub config_file: Option<PathBuf>,
    pub max_connections: Option<u64>,
    pub header_timeout: Option<String>,
}

/// Accepted range of `--web.max-connections`.
pub const MAX_CONNECTIONS_RANGE: std::ops::RangeInclusive<u64> = 1..=65536;
/// Accepted range of `--web.header-timeout`.
pub const HEADER_TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(3600);

/// The `[controller]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    pub mode: Option<Mode>,
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
    pub stats_dir: Option<PathBuf>,
    pub interval: Option<String>,
    pub databases: Vec<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub log_level: Option<String>,
    pub controller_mode: Option<Mode>,
    pub soft_limit: Option<String>,
    pub hard_limit: Option<String>,
    pub truncate_timeout: Option<String>,
    pub web_config_file: Option<PathBuf>,
    pub web_max_connections: Option<String>,
    pub web_header_timeout: Option<String>,
}

/// Resolved settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub listen: SocketAddr,
    pub stats_dir: PathBuf,
    pub interval: Duration,
    pub databases: Vec<PathBuf>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub controller: controller::Settings,
    pub web: crate::web::WebSettings,
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
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("`{text}` is too long"))
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

/// A setting from a flag or the environment (`over`), else the config file (`file`), else
/// `default`. An invalid value comes back with whether it came from the file, so the error can
/// name the file's line and key rather than the flag.
fn overridden<T>(
    over: Option<String>,
    file: Option<String>,
    default: T,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, (bool, String)> {
    let from_file = over.is_none() && file.is_some();
    match over.or(file) {
        Some(text) => parse(&text).map_err(|m| (from_file, m)),
        None => Ok(default),
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
    // An invalid value from the file names the file, line and key; one from a flag or the
    // environment names the flag.
    let locate = |key: &str, flag: &str, from_file: bool, msg: String| -> ConfigError {
        match (from_file, path) {
            (true, Some(p)) => {
                let line = line_of_key(text, key)
                    .map(|l| format!(", line {l}"))
                    .unwrap_or_default();
                ConfigError(format!(
                    "invalid config file {}{line}, key `{key}`: {msg}",
                    p.display()
                ))
            }
            _ => ConfigError(format!("invalid {flag}: {msg}")),
        }
    };

    let listen_from_file = over.listen.is_none() && cfg.listen.is_some();
    let listen_text = over
        .listen
        .or(cfg.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listen = parse_listen(&listen_text)
        .map_err(|m| locate("listen", "--listen (WALWATCH_LISTEN)", listen_from_file, m))?;

    let interval = overridden(over.interval, cfg.interval, DEFAULT_INTERVAL, |t| {
        parse_duration(t).and_then(|d| {
            if d < MIN_INTERVAL {
                Err(format!("must be at least {MIN_INTERVAL:?}"))
            } else {
                Ok(d)
            }
        })
    })
    .map_err(|(f, m)| locate("interval", "--interval (WALWATCH_INTERVAL)", f, m))?;

    let stats_dir = over
        .stats_dir
        .or(cfg.stats_dir)
        .unwrap_or_else(walwatch::paths::default_stats_dir);
    let mut databases = cfg.databases;
    databases.extend(over.databases);

    let ctl = cfg.controller.unwrap_or_default();
    let soft_limit = overridden(
        over.soft_limit,
        ctl.soft_limit,
        controller::DEFAULT_SOFT_LIMIT,
        Limit::parse,
    )
    .map_err(|(f, m)| locate("soft_limit", "--soft-limit (WALWATCH_SOFT_LIMIT)", f, m))?;
    let hard_limit = overridden(
        over.hard_limit,
        ctl.hard_limit,
        controller::DEFAULT_HARD_LIMIT,
        Limit::parse,
    )
    .map_err(|(f, m)| locate("hard_limit", "--hard-limit (WALWATCH_HARD_LIMIT)", f, m))?;
    let truncate_timeout = overridden(
        over.truncate_timeout,
        ctl.truncate_timeout,
        controller::DEFAULT_TRUNCATE_TIMEOUT,
        parse_duration,
    )
    .map_err(|(f, m)| {
        locate(
            "truncate_timeout",
            "--truncate-timeout (WALWATCH_TRUNCATE_TIMEOUT)",
            f,
            m,
        )
    })?;
    let max_backoff = overridden(
        None,
        ctl.max_backoff,
        controller::DEFAULT_MAX_BACKOFF,
        parse_duration,
    )
    .map_err(|(f, m)| locate("max_backoff", "max_backoff", f, m))?;
    let mut per_db = std::collections::HashMap::new();
    for (path, l) in ctl.databases {
        // A per-database limit from `[controller.databases."<path>"]`; errors name the path.
        let db_limit = |key: &str, text: Option<String>| {
            text.map(|t| {
                Limit::parse(&t)
                    .map_err(|m| locate(key, key, true, format!("{}: {m}", path.display())))
            })
            .transpose()
        };
        let soft = db_limit("soft_limit", l.soft_limit)?;
        let hard = db_limit("hard_limit", l.hard_limit)?;
        per_db.insert(crate::discovery::normalize(&path), (soft, hard));
    }
    let controller = controller::Settings {
        mode: over.controller_mode.or(ctl.mode).unwrap_or(Mode::Act),
        soft_limit,
        hard_limit,
        per_db,
        truncate_timeout,
        max_backoff,
        horizon: interval,
        stats_dir: stats_dir.clone(),
    };
    let web_cfg = cfg.web.unwrap_or_default();
    let max_connections = overridden(
        over.web_max_connections,
        web_cfg.max_connections.map(|n| n.to_string()),
        crate::web::DEFAULT_MAX_CONNECTIONS as u64,
        |t| match t.trim().parse::<u64>() {
            Ok(n) if MAX_CONNECTIONS_RANGE.contains(&n) => Ok(n),
            _ => Err(format!(
                "`{t}` is not a number of connections from {} to {}",
                MAX_CONNECTIONS_RANGE.start(),
                MAX_CONNECTIONS_RANGE.end()
            )),
        },
    )
    .map_err(|(f, m)| {
        locate(
            "max_connections",
            "--web.max-connections (WALWATCH_WEB_MAX_CONNECTIONS)",
            f,
            m,
        )
    })?;
    let header_timeout = overridden(
        over.web_header_timeout,
        web_cfg.header_timeout,
        crate::web::DEFAULT_HEADER_TIMEOUT,
        |t| {
            parse_duration(t).and_then(|d| {
                if HEADER_TIMEOUT_RANGE.contains(&d) {
                    Ok(d)
                } else {
                    Err(format!("`{t}` is outside the accepted range, 100ms to 1h"))
                }
            })
        },
    )
    .map_err(|(f, m)| {
        locate(
            "header_timeout",
            "--web.header-timeout (WALWATCH_WEB_HEADER_TIMEOUT)",
            f,
            m,
        )
    })?;
    let web = crate::web::WebSettings {
        config_file: over.web_config_file.or(web_cfg.config_file),
        max_connections: max_connections as usize,
        header_timeout,
    };
    Ok(Settings {
        web,
        listen,
        stats_dir,
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
        assert_eq!(s.controller.mode, Mode::Observe);
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

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("-1s").is_err() && parse_duration("x").is_err());
    }
}

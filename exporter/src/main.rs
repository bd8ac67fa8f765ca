//! `walwatch`: the sidecar of the walwatch SQLite VFS shim.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use walwatch_exporter::config::{self, LogFormat, Overrides};
use walwatch_exporter::controller::policy::ControllerMode;
use walwatch_exporter::{collect, discovery, server, status, text};

/// Watch SQLite WAL files, -shm locks and checkpoints; export them to Prometheus.
#[derive(Parser)]
#[command(name = "walwatch", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at startup: the size of the `serve` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve /metrics, /status, /healthz and a landing page over HTTP.
    Serve(ServeArgs),
    /// Print a one-shot report of databases (all those with a stats file when none is named).
    Status(StatusArgs),
    /// Print the metric catalogue as a Markdown table.
    #[command(hide = true)]
    Catalogue,
    /// Run one checkpoint and print its outcome as JSON (the controller's child process).
    #[command(hide = true)]
    Checkpoint(CheckpointArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// TOML config file (keys: listen, telemetry_path, stats_dir, stats_base, interval, databases, log_format,
    /// log_level, metrics, [web], [controller]).
    #[arg(long, env = "WALWATCH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on, host:port, [v6]:port or :port (node_exporter's name; alias --listen)
    /// [default: 127.0.0.1:9866].
    #[arg(
        long = "web.listen-address",
        visible_alias = "listen",
        env = "WALWATCH_LISTEN",
        value_name = "ADDR"
    )]
    listen: Option<String>,
    /// Path the Prometheus metrics are served at (the landing page links it) [default: /metrics].
    #[arg(
        long = "web.telemetry-path",
        env = "WALWATCH_WEB_TELEMETRY_PATH",
        value_name = "PATH"
    )]
    telemetry_path: Option<String>,
    /// The one directory of the shim's stats files (the applications' WALWATCH_DIR) [default:
    /// every user's /dev/shm/walwatch-<uid>].
    #[arg(long, env = "WALWATCH_DIR", value_name = "DIR")]
    stats_dir: Option<PathBuf>,
    /// Where the per-user directories walwatch-<uid> are, without --stats-dir [default:
    /// /dev/shm]: for a sidecar that sees the applications' /dev/shm elsewhere.
    #[arg(long, env = "WALWATCH_STATS_BASE", value_name = "DIR")]
    stats_base: Option<PathBuf>,
    /// Also watch this database, with or without the shim (repeatable; adds to the config's).
    #[arg(
        long = "db",
        env = "WALWATCH_DB",
        value_name = "PATH",
        value_delimiter = ','
    )]
    databases: Vec<PathBuf>,
    /// Collection interval, e.g. 500ms, 5s, 1m; 100ms to 1h [default: 5s].
    #[arg(long, env = "WALWATCH_INTERVAL", value_name = "DURATION")]
    interval: Option<String>,
    /// Log format [default: human].
    #[arg(long, env = "WALWATCH_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Log filter, tracing-subscriber syntax, e.g. info or walwatch_exporter=debug [default: info].
    #[arg(long, env = "WALWATCH_LOG", value_name = "FILTER")]
    log_level: Option<String>,
    /// Checkpoint controller: act (checkpoint to keep WALs under their limits), observe (decide
    /// and report only) or off [default: act].
    #[arg(long = "controller", env = "WALWATCH_CONTROLLER", value_enum)]
    controller_mode: Option<ControllerMode>,
    /// WAL size over which the controller runs PASSIVE checkpoints: 64MiB, 1GB, or 10% of
    /// available memory; 4KiB to 16TiB, at most the hard limit [default: 64MiB].
    #[arg(long, env = "WALWATCH_SOFT_LIMIT", value_name = "SIZE")]
    soft_limit: Option<String>,
    /// WAL size at which the controller runs TRUNCATE checkpoints; 4KiB to 16TiB, or a
    /// percentage [default: 256MiB].
    #[arg(long, env = "WALWATCH_HARD_LIMIT", value_name = "SIZE")]
    hard_limit: Option<String>,
    /// Longest a TRUNCATE waits for the WRITE lock, and then (holding it, so writers stall) for
    /// readers; 1ms to 1m [default: 100ms]. Keep it below your applications' busy timeout.
    #[arg(long, env = "WALWATCH_TRUNCATE_TIMEOUT", value_name = "DURATION")]
    truncate_timeout: Option<String>,
    /// TLS and basic auth: a YAML file in the Prometheus exporter-toolkit format
    /// (tls_server_config, basic_auth_users, http_server_config.headers).
    #[arg(
        long = "web.config.file",
        env = "WALWATCH_WEB_CONFIG",
        value_name = "FILE"
    )]
    web_config_file: Option<PathBuf>,
    /// Most connections open at once; beyond it, the oldest connection not serving a request
    /// is closed to make room [default: 64].
    #[arg(
        long = "web.max-connections",
        env = "WALWATCH_WEB_MAX_CONNECTIONS",
        value_name = "N"
    )]
    web_max_connections: Option<String>,
    /// Time a client has to send its request headers, counted from the connection (or from the
    /// previous response on a keep-alive connection) [default: 10s].
    #[arg(
        long = "web.header-timeout",
        env = "WALWATCH_WEB_HEADER_TIMEOUT",
        value_name = "DURATION"
    )]
    web_header_timeout: Option<String>,
    /// Most /metrics and /status responses in progress at once; beyond it a request gets 503
    /// at once, so parallel or slow scrapers cannot grow the sidecar's memory; 1 to 1024
    /// [default: 40].
    #[arg(
        long = "web.max-requests",
        env = "WALWATCH_WEB_MAX_REQUESTS",
        value_name = "N"
    )]
    web_max_requests: Option<String>,
    /// Expose the detailed series set: lock counters by slot and lock mode, lock hold and
    /// checkpoint duration histograms, checkpoints by mode, read marks (about 190 series per
    /// active database instead of at most 40). Config: metrics = "detailed".
    #[arg(long = "metrics.detail", env = "WALWATCH_METRICS_DETAIL")]
    metrics_detail: bool,
}

#[derive(Args)]
struct CheckpointArgs {
    #[arg(long, value_enum)]
    mode: walwatch_exporter::controller::policy::Checkpoint,
    /// Bound of each lock wait, in milliseconds.
    #[arg(long, default_value_t = 100)]
    busy_timeout_ms: u64,
    /// Refuse the database unless this uid owns it (it did when the sidecar checked it).
    #[arg(long)]
    expect_owner: Option<u32>,
    /// TRUNCATE only: run a PASSIVE pass first.
    #[arg(long)]
    passive_pass: bool,
    db: PathBuf,
}

#[derive(Args)]
struct StatusArgs {
    /// Databases to report on.
    #[arg(value_name = "DB")]
    databases: Vec<PathBuf>,
    /// The one directory of the shim's stats files [default: every user's
    /// /dev/shm/walwatch-<uid>].
    #[arg(long, env = "WALWATCH_DIR", value_name = "DIR")]
    stats_dir: Option<PathBuf>,
    /// Where the per-user directories walwatch-<uid> are, without --stats-dir [default: /dev/shm].
    #[arg(long, env = "WALWATCH_STATS_BASE", value_name = "DIR")]
    stats_base: Option<PathBuf>,
    /// Print the same JSON as /status instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Status(args) => status_cmd(args),
        Command::Catalogue => {
            print!("{}", walwatch_exporter::metrics::catalogue_markdown());
            Ok(ExitCode::SUCCESS)
        }
        Command::Checkpoint(args) => {
            use walwatch_exporter::controller::checkpoint;
            let timeout = std::time::Duration::from_millis(args.busy_timeout_ms);
            println!(
                "{}",
                checkpoint::run_here(
                    &args.db,
                    args.mode,
                    timeout,
                    args.passive_pass,
                    args.expect_owner
                )
                .to_json()
            );
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("walwatch: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
            let parsed = config::parse_file(path, &text)?;
            Some((path.clone(), text, parsed))
        }
        None => None,
    };
    let overrides = Overrides {
        listen: args.listen,
        telemetry_path: args.telemetry_path,
        stats_dir: args.stats_dir,
        stats_base: args.stats_base,
        interval: args.interval,
        databases: args.databases,
        log_format: args.log_format,
        log_level: args.log_level,
        controller_mode: args.controller_mode,
        soft_limit: args.soft_limit,
        hard_limit: args.hard_limit,
        truncate_timeout: args.truncate_timeout,
        web_config_file: args.web_config_file,
        web_max_connections: args.web_max_connections,
        web_header_timeout: args.web_header_timeout,
        web_max_requests: args.web_max_requests,
        metrics_detail: args
            .metrics_detail
            .then_some(walwatch_exporter::metrics::Detail::Detailed),
    };
    let settings = config::resolve(
        file.as_ref()
            .map(|(p, t, c)| (p.as_path(), t.as_str(), c.clone())),
        overrides,
    )?;
    init_logging(settings.log_format, &settings.log_level)?;
    // Two workers: a scrape being rendered (or compressed) never keeps /healthz or another
    // client waiting. Collection and checkpoints run on the blocking pool.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .max_blocking_threads(2)
        .build()?;
    let served = runtime.block_on(server::serve(settings));
    // A collection stuck on a file (its blocking thread never returns) must not keep walwatch
    // from exiting on SIGTERM.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    served?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("invalid --log-level `{filter}`: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

fn status_cmd(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let stats_dirs = discovery::StatsDirs::resolve(args.stats_dir, args.stats_base);
    let named: Vec<PathBuf> = args
        .databases
        .iter()
        .map(|p| discovery::normalize(p))
        .collect();
    let mut collection = collect::collect(&stats_dirs, &named);
    if !named.is_empty() {
        collection.dbs.retain(|d| {
            named
                .iter()
                .any(|n| n.as_os_str() == std::ffi::OsStr::new(&d.path))
        });
    }
    let all_up = collection.dbs.iter().all(|d| d.up);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&collection.dbs)?);
    } else {
        if let Some(e) = &collection.stats_dir_error {
            eprintln!("walwatch: {e}");
        }
        for b in &collection.bad_stats_files {
            eprintln!(
                "walwatch: skipping stats file {}: {}",
                text::path(&b.path),
                text::escaped(b.message.as_bytes())
            );
        }
        if collection.dbs.is_empty() {
            println!("no databases: none named, and no stats file in {stats_dirs}");
        }
        if collection.unreadable_stats_dirs > 0 {
            eprintln!(
                "walwatch: {} per-user stats directories of other users were not read (only root may read them)",
                collection.unreadable_stats_dirs
            );
        }
        for (i, db) in collection.dbs.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print!("{}", status::report(db, collection.finished_unix_seconds));
        }
    }
    Ok(if all_up {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

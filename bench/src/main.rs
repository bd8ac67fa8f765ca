//! `shim-overhead`: what the walwatch VFS shim costs on a WAL workload.
//!
//! Runs the same speedtest1-like workload ([`workload`]) through SQLite's `unix` VFS ("plain")
//! and through the `walwatch` shim wrapping it ("walwatch"), in one process, interleaved round
//! by round on fresh database files, and prints the median wall time of each and their ratio.
//! `--variant plain|walwatch` runs one variant only (for instruction counting under
//! `valgrind --tool=callgrind` or `perf stat`; see `bench/run.sh`).
//!
//! ```text
//! shim-overhead [--rounds N] [--warmup N] [--workload mix|small] [--scale F] [--sync normal|full]
//!               [--variant plain|walwatch] [--dir DIR] [--stats-dir DIR] [--keep]
//! ```
#![forbid(unsafe_code)]

mod stats;
mod workload;

use stats::Summary;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use workload::{run_workload, Sync, Workload};

const USAGE: &str = "\
usage: shim-overhead [options]
  --rounds N          measured rounds per variant (default 15; 1 with --variant)
  --warmup N          unmeasured rounds first (default 1; 0 with --variant)
  --workload W        mix (speedtest1-like, default) | small (20,000 single-row inserts, then
                      20,000 point reads, each its own transaction)
  --scale F           workload size multiplier (default 1.0: ~0.5 s per run on tmpfs, ~1 s on disk)
  --sync normal|full  PRAGMA synchronous (default normal)
  --variant V         run only V (plain | walwatch), for instruction counting
  --dir DIR           where database files go (default: $TMPDIR)
  --stats-dir DIR     WALWATCH_DIR for the shim (default: a fresh dir in /dev/shm, else in --dir)
  --keep              keep the database and stats files
  -v, --verbose       print every run's times (to stderr)";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Plain,
    Walwatch,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Walwatch => "walwatch",
        }
    }
    /// The VFS the variant opens its connection with.
    fn vfs(self) -> &'static str {
        match self {
            Self::Plain => "unix",
            Self::Walwatch => "walwatch",
        }
    }
}

struct Args {
    rounds: Option<usize>,
    warmup: Option<usize>,
    scale: f64,
    workload: Workload,
    sync: Sync,
    variant: Option<Variant>,
    dir: PathBuf,
    stats_dir: Option<PathBuf>,
    keep: bool,
    verbose: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        rounds: None,
        warmup: None,
        scale: 1.0,
        workload: Workload::Mix,
        sync: Sync::Normal,
        variant: None,
        dir: std::env::temp_dir(),
        stats_dir: None,
        keep: false,
        verbose: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--rounds" => args.rounds = Some(number(&flag, &value()?)?),
            "--warmup" => args.warmup = Some(number(&flag, &value()?)?),
            "--scale" => {
                args.scale = number(&flag, &value()?)?;
                if args.scale <= 0.0 {
                    return Err("--scale must be positive".into());
                }
            }
            "--workload" => {
                args.workload = match value()?.to_ascii_lowercase().as_str() {
                    "mix" | "speedtest1" => Workload::Mix,
                    "small" => Workload::Small,
                    other => return Err(format!("--workload: expected mix or small, got {other}")),
                }
            }
            "--sync" => {
                args.sync = match value()?.to_ascii_lowercase().as_str() {
                    "normal" => Sync::Normal,
                    "full" => Sync::Full,
                    other => return Err(format!("--sync: expected normal or full, got {other}")),
                }
            }
            "--variant" => {
                args.variant = Some(match value()?.as_str() {
                    "plain" | "unix" => Variant::Plain,
                    "walwatch" | "shim" => Variant::Walwatch,
                    other => {
                        return Err(format!(
                            "--variant: expected plain or walwatch, got {other}"
                        ))
                    }
                })
            }
            "--dir" => args.dir = value()?.into(),
            "--stats-dir" => args.stats_dir = Some(value()?.into()),
            "--keep" => args.keep = true,
            "-v" | "--verbose" => args.verbose = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn number<T: std::str::FromStr>(flag: &str, s: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{flag}: not a valid number: {s}"))
}

/// Removes a database and the files SQLite may leave next to it.
fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// A number after `"key":` in the stats JSON (first occurrence).
fn json_u64(json: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let rest = &json[json.find(&pat)? + pat.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Bench {
    args: Args,
    work: PathBuf,
    runs: usize,
}

impl Bench {
    /// One run of `variant` on a fresh database.
    fn run(&mut self, variant: Variant, want_stats: bool) -> Result<workload::Outcome, String> {
        self.runs += 1;
        // The same length for both variants: SQLite measures the path (strlen) on every
        // statement, and a longer name would be counted as the shim's cost.
        let tag = &variant.name()[..1];
        let path = self.work.join(format!("run{}-{tag}.db", self.runs));
        remove_db(&path);
        let outcome = run_workload(
            &path,
            variant.vfs(),
            self.args.sync,
            self.args.scale,
            self.args.workload,
            want_stats,
        )
        .map_err(|e| format!("{} run failed: {e}", variant.name()))?;
        if !self.args.keep {
            remove_db(&path);
        }
        if self.args.verbose {
            eprintln!(
                "run {:>3} {:<8} wall {:>8.1} ms  cpu {:>8.1} ms",
                self.runs,
                variant.name(),
                ms(outcome.elapsed),
                outcome.cpu.map_or(f64::NAN, ms)
            );
        }
        Ok(outcome)
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("shim-overhead: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match real_main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shim-overhead: {e}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(args: Args) -> Result<(), String> {
    // Fixed width: the database's path is measured on every commit (see Bench::run).
    let tag = format!("walwatch-bench-{:010}", std::process::id());
    let work = args.dir.join(&tag);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let stats_dir = args.stats_dir.clone().unwrap_or_else(|| {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            shm.join(&tag)
        } else {
            work.join("stats")
        }
    });
    std::fs::create_dir_all(&stats_dir).map_err(|e| format!("{}: {e}", stats_dir.display()))?;
    // Before registering: the shim reads WALWATCH_DIR when it maps a database's stats file.
    std::env::set_var("WALWATCH_DIR", &stats_dir);
    // Both variants register (same process setup); "plain" then opens with "unix" explicitly.
    walwatch_rusqlite::register().map_err(|e| format!("register: {e}"))?;

    let own_stats_dir = args.stats_dir.is_none();
    let keep = args.keep;
    let mut bench = Bench {
        args,
        work: work.clone(),
        runs: 0,
    };
    let result = match bench.args.variant {
        Some(v) => single(&mut bench, v),
        None => compare(&mut bench),
    };
    if !keep {
        let _ = std::fs::remove_dir_all(&work);
        if own_stats_dir {
            let _ = std::fs::remove_dir_all(&stats_dir);
        }
    } else {
        println!("kept: {} and {}", work.display(), stats_dir.display());
    }
    result
}

/// `--variant`: run one variant only and print its times.
fn single(bench: &mut Bench, variant: Variant) -> Result<(), String> {
    let rounds = bench.args.rounds.unwrap_or(1).max(1);
    for _ in 0..bench.args.warmup.unwrap_or(0) {
        bench.run(variant, false)?;
    }
    let mut samples = Samples::default();
    for _ in 0..rounds {
        samples.push(&bench.run(variant, false)?);
    }
    let (wall, cpu) = (Summary::of(&samples.wall), Summary::of(&samples.cpu));
    println!(
        "RESULT variant={} workload={} sync={} scale={} rounds={rounds} statements={} wall_ms={:.1} cpu_ms={:.1}",
        variant.name(),
        bench.args.workload.name(),
        bench.args.sync.name(),
        bench.args.scale,
        samples.statements,
        wall.median,
        cpu.median,
    );
    Ok(())
}

/// Per-run times of one variant, in milliseconds.
#[derive(Default)]
struct Samples {
    wall: Vec<f64>,
    cpu: Vec<f64>,
    statements: u64,
}

impl Samples {
    fn push(&mut self, o: &workload::Outcome) {
        self.wall.push(ms(o.elapsed));
        if let Some(cpu) = o.cpu {
            self.cpu.push(ms(cpu));
        }
        self.statements = o.statements;
    }
}

/// Ratio walwatch/plain of medians, and the quartiles of the per-round ratios.
fn ratios(plain: &[f64], shim: &[f64]) -> (f64, Summary) {
    let paired: Vec<f64> = shim.iter().zip(plain).map(|(s, p)| s / p).collect();
    (
        Summary::of(shim).median / Summary::of(plain).median,
        Summary::of(&paired),
    )
}

/// Interleaved plain/walwatch rounds; alternating which goes first cancels order effects
/// (page cache, CPU frequency, a neighbour's load drifting).
fn compare(bench: &mut Bench) -> Result<(), String> {
    let rounds = bench.args.rounds.unwrap_or(15).max(1);
    let warmup = bench.args.warmup.unwrap_or(1);
    for _ in 0..warmup {
        bench.run(Variant::Plain, false)?;
        bench.run(Variant::Walwatch, false)?;
    }
    let mut plain = Samples::default();
    let mut shim = Samples::default();
    let mut stats_json = None;
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [Variant::Plain, Variant::Walwatch]
        } else {
            [Variant::Walwatch, Variant::Plain]
        };
        for v in order {
            // The last shimmed run also reads its stats (a few microseconds of a ~1 s run).
            let want = v == Variant::Walwatch && round + 1 == rounds;
            let o = bench.run(v, want)?;
            match v {
                Variant::Plain => plain.push(&o),
                Variant::Walwatch => shim.push(&o),
            }
            if o.stats_json.is_some() {
                stats_json = o.stats_json;
            }
        }
    }

    println!(
        "walwatch shim overhead: {} WAL workload, synchronous={}, scale {}, {rounds} rounds (+{warmup} warm-up), {} statements per run",
        bench.args.workload.name(),
        bench.args.sync.name(),
        bench.args.scale,
        plain.statements,
    );
    println!("  databases in {}", bench.work.display());
    println!();
    println!("  time (ms)        median      p25      p75");
    let mut rows = vec![("wall", &plain.wall, &shim.wall)];
    if plain.cpu.len() == rounds && shim.cpu.len() == rounds {
        rows.push(("cpu", &plain.cpu, &shim.cpu));
    }
    for (what, p, w) in &rows {
        for (name, v) in [("plain", p), ("walwatch", w)] {
            let s = Summary::of(v);
            println!(
                "  {what:<4} {name:<9} {:>9.1} {:>8.1} {:>8.1}",
                s.median, s.p25, s.p75
            );
        }
    }
    println!();
    let mut result = format!(
        "RESULT wall workload={} sync={} scale={} rounds={rounds} plain_ms={:.1} walwatch_ms={:.1}",
        bench.args.workload.name(),
        bench.args.sync.name(),
        bench.args.scale,
        Summary::of(&plain.wall).median,
        Summary::of(&shim.wall).median,
    );
    for (what, p, w) in &rows {
        let (ratio, paired) = ratios(p, w);
        println!(
            "  {what:<4} walwatch/plain: ratio of medians {ratio:.4} ({:+.2}%); per-round ratios median {:.4}, p25 {:.4}, p75 {:.4}",
            (ratio - 1.0) * 100.0,
            paired.median,
            paired.p25,
            paired.p75
        );
        result += &format!(
            " {what}_ratio={ratio:.4} {what}_paired={:.4} {what}_paired_p25={:.4} {what}_paired_p75={:.4}",
            paired.median, paired.p25, paired.p75
        );
    }

    // Sanity: the shim recorded the run; otherwise the comparison measured nothing.
    let json = stats_json.ok_or("no stats from the shimmed run")?;
    let wal_write_bytes = json_u64(&json, "wal_write_bytes").unwrap_or(0);
    let checkpoints = json
        .find("\"checkpoints\":")
        .and_then(|i| json_u64(&json[i..], "total"))
        .unwrap_or(0);
    let wal_fsyncs = json
        .find("\"fsyncs\":")
        .and_then(|i| json_u64(&json[i..], "wal"))
        .unwrap_or(0);
    println!(
        "  sanity: last walwatch run recorded wal_write_bytes={wal_write_bytes}, checkpoints={checkpoints}, wal fsyncs={wal_fsyncs}"
    );
    println!("{result}");
    // The small workload checkpoints only when SQLite's auto-checkpoint fires.
    let want_checkpoints = bench.args.workload == Workload::Mix;
    if wal_write_bytes == 0 || (want_checkpoints && checkpoints == 0) {
        return Err(format!(
            "the shimmed run recorded nothing (stats: {json}); is WALWATCH_DIR writable?"
        ));
    }
    Ok(())
}

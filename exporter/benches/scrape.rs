//! Benchmark of the real `walwatch` sidecar (`cargo bench -p walwatch-exporter --bench scrape`).
//!
//! 1. 1,000 synthetic databases (database, `-wal`, `-shm` with an initialized wal-index, and a
//!    stats file with non-zero counters), scraped `SCRAPES` times: median and p90 scrape time,
//!    response size, the sidecar's collection time, resident memory (VmRSS, peak VmHWM).
//! 2. 100 databases at `--interval 1s` for `WALWATCH_BENCH_SECONDS` (default 20) seconds: CPU
//!    time (utime + stime from /proc/<pid>/stat) as a share of one core, without scrapes and
//!    then with one scrape per second.
//!
//! Figures are printed; nothing is asserted (timings belong here, not in tests).
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use walwatch_exporter::synth;

const WALWATCH: &str = env!("CARGO_BIN_EXE_walwatch");
const SCRAPES: usize = 30;

struct Sidecar {
    child: Child,
    addr: SocketAddr,
}

impl Sidecar {
    fn start(stats: &Path, interval: &str) -> Self {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new(WALWATCH)
            .args([
                "serve",
                "--listen",
                &addr.to_string(),
                "--stats-dir",
                stats.to_str().unwrap(),
                "--interval",
                interval,
                "--log-level",
                "error",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(addr, "/healthz").is_err() {
            assert!(Instant::now() < deadline, "sidecar did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, addr }
    }

    fn proc_status(&self, key: &str) -> String {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with(key))
            .map(|l| l[key.len()..].trim().to_owned())
            .unwrap_or_default()
    }

    /// utime + stime in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after_comm.split(' ').collect();
        // Fields 14 and 15 of stat(5); after "pid (comm) " the state is field 3.
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(addr: SocketAddr, path: &str) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// Creates `n` databases under `dir` and their stats files in `dir/stats`.
fn populate(dir: &Path, n: usize) -> PathBuf {
    let stats = dir.join("stats");
    std::fs::create_dir_all(&stats).unwrap();
    let db_bytes = synth::database(true);
    let shm = synth::wal_index(250, 100, [0, 100, 250, 0xffff_ffff, 0xffff_ffff]);
    for i in 0..n {
        let db = dir.join(format!("db{i:04}.sqlite"));
        std::fs::write(&db, &db_bytes).unwrap();
        let wal = std::fs::File::create(dir.join(format!("db{i:04}.sqlite-wal"))).unwrap();
        wal.set_len(250 * 4120 + 32).unwrap();
        std::fs::write(dir.join(format!("db{i:04}.sqlite-shm")), &shm).unwrap();
        let path = db.to_str().unwrap().as_bytes();
        let mut file = synth::stats_file(path, 1000 + i as u64);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        synth::set_reader(&mut file, 0, std::process::id(), 1, 100, now);
        std::fs::write(stats.join(walwatch::paths::stats_file_name(path)), file).unwrap();
    }
    stats
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn metric(text: &str, prefix: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or("?")
        .to_owned()
}

fn scrape_bench(root: &Path) {
    let n = 1000;
    let dir = root.join("n1000");
    let t = Instant::now();
    let stats = populate(&dir, n);
    println!(
        "created {n} databases in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let sidecar = Sidecar::start(&stats, "5s");
    let first = get(sidecar.addr, "/metrics").unwrap();
    let text = String::from_utf8_lossy(&first);
    let watched = metric(&text, "walwatch_databases{source=\"shim\"}");
    let collect = metric(
        &text,
        "walwatch_collect_duration_seconds{collector=\"total\"}",
    );
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..SCRAPES {
        let t = Instant::now();
        bytes = get(sidecar.addr, "/metrics").unwrap().len();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "scrape of {watched} databases ({SCRAPES} scrapes, {:.1} MB, {} lines each):",
        bytes as f64 / 1e6,
        text.lines().count()
    );
    println!(
        "  median {:.1} ms, p90 {:.1} ms, min {:.1} ms, max {:.1} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.9),
        times[0],
        times[times.len() - 1]
    );
    println!(
        "  one collection of {n} databases: {:.1} ms",
        collect.parse::<f64>().unwrap_or(f64::NAN) * 1e3
    );
    let t = Instant::now();
    let status = get(sidecar.addr, "/status").unwrap();
    println!(
        "  /status: {:.1} ms, {:.1} MB",
        t.elapsed().as_secs_f64() * 1e3,
        status.len() as f64 / 1e6
    );
    println!(
        "  resident memory: VmRSS {}, peak VmHWM {}",
        sidecar.proc_status("VmRSS:"),
        sidecar.proc_status("VmHWM:")
    );
}

fn cpu_bench(root: &Path) {
    let n = 100;
    let seconds: u64 = std::env::var("WALWATCH_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let stats = populate(&root.join("n100"), n);
    let sidecar = Sidecar::start(&stats, "1s");
    std::thread::sleep(Duration::from_secs(2));
    let hz = clock_ticks_per_second();
    for scrape in [false, true] {
        let (t0, c0) = (Instant::now(), sidecar.cpu_ticks());
        while t0.elapsed() < Duration::from_secs(seconds) {
            if scrape {
                get(sidecar.addr, "/metrics").unwrap();
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        let cpu = (sidecar.cpu_ticks() - c0) as f64 / hz;
        let wall = t0.elapsed().as_secs_f64();
        let what = if scrape {
            "with one /metrics scrape per second"
        } else {
            "collection only"
        };
        println!("CPU, {n} databases, --interval 1s, {what}: {:.2}% of one core ({cpu:.2} s CPU in {wall:.1} s)", 100.0 * cpu / wall);
    }
    println!(
        "  resident memory: VmRSS {}, peak VmHWM {}",
        sidecar.proc_status("VmRSS:"),
        sidecar.proc_status("VmHWM:")
    );
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we do not support.
    let root = std::env::temp_dir().join(format!("walwatch-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    scrape_bench(&root);
    cpu_bench(&root);
    let _ = std::fs::remove_dir_all(&root);
}

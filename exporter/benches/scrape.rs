//! Benchmark of the real `walwatch` sidecar (`cargo bench -p walwatch-exporter --bench scrape`).
//!
//! 1. 100, 1,000 and 10,000 synthetic databases (database, `-wal`, `-shm` with an initialized
//!    wal-index, and a stats file with non-zero counters), each scraped `SCRAPES` times in the
//!    default series set, with gzip as Prometheus asks and without: median and p90 scrape time,
//!    response size plain and gzip'd, series, the sidecar's collection and render time, resident
//!    memory (VmRSS after the scrapes, peak VmHWM), `/healthz` latency while a scrape is being
//!    served, and peak memory under `PARALLEL` simultaneous slow readers. One table at the end;
//!    then the detailed series set at 1,000 databases for comparison.
//! 2. 100 databases at `--interval 1s` for `WALWATCH_BENCH_SECONDS` (default 20) seconds: CPU
//!    time (utime + stime from /proc/<pid>/stat) as a share of one core, without scrapes and
//!    then with one scrape per second.
//!
//! `WALWATCH_BENCH_SIZES=100,1000` chooses the sizes; `WALWATCH_BENCH_BIN=PATH` measures
//! another build of `walwatch` (figures side by side); `WALWATCH_BENCH_DETAILED=0` leaves out
//! the detailed row. Figures are printed; nothing is asserted
//! (timings belong here, not in tests).
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use walwatch_exporter::synth;

/// The sidecar under test: this build's, or `WALWATCH_BENCH_BIN` (another build, for figures
/// side by side).
fn walwatch() -> String {
    std::env::var("WALWATCH_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_walwatch").to_owned())
}
const SCRAPES: usize = 30;

struct Sidecar {
    child: Child,
    addr: SocketAddr,
}

impl Sidecar {
    fn start(stats: &Path, interval: &str, extra: &[&str]) -> Self {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new(walwatch())
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
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
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
    request(addr, path, false)
}

/// The whole response (headers and body) of one HTTP/1.0 GET, gzip'd when `gzip`.
fn request(addr: SocketAddr, path: &str, gzip: bool) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    let encoding = if gzip {
        "Accept-Encoding: gzip\r\n"
    } else {
        ""
    };
    write!(s, "GET {path} HTTP/1.0\r\nHost: bench\r\n{encoding}\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// The body of a response.
fn body(response: &[u8]) -> &[u8] {
    let at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |i| i + 4);
    &response[at..]
}

/// Creates `n` databases under `dir` and their stats files in `dir/stats`.
fn populate(dir: &Path, n: usize) -> PathBuf {
    let stats = dir.join("stats");
    std::fs::create_dir_all(&stats).unwrap();
    let db_bytes = synth::database(true);
    let shm = synth::wal_index(250, 100, [0, 100, 250, 0xffff_ffff, 0xffff_ffff]);
    for i in 0..n {
        let db = dir.join(format!("db{i:05}.sqlite"));
        std::fs::write(&db, &db_bytes).unwrap();
        let wal = std::fs::File::create(dir.join(format!("db{i:05}.sqlite-wal"))).unwrap();
        wal.set_len(250 * 4120 + 32).unwrap();
        std::fs::write(dir.join(format!("db{i:05}.sqlite-shm")), &shm).unwrap();
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

/// Figures of one size.
struct Row {
    n: usize,
    detail: &'static str,
    series: String,
    median_ms: f64,
    p90_ms: f64,
    median_plain_ms: f64,
    plain_bytes: usize,
    gzip_bytes: usize,
    collect_ms: f64,
    render_ms: f64,
    healthz_ms: f64,
    rss: String,
    hwm: String,
    parallel_hwm: String,
}

fn kb(s: &str) -> f64 {
    s.trim_end_matches("kB")
        .trim()
        .parse::<f64>()
        .unwrap_or(f64::NAN)
        / 1024.0
}

fn timed(times: &mut Vec<f64>, f: impl FnOnce() -> usize) -> usize {
    let t = Instant::now();
    let n = f();
    times.push(t.elapsed().as_secs_f64() * 1e3);
    n
}

const PARALLEL: usize = 8;

fn scrape_bench(root: &Path, n: usize, detailed: bool) -> Row {
    let dir = root.join(format!("n{n}"));
    let stats = dir.join("stats");
    if !stats.exists() {
        let t = Instant::now();
        populate(&dir, n);
        println!(
            "created {n} databases in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    let extra: &[&str] = if detailed { &["--metrics.detail"] } else { &[] };
    let sidecar = Sidecar::start(&stats, "5s", extra);
    let deadline = Instant::now() + Duration::from_secs(120);
    let first = loop {
        let r = get(sidecar.addr, "/metrics").unwrap();
        if r.starts_with(b"HTTP/1.0 200") || r.starts_with(b"HTTP/1.1 200") {
            break r;
        }
        assert!(Instant::now() < deadline, "no collection after 120 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = String::from_utf8_lossy(body(&first)).into_owned();
    let (mut gz_times, mut plain_times) = (Vec::new(), Vec::new());
    let (mut gzip_bytes, mut plain_bytes) = (0, 0);
    for _ in 0..SCRAPES {
        gzip_bytes = timed(&mut gz_times, || {
            body(&request(sidecar.addr, "/metrics", true).unwrap()).len()
        });
        plain_bytes = timed(&mut plain_times, || {
            body(&get(sidecar.addr, "/metrics").unwrap()).len()
        });
    }
    gz_times.sort_by(f64::total_cmp);
    plain_times.sort_by(f64::total_cmp);
    // /healthz while a gzip'd scrape is being served.
    let addr = sidecar.addr;
    let scraper = std::thread::spawn(move || request(addr, "/metrics", true).unwrap().len());
    std::thread::sleep(Duration::from_millis(5));
    let t = Instant::now();
    get(sidecar.addr, "/healthz").unwrap();
    let healthz_ms = t.elapsed().as_secs_f64() * 1e3;
    scraper.join().unwrap();
    let (rss, hwm) = (sidecar.proc_status("VmRSS:"), sidecar.proc_status("VmHWM:"));
    // PARALLEL clients that ask for the whole response and read it slowly.
    let slow: Vec<_> = (0..PARALLEL)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                write!(s, "GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n").unwrap();
                let mut buf = [0u8; 16 * 1024];
                let mut total = 0;
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break total,
                        Ok(k) => total += k,
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();
    for t in slow {
        t.join().unwrap();
    }
    let last = String::from_utf8_lossy(&get(sidecar.addr, "/metrics").unwrap()).into_owned();
    let seconds = |name: &str| metric(&last, name).parse::<f64>().unwrap_or(f64::NAN) * 1e3;
    Row {
        n,
        detail: if detailed { "detailed" } else { "default" },
        series: metric(&text, "walwatch_exposed_series "),
        median_ms: percentile(&gz_times, 0.5),
        p90_ms: percentile(&gz_times, 0.9),
        median_plain_ms: percentile(&plain_times, 0.5),
        plain_bytes,
        gzip_bytes,
        collect_ms: seconds("walwatch_collection_duration_seconds "),
        render_ms: seconds("walwatch_render_duration_seconds "),
        healthz_ms,
        rss,
        hwm,
        parallel_hwm: sidecar.proc_status("VmHWM:"),
    }
}

fn print_rows(rows: &[Row]) {
    println!(
        "\n{:>6} {:>8} {:>9} {:>10} {:>8} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>9}",
        "dbs",
        "series",
        "set",
        "gzip med",
        "p90",
        "plain med",
        "plain MB",
        "gzip MB",
        "collect",
        "render",
        "healthz",
        "RSS MB",
        "HWM MB",
        "HWM par."
    );
    for r in rows {
        println!(
            "{:>6} {:>8} {:>9} {:>8.1}ms {:>6.1}ms {:>8.1}ms {:>9.2} {:>8.2} {:>6.1}ms {:>6.1}ms {:>6.1}ms {:>7.1} {:>7.1} {:>9.1}",
            r.n,
            r.series,
            r.detail,
            r.median_ms,
            r.p90_ms,
            r.median_plain_ms,
            r.plain_bytes as f64 / 1e6,
            r.gzip_bytes as f64 / 1e6,
            r.collect_ms,
            r.render_ms,
            r.healthz_ms,
            kb(&r.rss),
            kb(&r.hwm),
            kb(&r.parallel_hwm),
        );
    }
    println!(
        "(gzip med/p90: {SCRAPES} scrapes with Accept-Encoding: gzip, as Prometheus asks; plain: without; \
         collect/render: the sidecar's walwatch_collection_duration_seconds and \
         walwatch_render_duration_seconds; healthz: /healthz answered while a scrape is served; \
         RSS after the scrapes, HWM its peak, HWM par.: peak after {PARALLEL} parallel slow readers)"
    );
}

fn cpu_bench(root: &Path) {
    let n = 100;
    let seconds: u64 = std::env::var("WALWATCH_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let stats = populate(&root.join("n100"), n);
    let sidecar = Sidecar::start(&stats, "1s", &[]);
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
    let sizes: Vec<usize> = std::env::var("WALWATCH_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1000, 10_000]);
    let mut rows = Vec::new();
    for &n in &sizes {
        rows.push(scrape_bench(&root, n, false));
    }
    let detailed = std::env::var("WALWATCH_BENCH_DETAILED").map_or(true, |v| v != "0");
    if let Some(&n) = sizes.iter().find(|&&n| n == 1000).or(sizes.first()) {
        if detailed {
            rows.push(scrape_bench(&root, n, true));
        }
    }
    print_rows(&rows);
    cpu_bench(&root);
    let _ = std::fs::remove_dir_all(&root);
}

//! The sidecar's HTTP server under hostile or unusual clients (issue 9, attack 6): each test
//! starts a real `walwatch serve` and talks to it over real sockets, with `curl`, `openssl` and
//! (for the last one) a real Prometheus. Time bounds are generous: they prove "did not hang".
//!
//! Needs `curl` and `openssl`; the Prometheus test needs `prometheus` (apt-get install
//! prometheus), and the EMFILE test `prlimit` (util-linux).
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use walwatch_tests::*;

/// What curl got: status code (0 when no HTTP response), headers, body, curl's exit status.
struct Got {
    code: u16,
    headers: String,
    body: Vec<u8>,
    ok: bool,
    stderr: String,
}

fn curl(args: &[&str], url: &str) -> Got {
    static N: AtomicUsize = AtomicUsize::new(0);
    let tmp = std::env::temp_dir().join(format!(
        "walwatch-http-curl-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let out: Output = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o"])
        .arg(tmp.with_extension("body"))
        .arg("-D")
        .arg(tmp.with_extension("head"))
        .args(["-w", "%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let got = Got {
        code: String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        headers: std::fs::read_to_string(tmp.with_extension("head"))
            .unwrap_or_default()
            .to_ascii_lowercase(),
        body: std::fs::read(tmp.with_extension("body")).unwrap_or_default(),
        ok: out.status.success(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let _ = std::fs::remove_file(tmp.with_extension("body"));
    let _ = std::fs::remove_file(tmp.with_extension("head"));
    got
}

/// Starts `walwatch serve` (through `wrapper`, e.g. `prlimit …`, when given) on
/// `<dir>/stats`, and waits until its port accepts connections.
fn start_sidecar(dir: &TempDir, wrapper: &[&str], args: &[&str]) -> Serve {
    let cmd = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(WALWATCH);
            c
        }
        None => Command::new(WALWATCH),
    };
    let stats = dir.path("stats");
    let mut all = vec!["--stats-dir", stats.to_str().unwrap()];
    all.extend_from_slice(args);
    Serve::start_command(cmd, &dir.0, &all)
}

/// Whether the server has closed `s` (reads EOF or an error) within `wait`.
fn closed_within(mut s: &TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a response (e.g. 408) before the close
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true, // reset
        }
    }
}

/// Blocks until `s` is closed by the server, for at most `limit`; returns how long it took.
fn time_to_close(s: &TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    assert!(
        closed_within(s, limit),
        "the server did not close the connection within {limit:?}"
    );
    start.elapsed()
}

/// Writes a few WAL databases with Debian's sqlite3, so /metrics has something to say.
fn databases(dir: &TempDir, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let db = dir.path(&format!("app{i}.db"));
            let out = Command::new("sqlite3")
                .arg(&db)
                .arg(
                    "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1),(2),(3);",
                )
                .output()
                .expect("run sqlite3 (apt-get install sqlite3)");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            db.to_string_lossy().into_owned()
        })
        .collect()
}

mod timeouts {
    //! A client that does not send its request headers in time is closed (slowloris).
    use super::*;

    #[test]
    fn a_half_sent_request_is_closed_after_the_header_timeout_and_not_before() {
        let dir = TempDir::new("slow");
        let s = start_sidecar(&dir, &[], &["--web.header-timeout", "1s"]);
        let mut slow = TcpStream::connect(s.addr).unwrap();
        slow.write_all(b"GET /metr").unwrap();
        let took = time_to_close(&slow, Duration::from_secs(15));
        assert!(
            took >= Duration::from_millis(900),
            "closed after {took:?}, before the 1 s timeout"
        );
        println!("half-sent request closed after {took:?} (timeout 1 s)");

        // A keep-alive connection idle after its response is closed by the same bound.
        let mut idle = TcpStream::connect(s.addr).unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let took = time_to_close(&idle, Duration::from_secs(15));
        assert!(
            took >= Duration::from_millis(900),
            "idle keep-alive closed after {took:?}"
        );

        // A silent client (connected, nothing sent) too.
        let silent = TcpStream::connect(s.addr).unwrap();
        time_to_close(&silent, Duration::from_secs(15));
        assert_eq!(curl(&[], &s.url("http", "/healthz")).code, 200);
    }
}

mod healthz {
    //! A collection stuck on a file stops neither the HTTP server nor SIGTERM, and `/healthz`
    //! says so (issue 9, attack 5: a FIFO passed as `--db`).
    use super::*;

    #[test]
    fn a_collection_stuck_on_a_fifo_fails_healthz_but_not_the_server() {
        let dir = TempDir::new("stuck");
        let fifo = dir.path("fifo.db");
        let out = Command::new("mkfifo")
            .arg(&fifo)
            .output()
            .expect("run mkfifo");
        assert!(out.status.success());
        let mut s = start_sidecar(
            &dir,
            &[],
            &["--interval", "1s", "--db", fifo.to_str().unwrap()],
        );
        // Limit: 3 x 1 s + 10 s = 13 s. Either the collector skips the FIFO (healthy), or it
        // is stuck on it and /healthz must say so once the limit has passed.
        let verdict = wait_within("/healthz to settle", Duration::from_secs(40), || {
            let health = curl(&[], &s.url("http", "/healthz"));
            let metrics = curl(&[], &s.url("http", "/metrics"));
            assert!(
                matches!(metrics.code, 200 | 503) && matches!(health.code, 200 | 503),
                "the server did not answer: /metrics {} /healthz {}",
                metrics.stderr,
                health.stderr
            );
            let body = String::from_utf8_lossy(&health.body).into_owned();
            match health.code {
                200 => (metrics.code == 200).then_some(body),
                _ if body.contains("has been running for") => Some(body),
                _ => None,
            }
        });
        println!("/healthz with a FIFO as --db: {verdict}");
        let pid = s.pid().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        wait_within(
            "walwatch to exit on SIGTERM",
            Duration::from_secs(10),
            || (!s.alive()).then_some(()),
        );
    }
}

mod limits {
    //! Connections beyond `--web.max-connections` are refused while `/metrics` still answers;
    //! out of file descriptors, the server backs off and its log stays bounded.
    use super::*;

    #[test]
    fn idle_connections_beyond_the_cap_give_way_and_metrics_still_answers() {
        let dir = TempDir::new("cap");
        let s = start_sidecar(&dir, &[], &["--web.max-connections", "8"]);
        let idle: Vec<TcpStream> = (0..28)
            .map(|_| TcpStream::connect(s.addr).unwrap())
            .collect();
        // Each scrape takes the slot of the oldest idle connection.
        for _ in 0..3 {
            let got = curl(&[], &s.url("http", "/metrics"));
            assert_eq!(got.code, 200, "{}", got.stderr);
            assert!(String::from_utf8_lossy(&got.body).contains("walwatch_"));
        }
        let closed = wait_within(
            "extra connections to be closed",
            Duration::from_secs(10),
            || {
                let closed = idle
                    .iter()
                    .filter(|c| closed_within(c, Duration::from_millis(20)))
                    .count();
                (closed >= 20).then_some(closed)
            },
        );
        // At most 8 slots: of the 28 idle ones, at least 20 (plus one per scrape) were closed.
        println!("{closed} of 28 idle connections closed at a cap of 8");
        assert!(closed <= 28);
        let alive = idle.len() - closed;
        assert!(
            alive <= 8,
            "{alive} idle connections still open beyond a cap of 8"
        );
    }

    #[test]
    fn at_emfile_the_server_backs_off_logs_a_few_lines_and_recovers() {
        if Command::new("prlimit").arg("--version").output().is_err() {
            panic!("prlimit (util-linux) is needed");
        }
        let dir = TempDir::new("emfile");
        // 40 descriptors: about 30 connections exhaust them (the default cap, 64, is higher).
        let mut s = start_sidecar(&dir, &["prlimit", "--nofile=40:40", "--"], &[]);
        let pid = s.pid();
        let cpu_before = cpu_seconds(pid);
        let start = Instant::now();
        let flood: Vec<TcpStream> = (0..100)
            .map(|_| TcpStream::connect(s.addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_secs(4));
        assert!(s.alive(), "walwatch died at EMFILE: {}", s.log());
        let during = curl(&[], &s.url("http", "/metrics"));
        let cpu = cpu_seconds(pid) - cpu_before;
        let wall = start.elapsed().as_secs_f64();
        drop(flood);
        let got = wait_within("/metrics after the flood", Duration::from_secs(20), || {
            let got = curl(&[], &s.url("http", "/metrics"));
            (got.code == 200).then_some(got)
        });
        assert!(String::from_utf8_lossy(&got.body).contains("walwatch_"));
        let log = s.log();
        let lines = log.lines().count();
        println!(
            "EMFILE: {lines} log lines, {cpu:.2} s CPU in {wall:.1} s, /metrics during the flood: {}\n{log}",
            during.code
        );
        assert!(log.contains("cannot accept connections"), "{log}");
        assert!(lines < 50, "{lines} log lines at EMFILE:\n{log}");
        // A spinning accept loop burns a whole core; backing off uses a fraction of one.
        assert!(
            cpu < 0.5 * wall,
            "{cpu:.2} s CPU in {wall:.1} s: the accept loop spins"
        );
        assert!(s.alive());
    }

    /// User + system CPU time of a process, from /proc/PID/stat.
    fn cpu_seconds(pid: u32) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split(' ').collect();
        // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0
    }
}

mod gzip {
    use super::*;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("a gzip body");
        out
    }

    #[test]
    fn a_gzip_scrape_is_smaller_and_identical_after_decompression() {
        let dir = TempDir::new("gzip");
        let dbs = databases(&dir, 3);
        let mut args = vec!["--interval", "1h"]; // one collection: every scrape renders it
        for db in &dbs {
            args.extend(["--db", db.as_str()]);
        }
        let s = start_sidecar(&dir, &[], &args);
        for path in ["/metrics", "/status"] {
            let plain = curl(&[], &s.url("http", path));
            let gz = curl(&["-H", "Accept-Encoding: gzip"], &s.url("http", path));
            assert_eq!((plain.code, gz.code), (200, 200));
            assert!(
                !plain.headers.contains("content-encoding"),
                "{}",
                plain.headers
            );
            assert!(
                gz.headers.contains("content-encoding: gzip"),
                "{}",
                gz.headers
            );
            assert!(
                gz.headers.contains("vary: accept-encoding"),
                "{}",
                gz.headers
            );
            assert!(
                plain.headers.contains("vary: accept-encoding"),
                "{}",
                plain.headers
            );
            let unzipped = gunzip(&gz.body);
            // The process_* figures and the render time of the previous response change from one
            // response to the next; everything else is the same collection.
            let stable = |body: &[u8]| -> String {
                String::from_utf8_lossy(body)
                    .lines()
                    .filter(|l| {
                        !l.starts_with("process_")
                            && !l.starts_with("walwatch_render_duration_seconds ")
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            assert_eq!(
                stable(&unzipped),
                stable(&plain.body),
                "{path}: gzip body differs after decompression"
            );
            assert!(gz.body.len() < plain.body.len());
            println!(
                "{path}: {} bytes plain, {} gzip ({:.1}x)",
                plain.body.len(),
                gz.body.len(),
                plain.body.len() as f64 / gz.body.len() as f64
            );
        }
        // q=0 refuses gzip; curl --compressed (what browsers and Prometheus do) accepts it.
        let refused = curl(
            &["-H", "Accept-Encoding: gzip;q=0, identity"],
            &s.url("http", "/metrics"),
        );
        assert!(
            !refused.headers.contains("content-encoding"),
            "{}",
            refused.headers
        );
        let compressed = curl(&["--compressed"], &s.url("http", "/metrics"));
        assert!(compressed.headers.contains("content-encoding: gzip"));
        assert!(String::from_utf8_lossy(&compressed.body).contains("walwatch_up"));
    }
}

mod tls {
    //! TLS and basic auth through `--web.config.file`, with a certificate made by `openssl`.
    use super::*;

    pub struct Pki {
        pub cert: PathBuf,
        pub key: PathBuf,
    }

    /// A self-signed P-256 certificate for localhost and 127.0.0.1.
    pub fn self_signed(dir: &TempDir, name: &str) -> Pki {
        let (cert, key) = (
            dir.path(&format!("{name}.crt")),
            dir.path(&format!("{name}.key")),
        );
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .args(["-days", "2", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Pki { cert, key }
    }

    pub const USER: &str = "prometheus";
    pub const PASSWORD: &str = "correct horse battery staple";

    /// A web config with TLS and one user (bcrypt cost 10, as htpasswd -B -C 10 makes).
    pub fn web_config(dir: &TempDir, pki: &Pki) -> PathBuf {
        let hash = bcrypt::hash(PASSWORD, 10).unwrap();
        let path = dir.path("web.yml");
        std::fs::write(
            &path,
            format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\n\
                 http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n\
                 basic_auth_users:\n  {USER}: '{hash}'\n",
                pki.cert.display(),
                pki.key.display()
            ),
        )
        .unwrap();
        path
    }

    #[test]
    fn curl_over_tls_with_basic_auth_and_401_without() {
        let dir = TempDir::new("tls");
        let pki = self_signed(&dir, "server");
        let config = web_config(&dir, &pki);
        let s = start_sidecar(&dir, &[], &["--web.config.file", config.to_str().unwrap()]);
        let ca = pki.cert.to_str().unwrap();
        let auth = format!("{USER}:{PASSWORD}");

        let first = Instant::now();
        let got = curl(&["--cacert", ca, "-u", &auth], &s.url("https", "/metrics"));
        let first = first.elapsed();
        assert_eq!(got.code, 200, "{}{}", got.stderr, s.log());
        assert!(String::from_utf8_lossy(&got.body).contains("walwatch_up"));
        assert!(
            got.headers.contains("x-content-type-options: nosniff"),
            "{}",
            got.headers
        );
        // Cached: the same credentials again (no new bcrypt check needed, same answer).
        let again = Instant::now();
        assert_eq!(
            curl(&["--cacert", ca, "-u", &auth], &s.url("https", "/status")).code,
            200
        );
        println!(
            "TLS + basic auth (bcrypt cost 10): first scrape {first:?} (curl, handshake, bcrypt), cached {:?}",
            again.elapsed()
        );

        for (what, args) in [
            (
                "wrong password",
                vec!["--cacert", ca, "-u", "prometheus:Tr0ub4dor&3"],
            ),
            (
                "unknown user",
                vec!["--cacert", ca, "-u", "root:correct horse battery staple"],
            ),
            ("no credentials", vec!["--cacert", ca]),
        ] {
            for path in ["/metrics", "/healthz"] {
                let got = curl(&args, &s.url("https", path));
                assert_eq!(got.code, 401, "{what} {path}: {}", got.stderr);
                assert!(
                    got.headers.contains("www-authenticate: basic"),
                    "{}",
                    got.headers
                );
            }
        }
        // Plain HTTP to the TLS port gets no metrics, but a 400 that says what is wrong.
        let plain = curl(&[], &s.url("http", "/metrics"));
        assert_eq!(
            plain.code, 400,
            "plain HTTP to the TLS port: {}",
            plain.stderr
        );
        let body = String::from_utf8_lossy(&plain.body);
        assert!(
            body.contains("HTTPS") && !body.contains("walwatch_"),
            "{body}"
        );
        // Without the CA, curl refuses the self-signed certificate.
        let untrusted = curl(&["-u", &auth], &s.url("https", "/metrics"));
        assert!(!untrusted.ok && untrusted.code == 0);
        // And the server still serves.
        assert_eq!(
            curl(&["--cacert", ca, "-u", &auth], &s.url("https", "/metrics")).code,
            200
        );
    }

    /// A client certificate (CA:FALSE, clientAuth) signed by `ca`.
    fn client_cert(dir: &TempDir, ca: &Pki) -> Pki {
        let (csr, cert, key, ext) = (
            dir.path("client.csr"),
            dir.path("client.crt"),
            dir.path("client.key"),
            dir.path("client.ext"),
        );
        std::fs::write(
            &ext,
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        let run = |cmd: &mut Command| {
            let out = cmd.output().expect("run openssl");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(Command::new("openssl")
            .args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .args(["-subj", "/CN=scraper", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&csr));
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&ca.cert)
            .arg("-CAkey")
            .arg(&ca.key)
            .arg("-CAcreateserial")
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&cert));
        Pki { cert, key }
    }

    #[test]
    fn mutual_tls_requires_a_client_certificate_signed_by_the_client_ca() {
        let dir = TempDir::new("mtls");
        let server = self_signed(&dir, "server");
        let clients_ca = self_signed(&dir, "clients-ca");
        let client = client_cert(&dir, &clients_ca);
        let config = dir.path("web.yml");
        std::fs::write(
            &config,
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients-ca.crt\n  min_version: TLS13\n",
        )
        .unwrap();
        let s = start_sidecar(&dir, &[], &["--web.config.file", config.to_str().unwrap()]);
        let ca = server.cert.to_str().unwrap();
        let with_cert = curl(
            &[
                "--cacert",
                ca,
                "--cert",
                client.cert.to_str().unwrap(),
                "--key",
                client.key.to_str().unwrap(),
            ],
            &s.url("https", "/metrics"),
        );
        assert_eq!(with_cert.code, 200, "{}{}", with_cert.stderr, s.log());
        let without = curl(&["--cacert", ca], &s.url("https", "/metrics"));
        assert_ne!(without.code, 200, "served without a client certificate");
        // A certificate the client CA did not sign (the server's own) is refused too.
        let wrong = curl(
            &[
                "--cacert",
                ca,
                "--cert",
                server.cert.to_str().unwrap(),
                "--key",
                server.key.to_str().unwrap(),
            ],
            &s.url("https", "/metrics"),
        );
        assert_ne!(wrong.code, 200, "served with a certificate from another CA");
        // TLS 1.2 is below min_version.
        let old = curl(
            &["--cacert", ca, "--tlsv1.2", "--tls-max", "1.2"],
            &s.url("https", "/metrics"),
        );
        assert_eq!(old.code, 0, "TLS 1.2 accepted despite min_version: TLS13");
    }

    #[test]
    fn prometheus_scrapes_over_tls_with_basic_auth() {
        if Command::new("prometheus")
            .arg("--version")
            .output()
            .is_err()
        {
            panic!("prometheus is needed (apt-get install prometheus)");
        }
        let dir = TempDir::new("prom");
        let pki = self_signed(&dir, "server");
        let config = web_config(&dir, &pki);
        let s = start_sidecar(
            &dir,
            &[],
            &[
                "--web.config.file",
                config.to_str().unwrap(),
                "--interval",
                "1s",
            ],
        );
        let prom = Prometheus::start(
            &dir.0,
            &format!(
                "global:\n  scrape_interval: 1s\n\
                 scrape_configs:\n  - job_name: walwatch\n    scheme: https\n    tls_config:\n      ca_file: {}\n    \
                 basic_auth:\n      username: {USER}\n      password: '{PASSWORD}'\n    \
                 static_configs:\n      - targets: ['{}']\n",
                pki.cert.display(),
                s.addr
            ),
        );
        let query = |expr: &str| -> Option<serde_json::Value> {
            let got = curl(
                &["--get", "--data-urlencode", &format!("query={expr}")],
                &prom.url("/api/v1/query"),
            );
            serde_json::from_slice(&got.body).ok()
        };
        let started = Instant::now();
        let up = (|| {
            while started.elapsed() < Duration::from_secs(60) {
                if let Some(v) = query("up{job=\"walwatch\"}") {
                    if let Some(sample) = v["data"]["result"].as_array().and_then(|r| r.first()) {
                        if sample["value"][1] == "1" {
                            return Some(sample.clone());
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            None
        })();
        assert!(
            up.is_some(),
            "Prometheus never scraped walwatch (up != 1) within 60 s\nprometheus: {}\nwalwatch: {}\ntargets: {:?}",
            prom.log(),
            s.log(),
            curl(&[], &prom.url("/api/v1/targets")).body.len()
        );
        // And it stores what walwatch exports.
        let v = wait_within(
            "walwatch_ metrics in Prometheus",
            Duration::from_secs(20),
            || {
                query("count({__name__=~\"walwatch_.+\"})").filter(|v| {
                    v["data"]["result"]
                        .as_array()
                        .is_some_and(|r| !r.is_empty())
                })
            },
        );
        println!(
            "Prometheus over TLS + basic auth: up = 1 after {:?}; {}",
            started.elapsed(),
            v["data"]["result"][0]["value"]
        );
    }
}

mod bad_config {
    //! A bad `--web.config.file` stops `serve` at startup with a message naming the problem.
    use super::*;

    fn serve_with(dir: &TempDir, yaml: &str) -> String {
        let config = dir.path("web.yml");
        std::fs::write(&config, yaml).unwrap();
        let mut child = Command::new(WALWATCH)
            .args(["serve", "--listen", "127.0.0.1:0", "--web.config.file"])
            .arg(&config)
            .arg("--stats-dir")
            .arg(dir.path("stats"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_within("walwatch to exit", Duration::from_secs(20), || {
            child.try_wait().unwrap()
        });
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            stderr.contains(config.to_str().unwrap()) || stderr.contains("tls_server_config"),
            "{stderr}"
        );
        stderr
    }

    #[test]
    fn unknown_keys_missing_files_and_bad_hashes_are_named() {
        let dir = TempDir::new("badcfg");
        let pki = tls::self_signed(&dir, "server");
        let (cert, key) = (pki.cert.display(), pki.key.display());
        for (yaml, expect) in [
            (format!("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  cert_fiel: x\n"), vec!["cert_fiel"]),
            (format!("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"), vec!["cipher_suites", "not supported"]),
            (format!("tls_server_config:\n  cert_file: /nonexistent/tls.crt\n  key_file: {key}\n"), vec!["cert_file", "/nonexistent/tls.crt"]),
            (format!("tls_server_config:\n  cert_file: {cert}\n  key_file: {cert}\n"), vec!["key_file"]),
            ("basic_auth_users:\n  alice: hunter2\n".to_owned(), vec!["basic_auth_users.alice", "bcrypt", "htpasswd"]),
            ("tls_server_config: [\n".to_owned(), vec!["invalid web config file"]),
        ] {
            let stderr = serve_with(&dir, &yaml);
            for e in expect {
                assert!(stderr.contains(e), "expected `{e}` in: {stderr}");
            }
        }
        let out = Command::new(WALWATCH)
            .args(["serve", "--listen", "127.0.0.1:0", "--web.config.file"])
            .arg(dir.path("missing.yml"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr.contains("cannot read web config file") && stderr.contains("missing.yml"),
            "{stderr}"
        );
        for (flag, value) in [
            ("--web.max-connections", "0"),
            ("--web.header-timeout", "2h"),
        ] {
            let out = Command::new(WALWATCH)
                .args(["serve", "--listen", "127.0.0.1:0", flag, value])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{flag} {value}: {stderr}");
            assert!(stderr.contains(flag), "{stderr}");
        }
    }
}

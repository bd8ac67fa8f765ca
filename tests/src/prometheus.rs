//! A real Prometheus server, for the tests that have one scrape a sidecar.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{free_addr, Proc};

/// `prometheus` (on `PATH`: `apt-get install prometheus`) on a free loopback port; killed when
/// dropped.
pub struct Prometheus {
    pub addr: SocketAddr,
    /// Its stderr: everything it logged.
    pub log: PathBuf,
    _proc: Proc,
}

impl Prometheus {
    /// Starts it with `config` as its `prometheus.yml`; that file, its data (`data/`) and its
    /// log (`prometheus.log`) go in `dir`, which is created.
    pub fn start(dir: &Path, config: &str) -> Self {
        std::fs::create_dir_all(dir.join("data"))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let addr = free_addr();
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start prometheus (apt-get install prometheus)");
        Self {
            addr,
            log,
            _proc: Proc(child),
        }
    }

    /// `http://<addr><path>`, e.g. `/api/v1/query`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

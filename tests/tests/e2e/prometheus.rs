//! The Grafana dashboard and the alert rules (`dashboards/`) against a real Prometheus scraping
//! the real sidecar while Python writes and reads through the shim: every panel expression
//! returns data, every alert rule loads and evaluates, `promtool` checks and unit-tests the
//! rules. Also checks the deployment examples (`examples/systemd`, `examples/kubernetes`) for
//! syntax and for flags the sidecar really has. Needs `prometheus`, `promtool`, `curl`,
//! `python3-yaml` (and `systemd` for `systemd-analyze verify`, skipped with a notice without it).

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use walwatch_tests::*;

/// Metrics the checkpoint controller adds. Until `walwatch serve --help` offers `--hard-limit`
/// (the controller has not landed), expressions on them may return nothing.
const CONTROLLER_METRICS: [&str; 5] = [
    "walwatch_controller_actions_total",
    "walwatch_wal_soft_limit_bytes",
    "walwatch_wal_hard_limit_bytes",
    "walwatch_wal_growth_bytes_per_second",
    "walwatch_controller_observe_only",
];

/// Grafana's variables and what the test puts in their place: every database, instance and job
/// (the dashboard's "All" is `.*`), and intervals that suit a 1 s scrape interval.
const GRAFANA_VARIABLES: [(&str, &str); 6] = [
    ("$__rate_interval", "10s"),
    ("$__interval", "1s"),
    ("$__range", "1m"),
    ("$job", ".*"),
    ("$instance", ".*"),
    ("$db", ".*"),
];

fn root_file(path: &str) -> PathBuf {
    workspace_root().join(path)
}

fn dashboard() -> Value {
    let path = root_file("dashboards/walwatch.json");
    let text = std::fs::read_to_string(&path).expect("read dashboards/walwatch.json");
    serde_json::from_str(&text).expect("dashboards/walwatch.json is JSON")
}

/// Parses YAML with Debian's python3-yaml (no YAML crate in the workspace): one JSON value per
/// document.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)",
        ])
        .arg(path)
        .output()
        .expect("run /usr/bin/python3");
    assert_ok(&out);
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("YAML as JSON")
        .as_array()
        .cloned()
        .unwrap()
}

fn alerts() -> Value {
    yaml_documents(&root_file("dashboards/alerts.yml")).remove(0)
}

fn serve_help() -> String {
    let out = Command::new(WALWATCH)
        .args(["serve", "--help"])
        .output()
        .expect("walwatch serve --help");
    assert_ok(&out);
    stdout(&out)
}

/// Whether the sidecar has the checkpoint controller (its flags are in `serve --help`).
fn controller_landed(help: &str) -> bool {
    help.contains("--hard-limit")
}

/// The long flags `walwatch serve --help` lists.
fn serve_flags(help: &str) -> BTreeSet<String> {
    help.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.split('=').next().unwrap().to_string())
        .collect()
}

/// Every panel of the dashboard, including those inside collapsed rows.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

/// (panel title / refId, expression) of every panel target.
fn panel_expressions(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                out.push((
                    format!("{} / {}", p["title"].as_str().unwrap_or("?"), t["refId"]),
                    expr.to_string(),
                ));
            }
        }
    }
    out
}

/// The expression as Grafana would send it, with the test's values for its variables.
fn substitute(expr: &str) -> String {
    let mut e = expr.to_string();
    for (var, value) in GRAFANA_VARIABLES {
        let braced = format!("${{{}}}", &var[1..]);
        e = e.replace(&braced, value).replace(var, value);
    }
    assert!(!e.contains('$'), "unknown Grafana variable left in {e}");
    e
}

/// `walwatch_…` metric names an expression uses.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut i = 0;
    while let Some(pos) = expr[i..].find("walwatch_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && ident(bytes[end]) {
            end += 1;
        }
        if start == 0 || !ident(bytes[start - 1]) {
            out.insert(expr[start..end].to_string());
        }
        i = end.max(start + 1);
    }
    out
}

/// Names a scrape of the sidecar can hold: each `# TYPE` family, with a histogram's series.
fn exposed_names(metrics: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in metrics.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            out.insert(name.to_string());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    out
}

/// A running Prometheus' HTTP API.
struct PromApi {
    base: String,
}

impl PromApi {
    /// `data.result` of an instant query, or the error Prometheus gave.
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let url = format!("{}/api/v1/query", self.base);
        // curl -f hides the error body of a 400: ask without -f through a second call on error.
        let body = http_get(&url, &[("query", expr)]).ok_or_else(|| {
            let out = Command::new("curl")
                .args(["-s", "--get", &url, "--data-urlencode"])
                .arg(format!("query={expr}"))
                .output()
                .expect("curl");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if v["status"] != "success" {
            return Err(body);
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    fn get(&self, path: &str) -> Option<Value> {
        http_get(&format!("{}{path}", self.base), &[]).and_then(|b| serde_json::from_str(&b).ok())
    }
}

/// Polls `ok` every 200 ms until it holds; panics with `what` (and `log`) after `limit`.
fn wait_until(what: &str, limit: Duration, log: &Path, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}; log {}:\n{}",
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn sample_value(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[test]
fn dashboard_panels_and_alert_rules_work_against_real_prometheus() {
    dashboard_and_alerts_against_real_prometheus(false);
}

/// The same with `--metrics.detail`: the detailed series set answers the same queries.
#[test]
fn dashboard_panels_and_alert_rules_work_in_detailed_mode() {
    dashboard_and_alerts_against_real_prometheus(true);
}

fn dashboard_and_alerts_against_real_prometheus(detailed: bool) {
    let started = Instant::now();
    let help = serve_help();
    let strict = controller_landed(&help);
    if !strict {
        println!(
            "NOTICE: `walwatch serve --help` has no --hard-limit: the checkpoint controller has not \
             landed; expressions on {CONTROLLER_METRICS:?} may return nothing"
        );
    }
    let s = Scratch::on_tmpfs();
    let db = s.db("app.db");
    assert_ok(&s.python("init", &db, &[]));

    // The sidecar, with low limits so that the controller acts during the run.
    let db_arg = db.to_str().unwrap();
    let stats = s.stats_dir.to_str().unwrap();
    let mut args = vec!["--interval", "1s", "--stats-dir", stats, "--db", db_arg];
    if strict {
        args.extend(["--soft-limit", "1MiB", "--hard-limit", "4MiB"]);
    }
    if detailed {
        args.push("--metrics.detail");
    }
    let sidecar = Serve::start(&s.dir.0, &args);
    let sidecar_log = sidecar.log.clone();
    let sidecar_url = sidecar.url("http", "");
    wait_until(
        "the sidecar's /healthz",
        Duration::from_secs(30),
        &sidecar_log,
        || http_get(&format!("{sidecar_url}/healthz"), &[]).is_some(),
    );

    // Prometheus scraping it every second, evaluating the alert rules every second.
    let prometheus = Prometheus::start(
        &s.dir.path("prometheus"),
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: walwatch\n    static_configs:\n      - targets: ['{}']\n",
            root_file("dashboards/alerts.yml").display(),
            sidecar.addr
        ),
    );
    let prom_log = prometheus.log.clone();
    let prom = PromApi {
        base: prometheus.url(""),
    };

    // The workload: a writer with auto-checkpoints (PASSIVE every 200 pages) for longer than
    // the test needs (killed at the end), and a reader that pins the WAL for a while.
    let mut writer = s.python_command(
        "runaway",
        &db,
        &[
            "--seconds",
            "60",
            "--rows",
            "10",
            "--pause-ms",
            "10",
            "--autocheckpoint",
            "200",
        ],
    );
    let _writer = Proc(
        writer
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn writer"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let mut reader = Proc(s.spawn_python("hold-read", &db, &[]));
    let mut reader_out = BufReader::new(reader.0.stdout.take().unwrap());
    let mut reader_in = reader.0.stdin.take().unwrap();
    let line = read_line(&mut reader_out);
    assert!(line.starts_with("READING"), "reader: {line}");
    let reading_since = Instant::now();

    wait_until(
        "Prometheus to scrape the sidecar (up == 1)",
        Duration::from_secs(60),
        &prom_log,
        || {
            prom.query("up{job=\"walwatch\"} == 1")
                .is_ok_and(|r| !r.is_empty())
        },
    );
    let up_at = Instant::now();
    // The reader pins the WAL for 6 s (the writer passes both limits meanwhile), then leaves.
    std::thread::sleep(Duration::from_secs(6).saturating_sub(reading_since.elapsed()));
    writeln!(reader_in).unwrap();
    assert_eq!(read_line(&mut reader_out), "DONE");
    // At least 12 s of scrapes: every rate() window (10 s) holds ten samples.
    std::thread::sleep(Duration::from_secs(12).saturating_sub(up_at.elapsed()));

    // Every metric name the dashboard and the rules use is one the sidecar exposes.
    let metrics = http_get(&format!("{sidecar_url}/metrics"), &[]).expect("/metrics");
    let exposed = exposed_names(&metrics);
    let d = dashboard();
    let rules = alerts();
    let mut used = BTreeSet::new();
    for (_, expr) in panel_expressions(&d) {
        used.extend(metric_names(&expr));
    }
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            used.extend(metric_names(rule["expr"].as_str().unwrap()));
        }
    }
    let unknown: Vec<&String> = used
        .iter()
        .filter(|n| !exposed.contains(*n))
        .filter(|n| strict || !CONTROLLER_METRICS.contains(&n.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "metric names not exposed by the sidecar: {unknown:?}"
    );

    let detailed_flag = if detailed {
        "walwatch_metrics_detailed 1\n"
    } else {
        "walwatch_metrics_detailed 0\n"
    };
    assert!(metrics.contains(detailed_flag), "expected {detailed_flag}");

    // Every panel target returns data.
    let mut failed = Vec::new();
    let mut report = Vec::new();
    for (name, expr) in panel_expressions(&d) {
        let q = substitute(&expr);
        match prom.query(&q) {
            Ok(result) if !result.is_empty() => {
                let numbers = result.iter().filter(|r| !sample_value(r).is_nan()).count();
                report.push(format!(
                    "  ok   {name}: {} series, {numbers} not NaN",
                    result.len()
                ));
            }
            Ok(_) => {
                let tolerated = !strict
                    && metric_names(&expr)
                        .iter()
                        .any(|m| CONTROLLER_METRICS.contains(&m.as_str()));
                if tolerated {
                    println!("NOTICE: no data yet (controller not landed): {name}: {q}");
                    report.push(format!("  --   {name}: no data (tolerated)"));
                } else {
                    report.push(format!("  FAIL {name}: no data"));
                    failed.push(format!("{name}: no data: {q}"));
                }
            }
            Err(e) => {
                report.push(format!("  FAIL {name}: error"));
                failed.push(format!("{name}: {e}: {q}"));
            }
        }
    }
    // The template variables' label_values(selector, label) find values.
    for var in d["templating"]["list"].as_array().unwrap() {
        let Some(def) = var["definition"].as_str() else {
            continue;
        };
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {}: not label_values(…): {def}", var["name"]));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        let (selector, label) = (substitute(selector.trim()), label.trim());
        let found = prom
            .query(&selector)
            .unwrap_or_default()
            .iter()
            .filter(|r| r["metric"][label].is_string())
            .count();
        if found == 0 {
            failed.push(format!(
                "variable {}: no {label} in {selector}",
                var["name"]
            ));
        }
        report.push(format!(
            "  var  ${}: {found} series",
            var["name"].as_str().unwrap()
        ));
    }
    println!("dashboard expressions:\n{}", report.join("\n"));
    assert!(
        failed.is_empty(),
        "{} of the dashboard's expressions returned nothing or failed:\n{}\nsidecar log:\n{}",
        failed.len(),
        failed.join("\n"),
        std::fs::read_to_string(&sidecar_log).unwrap_or_default()
    );

    // Prometheus loaded every group and alert of the rule file, and evaluates them without error.
    let loaded = prom.get("/api/v1/rules").expect("/api/v1/rules");
    let mut loaded_rules: BTreeMap<(String, String), Value> = BTreeMap::new();
    for g in loaded["data"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            loaded_rules.insert(
                (
                    g["name"].as_str().unwrap().to_string(),
                    r["name"].as_str().unwrap().to_string(),
                ),
                r.clone(),
            );
        }
    }
    let mut rule_problems = Vec::new();
    let mut states = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        let gname = group["name"].as_str().unwrap();
        for rule in group["rules"].as_array().unwrap() {
            let alert = rule["alert"].as_str().expect("only alerting rules");
            match loaded_rules.get(&(gname.to_string(), alert.to_string())) {
                None => rule_problems.push(format!("{gname}/{alert}: not loaded")),
                Some(r) if r["health"] == "err" => {
                    rule_problems.push(format!("{gname}/{alert}: {}", r["lastError"]))
                }
                Some(r) => states.push(format!("{alert}={}", r["state"].as_str().unwrap_or("?"))),
            }
        }
    }
    assert!(rule_problems.is_empty(), "alert rules: {rule_problems:?}");
    println!("alert states at the end of the run: {}", states.join(", "));
    println!(
        "{} mode: took {:.1} s",
        if detailed { "detailed" } else { "default" },
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn promtool_checks_and_unit_tests_the_alert_rules() {
    for args in [
        ["check", "rules", "dashboards/alerts.yml"],
        ["test", "rules", "dashboards/alerts_test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(workspace_root())
            .output()
            .expect("run promtool (apt-get install prometheus)");
        assert_ok(&out);
    }
}

#[test]
fn every_alert_has_unit_tests_firing_and_silent_and_says_what_to_do() {
    let rules = alerts();
    let tests = yaml_documents(&root_file("dashboards/alerts_test.yml")).remove(0);
    let mut firing = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for t in tests["tests"].as_array().unwrap() {
        for a in t["alert_rule_test"].as_array().unwrap() {
            let name = a["alertname"].as_str().unwrap().to_string();
            if a["exp_alerts"].as_array().is_some_and(|e| !e.is_empty()) {
                firing.insert(name);
            } else {
                silent.insert(name);
            }
        }
    }
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let alert = rule["alert"].as_str().unwrap();
            assert!(firing.contains(alert), "{alert}: no test where it fires");
            assert!(
                silent.contains(alert),
                "{alert}: no test where it stays silent"
            );
            let summary = rule["annotations"]["summary"].as_str().unwrap_or("");
            let description = rule["annotations"]["description"].as_str().unwrap_or("");
            assert!(!summary.is_empty(), "{alert}: no summary");
            assert!(
                description.len() > 100,
                "{alert}: the description must say what to do"
            );
            assert!(
                rule["labels"]["severity"].is_string(),
                "{alert}: no severity"
            );
        }
    }
}

#[test]
fn dashboard_is_importable_and_every_panel_has_a_unit() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    assert_eq!(d["uid"], "walwatch");
    let vars: BTreeMap<&str, &Value> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    assert_eq!(vars["datasource"]["type"], "datasource");
    assert_eq!(vars["datasource"]["query"], "prometheus");
    for name in ["job", "instance", "db"] {
        let v = vars[name];
        assert_eq!(v["type"], "query", "{name}");
        assert!(
            v["definition"]
                .as_str()
                .unwrap()
                .starts_with("label_values("),
            "{name}"
        );
        assert_eq!(v["allValue"], ".*", "{name}: All must be a regex");
    }
    let mut ids = BTreeSet::new();
    let mut rows = 0;
    for p in panels(&d) {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "{title}: duplicate id"
        );
        assert!(p["gridPos"]["w"].as_u64().unwrap() <= 24, "{title}");
        if p["type"] == "row" {
            rows += 1;
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
        assert!(!unit.is_empty(), "{title}: no unit");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no target");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            let expr = t["expr"].as_str().unwrap();
            substitute(expr);
            assert!(
                expr.contains("instance=~\"$instance\""),
                "{title}: {expr} ignores $instance"
            );
        }
    }
    assert!(rows >= 6, "rows: {rows}");
}

/// Splits a systemd unit into (section, key, value), joining continuation lines.
fn parse_unit(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        {
            continue;
        }
        if let Some(body) = line.strip_suffix('\\') {
            pending.push_str(body);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        if full.starts_with('[') {
            section = full.trim_matches(|c| c == '[' || c == ']').to_string();
        } else if let Some((k, v)) = full.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        } else {
            panic!("not key=value: {full}");
        }
    }
    out
}

/// `--flag value` pairs of an argument list (every flag of `serve` takes a value).
fn flag_values(args: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a.starts_with("--") {
            let v = it.next().unwrap_or_else(|| panic!("{a} without a value"));
            out.entry(a.clone()).or_default().push(v.clone());
        }
    }
    out
}

fn assert_real_flags(args: &[String], help: &str, what: &str) {
    let flags = serve_flags(help);
    for a in args.iter().filter(|a| a.starts_with("--")) {
        assert!(
            flags.contains(a),
            "{what}: `{a}` is not a flag of `walwatch serve` ({flags:?})"
        );
    }
}

#[test]
fn systemd_unit_verifies_and_grants_what_the_sidecar_needs() {
    let path = root_file("examples/systemd/walwatch.service");
    let text = std::fs::read_to_string(&path).unwrap();
    let help = serve_help();

    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        // verify checks that ExecStart's binary exists: point it at the one we built.
        let dir = TempDir::new("systemd");
        let unit = dir.path("walwatch.service");
        let bin = WALWATCH.path();
        std::fs::write(
            &unit,
            text.replace("/usr/local/bin/walwatch", bin.to_str().unwrap()),
        )
        .unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let complaints: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("walwatch.service"))
            .collect();
        assert!(
            out.status.success() && complaints.is_empty(),
            "systemd-analyze verify: {}\n{err}",
            out.status
        );
    } else {
        println!("NOTICE: no systemd-analyze (apt-get install systemd): checking keys only");
    }

    let entries = parse_unit(&text);
    let values = |key: &str| -> Vec<String> {
        entries
            .iter()
            .filter(|(s, k, _)| s == "Service" && k == key)
            .map(|(_, _, v)| v.clone())
            .collect()
    };
    let one = |key: &str| values(key).last().cloned().unwrap_or_default();
    for (key, want) in [
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
    ] {
        assert_eq!(one(key), want, "{key}");
    }
    assert!(
        !one("User").is_empty() || one("DynamicUser") == "yes",
        "runs as root"
    );
    assert_ne!(
        one("ProtectProc"),
        "invisible",
        "the sidecar must see the readers' pids"
    );
    assert!(entries
        .iter()
        .any(|(s, k, _)| s == "Install" && k == "WantedBy"));

    let exec: Vec<String> = one("ExecStart")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert!(
        exec[0].ends_with("/walwatch") && exec[1] == "serve",
        "{exec:?}"
    );
    assert_real_flags(&exec[2..], &help, "ExecStart");
    let flags = flag_values(&exec[2..]);
    let writable: Vec<String> = values("ReadWritePaths")
        .iter()
        .flat_map(|v| {
            v.split_whitespace()
                .map(|p| p.trim_start_matches('-').to_string())
        })
        .collect();
    // The stats directory comes from the tmpfiles.d entry beside the unit, in a shape the
    // shim accepts (owned by the application, writable by no one else) and set-group-ID so the
    // sidecar's group can read the files; the sidecar only reads it.
    let stats_dir = &flags["--stats-dir"][0];
    let tmpfiles =
        std::fs::read_to_string(root_file("examples/systemd/walwatch.tmpfiles")).unwrap();
    let entry: Vec<&str> = tmpfiles
        .lines()
        .map(str::split_whitespace)
        .map(Iterator::collect::<Vec<_>>)
        .find(|f| f.first() == Some(&"d"))
        .expect("a `d` line in walwatch.tmpfiles");
    assert_eq!(entry[1], stats_dir, "tmpfiles creates --stats-dir");
    let mode = u32::from_str_radix(entry[2], 8).unwrap();
    let owner = (entry[3], entry[4]);
    assert_eq!(
        owner,
        ("app", one("Group").as_str()),
        "owned by the application, group of the sidecar"
    );
    let facts = walwatch::trust::Facts {
        uid: 1000,
        gid: 1000,
        mode: 0o040000 | mode,
        links: 2,
    };
    assert_eq!(
        walwatch::trust::check_dir(&facts, 1000),
        Ok(()),
        "the shim accepts {mode:o}"
    );
    assert_eq!(
        walwatch::trust::new_file_mode(&facts),
        0o640,
        "files readable by the group"
    );
    assert!(
        !writable.contains(stats_dir),
        "the sidecar never writes {stats_dir}"
    );
    for db in flags.get("--db").into_iter().flatten() {
        assert!(
            writable.iter().any(|w| Path::new(db).starts_with(w)),
            "checkpoints need write access to {db}'s directory: not in ReadWritePaths {writable:?}"
        );
    }
}

#[test]
fn kubernetes_pod_mounts_consistently_and_uses_real_flags() {
    let docs = yaml_documents(&root_file("examples/kubernetes/pod.yaml"));
    let pod = &docs[0];
    let help = serve_help();
    assert_eq!(pod["kind"], "Pod");
    let spec = &pod["spec"];
    assert_eq!(
        spec["shareProcessNamespace"], true,
        "the sidecar must see the application's pids"
    );
    let volumes: BTreeMap<&str, &Value> = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    let containers = spec["containers"].as_array().unwrap();
    let all = containers
        .iter()
        .chain(spec["initContainers"].as_array().into_iter().flatten());
    let mut used = BTreeSet::new();
    for c in all {
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let name = m["name"].as_str().unwrap();
            assert!(
                volumes.contains_key(name),
                "{}: no volume {name}",
                c["name"]
            );
            used.insert(name);
        }
    }
    assert_eq!(used.len(), volumes.len(), "unused volumes");

    let sidecar = containers
        .iter()
        .find(|c| c["name"] == "walwatch")
        .expect("a container named walwatch");
    let apps: Vec<&Value> = containers
        .iter()
        .filter(|c| c["name"] != "walwatch")
        .collect();
    assert!(!apps.is_empty(), "an application container");
    let args: Vec<String> = sidecar["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(args[0], "serve");
    assert_real_flags(&args[1..], &help, "sidecar args");
    let flags = flag_values(&args[1..]);
    let mount_of = |c: &Value, path: &str| -> Option<(String, bool)> {
        c["volumeMounts"]
            .as_array()?
            .iter()
            .filter(|m| Path::new(path).starts_with(m["mountPath"].as_str().unwrap()))
            .max_by_key(|m| m["mountPath"].as_str().unwrap().len())
            .map(|m| {
                (
                    format!(
                        "{}@{}",
                        m["name"].as_str().unwrap(),
                        m["mountPath"].as_str().unwrap()
                    ),
                    m["readOnly"] == true,
                )
            })
    };

    // The stats directory: an in-memory emptyDir at the same path in every container, which is
    // the application's WALWATCH_DIR and the sidecar's --stats-dir.
    let stats_dir = &flags["--stats-dir"][0];
    let (stats_mount, _) = mount_of(sidecar, stats_dir).expect("--stats-dir is mounted");
    let stats_volume = volumes[stats_mount.split('@').next().unwrap()];
    assert_eq!(stats_volume["emptyDir"]["medium"], "Memory");
    // Kubelet makes an emptyDir 0777, which the shim refuses (issue 9): the stats directory
    // must be a subdirectory of the mount, created by the shim itself with mode 0700.
    let mount_path = stats_mount.split('@').nth(1).unwrap();
    assert!(
        Path::new(stats_dir) != Path::new(mount_path),
        "{stats_dir} is the emptyDir itself (world-writable): use a subdirectory"
    );
    for app in &apps {
        assert_eq!(
            mount_of(app, stats_dir).map(|m| m.0).as_deref(),
            Some(stats_mount.as_str())
        );
        let env = app["env"].as_array().unwrap();
        let dir = env
            .iter()
            .find(|e| e["name"] == "WALWATCH_DIR")
            .expect("WALWATCH_DIR");
        assert_eq!(dir["value"].as_str(), Some(stats_dir.as_str()));
    }
    // Each database: on a volume both mount at the same path, writable by the sidecar.
    for db in flags.get("--db").into_iter().flatten() {
        let (mount, read_only) =
            mount_of(sidecar, db).unwrap_or_else(|| panic!("{db} not mounted"));
        assert!(!read_only, "checkpoints need {db} writable");
        assert!(apps
            .iter()
            .any(|a| mount_of(a, db).map(|m| m.0).as_deref() == Some(mount.as_str())));
    }
    // Metrics port and probes.
    let port = &sidecar["ports"][0];
    assert_eq!(port["name"], "metrics");
    assert_eq!(port["containerPort"], 9866);
    assert!(flags["--listen"][0].ends_with(":9866"));
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(sidecar[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(sidecar[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], "9866");
}

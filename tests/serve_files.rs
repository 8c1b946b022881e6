//! `vpc-flow-exporter serve` over the files source: the bundled sample read
//! once gives a golden `/metrics` (as node_exporter's end-to-end test does),
//! linted by `promtool check metrics`; replayed, its counters keep growing.
//!
//! The golden file keeps the deterministic `vpcflow_` lines: every sample
//! and `# TYPE` line except poll durations and the last poll's time, with
//! the build labels normalized. Regenerate it with
//!
//! ```text
//! UPDATE_GOLDEN=1 cargo test --test serve_files
//! ```
//!
//! and check by hand that its `vpcflow_sessions_total` per verdict still
//! equals `analyze --output json examples/sample-flows.log` (the test
//! checks that too).

// Each test crate uses a part of common; its re-exports may go unused.
mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, http_get, promtool, repo_root};

const SAMPLE: &str = "examples/sample-flows.log";
const GOLDEN: &str = "tests/golden/metrics-sample.prom";
const VERDICTS: [&str; 5] = [
    "accepted",
    "rejected_inbound",
    "rejected_outbound",
    "unanswered",
    "refused",
];
const WAIT: Duration = Duration::from_secs(60);

/// The binary with nothing inherited: the files source needs no AWS, and
/// the trap endpoint makes sure it would not reach it.
fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vpc-flow-exporter"));
    command
        .env_clear()
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .env("RUST_BACKTRACE", "1")
        .current_dir(repo_root())
        .stdin(Stdio::null());
    command
}

/// A running `serve`; killed on drop.
struct Exporter {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Exporter {
    /// `serve --config` with `config` on a free loopback port; returns once
    /// `/ready` is 200 (the first pass over the files is done).
    fn start_ready(config: &str) -> Exporter {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config).expect("write the config");
        for attempt in 0..3 {
            let port = free_port();
            let log = dir.path().join(format!("exporter-{attempt}.log"));
            let out = std::fs::File::create(&log).expect("create the log file");
            let mut child = binary()
                .arg("serve")
                .arg("--config")
                .arg(&config_path)
                .arg("--web.listen-address")
                .arg(format!("127.0.0.1:{port}"))
                .stdout(out.try_clone().expect("clone the log handle"))
                .stderr(out)
                .spawn()
                .expect("spawn vpc-flow-exporter");
            let ready = format!("http://127.0.0.1:{port}/ready");
            let deadline = Instant::now() + WAIT;
            loop {
                if let Some(status) = child.try_wait().expect("poll the child") {
                    let tail = log_tail(&log);
                    if tail.contains("cannot listen") {
                        break;
                    }
                    panic!("vpc-flow-exporter exited with {status}\n{tail}");
                }
                // "Listening" first: a 200 from another process that holds
                // the port must not pass for ours.
                if log_tail(&log).contains("Listening") && matches!(http_get(&ready), Ok((200, _)))
                {
                    return Exporter {
                        child,
                        port,
                        log,
                        _dir: dir,
                    };
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("/ready not 200 after {WAIT:?}\n{}", log_tail(&log));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("vpc-flow-exporter could not get a free port in three attempts");
    }

    /// The raw `/metrics` body.
    fn metrics(&mut self) -> String {
        if let Some(status) = self.child.try_wait().expect("poll the child") {
            panic!(
                "vpc-flow-exporter exited with {status}\n{}",
                log_tail(&self.log)
            );
        }
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        let (status, body) = http_get(&url).unwrap_or_else(|e| panic!("GET /metrics: {e}"));
        assert_eq!(status, 200, "/metrics: {body}");
        body
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let tail = &text[text.len().saturating_sub(4096)..];
    format!(
        "--- vpc-flow-exporter output ({}) ---\n{}",
        log.display(),
        String::from_utf8_lossy(tail)
    )
}

fn files_config(replay: bool) -> String {
    let sample = repo_root().join(SAMPLE);
    format!(
        r#"
[files]
paths = ["{}"]
replay = {replay}
replay_interval = "1s"
"#,
        sample.display()
    )
}

/// Sum of the samples of `name` whose label set contains `label`
/// (`key="value"`, or "" for all).
fn sum(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| {
            let series = line.split(' ').next().unwrap_or("");
            let base = series.split('{').next().unwrap_or("");
            base == name && series.contains(label)
        })
        .map(|line| {
            let value = line.rsplit(' ').next().unwrap_or("");
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"))
        })
        .fold(0.0, |sum, value| sum + value)
}

/// The deterministic `vpcflow_` lines of a files-mode `/metrics` body.
fn golden_lines(metrics: &str) -> String {
    const DROPPED: [&str; 2] = [
        "vpcflow_poll_duration_seconds",
        "vpcflow_last_successful_poll_timestamp_seconds",
    ];
    let mut out = String::new();
    for line in metrics.lines() {
        let series = line.strip_prefix("# TYPE ").unwrap_or(line);
        if !series.starts_with("vpcflow_") || DROPPED.iter().any(|d| series.starts_with(d)) {
            continue;
        }
        if line.starts_with("vpcflow_build_info{") {
            // Version, revision and compiler vary by build: keep the names.
            let labels: Vec<&str> = line
                .split(['{', ',', '}'])
                .filter_map(|part| part.split_once('=').map(|(key, _)| key))
                .collect();
            let normalized: Vec<String> = labels.iter().map(|k| format!("{k}=\"…\"")).collect();
            let value = line.rsplit(' ').next().unwrap_or("");
            out.push_str(&format!(
                "vpcflow_build_info{{{}}} {value}\n",
                normalized.join(",")
            ));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `analyze --output json` on `path`: the parsed report.
fn analyze(path: &Path) -> serde_json::Value {
    let output = binary()
        .args(["analyze", "--output", "json"])
        .arg(path)
        .output()
        .expect("run analyze");
    assert!(
        output.status.success(),
        "analyze failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("analyze prints JSON")
}

fn promtool_check(metrics: &str) -> (bool, String) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(metrics.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("wait for promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

#[test]
fn sample_file_gives_the_golden_metrics_and_passes_promtool() {
    let mut exporter = Exporter::start_ready(&files_config(false));
    let metrics = exporter.metrics();

    let (ok, said) = promtool_check(&metrics);
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics complained:\n{said}"
    );

    // The exporter decides what analyze decides on the same file.
    let report = analyze(&repo_root().join(SAMPLE));
    for verdict in VERDICTS {
        let label = format!("verdict=\"{verdict}\"");
        assert_eq!(
            sum(&metrics, "vpcflow_sessions_total", &label),
            report["sessions"][verdict].as_f64().unwrap(),
            "sessions {verdict}: /metrics against analyze"
        );
    }
    let records = &report["records"];
    assert_eq!(
        sum(&metrics, "vpcflow_records_total", "log_status=\"OK\""),
        records["ok"].as_f64().unwrap()
    );
    assert_eq!(
        sum(&metrics, "vpcflow_records_total", "log_status=\"NODATA\""),
        records["nodata"].as_f64().unwrap()
    );
    assert_eq!(
        sum(&metrics, "vpcflow_records_total", "log_status=\"SKIPDATA\""),
        records["skipdata"].as_f64().unwrap()
    );
    assert_eq!(
        sum(&metrics, "vpcflow_malformed_records_total", ""),
        records["malformed"].as_f64().unwrap()
    );

    let actual = golden_lines(&metrics);
    let golden = repo_root().join(GOLDEN);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &actual).expect("write the golden file");
    }
    let expected = std::fs::read_to_string(&golden)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", golden.display()));
    if actual != expected {
        let diff: Vec<String> = diff_lines(&expected, &actual);
        panic!(
            "/metrics differs from {GOLDEN} (UPDATE_GOLDEN=1 rewrites it):\n{}",
            diff.join("\n")
        );
    }
}

/// Lines only in `expected` (-) and only in `actual` (+).
fn diff_lines(expected: &str, actual: &str) -> Vec<String> {
    let count = |text: &str| {
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for line in text.lines() {
            *counts.entry(line.to_owned()).or_default() += 1;
        }
        counts
    };
    let (want, got) = (count(expected), count(actual));
    let mut out = Vec::new();
    for (line, n) in &want {
        for _ in got.get(line).copied().unwrap_or(0)..*n {
            out.push(format!("- {line}"));
        }
    }
    for (line, n) in &got {
        for _ in want.get(line).copied().unwrap_or(0)..*n {
            out.push(format!("+ {line}"));
        }
    }
    if out.is_empty() {
        out.push("(same lines, different order)".to_owned());
    }
    out
}

#[test]
fn replay_keeps_counting() {
    let per_pass = analyze(&repo_root().join(SAMPLE));
    let sessions_per_pass: f64 = VERDICTS
        .iter()
        .map(|v| per_pass["sessions"][*v].as_f64().unwrap())
        .sum();
    let records_per_pass = per_pass["records"]["total"].as_f64().unwrap();
    assert!(sessions_per_pass > 0.0);

    let mut exporter = Exporter::start_ready(&files_config(true));
    let first = exporter.metrics();
    let first_sessions = sum(&first, "vpcflow_sessions_total", "");
    assert!(first_sessions >= sessions_per_pass, "{first_sessions}");

    let deadline = Instant::now() + WAIT;
    let later = loop {
        let metrics = exporter.metrics();
        if sum(&metrics, "vpcflow_sessions_total", "") >= first_sessions + 2.0 * sessions_per_pass {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "vpcflow_sessions_total did not grow by two passes in {WAIT:?}\n{}",
            log_tail(&exporter.log)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(sum(&later, "vpcflow_records_total", "") >= 3.0 * records_per_pass);
    assert!(sum(&later, "vpcflow_polls_total", "outcome=\"success\"") >= 3.0);
    assert_eq!(sum(&later, "vpcflow_up", ""), 1.0);
}

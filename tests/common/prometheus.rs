//! A real Prometheus server on a free loopback port, scraping given targets
//! every second and evaluating given rule files; and the path of promtool.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use super::{ChildProcess, find_binary, free_port, http_agent, http_get};

/// The job name of every scrape target in the generated config.
pub const JOB: &str = "vpc-flow-exporter";

/// A running Prometheus; killed on drop, its TSDB in a temp dir.
pub struct Prometheus {
    process: ChildProcess,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus (env `PROMETHEUS`, else `/usr/bin/prometheus`) on
    /// 127.0.0.1 and a free port. `scrape_targets` are `host:port` strings
    /// scraped at `/metrics` every 1 s under job [`JOB`]; `rule_files` are
    /// evaluated every 1 s (relative paths are from the repo root). Waits
    /// for `/-/ready` (30 s) and panics when the binary is missing or the
    /// server does not come up.
    pub fn start(scrape_targets: &[String], rule_files: &[PathBuf]) -> Prometheus {
        let binary = find_binary("PROMETHEUS", PathBuf::from("/usr/bin/prometheus"));
        let rule_files: Vec<String> = rule_files
            .iter()
            .map(|path| {
                let path = super::repo_root().join(path);
                assert!(path.is_file(), "rule file {} not found", path.display());
                path.display().to_string()
            })
            .collect();
        let dir = tempfile::tempdir().expect("create a temp dir for prometheus");

        // JSON is YAML: serde_json writes the config with correct quoting.
        let config = json!({
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": rule_files,
            "scrape_configs": [{
                "job_name": JOB,
                "static_configs": [{ "targets": scrape_targets }],
            }],
        });
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap())
            .expect("write prometheus.yml");

        let mut last_error = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let mut command = Command::new(&binary);
            command
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join(format!("data-{attempt}")).display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"));
            let log = dir.path().join(format!("prometheus-{attempt}.log"));
            let mut process = ChildProcess::spawn("prometheus", command, &log);
            let ready = format!("http://127.0.0.1:{port}/-/ready");
            match process.wait_ready(Duration::from_secs(30), || {
                matches!(http_get(&ready), Ok((200, _)))
            }) {
                Ok(()) => {
                    return Prometheus {
                        process,
                        port,
                        _dir: dir,
                    };
                }
                Err(e) => last_error = e,
            }
        }
        panic!("prometheus failed to start three times; last:\n{last_error}");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs an instant query and returns `data.result` (for a vector: an
    /// array of `{"metric": {...}, "value": [time, "value"]}`). Panics when
    /// Prometheus answers with an error.
    pub fn query(&self, promql: &str) -> Value {
        let mut response = http_agent()
            .get(format!("{}/api/v1/query", self.base_url()))
            .query("query", promql)
            .call()
            .unwrap_or_else(|e| panic!("query {promql:?}: {e}"));
        let body: Value = response
            .body_mut()
            .read_json()
            .unwrap_or_else(|e| panic!("query {promql:?}: bad JSON: {e}"));
        if body["status"] != "success" {
            panic!("query {promql:?} failed: {body}");
        }
        body["data"]["result"].clone()
    }

    /// The tail of the server's output, for assertion messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

/// promtool (env `PROMTOOL`, else `/usr/bin/promtool`); panics with an
/// install hint when it is missing.
pub fn promtool() -> PathBuf {
    find_binary("PROMTOOL", PathBuf::from("/usr/bin/promtool"))
}

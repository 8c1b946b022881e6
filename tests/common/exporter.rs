//! The real `vpc-flow-exporter` binary under test: [`binary`] with a clean
//! environment, [`run_json`] for one-shot commands, [`Exporter`] (a running
//! `serve`, killed on drop), [`Scrape`] (one `/metrics` body, parsed),
//! [`promtool_check`], and [`seed`]/[`put_records`] to put flow records
//! into a moto log group the way a flow log publishes them.
//!
//! Every run of the binary has an empty environment plus static test
//! credentials, a region and `AWS_EC2_METADATA_DISABLED`; `AWS_ENDPOINT_URL`
//! is [`TRAP_ENDPOINT`], a closed loopback port, so only the endpoint a test
//! configures can answer and nothing ever leaves loopback.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::moto::{REGION, now_ms};
use super::{ChildProcess, Moto, free_port, http_get, promtool, repo_root, wait_until};

/// `AWS_ENDPOINT_URL` for every run: a loopback port nothing listens on
/// (binding it needs root), so a client that ignores the configured
/// endpoint fails instead of reaching AWS.
pub const TRAP_ENDPOINT: &str = "http://127.0.0.1:1";

/// How long a test waits for something the exporter does each poll, and
/// how long [`Exporter::start_ready`] waits for `/ready`.
pub const WAIT: Duration = Duration::from_secs(60);

/// How long [`Exporter::start`] waits for `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Every session verdict the exporter gives.
pub const VERDICTS: [&str; 5] = [
    "accepted",
    "rejected_inbound",
    "rejected_outbound",
    "unanswered",
    "refused",
];

/// The name in panic messages and log tails.
const NAME: &str = "vpc-flow-exporter";

/// The binary with nothing inherited but what a test run needs (see the
/// module documentation); the working directory is the repository root.
pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vpc-flow-exporter"));
    command
        .env_clear()
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", TRAP_ENDPOINT)
        .env("AWS_CONFIG_FILE", "/nonexistent/aws/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws/credentials",
        )
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("RUST_BACKTRACE", "1")
        .current_dir(repo_root())
        .stdin(Stdio::null());
    command
}

/// Runs the binary with `args`; its stdout as JSON. Panics when it fails
/// or prints something else.
pub fn run_json(args: &[&str]) -> Value {
    let output = binary().args(args).output().expect("run vpc-flow-exporter");
    assert!(
        output.status.success(),
        "vpc-flow-exporter {args:?} failed with {}:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "vpc-flow-exporter {args:?}: not JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// A running `serve` on a free loopback port; killed on drop. Its output
/// goes to a file whose tail goes into assertion messages.
pub struct Exporter {
    process: ChildProcess,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Exporter {
    /// `serve` with `config` as its file (none: environment only) and `env`
    /// added; returns once it has bound the port and `/healthz` answers
    /// (at most 30 s). Retries on a new port when the chosen one was taken.
    pub fn start(config: Option<&str>, env: &[(&str, &str)]) -> Exporter {
        Self::spawn(config, env, "/healthz", START_TIMEOUT)
    }

    /// As [`Exporter::start`], but returns once `/ready` is 200 (the first
    /// poll, or the first pass over the files, is done), at most [`WAIT`].
    pub fn start_ready(config: Option<&str>, env: &[(&str, &str)]) -> Exporter {
        Self::spawn(config, env, "/ready", WAIT)
    }

    fn spawn(
        config: Option<&str>,
        env: &[(&str, &str)],
        answering: &str,
        timeout: Duration,
    ) -> Exporter {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("config.toml");
        if let Some(config) = config {
            std::fs::write(&config_path, config).expect("write the config");
        }
        let mut last_error = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let mut command = binary();
            command.arg("serve");
            if config.is_some() {
                command.arg("--config").arg(&config_path);
            }
            command
                .arg("--web.listen-address")
                .arg(format!("127.0.0.1:{port}"))
                .envs(env.iter().copied());
            let log = dir.path().join(format!("exporter-{attempt}.log"));
            let mut process = ChildProcess::spawn(NAME, command, &log);
            let url = format!("http://127.0.0.1:{port}{answering}");
            // "Listening" first: a 200 from another process that holds the
            // port must not pass for ours.
            let listening =
                || std::fs::read_to_string(&log).is_ok_and(|text| text.contains("Listening"));
            match process.wait_ready(timeout, || {
                listening() && matches!(http_get(&url), Ok((200, _)))
            }) {
                Ok(()) => {
                    return Exporter {
                        process,
                        port,
                        _dir: dir,
                    };
                }
                // The port was taken between free_port() and bind: try another.
                Err(e) if e.contains("cannot listen") => last_error = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{NAME} could not get a free port in three attempts; last:\n{last_error}");
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// GET `path`: status and body; panics on a transport error.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.url(path)).unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.log_tail()))
    }

    /// The raw `/metrics` body (the exporter must be running and answer 200).
    pub fn metrics(&mut self) -> String {
        self.assert_running();
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "/metrics: {body}");
        body
    }

    /// Scrapes `/metrics` (see [`Exporter::metrics`]) and parses it.
    pub fn scrape(&mut self) -> Scrape {
        Scrape::parse(&self.metrics())
    }

    /// Waits until `/ready` is 200 (the first poll is done), up to [`WAIT`].
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            self.assert_running();
            if self.get("/ready").0 == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/ready not 200 after {WAIT:?}\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Scrapes every 200 ms until `check` returns `Some`, up to [`WAIT`];
    /// panics naming `what` with the last scrape and the log tail.
    pub fn wait_for<T>(&mut self, what: &str, mut check: impl FnMut(&Scrape) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            let scrape = self.scrape();
            if let Some(value) = check(&scrape) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for {what}\nlast scrape (vpcflow_ lines):\n{}\n{}",
                scrape.flow_lines(),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until `n` more successful polls have happened than in `since`.
    pub fn wait_polls(&mut self, since: &Scrape, n: f64) -> Scrape {
        let before = since.polls("success");
        self.wait_for(&format!("{n} more successful polls"), |s| {
            (s.polls("success") >= before + n).then(|| s.clone())
        })
    }

    /// `Some(status)` once the exporter has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.exited()
    }

    /// Panics, with the log tail, when the exporter has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!("{NAME} exited with {status}\n{}", self.log_tail());
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.process.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        wait_until(timeout, "the exporter to exit after SIGTERM", || {
            self.exited()
        })
    }

    /// `kill -9`: no chance to clean up; waits for the exit.
    pub fn kill(&mut self) {
        let status = Command::new("kill")
            .args(["-KILL", &self.process.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -KILL failed");
        wait_until(
            Duration::from_secs(10),
            "the exporter to die after SIGKILL",
            || self.exited(),
        );
    }

    /// The last 4 KiB of the exporter's output, for assertion messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

/// One `/metrics` body: its text and its samples as (name, labels, value).
#[derive(Clone)]
pub struct Scrape {
    pub text: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    /// Parses every sample line; panics on one it cannot read.
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| parse_sample(line).unwrap_or_else(|| panic!("bad sample line {line:?}")))
            .collect();
        Scrape {
            text: text.to_owned(),
            samples,
        }
    }

    /// Sum of `name` over the samples whose labels include `filter` (each
    /// label equal to the value given; `&[]` for all samples).
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && filter
                        .iter()
                        .all(|(k, v)| labels.get(*k).is_some_and(|l| l == v))
            })
            .fold(0.0, |sum, (_, _, value)| sum + value)
    }

    /// The label sets of `name`'s samples, each with its value.
    pub fn series(&self, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, labels, value)| (labels.clone(), *value))
            .collect()
    }

    /// Whether any sample of `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }

    /// `vpcflow_sessions_total` with this verdict, over all other labels.
    pub fn sessions(&self, verdict: &str) -> f64 {
        self.sum("vpcflow_sessions_total", &[("verdict", verdict)])
    }

    /// `vpcflow_polls_total` with this outcome.
    pub fn polls(&self, outcome: &str) -> f64 {
        self.sum("vpcflow_polls_total", &[("outcome", outcome)])
    }

    /// The non-zero `vpcflow_` sample lines but durations, for messages.
    pub fn flow_lines(&self) -> String {
        self.text
            .lines()
            .filter(|l| {
                l.starts_with("vpcflow_")
                    && !l.starts_with("vpcflow_poll_duration")
                    && !l.starts_with("vpcflow_api_call_duration")
                    && !l.ends_with(" 0")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `name{a="b",c="d"} value` (no timestamp: the exporter writes none).
fn parse_sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let Some((name, rest)) = series.split_once('{') else {
        return Some((series.to_owned(), BTreeMap::new(), value));
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.strip_suffix('}')?.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key, value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some((name.to_owned(), labels, value))
}

/// `promtool check metrics` on a whole `/metrics` body: asserts exit 0 and
/// no lint. Panics when promtool is missing (see [`promtool`]).
pub fn promtool_check(metrics: &str) {
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
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics complained:\n{said}"
    );
}

/// Now, in Unix seconds: the unit of a flow record's start and end.
pub fn now_s() -> i64 {
    now_ms() / 1000
}

/// The field of a record's start in the default (version 2) format.
const START_FIELD: usize = 10;

/// The log stream a flow log writes interface `eni`'s records to.
pub fn stream_name(eni: &str) -> String {
    format!("{eni}-all")
}

/// Creates `group` and one stream per interface ([`stream_name`]), in the
/// order given, then puts each interface's records as [`put_records`] does.
/// An interface may have no records: its stream is created empty.
pub fn seed<E: AsRef<str>>(moto: &Moto, group: &str, interfaces: &[(E, Vec<String>)]) {
    runtime().block_on(async {
        moto.create_log_group(group).await;
        for (eni, _) in interfaces {
            moto.create_log_streams(group, &[stream_name(eni.as_ref())])
                .await;
        }
        for (eni, records) in interfaces {
            put(moto, group, eni.as_ref(), records).await;
        }
    });
}

/// Puts default-format records into interface `eni`'s existing stream, each
/// event timestamped with its record's start, as a flow log publishes them.
pub fn put_records(moto: &Moto, group: &str, eni: &str, records: &[String]) {
    runtime().block_on(put(moto, group, eni, records));
}

async fn put(moto: &Moto, group: &str, eni: &str, records: &[String]) {
    let events = records.iter().map(|r| {
        let start: i64 = r.split(' ').nth(START_FIELD).unwrap().parse().unwrap();
        (start * 1000, r.clone())
    });
    moto.put_log_events(group, &stream_name(eni), events).await;
}

/// Runs `future` to its end on a runtime of its own: the async AWS
/// clients in a test that itself blocks.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

/// A tokio runtime for the async moto helpers (the tests themselves block).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

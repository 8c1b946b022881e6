//! Shared support for end-to-end tests: launchers for the real servers the
//! tests run against (moto for the CloudWatch Logs API, Prometheus and
//! promtool) and a small blocking HTTP client. See `tests/common/README.md`
//! for how moto behaves.
//!
//! Use from an integration test with `mod common;`. Every launcher panics
//! when its binary is missing — tests fail, never skip — and tells the
//! reader to run `scripts/install-test-deps`.

// Each test crate compiles this module on its own and uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod exporter;
pub mod fault_proxy;
pub mod flows;
pub mod moto;
pub mod prometheus;
pub mod sts_proxy;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use moto::Moto;
pub use prometheus::{Prometheus, promtool};

/// The repository root (where `Cargo.toml` is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A TCP port on 127.0.0.1 that was free a moment ago. Another process can
/// take it before ours binds it; the launchers retry on a new port then.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port on 127.0.0.1")
        .port()
}

/// Calls `check` every 100 ms until it returns `Some`, and returns that
/// value; panics naming `what` after `timeout`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A blocking HTTP client for loopback servers: ignores proxy variables,
/// returns 4xx/5xx as responses rather than errors, 10 s timeout.
pub fn http_agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent()
    })
}

/// GET `url`: the status and the body as text, or the transport error.
pub fn http_get(url: &str) -> Result<(u16, String), ureq::Error> {
    let mut response = http_agent().get(url).call()?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string()?;
    Ok((status, body))
}

/// A child process that is killed when dropped; its stdout and stderr go to
/// a log file whose tail goes into panic messages.
pub(crate) struct ChildProcess {
    name: &'static str,
    child: Child,
    log_path: PathBuf,
}

impl ChildProcess {
    /// Spawns `command` with output to `log_path`.
    pub(crate) fn spawn(name: &'static str, mut command: Command, log_path: &Path) -> Self {
        let log = File::create(log_path).expect("create the child's log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({command:?}): {e}"));
        Self {
            name,
            child,
            log_path: log_path.to_owned(),
        }
    }

    /// `Some(status)` once the child has exited.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("poll the child")
    }

    /// The last 4 KiB of the child's output, for panic messages.
    pub(crate) fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log_path) {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = file.seek(SeekFrom::Start(len.saturating_sub(4096)));
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        format!(
            "--- {} output ({}) ---\n{text}",
            self.name,
            self.log_path.display()
        )
    }

    /// Polls `ready` until it is true; `Err` when the child exits first
    /// (say, the port was taken) and panics on timeout.
    pub(crate) fn wait_ready(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Err(format!(
                    "{} exited with {status}\n{}",
                    self.name,
                    self.log_tail()
                ));
            }
            if ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} not ready after {timeout:?}\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The executable named by environment variable `var`, else `default`;
/// panics with an install hint when it is not there.
pub(crate) fn find_binary(var: &str, default: PathBuf) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
    if !path.is_file() {
        panic!(
            "{} not found (set {var} to override). Run scripts/install-test-deps to install \
             the test dependencies.",
            path.display()
        );
    }
    path
}

//! [`DenyAssumeRoleProxy`]: `deny_assume_role_proxy.py` on a free loopback
//! port in front of a moto server; killed on drop.

use std::process::Command;
use std::time::Duration;

use super::{ChildProcess, Moto, free_port, http_agent, repo_root};

pub struct DenyAssumeRoleProxy {
    _process: ChildProcess,
    port: u16,
    _dir: tempfile::TempDir,
}

impl DenyAssumeRoleProxy {
    /// Refuses AssumeRole for roles named `denied…`, passes the rest to `moto`.
    pub fn start(moto: &Moto) -> DenyAssumeRoleProxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let python = repo_root().join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/install-test-deps",
            python.display()
        );
        let port = free_port();
        let mut command = Command::new(python);
        command
            .arg(repo_root().join("tests/common/deny_assume_role_proxy.py"))
            .arg(moto.endpoint_url())
            .arg(port.to_string());
        let mut process = ChildProcess::spawn(
            "deny-assume-role proxy",
            command,
            &dir.path().join("proxy.log"),
        );
        let url = format!("http://127.0.0.1:{port}/moto-api/");
        process
            .wait_ready(Duration::from_secs(30), || {
                http_agent().get(&url).call().is_ok()
            })
            .unwrap_or_else(|e| panic!("{e}"));
        DenyAssumeRoleProxy {
            _process: process,
            port,
            _dir: dir,
        }
    }

    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

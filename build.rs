//! Records the git revision and the compiler version for
//! `vpcflow_build_info`. Both are optional: a build from a source archive
//! without git says "unknown".

use std::process::Command;

fn output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .filter(|text| !text.is_empty())
}

fn main() {
    let revision = std::env::var("VPC_FLOW_EXPORTER_REVISION")
        .ok()
        .or_else(|| output("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let rustc_version = output(&rustc, &["--version"])
        .and_then(|text| text.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=VPC_FLOW_EXPORTER_REVISION={revision}");
    println!("cargo:rustc-env=VPC_FLOW_EXPORTER_RUSTC={rustc_version}");
    println!("cargo:rerun-if-env-changed=VPC_FLOW_EXPORTER_REVISION");
    // Only watch git files that exist: a missing one would rebuild every time.
    for path in [".git/HEAD", ".git/refs/heads"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

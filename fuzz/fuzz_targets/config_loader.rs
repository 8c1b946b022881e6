//! The TOML configuration and its `VPC_FLOW_EXPORTER__…` environment
//! mapping on arbitrary input: the TOML text up to the first NUL byte,
//! then one `NAME=VALUE` variable per line (the prefix is added when a
//! name lacks it). No panic; every error names its origin.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpc_flow_exporter::config;

const PREFIX: &str = "VPC_FLOW_EXPORTER__";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (toml, variables) = text.split_once('\0').unwrap_or((text, ""));
    let env: Vec<(String, String)> = variables
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| {
            let name = if name.starts_with(PREFIX) {
                name.to_owned()
            } else {
                format!("{PREFIX}{name}")
            };
            (name, value.to_owned())
        })
        .collect();
    if let Err(error) = config::load_from(Some(toml), "fuzz.toml", env) {
        let message = error.to_string();
        assert!(
            message.starts_with("fuzz.toml") || message.starts_with("environment"),
            "an error without its origin: {message}"
        );
    }
});

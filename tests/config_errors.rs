//! Every file in `tests/bad-configs/` must fail to load with exactly the
//! message in the table below (blackbox_exporter's `testdata/invalid-*.yml`
//! style), and the documented example configs must load.

use std::collections::BTreeSet;
use std::path::Path;

use vpc_flow_exporter::config::{SourceConfig, load_from};

/// File name in `tests/bad-configs/` → the message, after the file's name and `: `.
const CASES: &[(&str, &str)] = &[
    (
        "bad-session-label.toml",
        "metrics.session_labels[1]: expected one of \"verdict\", \"direction\", \"protocol\", \"port\", got \"interface_id\"",
    ),
    (
        "shard-index-not-below-count.toml",
        "shard.index: must be below shard.count (2), got 2",
    ),
    (
        "bad-log-format.toml",
        "files.log_format: unterminated \"${\" in the log format at \"${srcaddr\"",
    ),
    (
        "duplicate-field-in-log-format.toml",
        "cloudwatch.log_groups[0].log_format: field \"srcaddr\" appears twice in the log format",
    ),
    (
        "unknown-top-level-key.toml",
        "unknown key \"log\" (expected one of: server, cloudwatch, files, s3, interfaces, correlation, api, metrics, shard, state, ec2)",
    ),
    (
        "unknown-nested-key.toml",
        "unknown key \"cloudwatch.regoin\" (expected one of: region, endpoint_url, poll_interval, lookback, max_catchup, discovery_interval, attempt_timeout, max_requests_per_second, max_seen_events, max_held_events, log_groups)",
    ),
    (
        "unknown-log-group-key.toml",
        "unknown key \"cloudwatch.log_groups[0].format\" (expected one of: name, log_format, interfaces, region, role_arn, external_id, session_name)",
    ),
    (
        "both-sources.toml",
        "exactly one of [cloudwatch], [files] and [s3] must be set (more than one is)",
    ),
    (
        "no-source.toml",
        "exactly one of [cloudwatch], [files] and [s3] must be set (none is)",
    ),
    (
        "bad-duration.toml",
        "correlation.reply_grace: expected a duration like \"2m\" or \"30s\", got \"two minutes\"",
    ),
    (
        "duration-without-unit.toml",
        "cloudwatch.poll_interval: expected a duration like \"2m\" or \"30s\", got 30",
    ),
    (
        "grace-not-below-idle-timeout.toml",
        "correlation.session_idle_timeout: must be longer than correlation.reply_grace (10m), got 5m",
    ),
    (
        "poll-interval-too-short.toml",
        "cloudwatch.poll_interval: must be at least 1s, got 500ms",
    ),
    (
        "lookback-below-poll-interval.toml",
        "cloudwatch.lookback: must be at least cloudwatch.poll_interval (1m), got 30s",
    ),
    (
        "max-catchup-below-lookback.toml",
        "cloudwatch.max_catchup: must be at least cloudwatch.lookback (20m), got 10m",
    ),
    (
        "bad-s3-queue-url.toml",
        "s3.queue_url: expected the queue's URL like \"https://sqs.us-east-1.amazonaws.com/123456789012/flow-logs\", got \"flow-logs\"",
    ),
    (
        "s3-visibility-too-short.toml",
        "s3.visibility_timeout: expected between 2s and 12h (the SQS limits), got 1s",
    ),
    (
        "s3-read-ahead-too-large.toml",
        "s3.read_ahead: expected 0 to 16 objects, got 64",
    ),
    (
        "unknown-s3-key.toml",
        "unknown key \"s3.bucket\" (expected one of: region, endpoint_url, queue_url, visibility_timeout, read_ahead, read_ahead_mib, max_held_events)",
    ),
    (
        "bad-endpoint-url.toml",
        "cloudwatch.endpoint_url: expected an http or https URL like \"http://127.0.0.1:5000\", got \"127.0.0.1:5000\"",
    ),
    (
        "empty-region.toml",
        "cloudwatch.region: must not be empty (leave it out to let the AWS default chain decide)",
    ),
    (
        "no-log-groups.toml",
        "cloudwatch.log_groups: at least one [[cloudwatch.log_groups]] is required",
    ),
    (
        "missing-log-group-name.toml",
        "cloudwatch.log_groups[0].name: missing (this key is required)",
    ),
    (
        "empty-log-group-name.toml",
        "cloudwatch.log_groups[1].name: must not be empty",
    ),
    (
        "duplicate-log-group.toml",
        "cloudwatch.log_groups[1].name: \"/vpc/flow-logs\" is already read by cloudwatch.log_groups[0] (same region and role_arn)",
    ),
    (
        "bad-eni-in-log-group.toml",
        "cloudwatch.log_groups[0].interfaces[1]: expected an interface id like \"eni-0123456789abcdef0\", got \"eni-XYZ\"",
    ),
    (
        "string-for-list.toml",
        "files.paths: expected a list, got string \"examples/sample-flows.log\"",
    ),
    (
        "empty-files-paths.toml",
        "files.paths: must list at least one file",
    ),
    (
        "empty-log-format.toml",
        "files.log_format: must not be empty (use \"auto\" to detect it)",
    ),
    (
        "empty-state-directory.toml",
        "state.directory: must not be empty (leave [state] out to start afresh on every restart)",
    ),
    (
        "bad-bool.toml",
        "files.replay: expected a boolean, got string \"sometimes\"",
    ),
    (
        "bad-interface-table-name.toml",
        "interfaces.bastion: expected an interface id like \"eni-0123456789abcdef0\" as the table name, got \"bastion\"",
    ),
    (
        "bad-interface-address.toml",
        "interfaces.eni-0a1b2c3d.addresses[1]: expected an IP address like \"10.0.7.253\", got \"10.0.7\"",
    ),
    (
        "bad-listen-address.toml",
        "server.listen_address: expected an address and port like \"0.0.0.0:9917\", got \"localhost:9917\"",
    ),
    (
        "table-for-string.toml",
        "server.listen_address: expected an address and port like \"0.0.0.0:9917\", got a table",
    ),
    (
        "bad-service-port.toml",
        "correlation.service_ports[1]: expected a port number from 1 to 65535, got 70000",
    ),
    (
        "max-open-sessions-zero.toml",
        "correlation.max_open_sessions: must be at least 1 (default 1000000), got 0",
    ),
    (
        "max-seen-events-zero.toml",
        "cloudwatch.max_seen_events: must be at least 1 (default 1000000), got 0",
    ),
    (
        "max-held-events-zero.toml",
        "cloudwatch.max_held_events: must be at least 1 (default 100000), got 0",
    ),
    (
        "ec2-without-cloudwatch.toml",
        "ec2.describe_interfaces: needs [cloudwatch] or [s3]: interfaces are described in the region of their log group or of their object's key",
    ),
    (
        "ec2-refresh-too-short.toml",
        "ec2.refresh_interval: must be at least 1m, got 10s",
    ),
    (
        "api-ring-too-large.toml",
        "api.sessions_per_verdict: expected at most 1000000, got 5000000",
    ),
];

fn load_file(path: &Path) -> Result<vpc_flow_exporter::config::Config, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // No environment: the process's must not leak into the expectations.
    load_from(Some(&text), &path.display().to_string(), Vec::new()).map_err(|e| e.to_string())
}

#[test]
fn bad_configs_fail_with_their_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-configs");
    let mut failures = Vec::new();
    for (file, expected) in CASES {
        let path = dir.join(file);
        let expected = format!("{}: {expected}", path.display());
        match load_file(&path) {
            Ok(config) => failures.push(format!("{file}: loaded, expected an error: {config:?}")),
            Err(message) if message == expected => {}
            Err(message) => failures.push(format!(
                "{file}:\n  expected: {expected}\n       got: {message}"
            )),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_bad_config_has_a_case() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-configs");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    let in_table: BTreeSet<String> = CASES.iter().map(|(file, _)| (*file).to_owned()).collect();
    assert_eq!(on_disk, in_table, "tests/bad-configs/ and CASES differ");
}

#[test]
fn documented_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let config = load_file(&path).unwrap();
    assert!(
        matches!(config.source, SourceConfig::CloudWatch(_)),
        "{config:?}"
    );
}

/// The block of `text` that starts at the line `# {header}` and ends at a
/// blank line, uncommented by one level.
fn uncommented_block(text: &str, header: &str) -> String {
    let start = text
        .find(&format!("\n# {header}\n"))
        .unwrap_or_else(|| panic!("no commented {header} in config.toml"));
    text[start + 1..]
        .lines()
        .take_while(|line| !line.is_empty())
        .map(|line| line.strip_prefix("# ").unwrap_or(line).to_owned() + "\n")
        .collect()
}

#[test]
fn documented_example_commented_blocks_load() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml")).unwrap();

    let files = uncommented_block(&text, "[files]");
    let config = load_from(Some(&files), "config.toml [files]", Vec::new()).unwrap();
    assert!(
        matches!(config.source, SourceConfig::Files(_)),
        "{config:?}"
    );

    let s3 = uncommented_block(&text, "[s3]");
    let config = load_from(Some(&s3), "config.toml [s3]", Vec::new()).unwrap();
    assert!(matches!(config.source, SourceConfig::S3(_)), "{config:?}");

    let interface = uncommented_block(&text, "[interfaces.eni-0123456789abcdef0]");
    let config = load_from(
        Some(&format!("{text}\n{interface}")),
        "config.toml [interfaces]",
        Vec::new(),
    )
    .unwrap();
    let interface = &config.interfaces["eni-0123456789abcdef0"];
    assert_eq!(interface.name.as_deref(), Some("bastion"));
    assert_eq!(interface.addresses.len(), 1);
}

#[test]
fn demo_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.toml");
    let config = load_file(&path).unwrap();
    assert_eq!(config.server.listen_address.to_string(), "127.0.0.1:9917");
    match config.source {
        SourceConfig::Files(files) => {
            assert_eq!(files.paths, [Path::new("examples/sample-flows.log")]);
            assert!(files.replay);
        }
        other => panic!("expected [files], got {other:?}"),
    }
}

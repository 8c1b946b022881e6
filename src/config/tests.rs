use super::*;

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn load_toml(text: &str) -> Result<Config, ConfigError> {
    load_from(Some(text), "test.toml", Vec::new())
}

fn cloudwatch(config: &Config) -> &CloudWatchConfig {
    match &config.source {
        SourceConfig::CloudWatch(cloudwatch) => cloudwatch,
        other => panic!("expected a CloudWatch source, got {other:?}"),
    }
}

fn files(config: &Config) -> &FilesConfig {
    match &config.source {
        SourceConfig::Files(files) => files,
        other => panic!("expected a files source, got {other:?}"),
    }
}

#[test]
fn defaults_fill_everything_but_the_source() {
    let config = load_toml("[[cloudwatch.log_groups]]\nname = \"/vpc/flow-logs\"\n").unwrap();
    assert_eq!(config.server, ServerConfig::default());
    assert_eq!(
        config.server.listen_address,
        "0.0.0.0:9917".parse().unwrap()
    );
    assert_eq!(config.correlation, CorrelationConfig::default());
    assert_eq!(config.correlation.reply_grace, Duration::from_secs(120));
    assert_eq!(
        config.correlation.session_idle_timeout,
        Duration::from_secs(600)
    );
    assert_eq!(config.correlation.service_ports, [22, 80, 443, 3389, 5432]);
    assert!(config.interfaces.is_empty());
    let cw = cloudwatch(&config);
    assert_eq!(cw.region, None);
    assert_eq!(cw.endpoint_url, None);
    assert_eq!(cw.poll_interval, Duration::from_secs(30));
    assert_eq!(cw.lookback, Duration::from_secs(1200));
    assert_eq!(cw.max_catchup, Duration::from_secs(6 * 3600));
    assert_eq!(cw.discovery_interval, Duration::from_secs(300));
    assert_eq!(
        cw.log_groups,
        [LogGroupConfig {
            name: "/vpc/flow-logs".into(),
            log_format: "auto".into(),
            interfaces: vec![],
            region: None,
            role_arn: None,
            external_id: None,
            session_name: None,
        }]
    );
}

#[test]
fn files_defaults() {
    let config = load_toml("[files]\npaths = [\"a.log\"]\n").unwrap();
    assert_eq!(
        files(&config),
        &FilesConfig {
            paths: vec!["a.log".into()],
            log_format: "auto".into(),
            replay: false,
            replay_interval: Duration::from_secs(60),
        }
    );
}

#[test]
fn every_key_parses() {
    let config = load_toml(
        r#"
        [server]
        listen_address = "127.0.0.1:9000"
        [cloudwatch]
        region = "eu-west-1"
        endpoint_url = "http://127.0.0.1:5000"
        poll_interval = "10s"
        lookback = "15m"
        max_catchup = "1h"
        discovery_interval = "1m"
        [[cloudwatch.log_groups]]
        name = "/a"
        log_format = "${version} ${interface-id}"
        interfaces = ["eni-0a1b2c3d"]
        [[cloudwatch.log_groups]]
        name = "/b"
        [interfaces.eni-0a1b2c3d]
        name = "bastion"
        addresses = ["10.0.7.253", "2001:db8::1"]
        intermediate = true
        [correlation]
        reply_grace = "90s"
        session_idle_timeout = "1h 30m"
        service_ports = [8080]
        "#,
    )
    .unwrap();
    assert_eq!(
        config.server.listen_address,
        "127.0.0.1:9000".parse().unwrap()
    );
    let cw = cloudwatch(&config);
    assert_eq!(cw.region.as_deref(), Some("eu-west-1"));
    assert_eq!(cw.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
    assert_eq!(cw.poll_interval, Duration::from_secs(10));
    assert_eq!(cw.max_catchup, Duration::from_secs(3600));
    assert_eq!(cw.log_groups[0].interfaces, ["eni-0a1b2c3d"]);
    assert_eq!(cw.log_groups[1].name, "/b");
    let interface = &config.interfaces["eni-0a1b2c3d"];
    assert_eq!(interface.name.as_deref(), Some("bastion"));
    assert_eq!(
        interface.addresses,
        [
            "10.0.7.253".parse::<IpAddr>().unwrap(),
            "2001:db8::1".parse().unwrap()
        ]
    );
    assert!(interface.intermediate);
    assert_eq!(config.correlation.reply_grace, Duration::from_secs(90));
    assert_eq!(
        config.correlation.session_idle_timeout,
        Duration::from_secs(5400)
    );
    assert_eq!(config.correlation.service_ports, [8080]);
}

#[test]
fn environment_alone_is_enough() {
    let config = load_from(
        None,
        "environment",
        env(&[
            ("VPC_FLOW_EXPORTER__CLOUDWATCH__REGION", "eu-west-1"),
            ("VPC_FLOW_EXPORTER__CLOUDWATCH__POLL_INTERVAL", "1m"),
            (
                "VPC_FLOW_EXPORTER__CLOUDWATCH__LOG_GROUPS__0__NAME",
                "/vpc/flow-logs",
            ),
            (
                "VPC_FLOW_EXPORTER__CLOUDWATCH__LOG_GROUPS__0__INTERFACES",
                "eni-0a1b2c3d, eni-4e5f6a7b",
            ),
            (
                "VPC_FLOW_EXPORTER__CLOUDWATCH__LOG_GROUPS__1__NAME",
                "/other",
            ),
            (
                "VPC_FLOW_EXPORTER__SERVER__LISTEN_ADDRESS",
                "127.0.0.1:9100",
            ),
            ("VPC_FLOW_EXPORTER__CORRELATION__SERVICE_PORTS", "22,443"),
            ("UNRELATED", "x"),
            ("VPC_FLOW_EXPORTER_LOG_LEVEL", "debug"),
        ]),
    )
    .unwrap();
    assert_eq!(
        config.server.listen_address,
        "127.0.0.1:9100".parse().unwrap()
    );
    assert_eq!(config.correlation.service_ports, [22, 443]);
    let cw = cloudwatch(&config);
    assert_eq!(cw.region.as_deref(), Some("eu-west-1"));
    assert_eq!(cw.poll_interval, Duration::from_secs(60));
    assert_eq!(cw.log_groups.len(), 2);
    assert_eq!(cw.log_groups[0].name, "/vpc/flow-logs");
    assert_eq!(
        cw.log_groups[0].interfaces,
        ["eni-0a1b2c3d", "eni-4e5f6a7b"]
    );
    assert_eq!(cw.log_groups[0].log_format, "auto");
    assert_eq!(cw.log_groups[1].name, "/other");
}

#[test]
fn environment_overrides_the_file() {
    let config = load_from(
        Some("[files]\npaths = [\"a.log\"]\n"),
        "test.toml",
        env(&[
            ("VPC_FLOW_EXPORTER__FILES__PATHS", "b.log,c.log"),
            ("VPC_FLOW_EXPORTER__FILES__REPLAY", "true"),
            ("vpc_flow_exporter__files__replay_interval", "5s"),
            ("VPC_FLOW_EXPORTER__CORRELATION__SERVICE_PORTS", "443"),
            (
                "VPC_FLOW_EXPORTER__INTERFACES__ENI-0A1B__ADDRESSES",
                "10.0.0.1",
            ),
            (
                "VPC_FLOW_EXPORTER__INTERFACES__ENI-0A1B__INTERMEDIATE",
                "true",
            ),
        ]),
    )
    .unwrap();
    let files = files(&config);
    assert_eq!(
        files.paths,
        [PathBuf::from("b.log"), PathBuf::from("c.log")]
    );
    assert!(files.replay);
    assert_eq!(files.replay_interval, Duration::from_secs(5));
    // A single port is still a list.
    assert_eq!(config.correlation.service_ports, [443]);
    let interface = &config.interfaces["eni-0a1b"];
    assert_eq!(interface.addresses, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
    assert!(interface.intermediate);
}

#[test]
fn environment_index_addresses_the_files_log_groups() {
    let config = load_from(
        Some(
            "[[cloudwatch.log_groups]]\nname = \"/a\"\n[[cloudwatch.log_groups]]\nname = \"/b\"\n",
        ),
        "test.toml",
        env(&[(
            "VPC_FLOW_EXPORTER__CLOUDWATCH__LOG_GROUPS__1__LOG_FORMAT",
            "${version}",
        )]),
    )
    .unwrap();
    let groups = &cloudwatch(&config).log_groups;
    assert_eq!(groups[0].log_format, "auto");
    assert_eq!(
        (groups[1].name.as_str(), groups[1].log_format.as_str()),
        ("/b", "${version}")
    );
}

#[test]
fn environment_errors_name_the_variable() {
    let err = load_from(
        Some("[files]\npaths = [\"a.log\"]\n"),
        "test.toml",
        env(&[("VPC_FLOW_EXPORTER__CORRELATION__REPLY_GRACE", "soon")]),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment variable VPC_FLOW_EXPORTER__CORRELATION__REPLY_GRACE: \
         correlation.reply_grace: expected a duration like \"2m\" or \"30s\", got \"soon\""
    );

    let err = load_from(
        Some("[files]\npaths = [\"a.log\"]\n"),
        "test.toml",
        env(&[("VPC_FLOW_EXPORTER__SERVER__LISTEN", "x")]),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment variable VPC_FLOW_EXPORTER__SERVER__LISTEN: \
         unknown key \"server.listen\" (expected one of: listen_address, \
         web_config_file, header_read_timeout, idle_timeout, max_connections)"
    );

    let err = load_from(
        Some("[files]\npaths = [\"a.log\"]\n"),
        "test.toml",
        env(&[("VPC_FLOW_EXPORTER__CORRELATION__SERVICE_PORTS", "22,ssh")]),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment variable VPC_FLOW_EXPORTER__CORRELATION__SERVICE_PORTS: \
         correlation.service_ports[1]: expected a port number from 1 to 65535, got \"ssh\""
    );

    let err = load_from(
        Some("[files]\npaths = [\"a.log\"]\n"),
        "test.toml",
        env(&[("VPC_FLOW_EXPORTER__CLOUDWATCH__REGION", "eu-west-1")]),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment variable VPC_FLOW_EXPORTER__CLOUDWATCH__REGION: \
         exactly one of [cloudwatch], [files] and [s3] must be set (more than one is)"
    );
}

#[test]
fn environment_list_gaps_and_bad_names() {
    let err = load_from(
        None,
        "environment",
        env(&[("VPC_FLOW_EXPORTER__CLOUDWATCH__LOG_GROUPS__1__NAME", "/b")]),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment: cloudwatch.log_groups[0]: \
         missing: environment variables must number list entries from 0, without gaps"
    );

    let err = load_from(
        None,
        "environment",
        env(&[("VPC_FLOW_EXPORTER__SERVER____X", "1")]),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment variable VPC_FLOW_EXPORTER__SERVER____X: empty part in the name \
         (expected VPC_FLOW_EXPORTER__SECTION__KEY, parts separated by __)"
    );

    let err = load_from(
        None,
        "environment",
        env(&[(
            "VPC_FLOW_EXPORTER__CLOUDWATCH__LOG_GROUPS__99999__NAME",
            "/a",
        )]),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("list index 99999 is out of place or too large"),
        "{err}"
    );
}

#[test]
fn empty_environment_list_is_empty() {
    let err = load_from(
        None,
        "environment",
        env(&[("VPC_FLOW_EXPORTER__FILES__PATHS", "")]),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment variable VPC_FLOW_EXPORTER__FILES__PATHS: files.paths: must list at least one file"
    );
}

#[test]
fn env_keys() {
    let key = |name: &str| env_key(name).unwrap();
    assert_eq!(key("PATH"), None);
    assert_eq!(key("VPC_FLOW_EXPORTER_CONFIG"), None);
    assert_eq!(
        key("VPC_FLOW_EXPORTER__SERVER__LISTEN_ADDRESS").as_deref(),
        Some("server.listen_address")
    );
    assert_eq!(
        key("VPC_FLOW_EXPORTER__CLOUDWATCH__LOG_GROUPS__2__INTERFACES").as_deref(),
        Some("cloudwatch.log_groups[2].interfaces")
    );
    assert!(env_key("VPC_FLOW_EXPORTER__0__NAME").is_err());
    assert!(env_key("VPC_FLOW_EXPORTER__SERVER__LISTEN.ADDRESS").is_err());
    assert!(is_list_key("cloudwatch.log_groups[0].interfaces"));
    assert!(is_list_key("interfaces.eni-0a.addresses"));
    assert!(!is_list_key("interfaces"));
    assert!(!is_list_key("cloudwatch.region"));
}

#[test]
fn eni_ids() {
    assert!(is_eni_id("eni-0123456789abcdef0"));
    assert!(is_eni_id("eni-0a1b2c3d"));
    assert!(!is_eni_id("eni-"));
    assert!(!is_eni_id("eni-0A1B"));
    assert!(!is_eni_id("eni-xyz"));
    assert!(!is_eni_id("0a1b2c3d"));
}

#[test]
fn endpoint_urls() {
    assert!(is_http_url("http://127.0.0.1:5000"));
    assert!(is_http_url("https://logs.eu-west-1.amazonaws.com"));
    assert!(!is_http_url("127.0.0.1:5000"));
    assert!(!is_http_url("ftp://example.com"));
    assert!(!is_http_url("http://"));
}

#[test]
fn toml_syntax_errors_name_the_file() {
    let err = load_toml("[server\n").unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("test.toml: not valid TOML: "),
        "{err}"
    );
}

#[test]
fn missing_required_key() {
    let err = load_toml("[[cloudwatch.log_groups]]\nlog_format = \"auto\"\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "test.toml: cloudwatch.log_groups[0].name: missing (this key is required)"
    );
}

#[test]
fn read_error_names_the_file() {
    let err = load(Some(Path::new("/nonexistent/config.toml"))).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/config.toml: cannot read: "),
        "{err}"
    );
}

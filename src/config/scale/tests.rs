use super::super::{ConfigError, load_from};
use super::*;

const GROUP: &str = "[[cloudwatch.log_groups]]\nname = \"/vpc/flow-logs\"\n";

fn load(extra: &str, env: &[(&str, &str)]) -> Result<super::super::Config, ConfigError> {
    let env = env
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()));
    load_from(Some(&format!("{GROUP}{extra}")), "test.toml", env)
}

#[test]
fn defaults_keep_every_label_and_one_replica() {
    let config = load("", &[]).unwrap();
    assert_eq!(config.metrics, MetricsConfig::default());
    assert_eq!(config.metrics.budget(), SeriesBudget::default());
    assert_eq!(config.shard, ShardConfig { index: 0, count: 1 });
}

#[test]
fn every_key_parses() {
    let config = load(
        "[metrics]\nsession_labels = [\"port\", \"verdict\"]\nmax_series_per_interface = 40\n[shard]\nindex = 2\ncount = 3\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        config.metrics.budget(),
        SeriesBudget {
            session_labels: vec![SessionLabel::Verdict, SessionLabel::Port],
            max_series_per_interface: 40,
        }
    );
    assert_eq!(config.shard, ShardConfig { index: 2, count: 3 });
}

#[test]
fn environment_sets_them() {
    let config = load(
        "",
        &[
            (
                "VPC_FLOW_EXPORTER__METRICS__SESSION_LABELS",
                "verdict,direction",
            ),
            ("VPC_FLOW_EXPORTER__METRICS__MAX_SERIES_PER_INTERFACE", "12"),
            ("VPC_FLOW_EXPORTER__SHARD__INDEX", "1"),
            ("VPC_FLOW_EXPORTER__SHARD__COUNT", "4"),
        ],
    )
    .unwrap();
    assert_eq!(
        config.metrics.session_labels,
        [SessionLabel::Verdict, SessionLabel::Direction]
    );
    assert_eq!(config.metrics.max_series_per_interface, 12);
    assert_eq!(config.shard, ShardConfig { index: 1, count: 4 });
    let empty = load("", &[("VPC_FLOW_EXPORTER__METRICS__SESSION_LABELS", "")]).unwrap();
    assert!(empty.metrics.session_labels.is_empty());
}

#[test]
fn index_from_the_statefulset_pod_name() {
    let env = [
        ("VPC_FLOW_EXPORTER__SHARD__INDEX", "from-hostname"),
        ("VPC_FLOW_EXPORTER__SHARD__COUNT", "3"),
        ("HOSTNAME", "vpc-flow-exporter-2"),
    ];
    assert_eq!(
        load("", &env).unwrap().shard,
        ShardConfig { index: 2, count: 3 }
    );
    let message = |extra: &str, env: &[(&str, &str)]| load(extra, env).unwrap_err().to_string();
    assert_eq!(
        message(
            "[shard]\nindex = \"from-hostname\"\ncount = 3\n",
            &[("HOSTNAME", "exporter")]
        ),
        r#"test.toml: shard.index: "from-hostname" needs HOSTNAME set to a StatefulSet pod name ending in -<ordinal> (like "vpc-flow-exporter-2"), got "exporter""#
    );
    assert_eq!(
        message(
            "[shard]\nindex = \"from-hostname\"\ncount = 2\n",
            &[("HOSTNAME", "vpc-flow-exporter-2")]
        ),
        "test.toml: shard.index: must be below shard.count (2), got 2"
    );
}

#[test]
fn errors_name_the_key() {
    let message = |extra: &str| load(extra, &[]).unwrap_err().to_string();
    assert_eq!(
        message("[metrics]\nsession_labels = [\"verdict\", \"interface_id\"]\n"),
        r#"test.toml: metrics.session_labels[1]: expected one of "verdict", "direction", "protocol", "port", got "interface_id""#
    );
    assert_eq!(
        message("[metrics]\nsession_labels = [\"port\", \"port\"]\n"),
        r#"test.toml: metrics.session_labels[1]: "port" is already metrics.session_labels[0]"#
    );
    assert_eq!(
        message("[metrics]\nmax_series_per_interface = 0\n"),
        "test.toml: metrics.max_series_per_interface: must be at least 1 (drop labels with metrics.session_labels to have fewer series)"
    );
    assert_eq!(
        message("[shard]\ncount = 0\n"),
        "test.toml: shard.count: must be at least 1"
    );
    assert_eq!(
        message("[shard]\nindex = -1\ncount = 2\n"),
        r#"test.toml: shard.index: expected a replica index from 0, or "from-hostname", got -1"#
    );
    assert_eq!(
        message("[shard]\nindex = 1\n"),
        "test.toml: shard.index: must be below shard.count (1), got 1"
    );
}

#[test]
fn group_access_keys() {
    let groups = r#"
        [cloudwatch]
        region = "us-east-1"
        [[cloudwatch.log_groups]]
        name = "/vpc/flow-logs"
        [[cloudwatch.log_groups]]
        name = "/vpc/flow-logs"
        region = "eu-west-1"
        [[cloudwatch.log_groups]]
        name = "/vpc/flow-logs"
        role_arn = "arn:aws:iam::222222222222:role/reader"
        external_id = "org-7"
        session_name = "vpc-flow-exporter"
    "#;
    let config = load_from(Some(groups), "test.toml", Vec::new()).unwrap();
    let super::super::SourceConfig::CloudWatch(cloudwatch) = &config.source else {
        panic!("a CloudWatch source");
    };
    assert_eq!(
        cloudwatch.log_groups[1].region.as_deref(),
        Some("eu-west-1")
    );
    assert_eq!(
        cloudwatch.log_groups[2].external_id.as_deref(),
        Some("org-7")
    );
    let message = |group: &str| {
        let text = format!(
            "[cloudwatch]\nregion = \"us-east-1\"\n[[cloudwatch.log_groups]]\nname = \"/a\"\n{group}"
        );
        load_from(Some(&text), "test.toml", Vec::new())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        message("role_arn = \"arn:aws:iam::2222:role/x\"\n"),
        r#"test.toml: cloudwatch.log_groups[0].role_arn: expected a role ARN like "arn:aws:iam::222222222222:role/vpc-flow-exporter", got "arn:aws:iam::2222:role/x""#
    );
    assert_eq!(
        message("external_id = \"org-7\"\n"),
        "test.toml: cloudwatch.log_groups[0].external_id: is used only with cloudwatch.log_groups[0].role_arn, which is not set"
    );
    assert_eq!(
        message("role_arn = \"arn:aws:iam::222222222222:role/x\"\nsession_name = \"a b\"\n"),
        r#"test.toml: cloudwatch.log_groups[0].session_name: expected at least 2 letters, digits or any of + = , . @ _ -, got "a b""#
    );
    assert_eq!(
        message("region = \"\"\n"),
        "test.toml: cloudwatch.log_groups[0].region: must not be empty (leave it out for cloudwatch.region)"
    );
    // The default region named explicitly is the same group.
    let text = "[cloudwatch]\nregion = \"us-east-1\"\n[[cloudwatch.log_groups]]\nname = \"/a\"\n[[cloudwatch.log_groups]]\nname = \"/a\"\nregion = \"us-east-1\"\n";
    assert_eq!(
        load_from(Some(text), "test.toml", Vec::new())
            .unwrap_err()
            .to_string(),
        r#"test.toml: cloudwatch.log_groups[1].name: "/a" is already read by cloudwatch.log_groups[0] (same region and role_arn)"#
    );
}

#[test]
fn request_budget_key() {
    let cloudwatch = |extra: &str, env: &[(&str, &str)]| {
        let text = format!("[cloudwatch]\n{extra}\n[[cloudwatch.log_groups]]\nname = \"/a\"\n");
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        load_from(Some(&text), "test.toml", env).map(|config| match config.source {
            super::super::SourceConfig::CloudWatch(cloudwatch) => {
                cloudwatch.max_requests_per_second
            }
            other => panic!("{other:?}"),
        })
    };
    assert_eq!(cloudwatch("", &[]).unwrap(), 2.0);
    assert_eq!(
        cloudwatch("max_requests_per_second = 0.5", &[]).unwrap(),
        0.5
    );
    assert_eq!(cloudwatch("max_requests_per_second = 4", &[]).unwrap(), 4.0);
    assert_eq!(
        cloudwatch(
            "",
            &[(
                "VPC_FLOW_EXPORTER__CLOUDWATCH__MAX_REQUESTS_PER_SECOND",
                "1.5"
            )]
        )
        .unwrap(),
        1.5
    );
    assert_eq!(
        cloudwatch("max_requests_per_second = 6", &[])
            .unwrap_err()
            .to_string(),
        "test.toml: cloudwatch.max_requests_per_second: must be above 0 and at most 5 (the FilterLogEvents quota per account and region), got 6"
    );
    assert!(cloudwatch("max_requests_per_second = 0", &[]).is_err());
}

#[test]
fn role_accounts() {
    assert_eq!(
        account_of_role("arn:aws:iam::222222222222:role/a/b"),
        Some("222222222222")
    );
    assert_eq!(
        account_of_role("arn:aws-cn:iam::222222222222:role/a"),
        Some("222222222222")
    );
    assert_eq!(account_of_role("arn:aws:iam::222222222222:user/a"), None);
    assert_eq!(account_of_role("arn:aws:iam::22222222222a:role/a"), None);
    assert_eq!(account_of_role("arn:aws:iam::222222222222:role/"), None);
}

#[test]
fn ordinals() {
    assert_eq!(ordinal_of("vpc-flow-exporter-0"), Some(0));
    assert_eq!(ordinal_of("web-12"), Some(12));
    assert_eq!(ordinal_of("web-"), None);
    assert_eq!(ordinal_of("web-1a"), None);
    assert_eq!(ordinal_of("web"), None);
}

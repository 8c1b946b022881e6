//! Many accounts and regions in one exporter, against moto with STS: a log
//! group in a second account that only its role can read (moto files log
//! groups created with an assumed role's credentials under the role's
//! account), another in a second region, all three named `/vpc/flow-logs`,
//! and a fourth whose AssumeRole is refused (by a proxy in front of moto,
//! since moto grants every AssumeRole). The totals over the readable ones
//! are exact; the refused one is logged, counted as
//! `vpcflow_api_calls_total{operation="AssumeRole",outcome="error"}`,
//! retried, and stops nothing else. Each interface's
//! `vpcflow_interface_info` carries the account and region of its group,
//! and `inspect --role-arn` reads another account's group as serve does.
//!
//! Through the fault proxy, which notes every call: groups of one role and
//! region share one client (one AssumeRole, EC2's calls included), and a
//! group read with the base credentials and one read through a role into
//! the same account share one request budget, labelled with the account
//! STS GetCallerIdentity names; until STS answers, the base credentials'
//! groups draw from a budget of their own, `account_id="unknown"`.

mod common;

use aws_config::BehaviorVersion;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::config::Region;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;

use std::collections::{BTreeMap, BTreeSet};

use common::Moto;
use common::exporter::{Exporter, Scrape, binary, block_on, now_s, run_json};
use common::fault_proxy::{Fault, FaultProxy};
use common::moto::now_ms;
use common::sts_proxy::DenyAssumeRoleProxy;

const GROUP: &str = "/vpc/flow-logs";
const ROLE: &str = "arn:aws:iam::222222222222:role/vpc-flow-exporter-reader";
const DENIED_ROLE: &str = "arn:aws:iam::333333333333:role/denied-reader";
/// Another role into the account of [`ROLE`].
const SECOND_ROLE: &str = "arn:aws:iam::222222222222:role/second-reader";
/// A role into the base credentials' own account.
const SAME_ACCOUNT_ROLE: &str = "arn:aws:iam::123456789012:role/vpc-flow-exporter-reader";
const ENI_HOME: &str = "eni-0a00000000000000a";
const ENI_OTHER_ACCOUNT: &str = "eni-0b00000000000000b";
const ENI_OTHER_REGION: &str = "eni-0c00000000000000c";
/// The account moto gives the static test credentials (GetCallerIdentity).
const MOTO_ACCOUNT: &str = "123456789012";

fn record(eni: &str, src: &str, dst: &str, sport: u16, dport: u16, t: i64, action: &str) -> String {
    format!(
        "2 123456789010 {eni} {src} {dst} {sport} {dport} 6 1 100 {t} {} {action} OK",
        t + 1
    )
}

fn accepted_pair(eni: &str, client_port: u16, t: i64) -> Vec<String> {
    vec![
        record(
            eni,
            "203.0.113.5",
            "10.0.0.5",
            client_port,
            443,
            t,
            "ACCEPT",
        ),
        record(
            eni,
            "10.0.0.5",
            "203.0.113.5",
            443,
            client_port,
            t,
            "ACCEPT",
        ),
    ]
}

fn base_config(endpoint: &str, region: &str) -> aws_sdk_cloudwatchlogs::Config {
    aws_sdk_cloudwatchlogs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .build()
}

/// A client in `region` with the credentials of `role`, assumed through moto's STS.
async fn assumed_client(endpoint: &str, region: &str, role: &str) -> Client {
    // Region and credentials given: no provider chain (IMDS, profiles) runs.
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    let provider = AssumeRoleProvider::builder(role)
        .configure(&sdk)
        .session_name("seed")
        .build()
        .await;
    let credentials = provider
        .provide_credentials()
        .await
        .expect("AssumeRole on moto");
    let config = aws_sdk_cloudwatchlogs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .build();
    Client::from_conf(config)
}

async fn seed(client: &Client, eni: &str, records: &[String]) {
    seed_group(client, GROUP, eni, records).await;
}

async fn seed_group(client: &Client, group: &str, eni: &str, records: &[String]) {
    let stream = format!("{eni}-all");
    let _ = client.create_log_group().log_group_name(group).send().await;
    client
        .create_log_stream()
        .log_group_name(group)
        .log_stream_name(&stream)
        .send()
        .await
        .expect("create the stream");
    let now = now_ms();
    let events: Vec<InputLogEvent> = records
        .iter()
        .map(|message| {
            InputLogEvent::builder()
                .timestamp(now - 5_000)
                .message(message)
                .build()
                .unwrap()
        })
        .collect();
    client
        .put_log_events()
        .log_group_name(group)
        .log_stream_name(&stream)
        .set_log_events(Some(events))
        .send()
        .await
        .expect("put the records");
}

async fn streams(client: &Client) -> Vec<String> {
    client
        .describe_log_streams()
        .log_group_name(GROUP)
        .send()
        .await
        .expect("describe")
        .log_streams()
        .iter()
        .filter_map(|stream| stream.log_stream_name().map(str::to_owned))
        .collect()
}

/// `[cloudwatch]` in us-east-1 at `endpoint`, polled every second with a
/// 5-minute lookback, followed by `rest` (more `[cloudwatch]` keys, the
/// log groups, other tables).
fn cloudwatch_config(endpoint: &str, rest: &str) -> String {
    format!(
        "[cloudwatch]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\npoll_interval = \"1s\"\nlookback = \"5m\"\n{rest}"
    )
}

#[test]
fn groups_of_other_accounts_and_regions_are_read_and_a_refused_role_stops_nothing() {
    let moto = Moto::start();
    let endpoint = moto.endpoint_url();
    let t = now_s() - 5;
    block_on(async {
        let home = Client::from_conf(base_config(&endpoint, "us-east-1"));
        let other_region = Client::from_conf(base_config(&endpoint, "eu-west-1"));
        let other_account = assumed_client(&endpoint, "us-east-1", ROLE).await;
        seed(&home, ENI_HOME, &accepted_pair(ENI_HOME, 40_001, t)).await;
        let mut two = accepted_pair(ENI_OTHER_REGION, 40_002, t);
        two.extend(accepted_pair(ENI_OTHER_REGION, 40_003, t));
        seed(&other_region, ENI_OTHER_REGION, &two).await;
        let rejected = record(
            ENI_OTHER_ACCOUNT,
            "198.51.100.9",
            "10.0.0.9",
            51_000,
            22,
            t,
            "REJECT",
        );
        seed(&other_account, ENI_OTHER_ACCOUNT, &[rejected]).await;
        // The other account's group is not visible with the home credentials.
        assert_eq!(streams(&home).await, [format!("{ENI_HOME}-all")]);
        assert_eq!(
            streams(&other_account).await,
            [format!("{ENI_OTHER_ACCOUNT}-all")]
        );
    });

    let proxy = DenyAssumeRoleProxy::start(&moto);
    let config = cloudwatch_config(
        &proxy.endpoint_url(),
        &format!(
            r#"
[[cloudwatch.log_groups]]
name = "{GROUP}"

[[cloudwatch.log_groups]]
name = "{GROUP}"
role_arn = "{ROLE}"
external_id = "org-7"

[[cloudwatch.log_groups]]
name = "{GROUP}"
region = "eu-west-1"

[[cloudwatch.log_groups]]
name = "{GROUP}"
role_arn = "{DENIED_ROLE}"

[correlation]
reply_grace = "2s"
session_idle_timeout = "30s"
# Single-peer interfaces: the fallback after 1 s.
address_wait = "1s"
"#
        ),
    );
    let mut exporter = Exporter::start(Some(&config), &[("RUST_LOG", "info")]);
    let scrape = exporter.wait_for(
        "every readable group's sessions, and AssumeRole refused twice",
        |s| {
            let done = s.sessions("accepted") == 3.0
                && s.sessions("rejected_inbound") == 1.0
                && s.sum(
                    "vpcflow_api_calls_total",
                    &[("operation", "AssumeRole"), ("outcome", "error")],
                ) >= 2.0;
            done.then(|| s.clone())
        },
    );
    let sessions = |eni: &str, verdict: &str| {
        scrape.sum(
            "vpcflow_sessions_total",
            &[("interface_id", eni), ("verdict", verdict)],
        )
    };
    assert_eq!(sessions(ENI_HOME, "accepted"), 1.0);
    assert_eq!(sessions(ENI_OTHER_REGION, "accepted"), 2.0);
    assert_eq!(sessions(ENI_OTHER_ACCOUNT, "rejected_inbound"), 1.0);
    for verdict in ["rejected_outbound", "unanswered", "refused"] {
        assert_eq!(scrape.sessions(verdict), 0.0, "{verdict}");
    }
    // Every interface's info carries the account and region of its group:
    // the base credentials' account from GetCallerIdentity, a role's from
    // its ARN.
    for (eni, account, region) in [
        (ENI_HOME, MOTO_ACCOUNT, "us-east-1"),
        (ENI_OTHER_ACCOUNT, "222222222222", "us-east-1"),
        (ENI_OTHER_REGION, MOTO_ACCOUNT, "eu-west-1"),
    ] {
        let info = |labels: &[(&str, &str)]| scrape.sum("vpcflow_interface_info", labels);
        assert_eq!(
            info(&[("interface_id", eni)]),
            1.0,
            "{eni}: one info series"
        );
        assert_eq!(
            info(&[
                ("interface_id", eni),
                ("account_id", account),
                ("region", region)
            ]),
            1.0,
            "{eni} in {account}/{region}:\n{}",
            scrape.text
        );
    }
    assert!(
        scrape.sum(
            "vpcflow_api_calls_total",
            &[("operation", "GetCallerIdentity"), ("outcome", "success")]
        ) >= 1.0
    );
    assert_eq!(scrape.sum("vpcflow_log_events_new_total", &[]), 7.0);
    assert_eq!(scrape.sum("vpcflow_interfaces_watched", &[]), 3.0);
    assert!(
        scrape.sum(
            "vpcflow_api_calls_total",
            &[("operation", "AssumeRole"), ("outcome", "success")]
        ) >= 1.0,
        "{}",
        scrape.flow_lines()
    );
    // The refused group fails its polls: not up, but nothing else stops.
    assert_eq!(scrape.sum("vpcflow_up", &[]), 0.0);
    exporter.assert_running();
    let log = exporter.log_tail();
    assert!(
        log.contains("AssumeRole failed") && log.contains(DENIED_ROLE),
        "{log}"
    );
    // Its failed polls name the group with its account and region.
    assert!(
        log.contains(&format!("333333333333/us-east-1:{GROUP}")),
        "{log}"
    );
    // Still retried later.
    let before = scrape.sum(
        "vpcflow_api_calls_total",
        &[("operation", "AssumeRole"), ("outcome", "error")],
    );
    exporter.wait_for("another AssumeRole attempt", |s| {
        (s.sum(
            "vpcflow_api_calls_total",
            &[("operation", "AssumeRole"), ("outcome", "error")],
        ) > before)
            .then_some(())
    });
}

#[test]
fn inspect_reads_a_group_of_another_account_with_its_role() {
    let moto = Moto::start();
    let endpoint = moto.endpoint_url();
    let t = now_s() - 60;
    block_on(async {
        let other_account = assumed_client(&endpoint, "eu-west-1", ROLE).await;
        seed(
            &other_account,
            ENI_OTHER_ACCOUNT,
            &accepted_pair(ENI_OTHER_ACCOUNT, 40_010, t),
        )
        .await;
    });
    let since = (t - 120).to_string();
    let args = [
        "inspect",
        "--log-group",
        GROUP,
        "--endpoint-url",
        &endpoint,
        "--region",
        "eu-west-1",
        "--since",
        &since,
        "--output",
        "json",
    ];
    let mut with_role = args.to_vec();
    with_role.extend(["--role-arn", ROLE, "--external-id", "org-7"]);
    let report = run_json(&with_role);
    assert_eq!(report["records"]["total"], 2, "{report}");
    assert_eq!(report["sessions"]["accepted"], 1, "{report}");
    // The exporter's own credentials do not see that account's group.
    let output = binary().args(args).output().expect("run inspect");
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(GROUP), "{stderr}");
}

/// Groups of one role and region share one client, so one AssumeRole at
/// STS whatever reads with it (a second group, the EC2 calls of
/// `[ec2] describe_interfaces`); another region or another role is
/// another client with its own AssumeRole.
#[test]
fn groups_of_one_role_and_region_share_one_client() {
    let moto = Moto::start();
    let endpoint = moto.endpoint_url();
    let t = now_s() - 5;
    block_on(async {
        let east = assumed_client(&endpoint, "us-east-1", ROLE).await;
        let west = assumed_client(&endpoint, "eu-west-1", ROLE).await;
        seed_group(&east, GROUP, ENI_HOME, &accepted_pair(ENI_HOME, 40_020, t)).await;
        let second = accepted_pair(ENI_OTHER_ACCOUNT, 40_021, t);
        seed_group(&east, "/vpc/flow-logs-2", ENI_OTHER_ACCOUNT, &second).await;
        let third = accepted_pair(ENI_OTHER_REGION, 40_022, t);
        seed_group(&west, GROUP, ENI_OTHER_REGION, &third).await;
    });
    let proxy = FaultProxy::start(&endpoint);
    let config = cloudwatch_config(
        &proxy.url(),
        &format!(
            r#"
[[cloudwatch.log_groups]]
name = "{GROUP}"
role_arn = "{ROLE}"

[[cloudwatch.log_groups]]
name = "/vpc/flow-logs-2"
role_arn = "{ROLE}"

[[cloudwatch.log_groups]]
name = "{GROUP}"
role_arn = "{ROLE}"
region = "eu-west-1"

[[cloudwatch.log_groups]]
name = "{GROUP}"
role_arn = "{SECOND_ROLE}"

[ec2]
describe_interfaces = true
"#
        ),
    );
    let mut exporter = Exporter::start(
        Some(&config),
        &[("AWS_ENDPOINT_URL_EC2", proxy.url().as_str())],
    );
    exporter.wait_for("two polls of each group, and EC2 asked", |s| {
        let ec2 = s.sum(
            "vpcflow_api_calls_total",
            &[("operation", "DescribeNetworkInterfaces")],
        );
        (s.polls("success") >= 8.0 && ec2 >= 3.0).then_some(())
    });
    let mut assumed: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut ec2_regions = BTreeSet::new();
    for call in proxy.arrivals() {
        match call.operation.as_str() {
            "AssumeRole" => {
                let role = call.role_arn.clone().expect("AssumeRole names its role");
                *assumed.entry((role, call.region.clone())).or_default() += 1;
            }
            "DescribeNetworkInterfaces" => {
                ec2_regions.insert(call.region.clone());
            }
            _ => {}
        }
    }
    let expected: BTreeMap<(String, String), usize> = [
        ((ROLE, "us-east-1"), 1),
        ((ROLE, "eu-west-1"), 1),
        ((SECOND_ROLE, "us-east-1"), 1),
    ]
    .into_iter()
    .map(|((role, region), n)| ((role.to_owned(), region.to_owned()), n))
    .collect();
    assert_eq!(assumed, expected, "AssumeRole calls by (role, region)");
    assert_eq!(
        ec2_regions,
        BTreeSet::from(["eu-west-1".to_owned(), "us-east-1".to_owned()])
    );
    exporter.assert_running();
}

/// `(account_id, region)` of each series of the request budget's metrics,
/// the same for all three; panics when they differ.
fn budgets(scrape: &Scrape) -> BTreeSet<(String, String)> {
    let of = |metric: &str| -> BTreeSet<(String, String)> {
        scrape
            .series(metric)
            .into_iter()
            .map(|(labels, _)| (labels["account_id"].clone(), labels["region"].clone()))
            .collect()
    };
    let used = of("vpcflow_api_budget_used_ratio");
    assert_eq!(of("vpcflow_api_budget_demand_ratio"), used);
    assert_eq!(of("vpcflow_api_calls_delayed_total"), used);
    used
}

fn budget_key(account: &str, region: &str) -> (String, String) {
    (account.to_owned(), region.to_owned())
}

/// A group read with the base credentials and one read through a role into
/// the same account draw from one budget, labelled with the account STS
/// names; the base credentials' group of another region has its own.
/// While GetCallerIdentity fails, the base credentials' groups draw from
/// `account_id="unknown"` budgets (and go on polling); once it answers they
/// move to their account's, with their demand, and the `unknown` series go.
#[test]
fn base_credentials_and_a_role_into_the_same_account_share_one_budget() {
    let moto = Moto::start();
    let t = now_s() - 5;
    let eni_role = "eni-0d00000000000000d";
    block_on(async {
        let home = Client::from_conf(base_config(&moto.endpoint_url(), "us-east-1"));
        let west = Client::from_conf(base_config(&moto.endpoint_url(), "eu-west-1"));
        seed_group(&home, GROUP, ENI_HOME, &accepted_pair(ENI_HOME, 40_030, t)).await;
        let role_records = accepted_pair(eni_role, 40_031, t);
        seed_group(&home, "/vpc/flow-logs-role", eni_role, &role_records).await;
        let west_records = accepted_pair(ENI_OTHER_REGION, 40_032, t);
        seed_group(&west, GROUP, ENI_OTHER_REGION, &west_records).await;
    });
    let proxy = FaultProxy::start(&moto.endpoint_url());
    proxy.set(Fault::Ec2Denied, Some("GetCallerIdentity"));
    // Each group lists its one interface: its demand, 1 call per 1 s poll,
    // is known from the start; the budget is 4/s, so 0.25 a group.
    let config = cloudwatch_config(
        &proxy.url(),
        &format!(
            r#"max_requests_per_second = 4

[[cloudwatch.log_groups]]
name = "{GROUP}"
interfaces = ["{ENI_HOME}"]

[[cloudwatch.log_groups]]
name = "/vpc/flow-logs-role"
role_arn = "{SAME_ACCOUNT_ROLE}"
interfaces = ["{eni_role}"]

[[cloudwatch.log_groups]]
name = "{GROUP}"
region = "eu-west-1"
interfaces = ["{ENI_OTHER_REGION}"]
"#
        ),
    );
    let mut exporter = Exporter::start(Some(&config), &[("RUST_LOG", "info")]);
    let demand = |s: &Scrape, account: &str, region: &str| {
        s.sum(
            "vpcflow_api_budget_demand_ratio",
            &[("account_id", account), ("region", region)],
        )
    };

    // STS refuses: the base credentials' groups poll in the unknown budgets.
    let unresolved = exporter.wait_for("polls while GetCallerIdentity fails", |s| {
        let refused = s.sum(
            "vpcflow_api_calls_total",
            &[("operation", "GetCallerIdentity"), ("outcome", "error")],
        );
        (refused >= 1.0 && s.sum("vpcflow_log_events_new_total", &[]) == 6.0).then(|| s.clone())
    });
    assert_eq!(
        budgets(&unresolved),
        BTreeSet::from([
            budget_key(MOTO_ACCOUNT, "us-east-1"),
            budget_key("unknown", "us-east-1"),
            budget_key("unknown", "eu-west-1"),
        ]),
        "{}",
        unresolved.text
    );
    assert_eq!(demand(&unresolved, "unknown", "us-east-1"), 0.25);
    assert_eq!(demand(&unresolved, MOTO_ACCOUNT, "us-east-1"), 0.25);
    assert!(
        exporter
            .log_tail()
            .contains("GetCallerIdentity failed: until it answers"),
        "{}",
        exporter.log_tail()
    );

    // STS answers: one budget per account-region, the unknown ones gone.
    proxy.clear();
    let resolved = exporter.wait_for("the base credentials' account known", |s| {
        (budgets(s).len() == 2).then(|| s.clone())
    });
    assert_eq!(
        budgets(&resolved),
        BTreeSet::from([
            budget_key(MOTO_ACCOUNT, "us-east-1"),
            budget_key(MOTO_ACCOUNT, "eu-west-1"),
        ]),
        "{}",
        resolved.text
    );
    // Both us-east-1 groups' demand in the one budget.
    assert_eq!(demand(&resolved, MOTO_ACCOUNT, "us-east-1"), 0.5);
    assert_eq!(demand(&resolved, MOTO_ACCOUNT, "eu-west-1"), 0.25);
    for eni in [ENI_HOME, eni_role, ENI_OTHER_REGION] {
        let located = resolved.sum(
            "vpcflow_interface_info",
            &[("interface_id", eni), ("account_id", MOTO_ACCOUNT)],
        );
        assert_eq!(located, 1.0, "{eni}: {}", resolved.text);
    }
    exporter.assert_running();
}

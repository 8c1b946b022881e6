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

mod common;

use aws_config::BehaviorVersion;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::config::Region;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;

use common::Moto;
use common::exporter::{Exporter, binary, now_s, run_json};
use common::moto::now_ms;
use common::sts_proxy::DenyAssumeRoleProxy;

const GROUP: &str = "/vpc/flow-logs";
const ROLE: &str = "arn:aws:iam::222222222222:role/vpc-flow-exporter-reader";
const DENIED_ROLE: &str = "arn:aws:iam::333333333333:role/denied-reader";
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
    let stream = format!("{eni}-all");
    let _ = client.create_log_group().log_group_name(GROUP).send().await;
    client
        .create_log_stream()
        .log_group_name(GROUP)
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
        .log_group_name(GROUP)
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

#[test]
fn groups_of_other_accounts_and_regions_are_read_and_a_refused_role_stops_nothing() {
    let moto = Moto::start();
    let endpoint = moto.endpoint_url();
    let t = now_s() - 5;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
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
    let config = format!(
        r#"
[cloudwatch]
region = "us-east-1"
endpoint_url = "{endpoint}"
poll_interval = "1s"
lookback = "5m"

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
"#,
        endpoint = proxy.endpoint_url()
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
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

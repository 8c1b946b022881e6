//! `[ec2] describe_interfaces` against moto's EC2: interface facts from
//! `DescribeNetworkInterfaces` make the first session's direction exact and
//! name the interface in `vpcflow_interface_info`; a failing EC2 is counted
//! and the exporter goes on counting.
//!
//! Moto gives every network interface the type `interface` (a NAT
//! gateway's too), so "intermediate by type" is tested in
//! `src/exporter/ec2.rs` with an in-memory EC2.

// Each test crate uses a part of common; its re-exports may go unused.
mod common;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};

use common::Moto;
use common::exporter::{Exporter, now_s, seed};
use common::fault_proxy::{Fault, FaultProxy};
use common::moto::ec2_client;

const GROUP: &str = "/vpc/flow-logs";

/// What the test created in EC2.
struct Created {
    interface_id: String,
    vpc_id: String,
    subnet_id: String,
    group_id: String,
    instance_id: String,
}

/// A VPC, a subnet, a security group, an instance, and an interface with
/// `address` and a `Name` tag, attached to the instance.
fn create_interface(moto: &Moto, address: &str, name: &str) -> Created {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ec2 = ec2_client(&moto.endpoint_url(), common::moto::REGION);
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.0.0.0/16")
            .send()
            .await
            .unwrap();
        let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block("10.0.5.0/24")
            .send()
            .await
            .unwrap();
        let subnet_id = subnet.subnet().unwrap().subnet_id().unwrap().to_string();
        let group = ec2
            .create_security_group()
            .group_name("payments")
            .description("payments database")
            .vpc_id(&vpc_id)
            .send()
            .await
            .unwrap();
        let group_id = group.group_id().unwrap().to_string();
        let tag = TagSpecification::builder()
            .resource_type(ResourceType::NetworkInterface)
            .tags(Tag::builder().key("Name").value(name).build())
            .build();
        let interface = ec2
            .create_network_interface()
            .subnet_id(&subnet_id)
            .private_ip_address(address)
            .groups(&group_id)
            .description("the payments database")
            .tag_specifications(tag)
            .send()
            .await
            .unwrap();
        let interface_id = interface
            .network_interface()
            .unwrap()
            .network_interface_id()
            .unwrap()
            .to_string();
        let instances = ec2
            .run_instances()
            .image_id("ami-12c6146b")
            .min_count(1)
            .max_count(1)
            .subnet_id(&subnet_id)
            .send()
            .await
            .unwrap();
        let instance_id = instances.instances()[0].instance_id().unwrap().to_string();
        ec2.attach_network_interface()
            .network_interface_id(&interface_id)
            .instance_id(&instance_id)
            .device_index(1)
            .send()
            .await
            .unwrap();
        Created {
            interface_id,
            vpc_id,
            subnet_id,
            group_id,
            instance_id,
        }
    })
}

fn record(eni: &str, src: (&str, u16), dst: (&str, u16), t: i64, action: &str) -> String {
    format!(
        "2 123456789012 {eni} {} {} {} {} 6 3 180 {} {t} {action} OK",
        src.0,
        dst.0,
        src.1,
        dst.1,
        t - 1
    )
}

fn config(moto: &Moto, ec2: &str) -> String {
    format!(
        r#"
[cloudwatch]
region = "us-east-1"
endpoint_url = "{}"
poll_interval = "1s"
lookback = "5m"

[[cloudwatch.log_groups]]
name = "{GROUP}"

[correlation]
reply_grace = "2s"
session_idle_timeout = "30s"
# Without EC2, a single-peer interface's sessions wait this long for its
# address before the fallback reports them.
address_wait = "3s"

[ec2]
describe_interfaces = true
refresh_interval = "1m"
{ec2}
"#,
        moto.endpoint_url()
    )
}

/// The interface talks to one peer only, so its records cannot tell which
/// address is its own, and its instance starts the session: without EC2
/// DESIGN's fallback ("the request's destination is local") would make it
/// rejected_outbound, ingress. With the interface's address from EC2 it is
/// rejected_inbound (the reply was rejected coming in), egress, from the
/// first session. EC2 is reached through the SDK's standard
/// `AWS_ENDPOINT_URL_EC2` only: `[cloudwatch] endpoint_url` (moto too)
/// never applies to EC2, and the harness points `AWS_ENDPOINT_URL` at a
/// closed port.
#[test]
fn ec2_addresses_make_the_first_direction_exact_and_name_the_interface() {
    let moto = Moto::start();
    let created = create_interface(&moto, "10.0.5.50", "payments-db");
    let eni = created.interface_id.as_str();
    let t = now_s() - 5;
    let records = vec![
        record(eni, ("10.0.5.50", 50000), ("52.94.0.8", 443), t, "ACCEPT"),
        record(eni, ("52.94.0.8", 443), ("10.0.5.50", 50000), t, "REJECT"),
    ];
    seed(&moto, GROUP, &[(eni, records)]);

    let endpoint = moto.endpoint_url();
    let mut exporter = Exporter::start(
        Some(&config(&moto, "")),
        &[("AWS_ENDPOINT_URL_EC2", endpoint.as_str())],
    );
    exporter.wait_ready();
    let done = exporter.wait_for("the session decided", |s| {
        (s.sum("vpcflow_sessions_total", &[]) >= 1.0).then(|| s.clone())
    });
    assert_eq!(
        done.sum(
            "vpcflow_sessions_total",
            &[
                ("interface_id", eni),
                ("verdict", "rejected_inbound"),
                ("direction", "egress")
            ]
        ),
        1.0,
        "{}",
        done.flow_lines()
    );
    assert_eq!(
        done.sum("vpcflow_sessions_total", &[("direction", "ingress")]),
        0.0
    );

    let info = [
        ("interface_id", eni),
        ("name", "payments-db"),
        ("type", "interface"),
        ("account_id", "123456789012"),
        ("region", "us-east-1"),
        ("vpc_id", created.vpc_id.as_str()),
        ("subnet_id", created.subnet_id.as_str()),
        ("instance_id", created.instance_id.as_str()),
        ("security_groups", created.group_id.as_str()),
        ("description", "the payments database"),
    ];
    assert_eq!(
        done.sum("vpcflow_interface_info", &info),
        1.0,
        "{}",
        done.text
            .lines()
            .filter(|l| l.starts_with("vpcflow_interface_info"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        done.sum(
            "vpcflow_api_calls_total",
            &[
                ("operation", "DescribeNetworkInterfaces"),
                ("outcome", "success")
            ]
        ),
        1.0,
        "one batched call for the group's interfaces"
    );
    // The landing page's API shows the tag's name.
    let (_, body) = exporter.get("/api/v1/interfaces");
    assert!(body.contains("payments-db"), "{body}");
}

/// EC2 unreachable: the call is counted as an error once per refresh,
/// logged, and the exporter goes on counting sessions. With neither `[ec2]
/// endpoint_url` nor `AWS_ENDPOINT_URL_EC2`, EC2 is called at
/// `AWS_ENDPOINT_URL` (the harness's closed port), never at the Logs
/// `endpoint_url` (moto, which would answer).
#[test]
fn a_failing_ec2_is_counted_and_counting_goes_on() {
    let moto = Moto::start();
    failing_ec2_is_counted_and_counting_goes_on(&moto, "", "");
}

/// EC2 denied (403 `UnauthorizedOperation`: the role lacks
/// `ec2:DescribeNetworkInterfaces`): the same, and the log says why.
#[test]
fn a_denied_ec2_is_counted_and_counting_goes_on() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint_url());
    proxy.set(Fault::Ec2Denied, Some("DescribeNetworkInterfaces"));
    failing_ec2_is_counted_and_counting_goes_on(
        &moto,
        &format!("endpoint_url = \"{}\"", proxy.url()),
        "UnauthorizedOperation",
    );
    assert_eq!(proxy.injected("DescribeNetworkInterfaces"), 1);
}

/// Runs the exporter with `[ec2]` and `ec2_keys` against an EC2 that fails;
/// the log names `logged` (when not empty).
fn failing_ec2_is_counted_and_counting_goes_on(moto: &Moto, ec2_keys: &str, logged: &str) {
    let eni = "eni-0bad0000000000001";
    let t = now_s() - 5;
    let records = vec![
        record(eni, ("203.0.113.9", 41000), ("10.0.5.60", 22), t, "ACCEPT"),
        record(eni, ("10.0.5.60", 22), ("203.0.113.9", 41000), t, "ACCEPT"),
    ];
    seed(moto, GROUP, &[(eni, records)]);
    let mut exporter = Exporter::start(Some(&config(moto, ec2_keys)), &[]);
    exporter.wait_ready();
    let done = exporter.wait_for("the session counted", |s| {
        (s.sessions("accepted") >= 1.0).then(|| s.clone())
    });
    let before = exporter.scrape();
    let _ = exporter.wait_polls(&before, 3.0);
    let after = exporter.scrape();
    let errors = |s: &common::exporter::Scrape| {
        s.sum(
            "vpcflow_api_calls_total",
            &[
                ("operation", "DescribeNetworkInterfaces"),
                ("outcome", "error"),
            ],
        )
    };
    assert_eq!(errors(&done), 1.0, "the failed call is counted");
    assert_eq!(
        errors(&after),
        1.0,
        "and not retried before the next refresh"
    );
    assert_eq!(
        after.sum("vpcflow_up", &[]),
        1.0,
        "the flow log source is fine"
    );
    assert_eq!(
        done.sum(
            "vpcflow_direction_fallbacks_total",
            &[("interface_id", eni)]
        ),
        1.0,
        "its direction is the fallback's, and counted so"
    );
    let log = exporter.log_tail();
    assert!(
        log.contains("Describing network interfaces failed"),
        "{log}"
    );
    assert!(log.contains(logged), "{log}");
}

/// A NAT gateway's interface is intermediate by its EC2 type, not by
/// inference: a lone accepted record through it is no session (neither
/// unanswered nor anything else). moto makes only plain interfaces, so the
/// proxy gives this one the type AWS reports for a NAT gateway's.
#[test]
fn a_nat_gateway_interface_is_intermediate_by_its_type() {
    let moto = Moto::start();
    let created = create_interface(&moto, "10.0.5.70", "nat-eu-west-1b");
    let eni = created.interface_id.as_str();
    let t = now_s() - 5;
    // From the interface's own address, never answered: on an ordinary
    // interface an unanswered egress session.
    let records = vec![record(
        eni,
        ("10.0.5.70", 40000),
        ("52.94.0.8", 443),
        t,
        "ACCEPT",
    )];
    seed(&moto, GROUP, &[(eni, records)]);
    let proxy = FaultProxy::start(&moto.endpoint_url());
    proxy.set(
        Fault::Rewrite(
            "<interfaceType>interface</interfaceType>",
            "<interfaceType>natGateway</interfaceType>",
        ),
        Some("DescribeNetworkInterfaces"),
    );
    let mut exporter = Exporter::start(
        Some(&config(
            &moto,
            &format!("endpoint_url = \"{}\"", proxy.url()),
        )),
        &[],
    );
    exporter.wait_ready();
    let done = exporter.wait_for("the record counted, nothing pending", |s| {
        (s.sum("vpcflow_records_total", &[("interface_id", eni)]) >= 1.0
            && s.sum("vpcflow_pending_sessions", &[]) == 0.0)
            .then(|| s.clone())
    });
    assert!(proxy.injected("DescribeNetworkInterfaces") >= 1);
    assert_eq!(
        done.sum(
            "vpcflow_interface_info",
            &[("interface_id", eni), ("type", "nat_gateway")]
        ),
        1.0,
        "{}",
        done.flow_lines()
    );
    assert_eq!(
        done.sum("vpcflow_sessions_total", &[("interface_id", eni)]),
        0.0,
        "{}",
        done.flow_lines()
    );
}

//! What the end-to-end tests of `serve` over CloudWatch Logs share: the
//! config they run the exporter with, the flow records they put, and the
//! flow counters they compare.

use std::collections::BTreeMap;

use super::exporter::Scrape;

/// The log group the tests read.
pub const GROUP: &str = "/vpc/flow-logs";
/// The account in the records.
pub const ACCOUNT: &str = "123456789010";

/// A `serve` config reading [`GROUP`] from `endpoint`, polling every second.
/// `cloudwatch` and `group` are more keys of `[cloudwatch]` and of the log
/// group; `rest` is appended (more tables).
pub struct CloudWatchToml<'a> {
    pub endpoint: &'a str,
    pub lookback: &'a str,
    pub cloudwatch: &'a str,
    pub group: &'a str,
    pub rest: String,
}

impl<'a> CloudWatchToml<'a> {
    /// `lookback = "5m"`, nothing else.
    pub fn new(endpoint: &'a str) -> Self {
        CloudWatchToml {
            endpoint,
            lookback: "5m",
            cloudwatch: "",
            group: "",
            rest: String::new(),
        }
    }

    pub fn toml(&self) -> String {
        let CloudWatchToml {
            endpoint,
            lookback,
            cloudwatch,
            group,
            rest,
        } = self;
        format!(
            r#"
[cloudwatch]
region = "us-east-1"
endpoint_url = "{endpoint}"
poll_interval = "1s"
lookback = "{lookback}"
{cloudwatch}

[[cloudwatch.log_groups]]
name = "{GROUP}"
{group}

{rest}
"#
        )
    }
}

/// `[interfaces.ENI] addresses = [ADDRESS]` for each pair.
pub fn interface_addresses(interfaces: &[(&str, &str)]) -> String {
    interfaces
        .iter()
        .map(|(eni, address)| format!("[interfaces.{eni}]\naddresses = [\"{address}\"]\n"))
        .collect()
}

/// `[correlation]` with the given `reply_grace` and `session_idle_timeout`.
/// Tests write a handful of records per interface, most to one peer: such
/// an interface's address is never told, so its sessions get the fallback
/// after `address_wait`, 1 s here.
pub fn correlation(reply_grace: &str, session_idle_timeout: &str) -> String {
    format!(
        "[correlation]\nreply_grace = \"{reply_grace}\"\nsession_idle_timeout = \"{session_idle_timeout}\"\naddress_wait = \"1s\"\n"
    )
}

/// A version-2 TCP record of 3 packets and 180 bytes from `t` to `t + 1`.
pub fn record(eni: &str, src: (&str, u16), dst: (&str, u16), t: i64, action: &str) -> String {
    format!(
        "2 {ACCOUNT} {eni} {} {} {} {} 6 3 180 {t} {} {action} OK",
        src.0,
        dst.0,
        src.1,
        dst.1,
        t + 1
    )
}

/// A version-2 record with every field given; packets are bytes / 100.
#[allow(clippy::too_many_arguments)]
pub fn flow_record(
    eni: &str,
    src: &str,
    dst: &str,
    sport: u16,
    dport: u16,
    protocol: u8,
    bytes: u64,
    start: i64,
    end: i64,
    action: &str,
) -> String {
    format!(
        "2 {ACCOUNT} {eni} {src} {dst} {sport} {dport} {protocol} {packets} {bytes} {start} {end} {action} OK",
        packets = bytes.div_ceil(100)
    )
}

/// The flow counters of a scrape, every series with its value (zeros
/// included): sessions, bytes, packets, records and malformed records.
pub fn flow_counters(scrape: &Scrape) -> BTreeMap<String, f64> {
    scrape
        .text
        .lines()
        .filter(|l| {
            [
                "vpcflow_sessions_total{",
                "vpcflow_bytes_total{",
                "vpcflow_packets_total{",
                "vpcflow_records_total{",
                "vpcflow_malformed_records_total{",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

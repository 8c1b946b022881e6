//! Synthetic flow logs with known verdicts, for tests, benchmarks and demos.
//!
//! Every session is built from one scenario (an accepted connection, a
//! network ACL blocking replies, a port scan, …) so the verdict totals are
//! known by construction and tests can hold the core to them. Output is
//! deterministic for a seed. Records of one capture window (60 s) are
//! shuffled, as AWS delivers them in any order.
//!
//! Two shapes: the scenarios below (every edge case the rules know, on a
//! few interfaces), and [`realistic`] traffic (a busy VPC's mix on many
//! interfaces) for benchmarks.

use std::io::{self, Write};
use std::net::Ipv4Addr;

use crate::flow::VerdictCounts;

mod realistic;

pub use realistic::{RealisticConfig, generate_realistic};

/// What kind of traffic is generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// Every scenario the rules know (long-lived sessions, stray rejects,
    /// replies in the next window, …) on a few interfaces.
    Scenarios,
    /// A busy VPC: many interfaces, a fixed number of records per window,
    /// mostly pairs and scanners' rejects (version-2 records only).
    Realistic,
}

/// Which fields the generated records carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Style {
    /// The default format, no header line.
    V2,
    /// An S3-style file: a header line, then records with `tcp-flags`,
    /// `instance-id` and packet addresses, which adds refused connections
    /// and a NAT gateway interface.
    Rich,
}

const RICH_HEADER: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status instance-id tcp-flags pkt-srcaddr pkt-dstaddr";

#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// Stop after about this many records (a session is never cut in half).
    pub records: usize,
    pub interfaces: usize,
    pub sessions_per_window: usize,
    /// Unix time of the first capture window.
    pub start_time: u64,
    pub style: Style,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 1,
            records: 10_000,
            interfaces: 4,
            sessions_per_window: 400,
            start_time: 1_700_000_000,
            style: Style::V2,
        }
    }
}

/// What the generated records must give.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Expected {
    pub records: u64,
    pub nodata: u64,
    pub skipdata: u64,
    pub sessions: VerdictCounts,
    /// Lone accepted flows on the NAT gateway: no verdict.
    pub without_verdict: u64,
}

const WINDOW: u64 = 60;
const ACCOUNT: &str = "123456789010";

#[derive(Debug, Clone, Copy)]
enum Scenario {
    AcceptedIngress,
    AcceptedEgress,
    LongLived,
    ReplyInNextWindow,
    StrayRejectAfterClose,
    RejectedInbound,
    RepliesBlockedByNacl,
    EgressBlocked,
    Unanswered,
    Refused,
    NatGateway,
}

const V2_MIX: &[(Scenario, u32)] = &[
    (Scenario::AcceptedIngress, 40),
    (Scenario::AcceptedEgress, 20),
    (Scenario::LongLived, 5),
    (Scenario::ReplyInNextWindow, 5),
    (Scenario::StrayRejectAfterClose, 3),
    (Scenario::RejectedInbound, 12),
    (Scenario::RepliesBlockedByNacl, 5),
    (Scenario::EgressBlocked, 3),
    (Scenario::Unanswered, 7),
];

const RICH_EXTRA: &[(Scenario, u32)] = &[(Scenario::Refused, 4), (Scenario::NatGateway, 4)];

/// SplitMix64: small, fast and good enough for synthetic traffic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// One line to write, in the window it belongs to.
struct Line {
    window: u64,
    text: String,
}

struct Flow<'a> {
    interface: &'a str,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    protocol: u8,
    packets: u64,
    bytes: u64,
    start: u64,
    end: u64,
    action: &'a str,
    flags: u16,
    instance: &'a str,
}

fn interface_id(index: usize) -> String {
    format!("eni-{index:017x}")
}

fn local_address(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, index as u8, 10)
}

/// A unique remote endpoint per session, so no two sessions share a key.
fn remote(base: [u8; 2], counter: u64) -> (Ipv4Addr, u16) {
    let host = (counter % 50_000) as u32;
    let port = 32_768 + ((counter / 50_000) % 28_000) as u16;
    let [_, _, c, d] = host.to_be_bytes();
    (Ipv4Addr::new(base[0], base[1], c, d), port)
}

/// Writes generated records; returns the totals they must give.
pub fn generate(config: &GeneratorConfig, out: &mut impl Write) -> io::Result<Expected> {
    let mut rng = Rng(config.seed);
    let mut expected = Expected::default();
    let mix: Vec<(Scenario, u32)> = match config.style {
        Style::V2 => V2_MIX.to_vec(),
        Style::Rich => V2_MIX.iter().chain(RICH_EXTRA).copied().collect(),
    };
    let weight_total: u32 = mix.iter().map(|(_, weight)| weight).sum();
    let interfaces: Vec<String> = (0..config.interfaces.max(1)).map(interface_id).collect();
    let nat_interface = interface_id(0xa7);
    let idle_interface = interface_id(0x1d1e);
    if config.style == Style::Rich {
        writeln!(out, "{RICH_HEADER}")?;
    }
    let mut pending: Vec<Line> = Vec::new();
    let mut counter = 0u64;
    let mut window = 0u64;
    while (expected.records as usize) < config.records {
        let window_start = config.start_time + window * WINDOW;
        let mut busy = vec![false; interfaces.len()];
        for _ in 0..config.sessions_per_window {
            let mut pick = rng.below(u64::from(weight_total)) as u32;
            let scenario = mix
                .iter()
                .find(|(_, weight)| {
                    if pick < *weight {
                        true
                    } else {
                        pick -= weight;
                        false
                    }
                })
                .map(|(scenario, _)| *scenario)
                .unwrap_or(Scenario::AcceptedIngress);
            counter += 1;
            let index = (counter as usize) % interfaces.len();
            busy[index] = true;
            let session = Session {
                interface: &interfaces[index],
                local: local_address(index),
                counter,
                window,
                window_start,
                style: config.style,
            };
            let lines = session.lines(scenario, &nat_interface, &mut rng, &mut expected);
            expected.records += lines.len() as u64;
            pending.extend(lines);
        }
        let mut status_record = |interface: &str, status: &str| {
            if status == "NODATA" {
                expected.nodata += 1;
            } else {
                expected.skipdata += 1;
            }
            expected.records += 1;
            pending.push(Line {
                window,
                text: status_line(config.style, interface, window_start, status),
            });
        };
        for (index, interface) in interfaces.iter().enumerate() {
            // AWS writes NODATA only for a window without traffic.
            match rng.below(1000) {
                0..=4 if !busy[index] => status_record(interface, "NODATA"),
                5 => status_record(interface, "SKIPDATA"),
                _ => {}
            }
        }
        if config.style == Style::Rich {
            // An idle interface: NODATA every window, and one window lost at capture.
            let status = if window == 3 { "SKIPDATA" } else { "NODATA" };
            status_record(&idle_interface, status);
        }
        flush_window(&mut pending, window, &mut rng, out)?;
        window += 1;
    }
    flush_window(&mut pending, u64::MAX, &mut rng, out)?;
    Ok(expected)
}

/// Writes, shuffled, every pending line of windows up to `window`.
fn flush_window(
    pending: &mut Vec<Line>,
    window: u64,
    rng: &mut Rng,
    out: &mut impl Write,
) -> io::Result<()> {
    let (mut due, later): (Vec<Line>, Vec<Line>) =
        pending.drain(..).partition(|line| line.window <= window);
    *pending = later;
    due.sort_by_key(|line| line.window);
    let mut begin = 0;
    while begin < due.len() {
        let end = due[begin..]
            .iter()
            .position(|line| line.window != due[begin].window)
            .map_or(due.len(), |offset| begin + offset);
        for i in (begin + 1..end).rev() {
            let j = begin + rng.below((i - begin + 1) as u64) as usize;
            due.swap(i, j);
        }
        begin = end;
    }
    for line in due {
        writeln!(out, "{}", line.text)?;
    }
    Ok(())
}

fn status_line(style: Style, interface: &str, window_start: u64, status: &str) -> String {
    let end = window_start + WINDOW - 1;
    match style {
        Style::V2 => {
            format!("2 {ACCOUNT} {interface} - - - - - - - {window_start} {end} - {status}")
        }
        Style::Rich => {
            format!("3 {ACCOUNT} {interface} - - - - - - - {window_start} {end} - {status} - - - -")
        }
    }
}

struct Session<'a> {
    interface: &'a str,
    local: Ipv4Addr,
    counter: u64,
    window: u64,
    window_start: u64,
    style: Style,
}

const SYN: u16 = 2;
const FIN: u16 = 1;
const RST: u16 = 4;
const SYN_ACK: u16 = 18;

impl Session<'_> {
    fn lines(
        &self,
        scenario: Scenario,
        nat_interface: &str,
        rng: &mut Rng,
        expected: &mut Expected,
    ) -> Vec<Line> {
        let client = remote([100, 64], self.counter);
        let server = remote([52, 94], self.counter);
        let service_ports = [443u16, 22, 5432, 80];
        let service = (self.local, service_ports[rng.below(4) as usize]);
        let ephemeral = (self.local, client.1);
        let start = self.window_start + rng.below(20);
        let end = self.window_start + 30 + rng.below(29);
        let packets = 1 + rng.below(40);
        let bytes = packets * (40 + rng.below(1400));
        let flow = |src, dst, action, flags, window: u64| Flow {
            interface: self.interface,
            src,
            dst,
            protocol: 6,
            packets,
            bytes,
            start: start + (window - self.window) * WINDOW,
            end: end + (window - self.window) * WINDOW,
            action,
            flags,
            instance: "i-0123456789abcdef0",
        };
        let here = self.window;
        let next = self.window + 1;
        let (flows, verdict) = match scenario {
            Scenario::AcceptedIngress => (
                vec![
                    flow(client, service, "ACCEPT", SYN | FIN, here),
                    flow(service, client, "ACCEPT", SYN_ACK | FIN, here),
                ],
                Some(crate::flow::Verdict::Accepted),
            ),
            Scenario::AcceptedEgress => (
                vec![
                    flow(ephemeral, (server.0, 443), "ACCEPT", SYN | FIN, here),
                    flow((server.0, 443), ephemeral, "ACCEPT", SYN_ACK | FIN, here),
                ],
                Some(crate::flow::Verdict::Accepted),
            ),
            Scenario::LongLived => (
                vec![
                    flow(client, service, "ACCEPT", SYN, here),
                    flow(service, client, "ACCEPT", SYN_ACK, here),
                    flow(client, service, "ACCEPT", FIN, next),
                    flow(service, client, "ACCEPT", FIN, next),
                ],
                Some(crate::flow::Verdict::Accepted),
            ),
            Scenario::ReplyInNextWindow => {
                let mut request = flow(client, service, "ACCEPT", SYN | FIN, here);
                request.end = self.window_start + WINDOW - 1;
                let reply = flow(service, client, "ACCEPT", SYN_ACK | FIN, next);
                (vec![request, reply], Some(crate::flow::Verdict::Accepted))
            }
            Scenario::StrayRejectAfterClose => (
                vec![
                    flow(client, service, "ACCEPT", SYN | FIN, here),
                    flow(service, client, "ACCEPT", SYN_ACK | FIN, here),
                    flow(client, service, "REJECT", RST, next),
                ],
                Some(crate::flow::Verdict::Accepted),
            ),
            Scenario::RejectedInbound => (
                vec![flow(client, (self.local, 3389), "REJECT", SYN, here)],
                Some(crate::flow::Verdict::RejectedInbound),
            ),
            Scenario::RepliesBlockedByNacl => (
                vec![
                    flow(client, service, "ACCEPT", SYN, here),
                    flow(service, client, "REJECT", SYN_ACK, here),
                ],
                Some(crate::flow::Verdict::RejectedOutbound),
            ),
            Scenario::EgressBlocked => (
                vec![flow(ephemeral, (server.0, 443), "REJECT", SYN, here)],
                Some(crate::flow::Verdict::RejectedOutbound),
            ),
            Scenario::Unanswered => (
                vec![flow(client, (self.local, 5432), "ACCEPT", SYN, here)],
                Some(crate::flow::Verdict::Unanswered),
            ),
            Scenario::Refused => (
                vec![
                    flow(client, (self.local, 8080), "ACCEPT", SYN, here),
                    flow((self.local, 8080), client, "ACCEPT", RST, here),
                ],
                Some(crate::flow::Verdict::Refused),
            ),
            Scenario::NatGateway => {
                let mut forwarded = flow(
                    (Ipv4Addr::new(10, 0, 200, 5), client.1),
                    (server.0, 443),
                    "ACCEPT",
                    SYN,
                    here,
                );
                forwarded.interface = nat_interface;
                forwarded.instance = "-";
                (vec![forwarded], None)
            }
        };
        match verdict {
            Some(verdict) => expected.sessions.add(verdict),
            None => expected.without_verdict += 1,
        }
        flows
            .iter()
            .map(|flow| Line {
                window: here + (flow.start - start) / WINDOW,
                text: self.render(flow),
            })
            .collect()
    }

    fn render(&self, flow: &Flow<'_>) -> String {
        let Flow {
            interface,
            src,
            dst,
            protocol,
            packets,
            bytes,
            start,
            end,
            action,
            flags,
            instance,
        } = flow;
        let common = format!(
            "{ACCOUNT} {interface} {} {} {} {} {protocol} {packets} {bytes} {start} {end} {action} OK",
            src.0, dst.0, src.1, dst.1
        );
        match self.style {
            Style::V2 => format!("2 {common}"),
            Style::Rich => format!("3 {common} {instance} {flags} {} {}", src.0, dst.0),
        }
    }
}

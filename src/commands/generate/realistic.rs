//! Synthetic traffic shaped like a busy VPC, for benchmarks that must not
//! flatter the core: many interfaces, a fixed number of records per capture
//! window, and the mix an internet-facing VPC logs — mostly request/reply
//! pairs, a large share of lone inbound `REJECT`s from scanners (each from
//! its own public address), some replies blocked by a network ACL, lone
//! accepted requests nobody answers, `NODATA` from idle interfaces and
//! `SKIPDATA`; TCP, UDP and ICMP; peers in the VPC (east-west) and on the
//! internet.
//!
//! Shares of a window's records (with `records_per_window` = R):
//!
//! | share | records | verdict |
//! | --- | --- | --- |
//! | 70 % | request/reply pairs, both `ACCEPT` | accepted |
//! | 15 % | lone inbound `REJECT` | rejected_inbound |
//! | 5 % | accepted request, rejected reply | rejected_outbound |
//! | 7 % | lone accepted request | unanswered |
//! | 2 % | `NODATA`, one per idle interface | — |
//! | 1 % | `SKIPDATA` on busy interfaces | — |
//!
//! Every session has a remote endpoint of its own, and all of a session's
//! records lie in one capture window (shuffled inside it, as AWS delivers
//! them), so the verdict totals are known by construction whatever the
//! order of arrival and whether or not the interfaces' addresses are known.
//! Version-2 records (the default format), no header line.

use std::io::{self, Write};
use std::net::Ipv4Addr;

use super::{ACCOUNT, Expected, Rng, WINDOW, interface_id};
use crate::flow::Verdict;

#[derive(Debug, Clone)]
pub struct RealisticConfig {
    pub seed: u64,
    /// Stop after the window in which this many records are reached.
    pub records: usize,
    /// Interfaces that carry traffic (idle ones, writing `NODATA`, come on top).
    pub interfaces: usize,
    /// Records of each 60-second capture window, all kinds together.
    pub records_per_window: usize,
    /// Unix time of the first capture window.
    pub start_time: u64,
}

impl Default for RealisticConfig {
    fn default() -> Self {
        RealisticConfig {
            seed: 1,
            records: 2_000_000,
            interfaces: 200,
            records_per_window: 20_000,
            start_time: 1_700_000_000,
        }
    }
}

/// Sessions and status records of one capture window, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WindowMix {
    pairs: usize,
    lone_rejects: usize,
    blocked_replies: usize,
    unanswered: usize,
    nodata: usize,
    skipdata: usize,
}

impl WindowMix {
    /// The shares of the module's table, in whole records.
    fn of(records: usize) -> WindowMix {
        let share = |percent: usize| records * percent / 100;
        let nodata = share(2);
        let skipdata = share(1);
        let mut mix = WindowMix {
            pairs: share(70) / 2,
            lone_rejects: share(15),
            blocked_replies: share(5) / 2,
            unanswered: share(7),
            nodata,
            skipdata,
        };
        // What rounding left over goes to lone rejects (one record each).
        let used = mix.records();
        mix.lone_rejects += records.saturating_sub(used);
        mix
    }

    fn records(&self) -> usize {
        2 * self.pairs
            + self.lone_rejects
            + 2 * self.blocked_replies
            + self.unanswered
            + self.nodata
            + self.skipdata
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pair,
    LoneReject,
    BlockedReply,
    Unanswered,
}

#[derive(Debug, Clone, Copy)]
enum Peer {
    /// Another host of the VPC, in 10.128.0.0/9.
    EastWest,
    Internet,
}

/// A protocol and the port of the service on the responder's side.
#[derive(Debug, Clone, Copy)]
struct Service {
    protocol: u8,
    port: u16,
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;

const TCP_SERVICES: [u16; 6] = [443, 80, 22, 5432, 3306, 8080];
const UDP_SERVICES: [u16; 3] = [53, 123, 514];
/// What scanners knock on.
const SCANNED_PORTS: [u16; 8] = [22, 23, 445, 3389, 1433, 5900, 8443, 6379];

/// Writes records of the realistic shape; returns the totals they must give.
pub fn generate_realistic(config: &RealisticConfig, out: &mut impl Write) -> io::Result<Expected> {
    let mut rng = Rng(config.seed);
    let mut expected = Expected::default();
    let busy = config.interfaces.max(1);
    let per_window = config.records_per_window.max(1);
    let mix = WindowMix::of(per_window);
    let interfaces: Vec<String> = (0..busy + mix.nodata).map(interface_id).collect();
    let mut counter = 0u64;
    let mut window = 0u64;
    let mut lines: Vec<String> = Vec::with_capacity(per_window);
    while (expected.records as usize) < config.records {
        let window_start = config.start_time + window * WINDOW;
        let mut kinds: Vec<Kind> = std::iter::empty()
            .chain(std::iter::repeat_n(Kind::Pair, mix.pairs))
            .chain(std::iter::repeat_n(Kind::LoneReject, mix.lone_rejects))
            .chain(std::iter::repeat_n(Kind::BlockedReply, mix.blocked_replies))
            .chain(std::iter::repeat_n(Kind::Unanswered, mix.unanswered))
            .collect();
        shuffle(&mut kinds, &mut rng);
        for kind in kinds {
            counter += 1;
            let index = rng.below(busy as u64) as usize;
            let session = Session {
                interface: &interfaces[index],
                local: local_address(index),
                counter,
                window_start,
            };
            session.write(kind, &mut rng, &mut lines, &mut expected);
        }
        let end = window_start + WINDOW - 1;
        for idle in 0..mix.nodata {
            let interface = &interfaces[busy + idle];
            lines.push(format!(
                "2 {ACCOUNT} {interface} - - - - - - - {window_start} {end} - NODATA"
            ));
        }
        for _ in 0..mix.skipdata {
            let interface = &interfaces[rng.below(busy as u64) as usize];
            lines.push(format!(
                "2 {ACCOUNT} {interface} - - - - - - - {window_start} {end} - SKIPDATA"
            ));
        }
        expected.nodata += mix.nodata as u64;
        expected.skipdata += mix.skipdata as u64;
        expected.records += (mix.nodata + mix.skipdata) as u64;
        shuffle(&mut lines, &mut rng);
        for line in lines.drain(..) {
            writeln!(out, "{line}")?;
        }
        window += 1;
    }
    Ok(expected)
}

fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        let j = rng.below((i + 1) as u64) as usize;
        items.swap(i, j);
    }
}

/// 10.x.y.10: up to 32,768 interfaces, none inside the east-west peers' /9.
fn local_address(index: usize) -> Ipv4Addr {
    let index = index as u32 & 0x7fff;
    Ipv4Addr::new(10, (index >> 8) as u8, index as u8, 10)
}

/// A remote address no other session has (for 8 million sessions), so no
/// two sessions share a key whatever their ports.
fn remote_address(peer: Peer, counter: u64) -> Ipv4Addr {
    let [_, b, c, d] = (counter as u32).to_be_bytes();
    match peer {
        Peer::EastWest => Ipv4Addr::new(10, 128 | (b & 0x7f), c, d),
        // 100.64.0.0/10 stands for the internet in examples (RFC 6598), and
        // is never one of the interfaces' own addresses.
        Peer::Internet => Ipv4Addr::new(100, 64 | (b & 0x3f), c, d),
    }
}

struct Session<'a> {
    interface: &'a str,
    local: Ipv4Addr,
    counter: u64,
    window_start: u64,
}

/// One record of a session, before rendering.
struct Flow {
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    action: &'static str,
    packets: u64,
    bytes: u64,
}

impl Session<'_> {
    fn write(&self, kind: Kind, rng: &mut Rng, lines: &mut Vec<String>, expected: &mut Expected) {
        let peer = if rng.below(10) < 3 {
            Peer::EastWest
        } else {
            Peer::Internet
        };
        let remote = remote_address(peer, self.counter);
        let ephemeral = 32_768 + rng.below(28_000) as u16;
        let service = match rng.below(20) {
            0..=13 => Service {
                protocol: TCP,
                port: TCP_SERVICES[rng.below(TCP_SERVICES.len() as u64) as usize],
            },
            14..=17 => Service {
                protocol: UDP,
                port: UDP_SERVICES[rng.below(UDP_SERVICES.len() as u64) as usize],
            },
            _ => Service {
                protocol: ICMP,
                port: 0,
            },
        };
        // ICMP records carry no ports.
        let ephemeral = if service.protocol == ICMP {
            0
        } else {
            ephemeral
        };
        let packets = 1 + rng.below(60);
        let bytes = packets * (40 + rng.below(1400));
        let flow = |src, dst, action| Flow {
            src,
            dst,
            action,
            packets,
            bytes,
        };
        // A third of the sessions the interface starts itself (egress).
        let outgoing = rng.below(3) == 0;
        let (client, server) = if outgoing {
            ((self.local, ephemeral), (remote, service.port))
        } else {
            ((remote, ephemeral), (self.local, service.port))
        };
        let (flows, verdict) = match kind {
            Kind::Pair => (
                vec![
                    flow(client, server, "ACCEPT"),
                    flow(server, client, "ACCEPT"),
                ],
                Verdict::Accepted,
            ),
            Kind::LoneReject => {
                let port = match service.protocol {
                    ICMP => 0,
                    _ => SCANNED_PORTS[rng.below(SCANNED_PORTS.len() as u64) as usize],
                };
                let scanner = remote_address(Peer::Internet, self.counter);
                (
                    vec![Flow {
                        packets: 1,
                        bytes: 40,
                        ..flow((scanner, ephemeral), (self.local, port), "REJECT")
                    }],
                    Verdict::RejectedInbound,
                )
            }
            Kind::BlockedReply => {
                // A client of ours whose replies a network ACL drops.
                let client = (remote, ephemeral);
                let server = (self.local, service.port);
                (
                    vec![
                        flow(client, server, "ACCEPT"),
                        flow(server, client, "REJECT"),
                    ],
                    Verdict::RejectedOutbound,
                )
            }
            Kind::Unanswered => (vec![flow(client, server, "ACCEPT")], Verdict::Unanswered),
        };
        expected.sessions.add(verdict);
        expected.records += flows.len() as u64;
        let start = self.window_start + rng.below(20);
        let end = self.window_start + 30 + rng.below(29);
        for flow in flows {
            lines.push(format!(
                "2 {ACCOUNT} {} {} {} {} {} {} {} {} {start} {end} {} OK",
                self.interface,
                flow.src.0,
                flow.dst.0,
                flow.src.1,
                flow.dst.1,
                service.protocol,
                flow.packets,
                flow.bytes,
                flow.action,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{FormatChoice, Pipeline, RecordFilter, Settings, Summary};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the seed and size, with nothing configured about the
        /// interfaces, the core gives exactly the totals of construction.
        #[test]
        fn generated_data_gives_the_expected_totals(
            seed in any::<u64>(),
            records in 1usize..3_000,
            interfaces in 1usize..40,
            records_per_window in 1usize..1_500,
            start_time in 1_500_000_000u64..1_800_000_000,
        ) {
            let config = RealisticConfig { seed, records, interfaces, records_per_window, start_time };
            let mut text = Vec::new();
            let expected = generate_realistic(&config, &mut text).unwrap();
            let mut pipeline = Pipeline::new(
                FormatChoice::Auto,
                Settings::default(),
                Default::default(),
                RecordFilter::default(),
            );
            let mut summary = Summary::new(pipeline.correlator().service_ports().clone(), false);
            for line in text.split(|&byte| byte == b'\n') {
                pipeline.push_line(line, None, &mut summary);
            }
            pipeline.finish(&mut summary);
            prop_assert_eq!(summary.records.total, expected.records);
            prop_assert_eq!(summary.records.malformed, 0);
            prop_assert_eq!(summary.records.nodata, expected.nodata);
            prop_assert_eq!(summary.records.skipdata, expected.skipdata);
            prop_assert_eq!(summary.sessions, expected.sessions);
        }
    }

    #[test]
    fn a_window_of_20000_records_has_the_shares_of_the_table() {
        let mix = WindowMix::of(20_000);
        assert_eq!(
            mix,
            WindowMix {
                pairs: 7_000,
                lone_rejects: 3_000,
                blocked_replies: 500,
                unanswered: 1_400,
                nodata: 400,
                skipdata: 200,
            }
        );
        assert_eq!(mix.records(), 20_000);
        // Rounding never loses or adds a record.
        for records in [1, 7, 99, 101, 12_345] {
            assert_eq!(WindowMix::of(records).records(), records, "{records}");
        }
    }

    #[test]
    fn output_is_deterministic_for_a_seed_and_counts_every_line() {
        let config = RealisticConfig {
            records: 3_000,
            interfaces: 20,
            records_per_window: 1_000,
            ..RealisticConfig::default()
        };
        let mut first = Vec::new();
        let expected = generate_realistic(&config, &mut first).unwrap();
        let mut second = Vec::new();
        generate_realistic(&config, &mut second).unwrap();
        assert_eq!(first, second);
        let text = String::from_utf8(first).unwrap();
        assert_eq!(text.lines().count() as u64, expected.records);
        assert_eq!(expected.records, 3_000);
        assert_eq!(expected.nodata, 3 * 20);
        assert_eq!(expected.skipdata, 3 * 10);
        assert_eq!(expected.sessions.accepted, 3 * 350);
        assert_eq!(expected.sessions.rejected_inbound, 3 * 150);
        assert_eq!(expected.sessions.rejected_outbound, 3 * 25);
        assert_eq!(expected.sessions.unanswered, 3 * 70);
        let protocols: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|line| line.split(' ').nth(7))
            .collect();
        assert_eq!(
            protocols,
            ["-", "1", "17", "6"].into_iter().collect(),
            "ICMP, UDP and TCP, and status records"
        );
    }
}

//! `[shard]` on the real binary against moto: two replicas with `count = 2`
//! over 250 interface streams split them without talking to each other.
//! Every interface is counted by exactly one replica, the union is exact,
//! and each replica's FilterLogEvents calls (seen by moto's request
//! recorder, told apart by the access key each replica signs with) name
//! only its own streams, at most 100 per call.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::Moto;
use common::exporter::{Exporter, Scrape, now_s, seed, stream_name};
use common::flows::{CloudWatchToml, GROUP, correlation, record};

const INTERFACES: u32 = 250;

/// A pair: a request to 443 and its reply.
fn records(eni: &str, t: i64) -> Vec<String> {
    vec![
        record(eni, ("203.0.113.10", 40000), ("10.0.9.9", 443), t, "ACCEPT"),
        record(eni, ("10.0.9.9", 443), ("203.0.113.10", 40000), t, "ACCEPT"),
    ]
}

fn config(endpoint: &str, index: usize) -> String {
    CloudWatchToml {
        rest: format!("[shard]\nindex = {index}\ncount = 2\n") + &correlation("2s", "30s"),
        ..CloudWatchToml::new(endpoint)
    }
    .toml()
}

/// Accepted sessions by interface.
fn sessions_by_interface(scrape: &Scrape) -> BTreeMap<String, f64> {
    let mut sessions = BTreeMap::new();
    for line in scrape
        .text
        .lines()
        .filter(|line| line.starts_with("vpcflow_sessions_total{"))
    {
        let interface = line
            .split("interface_id=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned();
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        *sessions.entry(interface).or_default() += value;
    }
    sessions
}

#[test]
fn two_replicas_split_250_interfaces_exactly() {
    let moto = Moto::start();
    let t = now_s() - 5;
    let interfaces: Vec<(String, Vec<String>)> = (0..INTERFACES)
        .map(|i| {
            let eni = format!("eni-0e{i:015x}");
            let lines = records(&eni, t);
            (eni, lines)
        })
        .collect();
    seed(&moto, GROUP, &interfaces);
    moto.start_recording();

    let mut replicas: Vec<Exporter> = (0..2)
        .map(|index| {
            let key = format!("REPLICA{index}");
            Exporter::start(
                Some(&config(&moto.endpoint_url(), index)),
                &[("AWS_ACCESS_KEY_ID", key.as_str())],
            )
        })
        .collect();
    let scrapes: Vec<Scrape> = replicas
        .iter_mut()
        .map(|replica| {
            replica.wait_ready();
            replica.wait_for("its interfaces' sessions decided", |scrape| {
                let events = scrape.sum("vpcflow_log_events_new_total", &[]);
                let sessions = scrape.sessions("accepted");
                (events > 0.0 && sessions * 2.0 == events).then(|| scrape.clone())
            })
        })
        .collect();

    let mut union = BTreeSet::new();
    for (index, scrape) in scrapes.iter().enumerate() {
        assert!(
            scrape.text.contains(&format!(
                "vpcflow_shard_info{{count=\"2\",index=\"{index}\"}} 1"
            )),
            "replica {index}: {}",
            scrape.flow_lines()
        );
        let sessions = sessions_by_interface(scrape);
        assert!(
            sessions.values().all(|count| *count == 1.0),
            "replica {index}: each of its interfaces has one session: {sessions:?}"
        );
        assert_eq!(
            scrape.sum("vpcflow_interfaces_watched", &[]),
            sessions.len() as f64,
            "replica {index}"
        );
        // An even split is likely, not certain: say so only when far off.
        assert!(
            sessions.len() > 75 && sessions.len() < 175,
            "replica {index} got {} of {INTERFACES}",
            sessions.len()
        );
        for interface in sessions.keys() {
            assert!(
                union.insert(interface.clone()),
                "{interface} counted by both replicas"
            );
        }
    }
    let all: BTreeSet<String> = interfaces.iter().map(|(eni, _)| eni.clone()).collect();
    assert_eq!(union, all, "together the replicas count every interface");

    // What each replica asked moto for.
    let mine: Vec<BTreeSet<String>> = scrapes
        .iter()
        .map(|scrape| {
            sessions_by_interface(scrape)
                .keys()
                .map(|eni| stream_name(eni))
                .collect()
        })
        .collect();
    let mut filter_calls = [0usize; 2];
    for request in moto.recorded_requests() {
        if request.operation != "FilterLogEvents" {
            continue;
        }
        let index = match request.access_key_id.as_str() {
            "REPLICA0" => 0,
            "REPLICA1" => 1,
            other => panic!("a FilterLogEvents call signed by {other:?}"),
        };
        filter_calls[index] += 1;
        let names: Vec<String> = request.body["logStreamNames"]
            .as_array()
            .expect("every call names its streams")
            .iter()
            .map(|name| name.as_str().unwrap().to_owned())
            .collect();
        assert!(
            !names.is_empty() && names.len() <= 100,
            "{} names",
            names.len()
        );
        for name in &names {
            assert!(
                mine[index].contains(name),
                "replica {index} asked for {name}, not its own"
            );
        }
    }
    assert!(
        filter_calls.iter().all(|calls| *calls > 0),
        "{filter_calls:?}"
    );
    for replica in &mut replicas {
        replica.assert_running();
    }
}

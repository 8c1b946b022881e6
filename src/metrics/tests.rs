use super::*;
use crate::flow::Endpoint;
use proptest::prelude::*;
use std::collections::HashMap;

fn report(interface_id: &str, verdict: Verdict, protocol: u8, port: u16) -> SessionReport<'_> {
    SessionReport {
        interface_id,
        protocol,
        initiator: Endpoint {
            addr: "198.51.100.7".parse().unwrap(),
            port: 50_000,
        },
        responder: Endpoint {
            addr: "10.0.0.5".parse().unwrap(),
            port,
        },
        direction: Direction::Ingress,
        verdict,
        packets: 1,
        bytes: 40,
        start: Some(1),
        end: Some(2),
        direction_by_fallback: false,
    }
}

/// The `vpcflow_interface_info` lines of a render.
fn info_lines(metrics: &Metrics) -> Vec<String> {
    metrics
        .render()
        .lines()
        .filter(|line| line.starts_with("vpcflow_interface_info{"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn interface_info_takes_account_and_region_of_its_log_group_where_ec2_said_nothing() {
    let metrics = Metrics::new();
    metrics.expect_interface("eni-1", Some("bastion"));
    metrics.locate_interface("eni-1", "222222222222", "eu-west-1");
    assert_eq!(
        info_lines(&metrics),
        [
            r#"vpcflow_interface_info{account_id="222222222222",description="",instance_id="",interface_id="eni-1",name="bastion",region="eu-west-1",security_groups="",subnet_id="",type="",vpc_id=""} 1"#
        ]
    );
    // EC2's facts win, and a later location does not undo them.
    metrics.set_interface_info(&InterfaceInfo {
        interface_id: "eni-1".into(),
        name: "bastion".into(),
        account_id: "444444444444".into(),
        region: "eu-west-1".into(),
        vpc_id: "vpc-1".into(),
        ..InterfaceInfo::default()
    });
    metrics.locate_interface("eni-1", "222222222222", "us-east-1");
    let lines = info_lines(&metrics);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(r#"account_id="444444444444""#),
        "{lines:?}"
    );
    assert!(lines[0].contains(r#"region="eu-west-1""#), "{lines:?}");
    // An interface seen first through its group gets an info series too.
    metrics.locate_interface("eni-2", "", "us-east-1");
    assert!(
        info_lines(&metrics)
            .iter()
            .any(|line| line.contains(r#"interface_id="eni-2",name="eni-2",region="us-east-1""#)),
        "{:?}",
        info_lines(&metrics)
    );
}

/// Series of `vpcflow_sessions_total` by interface, and the sum of their values.
fn session_series(metrics: &Metrics) -> (HashMap<String, usize>, u64) {
    let mut series = HashMap::new();
    let mut total = 0;
    for (values, value) in metrics.sessions.snapshot() {
        *series.entry(values[0].clone()).or_default() += 1;
        total += value as u64;
    }
    (series, total)
}

/// A scrape during a poll sees none of its counts; after it, records and
/// the sessions they made together (never a session before its records).
#[test]
fn a_poll_publishes_its_records_and_sessions_when_it_ends() {
    let metrics = Metrics::with_budget(SeriesBudget::default());
    let ports = ServicePorts::new(&[]);
    let mut observer = FlowMetrics::new(&metrics, &ports);
    observer.record("eni-1", Some(Action::Accept), LogStatus::Ok);
    observer.record("eni-1", Some(Action::Accept), LogStatus::Ok);
    observer.decided(&report("eni-1", Verdict::Accepted, 6, 22));
    observer.decided(&report("eni-1", Verdict::Accepted, 6, 22));
    observer.decided(&report("eni-1", Verdict::Refused, 6, 22));
    let records = |metrics: &Metrics| -> f64 {
        metrics
            .records
            .snapshot()
            .iter()
            .map(|(_, value)| *value as f64)
            .sum()
    };
    assert_eq!(session_series(&metrics).1, 0);
    assert_eq!(records(&metrics), 0.0);
    drop(observer);
    assert_eq!(records(&metrics), 2.0);
    let sessions = |labels: &[&str]| metrics.sessions.with_label_values(labels).get();
    assert_eq!(sessions(&["eni-1", "accepted", "ingress", "tcp", "22"]), 2);
    assert_eq!(sessions(&["eni-1", "refused", "ingress", "tcp", "22"]), 1);
}

#[test]
fn past_the_budget_sessions_fold_into_port_other_or_are_dropped() {
    let metrics = Metrics::with_budget(SeriesBudget {
        max_series_per_interface: 2,
        ..SeriesBudget::default()
    });
    let ports = ServicePorts::new(&[]);
    let mut observer = FlowMetrics::new(&metrics, &ports);
    observer.decided(&report("eni-1", Verdict::Accepted, 6, 22));
    observer.decided(&report("eni-1", Verdict::Accepted, 6, 8080)); // port "other"
    observer.decided(&report("eni-1", Verdict::Accepted, 6, 443)); // folds into "other"
    observer.decided(&report("eni-1", Verdict::Unanswered, 6, 22)); // no "other" of its own: dropped
    observer.decided(&report("eni-2", Verdict::Unanswered, 6, 22)); // another interface's budget
    drop(observer);
    let sessions = |labels: &[&str]| metrics.sessions.with_label_values(labels).get();
    assert_eq!(sessions(&["eni-1", "accepted", "ingress", "tcp", "22"]), 1);
    assert_eq!(
        sessions(&["eni-1", "accepted", "ingress", "tcp", "other"]),
        2
    );
    assert_eq!(
        sessions(&["eni-2", "unanswered", "ingress", "tcp", "22"]),
        1
    );
    assert_eq!(metrics.series_dropped.get(), 2);
    assert_eq!(metrics.session_series_of("eni-1"), 2);
    let (series, total) = session_series(&metrics);
    assert_eq!(series["eni-1"], 2);
    assert_eq!(total, 4);
}

#[test]
fn labels_not_kept_are_left_out_of_the_series() {
    let metrics = Metrics::with_budget(SeriesBudget {
        session_labels: vec![SessionLabel::Verdict],
        ..SeriesBudget::default()
    });
    let ports = ServicePorts::new(&[]);
    let mut observer = FlowMetrics::new(&metrics, &ports);
    observer.decided(&report("eni-1", Verdict::Accepted, 6, 22));
    observer.decided(&report("eni-1", Verdict::Accepted, 17, 53));
    observer.decided(&report("eni-1", Verdict::Refused, 6, 443));
    drop(observer);
    let text = metrics.render();
    assert!(
        text.contains(r#"vpcflow_sessions_total{interface_id="eni-1",verdict="accepted"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"vpcflow_sessions_total{interface_id="eni-1",verdict="refused"} 1"#),
        "{text}"
    );
    assert_eq!(metrics.series_dropped.get(), 0);
}

proptest! {
    /// Whatever the traffic, an interface never has more session series
    /// than the budget, and every session is counted either in
    /// `vpcflow_sessions_total` or as dropped (folded ones in both).
    #[test]
    fn series_never_exceed_the_budget_and_drops_are_counted(
        budget in 1usize..12,
        keep in proptest::sample::subsequence(SessionLabel::ALL.to_vec(), 0..=4),
        sessions in proptest::collection::vec((0usize..3, 0usize..5, prop_oneof![Just(6u8), Just(17), Just(1), Just(47)], 0u16..1100), 0..200),
    ) {
        let metrics = Metrics::with_budget(SeriesBudget {
            session_labels: keep.clone(),
            max_series_per_interface: budget,
        });
        let ports = ServicePorts::new(&[]);
        let interfaces = ["eni-a", "eni-b", "eni-c"];
        let mut observer = FlowMetrics::new(&metrics, &ports);
        for (interface, verdict, protocol, port) in &sessions {
            observer.decided(&report(interfaces[*interface], Verdict::ALL[*verdict], *protocol, *port));
        }
        drop(observer);
        let (series, total) = session_series(&metrics);
        for count in series.values() {
            prop_assert!(*count <= budget);
        }
        let dropped = metrics.series_dropped.get();
        let n = sessions.len() as u64;
        prop_assert!(total <= n);
        prop_assert!(total + dropped >= n);
        if !keep.contains(&SessionLabel::Port) {
            prop_assert_eq!(total + dropped, n);
        }
        // Within the budget nothing is dropped.
        let mut distinct: HashMap<usize, std::collections::HashSet<Vec<String>>> = HashMap::new();
        for (interface, verdict, protocol, port) in &sessions {
            let values = [
                Verdict::ALL[*verdict].as_str().to_owned(),
                protocol_name(*protocol).into_owned(),
                ports.label(*port),
            ];
            let kept = [SessionLabel::Verdict, SessionLabel::Protocol, SessionLabel::Port]
                .iter()
                .zip(values)
                .filter(|(label, _)| keep.contains(label))
                .map(|(_, value)| value)
                .collect();
            distinct.entry(*interface).or_default().insert(kept);
        }
        if distinct.values().all(|sets| sets.len() <= budget) {
            prop_assert_eq!(dropped, 0);
            prop_assert_eq!(total, n);
        }
    }
}

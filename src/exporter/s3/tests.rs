use std::collections::HashMap;

use super::*;
use crate::api::RingSizes;
use crate::flow::{FormatChoice, RecordFilter, Settings};

/// A sink counting into `metrics`, with `[state]` in `state` if given.
fn sink(metrics: &Arc<Metrics>, state: Option<&std::path::Path>, max_held: usize) -> CountingSink {
    CountingSink {
        text_budget: TextBudget::new(1 << 20),
        pipeline: Pipeline::new(
            FormatChoice::Auto,
            Settings::default(),
            HashMap::new(),
            RecordFilter::default(),
        ),
        metrics: metrics.clone(),
        sessions: Arc::new(SessionLog::new(RingSizes {
            per_verdict: 10,
            accepted: 0,
        })),
        checkpoints: state.map(|directory| Checkpoints::new(directory, "queue")),
        pending: Deferred::new(),
        roots: ObjectRoots::default(),
        ec2: None,
        region: None,
        endpoint_url: None,
        max_held,
    }
}

/// The sum of a family's samples whose line starts with `prefix`.
fn total(metrics: &Metrics, prefix: &str) -> f64 {
    metrics
        .render()
        .lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// An object of `n` lone SYNs to one interface from as many sources
/// (a scan), two hours old: all due on the wall clock at once.
fn scan(n: u32) -> String {
    let start = now_seconds() - 7200;
    (0..n)
        .map(|i| {
            format!(
                "2 123456789012 eni-a 198.51.{}.{} 10.0.0.10 {} 22 6 1 40 {start} {} REJECT OK\n",
                i / 250,
                i % 250,
                40_000 + i % 20_000,
                start + 60,
            )
        })
        .collect()
}

/// Counts `object` as the reader would, then lets the wall clock decide.
fn count_then_advance(sink: &mut CountingSink, object: &str, seen: &Seen) {
    sink.pipeline.set_wall_clock(now_seconds());
    if sink.checkpoints.is_some() {
        feed_object(object.as_bytes(), &mut sink.pipeline, &mut sink.pending).unwrap();
        sink.commit(seen);
    } else {
        let service_ports = sink.pipeline.correlator().service_ports().clone();
        let mut observer = FlowMetrics::new(&sink.metrics, &service_ports);
        feed_object(object.as_bytes(), &mut sink.pipeline, &mut observer).unwrap();
    }
    sink.advance(FILE_INTERVAL_SECONDS, seen);
}

#[test]
fn a_scans_sessions_are_decided_checkpointed_and_published_max_held_at_a_time() {
    let seen = Seen::new(DEFAULT_CAPACITY, RETENTION_SECONDS);
    let object = scan(2_000);
    let written = r#"vpcflow_state_checkpoints_total{outcome="written"}"#;
    // Without [state] and with it at once: the reference counts.
    let reference = Arc::new(Metrics::new());
    count_then_advance(&mut sink(&reference, None, usize::MAX), &object, &seen);
    assert_eq!(total(&reference, "vpcflow_sessions_total{"), 2_000.0);

    let directory = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let mut stepped = sink(&metrics, Some(directory.path()), 150);
    count_then_advance(&mut stepped, &object, &seen);
    assert!(!stepped.pipeline.advancing());
    let pending: usize = stepped
        .pipeline
        .correlator()
        .load()
        .map(|l| l.pending)
        .sum();
    assert_eq!(pending, 0);
    // The object's commit, then one checkpoint per step of at most 150.
    assert!(total(&metrics, written) >= 1.0 + (2_000 / 150) as f64);
    for family in ["vpcflow_sessions_total{", "vpcflow_records_total{"] {
        assert_eq!(
            total(&metrics, family),
            total(&reference, family),
            "{family}"
        );
    }

    // Without [state], stepped too, the same counts.
    let unsaved = Arc::new(Metrics::new());
    count_then_advance(&mut sink(&unsaved, None, 150), &object, &seen);
    assert_eq!(total(&unsaved, "vpcflow_sessions_total{"), 2_000.0);
}

#[test]
fn an_advance_checkpointed_part_way_is_finished_by_the_successor() {
    let seen = Seen::new(DEFAULT_CAPACITY, RETENTION_SECONDS);
    let directory = tempfile::tempdir().unwrap();
    let first = Arc::new(Metrics::new());
    let mut predecessor = sink(&first, Some(directory.path()), 150);
    predecessor.pipeline.set_wall_clock(now_seconds());
    feed_object(
        scan(2_000).as_bytes(),
        &mut predecessor.pipeline,
        &mut predecessor.pending,
    )
    .unwrap();
    predecessor.commit(&seen);
    // Two steps published and checkpointed; then kill -9.
    let watermark = now_seconds() - 600;
    predecessor
        .pipeline
        .start_advance(watermark, &mut predecessor.pending);
    for _ in 0..2 {
        assert!(
            predecessor
                .pipeline
                .advance_some(150, &mut predecessor.pending)
        );
        predecessor.commit(&seen);
    }
    drop(predecessor);
    let counted_before = total(&first, "vpcflow_sessions_total{");
    assert!(
        (300.0..2_000.0).contains(&counted_before),
        "{counted_before}"
    );

    let second = Arc::new(Metrics::new());
    let mut successor = sink(&second, Some(directory.path()), 150);
    let mut restored_seen = Seen::new(DEFAULT_CAPACITY, RETENTION_SECONDS);
    let mut checkpoints = successor.checkpoints.take().unwrap();
    checkpoints.restore(&mut successor.pipeline, &mut restored_seen, &second);
    successor.checkpoints = Some(checkpoints);
    assert!(successor.pipeline.advancing());
    successor.pipeline.set_wall_clock(now_seconds());
    successor.finish_advance(&restored_seen);
    let counted_after = total(&second, "vpcflow_sessions_total{");
    assert_eq!(
        counted_before + counted_after,
        2_000.0,
        "each session once over both"
    );
}

#[test]
fn a_root_is_the_folder_above_the_date_partitions() {
    let key = "AWSLogs/111111111111/vpcflowlogs/eu-west-1/2024/01/05/111111111111_vpcflowlogs_eu-west-1_fl-1_20240105T1000Z_abcd.log.gz";
    assert_eq!(
        root_prefix(key),
        "AWSLogs/111111111111/vpcflowlogs/eu-west-1/"
    );
    let hive = "flows/AWSLogs/aws-account-id=111111111111/aws-service=vpcflowlogs/aws-region=eu-west-1/year=2024/month=01/day=05/hour=10/f.log.parquet";
    assert_eq!(
        root_prefix(hive),
        "flows/AWSLogs/aws-account-id=111111111111/aws-service=vpcflowlogs/aws-region=eu-west-1/"
    );
    assert_eq!(root_prefix("exports/day-one/f.log"), "exports/day-one/");
    assert_eq!(root_prefix("f.log"), "");
}

#[test]
fn roots_are_latest_first_without_repeats_and_bounded() {
    let mut roots = ObjectRoots::default();
    roots.note("b", "AWSLogs/1/vpcflowlogs/r/2024/01/05/x.log.gz");
    roots.note("b", "AWSLogs/2/vpcflowlogs/r/2024/01/05/y.log.gz");
    roots.note("b", "AWSLogs/1/vpcflowlogs/r/2024/01/06/z.log.gz");
    assert_eq!(
        roots.0,
        [
            "s3://b/AWSLogs/1/vpcflowlogs/r/",
            "s3://b/AWSLogs/2/vpcflowlogs/r/"
        ]
    );
    for account in 0..40 {
        roots.note(
            "b",
            &format!("AWSLogs/{account}/vpcflowlogs/r/2024/01/05/x"),
        );
    }
    assert_eq!(roots.0.len(), MAX_ROOTS);
    assert_eq!(roots.0[0], "s3://b/AWSLogs/39/vpcflowlogs/r/");
}

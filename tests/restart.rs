//! Restarts with a `[state] directory`: the real exporter is killed with
//! `kill -9` at several points of a moto run — before its first poll, with
//! sessions pending whose replies are put only after the restart, between
//! polls while checkpoints are being written every second, part way
//! through a poll that pages through a flood's window in batches, and
//! between two steps of the wall clock's advance (a scan's sessions all
//! due at once, decided `max_held_events` at a time) — and
//! the counts summed over the processes equal those of an exporter that
//! ran undisturbed, series by series. A corrupt or foreign state file is
//! ignored with a log line and a counted outcome; a state directory that
//! cannot be written is logged and counted (`write_failed`) while the
//! exporter goes on serving and counting.
//!
//! Every kill happens once the process has counted what was put (what it
//! published is then known from a scrape): the sum over processes is exact
//! only if no successor counts again what a predecessor published, and
//! none leaves out what a predecessor had read but not published.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::Moto;
use common::exporter::{Exporter, Scrape, now_s, put_records, seed};
use common::fault_proxy::{Fault, FaultProxy};
use common::flows::{
    CloudWatchToml, GROUP, correlation, flow_counters, interface_addresses, record,
};

const ENIS: [(&str, &str); 2] = [
    ("eni-0aaa0000000000001", "10.0.1.10"),
    ("eni-0bbb0000000000002", "10.0.2.20"),
];

/// `reply_grace` is long enough that a request put before a kill is still
/// pending when its reply, put after the kill, reaches the successor.
fn config(endpoint: &str, state: Option<&Path>, log_format: &str) -> String {
    let state = state_section(state);
    let group = format!("log_format = \"{log_format}\"");
    CloudWatchToml {
        group: &group,
        rest: interface_addresses(&ENIS) + &correlation("15s", "60s") + &state,
        ..CloudWatchToml::new(endpoint)
    }
    .toml()
}

/// Puts `make(eni, local address)` for each interface; returns how many records.
fn put_each(moto: &Moto, make: impl Fn(&str, &str) -> Vec<String>) -> f64 {
    let mut n = 0;
    for (eni, local) in ENIS {
        let records = make(eni, local);
        n += records.len();
        put_records(moto, GROUP, eni, &records);
    }
    n as f64
}

/// The reply to the request `record(eni, ("203.0.113.12", 40003), (local,
/// 8443), t, "ACCEPT")` the tests put before a kill: put after it.
fn reply_to_8443(eni: &str, local: &str, t: i64) -> String {
    record(eni, (local, 8443), ("203.0.113.12", 40003), t, "ACCEPT")
}

/// Adds the flow counters of `scrape` that are not zero to `total`.
fn add(total: &mut BTreeMap<String, f64>, scrape: &Scrape) {
    for (series, value) in nonzero_flow_counters(scrape) {
        *total.entry(series).or_default() += value;
    }
}

fn nonzero_flow_counters(scrape: &Scrape) -> BTreeMap<String, f64> {
    let mut counters = flow_counters(scrape);
    counters.retain(|_, value| *value != 0.0);
    counters
}

fn records(scrape: &Scrape) -> f64 {
    scrape.sum("vpcflow_records_total", &[])
}

fn checkpoints(scrape: &Scrape, outcome: &str) -> f64 {
    scrape.sum("vpcflow_state_checkpoints_total", &[("outcome", outcome)])
}

/// `[state]` in `directory`, if any.
fn state_section(directory: Option<&Path>) -> String {
    directory.map_or(String::new(), |dir| {
        format!("[state]\ndirectory = \"{}\"\n", dir.display())
    })
}

/// Waits until the undisturbed `direct` has read `put` records and
/// decided `sessions`, then asserts that `total`, summed over the
/// processes, equals its counters series by series; its scrape.
fn exact_over_the_processes(
    direct: &mut Exporter,
    total: &BTreeMap<String, f64>,
    sessions: f64,
    put: f64,
    last: &Exporter,
) -> Scrape {
    let undisturbed = direct.wait_for("every verdict, undisturbed", |s| {
        (s.sum("vpcflow_sessions_total", &[]) >= sessions && records(s) >= put).then(|| s.clone())
    });
    let undisturbed = direct.wait_polls(&undisturbed, 3.0);
    assert_eq!(
        *total,
        nonzero_flow_counters(&undisturbed),
        "summed over the processes vs undisturbed\n{}",
        last.log_tail()
    );
    undisturbed
}

/// Waits until `exporter` has read `n` records and written a checkpoint
/// since; then a quiet moment: what it published is what the scrape shows.
fn counted(exporter: &mut Exporter, n: f64) -> Scrape {
    let read = exporter.wait_for(&format!("{n} records read"), |s| {
        (records(s) >= n).then(|| s.clone())
    });
    let written = checkpoints(&read, "written");
    exporter.wait_for("a checkpoint after them", |s| {
        (checkpoints(s, "written") >= written + 2.0).then(|| s.clone())
    })
}

#[test]
fn kill_9_at_several_points_counts_exactly_over_the_processes() {
    let moto = Moto::start();
    seed(&moto, GROUP, &ENIS.map(|(eni, _)| (eni, Vec::new())));
    let state = tempfile::tempdir().expect("state dir");
    let with_state = config(&moto.endpoint_url(), Some(state.path()), "auto");
    let mut direct = Exporter::start_ready(Some(&config(&moto.endpoint_url(), None, "auto")), &[]);
    let mut total = BTreeMap::new();

    // Killed before its first poll can have finished: nothing to count yet.
    let mut first = Exporter::start(Some(&with_state), &[]);
    first.kill();

    // Pairs, a rejected request, and requests still waiting for a reply
    // (one of which never gets one).
    let t = now_s() - 2;
    let mut put = put_each(&moto, |eni, local| {
        vec![
            record(eni, ("203.0.113.10", 40001), (local, 443), t, "ACCEPT"),
            record(eni, (local, 443), ("203.0.113.10", 40001), t, "ACCEPT"),
            record(eni, ("198.51.100.7", 40002), (local, 3389), t, "REJECT"),
            record(eni, ("203.0.113.12", 40003), (local, 8443), t, "ACCEPT"),
            record(eni, ("198.51.100.9", 40004), (local, 5432), t, "ACCEPT"),
        ]
    });
    let mut second = Exporter::start_ready(Some(&with_state), &[]);
    let seen = counted(&mut second, put);
    assert_eq!(
        seen.sum("vpcflow_sessions_total", &[]),
        2.0,
        "pairs decided, lone requests pending\n{}",
        seen.flow_lines()
    );
    add(&mut total, &seen);
    second.kill();

    // The replies arrive while no exporter runs: the successor must pair
    // them with the requests its predecessor read.
    put += put_each(&moto, |eni, local| vec![reply_to_8443(eni, local, t)]);
    let mut third = Exporter::start_ready(Some(&with_state), &[]);
    let resumed = third.scrape();
    assert_eq!(
        checkpoints(&resumed, "restored"),
        1.0,
        "{}",
        third.log_tail()
    );
    // Only what is new to it: the two replies.
    let seen = counted(&mut third, 2.0);
    assert_eq!(
        records(&seen),
        2.0,
        "records counted twice\n{}",
        seen.flow_lines()
    );
    add(&mut total, &seen);
    third.kill();

    // More traffic, then the last process runs until every verdict is in.
    let t = now_s() - 2;
    put += put_each(&moto, |eni, local| {
        vec![
            record(eni, ("203.0.113.20", 41001), (local, 80), t, "ACCEPT"),
            record(eni, (local, 80), ("203.0.113.20", 41001), t, "ACCEPT"),
        ]
    });
    let mut last = Exporter::start_ready(Some(&with_state), &[]);
    // Per interface: accepted 3 (one paired across a restart), rejected
    // inbound 1, unanswered 1 (decided after the grace by a successor).
    let sessions = 5.0 * ENIS.len() as f64;
    let already = total
        .iter()
        .filter(|(series, _)| series.starts_with("vpcflow_sessions_total"))
        .map(|(_, value)| value)
        .sum::<f64>();
    let done = last.wait_for("every verdict", |s| {
        (s.sum("vpcflow_sessions_total", &[]) + already >= sessions).then(|| s.clone())
    });
    let done = last.wait_polls(&done, 3.0);
    add(&mut total, &done);
    let undisturbed = direct.wait_for("every verdict, undisturbed", |s| {
        (s.sum("vpcflow_sessions_total", &[]) >= sessions && records(s) >= put).then(|| s.clone())
    });
    let undisturbed = direct.wait_polls(&undisturbed, 3.0);
    assert_eq!(
        total,
        nonzero_flow_counters(&undisturbed),
        "summed over the processes vs undisturbed\n{}",
        last.log_tail()
    );
    assert_eq!(undisturbed.sessions("unanswered"), ENIS.len() as f64);
    assert_eq!(undisturbed.sessions("accepted"), 3.0 * ENIS.len() as f64);
}

#[test]
fn a_corrupt_or_foreign_state_file_is_ignored_and_counted() {
    let moto = Moto::start();
    seed(&moto, GROUP, &ENIS.map(|(eni, _)| (eni, Vec::new())));
    let state = tempfile::tempdir().expect("state dir");
    let with_state = config(&moto.endpoint_url(), Some(state.path()), "auto");
    let t = now_s() - 2;
    let put = put_each(&moto, |eni, local| {
        vec![
            record(eni, ("203.0.113.10", 40001), (local, 443), t, "ACCEPT"),
            record(eni, (local, 443), ("203.0.113.10", 40001), t, "ACCEPT"),
        ]
    });
    let mut first = Exporter::start_ready(Some(&with_state), &[]);
    counted(&mut first, put);
    first.kill();
    let files: Vec<_> = std::fs::read_dir(state.path())
        .expect("state dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "one file per log group: {files:?}");
    let file = &files[0];
    assert!(file.extension().is_some_and(|e| e == "json"), "{file:?}");

    // Half a file, as a full disk might leave it behind.
    let text = std::fs::read_to_string(file).expect("state file");
    std::fs::write(file, &text[..text.len() / 2]).expect("corrupt it");
    let mut corrupt = Exporter::start_ready(Some(&with_state), &[]);
    let scrape = corrupt.wait_for("a checkpoint written again", |s| {
        (checkpoints(s, "written") >= 1.0).then(|| s.clone())
    });
    assert_eq!(checkpoints(&scrape, "corrupt"), 1.0);
    assert_eq!(checkpoints(&scrape, "restored"), 0.0);
    assert!(
        corrupt.log_tail().contains("Checkpoint ignored (corrupt)"),
        "{}",
        corrupt.log_tail()
    );
    // Started afresh: it reads start - lookback, so the records again.
    counted(&mut corrupt, put);
    corrupt.kill();

    // Another format for the same group: the state is not this config's.
    let names = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";
    let foreign = config(&moto.endpoint_url(), Some(state.path()), names);
    let mut other = Exporter::start_ready(Some(&foreign), &[]);
    let scrape = other.scrape();
    assert_eq!(
        checkpoints(&scrape, "incompatible"),
        1.0,
        "{}",
        other.log_tail()
    );
    assert!(
        other
            .log_tail()
            .contains("Checkpoint ignored (incompatible)"),
        "{}",
        other.log_tail()
    );
    other.terminate(std::time::Duration::from_secs(10));

    // After a clean stop, the same configuration resumes from its own checkpoint.
    let mut again = Exporter::start_ready(Some(&foreign), &[]);
    let scrape = again.scrape();
    assert_eq!(
        checkpoints(&scrape, "restored"),
        1.0,
        "{}",
        again.log_tail()
    );
    assert_eq!(records(&scrape), 0.0, "nothing read twice after a restore");
}

#[test]
fn a_state_directory_that_cannot_be_written_is_logged_and_counted_while_serving() {
    let moto = Moto::start();
    seed(&moto, GROUP, &ENIS.map(|(eni, _)| (eni, Vec::new())));
    // Tests run as root, which no permission stops: a directory under a
    // regular file can be neither created nor written, by anyone.
    let scratch = tempfile::tempdir().expect("scratch dir");
    let not_a_directory = scratch.path().join("not-a-directory");
    std::fs::write(&not_a_directory, b"a regular file").expect("write the file");
    let unwritable = not_a_directory.join("state");
    let config = config(&moto.endpoint_url(), Some(&unwritable), "auto");
    let t = now_s() - 2;
    let mut put = put_each(&moto, |eni, local| {
        vec![
            record(eni, ("203.0.113.10", 40001), (local, 443), t, "ACCEPT"),
            record(eni, (local, 443), ("203.0.113.10", 40001), t, "ACCEPT"),
        ]
    });
    let mut exporter = Exporter::start_ready(Some(&config), &[]);
    let failing = exporter.wait_for("records counted, checkpoints failing", |s| {
        (records(s) >= put && checkpoints(s, "write_failed") >= 2.0).then(|| s.clone())
    });
    assert_eq!(checkpoints(&failing, "written"), 0.0);
    assert_eq!(failing.sum("vpcflow_up", &[]), 1.0, "the API is fine");
    assert_eq!(failing.sessions("accepted"), ENIS.len() as f64);
    let log = exporter.log_tail();
    assert!(log.contains("Cannot create the state directory"), "{log}");
    assert!(log.contains("Checkpoint not written"), "{log}");
    // Alive and ready, as docs/operations.md says: a failing checkpoint
    // makes a restart costly, not the exporter unhealthy.
    assert_eq!(exporter.get("/healthz").0, 200);
    assert_eq!(exporter.get("/ready").0, 200);

    // It goes on counting, each record once, and failing to checkpoint.
    let t = now_s() - 2;
    put += put_each(&moto, |eni, local| {
        vec![
            record(eni, ("203.0.113.20", 41001), (local, 80), t, "ACCEPT"),
            record(eni, (local, 80), ("203.0.113.20", 41001), t, "ACCEPT"),
        ]
    });
    let before = checkpoints(&failing, "write_failed");
    let later = exporter.wait_for("the new records counted", |s| {
        (records(s) >= put && checkpoints(s, "write_failed") > before).then(|| s.clone())
    });
    let later = exporter.wait_polls(&later, 3.0);
    assert_eq!(records(&later), put, "{}", later.flow_lines());
    assert_eq!(later.sessions("accepted"), 2.0 * ENIS.len() as f64);
    assert_eq!(checkpoints(&later, "written"), 0.0);
    assert!(!unwritable.exists());
    exporter.assert_running();
}

/// Pages of 20 events; a batch once 30 new events are held (every second
/// page); the first process is stopped after this many pages.
const PAGE: u64 = 20;
const PAGES_BEFORE_THE_KILL: usize = 8;

/// A poll that pages through a scan is killed after it has counted part of
/// its window in batches (each checkpointed) and while the scan's sessions
/// and a request whose reply is put after the kill are pending: the
/// successor reads the window again, counts only what its predecessor had
/// not, pairs the reply with the request its predecessor read, and the sums
/// over both processes equal an undisturbed run's, series by series.
#[test]
fn kill_9_while_a_poll_pages_through_its_window_counts_exactly_over_the_processes() {
    let moto = Moto::start();
    seed(&moto, GROUP, &ENIS.map(|(eni, _)| (eni, Vec::new())));
    let proxy = FaultProxy::start(&moto.endpoint_url());
    proxy.set_page_limit(Some(PAGE));
    let state = tempfile::tempdir().expect("state dir");
    // A grace long enough for the requests to wait, through the kill, for
    // replies put after it; every page under the attempt timeout.
    let config = |endpoint: &str, state: Option<&Path>| {
        let state = state_section(state);
        CloudWatchToml {
            cloudwatch: "max_held_events = 30\nattempt_timeout = \"60s\"\nmax_requests_per_second = 5",
            rest: interface_addresses(&ENIS) + &correlation("30s", "120s") + &state,
            ..CloudWatchToml::new(endpoint)
        }
        .toml()
    };
    let mut direct = Exporter::start_ready(Some(&config(&moto.endpoint_url(), None)), &[]);

    // Per interface: a pair, a request answered only after the kill, one
    // never answered, and a scan of 150 lone rejected records (each its own
    // session, pending until the grace) — put in that order, one timestamp.
    let scan: u16 = 150;
    let t = now_s() - 2;
    let mut put = put_each(&moto, |eni, local| {
        let mut records = vec![
            record(eni, ("203.0.113.10", 40001), (local, 443), t, "ACCEPT"),
            record(eni, (local, 443), ("203.0.113.10", 40001), t, "ACCEPT"),
            record(eni, ("203.0.113.12", 40003), (local, 8443), t, "ACCEPT"),
            record(eni, ("198.51.100.9", 40004), (local, 5432), t, "ACCEPT"),
        ];
        records.extend(
            (0..scan).map(|i| record(eni, ("198.51.100.7", 30000 + i), (local, 22), t, "REJECT")),
        );
        records
    });
    let mut total = BTreeMap::new();

    // The first process reads 8 pages (160 events of the first interface,
    // four batches) and waits on the 9th.
    proxy.set(
        Fault::StallAfter(PAGES_BEFORE_THE_KILL, Duration::from_secs(50)),
        Some("FilterLogEvents"),
    );
    let with_state = config(&proxy.url(), Some(state.path()));
    let mut first = Exporter::start(Some(&with_state), &[]);
    let counted_in_part = (PAGES_BEFORE_THE_KILL as u64 * PAGE) as f64;
    let stopped = first.wait_for("the batches before the stalled page", |s| {
        (records(s) >= counted_in_part && checkpoints(s, "written") >= 4.0).then(|| s.clone())
    });
    std::thread::sleep(Duration::from_millis(500));
    let stopped_scrape = first.scrape();
    assert_eq!(
        flow_counters(&stopped_scrape),
        flow_counters(&stopped),
        "nothing more counted while the page is stalled"
    );
    assert_eq!(
        records(&stopped),
        counted_in_part,
        "{}",
        stopped.flow_lines()
    );
    assert_eq!(checkpoints(&stopped, "written"), 4.0, "one a batch");
    assert_eq!(
        stopped.polls("success"),
        0.0,
        "killed inside its first poll"
    );
    // Of the 160 records read, at most 4 are the pairs' (whatever order
    // the pages come in): every other one is a session still pending.
    assert!(
        stopped.sum("vpcflow_pending_sessions", &[]) >= counted_in_part - 4.0,
        "sessions pending at the kill\n{}",
        stopped.flow_lines()
    );
    add(&mut total, &stopped);
    first.kill();

    // The replies arrive while no exporter runs.
    put += put_each(&moto, |eni, local| vec![reply_to_8443(eni, local, t)]);
    proxy.clear();
    let mut second = Exporter::start_ready(Some(&with_state), &[]);
    // Per interface: accepted 2 (one paired across the kill), unanswered
    // 1, rejected inbound one per scanned port.
    let sessions = f64::from(3 + scan) * ENIS.len() as f64;
    let done = second.wait_for("every verdict", |s| {
        (s.sum("vpcflow_sessions_total", &[]) + stopped.sum("vpcflow_sessions_total", &[])
            >= sessions)
            .then(|| s.clone())
    });
    let done = second.wait_polls(&done, 3.0);
    assert_eq!(checkpoints(&done, "restored"), 1.0, "{}", second.log_tail());
    assert_eq!(
        records(&done),
        put - counted_in_part,
        "only what its predecessor had not counted\n{}",
        done.flow_lines()
    );
    add(&mut total, &done);

    let undisturbed = exact_over_the_processes(&mut direct, &total, sessions, put, &second);
    assert_eq!(undisturbed.sessions("accepted"), 2.0 * ENIS.len() as f64);
    assert_eq!(undisturbed.sessions("unanswered"), ENIS.len() as f64);
    assert_eq!(
        undisturbed.sessions("rejected_inbound"),
        f64::from(scan) * ENIS.len() as f64
    );
}

/// The state file of the one log group in `directory` and its text, if
/// written yet (the temporary file, a dot file, left out).
fn state_file(directory: &Path) -> Option<(std::path::PathBuf, String)> {
    let entry = std::fs::read_dir(directory).ok()?.find_map(|entry| {
        let path = entry.ok()?.path();
        let name = path.file_name()?.to_str()?;
        (name.starts_with("cloudwatch-") && name.ends_with(".json")).then_some(path)
    })?;
    let text = std::fs::read_to_string(&entry).ok()?;
    Some((entry, text))
}

/// Whether a checkpoint was written part way through the wall clock's advance.
fn advancing(checkpoint: &str) -> bool {
    checkpoint.contains(r#""advancing":"#)
}

#[test]
fn kill_9_between_two_steps_of_the_wall_clocks_advance_counts_exactly_over_the_processes() {
    let moto = Moto::start();
    seed(&moto, GROUP, &ENIS.map(|(eni, _)| (eni, Vec::new())));
    let state = tempfile::tempdir().expect("state dir");
    // Two decisions a step: a scan's sessions, all due at once, take
    // hundreds of steps, each checkpointed before it is published.
    let config = |state: Option<&Path>| {
        let state = state_section(state);
        CloudWatchToml {
            cloudwatch: "max_held_events = 2",
            rest: interface_addresses(&ENIS) + &correlation("10s", "120s") + &state,
            ..CloudWatchToml::new(&moto.endpoint_url())
        }
        .toml()
    };
    let mut direct = Exporter::start_ready(Some(&config(None)), &[]);
    let scan: u16 = 300;
    let t = now_s() - 2;
    let put = put_each(&moto, |eni, local| {
        let mut records = vec![
            record(eni, ("203.0.113.10", 40001), (local, 443), t, "ACCEPT"),
            record(eni, (local, 443), ("203.0.113.10", 40001), t, "ACCEPT"),
        ];
        records.extend(
            (0..scan).map(|i| record(eni, ("198.51.100.7", 30000 + i), (local, 22), t, "REJECT")),
        );
        records
    });
    let mut first = Exporter::start_ready(Some(&config(Some(state.path()))), &[]);

    // Once a checkpoint says the advance is under way, the next checkpoint's
    // temporary file is made a FIFO: the process stops at its next step,
    // every step before it checkpointed and published.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let file = loop {
        if let Some((path, text)) = state_file(state.path())
            && advancing(&text)
        {
            break path;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint part way through the advance\n{}",
            first.log_tail()
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    let name = file.file_name().unwrap().to_str().unwrap().to_owned();
    let fifo = state.path().join(format!(".{name}.tmp"));
    let made = (0..10_000).any(|_| {
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !made {
            // The previous step's file is still being written.
            std::thread::sleep(Duration::from_micros(200));
        }
        made
    });
    assert!(made, "mkfifo {}", fifo.display());
    std::thread::sleep(Duration::from_millis(500));
    let stopped = first.scrape();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        flow_counters(&first.scrape()),
        flow_counters(&stopped),
        "nothing more published while the step's checkpoint waits"
    );
    let (_, on_disk) = state_file(state.path()).expect("a checkpoint");
    assert!(
        advancing(&on_disk),
        "the advance was under way at the kill\n{}",
        first.log_tail()
    );
    let sessions = f64::from(1 + scan) * ENIS.len() as f64;
    let decided_before = stopped.sum("vpcflow_sessions_total", &[]);
    assert!(
        decided_before > 2.0 && decided_before < sessions,
        "part of the scan decided: {decided_before}\n{}",
        stopped.flow_lines()
    );
    let mut total = BTreeMap::new();
    add(&mut total, &stopped);
    first.kill();
    std::fs::remove_file(&fifo).expect("remove the FIFO");

    // The successor finishes the advance before anything else.
    let mut second = Exporter::start_ready(Some(&config(Some(state.path()))), &[]);
    let done = second.wait_for("every verdict", |s| {
        (s.sum("vpcflow_sessions_total", &[]) + decided_before >= sessions).then(|| s.clone())
    });
    let done = second.wait_polls(&done, 3.0);
    assert_eq!(checkpoints(&done, "restored"), 1.0, "{}", second.log_tail());
    assert_eq!(
        records(&done),
        0.0,
        "every record was counted before the kill"
    );
    add(&mut total, &done);

    let undisturbed = exact_over_the_processes(&mut direct, &total, sessions, put, &second);
    assert_eq!(
        undisturbed.sessions("rejected_inbound"),
        f64::from(scan) * ENIS.len() as f64
    );
}

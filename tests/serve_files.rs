//! `vpc-flow-exporter serve` over the files source: the bundled sample read
//! once gives a golden `/metrics` (as node_exporter's end-to-end test does),
//! linted by `promtool check metrics`; replayed, its counters keep growing.
//!
//! The golden file keeps the deterministic `vpcflow_` lines: every sample
//! and `# TYPE` line except poll durations and the last poll's time, with
//! the build labels normalized. Regenerate it with
//!
//! ```text
//! UPDATE_GOLDEN=1 cargo test --test serve_files
//! ```
//!
//! and check by hand that its `vpcflow_sessions_total` per verdict still
//! equals `analyze --output json examples/sample-flows.log` (the test
//! checks that too).

// Each test crate uses a part of common; its re-exports may go unused.
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::exporter::{Exporter, VERDICTS, promtool_check, run_json};
use common::repo_root;

const SAMPLE: &str = "examples/sample-flows.log";
const GOLDEN: &str = "tests/golden/metrics-sample.prom";

fn files_config(replay: bool) -> String {
    let sample = repo_root().join(SAMPLE);
    format!(
        r#"
[files]
paths = ["{}"]
replay = {replay}
replay_interval = "1s"
"#,
        sample.display()
    )
}

/// The deterministic `vpcflow_` lines of a files-mode `/metrics` body.
fn golden_lines(metrics: &str) -> String {
    const DROPPED: [&str; 2] = [
        "vpcflow_poll_duration_seconds",
        "vpcflow_last_successful_poll_timestamp_seconds",
    ];
    let mut out = String::new();
    for line in metrics.lines() {
        let series = line.strip_prefix("# TYPE ").unwrap_or(line);
        if !series.starts_with("vpcflow_") || DROPPED.iter().any(|d| series.starts_with(d)) {
            continue;
        }
        if line.starts_with("vpcflow_build_info{") {
            // Version, revision and compiler vary by build: keep the names.
            let labels: Vec<&str> = line
                .split(['{', ',', '}'])
                .filter_map(|part| part.split_once('=').map(|(key, _)| key))
                .collect();
            let normalized: Vec<String> = labels.iter().map(|k| format!("{k}=\"…\"")).collect();
            let value = line.rsplit(' ').next().unwrap_or("");
            out.push_str(&format!(
                "vpcflow_build_info{{{}}} {value}\n",
                normalized.join(",")
            ));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `analyze --output json` on `path`: the parsed report.
fn analyze(path: &Path) -> serde_json::Value {
    run_json(&[
        "analyze",
        "--output",
        "json",
        path.to_str().expect("a UTF-8 path"),
    ])
}

#[test]
fn sample_file_gives_the_golden_metrics_and_passes_promtool() {
    let mut exporter = Exporter::start_ready(Some(&files_config(false)), &[]);
    let metrics = exporter.scrape();

    promtool_check(&metrics.text);

    // The exporter decides what analyze decides on the same file.
    let report = analyze(&repo_root().join(SAMPLE));
    for verdict in VERDICTS {
        assert_eq!(
            metrics.sessions(verdict),
            report["sessions"][verdict].as_f64().unwrap(),
            "sessions {verdict}: /metrics against analyze"
        );
    }
    let records = &report["records"];
    assert_eq!(
        metrics.sum("vpcflow_records_total", &[("log_status", "OK")]),
        records["ok"].as_f64().unwrap()
    );
    assert_eq!(
        metrics.sum("vpcflow_records_total", &[("log_status", "NODATA")]),
        records["nodata"].as_f64().unwrap()
    );
    assert_eq!(
        metrics.sum("vpcflow_records_total", &[("log_status", "SKIPDATA")]),
        records["skipdata"].as_f64().unwrap()
    );
    assert_eq!(
        metrics.sum("vpcflow_malformed_records_total", &[]),
        records["malformed"].as_f64().unwrap()
    );

    let actual = golden_lines(&metrics.text);
    let golden = repo_root().join(GOLDEN);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &actual).expect("write the golden file");
    }
    let expected = std::fs::read_to_string(&golden)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", golden.display()));
    if actual != expected {
        let diff: Vec<String> = diff_lines(&expected, &actual);
        panic!(
            "/metrics differs from {GOLDEN} (UPDATE_GOLDEN=1 rewrites it):\n{}",
            diff.join("\n")
        );
    }
}

/// Lines only in `expected` (-) and only in `actual` (+).
fn diff_lines(expected: &str, actual: &str) -> Vec<String> {
    let count = |text: &str| {
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for line in text.lines() {
            *counts.entry(line.to_owned()).or_default() += 1;
        }
        counts
    };
    let (want, got) = (count(expected), count(actual));
    let mut out = Vec::new();
    for (line, n) in &want {
        for _ in got.get(line).copied().unwrap_or(0)..*n {
            out.push(format!("- {line}"));
        }
    }
    for (line, n) in &got {
        for _ in want.get(line).copied().unwrap_or(0)..*n {
            out.push(format!("+ {line}"));
        }
    }
    if out.is_empty() {
        out.push("(same lines, different order)".to_owned());
    }
    out
}

#[test]
fn replay_keeps_counting() {
    let per_pass = analyze(&repo_root().join(SAMPLE));
    let sessions_per_pass: f64 = VERDICTS
        .iter()
        .map(|v| per_pass["sessions"][*v].as_f64().unwrap())
        .sum();
    let records_per_pass = per_pass["records"]["total"].as_f64().unwrap();
    assert!(sessions_per_pass > 0.0);

    let mut exporter = Exporter::start_ready(Some(&files_config(true)), &[]);
    let first = exporter.scrape();
    let first_sessions = first.sum("vpcflow_sessions_total", &[]);
    assert!(first_sessions >= sessions_per_pass, "{first_sessions}");

    let later = exporter.wait_for("vpcflow_sessions_total to grow by two passes", |s| {
        (s.sum("vpcflow_sessions_total", &[]) >= first_sessions + 2.0 * sessions_per_pass)
            .then(|| s.clone())
    });
    assert!(later.sum("vpcflow_records_total", &[]) >= 3.0 * records_per_pass);
    assert!(later.polls("success") >= 3.0);
    assert_eq!(later.sum("vpcflow_up", &[]), 1.0);
}

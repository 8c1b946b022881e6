//! `[metrics]` on the real binary: the number of `vpcflow_sessions_total`
//! series of an interface never exceeds `max_series_per_interface`, labels
//! left out of `session_labels` are left out of the series, and every
//! session that found no series of its own is counted as dropped.

mod common;

use common::exporter::{Exporter, promtool_check, run_json};
use common::repo_root;

const SAMPLE: &str = "examples/sample-flows.log";
const INTERFACES: [&str; 2] = ["eni-00000000000000000", "eni-00000000000000001"];

fn serve(metrics_section: &str) -> common::exporter::Scrape {
    let config = format!(
        "[files]\npaths = [\"{}\"]\n[metrics]\n{metrics_section}",
        repo_root().join(SAMPLE).display()
    );
    let mut exporter = Exporter::start_ready(Some(&config), &[]);
    let scrape = exporter.scrape();
    promtool_check(&scrape.text);
    scrape
}

/// The `vpcflow_sessions_total` sample lines of one interface.
fn series_of<'a>(text: &'a str, interface: &str) -> Vec<&'a str> {
    let needle = format!("interface_id=\"{interface}\"");
    text.lines()
        .filter(|line| line.starts_with("vpcflow_sessions_total{") && line.contains(&needle))
        .collect()
}

fn analyzed_sessions() -> f64 {
    let report = run_json(&[
        "analyze",
        "--output",
        "json",
        repo_root().join(SAMPLE).to_str().unwrap(),
    ]);
    report["sessions"]
        .as_object()
        .unwrap()
        .values()
        .map(|count| count.as_f64().unwrap())
        .sum()
}

#[test]
fn past_the_budget_sessions_fold_into_port_other_or_are_counted_dropped() {
    // The sample has 11 and 7 label sets on its two interfaces.
    let scrape = serve("max_series_per_interface = 4\n");
    for interface in INTERFACES {
        let series = series_of(&scrape.text, interface);
        assert!(
            !series.is_empty() && series.len() <= 4,
            "{interface}: {series:#?}"
        );
    }
    let counted = scrape.sum("vpcflow_sessions_total", &[]);
    let dropped = scrape.sum("vpcflow_series_dropped_total", &[]);
    let total = analyzed_sessions();
    assert!(dropped > 0.0, "{}", scrape.flow_lines());
    assert!(counted <= total && counted + dropped >= total);
}

#[test]
fn dropped_labels_leave_the_series_and_cut_their_number() {
    let scrape = serve("session_labels = [\"verdict\"]\nmax_series_per_interface = 2\n");
    for interface in INTERFACES {
        let series = series_of(&scrape.text, interface);
        assert_eq!(series.len(), 2, "{interface}: {series:#?}");
        for line in series {
            let labels = &line[..line.find('}').unwrap()];
            assert!(
                !labels.contains("port=")
                    && !labels.contains("protocol=")
                    && !labels.contains("direction="),
                "{line}"
            );
        }
    }
    // Without a port label nothing folds: every session is counted or dropped.
    let counted = scrape.sum("vpcflow_sessions_total", &[]);
    let dropped = scrape.sum("vpcflow_series_dropped_total", &[]);
    assert!(dropped > 0.0);
    assert_eq!(counted + dropped, analyzed_sessions());
}

#[test]
fn within_the_budget_nothing_is_dropped() {
    let scrape = serve("");
    assert_eq!(scrape.sum("vpcflow_series_dropped_total", &[]), 0.0);
    assert!(scrape.has("vpcflow_series_dropped_total"));
    assert_eq!(
        scrape.sum("vpcflow_sessions_total", &[]),
        analyzed_sessions()
    );
}

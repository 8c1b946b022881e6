//! `GET /api/v1/sessions` and `/api/v1/interfaces` on a running exporter:
//! over the bundled sample read once, the API lists exactly the sessions
//! `analyze --details` finds that were not accepted, with the same keys;
//! filters narrow, limits cut, bad parameters are a 400 naming the
//! parameter; with a small ring a flood keeps only the newest.

// Each test crate uses a part of common; its re-exports may go unused.
mod common;

use std::collections::BTreeSet;

use common::exporter::{Exporter, run_json};
use common::repo_root;
use serde_json::Value;

const SAMPLE: &str = "examples/sample-flows.log";

fn files_config(paths: &[String], api: &str) -> String {
    let paths: Vec<String> = paths.iter().map(|p| format!("{p:?}")).collect();
    format!(
        "[files]\npaths = [{}]\n\n[interfaces.eni-00000000000000000]\nname = \"payments-db\"\n\n{api}\n",
        paths.join(", ")
    )
}

fn get_json(exporter: &Exporter, path: &str) -> (u16, Value) {
    let (status, body) = exporter.get(path);
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, json)
}

fn sessions(exporter: &Exporter, query: &str) -> Vec<Value> {
    let (status, json) = get_json(exporter, &format!("/api/v1/sessions?{query}"));
    assert_eq!(status, 200, "{query}: {json}");
    json["sessions"]
        .as_array()
        .expect("a sessions array")
        .clone()
}

/// The `--details` keys a session is compared by.
fn key(session: &Value) -> String {
    [
        "interface_id",
        "protocol",
        "initiator",
        "responder",
        "direction",
        "verdict",
        "packets",
        "bytes",
        "start",
        "end",
    ]
    .iter()
    .map(|k| session[k].to_string())
    .collect::<Vec<_>>()
    .join(" ")
}

#[test]
fn the_api_lists_what_analyze_details_finds() {
    let sample = repo_root().join(SAMPLE).display().to_string();
    let exporter =
        Exporter::start_ready(Some(&files_config(std::slice::from_ref(&sample), "")), &[]);
    let report = run_json(&["analyze", "--output", "json", "--details", &sample]);
    let expected: BTreeSet<String> = report["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["verdict"] != "accepted")
        .map(key)
        .collect();
    assert!(
        expected.len() >= 5,
        "the sample has rejected and unanswered sessions"
    );

    let all = sessions(&exporter, "limit=10000");
    let listed: BTreeSet<String> = all.iter().map(key).collect();
    assert_eq!(
        listed, expected,
        "accepted sessions are not kept by default"
    );
    assert_eq!(listed.len(), all.len(), "each session once");
    let decided: Vec<u64> = all
        .iter()
        .map(|s| s["decided_at"].as_u64().unwrap())
        .collect();
    assert!(decided.windows(2).all(|w| w[0] >= w[1]), "newest first");
    for session in &all {
        let command = session["inspect"].as_str().unwrap();
        assert!(
            command.starts_with("vpc-flow-exporter analyze --details --interface ")
                && command.ends_with(&sample),
            "{command}"
        );
    }

    // Filters narrow to the sessions that match, limits cut.
    let unanswered = sessions(&exporter, "verdict=unanswered");
    assert_eq!(
        unanswered.len(),
        report["sessions"]["unanswered"].as_u64().unwrap() as usize
    );
    assert!(unanswered.iter().all(|s| s["verdict"] == "unanswered"));
    let first = &all[0];
    let address = first["initiator"]
        .as_str()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .0;
    let by_address = sessions(&exporter, &format!("address={address}"));
    assert!(!by_address.is_empty() && by_address.len() < all.len());
    assert!(by_address.iter().all(|s| {
        [&s["initiator"], &s["responder"]]
            .iter()
            .any(|e| e.as_str().unwrap().rsplit_once(':').unwrap().0 == address)
    }));
    let interface = first["interface_id"].as_str().unwrap();
    let port = first["responder"]
        .as_str()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .1;
    let narrow = sessions(
        &exporter,
        &format!("interface={interface}&address={address}&port={port}"),
    );
    assert!(narrow.iter().any(|s| key(s) == key(first)));
    assert!(narrow.iter().all(|s| s["interface_id"] == interface));
    assert_eq!(sessions(&exporter, "limit=2").len(), 2);
    assert_eq!(sessions(&exporter, "limit=2"), all[..2].to_vec());

    // Bad parameters: 400 and a message naming the parameter.
    for (query, message) in [
        ("verdict=dropped", "verdict: expected one of"),
        (
            "address=10.0.0.300",
            "address: expected an IPv4 or IPv6 address",
        ),
        ("port=-1", "port: expected a port number"),
        ("limit=lots", "limit: expected a number from 1 to 10000"),
        ("from=10.0.0.1", "unknown parameter \"from\""),
    ] {
        let (status, json) = get_json(&exporter, &format!("/api/v1/sessions?{query}"));
        assert_eq!(status, 400, "{query}");
        let error = json["error"].as_str().unwrap();
        assert!(error.starts_with(message), "{query}: {error}");
    }

    // Per interface, the last hour's counts are analyze's, with the configured name.
    let (status, json) = get_json(&exporter, "/api/v1/interfaces");
    assert_eq!(status, 200);
    for item in json["interfaces"].as_array().unwrap() {
        let id = item["interface_id"].as_str().unwrap();
        if id == "eni-00000000000000000" {
            assert_eq!(item["name"], "payments-db");
        }
        let counts = report_by_interface(&report, id);
        assert_eq!(item["last_hour"], counts, "{id}");
    }

    let (status, page) = exporter.get("/");
    assert_eq!(status, 200);
    assert!(
        page.contains("api/v1/sessions"),
        "the landing page reads the API"
    );
}

/// Verdict counts of one interface in an `analyze --details` report.
fn report_by_interface(report: &Value, id: &str) -> Value {
    let mut counts = serde_json::Map::new();
    for verdict in common::exporter::VERDICTS {
        let n = report["details"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["interface_id"] == id && s["verdict"] == verdict)
            .count();
        counts.insert(verdict.to_string(), Value::from(n));
    }
    Value::Object(counts)
}

#[test]
fn a_flood_keeps_only_the_newest_in_each_ring() {
    // 3,000 unanswered sessions (each its own port pair), ring of 50.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flood.log");
    let mut text = String::new();
    for i in 0..3000u32 {
        text.push_str(&format!(
            "2 123456789010 eni-0f00d 10.1.{}.{} 10.0.0.5 {} 8080 6 1 60 {} {} ACCEPT OK\n",
            i / 250,
            i % 250 + 1,
            20000 + i,
            1_700_000_000 + i,
            1_700_000_001 + i,
        ));
    }
    std::fs::write(&path, text).unwrap();
    let config = files_config(
        &[path.display().to_string()],
        "[api]\nsessions_per_verdict = 50\n",
    );
    let exporter = Exporter::start_ready(Some(&config), &[]);
    let all = sessions(&exporter, "limit=10000");
    assert_eq!(all.len(), 50, "the ring holds sessions_per_verdict");
    assert!(all.iter().all(|s| s["verdict"] == "unanswered"));
    let starts: BTreeSet<u64> = all.iter().map(|s| s["start"].as_u64().unwrap()).collect();
    assert_eq!(
        starts.iter().next().copied(),
        Some(1_700_000_000 + 2950),
        "only the 50 newest (decided last) are kept"
    );
    let (_, json) = get_json(&exporter, "/api/v1/interfaces");
    let flooded = json["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["interface_id"] == "eni-0f00d")
        .expect("the flooded interface");
    assert_eq!(
        flooded["last_hour"]["unanswered"], 3000,
        "the hour counts them all"
    );
}

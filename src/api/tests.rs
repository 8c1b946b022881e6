use http_body_util::BodyExt;
use serde_json::Value;

use super::*;
use crate::flow::{Direction, Endpoint, SessionObserver, SessionReport, Verdict};

fn body(response: Response<Full<Bytes>>) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = collect_body(response.into_body());
    (status, serde_json::from_slice(&bytes).expect("a JSON body"))
}

/// The body of a `Full`, which is ready at once.
fn collect_body(body: Full<Bytes>) -> Bytes {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime
        .block_on(body.collect())
        .expect("a full body")
        .to_bytes()
}

struct Nothing;

impl SessionObserver for Nothing {
    fn decided(&mut self, _: &SessionReport<'_>) {}
    fn traffic(&mut self, _: &str, _: Verdict, _: Direction, _: u64, _: u64) {}
    fn closed(&mut self, _: &SessionReport<'_>) {}
    fn evicted(&mut self, _: &str) {}
}

fn filled_log() -> SessionLog {
    let log = SessionLog::new(RingSizes {
        per_verdict: 10,
        accepted: 0,
    });
    let proof = ProofSource::Files {
        paths: vec!["sample.log".into()],
        log_format: "auto".into(),
        replayed: false,
    };
    let mut observer = Recorded::new(Nothing, &log, &proof, now_seconds());
    observer.decided(&SessionReport {
        interface_id: "eni-a",
        protocol: 6,
        initiator: Endpoint {
            addr: "10.0.0.9".parse().unwrap(),
            port: 40000,
        },
        responder: Endpoint {
            addr: "10.0.0.1".parse().unwrap(),
            port: 5432,
        },
        direction: Direction::Ingress,
        verdict: Verdict::Unanswered,
        packets: 1,
        bytes: 60,
        start: Some(10),
        end: Some(20),
        direction_by_fallback: false,
    });
    drop(observer);
    log
}

#[test]
fn sessions_carry_the_details_keys_and_decided_at() {
    let log = filled_log();
    let known = vec![("eni-a".to_string(), Some("payments-db".to_string()))];
    let view = ApiView {
        sessions: &log,
        interfaces: &known,
        source: "files",
    };
    let (status, json) = body(sessions(&view, Some("verdict=unanswered")));
    assert_eq!(status, StatusCode::OK);
    let session = &json["sessions"][0];
    let mut keys: Vec<&str> = session
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "bytes",
            "decided_at",
            "direction",
            "end",
            "initiator",
            "inspect",
            "interface_id",
            "packets",
            "protocol",
            "responder",
            "start",
            "verdict"
        ]
    );
    assert_eq!(session["initiator"], "10.0.0.9:40000");
    assert_eq!(session["verdict"], "unanswered");

    let (status, json) = body(sessions(&view, Some("port=http")));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        json["error"],
        r#"port: expected a port number 0-65535, got "http""#
    );

    let (status, json) = body(interfaces(&view, None));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["interfaces"][0]["name"], "payments-db");
    assert_eq!(json["interfaces"][0]["last_hour"]["unanswered"], 1);
}

#[test]
fn the_landing_page_is_self_contained() {
    let page = LANDING_PAGE;
    assert!(page.contains("api/v1/sessions") && page.contains("api/v1/interfaces"));
    for remote in ["http://", "https://", "//cdn", "@import"] {
        assert!(!page.contains(remote), "the page must not load {remote}…");
    }
}

//! Smoke tests of the test support in `tests/common`: moto answers the real
//! CloudWatch Logs client, Prometheus scrapes and evaluates rules, promtool
//! runs. `moto_behaves_as_documented` pins what `tests/common/README.md`
//! says about moto, so an upgrade that changes it fails here first.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::process::Command;
use std::time::Duration;

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::types::{FilteredLogEvent, InputLogEvent};
use common::moto::now_ms;
use common::{Moto, Prometheus, http_get, promtool, wait_until};

const GROUP: &str = "/vpc/flow-logs";
const STREAMS: [&str; 3] = [
    "eni-0a1b2c3d4e5f60001-all",
    "eni-0a1b2c3d4e5f60002-all",
    "eni-0a1b2c3d4e5f60003-all",
];

/// FilterLogEvents over `streams`, following nextToken to the end.
async fn filter_all(
    client: &Client,
    streams: &[&str],
    limit: Option<i32>,
) -> (Vec<FilteredLogEvent>, usize) {
    let mut events = Vec::new();
    let mut pages = 0;
    let mut token = None;
    loop {
        let page = client
            .filter_log_events()
            .log_group_name(GROUP)
            .set_log_stream_names(Some(streams.iter().map(|s| s.to_string()).collect()))
            .set_limit(limit)
            .set_next_token(token)
            .send()
            .await
            .expect("FilterLogEvents");
        pages += 1;
        events.extend(page.events().iter().cloned());
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return (events, pages);
        }
    }
}

fn flow_record(eni: &str, i: usize) -> String {
    format!(
        "2 123456789010 {eni} 10.0.7.253 94.102.61.6 443 {} 6 1 44 1672869645 1672869668 ACCEPT OK",
        40000 + i
    )
}

#[tokio::test]
async fn moto_filter_log_events_returns_seeded_events_across_pages() {
    let moto = Moto::start();
    moto.create_log_group(GROUP).await;
    moto.create_log_streams(GROUP, &STREAMS).await;
    moto.create_log_streams(GROUP, &["eni-ffffffffffffffff0-all"])
        .await;

    let now = now_ms();
    let mut expected = BTreeSet::new();
    for (s, stream) in STREAMS.iter().enumerate() {
        let eni = stream.trim_end_matches("-all");
        // Given newest first: put_log_events sorts them.
        let events: Vec<(i64, String)> = (0..5)
            .rev()
            .map(|i| (now - 60_000 + (s * 10 + i) as i64, flow_record(eni, i)))
            .collect();
        for (_, message) in &events {
            expected.insert((stream.to_string(), message.clone()));
        }
        moto.put_log_events(GROUP, stream, events).await;
    }
    // A stream that is not asked for must not come back.
    moto.put_log_events(GROUP, "eni-ffffffffffffffff0-all", [(now, "other")])
        .await;

    let client = moto.client();
    let (events, pages) = filter_all(&client, &STREAMS, Some(4)).await;
    assert_eq!(pages, 4, "15 events with limit 4 are 4 pages");
    let got: BTreeSet<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e.log_stream_name().unwrap().to_owned(),
                e.message().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    let ids: BTreeSet<&str> = events.iter().map(|e| e.event_id().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "event ids are unique");

    // Without a limit everything fits in one page (moto's default is 10,000).
    let (all, pages) = filter_all(&client, &STREAMS, None).await;
    assert_eq!((all.len(), pages), (15, 1));
}

/// Each assertion here is a line of tests/common/README.md.
#[tokio::test]
async fn moto_behaves_as_documented() {
    let moto = Moto::start();
    let client = moto.client();
    moto.create_log_group(GROUP).await;
    // Created in this order on purpose: b, a, c.
    let [a, b, c] = ["eni-a-all", "eni-b-all", "eni-c-all"];
    moto.create_log_streams(GROUP, &[b, a, c]).await;
    let now = now_ms();
    moto.put_log_events(GROUP, b, [(now - 1000, "b0"), (now - 999, "b1")])
        .await;
    moto.put_log_events(GROUP, a, [(now - 5000, "a0")]).await;
    // A later put with an earlier timestamp.
    moto.put_log_events(GROUP, a, [(now - 9000, "a-early")])
        .await;
    moto.put_log_events(GROUP, c, [(now - 3000, "c0"), (now - 3000, "c1")])
        .await;

    let filter = || client.filter_log_events().log_group_name(GROUP);
    let summary = |events: &[FilteredLogEvent]| -> Vec<(String, String)> {
        events
            .iter()
            .map(|e| {
                (
                    e.event_id().unwrap().to_owned(),
                    e.message().unwrap().to_owned(),
                )
            })
            .collect()
    };

    // Ordering: streams in creation order, each sorted by timestamp (ties
    // in put order); event ids a server-wide decimal counter from "0".
    let all = filter().send().await.unwrap();
    assert_eq!(
        summary(all.events()),
        [
            ("0", "b0"),
            ("1", "b1"),
            ("3", "a-early"),
            ("2", "a0"),
            ("4", "c0"),
            ("5", "c1")
        ]
        .map(|(i, m)| (i.to_owned(), m.to_owned()))
    );
    assert!(all.next_token().is_none(), "no nextToken on the last page");
    let searched: Vec<_> = all
        .searched_log_streams()
        .iter()
        .map(|s| (s.log_stream_name().unwrap(), s.searched_completely()))
        .collect();
    assert_eq!(
        searched,
        [(b, Some(true)), (a, Some(true)), (c, Some(true))]
    );
    for e in all.events() {
        assert!(
            e.ingestion_time().unwrap() >= now,
            "ingestionTime is put time"
        );
    }

    // interleaved=true sorts across streams by timestamp. (AWS ignores the
    // deprecated flag and always interleaves; moto needs it.)
    #[allow(deprecated)]
    let interleaved = filter().interleaved(true).send().await.unwrap();
    let messages: Vec<_> = interleaved
        .events()
        .iter()
        .map(|e| e.message().unwrap())
        .collect();
    assert_eq!(messages, ["a-early", "a0", "c0", "c1", "b0", "b1"]);

    // logStreamNames filters in stream creation order, not request order;
    // unknown names are ignored.
    let named = filter()
        .log_stream_names(c)
        .log_stream_names(a)
        .log_stream_names("eni-nope-all")
        .send()
        .await
        .unwrap();
    let messages: Vec<_> = named
        .events()
        .iter()
        .map(|e| e.message().unwrap())
        .collect();
    assert_eq!(messages, ["a-early", "a0", "c0", "c1"]);

    // logStreamNamePrefix is ignored: every stream comes back.
    let prefixed = filter()
        .log_stream_name_prefix("eni-a")
        .send()
        .await
        .unwrap();
    assert_eq!(prefixed.events().len(), 6);

    // startTime and endTime filter the event timestamp, both inclusive.
    let window = filter()
        .start_time(now - 5000)
        .end_time(now - 3000)
        .send()
        .await
        .unwrap();
    let messages: Vec<_> = window
        .events()
        .iter()
        .map(|e| e.message().unwrap())
        .collect();
    assert_eq!(messages, ["a0", "c0", "c1"]);

    // limit pages; nextToken is "<group>@<stream>@<event id of last event>".
    let page = filter().limit(2).send().await.unwrap();
    assert_eq!(page.events().len(), 2);
    assert_eq!(page.next_token(), Some("/vpc/flow-logs@eni-b-all@1"));
    // An unknown token gives an empty page, not an error.
    let bogus = filter().next_token("bogus").send().await.unwrap();
    assert!(bogus.events().is_empty() && bogus.next_token().is_none());
    // limit above 10,000 is an error.
    let err = filter().limit(10_001).send().await.unwrap_err();
    assert!(
        format!("{err:?}").contains("InvalidParameterException"),
        "{err:?}"
    );

    // PutLogEvents (raw, bypassing the helper's checks): events older than
    // 14 days or over 2 hours ahead are dropped and reported, not an error.
    let event = |ts: i64, m: &str| {
        InputLogEvent::builder()
            .timestamp(ts)
            .message(m)
            .build()
            .unwrap()
    };
    let out = client
        .put_log_events()
        .log_group_name(GROUP)
        .log_stream_name(c)
        .log_events(event(now - 15 * 86_400_000, "old"))
        .log_events(event(now, "ok"))
        .log_events(event(now + 3 * 3_600_000, "future"))
        .send()
        .await
        .unwrap();
    let rejected = out.rejected_log_events_info().expect("rejection info");
    assert_eq!(rejected.too_old_log_event_end_index(), Some(0));
    assert_eq!(rejected.too_new_log_event_start_index(), Some(2));
    let messages: Vec<_> = filter()
        .log_stream_names(c)
        .send()
        .await
        .unwrap()
        .events()
        .iter()
        .map(|e| e.message().unwrap().to_owned())
        .collect();
    assert_eq!(messages, ["c0", "c1", "ok"]);
    // An unsorted batch is an error.
    let err = client
        .put_log_events()
        .log_group_name(GROUP)
        .log_stream_name(c)
        .log_events(event(now, "x"))
        .log_events(event(now - 1, "y"))
        .send()
        .await
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("chronological order"),
        "{err:?}"
    );
    // A missing stream is ResourceNotFoundException.
    let err = client
        .put_log_events()
        .log_group_name(GROUP)
        .log_stream_name("eni-nope-all")
        .log_events(event(now, "x"))
        .send()
        .await
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("ResourceNotFoundException"),
        "{err:?}"
    );

    // reset() forgets everything, but event ids keep counting.
    moto.reset();
    moto.create_log_group(GROUP).await;
    moto.create_log_streams(GROUP, &[a]).await;
    moto.put_log_events(GROUP, a, [(now, "after reset")]).await;
    let after = filter().send().await.unwrap();
    assert_eq!(after.events()[0].event_id(), Some("7"));
}

/// Serves `body` at any path, forever, on a free loopback port.
fn serve_metrics(body: &'static str) -> String {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn prometheus_starts_scrapes_and_evaluates_rules() {
    let target = serve_metrics("# TYPE smoke_value gauge\nsmoke_value 42\n");
    let rules = tempfile::NamedTempFile::with_suffix(".yml").unwrap();
    std::fs::write(
        rules.path(),
        "groups:\n- name: smoke\n  rules:\n  - record: smoke:doubled\n    expr: smoke_value * 2\n",
    )
    .unwrap();

    let prometheus = Prometheus::start(&[target], &[rules.path().to_owned()]);
    let (status, _) = http_get(&format!("{}/-/ready", prometheus.base_url())).unwrap();
    assert_eq!(status, 200);

    let value = |query: &str| {
        let result = prometheus.query(query);
        result[0]["value"][1].as_str().map(str::to_owned)
    };
    let scraped = wait_until(Duration::from_secs(20), "smoke_value scraped", || {
        value("smoke_value")
    });
    assert_eq!(scraped, "42");
    let recorded = wait_until(Duration::from_secs(20), "smoke:doubled recorded", || {
        value("smoke:doubled")
    });
    assert_eq!(recorded, "84");
}

#[test]
fn promtool_runs() {
    let output = Command::new(promtool()).arg("--version").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("promtool, version"), "{text}");
}

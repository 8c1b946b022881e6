//! A moto server (the CloudWatch Logs API, for real over HTTP) on a free
//! loopback port, an SDK client wired to it, and helpers to seed it.
//!
//! Every client a test builds itself (CloudWatch Logs, S3, SQS, EC2) comes
//! from [`sdk_config`]: explicit region, static credentials and endpoint —
//! not `aws_config::load_from_env()` — so no provider chain runs and
//! nothing can reach the instance metadata service or any non-loopback
//! address.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Once;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;

use super::{ChildProcess, find_binary, free_port, http_agent};

/// The region every test client uses.
pub const REGION: &str = "us-east-1";

/// PutLogEvents limits (AWS's; moto enforces none of them but order).
const MAX_BATCH_EVENTS: usize = 10_000;
const MAX_BATCH_BYTES: usize = 1_048_576;
const EVENT_OVERHEAD_BYTES: usize = 26;
const MAX_BATCH_SPAN_MS: i64 = 24 * 3600 * 1000;
/// moto (like AWS) rejects events older than 14 days or more than 2 hours
/// ahead; keep a minute's margin from both.
const OLDEST_MS: i64 = 14 * 24 * 3600 * 1000 - 60_000;
const NEWEST_MS: i64 = 2 * 3600 * 1000 - 60_000;

/// A running moto server; killed on drop. Each test may start its own.
pub struct Moto {
    process: ChildProcess,
    port: u16,
    client: Client,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts `moto_server` (env `MOTO_SERVER`, else `.venv/bin/moto_server`)
    /// on 127.0.0.1 and a free port, and waits until it answers HTTP.
    /// Panics when the binary is missing or the server does not come up
    /// within 30 s.
    pub fn start() -> Moto {
        let binary = find_binary(
            "MOTO_SERVER",
            super::repo_root().join(".venv/bin/moto_server"),
        );
        let dir = tempfile::tempdir().expect("create a temp dir for moto");
        let mut last_error = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let mut command = Command::new(&binary);
            command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            // Off until start_recording(); kept out of the working directory.
            command.env("MOTO_RECORDER_FILEPATH", dir.path().join("recording.jsonl"));
            let log = dir.path().join(format!("moto-{attempt}.log"));
            let mut process = ChildProcess::spawn("moto_server", command, &log);
            let url = format!("http://127.0.0.1:{port}/moto-api/");
            match process.wait_ready(Duration::from_secs(30), || {
                http_agent().get(&url).call().is_ok()
            }) {
                Ok(()) => {
                    let client = client_for(&format!("http://127.0.0.1:{port}"));
                    return Moto {
                        process,
                        port,
                        client,
                        _dir: dir,
                    };
                }
                // Most likely the port was taken between free_port() and bind.
                Err(e) => last_error = e,
            }
        }
        panic!("moto_server failed to start three times; last:\n{last_error}");
    }

    /// `http://127.0.0.1:PORT`: the endpoint URL for the SDK or the exporter's
    /// `cloudwatch.endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A CloudWatch Logs client for this server (see [`client_for`]).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Forgets every log group, stream and event (moto's `/moto-api/reset`).
    /// Event ids keep counting up: they are never reused by one server.
    pub fn reset(&self) {
        let response = http_agent()
            .post(format!("{}/moto-api/reset", self.endpoint_url()))
            .send_empty()
            .expect("POST /moto-api/reset");
        assert_eq!(response.status().as_u16(), 200, "moto reset failed");
    }

    /// Starts moto's request recorder: every later request is kept, with
    /// its headers and body, for [`Moto::recorded_requests`].
    pub fn start_recording(&self) {
        let response = http_agent()
            .post(format!(
                "{}/moto-api/recorder/start-recording",
                self.endpoint_url()
            ))
            .send_empty()
            .expect("POST /moto-api/recorder/start-recording");
        assert_eq!(response.status().as_u16(), 200, "moto recorder failed");
    }

    /// The requests recorded since [`Moto::start_recording`], in order.
    pub fn recorded_requests(&self) -> Vec<RecordedRequest> {
        let text = http_agent()
            .get(format!(
                "{}/moto-api/recorder/download-recording",
                self.endpoint_url()
            ))
            .call()
            .expect("GET /moto-api/recorder/download-recording")
            .body_mut()
            .read_to_string()
            .expect("the recording");
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(RecordedRequest::parse)
            .collect()
    }

    /// The tail of the server's output, for assertion messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Creates a log group; panics on error.
    pub async fn create_log_group(&self, name: &str) {
        self.client
            .create_log_group()
            .log_group_name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateLogGroup {name}: {e:?}"));
    }

    /// Creates log streams in `group`; panics on error.
    pub async fn create_log_streams(&self, group: &str, streams: &[impl AsRef<str>]) {
        for stream in streams {
            let stream = stream.as_ref();
            self.client
                .create_log_stream()
                .log_group_name(group)
                .log_stream_name(stream)
                .send()
                .await
                .unwrap_or_else(|e| panic!("CreateLogStream {group} {stream}: {e:?}"));
        }
    }

    /// Puts events `(timestamp in ms since the epoch, message)` into an
    /// existing stream. Sorts them by timestamp (stable) and splits them into
    /// batches within AWS's limits (10,000 events, 1 MiB, 24 hours). Panics
    /// when a timestamp is outside what CloudWatch accepts (older than 14
    /// days or more than 2 hours ahead: use [`now_ms`]), when a message is
    /// empty, or when the server rejects anything.
    pub async fn put_log_events<S: Into<String>>(
        &self,
        group: &str,
        stream: &str,
        events: impl IntoIterator<Item = (i64, S)>,
    ) {
        let mut events: Vec<(i64, String)> = events
            .into_iter()
            .map(|(ts, message)| (ts, message.into()))
            .collect();
        events.sort_by_key(|(ts, _)| *ts);
        let now = now_ms();
        for (ts, message) in &events {
            assert!(
                (now - OLDEST_MS..=now + NEWEST_MS).contains(ts),
                "event timestamp {ts} is outside [now - 14 days, now + 2 hours]: \
                 CloudWatch Logs would reject it (message {message:?})"
            );
            assert!(
                !message.is_empty(),
                "CloudWatch Logs rejects empty messages"
            );
        }

        let mut rest = &events[..];
        while !rest.is_empty() {
            let first_ts = rest[0].0;
            let mut bytes = 0;
            let mut len = 0;
            for (ts, message) in rest.iter().take(MAX_BATCH_EVENTS) {
                let size = message.len() + EVENT_OVERHEAD_BYTES;
                if bytes + size > MAX_BATCH_BYTES || ts - first_ts >= MAX_BATCH_SPAN_MS {
                    break;
                }
                bytes += size;
                len += 1;
            }
            assert!(len > 0, "a single event exceeds the 1 MiB batch limit");
            let (batch, tail) = rest.split_at(len);
            rest = tail;

            let input: Vec<InputLogEvent> = batch
                .iter()
                .map(|(ts, message)| {
                    InputLogEvent::builder()
                        .timestamp(*ts)
                        .message(message.clone())
                        .build()
                        .expect("timestamp and message are set")
                })
                .collect();
            let output = self
                .client
                .put_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .set_log_events(Some(input))
                .send()
                .await
                .unwrap_or_else(|e| panic!("PutLogEvents {group} {stream}: {e:?}"));
            if let Some(rejected) = output.rejected_log_events_info() {
                panic!("PutLogEvents {group} {stream} rejected events: {rejected:?}");
            }
        }
    }
}

/// What every client a test builds itself is made from: `region`, static
/// credentials `test`/`test`, the latest behavior version, `endpoint_url`,
/// and the SDK's default retry and timeout settings.
pub fn sdk_config(endpoint_url: &str, region: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test", "test", None, None, "static",
        )))
        .endpoint_url(endpoint_url)
        .build()
}

/// A CloudWatch Logs client for `endpoint_url` in [`REGION`].
pub fn client_for(endpoint_url: &str) -> Client {
    Client::new(&sdk_config(endpoint_url, REGION))
}

/// An S3 client for `endpoint_url` in [`REGION`], with path-style
/// addressing (moto serves every bucket on one host).
pub fn s3_client(endpoint_url: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(&sdk_config(endpoint_url, REGION))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// An SQS client for `endpoint_url` in [`REGION`].
pub fn sqs_client(endpoint_url: &str) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&sdk_config(endpoint_url, REGION))
}

/// An EC2 client for `endpoint_url` in `region`.
pub fn ec2_client(endpoint_url: &str, region: &str) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&sdk_config(endpoint_url, region))
}

/// Static test credentials in this process's environment, and never the
/// EC2 metadata address: for the code under test that builds its clients
/// from the environment, as the exporter does.
pub fn static_credentials_in_environment() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: every test calls this before anything reads the
        // environment, and `call_once` makes the others wait for it.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
            std::env::remove_var("AWS_SESSION_TOKEN");
            std::env::remove_var("AWS_PROFILE");
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        }
    });
}

/// Milliseconds since the Unix epoch, now: the unit of CloudWatch timestamps.
pub fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since_epoch.as_millis()).expect("time fits in i64")
}

/// One request moto's recorder kept.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The operation, from `X-Amz-Target` (`Logs_20140328.FilterLogEvents`
    /// gives `FilterLogEvents`); empty for requests without one.
    pub operation: String,
    /// The access key id of the signature (`Credential=AKID/…`).
    pub access_key_id: String,
    /// The body, parsed when it is JSON (else `Null`).
    pub body: serde_json::Value,
}

impl RecordedRequest {
    fn parse(line: &str) -> RecordedRequest {
        use base64::Engine;
        let entry: serde_json::Value = serde_json::from_str(line).expect("a recorder line");
        let header = |name: &str| {
            entry["headers"]
                .as_object()
                .and_then(|headers| {
                    headers
                        .iter()
                        .find(|(key, _)| key.eq_ignore_ascii_case(name))
                        .and_then(|(_, value)| value.as_str())
                })
                .unwrap_or("")
                .to_owned()
        };
        let operation = header("X-Amz-Target")
            .rsplit('.')
            .next()
            .unwrap_or("")
            .to_owned();
        let authorization = header("Authorization");
        let access_key_id = authorization
            .split("Credential=")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or("")
            .to_owned();
        let raw = entry["body"].as_str().unwrap_or("");
        let body = if entry["body_encoded"].as_bool() == Some(true) {
            base64::engine::general_purpose::STANDARD
                .decode(raw)
                .unwrap_or_default()
        } else {
            raw.as_bytes().to_vec()
        };
        RecordedRequest {
            operation,
            access_key_id,
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        }
    }
}

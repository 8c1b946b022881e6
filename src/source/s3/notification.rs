//! S3 event notifications as they arrive on SQS: which objects were
//! created. Pure parsing, no I/O.
//!
//! A message body is an S3 event (`{"Records": [{"eventName":
//! "ObjectCreated:Put", "s3": {"bucket": {"name"}, "object": {"key", "eTag",
//! "versionId", "size"}}}]}`), the `s3:TestEvent` S3 sends when a
//! notification is set up, or either wrapped in an SNS notification (`{"Type":
//! "Notification", "Message": "<the event as a string>"}`) when the bucket
//! notifies a topic the queue subscribes to. Object keys arrive URL-encoded
//! (`+` for a space).

use serde::Deserialize;

/// One created object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedObject {
    pub bucket: String,
    /// Decoded.
    pub key: String,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub size: Option<u64>,
    /// The notification's `eventTime`, Unix seconds.
    pub event_time: Option<u64>,
}

impl CreatedObject {
    /// What makes a notified object the same one again: a redelivered
    /// message, or S3 notifying the same upload twice.
    pub fn identity(&self) -> String {
        let revision = self
            .version_id
            .as_deref()
            .or(self.etag.as_deref())
            .unwrap_or("");
        format!("{}\u{0}{}\u{0}{revision}", self.bucket, self.key)
    }
}

/// What one SQS message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// Objects created (other event kinds in the same message left out).
    Created(Vec<CreatedObject>),
    /// `s3:TestEvent`: acknowledged and dropped.
    Test,
    /// JSON but no S3 event, or not JSON: said once, left for the dead-letter queue.
    Unrecognized(String),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "Records")]
    records: Option<Vec<Record>>,
    #[serde(rename = "Event")]
    event: Option<String>,
    /// SNS: the S3 event as a string.
    #[serde(rename = "Type")]
    sns_type: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventName", default)]
    event_name: String,
    #[serde(rename = "eventTime")]
    event_time: Option<String>,
    s3: Option<S3Entity>,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: Bucket,
    object: Object,
}

#[derive(Deserialize)]
struct Bucket {
    name: String,
}

#[derive(Deserialize)]
struct Object {
    key: String,
    size: Option<u64>,
    #[serde(rename = "eTag")]
    etag: Option<String>,
    #[serde(rename = "versionId")]
    version_id: Option<String>,
}

/// Reads one message body.
pub fn parse(body: &str) -> Notification {
    let envelope: Envelope = match serde_json::from_str(body) {
        Ok(envelope) => envelope,
        Err(error) => return Notification::Unrecognized(format!("not JSON: {error}")),
    };
    if envelope.sns_type.as_deref() == Some("Notification")
        && let Some(inner) = &envelope.message
    {
        return parse(inner);
    }
    if envelope.event.as_deref() == Some("s3:TestEvent") {
        return Notification::Test;
    }
    let Some(records) = envelope.records else {
        return Notification::Unrecognized("no Records: not an S3 event notification".into());
    };
    let objects = records
        .into_iter()
        .filter(|record| record.event_name.starts_with("ObjectCreated:"))
        .filter_map(|record| {
            let s3 = record.s3?;
            Some(CreatedObject {
                bucket: s3.bucket.name,
                key: decode_key(&s3.object.key),
                etag: s3.object.etag.filter(|etag| !etag.is_empty()),
                version_id: s3.object.version_id.filter(|version| !version.is_empty()),
                size: s3.object.size,
                event_time: record.event_time.as_deref().and_then(parse_time),
            })
        })
        .collect();
    Notification::Created(objects)
}

/// S3 encodes keys as HTML forms do: `+` is a space, `%XX` a byte.
pub fn decode_key(key: &str) -> String {
    url::form_urlencoded::parse(format!("k={key}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| key.to_string())
}

fn parse_time(text: &str) -> Option<u64> {
    let time = humantime::parse_rfc3339_weak(text).ok()?;
    time.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|since| since.as_secs())
}

/// Whether `key` is where S3 delivery puts flow logs: a `vpcflowlogs`
/// folder (`AWSLogs/<account>/vpcflowlogs/<region>/…`, or Hive-style
/// `aws-service=vpcflowlogs`) or a name with `_vpcflowlogs_`. A bucket
/// often holds other logs too (ELB, CloudTrail) under the same
/// notification.
pub fn is_flow_log_key(key: &str) -> bool {
    let (folders, name) = key.rsplit_once('/').unwrap_or(("", key));
    name.contains("_vpcflowlogs_")
        || folders
            .split('/')
            .any(|folder| folder == "vpcflowlogs" || folder.ends_with("=vpcflowlogs"))
}

/// The account and region S3 delivery names in a flow log's key:
/// `…/AWSLogs/<account>/vpcflowlogs/<region>/…`, or Hive-style
/// `aws-account-id=<account>/aws-service=vpcflowlogs/aws-region=<region>`.
pub fn account_and_region(key: &str) -> Option<(&str, &str)> {
    let folders: Vec<&str> = key.split('/').collect();
    let at = folders
        .iter()
        .position(|folder| *folder == "vpcflowlogs" || *folder == "aws-service=vpcflowlogs")?;
    let account = folders.get(at.checked_sub(1)?)?;
    let region = folders.get(at + 1)?;
    let account = account.strip_prefix("aws-account-id=").unwrap_or(account);
    let region = region.strip_prefix("aws-region=").unwrap_or(region);
    let plausible = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    (plausible && !region.is_empty()).then_some((account, region))
}

/// The time in an S3 flow log object's name (`…_20180620T1620Z_hash.log.gz`),
/// Unix seconds: when AWS closed the file, for the object delay.
pub fn time_in_key(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?;
    name.split('_').find_map(|part| {
        let bytes = part.as_bytes();
        let shaped = bytes.len() == 14
            && bytes[8] == b'T'
            && bytes[13] == b'Z'
            && bytes[..8]
                .iter()
                .chain(&bytes[9..13])
                .all(u8::is_ascii_digit);
        if !shaped {
            return None;
        }
        let text = format!(
            "{}-{}-{}T{}:{}:00Z",
            &part[0..4],
            &part[4..6],
            &part[6..8],
            &part[9..11],
            &part[11..13]
        );
        parse_time(&text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_account_and_region() {
        assert_eq!(
            account_and_region("AWSLogs/111111111111/vpcflowlogs/eu-west-1/2024/01/05/x.log.gz"),
            Some(("111111111111", "eu-west-1"))
        );
        assert_eq!(
            account_and_region(
                "p/AWSLogs/aws-account-id=222222222222/aws-service=vpcflowlogs/aws-region=us-east-1/year=2024/x.log.parquet"
            ),
            Some(("222222222222", "us-east-1"))
        );
        assert_eq!(account_and_region("copied/x_vpcflowlogs_y.log.gz"), None);
        assert_eq!(
            account_and_region("AWSLogs/not-an-account/vpcflowlogs/r/x"),
            None
        );
    }

    #[test]
    fn flow_log_keys_are_told_from_other_logs() {
        for key in [
            "AWSLogs/111111111111/vpcflowlogs/eu-west-1/2024/01/05/111111111111_vpcflowlogs_eu-west-1_fl-1_20240105T1000Z_ab.log.gz",
            "flows/AWSLogs/aws-account-id=111111111111/aws-service=vpcflowlogs/aws-region=eu-west-1/year=2024/month=01/day=05/x.log.parquet",
            "copied/111111111111_vpcflowlogs_eu-west-1_fl-1_20240105T1000Z_ab.log.gz",
        ] {
            assert!(is_flow_log_key(key), "{key}");
        }
        for key in [
            "AWSLogs/111111111111/elasticloadbalancing/eu-west-1/2024/01/05/x.log.gz",
            "AWSLogs/111111111111/CloudTrail/eu-west-1/2024/01/05/x.json.gz",
            "vpcflowlogs.log.gz",
        ] {
            assert!(!is_flow_log_key(key), "{key}");
        }
    }

    const EVENT: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
        "eventTime":"2024-01-05T10:05:30.123Z","eventName":"ObjectCreated:Put",
        "s3":{"s3SchemaVersion":"1.0","configurationId":"flow-logs",
        "bucket":{"name":"flow-logs","arn":"arn:aws:s3:::flow-logs"},
        "object":{"key":"AWSLogs/123456789012/vpcflowlogs/us-east-1/2024/01/05/123456789012_vpcflowlogs_us-east-1_fl-1234abcd_20240105T1000Z_ab12cd34.log.gz",
                  "size":1024,"eTag":"d41d8cd98f00b204e9800998ecf8427e","sequencer":"0055AED6DCD90281E5"}}},
        {"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"flow-logs"},"object":{"key":"x"}}}]}"#;

    #[test]
    fn created_objects_with_their_identity() {
        let Notification::Created(objects) = parse(EVENT) else {
            panic!("an S3 event");
        };
        assert_eq!(objects.len(), 1, "removals are not creations");
        let object = &objects[0];
        assert_eq!(object.bucket, "flow-logs");
        assert_eq!(
            object.etag.as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(object.event_time, Some(1_704_449_130));
        assert_eq!(time_in_key(&object.key), Some(1_704_448_800));
        assert!(
            object
                .identity()
                .contains("d41d8cd98f00b204e9800998ecf8427e")
        );
    }

    #[test]
    fn keys_are_url_decoded() {
        assert_eq!(decode_key("a+b%2Fc%3D1.log.gz"), "a b/c=1.log.gz");
        assert_eq!(
            decode_key("AWSLogs/aws-account-id%3D1/x.log.gz"),
            "AWSLogs/aws-account-id=1/x.log.gz"
        );
    }

    #[test]
    fn test_events_sns_wrapping_and_strangers() {
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-01-05T10:00:00.000Z","Bucket":"flow-logs","RequestId":"1","HostId":"2"}"#;
        assert_eq!(parse(test), Notification::Test);
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "1", "Message": EVENT})
            .to_string();
        assert!(matches!(parse(&sns), Notification::Created(objects) if objects.len() == 1));
        assert!(matches!(parse("hello"), Notification::Unrecognized(_)));
        assert!(matches!(parse("{\"a\": 1}"), Notification::Unrecognized(_)));
    }
}

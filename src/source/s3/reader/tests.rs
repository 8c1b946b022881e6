//! The SQS protocol against an in-memory bucket and queue ([`FakeAws`]):
//! what is fetched, counted, deleted or handed back, and in which order.

use std::time::Duration;

use super::*;
use crate::source::s3::fake::{Call, FakeAws};

const BUCKET: &str = "flow-logs";
const KEY: &str = "AWSLogs/111111111111/vpcflowlogs/eu-west-1/2024/01/05/111111111111_vpcflowlogs_eu-west-1_fl-1_20240105T1000Z_abcd.log.gz";

/// An S3 event notification for objects given as (key as S3 encodes it, ETag).
fn event(objects: &[(&str, &str)]) -> String {
    let records: Vec<serde_json::Value> = objects
        .iter()
        .map(|(key, etag)| {
            serde_json::json!({
                "eventName": "ObjectCreated:Put",
                "eventTime": "2024-01-05T10:09:00.000Z",
                "s3": {"bucket": {"name": BUCKET}, "object": {"key": key, "eTag": etag, "size": 10}},
            })
        })
        .collect();
    serde_json::json!({ "Records": records }).to_string()
}

/// Counts the lines of an object; a body starting with `unreadable` fails
/// to be made ready, one starting with `corrupt` fails while counted.
/// Notes its work among the API calls.
struct LineSink {
    aws: FakeAws,
    counted: Vec<String>,
    /// CPU work on the reader's task, as the exporter's sink does.
    busy: Duration,
}

impl LineSink {
    fn new(aws: &FakeAws) -> LineSink {
        LineSink {
            aws: aws.clone(),
            counted: Vec::new(),
            busy: Duration::ZERO,
        }
    }
}

impl ObjectSink for LineSink {
    type Ready = bytes::Bytes;

    fn preparer(&self) -> Preparer<bytes::Bytes> {
        Arc::new(|body: bytes::Bytes| {
            if body.starts_with(b"unreadable") {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "corrupt deflate stream",
                ));
            }
            Ok(body)
        })
    }

    async fn count(&mut self, object: &CreatedObject, body: bytes::Bytes) -> std::io::Result<u64> {
        if !self.busy.is_zero() {
            tokio::task::block_in_place(|| std::thread::sleep(self.busy));
        }
        if body.starts_with(b"corrupt") {
            self.aws.note("corrupt");
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "invalid gzip header",
            ));
        }
        self.aws.note(&format!("counted {}", object.key));
        self.counted.push(object.key.clone());
        Ok(body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count() as u64)
    }

    fn commit(&mut self, _: &Seen) {
        self.aws.note("commit");
    }
}

#[derive(Default)]
struct Outcomes {
    objects: Vec<(String, ObjectOutcome, u64, u64)>,
    messages: Vec<MessageOutcome>,
}

impl ReaderObserver for Outcomes {
    fn object(&mut self, object: &CreatedObject, outcome: ObjectOutcome, bytes: u64, records: u64) {
        self.objects
            .push((object.key.clone(), outcome, bytes, records));
    }

    fn message(&mut self, outcome: MessageOutcome) {
        self.messages.push(outcome);
    }
}

/// A reader over a fake AWS, its sink, and what it reported.
struct Harness {
    aws: FakeAws,
    reader: Reader<FakeAws>,
    sink: LineSink,
    outcomes: Outcomes,
}

impl Harness {
    fn new(aws: &FakeAws) -> Harness {
        Harness {
            aws: aws.clone(),
            reader: Reader::new(aws.clone(), Seen::new(100, 3600)),
            sink: LineSink::new(aws),
            outcomes: Outcomes::default(),
        }
    }

    /// A harness whose reader is `adjust`ed first.
    fn with_reader(
        aws: &FakeAws,
        adjust: impl FnOnce(Reader<FakeAws>) -> Reader<FakeAws>,
    ) -> Harness {
        let mut harness = Harness::new(aws);
        harness.reader = adjust(harness.reader);
        harness
    }

    async fn cycle(&mut self) {
        self.reader
            .cycle(&mut self.sink, &mut self.outcomes, || 1_000)
            .await
            .unwrap();
    }

    /// The calls made since the last time they were taken.
    fn calls(&self) -> Vec<Call> {
        self.aws.take_calls()
    }

    fn object_outcomes(&self) -> Vec<ObjectOutcome> {
        self.outcomes.objects.iter().map(|o| o.1).collect()
    }
}

/// One message notifying [`KEY`] (whose fetch `aws` answers as the test
/// arranged) and one cycle, after which the object is not counted and
/// the message is handed back after `delay` seconds. Returns the harness,
/// for what the test checks beyond that.
async fn handed_back(aws: &FakeAws, delay: i32) -> Harness {
    let receipt = aws.send("m1", &event(&[(KEY, "e1")]));
    let mut reader = Harness::new(aws);
    reader.cycle().await;
    let calls = reader.calls();
    assert_eq!(calls[..2], [Call::Receive, get(KEY)]);
    // At most the sink's failure between the fetch and the hand-back.
    let between = &calls[2..calls.len() - 1];
    assert!(
        between
            .iter()
            .all(|call| *call == Call::Sink("corrupt".into()))
            && between.len() <= 1,
        "neither counted nor committed: {calls:?}"
    );
    assert_eq!(
        calls.last(),
        Some(&Call::Extend(receipt, delay)),
        "handed back, not deleted"
    );
    assert!(reader.sink.counted.is_empty());
    assert_eq!(reader.outcomes.messages, [MessageOutcome::Retry]);
    reader
}

fn get(key: &str) -> Call {
    Call::Get {
        bucket: BUCKET.into(),
        key: key.into(),
    }
}

/// The calls of counting `key` whose message is then deleted: the count,
/// the commit (with `[state]`, the checkpoint) and only then the delete.
fn counted_then_deleted(key: &str, receipt: &str) -> [Call; 3] {
    [
        Call::Sink(format!("counted {key}")),
        Call::Sink("commit".into()),
        Call::Delete(receipt.into()),
    ]
}

/// Calls in order, from groups of them.
fn calls<const N: usize>(groups: [&[Call]; N]) -> Vec<Call> {
    groups.concat()
}

#[tokio::test]
async fn an_object_is_counted_then_committed_then_its_message_deleted() {
    let aws = FakeAws::default();
    aws.put(BUCKET, KEY, b"h\nr1\nr2\n");
    let receipt = aws.send("m1", &event(&[(KEY, "e1")]));
    let mut reader = Harness::new(&aws);
    reader.cycle().await;
    assert_eq!(
        reader.calls(),
        calls([
            &[Call::Receive, get(KEY)],
            &counted_then_deleted(KEY, &receipt)
        ])
    );
    assert_eq!(
        reader.outcomes.objects,
        [(KEY.to_string(), ObjectOutcome::Counted, 8, 3)]
    );
    assert_eq!(reader.outcomes.messages, [MessageOutcome::Deleted]);
}

#[tokio::test]
async fn a_redelivered_message_or_a_second_notification_is_not_counted_again() {
    let aws = FakeAws::default();
    aws.put(BUCKET, KEY, b"r1\n");
    let body = event(&[(KEY, "e1")]);
    let mut reader = Harness::new(&aws);
    aws.send("m1", &body);
    reader.cycle().await;
    reader.calls();
    // The same message again (its delete lost), and S3 notifying the same
    // upload in a message of its own.
    let again = aws.send("m1", &body);
    let second = aws.send("m2", &body);
    reader.cycle().await;
    assert_eq!(
        reader.calls(),
        [Call::Receive, Call::Delete(again), Call::Delete(second)],
        "neither fetched nor committed"
    );
    assert_eq!(reader.sink.counted, [KEY]);
    assert_eq!(
        reader.object_outcomes(),
        [
            ObjectOutcome::Counted,
            ObjectOutcome::Duplicate,
            ObjectOutcome::Duplicate
        ]
    );
    assert_eq!(reader.outcomes.messages, [MessageOutcome::Deleted; 3]);
    // A new revision of the key (another ETag) is another object.
    aws.send("m3", &event(&[(KEY, "e2")]));
    reader.cycle().await;
    assert_eq!(reader.sink.counted, [KEY, KEY]);
}

#[tokio::test]
async fn a_missing_object_is_handed_back_at_once_and_counted_when_it_comes() {
    let aws = FakeAws::default();
    let mut reader = handed_back(&aws, 0).await;
    assert_eq!(
        reader.outcomes.objects,
        [(KEY.to_string(), ObjectOutcome::Missing, 0, 0)]
    );
    // Not remembered as counted: the redelivery reads it.
    aws.put(BUCKET, KEY, b"r1\n");
    let again = aws.send("m1", &event(&[(KEY, "e1")]));
    reader.cycle().await;
    assert_eq!(reader.sink.counted, [KEY]);
    assert_eq!(reader.calls().last(), Some(&Call::Delete(again)));
}

#[tokio::test]
async fn access_denied_is_counted_and_handed_back() {
    let aws = FakeAws::default();
    aws.answer(BUCKET, KEY, Err(ObjectError::Denied("AccessDenied".into())));
    let reader = handed_back(&aws, 0).await;
    assert_eq!(
        reader.outcomes.objects,
        [(KEY.to_string(), ObjectOutcome::Denied, 0, 0)]
    );
}

#[tokio::test]
async fn a_corrupt_object_counts_nothing_and_is_handed_back_for_the_dead_letter_queue() {
    let aws = FakeAws::default();
    aws.put(BUCKET, KEY, b"corrupt\x1f\x8b");
    let mut reader = handed_back(&aws, 0).await;
    assert_eq!(
        reader.outcomes.objects,
        [(KEY.to_string(), ObjectOutcome::Corrupt, 9, 0)]
    );
    // Not remembered: every redelivery fails the same way until the
    // queue's maxReceiveCount moves it to the dead-letter queue.
    aws.send("m1", &event(&[(KEY, "e1")]));
    reader.cycle().await;
    assert_eq!(reader.outcomes.objects[1].1, ObjectOutcome::Corrupt);
    assert_eq!(reader.outcomes.messages, [MessageOutcome::Retry; 2]);
}

#[tokio::test]
async fn a_failed_fetch_comes_back_after_the_retry_delay() {
    let aws = FakeAws::default();
    let throttled = ApiError::Throttled {
        operation: "GetObject",
        message: "SlowDown".into(),
    };
    aws.answer(BUCKET, KEY, Err(ObjectError::Api(throttled)));
    let reader = handed_back(&aws, RETRY_SECONDS).await;
    assert_eq!(reader.object_outcomes(), [ObjectOutcome::Failed]);
}

#[tokio::test]
async fn the_test_event_is_deleted_without_a_fetch() {
    let aws = FakeAws::default();
    let body = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-01-05T10:00:00.000Z","Bucket":"flow-logs","RequestId":"R","HostId":"H"}"#;
    let receipt = aws.send("m1", body);
    let mut reader = Harness::new(&aws);
    reader.cycle().await;
    assert_eq!(reader.calls(), [Call::Receive, Call::Delete(receipt)]);
    assert_eq!(reader.outcomes.messages, [MessageOutcome::TestEvent]);
    assert!(reader.outcomes.objects.is_empty());
}

#[tokio::test]
async fn a_message_that_is_no_s3_event_is_left_for_the_dead_letter_queue() {
    let aws = FakeAws::default();
    aws.send("m1", "hello");
    aws.send("m2", r#"{"Type":"Notification","Message":"{\"hello\":1}"}"#);
    let mut reader = Harness::new(&aws);
    reader.cycle().await;
    assert_eq!(
        reader.calls(),
        [Call::Receive],
        "neither deleted nor hurried"
    );
    assert_eq!(reader.outcomes.messages, [MessageOutcome::Unrecognized; 2]);
}

#[tokio::test]
async fn url_encoded_keys_are_fetched_decoded() {
    let aws = FakeAws::default();
    let decoded = "AWSLogs/111111111111/vpcflowlogs/eu-west-1/2024/01/05/my flows=v1+x.log.gz";
    aws.put(BUCKET, decoded, b"r1\n");
    let encoded = "AWSLogs/111111111111/vpcflowlogs/eu-west-1/2024/01/05/my+flows%3Dv1%2Bx.log.gz";
    let receipt = aws.send("m1", &event(&[(encoded, "e1")]));
    let mut reader = Harness::new(&aws);
    reader.cycle().await;
    assert_eq!(
        reader.calls(),
        calls([
            &[Call::Receive, get(decoded)],
            &counted_then_deleted(decoded, &receipt)
        ])
    );
}

#[tokio::test]
async fn another_services_object_is_not_fetched_and_its_message_deleted() {
    let aws = FakeAws::default();
    let elb = "AWSLogs/111111111111/elasticloadbalancing/eu-west-1/2024/01/05/elb.log.gz";
    let receipt = aws.send("m1", &event(&[(elb, "e1")]));
    let mut reader = Harness::new(&aws);
    reader.cycle().await;
    assert_eq!(reader.calls(), [Call::Receive, Call::Delete(receipt)]);
    assert_eq!(
        reader.outcomes.objects,
        [(elb.to_string(), ObjectOutcome::Ignored, 0, 0)]
    );
}

#[tokio::test]
async fn a_message_with_a_good_and_a_missing_object_counts_the_good_one_once() {
    let aws = FakeAws::default();
    let other = KEY.replace("abcd", "efgh");
    aws.put(BUCKET, KEY, b"r1\n");
    let body = event(&[(KEY, "e1"), (&other, "e2")]);
    let receipt = aws.send("m1", &body);
    let mut reader = Harness::new(&aws);
    reader.cycle().await;
    assert_eq!(
        reader.calls(),
        [
            Call::Receive,
            get(KEY),
            get(&other),
            Call::Sink(format!("counted {KEY}")),
            Call::Sink("commit".into()),
            Call::Extend(receipt, 0),
        ],
        "read ahead; what was counted is kept before the message goes back"
    );
    aws.put(BUCKET, &other, b"r2\n");
    let again = aws.send("m1", &body);
    reader.cycle().await;
    assert_eq!(reader.sink.counted, [KEY.to_string(), other.clone()]);
    assert_eq!(reader.calls().last(), Some(&Call::Delete(again)));
    assert_eq!(
        reader.outcomes.messages,
        [MessageOutcome::Retry, MessageOutcome::Deleted]
    );
}

/// Counting holds the reader's task (as the exporter's sink does in
/// `block_in_place`): the message must stay hidden all the same, or SQS
/// hands it to another reader that counts it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_stays_hidden_while_a_slow_object_is_counted() {
    let aws = FakeAws::default();
    aws.put(BUCKET, KEY, b"r1\n");
    let receipt = aws.send("m1", &event(&[(KEY, "e1")]));
    let mut reader = Harness::with_reader(&aws, |reader| reader.with_visibility(2));
    reader.sink.busy = Duration::from_millis(3500);
    reader.cycle().await;
    let calls = reader.calls();
    let extensions = calls
        .iter()
        .filter(|call| **call == Call::Extend(receipt.clone(), 2))
        .count();
    // Every second (half the timeout) for 3.5 s.
    assert!(extensions >= 2, "{calls:?}");
    let counted = calls
        .iter()
        .position(|call| matches!(call, Call::Sink(what) if what.starts_with("counted")))
        .unwrap();
    assert!(
        calls[..counted]
            .iter()
            .any(|call| matches!(call, Call::Extend(..))),
        "extended while counting: {calls:?}"
    );
    assert_eq!(
        calls.last(),
        Some(&Call::Delete(receipt)),
        "nothing after the delete"
    );
    assert_eq!(reader.outcomes.messages, [MessageOutcome::Deleted]);
}

#[tokio::test]
async fn the_next_objects_download_while_one_is_counted() {
    let aws = FakeAws::default();
    let (first, second) = (KEY.to_string(), KEY.replace("abcd", "efgh"));
    aws.put(BUCKET, &first, b"r1\n");
    aws.put(BUCKET, &second, b"r2\nr3\n");
    let m1 = aws.send("m1", &event(&[(&first, "e1")]));
    let m2 = aws.send("m2", &event(&[(&second, "e2")]));
    let mut reader = Harness::new(&aws);
    reader.cycle().await;
    assert_eq!(
        reader.calls(),
        calls([
            &[Call::Receive, get(&first), get(&second)],
            &counted_then_deleted(&first, &m1),
            &counted_then_deleted(&second, &m2),
        ]),
        "counted in order, each message deleted after its own object"
    );
    assert_eq!(reader.outcomes.messages, [MessageOutcome::Deleted; 2]);
}

#[tokio::test]
async fn without_read_ahead_one_object_is_downloaded_at_a_time() {
    let aws = FakeAws::default();
    let (first, second) = (KEY.to_string(), KEY.replace("abcd", "efgh"));
    aws.put(BUCKET, &first, b"r1\n");
    aws.put(BUCKET, &second, b"r2\n");
    let m1 = aws.send("m1", &event(&[(&first, "e1")]));
    let m2 = aws.send("m2", &event(&[(&second, "e2")]));
    let mut reader = Harness::with_reader(&aws, |reader| reader.with_read_ahead(0));
    reader.cycle().await;
    assert_eq!(
        reader.calls(),
        calls([
            &[Call::Receive, get(&first)],
            &counted_then_deleted(&first, &m1),
            &[get(&second)],
            &counted_then_deleted(&second, &m2),
        ])
    );
}

#[tokio::test]
async fn an_object_notified_twice_in_one_receive_is_downloaded_and_counted_once() {
    let aws = FakeAws::default();
    aws.put(BUCKET, KEY, b"r1\n");
    let body = event(&[(KEY, "e1")]);
    let m1 = aws.send("m1", &body);
    let m2 = aws.send("m2", &body);
    let mut reader = Harness::new(&aws);
    reader.cycle().await;
    assert_eq!(
        reader.calls(),
        calls([
            &[Call::Receive, get(KEY)],
            &counted_then_deleted(KEY, &m1),
            &[Call::Delete(m2)],
        ])
    );
    assert_eq!(
        reader.object_outcomes(),
        [ObjectOutcome::Counted, ObjectOutcome::Duplicate]
    );
}

#[tokio::test]
async fn an_object_notified_again_after_its_read_failed_is_read_again_in_the_same_receive() {
    let aws = FakeAws::default();
    let throttled = ApiError::Throttled {
        operation: "GetObject",
        message: "SlowDown".into(),
    };
    aws.answer(BUCKET, KEY, Err(ObjectError::Api(throttled)));
    let body = event(&[(KEY, "e1")]);
    aws.send("m1", &body);
    aws.send("m2", &body);
    let mut reader = Harness::new(&aws);
    reader.cycle().await;
    let gets = aws
        .take_calls()
        .into_iter()
        .filter(|call| *call == get(KEY))
        .count();
    assert_eq!(
        gets, 2,
        "the second notification is not taken for the first"
    );
    assert_eq!(reader.outcomes.messages, [MessageOutcome::Retry; 2]);
}

#[tokio::test]
async fn an_object_that_cannot_be_made_ready_is_corrupt_and_nothing_of_it_counts() {
    let aws = FakeAws::default();
    aws.put(BUCKET, KEY, b"unreadable\x1f\x8b");
    let reader = handed_back(&aws, 0).await;
    assert_eq!(
        reader.outcomes.objects,
        [(KEY.to_string(), ObjectOutcome::Corrupt, 12, 0)]
    );
}

//! The SQS side of the S3 source: receive notifications, fetch each created
//! object, hand it to an [`ObjectSink`] to count, and delete the message only
//! once every object in it is counted. Generic over the API traits, so the
//! protocol is tested without AWS.
//!
//! * At least once: a message may come again (a delete lost, a visibility
//!   timeout passed), and S3 may notify one upload twice. What was counted
//!   is remembered ([`Seen`]) and never counted again; the message is
//!   deleted.
//! * Nothing lost: an object that cannot be read (missing, access denied,
//!   corrupt) is logged and counted by outcome, and its message is left on
//!   the queue, visible again at once: SQS hands it out again and, after the
//!   queue's `maxReceiveCount`, moves it to the dead-letter queue, where an
//!   operator can redrive it once the cause is fixed. A failed API call
//!   (throttling, 5xx) makes the message visible again after
//!   [`RETRY_SECONDS`] instead.
//! * A large object keeps its message hidden: visibility is extended while
//!   the object is fetched and counted, by a task of its own
//!   ([`KeepHidden`]), since counting is CPU work that holds this task.
//! * Before a message is deleted, the sink is told what is now remembered
//!   ([`ObjectSink::commit`]): with `[state]` it checkpoints there, so a
//!   crash before the delete brings the message back as a duplicate.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::api::{ApiError, ObjectError, ObjectsApi, QueueApi, QueueMessage};
use super::notification::{self, CreatedObject, Notification};
use super::seen::Seen;

/// Messages per `ReceiveMessage` (the SQS maximum).
pub const MAX_MESSAGES: i32 = 10;
/// Long polling: an empty queue costs one call per 20 s.
pub const WAIT_SECONDS: i32 = 20;
/// How long a received message stays hidden unless configured
/// (`[s3] visibility_timeout`); extended every half of it while its objects
/// are being read.
pub const VISIBILITY_SECONDS: i32 = 300;
/// When a message whose object failed on the API comes back.
pub const RETRY_SECONDS: i32 = 30;

/// What became of one notified object (a bounded metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectOutcome {
    Counted,
    /// Counted before: a redelivery or a second notification.
    Duplicate,
    Missing,
    Denied,
    /// Not gzip text, Parquet or JSON that reads to the end.
    Corrupt,
    /// The API failed (throttling, 5xx, network): tried again on redelivery.
    Failed,
    /// Not a flow log's key (another service's logs in the bucket): not
    /// read, and its message deleted.
    Ignored,
}

impl ObjectOutcome {
    pub const ALL: [ObjectOutcome; 7] = [
        ObjectOutcome::Counted,
        ObjectOutcome::Duplicate,
        ObjectOutcome::Missing,
        ObjectOutcome::Denied,
        ObjectOutcome::Corrupt,
        ObjectOutcome::Failed,
        ObjectOutcome::Ignored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ObjectOutcome::Counted => "counted",
            ObjectOutcome::Duplicate => "duplicate",
            ObjectOutcome::Missing => "missing",
            ObjectOutcome::Denied => "denied",
            ObjectOutcome::Corrupt => "corrupt",
            ObjectOutcome::Failed => "error",
            ObjectOutcome::Ignored => "ignored",
        }
    }

    /// Whether the message may be deleted as far as this object goes.
    fn done(self) -> bool {
        matches!(
            self,
            ObjectOutcome::Counted | ObjectOutcome::Duplicate | ObjectOutcome::Ignored
        )
    }
}

/// What became of one SQS message (a bounded metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Every object counted (or counted before): deleted.
    Deleted,
    /// `s3:TestEvent`: deleted.
    TestEvent,
    /// Not an S3 event: left for the dead-letter queue.
    Unrecognized,
    /// An object could not be read: left for redelivery.
    Retry,
    /// Counted, but `DeleteMessage` failed: it will come back as a duplicate.
    DeleteFailed,
}

impl MessageOutcome {
    pub const ALL: [MessageOutcome; 5] = [
        MessageOutcome::Deleted,
        MessageOutcome::TestEvent,
        MessageOutcome::Unrecognized,
        MessageOutcome::Retry,
        MessageOutcome::DeleteFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageOutcome::Deleted => "deleted",
            MessageOutcome::TestEvent => "test_event",
            MessageOutcome::Unrecognized => "unrecognized",
            MessageOutcome::Retry => "retry",
            MessageOutcome::DeleteFailed => "delete_failed",
        }
    }
}

/// Counts one object's records; an error means nothing of it was counted
/// (the sink checks the whole object reads before it counts any of it).
pub trait ObjectSink {
    /// Returns how many records the object held.
    fn count(
        &mut self,
        object: &CreatedObject,
        body: bytes::Bytes,
    ) -> impl Future<Output = Result<u64, std::io::Error>> + Send;

    /// Called after objects of a message were counted and noted in `seen`,
    /// before the message is deleted: what was counted must be kept (and
    /// may be published) now.
    fn commit(&mut self, seen: &Seen);
}

/// Told what happened, for metrics.
pub trait ReaderObserver {
    fn object(&mut self, object: &CreatedObject, outcome: ObjectOutcome, bytes: u64, records: u64);
    fn message(&mut self, outcome: MessageOutcome);
}

/// Reads the queue; remembers what it counted.
pub struct Reader<A> {
    /// Shared with the task that keeps a message hidden while it is read.
    api: Arc<A>,
    seen: Seen,
    visibility_seconds: i32,
}

/// One receive and what came of it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cycle {
    pub messages: usize,
}

impl<A: ObjectsApi + QueueApi + Send + Sync + 'static> Reader<A> {
    pub fn new(api: A, seen: Seen) -> Reader<A> {
        Reader {
            api: Arc::new(api),
            seen,
            visibility_seconds: VISIBILITY_SECONDS,
        }
    }

    /// Hides received messages for `seconds` (at least 2) instead of
    /// [`VISIBILITY_SECONDS`].
    pub fn with_visibility(mut self, seconds: i32) -> Reader<A> {
        self.visibility_seconds = seconds.max(2);
        self
    }

    pub fn seen(&self) -> &Seen {
        &self.seen
    }

    /// One `ReceiveMessage` (long polling) and every message it brought.
    pub async fn cycle(
        &mut self,
        sink: &mut impl ObjectSink,
        observer: &mut impl ReaderObserver,
        now: impl Fn() -> u64,
    ) -> Result<Cycle, ApiError> {
        let messages = self
            .api
            .receive(MAX_MESSAGES, WAIT_SECONDS, self.visibility_seconds)
            .await?;
        for message in &messages {
            let outcome = self.handle(message, sink, observer, &now).await;
            observer.message(outcome);
        }
        Ok(Cycle {
            messages: messages.len(),
        })
    }

    async fn handle(
        &mut self,
        message: &QueueMessage,
        sink: &mut impl ObjectSink,
        observer: &mut impl ReaderObserver,
        now: &impl Fn() -> u64,
    ) -> MessageOutcome {
        let objects = match notification::parse(&message.body) {
            Notification::Test => return self.delete(message, MessageOutcome::TestEvent).await,
            Notification::Unrecognized(why) => {
                tracing::warn!(message_id = %message.message_id, receive_count = message.receive_count, why,
                    "Not an S3 event notification; left on the queue for its dead-letter queue");
                return MessageOutcome::Unrecognized;
            }
            Notification::Created(objects) => objects,
        };
        let mut all_done = true;
        let mut transient = false;
        let mut counted = false;
        for object in &objects {
            if !notification::is_flow_log_key(&object.key) {
                tracing::debug!(bucket = %object.bucket, key = %object.key, "Not a flow log object; ignored");
                observer.object(object, ObjectOutcome::Ignored, 0, 0);
                continue;
            }
            let identity = object.identity();
            if self.seen.contains(&identity) {
                tracing::debug!(bucket = %object.bucket, key = %object.key, "Counted before; not again");
                observer.object(object, ObjectOutcome::Duplicate, 0, 0);
                continue;
            }
            let (outcome, bytes, records) = self.read_object(message, object, sink).await;
            if outcome == ObjectOutcome::Counted {
                self.seen.insert(&identity, now());
                counted = true;
            }
            observer.object(object, outcome, bytes, records);
            all_done &= outcome.done();
            transient |= outcome == ObjectOutcome::Failed;
        }
        if counted {
            sink.commit(&self.seen);
        }
        if all_done {
            return self.delete(message, MessageOutcome::Deleted).await;
        }
        // Waiting out the visibility timeout will not mend a corrupt or
        // missing object: on to the next receive (and the dead-letter queue).
        let visible_in = if transient { RETRY_SECONDS } else { 0 };
        if let Err(error) = self
            .api
            .extend_visibility(&message.receipt_handle, visible_in)
            .await
        {
            tracing::warn!(message_id = %message.message_id, %error,
                "Could not make the message visible again; it comes back after its visibility timeout");
        }
        MessageOutcome::Retry
    }

    /// Fetches and counts one object while keeping its message hidden.
    async fn read_object(
        &self,
        message: &QueueMessage,
        object: &CreatedObject,
        sink: &mut impl ObjectSink,
    ) -> (ObjectOutcome, u64, u64) {
        let keeper = KeepHidden::start(
            self.api.clone(),
            &message.receipt_handle,
            &object.key,
            self.visibility_seconds,
        );
        let (result, bytes) = match self.api.get_object(&object.bucket, &object.key).await {
            Ok(body) => {
                let bytes = body.len() as u64;
                (Ok(sink.count(object, body).await), bytes)
            }
            Err(error) => (Err(error), 0),
        };
        keeper.stop().await;
        let (bucket, key) = (&object.bucket, &object.key);
        match result {
            Ok(Ok(records)) => {
                tracing::debug!(%bucket, %key, bytes, records, "Counted an object");
                (ObjectOutcome::Counted, bytes, records)
            }
            Ok(Err(error)) => {
                tracing::error!(%bucket, %key, bytes, %error,
                    "Object is not readable flow-log data (corrupt gzip or Parquet?): nothing of it counted; left for the dead-letter queue");
                (ObjectOutcome::Corrupt, bytes, 0)
            }
            Err(ObjectError::Missing) => {
                tracing::warn!(%bucket, %key, "Notified object does not exist (deleted, or a lifecycle rule?); left for redelivery");
                (ObjectOutcome::Missing, 0, 0)
            }
            Err(ObjectError::Denied(error)) => {
                tracing::error!(%bucket, %key, %error,
                    "Access denied reading the object: the role needs s3:GetObject on the flow-log prefix (and kms:Decrypt for SSE-KMS)");
                (ObjectOutcome::Denied, 0, 0)
            }
            Err(ObjectError::Api(error)) => {
                tracing::warn!(%bucket, %key, %error, "Fetching the object failed; left for redelivery");
                (ObjectOutcome::Failed, 0, 0)
            }
        }
    }

    async fn delete(&self, message: &QueueMessage, outcome: MessageOutcome) -> MessageOutcome {
        match self.api.delete(&message.receipt_handle).await {
            Ok(()) => outcome,
            Err(error) => {
                tracing::warn!(message_id = %message.message_id, %error,
                    "Deleting a handled message failed; it will come again and be taken as a duplicate");
                MessageOutcome::DeleteFailed
            }
        }
    }
}

/// Keeps a message hidden while its object is fetched and counted: a task
/// of its own extends the visibility every half of it. The sink counts on
/// the reader's task and holds it (CPU work in `block_in_place`), so a timer
/// on the reader's task would not fire until the object was counted, and
/// SQS would hand the message to another reader meanwhile.
struct KeepHidden {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl KeepHidden {
    fn start<A: QueueApi + Send + Sync + 'static>(
        api: Arc<A>,
        receipt_handle: &str,
        key: &str,
        seconds: i32,
    ) -> KeepHidden {
        let (stop, mut stopped) = oneshot::channel();
        let (receipt_handle, key) = (receipt_handle.to_string(), key.to_string());
        let every = Duration::from_secs(u64::try_from(seconds / 2).unwrap_or(1).max(1));
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    // Stopped, or the reader's future dropped (shutdown).
                    _ = &mut stopped => return,
                    _ = ticks.tick() => {}
                }
                // Outside the select: a stop waits for a call under way, so
                // no extension lands after the message was deleted or
                // handed back.
                if let Err(error) = api.extend_visibility(&receipt_handle, seconds).await {
                    tracing::warn!(%error, %key, "Could not extend the message's visibility; it may be read twice (and counted once)");
                }
            }
        });
        KeepHidden { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "The task that kept a message hidden failed");
        }
    }
}

#[cfg(test)]
mod tests;

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
//! * A large object keeps its message hidden: visibility is extended from
//!   the receive until the message is deleted or handed back, by a task of
//!   its own ([`KeepHidden`]), since counting is CPU work that holds this
//!   task.
//! * Objects are read ahead ([`ReadAhead`]): while one object is counted,
//!   the next few (`[s3] read_ahead`) are downloaded and made ready to
//!   count ([`ObjectSink::prepare`]: decompressed and checked) on other
//!   threads. Each object is downloaded once; counting stays in order, one
//!   object at a time, and what was counted meanwhile is looked up again
//!   before an object read ahead is counted.
//! * Before a message is deleted, the sink is told what is now remembered
//!   ([`ObjectSink::commit`]): with `[state]` it checkpoints there, so a
//!   crash before the delete brings the message back as a duplicate.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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
/// Objects downloaded and made ready ahead of the one being counted,
/// unless configured (`[s3] read_ahead`).
pub const READ_AHEAD: usize = 2;

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

/// Counts objects' records. An object is first made ready
/// ([`ObjectSink::preparer`]): decompressed and checked to read to its end,
/// on another thread, before any of it is counted; an error there means
/// the object is corrupt and nothing of it is counted.
pub trait ObjectSink {
    /// An object ready to count.
    type Ready: Send + 'static;

    /// What makes a downloaded object ready: CPU work, run on a blocking
    /// thread for objects ahead of the one being counted. Counts nothing.
    fn preparer(&self) -> Preparer<Self::Ready>;

    /// Counts a ready object; returns how many records it held. An error
    /// means nothing of it was counted.
    fn count(
        &mut self,
        object: &CreatedObject,
        ready: Self::Ready,
    ) -> impl Future<Output = Result<u64, io::Error>> + Send;

    /// Called after objects of a message were counted and noted in `seen`,
    /// before the message is deleted: what was counted must be kept (and
    /// may be published) now.
    fn commit(&mut self, seen: &Seen);
}

/// Makes a downloaded object ready to count, or says why it does not read.
pub type Preparer<R> = Arc<dyn Fn(bytes::Bytes) -> io::Result<R> + Send + Sync>;

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
    read_ahead: usize,
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
            read_ahead: READ_AHEAD,
        }
    }

    /// Reads `objects` ahead of the one being counted instead of
    /// [`READ_AHEAD`] (0: one object at a time).
    pub fn with_read_ahead(mut self, objects: usize) -> Reader<A> {
        self.read_ahead = objects;
        self
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
    pub async fn cycle<S: ObjectSink>(
        &mut self,
        sink: &mut S,
        observer: &mut impl ReaderObserver,
        now: impl Fn() -> u64,
    ) -> Result<Cycle, ApiError> {
        let messages = self
            .api
            .receive(MAX_MESSAGES, WAIT_SECONDS, self.visibility_seconds)
            .await?;
        let notifications: Vec<Notification> = messages
            .iter()
            .map(|message| notification::parse(&message.body))
            .collect();
        // Every object to read, in the order they are counted, read once
        // however often they are notified.
        let mut ahead = ReadAhead::new(self.api.clone(), sink.preparer(), self.read_ahead);
        let mut planned = HashSet::new();
        for notification in &notifications {
            if let Notification::Created(objects) = notification {
                for object in objects {
                    let identity = object.identity();
                    if notification::is_flow_log_key(&object.key)
                        && !self.seen.contains(&identity)
                        && planned.insert(identity)
                    {
                        ahead.plan(object.clone());
                    }
                }
            }
        }
        // Hidden from the receive on: a message waits while those before
        // it are counted.
        let mut keepers: Vec<Option<KeepHidden>> = messages
            .iter()
            .zip(&notifications)
            .map(|(message, notification)| {
                matches!(notification, Notification::Created(_)).then(|| {
                    KeepHidden::start(
                        self.api.clone(),
                        &message.receipt_handle,
                        &message.message_id,
                        self.visibility_seconds,
                    )
                })
            })
            .collect();
        for ((message, notification), keeper) in
            messages.iter().zip(notifications).zip(&mut keepers)
        {
            let outcome = self
                .handle(
                    message,
                    notification,
                    keeper.take(),
                    &mut ahead,
                    sink,
                    observer,
                    &now,
                )
                .await;
            observer.message(outcome);
        }
        Ok(Cycle {
            messages: messages.len(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn handle<S: ObjectSink>(
        &mut self,
        message: &QueueMessage,
        notification: Notification,
        keeper: Option<KeepHidden>,
        ahead: &mut ReadAhead<A, S::Ready>,
        sink: &mut S,
        observer: &mut impl ReaderObserver,
        now: &impl Fn() -> u64,
    ) -> MessageOutcome {
        let objects = match notification {
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
                ahead.skip(&identity);
                observer.object(object, ObjectOutcome::Duplicate, 0, 0);
                continue;
            }
            let fetched = ahead.take(object).await;
            let (outcome, bytes, records) = Self::count_object(object, fetched, sink).await;
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
        // No extension may land after the delete or the hand-back.
        if let Some(keeper) = keeper {
            keeper.stop().await;
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

    /// Counts one downloaded object, or tells why it was not.
    async fn count_object<S: ObjectSink>(
        object: &CreatedObject,
        fetched: Fetched<S::Ready>,
        sink: &mut S,
    ) -> (ObjectOutcome, u64, u64) {
        let (result, bytes) = match fetched {
            Ok((bytes, Ok(ready))) => (Ok(sink.count(object, ready).await), bytes),
            Ok((bytes, Err(error))) => (Ok(Err(error)), bytes),
            Err(error) => (Err(error), 0),
        };
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

/// Keeps a message hidden while its objects are fetched and counted: a
/// task of its own extends the visibility every half of it. The sink counts on
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
        message_id: &str,
        seconds: i32,
    ) -> KeepHidden {
        let (stop, mut stopped) = oneshot::channel();
        let (receipt_handle, message_id) = (receipt_handle.to_string(), message_id.to_string());
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
                    tracing::warn!(%error, %message_id, "Could not extend the message's visibility; it may be read twice (and counted once)");
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

/// A downloaded object's size and the object made ready, or why it could
/// not be downloaded.
type Fetched<R> = Result<(u64, io::Result<R>), ObjectError>;

/// The objects of one receive, downloaded and made ready ahead of counting:
/// at most `depth` besides the one being counted, in the order they will be
/// counted (which is the order they were planned in).
struct ReadAhead<A, R> {
    api: Arc<A>,
    preparer: Preparer<R>,
    depth: usize,
    /// Planned, not yet started.
    waiting: VecDeque<CreatedObject>,
    /// Started, by identity, oldest first.
    started: VecDeque<(String, Fetch<R>)>,
}

impl<A: ObjectsApi + Send + Sync + 'static, R: Send + 'static> ReadAhead<A, R> {
    fn new(api: Arc<A>, preparer: Preparer<R>, depth: usize) -> ReadAhead<A, R> {
        ReadAhead {
            api,
            preparer,
            depth,
            waiting: VecDeque::new(),
            started: VecDeque::new(),
        }
    }

    fn plan(&mut self, object: CreatedObject) {
        self.waiting.push_back(object);
        self.fill();
    }

    /// The object, downloaded and made ready: read ahead when it was the
    /// next planned, else now (notified again after its first read failed).
    async fn take(&mut self, object: &CreatedObject) -> Fetched<R> {
        let identity = object.identity();
        let fetch = match self.next(&identity) {
            Some(fetch) => fetch,
            None => self.start(object.clone()),
        };
        // The next ones download while this one is counted.
        self.fill();
        fetch.finish().await
    }

    /// The object was counted meanwhile: its read ahead is dropped.
    fn skip(&mut self, identity: &str) {
        drop(self.next(identity));
        self.fill();
    }

    /// The next planned object's fetch, if it is `identity`.
    fn next(&mut self, identity: &str) -> Option<Fetch<R>> {
        if self
            .started
            .front()
            .is_some_and(|(next, _)| next == identity)
        {
            return self.started.pop_front().map(|(_, fetch)| fetch);
        }
        if self.started.is_empty()
            && self
                .waiting
                .front()
                .is_some_and(|next| next.identity() == identity)
        {
            let object = self.waiting.pop_front()?;
            return Some(self.start(object));
        }
        None
    }

    fn fill(&mut self) {
        while self.started.len() < self.depth {
            let Some(object) = self.waiting.pop_front() else {
                return;
            };
            let fetch = self.start(object.clone());
            self.started.push_back((object.identity(), fetch));
        }
    }

    fn start(&self, object: CreatedObject) -> Fetch<R> {
        let (api, preparer) = (self.api.clone(), self.preparer.clone());
        Fetch(tokio::spawn(async move {
            let body = api.get_object(&object.bucket, &object.key).await?;
            let bytes = body.len() as u64;
            let ready = tokio::task::spawn_blocking(move || preparer(body))
                .await
                .unwrap_or_else(|failed| std::panic::resume_unwind(failed.into_panic()));
            Ok((bytes, ready))
        }))
    }
}

/// One object's download and preparation; dropped unfinished (a skip, the
/// reader stopped), the download is cancelled.
struct Fetch<R>(JoinHandle<Fetched<R>>);

impl<R> Fetch<R> {
    async fn finish(mut self) -> Fetched<R> {
        (&mut self.0)
            .await
            .unwrap_or_else(|failed| std::panic::resume_unwind(failed.into_panic()))
    }
}

impl<R> Drop for Fetch<R> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests;

//! An in-memory S3 bucket and SQS queue for the reader's unit tests:
//! objects (or the error fetching one gives), a queue that hands out what
//! was sent to it, and a record of every call, in order, with what the
//! sink notes in between.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::api::{ApiError, ListPage, ObjectError, ObjectsApi, QueueApi, QueueMessage};

/// One call, as the reader made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Receive,
    Get {
        bucket: String,
        key: String,
    },
    Delete(String),
    /// Receipt handle, seconds.
    Extend(String, i32),
    /// Noted by a test's sink, to order its work among the calls.
    Sink(String),
}

#[derive(Default)]
struct State {
    objects: HashMap<(String, String), Result<bytes::Bytes, ObjectError>>,
    queue: VecDeque<QueueMessage>,
    calls: Vec<Call>,
    sent: u64,
}

/// Clones share one bucket and queue, so a test keeps a handle while the
/// reader owns another.
#[derive(Clone, Default)]
pub struct FakeAws {
    state: Arc<Mutex<State>>,
}

impl FakeAws {
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        self.answer(bucket, key, Ok(bytes::Bytes::copy_from_slice(body)));
    }

    /// What fetching `bucket`/`key` gives.
    pub fn answer(&self, bucket: &str, key: &str, answer: Result<bytes::Bytes, ObjectError>) {
        let mut state = self.state.lock().unwrap();
        state
            .objects
            .insert((bucket.to_string(), key.to_string()), answer);
    }

    /// Queues a message; each delivery gets a receipt handle of its own,
    /// as SQS gives a redelivered message a new one.
    pub fn send(&self, message_id: &str, body: &str) -> String {
        let mut state = self.state.lock().unwrap();
        state.sent += 1;
        let receipt_handle = format!("{message_id}#{}", state.sent);
        state.queue.push_back(QueueMessage {
            message_id: message_id.to_string(),
            receipt_handle: receipt_handle.clone(),
            body: body.to_string(),
            receive_count: Some(1),
        });
        receipt_handle
    }

    pub fn note(&self, what: &str) {
        self.state
            .lock()
            .unwrap()
            .calls
            .push(Call::Sink(what.into()));
    }

    /// Every call so far; forgets them.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state.lock().unwrap().calls)
    }
}

impl ObjectsApi for FakeAws {
    async fn get_object(&self, bucket: &str, key: &str) -> Result<bytes::Bytes, ObjectError> {
        let mut state = self.state.lock().unwrap();
        state.calls.push(Call::Get {
            bucket: bucket.into(),
            key: key.into(),
        });
        state
            .objects
            .get(&(bucket.to_string(), key.to_string()))
            .cloned()
            .unwrap_or(Err(ObjectError::Missing))
    }

    async fn list_objects(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
        _: Option<&str>,
    ) -> Result<ListPage, ApiError> {
        Ok(ListPage::default())
    }
}

impl QueueApi for FakeAws {
    async fn receive(&self, max: i32, _: i32, _: i32) -> Result<Vec<QueueMessage>, ApiError> {
        let mut state = self.state.lock().unwrap();
        state.calls.push(Call::Receive);
        let take = usize::try_from(max).unwrap_or(0).min(state.queue.len());
        Ok(state.queue.drain(..take).collect())
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), ApiError> {
        let mut state = self.state.lock().unwrap();
        state.calls.push(Call::Delete(receipt_handle.into()));
        Ok(())
    }

    async fn extend_visibility(&self, receipt_handle: &str, seconds: i32) -> Result<(), ApiError> {
        let mut state = self.state.lock().unwrap();
        state
            .calls
            .push(Call::Extend(receipt_handle.into(), seconds));
        Ok(())
    }
}

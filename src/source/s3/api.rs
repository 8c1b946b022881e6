//! The narrow interface to S3 and SQS, in our own types: the reader only
//! needs these calls, so it is generic over [`ObjectsApi`] and
//! [`QueueApi`]; production and the moto tests use [`super::AwsS3Api`].
//! Nothing here depends on the AWS SDK.

use std::future::Future;

pub use crate::source::cloudwatch::{ApiError, ApiObserver};

/// Operation labels (metrics, logs, the IAM policy test).
pub const GET_OBJECT: &str = "GetObject";
pub const LIST_OBJECTS_V2: &str = "ListObjectsV2";
pub const RECEIVE_MESSAGE: &str = "ReceiveMessage";
pub const DELETE_MESSAGE: &str = "DeleteMessage";
pub const CHANGE_MESSAGE_VISIBILITY: &str = "ChangeMessageVisibility";

/// Every operation the S3 source calls, for zero series.
pub const OPERATIONS: &[&str] = &[
    GET_OBJECT,
    LIST_OBJECTS_V2,
    RECEIVE_MESSAGE,
    DELETE_MESSAGE,
    CHANGE_MESSAGE_VISIBILITY,
];

/// One SQS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub message_id: String,
    /// What deleting or extending the message needs.
    pub receipt_handle: String,
    pub body: String,
    /// How often SQS has handed this message out (`ApproximateReceiveCount`).
    pub receive_count: Option<u32>,
}

/// Why an object could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    #[error("no such object")]
    Missing,
    #[error("access denied: {0}")]
    Denied(String),
    #[error(transparent)]
    Api(ApiError),
}

/// One object listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
}

/// One page of `ListObjectsV2`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    /// `CommonPrefixes` when listed with a delimiter.
    pub prefixes: Vec<String>,
    pub continuation: Option<String>,
}

/// What the S3 source needs from S3.
pub trait ObjectsApi {
    /// The whole object (flow log objects are a few MB; Parquet needs its
    /// footer, which comes last).
    fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<bytes::Bytes, ObjectError>> + Send;

    /// One page of keys under `prefix`, split at `delimiter` when given.
    fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<&str>,
    ) -> impl Future<Output = Result<ListPage, ApiError>> + Send;
}

/// What the S3 source needs from SQS.
pub trait QueueApi {
    /// Up to `max` messages, waiting up to `wait_seconds` for one (long
    /// polling), hidden from other readers for `visibility_seconds`.
    fn receive(
        &self,
        max: i32,
        wait_seconds: i32,
        visibility_seconds: i32,
    ) -> impl Future<Output = Result<Vec<QueueMessage>, ApiError>> + Send;

    fn delete(&self, receipt_handle: &str) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// Hides the message for another `seconds` from now.
    fn extend_visibility(
        &self,
        receipt_handle: &str,
        seconds: i32,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}

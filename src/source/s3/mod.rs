//! Flow logs delivered to S3: S3 event notifications arrive on an SQS
//! queue, each created object (gzip text with its header line, or Parquet)
//! is fetched and counted once, and its message deleted only after that.
//! One bucket may hold the flow logs of many accounts and regions
//! (`AWSLogs/<account>/vpcflowlogs/<region>/…`): every object counts; the
//! records name their interfaces.
//!
//! `api` is the narrow interface in our own types, `aws` its SDK
//! implementation, `notification` reads message bodies, `seen` remembers what
//! was counted, `reader` is the SQS protocol, `listing` lists the objects of
//! `analyze s3://bucket/prefix` by date partition.

pub mod api;
#[cfg(feature = "aws")]
pub mod aws;
#[cfg(test)]
mod fake;
pub mod listing;
pub mod notification;
pub mod reader;
pub mod seen;

pub use api::{ObjectError, ObjectsApi, QueueApi, QueueMessage};
#[cfg(feature = "aws")]
pub use aws::AwsS3Api;
pub use notification::{CreatedObject, Notification};
pub use reader::{MessageOutcome, ObjectOutcome, ObjectSink, Preparer, Reader, ReaderObserver};
pub use seen::Seen;

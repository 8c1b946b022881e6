//! [`ObjectsApi`] and [`QueueApi`] over the real `aws-sdk-s3` and
//! `aws-sdk-sqs` clients: the SDK config of `source::aws_clients`
//! (credential chain, region and endpoint URL as configured, retries with
//! backoff) with this source's timeouts, path-style addressing with a
//! custom endpoint (as moto and LocalStack need), every call reported to an
//! [`ApiObserver`] with its final outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_sqs::types::MessageSystemAttributeName;

use super::api::{
    ApiError, ApiObserver, CHANGE_MESSAGE_VISIBILITY, DELETE_MESSAGE, GET_OBJECT, LIST_OBJECTS_V2,
    ListPage, ListedObject, ObjectError, ObjectsApi, QueueApi, QueueMessage, RECEIVE_MESSAGE,
};
use crate::source::aws_clients::{CallTimeouts, sdk_loader};
use crate::source::cloudwatch::retry::from_sdk_error;

/// Long polling holds `ReceiveMessage` up to 20 s, and a large object takes
/// a while to download: long attempts.
const TIMEOUTS: CallTimeouts = CallTimeouts {
    attempt: Duration::from_secs(120),
    operation: Duration::from_secs(300),
};

/// S3 and SQS through the AWS SDK; cheap to clone.
#[derive(Clone)]
pub struct AwsS3Api {
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    observer: Arc<dyn ApiObserver>,
}

impl std::fmt::Debug for AwsS3Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The clients' config holds credentials: never print it.
        f.debug_struct("AwsS3Api")
            .field("queue_url", &self.queue_url)
            .finish_non_exhaustive()
    }
}

impl AwsS3Api {
    /// `queue_url` may be empty when only S3 is used (`analyze s3://`).
    pub async fn new(
        region: Option<String>,
        endpoint_url: Option<String>,
        queue_url: String,
        observer: Arc<dyn ApiObserver>,
    ) -> AwsS3Api {
        let custom_endpoint = endpoint_url.is_some();
        let config = sdk_loader(region, endpoint_url, TIMEOUTS).load().await;
        let s3_config = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(custom_endpoint)
            .build();
        AwsS3Api {
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            sqs: aws_sdk_sqs::Client::new(&config),
            queue_url,
            observer,
        }
    }

    fn observe<T, E>(&self, operation: &'static str, started: Instant, result: &Result<T, E>)
    where
        E: Outcome,
    {
        let outcome = match result {
            Ok(_) => "success",
            Err(error) => error.outcome(),
        };
        self.observer
            .api_call(operation, outcome, started.elapsed().as_secs_f64());
    }
}

/// The bounded outcome label of a failed call.
trait Outcome {
    fn outcome(&self) -> &'static str;
}

impl Outcome for ApiError {
    fn outcome(&self) -> &'static str {
        self.metric_label()
    }
}

impl Outcome for ObjectError {
    fn outcome(&self) -> &'static str {
        match self {
            ObjectError::Api(error) => error.metric_label(),
            ObjectError::Missing | ObjectError::Denied(_) => "error",
        }
    }
}

impl ObjectsApi for AwsS3Api {
    async fn get_object(&self, bucket: &str, key: &str) -> Result<bytes::Bytes, ObjectError> {
        let started = Instant::now();
        let result = async {
            let output = self
                .s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|error| {
                    let status = error.raw_response().map(|raw| raw.status().as_u16());
                    let code = error
                        .as_service_error()
                        .and_then(ProvideErrorMetadata::code);
                    match error.as_service_error() {
                        Some(GetObjectError::NoSuchKey(_)) => ObjectError::Missing,
                        _ if status == Some(404) || code == Some("NoSuchKey") => {
                            ObjectError::Missing
                        }
                        _ if status == Some(403) || code == Some("AccessDenied") => {
                            ObjectError::Denied(DisplayErrorContext(&error).to_string())
                        }
                        _ => ObjectError::Api(from_sdk_error(GET_OBJECT, &error)),
                    }
                })?;
            let body = output.body.collect().await.map_err(|error| {
                ObjectError::Api(ApiError::Retriable {
                    operation: GET_OBJECT,
                    message: format!("reading the body: {error}"),
                })
            })?;
            Ok(body.into_bytes())
        }
        .await;
        self.observe(GET_OBJECT, started, &result);
        result
    }

    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<&str>,
    ) -> Result<ListPage, ApiError> {
        let started = Instant::now();
        let result = self
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_string))
            .set_continuation_token(continuation.map(str::to_string))
            .send()
            .await
            .map_err(|error| from_sdk_error(LIST_OBJECTS_V2, &error));
        self.observe(LIST_OBJECTS_V2, started, &result);
        let output = result?;
        Ok(ListPage {
            objects: output
                .contents()
                .iter()
                .filter_map(|object| {
                    Some(ListedObject {
                        key: object.key()?.to_string(),
                        size: object.size().and_then(|size| u64::try_from(size).ok())?,
                    })
                })
                .collect(),
            prefixes: output
                .common_prefixes()
                .iter()
                .filter_map(|prefix| prefix.prefix().map(str::to_string))
                .collect(),
            continuation: output
                .next_continuation_token()
                .filter(|token| !token.is_empty())
                .map(str::to_string),
        })
    }
}

impl QueueApi for AwsS3Api {
    async fn receive(
        &self,
        max: i32,
        wait_seconds: i32,
        visibility_seconds: i32,
    ) -> Result<Vec<QueueMessage>, ApiError> {
        let started = Instant::now();
        let result = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait_seconds)
            .visibility_timeout(visibility_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|error| from_sdk_error(RECEIVE_MESSAGE, &error));
        self.observe(RECEIVE_MESSAGE, started, &result);
        Ok(result?
            .messages()
            .iter()
            .filter_map(|message| {
                Some(QueueMessage {
                    message_id: message.message_id()?.to_string(),
                    receipt_handle: message.receipt_handle()?.to_string(),
                    body: message.body().unwrap_or_default().to_string(),
                    receive_count: message
                        .attributes()
                        .and_then(|attributes| {
                            attributes.get(&MessageSystemAttributeName::ApproximateReceiveCount)
                        })
                        .and_then(|count| count.parse().ok()),
                })
            })
            .collect())
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), ApiError> {
        let started = Instant::now();
        let result = self
            .sqs
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map(|_| ())
            .map_err(|error| from_sdk_error(DELETE_MESSAGE, &error));
        self.observe(DELETE_MESSAGE, started, &result);
        result
    }

    async fn extend_visibility(&self, receipt_handle: &str, seconds: i32) -> Result<(), ApiError> {
        let started = Instant::now();
        let result = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map(|_| ())
            .map_err(|error| from_sdk_error(CHANGE_MESSAGE_VISIBILITY, &error));
        self.observe(CHANGE_MESSAGE_VISIBILITY, started, &result);
        result
    }
}

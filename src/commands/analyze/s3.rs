//! `analyze s3://bucket/prefix`: the objects under each URL, listed by
//! the date partitions the time filters need and read as files are.

use std::io::{self, IsTerminal};
use std::sync::Arc;

use crate::flow::Summary;
use crate::input;
use crate::source::cloudwatch::{ApiError, NoopObserver};
use crate::source::s3::listing::{self, S3Url};
use crate::source::s3::{AwsS3Api, ObjectError, ObjectsApi};

use super::{AnalyzeRequest, byte_bar};

/// Where `analyze s3://bucket/prefix` reads.
#[derive(Debug, Clone)]
pub struct S3Location {
    pub urls: Vec<S3Url>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

/// Why `analyze s3://…` stopped.
#[derive(Debug, thiserror::Error)]
pub enum S3AnalyzeError {
    #[error("listing s3://{bucket}/{prefix}: {source}")]
    List {
        bucket: String,
        prefix: String,
        #[source]
        source: ApiError,
    },
    #[error("s3://{bucket}/{key}: {source}")]
    Get {
        bucket: String,
        key: String,
        #[source]
        source: ObjectError,
    },
    #[error("s3://{bucket}/{key}: {source}")]
    Read {
        bucket: String,
        key: String,
        #[source]
        source: io::Error,
    },
}

/// Lists the objects under each URL (only the date partitions the time
/// filters need) and reads them one after another, as `analyze` reads files.
pub async fn analyze_s3(
    request: &AnalyzeRequest,
    location: &S3Location,
) -> Result<Summary, S3AnalyzeError> {
    let api = AwsS3Api::new(
        location.region.clone(),
        location.endpoint_url.clone(),
        String::new(),
        Arc::new(NoopObserver),
    )
    .await;
    let filter = &request.report.filter;
    let mut listed = Vec::new();
    for url in &location.urls {
        let (objects, calls) = listing::list(&api, url, filter.since, filter.until)
            .await
            .map_err(|source| S3AnalyzeError::List {
                bucket: url.bucket.clone(),
                prefix: url.prefix.clone(),
                source,
            })?;
        tracing::debug!(bucket = %url.bucket, prefix = %url.prefix, objects = objects.len(), calls, "Listed");
        listed.extend(
            objects
                .into_iter()
                .map(|object| (url.bucket.clone(), object)),
        );
    }
    let (mut pipeline, mut summary) = request.report.start();
    let total: u64 = listed.iter().map(|(_, object)| object.size).sum();
    let bar = (io::stderr().is_terminal() && total >= 16 << 20).then(|| byte_bar(total));
    for (bucket, object) in &listed {
        let body = api
            .get_object(bucket, &object.key)
            .await
            .map_err(|source| S3AnalyzeError::Get {
                bucket: bucket.clone(),
                key: object.key.clone(),
                source,
            })?;
        input::feed_reader(
            &body[..],
            &input::Origin::default(),
            request.input_format,
            &mut pipeline,
            &mut summary,
        )
        .map_err(|source| S3AnalyzeError::Read {
            bucket: bucket.clone(),
            key: object.key.clone(),
            source,
        })?;
        if let Some(bar) = &bar {
            bar.inc(object.size);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(request.report.finish(pipeline, summary))
}

//! [`ShardedLogs`]: a [`LogsApi`] that shows a replica only the interface
//! streams its [`Shard`] owns, so the poller, unchanged, lists, reads and
//! names in `FilterLogEvents` only this replica's streams. The `-accept` and
//! `-reject` streams of one interface go to the same replica: the owner is
//! decided by the interface id, never by the stream name.

use super::api::{ApiError, EventsPage, FilterRequest, LogsApi, StreamsPage};
use super::streams::interface_of_stream;
use crate::shard::Shard;

#[derive(Debug, Clone)]
pub struct ShardedLogs<A> {
    inner: A,
    shard: Shard,
}

impl<A> ShardedLogs<A> {
    pub fn new(inner: A, shard: Shard) -> ShardedLogs<A> {
        ShardedLogs { inner, shard }
    }

    pub fn inner(&self) -> &A {
        &self.inner
    }
}

impl<A: LogsApi> LogsApi for ShardedLogs<A> {
    async fn interface_streams_page(
        &self,
        log_group: &str,
        next_token: Option<String>,
    ) -> Result<StreamsPage, ApiError> {
        let mut page = self
            .inner
            .interface_streams_page(log_group, next_token)
            .await?;
        page.names
            .retain(|stream| self.shard.owns(interface_of_stream(stream)));
        Ok(page)
    }

    async fn list_interface_streams(&self, log_group: &str) -> Result<Vec<String>, ApiError> {
        let mut streams = self.inner.list_interface_streams(log_group).await?;
        streams.retain(|stream| self.shard.owns(interface_of_stream(stream)));
        Ok(streams)
    }

    async fn filter_log_events(&self, req: &FilterRequest) -> Result<EventsPage, ApiError> {
        self.inner.filter_log_events(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::cloudwatch::fake::FakeLogs;
    use crate::source::cloudwatch::{Poller, PollerConfig};
    use std::collections::BTreeSet;

    #[tokio::test]
    async fn each_replica_reads_only_its_streams_and_together_they_read_all() {
        let fake = FakeLogs::new(1_000);
        fake.set_now(60_000);
        let mut all = BTreeSet::new();
        for n in 0..250u32 {
            let interface = format!("eni-{n:08x}");
            for suffix in ["-accept", "-reject"] {
                fake.put(&format!("{interface}{suffix}"), 1_000, 2_000);
            }
            all.insert(interface);
        }
        let mut union = BTreeSet::new();
        for index in 0..2 {
            let shard = Shard::new(index, 2).unwrap();
            let mut poller = Poller::new(
                ShardedLogs::new(fake.clone(), shard),
                PollerConfig::new("/vpc/flow-logs"),
                60_000,
            );
            let outcome = poller.poll(60_000).await.unwrap();
            let mine: BTreeSet<String> = outcome
                .events
                .iter()
                .map(|event| interface_of_stream(&event.stream).to_owned())
                .collect();
            assert!(mine.iter().all(|interface| shard.owns(interface)));
            assert_eq!(
                outcome.events.len(),
                2 * mine.len(),
                "both streams of each interface"
            );
            assert!(union.is_disjoint(&mine));
            let calls = fake.take_calls();
            for request in FakeLogs::filter_calls(&calls) {
                assert!(request.stream_names.len() <= 100);
                assert!(
                    request
                        .stream_names
                        .iter()
                        .all(|stream| shard.owns(interface_of_stream(stream))),
                    "replica {index} named another's stream"
                );
            }
            union.extend(mine);
        }
        assert_eq!(union, all);
    }
}

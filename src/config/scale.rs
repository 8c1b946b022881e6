//! `[metrics]` and `[shard]`: the series budget and the replicas that split
//! the interfaces. Kept apart from the source sections, whose rules they
//! do not share.

use serde::Deserialize;

use super::{ConfigError, LogGroupConfig, Origins, Parse, parsed, parsed_list};
use crate::metrics::{DEFAULT_MAX_SERIES_PER_INTERFACE, SeriesBudget, SessionLabel};
use crate::shard::Shard;

/// The value of `shard.index` that takes the index from the pod name.
pub const FROM_HOSTNAME: &str = "from-hostname";

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Labels of `vpcflow_sessions_total` besides `interface_id`.
    #[serde(default = "default_session_labels", deserialize_with = "parsed_list")]
    pub session_labels: Vec<SessionLabel>,
    /// Series of `vpcflow_sessions_total` one interface may have; at least 1.
    #[serde(
        default = "default_max_series_per_interface",
        deserialize_with = "parsed"
    )]
    pub max_series_per_interface: usize,
}

fn default_session_labels() -> Vec<SessionLabel> {
    SessionLabel::ALL.to_vec()
}
fn default_max_series_per_interface() -> usize {
    DEFAULT_MAX_SERIES_PER_INTERFACE
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            session_labels: default_session_labels(),
            max_series_per_interface: default_max_series_per_interface(),
        }
    }
}

impl MetricsConfig {
    pub(super) fn validate(&self, origins: &Origins) -> Result<(), ConfigError> {
        for (i, label) in self.session_labels.iter().enumerate() {
            if let Some(first) = self.session_labels[..i].iter().position(|l| l == label) {
                return Err(origins.error(
                    &format!("metrics.session_labels[{i}]"),
                    format!(
                        "{:?} is already metrics.session_labels[{first}]",
                        label.as_str()
                    ),
                ));
            }
        }
        if self.max_series_per_interface == 0 {
            return Err(origins.error(
                "metrics.max_series_per_interface",
                "must be at least 1 (drop labels with metrics.session_labels to have fewer series)",
            ));
        }
        Ok(())
    }

    /// What the metrics module holds to.
    pub fn budget(&self) -> SeriesBudget {
        let mut session_labels = self.session_labels.clone();
        session_labels.sort();
        SeriesBudget {
            session_labels,
            max_series_per_interface: self.max_series_per_interface,
        }
    }
}

impl Parse for SessionLabel {
    const EXPECTED: &'static str = r#"one of "verdict", "direction", "protocol", "port""#;
    fn parse(text: &str) -> Option<Self> {
        SessionLabel::parse(text)
    }
}

/// Counts and indexes: whole numbers.
impl Parse for usize {
    const EXPECTED: &'static str = "a whole number";
    fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

/// FilterLogEvents allows 5 requests/s per account and region, shared with
/// every other tool there: the default leaves most of it to them.
pub const DEFAULT_MAX_REQUESTS_PER_SECOND: f64 = 2.0;
/// The FilterLogEvents quota per account and region (not raisable).
pub const FILTER_LOG_EVENTS_QUOTA: f64 = 5.0;

pub(super) fn default_max_requests_per_second() -> f64 {
    DEFAULT_MAX_REQUESTS_PER_SECOND
}

pub(super) fn check_max_requests_per_second(
    origins: &Origins,
    value: f64,
) -> Result<(), ConfigError> {
    if value > 0.0 && value <= FILTER_LOG_EVENTS_QUOTA {
        return Ok(());
    }
    Err(origins.error(
        "cloudwatch.max_requests_per_second",
        format!(
            "must be above 0 and at most {FILTER_LOG_EVENTS_QUOTA} (the FilterLogEvents quota per account and region), got {value}"
        ),
    ))
}

/// Rates: numbers, whole or not.
impl Parse for f64 {
    const EXPECTED: &'static str = "a number like 2 or 0.5";
    fn parse(text: &str) -> Option<Self> {
        text.parse().ok().filter(|value: &f64| value.is_finite())
    }
}

/// A role ARN: `arn:<partition>:iam::<12-digit account>:role/<path and name>`.
const ROLE_ARN_EXAMPLE: &str =
    r#"a role ARN like "arn:aws:iam::222222222222:role/vpc-flow-exporter""#;

/// `region`, `role_arn`, `external_id` and `session_name` of one
/// `[[cloudwatch.log_groups]]` entry at `key`.
pub(super) fn check_group_access(
    origins: &Origins,
    key: &str,
    group: &LogGroupConfig,
) -> Result<(), ConfigError> {
    if group.region.as_deref().is_some_and(str::is_empty) {
        return Err(origins.error(
            &format!("{key}.region"),
            "must not be empty (leave it out for cloudwatch.region)",
        ));
    }
    if let Some(role_arn) = &group.role_arn
        && account_of_role(role_arn).is_none()
    {
        return Err(origins.error(
            &format!("{key}.role_arn"),
            format!("expected {ROLE_ARN_EXAMPLE}, got {role_arn:?}"),
        ));
    }
    for (name, value) in [
        ("external_id", &group.external_id),
        ("session_name", &group.session_name),
    ] {
        if value.is_some() && group.role_arn.is_none() {
            return Err(origins.error(
                &format!("{key}.{name}"),
                format!("is used only with {key}.role_arn, which is not set"),
            ));
        }
    }
    if let Some(name) = &group.session_name {
        // STS's rule for RoleSessionName, except its 64-character limit,
        // which STS itself reports (and the exporter logs and retries).
        let allowed = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c);
        if name.len() < 2 || !name.chars().all(allowed) {
            return Err(origins.error(
                &format!("{key}.session_name"),
                format!(
                    "expected at least 2 letters, digits or any of + = , . @ _ -, got {name:?}"
                ),
            ));
        }
    }
    if let Some(external_id) = &group.external_id
        && external_id.len() < 2
    {
        return Err(origins.error(
            &format!("{key}.external_id"),
            "must be at least 2 characters, as STS requires",
        ));
    }
    Ok(())
}

/// The account of a role ARN, or `None` when `arn` is not one.
pub fn account_of_role(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let valid = !partition.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource
            .strip_prefix("role/")
            .is_some_and(|name| !name.is_empty());
    valid.then_some(account)
}

/// `shard.index` as written: a number, or the ordinal of a StatefulSet pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IndexSource {
    Fixed(usize),
    FromHostname,
}

impl Parse for IndexSource {
    const EXPECTED: &'static str = r#"a replica index from 0, or "from-hostname""#;
    fn parse(text: &str) -> Option<Self> {
        if text == FROM_HOSTNAME {
            return Some(IndexSource::FromHostname);
        }
        text.parse().ok().map(IndexSource::Fixed)
    }
}

/// `[shard]` as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShardConfig {
    #[serde(default = "default_index", deserialize_with = "parsed")]
    index: IndexSource,
    #[serde(default = "default_count", deserialize_with = "parsed")]
    count: usize,
}

fn default_index() -> IndexSource {
    IndexSource::Fixed(0)
}
fn default_count() -> usize {
    1
}

impl Default for RawShardConfig {
    fn default() -> Self {
        RawShardConfig {
            index: default_index(),
            count: default_count(),
        }
    }
}

/// `[shard]`: this replica's part of the interfaces, which rendezvous
/// hashing of each interface id gives to exactly one of `count` replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardConfig {
    /// This replica, from 0; below `count`.
    pub index: usize,
    /// Replicas that split the interfaces; at least 1.
    pub count: usize,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig { index: 0, count: 1 }
    }
}

impl ShardConfig {
    pub fn shard(&self) -> Shard {
        Shard::new(self.index, self.count).expect("validated: index below count")
    }
}

impl RawShardConfig {
    /// `hostname`: the `HOSTNAME` variable, which Kubernetes sets to the pod
    /// name (`vpc-flow-exporter-2` for ordinal 2 of a StatefulSet).
    pub(super) fn validate(
        self,
        origins: &Origins,
        hostname: Option<&str>,
    ) -> Result<ShardConfig, ConfigError> {
        if self.count == 0 {
            return Err(origins.error("shard.count", "must be at least 1"));
        }
        let index = match self.index {
            IndexSource::Fixed(index) => index,
            IndexSource::FromHostname => {
                hostname.and_then(ordinal_of).ok_or_else(|| {
                    origins.error(
                        "shard.index",
                        format!(
                            r#""{FROM_HOSTNAME}" needs HOSTNAME set to a StatefulSet pod name ending in -<ordinal> (like "vpc-flow-exporter-2"), got {}"#,
                            hostname.map_or_else(|| "none".to_owned(), |name| format!("{name:?}"))
                        ),
                    )
                })?
            }
        };
        if index >= self.count {
            return Err(origins.error(
                "shard.index",
                format!("must be below shard.count ({}), got {index}", self.count),
            ));
        }
        Ok(ShardConfig {
            index,
            count: self.count,
        })
    }
}

/// The ordinal a StatefulSet gives its pod: the number after the last `-`.
fn ordinal_of(pod_name: &str) -> Option<usize> {
    let (_, ordinal) = pod_name.trim().rsplit_once('-')?;
    if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ordinal.parse().ok()
}

#[cfg(test)]
mod tests;

//! Typed, strict configuration: a TOML file plus environment overrides.
//!
//! The schema is the one in `config.toml` at the repository root, which also
//! documents every key and its default. Loading is strict, as in
//! blackbox_exporter: an unknown key is an error, and every error names
//! where the value came from (the file or the environment variable), the key
//! path and what was expected, e.g.
//!
//! ```text
//! config.toml: correlation.reply_grace: expected a duration like "2m" or "30s", got "two minutes"
//! ```
//!
//! # Environment variables
//!
//! Every key can be set by an environment variable, which wins over the
//! file (ECS task definitions and Kubernetes pods often have only these):
//!
//! * The name is `VPC_FLOW_EXPORTER__` followed by the key path with `__`
//!   between the parts: `VPC_FLOW_EXPORTER__CLOUDWATCH__REGION=eu-west-1`,
//!   `VPC_FLOW_EXPORTER__SERVER__LISTEN_ADDRESS=0.0.0.0:9917`. Names are
//!   case-insensitive; values are taken as written.
//! * Lists (`files.paths`, `correlation.service_ports`, the `interfaces` of a
//!   log group, the `addresses` of an interface) are comma-separated:
//!   `VPC_FLOW_EXPORTER__CORRELATION__SERVICE_PORTS=22,443`. An empty value
//!   is an empty list.
//! * A number as a part indexes a list of tables, so log groups are
//!   `VPC_FLOW_EXPORTER__CLOUDWATCH__LOG_GROUPS__0__NAME=/vpc/flow-logs`,
//!   `..._LOG_GROUPS__0__INTERFACES=eni-0a1b2c3d,eni-4e5f6a7b`,
//!   `..._LOG_GROUPS__1__NAME=…`. The index addresses the file's
//!   `[[cloudwatch.log_groups]]` entries too (`__0__NAME` renames the first
//!   one); entries set only from the environment must be numbered from 0.
//! * Interface tables work the same way
//!   (`VPC_FLOW_EXPORTER__INTERFACES__ENI-0A1B2C3D__NAME=bastion`), but a
//!   POSIX shell cannot export a name with `-`: prefer the file for them
//!   (`env`, Docker and ECS accept such names).
//! * The environment can add keys but not remove a section of the file: it
//!   cannot switch a file's `[files]` source to `[cloudwatch]`.
//!
//! The file is optional when the environment gives everything needed.
//!
//! # Where things are
//!
//! This file holds the schema (the sections, their defaults) and the rules
//! that span keys; `environment` maps variables to key paths;
//! `messages` words every error; `values` parses the values written as
//! strings; `scale` holds `[metrics]` and `[shard]`.

mod environment;
mod messages;
mod scale;
mod values;

pub use messages::ConfigError;
pub(crate) use messages::{join, parse_unknown_field};
pub use scale::{FROM_HOSTNAME, MetricsConfig, ShardConfig, account_of_role};

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::flow::correlate;
use environment::{env_key, env_origin, is_list_key, split_list};
use messages::Origins;
use values::{Parse, parsed, parsed_list};

/// Prefix of the environment variables that set config keys.
pub const ENV_PREFIX: &str = "VPC_FLOW_EXPORTER__";

const DURATION_EXAMPLE: &str = r#"a duration like "2m" or "30s""#;
const ENI_EXAMPLE: &str = r#"an interface id like "eni-0123456789abcdef0""#;

/// The whole, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[server]`: the HTTP endpoint.
    pub server: ServerConfig,
    /// Where flow records come from: `[cloudwatch]` or `[files]`.
    pub source: SourceConfig,
    /// `[interfaces.<eni-id>]`: optional facts about interfaces, by ENI id.
    pub interfaces: BTreeMap<String, InterfaceConfig>,
    /// `[correlation]`: how records are paired into sessions.
    pub correlation: CorrelationConfig,
    /// `[api]`: the decided sessions kept for `/api/v1/sessions`.
    pub api: ApiConfig,
    /// `[metrics]`: the series budget.
    pub metrics: MetricsConfig,
    /// `[shard]`: this replica's part of the interfaces.
    pub shard: ShardConfig,
    /// `[state]`: where checkpoints go; `None`: a restart starts afresh.
    pub state: Option<StateConfig>,
    /// `[ec2]`: interface facts from `DescribeNetworkInterfaces`.
    pub ec2: Ec2Config,
}

/// `[state]`: checkpoints, so that a restart neither loses nor double-counts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// A directory the exporter may write (created when missing); one file
    /// per log group.
    pub directory: PathBuf,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port that serve `/metrics`, `/healthz` and `/ready`.
    #[serde(default = "default_listen_address", deserialize_with = "parsed")]
    pub listen_address: SocketAddr,
    /// The exporter-toolkit web configuration (TLS, basic auth, headers);
    /// `--web.config.file` overrides it. Relative to the working directory.
    #[serde(default)]
    pub web_config_file: Option<PathBuf>,
    /// How long a client may take to send request headers, TLS handshake included.
    #[serde(default = "default_header_read_timeout", deserialize_with = "parsed")]
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    #[serde(default = "default_idle_timeout", deserialize_with = "parsed")]
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl ServerConfig {
    fn validate(&self, origins: &Origins) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(origins.error(
                "server.max_connections",
                "expected at least 1, got 0".to_owned(),
            ));
        }
        for (key, value) in [
            ("server.header_read_timeout", self.header_read_timeout),
            ("server.idle_timeout", self.idle_timeout),
        ] {
            if value < Duration::from_millis(100) {
                return Err(origins.error(
                    key,
                    format!(
                        "expected at least 100ms, got {}",
                        humantime::format_duration(value)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The connection limits of `[server]`.
    pub fn limits(&self) -> crate::web::Limits {
        crate::web::Limits {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
        }
    }
}

/// Where flow records come from: exactly one of `[cloudwatch]`, `[files]` and `[s3]`.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    /// Poll CloudWatch Logs.
    CloudWatch(CloudWatchConfig),
    /// Read (and possibly replay) flow-log files.
    Files(FilesConfig),
    /// Read the objects S3 delivery writes, as SQS announces them.
    S3(S3Config),
}

/// `[s3]`: flow logs delivered to an S3 bucket whose event notifications
/// (`s3:ObjectCreated:*`) go to an SQS queue.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// AWS region of the queue and bucket; `None` lets the AWS default chain decide.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint URL (http or https) instead of AWS's: moto, LocalStack, VPC endpoints.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// The queue the bucket notifies, e.g.
    /// `https://sqs.us-east-1.amazonaws.com/123456789012/flow-logs`.
    #[serde(default)]
    pub queue_url: String,
    /// How long a received message stays hidden from other readers while
    /// its objects are read (extended as long as reading takes); a message
    /// whose delete was lost comes back after this long. 2s to 12h (SQS).
    #[serde(default = "default_visibility_timeout", deserialize_with = "parsed")]
    pub visibility_timeout: Duration,
    /// Objects downloaded and made ready (decompressed, checked) ahead of
    /// the one being counted, on other threads. 0 to 16.
    #[serde(default = "default_read_ahead")]
    pub read_ahead: usize,
    /// MiB of decompressed text the objects read ahead may hold; a text
    /// that does not fit is decompressed again while it is counted.
    #[serde(default = "default_read_ahead_mib")]
    pub read_ahead_mib: usize,
    /// Sessions the wall clock decides and holds at once before they are
    /// checkpointed and published (a scan's, all due together), as
    /// `[cloudwatch] max_held_events` does for a poll's.
    #[serde(default = "default_max_held_events", deserialize_with = "parsed")]
    pub max_held_events: usize,
}

fn default_visibility_timeout() -> Duration {
    Duration::from_secs(300)
}

fn default_read_ahead() -> usize {
    crate::source::s3::reader::READ_AHEAD
}

fn default_read_ahead_mib() -> usize {
    256
}

/// Most objects read ahead: more only adds memory (two cores are kept
/// busy by two).
const MAX_READ_AHEAD: usize = 16;

impl S3Config {
    fn validate(&self, origins: &Origins) -> Result<(), ConfigError> {
        let visibility = self.visibility_timeout;
        if !(Duration::from_secs(2)..=Duration::from_secs(12 * 3600)).contains(&visibility) {
            return Err(origins.error(
                "s3.visibility_timeout",
                format!(
                    "expected between 2s and 12h (the SQS limits), got {}",
                    humantime::format_duration(visibility)
                ),
            ));
        }
        if self.read_ahead > MAX_READ_AHEAD {
            return Err(origins.error(
                "s3.read_ahead",
                format!(
                    "expected 0 to {MAX_READ_AHEAD} objects, got {}",
                    self.read_ahead
                ),
            ));
        }
        if self.max_held_events == 0 {
            return Err(origins.error(
                "s3.max_held_events",
                format!(
                    "must be at least 1 (default {}), got 0",
                    default_max_held_events()
                ),
            ));
        }
        if self.region.as_deref().is_some_and(str::is_empty) {
            return Err(origins.error(
                "s3.region",
                "must not be empty (leave it out to let the AWS default chain decide)",
            ));
        }
        if let Some(endpoint) = &self.endpoint_url
            && !is_http_url(endpoint)
        {
            return Err(origins.error(
                "s3.endpoint_url",
                format!(r#"expected an http or https URL like "http://127.0.0.1:5000", got {endpoint:?}"#),
            ));
        }
        if !is_http_url(&self.queue_url) {
            return Err(origins.error(
                "s3.queue_url",
                format!(
                    r#"expected the queue's URL like "https://sqs.us-east-1.amazonaws.com/123456789012/flow-logs", got {:?}"#,
                    self.queue_url
                ),
            ));
        }
        Ok(())
    }
}

/// `[cloudwatch]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchConfig {
    /// AWS region; `None` lets the AWS default chain decide.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint URL (http or https) instead of AWS's: moto, LocalStack, VPC endpoints.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Time between two polls. At least 1s.
    #[serde(default = "default_poll_interval", deserialize_with = "parsed")]
    pub poll_interval: Duration,
    /// How far back each poll re-reads for late records; at least `poll_interval`.
    #[serde(default = "default_lookback", deserialize_with = "parsed")]
    pub lookback: Duration,
    /// After an outage, how far back the poller resumes at most; at least `lookback`.
    #[serde(default = "default_max_catchup", deserialize_with = "parsed")]
    pub max_catchup: Duration,
    /// How often the `eni-*` log streams are listed again. At least 1s.
    #[serde(default = "default_discovery_interval", deserialize_with = "parsed")]
    pub discovery_interval: Duration,
    /// How long one HTTP attempt of an API call may take before it is
    /// given up on and retried (a page of 10,000 events is ~1-3 MB). At
    /// least 100ms.
    #[serde(default = "default_attempt_timeout", deserialize_with = "parsed")]
    pub attempt_timeout: Duration,
    /// Requests per second (attempts, retries included) to one account and
    /// region, all its groups together; above 0, at most the 5/s
    /// FilterLogEvents quota.
    #[serde(
        default = "scale::default_max_requests_per_second",
        deserialize_with = "parsed"
    )]
    pub max_requests_per_second: f64,
    /// Event fingerprints one log group remembers to count re-reads of the
    /// overlap once (about 35 bytes each); past it, after a flood, the
    /// oldest are forgotten early. At least 1.
    #[serde(default = "default_max_seen_events", deserialize_with = "parsed")]
    pub max_seen_events: usize,
    /// New events one poll reads and holds before it counts them (about
    /// 300 bytes each); a flood's window is counted in batches of this
    /// many, each checkpointed with `[state]`. At least 1.
    #[serde(default = "default_max_held_events", deserialize_with = "parsed")]
    pub max_held_events: usize,
    /// `[[cloudwatch.log_groups]]`: at least one.
    #[serde(default)]
    pub log_groups: Vec<LogGroupConfig>,
}

/// `[[cloudwatch.log_groups]]`: one log group that flow logs publish to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogGroupConfig {
    /// Log group name, e.g. `/vpc/flow-logs`.
    pub name: String,
    /// `auto`, a flow log `LogFormat` (`${version} ${account-id} …`) or the
    /// field names separated by spaces. Only checked non-empty here.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// ENI ids to read; empty means every interface stream of the group.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// The group's region; default `[cloudwatch] region`.
    #[serde(default)]
    pub region: Option<String>,
    /// A role to read the group as (STS AssumeRole), e.g. in another account.
    #[serde(default)]
    pub role_arn: Option<String>,
    /// `ExternalId` of the AssumeRole call; only with `role_arn`.
    #[serde(default)]
    pub external_id: Option<String>,
    /// `RoleSessionName` of the AssumeRole call; only with `role_arn`.
    #[serde(default)]
    pub session_name: Option<String>,
}

/// `[files]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// Flow-log files, plain or gzip; relative paths are relative to the
    /// working directory. At least one.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// As [`LogGroupConfig::log_format`].
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// Replay the files in a loop, record times shifted to now (a live demo).
    #[serde(default)]
    pub replay: bool,
    /// Pause between two replays.
    #[serde(default = "default_replay_interval", deserialize_with = "parsed")]
    pub replay_interval: Duration,
}

/// `[interfaces.<eni-id>]`: what the records cannot tell about an interface.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    /// Human name, shown in logs, the landing page and dashboards.
    #[serde(default)]
    pub name: Option<String>,
    /// The interface's own addresses, when records cannot tell.
    #[serde(default, deserialize_with = "parsed_list")]
    pub addresses: Vec<IpAddr>,
    /// A NAT or transit gateway interface: replies may leave by another one.
    #[serde(default)]
    pub intermediate: bool,
}

/// `[correlation]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrelationConfig {
    /// How long a lone record waits for its other direction before a verdict.
    #[serde(default = "default_reply_grace", deserialize_with = "parsed")]
    pub reply_grace: Duration,
    /// A session idle this long is closed; longer than `reply_grace`.
    #[serde(default = "default_session_idle_timeout", deserialize_with = "parsed")]
    pub session_idle_timeout: Duration,
    /// Ports that mark the responder (besides every port below 1024).
    #[serde(default = "default_service_ports", deserialize_with = "parsed_list")]
    pub service_ports: Vec<u16>,
    /// Sessions held at most (memory: about 115 bytes each); past it the
    /// oldest pending sessions are decided early.
    #[serde(default = "default_max_open_sessions")]
    pub max_open_sessions: usize,
    /// How long a decided session waits for its interface's own address
    /// (learned from records, or from EC2) before the fallback "the
    /// request's destination is local" decides its direction.
    #[serde(default = "default_address_wait", deserialize_with = "parsed")]
    pub address_wait: Duration,
    /// Sessions waiting for their interface's address, at most, per
    /// interface (0: never wait; the fallback decides at once).
    #[serde(default = "default_max_awaiting_address")]
    pub max_awaiting_address_per_interface: usize,
}

/// `[api]`: how many decided sessions `/api/v1/sessions` and the landing
/// page can show (memory: a few hundred bytes each).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Kept for each of rejected_inbound, rejected_outbound, unanswered, refused.
    #[serde(default = "default_sessions_per_verdict")]
    pub sessions_per_verdict: usize,
    /// Accepted sessions kept; 0 (the default) keeps none.
    #[serde(default)]
    pub accepted_sessions: usize,
}

/// `[ec2]`: addresses, types and names of the watched interfaces from
/// EC2's `DescribeNetworkInterfaces`, in the region of each log group (or,
/// with `[s3]`, of each object's key).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ec2Config {
    /// Off by default: it needs `ec2:DescribeNetworkInterfaces`.
    #[serde(default)]
    pub describe_interfaces: bool,
    /// How often the facts are described again; at least 1m.
    #[serde(default = "default_ec2_refresh_interval", deserialize_with = "parsed")]
    pub refresh_interval: Duration,
    /// Endpoint URL instead of EC2's; unset, the SDK's own settings apply
    /// (`AWS_ENDPOINT_URL_EC2`).
    #[serde(default)]
    pub endpoint_url: Option<String>,
}

fn default_ec2_refresh_interval() -> Duration {
    Duration::from_secs(10 * 60)
}

impl Default for Ec2Config {
    fn default() -> Self {
        Self {
            describe_interfaces: false,
            refresh_interval: default_ec2_refresh_interval(),
            endpoint_url: None,
        }
    }
}

impl Ec2Config {
    fn validate(&self, origins: &Origins, source: &SourceConfig) -> Result<(), ConfigError> {
        if let Some(endpoint) = &self.endpoint_url
            && !is_http_url(endpoint)
        {
            return Err(origins.error(
                "ec2.endpoint_url",
                format!(r#"expected an http or https URL like "http://127.0.0.1:5000", got {endpoint:?}"#),
            ));
        }
        at_least(
            origins,
            "ec2.refresh_interval",
            self.refresh_interval,
            Duration::from_secs(60),
            None,
        )?;
        if self.describe_interfaces && matches!(source, SourceConfig::Files(_)) {
            return Err(origins.error(
                "ec2.describe_interfaces",
                "needs [cloudwatch] or [s3]: interfaces are described in the region of their log group or of their object's key",
            ));
        }
        Ok(())
    }
}

/// The most sessions one ring may hold: a bound on memory, not on use.
pub const MAX_RING_SESSIONS: usize = 1_000_000;

fn default_sessions_per_verdict() -> usize {
    1000
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            sessions_per_verdict: default_sessions_per_verdict(),
            accepted_sessions: 0,
        }
    }
}

impl ApiConfig {
    fn validate(&self, origins: &Origins) -> Result<(), ConfigError> {
        for (key, value) in [
            ("api.sessions_per_verdict", self.sessions_per_verdict),
            ("api.accepted_sessions", self.accepted_sessions),
        ] {
            if value > MAX_RING_SESSIONS {
                return Err(origins.error(
                    key,
                    format!("expected at most {MAX_RING_SESSIONS}, got {value}"),
                ));
            }
        }
        Ok(())
    }
}

fn default_listen_address() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9917))
}
fn default_header_read_timeout() -> Duration {
    crate::web::limits::DEFAULT_HEADER_READ_TIMEOUT
}
fn default_idle_timeout() -> Duration {
    crate::web::limits::DEFAULT_IDLE_TIMEOUT
}
fn default_max_connections() -> usize {
    crate::web::limits::DEFAULT_MAX_CONNECTIONS
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(30)
}
/// A 10-minute capture interval plus about 5 minutes of delivery delay, with margin.
fn default_lookback() -> Duration {
    Duration::from_secs(20 * 60)
}
fn default_max_catchup() -> Duration {
    Duration::from_secs(6 * 3600)
}
fn default_discovery_interval() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_attempt_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_log_format() -> String {
    "auto".to_owned()
}
fn default_replay_interval() -> Duration {
    Duration::from_secs(60)
}
/// Two capture intervals of one minute.
fn default_reply_grace() -> Duration {
    Duration::from_secs(correlate::DEFAULT_REPLY_GRACE_SECONDS)
}
fn default_session_idle_timeout() -> Duration {
    Duration::from_secs(correlate::DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS)
}
fn default_service_ports() -> Vec<u16> {
    correlate::DEFAULT_SERVICE_PORTS.to_vec()
}
fn default_max_seen_events() -> usize {
    crate::source::cloudwatch::poller::DEFAULT_MAX_SEEN_EVENTS
}
fn default_max_held_events() -> usize {
    crate::source::cloudwatch::poller::DEFAULT_MAX_HELD_EVENTS
}
fn default_max_open_sessions() -> usize {
    correlate::DEFAULT_MAX_OPEN_SESSIONS
}
fn default_address_wait() -> Duration {
    Duration::from_secs(correlate::DEFAULT_ADDRESS_WAIT_SECONDS)
}
fn default_max_awaiting_address() -> usize {
    correlate::DEFAULT_MAX_AWAITING_ADDRESS
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen_address: default_listen_address(),
            web_config_file: None,
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        Self {
            reply_grace: default_reply_grace(),
            session_idle_timeout: default_session_idle_timeout(),
            service_ports: default_service_ports(),
            max_open_sessions: default_max_open_sessions(),
            address_wait: default_address_wait(),
            max_awaiting_address_per_interface: default_max_awaiting_address(),
        }
    }
}

/// Loads the config file at `path` (if any) and the `VPC_FLOW_EXPORTER__…`
/// variables of the process environment.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    let env = std::env::vars_os().filter_map(|(name, value)| {
        // A non-Unicode name cannot be ours; a non-Unicode value gets U+FFFD
        // and then fails validation under its own name.
        Some((
            name.into_string().ok()?,
            value.to_string_lossy().into_owned(),
        ))
    });
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            load_from(Some(&text), &path.display().to_string(), env)
        }
        None => load_from(None, "environment", env),
    }
}

/// Loads a config from TOML text (if any) named `origin` in messages, with
/// the `VPC_FLOW_EXPORTER__…` variables of `env` over it. Variables without
/// that prefix are ignored.
pub fn load_from(
    toml_text: Option<&str>,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut builder = ::config::Config::builder();
    if let Some(text) = toml_text {
        builder = builder.add_source(::config::File::from_str(text, ::config::FileFormat::Toml));
    }
    let mut origins = Origins {
        file: origin.to_owned(),
        env: BTreeMap::new(),
    };
    let mut hostname = None;
    for (name, value) in env {
        if name == "HOSTNAME" {
            hostname = Some(value.clone());
        }
        let Some(key) = env_key(&name)? else {
            continue;
        };
        // Lists are split here rather than by `config::Environment`: its
        // `try_parsing`, needed for `list_separator`, turns a one-item list
        // like `SERVICE_PORTS=443` into a number, which then is not a list.
        let value: ::config::Value = if is_list_key(&key) {
            split_list(&value).into()
        } else {
            value.into()
        };
        builder = builder
            .set_override(&key, value)
            .map_err(|err| ConfigError::Invalid {
                origin: env_origin(&name),
                message: err.to_string(),
            })?;
        origins.env.insert(key, name);
    }
    let merged = builder.build().map_err(|err| ConfigError::Syntax {
        origin: origin.to_owned(),
        message: match err {
            ::config::ConfigError::FileParse { cause, .. } => cause.to_string(),
            other => other.to_string(),
        },
    })?;
    let raw: RawConfig =
        serde_path_to_error::deserialize(merged).map_err(|err| origins.deserialize_error(err))?;
    raw.validate(&origins, hostname.as_deref())
}

/// The file as written, before the rules that span keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: ServerConfig,
    #[serde(default)]
    cloudwatch: Option<CloudWatchConfig>,
    #[serde(default)]
    files: Option<FilesConfig>,
    #[serde(default)]
    s3: Option<S3Config>,
    #[serde(default)]
    interfaces: BTreeMap<String, InterfaceConfig>,
    #[serde(default)]
    correlation: CorrelationConfig,
    #[serde(default)]
    api: ApiConfig,
    #[serde(default)]
    metrics: MetricsConfig,
    #[serde(default)]
    shard: scale::RawShardConfig,
    #[serde(default)]
    state: Option<StateConfig>,
    #[serde(default)]
    ec2: Ec2Config,
}

impl RawConfig {
    /// `hostname`: the `HOSTNAME` variable, for `shard.index = "from-hostname"`.
    fn validate(self, origins: &Origins, hostname: Option<&str>) -> Result<Config, ConfigError> {
        let one_source = |found: &str| {
            // When the environment added a section, it is the one to blame.
            let origin = origins
                .under("cloudwatch")
                .or_else(|| origins.under("files"))
                .or_else(|| origins.under("s3"))
                .unwrap_or_else(|| origins.file.clone());
            ConfigError::Invalid {
                origin,
                message: format!(
                    "exactly one of [cloudwatch], [files] and [s3] must be set ({found})"
                ),
            }
        };
        let source = match (self.cloudwatch, self.files, self.s3) {
            (Some(cloudwatch), None, None) => {
                cloudwatch.validate(origins)?;
                SourceConfig::CloudWatch(cloudwatch)
            }
            (None, Some(files), None) => {
                files.validate(origins)?;
                SourceConfig::Files(files)
            }
            (None, None, Some(s3)) => {
                s3.validate(origins)?;
                SourceConfig::S3(s3)
            }
            (None, None, None) => return Err(one_source("none is")),
            _ => return Err(one_source("more than one is")),
        };
        self.server.validate(origins)?;
        for (id, interface) in &self.interfaces {
            let key = format!("interfaces.{id}");
            if !is_eni_id(id) {
                return Err(origins.error(
                    &key,
                    format!("expected {ENI_EXAMPLE} as the table name, got {id:?}"),
                ));
            }
            if interface.name.as_deref().is_some_and(str::is_empty) {
                return Err(origins.error(
                    &format!("{key}.name"),
                    "must not be empty (leave it out to show the interface id)",
                ));
            }
        }
        self.correlation.validate(origins)?;
        self.api.validate(origins)?;
        self.metrics.validate(origins)?;
        let shard = self.shard.validate(origins, hostname)?;
        if let Some(state) = &self.state
            && state.directory.as_os_str().is_empty()
        {
            return Err(origins.error(
                "state.directory",
                "must not be empty (leave [state] out to start afresh on every restart)",
            ));
        }
        self.ec2.validate(origins, &source)?;
        Ok(Config {
            server: self.server,
            source,
            interfaces: self.interfaces,
            correlation: self.correlation,
            api: self.api,
            metrics: self.metrics,
            shard,
            state: self.state,
            ec2: self.ec2,
        })
    }
}

impl CloudWatchConfig {
    fn validate(&self, origins: &Origins) -> Result<(), ConfigError> {
        if self.region.as_deref().is_some_and(str::is_empty) {
            return Err(origins.error(
                "cloudwatch.region",
                "must not be empty (leave it out to let the AWS default chain decide)",
            ));
        }
        if let Some(endpoint) = &self.endpoint_url
            && !is_http_url(endpoint)
        {
            return Err(origins.error(
                "cloudwatch.endpoint_url",
                format!(r#"expected an http or https URL like "http://127.0.0.1:5000", got {endpoint:?}"#),
            ));
        }
        let one_second = Duration::from_secs(1);
        at_least(
            origins,
            "cloudwatch.poll_interval",
            self.poll_interval,
            one_second,
            None,
        )?;
        at_least(
            origins,
            "cloudwatch.lookback",
            self.lookback,
            self.poll_interval,
            Some("cloudwatch.poll_interval"),
        )?;
        at_least(
            origins,
            "cloudwatch.max_catchup",
            self.max_catchup,
            self.lookback,
            Some("cloudwatch.lookback"),
        )?;
        at_least(
            origins,
            "cloudwatch.discovery_interval",
            self.discovery_interval,
            one_second,
            None,
        )?;
        at_least(
            origins,
            "cloudwatch.attempt_timeout",
            self.attempt_timeout,
            Duration::from_millis(100),
            None,
        )?;
        scale::check_max_requests_per_second(origins, self.max_requests_per_second)?;
        if self.max_seen_events == 0 {
            return Err(origins.error(
                "cloudwatch.max_seen_events",
                format!(
                    "must be at least 1 (default {}), got 0",
                    default_max_seen_events()
                ),
            ));
        }
        if self.max_held_events == 0 {
            return Err(origins.error(
                "cloudwatch.max_held_events",
                format!(
                    "must be at least 1 (default {}), got 0",
                    default_max_held_events()
                ),
            ));
        }
        if self.log_groups.is_empty() {
            return Err(origins.error(
                "cloudwatch.log_groups",
                "at least one [[cloudwatch.log_groups]] is required",
            ));
        }
        for (i, group) in self.log_groups.iter().enumerate() {
            let key = format!("cloudwatch.log_groups[{i}]");
            if group.name.is_empty() {
                return Err(origins.error(&format!("{key}.name"), "must not be empty"));
            }
            scale::check_group_access(origins, &key, group)?;
            // Same-named groups of other accounts or regions are other groups.
            if let Some(first) = self.log_groups[..i].iter().position(|g| {
                g.name == group.name
                    && g.region.as_ref().or(self.region.as_ref())
                        == group.region.as_ref().or(self.region.as_ref())
                    && g.role_arn == group.role_arn
            }) {
                return Err(origins.error(
                    &format!("{key}.name"),
                    format!(
                        "{:?} is already read by cloudwatch.log_groups[{first}] (same region and role_arn)",
                        group.name
                    ),
                ));
            }
            check_log_format(origins, &format!("{key}.log_format"), &group.log_format)?;
            for (j, id) in group.interfaces.iter().enumerate() {
                if !is_eni_id(id) {
                    return Err(origins.error(
                        &format!("{key}.interfaces[{j}]"),
                        format!("expected {ENI_EXAMPLE}, got {id:?}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl FilesConfig {
    fn validate(&self, origins: &Origins) -> Result<(), ConfigError> {
        if self.paths.is_empty() {
            return Err(origins.error("files.paths", "must list at least one file"));
        }
        if let Some(i) = self.paths.iter().position(|p| p.as_os_str().is_empty()) {
            return Err(origins.error(&format!("files.paths[{i}]"), "must not be empty"));
        }
        check_log_format(origins, "files.log_format", &self.log_format)
    }
}

impl CorrelationConfig {
    fn validate(&self, origins: &Origins) -> Result<(), ConfigError> {
        if self.session_idle_timeout <= self.reply_grace {
            return Err(origins.error(
                "correlation.session_idle_timeout",
                format!(
                    "must be longer than correlation.reply_grace ({}), got {}",
                    humantime::format_duration(self.reply_grace),
                    humantime::format_duration(self.session_idle_timeout),
                ),
            ));
        }
        if self.max_open_sessions == 0 {
            return Err(origins.error(
                "correlation.max_open_sessions",
                "must be at least 1 (default 1000000), got 0",
            ));
        }
        Ok(())
    }
}

/// `key`'s `value` must be at least `min`, which is the value of `min_key`
/// when that is given, else a fixed bound.
fn at_least(
    origins: &Origins,
    key: &str,
    value: Duration,
    min: Duration,
    min_key: Option<&str>,
) -> Result<(), ConfigError> {
    if value >= min {
        return Ok(());
    }
    let (min, got) = (
        humantime::format_duration(min),
        humantime::format_duration(value),
    );
    let message = match min_key {
        Some(min_key) => format!("must be at least {min_key} ({min}), got {got}"),
        None => format!("must be at least {min}, got {got}"),
    };
    Err(origins.error(key, message))
}

fn check_log_format(origins: &Origins, key: &str, format: &str) -> Result<(), ConfigError> {
    if format.trim().is_empty() {
        return Err(origins.error(key, r#"must not be empty (use "auto" to detect it)"#));
    }
    crate::flow::FormatChoice::parse(format)
        .map(|_| ())
        .map_err(|error| origins.error(key, error.to_string()))
}

/// For `--check-config`: every `[files]` path can be opened now. (Loading
/// does not require it: a file may appear later, and the exporter retries.)
pub fn check_files_exist(config: &Config) -> Result<(), String> {
    let SourceConfig::Files(files) = &config.source else {
        return Ok(());
    };
    for (index, path) in files.paths.iter().enumerate() {
        if let Err(error) = std::fs::File::open(path) {
            return Err(format!("files.paths[{index}]: {}: {error}", path.display()));
        }
    }
    Ok(())
}

/// `eni-` and lowercase hex digits, as AWS writes interface ids.
fn is_eni_id(id: &str) -> bool {
    id.strip_prefix("eni-").is_some_and(|hex| {
        !hex.is_empty()
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn is_http_url(text: &str) -> bool {
    url::Url::parse(text)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
}

#[cfg(test)]
mod tests;

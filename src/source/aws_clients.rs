//! The AWS clients of one exporter, and the one place their SDK config is
//! built: [`sdk_loader`] (the standard credential chain, region, endpoint
//! URL, retries with backoff, timeouts), used by every service — CloudWatch
//! Logs, EC2, STS here, S3 and SQS in `s3::aws`. CloudWatch Logs clients
//! make one attempt per SDK call: their retries are the exporter's own
//! (`cloudwatch::attempts`), so that every attempt takes its turn in the
//! request budget.
//!
//! CloudWatch Logs and EC2 (interface facts) get one client per (region,
//! role) — a role names its account — shared by every log group that
//! reads with it, and both clients of one (region, role) share one SDK
//! config. A group with `role_arn` reads with credentials from STS
//! AssumeRole (aws-config's `AssumeRoleProvider`, base credentials from
//! the standard chain), kept by [`RoleCredentials`] and renewed before a
//! poll when they near their expiry: one AssumeRole per (region, role) and
//! renewal, however many groups and clients use it. Every
//! AssumeRole call is reported to the [`ApiObserver`] as operation
//! [`ASSUME_ROLE`], and a failure is logged with the role: the group's
//! polls then fail and are retried with backoff, and other groups are not
//! affected. A group's account (the `account_id` of its interfaces'
//! `vpcflow_interface_info`, and the request budget it draws from) is its
//! role's, or the base credentials' own from STS GetCallerIdentity, asked
//! once in the background ([`BaseAccount`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::error::DisplayErrorContext;
use tokio::sync::watch;

use super::cloudwatch::attempts::{INITIAL_BACKOFF, MAX_ATTEMPTS, MAX_BACKOFF};
use super::cloudwatch::{ATTEMPT_TIMEOUT, ApiObserver, AwsLogsApi};
use super::ec2::AwsEc2Api;
use crate::config::{LogGroupConfig, account_of_role};

/// Operation label of STS `AssumeRole` (metrics, logs).
pub const ASSUME_ROLE: &str = "AssumeRole";

/// Operation label of STS `GetCallerIdentity` (metrics, logs).
pub const GET_CALLER_IDENTITY: &str = "GetCallerIdentity";

/// `RoleSessionName` when the group sets none: CloudTrail in the other
/// account shows it.
pub const DEFAULT_SESSION_NAME: &str = "vpc-flow-exporter";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One call of the base config's clients, all attempts and backoffs
/// included.
const BASE_OPERATION_TIMEOUT: Duration = Duration::from_secs(90);

/// The base config's budget, STS's calls (AssumeRole, GetCallerIdentity)
/// included; the Logs and EC2 clients set their own.
const BASE_TIMEOUTS: CallTimeouts = CallTimeouts {
    attempt: ATTEMPT_TIMEOUT,
    operation: BASE_OPERATION_TIMEOUT,
};

/// The time budget of one call: each HTTP attempt, and the whole call
/// with its retries and backoffs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallTimeouts {
    pub attempt: Duration,
    pub operation: Duration,
}

impl CallTimeouts {
    /// A CloudWatch Logs SDK call, which is one attempt (the retries are
    /// ours, `cloudwatch::attempts`): the attempt timeout ends it; the
    /// operation timeout is only a backstop that never comes first, so
    /// the attempt reporter sees every timed-out attempt.
    pub fn logs(attempt: Duration) -> CallTimeouts {
        CallTimeouts {
            attempt,
            operation: attempt.saturating_mul(2),
        }
    }

    fn config(self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(self.attempt)
            .operation_timeout(self.operation)
            .build()
    }
}

/// The AWS config chain (credentials from the environment, profile, web
/// identity, ECS/EC2 roles) with the exporter's retries (the SDK's standard
/// retryer, on the schedule of `cloudwatch::attempts`) and `timeouts`,
/// `region` over the chain's and `endpoint_url` (moto, LocalStack, VPC
/// endpoints) replacing AWS's for every service, STS included.
pub fn sdk_loader(
    region: Option<String>,
    endpoint_url: Option<String>,
    timeouts: CallTimeouts,
) -> aws_config::ConfigLoader {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(INITIAL_BACKOFF)
                .with_max_backoff(MAX_BACKOFF),
        )
        .timeout_config(timeouts.config());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region));
    }
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader
}

/// A CloudWatch Logs client with the base credentials, built as `serve`
/// builds one for a group without a role (tests, tools).
pub async fn logs_api(
    region: Option<String>,
    endpoint_url: Option<String>,
    observer: Arc<dyn ApiObserver>,
) -> AwsLogsApi {
    AwsClients::new(endpoint_url, ATTEMPT_TIMEOUT, observer)
        .client(&Access { region, role: None })
        .await
}

/// Where and as whom one log group is read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Access {
    /// `None`: the AWS default chain decides.
    pub region: Option<String>,
    pub role: Option<Role>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Role {
    pub arn: String,
    pub external_id: Option<String>,
    pub session_name: String,
}

impl Access {
    /// The access of `group`, its region defaulting to `default_region`.
    pub fn of(group: &LogGroupConfig, default_region: Option<&str>) -> Access {
        Access {
            region: group
                .region
                .clone()
                .or_else(|| default_region.map(str::to_owned)),
            role: group.role_arn.as_ref().map(|arn| Role {
                arn: arn.clone(),
                external_id: group.external_id.clone(),
                session_name: group
                    .session_name
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_owned()),
            }),
        }
    }

    /// The role's account; `None` for the base credentials' own account.
    pub fn account_id(&self) -> Option<&str> {
        self.role
            .as_ref()
            .and_then(|role| account_of_role(&role.arn))
    }

    /// How a group read with this access is named in logs:
    /// `222222222222/eu-west-1:/vpc/flow-logs`, `us-east-1:/vpc/flow-logs`.
    pub fn describe(&self, log_group: &str) -> String {
        let region = self.region.as_deref().unwrap_or("default-region");
        match self.account_id() {
            Some(account) => format!("{account}/{region}:{log_group}"),
            None => format!("{region}:{log_group}"),
        }
    }
}

/// The clients, built on first use and shared.
pub struct AwsClients {
    endpoint_url: Option<String>,
    attempt_timeout: Duration,
    observer: Arc<dyn ApiObserver>,
    /// Region and credentials of each access, shared by its Logs and EC2
    /// clients (one identity cache, one AssumeRole per renewal).
    configs: HashMap<Access, SdkConfig>,
    clients: HashMap<Access, AwsLogsApi>,
    ec2_clients: HashMap<Access, AwsEc2Api>,
    /// The base credentials' account, asked once for all their groups.
    base_account: Option<BaseAccount>,
    /// The credentials of each access with a role.
    roles: HashMap<Access, RoleCredentials>,
}

impl AwsClients {
    /// `endpoint_url` replaces AWS's endpoints, STS's included (moto);
    /// `attempt_timeout` bounds each HTTP attempt of the Logs calls.
    pub fn new(
        endpoint_url: Option<String>,
        attempt_timeout: Duration,
        observer: Arc<dyn ApiObserver>,
    ) -> AwsClients {
        AwsClients {
            endpoint_url,
            attempt_timeout,
            observer,
            configs: HashMap::new(),
            clients: HashMap::new(),
            ec2_clients: HashMap::new(),
            base_account: None,
            roles: HashMap::new(),
        }
    }

    /// The client for `access`, shared with every group of the same access.
    /// The SDK makes one attempt per call: [`AwsLogsApi`] retries, so that
    /// each retry takes its turn in the request budget.
    pub async fn client(&mut self, access: &Access) -> AwsLogsApi {
        if let Some(client) = self.clients.get(access) {
            return client.clone();
        }
        let config = self.sdk_config(access).await;
        let logs_config = aws_sdk_cloudwatchlogs::config::Builder::from(&config)
            .retry_config(RetryConfig::disabled())
            .timeout_config(CallTimeouts::logs(self.attempt_timeout).config())
            .build();
        let client = AwsLogsApi::from_client(Client::from_conf(logs_config), self.observer.clone());
        self.clients.insert(access.clone(), client.clone());
        client
    }

    /// The EC2 client for `access` (`[ec2] describe_interfaces`): the
    /// region and credentials of its Logs client. `endpoint_url` (`[ec2]
    /// endpoint_url`) replaces EC2's endpoint; without it the SDK's
    /// settings apply (`AWS_ENDPOINT_URL_EC2`, `AWS_ENDPOINT_URL`, the
    /// profile), never the Logs `endpoint_url`: that is often a Logs VPC
    /// endpoint, which does not answer EC2.
    pub async fn ec2_client(&mut self, access: &Access, endpoint_url: Option<&str>) -> AwsEc2Api {
        if let Some(client) = self.ec2_clients.get(access) {
            return client.clone();
        }
        let mut config = self.sdk_config(access).await;
        // The Logs endpoint_url is set in the shared config as code-given,
        // which the EC2 client would take over its own settings: it is
        // taken out, and EC2's named from the environment, as the SDK would.
        if self.endpoint_url.is_some() {
            let mut builder = config.into_builder();
            builder.set_endpoint_url(None);
            config = builder.build();
        }
        let from_environment = || {
            ["AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL"]
                .iter()
                .find_map(|name| std::env::var(name).ok().filter(|url| !url.is_empty()))
        };
        let endpoint_url = match endpoint_url {
            Some(url) => Some(url.to_owned()),
            None if self.endpoint_url.is_some() => from_environment(),
            None => None,
        };
        let client = AwsEc2Api::from_config(&config, endpoint_url.as_deref());
        self.ec2_clients.insert(access.clone(), client.clone());
        client
    }

    /// The SDK config of `access`: its region, and for a role credentials
    /// from AssumeRole, counted and logged.
    async fn sdk_config(&mut self, access: &Access) -> SdkConfig {
        if let Some(config) = self.configs.get(access) {
            return config.clone();
        }
        let base = sdk_loader(
            access.region.clone(),
            self.endpoint_url.clone(),
            BASE_TIMEOUTS,
        )
        .load()
        .await;
        let config = match &access.role {
            None => base,
            Some(role) => {
                let mut builder = AssumeRoleProvider::builder(role.arn.clone())
                    .configure(&base)
                    .session_name(role.session_name.clone());
                if let Some(external_id) = &role.external_id {
                    builder = builder.external_id(external_id.clone());
                }
                let credentials = RoleCredentials::new(
                    builder.build().await,
                    role.arn.clone(),
                    self.observer.clone(),
                );
                self.roles.insert(access.clone(), credentials.clone());
                // RoleCredentials keeps them; a second cache in front
                // would decide on its own when to renew.
                base.into_builder()
                    .identity_cache(IdentityCache::no_cache())
                    .credentials_provider(SharedCredentialsProvider::new(credentials))
                    .build()
            }
        };
        self.configs.insert(access.clone(), config.clone());
        config
    }

    /// The credentials of `access`'s role (`None` without one), to renew
    /// them before a poll.
    pub async fn role_credentials(&mut self, access: &Access) -> Option<RoleCredentials> {
        access.role.as_ref()?;
        self.sdk_config(access).await;
        self.roles.get(access).cloned()
    }

    /// The region `access` reads in: its own, else the one the AWS chain
    /// resolved (`None` when neither says).
    pub async fn region(&mut self, access: &Access) -> Option<String> {
        if access.region.is_some() {
            return access.region.clone();
        }
        let config = self.sdk_config(access).await;
        config.region().map(ToString::to_string)
    }

    /// The account `access` reads in: a role's from its ARN, at once; the
    /// base credentials' from STS GetCallerIdentity (which needs no
    /// permission), asked once for every group in the background, and
    /// again with backoff until it answers.
    pub async fn account(&mut self, access: &Access) -> AccountOf {
        if let Some(account) = access.account_id() {
            return AccountOf::Known(account.to_owned());
        }
        if let Some(base) = &self.base_account {
            return match base.get() {
                Some(account) => AccountOf::Known(account),
                None => AccountOf::Ask(base.clone()),
            };
        }
        let config = self.sdk_config(access).await;
        let identity = CallerIdentity {
            client: aws_sdk_sts::Client::new(&config),
            observer: self.observer.clone(),
        };
        let (sender, receiver) = watch::channel(None);
        tokio::spawn(identity.ask_until_answered(sender));
        let base = BaseAccount(receiver);
        self.base_account = Some(base.clone());
        AccountOf::Ask(base)
    }

    /// Clients built so far: one per distinct access.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

/// A log group's account, known or still to be answered by STS.
pub enum AccountOf {
    Known(String),
    Ask(BaseAccount),
}

/// The base credentials' account, once STS GetCallerIdentity has answered.
#[derive(Clone)]
pub struct BaseAccount(watch::Receiver<Option<String>>);

impl BaseAccount {
    /// The account, if STS has answered.
    pub fn get(&self) -> Option<String> {
        self.0.borrow().clone()
    }

    /// Waits until STS answers (forever if it never does).
    pub async fn answered(&mut self) -> Option<String> {
        let answer = self.0.wait_for(Option::is_some).await.ok()?;
        answer.clone()
    }
}

/// First wait before GetCallerIdentity is asked again; it doubles up to
/// [`ASK_AGAIN_AT_MOST`].
const ASK_AGAIN_FIRST: Duration = Duration::from_secs(1);
const ASK_AGAIN_AT_MOST: Duration = Duration::from_secs(60);

/// STS `GetCallerIdentity` with the base credentials, counted.
struct CallerIdentity {
    client: aws_sdk_sts::Client,
    observer: Arc<dyn ApiObserver>,
}

impl CallerIdentity {
    /// Asks until STS answers, then tells every [`BaseAccount`]; stops
    /// early when none is left.
    async fn ask_until_answered(self, answer: watch::Sender<Option<String>>) {
        let mut wait = ASK_AGAIN_FIRST;
        let mut warned = false;
        loop {
            match self.ask().await {
                Ok(account) => {
                    tracing::debug!(account_id = %account, "GetCallerIdentity answered");
                    answer.send_replace(Some(account));
                    return;
                }
                Err(error) if !warned => {
                    warned = true;
                    tracing::warn!(%error,
                        "GetCallerIdentity failed: until it answers, the interfaces read with the base credentials have an empty account_id and their log groups draw from the request budget account_id=\"unknown\" (asked again with backoff)");
                }
                Err(error) => tracing::debug!(%error, "GetCallerIdentity failed again"),
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = answer.closed() => return,
            }
            wait = (wait * 2).min(ASK_AGAIN_AT_MOST);
        }
    }

    async fn ask(&self) -> Result<String, String> {
        let started = Instant::now();
        let result = self.client.get_caller_identity().send().await;
        let outcome = if result.is_ok() { "success" } else { "error" };
        self.observer.api_call(
            GET_CALLER_IDENTITY,
            outcome,
            started.elapsed().as_secs_f64(),
        );
        match result {
            Ok(identity) => identity
                .account
                .ok_or_else(|| "the answer names no account".to_owned()),
            Err(error) => Err(DisplayErrorContext(&error).to_string()),
        }
    }
}

/// Assumed credentials are renewed before a poll once they expire within
/// this, so that the poll's calls, which take their turn in the request
/// budget before the SDK asks for credentials, never wait for AssumeRole on
/// their way to AWS (which would make them arrive late, bunched with the
/// next call's). A poll lasting longer renews within the call, past
/// [`RENEW_IN_CALL`].
pub const RENEW_BEFORE_POLL: Duration = Duration::from_secs(15 * 60);
const RENEW_IN_CALL: Duration = Duration::from_secs(60);

/// The credentials of one role: AssumeRole's answer, kept until it nears
/// its expiry, shared by the Logs and EC2 clients of its (region, role).
/// This, not the SDK's identity cache, keeps them, because renewal must
/// happen when the exporter says ([`RoleCredentials::renew_if_due`], before
/// a poll), not when a call that already took its turn needs them.
/// Every AssumeRole call is counted, and a failure is logged with the role.
#[derive(Clone)]
pub struct RoleCredentials(Arc<ObservedRole>);

struct ObservedRole {
    /// aws-config's `AssumeRoleProvider`.
    inner: SharedCredentialsProvider,
    role_arn: String,
    observer: Arc<dyn ApiObserver>,
    /// One AssumeRole at a time; later askers get its answer.
    kept: tokio::sync::Mutex<Option<Credentials>>,
}

impl RoleCredentials {
    fn new(
        inner: impl ProvideCredentials + 'static,
        role_arn: String,
        observer: Arc<dyn ApiObserver>,
    ) -> Self {
        RoleCredentials(Arc::new(ObservedRole {
            inner: SharedCredentialsProvider::new(inner),
            role_arn,
            observer,
            kept: tokio::sync::Mutex::new(None),
        }))
    }

    /// Assumes the role now when its credentials are missing or expire
    /// within [`RENEW_BEFORE_POLL`]; the error says why not (it is logged
    /// and counted already).
    pub async fn renew_if_due(&self) -> Result<(), String> {
        self.credentials(RENEW_BEFORE_POLL)
            .await
            .map(drop)
            .map_err(|error| DisplayErrorContext(&error).to_string())
    }

    /// The kept credentials if they last more than `ahead`, else new ones.
    async fn credentials(&self, ahead: Duration) -> provider::Result {
        let role = &*self.0;
        let mut kept = role.kept.lock().await;
        if let Some(credentials) = kept.as_ref()
            && credentials
                .expiry()
                .is_none_or(|expiry| expiry > SystemTime::now() + ahead)
        {
            return Ok(credentials.clone());
        }
        let started = Instant::now();
        let result = role.inner.provide_credentials().await;
        let outcome = if result.is_ok() { "success" } else { "error" };
        role.observer
            .api_call(ASSUME_ROLE, outcome, started.elapsed().as_secs_f64());
        match &result {
            Ok(credentials) => {
                tracing::debug!(role_arn = %role.role_arn, "Assumed role");
                *kept = Some(credentials.clone());
            }
            Err(error) => tracing::warn!(
                role_arn = %role.role_arn,
                error = %DisplayErrorContext(error),
                "AssumeRole failed: the log groups read with this role are retried with backoff (check the role's trust policy, external_id and the exporter's sts:AssumeRole permission)"
            ),
        }
        result
    }
}

impl fmt::Debug for RoleCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleCredentials")
            .field("role_arn", &self.0.role_arn)
            .finish_non_exhaustive()
    }
}

impl ProvideCredentials for RoleCredentials {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(self.credentials(RENEW_IN_CALL))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(extra: &str) -> LogGroupConfig {
        let text = format!("name = \"/vpc/flow-logs\"\n{extra}");
        toml_group(&text)
    }

    fn toml_group(text: &str) -> LogGroupConfig {
        let config = crate::config::load_from(
            Some(&format!("[cloudwatch]\n[[cloudwatch.log_groups]]\n{text}")),
            "test.toml",
            Vec::new(),
        )
        .unwrap();
        match config.source {
            crate::config::SourceConfig::CloudWatch(mut cloudwatch) => {
                cloudwatch.log_groups.remove(0)
            }
            other => panic!("{other:?}"),
        }
    }

    /// A role provider that answers credentials lasting `lasts`, or
    /// refuses; counts how often it is asked.
    #[derive(Debug)]
    struct FakeRole {
        lasts: Option<Duration>,
        asked: Arc<std::sync::atomic::AtomicU32>,
    }

    impl ProvideCredentials for FakeRole {
        fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.asked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            provider::future::ProvideCredentials::ready(match self.lasts {
                Some(lasts) => Ok(Credentials::new(
                    "AKID",
                    "secret",
                    None,
                    Some(SystemTime::now() + lasts),
                    "fake",
                )),
                None => Err(provider::error::CredentialsError::not_loaded("refused")),
            })
        }
    }

    fn role(lasts: Option<Duration>) -> (RoleCredentials, Arc<std::sync::atomic::AtomicU32>) {
        let asked = Arc::default();
        let fake = FakeRole {
            lasts,
            asked: Arc::clone(&asked),
        };
        let observer = Arc::new(crate::source::cloudwatch::NoopObserver);
        (RoleCredentials::new(fake, "arn".into(), observer), asked)
    }

    fn asked(counter: &std::sync::atomic::AtomicU32) -> u32 {
        counter.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Credentials are assumed before the first poll and kept; the calls
    /// (the SDK asking the provider) use the kept ones.
    #[tokio::test]
    async fn assumed_credentials_are_kept_until_they_near_their_expiry() {
        let (credentials, counter) = role(Some(Duration::from_secs(3600)));
        credentials.renew_if_due().await.unwrap();
        assert_eq!(asked(&counter), 1);
        credentials.renew_if_due().await.unwrap();
        credentials.provide_credentials().await.unwrap();
        assert_eq!(asked(&counter), 1, "kept");
    }

    /// Within RENEW_BEFORE_POLL of their expiry the next poll renews them;
    /// a call renews them only within RENEW_IN_CALL, so a call that took
    /// its turn in the budget goes out without waiting for AssumeRole.
    #[tokio::test]
    async fn a_poll_renews_credentials_that_expire_soon_and_a_call_does_not() {
        let soon = RENEW_BEFORE_POLL - Duration::from_secs(60);
        let (credentials, counter) = role(Some(soon));
        credentials.renew_if_due().await.unwrap();
        credentials.provide_credentials().await.unwrap();
        assert_eq!(asked(&counter), 1, "a call uses them");
        credentials.renew_if_due().await.unwrap();
        assert_eq!(asked(&counter), 2, "the next poll renews them");
    }

    #[tokio::test]
    async fn a_refused_role_is_asked_again_and_says_why() {
        let (credentials, counter) = role(None);
        let error = credentials.renew_if_due().await.unwrap_err();
        assert!(error.contains("refused"), "{error}");
        assert!(credentials.provide_credentials().await.is_err());
        assert_eq!(asked(&counter), 2);
    }

    #[test]
    fn access_names_region_and_account() {
        let plain = Access::of(&group(""), Some("us-east-1"));
        assert_eq!(plain.describe("/g"), "us-east-1:/g");
        assert_eq!(plain.account_id(), None);
        let other = Access::of(
            &group("region = \"eu-west-1\"\nrole_arn = \"arn:aws:iam::222222222222:role/r\"\n"),
            Some("us-east-1"),
        );
        assert_eq!(other.describe("/g"), "222222222222/eu-west-1:/g");
        assert_eq!(
            other.role.as_ref().unwrap().session_name,
            DEFAULT_SESSION_NAME
        );
        assert_ne!(plain, other);
        assert_eq!(
            Access::of(&group(""), None).describe("/g"),
            "default-region:/g"
        );
    }
}

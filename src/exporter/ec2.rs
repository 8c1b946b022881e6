//! EC2 facts in `serve` (`[ec2] describe_interfaces = true`): before a log
//! group's records are fed, its interfaces not described yet are described
//! (batched, cached), so direction is exact from the first record; every
//! `refresh_interval` all are described again. Facts go to the core
//! (addresses, intermediate by type), to `vpcflow_interface_info` and to
//! the landing page's names. With the S3 source ([`Ec2ByRegion`]) the
//! region is the one each object's key names. Configuration wins: a configured name over
//! the `Name` tag, configured addresses beside EC2's. A failing or denied
//! call is logged and counted once per attempt and tried again only at the
//! next refresh; counting goes on, the records teach the addresses.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ApiMetrics;
use crate::api::SessionLog;
use crate::config::{Ec2Config, InterfaceConfig};
use crate::flow::{InterfaceFacts, Pipeline};
use crate::metrics::{InterfaceInfo, Metrics};
use crate::source::aws_clients::{Access, AwsClients};
use crate::source::ec2::{
    AwsEc2Api, DESCRIBE_NETWORK_INTERFACES, Ec2Api, InterfaceDescription, MAX_INTERFACES_PER_CALL,
};

/// One log group's view of EC2.
pub struct Ec2Facts<A> {
    api: A,
    /// The `region` label.
    region: String,
    refresh_interval: Duration,
    configured: Arc<HashMap<String, InterfaceConfig>>,
    metrics: Arc<Metrics>,
    sessions: Arc<SessionLog>,
    /// Interfaces asked about, with what EC2 said (`None`: not found).
    described: HashMap<String, Option<InterfaceDescription>>,
    last_refresh: Option<Instant>,
    /// A failed attempt waits for the next refresh before trying again.
    failed_at: Option<Instant>,
}

impl<A: Ec2Api> Ec2Facts<A> {
    pub fn new(
        api: A,
        region: String,
        refresh_interval: Duration,
        configured: Arc<HashMap<String, InterfaceConfig>>,
        metrics: Arc<Metrics>,
        sessions: Arc<SessionLog>,
    ) -> Self {
        metrics.expect_operations(&[DESCRIBE_NETWORK_INTERFACES]);
        Ec2Facts {
            api,
            region,
            refresh_interval,
            configured,
            metrics,
            sessions,
            described: HashMap::new(),
            last_refresh: None,
            failed_at: None,
        }
    }

    /// Describes the interfaces among `interfaces` not asked about yet, or
    /// all of them when a refresh is due, and hands the facts on.
    pub async fn update(&mut self, interfaces: &[&str], pipeline: &mut Pipeline) {
        let now = Instant::now();
        let waited = |since: Option<Instant>| {
            since.is_none_or(|since| now.duration_since(since) >= self.refresh_interval)
        };
        if !waited(self.failed_at) {
            return;
        }
        let refresh = waited(self.last_refresh);
        let wanted: Vec<String> = interfaces
            .iter()
            .filter(|id| refresh || !self.described.contains_key(**id))
            .map(|id| id.to_string())
            .collect();
        if wanted.is_empty() {
            return;
        }
        for batch in wanted.chunks(MAX_INTERFACES_PER_CALL) {
            let started = Instant::now();
            let result = self.api.describe_interfaces(batch).await;
            let outcome = match &result {
                Ok(_) => "success",
                Err(error) => error.metric_label(),
            };
            self.metrics
                .api_calls
                .with_label_values(&[DESCRIBE_NETWORK_INTERFACES, outcome])
                .inc();
            self.metrics
                .api_call_duration
                .with_label_values(&[DESCRIBE_NETWORK_INTERFACES])
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(found) => {
                    let mut by_id: HashMap<String, InterfaceDescription> = found
                        .into_iter()
                        .map(|interface| (interface.interface_id.clone(), interface))
                        .collect();
                    for id in batch {
                        let description = by_id.remove(id);
                        self.apply(id, description.as_ref(), pipeline);
                        self.described.insert(id.clone(), description);
                    }
                }
                Err(error) => {
                    self.failed_at = Some(now);
                    tracing::warn!(region = %self.region, kind = error.metric_label(), %error,
                        "Describing network interfaces failed; directions are learned from the records until the next refresh");
                    return;
                }
            }
        }
        self.failed_at = None;
        if refresh {
            self.last_refresh = Some(now);
        }
    }

    fn apply(&self, id: &str, ec2: Option<&InterfaceDescription>, pipeline: &mut Pipeline) {
        let configured = self.configured.get(id);
        let Some(ec2) = ec2 else {
            tracing::debug!(interface_id = id, "Not found by DescribeNetworkInterfaces");
            return;
        };
        let mut addresses = configured.map_or_else(Vec::new, |c| c.addresses.clone());
        for address in &ec2.addresses {
            if !addresses.contains(address) {
                addresses.push(*address);
            }
        }
        let intermediate = configured.is_some_and(|c| c.intermediate) || ec2.is_intermediate();
        pipeline.set_interface_facts(
            id,
            InterfaceFacts {
                addresses,
                intermediate,
            },
        );
        let name = configured
            .and_then(|c| c.name.clone())
            .or_else(|| ec2.name.clone());
        if let Some(name) = &name {
            self.sessions.set_name(id, name);
        }
        self.metrics.set_interface_info(&InterfaceInfo {
            interface_id: id.to_string(),
            name: name.unwrap_or_else(|| id.to_string()),
            interface_type: ec2.interface_type.clone(),
            account_id: ec2.account_id.clone(),
            region: self.region.clone(),
            vpc_id: ec2.vpc_id.clone(),
            subnet_id: ec2.subnet_id.clone(),
            instance_id: ec2.instance_id.clone(),
            security_groups: ec2.security_groups.join(","),
            description: ec2.description.clone(),
        });
        tracing::debug!(interface_id = id, interface_type = %ec2.interface_type, intermediate,
            addresses = ec2.addresses.len(), "Described");
    }
}

/// `[ec2]` with the S3 source: one [`Ec2Facts`] per region, the region an
/// object's key names (`AWSLogs/<account>/vpcflowlogs/<region>/`), with
/// the exporter's own credentials. An interface of another account is not
/// found there (EC2 answers an empty list for it): it keeps the account and
/// region its key names, and the addresses its records teach.
pub struct Ec2ByRegion {
    clients: AwsClients,
    endpoint_url: Option<String>,
    refresh_interval: Duration,
    configured: Arc<HashMap<String, InterfaceConfig>>,
    metrics: Arc<Metrics>,
    sessions: Arc<SessionLog>,
    /// A few dozen at most: AWS's regions.
    regions: HashMap<String, Ec2Facts<AwsEc2Api>>,
}

impl Ec2ByRegion {
    /// `s3_endpoint_url`: the `[s3] endpoint_url`, which (as the
    /// CloudWatch one) EC2 never takes.
    pub fn new(
        config: &Ec2Config,
        s3_endpoint_url: Option<String>,
        configured: Arc<HashMap<String, InterfaceConfig>>,
        metrics: Arc<Metrics>,
        sessions: Arc<SessionLog>,
    ) -> Ec2ByRegion {
        metrics.expect_operations(&[DESCRIBE_NETWORK_INTERFACES]);
        Ec2ByRegion {
            clients: AwsClients::new(
                s3_endpoint_url,
                EC2_ATTEMPT_TIMEOUT,
                Arc::new(ApiMetrics(metrics.clone())),
            ),
            endpoint_url: config.endpoint_url.clone(),
            refresh_interval: config.refresh_interval,
            configured,
            metrics,
            sessions,
            regions: HashMap::new(),
        }
    }

    /// Describes `interfaces` of `region` as [`Ec2Facts::update`] does.
    pub async fn update(&mut self, region: &str, interfaces: &[&str], pipeline: &mut Pipeline) {
        let facts = match self.regions.entry(region.to_string()) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => {
                let access = Access {
                    region: Some(region.to_string()),
                    role: None,
                };
                let api = self
                    .clients
                    .ec2_client(&access, self.endpoint_url.as_deref())
                    .await;
                new.insert(Ec2Facts::new(
                    api,
                    region.to_string(),
                    self.refresh_interval,
                    Arc::clone(&self.configured),
                    self.metrics.clone(),
                    self.sessions.clone(),
                ))
            }
        };
        facts.update(interfaces, pipeline).await;
    }
}

/// Only Logs clients use the clients' attempt timeout; EC2's are the SDK's.
const EC2_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RingSizes;
    use crate::flow::{FormatChoice, Settings, Summary};
    use crate::source::ec2::ApiError;

    /// EC2 in memory: what it describes, and the calls it was asked.
    struct MemoryEc2 {
        interfaces: Vec<InterfaceDescription>,
        calls: std::sync::Mutex<Vec<Vec<String>>>,
        fail: bool,
    }

    impl Ec2Api for MemoryEc2 {
        async fn describe_interfaces(
            &self,
            ids: &[String],
        ) -> Result<Vec<InterfaceDescription>, ApiError> {
            self.calls.lock().unwrap().push(ids.to_vec());
            if self.fail {
                return Err(ApiError::Fatal {
                    operation: DESCRIBE_NETWORK_INTERFACES,
                    message: "UnauthorizedOperation".into(),
                });
            }
            Ok(self
                .interfaces
                .iter()
                .filter(|i| ids.contains(&i.interface_id))
                .cloned()
                .collect())
        }
    }

    fn interface(id: &str, interface_type: &str, address: &str) -> InterfaceDescription {
        InterfaceDescription {
            interface_id: id.into(),
            interface_type: interface_type.into(),
            name: Some(format!("tag-{id}")),
            description: format!("Primary network interface of {id}"),
            addresses: vec![address.parse().unwrap()],
            ..Default::default()
        }
    }

    fn ec2_facts(
        ec2: MemoryEc2,
        configured: HashMap<String, InterfaceConfig>,
    ) -> (Ec2Facts<MemoryEc2>, Arc<Metrics>, Arc<SessionLog>) {
        let metrics = Arc::new(Metrics::new());
        let sessions = Arc::new(SessionLog::new(RingSizes {
            per_verdict: 10,
            accepted: 0,
        }));
        let facts = Ec2Facts::new(
            ec2,
            "eu-west-1".into(),
            Duration::from_secs(600),
            Arc::new(configured),
            metrics.clone(),
            sessions.clone(),
        );
        (facts, metrics, sessions)
    }

    fn pipeline() -> Pipeline {
        let settings = Settings {
            reply_grace: 60,
            session_idle_timeout: 600,
            ..Settings::default()
        };
        Pipeline::new(
            FormatChoice::Auto,
            settings,
            HashMap::new(),
            Default::default(),
        )
    }

    fn run<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn a_nat_gateway_is_intermediate_by_type() {
        let ec2 = MemoryEc2 {
            interfaces: vec![
                interface("eni-0a7", "nat_gateway", "10.0.0.7"),
                interface("eni-0b8", "interface", "10.0.0.8"),
            ],
            calls: Default::default(),
            fail: false,
        };
        let (mut facts, _, _) = ec2_facts(ec2, HashMap::new());
        let mut pipeline = pipeline();
        run(facts.update(&["eni-0a7", "eni-0b8"], &mut pipeline));
        assert_eq!(facts.api.calls.lock().unwrap().len(), 1, "one batched call");
        let mut summary = Summary::new(pipeline.correlator().service_ports().clone(), false);
        // A lone ACCEPT into each: no reply seen. Its instance-id is set, so
        // the records alone would not mark the NAT gateway intermediate.
        for eni in ["eni-0a7", "eni-0b8"] {
            let line = format!(
                "2 123456789012 {eni} 198.51.100.1 10.0.0.7 40000 443 6 1 60 1000 1010 ACCEPT OK"
            );
            pipeline.push_line(line.as_bytes(), None, &mut summary);
        }
        pipeline.finish(&mut summary);
        assert_eq!(summary.by_interface.get("eni-0a7").map(|c| c.total()), None);
        assert_eq!(summary.by_interface["eni-0b8"].unanswered, 1);
    }

    #[test]
    fn configured_names_win_and_failures_wait_for_the_next_refresh() {
        let ec2 = MemoryEc2 {
            interfaces: vec![interface("eni-0c9", "interface", "10.0.0.9")],
            calls: Default::default(),
            fail: false,
        };
        let configured = HashMap::from([(
            "eni-0c9".to_string(),
            InterfaceConfig {
                name: Some("bastion".into()),
                ..Default::default()
            },
        )]);
        let (mut facts, metrics, sessions) = ec2_facts(ec2, configured);
        let mut pipeline = pipeline();
        run(facts.update(&["eni-0c9"], &mut pipeline));
        run(facts.update(&["eni-0c9"], &mut pipeline));
        assert_eq!(
            facts.api.calls.lock().unwrap().len(),
            1,
            "cached until the refresh"
        );
        assert_eq!(sessions.names()["eni-0c9"], "bastion");
        let text = metrics.render();
        assert!(
            text.contains(r#"vpcflow_interface_info{account_id="",description="Primary network interface of eni-0c9",instance_id="",interface_id="eni-0c9",name="bastion",region="eu-west-1""#),
            "{text}"
        );

        let failing = MemoryEc2 {
            interfaces: vec![],
            calls: Default::default(),
            fail: true,
        };
        let (mut facts, metrics, _) = ec2_facts(failing, HashMap::new());
        run(facts.update(&["eni-0d1"], &mut pipeline));
        run(facts.update(&["eni-0d1", "eni-0d2"], &mut pipeline));
        assert_eq!(
            facts.api.calls.lock().unwrap().len(),
            1,
            "tried again at the next refresh"
        );
        assert!(metrics.render().contains(
            r#"vpcflow_api_calls_total{operation="DescribeNetworkInterfaces",outcome="error"} 1"#
        ));
    }
}

//! [`Ec2Api`] over the AWS SDK (`aws-sdk-ec2`).

use std::net::IpAddr;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, NetworkInterface};

use super::{
    ApiError, DESCRIBE_NETWORK_INTERFACES, Ec2Api, InterfaceDescription, MAX_INTERFACES_PER_CALL,
    type_label,
};
use crate::source::cloudwatch::retry::from_sdk_error;

/// Facts are refreshed every few minutes: a short budget per call, so a
/// denied or unreachable EC2 never holds the polls up for long.
const MAX_ATTEMPTS: u32 = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

/// EC2 through the AWS SDK; cheap to clone.
#[derive(Clone)]
pub struct AwsEc2Api {
    client: Client,
}

impl std::fmt::Debug for AwsEc2Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's config holds credentials: never print it.
        f.debug_struct("AwsEc2Api").finish_non_exhaustive()
    }
}

impl AwsEc2Api {
    /// With the region and credentials of `config` (a log group's, see
    /// `aws_clients`) and a shorter retry and time budget than the Logs
    /// calls. `endpoint_url` replaces EC2's endpoint; without it the SDK's
    /// own endpoint settings apply (`AWS_ENDPOINT_URL_EC2`, then the
    /// config's endpoint, `AWS_ENDPOINT_URL`, the profile's `services`).
    pub fn from_config(config: &SdkConfig, endpoint_url: Option<&str>) -> Self {
        let mut builder = aws_sdk_ec2::config::Builder::from(config)
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            );
        if let Some(url) = endpoint_url {
            builder = builder.endpoint_url(url);
        }
        AwsEc2Api {
            client: Client::from_conf(builder.build()),
        }
    }

    /// The region the client calls, as the config chain resolved it.
    pub fn region(&self) -> Option<String> {
        self.client.config().region().map(ToString::to_string)
    }
}

impl Ec2Api for AwsEc2Api {
    async fn describe_interfaces(
        &self,
        interface_ids: &[String],
    ) -> Result<Vec<InterfaceDescription>, ApiError> {
        debug_assert!(interface_ids.len() <= MAX_INTERFACES_PER_CALL);
        // A filter, not NetworkInterfaceIds: an id that no longer exists
        // is left out instead of failing the whole call.
        let filter = Filter::builder()
            .name("network-interface-id")
            .set_values(Some(interface_ids.to_vec()))
            .build();
        let mut found = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let output = self
                .client
                .describe_network_interfaces()
                .filters(filter.clone())
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|error| from_sdk_error(DESCRIBE_NETWORK_INTERFACES, &error))?;
            found.extend(output.network_interfaces().iter().map(describe));
            match output.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
                _ => return Ok(found),
            }
        }
    }
}

fn describe(interface: &NetworkInterface) -> InterfaceDescription {
    let text = |value: Option<&str>| value.unwrap_or_default().to_string();
    let mut addresses: Vec<IpAddr> = Vec::new();
    let mut add = |address: Option<&str>| {
        if let Some(address) = address.and_then(|a| a.parse().ok())
            && !addresses.contains(&address)
        {
            addresses.push(address);
        }
    };
    add(interface.private_ip_address());
    add(interface.association().and_then(|a| a.public_ip()));
    for private in interface.private_ip_addresses() {
        add(private.private_ip_address());
        add(private.association().and_then(|a| a.public_ip()));
    }
    for ipv6 in interface.ipv6_addresses() {
        add(ipv6.ipv6_address());
    }
    let mut security_groups: Vec<String> = interface
        .groups()
        .iter()
        .filter_map(|group| group.group_id().map(str::to_string))
        .collect();
    security_groups.sort();
    let name = interface
        .tag_set()
        .iter()
        .find(|tag| tag.key() == Some("Name"))
        .and_then(|tag| tag.value())
        .filter(|name| !name.is_empty())
        .map(str::to_string);
    InterfaceDescription {
        interface_id: text(interface.network_interface_id()),
        interface_type: interface
            .interface_type()
            .map_or_else(|| "interface".to_string(), |t| type_label(t.as_str())),
        description: text(interface.description()),
        account_id: text(interface.owner_id()),
        vpc_id: text(interface.vpc_id()),
        subnet_id: text(interface.subnet_id()),
        instance_id: text(interface.attachment().and_then(|a| a.instance_id())),
        security_groups,
        name,
        addresses,
    }
}

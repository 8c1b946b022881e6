//! Facts about network interfaces from EC2 (`DescribeNetworkInterfaces`):
//! their own addresses (so direction is exact from the first record), their
//! type (NAT and transit gateways are intermediate by type, not inferred),
//! and what people call them (the `Name` tag, VPC, subnet, instance,
//! security groups) for `vpcflow_interface_info` and the landing page.
//!
//! [`Ec2Api`] is the narrow trait, in our own types; [`AwsEc2Api`] is the
//! trait over the AWS SDK. Errors are the CloudWatch source's [`ApiError`],
//! classified by the same rule.

#[cfg(feature = "aws")]
mod aws;

use std::future::Future;
use std::net::IpAddr;

#[cfg(feature = "aws")]
pub use aws::AwsEc2Api;

pub use crate::source::cloudwatch::ApiError;

/// The operation label in `vpcflow_api_calls_total`.
pub const DESCRIBE_NETWORK_INTERFACES: &str = "DescribeNetworkInterfaces";

/// Interface ids per `DescribeNetworkInterfaces` call: EC2 takes at most
/// 200 values in one filter.
pub const MAX_INTERFACES_PER_CALL: usize = 200;

/// One network interface as EC2 describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceDescription {
    pub interface_id: String,
    /// EC2's `InterfaceType` in snake case: `interface`, `nat_gateway`,
    /// `transit_gateway`, `vpc_endpoint`, `lambda`, …
    pub interface_type: String,
    pub description: String,
    /// The owner account.
    pub account_id: String,
    pub vpc_id: String,
    pub subnet_id: String,
    /// The attached instance, empty when none.
    pub instance_id: String,
    /// Security group ids, sorted.
    pub security_groups: Vec<String>,
    /// The `Name` tag.
    pub name: Option<String>,
    /// Private IPv4, their public (Elastic) IPv4 and IPv6 addresses: every
    /// address the interface's records can show as its own.
    pub addresses: Vec<IpAddr>,
}

impl InterfaceDescription {
    /// Interfaces that carry traffic for others, whose replies may leave by
    /// another interface (DESIGN: intermediate interfaces).
    pub fn is_intermediate(&self) -> bool {
        INTERMEDIATE_TYPES.contains(&self.interface_type.as_str())
    }
}

/// Interface types whose traffic is forwarded for others.
const INTERMEDIATE_TYPES: [&str; 4] = [
    "nat_gateway",
    "transit_gateway",
    "gateway_load_balancer",
    "gateway_load_balancer_endpoint",
];

/// EC2 spells some types in camel case (`natGateway`): one spelling for labels.
pub fn type_label(ec2_type: &str) -> String {
    let mut label = String::with_capacity(ec2_type.len() + 4);
    for c in ec2_type.chars() {
        if c.is_ascii_uppercase() {
            label.push('_');
            label.push(c.to_ascii_lowercase());
        } else if c == '-' {
            label.push('_');
        } else {
            label.push(c);
        }
    }
    label
}

/// What the exporter needs from EC2.
pub trait Ec2Api {
    /// The interfaces among `interface_ids` (at most
    /// [`MAX_INTERFACES_PER_CALL`]) that exist; unknown ids are left out.
    fn describe_interfaces(
        &self,
        interface_ids: &[String],
    ) -> impl Future<Output = Result<Vec<InterfaceDescription>, ApiError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_labels_are_snake_case() {
        assert_eq!(type_label("natGateway"), "nat_gateway");
        assert_eq!(type_label("transit_gateway"), "transit_gateway");
        assert_eq!(type_label("interface"), "interface");
        assert_eq!(
            type_label("gateway_load_balancer_endpoint"),
            "gateway_load_balancer_endpoint"
        );
    }

    #[test]
    fn gateways_are_intermediate_by_type() {
        let of = |interface_type: &str| InterfaceDescription {
            interface_type: interface_type.into(),
            ..Default::default()
        };
        assert!(of("nat_gateway").is_intermediate());
        assert!(of("transit_gateway").is_intermediate());
        assert!(!of("interface").is_intermediate());
        assert!(!of("lambda").is_intermediate());
    }
}

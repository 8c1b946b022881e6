//! What correlation is told rather than shown: its timings, the service
//! ports, and what configuration knows about an interface.

use std::net::IpAddr;

/// Correlation settings, in seconds of event time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How long a lone record waits for its other direction.
    pub reply_grace: u64,
    /// A session whose last record ended this long before the watermark is closed.
    pub session_idle_timeout: u64,
    /// Ports that identify the responder, besides every port below 1024.
    pub service_ports: Vec<u16>,
    /// Sessions held at most, over all interfaces of one correlator (in
    /// `serve`, one per CloudWatch log group): memory bound. Past it,
    /// decided sessions are dropped first, then the oldest pending ones are
    /// decided early.
    pub max_open_sessions: usize,
    /// Decided sessions that wait for their interface's local address, at
    /// most, per interface; past it the oldest is reported with DESIGN's
    /// fallback. 0: never wait.
    pub max_awaiting_address: usize,
    /// How long (event time) a decided session waits for its interface's
    /// local address before the fallback decides its direction; `None`:
    /// until the end of input (offline, where the whole input teaches).
    pub address_wait: Option<u64>,
}

/// Two 1-minute capture intervals: a reply sits in its request's capture
/// window or the next.
pub const DEFAULT_REPLY_GRACE_SECONDS: u64 = 120;
pub const DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS: u64 = 600;
/// SSH, HTTP, HTTPS, RDP, PostgreSQL; every port below 1024 counts too.
pub const DEFAULT_SERVICE_PORTS: [u16; 5] = [22, 80, 443, 3389, 5432];
/// About 115 MB at full use (see README, "A flood").
pub const DEFAULT_MAX_OPEN_SESSIONS: usize = 1_000_000;
/// A busy interface learns its address from its first few records; one
/// that talks to a single peer waits at most this many sessions.
pub const DEFAULT_MAX_AWAITING_ADDRESS: usize = 1_000;
/// The exporter's wait for a local address: a single-peer interface's
/// sessions reach the dashboard this much later, with the fallback.
pub const DEFAULT_ADDRESS_WAIT_SECONDS: u64 = 300;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            reply_grace: DEFAULT_REPLY_GRACE_SECONDS,
            session_idle_timeout: DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS,
            service_ports: DEFAULT_SERVICE_PORTS.to_vec(),
            max_open_sessions: DEFAULT_MAX_OPEN_SESSIONS,
            max_awaiting_address: DEFAULT_MAX_AWAITING_ADDRESS,
            address_wait: None,
        }
    }
}

/// What configuration knows about an interface that its records may not tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceFacts {
    pub addresses: Vec<IpAddr>,
    pub intermediate: bool,
}

/// Membership of ports in the "service port" set, in constant time.
#[derive(Debug, Clone)]
pub struct ServicePorts {
    bits: Vec<u64>,
}

impl ServicePorts {
    pub fn new(configured: &[u16]) -> ServicePorts {
        let mut bits = vec![0u64; 1024];
        for port in (0..1024u16).chain(configured.iter().copied()) {
            bits[usize::from(port) / 64] |= 1 << (port % 64);
        }
        ServicePorts { bits }
    }

    pub fn contains(&self, port: u16) -> bool {
        self.bits[usize::from(port) / 64] & (1 << (port % 64)) != 0
    }

    /// The `port` label of a responder port: the port when it is a service
    /// port, else `other` (ephemeral ports are unbounded).
    pub fn label(&self, port: u16) -> String {
        if self.contains(port) {
            port.to_string()
        } else {
            "other".to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ports_include_everything_below_1024_and_the_configured() {
        let ports = ServicePorts::new(&[5432, 65535]);
        assert!(ports.contains(0));
        assert!(ports.contains(1023));
        assert!(!ports.contains(1024));
        assert!(ports.contains(5432));
        assert!(ports.contains(65535));
        assert!(!ports.contains(65534));
    }
}

//! Addresses as the core keeps them, and what an interface knows of its own.
//!
//! The local address of an interface comes from configuration when it
//! names one of the family, else it is learned from the records: the one
//! address that is on one side of every record (DESIGN.md, "Sessions").

use std::net::{IpAddr, Ipv6Addr};

/// Addresses are kept as 128-bit numbers (IPv4 mapped into IPv6): cheap to hash.
pub(crate) type Addr = u128;

pub(crate) fn to_addr(ip: IpAddr) -> Addr {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

pub(crate) fn to_ip(addr: Addr) -> IpAddr {
    Ipv6Addr::from(addr).to_canonical()
}

/// 0 for IPv4, 1 for IPv6.
pub(crate) fn family(addr: Addr) -> usize {
    usize::from(addr >> 32 != 0xffff)
}

/// The local address of an interface as learned from its records: the one
/// address (per family) that is on one side of every record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum LearnedAddress {
    #[default]
    Unknown,
    /// An interface that so far talked to one peer: either could be local.
    EitherOf(Addr, Addr),
    Local(Addr),
    /// No single address is on every record (several local addresses).
    None,
}

impl LearnedAddress {
    /// Learns from one record's two addresses; returns whether that
    /// changed what is known.
    fn observe(&mut self, a: Addr, b: Addr) -> bool {
        let on_record = |x: Addr| x == a || x == b;
        let before = *self;
        *self = match *self {
            LearnedAddress::Unknown if a == b => LearnedAddress::Local(a),
            LearnedAddress::Unknown => LearnedAddress::EitherOf(a, b),
            LearnedAddress::EitherOf(x, y) => match (on_record(x), on_record(y)) {
                (true, true) => LearnedAddress::EitherOf(x, y),
                (true, false) => LearnedAddress::Local(x),
                (false, true) => LearnedAddress::Local(y),
                (false, false) => LearnedAddress::None,
            },
            LearnedAddress::Local(x) if on_record(x) => LearnedAddress::Local(x),
            LearnedAddress::Local(_) | LearnedAddress::None => LearnedAddress::None,
        };
        *self != before
    }
}

/// What an interface knows of its own addresses: configured, else learned.
#[derive(Debug, Clone, Default)]
pub(crate) struct LocalAddresses {
    configured: Vec<Addr>,
    learned: [LearnedAddress; 2],
}

impl LocalAddresses {
    pub(crate) fn new(configured: &[IpAddr]) -> LocalAddresses {
        LocalAddresses {
            configured: configured.iter().copied().map(to_addr).collect(),
            learned: Default::default(),
        }
    }

    /// Addresses learned while running (EC2 facts): they replace the
    /// configured ones; what the records taught is kept.
    pub(crate) fn set_configured(&mut self, configured: &[IpAddr]) {
        self.configured = configured.iter().copied().map(to_addr).collect();
    }

    /// Learns from one record's source and destination; returns whether
    /// that changed what the records said (checked for every record: one
    /// family's answer compared, not a copy of both).
    pub(crate) fn observe(&mut self, src: Addr, dst: Addr) -> bool {
        family(src) == family(dst) && self.learned[family(src)].observe(src, dst)
    }

    /// What the records said, IPv4 then IPv6.
    pub(crate) fn learned(&self) -> [LearnedAddress; 2] {
        self.learned
    }

    pub(crate) fn set_learned(&mut self, learned: [LearnedAddress; 2]) {
        self.learned = learned;
    }

    /// Whether later records of the family may still single out the local
    /// address: nothing configured for it, and what the records said so far
    /// still leaves one or two candidates.
    pub(crate) fn may_learn(&self, family: usize) -> bool {
        let configured = self.configured.iter().any(|a| self::family(*a) == family);
        !configured
            && matches!(
                self.learned[family],
                LearnedAddress::Unknown | LearnedAddress::EitherOf(..)
            )
    }

    /// Whether `addr` is the interface's own, when that can be told.
    pub(crate) fn is_local(&self, addr: Addr) -> Option<bool> {
        let family = family(addr);
        let mut configured = self
            .configured
            .iter()
            .filter(|a| self::family(**a) == family)
            .peekable();
        if configured.peek().is_some() {
            return Some(configured.any(|a| *a == addr));
        }
        match self.learned[family] {
            LearnedAddress::Local(local) => Some(local == addr),
            _ => None,
        }
    }
}

//! What was counted: S3 delivers at least once, so a redelivered SQS message
//! or a re-notified object (same bucket, key and ETag or version) must not be
//! counted twice. Entries are kept for at least the queue's retention (14
//! days at most in SQS) and at most `capacity` of them; memory is about 40
//! bytes an entry (a 128-bit digest and a time), not the key.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};

/// SQS keeps a message at most 14 days: a redelivery comes within that.
pub const RETENTION_SECONDS: u64 = 14 * 24 * 3600;
/// 100 objects every 5 minutes for 14 days is 403,200: room for 2.5 times that.
pub const DEFAULT_CAPACITY: usize = 1_000_000;

/// Objects counted, oldest first.
#[derive(Debug)]
pub struct Seen {
    digests: HashSet<u128>,
    order: VecDeque<(u64, u128)>,
    capacity: usize,
    retention: u64,
}

impl Seen {
    pub fn new(capacity: usize, retention: u64) -> Seen {
        Seen {
            digests: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            retention,
        }
    }

    pub fn contains(&self, identity: &str) -> bool {
        self.digests.contains(&digest(identity))
    }

    /// Notes an object counted at `now` (Unix seconds); forgets what is
    /// older than the retention, and the oldest when full.
    pub fn insert(&mut self, identity: &str, now: u64) {
        while let Some((time, digest)) = self.order.front().copied() {
            let expired = time.saturating_add(self.retention) < now;
            if !expired && self.order.len() < self.capacity {
                break;
            }
            self.order.pop_front();
            self.digests.remove(&digest);
        }
        let digest = digest(identity);
        if self.digests.insert(digest) {
            self.order.push_back((now, digest));
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// Two independently seeded 64-bit hashes: a collision (an object taken
/// for one already counted) needs 2^64 objects to become likely.
fn digest(identity: &str) -> u128 {
    let half = |seed: u64| {
        let mut hasher = foldhash::quality::FixedState::with_seed(seed).build_hasher();
        hasher.write(identity.as_bytes());
        hasher.finish()
    };
    (u128::from(half(0x5eed_0001)) << 64) | u128::from(half(0x5eed_0002))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_retention_and_capacity() {
        let mut seen = Seen::new(3, 100);
        seen.insert("a", 0);
        seen.insert("a", 1);
        assert_eq!(seen.len(), 1);
        seen.insert("b", 10);
        seen.insert("c", 20);
        assert!(seen.contains("a") && seen.contains("b") && seen.contains("c"));
        // Full: the oldest goes.
        seen.insert("d", 30);
        assert!(!seen.contains("a"));
        assert!(seen.contains("d"));
        // Past the retention: forgotten.
        seen.insert("e", 125);
        assert!(!seen.contains("b") && !seen.contains("c"));
        assert!(seen.contains("d") && seen.contains("e"));
    }
}

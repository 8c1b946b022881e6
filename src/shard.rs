//! Which replica reads which interface: rendezvous (highest random weight)
//! hashing of the interface id over `[shard] count` replicas. Pure, no
//! coordination: every replica computes the same owner for every interface
//! from the id and the count alone.
//!
//! Rendezvous hashing scores each (interface, replica) pair and gives the
//! interface to the replica with the highest score. Going from `n` to `n + 1`
//! replicas moves only the interfaces whose new top score is replica `n`'s,
//! about `1 / (n + 1)` of them, and none between the old replicas; going
//! down moves only the removed replica's interfaces.
//!
//! The hash is fixed (FNV-1a over the id, then the SplitMix64 finaliser),
//! written out here rather than taken from a hashing crate: the assignment
//! must stay the same across processes, hosts and versions of the exporter
//! (a rolling upgrade runs two versions side by side), which neither
//! `RandomState` nor crates that reserve the right to change their output
//! promise. `owner_is_fixed_across_versions` pins it.

/// This replica's part: `index` of `count`, `index < count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// The whole: one replica reads everything.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// `None` unless `index < count`.
    pub fn new(index: usize, count: usize) -> Option<Shard> {
        (index < count).then_some(Shard { index, count })
    }

    pub fn index(self) -> usize {
        self.index
    }

    pub fn count(self) -> usize {
        self.count
    }

    /// Whether this replica reads `interface_id`.
    pub fn owns(self, interface_id: &str) -> bool {
        self.count == 1 || owner(interface_id, self.count) == self.index
    }
}

/// The replica, of `count`, that reads `interface_id`.
pub fn owner(interface_id: &str, count: usize) -> usize {
    let key = fnv1a(interface_id.as_bytes());
    (0..count)
        .max_by_key(|replica| score(key, *replica as u64))
        .unwrap_or(0)
}

/// The weight of one (interface, replica) pair; ties are broken by the
/// larger replica number (`max_by_key` keeps the last maximum), the same way
/// everywhere.
fn score(key: u64, replica: u64) -> u64 {
    splitmix64(key ^ splitmix64(replica.wrapping_add(1)))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

/// The SplitMix64 finaliser: spreads FNV's weak low bits over all 64.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn interface(n: u64) -> String {
        format!("eni-{n:017x}")
    }

    #[test]
    fn owner_is_fixed_across_versions() {
        // Computed by a separate Python implementation of the same hash.
        // Changing these changes which replica reads what on every fleet:
        // a rolling upgrade would double-count or miss interfaces.
        let owners: Vec<usize> = (0..8).map(|n| owner(&interface(n), 3)).collect();
        assert_eq!(owners, [0, 2, 1, 1, 1, 1, 0, 1]);
        assert_eq!(owner("eni-0123456789abcdef0", 2), 0);
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn exactly_one_replica_owns_each_interface() {
        for count in 1..6 {
            for n in 0..200 {
                let id = interface(n);
                let owners = (0..count)
                    .filter(|index| Shard::new(*index, count).unwrap().owns(&id))
                    .count();
                assert_eq!(owners, 1, "{id} of {count}");
            }
        }
        assert_eq!(Shard::new(2, 2), None);
        assert!(Shard::ALL.owns("eni-0"));
    }

    #[test]
    fn replicas_get_even_shares() {
        let ids: Vec<String> = (0..10_000).map(interface).collect();
        for count in [2, 3, 7] {
            let mut shares = vec![0usize; count];
            for id in &ids {
                shares[owner(id, count)] += 1;
            }
            let fair = ids.len() / count;
            for share in shares {
                assert!(
                    share.abs_diff(fair) < fair / 10,
                    "{count}: {share} vs {fair}"
                );
            }
        }
    }

    proptest! {
        /// Adding a replica moves only the interfaces it takes (about
        /// 1/(count + 1) of them) and none between the others.
        #[test]
        fn a_new_replica_moves_only_its_own_share(count in 1usize..12, seed in any::<u64>()) {
            let ids: Vec<String> = (0..2_000u64).map(|n| interface(n ^ seed)).collect();
            let mut moved = 0;
            for id in &ids {
                let before = owner(id, count);
                let after = owner(id, count + 1);
                if before != after {
                    prop_assert_eq!(after, count, "{} moved between old replicas", id);
                    moved += 1;
                }
            }
            let expected = ids.len() as f64 / (count + 1) as f64;
            prop_assert!((moved as f64 - expected).abs() < expected * 0.25 + 20.0,
                "{moved} moved, expected about {expected}");
        }
    }
}

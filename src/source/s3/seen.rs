//! What was counted: S3 delivers at least once, so a redelivered SQS message
//! or a re-notified object (same bucket, key and ETag or version) must not be
//! counted twice. Entries are kept for at least the queue's retention (14
//! days at most in SQS) and at most `capacity` of them; memory is about 40
//! bytes an entry (a 128-bit digest and a time), not the key.
//!
//! With `[state]` the entries outlive the process. Rewriting all of them
//! (up to a million) for every object would cost megabytes a write, so a
//! checkpoint carries only the entries noted since the last full copy
//! ([`Seen::entries_since`] a [`Mark`]), and the full copy is rewritten
//! now and then ([`Seen::needs_full_copy`]). Entries are written compactly
//! ([`encode`]: base64 of 24 bytes each).

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// SQS keeps a message at most 14 days: a redelivery comes within that.
pub const RETENTION_SECONDS: u64 = 14 * 24 * 3600;
/// 100 objects every 5 minutes for 14 days is 403,200: room for 2.5 times that.
pub const DEFAULT_CAPACITY: usize = 1_000_000;

/// Entries noted since the last full copy beyond this many: time for a new one.
const FULL_COPY_AFTER: u64 = 4096;

/// One remembered object: when it was counted (Unix seconds) and its digest.
pub type Entry = (u64, u128);

/// A point in the sequence of insertions (see [`Seen::entries_since`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mark(u64);

/// Objects counted, oldest first.
#[derive(Debug)]
pub struct Seen {
    digests: HashSet<u128>,
    order: VecDeque<Entry>,
    capacity: usize,
    retention: u64,
    /// Entries ever inserted: what [`Mark`]s count.
    inserted: u64,
}

impl Seen {
    pub fn new(capacity: usize, retention: u64) -> Seen {
        Seen {
            digests: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            retention,
            inserted: 0,
        }
    }

    pub fn contains(&self, identity: &str) -> bool {
        self.digests.contains(&digest(identity))
    }

    /// Notes an object counted at `now` (Unix seconds); forgets what is
    /// older than the retention, and the oldest when full.
    pub fn insert(&mut self, identity: &str, now: u64) {
        self.insert_entry((now, digest(identity)));
    }

    fn insert_entry(&mut self, (now, digest): Entry) {
        while let Some((time, digest)) = self.order.front().copied() {
            let expired = time.saturating_add(self.retention) < now;
            if !expired && self.order.len() < self.capacity {
                break;
            }
            self.order.pop_front();
            self.digests.remove(&digest);
        }
        if self.digests.insert(digest) {
            self.order.push_back((now, digest));
            self.inserted += 1;
        }
    }

    /// The current point, for a later [`Seen::entries_since`].
    pub fn mark(&self) -> Mark {
        Mark(self.inserted)
    }

    /// Every entry still remembered, oldest first (a full copy).
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.order.iter().copied()
    }

    /// The entries inserted after `mark` and still remembered, oldest
    /// first: the newest are at the back, and forgetting takes the oldest.
    pub fn entries_since(&self, mark: Mark) -> impl Iterator<Item = Entry> + '_ {
        let newer = usize::try_from(self.inserted.saturating_sub(mark.0)).unwrap_or(usize::MAX);
        self.order
            .iter()
            .skip(self.order.len().saturating_sub(newer))
            .copied()
    }

    /// Whether so much was inserted since `mark` that a new full copy pays.
    pub fn needs_full_copy(&self, mark: Mark) -> bool {
        self.inserted.saturating_sub(mark.0) > FULL_COPY_AFTER
    }

    /// Takes back entries of a checkpoint, oldest first; those already
    /// known are skipped, the retention and capacity hold as for inserts.
    pub fn restore(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for entry in entries {
            if !self.digests.contains(&entry.1) {
                self.insert_entry(entry);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// Entries as base64 of 24 little-endian bytes each (time, digest): a
/// third of their size as JSON numbers.
pub fn encode(entries: impl Iterator<Item = Entry>) -> String {
    let mut bytes = Vec::new();
    for (time, digest) in entries {
        bytes.extend_from_slice(&time.to_le_bytes());
        bytes.extend_from_slice(&digest.to_le_bytes());
    }
    STANDARD.encode(bytes)
}

/// The inverse of [`encode`]; `None` when `text` is not what it writes.
pub fn decode(text: &str) -> Option<Vec<Entry>> {
    let bytes = STANDARD.decode(text).ok()?;
    if bytes.len() % 24 != 0 {
        return None;
    }
    let entries = bytes
        .chunks_exact(24)
        .map(|chunk| {
            let (time, digest) = chunk.split_at(8);
            (
                u64::from_le_bytes(time.try_into().unwrap_or_default()),
                u128::from_le_bytes(digest.try_into().unwrap_or_default()),
            )
        })
        .collect();
    Some(entries)
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

    #[test]
    fn a_full_copy_and_the_entries_since_restore_everything() {
        let mut seen = Seen::new(100, 1000);
        seen.insert("a", 1);
        seen.insert("b", 2);
        let full = encode(seen.entries());
        let mark = seen.mark();
        seen.insert("c", 3);
        seen.insert("c", 4);
        let since = encode(seen.entries_since(mark));
        assert_eq!(decode(&since).unwrap(), vec![(3, digest("c"))]);

        let mut restored = Seen::new(100, 1000);
        restored.restore(decode(&full).unwrap());
        restored.restore(decode(&since).unwrap());
        assert!(["a", "b", "c"].iter().all(|key| restored.contains(key)));
        assert_eq!(restored.len(), 3);
        // A delta written before a newer full copy repeats part of it.
        restored.restore(decode(&full).unwrap());
        assert_eq!(restored.len(), 3);
        assert!(!seen.needs_full_copy(mark));
        assert_eq!(decode("not base64!"), None);
        assert_eq!(decode(&STANDARD.encode([0u8; 23])), None);
    }

    #[test]
    fn entries_since_a_mark_survive_forgetting() {
        let mut seen = Seen::new(2, 1000);
        let mark = seen.mark();
        seen.insert("a", 1);
        seen.insert("b", 2);
        seen.insert("c", 3);
        // "a" was forgotten (capacity 2): only what is remembered remains.
        let since: Vec<Entry> = seen.entries_since(mark).collect();
        assert_eq!(since, vec![(2, digest("b")), (3, digest("c"))]);
    }
}

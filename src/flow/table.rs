//! The table of open sessions, with no heap allocation per session: the
//! sessions in one vector (vacant slots reused through a free list threaded
//! through them), an index from key to slot of 4 bytes a session (the key
//! lives in the session), the two orders of eviction threaded through the
//! sessions, and each interface's deadlines.
//!
//! A session whose two addresses are IPv4 holds them in 8 bytes; any other
//! keeps its pair of 128-bit addresses in a side vector, so the common case
//! pays nothing for IPv6 (issue 12: at most 128 bytes an open session).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;
use std::ops::{Index, IndexMut};

use hashbrown::HashTable;

use super::address::Addr;
use super::session::{NONE, Session, SessionKey};

pub(crate) struct Sessions {
    slots: Vec<Session>,
    /// Sessions held at most: what `slots` is reserved for.
    bound: usize,
    /// First vacant slot; each vacant slot's `next` is the one after.
    free: u32,
    len: usize,
    index: HashTable<u32>,
    hasher: KeyHasher,
    /// The addresses of the sessions that are not IPv4 on both ends.
    wide: Vec<(Addr, Addr)>,
    /// Vacant entries of `wide`.
    free_wide: Vec<u32>,
}

impl Sessions {
    /// A table that will hold at most `bound` sessions. Past
    /// [`RESERVE_FROM`] sessions the vector of sessions is reserved for all
    /// of them at once (address space only: pages become resident as slots
    /// are first used), so it never grows by copying; a table that stays
    /// small (a test, a scratch pipeline) reserves nothing.
    pub(crate) fn with_bound(bound: usize) -> Sessions {
        Sessions {
            slots: Vec::new(),
            bound,
            free: NONE,
            len: 0,
            index: HashTable::new(),
            hasher: KeyHasher::new(),
            wide: Vec::new(),
            free_wide: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Slots allocated, vacant ones included.
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The key of the session in `slot` (not vacant).
    pub(crate) fn key(&self, slot: usize) -> SessionKey {
        self.slots[slot].key_with(&self.wide)
    }

    pub(crate) fn find(&self, key: &SessionKey) -> Option<usize> {
        let hash = self.hasher.hash_one(*key);
        let Sessions { slots, wide, .. } = self;
        self.index
            .find(hash, |&slot| slots[slot as usize].key_with(wide) == *key)
            .map(|&slot| slot as usize)
    }

    /// Stores a session (generation not 0) under `key`, which must be new
    /// and the one it was made with.
    pub(crate) fn insert(&mut self, key: &SessionKey, mut session: Session) -> usize {
        debug_assert_ne!(session.generation, 0, "generation 0 marks a vacant slot");
        let hash = self.hasher.hash_one(*key);
        if session.is_wide() {
            let pair = (key.low.0, key.high.0);
            let entry = match self.free_wide.pop() {
                Some(entry) => {
                    self.wide[entry as usize] = pair;
                    entry
                }
                None => {
                    self.wide.push(pair);
                    (self.wide.len() - 1) as u32
                }
            };
            session.set_wide_entry(entry);
        }
        let slot = match self.free {
            NONE => {
                if self.slots.len() == RESERVE_FROM {
                    // When it fails, growing as needed is fine: the
                    // reservation only saves copies.
                    let _ = self
                        .slots
                        .try_reserve_exact(self.bound.saturating_sub(RESERVE_FROM));
                }
                self.slots.push(session);
                self.slots.len() - 1
            }
            free => {
                let slot = free as usize;
                self.free = self.slots[slot].next;
                self.slots[slot] = session;
                slot
            }
        };
        let Sessions {
            slots,
            index,
            hasher,
            wide,
            ..
        } = self;
        index.insert_unique(hash, slot as u32, |&slot| {
            hasher.hash_one(slots[slot as usize].key_with(wide))
        });
        self.len += 1;
        slot
    }

    /// Takes a session out, with its key; its slot becomes vacant.
    pub(crate) fn remove(&mut self, slot: usize) -> (Session, SessionKey) {
        let key = self.key(slot);
        let hash = self.hasher.hash_one(key);
        if let Ok(entry) = self.index.find_entry(hash, |&other| other as usize == slot) {
            entry.remove();
        }
        if let Some(entry) = self.slots[slot].wide_entry() {
            self.free_wide.push(entry);
        }
        let mut vacant = self.slots[slot].clone();
        vacant.generation = 0;
        vacant.next = self.free;
        self.free = slot as u32;
        self.len -= 1;
        (std::mem::replace(&mut self.slots[slot], vacant), key)
    }

    pub(crate) fn get(&self, slot: usize) -> Option<&Session> {
        self.slots
            .get(slot)
            .filter(|session| session.generation != 0)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &Session)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, session)| session.generation != 0)
    }

    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.index.clear();
        self.wide.clear();
        self.free_wide.clear();
        self.free = NONE;
        self.len = 0;
    }
}

/// Hashes keys for the index, at least once a record. Seeded at random for
/// each table: keys come from untrusted records (a scanner chooses its
/// source addresses and ports), so which keys collide must not be known in
/// advance, as it would be with a fixed seed and the source code at hand.
/// Nothing the table's order could show leaves it (sessions are visited in
/// slot order), so results never depend on the seed.
///
/// A key whose addresses are both IPv4 is three words: two folded
/// multiplications (foldhash's mixing step) with random seeds, a third of
/// what feeding the words through a `Hasher` cost; other keys go through
/// foldhash whole.
struct KeyHasher {
    seeds: [u64; 4],
    wide: foldhash::fast::RandomState,
}

impl KeyHasher {
    fn new() -> KeyHasher {
        let wide = foldhash::fast::RandomState::default();
        KeyHasher {
            seeds: std::array::from_fn(|index| wide.hash_one(index)),
            wide,
        }
    }

    fn hash_one(&self, key: SessionKey) -> u64 {
        let [s0, s1, s2, s3] = self.seeds;
        match key.ipv4_words() {
            Some([first, ports, addresses]) => {
                let mixed = folded_multiply(first ^ s0, addresses ^ s1);
                folded_multiply(mixed ^ s2, ports ^ s3)
            }
            None => self.wide.hash_one(key),
        }
    }
}

/// The 128-bit product of two words, its halves XOR-ed together.
fn folded_multiply(x: u64, y: u64) -> u64 {
    let full = u128::from(x) * u128::from(y);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Slots in use past which the table reserves its whole bound.
const RESERVE_FROM: usize = 4096;

impl Index<usize> for Sessions {
    type Output = Session;

    fn index(&self, slot: usize) -> &Session {
        let session = &self.slots[slot];
        debug_assert_ne!(session.generation, 0, "slot {slot} is vacant");
        session
    }
}

impl IndexMut<usize> for Sessions {
    fn index_mut(&mut self, slot: usize) -> &mut Session {
        let session = &mut self.slots[slot];
        debug_assert_ne!(session.generation, 0, "slot {slot} is vacant");
        session
    }
}

/// A list of sessions threaded through the table, oldest first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Order {
    pub(crate) head: u32,
    tail: u32,
}

impl Order {
    pub(crate) const EMPTY: Order = Order {
        head: NONE,
        tail: NONE,
    };

    pub(crate) fn push_back(&mut self, sessions: &mut Sessions, slot: u32) {
        let session = &mut sessions[slot as usize];
        session.prev = self.tail;
        session.next = NONE;
        match self.tail {
            NONE => self.head = slot,
            tail => sessions[tail as usize].next = slot,
        }
        self.tail = slot;
    }

    pub(crate) fn unlink(&mut self, sessions: &mut Sessions, slot: u32) {
        let (prev, next) = {
            let session = &sessions[slot as usize];
            (session.prev, session.next)
        };
        match prev {
            NONE => self.head = next,
            prev => sessions[prev as usize].next = next,
        }
        match next {
            NONE => self.tail = prev,
            next => sessions[next as usize].prev = prev,
        }
    }
}

/// One interface's deadlines: a min-heap of (watermark at which a session
/// is next due, its generation, its slot), 12 bytes an entry. Ties fall due
/// in order of opening (generation), whatever slot a session has. A session
/// closed before its deadline leaves the entry behind (its generation tells
/// it stale): [`Deadlines::sweep`] bounds them.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    heap: BinaryHeap<Reverse<Deadline>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Deadline {
    due: u32,
    generation: u32,
    slot: u32,
}

/// A due time past what 32 bits hold (after 2106, past any plausible
/// time): never falls due; end of input or eviction decides such a session.
const NEVER: u32 = u32::MAX;

impl Deadlines {
    pub(crate) fn push(&mut self, due: u64, generation: u32, slot: u32) {
        self.heap.push(Reverse(Deadline {
            due: u32::try_from(due).unwrap_or(NEVER),
            generation,
            slot,
        }));
    }

    /// Whether a deadline falls due by `time`.
    pub(crate) fn is_due(&self, time: u64) -> bool {
        self.heap
            .peek()
            .is_some_and(|Reverse(next)| next.due != NEVER && u64::from(next.due) <= time)
    }

    /// Takes the earliest deadline due by `time`: its generation and slot.
    pub(crate) fn pop_due(&mut self, time: u64) -> Option<(u32, u32)> {
        let Reverse(next) = self.heap.peek()?;
        if next.due == NEVER || u64::from(next.due) > time {
            return None;
        }
        let Reverse(next) = self.heap.pop()?;
        Some((next.generation, next.slot))
    }

    /// Entries, stale ones included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Every entry, stale ones included: (due, generation, slot).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, u32, u32)> + '_ {
        self.heap
            .iter()
            .map(|Reverse(entry)| (u64::from(entry.due), entry.generation, entry.slot))
    }

    /// Drops the earliest entries while `live` says they are stale.
    pub(crate) fn drop_stale_front(&mut self, live: impl Fn(u32, u32) -> bool) {
        while let Some(Reverse(next)) = self.heap.peek()
            && !live(next.generation, next.slot)
        {
            self.heap.pop();
        }
    }

    /// Past twice the interface's `open` sessions (plus a little), drops the
    /// entries `live` says are stale, so the heap is bounded by the table,
    /// not by the input.
    pub(crate) fn sweep(&mut self, open: usize, live: impl Fn(u32, u32) -> bool) {
        if self.heap.len() <= 2 * open + 64 {
            return;
        }
        self.heap
            .retain(|Reverse(entry)| live(entry.generation, entry.slot));
    }

    pub(crate) fn clear(&mut self) {
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> SessionKey {
        let v4 = |a: u32| super::super::address::to_addr(std::net::Ipv4Addr::from(a).into());
        SessionKey {
            interface: 0,
            protocol: 6,
            low: (v4(0x0a00_000a), 22),
            high: (v4(0x6400_0000 + n), 40000),
        }
    }

    #[test]
    fn past_a_few_thousand_sessions_the_whole_bound_is_reserved() {
        let mut sessions = Sessions::with_bound(50_000);
        for n in 0..RESERVE_FROM as u32 {
            sessions.insert(&key(n), Session::new(&key(n), n + 1));
        }
        assert!(sessions.slots.capacity() < 50_000);
        let n = RESERVE_FROM as u32;
        sessions.insert(&key(n), Session::new(&key(n), n + 1));
        assert!(sessions.slots.capacity() >= 50_000);
        assert_eq!(sessions.find(&key(7)), Some(7));
        let (_, removed) = sessions.remove(7);
        assert_eq!(removed, key(7));
        assert_eq!(sessions.find(&key(7)), None);
    }

    #[test]
    fn a_deadline_is_12_bytes() {
        assert_eq!(std::mem::size_of::<Reverse<Deadline>>(), 12);
    }

    #[test]
    fn deadlines_fall_due_by_time_then_generation() {
        let mut deadlines = Deadlines::default();
        deadlines.push(200, 1, 7);
        deadlines.push(100, 3, 5);
        deadlines.push(100, 2, 9);
        deadlines.push(u64::MAX, 4, 1);
        assert_eq!(deadlines.pop_due(99), None);
        assert_eq!(deadlines.pop_due(100), Some((2, 9)));
        assert_eq!(deadlines.pop_due(100), Some((3, 5)));
        assert_eq!(deadlines.pop_due(100), None);
        assert_eq!(deadlines.pop_due(u64::MAX), Some((1, 7)));
        // Past 32 bits: never due.
        assert_eq!(deadlines.pop_due(u64::MAX), None);
    }

    #[test]
    fn a_sweep_keeps_the_live_entries_only_past_its_bound() {
        let mut deadlines = Deadlines::default();
        for slot in 0..100 {
            deadlines.push(1000, slot + 1, slot);
        }
        deadlines.sweep(18, |_, slot| slot % 2 == 0);
        assert_eq!(deadlines.len(), 100, "within twice 18 + 64");
        deadlines.sweep(10, |_, slot| slot % 2 == 0);
        assert_eq!(deadlines.len(), 50);
        assert!(deadlines.iter().all(|(_, _, slot)| slot % 2 == 0));
    }

    #[test]
    fn stale_entries_at_the_front_are_dropped_up_to_the_first_live_one() {
        let mut deadlines = Deadlines::default();
        for slot in 0..10 {
            deadlines.push(u64::from(slot), slot + 1, slot);
        }
        deadlines.drop_stale_front(|_, slot| slot >= 3 && slot != 5);
        assert_eq!(deadlines.len(), 7);
        assert_eq!(deadlines.pop_due(u64::MAX), Some((4, 3)));
    }

    proptest::proptest! {
        /// Any pushes, pops and sweeps: deadlines fall due in the order of
        /// (due, generation), as a sorted list of them gives.
        #[test]
        fn deadlines_fall_due_as_a_sorted_list_says(
            steps in proptest::collection::vec((0u8..4, 0u64..50, 0u32..40, 0u32..30), 0..300),
        ) {
            let mut deadlines = Deadlines::default();
            let mut expected: Vec<(u64, u32, u32)> = Vec::new();
            for (step, due, generation, slot) in steps {
                match step {
                    0 | 1 => {
                        let due = if due == 49 { u64::MAX } else { due };
                        let kept = u64::from(u32::try_from(due).unwrap_or(NEVER));
                        // As in the table: a due time and a generation name
                        // one session's deadline.
                        if expected.iter().any(|entry| (entry.0, entry.1) == (kept, generation)) {
                            continue;
                        }
                        deadlines.push(due, generation, slot);
                        expected.push((kept, generation, slot));
                    }
                    2 => {
                        expected.sort();
                        let want = expected
                            .first()
                            .filter(|first| first.0 != u64::from(NEVER) && first.0 <= due)
                            .copied();
                        if want.is_some() {
                            expected.remove(0);
                        }
                        proptest::prop_assert_eq!(
                            deadlines.pop_due(due),
                            want.map(|(_, generation, slot)| (generation, slot))
                        );
                    }
                    _ => {
                        let live = |generation: u32, _: u32| !generation.is_multiple_of(3);
                        deadlines.sweep(usize::from(slot as u8 % 4), live);
                        if expected.len() > 2 * usize::from(slot as u8 % 4) + 64 {
                            expected.retain(|entry| live(entry.1, entry.2));
                        }
                    }
                }
                proptest::prop_assert_eq!(deadlines.len(), expected.len());
            }
            expected.sort();
            expected.retain(|entry| entry.0 != u64::from(NEVER));
            let mut rest = Vec::new();
            while let Some((generation, slot)) = deadlines.pop_due(u64::MAX) {
                rest.push((generation, slot));
            }
            let expected: Vec<(u32, u32)> =
                expected.iter().map(|entry| (entry.1, entry.2)).collect();
            proptest::prop_assert_eq!(rest, expected);
        }
    }
}

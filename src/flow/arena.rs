//! Storage of the session table: sessions in one vector, vacant slots
//! reused through a free list threaded through them, and an index from key
//! to slot that holds 4 bytes per session (the key lives in the session).
//! No heap allocation per session.

use std::hash::BuildHasher;
use std::ops::{Index, IndexMut};

use hashbrown::HashTable;

use super::session::{NONE, Session, SessionKey};

pub(crate) struct Sessions {
    slots: Vec<Session>,
    /// First vacant slot; each vacant slot's `next` is the one after.
    free: u32,
    len: usize,
    index: HashTable<u32>,
    hasher: foldhash::fast::FixedState,
}

impl Sessions {
    pub(crate) fn new() -> Sessions {
        Sessions {
            slots: Vec::new(),
            free: NONE,
            len: 0,
            index: HashTable::new(),
            hasher: foldhash::fast::FixedState::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Slots allocated, vacant ones included.
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn find(&self, key: &SessionKey) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        self.index
            .find(hash, |&slot| slots[slot as usize].key() == *key)
            .map(|&slot| slot as usize)
    }

    /// Stores a session (generation not 0) under its key, which must be new.
    pub(crate) fn insert(&mut self, session: Session) -> usize {
        debug_assert_ne!(session.generation, 0, "generation 0 marks a vacant slot");
        let hash = self.hasher.hash_one(session.key());
        let slot = match self.free {
            NONE => {
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
            ..
        } = self;
        index.insert_unique(hash, slot as u32, |&slot| {
            hasher.hash_one(slots[slot as usize].key())
        });
        self.len += 1;
        slot
    }

    /// Takes a session out; its slot becomes vacant.
    pub(crate) fn remove(&mut self, slot: usize) -> Session {
        let key = self.slots[slot].key();
        let hash = self.hasher.hash_one(key);
        if let Ok(entry) = self.index.find_entry(hash, |&other| other as usize == slot) {
            entry.remove();
        }
        let mut vacant = self.slots[slot].clone();
        vacant.generation = 0;
        vacant.next = self.free;
        self.free = slot as u32;
        self.len -= 1;
        std::mem::replace(&mut self.slots[slot], vacant)
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
        self.free = NONE;
        self.len = 0;
    }
}

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

//! Counters of concurrent sessions per key (client IP, identity, or the whole relay), with
//! RAII slots so a session's count is released however the session ends.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

/// Bounds how many slots each key may hold at once.
#[derive(Debug)]
pub struct SlotCounter<K: Eq + Hash> {
    max_per_key: u32,
    held: Mutex<HashMap<K, u32>>,
}

/// One held slot; released on drop.
#[derive(Debug)]
pub struct Slot<K: Eq + Hash + Clone> {
    counter: Arc<SlotCounter<K>>,
    key: K,
}

impl<K: Eq + Hash + Clone> SlotCounter<K> {
    /// A counter allowing `max_per_key` concurrent slots per key.
    pub fn new(max_per_key: u32) -> Arc<Self> {
        Arc::new(Self {
            max_per_key,
            held: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, u32>> {
        // A panic elsewhere while holding the lock cannot leave the map inconsistent
        // (every update is a single insert or remove), so a poisoned lock is still usable.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot for `key`, or `None` if it already holds the maximum.
    pub fn acquire(self: &Arc<Self>, key: K) -> Option<Slot<K>> {
        let mut held = self.lock();
        let count = held.entry(key.clone()).or_insert(0);
        if *count >= self.max_per_key {
            if *count == 0 {
                held.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(Slot {
            counter: Arc::clone(self),
            key,
        })
    }

    /// Whether any slot is held for `key`.
    pub fn contains(&self, key: &K) -> bool {
        self.lock().contains_key(key)
    }

    /// Slots currently held for `key`.
    #[cfg(test)]
    pub fn held(&self, key: &K) -> u32 {
        self.lock().get(key).copied().unwrap_or(0)
    }
}

impl<K: Eq + Hash + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut held = self.counter.lock();
        if let Some(count) = held.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_released_on_drop() {
        let c = SlotCounter::new(2);
        let a = c.acquire("x");
        let b = c.acquire("x");
        assert!(a.is_some() && b.is_some());
        assert!(c.acquire("x").is_none());
        assert!(c.acquire("y").is_some(), "keys are independent");
        drop(a);
        assert_eq!(c.held(&"x"), 1);
        assert!(c.acquire("x").is_some());
    }

    #[test]
    fn zero_limit_refuses_and_leaves_no_entry() {
        let c = SlotCounter::new(0);
        assert!(c.acquire(1u8).is_none());
        assert_eq!(c.lock().len(), 0);
    }
}

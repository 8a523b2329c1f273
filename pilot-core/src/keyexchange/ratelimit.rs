//! Anti-DoS limits of the key-exchange layer (spec §6.5, §6.7), each a bounded table.
//!
//! * [`PathLimiter`]: token bucket of key-exchange frames per source path (5 per second).
//! * [`IntervalLimiter`]: at most one action per node per interval (the "no key" answer).
//! * [`NegativeCache`]: nodes the registry does not know, remembered for a few seconds.
//!
//! Every table refuses (fails closed) rather than grow past its cap.

use alloc::collections::BTreeMap;
use core::time::Duration;

use super::PathId;
use crate::time::Instant;

/// Key-exchange frames one path may send per second, and the bucket depth (spec §6.7).
pub const PATH_FRAMES_PER_SECOND: u64 = 5;
/// Paths tracked by the per-path limiter (spec §6.7).
pub const PATH_LIMITER_MAX_ENTRIES: usize = 4_096;
/// A path whose bucket has been idle this long is forgotten (spec §6.7).
pub const PATH_LIMITER_IDLE: Duration = Duration::from_secs(10);

/// One token, in micro-tokens: refilling at `PATH_FRAMES_PER_SECOND` tokens per second adds
/// `PATH_FRAMES_PER_SECOND` micro-tokens per microsecond, so no division is needed.
const TOKEN: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    micro_tokens: u64,
    last: Instant,
}

/// Token bucket of PILA/PILK frames (and "no key" answers) per source path (spec §6.7).
#[derive(Debug, Clone, Default)]
pub struct PathLimiter {
    buckets: BTreeMap<PathId, Bucket>,
}

impl PathLimiter {
    /// Takes one token for `path`; `false` means drop the frame.
    pub fn allow(&mut self, path: PathId, now: Instant) -> bool {
        if !self.buckets.contains_key(&path) && self.buckets.len() >= PATH_LIMITER_MAX_ENTRIES {
            self.buckets
                .retain(|_, b| now.saturating_duration_since(b.last) < PATH_LIMITER_IDLE);
            if self.buckets.len() >= PATH_LIMITER_MAX_ENTRIES {
                return false;
            }
        }
        let capacity = PATH_FRAMES_PER_SECOND * TOKEN;
        let bucket = self.buckets.entry(path).or_insert(Bucket {
            micro_tokens: capacity,
            last: now,
        });
        let elapsed = u64::try_from(now.saturating_duration_since(bucket.last).as_micros())
            .unwrap_or(u64::MAX);
        bucket.micro_tokens = bucket
            .micro_tokens
            .saturating_add(elapsed.saturating_mul(PATH_FRAMES_PER_SECOND))
            .min(capacity);
        bucket.last = now;
        if bucket.micro_tokens < TOKEN {
            return false;
        }
        bucket.micro_tokens -= TOKEN;
        true
    }

    /// Paths currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no path is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// At most one event per node per `interval`, over at most `max_entries` nodes.
#[derive(Debug, Clone)]
pub struct IntervalLimiter {
    last: BTreeMap<u32, Instant>,
    interval: Duration,
    max_entries: usize,
}

impl IntervalLimiter {
    /// A limiter allowing one event per node per `interval`, tracking `max_entries` nodes.
    pub fn new(interval: Duration, max_entries: usize) -> Self {
        Self {
            last: BTreeMap::new(),
            interval,
            max_entries,
        }
    }

    /// Records an event for `node` if its interval has passed; `false` means suppress it.
    pub fn allow(&mut self, node: u32, now: Instant) -> bool {
        match self.last.get_mut(&node) {
            Some(last) if now.saturating_duration_since(*last) < self.interval => false,
            Some(last) => {
                *last = now;
                true
            }
            None => {
                if self.last.len() >= self.max_entries {
                    let interval = self.interval;
                    self.last
                        .retain(|_, t| now.saturating_duration_since(*t) < interval);
                    if self.last.len() >= self.max_entries {
                        return false;
                    }
                }
                self.last.insert(node, now);
                true
            }
        }
    }

    /// Nodes currently tracked.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Whether no node is tracked.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// Nodes the registry had no key for, each until an expiry (spec §6.2: V-NEW caches lookup
/// failures for 3 s, at most 4096 entries).
#[derive(Debug, Clone)]
pub struct NegativeCache {
    until: BTreeMap<u32, Instant>,
    ttl: Duration,
    max_entries: usize,
}

impl NegativeCache {
    /// A cache remembering each miss for `ttl`, holding at most `max_entries` nodes.
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            until: BTreeMap::new(),
            ttl,
            max_entries,
        }
    }

    /// Remembers that the registry does not know `node`. When the table is full of live
    /// entries the miss is simply not cached: the cache only saves lookups.
    pub fn insert(&mut self, node: u32, now: Instant) {
        if !self.until.contains_key(&node) && self.until.len() >= self.max_entries {
            self.until.retain(|_, until| *until > now);
            if self.until.len() >= self.max_entries {
                return;
            }
        }
        self.until.insert(node, now + self.ttl);
    }

    /// Whether a recent lookup of `node` failed.
    pub fn contains(&self, node: u32, now: Instant) -> bool {
        self.until.get(&node).is_some_and(|until| *until > now)
    }

    /// Forgets `node`, e.g. after the registry did answer with a key.
    pub fn remove(&mut self, node: u32) {
        self.until.remove(&node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Instant {
        Instant::from_millis(millis)
    }

    #[test]
    fn path_bucket_allows_five_then_refills_at_five_per_second() {
        let mut limiter = PathLimiter::default();
        let path = PathId(7);
        for _ in 0..PATH_FRAMES_PER_SECOND {
            assert!(limiter.allow(path, ms(0)));
        }
        assert!(!limiter.allow(path, ms(0)));
        assert!(!limiter.allow(path, ms(199)));
        assert!(limiter.allow(path, ms(200)));
        assert!(!limiter.allow(path, ms(200)));
        // Another path has its own bucket.
        assert!(limiter.allow(PathId(8), ms(200)));
    }

    #[test]
    fn path_limiter_fails_closed_when_full_of_active_paths() {
        let mut limiter = PathLimiter::default();
        for i in 0..PATH_LIMITER_MAX_ENTRIES as u64 {
            assert!(limiter.allow(PathId(i), ms(0)));
        }
        assert!(!limiter.allow(PathId(u64::MAX), ms(1)));
        // Once the others are idle they are pruned and the newcomer gets a bucket.
        assert!(limiter.allow(PathId(u64::MAX), ms(10_000)));
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn interval_limiter_allows_once_per_interval_per_node() {
        let mut limiter = IntervalLimiter::new(Duration::from_secs(3), 2);
        assert!(limiter.allow(1, ms(0)));
        assert!(!limiter.allow(1, ms(2_999)));
        assert!(limiter.allow(1, ms(3_000)));
        assert!(limiter.allow(2, ms(3_000)));
        // Full of live entries: a third node is refused.
        assert!(!limiter.allow(3, ms(3_001)));
        assert!(limiter.allow(3, ms(6_000)));
    }

    #[test]
    fn negative_cache_expires() {
        let mut cache = NegativeCache::new(Duration::from_secs(3), 4);
        cache.insert(9, ms(0));
        assert!(cache.contains(9, ms(2_999)));
        assert!(!cache.contains(9, ms(3_000)));
        cache.insert(9, ms(0));
        cache.remove(9);
        assert!(!cache.contains(9, ms(1)));
    }
}

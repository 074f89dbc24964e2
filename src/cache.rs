//! The one shape of cache on the decision path: bounded by entries and by
//! age, never emptied whole. A full cache drops its coldest entries
//! (quick_cache's S3-FIFO), so a burst of one-off keys does not throw out
//! what every call reads; an entry older than its cache's age is a miss
//! and is swept by [`Bounded::sweep`], so memory follows the working set.

use std::hash::Hash;
use std::time::{Duration, Instant};

use quick_cache::Equivalent;
use quick_cache::sync::Cache;

/// A concurrent cache of at most `capacity` entries, none used once older
/// than `max_age`.
#[derive(Debug)]
pub struct Bounded<K, V> {
    entries: Cache<K, (Instant, V)>,
    max_age: Duration,
}

impl<K: Eq + Hash + Clone, V: Clone> Bounded<K, V> {
    /// An empty cache.
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        Self {
            entries: Cache::new(capacity.max(1)),
            max_age,
        }
    }

    /// The value of `key`, if it was put in less than `max_age` ago.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.fresh(key, Instant::now())
    }

    fn fresh<Q>(&self, key: &Q, now: Instant) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let (at, value) = self.entries.get(key)?;
        if now.saturating_duration_since(at) < self.max_age {
            Some(value)
        } else {
            self.entries.remove(key);
            None
        }
    }

    /// Puts `value` in for `key`, replacing any older one.
    pub fn insert(&self, key: K, value: V) {
        self.entries.insert(key, (Instant::now(), value));
    }

    /// Drops `key`.
    pub fn remove<Q>(&self, key: &Q)
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.entries.remove(key);
    }

    /// Drops every entry older than `max_age`: what nobody asked for
    /// again leaves memory even when the cache is not full.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.entries
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < self.max_age);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_keeps_a_hot_entry_and_stays_within_its_bound() {
        let cache = Bounded::new(100, Duration::from_secs(60));
        cache.insert(0, "hot");
        for i in 1..10_000 {
            // The hot entry is read between one-off keys, as a token is.
            assert_eq!(cache.get(&0), Some("hot"), "after {i} one-off keys");
            cache.insert(i, "cold");
        }
        assert!(cache.len() <= 110, "holds {}", cache.len());
    }

    #[test]
    fn an_entry_past_its_age_is_a_miss_and_is_swept() {
        let cache = Bounded::new(100, Duration::from_millis(50));
        cache.insert("a", 1);
        assert_eq!(cache.get("a"), Some(1));
        let later = Instant::now() + Duration::from_millis(51);
        assert_eq!(cache.fresh("a", later), None);
        assert!(cache.is_empty(), "a stale entry read is dropped");
        cache.insert("b", 2);
        std::thread::sleep(Duration::from_millis(60));
        cache.sweep();
        assert!(cache.is_empty(), "sweep drops what nobody read again");
    }
}

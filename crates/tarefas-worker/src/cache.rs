//! A small in-memory cache with a size cap and a time to live: what a worker remembers
//! (accounts, runs' snapshots, runs' statuses) stays bounded however long it lives and
//! however many runs it sees. Full, it first forgets what expired, then what it stored
//! longest ago.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Entry<V> {
    value: V,
    /// When the value was stored: it expires `ttl` after.
    stored: Instant,
    /// When a caller was last told to refresh it ([`TtlCache::get_or_refresh`]).
    checked: Instant,
}

/// A map of at most `capacity` entries, each valid for `ttl` after it was stored.
pub struct TtlCache<K, V> {
    map: Mutex<HashMap<K, Entry<V>>>,
    capacity: usize,
    ttl: Duration,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// An empty cache of at most `capacity` entries (at least one), each valid for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        TtlCache {
            map: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Entry<V>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value of `key`, while it has not expired.
    pub fn get(&self, key: &K) -> Option<V> {
        let map = self.lock();
        map.get(key)
            .filter(|e| e.stored.elapsed() < self.ttl)
            .map(|e| e.value.clone())
    }

    /// The value of `key` while it has not expired, and whether the caller should refresh
    /// it: true when nobody was told so for `refresh_after`. Of many callers asking at once,
    /// one is told (the value is not renewed until the caller [stores](TtlCache::insert) a
    /// new one, so it still expires if the refresh keeps failing).
    pub fn get_or_refresh(&self, key: &K, refresh_after: Duration) -> Option<(V, bool)> {
        let mut map = self.lock();
        let entry = map.get_mut(key).filter(|e| e.stored.elapsed() < self.ttl)?;
        let refresh = entry.checked.elapsed() >= refresh_after;
        if refresh {
            entry.checked = Instant::now();
        }
        Some((entry.value.clone(), refresh))
    }

    /// Stores `value` for `key`, making room first when the cache is full.
    pub fn insert(&self, key: K, value: V) {
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(&key) {
            let ttl = self.ttl;
            map.retain(|_, e| e.stored.elapsed() < ttl);
            if map.len() >= self.capacity {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, e)| e.stored)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    map.remove(&oldest);
                }
            }
        }
        let now = Instant::now();
        map.insert(
            key,
            Entry {
                value,
                stored: now,
                checked: now,
            },
        );
    }

    /// How many entries it holds (expired ones included, until they are pushed out).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_holds_more_than_its_capacity_and_forgets_the_oldest() {
        let cache = TtlCache::new(3, Duration::from_secs(60));
        for run in 0..1_000_i64 {
            cache.insert(run, run * 10);
            assert!(cache.len() <= 3, "{} entries after {run}", cache.len());
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&999), Some(9_990));
        assert_eq!(cache.get(&997), Some(9_970));
        assert_eq!(cache.get(&996), None, "the oldest went first");
        // Storing a key it holds replaces it, and pushes nothing out.
        cache.insert(998, 1);
        assert_eq!(
            (cache.len(), cache.get(&998), cache.get(&997)),
            (3, Some(1), Some(9_970))
        );
    }

    #[test]
    fn expired_entries_are_not_served_and_go_first() {
        let cache = TtlCache::new(2, Duration::from_millis(30));
        cache.insert("old", 1);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get(&"old"), None);
        assert_eq!(cache.get_or_refresh(&"old", Duration::ZERO), None);
        cache.insert("a", 2);
        cache.insert("b", 3);
        assert_eq!(
            (cache.len(), cache.get(&"a"), cache.get(&"b")),
            (2, Some(2), Some(3))
        );
    }

    #[test]
    fn one_caller_of_many_is_told_to_refresh() {
        let cache = TtlCache::new(8, Duration::from_secs(60));
        cache.insert(1, "planning");
        assert_eq!(
            cache.get_or_refresh(&1, Duration::from_secs(60)),
            Some(("planning", false))
        );
        assert_eq!(
            cache.get_or_refresh(&1, Duration::ZERO),
            Some(("planning", true))
        );
        assert_eq!(
            cache.get_or_refresh(&1, Duration::from_secs(1)),
            Some(("planning", false)),
            "the first caller was told: the next ones are not"
        );
        cache.insert(1, "running");
        assert_eq!(cache.get(&1), Some("running"));
    }
}

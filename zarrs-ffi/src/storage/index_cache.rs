//! The shard-index cache: one byte range of each value (a shard's index), kept across the
//! reads of one array handle, bounded in memory, and never used without the store
//! confirming that the value has not changed since.
//!
//! Over a network, a read of part of a shard costs a round trip for the shard's index and
//! one for the inner chunks it locates. With the index held here, a read asks only for the
//! inner chunks, on the condition that the value is still the one the index was read from
//! (`If-Match` the ETag it was fetched at; `rounds.rs` sends and checks it). A value
//! rewritten since fails the condition, or answers with another ETag (a server that ignores
//! the condition), and the read drops the entry and starts again from the index. A read that
//! needs nothing else of the value (every inner chunk it needs is not stored) confirms the
//! ETag with a conditional HEAD. A value whose store gives no strong ETag is never cached:
//! `Last-Modified` has a resolution of a second, and a rewrite within it would go unseen.
//!
//! Local directories are not cached: reading a shard's index there costs one `pread`, about
//! what confirming its file unchanged (`fstat`) would.
//!
//! This module knows keys, byte ranges and versions only, never what the bytes mean.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use zarrs::storage::byte_range::ByteRange;
use zarrs::storage::{Bytes, StoreKey};

/// The default memory budget of one array handle's cache.
pub const DEFAULT_BUDGET: u64 = 32 << 20;

/// What an entry costs beyond its bytes, key and version (the map and order slots, the
/// entry itself), counted against the budget so that many tiny indexes stay bounded too.
const ENTRY_OVERHEAD: u64 = 160;

/// The cached range of one value, at one version.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The value's length, when the response that gave the bytes said.
    pub size: Option<u64>,
    /// Where the bytes start in the value.
    pub offset: u64,
    pub bytes: Bytes,
    /// The strong ETag the bytes were read at.
    pub version: String,
}

impl Cached {
    fn cost(&self, key: &StoreKey) -> u64 {
        self.bytes.len() as u64 + key.as_str().len() as u64 + self.version.len() as u64 + ENTRY_OVERHEAD
    }
}

#[derive(Default)]
struct Entries {
    map: HashMap<StoreKey, (Cached, u64)>,
    /// Keys by last use, oldest first: evicted in that order.
    by_use: BTreeMap<u64, StoreKey>,
    used_bytes: u64,
    clock: u64,
    budget: u64,
}

impl Entries {
    fn remove(&mut self, key: &StoreKey) {
        if let Some((cached, used)) = self.map.remove(key) {
            self.by_use.remove(&used);
            self.used_bytes -= cached.cost(key);
        }
    }

    fn evict_to(&mut self, budget: u64) {
        while self.used_bytes > budget {
            let Some((_, key)) = self.by_use.pop_first() else { break };
            if let Some((cached, _)) = self.map.remove(&key) {
                self.used_bytes -= cached.cost(&key);
            }
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

/// One array handle's cache of the range `range` of each value (its shard index).
///
/// Thread-safe: reads of one handle from many threads share it.
pub struct IndexCache {
    range: ByteRange,
    entries: Mutex<Entries>,
}

impl IndexCache {
    /// A cache of the range `range` of values, within `budget` bytes (0: caches nothing).
    pub fn new(range: ByteRange, budget: u64) -> Self {
        Self { range, entries: Mutex::new(Entries { budget, ..Entries::default() }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The range cached of each value.
    pub fn range(&self) -> ByteRange {
        self.range
    }

    /// The cached range of `key`, if held: to be used only on the condition its version
    /// still holds.
    pub fn get(&self, key: &StoreKey) -> Option<Cached> {
        let mut entries = self.lock();
        let now = entries.tick();
        let (cached, used) = entries.map.get_mut(key)?;
        let (cached, before) = (cached.clone(), std::mem::replace(used, now));
        entries.by_use.remove(&before);
        entries.by_use.insert(now, key.clone());
        Some(cached)
    }

    /// Keep `cached` for `key`, evicting the least recently used entries to stay within the
    /// budget. An entry larger than the whole budget is not kept.
    pub fn insert(&self, key: StoreKey, cached: Cached) {
        let mut entries = self.lock();
        entries.remove(&key);
        let cost = cached.cost(&key);
        if cost > entries.budget {
            return;
        }
        let budget = entries.budget;
        entries.evict_to(budget - cost);
        let now = entries.tick();
        entries.used_bytes += cost;
        entries.by_use.insert(now, key.clone());
        entries.map.insert(key, (cached, now));
    }

    /// Forget `key` (it was written, or found changed).
    pub fn remove(&self, key: &StoreKey) {
        self.lock().remove(key);
    }

    /// Change the budget, evicting down to it at once.
    pub fn set_budget(&self, budget: u64) {
        let mut entries = self.lock();
        entries.budget = budget;
        entries.evict_to(budget);
    }

    /// (entries held, bytes they count against the budget).
    pub fn usage(&self) -> (u64, u64) {
        let entries = self.lock();
        (entries.map.len() as u64, entries.used_bytes)
    }
}

/// `etag` if it is strong: a weak ETag (`W/"..."`) never satisfies `If-Match`, whose
/// comparison is strong, so it can confirm nothing.
pub fn strong(etag: Option<String>) -> Option<String> {
    etag.filter(|tag| !tag.starts_with("W/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> StoreKey {
        StoreKey::new(k).unwrap()
    }

    fn cached(n: usize, version: &str) -> Cached {
        Cached { size: Some(100), offset: 100 - n as u64, bytes: Bytes::from(vec![7u8; n]), version: version.into() }
    }

    #[test]
    fn the_budget_holds_and_the_least_recently_used_go_first() {
        let one = cached(1000, "\"v\"").cost(&key("c/0"));
        let cache = IndexCache::new(ByteRange::Suffix(1000), 3 * one);
        for k in ["c/0", "c/1", "c/2"] {
            cache.insert(key(k), cached(1000, "\"v\""));
        }
        assert_eq!(cache.usage(), (3, 3 * one));
        assert!(cache.get(&key("c/0")).is_some());
        cache.insert(key("c/3"), cached(1000, "\"v\""));
        assert_eq!(cache.usage(), (3, 3 * one));
        assert!(cache.get(&key("c/1")).is_none(), "the least recently used entry is evicted");
        assert!(cache.get(&key("c/0")).is_some() && cache.get(&key("c/3")).is_some());
        // Replacing an entry does not count it twice; removing frees it.
        cache.insert(key("c/3"), cached(1000, "\"w\""));
        assert_eq!(cache.get(&key("c/3")).unwrap().version, "\"w\"");
        assert_eq!(cache.usage(), (3, 3 * one));
        cache.remove(&key("c/3"));
        assert_eq!(cache.usage(), (2, 2 * one));
        cache.set_budget(one);
        assert_eq!(cache.usage(), (1, one));
        cache.set_budget(0);
        assert_eq!(cache.usage(), (0, 0));
        cache.insert(key("c/4"), cached(10, "\"v\""));
        assert_eq!(cache.usage(), (0, 0), "a budget of 0 keeps nothing");
    }

    #[test]
    fn an_entry_larger_than_the_budget_is_not_kept() {
        let cache = IndexCache::new(ByteRange::Suffix(10), 100);
        cache.insert(key("c/0"), cached(1000, "\"v\""));
        assert_eq!(cache.usage(), (0, 0));
    }

    #[test]
    fn weak_etags_confirm_nothing() {
        assert_eq!(strong(Some("W/\"abc\"".into())), None);
        assert_eq!(strong(Some("\"abc\"".into())), Some("\"abc\"".into()));
        assert_eq!(strong(None), None);
    }
}

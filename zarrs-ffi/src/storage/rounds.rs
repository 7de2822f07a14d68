//! Reading a batch from a remote store in rounds: every request a round needs, in flight at
//! once.
//!
//! Over a network a request costs its latency whatever its size, so a batch must not wait for
//! one chunk's requests before the next chunk's: a read of part of a shard asks for the
//! shard's index, then for the inner chunks that index locates, and with a job at a time per
//! thread only as many shards as threads are in flight. Instead, every job of the batch runs
//! against [`Fetched`], the bytes fetched so far, through a [`RoundView`]: a request it holds
//! is answered from memory; one it does not is recorded as a miss and the job stops
//! ([`pending`]). The caller then fetches every miss of the round together (all shard indexes
//! at once, then all inner-chunk ranges at once, coalesced per value) and runs the stopped
//! jobs again, until none misses. The engine's own code paths (shard reads in part, nested
//! shards, gathers) run unchanged: they only see a storage.
//!
//! Jobs that stop are run again from the start, so what they wrote to the caller's buffer
//! before stopping is written again, to the same values.
//!
//! Every value is read at one version within a read: the first response that gives a strong
//! ETag sets it, and every later request for the value carries `If-Match` with it (a job
//! must not decode inner chunks of a shard rewritten after its index was read). A value that
//! fails the condition, or answers with another ETag, is found changed: what was fetched of
//! it is dropped and every job runs again (`index_cache.rs` relies on this too, for indexes
//! held across reads).
//!
//! This module knows keys and byte ranges only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::index_cache::{Cached, IndexCache};

use zarrs::storage::byte_range::{ByteRange, ByteRangeIterator};
use zarrs::storage::{Bytes, MaybeBytes, MaybeBytesIterator, ReadableStorageTraits, StorageError, StoreKey};

/// One request a job could not be answered from memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// The whole value.
    Whole,
    /// Its size only.
    Size,
    /// A byte range.
    Range(ByteRange),
}

/// What is known of one value.
#[derive(Default)]
struct Value {
    /// The value does not exist.
    missing: bool,
    /// Its length, when a response gave it.
    size: Option<u64>,
    /// Fetched bytes, each at its offset.
    parts: Vec<(u64, Bytes)>,
    /// The strong ETag the bytes are of, when the store gave one.
    version: Option<String>,
    /// The bytes came from the index cache and no response has confirmed their version yet.
    unconfirmed: bool,
}

impl Value {
    /// The bytes of `range`, if held.
    fn slice(&self, range: &ByteRange) -> Option<Bytes> {
        let (start, end) = match *range {
            ByteRange::FromStart(offset, Some(length)) => (offset, offset.checked_add(length)?),
            ByteRange::FromStart(offset, None) => (offset, self.size?),
            ByteRange::Suffix(length) => {
                let size = self.size?;
                (size.saturating_sub(length), size)
            }
        };
        if start > end {
            return None;
        }
        self.parts.iter().find_map(|(at, bytes)| {
            let part_end = at + bytes.len() as u64;
            (*at <= start && end <= part_end).then(|| bytes.slice((start - at) as usize..(end - at) as usize))
        })
    }

    fn whole(&self) -> Option<Bytes> {
        self.slice(&ByteRange::FromStart(0, None))
    }
}

/// The bytes fetched so far for one batch, shared by its jobs.
#[derive(Default)]
pub struct Fetched {
    values: Mutex<HashMap<StoreKey, Value>>,
}

/// What a fetch of one value's misses found.
pub enum Found {
    /// The value does not exist.
    Missing,
    /// Its length (if the responses gave it) and the bytes fetched, each at its offset. A
    /// suffix request is answered at its offset, so its response must give the length.
    /// `version`: the strong ETag every response gave, if any.
    Parts { size: Option<u64>, parts: Vec<(u64, Bytes)>, version: Option<String> },
    /// The value is no longer the version its bytes so far were read at (or its responses
    /// disagreed): drop them and read it again.
    Changed,
}

impl Fetched {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StoreKey, Value>> {
        self.values.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Record what was fetched for `key`. Returns false when the value changed under the
    /// read: what was held of it is dropped, and jobs that used it must run again.
    pub fn add(&self, key: StoreKey, found: Found) -> bool {
        let mut values = self.lock();
        let value = values.entry(key.clone()).or_default();
        match found {
            // A value held (from the cache, or an earlier round) that is gone now changed.
            Found::Missing if value.parts.is_empty() => value.missing = true,
            Found::Parts { size, parts, version } if value.version.is_none() || value.version == version => {
                value.size = value.size.or(size);
                value.parts.extend(parts);
                value.version = version;
                value.unconfirmed = false;
            }
            Found::Missing | Found::Parts { .. } | Found::Changed => {
                values.remove(&key);
                return false;
            }
        }
        true
    }

    /// The version of `key` its requests must be conditional on, if any.
    pub fn version(&self, key: &StoreKey) -> Option<String> {
        self.lock().get(key).and_then(|v| v.version.clone())
    }

    /// Values answered from the index cache whose version no response confirmed, with it.
    pub fn unconfirmed(&self) -> Vec<(StoreKey, String)> {
        self.lock()
            .iter()
            .filter(|(_, v)| v.unconfirmed)
            .filter_map(|(k, v)| Some((k.clone(), v.version.clone()?)))
            .collect()
    }

    /// Mark `key` confirmed at its version.
    pub fn confirm(&self, key: &StoreKey) {
        if let Some(value) = self.lock().get_mut(key) {
            value.unconfirmed = false;
        }
    }

    /// Forget `key`: it changed.
    pub fn forget(&self, key: &StoreKey) {
        self.lock().remove(key);
    }

    /// Every confirmed value's `range` held at a strong ETag: what the index cache may keep.
    pub fn cacheable(&self, range: &ByteRange) -> Vec<(StoreKey, Cached)> {
        self.lock()
            .iter()
            .filter(|(_, v)| !v.unconfirmed && !v.missing)
            .filter_map(|(key, v)| {
                let bytes = v.slice(range)?;
                let offset = match *range {
                    ByteRange::FromStart(offset, _) => offset,
                    ByteRange::Suffix(length) => v.size?.checked_sub(length)?,
                };
                Some((key.clone(), Cached { size: v.size, offset, bytes, version: v.version.clone()? }))
            })
            .collect()
    }

    /// Answer from what is held of `key`; a value not held yet is first taken from `cache`
    /// if it has it (unconfirmed: [`Self::unconfirmed`]).
    fn answer<R>(&self, key: &StoreKey, cache: Option<&IndexCache>, f: impl FnOnce(Option<&Value>) -> R) -> R {
        let mut values = self.lock();
        if !values.contains_key(key) {
            if let Some(cached) = cache.and_then(|c| c.get(key)) {
                let value = Value {
                    size: cached.size,
                    parts: vec![(cached.offset, cached.bytes)],
                    version: Some(cached.version),
                    unconfirmed: true,
                    ..Value::default()
                };
                values.insert(key.clone(), value);
            }
        }
        f(values.get(key))
    }
}

/// The error a job stops with when a request it needs is not fetched yet: the job is run
/// again once the round's misses are in.
pub fn pending() -> StorageError {
    StorageError::Other("the bytes are not fetched yet (a later round fetches them)".to_string())
}

/// One job's storage for one round: answers from [`Fetched`] and records what it misses.
pub struct RoundView {
    fetched: Arc<Fetched>,
    cache: Option<Arc<IndexCache>>,
    misses: Mutex<Vec<(StoreKey, Miss)>>,
}

impl RoundView {
    /// A view answering from `fetched`, and for values not fetched yet from `cache`.
    pub fn new(fetched: Arc<Fetched>, cache: Option<Arc<IndexCache>>) -> Self {
        Self { fetched, cache, misses: Mutex::new(Vec::new()) }
    }

    fn answer<R>(&self, key: &StoreKey, f: impl FnOnce(Option<&Value>) -> R) -> R {
        self.fetched.answer(key, self.cache.as_deref(), f)
    }

    /// What the job asked for and was not given.
    pub fn into_misses(self) -> Vec<(StoreKey, Miss)> {
        self.misses.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn missed(&self, key: &StoreKey, misses: impl IntoIterator<Item = Miss>) -> StorageError {
        let mut recorded = self.misses.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        recorded.extend(misses.into_iter().map(|m| (key.clone(), m)));
        pending()
    }

    /// A job that missed already stops at its next request without recording it: its code
    /// may ask more on the way out (the shard's size, to word an error) that it would not ask
    /// once its bytes are in.
    fn stopped(&self) -> bool {
        !self.misses.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty()
    }
}

impl ReadableStorageTraits for RoundView {
    fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        if self.stopped() {
            return Err(pending());
        }
        match self.answer(key, |value| value.map(|v| if v.missing { Some(None) } else { v.whole().map(Some) })) {
            Some(Some(answer)) => Ok(answer),
            _ => Err(self.missed(key, [Miss::Whole])),
        }
    }

    fn get_partial_many<'a>(&'a self, key: &StoreKey, byte_ranges: ByteRangeIterator<'a>) -> Result<MaybeBytesIterator<'a>, StorageError> {
        if self.stopped() {
            return Err(pending());
        }
        let ranges: Vec<ByteRange> = byte_ranges.collect();
        let answered: Result<Option<Vec<Bytes>>, Vec<Miss>> = self.answer(key, |value| {
            if value.is_some_and(|v| v.missing) {
                return Ok(None);
            }
            let mut found = Vec::with_capacity(ranges.len());
            let mut misses = Vec::new();
            for range in &ranges {
                match value.and_then(|v| v.slice(range)) {
                    Some(bytes) => found.push(bytes),
                    None => misses.push(Miss::Range(*range)),
                }
            }
            if misses.is_empty() {
                Ok(Some(found))
            } else {
                Err(misses)
            }
        });
        match answered {
            Ok(None) => Ok(None),
            Ok(Some(found)) => Ok(Some(Box::new(found.into_iter().map(Ok)))),
            Err(misses) => Err(self.missed(key, misses)),
        }
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        if self.stopped() {
            return Err(pending());
        }
        match self.answer(key, |value| value.map(|v| if v.missing { Some(None) } else { v.size.map(Some) })) {
            Some(Some(size)) => Ok(size),
            _ => Err(self.missed(key, [Miss::Size])),
        }
    }

    fn supports_get_partial(&self) -> bool {
        true
    }
}

/// The misses of a round grouped by value, each value's requests once.
pub fn by_value(misses: Vec<(StoreKey, Miss)>) -> Vec<(StoreKey, Vec<Miss>)> {
    let mut grouped: Vec<(StoreKey, Vec<Miss>)> = Vec::new();
    let mut at: HashMap<StoreKey, usize> = HashMap::new();
    for (key, miss) in misses {
        let i = *at.entry(key.clone()).or_insert_with(|| {
            grouped.push((key, Vec::new()));
            grouped.len() - 1
        });
        if !grouped[i].1.contains(&miss) {
            grouped[i].1.push(miss);
        }
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> StoreKey {
        StoreKey::new(k).unwrap()
    }

    #[test]
    fn misses_are_recorded_then_answered() {
        let fetched = Arc::new(Fetched::default());
        let view = RoundView::new(fetched.clone(), None);
        let suffix = ByteRange::Suffix(4);
        assert!(view.get_partial(&key("a"), suffix).is_err());
        // Stopped: later requests are not recorded.
        assert!(view.size_key(&key("a")).is_err());
        assert!(view.get(&key("b")).is_err());
        assert_eq!(view.into_misses(), vec![(key("a"), Miss::Range(suffix))]);

        assert!(fetched.add(key("a"), Found::Parts { size: Some(10), parts: vec![(6, Bytes::from_static(b"6789"))], version: None }));
        assert!(fetched.add(key("b"), Found::Missing));
        let view = RoundView::new(fetched.clone(), None);
        assert_eq!(view.get_partial(&key("a"), suffix).unwrap().unwrap().as_ref(), b"6789");
        assert_eq!(view.get_partial(&key("a"), ByteRange::FromStart(7, Some(2))).unwrap().unwrap().as_ref(), b"78");
        assert_eq!(view.size_key(&key("a")).unwrap(), Some(10));
        assert_eq!(view.get(&key("b")).unwrap(), None);
        assert_eq!(view.get_partial(&key("b"), suffix).unwrap(), None);
        assert_eq!(view.size_key(&key("b")).unwrap(), None);
        assert!(view.into_misses().is_empty());

        // A range not held, and the whole value, are misses again.
        let view = RoundView::new(fetched.clone(), None);
        assert!(view.get_partial_many(&key("a"), Box::new([ByteRange::FromStart(0, Some(2)), ByteRange::FromStart(6, Some(1))].into_iter())).is_err());
        assert_eq!(view.into_misses(), vec![(key("a"), Miss::Range(ByteRange::FromStart(0, Some(2))))]);
        assert!(fetched.add(key("a"), Found::Parts { size: None, parts: vec![(0, Bytes::from_static(b"0123456789"))], version: None }));
        let view = RoundView::new(fetched, None);
        assert_eq!(view.get(&key("a")).unwrap().unwrap().as_ref(), b"0123456789");
    }

    fn parts(at: u64, bytes: &'static [u8], version: &str) -> Found {
        Found::Parts { size: Some(10), parts: vec![(at, Bytes::from_static(bytes))], version: Some(version.into()) }
    }

    #[test]
    fn a_value_is_read_at_one_version() {
        let fetched = Fetched::default();
        assert!(fetched.add(key("a"), parts(6, b"6789", "\"1\"")));
        assert_eq!(fetched.version(&key("a")).as_deref(), Some("\"1\""));
        assert!(fetched.add(key("a"), parts(0, b"01", "\"1\"")));
        // Another version of the value: what was held is dropped.
        assert!(!fetched.add(key("a"), parts(2, b"23", "\"2\"")));
        assert_eq!(fetched.version(&key("a")), None);
        assert!(fetched.add(key("a"), parts(6, b"6789", "\"2\"")));
        // Gone since: changed too.
        assert!(!fetched.add(key("a"), Found::Missing));
        assert!(!fetched.add(key("b"), Found::Changed));
    }

    #[test]
    fn cached_ranges_answer_unconfirmed_until_a_response_confirms_them() {
        let cache = Arc::new(IndexCache::new(ByteRange::Suffix(4), 1 << 20));
        let cached = Cached { size: Some(10), offset: 6, bytes: Bytes::from_static(b"6789"), version: "\"1\"".into() };
        cache.insert(key("a"), cached);
        let fetched = Arc::new(Fetched::default());
        let view = RoundView::new(fetched.clone(), Some(cache.clone()));
        assert_eq!(view.get_partial(&key("a"), ByteRange::Suffix(4)).unwrap().unwrap().as_ref(), b"6789");
        assert!(view.get_partial(&key("a"), ByteRange::FromStart(0, Some(2))).is_err());
        assert_eq!(view.into_misses(), vec![(key("a"), Miss::Range(ByteRange::FromStart(0, Some(2))))]);
        assert_eq!(fetched.unconfirmed(), vec![(key("a"), "\"1\"".to_string())]);
        assert_eq!(fetched.version(&key("a")).as_deref(), Some("\"1\""), "its requests are conditional on the cached version");
        assert!(fetched.cacheable(&ByteRange::Suffix(4)).is_empty(), "nothing unconfirmed is cached again");
        assert!(fetched.add(key("a"), parts(0, b"01", "\"1\"")));
        assert!(fetched.unconfirmed().is_empty());
        let again = fetched.cacheable(&ByteRange::Suffix(4));
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].1.offset, again[0].1.bytes.as_ref()), (6, &b"6789"[..]));
    }

    #[test]
    fn misses_are_grouped_by_value_once_each() {
        let (a, b) = (key("a"), key("b"));
        let grouped = by_value(vec![(a.clone(), Miss::Size), (b.clone(), Miss::Whole), (a.clone(), Miss::Size), (a.clone(), Miss::Whole)]);
        assert_eq!(grouped, vec![(a, vec![Miss::Size, Miss::Whole]), (b, vec![Miss::Whole])]);
    }
}

//! The live handles: every handle the library gives out is recorded until it is freed.
//!
//! A C caller can pass anything where a handle is expected: a handle it freed already (a
//! double free, a use after free), a handle of another kind (a storage where an array is
//! expected), or a pointer that never came from here. Each would be undefined behaviour if
//! dereferenced. Every handle argument is looked up here first, by address and kind, so those
//! are `ZARRS_ERROR_INVALID_ARGUMENT` naming the argument instead.
//!
//! What this cannot tell: a freed handle whose address the allocator has since reused for a
//! new handle of the same kind looks like that new handle; and a handle freed by one thread
//! while another is inside a call with it (the callers' contract forbids both).
//!
//! The table is split into shards, each behind a spin lock held for one hash-map operation:
//! every call pays one lookup (tens of nanoseconds). A `fork` while another thread holds a
//! shard's lock would leave it locked in the child, so `pthread_atfork` handlers take every
//! shard before a fork and release them on both sides.
//!
//! This module must not know about arrays, codecs or stores: handle types name themselves
//! through [`Handle`].

use std::any::TypeId;
use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use crate::error::{FfiError, FfiResult};

/// A type whose boxed values are handed to C callers as opaque pointers.
pub trait Handle: 'static {
    /// The type's name in the header, for error messages.
    const NAME: &'static str;
}

/// Record `value` as a live handle and give out its pointer.
pub fn issue<T: Handle>(value: T) -> *mut T {
    issue_boxed(Box::new(value))
}

/// [`issue`] for a value already boxed.
pub fn issue_boxed<T: Handle>(value: Box<T>) -> *mut T {
    ensure_fork_handlers();
    let ptr = Box::into_raw(value);
    shard(ptr as usize).with(|live| live.insert(ptr as usize, (TypeId::of::<T>(), T::NAME)));
    ptr
}

/// Fail unless `ptr` is a live handle of type `T` (NULL included: a required argument).
pub fn check<T: Handle>(ptr: *const T, name: &str) -> FfiResult<()> {
    if ptr.is_null() {
        return Err(FfiError::null(name));
    }
    let address = ptr as usize;
    match shard(address).with(|live| live.get(&address).copied()) {
        Some((kind, _)) if kind == TypeId::of::<T>() => Ok(()),
        found => Err(misused::<T>(found, name)),
    }
}

/// Stop recording `ptr` and give back its box, to be dropped. NULL is `Ok(None)`; a pointer
/// that is not a live handle of type `T` (freed already, of another kind, never issued) is an
/// error and nothing is freed.
pub fn retire<T: Handle>(ptr: *mut T, name: &str) -> FfiResult<Option<Box<T>>> {
    if ptr.is_null() {
        return Ok(None);
    }
    let address = ptr as usize;
    shard(address).with(|live| match live.get(&address).copied() {
        Some((kind, _)) if kind == TypeId::of::<T>() => {
            live.remove(&address);
            // SAFETY: the table holds exactly the addresses of boxes `issue_boxed` gave out
            // (by `Box::into_raw`) and that were not retired since; this one is of type `T`
            // and is removed here under the shard's lock, so it is given back once.
            Ok(Some(unsafe { Box::from_raw(ptr) }))
        }
        found => Err(misused::<T>(found, name)),
    })
}

fn misused<T: Handle>(found: Option<(TypeId, &'static str)>, name: &str) -> FfiError {
    match found {
        Some((_, other)) => FfiError::invalid(format!("`{name}` is a {other} handle, not a {}", T::NAME)),
        None => FfiError::invalid(format!(
            "`{name}` is not a live {} handle: it was freed already, or it did not come from this library",
            T::NAME
        )),
    }
}

/// Hashes an address: the low bits are alignment, the rest already well spread.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = ((n as u64) >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Live = HashMap<usize, (TypeId, &'static str), BuildHasherDefault<AddressHasher>>;

/// One part of the table, behind a spin lock (held for one map operation, never across a
/// call out of this module).
struct Shard {
    locked: AtomicBool,
    live: UnsafeCell<Live>,
}

// SAFETY: `live` is only reached through `with`, which holds `locked` for the whole access,
// so no two threads touch the map at once.
unsafe impl Sync for Shard {}

impl Shard {
    const fn new() -> Self {
        Self { locked: AtomicBool::new(false), live: UnsafeCell::new(HashMap::with_hasher(BuildHasherDefault::new())) }
    }

    fn lock(&self) {
        let mut spins = 0u32;
        while self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    fn with<R>(&self, f: impl FnOnce(&mut Live) -> R) -> R {
        struct Unlock<'a>(&'a Shard);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                self.0.unlock();
            }
        }
        self.lock();
        let _unlock = Unlock(self);
        // SAFETY: the lock is held until `_unlock` drops, after `f` returns; see `Sync`.
        f(unsafe { &mut *self.live.get() })
    }
}

const SHARD_COUNT: usize = 16;

static SHARDS: [Shard; SHARD_COUNT] = [const { Shard::new() }; SHARD_COUNT];

fn shard(address: usize) -> &'static Shard {
    &SHARDS[(address >> 4) % SHARD_COUNT]
}

fn ensure_fork_handlers() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        extern "C" fn before_fork() {
            SHARDS.iter().for_each(Shard::lock);
        }
        extern "C" fn after_fork() {
            SHARDS.iter().for_each(Shard::unlock);
        }
        // SAFETY: the handlers are plain functions that only take and release the shards'
        // locks (in one order, so no two forks deadlock); registering them has no other
        // precondition. A failure (ENOMEM) leaves fork as it was.
        unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork), Some(after_fork)) };
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Apple(#[allow(dead_code)] u32);
    impl Handle for Apple {
        const NAME: &'static str = "Apple";
    }
    struct Pear;
    impl Handle for Pear {
        const NAME: &'static str = "Pear";
    }

    #[test]
    fn misuse_is_an_error() {
        let apple = issue(Apple(1));
        let pear = issue(Pear);
        assert!(check(apple, "a").is_ok());
        let wrong = check(pear.cast::<Apple>(), "a").unwrap_err();
        assert!(wrong.message.contains("`a` is a Pear handle, not a Apple"), "{}", wrong.message);
        assert!(retire(pear.cast::<Apple>(), "a").is_err());
        assert!(check::<Apple>(std::ptr::null(), "a").unwrap_err().message.contains("NULL"));
        assert!(retire::<Apple>(std::ptr::null_mut(), "a").unwrap().is_none());
        let never = 0x1000 as *const Apple;
        assert!(check(never, "a").unwrap_err().message.contains("not a live Apple handle"));
        assert!(retire(apple, "a").unwrap().is_some());
        // Freed: every later use or free is refused.
        assert!(check(apple, "a").unwrap_err().message.contains("freed already"));
        assert!(retire(apple, "a").is_err());
        assert!(retire(pear, "p").unwrap().is_some());
    }

    #[test]
    fn many_threads_issue_and_retire() {
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for i in 0..10_000 {
                        let handle = issue(Apple(i));
                        check(handle, "h").unwrap();
                        assert!(retire(handle, "h").unwrap().is_some());
                    }
                });
            }
        });
    }
}

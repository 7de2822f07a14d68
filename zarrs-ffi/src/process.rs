//! Per-process state: the rayon thread pools, the tokio I/O runtime, remote clients and the
//! keep-warm thread (`warm`).
//!
//! After a `fork` (Python's multiprocessing, data-loader workers) a child inherits the
//! parent's pools, runtimes and connections as memory, but none of their threads: using them
//! would wait forever, and dropping them could wait for threads that do not exist. So every
//! such object lives in a [`PerProcess`] registry keyed by process id: a forked child builds
//! its own on first use and leaks (never drops, never uses) what it inherited.
//!
//! This module knows threads and processes only; it must not know about arrays, stores or
//! chunks.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use crate::error::{FfiError, FfiResult, ZarrsResult};

pub mod warm;

/// Values built once per (process, key) and shared by every call of that process.
///
/// At most `capacity` keys are kept per process: past that, the other keys' values are
/// dropped (calls still using them keep them alive until they return).
pub struct PerProcess<K, V> {
    entries: Mutex<BTreeMap<(u32, K), Arc<V>>>,
    capacity: usize,
}

impl<K: Ord + Copy, V> PerProcess<K, V> {
    pub const fn new(capacity: usize) -> Self {
        Self { entries: Mutex::new(BTreeMap::new()), capacity }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<(u32, K), Arc<V>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This process's value for `key`, built with `build` on first use in the process.
    pub fn get_or_build(&self, key: K, build: impl FnOnce() -> FfiResult<V>) -> FfiResult<Arc<V>> {
        let pid = std::process::id();
        if let Some(value) = self.lock().get(&(pid, key)) {
            return Ok(value.clone());
        }
        // Built outside the lock: building spawns threads, and a `fork` while the lock is
        // held would leave it held forever in the child.
        let built = Arc::new(build()?);
        let mut entries = self.lock();
        // A parent's values in a forked child: their threads do not exist here, so they are
        // leaked rather than dropped (dropping would wait for them).
        let inherited: Vec<_> = entries.keys().filter(|(owner, _)| *owner != pid).copied().collect();
        for old in inherited {
            std::mem::forget(entries.remove(&old));
        }
        if let Some(existing) = entries.get(&(pid, key)) {
            // Another thread won the race; ours has run nothing and is dropped unused.
            return Ok(existing.clone());
        }
        let mut evicted = Vec::new();
        if entries.len() >= self.capacity {
            let excess = entries.len() + 1 - self.capacity;
            let victims: Vec<_> = entries.keys().copied().take(excess).collect();
            evicted.extend(victims.iter().filter_map(|victim| entries.remove(victim)));
        }
        entries.insert((pid, key), built.clone());
        // Evicted values are dropped after the lock is released (a drop may wait for threads).
        drop(entries);
        drop(evicted);
        Ok(built)
    }
}

/// How many thread pools (distinct `threading.max_workers` values) a process keeps.
const MAX_POOLS: usize = 4;

/// This process's rayon pool of `threads` threads.
///
/// rayon's global pool is never used: a forked child would inherit its bookkeeping but not
/// its threads, and the first parallel call would wait forever.
pub fn thread_pool(threads: usize) -> FfiResult<Arc<rayon::ThreadPool>> {
    static POOLS: PerProcess<usize, rayon::ThreadPool> = PerProcess::new(MAX_POOLS);
    POOLS.get_or_build(threads, || {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("zarrs-ffi-{i}"))
            .build()
            .map_err(|e| FfiError::new(ZarrsResult::ZARRS_ERROR_STORAGE, format!("cannot start threads: {e}")))
    })
}

/// This process's tokio runtime for remote I/O (one per process, never one per call).
pub fn io_runtime() -> FfiResult<tokio::runtime::Handle> {
    static RUNTIMES: PerProcess<(), tokio::runtime::Runtime> = PerProcess::new(1);
    let runtime = RUNTIMES.get_or_build((), || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("zarrs-ffi-io")
            .enable_all()
            .build()
            .map_err(|e| FfiError::new(ZarrsResult::ZARRS_ERROR_STORAGE, format!("cannot start the I/O runtime: {e}")))
    })?;
    Ok(runtime.handle().clone())
}

/// Give rayon's global pool one thread, named `zarrs-ffi-idle`, before anything starts it.
///
/// Nothing of ours runs on that pool ([`thread_pool`] says why), but zarrs sizes its default
/// codec options (on opening an array, and `CodecOptions::default()`) with
/// `rayon::current_num_threads()`, which on a thread outside every pool starts rayon's global
/// pool: by default a thread per CPU, idle for the life of the process. One named thread
/// answers the same question, and shows (tests/pipeline/test_global_pool.py) that nothing ever wakes
/// it with work. Call it before any zarrs call that may ask; if the pool already exists
/// (started elsewhere), it stays as it is.
pub fn settle_global_pool() {
    static SETTLED: AtomicBool = AtomicBool::new(false);
    if SETTLED.load(Ordering::Relaxed) {
        return;
    }
    // Racing callers each try; rayon lets one build the pool and the others get an error.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .thread_name(|_| "zarrs-ffi-idle".to_string())
        .build_global();
    SETTLED.store(true, Ordering::Relaxed);
}

/// The number of logical CPUs, asked once per process: `available_parallelism` reads cgroup
/// files on Linux (tens of microseconds).
pub fn cpus() -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
}

// Batches shared between the calling thread and a pool.
//
// A call's thread used to hand every job to a pool and sleep until the pool finished: each
// call then paid for waking a pool thread (which sleeps again between the calls of a small
// read, while zarr runs its Python) and for waking the caller at the end, about 100 µs of a
// 300 µs small read. Here the caller runs jobs itself from the first moment, and pool
// threads join in as they wake, taking the jobs that are left. The caller is not a thread
// of any rayon pool: code it runs that calls rayon (`par_iter`, `join`) would land on rayon's
// global pool, which is not rebuilt after a `fork` and which we never use. So jobs run on
// the caller only when they use rayon through [`try_for_each`] alone, never directly.

/// One shared batch: what its helpers read. Owned jointly by the caller and every helper,
/// so a helper that wakes after the call returned finds no item left and touches nothing
/// else.
struct Shared {
    items: usize,
    /// The next item to claim; may run past `items` once every item is claimed.
    next: AtomicUsize,
    /// Items run to the end (or skipped after a failure).
    finished: AtomicUsize,
    /// Woken by the helper finishing the last item.
    caller: std::thread::Thread,
    /// Runs one item; it lives on the caller's stack (see [`Task`]).
    task: Task,
}

/// The caller's item runner with its lifetime erased, so `'static` pool jobs can hold it.
///
/// It is dereferenced only by a thread that has claimed an item not yet finished, and
/// [`share`] does not return (nor unwind) before every claimed item has finished: so it is
/// alive at every use.
struct Task(*const (dyn Fn(usize) + Sync + 'static));

// SAFETY: the pointee is `Sync` (calls from several threads at once are what `Fn + Sync`
// allows), and it outlives every dereference (see `Task`).
unsafe impl Send for Task {}
// SAFETY: as above; the pointer itself is never written after construction.
unsafe impl Sync for Task {}

impl Shared {
    /// Claim and run items until none is left. `helper`: this is a pool thread, which wakes
    /// the caller if it finishes the last item.
    fn work(&self, helper: bool) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.items {
                return;
            }
            // SAFETY: item `i` is claimed and not finished, so `share` is still waiting and
            // the runner it points to is alive (see `Task`).
            let task = unsafe { &*self.task.0 };
            task(i); // never unwinds: the runner catches panics
            if self.finished.fetch_add(1, Ordering::AcqRel) + 1 == self.items && helper {
                self.caller.unpark();
            }
        }
    }
}

/// How long a caller spins, once no item is left to claim, for helpers finishing theirs
/// before it sleeps: a helper's last item usually ends within this, and parking costs a
/// wake-up of about the same length.
const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// The outcome of one item: a panic's payload, or what the item returned.
type Outcome<R, E> = std::thread::Result<Result<R, E>>;

/// Run `f(0)`, ..., `f(items - 1)` on this thread and on up to `width - 1` threads of
/// `pool` (and never more threads than the pool has, this one included), each taking the
/// next item left; results in item order. After a failure no further item starts; the
/// first failure (by item) is returned. A panic in any item resumes on this thread once
/// every started item has finished.
///
/// While it runs, [`try_for_each`] called by an item on this thread shares its work with
/// `pool` the same way.
pub fn share<R: Send, E: Send>(
    pool: &Arc<rayon::ThreadPool>,
    items: usize,
    width: usize,
    f: impl Fn(usize) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let helpers = width.min(items).min(pool.current_num_threads()).saturating_sub(1);
    if helpers == 0 {
        let _sharing = SharingGuard::enter(pool);
        return (0..items).map(f).collect();
    }
    let slots: Vec<Mutex<Option<Outcome<R, E>>>> = (0..items).map(|_| Mutex::new(None)).collect();
    let failed = AtomicBool::new(false);
    let run = |i: usize| {
        if failed.load(Ordering::Relaxed) {
            return; // the slot stays empty: skipped
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| f(i)));
        if !matches!(outcome, Ok(Ok(_))) {
            failed.store(true, Ordering::Relaxed);
        }
        *slots[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
    };
    let run: *const (dyn Fn(usize) + Sync + '_) = &run;
    // SAFETY: only the lifetime changes (same fat pointer); `Task` says why every use of
    // the erased pointer happens while `run` is alive: below, this function waits for every
    // claimed item to finish before `run` goes out of scope, and nothing in between unwinds
    // (the runner catches panics, and the wait does not panic).
    let task = Task(unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync + 'static)>(run) });
    let shared = Arc::new(Shared {
        items,
        next: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        caller: std::thread::current(),
        task,
    });
    for _ in 0..helpers {
        let shared = shared.clone();
        pool.spawn(move || shared.work(true));
    }
    {
        let _sharing = SharingGuard::enter(pool);
        shared.work(false);
    }
    // Every item is claimed; wait for those the helpers are still running.
    let spin_until = std::time::Instant::now() + SPIN;
    while shared.finished.load(Ordering::Acquire) < items {
        if std::time::Instant::now() < spin_until {
            std::hint::spin_loop();
        } else {
            std::thread::park(); // unparked by the helper finishing the last item
        }
    }
    let mut results = Vec::with_capacity(items);
    let mut first_error = None;
    for slot in slots {
        match slot.into_inner().unwrap_or_else(PoisonError::into_inner) {
            Some(Ok(Ok(value))) => results.push(value),
            Some(Ok(Err(err))) => {
                first_error.get_or_insert(err);
            }
            Some(Err(payload)) => std::panic::resume_unwind(payload),
            None => {} // skipped after a failure
        }
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(results),
    }
}

/// `f(0)`, ..., `f(items - 1)` in parallel without ever using rayon's global pool: on a
/// thread of one of our pools as a parallel iterator of that pool; on a caller's thread
/// inside [`share`], shared with that call's pool; anywhere else one after the other.
pub fn try_for_each<E: Send>(items: usize, f: impl Fn(usize) -> Result<(), E> + Sync + Send) -> Result<(), E> {
    if rayon::current_thread_index().is_some() {
        use rayon::iter::{IntoParallelIterator, ParallelIterator};
        return (0..items).into_par_iter().try_for_each(f);
    }
    match SHARING.with(|sharing| sharing.borrow().clone()) {
        Some(pool) => share(&pool, items, usize::MAX, f).map(drop),
        None => (0..items).try_for_each(f),
    }
}

thread_local! {
    /// The pool of the [`share`] call this (non-pool) thread is running items of.
    static SHARING: RefCell<Option<Arc<rayon::ThreadPool>>> = const { RefCell::new(None) };
}

/// Sets [`SHARING`] for a scope, restoring what was there before (also on unwinding).
struct SharingGuard(Option<Arc<rayon::ThreadPool>>);

impl SharingGuard {
    fn enter(pool: &Arc<rayon::ThreadPool>) -> Self {
        Self(SHARING.with(|sharing| sharing.replace(Some(pool.clone()))))
    }
}

impl Drop for SharingGuard {
    fn drop(&mut self) {
        let previous = self.0.take();
        SHARING.with(|sharing| *sharing.borrow_mut() = previous);
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use super::{share, try_for_each};

    fn pool(threads: usize) -> Arc<rayon::ThreadPool> {
        Arc::new(rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap())
    }

    #[test]
    fn share_runs_every_item_once_in_order() {
        let pool = pool(3);
        for (items, width) in [(0, 4), (1, 4), (5, 1), (100, 2), (100, usize::MAX)] {
            let calls = AtomicUsize::new(0);
            let results = share(&pool, items, width, |i| {
                calls.fetch_add(1, Ordering::Relaxed);
                Ok::<_, ()>(i * 2)
            });
            assert_eq!(results, Ok((0..items).map(|i| i * 2).collect::<Vec<_>>()));
            assert_eq!(calls.load(Ordering::Relaxed), items);
        }
    }

    #[test]
    fn share_returns_the_first_failure() {
        let pool = pool(2);
        let results = share(&pool, 50, 2, |i| if i == 7 || i == 9 { Err(i) } else { Ok(i) });
        assert!(matches!(results, Err(7) | Err(9)), "{results:?}");
        // One failure alone is that failure.
        assert_eq!(share(&pool, 50, 2, |i| if i == 30 { Err(i) } else { Ok(i) }), Err(30));
    }

    #[test]
    fn share_resumes_a_panic_on_the_caller_after_every_started_item() {
        let pool = pool(2);
        let running = Arc::new(AtomicUsize::new(0));
        let caught = catch_unwind(AssertUnwindSafe(|| {
            share(&pool, 20, 2, |i| {
                running.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(1));
                running.fetch_sub(1, Ordering::SeqCst);
                assert!(i != 3, "item three");
                Ok::<_, ()>(i)
            })
        }));
        let payload = caught.unwrap_err();
        let message = payload.downcast_ref::<&str>().copied().or(payload.downcast_ref::<String>().map(String::as_str));
        assert_eq!(message, Some("item three"));
        assert_eq!(running.load(Ordering::SeqCst), 0, "an item still ran after the call returned");
    }

    #[test]
    fn nested_items_run_on_the_caller_or_its_pool_only() {
        let pool = pool(2);
        let caller = std::thread::current().id();
        let elsewhere = Mutex::new(Vec::new());
        let outer = share(&pool, 4, 2, |_| {
            try_for_each(16, |i| {
                let here = std::thread::current().id();
                if pool.current_thread_index().is_none() && here != caller {
                    elsewhere.lock().unwrap().push(i);
                }
                Ok::<_, ()>(())
            })
        });
        assert_eq!(outer, Ok(vec![(); 4]));
        assert!(elsewhere.lock().unwrap().is_empty(), "items ran outside the caller and its pool");
    }
}

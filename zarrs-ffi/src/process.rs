//! Per-process state: the rayon thread pools, the tokio I/O runtime and remote clients.
//!
//! After a `fork` (Python's multiprocessing, data-loader workers) a child inherits the
//! parent's pools, runtimes and connections as memory, but none of their threads: using them
//! would wait forever, and dropping them could wait for threads that do not exist. So every
//! such object lives in a [`PerProcess`] registry keyed by process id: a forked child builds
//! its own on first use and leaks (never drops, never uses) what it inherited.
//!
//! This module knows threads and processes only; it must not know about arrays, stores or
//! chunks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use crate::error::{FfiError, FfiResult, ZarrsResult};

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

/// The number of logical CPUs, asked once per process: `available_parallelism` reads cgroup
/// files on Linux (tens of microseconds).
pub fn cpus() -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
}

//! Per-call options: threads, chunk versus codec concurrency, checksums, empty chunks.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex, OnceLock};

use zarrs::array::concurrency::concurrency_chunks_and_codec;
use zarrs::array::{ArrayCodecTraits, CodecOptions, DataType};

use crate::args;
use crate::error::{FfiError, FfiResult, ZarrsResult};
use crate::panic::boundary;

/// Options for the data calls. Pass NULL wherever a `const ZarrsOptions*` is taken to use the
/// defaults that [`zarrs_options_default`] writes.
///
/// Plain data: copy it freely; the library never keeps the pointer beyond a call. Flags are
/// `uint8_t`, 0 meaning false and any other value true, so no byte pattern is invalid.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZarrsOptions {
    /// Threads used by one call. 0: one per logical CPU. Calls with the same count share a
    /// pool, created on first use in each process (so forked children get their own).
    pub num_threads: u32,
    /// The fewest chunks processed concurrently when balancing chunk against codec
    /// concurrency. 0: the zarrs default (4).
    pub chunk_concurrent_minimum: u32,
    /// The most chunks processed concurrently. 0: no limit beyond the thread count.
    pub chunk_concurrent_maximum: u32,
    /// Nonzero: verify checksums (e.g. crc32c) while decoding; a mismatch fails with
    /// `ZARRS_ERROR_CHECKSUM`.
    pub validate_checksums: u8,
    /// Nonzero: store chunks whose every element equals the fill value. When 0 such chunks
    /// are erased instead, so a later read returns the fill value from the missing chunk.
    pub store_empty_chunks: u8,
    /// The most bytes one variable-length chunk (`string`, `bytes`) may decode to, through
    /// each of its compressors; more is `ZARRS_ERROR_CODEC`. Fixed-size chunks need no such
    /// cap: their metadata bounds them. 0: the default, 1 GiB.
    pub max_variable_chunk_bytes: u64,
}

impl Default for ZarrsOptions {
    fn default() -> Self {
        Self {
            num_threads: 0,
            chunk_concurrent_minimum: 0,
            chunk_concurrent_maximum: 0,
            validate_checksums: 1,
            store_empty_chunks: 0,
            max_variable_chunk_bytes: crate::bounds::DEFAULT_MAX_VARIABLE_CHUNK_BYTES,
        }
    }
}

/// Write the default options to `options_out`.
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn zarrs_options_default(options_out: *mut ZarrsOptions) -> ZarrsResult {
    boundary(|| {
        // SAFETY: `options_out` is checked for NULL; the caller provides writable storage.
        unsafe { args::write_out(options_out, ZarrsOptions::default()) }
    })
}

impl ZarrsOptions {
    /// Read the options a caller passed, NULL meaning defaults.
    ///
    /// # Safety
    /// If non-NULL, `ptr` must point to a valid `ZarrsOptions`.
    pub unsafe fn from_ptr(ptr: *const ZarrsOptions) -> Self {
        if ptr.is_null() {
            return Self::default();
        }
        // SAFETY: non-NULL, and the caller guarantees it addresses a `ZarrsOptions`; every
        // field is an integer, so any bytes are a valid value, and the read makes no
        // alignment assumption.
        unsafe { ptr.read_unaligned() }
    }

    /// The cap on a decoded variable-length chunk.
    pub fn max_variable_chunk_bytes(&self) -> u64 {
        if self.max_variable_chunk_bytes == 0 {
            crate::bounds::DEFAULT_MAX_VARIABLE_CHUNK_BYTES
        } else {
            self.max_variable_chunk_bytes
        }
    }

    fn threads(&self) -> usize {
        if self.num_threads == 0 {
            // available_parallelism reads cgroup files on Linux (tens of microseconds), so it
            // is asked once per process.
            static CPUS: OnceLock<usize> = OnceLock::new();
            *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
        } else {
            self.num_threads as usize
        }
    }

    fn codec_options(&self) -> CodecOptions {
        let mut options = CodecOptions::default();
        options
            .set_validate_checksums(self.validate_checksums != 0)
            .set_store_empty_chunks(self.store_empty_chunks != 0)
            .set_concurrent_target(self.threads());
        if self.chunk_concurrent_minimum > 0 {
            options.set_chunk_concurrent_minimum(self.chunk_concurrent_minimum as usize);
        }
        options
    }

    /// Codec options for a call that touches a single chunk: all threads go to the codecs.
    pub fn single_chunk(&self) -> CodecOptions {
        self.codec_options()
    }

    /// Split the thread budget between chunks (outer) and codecs (inner) for a batch of
    /// `num_chunks` chunks of `chunk_shape`, the way zarrs does for its own multi-chunk calls,
    /// then cap the chunk concurrency at `chunk_concurrent_maximum`.
    pub fn plan(
        &self,
        codecs: &dyn ArrayCodecTraits,
        chunk_shape: &[NonZeroU64],
        data_type: &DataType,
        num_chunks: usize,
    ) -> FfiResult<(usize, CodecOptions)> {
        let options = self.codec_options();
        let recommended = codecs.recommended_concurrency(chunk_shape, data_type)?;
        let (mut chunk_limit, codec_options) =
            concurrency_chunks_and_codec(self.threads(), num_chunks, &options, &recommended);
        if self.chunk_concurrent_maximum > 0 {
            chunk_limit = chunk_limit.min(self.chunk_concurrent_maximum as usize);
        }
        Ok((chunk_limit.max(1), codec_options))
    }

    /// Run `f` on a pool with this call's thread count.
    ///
    /// Pools are created once per (process, thread count) and kept, so repeated calls do not
    /// spawn threads. rayon's global pool is never used: after a `fork` (Python's
    /// multiprocessing, data-loader workers) the child inherits the pool's bookkeeping but not
    /// its threads, and the first parallel call would wait forever. Keying by process id
    /// gives a forked child fresh pools; the parent's entries are left untouched (their
    /// threads do not exist in the child, so they must not be dropped there).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> FfiResult<R> {
        type Pools = HashMap<(u32, usize), Arc<rayon::ThreadPool>>;
        static POOLS: OnceLock<Mutex<Pools>> = OnceLock::new();
        let pools = POOLS.get_or_init(Mutex::default);
        let lock = || pools.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (std::process::id(), self.threads());
        let existing = lock().get(&key).cloned();
        let pool = match existing {
            Some(pool) => pool,
            None => {
                // Built outside the lock: building spawns threads, and a `fork` while the lock
                // is held would leave it held forever in the child.
                let built = Arc::new(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(key.1)
                        .thread_name(|i| format!("zarrs-ffi-{i}"))
                        .build()
                        .map_err(|e| FfiError::new(ZarrsResult::ZARRS_ERROR_STORAGE, format!("cannot start threads: {e}")))?,
                );
                let mut pools = lock();
                // A parent's pools in a forked child: their threads do not exist here, so they
                // are leaked rather than dropped (dropping would wait for them).
                let inherited: Vec<_> = pools.keys().filter(|(pid, _)| *pid != key.0).copied().collect();
                for old in inherited {
                    std::mem::forget(pools.remove(&old));
                }
                // Bounded: a process that asks for many thread counts keeps MAX_POOLS of them (the
                // others are dropped; their threads end once the calls using them return).
                if pools.len() >= MAX_POOLS {
                    let evict: Vec<_> = pools.keys().filter(|k| **k != key).copied().take(pools.len() + 1 - MAX_POOLS).collect();
                    for old in evict {
                        pools.remove(&old);
                    }
                }
                pools.entry(key).or_insert(built).clone()
            }
        };
        Ok(pool.install(f))
    }
}

/// How many thread pools (distinct `threading.max_workers` values) a process keeps.
const MAX_POOLS: usize = 4;

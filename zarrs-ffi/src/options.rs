//! Per-call options: threads, chunk versus codec concurrency, checksums, empty chunks, fsync.
//!
//! Plain data read from the caller, and how a call spends its thread budget. The thread
//! pools themselves are per-process state (`process.rs`). This module must not know about
//! arrays, stores or chunk jobs.

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rayon::iter::{IntoParallelIterator, ParallelIterator};
use rayon_iter_concurrent_limit::iter_concurrent_limit;

use zarrs::array::concurrency::concurrency_chunks_and_codec;
use zarrs::array::{ArrayCodecTraits, CodecOptions, DataType};

use crate::bounds::DEFAULT_MAX_VARIABLE_CHUNK_BYTES;
use crate::error::FfiResult;
use crate::process;

/// The most consecutive items a worker of [`ZarrsOptions::try_for_each_guided`] takes at
/// once: a sixteenth of a 512^3 array of 32^3 chunks, so that even the first runs end soon
/// enough to even out.
const MAX_RUN: usize = 256;

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
    /// Nonzero: make writes to a filesystem storage durable. Each chunk file is fsynced
    /// before it replaces the old one and its directory after (and after an erase), so a
    /// write that returned survives a power loss. Without it a write survives the death of
    /// the process, not of the machine. Other storages ignore it. Default 0.
    pub fsync: u8,
}

impl Default for ZarrsOptions {
    fn default() -> Self {
        Self {
            num_threads: 0,
            chunk_concurrent_minimum: 0,
            chunk_concurrent_maximum: 0,
            validate_checksums: 1,
            store_empty_chunks: 0,
            max_variable_chunk_bytes: DEFAULT_MAX_VARIABLE_CHUNK_BYTES,
            fsync: 0,
        }
    }
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
            DEFAULT_MAX_VARIABLE_CHUNK_BYTES
        } else {
            self.max_variable_chunk_bytes
        }
    }

    /// Whether local writes fsync (see the field).
    pub fn fsync(&self) -> bool {
        self.fsync != 0
    }

    fn threads(&self) -> usize {
        if self.num_threads == 0 {
            process::cpus()
        } else {
            self.num_threads as usize
        }
    }

    fn codec_options(&self) -> CodecOptions {
        process::settle_global_pool();
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

    /// Run `f` on this process's pool with this call's thread count ([`process::thread_pool`]:
    /// created once per process and thread count, so repeated calls do not spawn threads and
    /// a forked child gets its own).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> FfiResult<R> {
        Ok(process::thread_pool(self.threads())?.install(f))
    }

    /// Run `f` over `0..items` on this call's pool, at most `width` at a time, stopping at
    /// the first error (returned).
    ///
    /// Each of `width` workers takes the next run of items whenever it finishes one, and the
    /// runs shrink as the batch drains (guided scheduling: a run is what is left divided by
    /// twice the workers, at most [`MAX_RUN`] items), so every thread stays busy until the
    /// last few items. `iter_concurrent_limit!` instead hands each worker a fixed share of
    /// `items / width` up front, so whatever slows one thread (a chunk that compresses more
    /// slowly, another process) is paid at the end with the other threads idle. Runs are of
    /// consecutive items, so a thread still visits neighbouring chunks one after another.
    pub fn try_for_each_guided<E: Send>(
        &self,
        items: usize,
        width: usize,
        f: impl Fn(usize) -> Result<(), E> + Sync + Send,
    ) -> FfiResult<Result<(), E>> {
        let workers = width.clamp(1, items.max(1));
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let worker = |_: usize| -> Result<(), E> {
            loop {
                if failed.load(Ordering::Relaxed) {
                    return Ok(()); // another worker's error is the result
                }
                let mut start = next.load(Ordering::Relaxed);
                let run = loop {
                    if start >= items {
                        return Ok(());
                    }
                    let run = ((items - start) / (2 * workers)).clamp(1, MAX_RUN);
                    match next.compare_exchange_weak(start, start + run, Ordering::Relaxed, Ordering::Relaxed) {
                        Ok(_) => break start..start + run,
                        Err(current) => start = current,
                    }
                };
                for i in run {
                    if failed.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    if let Err(err) = f(i) {
                        failed.store(true, Ordering::Relaxed);
                        return Err(err);
                    }
                }
            }
        };
        if workers == 1 {
            return self.install(|| worker(0));
        }
        self.install(|| (0..workers).into_par_iter().try_for_each(worker))
    }

    /// Run `f` over `0..items`, at most `width` at a time, with the calling thread taking
    /// part ([`process::share`]: it starts at once instead of waking a pool thread and
    /// sleeping until the pool is done). Only for work that reaches rayon solely through
    /// [`process::try_for_each`]. On a thread of one of our pools it is a parallel iterator
    /// of that pool instead.
    pub fn share<R: Send, E: Send>(
        &self,
        items: usize,
        width: usize,
        f: impl Fn(usize) -> Result<R, E> + Sync + Send,
    ) -> FfiResult<Result<Vec<R>, E>> {
        if rayon::current_thread_index().is_some() {
            return self.install(|| iter_concurrent_limit!(width.max(1), 0..items, map, &f).collect());
        }
        Ok(process::share(&process::thread_pool(self.threads())?, items, width, f))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::ZarrsOptions;

    #[test]
    fn guided_runs_visit_every_item_once_within_the_width() {
        let options = ZarrsOptions { num_threads: 3, ..ZarrsOptions::default() };
        for (items, width) in [(0, 2), (1, 4), (7, 1), (1000, 2), (4096, 4), (300, 64)] {
            let visits: Vec<AtomicUsize> = (0..items).map(|_| AtomicUsize::new(0)).collect();
            let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
            let order = std::sync::Mutex::new(Vec::new());
            let result = options.try_for_each_guided(items, width, |i| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                visits[i].fetch_add(1, Ordering::Relaxed);
                order.lock().unwrap().push(i);
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, ()>(())
            });
            assert_eq!(result.unwrap(), Ok(()));
            assert!(visits.iter().all(|v| v.load(Ordering::Relaxed) == 1), "{items} items, width {width}");
            assert!(most.load(Ordering::SeqCst) <= width.min(3), "{items} items, width {width}");
            if width == 1 {
                assert_eq!(*order.lock().unwrap(), (0..items).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn guided_runs_stop_at_an_error() {
        let options = ZarrsOptions { num_threads: 2, ..ZarrsOptions::default() };
        for width in [1, 2, 4] {
            let calls = AtomicUsize::new(0);
            let result = options.try_for_each_guided(10_000, width, |i| {
                calls.fetch_add(1, Ordering::Relaxed);
                if i == 10 { Err(format!("item {i}")) } else { Ok(()) }
            });
            assert_eq!(result.unwrap(), Err("item 10".to_string()));
            if width == 1 {
                // One worker, in order: nothing after the failing item runs.
                assert_eq!(calls.load(Ordering::Relaxed), 11);
            }
        }
    }
}

//! The array handle: an open array, its chunk geometry and codec engine, and the batch
//! orchestration every data call shares (plan, fetch, decode or merge and encode, store).
//!
//! Region and chunk calls are planned into the same chunk jobs as the batch calls, so every
//! data call has one data path. Local stores read and write a job at a time per thread;
//! remote stores fetch and store a whole batch concurrently around the parallel codec work.

use std::borrow::Cow;
use std::num::NonZeroU64;
use std::sync::Arc;

use rayon::iter::{IntoParallelIterator, ParallelIterator};
use rayon_iter_concurrent_limit::iter_concurrent_limit;
use zarrs::array::{Array, ArrayMetadata, ArrayMetadataOptions, ArraySubset, CodecOptions};
use zarrs::storage::{
    Bytes, MaybeBytes, ReadableStorage, ReadableWritableListableStorage, ReadableWritableListableStorageTraits, StorageError, StoreKey,
};

use super::ZarrsStorage;
use crate::args::{self, EncodedInputs};
use crate::engine::{ChunkCodec, ShardLayout, ZarrsSubchunkOrder};
use crate::error::{FfiError, FfiResult, ZarrsResult};
use crate::layout::{self, ChunkJob, ChunkShapes, Destination, Source};
use crate::layout::{GatherJob, GatherTarget, PickPool};
use crate::options::ZarrsOptions;
use crate::process;
use crate::storage::index_cache::{self, IndexCache};
use crate::storage::rounds::{self, Fetched, RoundView};
use crate::storage::{LocalStore, RemoteStore};

/// The largest batch a read decodes with the calling thread taking part: a 16^3 box
/// touches at most 8 chunks of 32^3.
const SHARE_MAX_JOBS: usize = 16;

/// The most bytes a read decompresses (whole chunks, or the inner chunks a partial shard
/// read needs) on the calling thread alone, waking no pool thread: one 32^3 chunk of
/// `uint16`. Below it a helper costs more than it saves: it wakes tens of microseconds late
/// (after zarr's Python between two small reads it is asleep), often claims the last item,
/// and the caller then waits for it. Above it, decompressing a second chunk (zstd: about
/// 50 µs for 64 KiB) on a helper pays: with 256 KiB here, 16^3 zstd reads through zarr were
/// 25-30% slower in their native call (benchmarks/call_share.py, A/B on a quiet machine).
const INLINE_BYTES: u64 = 64 << 10;

/// [`INLINE_BYTES`] for shards whose inner chunks are not compressed (their encoded size is
/// fixed): decoding is a copy, and the reads and copies of a small box take a few
/// microseconds each (16^3 raw-sharded reads: native call 121 -> 98-106 µs, same A/B).
const INLINE_COPY_BYTES: u64 = 1 << 20;

/// The most rounds of requests one remote read may take: nested sharding adds a round per
/// level, and no layout zarr writes needs more than a few.
const MAX_ROUNDS: usize = 16;

/// Where a read's jobs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spread {
    /// All on the calling thread, nested work (a shard's inner chunks) too.
    Caller,
    /// The calling thread starts at once and the pool joins in ([`process::share`]).
    Share,
    /// The pool's parallel iterators; the calling thread waits.
    Pool,
}

/// An open array. Create with [`zarrs_array_open`], [`zarrs_array_open_with_metadata`] or
/// [`zarrs_array_create`]; free with [`zarrs_array_free`]. It keeps its storage alive.
///
/// Thread safety: every call taking a `const ZarrsArray*` may run concurrently.
pub struct ZarrsArray {
    array: Array<dyn ReadableWritableListableStorageTraits>,
    storage: ReadableWritableListableStorage,
    /// The same storage, for reads.
    readable: ReadableStorage,
    /// The storage is remote: batch calls fetch and store concurrently through it.
    remote: Option<Arc<RemoteStore>>,
    /// The storage is a directory: writes fsync when a call's options ask.
    local: Option<Arc<LocalStore>>,
    /// The chunk shapes of the grid. Caller-given chunk shapes are checked against these
    /// before anything is allocated for them.
    shapes: ChunkShapes,
    /// The array's codecs, decoding within the bounds the metadata sets.
    codec: ChunkCodec,
    /// The store and the array's path in it, for error messages.
    name: String,
    /// Shard indexes kept across reads (remote storage, sharded arrays): `index_cache.rs`.
    index_cache: Option<Arc<IndexCache>>,
}

fn parse_metadata(json: &str) -> FfiResult<ArrayMetadata> {
    // Parse the version first: the untagged V2/V3 enum would otherwise report only "did
    // not match any variant" and lose the real reason.
    let invalid = |e: serde_json::Error| FfiError::new(ZarrsResult::ZARRS_ERROR_INVALID_METADATA, format!("invalid array metadata: {e}"));
    let value: serde_json::Value = serde_json::from_str(json).map_err(invalid)?;
    match value.get("zarr_format").and_then(serde_json::Value::as_u64) {
        Some(3) => Ok(ArrayMetadata::V3(serde_json::from_value(value).map_err(invalid)?)),
        Some(2) => Ok(ArrayMetadata::V2(serde_json::from_value(value).map_err(invalid)?)),
        _ => Err(FfiError::new(
            ZarrsResult::ZARRS_ERROR_INVALID_METADATA,
            "invalid array metadata: `zarr_format` must be 2 or 3",
        )),
    }
}

/// Construction and description.
impl ZarrsArray {
    /// Open the array at `path` in `storage`, from `metadata` (a JSON document) if given or
    /// else from the store; `store_metadata` then writes the document to the store.
    pub fn open(storage: &ZarrsStorage, path: &str, metadata: Option<&str>, store_metadata: bool) -> FfiResult<Self> {
        // Opening sizes zarrs' default codec options with rayon's global pool.
        process::settle_global_pool();
        let array = match metadata {
            None => Array::open(storage.store.clone(), path)?,
            Some(json) => Array::new_with_metadata(storage.store.clone(), path, parse_metadata(json)?)?,
        };
        if store_metadata {
            // Store the document as given: zarrs would otherwise add a `_zarrs` attribute.
            array.store_metadata_opt(&ArrayMetadataOptions::default().with_include_zarrs_metadata(false))?;
        }
        let shapes = ChunkShapes::of(&array)?;
        let codec = ChunkCodec::new(&array, &shapes.largest())?;
        let path = array.path().as_str();
        let name = if path == "/" { storage.name.clone() } else { format!("{}{path}", storage.name.trim_end_matches('/')) };
        // The range every shard's index takes in the value at its key; shards all have the
        // largest chunk shape (edge shards are padded), so it is the same for each.
        let shard_shape: Option<Vec<NonZeroU64>> = shapes.largest().into_iter().map(NonZeroU64::new).collect();
        let index_cache = match (codec.shard(), &storage.remote, shard_shape) {
            (Some(shard), Some(_), Some(shape)) => {
                let range = shard.index_request(&shape)?;
                Some(Arc::new(IndexCache::new(range, index_cache::DEFAULT_BUDGET)))
            }
            _ => None,
        };
        Ok(Self {
            index_cache,
            codec,
            name,
            array,
            storage: storage.store.clone(),
            readable: storage.store.clone(),
            remote: storage.remote.clone(),
            local: storage.local.clone(),
            shapes,
        })
    }

    /// The store and the array's path in it, for error messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Our sharding layout, when the codecs are exactly one sharding codec.
    pub(crate) fn shard(&self) -> Option<&ShardLayout> {
        self.codec.shard()
    }

    /// Decode one job from its encoded bytes (None: missing, the fill value) into
    /// `destination`; whether the chunk was present.
    pub(crate) fn decode_job(
        &self,
        job: &ChunkJob,
        encoded: Option<Cow<'_, [u8]>>,
        destination: &Destination,
        options: &CodecOptions,
    ) -> FfiResult<bool> {
        self.codec.decode_job(job, encoded, destination, options).map_err(|e| self.in_chunk(&job.key, e))
    }

    /// Whether the chunks are shards (the array-to-bytes codec is sharding).
    pub fn sharded(&self) -> bool {
        self.codec.sharded()
    }

    /// The zarrs array (shape, data type, metadata, chunk keys).
    pub fn array(&self) -> &Array<dyn ReadableWritableListableStorageTraits> {
        &self.array
    }

    pub fn element_size(&self) -> FfiResult<usize> {
        self.codec.element_size()
    }

    /// Fail unless the data type has variable-length elements.
    pub fn require_variable(&self) -> FfiResult<()> {
        self.codec.require_variable()
    }

    /// Keep shard indexes within `budget` bytes (0: keep none). Arrays whose indexes are not
    /// cached (local storage, no sharding) ignore it.
    pub fn set_index_cache_budget(&self, budget: u64) {
        if let Some(cache) = &self.index_cache {
            cache.set_budget(budget);
        }
    }

    /// (shard indexes held, bytes they count against the budget).
    pub fn index_cache_usage(&self) -> (u64, u64) {
        self.index_cache.as_ref().map_or((0, 0), |cache| cache.usage())
    }

    /// Drop the cached indexes of values this handle is about to write.
    fn forget_indexes<'k>(&self, keys: impl IntoIterator<Item = &'k StoreKey>) {
        if let Some(cache) = &self.index_cache {
            keys.into_iter().for_each(|key| cache.remove(key));
        }
    }

    pub fn set_subchunk_write_order(&self, order: ZarrsSubchunkOrder) {
        self.codec.set_subchunk_write_order(order);
    }

    /// Name the chunk and the array in a failure to read or write the chunk at `key`, as
    /// `c/0/3 in data.zarr: ...`. Caller errors (invalid arguments) are left as they are.
    pub fn in_chunk(&self, key: &StoreKey, mut err: FfiError) -> FfiError {
        use ZarrsResult::*;
        if matches!(err.code, ZARRS_ERROR_CODEC | ZARRS_ERROR_CHECKSUM | ZARRS_ERROR_STORAGE | ZARRS_ERROR_UNSUPPORTED | ZARRS_ERROR_OUT_OF_MEMORY)
            && !err.message.starts_with(key.as_str())
        {
            err.message = format!("{key} in {}: {}", self.name, err.message);
        }
        err
    }

    /// Fail unless `ndim` is the array's dimensionality.
    pub fn check_ndim(&self, ndim: usize, name: &str) -> FfiResult<()> {
        let expected = self.array.dimensionality();
        if ndim == expected {
            Ok(())
        } else {
            Err(FfiError::invalid(format!("`{name}` has {ndim} dimensions; the array has {expected}")))
        }
    }
}

/// Chunk jobs.
impl ZarrsArray {
    /// The jobs a caller describes with keys (optional) and geometry ([`layout::parse_jobs`]).
    pub fn parse_jobs(&self, num_chunks: usize, keys: Option<(&str, &[u64])>, geometry: &[u64]) -> FfiResult<Vec<ChunkJob>> {
        layout::parse_jobs(&self.shapes, num_chunks, keys, geometry)
    }

    /// The job for one whole chunk by grid indices.
    pub fn chunk_job(&self, chunk_indices: &[u64]) -> FfiResult<ChunkJob> {
        // zarrs' regular grid returns a chunk shape for any indices, so the bounds are checked
        // here: a chunk outside the grid would read as the fill value and write a stray key.
        let grid_shape = self.array.chunk_grid_shape();
        if chunk_indices.len() != grid_shape.len()
            || chunk_indices.iter().zip(grid_shape.iter()).any(|(&i, &n)| i >= n)
        {
            return Err(FfiError::invalid(format!(
                "chunk {chunk_indices:?} is outside the chunk grid of shape {grid_shape:?}"
            )));
        }
        let shape = self
            .array
            .chunk_grid()
            .chunk_shape(chunk_indices)
            .map_err(|e| FfiError::invalid(e.to_string()))?
            .ok_or_else(|| FfiError::invalid(format!("chunk {chunk_indices:?} is outside the chunk grid")))?;
        Ok(ChunkJob::whole(self.array.chunk_key(chunk_indices), shape))
    }

    /// The jobs covering an array region: one per chunk it touches.
    pub fn region_jobs(&self, region: &ArraySubset) -> FfiResult<Vec<ChunkJob>> {
        if !region.inbounds_shape(self.array.shape()) {
            return Err(FfiError::invalid(format!(
                "region {region} is outside the array shape {:?}",
                self.array.shape()
            )));
        }
        let Some(chunks) = self
            .array
            .chunks_in_array_subset(region)
            .map_err(|e| FfiError::invalid(e.to_string()))?
        else {
            return Err(FfiError::invalid(format!("region {region} does not map onto the chunk grid")));
        };
        chunks
            .indices()
            .into_iter()
            .map(|indices| {
                let chunk_region = self.array.chunk_subset(&indices)?;
                let overlap = chunk_region.overlap(region)?;
                let mut job = self.chunk_job(&indices)?;
                job.subset = overlap.relative_to(chunk_region.start())?;
                job.buffer_start = overlap.relative_to(region.start())?.start().to_vec();
                Ok(job)
            })
            .collect()
    }

    /// Erase the chunk at `indices`; it then reads as the fill value. A local storage syncs
    /// the chunk's directory after, when `options` ask for fsync.
    pub fn erase_chunk(&self, options: &ZarrsOptions, indices: &[u64]) -> FfiResult<()> {
        let job = self.chunk_job(indices)?;
        self.store_value(&job.key, None, options.fsync())?;
        Ok(())
    }

    /// The chunk shapes of a call: `num_chunks` rows of `ndim` values.
    fn chunk_shapes(&self, shapes: &[u64], num_chunks: usize) -> FfiResult<Vec<Vec<NonZeroU64>>> {
        let ndim = self.array.dimensionality();
        if Some(shapes.len()) != num_chunks.checked_mul(ndim) {
            return Err(FfiError::invalid(format!(
                "`chunk_shapes` has {} values; {num_chunks} chunks of {ndim} dimensions need {}",
                shapes.len(),
                num_chunks.saturating_mul(ndim)
            )));
        }
        if ndim == 0 {
            return Ok(vec![Vec::new(); num_chunks]);
        }
        shapes
            .chunks(ndim)
            .enumerate()
            .map(|(i, shape)| {
                let name = StoreKey::new(format!("chunk-{i}")).map_err(|e| FfiError::invalid(e.to_string()))?;
                let shape = args::nonzero_shape(shape, &format!("chunk {name}: chunk shape"))?;
                self.shapes.check(&shape, &name)?;
                Ok(shape)
            })
            .collect()
    }

    /// Chunk versus codec concurrency for a batch of `jobs`.
    pub(crate) fn plan(&self, options: &ZarrsOptions, jobs: &[ChunkJob]) -> FfiResult<(usize, CodecOptions)> {
        let Some(first) = jobs.first() else {
            return Ok((1, options.single_chunk()));
        };
        if jobs.len() == 1 {
            return Ok((1, options.single_chunk()));
        }
        let codecs = self.codec.chain();
        options.plan(codecs.as_ref(), &first.chunk_shape, self.codec.data_type(), jobs.len())
    }
}

/// Reads and writes through the array's storage.
impl ZarrsArray {
    /// Where a read of `jobs` runs. Small batches start on the calling thread, where waking
    /// the pool and sleeping until it is done is most of the call: alone when they decode
    /// at most [`INLINE_BYTES`] ([`INLINE_COPY_BYTES`] uncompressed), else with the pool joining in ([`ZarrsOptions::share`]).
    /// Large batches stay on the pool's parallel iterators: with the caller taking part
    /// they ran 18-27% slower (512^3 blosc-lz4 and raw-sharded read_all through zarr,
    /// same-run A/B; cause not yet profiled). Only codecs that reach rayon through
    /// `process::try_for_each` alone may run on the caller (`decodes_off_pool`).
    fn spread(&self, jobs: &[ChunkJob]) -> Spread {
        if jobs.len() > SHARE_MAX_JOBS || !self.codec.decodes_off_pool() {
            return Spread::Pool;
        }
        let copies = self.shard().map(ShardLayout::innermost).is_some_and(|shard| {
            let fixed = shard.inner_codecs.fixed_encoded_size(&shard.inner_shape, self.codec.data_type(), self.array.fill_value());
            matches!(fixed, Ok(Some(_)))
        });
        if self.decoded_bytes(jobs) <= if copies { INLINE_COPY_BYTES } else { INLINE_BYTES } {
            Spread::Caller
        } else {
            Spread::Share
        }
    }

    /// The bytes decoding `jobs` produces: each chunk whole, or for a shard read in part
    /// the inner chunks its subset meets (of the innermost shards, for nested sharding; an
    /// estimate of the work, saturating).
    fn decoded_bytes(&self, jobs: &[ChunkJob]) -> u64 {
        let element = self.codec.element_size().unwrap_or(1) as u64;
        let product = |dims: &mut dyn Iterator<Item = u64>| dims.fold(element, u64::saturating_mul);
        jobs.iter()
            .map(|job| match self.shard().map(ShardLayout::innermost) {
                Some(shard) if self.codec.reads_ranges(job) => {
                    let inner = &shard.inner_shape;
                    let (start, shape) = (job.subset.start(), job.subset.shape());
                    let mut met = (0..inner.len()).map(|d| {
                        let n = inner[d].get();
                        let last = (start[d] + shape[d].max(1) - 1) / n;
                        (last - start[d] / n + 1).saturating_mul(n)
                    });
                    product(&mut met)
                }
                _ => product(&mut job.chunk_shape.iter().map(|d| d.get())),
            })
            .fold(0, u64::saturating_add)
    }

    /// Read one job from the array's storage. A shard read in part from a local directory
    /// opens its file once for the index and the inner chunks ([`LocalStore::open_value`]).
    fn read_job(&self, job: &ChunkJob, destination: &Destination, options: &CodecOptions) -> FfiResult<bool> {
        if let (Some(local), Some(shard)) = (&self.local, self.shard()) {
            if self.codec.reads_ranges(job) {
                if let Some(value) = local.open_value(&job.key)? {
                    let (data_type, fill_value) = (self.codec.data_type(), self.array.fill_value());
                    return shard.read_partial(&value, job, destination, data_type, fill_value, options);
                }
            }
        }
        self.codec.read_job(&self.readable, job, destination, options)
    }

    /// Read every job into `destination`, in parallel; `present[i]` says if chunk i existed.
    pub fn read_jobs(&self, options: &ZarrsOptions, jobs: Vec<ChunkJob>, destination: &Destination) -> FfiResult<Vec<bool>> {
        let (limit, codec_options) = self.plan(options, &jobs)?;
        if let Some(remote) = &self.remote {
            return self.read_jobs_remote(remote, options, jobs, destination, limit, &codec_options);
        }
        let read = |job: &ChunkJob| self.read_job(job, destination, &codec_options).map_err(|e| self.in_chunk(&job.key, e));
        match self.spread(&jobs) {
            Spread::Caller => jobs.iter().map(read).collect(),
            Spread::Share => options.share(jobs.len(), limit, |i| read(&jobs[i]))?,
            Spread::Pool => {
                options.install(|| iter_concurrent_limit!(limit, jobs, map, |job: ChunkJob| read(&job)).collect::<FfiResult<Vec<bool>>>())?
            }
        }
    }

    /// Remote reads, in rounds ([`Self::in_rounds`]): whole chunks and shard indexes in the
    /// first, the inner chunks those indexes locate in the next, every request of a round in
    /// flight at once; decoded in parallel as their bytes are in.
    fn read_jobs_remote(
        &self,
        remote: &RemoteStore,
        options: &ZarrsOptions,
        jobs: Vec<ChunkJob>,
        destination: &Destination,
        limit: usize,
        codec_options: &CodecOptions,
    ) -> FfiResult<Vec<bool>> {
        self.in_rounds(remote, options, &jobs, limit, |job, storage| {
            // A chunk is fetched whole (one request, whatever part is read); a shard read in
            // part by ranges.
            if self.codec.reads_ranges(job) {
                self.codec.read_job(storage, job, destination, codec_options)
            } else {
                let encoded = storage.get(&job.key)?;
                self.codec.decode_job(job, encoded.as_deref().map(Cow::Borrowed), destination, codec_options)
            }
            .map_err(|e| self.in_chunk(&job.key, e))
        })
    }

    /// Run `run` for every job against the bytes fetched so far from `remote` (and the shard
    /// indexes cached); fetch every request the jobs missed, all at once, and run those jobs
    /// again, until none misses (`storage/rounds.rs`). A job's error counts only from a run
    /// that missed nothing. A value found changed under the read (its ETag is not the one its
    /// bytes so far, or its cached index, were read at) is read again and every job run
    /// again, so no job decodes bytes of two versions; cached indexes no response confirmed
    /// are confirmed (a HEAD each, at once) before the read returns.
    fn in_rounds<J: Sync, R: Send>(
        &self,
        remote: &RemoteStore,
        options: &ZarrsOptions,
        jobs: &[J],
        limit: usize,
        run: impl Fn(&J, &ReadableStorage) -> FfiResult<R> + Sync,
    ) -> FfiResult<Vec<R>> {
        let fetched = Arc::new(Fetched::default());
        let mut results: Vec<Option<R>> = (0..jobs.len()).map(|_| None).collect();
        let mut pending: Vec<usize> = (0..jobs.len()).collect();
        for _ in 0..MAX_ROUNDS {
            let outcomes = options.install(|| {
                iter_concurrent_limit!(limit, pending, map, |i: usize| {
                    let view = Arc::new(RoundView::new(fetched.clone(), self.index_cache.clone()));
                    let storage: ReadableStorage = view.clone();
                    let outcome = run(&jobs[i], &storage);
                    drop(storage);
                    let misses = Arc::into_inner(view).map(RoundView::into_misses).unwrap_or_default();
                    (i, outcome, misses)
                })
                .collect::<Vec<_>>()
            })?;
            let mut misses = Vec::new();
            pending = Vec::new();
            for (i, outcome, missed) in outcomes {
                if missed.is_empty() {
                    results[i] = Some(outcome?);
                } else {
                    pending.push(i);
                    misses.extend(missed);
                }
            }
            let changed = if !pending.is_empty() {
                remote.fetch_round(&fetched, rounds::by_value(misses))?
            } else {
                let unconfirmed = fetched.unconfirmed();
                let changed = if unconfirmed.is_empty() { Vec::new() } else { remote.confirm(unconfirmed.clone())? };
                if changed.is_empty() {
                    unconfirmed.iter().for_each(|(key, _)| fetched.confirm(key));
                    if let Some(cache) = &self.index_cache {
                        for (key, cached) in fetched.cacheable(&cache.range()) {
                            cache.insert(key, cached);
                        }
                    }
                    return Ok(results.into_iter().map(|r| r.expect("every job finished")).collect());
                }
                changed
            };
            if !changed.is_empty() {
                for key in &changed {
                    fetched.forget(key);
                }
                self.forget_indexes(&changed);
                pending = (0..jobs.len()).collect();
            }
        }
        Err(FfiError::new(
            ZarrsResult::ZARRS_ERROR_STORAGE,
            format!("{}: a read still missed bytes after {MAX_ROUNDS} rounds of requests (or the values it read kept changing)", self.name),
        ))
    }

    /// Write every job from `source`, in parallel. Each chunk is replaced atomically by the
    /// storage, so a failure leaves every chunk either old or new.
    pub fn write_jobs(&self, options: &ZarrsOptions, jobs: Vec<ChunkJob>, source: &Source) -> FfiResult<()> {
        let (limit, codec_options) = self.plan(options, &jobs)?;
        if let Some(remote) = &self.remote {
            return self.write_jobs_remote(remote, options, jobs, source, limit, &codec_options);
        }
        // Guided runs rather than a fixed share per worker: the batch ends with every thread
        // busy (512^3 zstd write_all: see `try_for_each_guided`).
        options.try_for_each_guided(jobs.len(), limit, |i| {
            let job = &jobs[i];
            self.write_job(job, source, &codec_options, options.fsync()).map_err(|e| self.in_chunk(&job.key, e))
        })?
    }

    fn write_job(&self, job: &ChunkJob, source: &Source, options: &CodecOptions, fsync: bool) -> FfiResult<()> {
        // The old chunk is read only when the write covers part of it (`merge_job` asks).
        let old = || Ok(self.storage.get(&job.key)?.map(|b| Cow::Owned(Vec::from(b))));
        let chunk = self.codec.merge_job(job, source, old, options)?;
        // Written from the encoder's reused buffer: no allocation per chunk.
        self.codec.encode_chunk_with(&job.chunk_shape, chunk, options, |encoded| {
            Ok(self.store_value(&job.key, encoded.map(Cow::Borrowed), fsync)?)
        })
    }

    /// Store (Some) or erase (None) one value through a local storage, fsyncing if asked.
    fn store_value(&self, key: &StoreKey, value: Option<Cow<'_, [u8]>>, fsync: bool) -> Result<(), StorageError> {
        let stored = match (&self.local, value) {
            (Some(local), Some(bytes)) => local.write(key, &bytes, fsync),
            (Some(local), None) => local.remove(key, fsync),
            (None, Some(bytes)) => self.storage.set(key, Bytes::from(bytes.into_owned())),
            (None, None) => self.storage.erase(key),
        };
        // After the write too: a read running beside it may have cached the old index.
        self.forget_indexes([key]);
        stored
    }

    /// Remote writes: old values of chunks written in part are fetched concurrently, chunks
    /// are merged and encoded in parallel, then stored (or erased) concurrently. Nothing is
    /// stored until every chunk has encoded; each value is replaced whole.
    fn write_jobs_remote(
        &self,
        remote: &RemoteStore,
        options: &ZarrsOptions,
        jobs: Vec<ChunkJob>,
        source: &Source,
        limit: usize,
        codec_options: &CodecOptions,
    ) -> FfiResult<()> {
        self.forget_indexes(jobs.iter().map(|job| &job.key));
        let keys: Vec<StoreKey> = jobs.iter().filter(|job| !job.is_whole_chunk()).map(|job| job.key.clone()).collect();
        let mut fetched = remote.get_many(keys)?.into_iter();
        let work: Vec<(ChunkJob, MaybeBytes)> = jobs
            .into_iter()
            .map(|job| {
                let old = if job.is_whole_chunk() { None } else { fetched.next().flatten() };
                (job, old)
            })
            .collect();
        let encoded = options.install(|| {
            iter_concurrent_limit!(limit, work, map, |(job, old): (ChunkJob, MaybeBytes)| {
                let encode = || {
                    let chunk = self.codec.merge_job(&job, source, || Ok(old.as_deref().map(Cow::Borrowed)), codec_options)?;
                    self.codec.encode_chunk(&job.chunk_shape, chunk, codec_options)
                };
                Ok::<_, FfiError>((job.key.clone(), encode().map_err(|e| self.in_chunk(&job.key, e))?))
            })
            .collect::<FfiResult<Vec<_>>>()
        })??;
        let keys: Vec<StoreKey> = encoded.iter().map(|(key, _)| key.clone()).collect();
        let stored = remote.set_many(encoded);
        // Again after: a read running beside the write may have cached an old index.
        self.forget_indexes(&keys);
        stored?;
        Ok(())
    }
}

/// Codec-only batches: chunk bytes the caller fetches and stores itself.
impl ZarrsArray {
    /// Decode `inputs` (chunk i: `inputs.get(i)`, None: missing) into `destination`.
    pub fn decode_chunks(
        &self,
        options: &ZarrsOptions,
        jobs: Vec<ChunkJob>,
        inputs: &EncodedInputs,
        destination: &Destination,
    ) -> FfiResult<()> {
        let (limit, codec_options) = self.plan(options, &jobs)?;
        let decode = |i: usize, job: &ChunkJob| {
            self.codec
                .decode_job(job, inputs.get(i).map(Cow::Borrowed), destination, &codec_options)
                .map(|_| ())
                .map_err(|e| self.in_chunk(&job.key, e))
        };
        match self.spread(&jobs) {
            Spread::Caller => return jobs.iter().enumerate().try_for_each(|(i, job)| decode(i, job)),
            Spread::Share => return options.share(jobs.len(), limit, |i| decode(i, &jobs[i]))?.map(drop),
            Spread::Pool => {}
        }
        let indexed: Vec<(usize, ChunkJob)> = jobs.into_iter().enumerate().collect();
        options.install(|| iter_concurrent_limit!(limit, indexed, try_for_each, |(i, job): (usize, ChunkJob)| decode(i, &job)))?
    }

    /// Encode the jobs from `source`, merging into `existing` bytes for chunks written in
    /// part. None: the chunk is all fill value and should be deleted.
    pub fn encode_chunks(
        &self,
        options: &ZarrsOptions,
        jobs: Vec<ChunkJob>,
        source: &Source,
        existing: &EncodedInputs,
    ) -> FfiResult<Vec<Option<Vec<u8>>>> {
        let (limit, codec_options) = self.plan(options, &jobs)?;
        let indexed: Vec<(usize, ChunkJob)> = jobs.into_iter().enumerate().collect();
        options.install(|| {
            iter_concurrent_limit!(limit, indexed, map, |(i, job): (usize, ChunkJob)| {
                let encode = || {
                    let chunk = self.codec.merge_job(&job, source, || Ok(existing.get(i).map(Cow::Borrowed)), &codec_options)?;
                    self.codec.encode_chunk(&job.chunk_shape, chunk, &codec_options)
                };
                encode().map_err(|e| self.in_chunk(&job.key, e))
            })
            .collect::<FfiResult<Vec<_>>>()
        })?
    }
}

/// Codec-only batches of variable-length data types (`string`, `bytes`).
impl ZarrsArray {
    /// Decode whole chunks (every one present) of the shapes `chunk_shapes` (`num_chunks`
    /// rows of `ndim` values) into element bytes and `elements + 1` offsets each.
    pub fn decode_variable_chunks(
        &self,
        options: &ZarrsOptions,
        inputs: &EncodedInputs,
        chunk_shapes: &[u64],
        num_chunks: usize,
    ) -> FfiResult<Vec<(Vec<u8>, Vec<u64>)>> {
        let shapes = self.chunk_shapes(chunk_shapes, num_chunks)?;
        let codec_options = options.single_chunk();
        let cap = options.max_variable_chunk_bytes();
        let indexed: Vec<usize> = (0..num_chunks).collect();
        let limit = std::cmp::max(1, num_chunks);
        options.install(|| {
            iter_concurrent_limit!(limit, indexed, map, |i: usize| {
                let bytes = inputs.get(i).ok_or_else(|| FfiError::invalid(format!("chunk {i} has no bytes (NULL)")))?;
                let shape = &shapes[i];
                let (bytes, offsets) = self.codec.decode_variable(bytes, shape, cap, &codec_options).map_err(|e| {
                    let key = StoreKey::new(format!("chunk-{i}")).expect("a valid key");
                    self.in_chunk(&key, e)
                })?;
                let expected = elements(shape)?;
                if offsets.len() != expected + 1 {
                    return Err(FfiError::new(
                        ZarrsResult::ZARRS_ERROR_CODEC,
                        format!("chunk {i} decoded to {} elements, expected {expected}", offsets.len() - 1),
                    ));
                }
                Ok((bytes.into_owned(), offsets.iter().map(|&o| o as u64).collect()))
            })
            .collect::<FfiResult<Vec<_>>>()
        })?
    }

    /// Encode whole chunks of the shapes `chunk_shapes` from their elements back to back in
    /// `data`, delimited by `offsets` (total elements + 1, increasing, within `data`).
    pub fn encode_variable_chunks(
        &self,
        options: &ZarrsOptions,
        chunk_shapes: &[u64],
        num_chunks: usize,
        data: &[u8],
        offsets: &[u64],
    ) -> FfiResult<Vec<Option<Vec<u8>>>> {
        let shapes = self.chunk_shapes(chunk_shapes, num_chunks)?;
        let starts = element_windows(&shapes, data, offsets)?;
        let codec_options = options.single_chunk();
        let indexed: Vec<usize> = (0..num_chunks).collect();
        let limit = std::cmp::max(1, num_chunks);
        options.install(|| {
            iter_concurrent_limit!(limit, indexed, map, |i: usize| {
                let window = &offsets[starts[i]..starts[i + 1] + 1];
                // Checked by `element_windows`: increasing and within `data`, so these fit.
                let base = window[0] as usize;
                let bytes = &data[base..window[window.len() - 1] as usize];
                let local: Vec<usize> = window.iter().map(|&o| o as usize - base).collect();
                Ok(Some(self.codec.encode_variable(bytes, local, &shapes[i], &codec_options)?))
            })
            .collect::<FfiResult<Vec<_>>>()
        })?
    }
}

fn elements(shape: &[NonZeroU64]) -> FfiResult<usize> {
    let shape: Vec<u64> = shape.iter().map(|d| d.get()).collect();
    usize::try_from(args::num_elements(&shape)?).map_err(|_| FfiError::invalid("chunk has too many elements"))
}

/// Check `offsets` against the chunks' element counts and `data`, and return where each
/// chunk's elements start in `offsets` (`shapes.len() + 1` values; the last is the total).
fn element_windows(shapes: &[Vec<NonZeroU64>], data: &[u8], offsets: &[u64]) -> FfiResult<Vec<usize>> {
    let counts = shapes.iter().map(|s| elements(s)).collect::<FfiResult<Vec<usize>>>()?;
    // Checked: chunk shapes come from the caller, and a wrapped sum would pass the length
    // check below with far too few offsets.
    let (total, needed) = counts
        .iter()
        .try_fold(0usize, |sum, &n| sum.checked_add(n))
        .and_then(|total| total.checked_add(1).map(|plus_one| (total, plus_one)))
        .ok_or_else(|| FfiError::invalid("the chunk shapes' element counts overflow"))?;
    if offsets.len() != needed {
        return Err(FfiError::invalid(format!(
            "`element_offsets` has {} values; {total} elements need {needed}",
            offsets.len(),
        )));
    }
    if offsets.windows(2).any(|w| w[1] < w[0]) || offsets.last().is_some_and(|&last| last > data.len() as u64) {
        return Err(FfiError::invalid("`element_offsets` must increase and stay within `data`"));
    }
    let mut starts = Vec::with_capacity(counts.len() + 1);
    let mut first = 0usize;
    for &count in &counts {
        starts.push(first);
        first += count;
    }
    starts.push(first);
    Ok(starts)
}

impl ZarrsArray {
    // Encoded bytes moved by the array's own storage, without decoding (`zarrs_array_fetch_encoded`,
    // `zarrs_array_store_encoded`): a read-modify-write outside `write_chunks` fetches once.

    /// The stored bytes of every key (None: missing), fetched concurrently.
    pub fn fetch_encoded(&self, options: &ZarrsOptions, keys: Vec<StoreKey>) -> FfiResult<Vec<Option<Vec<u8>>>> {
        if let Some(remote) = &self.remote {
            let values = remote.get_many(keys)?;
            return Ok(values.into_iter().map(|v| v.map(|b| b.to_vec())).collect());
        }
        options.install(|| {
            keys.into_par_iter()
                .map(|key| {
                    let value = self.storage.get(&key).map_err(FfiError::from);
                    value.map(|v| v.map(Vec::from)).map_err(|e| self.in_chunk(&key, e))
                })
                .collect::<FfiResult<Vec<_>>>()
        })?
    }

    /// Store (Some) or erase (None) each key's value, concurrently; each replaced atomically.
    pub fn store_encoded(&self, options: &ZarrsOptions, values: Vec<(StoreKey, Option<&[u8]>)>) -> FfiResult<()> {
        self.forget_indexes(values.iter().map(|(key, _)| key));
        if let Some(remote) = &self.remote {
            let owned: Vec<_> = values.into_iter().map(|(k, v)| (k, v.map(<[u8]>::to_vec))).collect();
            let keys: Vec<StoreKey> = owned.iter().map(|(key, _)| key.clone()).collect();
            let stored = remote.set_many(owned);
            self.forget_indexes(&keys);
            stored?;
            return Ok(());
        }
        options.install(|| {
            values.into_par_iter().try_for_each(|(key, value)| {
                let result = self.store_value(&key, value.map(Cow::Borrowed), options.fsync());
                result.map_err(|e| self.in_chunk(&key, FfiError::from(e)))
            })
        })?
    }
}

/// Gathers: each chunk's picks decoded once and copied straight into one output buffer.
impl ZarrsArray {
    /// The jobs of an orthogonal gather ([`layout::parse_orthogonal`]).
    pub fn parse_orthogonal<'a>(
        &self,
        num_chunks: usize,
        keys: (&str, &[u64]),
        chunk_shapes: &[u64],
        pairs: &[u64],
        pool: &PickPool<'a>,
    ) -> FfiResult<Vec<GatherJob<'a>>> {
        layout::parse_orthogonal(&self.shapes, num_chunks, keys, chunk_shapes, pairs, pool)
    }

    /// The jobs of a point gather ([`layout::parse_points`]).
    pub fn parse_points<'a>(
        &self,
        num_chunks: usize,
        keys: (&str, &[u64]),
        chunk_shapes: &[u64],
        counts: &[u64],
        coords: &'a [u64],
        offsets: &'a [u64],
    ) -> FfiResult<Vec<GatherJob<'a>>> {
        layout::parse_points(&self.shapes, num_chunks, keys, chunk_shapes, counts, coords, offsets)
    }

    /// Gather every job's picks into `target`, chunks in parallel; `present[i]` says if chunk
    /// i is stored. Every job is checked against its chunk and `target` before anything is
    /// read. Remote stores fetch every whole value concurrently first (shards read ranges).
    pub fn gather_jobs(&self, options: &ZarrsOptions, jobs: Vec<GatherJob>, target: &GatherTarget) -> FfiResult<Vec<bool>> {
        for job in &jobs {
            target.check(job)?;
        }
        let (limit, codec_options) = match jobs.as_slice() {
            [] => return Ok(Vec::new()),
            [_] => (1, options.single_chunk()),
            [first, ..] => options.plan(self.codec.chain().as_ref(), &first.chunk_shape, self.codec.data_type(), jobs.len())?,
        };
        let gather = |job: &GatherJob, storage: &ReadableStorage| {
            let local = self.remote.is_none();
            // Remote chunks are fetched whole (one request); shards by ranges.
            let whole = if local || self.codec.gathers_ranges() { None } else { Some(storage.get(&job.key)?) };
            let fetched = whole.as_ref().map(|bytes| bytes.as_deref());
            self.codec.gather_job(storage, local, job, fetched, target, &codec_options).map_err(|e| self.in_chunk(&job.key, e))
        };
        match &self.remote {
            // In rounds: every chunk (or shard index, then inner-chunk ranges) in flight at once.
            Some(remote) => self.in_rounds(remote, options, &jobs, limit, gather),
            None => options.install(|| {
                iter_concurrent_limit!(limit, jobs, map, |job: GatherJob| gather(&job, &self.readable)).collect::<FfiResult<Vec<bool>>>()
            })?,
        }
    }
}

impl crate::registry::Handle for ZarrsArray {
    const NAME: &'static str = "ZarrsArray";
}

//! Batches of chunks decoded straight into, or encoded straight from, one caller buffer.
//!
//! A batch is a list of [`ChunkJob`]s: a store key, the chunk's shape, the region of the
//! chunk wanted (`subset`), and where that region sits in the caller's buffer
//! (`buffer_start`; the region there has the subset's shape). Jobs run in parallel, with
//! chunk versus codec concurrency planned by [`ZarrsOptions::plan`]. The subset, chunk and
//! whole-array calls in `array.rs` build jobs too, so there is one data path.
//!
//! Keys rather than chunk indices describe chunks because that is what zarr-python hands a
//! codec pipeline; it also makes the calls indifferent to chunk key encodings and irregular
//! chunk grids.

use std::borrow::Cow;
use std::ffi::c_char;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rayon::iter::{IntoParallelIterator, ParallelIterator};
use rayon_iter_concurrent_limit::iter_concurrent_limit;
use unsafe_cell_slice::UnsafeCellSlice;
use zarrs::array::{
    ArrayBytes, ArrayBytesDecodeIntoTarget, ArrayBytesFixedDisjointView,
    ArrayBytesRaw, ArraySubset, ArrayToBytesCodecTraits, BytesPartialDecoderTraits, CodecError,
    CodecOptions, CodecTraits, StoragePartialDecoder,
};
use zarrs::storage::byte_range::ByteRangeIterator;
use zarrs::storage::{Bytes, MaybeBytes, ReadableStorage, StorageError, StoreKey};

use crate::args;
use crate::array::ZarrsArray;
use crate::bounds::DEFAULT_MAX_VARIABLE_CHUNK_BYTES;
use crate::error::{FfiError, FfiResult, ZarrsResult};
use crate::options::ZarrsOptions;
use crate::panic::boundary;

/// One chunk of a batch.
pub(crate) struct ChunkJob {
    pub key: StoreKey,
    pub chunk_shape: Vec<NonZeroU64>,
    /// The region of the chunk, in chunk coordinates.
    pub subset: ArraySubset,
    /// Where the region starts in the caller's buffer.
    pub buffer_start: Vec<u64>,
}

impl ChunkJob {
    pub fn chunk_shape_u64(&self) -> Vec<u64> {
        self.chunk_shape.iter().map(|d| d.get()).collect()
    }

    pub fn is_whole_chunk(&self) -> bool {
        self.subset.start().iter().all(|&s| s == 0)
            && self.subset.shape().iter().zip(&self.chunk_shape).all(|(&a, b)| a == b.get())
    }

    fn buffer_region(&self) -> FfiResult<ArraySubset> {
        Ok(ArraySubset::new_with_start_shape(
            self.buffer_start.clone(),
            self.subset.shape().to_vec(),
        )?)
    }
}

/// Parse the C description of a batch.
///
/// `keys`, when given, holds every key back to back with `num_chunks + 1` offsets; key `i`
/// is `keys[offsets[i]..offsets[i+1]]`. Without keys (codec-only calls) chunks are named
/// by their position, which only appears in error messages. `geometry` holds, per chunk,
/// four runs of `ndim` values: chunk shape, subset start, subset shape, buffer start.
///
/// Keys must stay inside the store ([`args::store_key`]) and every chunk shape must be one
/// the array's chunk grid has ([`ZarrsArray::check_chunk_shape`]): the shape decides how
/// much is allocated and filled for the chunk, so it is never taken on trust.
pub(crate) fn parse_jobs(
    array: &ZarrsArray,
    num_chunks: usize,
    keys: Option<(&str, &[u64])>,
    geometry: &[u64],
) -> FfiResult<Vec<ChunkJob>> {
    let ndim = array.array.dimensionality();
    let expected = num_chunks
        .checked_mul(4 * ndim)
        .ok_or_else(|| FfiError::invalid("`num_chunks` overflows"))?;
    if geometry.len() != expected {
        return Err(FfiError::invalid(format!(
            "`geometry` has {} values; {num_chunks} chunks of {ndim} dimensions need {expected}",
            geometry.len()
        )));
    }
    (0..num_chunks)
        .map(|i| {
            let key = match keys {
                Some((keys, offsets)) => {
                    let (from, to) = (offsets[i], offsets[i + 1]);
                    let key = usize::try_from(from)
                        .ok()
                        .zip(usize::try_from(to).ok())
                        .and_then(|(from, to)| keys.get(from..to))
                        .ok_or_else(|| {
                            FfiError::invalid(format!(
                                "key {i} spans bytes {from}..{to}, outside the {} key bytes or not on a character boundary",
                                keys.len()
                            ))
                        })?;
                    args::store_key(key, &format!("key {i}"))?
                }
                // Only named in messages; never used to reach the store.
                None => StoreKey::new(format!("chunk-{i}")).map_err(|e| FfiError::invalid(e.to_string()))?,
            };
            let g = &geometry[i * 4 * ndim..(i + 1) * 4 * ndim];
            let (chunk_shape, rest) = g.split_at(ndim);
            let (subset_start, rest) = rest.split_at(ndim);
            let (subset_shape, buffer_start) = rest.split_at(ndim);
            let chunk_shape = args::nonzero_shape(chunk_shape, &format!("chunk {key}: chunk shape"))?;
            array.check_chunk_shape(&chunk_shape, &key)?;
            let subset = args::region(subset_start, subset_shape, &format!("chunk {key}: subset"))?;
            // Checked here, once, so the bounds checks against the caller's buffer cannot wrap.
            args::region(buffer_start, subset_shape, &format!("chunk {key}: buffer region"))?;
            let job = ChunkJob {
                key,
                chunk_shape,
                subset,
                buffer_start: buffer_start.to_vec(),
            };
            if !job.subset.inbounds_shape(&job.chunk_shape_u64()) {
                return Err(FfiError::invalid(format!(
                    "chunk {}: subset {} is outside the chunk shape {:?}",
                    job.key,
                    job.subset,
                    job.chunk_shape_u64()
                )));
            }
            Ok(job)
        })
        .collect()
}

/// Parse keys and geometry straight from C arguments.
///
/// # Safety
/// The pointers must address the stated lengths for the duration of the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn parse_jobs_raw(
    array: &ZarrsArray,
    num_chunks: usize,
    keys: *const c_char,
    keys_len: usize,
    key_offsets: *const u64,
    geometry: *const u64,
    geometry_len: usize,
) -> FfiResult<Vec<ChunkJob>> {
    // SAFETY: forwarded contract of the exported function.
    let keys = unsafe { args::str(keys, keys_len, "keys")? };
    // SAFETY: as above; `key_offsets` holds `num_chunks + 1` values by contract.
    let key_offsets = unsafe { args::values(key_offsets, offsets_len(num_chunks)?, "key_offsets")? };
    // SAFETY: as above.
    let geometry = unsafe { args::values(geometry, geometry_len, "geometry")? };
    parse_jobs(array, num_chunks, Some((keys, &key_offsets)), &geometry)
}

/// The length of an offsets array for `num_chunks` items.
pub(crate) fn offsets_len(num_chunks: usize) -> FfiResult<usize> {
    num_chunks
        .checked_add(1)
        .ok_or_else(|| FfiError::invalid("`num_chunks` overflows"))
}

/// A caller buffer that jobs decode into, each into its own region.
pub(crate) struct Destination<'a> {
    cells: UnsafeCellSlice<'a, u8>,
    shape: &'a [u64],
    element_size: usize,
}

impl<'a> Destination<'a> {
    pub fn new(
        buffer: &'a mut [u8],
        shape: &'a [u64],
        element_size: usize,
        name: &str,
    ) -> FfiResult<Self> {
        let expected = args::byte_size(shape, element_size)?;
        if buffer.len() != expected {
            return Err(FfiError::buffer_size(name, buffer.len(), expected));
        }
        Ok(Self {
            cells: UnsafeCellSlice::new(buffer),
            shape,
            element_size,
        })
    }

    /// Visit the runs of a region of `shape` starting at `buffer_start` in this buffer, with
    /// the matching runs of a source array of `source_shape` where the region starts at
    /// `source_start`: `f(source byte range, target bytes)`.
    fn runs(
        &self,
        source_shape: &[u64],
        source_start: &[u64],
        buffer_start: &[u64],
        shape: &[u64],
        key: &StoreKey,
        mut f: impl FnMut(std::ops::Range<usize>, &mut [u8]),
    ) -> FfiResult<()> {
        let region = args::region(buffer_start, shape, "buffer region")?;
        if !region.inbounds_shape(self.shape) {
            return Err(FfiError::invalid(format!(
                "chunk {key}: region {region} is outside the buffer shape {:?}",
                self.shape
            )));
        }
        let size = self.element_size;
        for_each_run(source_shape, source_start, self.shape, buffer_start, shape, |s, d, n| {
            // SAFETY: `d..d + n` elements lie inside `region`, which is inside the buffer
            // (checked above) and inside the region of the chunk being written. Regions of
            // one batch are disjoint (a documented precondition of every batch call) and the
            // inner chunks of one shard are disjoint, so no other thread touches these bytes.
            let target = unsafe { self.cells.index_mut(d * size..(d + n) * size) };
            f(s * size..(s + n) * size, target);
        });
        Ok(())
    }

    /// Copy a region of `source` (of `source_shape`, from `source_start`) to `buffer_start`.
    pub(crate) fn copy_at(
        &self,
        source: &[u8],
        source_shape: &[u64],
        source_start: &[u64],
        buffer_start: &[u64],
        shape: &[u64],
        key: &StoreKey,
    ) -> FfiResult<()> {
        self.runs(source_shape, source_start, buffer_start, shape, key, |from, target| {
            target.copy_from_slice(&source[from]);
        })
    }

    /// Set every element of the region of `shape` at `buffer_start` to `element`.
    pub(crate) fn fill_at(&self, buffer_start: &[u64], shape: &[u64], element: &[u8], key: &StoreKey) -> FfiResult<()> {
        let origin = vec![0; shape.len()];
        self.runs(shape, &origin, buffer_start, shape, key, |_, target| {
            for slot in target.chunks_exact_mut(element.len()) {
                slot.copy_from_slice(element);
            }
        })
    }

    /// Copy `job.subset` of `chunk` (a whole decoded chunk) into the job's region.
    fn place(&self, job: &ChunkJob, chunk: &[u8]) -> FfiResult<()> {
        self.copy_at(chunk, &job.chunk_shape_u64(), job.subset.start(), &job.buffer_start, job.subset.shape(), &job.key)
    }

    /// Set every element of the job's region to `element`.
    fn fill(&self, job: &ChunkJob, element: &[u8]) -> FfiResult<()> {
        self.fill_at(&job.buffer_start, job.subset.shape(), element, &job.key)
    }

    /// A view of the region `job` decodes into.
    pub(crate) fn view(&self, job: &ChunkJob) -> FfiResult<ArrayBytesFixedDisjointView<'a>> {
        // SAFETY: the view only writes inside `region`, which the constructor checks lies in
        // the buffer. Regions of one batch must not overlap; that is a documented
        // precondition of every batch call (zarr's indexers produce disjoint regions).
        Ok(unsafe {
            ArrayBytesFixedDisjointView::new(self.cells, self.element_size, self.shape, job.buffer_region()?)?
        })
    }
}

/// A source of values for writes: a C-order array, or one element broadcast everywhere.
pub(crate) enum Source<'a> {
    Array { bytes: &'a [u8], shape: Vec<u64> },
    Scalar(&'a [u8]),
}

impl<'a> Source<'a> {
    pub fn new(bytes: &'a [u8], shape: &[u64], element_size: usize) -> FfiResult<Self> {
        if shape.is_empty() {
            if bytes.len() != element_size {
                return Err(FfiError::buffer_size("value", bytes.len(), element_size));
            }
            return Ok(Source::Scalar(bytes));
        }
        let expected = args::byte_size(shape, element_size)?;
        if bytes.len() != expected {
            return Err(FfiError::buffer_size("value", bytes.len(), expected));
        }
        Ok(Source::Array { bytes, shape: shape.to_vec() })
    }

    /// The value arguments of the write and encode calls: `value_ndim` is 0 (one element,
    /// broadcast) or the array's dimensionality.
    ///
    /// # Safety
    /// `value` must address `value_len` bytes and `value_shape` `value_ndim` values for the
    /// duration of the call.
    pub unsafe fn from_raw(
        array: &ZarrsArray,
        value: *const u8,
        value_len: usize,
        value_shape: *const u64,
        value_ndim: usize,
    ) -> FfiResult<Self> {
        let ndim = array.array.dimensionality();
        if value_ndim != 0 && value_ndim != ndim {
            return Err(FfiError::invalid(format!(
                "`value_ndim` is {value_ndim}; it must be 0 (a broadcast scalar) or the array's {ndim}"
            )));
        }
        // SAFETY: forwarded contract.
        let value_shape = unsafe { args::values(value_shape, value_ndim, "value_shape")? };
        // SAFETY: forwarded contract.
        let value = unsafe { args::slice(value, value_len, "value")? };
        Source::new(value, &value_shape, array.element_size()?)
    }

    fn check(&self, job: &ChunkJob) -> FfiResult<()> {
        if let Source::Array { shape, .. } = self {
            if !job.buffer_region()?.inbounds_shape(shape) {
                return Err(FfiError::invalid(format!(
                    "chunk {}: value region {} is outside the value shape {shape:?}",
                    job.key,
                    job.buffer_region()?
                )));
            }
        }
        Ok(())
    }

    /// The bytes of a whole chunk that `job` covers entirely.
    fn whole_chunk(&self, job: &ChunkJob, element_size: usize) -> FfiResult<Cow<'a, [u8]>> {
        let chunk_shape = job.chunk_shape_u64();
        let len = args::byte_size(&chunk_shape, element_size)?;
        match self {
            Source::Scalar(element) => Ok(Cow::Owned(element.repeat(len / element_size))),
            Source::Array { bytes, shape } if *shape == chunk_shape => Ok(Cow::Borrowed(bytes)),
            Source::Array { .. } => {
                let mut chunk = vec![0u8; len];
                self.write_into(job, &mut chunk, element_size);
                Ok(Cow::Owned(chunk))
            }
        }
    }

    /// Copy this job's values into `chunk` (a whole decoded chunk) at the job's subset.
    fn write_into(&self, job: &ChunkJob, chunk: &mut [u8], element_size: usize) {
        let chunk_shape = job.chunk_shape_u64();
        match self {
            Source::Scalar(element) => fill_region(chunk, &chunk_shape, job.subset.start(), job.subset.shape(), element),
            Source::Array { bytes, shape } => copy_region(
                bytes,
                shape,
                &job.buffer_start,
                chunk,
                &chunk_shape,
                job.subset.start(),
                job.subset.shape(),
                element_size,
            ),
        }
    }
}

fn strides(shape: &[u64]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1] as usize;
    }
    strides
}

/// Visit the contiguous runs of a C-order region: for each, the element offsets in the two
/// arrays and the run length in elements. Trailing dimensions that span both arrays whole
/// are merged into one run.
fn for_each_run(
    a_shape: &[u64],
    a_start: &[u64],
    b_shape: &[u64],
    b_start: &[u64],
    region: &[u64],
    mut f: impl FnMut(usize, usize, usize),
) {
    let ndim = region.len();
    if region.contains(&0) {
        return;
    }
    if ndim == 0 {
        f(0, 0, 1);
        return;
    }
    let mut inner = ndim - 1;
    let mut run = region[inner] as usize;
    while inner > 0 && region[inner] == a_shape[inner] && region[inner] == b_shape[inner] {
        inner -= 1;
        run *= region[inner] as usize;
    }
    let (a_strides, b_strides) = (strides(a_shape), strides(b_shape));
    let base = |start: &[u64], strides: &[usize]| -> usize {
        start.iter().zip(strides).map(|(&s, &st)| s as usize * st).sum()
    };
    let (a_base, b_base) = (base(a_start, &a_strides), base(b_start, &b_strides));
    // Odometer over the outer dimensions 0..inner.
    let mut index = vec![0u64; inner];
    loop {
        let a_off = a_base + index.iter().zip(&a_strides).map(|(&i, &st)| i as usize * st).sum::<usize>();
        let b_off = b_base + index.iter().zip(&b_strides).map(|(&i, &st)| i as usize * st).sum::<usize>();
        f(a_off, b_off, run);
        let mut d = inner;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            index[d] += 1;
            if index[d] < region[d] {
                break;
            }
            index[d] = 0;
        }
    }
}

/// Copy a region between two C-order arrays of the same element size.
#[allow(clippy::too_many_arguments)]
pub(crate) fn copy_region(
    src: &[u8],
    src_shape: &[u64],
    src_start: &[u64],
    dst: &mut [u8],
    dst_shape: &[u64],
    dst_start: &[u64],
    region: &[u64],
    element_size: usize,
) {
    for_each_run(src_shape, src_start, dst_shape, dst_start, region, |s, d, n| {
        let (s, d, n) = (s * element_size, d * element_size, n * element_size);
        dst[d..d + n].copy_from_slice(&src[s..s + n]);
    });
}

/// Set every element of a region of a C-order array to `element`.
fn fill_region(dst: &mut [u8], dst_shape: &[u64], dst_start: &[u64], region: &[u64], element: &[u8]) {
    let size = element.len();
    for_each_run(dst_shape, dst_start, dst_shape, dst_start, region, |_, d, n| {
        for chunk in dst[d * size..(d + n) * size].chunks_exact_mut(size) {
            chunk.copy_from_slice(element);
        }
    });
}

/// Reports whether any read through it found the stored value, so a partial decode can say
/// if the chunk existed without an extra request to the store.
struct PresenceTracker {
    inner: StoragePartialDecoder,
    found: AtomicBool,
}

impl BytesPartialDecoderTraits for PresenceTracker {
    fn exists(&self) -> Result<bool, StorageError> {
        let exists = self.inner.exists()?;
        if exists {
            self.found.store(true, Ordering::Relaxed);
        }
        Ok(exists)
    }

    fn size_held(&self) -> usize {
        self.inner.size_held()
    }

    fn partial_decode_many(
        &self,
        decoded_regions: ByteRangeIterator,
        options: &CodecOptions,
    ) -> Result<Option<Vec<ArrayBytesRaw<'_>>>, CodecError> {
        let bytes = self.inner.partial_decode_many(decoded_regions, options)?;
        if bytes.is_some() {
            self.found.store(true, Ordering::Relaxed);
        }
        Ok(bytes)
    }

    fn supports_partial_decode(&self) -> bool {
        self.inner.supports_partial_decode()
    }
}

impl ZarrsArray {
    /// Whether to read the job's subset through zarrs' partial decoder: only for part of a
    /// chunk, and only if every codec of the chain reads partially (e.g. sharding, which then
    /// fetches just the inner chunks it needs). Otherwise the partial decoder would read and
    /// decode the whole chunk anyway, and on that path zarrs' checksum codecs (crc32c) strip
    /// the checksum without verifying it, so a corrupt chunk would be returned silently.
    ///
    /// Checksums inside a shard are not verified by zarrs' partial decoding of inner chunks
    /// either, so such arrays decode whole shards while checksums are validated.
    fn decodes_partially(&self, job: &ChunkJob, options: &CodecOptions) -> bool {
        !job.is_whole_chunk()
            && self.array.codecs().partial_decoder_capability().partial_read
            && !(self.inner_checksums && options.validate_checksums())
    }

    /// Decode `encoded` (None: the chunk is missing) into the job's region of `destination`.
    pub(crate) fn decode_job(
        &self,
        job: &ChunkJob,
        encoded: Option<Cow<'_, [u8]>>,
        destination: &Destination,
        options: &CodecOptions,
    ) -> FfiResult<bool> {
        let array = &self.array;
        let (data_type, fill_value) = (array.data_type(), array.fill_value());
        let Some(encoded) = encoded else {
            destination.fill(job, fill_value.as_ne_bytes())?;
            return Ok(false);
        };
        if let Some(shard) = &self.shard {
            shard.decode_into(job, &encoded, destination, data_type, fill_value, options)?;
            return Ok(true);
        }
        if self.sharded && job.is_whole_chunk() {
            // The sharding codec decodes each inner chunk straight into its place.
            let mut view = destination.view(job)?;
            let target = ArrayBytesDecodeIntoTarget::Fixed(&mut view);
            self.codecs.decode_into(encoded, &job.chunk_shape, data_type, fill_value, target, options)?;
        } else if self.decodes_partially(job, options) {
            self.check_stored_size(job, Some(encoded.len() as u64))?;
            let codecs = array.codecs();
            let mut view = destination.view(job)?;
            let input: Arc<dyn BytesPartialDecoderTraits> = Arc::new(encoded.into_owned());
            codecs
                .partial_decoder(input, &job.chunk_shape, data_type, fill_value, options)?
                .partial_decode_into(&job.subset, ArrayBytesDecodeIntoTarget::Fixed(&mut view), options)?;
        } else {
            // Decode the whole chunk (verifying any checksum) and place the subset with our
            // run copy, which is several times faster than zarrs' generic strided iterator.
            let chunk = self.decode_whole(job, Some(encoded), options)?;
            destination.place(job, &chunk)?;
        }
        Ok(true)
    }

    /// Read one job from storage into its region of `destination`. Returns whether the chunk
    /// was present (false: the region holds the fill value).
    fn read_job(&self, job: &ChunkJob, destination: &Destination, options: &CodecOptions) -> FfiResult<bool> {
        if let (Some(shard), false) = (&self.shard, job.is_whole_chunk()) {
            let array = &self.array;
            return shard.read_partial(self.storage.as_ref(), job, destination, array.data_type(), array.fill_value(), options);
        }
        if !self.decodes_partially(job, options) {
            let encoded = self.storage.get(&job.key)?;
            return self.decode_job(job, encoded.as_deref().map(Cow::Borrowed), destination, options);
        }
        if self.codecs.fixed_encoded_size(&job.chunk_shape, self.array.data_type(), self.array.fill_value())?.is_some() {
            // Reading a range of an uncompressed chunk cannot tell a truncated (or extended)
            // chunk from an intact one: compare the stored size first (one stat or HEAD).
            let size = self.storage.size_key(&job.key)?;
            if size.is_none() {
                destination.fill(job, self.array.fill_value().as_ne_bytes())?;
                return Ok(false);
            }
            self.check_stored_size(job, size)?;
        }
        let mut view = destination.view(job)?;
        let target = ArrayBytesDecodeIntoTarget::Fixed(&mut view);
        // Partial: let the codecs ask the store for just the byte ranges they need (the shard
        // index and the inner chunks, for sharding).
        let array = &self.array;
        let readable: ReadableStorage = self.storage.clone();
        let input = Arc::new(PresenceTracker {
            inner: StoragePartialDecoder::new(readable, job.key.clone()),
            found: AtomicBool::new(false),
        });
        array
            .codecs()
            .partial_decoder(input.clone(), &job.chunk_shape, array.data_type(), array.fill_value(), options)?
            .partial_decode_into(&job.subset, target, options)?;
        Ok(input.found.load(Ordering::Relaxed))
    }

    /// For chains that fix a chunk's stored size (no compressor), fail unless the stored
    /// chunk has exactly that size: a partial read would otherwise return values from a
    /// truncated chunk.
    fn check_stored_size(&self, job: &ChunkJob, stored: Option<u64>) -> FfiResult<()> {
        let array = &self.array;
        let (Some(stored), Some(fixed)) = (stored, self.codecs.fixed_encoded_size(&job.chunk_shape, array.data_type(), array.fill_value())?) else {
            return Ok(());
        };
        if stored != fixed {
            return Err(FfiError::new(
                ZarrsResult::ZARRS_ERROR_CODEC,
                format!("the stored chunk has {stored} bytes; its codecs produce exactly {fixed}: the chunk is truncated or corrupt"),
            ));
        }
        Ok(())
    }

    /// Encode a whole chunk. `None` means every element is the fill value and empty chunks
    /// are not stored, so the key should be erased instead.
    pub(crate) fn encode_chunk(
        &self,
        chunk_shape: &[NonZeroU64],
        bytes: Cow<'_, [u8]>,
        options: &CodecOptions,
    ) -> FfiResult<Option<Vec<u8>>> {
        let array = &self.array;
        if !options.store_empty_chunks() && array.fill_value().equals_all(&bytes) {
            return Ok(None);
        }
        if let Some(shard) = &self.shard {
            return shard.encode(chunk_shape, &bytes, array.data_type(), array.fill_value(), options);
        }
        let encoded = array.codecs().encode(
            ArrayBytes::new_flen(bytes),
            chunk_shape,
            array.data_type(),
            array.fill_value(),
            options,
        )?;
        Ok(Some(encoded.into_owned()))
    }

    /// The decoded bytes of a whole chunk, or the fill value if it is missing.
    fn decode_whole(&self, job: &ChunkJob, encoded: Option<Cow<'_, [u8]>>, options: &CodecOptions) -> FfiResult<Vec<u8>> {
        let array = &self.array;
        let element_size = self.element_size()?;
        let len = args::byte_size(&job.chunk_shape_u64(), element_size)?;
        match encoded {
            None => Ok(array.fill_value().as_ne_bytes().repeat(len / element_size)),
            Some(encoded) if self.shard.is_some() => {
                let mut chunk = vec![0u8; len];
                let shape = job.chunk_shape_u64();
                let whole = ChunkJob {
                    key: job.key.clone(),
                    chunk_shape: job.chunk_shape.clone(),
                    subset: ArraySubset::new_with_shape(shape.clone()),
                    buffer_start: vec![0; shape.len()],
                };
                let destination = Destination::new(&mut chunk, &shape, element_size, "chunk")?;
                self.decode_job(&whole, Some(encoded), &destination, options)?;
                Ok(chunk)
            }
            Some(encoded) => {
                let decoded = self
                    .codecs
                    .decode(encoded, &job.chunk_shape, array.data_type(), array.fill_value(), DEFAULT_MAX_VARIABLE_CHUNK_BYTES, options)?
                    .into_fixed()
                    .map_err(CodecError::from)?;
                if decoded.len() != len {
                    return Err(FfiError::new(
                        ZarrsResult::ZARRS_ERROR_CODEC,
                        format!("chunk {} decoded to {} bytes, expected {len}", job.key, decoded.len()),
                    ));
                }
                Ok(decoded.into_owned())
            }
        }
    }

    /// The new bytes of a chunk after a write of `source` over the job's subset; partial
    /// writes read and decode the old chunk first (`old` fetches its encoded bytes).
    pub(crate) fn merge_job<'s, 'o>(
        &self,
        job: &ChunkJob,
        source: &Source<'s>,
        old: impl FnOnce() -> FfiResult<Option<Cow<'o, [u8]>>>,
        options: &CodecOptions,
    ) -> FfiResult<Cow<'s, [u8]>> {
        source.check(job)?;
        let element_size = self.element_size()?;
        if job.is_whole_chunk() {
            return source.whole_chunk(job, element_size);
        }
        let mut chunk = self.decode_whole(job, old()?, options)?;
        source.write_into(job, &mut chunk, element_size);
        Ok(Cow::Owned(chunk))
    }

    fn write_job(&self, job: &ChunkJob, source: &Source, options: &CodecOptions) -> FfiResult<()> {
        // The old chunk is read only when the write covers part of it (`merge_job` asks).
        let old = || Ok(self.storage.get(&job.key)?.map(|b| Cow::Owned(Vec::from(b))));
        let chunk = self.merge_job(job, source, old, options)?;
        match self.encode_chunk(&job.chunk_shape, chunk, options)? {
            Some(encoded) => self.storage.set(&job.key, Bytes::from(encoded))?,
            None => self.storage.erase(&job.key)?,
        }
        Ok(())
    }

    pub(crate) fn plan(&self, options: &ZarrsOptions, jobs: &[ChunkJob]) -> FfiResult<(usize, CodecOptions)> {
        let Some(first) = jobs.first() else {
            return Ok((1, options.single_chunk()));
        };
        if jobs.len() == 1 {
            return Ok((1, options.single_chunk()));
        }
        let codecs = self.array.codecs();
        options.plan(codecs.as_ref(), &first.chunk_shape, self.array.data_type(), jobs.len())
    }

    /// Read every job into `destination`, in parallel; `present[i]` says if chunk i existed.
    pub(crate) fn read_jobs(
        &self,
        options: &ZarrsOptions,
        jobs: Vec<ChunkJob>,
        destination: &Destination,
    ) -> FfiResult<Vec<bool>> {
        let (limit, codec_options) = self.plan(options, &jobs)?;
        if let Some(remote) = &self.remote {
            return self.read_jobs_remote(remote, options, jobs, destination, limit, &codec_options);
        }
        options.install(|| {
            iter_concurrent_limit!(limit, jobs, map, |job: ChunkJob| {
                self.read_job(&job, destination, &codec_options).map_err(|e| self.in_chunk(&job.key, e))
            })
            .collect::<FfiResult<Vec<bool>>>()
        })?
    }

    /// Remote reads: every whole value the batch needs is fetched concurrently, then decoded
    /// in parallel. Partial shard reads keep fetching the index and the inner chunks they
    /// need (byte ranges), a job at a time per thread.
    fn read_jobs_remote(
        &self,
        remote: &crate::remote::RemoteStore,
        options: &ZarrsOptions,
        jobs: Vec<ChunkJob>,
        destination: &Destination,
        limit: usize,
        codec_options: &CodecOptions,
    ) -> FfiResult<Vec<bool>> {
        let ranged = |job: &ChunkJob| self.shard.is_some() && !job.is_whole_chunk();
        let keys: Vec<StoreKey> = jobs.iter().filter(|job| !ranged(job)).map(|job| job.key.clone()).collect();
        let mut fetched = remote.get_many(keys)?.into_iter();
        let work: Vec<(ChunkJob, Option<MaybeBytes>)> = jobs
            .into_iter()
            .map(|job| {
                let bytes = if ranged(&job) { None } else { Some(fetched.next().flatten()) };
                (job, bytes)
            })
            .collect();
        options.install(|| {
            iter_concurrent_limit!(limit, work, map, |(job, bytes): (ChunkJob, Option<MaybeBytes>)| {
                match bytes {
                    Some(bytes) => self.decode_job(&job, bytes.as_deref().map(Cow::Borrowed), destination, codec_options),
                    None => self.read_job(&job, destination, codec_options),
                }
                .map_err(|e| self.in_chunk(&job.key, e))
            })
            .collect::<FfiResult<Vec<bool>>>()
        })?
    }

    /// Remote writes: old values of chunks written in part are fetched concurrently, chunks
    /// are merged and encoded in parallel, then stored (or erased) concurrently. Nothing is
    /// stored until every chunk has encoded; each value is replaced whole.
    fn write_jobs_remote(
        &self,
        remote: &crate::remote::RemoteStore,
        options: &ZarrsOptions,
        jobs: Vec<ChunkJob>,
        source: &Source,
        limit: usize,
        codec_options: &CodecOptions,
    ) -> FfiResult<()> {
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
                    let chunk = self.merge_job(&job, source, || Ok(old.as_deref().map(Cow::Borrowed)), codec_options)?;
                    self.encode_chunk(&job.chunk_shape, chunk, codec_options)
                };
                Ok::<_, FfiError>((job.key.clone(), encode().map_err(|e| self.in_chunk(&job.key, e))?))
            })
            .collect::<FfiResult<Vec<_>>>()
        })??;
        remote.set_many(encoded)?;
        Ok(())
    }

    /// Write every job from `source`, in parallel. Each chunk is replaced atomically by the
    /// storage, so a failure leaves every chunk either old or new.
    pub(crate) fn write_jobs(&self, options: &ZarrsOptions, jobs: Vec<ChunkJob>, source: &Source) -> FfiResult<()> {
        let (limit, codec_options) = self.plan(options, &jobs)?;
        if let Some(remote) = &self.remote {
            return self.write_jobs_remote(remote, options, jobs, source, limit, &codec_options);
        }
        options.install(|| {
            iter_concurrent_limit!(limit, jobs, try_for_each, |job: ChunkJob| {
                self.write_job(&job, source, &codec_options).map_err(|e| self.in_chunk(&job.key, e))
            })
        })?
    }
}

/// Read a batch of chunks into one caller buffer, in parallel.
///
/// - `array`, `options` (NULL: defaults).
/// - `num_chunks`; `keys`/`keys_len`: the store keys back to back (UTF-8);
///   `key_offsets`: `num_chunks + 1` byte offsets into `keys` (key `i` is
///   `keys[key_offsets[i]..key_offsets[i+1]]`).
/// - `geometry`/`geometry_len` (a count of `uint64_t`, `num_chunks * 4 * ndim`): per chunk,
///   `ndim` values each of chunk shape, subset start, subset shape (the region of the chunk
///   to read, in chunk coordinates) and buffer start (where that region goes in `out`).
/// - `out`/`out_len` (bytes): a C-order buffer of shape `out_shape` (`ndim` values, the
///   array's dimensionality) and the array's element size.
/// - `present_out`/`present_len` (`num_chunks` bytes): set to 1 where the chunk was stored
///   and 0 where it was missing and its region was filled with the fill value.
///
/// Precondition: the regions in `out` do not overlap. `out` is written only inside them.
/// On failure the regions of `out` may be partly written and `present_out` is untouched.
///
/// Thread safety: safe to call concurrently on the same array.
#[no_mangle]
pub extern "C" fn zarrs_array_read_chunks(
    array: *const ZarrsArray,
    options: *const ZarrsOptions,
    num_chunks: usize,
    keys: *const c_char,
    keys_len: usize,
    key_offsets: *const u64,
    geometry: *const u64,
    geometry_len: usize,
    out: *mut u8,
    out_len: usize,
    out_shape: *const u64,
    present_out: *mut u8,
    present_len: usize,
) -> ZarrsResult {
    boundary(|| {
        // SAFETY: every pointer below addresses the length stated beside it, per this
        // function's contract, for the duration of the call.
        let array = unsafe { args::handle(array, "array")? };
        let options = unsafe { ZarrsOptions::from_ptr(options) };
        let ndim = array.array.dimensionality();
        let jobs = unsafe { parse_jobs_raw(array, num_chunks, keys, keys_len, key_offsets, geometry, geometry_len)? };
        let out_shape = unsafe { args::values(out_shape, ndim, "out_shape")? };
        let out = unsafe { args::slice_mut(out, out_len, "out")? };
        if present_len != num_chunks {
            return Err(FfiError::buffer_size("present_out", present_len, num_chunks));
        }
        args::require_out(present_out, "present_out")?;
        let destination = Destination::new(out, &out_shape, array.element_size()?, "out")?;
        let present = array.read_jobs(&options, jobs, &destination)?;
        let present_out = unsafe { args::slice_mut(present_out, present_len, "present_out")? };
        for (slot, found) in present_out.iter_mut().zip(present) {
            *slot = u8::from(found);
        }
        Ok(())
    })
}

/// Write a batch of chunks from one caller buffer, in parallel.
///
/// Arguments as for [`zarrs_array_read_chunks`], except that the buffer start of each chunk
/// says where its values are in `value`, a C-order buffer of `value_ndim` dimensions
/// `value_shape`. With `value_ndim == 0` the value is one element broadcast to every region.
/// Chunks written only in part are read, merged and rewritten. Chunks that end up entirely
/// the fill value are erased unless `options->store_empty_chunks`.
///
/// Each chunk is replaced atomically: on failure, every chunk holds its old or its new
/// value. Precondition: no two chunks of one call share a key.
///
/// Thread safety: safe to call concurrently on the same array for disjoint sets of chunks.
#[no_mangle]
pub extern "C" fn zarrs_array_write_chunks(
    array: *const ZarrsArray,
    options: *const ZarrsOptions,
    num_chunks: usize,
    keys: *const c_char,
    keys_len: usize,
    key_offsets: *const u64,
    geometry: *const u64,
    geometry_len: usize,
    value: *const u8,
    value_len: usize,
    value_shape: *const u64,
    value_ndim: usize,
) -> ZarrsResult {
    boundary(|| {
        // SAFETY: every pointer below addresses the length stated beside it, per this
        // function's contract, for the duration of the call.
        let array = unsafe { args::handle(array, "array")? };
        let options = unsafe { ZarrsOptions::from_ptr(options) };
        let jobs = unsafe { parse_jobs_raw(array, num_chunks, keys, keys_len, key_offsets, geometry, geometry_len)? };
        let source = unsafe { Source::from_raw(array, value, value_len, value_shape, value_ndim)? };
        array.write_jobs(&options, jobs, &source)
    })
}

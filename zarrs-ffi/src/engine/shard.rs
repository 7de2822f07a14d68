//! Our read and write paths for sharded chunks (the `sharding_indexed` codec).
//!
//! zarrs' sharding codec moves every inner chunk through a generic strided iterator that
//! dominates its cost. Here each inner chunk is decoded (or encoded) with the inner codec
//! chain and copied run by run, in parallel across inner chunks. Partial reads fetch the
//! index and only the inner chunks they need; decoding those whole also verifies their
//! checksums (zarrs' partial decoding of inner chunks strips them unchecked).
//!
//! Used when the array's codecs are exactly one sharding codec, which is how zarr-python
//! writes sharded arrays, and to decode shards under bytes-to-bytes codecs (sharding
//! followed by e.g. zstd: those run first, within bounds, then the whole shard decodes
//! here; zarrs' chain encodes them). An array-to-array codec before sharding is refused at
//! open (`metadata.rs`), since zarrs' sharding codec would decode its inner chunks
//! unbounded; an inner shard of nested sharding is still decoded by zarrs' sharding codec.

use std::borrow::Cow;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use rayon::iter::{IndexedParallelIterator, IntoParallelIterator, IntoParallelRefIterator, ParallelIterator};
use rayon::slice::ParallelSliceMut;
use zarrs::array::{
    ArrayBytes, ArrayToBytesCodecTraits, CodecChain, CodecError, CodecOptions, DataType, FillValue,
};
use zarrs::metadata::v3::MetadataV3;
use zarrs::storage::byte_range::ByteRange;
use zarrs::storage::{Bytes, ReadableStorageTraits, StoreKey};

use crate::args;
use crate::bounds::{BoundedChain, DEFAULT_MAX_VARIABLE_CHUNK_BYTES};
use crate::error::{FfiError, FfiResult, ZarrsResult};
use super::encoder::ChunkEncoder;
use crate::layout::{copy_region, ChunkJob, Destination};
use crate::process;

/// Marks an inner chunk that is not stored (all fill value).
const MISSING: u64 = u64::MAX;

/// The order in which the inner chunks of a shard are laid out in its bytes. The index
/// locates every chunk, so any order reads back; this only decides the bytes written.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum ZarrsSubchunkOrder {
    /// Z-order over the inner chunk grid (zarr-python 3.4's default).
    ZARRS_SUBCHUNK_ORDER_MORTON = 0,
    /// C order: the last axis varies fastest.
    ZARRS_SUBCHUNK_ORDER_LEXICOGRAPHIC = 1,
    /// Fortran order: the first axis varies fastest.
    ZARRS_SUBCHUNK_ORDER_COLEXICOGRAPHIC = 2,
}

/// The sharding configuration of an array.
pub(crate) struct ShardLayout {
    pub(crate) inner_shape: Vec<NonZeroU64>,
    /// The inner chunks' codecs, decoding within the inner chunk's bounds.
    pub(crate) inner_codecs: BoundedChain,
    /// The inner chunks' codecs for encoding.
    inner_encoder: ChunkEncoder,
    index_codecs: Arc<CodecChain>,
    pub(crate) index_at_end: bool,
    index_type: DataType,
    index_fill: FillValue,
    /// A `ZarrsSubchunkOrder`, atomic so it may change while other calls run.
    write_order: AtomicU8,
}

/// The inner chunks of one shard and where each sits in the shard.
pub(crate) struct Grid {
    per_shard: Vec<u64>,
    pub(crate) count: usize,
}

impl Grid {
    /// The grid coordinates of inner chunk `i` (C order).
    fn coords(&self, i: usize) -> Vec<u64> {
        let mut rest = i as u64;
        let mut coords = vec![0; self.per_shard.len()];
        for d in (0..self.per_shard.len()).rev() {
            coords[d] = rest % self.per_shard[d];
            rest /= self.per_shard[d];
        }
        coords
    }

    /// Inner chunk indices (C order) in the order their bytes are written. Morton codes are
    /// compressed as zarr-python's (and Neuroglancer's): an axis stops contributing bits once
    /// its extent is covered, so non-cubic grids stay dense.
    fn write_order(&self, order: ZarrsSubchunkOrder) -> Vec<usize> {
        let mut indices: Vec<usize> = (0..self.count).collect();
        match order {
            ZarrsSubchunkOrder::ZARRS_SUBCHUNK_ORDER_LEXICOGRAPHIC => {}
            ZarrsSubchunkOrder::ZARRS_SUBCHUNK_ORDER_COLEXICOGRAPHIC => {
                // The first axis varies fastest: compare coordinates from the last axis.
                indices.sort_by_key(|&i| self.coords(i).into_iter().rev().collect::<Vec<_>>());
            }
            ZarrsSubchunkOrder::ZARRS_SUBCHUNK_ORDER_MORTON => {
                let bits: Vec<u32> = self.per_shard.iter().map(|&n| u64::BITS - (n - 1).leading_zeros()).collect();
                let max_bits = bits.iter().copied().max().unwrap_or(0);
                indices.sort_by_key(|&i| {
                    let coords = self.coords(i);
                    let (mut z, mut bit) = (0u128, 0u32);
                    for coord_bit in 0..max_bits {
                        for (d, &b) in bits.iter().enumerate() {
                            if coord_bit < b {
                                z |= u128::from((coords[d] >> coord_bit) & 1) << bit;
                                bit += 1;
                            }
                        }
                    }
                    z
                });
            }
        }
        indices
    }

    fn origin(&self, layout: &ShardLayout, i: usize) -> Vec<u64> {
        self.coords(i).iter().zip(&layout.inner_shape).map(|(c, n)| c * n.get()).collect()
    }
}

fn codec_error(message: String) -> FfiError {
    FfiError::new(ZarrsResult::ZARRS_ERROR_CODEC, message)
}

impl ShardLayout {
    /// The layout if `codecs` (Zarr v3 codec metadata) is exactly one sharding codec.
    pub fn from_codecs_metadata(codecs: &serde_json::Value) -> Option<Self> {
        let [codec] = codecs.as_array()?.as_slice() else {
            return None;
        };
        if codec["name"] != "sharding_indexed" {
            return None;
        }
        let config = &codec["configuration"];
        let inner_shape = config["chunk_shape"]
            .as_array()?
            .iter()
            .map(|v| v.as_u64().and_then(NonZeroU64::new))
            .collect::<Option<Vec<_>>>()?;
        let chain = |value: &serde_json::Value| -> Option<Arc<CodecChain>> {
            let metadata: Vec<MetadataV3> = serde_json::from_value(value.clone()).ok()?;
            CodecChain::from_metadata(&metadata).ok().map(Arc::new)
        };
        let inner_chain = chain(&config["codecs"])?;
        Some(Self {
            inner_shape,
            inner_encoder: ChunkEncoder::new(inner_chain.clone()),
            inner_codecs: BoundedChain::new(inner_chain),
            index_codecs: chain(&config["index_codecs"])?,
            index_at_end: config["index_location"].as_str() != Some("start"),
            index_type: zarrs::array::data_type::uint64(),
            index_fill: FillValue::from(MISSING),
            write_order: AtomicU8::new(ZarrsSubchunkOrder::ZARRS_SUBCHUNK_ORDER_MORTON as u8),
        })
    }

    pub fn set_write_order(&self, order: ZarrsSubchunkOrder) {
        self.write_order.store(order as u8, Ordering::Relaxed);
    }

    fn write_order(&self) -> ZarrsSubchunkOrder {
        match self.write_order.load(Ordering::Relaxed) {
            1 => ZarrsSubchunkOrder::ZARRS_SUBCHUNK_ORDER_LEXICOGRAPHIC,
            2 => ZarrsSubchunkOrder::ZARRS_SUBCHUNK_ORDER_COLEXICOGRAPHIC,
            _ => ZarrsSubchunkOrder::ZARRS_SUBCHUNK_ORDER_MORTON,
        }
    }

    pub(crate) fn grid(&self, shard_shape: &[NonZeroU64]) -> FfiResult<Grid> {
        if shard_shape.len() != self.inner_shape.len() {
            return Err(FfiError::invalid("shard and inner chunk dimensionality differ"));
        }
        let per_shard: Vec<u64> = shard_shape
            .iter()
            .zip(&self.inner_shape)
            .map(|(s, i)| {
                if s.get() % i.get() == 0 {
                    Ok(s.get() / i.get())
                } else {
                    Err(FfiError::invalid(format!(
                        "shard shape {shard_shape:?} is not a multiple of the inner chunk shape {:?}",
                        self.inner_shape
                    )))
                }
            })
            .collect::<FfiResult<_>>()?;
        let count = usize::try_from(args::num_elements(&per_shard)?)
            .map_err(|_| FfiError::invalid("too many inner chunks"))?;
        Ok(Grid { per_shard, count })
    }

    fn index_shape(grid: &Grid) -> Vec<NonZeroU64> {
        grid.per_shard
            .iter()
            .chain(&[2])
            .map(|&d| NonZeroU64::new(d).expect("shard grids have no zero extent"))
            .collect()
    }

    /// The encoded size of the index, which must be fixed.
    pub(crate) fn index_size(&self, grid: &Grid) -> FfiResult<usize> {
        self.index_codecs
            .encoded_representation(&Self::index_shape(grid), &self.index_type, &self.index_fill)?
            .size()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| FfiError::new(ZarrsResult::ZARRS_ERROR_UNSUPPORTED, "shard index codecs without a fixed size"))
    }

    pub(crate) fn decode_index(&self, encoded: &[u8], grid: &Grid, options: &CodecOptions) -> FfiResult<Vec<u64>> {
        let decoded = self
            .index_codecs
            .decode(Cow::Borrowed(encoded), &Self::index_shape(grid), &self.index_type, &self.index_fill, options)?
            .into_fixed()
            .map_err(CodecError::from)?;
        if decoded.len() != grid.count * 16 {
            return Err(codec_error(format!("shard index decoded to {} bytes, expected {}", decoded.len(), grid.count * 16)));
        }
        Ok(decoded
            .chunks_exact(8)
            .map(|b| u64::from_ne_bytes(b.try_into().expect("8-byte chunks")))
            .collect())
    }

    /// Inner chunk `i`'s overlap with the job's subset: (start in the inner chunk, start in
    /// the job's buffer, shape), or None if they do not meet.
    pub(crate) fn overlap(&self, grid: &Grid, job: &ChunkJob, i: usize) -> Option<(Vec<u64>, Vec<u64>, Vec<u64>)> {
        let origin = grid.origin(self, i);
        let (mut inner_start, mut buffer_start, mut shape) = (vec![], vec![], vec![]);
        for (d, &lo_chunk) in origin.iter().enumerate() {
            let hi_chunk = lo_chunk + self.inner_shape[d].get();
            let (lo_job, hi_job) = (job.subset.start()[d], job.subset.start()[d] + job.subset.shape()[d]);
            let (lo, hi) = (lo_chunk.max(lo_job), hi_chunk.min(hi_job));
            if lo >= hi {
                return None;
            }
            inner_start.push(lo - lo_chunk);
            buffer_start.push(job.buffer_start[d] + lo - lo_job);
            shape.push(hi - lo);
        }
        Some((inner_start, buffer_start, shape))
    }

    /// Decode inner chunk `i` from `bytes` (None: not stored) into its overlap with the job.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn place_inner(
        &self,
        grid: &Grid,
        job: &ChunkJob,
        i: usize,
        bytes: Option<&[u8]>,
        destination: &Destination,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
    ) -> FfiResult<()> {
        let Some((inner_start, buffer_start, shape)) = self.overlap(grid, job, i) else {
            return Ok(());
        };
        match bytes {
            None => destination.fill_at(&buffer_start, &shape, fill_value.as_ne_bytes(), &job.key),
            Some(bytes) => {
                let decoded = self
                    .inner_codecs
                    .decode(Cow::Borrowed(bytes), &self.inner_shape, data_type, fill_value, DEFAULT_MAX_VARIABLE_CHUNK_BYTES, options)?
                    .into_fixed()
                    .map_err(CodecError::from)?;
                let inner_shape: Vec<u64> = self.inner_shape.iter().map(|d| d.get()).collect();
                let expected = args::byte_size(&inner_shape, fill_value.size())?;
                if decoded.len() != expected {
                    return Err(codec_error(format!(
                        "an inner chunk of {} decoded to {} bytes, expected {expected}",
                        job.key,
                        decoded.len()
                    )));
                }
                destination.copy_at(&decoded, &inner_shape, &inner_start, &buffer_start, &shape, &job.key)
            }
        }
    }

    /// The byte range of inner chunk `i` within the data, or None if it is not stored.
    pub(crate) fn inner_range(index: &[u64], i: usize, data_len: u64, key: &StoreKey) -> FfiResult<Option<(u64, u64)>> {
        let (offset, size) = (index[2 * i], index[2 * i + 1]);
        if offset == MISSING && size == MISSING {
            return Ok(None);
        }
        match offset.checked_add(size) {
            Some(end) if end <= data_len => Ok(Some((offset, size))),
            _ => Err(codec_error(format!(
                "the index of shard {key} references bytes {offset}+{size} outside its {data_len} bytes: the shard is corrupt"
            ))),
        }
    }

    /// Decode a whole shard of a variable-length data type: its elements' bytes back to back
    /// and `elements + 1` offsets, in C order. Each inner chunk goes through the bounded
    /// inner chain (so a frame declaring more than `cap` bytes fails before it allocates, and
    /// vlen layouts are checked before zarrs slices by them); the whole shard is held to
    /// `cap` too.
    pub fn decode_variable(
        &self,
        shard: &[u8],
        shard_shape: &[NonZeroU64],
        data_type: &DataType,
        fill_value: &FillValue,
        cap: u64,
        options: &CodecOptions,
    ) -> FfiResult<(Vec<u8>, Vec<usize>)> {
        let grid = self.grid(shard_shape)?;
        let index_size = self.index_size(&grid)?;
        if shard.len() < index_size {
            return Err(codec_error(format!(
                "the shard has {} bytes, fewer than its {index_size}-byte index: the shard is truncated",
                shard.len()
            )));
        }
        let index_bytes = if self.index_at_end { &shard[shard.len() - index_size..] } else { &shard[..index_size] };
        let index = self.decode_index(index_bytes, &grid, options)?;
        let inner_elements = usize::try_from(args::num_elements(&self.inner_shape.iter().map(|d| d.get()).collect::<Vec<_>>())?)
            .map_err(|_| FfiError::invalid("inner chunk has too many elements"))?;
        let inner: Vec<(Vec<u8>, Vec<usize>)> = (0..grid.count)
            .into_par_iter()
            .map(|i| self.decode_inner_variable(&index, i, shard, inner_elements, data_type, fill_value, cap, options))
            .collect::<FfiResult<_>>()?;
        let total: u64 = inner.iter().map(|(b, _)| b.len() as u64).sum();
        if total > cap {
            return Err(codec_error(format!("the shard decodes to {total} element bytes, more than the {cap}-byte cap")));
        }
        self.interleave_variable(&grid, shard_shape, &inner, total)
    }

    /// Decode inner chunk `i` of a variable-length shard into element bytes and
    /// `inner_elements + 1` offsets (the fill value if it is not stored).
    #[allow(clippy::too_many_arguments)]
    fn decode_inner_variable(
        &self,
        index: &[u64],
        i: usize,
        shard: &[u8],
        inner_elements: usize,
        data_type: &DataType,
        fill_value: &FillValue,
        cap: u64,
        options: &CodecOptions,
    ) -> FfiResult<(Vec<u8>, Vec<usize>)> {
        let key = StoreKey::new("shard").expect("a valid key");
        let Some((offset, size)) = Self::inner_range(index, i, shard.len() as u64, &key)? else {
            let fill = fill_value.as_ne_bytes();
            let bytes = fill.repeat(inner_elements);
            let offsets = (0..=inner_elements).map(|e| e * fill.len()).collect();
            return Ok((bytes, offsets));
        };
        let bytes = &shard[offset as usize..(offset + size) as usize];
        let decoded = self
            .inner_codecs
            .decode(Cow::Borrowed(bytes), &self.inner_shape, data_type, fill_value, cap, options)?
            .into_variable()
            .map_err(CodecError::from)?;
        let (bytes, offsets) = decoded.into_parts();
        if offsets.len() != inner_elements + 1 {
            return Err(codec_error(format!(
                "inner chunk {i} decoded to {} elements, expected {inner_elements}",
                offsets.len() - 1
            )));
        }
        Ok((bytes.into_owned(), offsets.to_vec()))
    }

    /// The elements of decoded inner chunks (`inner`, `total` bytes in all) in the shard's C
    /// order: their bytes back to back and `elements + 1` offsets.
    fn interleave_variable(
        &self,
        grid: &Grid,
        shard_shape: &[NonZeroU64],
        inner: &[(Vec<u8>, Vec<usize>)],
        total: u64,
    ) -> FfiResult<(Vec<u8>, Vec<usize>)> {
        // Runs along the last axis: each run of an inner chunk's last extent is contiguous in
        // both the shard and the inner chunk (C order).
        let shard_dims: Vec<u64> = shard_shape.iter().map(|d| d.get()).collect();
        let inner_dims: Vec<u64> = self.inner_shape.iter().map(|d| d.get()).collect();
        let run = inner_dims.last().copied().unwrap_or(1) as usize;
        let elements = usize::try_from(args::num_elements(&shard_dims)?).map_err(|_| FfiError::invalid("shard has too many elements"))?;
        let mut data = Vec::with_capacity(total as usize);
        let mut offsets = Vec::with_capacity(elements + 1);
        let ndim = shard_dims.len();
        let mut coords = vec![0u64; ndim];
        let mut start = 0usize;
        while start < elements {
            let mut rest = start as u64;
            for d in (0..ndim).rev() {
                coords[d] = rest % shard_dims[d];
                rest /= shard_dims[d];
            }
            let (mut chunk, mut local) = (0u64, 0u64);
            for d in 0..ndim {
                chunk = chunk * grid.per_shard[d] + coords[d] / inner_dims[d];
                local = local * inner_dims[d] + coords[d] % inner_dims[d];
            }
            let (bytes, inner_offsets) = &inner[chunk as usize];
            let local = local as usize;
            for e in local..local + run {
                offsets.push(data.len());
                data.extend_from_slice(&bytes[inner_offsets[e]..inner_offsets[e + 1]]);
            }
            start += run.max(1);
        }
        offsets.push(data.len());
        Ok((data, offsets))
    }

    /// Decode the job's subset of an encoded shard into `destination`.
    pub fn decode_into(
        &self,
        job: &ChunkJob,
        shard: &[u8],
        destination: &Destination,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
    ) -> FfiResult<()> {
        let grid = self.grid(&job.chunk_shape)?;
        let index_size = self.index_size(&grid)?;
        if shard.len() < index_size {
            return Err(codec_error(format!(
                "shard {} has {} bytes, fewer than its {index_size}-byte index: the shard is truncated",
                job.key,
                shard.len()
            )));
        }
        let index_bytes = if self.index_at_end { &shard[shard.len() - index_size..] } else { &shard[..index_size] };
        let index = self.decode_index(index_bytes, &grid, options)?;
        // Offsets count from the start of the shard, index included when it comes first.
        process::try_for_each(grid.count, |i| {
            let bytes = Self::inner_range(&index, i, shard.len() as u64, &job.key)?
                .map(|(offset, size)| &shard[offset as usize..(offset + size) as usize]);
            self.place_inner(&grid, job, i, bytes, destination, data_type, fill_value, options)
        })
    }

    /// Read the job's subset of a stored shard, fetching only the index and the inner chunks
    /// it needs. Returns whether the shard exists.
    pub fn read_partial(
        &self,
        storage: &dyn ReadableStorageTraits,
        job: &ChunkJob,
        destination: &Destination,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
    ) -> FfiResult<bool> {
        let grid = self.grid(&job.chunk_shape)?;
        let index_size = self.index_size(&grid)? as u64;
        let index_range = if self.index_at_end {
            ByteRange::Suffix(index_size)
        } else {
            ByteRange::FromStart(0, Some(index_size))
        };
        let Some(index_bytes) = storage.get_partial(&job.key, index_range)? else {
            destination.fill_at(&job.buffer_start, job.subset.shape(), fill_value.as_ne_bytes(), &job.key)?;
            return Ok(false);
        };
        if index_bytes.len() as u64 != index_size {
            return Err(codec_error(format!("shard {} is shorter than its index: the shard is truncated", job.key)));
        }
        let index = self.decode_index(&index_bytes, &grid, options)?;
        // Index entries are hostile: each is checked before anything is fetched for it.
        // With a bounded inner encoding (any compressor zarrs has) no entry may exceed that
        // bound, which needs no request; otherwise the shard's length is asked for.
        let max_inner = self.inner_codecs.max_encoded_size(&self.inner_shape, data_type, fill_value)?;
        let shard_len = match max_inner {
            Some(_) => u64::MAX,
            None => storage.size_key(&job.key)?.unwrap_or(0),
        };
        let needed: Vec<usize> = (0..grid.count).filter(|&i| self.overlap(&grid, job, i).is_some()).collect();
        let mut ranges = Vec::new();
        let mut stored = Vec::new();
        for &i in &needed {
            match Self::inner_range(&index, i, shard_len, &job.key)? {
                Some((_, size)) if max_inner.is_some_and(|max| size > max) => {
                    return Err(codec_error(format!(
                        "the index of shard {} gives inner chunk {i} {size} bytes, more than the {} an inner chunk can take: the shard is corrupt",
                        job.key,
                        max_inner.unwrap_or_default()
                    )));
                }
                Some((offset, size)) => {
                    ranges.push(ByteRange::FromStart(offset, Some(size)));
                    stored.push(i);
                }
                None => self.place_inner(&grid, job, i, None, destination, data_type, fill_value, options)?,
            }
        }
        if stored.is_empty() {
            return Ok(true);
        }
        let fetched = Self::fetch_inner(storage, &job.key, ranges)?;
        process::try_for_each(stored.len(), |k| {
            self.place_inner(&grid, job, stored[k], Some(&fetched[k]), destination, data_type, fill_value, options)
        })?;
        Ok(true)
    }

    /// Fetch the byte `ranges` of inner chunks of the shard at `key`. A range past the end
    /// of the shard is the index's fault (corrupt), not the store's.
    fn fetch_inner(storage: &dyn ReadableStorageTraits, key: &StoreKey, ranges: Vec<ByteRange>) -> FfiResult<Vec<Bytes>> {
        let ends: Vec<u64> = ranges.iter().map(|r| r.end(u64::MAX)).collect();
        let fetched = storage
            .get_partial_many(key, Box::new(ranges.into_iter()))
            .and_then(|values| values.map(|values| values.collect::<Result<Vec<_>, _>>()).transpose())
            .map_err(|err| {
                // A read past the end of the shard is the index's fault, not the store's.
                match storage.size_key(key) {
                    Ok(Some(len)) if ends.iter().any(|&end| end > len) => codec_error(format!(
                        "the index of shard {key} references bytes past its end ({len} bytes): the shard is corrupt"
                    )),
                    _ => FfiError::from(err),
                }
            })?
            .ok_or_else(|| FfiError::new(ZarrsResult::ZARRS_ERROR_STORAGE, format!("shard {key} vanished while being read")))?;
        Ok(fetched)
    }

    /// Encode a whole decoded shard. None: every inner chunk is the fill value and empty
    /// chunks are not stored, so the shard should be erased.
    pub fn encode(
        &self,
        shard_shape: &[NonZeroU64],
        shard: &[u8],
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
    ) -> FfiResult<Option<Vec<u8>>> {
        let grid = self.grid(shard_shape)?;
        let inner_len = args::byte_size(&self.inner_shape.iter().map(|d| d.get()).collect::<Vec<_>>(), fill_value.size())?;
        let fixed = self.inner_codecs.fixed_encoded_size(&self.inner_shape, data_type, fill_value)?;
        if fixed == Some(inner_len as u64) {
            return self.encode_in_place(&grid, shard_shape, shard, inner_len, data_type, fill_value, options);
        }
        self.encode_each(&grid, shard_shape, shard, inner_len, data_type, fill_value, options)
    }

    /// Encode each inner chunk on its own, then assemble the shard from them.
    #[allow(clippy::too_many_arguments)]
    fn encode_each(
        &self,
        grid: &Grid,
        shard_shape: &[NonZeroU64],
        shard: &[u8],
        inner_len: usize,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
    ) -> FfiResult<Option<Vec<u8>>> {
        let encoded: Vec<Option<Vec<u8>>> = (0..grid.count)
            .into_par_iter()
            .map(|i| {
                with_scratch(inner_len, |inner| {
                    self.extract_inner(grid, shard_shape, shard, i, inner, fill_value.size());
                    if !options.store_empty_chunks() && fill_value.equals_all(inner) {
                        return Ok(None);
                    }
                    let bytes = self.inner_encoder.encode(ArrayBytes::new_flen(Cow::Borrowed(&*inner)), &self.inner_shape, data_type, fill_value, options)?;
                    Ok(Some(bytes.into_owned()))
                })
            })
            .collect::<FfiResult<_>>()?;
        if encoded.iter().all(Option::is_none) {
            return Ok(None);
        }
        self.assemble(grid, &encoded, options).map(Some)
    }

    /// Copy inner chunk `i` of a decoded shard into `inner`.
    fn extract_inner(&self, grid: &Grid, shard_shape: &[NonZeroU64], shard: &[u8], i: usize, inner: &mut [u8], element_size: usize) {
        let shard_shape: Vec<u64> = shard_shape.iter().map(|d| d.get()).collect();
        let inner_shape: Vec<u64> = self.inner_shape.iter().map(|d| d.get()).collect();
        let origin = grid.origin(self, i);
        copy_region(shard, &shard_shape, &origin, inner, &inner_shape, &vec![0; inner_shape.len()], &inner_shape, element_size);
    }

    /// Encode a shard whose inner chunks encode to exactly their decoded size (`bytes`
    /// alone, e.g. uncompressed shards): each inner chunk is copied straight into its place
    /// in the one shard buffer, and encoded there when the codecs change its bytes (another
    /// byte order), with no buffer per inner chunk and no copy to assemble the shard.
    #[allow(clippy::too_many_arguments)]
    fn encode_in_place(
        &self,
        grid: &Grid,
        shard_shape: &[NonZeroU64],
        shard: &[u8],
        inner_len: usize,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
    ) -> FfiResult<Option<Vec<u8>>> {
        let index_size = self.index_size(grid)?;
        let data_start = if self.index_at_end { 0 } else { index_size };
        let data_len = inner_len
            .checked_mul(grid.count)
            .and_then(|n| n.checked_add(index_size))
            .ok_or_else(|| FfiError::invalid("the shard is too large to encode in memory"))?;
        let mut out = vec![0u8; data_len];
        let order = grid.write_order(self.write_order());
        // Slot k of the data holds the k-th inner chunk of the write order.
        let stored: Vec<bool> = out[data_start..data_start + inner_len * grid.count]
            .par_chunks_mut(inner_len)
            .zip(order.par_iter())
            .map(|(slot, &i)| {
                self.extract_inner(grid, shard_shape, shard, i, slot, fill_value.size());
                if !options.store_empty_chunks() && fill_value.equals_all(slot) {
                    return Ok(false);
                }
                let encoded = self.inner_encoder.encode(ArrayBytes::new_flen(Cow::Borrowed(&*slot)), &self.inner_shape, data_type, fill_value, options)?;
                // The codecs returned the input itself (native byte order): already in place.
                let changed = match encoded {
                    Cow::Borrowed(bytes) if bytes.as_ptr() == slot.as_ptr() => None,
                    other => Some(other.into_owned()),
                };
                if let Some(bytes) = changed {
                    if bytes.len() != inner_len {
                        return Err(codec_error(format!(
                            "an inner chunk encoded to {} bytes; its codecs produce exactly {inner_len}",
                            bytes.len()
                        )));
                    }
                    slot.copy_from_slice(&bytes);
                }
                Ok(true)
            })
            .collect::<FfiResult<_>>()?;
        if !stored.contains(&true) {
            return Ok(None);
        }
        // Empty inner chunks are not stored: move the stored ones down over their slots.
        let mut entries = vec![(MISSING, MISSING); grid.count];
        let mut end = data_start;
        for (k, &i) in order.iter().enumerate() {
            if stored[k] {
                let slot = data_start + k * inner_len;
                if slot != end {
                    out.copy_within(slot..slot + inner_len, end);
                }
                entries[i] = (end as u64, inner_len as u64);
                end += inner_len;
            }
        }
        let index = self.encode_index(grid, &entries, options)?;
        if self.index_at_end {
            out.truncate(end);
            out.extend_from_slice(&index);
        } else {
            out.truncate(end);
            out[..index_size].copy_from_slice(&index);
        }
        Ok(Some(out))
    }

    /// The encoded shard index of `entries` (offset, size), `MISSING` for chunks not stored.
    fn encode_index(&self, grid: &Grid, entries: &[(u64, u64)], options: &CodecOptions) -> FfiResult<Vec<u8>> {
        let mut index = Vec::with_capacity(grid.count * 16);
        for (o, n) in entries {
            index.extend_from_slice(&o.to_ne_bytes());
            index.extend_from_slice(&n.to_ne_bytes());
        }
        Ok(self
            .index_codecs
            .encode(ArrayBytes::new_flen(index), &Self::index_shape(grid), &self.index_type, &self.index_fill, options)?
            .into_owned())
    }

    /// The bytes of a shard from its encoded inner chunks (None: not stored): the inner
    /// chunks in the write order, and the encoded index before or after them.
    fn assemble(&self, grid: &Grid, encoded: &[Option<Vec<u8>>], options: &CodecOptions) -> FfiResult<Vec<u8>> {
        let index_size = self.index_size(grid)?;
        let data_len: usize = encoded.iter().flatten().map(Vec::len).sum();
        let order = grid.write_order(self.write_order());
        let mut offset = if self.index_at_end { 0 } else { index_size as u64 };
        let mut entries = vec![(MISSING, MISSING); grid.count];
        for &i in &order {
            if let Some(bytes) = &encoded[i] {
                entries[i] = (offset, bytes.len() as u64);
                offset += bytes.len() as u64;
            }
        }
        let index = self.encode_index(grid, &entries, options)?;
        let mut out = Vec::with_capacity(data_len + index.len());
        if !self.index_at_end {
            out.extend_from_slice(&index);
        }
        for inner in order.iter().filter_map(|&i| encoded[i].as_ref()) {
            out.extend_from_slice(inner);
        }
        if self.index_at_end {
            out.extend_from_slice(&index);
        }
        Ok(out)
    }
}

thread_local! {
    /// This thread's buffer for one decoded inner chunk on its way to the encoder.
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Run `f` on this thread's scratch buffer resized to `len` bytes, rather than allocating
/// and zeroing a buffer for every inner chunk. The buffer is taken out while `f` runs, so a
/// nested use on the same thread gets a fresh one instead of sharing it.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    let mut buffer = SCRATCH.take();
    buffer.resize(len, 0);
    let result = f(&mut buffer);
    SCRATCH.set(buffer);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(codecs: serde_json::Value, index_location: &str) -> ShardLayout {
        let metadata = serde_json::json!([{"name": "sharding_indexed", "configuration": {
            "chunk_shape": [4, 6],
            "codecs": codecs,
            "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
            "index_location": index_location,
        }}]);
        ShardLayout::from_codecs_metadata(&metadata).unwrap()
    }

    #[test]
    fn shards_encoded_in_place_equal_shards_assembled() {
        let shape: Vec<NonZeroU64> = [12u64, 18].iter().map(|&d| NonZeroU64::new(d).unwrap()).collect();
        let (data_type, fill_value) = (zarrs::array::data_type::uint16(), FillValue::from(0u16));
        let mut values: Vec<u16> = (0..12 * 18).map(|i| (i % 97 + 1) as u16).collect();
        // Empty inner chunks (all fill value) first, inside and last in every write order.
        for (row, col) in [(0, 0), (4, 6), (4, 12), (8, 12)] {
            for r in row..row + 4 {
                values[r * 18 + col..r * 18 + col + 6].fill(0);
            }
        }
        let shard: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let empty = vec![0u8; shard.len()];
        let mut store_empty = CodecOptions::default();
        store_empty.set_store_empty_chunks(true);
        for endian in ["little", "big"] {
            for location in ["start", "end"] {
                let layout = layout(serde_json::json!([{"name": "bytes", "configuration": {"endian": endian}}]), location);
                let grid = layout.grid(&shape).unwrap();
                for order in [0, 1, 2] {
                    layout.write_order.store(order, Ordering::Relaxed);
                    for options in [CodecOptions::default(), store_empty] {
                        for data in [&shard, &empty] {
                            let in_place = layout.encode(&shape, data, &data_type, &fill_value, &options).unwrap();
                            let each = layout.encode_each(&grid, &shape, data, 48, &data_type, &fill_value, &options).unwrap();
                            assert_eq!(in_place, each, "{endian} endian, index at {location}, order {order}");
                        }
                    }
                }
                // And it reads back.
                let encoded = layout.encode(&shape, &shard, &data_type, &fill_value, &CodecOptions::default()).unwrap().unwrap();
                let key = StoreKey::new("c/0").unwrap();
                let job = ChunkJob::whole(key, shape.clone());
                let mut decoded = vec![1u8; shard.len()];
                let destination = Destination::new(&mut decoded, &[12, 18], 2, "shard").unwrap();
                layout.decode_into(&job, &encoded, &destination, &data_type, &fill_value, &CodecOptions::default()).unwrap();
                assert_eq!(decoded, shard);
            }
        }
    }
}

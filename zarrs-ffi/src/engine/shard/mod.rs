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
//! here; zarrs' chain encodes them). An array-to-array codec before sharding, at any level,
//! is refused at open (`metadata.rs`), since zarrs' sharding codec would decode its inner
//! chunks unbounded.
//!
//! Sharding nested in sharding is read here too, recursively: an inner chunk that is itself
//! a shard has its bytes-to-bytes codecs (if any) decoded within bounds, then its index
//! decoded with the same checks as the outer one (entries against the inner shard's own
//! length, checked arithmetic, its grid bounded at open), and only its inner chunks that
//! the read needs decoded, each bounded by `bounds.rs`. zarrs' sharding codec, which trusts
//! index entries and frame headers, decodes nothing read from storage; it only encodes.

use std::borrow::Cow;
use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use rayon::iter::{IndexedParallelIterator, IntoParallelIterator, IntoParallelRefIterator, ParallelIterator};
use rayon::slice::ParallelSliceMut;
use zarrs::array::{
    ArrayBytes, ArraySubset, ArrayToBytesCodecTraits, CodecChain, CodecError, CodecOptions, DataType, FillValue,
};
use zarrs::metadata::v3::MetadataV3;
use zarrs::storage::byte_range::ByteRange;
use zarrs::storage::{Bytes, ReadableStorageTraits, StoreKey};

use crate::args;
use crate::bounds::{BoundedChain, Needed, DEFAULT_MAX_VARIABLE_CHUNK_BYTES};
use crate::error::{FfiError, FfiResult, ZarrsResult};
use super::encoder::ChunkEncoder;
use crate::layout::{ChunkJob, ChunkValues, Destination};
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
    /// The inner chunks' codecs, decoding within the inner chunk's bounds. For nested
    /// sharding, only their bytes-to-bytes codecs decode here (`decode_bytes`); `nested`
    /// reads the inner shard they yield.
    pub(crate) inner_codecs: BoundedChain,
    /// The layout of the inner chunks when they are shards themselves (sharding nested in
    /// sharding): read by this module, recursively, never by zarrs' sharding codec.
    nested: Option<Box<ShardLayout>>,
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
    pub(crate) per_shard: Vec<u64>,
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

    pub(crate) fn origin(&self, layout: &ShardLayout, i: usize) -> Vec<u64> {
        self.coords(i).iter().zip(&layout.inner_shape).map(|(c, n)| c * n.get()).collect()
    }
}

fn codec_error(message: String) -> FfiError {
    FfiError::new(ZarrsResult::ZARRS_ERROR_CODEC, message)
}

/// How messages name a shard: "shard c/0/0" (or "the shard", decoded from bytes alone), and
/// an inner shard of nested sharding by where it sits: "inner shard 5 of shard c/0/0".
#[derive(Clone, Copy)]
struct ShardName<'a> {
    key: Option<&'a StoreKey>,
    within: Option<(&'a ShardName<'a>, usize)>,
}

impl<'a> ShardName<'a> {
    fn key(key: &'a StoreKey) -> Self {
        Self { key: Some(key), within: None }
    }

    fn unnamed() -> Self {
        Self { key: None, within: None }
    }

    /// Inner chunk `i` of this shard, itself a shard.
    fn inner(&'a self, i: usize) -> Self {
        Self { key: self.key, within: Some((self, i)) }
    }
}

impl fmt::Display for ShardName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.within, self.key) {
            (Some((outer, i)), _) => write!(f, "inner shard {i} of {outer}"),
            (None, Some(key)) => write!(f, "shard {key}"),
            (None, None) => f.write_str("the shard"),
        }
    }
}

impl ShardLayout {
    /// The layout if `codecs` (Zarr v3 codec metadata) is exactly one sharding codec.
    pub fn from_codecs_metadata(codecs: &serde_json::Value) -> Option<Self> {
        let [codec] = codecs.as_array()?.as_slice() else {
            return None;
        };
        Self::from_codec_metadata(codec)
    }

    /// The layout of one sharding codec (Zarr v3 metadata). None if it is not one, or if a
    /// sharding codec inside it follows another codec (`metadata.rs` refuses those chains):
    /// every inner shard must be one this module reads.
    fn from_codec_metadata(codec: &serde_json::Value) -> Option<Self> {
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
        let inner_list = config["codecs"].as_array()?;
        let nested = match inner_list.iter().position(|c| c["name"] == "sharding_indexed") {
            None => None,
            Some(0) => Some(Box::new(Self::from_codec_metadata(&inner_list[0])?)),
            Some(_) => return None,
        };
        let inner_chain = chain(&config["codecs"])?;
        Some(Self {
            inner_shape,
            inner_encoder: ChunkEncoder::new(inner_chain.clone()),
            inner_codecs: BoundedChain::new(inner_chain),
            nested,
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
        self.place_inner_named(grid, job, &ShardName::key(&job.key), i, bytes, destination, data_type, fill_value, options)
    }

    /// [`Self::place_inner`] in the shard `name` (an inner shard, for nested sharding).
    #[allow(clippy::too_many_arguments)]
    fn place_inner_named(
        &self,
        grid: &Grid,
        job: &ChunkJob,
        name: &ShardName<'_>,
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
        let Some(bytes) = bytes else {
            return destination.fill_at(&buffer_start, &shape, fill_value.as_ne_bytes(), &job.key);
        };
        if let Some(nested) = &self.nested {
            // An inner shard: its bytes-to-bytes codecs within the bounds of the shard they
            // yield, then its own index and only the inner chunks the overlap needs.
            let inner_shard = self.inner_codecs.decode_bytes(
                Cow::Borrowed(bytes),
                &self.inner_shape,
                data_type,
                fill_value,
                DEFAULT_MAX_VARIABLE_CHUNK_BYTES, // fixed-size chunks are bounded by their metadata
                options,
            )?;
            let inner_job = ChunkJob {
                key: job.key.clone(),
                chunk_shape: self.inner_shape.clone(),
                subset: ArraySubset::new_with_start_shape(inner_start, shape)?,
                buffer_start,
            };
            return nested.decode_named(&inner_job, &name.inner(i), &inner_shard, destination, data_type, fill_value, options);
        }
        let decoded = self.decode_stored_inner(bytes, i, name, data_type, fill_value, options)?;
        let inner_shape: Vec<u64> = self.inner_shape.iter().map(|d| d.get()).collect();
        destination.copy_at(&decoded, &inner_shape, &inner_start, &buffer_start, &shape, &job.key)
    }

    /// Decode stored inner chunk `i` of the shard at `key` whole (within bounds), checking
    /// that it holds exactly an inner chunk's bytes. An inner shard (nested sharding) is read
    /// by this reader, not zarrs' sharding codec. `needed`: the bytes a gather reads of the
    /// decoded inner chunk, where only those need to be right; codecs that can decode less
    /// (a zstd prefix, blosc blocks: [`BoundedChain::decode_needed`]) then may, and the
    /// result may be shorter than the inner chunk (a prefix) or hold zeros where nothing
    /// is read.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn decode_inner<'b>(
        &self,
        bytes: &'b [u8],
        i: usize,
        key: &StoreKey,
        data_type: &DataType,
        fill_value: &FillValue,
        needed: Option<&dyn Needed>,
        options: &CodecOptions,
    ) -> FfiResult<Cow<'b, [u8]>> {
        let inner_shape: Vec<u64> = self.inner_shape.iter().map(|d| d.get()).collect();
        let name = ShardName::key(key);
        let Some(nested) = &self.nested else {
            if let Some(needed) = needed {
                let part = self.inner_codecs.decode_needed(Cow::Borrowed(bytes), &self.inner_shape, data_type, fill_value, needed, options)?;
                if let Some(part) = part {
                    let expected = args::byte_size(&inner_shape, fill_value.size())?;
                    if part.len() > expected {
                        return Err(codec_error(format!("inner chunk {i} of {name} decoded to {} bytes, expected {expected}", part.len())));
                    }
                    return Ok(Cow::Owned(part));
                }
            }
            return self.decode_stored_inner(bytes, i, &name, data_type, fill_value, options);
        };
        // An inner shard: its bytes-to-bytes codecs within the bounds of the shard they
        // yield, then its own index and every inner chunk, each bounded.
        let inner_shard = self.inner_codecs.decode_bytes(
            Cow::Borrowed(bytes),
            &self.inner_shape,
            data_type,
            fill_value,
            DEFAULT_MAX_VARIABLE_CHUNK_BYTES, // fixed-size chunks are bounded by their metadata
            options,
        )?;
        let mut whole = vec![0u8; args::byte_size(&inner_shape, fill_value.size())?];
        let destination = Destination::new(&mut whole, &inner_shape, fill_value.size(), "inner shard")?;
        let job = ChunkJob {
            key: key.clone(),
            chunk_shape: self.inner_shape.clone(),
            subset: ArraySubset::new_with_shape(inner_shape.clone()),
            buffer_start: vec![0; inner_shape.len()],
        };
        nested.decode_named(&job, &name.inner(i), &inner_shard, &destination, data_type, fill_value, options)?;
        Ok(Cow::Owned(whole))
    }

    /// Decode a stored inner chunk that is not a shard, checking its decoded size.
    fn decode_stored_inner<'b>(
        &self,
        bytes: &'b [u8],
        i: usize,
        name: &ShardName<'_>,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
    ) -> FfiResult<Cow<'b, [u8]>> {
        let decoded = self
            .inner_codecs
            .decode(Cow::Borrowed(bytes), &self.inner_shape, data_type, fill_value, DEFAULT_MAX_VARIABLE_CHUNK_BYTES, options)?
            .into_fixed()
            .map_err(CodecError::from)?;
        let inner_shape: Vec<u64> = self.inner_shape.iter().map(|d| d.get()).collect();
        let expected = args::byte_size(&inner_shape, fill_value.size())?;
        if decoded.len() != expected {
            return Err(codec_error(format!("inner chunk {i} of {name} decoded to {} bytes, expected {expected}", decoded.len())));
        }
        Ok(decoded)
    }

    /// The byte range of inner chunk `i` within the data, or None if it is not stored.
    pub(crate) fn inner_range(index: &[u64], i: usize, data_len: u64, key: &StoreKey) -> FfiResult<Option<(u64, u64)>> {
        Self::entry(index, i, data_len, &ShardName::key(key))
    }

    /// The byte range of inner chunk `i` in the `data_len` bytes of shard `name` from its
    /// decoded `index`, or None if it is not stored. Entries are hostile: one that overflows
    /// or reaches past the data is an error, so the range always slices `data_len` bytes.
    fn entry(index: &[u64], i: usize, data_len: u64, name: &ShardName<'_>) -> FfiResult<Option<(u64, u64)>> {
        let (offset, size) = (index[2 * i], index[2 * i + 1]);
        if offset == MISSING && size == MISSING {
            return Ok(None);
        }
        match offset.checked_add(size) {
            Some(end) if end <= data_len => Ok(Some((offset, size))),
            _ => Err(codec_error(format!(
                "the index of {name} references bytes {offset}+{size} outside its {data_len} bytes: the shard is corrupt"
            ))),
        }
    }

    /// The decoded index of the encoded shard `shard` (named `name` in messages) over `grid`,
    /// checked to fit: the shard holds the whole index.
    fn index_of(&self, shard: &[u8], grid: &Grid, name: &ShardName<'_>, options: &CodecOptions) -> FfiResult<Vec<u64>> {
        let index_size = self.index_size(grid)?;
        if shard.len() < index_size {
            return Err(codec_error(format!(
                "{name} has {} bytes, fewer than its {index_size}-byte index: the shard is truncated",
                shard.len()
            )));
        }
        let index_bytes = if self.index_at_end { &shard[shard.len() - index_size..] } else { &shard[..index_size] };
        self.decode_index(index_bytes, grid, options)
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
        self.decode_variable_named(shard, shard_shape, &ShardName::unnamed(), data_type, fill_value, cap, options)
    }

    /// [`Self::decode_variable`] of the shard `name` (an inner shard, for nested sharding).
    #[allow(clippy::too_many_arguments)]
    fn decode_variable_named(
        &self,
        shard: &[u8],
        shard_shape: &[NonZeroU64],
        name: &ShardName<'_>,
        data_type: &DataType,
        fill_value: &FillValue,
        cap: u64,
        options: &CodecOptions,
    ) -> FfiResult<(Vec<u8>, Vec<usize>)> {
        let grid = self.grid(shard_shape)?;
        let index = self.index_of(shard, &grid, name, options)?;
        let inner_elements = usize::try_from(args::num_elements(&self.inner_shape.iter().map(|d| d.get()).collect::<Vec<_>>())?)
            .map_err(|_| FfiError::invalid("inner chunk has too many elements"))?;
        let inner: Vec<(Vec<u8>, Vec<usize>)> = (0..grid.count)
            .into_par_iter()
            .map(|i| self.decode_inner_variable(&index, i, shard, name, inner_elements, data_type, fill_value, cap, options))
            .collect::<FfiResult<_>>()?;
        let total: u64 = inner.iter().map(|(b, _)| b.len() as u64).sum();
        if total > cap {
            return Err(codec_error(format!("{name} decodes to {total} element bytes, more than the {cap}-byte cap")));
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
        name: &ShardName<'_>,
        inner_elements: usize,
        data_type: &DataType,
        fill_value: &FillValue,
        cap: u64,
        options: &CodecOptions,
    ) -> FfiResult<(Vec<u8>, Vec<usize>)> {
        let Some((offset, size)) = Self::entry(index, i, shard.len() as u64, name)? else {
            let fill = fill_value.as_ne_bytes();
            let bytes = fill.repeat(inner_elements);
            let offsets = (0..=inner_elements).map(|e| e * fill.len()).collect();
            return Ok((bytes, offsets));
        };
        // entry() checked offset + size <= shard.len().
        let bytes = &shard[offset as usize..(offset + size) as usize];
        let (bytes, offsets): (Cow<'_, [u8]>, Cow<'_, [usize]>) = match &self.nested {
            Some(nested) => {
                // An inner shard: its bytes-to-bytes codecs within `cap`, then read here.
                let inner_shard = self.inner_codecs.decode_bytes(Cow::Borrowed(bytes), &self.inner_shape, data_type, fill_value, cap, options)?;
                let (bytes, offsets) =
                    nested.decode_variable_named(&inner_shard, &self.inner_shape, &name.inner(i), data_type, fill_value, cap, options)?;
                (Cow::Owned(bytes), Cow::Owned(offsets))
            }
            None => {
                let decoded = self
                    .inner_codecs
                    .decode(Cow::Borrowed(bytes), &self.inner_shape, data_type, fill_value, cap, options)?
                    .into_variable()
                    .map_err(CodecError::from)?;
                let (bytes, offsets) = decoded.into_parts();
                (bytes, Cow::Owned(offsets.to_vec()))
            }
        };
        if offsets.len() != inner_elements + 1 {
            return Err(codec_error(format!(
                "inner chunk {i} of {name} decoded to {} elements, expected {inner_elements}",
                offsets.len() - 1
            )));
        }
        Ok((bytes.into_owned(), offsets.into_owned()))
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
        self.decode_named(job, &ShardName::key(&job.key), shard, destination, data_type, fill_value, options)
    }

    /// [`Self::decode_into`] of the shard `name`: for nested sharding, `job` is the part of
    /// an inner shard the outer job needs, and `shard` its bytes, already in memory.
    #[allow(clippy::too_many_arguments)]
    fn decode_named(
        &self,
        job: &ChunkJob,
        name: &ShardName<'_>,
        shard: &[u8],
        destination: &Destination,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
    ) -> FfiResult<()> {
        let grid = self.grid(&job.chunk_shape)?;
        let index = self.index_of(shard, &grid, name, options)?;
        // Offsets count from the start of the shard, index included when it comes first.
        // Every entry is checked, also those of inner chunks the job does not need.
        process::try_for_each(grid.count, |i| {
            let bytes = Self::entry(&index, i, shard.len() as u64, name)?
                .map(|(offset, size)| &shard[offset as usize..(offset + size) as usize]);
            self.place_inner_named(&grid, job, name, i, bytes, destination, data_type, fill_value, options)
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
        let needed = self.met(&grid, job);
        let found = self.read_inner(storage, &job.key, &grid, &needed, false, data_type, fill_value, options, |i, bytes| {
            self.place_inner(&grid, job, i, bytes, destination, data_type, fill_value, options)
        })?;
        if !found {
            destination.fill_at(&job.buffer_start, job.subset.shape(), fill_value.as_ne_bytes(), &job.key)?;
        }
        Ok(found)
    }

    /// The inner chunks (C-order indices, ascending) the job's subset meets: those for
    /// which [`Self::overlap`] is Some, from the subset's first and last inner chunk per axis
    /// rather than by trying every inner chunk (a small read of a 64-chunk shard needs few).
    fn met(&self, grid: &Grid, job: &ChunkJob) -> Vec<usize> {
        let (start, shape) = (job.subset.start(), job.subset.shape());
        let mut lo = Vec::with_capacity(grid.per_shard.len());
        let mut hi = Vec::with_capacity(grid.per_shard.len());
        for (d, &per_shard) in grid.per_shard.iter().enumerate() {
            let n = self.inner_shape[d].get();
            let Some(last) = (start[d] + shape[d]).checked_sub(1) else { return Vec::new() };
            let (first, last) = (start[d] / n, (last / n).min(per_shard - 1));
            if shape[d] == 0 || first > last {
                return Vec::new();
            }
            lo.push(first);
            hi.push(last);
        }
        let mut met = Vec::new();
        let mut at = lo.clone();
        loop {
            let flat = at.iter().zip(&grid.per_shard).fold(0u64, |index, (&c, &n)| index * n + c);
            met.push(flat as usize); // below grid.count, a usize
            // The next coordinates in C order within [lo, hi], or done.
            let mut d = at.len();
            loop {
                if d == 0 {
                    return met;
                }
                d -= 1;
                if at[d] < hi[d] {
                    at[d] += 1;
                    break;
                }
                at[d] = lo[d];
            }
        }
    }

    /// Read the index of the stored shard at `key` (of `grid`), then fetch the inner chunks
    /// `needed` that are stored, and run `each(i, bytes)` for every needed inner chunk `i`
    /// (`None`: not stored), the stored ones in parallel. Returns whether the shard exists;
    /// when it does not, `each` never runs.
    ///
    /// `one_by_one`: each parallel task fetches its own inner chunk (local files: a thread
    /// then holds one inner chunk's bytes at a time, which the allocator reuses, rather than
    /// every needed inner chunk's at once, fresh pages each time); else all are fetched
    /// together first (remote stores: concurrent requests).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn read_inner(
        &self,
        storage: &dyn ReadableStorageTraits,
        key: &StoreKey,
        grid: &Grid,
        needed: &[usize],
        one_by_one: bool,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
        each: impl Fn(usize, Option<&[u8]>) -> FfiResult<()> + Sync,
    ) -> FfiResult<bool> {
        let index_size = self.index_size(grid)? as u64;
        let index_range = if self.index_at_end {
            ByteRange::Suffix(index_size)
        } else {
            ByteRange::FromStart(0, Some(index_size))
        };
        let Some(index_bytes) = storage.get_partial(key, index_range)? else {
            return Ok(false);
        };
        if index_bytes.len() as u64 != index_size {
            return Err(codec_error(format!("shard {key} is shorter than its index: the shard is truncated")));
        }
        let index = self.decode_index(&index_bytes, grid, options)?;
        // Index entries are hostile: each is checked before anything is fetched for it.
        // With a bounded inner encoding (any compressor zarrs has) no entry may exceed that
        // bound, which needs no request; otherwise the shard's length is asked for.
        let max_inner = self.inner_codecs.max_encoded_size(&self.inner_shape, data_type, fill_value)?;
        let shard_len = match max_inner {
            Some(_) => u64::MAX,
            None => storage.size_key(key)?.unwrap_or(0),
        };
        let mut ranges = Vec::new();
        let mut stored = Vec::new();
        for &i in needed {
            match Self::inner_range(&index, i, shard_len, key)? {
                Some((_, size)) if max_inner.is_some_and(|max| size > max) => {
                    return Err(codec_error(format!(
                        "the index of shard {key} gives inner chunk {i} {size} bytes, more than the {} an inner chunk can take: the shard is corrupt",
                        max_inner.unwrap_or_default()
                    )));
                }
                Some((offset, size)) => {
                    ranges.push(ByteRange::FromStart(offset, Some(size)));
                    stored.push(i);
                }
                None => each(i, None)?,
            }
        }
        if stored.is_empty() {
            return Ok(true);
        }
        if one_by_one {
            return process::try_for_each(stored.len(), |k| {
                let bytes = Self::fetch_inner(storage, key, vec![ranges[k]])?.pop();
                each(stored[k], bytes.as_deref())
            })
            .map(|()| true);
        }
        let fetched = Self::fetch_inner(storage, key, ranges)?;
        process::try_for_each(stored.len(), |k| each(stored[k], Some(&fetched[k])))?;
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

    /// Encode a whole shard from its values. None: every inner chunk is the fill value and
    /// empty chunks are not stored, so the shard should be erased.
    pub fn encode(
        &self,
        shard_shape: &[NonZeroU64],
        shard: &ChunkValues,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
    ) -> FfiResult<Option<Vec<u8>>> {
        let mut out = Vec::new();
        let len = self.encode_into(shard_shape, shard, data_type, fill_value, options, &mut out)?;
        Ok(len.map(|len| {
            out.truncate(len);
            out
        }))
    }

    /// [`ShardLayout::encode`], handing the shard's bytes to `store` (None: erase). They sit
    /// in a buffer this thread keeps for its next shard, so writing a batch of shards
    /// allocates (and, uncompressed, zeroes) no shard buffer after the first.
    #[allow(clippy::too_many_arguments)]
    pub fn encode_with<R>(
        &self,
        shard_shape: &[NonZeroU64],
        shard: &ChunkValues,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
        store: impl FnOnce(Option<&[u8]>) -> FfiResult<R>,
    ) -> FfiResult<R> {
        let mut out = SHARD_OUTPUT.take();
        let result = self
            .encode_into(shard_shape, shard, data_type, fill_value, options, &mut out)
            .and_then(|len| store(len.map(|len| &out[..len])));
        if out.capacity() <= KEEP_SHARD_OUTPUT {
            SHARD_OUTPUT.set(out);
        }
        result
    }

    /// Encode a shard into `out[..len]`, returning `len` (None: nothing to store). `out`
    /// may hold anything on entry; bytes past `len` are left as they are.
    fn encode_into(
        &self,
        shard_shape: &[NonZeroU64],
        shard: &ChunkValues,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
        out: &mut Vec<u8>,
    ) -> FfiResult<Option<usize>> {
        let grid = self.grid(shard_shape)?;
        let inner_len = args::byte_size(&self.inner_shape.iter().map(|d| d.get()).collect::<Vec<_>>(), fill_value.size())?;
        let fixed = self.inner_codecs.fixed_encoded_size(&self.inner_shape, data_type, fill_value)?;
        if fixed == Some(inner_len as u64) {
            return self.encode_in_place(&grid, shard_shape, shard, inner_len, data_type, fill_value, options, out);
        }
        let Some(encoded) = self.encode_each(&grid, shard_shape, shard, inner_len, data_type, fill_value, options)? else {
            return Ok(None);
        };
        self.assemble(&grid, &encoded, options, out).map(Some)
    }

    /// Encode each inner chunk on its own (None: all fill value, not stored), or None if
    /// none is stored.
    #[allow(clippy::too_many_arguments)]
    fn encode_each(
        &self,
        grid: &Grid,
        shard_shape: &[NonZeroU64],
        shard: &ChunkValues,
        inner_len: usize,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
    ) -> FfiResult<Option<Vec<Option<Vec<u8>>>>> {
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
        Ok(Some(encoded))
    }

    /// Copy inner chunk `i` of a shard's values into `inner`.
    fn extract_inner(&self, grid: &Grid, shard_shape: &[NonZeroU64], shard: &ChunkValues, i: usize, inner: &mut [u8], element_size: usize) {
        let shard_shape: Vec<u64> = shard_shape.iter().map(|d| d.get()).collect();
        let inner_shape: Vec<u64> = self.inner_shape.iter().map(|d| d.get()).collect();
        shard.copy_part(&shard_shape, &grid.origin(self, i), inner, &inner_shape, element_size);
    }

    /// Encode a shard whose inner chunks encode to exactly their decoded size (`bytes`
    /// alone, e.g. uncompressed shards) into `out[..len]`, returning `len` (None: nothing
    /// to store). Each inner chunk is copied straight into its place in `out`, and encoded
    /// there when the codecs change its bytes (another byte order), with no buffer per
    /// inner chunk and no copy to assemble the shard. `out` is only grown (zeroed where new),
    /// never cleared: every byte of the shard is written here.
    #[allow(clippy::too_many_arguments)]
    fn encode_in_place(
        &self,
        grid: &Grid,
        shard_shape: &[NonZeroU64],
        shard: &ChunkValues,
        inner_len: usize,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
        out: &mut Vec<u8>,
    ) -> FfiResult<Option<usize>> {
        let index_size = self.index_size(grid)?;
        let data_start = if self.index_at_end { 0 } else { index_size };
        let data_len = inner_len
            .checked_mul(grid.count)
            .and_then(|n| n.checked_add(index_size))
            .ok_or_else(|| FfiError::invalid("the shard is too large to encode in memory"))?;
        if out.len() < data_len {
            out.resize(data_len, 0);
        }
        let out = &mut out[..data_len];
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
        let at = if self.index_at_end { end } else { 0 };
        out[at..at + index_size].copy_from_slice(&index);
        Ok(Some(if self.index_at_end { end + index_size } else { end }))
    }

    /// The encoded shard index of `entries` (offset, size), `MISSING` for chunks not stored:
    /// exactly [`ShardLayout::index_size`] bytes.
    fn encode_index(&self, grid: &Grid, entries: &[(u64, u64)], options: &CodecOptions) -> FfiResult<Vec<u8>> {
        let mut index = Vec::with_capacity(grid.count * 16);
        for (o, n) in entries {
            index.extend_from_slice(&o.to_ne_bytes());
            index.extend_from_slice(&n.to_ne_bytes());
        }
        let index = self
            .index_codecs
            .encode(ArrayBytes::new_flen(index), &Self::index_shape(grid), &self.index_type, &self.index_fill, options)?
            .into_owned();
        let expected = self.index_size(grid)?;
        if index.len() != expected {
            return Err(codec_error(format!("the shard index encoded to {} bytes; its codecs produce exactly {expected}", index.len())));
        }
        Ok(index)
    }

    /// The bytes of a shard from its encoded inner chunks (None: not stored), written to
    /// `out[..len]` (its old contents dropped), returning `len`: the inner chunks in the
    /// write order, and the encoded index before or after them.
    fn assemble(&self, grid: &Grid, encoded: &[Option<Vec<u8>>], options: &CodecOptions, out: &mut Vec<u8>) -> FfiResult<usize> {
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
        out.clear();
        out.reserve(data_len + index.len());
        if !self.index_at_end {
            out.extend_from_slice(&index);
        }
        for inner in order.iter().filter_map(|&i| encoded[i].as_ref()) {
            out.extend_from_slice(inner);
        }
        if self.index_at_end {
            out.extend_from_slice(&index);
        }
        Ok(out.len())
    }
}

/// The largest shard buffer a thread keeps for its next shard: enough for a 256^3 shard of
/// 2-byte elements; a thread that once wrote a larger shard does not hold its memory.
const KEEP_SHARD_OUTPUT: usize = 40 << 20;

thread_local! {
    /// This thread's buffer for an encoded shard on its way to storage (taken out while in
    /// use, so a nested use on the same thread gets a fresh one instead of sharing it).
    static SHARD_OUTPUT: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
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

    /// Sharding nested in sharding: shards of 8x12 in inner shards of 4x6 in inner chunks
    /// of 2x3, every index `bytes` alone (so a test can forge entries in place).
    fn nested_layout() -> ShardLayout {
        let bytes = serde_json::json!([{"name": "bytes", "configuration": {"endian": "little"}}]);
        let metadata = serde_json::json!([{"name": "sharding_indexed", "configuration": {
            "chunk_shape": [4, 6],
            "codecs": [{"name": "sharding_indexed", "configuration": {
                "chunk_shape": [2, 3], "codecs": bytes, "index_codecs": bytes, "index_location": "end"}}],
            "index_codecs": bytes,
            "index_location": "start",
        }}]);
        ShardLayout::from_codecs_metadata(&metadata).unwrap()
    }

    /// Entry `i` (offset, size) of a `bytes`-only index of `count` entries in `shard`.
    fn entry_at(shard: &mut [u8], index_at_end: bool, count: usize, i: usize) -> &mut [u8] {
        let start = if index_at_end { shard.len() - 16 * count } else { 0 };
        &mut shard[start + 16 * i..start + 16 * i + 16]
    }

    fn set_entry(shard: &mut [u8], index_at_end: bool, count: usize, i: usize, offset: u64, size: u64) {
        let entry = entry_at(shard, index_at_end, count, i);
        entry[..8].copy_from_slice(&offset.to_le_bytes());
        entry[8..].copy_from_slice(&size.to_le_bytes());
    }

    fn get_entry(shard: &mut [u8], index_at_end: bool, count: usize, i: usize) -> (u64, u64) {
        let entry = entry_at(shard, index_at_end, count, i);
        (u64::from_le_bytes(entry[..8].try_into().unwrap()), u64::from_le_bytes(entry[8..].try_into().unwrap()))
    }

    #[test]
    fn inner_shards_are_read_here_with_their_index_checked() {
        let layout = nested_layout();
        let nested = layout.nested.as_deref().expect("the inner chunks are shards");
        assert!(nested.nested.is_none());
        let shape: Vec<NonZeroU64> = [8u64, 12].iter().map(|&d| NonZeroU64::new(d).unwrap()).collect();
        let (data_type, fill_value, options) = (zarrs::array::data_type::uint16(), FillValue::from(0u16), CodecOptions::default());
        let values: Vec<u16> = (0..8 * 12).map(|i| i as u16 + 1).collect();
        let shard: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
        // Written by zarrs' sharding codec inside ours.
        let encoded = layout.encode(&shape, &ChunkValues::Bytes(Cow::Borrowed(&shard)), &data_type, &fill_value, &options).unwrap().unwrap();
        let key = StoreKey::new("c/0/0").unwrap();
        let decode = |bytes: &[u8], subset: Option<([u64; 2], [u64; 2])>| -> FfiResult<Vec<u8>> {
            let mut job = ChunkJob::whole(key.clone(), shape.clone());
            if let Some((start, subset_shape)) = subset {
                job.subset = ArraySubset::new_with_start_shape(start.to_vec(), subset_shape.to_vec()).unwrap();
            }
            let buffer_shape = job.subset.shape().to_vec();
            let mut out = vec![0xAAu8; args::byte_size(&buffer_shape, 2).unwrap()];
            let destination = Destination::new(&mut out, &buffer_shape, 2, "out").unwrap();
            layout.decode_into(&job, bytes, &destination, &data_type, &fill_value, &options)?;
            Ok(out)
        };
        assert_eq!(decode(&encoded, None).unwrap(), shard);
        // A part spanning four inner shards, each read in part.
        let part = decode(&encoded, Some(([1, 2], [5, 7]))).unwrap();
        let expected: Vec<u8> = (1..6).flat_map(|r| values[r * 12 + 2..r * 12 + 9].to_vec()).flat_map(|v| v.to_ne_bytes()).collect();
        assert_eq!(part, expected);

        // Inner shard 0 (the first 4x6) sits where the outer index says.
        let outer_count = layout.grid(&shape).unwrap().count;
        let inner_count = nested.grid(&layout.inner_shape).unwrap().count;
        assert_eq!((outer_count, inner_count), (4, 4));
        let (at, len) = get_entry(&mut encoded.clone(), false, outer_count, 0);
        let (at, len) = (at as usize, len as usize);
        let forged = |change: &dyn Fn(&mut Vec<u8>)| -> Vec<u8> {
            let mut inner = encoded[at..at + len].to_vec();
            change(&mut inner);
            // The inner shard moved to the end, the outer index pointing at it.
            let mut out = encoded.clone();
            let end = out.len() as u64;
            out.extend_from_slice(&inner);
            set_entry(&mut out, false, outer_count, 0, end, inner.len() as u64);
            out
        };
        let error = |bytes: &[u8], subset: Option<([u64; 2], [u64; 2])>| decode(bytes, subset).unwrap_err();
        let prefix = "the index of inner shard 0 of shard c/0/0 references bytes";

        // An entry past the inner shard's end, of 2^45 bytes: refused before anything is
        // sliced or allocated, on full and partial reads (every entry of the shard).
        let past = forged(&|inner: &mut Vec<u8>| {
            let n = inner.len() as u64;
            set_entry(inner, true, inner_count, 0, n + 100, 1 << 45);
        });
        for subset in [None, Some(([0, 0], [1, 1])), Some(([2, 3], [2, 3]))] {
            let err = error(&past, subset);
            assert_eq!(err.code, ZarrsResult::ZARRS_ERROR_CODEC);
            assert!(err.message.starts_with(prefix), "{}", err.message);
            assert!(err.message.contains(&format!("+35184372088832 outside its {len} bytes")), "{}", err.message);
        }
        // Offset + size overflowing u64.
        let wraps = forged(&|inner: &mut Vec<u8>| set_entry(inner, true, inner_count, 3, u64::MAX - 1, 4));
        assert!(error(&wraps, None).message.contains(&format!("{prefix} {}+4 outside", u64::MAX - 1)));
        // An entry ending one byte past the inner shard.
        let one_past = forged(&|inner: &mut Vec<u8>| {
            let n = inner.len() as u64;
            let (_, size) = get_entry(inner, true, inner_count, 1);
            set_entry(inner, true, inner_count, 1, n - size + 1, size);
        });
        assert!(error(&one_past, None).message.starts_with(prefix));
        // A wrong-size inner chunk of an inner shard fails as a codec error.
        let short = forged(&|inner: &mut Vec<u8>| {
            let (offset, size) = get_entry(inner, true, inner_count, 2);
            set_entry(inner, true, inner_count, 2, offset, size - 2);
        });
        assert_eq!(error(&short, None).code, ZarrsResult::ZARRS_ERROR_CODEC);
        // An inner shard shorter than its own index.
        let truncated = forged(&|inner: &mut Vec<u8>| inner.truncate(16 * inner_count - 1));
        assert_eq!(
            error(&truncated, None).message,
            format!("inner shard 0 of shard c/0/0 has {} bytes, fewer than its {}-byte index: the shard is truncated", 16 * inner_count - 1, 16 * inner_count)
        );
        // Missing entries in the inner shard read as the fill value.
        let missing = forged(&|inner: &mut Vec<u8>| set_entry(inner, true, inner_count, 0, MISSING, MISSING));
        let decoded = decode(&missing, None).unwrap();
        let mut expected = shard.clone();
        for r in 0..2 {
            expected[r * 24..r * 24 + 6].fill(0);
        }
        assert_eq!(decoded, expected);
        // A part that does not meet inner shard 0 never reads it.
        assert!(decode(&past, Some(([4, 6], [4, 6]))).is_ok());
    }

    #[test]
    fn the_inner_chunks_a_subset_meets_are_those_it_overlaps() {
        let metadata = serde_json::json!([{"name": "sharding_indexed", "configuration": {
            "chunk_shape": [4, 3, 5],
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
            "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        }}]);
        let layout = ShardLayout::from_codecs_metadata(&metadata).unwrap();
        let shape: Vec<NonZeroU64> = [8u64, 9, 10].iter().map(|&d| NonZeroU64::new(d).unwrap()).collect();
        let grid = layout.grid(&shape).unwrap();
        let key = StoreKey::new("c/0/0/0").unwrap();
        for (start, extent) in [
            ([0, 0, 0], [8, 9, 10]), ([3, 2, 4], [2, 2, 2]), ([4, 3, 5], [1, 1, 1]), ([0, 0, 0], [1, 1, 1]),
            ([7, 8, 9], [1, 1, 1]), ([1, 0, 3], [6, 9, 1]), ([2, 5, 0], [0, 2, 3]),
        ] {
            let mut job = ChunkJob::whole(key.clone(), shape.clone());
            job.subset = ArraySubset::new_with_start_shape(start.to_vec(), extent.to_vec()).unwrap();
            let tried: Vec<usize> = (0..grid.count).filter(|&i| layout.overlap(&grid, &job, i).is_some()).collect();
            assert_eq!(layout.met(&grid, &job), tried, "{start:?} {extent:?}");
        }
    }

    #[test]
    fn a_sharding_codec_after_another_inner_codec_is_not_read_here() {
        let bytes = serde_json::json!({"name": "bytes", "configuration": {"endian": "little"}});
        let inner = serde_json::json!({"name": "sharding_indexed", "configuration": {
            "chunk_shape": [2], "codecs": [bytes], "index_codecs": [bytes], "index_location": "end"}});
        let outer = |codecs: serde_json::Value| serde_json::json!([{"name": "sharding_indexed", "configuration": {
            "chunk_shape": [4], "codecs": codecs, "index_codecs": [bytes], "index_location": "end"}}]);
        let three = ShardLayout::from_codecs_metadata(&outer(serde_json::json!([outer(serde_json::json!([inner]))[0]]))).unwrap();
        assert!(three.nested.as_ref().is_some_and(|n| n.nested.is_some()));
        let transposed = serde_json::json!([{"name": "transpose", "configuration": {"order": [0]}}, inner]);
        assert!(ShardLayout::from_codecs_metadata(&outer(transposed)).is_none());
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
                            let data = ChunkValues::Bytes(Cow::Borrowed(data));
                            let in_place = layout.encode(&shape, &data, &data_type, &fill_value, &options).unwrap();
                            let each = layout.encode_each(&grid, &shape, &data, 48, &data_type, &fill_value, &options).unwrap();
                            let each = each.map(|encoded| {
                                let mut out = vec![7u8; 3];
                                let len = layout.assemble(&grid, &encoded, &options, &mut out).unwrap();
                                out.truncate(len);
                                out
                            });
                            assert_eq!(in_place, each, "{endian} endian, index at {location}, order {order}");
                            // Into a buffer holding another shard's bytes: the same bytes.
                            let mut reused = vec![0xa5u8; 5000];
                            let len = layout.encode_into(&shape, &data, &data_type, &fill_value, &options, &mut reused).unwrap();
                            assert_eq!(len.map(|len| reused[..len].to_vec()), each, "reused buffer: {endian} endian, index at {location}, order {order}");
                        }
                    }
                }
                // And it reads back.
                let values = ChunkValues::Bytes(Cow::Borrowed(&shard));
                let encoded = layout.encode(&shape, &values, &data_type, &fill_value, &CodecOptions::default()).unwrap().unwrap();
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

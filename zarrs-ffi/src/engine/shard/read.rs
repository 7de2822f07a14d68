//! Reading shards: the part of a shard a job needs, from its bytes in memory
//! ([`ShardLayout::decode_into`]) or from storage, fetching only the index and the inner
//! chunks the job meets ([`ShardLayout::read_partial`], [`ShardLayout::read_inner`], also
//! for gathers); one inner chunk decoded and placed ([`ShardLayout::place_inner`],
//! [`ShardLayout::decode_inner`], also for read plans and gathers); inner shards of nested
//! sharding, read recursively; whole shards of variable-length data types.
//!
//! Every inner chunk decodes through the bounded inner chain (`bounds.rs`), never through
//! zarrs' sharding codec, and its decoded size is checked. This module never parses an
//! index entry (`index.rs` hands it checked ranges) and never encodes; it does not know
//! handles, routes or which store it reads (local files and remote stores differ only in
//! `one_by_one`).

use std::borrow::Cow;
use std::num::NonZeroU64;

use rayon::iter::{IntoParallelIterator, ParallelIterator};
use zarrs::array::{ArraySubset, CodecError, CodecOptions, DataType, FillValue};
use zarrs::storage::byte_range::ByteRange;
use zarrs::storage::{Bytes, ReadableStorageTraits, StoreKey};

use super::{codec_error, Grid, ShardLayout, ShardName};
use crate::args;
use crate::bounds::{Needed, DEFAULT_MAX_VARIABLE_CHUNK_BYTES};
use crate::error::{FfiError, FfiResult, ZarrsResult};
use crate::layout::{ChunkJob, Destination};
use crate::process;

impl ShardLayout {
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
            // An inner shard: its own index and only the inner chunks the overlap needs.
            let inner_shard = self.inner_shard_bytes(bytes, data_type, fill_value, options)?;
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

    /// The bytes of a stored inner shard (nested sharding, fixed-size elements): its
    /// bytes-to-bytes codecs undone within the bounds of the shard they yield, ready for its
    /// own index to be read.
    fn inner_shard_bytes<'b>(&self, bytes: &'b [u8], data_type: &DataType, fill_value: &FillValue, options: &CodecOptions) -> FfiResult<Cow<'b, [u8]>> {
        // Fixed-size chunks are bounded by their metadata, not by this cap.
        let shard = self.inner_codecs.decode_bytes(Cow::Borrowed(bytes), &self.inner_shape, data_type, fill_value, DEFAULT_MAX_VARIABLE_CHUNK_BYTES, options)?;
        Ok(shard)
    }

    /// Decode stored inner chunk `i` of the shard at `key` whole (within bounds), checking
    /// that it holds exactly an inner chunk's bytes. An inner shard (nested sharding) is read
    /// by this reader, not zarrs' sharding codec. `needed`: the bytes a gather reads of the
    /// decoded inner chunk, where only those need to be right; codecs that can decode less
    /// (a zstd prefix, blosc blocks: [`crate::bounds::BoundedChain::decode_needed`]) then may, and the
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
        // An inner shard: its own index and every inner chunk, each bounded.
        let inner_shard = self.inner_shard_bytes(bytes, data_type, fill_value, options)?;
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
}

#[cfg(test)]
mod tests {
    use super::super::index::MISSING;
    use super::*;
    use crate::layout::ChunkValues;

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
}

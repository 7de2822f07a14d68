//! Reading shards: the part of a shard a job needs, from its bytes in memory
//! ([`ShardLayout::decode_into`]) or from storage, fetching only the index and the inner
//! chunks the job meets ([`ShardLayout::read_partial`], [`ShardLayout::read_inner`], also
//! for gathers); one inner chunk decoded and placed ([`ShardLayout::place_inner`],
//! [`ShardLayout::decode_inner`], also for read plans and gathers); inner shards of nested
//! sharding, read recursively from memory, and from storage level by level
//! ([`ShardLayout::read_levels`]: each inner shard's index, then only the innermost chunks
//! needed, as byte ranges of the entries above them); whole shards of variable-length data
//! types.
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

use super::index::ShardBytes;
use super::{codec_error, Grid, ShardLayout, ShardName};
use crate::args;
use crate::bounds::{Needed, DEFAULT_MAX_VARIABLE_CHUNK_BYTES};
use crate::error::{FfiError, FfiResult, ZarrsResult};
use crate::layout::{ChunkJob, Destination};
use crate::memory;
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
        let mut whole = memory::zeroed(args::byte_size(&inner_shape, fill_value.size())?, format_args!("inner shard {i} of {name}"))?;
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
        let (index, layout) = self.index_of(shard, &grid, name, options)?;
        let inner_elements = usize::try_from(args::num_elements(&self.inner_shape.iter().map(|d| d.get()).collect::<Vec<_>>())?)
            .map_err(|_| FfiError::invalid("inner chunk has too many elements"))?;
        let inner: Vec<(Vec<u8>, Vec<usize>)> = (0..grid.count)
            .into_par_iter()
            .map(|i| self.decode_inner_variable(&index, &layout, i, shard, name, inner_elements, data_type, fill_value, cap, options))
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
        layout: &ShardBytes,
        i: usize,
        shard: &[u8],
        name: &ShardName<'_>,
        inner_elements: usize,
        data_type: &DataType,
        fill_value: &FillValue,
        cap: u64,
        options: &CodecOptions,
    ) -> FfiResult<(Vec<u8>, Vec<usize>)> {
        let Some((offset, size)) = Self::entry(index, i, layout, name)? else {
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
        let what = "a variable-length shard";
        let mut data = memory::with_capacity(usize::try_from(total).map_err(|_| memory::out_of_memory(usize::MAX, what))?, what)?;
        let mut offsets = memory::with_capacity(elements + 1, what)?;
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
        let (index, layout) = self.index_of(shard, &grid, name, options)?;
        // Offsets count from the start of the shard, index included when it comes first.
        // Every entry is checked, also those of inner chunks the job does not need.
        process::try_for_each(grid.count, |i| {
            let bytes = Self::entry(&index, i, &layout, name)?
                .map(|(offset, size)| &shard[offset as usize..(offset + size) as usize]);
            self.place_inner_named(&grid, job, name, i, bytes, destination, data_type, fill_value, options)
        })
    }

    /// Read the job's subset of a stored shard, fetching only the index and the inner chunks
    /// it needs: for sharding nested in sharding, at every level ([`Self::read_levels`]).
    /// Returns whether the shard exists.
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
        let found = if self.reads_inner_shards_in_part() {
            self.read_levels(storage, job, &grid, &needed, destination, data_type, fill_value, options)?
        } else {
            self.read_inner(storage, &job.key, &grid, &needed, false, data_type, fill_value, options, |i, bytes| {
                self.place_inner(&grid, job, i, bytes, destination, data_type, fill_value, options)
            })?
        };
        if !found {
            destination.fill_at(&job.buffer_start, job.subset.shape(), fill_value.as_ne_bytes(), &job.key)?;
        }
        Ok(found)
    }

    /// Whether this shard's inner chunks are shards that a read can take in part: sharding
    /// nested in sharding with no bytes-to-bytes codec around the inner shards. (Compressed
    /// as a whole, an inner shard must be fetched and decompressed whole before its index can
    /// be read.)
    fn reads_inner_shards_in_part(&self) -> bool {
        self.nested.is_some() && self.inner_codecs.chain().bytes_to_bytes_codecs().is_empty()
    }

    /// [`Self::read_partial`] of sharding nested in sharding whose inner shards can be read
    /// in part: level by level, the indexes of the inner shards the job meets are fetched as
    /// byte ranges of the outer shard's entries, then only the innermost chunks the job needs
    /// (or, under bytes-to-bytes codecs at a deeper level, those inner shards whole), which
    /// are decoded into place in parallel. Each level is one batched request
    /// ([`Self::fetch_inner`]), as [`Self::read_inner`] fetches inner chunks; every entry is
    /// checked against the bytes its outer entry gives before anything is fetched by it.
    #[allow(clippy::too_many_arguments)]
    fn read_levels(
        &self,
        storage: &dyn ReadableStorageTraits,
        job: &ChunkJob,
        grid: &Grid,
        needed: &[usize],
        destination: &Destination,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
    ) -> FfiResult<bool> {
        let key = &job.key;
        let Some((index, bytes, max_inner)) = self.stored_index(storage, key, grid, data_type, fill_value, options)? else {
            return Ok(false);
        };
        let place_missing = |layout: &ShardLayout, grid: &Grid, part: &Part, name: &ShardName<'_>, i: usize| {
            layout.place_inner_named(grid, &part.job, name, i, None, destination, data_type, fill_value, options)
        };
        // The shards of one level (`parts`, all of `layout` over `grid`) and their stored inner
        // chunks the job needs: (part, inner chunk, offset in the value at `key`, size).
        let (mut layout, mut grid) = (self, grid.clone());
        let mut parts = vec![Part { job: job.clone(), path: Vec::new() }];
        let mut located: Vec<(usize, usize, u64, u64)> = self
            .locate(&index, needed, &bytes, 0, &ShardName::key(key), max_inner, |i| place_missing(self, &grid, &parts[0], &ShardName::key(key), i))?
            .into_iter()
            .map(|(i, offset, size)| (0, i, offset, size))
            .collect();
        loop {
            if located.is_empty() {
                return Ok(true); // nothing stored that the job needs: no request
            }
            let Some(nested) = layout.nested.as_deref().filter(|_| layout.reads_inner_shards_in_part()) else {
                // The last level: fetch what the job needs and decode it into place.
                let ranges = located.iter().map(|&(_, _, offset, size)| ByteRange::FromStart(offset, Some(size))).collect();
                let fetched = Self::fetch_inner(storage, key, ranges)?;
                process::try_for_each(located.len(), |k| {
                    let (p, i, _, _) = located[k];
                    let part = &parts[p];
                    named(key, &part.path, |name| {
                        layout.place_inner_named(&grid, &part.job, name, i, Some(&fetched[k]), destination, data_type, fill_value, options)
                    })
                })?;
                return Ok(true);
            };
            // The inner chunks located are inner shards: the part of each the job needs, and
            // where its index sits in the bytes its entry gives.
            let inner_grid = nested.grid(&layout.inner_shape)?;
            let max_nested = nested.inner_codecs.max_encoded_size(&nested.inner_shape, data_type, fill_value)?;
            let mut inner_parts = Vec::with_capacity(located.len());
            for &(p, i, offset, size) in &located {
                let Some((inner_start, buffer_start, shape)) = layout.overlap(&grid, &parts[p].job, i) else {
                    continue; // met() lists only inner chunks the job overlaps
                };
                let mut path = parts[p].path.clone();
                path.push(i);
                let bytes = named(key, &path, |name| nested.shard_bytes(&inner_grid, Some(size), name))?;
                let job = ChunkJob {
                    key: key.clone(),
                    chunk_shape: layout.inner_shape.clone(),
                    subset: ArraySubset::new_with_start_shape(inner_start, shape)?,
                    buffer_start,
                };
                inner_parts.push((Part { job, path }, bytes, offset));
            }
            let requests = inner_parts.iter().map(|(_, bytes, offset)| bytes.index_request(*offset)).collect();
            let indexes = Self::fetch_inner(storage, key, requests)?;
            let mut next = Vec::new();
            for (p, ((part, bytes, offset), index_bytes)) in inner_parts.iter().zip(&indexes).enumerate() {
                named(key, &part.path, |name| {
                    if index_bytes.len() as u64 != bytes.index_size() {
                        return Err(codec_error(format!(
                            "the index of {name} came back with {} bytes, expected {}: the shard is truncated",
                            index_bytes.len(),
                            bytes.index_size()
                        )));
                    }
                    let index = nested.decode_index(index_bytes, &inner_grid, options)?;
                    let needed = nested.met(&inner_grid, &part.job);
                    let stored = nested.locate(&index, &needed, bytes, *offset, name, max_nested, |i| place_missing(nested, &inner_grid, part, name, i))?;
                    next.extend(stored.into_iter().map(|(i, offset, size)| (p, i, offset, size)));
                    Ok(())
                })?;
            }
            (layout, grid, located) = (nested, inner_grid, next);
            parts = inner_parts.into_iter().map(|(part, _, _)| part).collect();
        }
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
        let Some((index, bytes, max_inner)) = self.stored_index(storage, key, grid, data_type, fill_value, options)? else {
            return Ok(false);
        };
        let (stored, ranges): (Vec<usize>, Vec<ByteRange>) = self
            .locate(&index, needed, &bytes, 0, &ShardName::key(key), max_inner, |i| each(i, None))?
            .into_iter()
            .map(|(i, offset, size)| (i, ByteRange::FromStart(offset, Some(size))))
            .unzip();
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

    /// The decoded index of the shard stored at `key` (None: not stored), fetched alone; how
    /// its bytes divide; and the most an inner chunk can encode to (None: unbounded). With a
    /// bounded inner encoding (any compressor zarrs has), entries are checked against that
    /// bound, which needs no request; otherwise the shard's length is asked for.
    #[allow(clippy::type_complexity)]
    fn stored_index(
        &self,
        storage: &dyn ReadableStorageTraits,
        key: &StoreKey,
        grid: &Grid,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
    ) -> FfiResult<Option<(Vec<u64>, ShardBytes, Option<u64>)>> {
        let bytes = self.value_bytes(grid)?;
        let Some(index_bytes) = storage.get_partial(key, bytes.index_request(0))? else {
            return Ok(None);
        };
        if index_bytes.len() as u64 != bytes.index_size() {
            return Err(codec_error(format!("shard {key} is shorter than its index: the shard is truncated")));
        }
        let index = self.decode_index(&index_bytes, grid, options)?;
        let max_inner = self.inner_codecs.max_encoded_size(&self.inner_shape, data_type, fill_value)?;
        let bytes = match max_inner {
            Some(_) => bytes,
            None => self.shard_bytes(grid, Some(storage.size_key(key)?.unwrap_or(0)), &ShardName::key(key))?,
        };
        Ok(Some((index, bytes, max_inner)))
    }

    /// The stored inner chunks among `needed` of the shard `name` from its decoded `index`:
    /// (inner chunk, offset in the value at the shard's key, size), the shard starting at
    /// `at` in that value and laid out as `bytes` says. `missing(i)` runs for each needed
    /// inner chunk not stored. Entries are hostile: each is checked before anything is
    /// fetched by it, within the shard's bytes outside its index ([`Self::entry`]) and no
    /// larger than an inner chunk can encode to (`max_inner`, if bounded).
    #[allow(clippy::too_many_arguments)]
    fn locate(
        &self,
        index: &[u64],
        needed: &[usize],
        bytes: &ShardBytes,
        at: u64,
        name: &ShardName<'_>,
        max_inner: Option<u64>,
        mut missing: impl FnMut(usize) -> FfiResult<()>,
    ) -> FfiResult<Vec<(usize, u64, u64)>> {
        let mut stored = Vec::with_capacity(needed.len());
        for &i in needed {
            match Self::entry(index, i, bytes, name)? {
                Some((_, size)) if max_inner.is_some_and(|max| size > max) => {
                    return Err(codec_error(format!(
                        "the index of {name} gives inner chunk {i} {size} bytes, more than the {} an inner chunk can take: the shard is corrupt",
                        max_inner.unwrap_or_default()
                    )));
                }
                // `at + offset + size` is within `at + len`, an outer entry's checked end
                // (or `at` is 0): no overflow.
                Some((offset, size)) => stored.push((i, at + offset, size)),
                None => missing(i)?,
            }
        }
        Ok(stored)
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

/// One shard of a level of nested sharding read in part ([`ShardLayout::read_levels`]): the
/// part of it the read needs, and where it sits (the inner chunk indices leading to it from
/// the outer shard; empty for the outer shard).
struct Part {
    job: ChunkJob,
    path: Vec<usize>,
}

/// Run `f` with the name of the shard at `path` under `name` ([`Part::path`]): "inner shard
/// 3 of inner shard 5 of shard c/0/0".
fn named<R>(key: &StoreKey, path: &[usize], f: impl FnOnce(&ShardName<'_>) -> R) -> R {
    fn within<R>(name: &ShardName<'_>, path: &[usize], f: impl FnOnce(&ShardName<'_>) -> R) -> R {
        match path.split_first() {
            None => f(name),
            Some((&i, rest)) => within(&name.inner(i), rest, f),
        }
    }
    within(&ShardName::key(key), path, f)
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

    /// One stored value, every request to it recorded (one entry per call, its ranges).
    struct Recording {
        value: Vec<u8>,
        calls: std::sync::Mutex<Vec<Vec<ByteRange>>>,
    }

    impl Recording {
        fn new(value: Vec<u8>) -> Self {
            Self { value, calls: std::sync::Mutex::new(Vec::new()) }
        }

        fn take(&self) -> Vec<Vec<ByteRange>> {
            std::mem::take(&mut self.calls.lock().unwrap())
        }
    }

    impl ReadableStorageTraits for Recording {
        fn get_partial_many<'a>(
            &'a self,
            _key: &StoreKey,
            byte_ranges: zarrs::storage::byte_range::ByteRangeIterator<'a>,
        ) -> Result<zarrs::storage::MaybeBytesIterator<'a>, zarrs::storage::StorageError> {
            let ranges: Vec<ByteRange> = byte_ranges.collect();
            self.calls.lock().unwrap().push(ranges.clone());
            let len = self.value.len() as u64;
            let values: Vec<Result<Bytes, zarrs::storage::StorageError>> = ranges
                .into_iter()
                .map(|range| {
                    let (start, end) = match range {
                        ByteRange::FromStart(offset, Some(length)) => (offset, offset.saturating_add(length)),
                        ByteRange::FromStart(offset, None) => (offset, len),
                        ByteRange::Suffix(length) => (len.saturating_sub(length), len),
                    };
                    if start > end || end > len {
                        return Err(zarrs::storage::byte_range::InvalidByteRangeError::new(range, len).into());
                    }
                    Ok(Bytes::copy_from_slice(&self.value[start as usize..end as usize]))
                })
                .collect();
            Ok(Some(Box::new(values.into_iter())))
        }

        fn size_key(&self, _key: &StoreKey) -> Result<Option<u64>, zarrs::storage::StorageError> {
            Ok(Some(self.value.len() as u64))
        }

        fn supports_get_partial(&self) -> bool {
            true
        }
    }

    /// A shard of [`nested_layout`] (8x12 uint16, values 1..=96, fill value 0) as zarrs'
    /// sharding codec encodes it inside ours, and its layout.
    fn nested_shard() -> (ShardLayout, Vec<u8>, Vec<u16>) {
        let layout = nested_layout();
        let shape: Vec<NonZeroU64> = [8u64, 12].iter().map(|&d| NonZeroU64::new(d).unwrap()).collect();
        let values: Vec<u16> = (0..8 * 12).map(|i| i as u16 + 1).collect();
        let shard: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let (data_type, fill_value) = (zarrs::array::data_type::uint16(), FillValue::from(0u16));
        let encoded = layout.encode(&shape, &ChunkValues::Bytes(Cow::Borrowed(&shard)), &data_type, &fill_value, &CodecOptions::default()).unwrap().unwrap();
        (layout, encoded, values)
    }

    /// The `shape` box at `start` of the 8x12 nested shard `stored` at c/0/0, read in part
    /// from storage (`read_partial`) and decoded from its bytes in memory (`decode_into`).
    #[allow(clippy::type_complexity)]
    fn both_reads(layout: &ShardLayout, stored: &Recording, start: [u64; 2], shape: [u64; 2]) -> (FfiResult<Vec<u8>>, FfiResult<Vec<u8>>) {
        let shard_shape: Vec<NonZeroU64> = [8u64, 12].iter().map(|&d| NonZeroU64::new(d).unwrap()).collect();
        let (data_type, fill_value, options) = (zarrs::array::data_type::uint16(), FillValue::from(0u16), CodecOptions::default());
        let mut job = ChunkJob::whole(StoreKey::new("c/0/0").unwrap(), shard_shape);
        job.subset = ArraySubset::new_with_start_shape(start.to_vec(), shape.to_vec()).unwrap();
        let read = |partial: bool| -> FfiResult<Vec<u8>> {
            let mut out = vec![0xAAu8; args::byte_size(&shape, 2).unwrap()];
            let destination = Destination::new(&mut out, &shape, 2, "out").unwrap();
            if partial {
                assert!(layout.read_partial(stored, &job, &destination, &data_type, &fill_value, &options)?);
            } else {
                layout.decode_into(&job, &stored.value, &destination, &data_type, &fill_value, &options)?;
            }
            Ok(out)
        };
        (read(true), read(false))
    }

    fn expected_box(values: &[u16], start: [u64; 2], shape: [u64; 2]) -> Vec<u8> {
        let (r0, c0) = (start[0] as usize, start[1] as usize);
        (r0..r0 + shape[0] as usize)
            .flat_map(|r| values[r * 12 + c0..r * 12 + c0 + shape[1] as usize].to_vec())
            .flat_map(|v| v.to_ne_bytes())
            .collect()
    }

    #[test]
    fn a_part_of_a_nested_shard_fetches_inner_indexes_and_inner_chunks_as_sub_ranges() {
        let (layout, encoded, values) = nested_shard();
        // Outer index at the start: 4 inner shards of 4x6, each 112 bytes (4 inner chunks of
        // 2x3 uint16, 12 bytes each, then its 64-byte index).
        let (outer_count, inner_count) = (4, 4);
        let stored = Recording::new(encoded.clone());
        let mut shard = encoded.clone();
        let (at, len) = get_entry(&mut shard, false, outer_count, 0);
        assert_eq!(len, 112);
        let inner = &mut shard[at as usize..(at + len) as usize];
        let (offset, size) = get_entry(inner, true, inner_count, 0);
        assert_eq!(size, 12);

        // One element of inner chunk 0 of inner shard 0: the outer index, the inner shard's
        // index (its last 64 bytes), then that inner chunk, each a sub-range of the entry
        // above it; nothing else.
        let (partial, whole) = both_reads(&layout, &stored, [1, 2], [1, 1]);
        assert_eq!(partial.unwrap(), expected_box(&values, [1, 2], [1, 1]));
        assert_eq!(whole.unwrap(), expected_box(&values, [1, 2], [1, 1]));
        assert_eq!(
            stored.take(),
            [
                vec![ByteRange::FromStart(0, Some(64))],
                vec![ByteRange::FromStart(at + len - 64, Some(64))],
                vec![ByteRange::FromStart(at + offset, Some(12))],
            ]
        );

        // A box across the four inner shards, meeting 4 + 2 + 2 + 1 of their inner chunks:
        // three requests (one per level), fewer bytes than the inner shards hold.
        let (partial, _) = both_reads(&layout, &stored, [1, 2], [5, 7]);
        assert_eq!(partial.unwrap(), expected_box(&values, [1, 2], [5, 7]));
        let calls = stored.take();
        let sizes: Vec<Vec<u64>> = calls.iter().map(|call| call.iter().map(|r| r.length(u64::MAX)).collect()).collect();
        assert_eq!(sizes, [vec![64], vec![64; 4], vec![12; 9]]);
        assert!(sizes.iter().flatten().sum::<u64>() < 4 * 112);
        // Every inner chunk range lies inside its inner shard's entry, outside its index.
        let entries: Vec<(u64, u64)> = (0..outer_count).map(|i| get_entry(&mut shard, false, outer_count, i)).collect();
        for range in &calls[2] {
            let (start, end) = (range.start(u64::MAX), range.end(u64::MAX));
            assert!(entries.iter().any(|&(at, len)| start >= at && end <= at + len - 64), "{range:?} {entries:?}");
        }

        // Both index locations: the outer index at the end, the inner ones at the start.
        let bytes = serde_json::json!([{"name": "bytes", "configuration": {"endian": "little"}}]);
        let flipped = ShardLayout::from_codecs_metadata(&serde_json::json!([{"name": "sharding_indexed", "configuration": {
            "chunk_shape": [4, 6],
            "codecs": [{"name": "sharding_indexed", "configuration": {
                "chunk_shape": [2, 3], "codecs": bytes, "index_codecs": bytes, "index_location": "start"}}],
            "index_codecs": bytes,
            "index_location": "end",
        }}]))
        .unwrap();
        let shape: Vec<NonZeroU64> = [8u64, 12].iter().map(|&d| NonZeroU64::new(d).unwrap()).collect();
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let (data_type, fill_value) = (zarrs::array::data_type::uint16(), FillValue::from(0u16));
        let encoded = flipped.encode(&shape, &ChunkValues::Bytes(Cow::Borrowed(&raw)), &data_type, &fill_value, &CodecOptions::default()).unwrap().unwrap();
        let stored = Recording::new(encoded.clone());
        let mut shard = encoded.clone();
        let (at, _) = get_entry(&mut shard, true, outer_count, 3);
        let inner = &mut shard[at as usize..at as usize + 112];
        let (offset, _) = get_entry(inner, false, inner_count, 3);
        let (partial, _) = both_reads(&flipped, &stored, [7, 11], [1, 1]);
        assert_eq!(partial.unwrap(), expected_box(&values, [7, 11], [1, 1]));
        assert_eq!(
            stored.take(),
            [vec![ByteRange::Suffix(64)], vec![ByteRange::FromStart(at, Some(64))], vec![ByteRange::FromStart(at + offset, Some(12))]]
        );
        for (start, extent) in [([0, 0], [8, 12]), ([3, 5], [2, 2]), ([0, 6], [8, 1]), ([6, 0], [2, 12])] {
            let (partial, whole) = both_reads(&flipped, &stored, start, extent);
            assert_eq!(partial.unwrap(), expected_box(&values, start, extent), "{start:?} {extent:?}");
            assert_eq!(whole.unwrap(), expected_box(&values, start, extent), "{start:?} {extent:?}");
        }
    }

    #[test]
    fn missing_inner_shards_and_inner_chunks_read_as_the_fill_value_in_part() {
        let (layout, mut shard, values) = nested_shard();
        let (at, len) = get_entry(&mut shard, false, 4, 0);
        set_entry(&mut shard, false, 4, 3, MISSING, MISSING); // inner shard 3: rows 4..8, columns 6..12
        set_entry(&mut shard[at as usize..(at + len) as usize], true, 4, 1, MISSING, MISSING); // rows 0..2, columns 3..6
        let mut expected = values.clone();
        for r in 0..8 {
            for c in 0..12 {
                if (r >= 4 && c >= 6) || (r < 2 && (3..6).contains(&c)) {
                    expected[r * 12 + c] = 0;
                }
            }
        }
        let stored = Recording::new(shard);
        for (start, extent) in [([0, 0], [8, 12]), ([1, 2], [5, 7]), ([0, 3], [2, 3]), ([5, 7], [1, 1]), ([3, 5], [2, 2])] {
            let (partial, whole) = both_reads(&layout, &stored, start, extent);
            assert_eq!(partial.unwrap(), expected_box(&expected, start, extent), "{start:?} {extent:?}");
            assert_eq!(whole.unwrap(), expected_box(&expected, start, extent), "{start:?} {extent:?}");
        }
        // A box inside a missing inner chunk fetches the two indexes only; inside a missing
        // inner shard, the outer index only.
        stored.take();
        both_reads(&layout, &stored, [0, 3], [2, 3]).0.unwrap();
        assert_eq!(stored.take().iter().map(Vec::len).collect::<Vec<_>>(), [1, 1]);
        both_reads(&layout, &stored, [5, 7], [1, 1]).0.unwrap();
        assert_eq!(stored.take().iter().map(Vec::len).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn forged_inner_shard_indexes_are_errors_on_reads_in_part() {
        let (layout, encoded, _) = nested_shard();
        let (at, len) = get_entry(&mut encoded.clone(), false, 4, 0);
        assert_eq!(len, 112);
        // Inner shard 0 (rows 0..4, columns 0..6) with its inner chunk 0 entry forged in place.
        let forge_inner = |offset: u64, size: u64| -> Recording {
            let mut shard = encoded.clone();
            set_entry(&mut shard[at as usize..(at + len) as usize], true, 4, 0, offset, size);
            Recording::new(shard)
        };
        let forge_outer = |offset: u64, size: u64| -> Recording {
            let mut shard = encoded.clone();
            set_entry(&mut shard, false, 4, 0, offset, size);
            Recording::new(shard)
        };
        let inner = "the index of inner shard 0 of shard c/0/0 references bytes";
        let cases: Vec<(Recording, String, bool)> = vec![
            // Out of range: past the inner shard's 112 bytes (into the next inner shard or
            // past the value), 2^45 bytes, wrapping u64.
            (forge_inner(100, 13), format!("{inner} 100+13 outside its 112 bytes"), true),
            (forge_inner(112 + 100, 1 << 45), format!("{inner} 212+35184372088832 outside its 112 bytes"), true),
            (forge_inner(u64::MAX - 1, 4), format!("{inner} {}+4 outside its 112 bytes", u64::MAX - 1), true),
            // Overlapping the inner shard's own index (its last 64 bytes).
            (forge_inner(112 - 64, 12), format!("{inner} 48+12, which overlap its 64-byte index"), true),
            (forge_inner(40, 12), format!("{inner} 40+12, which overlap its 64-byte index"), true),
            // Oversize: within the inner shard, but more than a 2x3 uint16 inner chunk takes.
            (forge_inner(0, 13), "the index of inner shard 0 of shard c/0/0 gives inner chunk 0 13 bytes, more than the 12 an inner chunk can take".into(), false),
            // The outer entry: too short for the inner shard's index, overlapping the outer
            // index, past the stored value.
            (forge_outer(at, 63), "inner shard 0 of shard c/0/0 has 63 bytes, fewer than its 64-byte index: the shard is truncated".into(), true),
            (forge_outer(0, 112), "the index of shard c/0/0 references bytes 0+112, which overlap its 64-byte index".into(), true),
            (forge_outer(encoded.len() as u64 - 50, 112), format!("the index of shard c/0/0 references bytes past its end ({} bytes)", encoded.len()), false),
        ];
        for (stored, message, whole_too) in &cases {
            let (partial, whole) = both_reads(&layout, stored, [1, 2], [1, 1]);
            let err = partial.unwrap_err();
            assert_eq!(err.code, ZarrsResult::ZARRS_ERROR_CODEC, "{message}: {}", err.message);
            assert!(err.message.starts_with(message.as_str()), "expected {message:?}, got {:?}", err.message);
            if *whole_too {
                // The same check, with the same message, decoding the shard from memory.
                assert!(whole.unwrap_err().message.starts_with(message.as_str()));
            } else {
                assert!(whole.is_err());
            }
        }
        // An inner shard whose entries overlap each other (both inner chunks 0 and 1 at the
        // bytes of 0) reads them as the whole decode does: each is checked and decoded alone.
        let mut shard = encoded.clone();
        let inner_shard = &mut shard[at as usize..(at + len) as usize];
        let (offset, size) = get_entry(inner_shard, true, 4, 0);
        set_entry(inner_shard, true, 4, 1, offset, size);
        let stored = Recording::new(shard);
        let (partial, whole) = both_reads(&layout, &stored, [0, 0], [2, 6]);
        let partial = partial.unwrap();
        assert_eq!(partial, whole.unwrap());
        assert_eq!(partial[6..12], partial[0..6]); // row 0: columns 3..6 repeat 0..3
        // A part that meets no forged entry reads.
        assert!(both_reads(&layout, &forge_inner(112 + 100, 1 << 45), [5, 7], [2, 2]).0.is_ok());
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

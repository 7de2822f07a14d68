//! Gathering one chunk: decode what its picks need, once, and copy the picked elements
//! straight into the caller's output ([`crate::layout::GatherTarget`]).
//!
//! Three ways, by the array's codecs:
//!
//! - our shard layout: the index, then only the inner chunks holding picks, each decoded
//!   (within bounds) and picked from, in parallel;
//! - codecs that decode only whole chunks (compressors, no sharding): the chunk decoded once
//!   and picked from; where the codecs allow, only the part holding the picks (a zstd
//!   chunk's prefix up to the last pick, a blosc chunk's blocks holding picks: see
//!   [`crate::bounds::BoundedChain::decode_needed`]), in inner chunks of our shards too;
//! - anything else (codecs that read part of a chunk, sharding under bytes-to-bytes codecs,
//!   zarrs' sharding codec): the picks' bounding box read through the usual job path into a
//!   per-thread buffer, and picked from there.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::BTreeMap;

use zarrs::array::{CodecOptions, DataType, FillValue};
use zarrs::storage::{ReadableStorage, ReadableStorageTraits};

use super::shard::{Grid, ShardLayout};
use super::ChunkCodec;
use crate::args;
use crate::error::FfiResult;
use crate::bounds::Needed;
use crate::layout::{AxisPicks, ChunkJob, Destination, GatherJob, GatherTarget, PickBytes, Picks};
use crate::memory;

/// Past this many inner chunks per shard, points are grouped by inner chunk in a map rather
/// than in a vector with a slot per inner chunk.
const DENSE_GROUPS: usize = 1 << 16;

thread_local! {
    /// This thread's buffer for a decoded bounding box on its way to the output.
    static BOX: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Run `f` on this thread's box buffer resized to `len` bytes. The buffer is taken out while
/// `f` runs: a thread waiting inside `f` may run another job (rayon), which then gets a
/// fresh buffer instead of sharing this one.
fn with_box<R>(len: usize, f: impl FnOnce(&mut [u8]) -> FfiResult<R>) -> FfiResult<R> {
    let mut buffer = BOX.take();
    memory::resize(&mut buffer, len, 0, "a decoded bounding box")?;
    let result = f(&mut buffer);
    BOX.set(buffer);
    result
}

impl ChunkCodec {
    /// Whether gathers from this array's chunks read byte ranges (the shard index and inner
    /// chunks) rather than whole values.
    pub fn gathers_ranges(&self) -> bool {
        self.shard.is_some()
    }

    /// Copy the picks of `job` into `target`: from `fetched`, the whole stored value when
    /// the caller fetched it (`Some(None)`: missing), else read from `storage` (`local`: a
    /// local one, where inner chunks of a shard are best read one by one). Returns whether
    /// the chunk is stored (missing chunks' picks get the fill value).
    #[allow(clippy::too_many_arguments)]
    pub fn gather_job(
        &self,
        storage: &ReadableStorage,
        local: bool,
        job: &GatherJob,
        fetched: Option<Option<&[u8]>>,
        target: &GatherTarget,
        options: &CodecOptions,
    ) -> FfiResult<bool> {
        let fill = self.fill_value.as_ne_bytes();
        if let (Some(shard), None) = (&self.shard, fetched) {
            return shard.gather(storage.as_ref(), local, job, target, &self.data_type, &self.fill_value, options);
        }
        let region = job.bounding_box()?;
        let ndim = job.chunk_shape.len();
        let boxed = ChunkJob {
            key: job.key.clone(),
            chunk_shape: job.chunk_shape.clone(),
            subset: region.clone(),
            buffer_start: vec![0; ndim],
        };
        if !self.sharded && !self.decodes_partially(&boxed, options) {
            let stored;
            let encoded = match fetched {
                Some(bytes) => bytes.map(Cow::Borrowed),
                None => {
                    stored = storage.get(&job.key)?;
                    stored.as_deref().map(Cow::Borrowed)
                }
            };
            let Some(encoded) = encoded else {
                target.fill(&job.picks, fill)?;
                return Ok(false);
            };
            let shape = job.chunk_shape_u64();
            let needed = PickBytes::of(&job.picks, &shape, self.element_size()?);
            let (data_type, fill_value) = (&self.data_type, &self.fill_value);
            let chunk = match self.codecs.decode_needed(Cow::Borrowed(&encoded), &job.chunk_shape, data_type, fill_value, &needed, options)? {
                Some(part) => part,
                None => self.decode_whole(&boxed, Some(encoded), options)?,
            };
            target.copy(&job.picks, &chunk, &shape, &vec![0; ndim])?;
            return Ok(true);
        }
        let shape = region.shape().to_vec();
        let len = args::byte_size(&shape, self.element_size()?)?;
        with_box(len, |buffer| {
            let destination = Destination::new(buffer, &shape, self.element_size()?, "box")?;
            let present = match fetched {
                Some(bytes) => self.decode_job(&boxed, bytes.map(Cow::Borrowed), &destination, options)?,
                None => self.read_job(storage, &boxed, &destination, options)?,
            };
            target.copy(&job.picks, buffer, &shape, region.start())?;
            Ok(present)
        })
    }
}

/// The picks of one inner chunk of a shard.
enum InnerPicks<'p> {
    Orthogonal(Vec<AxisPicks<'static>>),
    /// The job's points, and which of them lie in this inner chunk.
    Points { coords: &'p [u64], offsets: &'p [u64], which: Vec<usize> },
}

impl ShardLayout {
    /// Gather `job`'s picks from a stored shard: its index, then only the inner chunks that
    /// hold picks, decoded in parallel (`one_by_one`: see [`ShardLayout::read_inner`]).
    /// Returns whether the shard is stored.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gather(
        &self,
        storage: &dyn ReadableStorageTraits,
        one_by_one: bool,
        job: &GatherJob,
        target: &GatherTarget,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
    ) -> FfiResult<bool> {
        let grid = self.grid(&job.chunk_shape)?;
        let inner: Vec<u64> = self.inner_shape.iter().map(|d| d.get()).collect();
        let (needed, picks): (Vec<usize>, Vec<InnerPicks>) = self.split(&grid, &inner, &job.picks).into_iter().unzip();
        let fill = fill_value.as_ne_bytes();
        let element_size = fill.len();
        let found = self.read_inner(storage, &job.key, &grid, &needed, one_by_one, data_type, fill_value, options, |i, bytes| {
            // `needed` is sorted: `split` returns inner chunks in order.
            let picks = &picks[needed.binary_search(&i).expect("a needed inner chunk")];
            let origin = grid.origin(self, i);
            let used = match picks {
                InnerPicks::Orthogonal(axes) => PickBytes::orthogonal(axes, &inner, &origin, element_size),
                InnerPicks::Points { coords, which, .. } => PickBytes::points(coords, which, &inner, &origin, element_size),
            };
            let decoded = match bytes {
                Some(bytes) => Some(self.decode_inner(bytes, i, &job.key, data_type, fill_value, Some(&used), options)?),
                None => None,
            };
            match (picks, &decoded) {
                (InnerPicks::Orthogonal(axes), Some(decoded)) => target.copy_orthogonal(decoded, &inner, &origin, axes),
                (InnerPicks::Orthogonal(axes), None) => target.fill_orthogonal(fill, axes),
                (InnerPicks::Points { coords, offsets, which }, Some(decoded)) => {
                    target.copy_points(decoded, &inner, &origin, coords, offsets, Some(which))
                }
                (InnerPicks::Points { offsets, which, .. }, None) => {
                    target.fill_points(fill, offsets, Some(which));
                    Ok(())
                }
            }
        })?;
        if !found {
            target.fill(&job.picks, fill)?;
        }
        Ok(found)
    }

    /// The inner chunks (C-order indices, ascending) that hold picks, each with its share.
    fn split<'p>(&self, grid: &Grid, inner: &[u64], picks: &Picks<'p>) -> Vec<(usize, InnerPicks<'p>)> {
        let ndim = inner.len();
        // Inner chunk strides in the shard's grid of inner chunks (C order).
        let mut grid_strides = vec![1usize; ndim];
        for d in (0..ndim.saturating_sub(1)).rev() {
            grid_strides[d] = grid_strides[d + 1] * grid.per_shard[d + 1] as usize;
        }
        match picks {
            Picks::Orthogonal(axes) => {
                // Per axis, the picks of each inner chunk row they fall in.
                let per_axis: Vec<Vec<(usize, AxisPicks<'static>)>> = axes
                    .iter()
                    .enumerate()
                    .map(|(d, axis)| {
                        let mut blocks: BTreeMap<u64, (Vec<u64>, Vec<u64>)> = BTreeMap::new();
                        for (&i, &p) in axis.indices.iter().zip(axis.positions.iter()) {
                            let (indices, positions) = blocks.entry(i / inner[d]).or_default();
                            indices.push(i);
                            positions.push(p);
                        }
                        blocks
                            .into_iter()
                            .map(|(block, (indices, positions))| {
                                let picks = AxisPicks { indices: Cow::Owned(indices), positions: Cow::Owned(positions) };
                                (block as usize * grid_strides[d], picks)
                            })
                            .collect()
                    })
                    .collect();
                // Their outer product, in C order (so the inner chunk indices ascend).
                let mut out = Vec::new();
                let mut counter = vec![0usize; ndim];
                if per_axis.iter().any(Vec::is_empty) {
                    return out;
                }
                loop {
                    let index = counter.iter().enumerate().map(|(d, &c)| per_axis[d][c].0).sum();
                    let axes = counter.iter().enumerate().map(|(d, &c)| per_axis[d][c].1.clone()).collect();
                    out.push((index, InnerPicks::Orthogonal(axes)));
                    let mut d = ndim;
                    loop {
                        if d == 0 {
                            return out;
                        }
                        d -= 1;
                        counter[d] += 1;
                        if counter[d] < per_axis[d].len() {
                            break;
                        }
                        counter[d] = 0;
                    }
                }
            }
            Picks::Points { coords, offsets } => {
                let index_of = |k: usize| -> usize {
                    (0..ndim).map(|d| (coords[k * ndim + d] / inner[d]) as usize * grid_strides[d]).sum()
                };
                let grouped: Vec<(usize, Vec<usize>)> = if grid.count <= DENSE_GROUPS {
                    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); grid.count];
                    for k in 0..offsets.len() {
                        groups[index_of(k)].push(k);
                    }
                    groups.into_iter().enumerate().filter(|(_, g)| !g.is_empty()).collect()
                } else {
                    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
                    for k in 0..offsets.len() {
                        groups.entry(index_of(k)).or_default().push(k);
                    }
                    groups.into_iter().collect()
                };
                grouped.into_iter().map(|(i, which)| (i, InnerPicks::Points { coords, offsets, which })).collect()
            }
        }
    }
}

impl Needed for PickBytes<'_> {
    fn end(&self) -> usize {
        PickBytes::end(self)
    }

    fn mark_blocks(&self, block: usize, used: &mut [bool]) {
        PickBytes::mark_blocks(self, block, used);
    }
}

//! Gathers: elements picked out of a decoded chunk and copied straight to their places in a
//! caller's output, with no scratch buffer and no second pass in between.
//!
//! A chunk's picks come in one of the two forms zarr's indexers produce:
//!
//! - orthogonal ([`AxisPicks`] per axis): indices into the chunk along the axis and the
//!   positions they go to along the same axis of the output; the chunk's selection is their
//!   outer product (integer arrays in any order, slices with steps, masks, single integers);
//! - points: coordinates in the chunk (`ndim` values each), each with the element offset it
//!   goes to in the output (coordinate `vindex` selections and full masks).
//!
//! Every index and position is checked against the chunk and the output when a job is
//! parsed ([`GatherTarget::check`]), before a kernel touches a byte; the kernels then only
//! check that a decoded source holds what they read. Like the rest of this layer: no codecs,
//! stores or handles.

use std::borrow::Cow;
use std::num::NonZeroU64;

use unsafe_cell_slice::UnsafeCellSlice;
use zarrs::array::ArraySubset;
use zarrs::storage::StoreKey;

use super::ChunkShapes;
use crate::args;
use crate::error::{FfiError, FfiResult};

/// One axis of an orthogonal pick: `indices[j]` of the chunk goes to `positions[j]` of the
/// output (both along this axis).
#[derive(Clone, Debug)]
pub struct AxisPicks<'a> {
    pub indices: Cow<'a, [u64]>,
    pub positions: Cow<'a, [u64]>,
}

/// What a gather takes from one chunk, and where it puts it.
pub enum Picks<'a> {
    /// One [`AxisPicks`] per axis of the chunk.
    Orthogonal(Vec<AxisPicks<'a>>),
    /// `offsets.len()` points: point `k` has coordinates `coords[k * ndim..(k + 1) * ndim]` in
    /// the chunk and goes to element `offsets[k]` of the output (flat, C order).
    Points { coords: &'a [u64], offsets: &'a [u64] },
}

/// One chunk of a gather.
pub struct GatherJob<'a> {
    pub key: StoreKey,
    pub chunk_shape: Vec<NonZeroU64>,
    pub picks: Picks<'a>,
}

impl GatherJob<'_> {
    pub fn chunk_shape_u64(&self) -> Vec<u64> {
        self.chunk_shape.iter().map(|d| d.get()).collect()
    }

    /// The smallest region of the chunk holding every pick (the picks are never empty once
    /// checked).
    pub fn bounding_box(&self) -> FfiResult<ArraySubset> {
        let ndim = self.chunk_shape.len();
        let (mut lo, mut hi) = (vec![u64::MAX; ndim], vec![0u64; ndim]);
        match &self.picks {
            Picks::Orthogonal(axes) => {
                for (d, axis) in axes.iter().enumerate() {
                    for &i in axis.indices.iter() {
                        lo[d] = lo[d].min(i);
                        hi[d] = hi[d].max(i + 1);
                    }
                }
            }
            Picks::Points { coords, .. } if ndim > 0 => {
                for point in coords.chunks_exact(ndim) {
                    for (d, &c) in point.iter().enumerate() {
                        lo[d] = lo[d].min(c);
                        hi[d] = hi[d].max(c + 1);
                    }
                }
            }
            Picks::Points { .. } => {}
        }
        let shape: Vec<u64> = lo.iter().zip(&hi).map(|(&l, &h)| h.saturating_sub(l)).collect();
        let lo: Vec<u64> = lo.iter().map(|&l| if l == u64::MAX { 0 } else { l }).collect();
        args::region(&lo, &shape, &format!("chunk {}: picks", self.key))
    }
}

/// The bytes of a decoded C-order source that picks read: a source of `shape` elements of
/// `element_size` bytes whose first element is element `origin` of the chunk the picks
/// index (a whole chunk, or an inner chunk of a shard holding these picks). For decoders
/// that can stop early or skip blocks (`bounds.rs`).
pub struct PickBytes<'p> {
    picks: SourcePicks<'p>,
    shape: Vec<u64>,
    origin: Vec<u64>,
    element_size: usize,
}

enum SourcePicks<'p> {
    Orthogonal(&'p [AxisPicks<'p>]),
    /// Points `which` (all when None) of `coords` (`ndim` values each).
    Points { coords: &'p [u64], which: Option<&'p [usize]> },
}

impl<'p> PickBytes<'p> {
    /// The bytes `picks` read of a whole chunk of `shape`.
    pub fn of(picks: &'p Picks<'p>, shape: &[u64], element_size: usize) -> Self {
        let picks = match picks {
            Picks::Orthogonal(axes) => SourcePicks::Orthogonal(axes),
            Picks::Points { coords, .. } => SourcePicks::Points { coords, which: None },
        };
        Self { picks, shape: shape.to_vec(), origin: vec![0; shape.len()], element_size }
    }

    /// The bytes orthogonal picks read of a source of `shape` at `origin` of their chunk.
    pub fn orthogonal(axes: &'p [AxisPicks<'p>], shape: &[u64], origin: &[u64], element_size: usize) -> Self {
        Self { picks: SourcePicks::Orthogonal(axes), shape: shape.to_vec(), origin: origin.to_vec(), element_size }
    }

    /// The bytes points `which` of `coords` read of a source of `shape` at `origin`.
    pub fn points(coords: &'p [u64], which: &'p [usize], shape: &[u64], origin: &[u64], element_size: usize) -> Self {
        let picks = SourcePicks::Points { coords, which: Some(which) };
        Self { picks, shape: shape.to_vec(), origin: origin.to_vec(), element_size }
    }

    /// The source coordinate of chunk coordinate `c` on axis `d` (picks outside the source
    /// are clamped to it: the copy kernels reject them later).
    fn local(&self, d: usize, c: u64) -> u64 {
        c.saturating_sub(self.origin[d]).min(self.shape[d].saturating_sub(1))
    }

    /// One past the last byte any pick reads (C order: the last element is the one with
    /// every coordinate at its largest).
    pub fn end(&self) -> usize {
        let strides = strides(&self.shape);
        let last = match &self.picks {
            SourcePicks::Orthogonal(axes) => axes
                .iter()
                .enumerate()
                .map(|(d, axis)| self.local(d, axis.indices.iter().copied().max().unwrap_or(0)) as usize * strides[d])
                .sum(),
            SourcePicks::Points { coords, which } => {
                let ndim = self.shape.len();
                let flat = |k: usize| -> usize { (0..ndim).map(|d| self.local(d, coords[k * ndim + d]) as usize * strides[d]).sum() };
                match (which, ndim) {
                    (_, 0) => 0,
                    (Some(which), _) => which.iter().map(|&k| flat(k)).max().unwrap_or(0),
                    (None, _) => (0..coords.len() / ndim).map(flat).max().unwrap_or(0),
                }
            }
        };
        (last + 1) * self.element_size
    }

    /// Set `used[b]` for every block `b` of `block` bytes holding a byte any pick reads
    /// (stops early once every block is marked).
    pub fn mark_blocks(&self, block: usize, used: &mut [bool]) {
        let size = self.element_size;
        let strides = strides(&self.shape);
        let ndim = self.shape.len();
        let mut left = used.iter().filter(|&&u| !u).count();
        // Mark the blocks of elements `from..from + n`; false once every block is marked.
        let mut mark = |from: usize, n: usize| -> bool {
            let last = ((from + n) * size).saturating_sub(1) / block;
            for slot in used.iter_mut().take(last + 1).skip(from * size / block) {
                if !*slot {
                    *slot = true;
                    left -= 1;
                }
            }
            left > 0
        };
        match &self.picks {
            SourcePicks::Orthogonal(axes) => {
                if ndim == 0 || axes.len() != ndim {
                    mark(0, 1);
                    return;
                }
                // Per axis the distinct source offsets, ascending; runs along the last axis.
                let offsets: Vec<Vec<usize>> = axes
                    .iter()
                    .enumerate()
                    .map(|(d, axis)| {
                        let mut o: Vec<usize> = axis.indices.iter().map(|&i| self.local(d, i) as usize * strides[d]).collect();
                        o.sort_unstable();
                        o.dedup();
                        o
                    })
                    .collect();
                let mut runs: Vec<(usize, usize)> = Vec::new();
                for &o in &offsets[ndim - 1] {
                    match runs.last_mut() {
                        Some(run) if run.0 + run.1 == o => run.1 += 1,
                        _ => runs.push((o, 1)),
                    }
                }
                let mut counter = vec![0usize; ndim - 1];
                loop {
                    let base: usize = counter.iter().enumerate().map(|(d, &c)| offsets[d][c]).sum();
                    for &(from, n) in &runs {
                        if !mark(base + from, n) {
                            return;
                        }
                    }
                    let mut d = ndim - 1;
                    loop {
                        if d == 0 {
                            return;
                        }
                        d -= 1;
                        counter[d] += 1;
                        if counter[d] < offsets[d].len() {
                            break;
                        }
                        counter[d] = 0;
                    }
                }
            }
            SourcePicks::Points { coords, which } => {
                let flat = |k: usize| -> usize { (0..ndim).map(|d| self.local(d, coords[k * ndim + d]) as usize * strides[d]).sum() };
                if ndim == 0 {
                    mark(0, 1);
                    return;
                }
                let all: Box<dyn Iterator<Item = usize>> = match which {
                    Some(which) => Box::new(which.iter().copied()),
                    None => Box::new(0..coords.len() / ndim),
                };
                for k in all {
                    if !mark(flat(k), 1) {
                        return;
                    }
                }
            }
        }
    }
}

/// Per-axis picks as the C calls give them: per chunk and axis a `(start, count)` pair into
/// shared `indices` and `positions` (so chunks with the same picks along an axis share them).
pub struct PickPool<'a> {
    pub indices: &'a [u64],
    pub positions: &'a [u64],
}

impl<'a> PickPool<'a> {
    /// The picks of one chunk from its `ndim` `(start, count)` pairs.
    pub fn axes(&self, pairs: &[u64], key: &StoreKey) -> FfiResult<Vec<AxisPicks<'a>>> {
        pairs
            .chunks_exact(2)
            .enumerate()
            .map(|(d, pair)| {
                let (start, count) = (pair[0], pair[1]);
                let range = start
                    .checked_add(count)
                    .filter(|&end| end <= self.indices.len() as u64)
                    .map(|end| start as usize..end as usize)
                    .ok_or_else(|| {
                        FfiError::invalid(format!(
                            "chunk {key}: the picks of axis {d} ({count} from {start}) run past the {} given",
                            self.indices.len()
                        ))
                    })?;
                Ok(AxisPicks {
                    indices: Cow::Borrowed(&self.indices[range.clone()]),
                    positions: Cow::Borrowed(&self.positions[range]),
                })
            })
            .collect()
    }
}

/// A caller's output buffer that gathers write picked elements into: C order, of `shape`
/// (orthogonal picks place by position per axis, points by flat element offset).
pub struct GatherTarget<'a> {
    cells: UnsafeCellSlice<'a, u8>,
    shape: Vec<u64>,
    /// Element strides of `shape`.
    strides: Vec<usize>,
    elements: u64,
    element_size: usize,
}

/// Element strides of a C-order array of `shape` (callers have checked it fits in memory).
fn strides(shape: &[u64]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1] as usize;
    }
    strides
}

/// Copy one element of `size` bytes; the common sizes as fixed-size copies (a per-element
/// `memcpy` call costs more than the copy).
#[inline(always)]
fn copy_element(target: &mut [u8], source: &[u8], size: usize) {
    match size {
        1 => target[0] = source[0],
        2 => target[..2].copy_from_slice(&source[..2]),
        4 => target[..4].copy_from_slice(&source[..4]),
        8 => target[..8].copy_from_slice(&source[..8]),
        _ => target[..size].copy_from_slice(&source[..size]),
    }
}

impl<'a> GatherTarget<'a> {
    /// `buffer` as a C-order array of `shape` with elements of `element_size` bytes.
    pub fn new(buffer: &'a mut [u8], shape: &[u64], element_size: usize, name: &str) -> FfiResult<Self> {
        let expected = args::byte_size(shape, element_size)?;
        if buffer.len() != expected {
            return Err(FfiError::buffer_size(name, buffer.len(), expected));
        }
        Ok(Self {
            elements: args::num_elements(shape)?,
            strides: strides(shape),
            shape: shape.to_vec(),
            cells: UnsafeCellSlice::new(buffer),
            element_size,
        })
    }

    /// Fail unless every pick of `job` lies in its chunk and lands in this buffer, and no
    /// axis or chunk picks nothing.
    pub fn check(&self, job: &GatherJob) -> FfiResult<()> {
        let key = &job.key;
        let chunk_shape = job.chunk_shape_u64();
        let ndim = chunk_shape.len();
        match &job.picks {
            Picks::Orthogonal(axes) => {
                if axes.len() != ndim || self.shape.len() != ndim {
                    return Err(FfiError::invalid(format!(
                        "chunk {key}: {} axes of picks for a chunk of {ndim} dimensions and an output of {}",
                        axes.len(),
                        self.shape.len()
                    )));
                }
                for (d, axis) in axes.iter().enumerate() {
                    if axis.indices.len() != axis.positions.len() {
                        return Err(FfiError::invalid(format!(
                            "chunk {key}: axis {d} has {} indices and {} positions",
                            axis.indices.len(),
                            axis.positions.len()
                        )));
                    }
                    if axis.indices.is_empty() {
                        return Err(FfiError::invalid(format!("chunk {key}: axis {d} picks nothing")));
                    }
                    if let Some(&i) = axis.indices.iter().find(|&&i| i >= chunk_shape[d]) {
                        return Err(FfiError::invalid(format!(
                            "chunk {key}: index {i} on axis {d} is outside the chunk shape {chunk_shape:?}"
                        )));
                    }
                    if let Some(&p) = axis.positions.iter().find(|&&p| p >= self.shape[d]) {
                        return Err(FfiError::invalid(format!(
                            "chunk {key}: position {p} on axis {d} is outside the output shape {:?}",
                            self.shape
                        )));
                    }
                }
            }
            Picks::Points { coords, offsets } => {
                if offsets.is_empty() {
                    return Err(FfiError::invalid(format!("chunk {key}: no points")));
                }
                if Some(coords.len()) != offsets.len().checked_mul(ndim) {
                    return Err(FfiError::invalid(format!(
                        "chunk {key}: {} coordinates for {} points of {ndim} dimensions",
                        coords.len(),
                        offsets.len()
                    )));
                }
                if ndim > 0 {
                    for (k, point) in coords.chunks_exact(ndim).enumerate() {
                        if point.iter().zip(&chunk_shape).any(|(c, n)| c >= n) {
                            return Err(FfiError::invalid(format!(
                                "chunk {key}: point {k} at {point:?} is outside the chunk shape {chunk_shape:?}"
                            )));
                        }
                    }
                }
                if let Some(&o) = offsets.iter().find(|&&o| o >= self.elements) {
                    return Err(FfiError::invalid(format!(
                        "chunk {key}: output offset {o} is outside the output's {} elements",
                        self.elements
                    )));
                }
            }
        }
        Ok(())
    }

    /// Copy orthogonal picks out of `source`, a C-order array of `source_shape` whose first
    /// element is element `origin` of the chunk the picks index (every pick lies inside it).
    pub fn copy_orthogonal(&self, source: &[u8], source_shape: &[u64], origin: &[u64], axes: &[AxisPicks]) -> FfiResult<()> {
        let size = self.element_size;
        self.orthogonal_runs(source_shape, origin, axes, |from, to, n| {
            let bytes = source.get(from * size..(from + n) * size).ok_or_else(|| out_of_source(source.len()))?;
            // SAFETY: `to..to + n` are elements of this buffer: the picks' positions were
            // checked against its shape (`check`), and `index_mut` checks the range again.
            // No other thread writes them: no output element is picked twice in one call,
            // a documented precondition of the gather calls.
            let target = unsafe { self.cells.index_mut(to * size..(to + n) * size) };
            if n == 1 {
                copy_element(target, bytes, size);
            } else {
                target.copy_from_slice(bytes);
            }
            Ok(())
        })
    }

    /// Set every element orthogonal picks land on to `element`.
    pub fn fill_orthogonal(&self, element: &[u8], axes: &[AxisPicks]) -> FfiResult<()> {
        let size = self.element_size;
        let origin = vec![0; axes.len()];
        // The source shape only matters for source offsets, which a fill ignores.
        let shape: Vec<u64> = axes.iter().map(|a| a.indices.iter().max().map_or(1, |&m| m + 1)).collect();
        self.orthogonal_runs(&shape, &origin, axes, |_, to, n| {
            // SAFETY: as in `copy_orthogonal`.
            let target = unsafe { self.cells.index_mut(to * size..(to + n) * size) };
            for slot in target.chunks_exact_mut(size) {
                copy_element(slot, element, size);
            }
            Ok(())
        })
    }

    /// Visit the runs of orthogonal picks: `f(source element, target element, run length)`.
    /// Runs are consecutive picks of the last axis that are consecutive in both arrays.
    fn orthogonal_runs(
        &self,
        source_shape: &[u64],
        origin: &[u64],
        axes: &[AxisPicks],
        mut f: impl FnMut(usize, usize, usize) -> FfiResult<()>,
    ) -> FfiResult<()> {
        let ndim = axes.len();
        let Some(last) = axes.last() else {
            return f(0, 0, 1);
        };
        let source_strides = strides(source_shape);
        let local = |d: usize, i: u64| -> FfiResult<usize> {
            i.checked_sub(origin[d])
                .filter(|&l| l < source_shape[d])
                .map(|l| l as usize * source_strides[d])
                .ok_or_else(|| FfiError::invalid(format!("index {i} on axis {d} is outside the decoded region")))
        };
        let mut runs: Vec<(usize, usize, usize)> = Vec::new();
        for (&i, &p) in last.indices.iter().zip(last.positions.iter()) {
            let (from, to) = (local(ndim - 1, i)?, p as usize * self.strides[ndim - 1]);
            match runs.last_mut() {
                Some(run) if run.0 + run.2 == from && run.1 + run.2 == to => run.2 += 1,
                _ => runs.push((from, to, 1)),
            }
        }
        // The outer axes' offsets, computed once per pick.
        let outer: Vec<Vec<(usize, usize)>> = axes[..ndim - 1]
            .iter()
            .enumerate()
            .map(|(d, axis)| {
                axis.indices
                    .iter()
                    .zip(axis.positions.iter())
                    .map(|(&i, &p)| Ok((local(d, i)?, p as usize * self.strides[d])))
                    .collect::<FfiResult<Vec<_>>>()
            })
            .collect::<FfiResult<_>>()?;
        let mut counter = vec![0usize; ndim - 1];
        loop {
            let (mut from, mut to) = (0usize, 0usize);
            for (d, &c) in counter.iter().enumerate() {
                from += outer[d][c].0;
                to += outer[d][c].1;
            }
            for &(run_from, run_to, n) in &runs {
                f(from + run_from, to + run_to, n)?;
            }
            let mut d = ndim - 1;
            loop {
                if d == 0 {
                    return Ok(());
                }
                d -= 1;
                counter[d] += 1;
                if counter[d] < outer[d].len() {
                    break;
                }
                counter[d] = 0;
            }
        }
    }

    /// Copy points `which` (all when None) out of `source`, a C-order array of
    /// `source_shape` whose first element is element `origin` of the chunk.
    pub fn copy_points(
        &self,
        source: &[u8],
        source_shape: &[u64],
        origin: &[u64],
        coords: &[u64],
        offsets: &[u64],
        which: Option<&[usize]>,
    ) -> FfiResult<()> {
        let size = self.element_size;
        let ndim = source_shape.len();
        let source_strides = strides(source_shape);
        let copy = |k: usize| -> FfiResult<()> {
            let mut from = 0usize;
            for d in 0..ndim {
                let local = coords[k * ndim + d]
                    .checked_sub(origin[d])
                    .filter(|&l| l < source_shape[d])
                    .ok_or_else(|| FfiError::invalid(format!("point {k} is outside the decoded region")))?;
                from += local as usize * source_strides[d];
            }
            let bytes = source.get(from * size..(from + 1) * size).ok_or_else(|| out_of_source(source.len()))?;
            let to = offsets[k] as usize;
            // SAFETY: `offsets[k]` was checked against this buffer's element count (`check`)
            // and `index_mut` checks the range again. No other thread writes this element: no
            // output element is picked twice in one call (a documented precondition).
            let target = unsafe { self.cells.index_mut(to * size..(to + 1) * size) };
            copy_element(target, bytes, size);
            Ok(())
        };
        match which {
            Some(which) => which.iter().try_for_each(|&k| copy(k)),
            None => (0..offsets.len()).try_for_each(copy),
        }
    }

    /// Set the elements points `which` (all when None) land on to `element`.
    pub fn fill_points(&self, element: &[u8], offsets: &[u64], which: Option<&[usize]>) {
        let size = self.element_size;
        let fill = |k: usize| {
            let to = offsets[k] as usize;
            // SAFETY: as in `copy_points`.
            let target = unsafe { self.cells.index_mut(to * size..(to + 1) * size) };
            copy_element(target, element, size);
        };
        match which {
            Some(which) => which.iter().for_each(|&k| fill(k)),
            None => (0..offsets.len()).for_each(fill),
        }
    }

    /// Copy every pick of `picks` out of `source` (see [`Self::copy_orthogonal`]).
    pub fn copy(&self, picks: &Picks, source: &[u8], source_shape: &[u64], origin: &[u64]) -> FfiResult<()> {
        match picks {
            Picks::Orthogonal(axes) => self.copy_orthogonal(source, source_shape, origin, axes),
            Picks::Points { coords, offsets } => self.copy_points(source, source_shape, origin, coords, offsets, None),
        }
    }

    /// Set every element `picks` land on to `element`.
    pub fn fill(&self, picks: &Picks, element: &[u8]) -> FfiResult<()> {
        match picks {
            Picks::Orthogonal(axes) => self.fill_orthogonal(element, axes),
            Picks::Points { offsets, .. } => {
                self.fill_points(element, offsets, None);
                Ok(())
            }
        }
    }
}

/// The chunk shape and key of chunk `i` of a gather (see [`parse_orthogonal`]).
fn chunk_of(shapes: &ChunkShapes, keys: (&str, &[u64]), chunk_shapes: &[u64], i: usize) -> FfiResult<(StoreKey, Vec<NonZeroU64>)> {
    let ndim = shapes.ndim();
    let key = args::key_at(keys.0, keys.1, i)?;
    let shape = args::nonzero_shape(&chunk_shapes[i * ndim..(i + 1) * ndim], &format!("chunk {key}: chunk shape"))?;
    shapes.check(&shape, &key)?;
    Ok((key, shape))
}

/// Fail unless `values` holds `count * per` values (`name` in the message).
fn check_len(values: &[u64], count: usize, per: usize, name: &str) -> FfiResult<()> {
    let expected = count.checked_mul(per).ok_or_else(|| FfiError::invalid(format!("`{name}`: the count overflows")))?;
    if values.len() != expected {
        return Err(FfiError::invalid(format!("`{name}` has {} values; {count} chunks need {expected}", values.len())));
    }
    Ok(())
}

/// Parse the C description of an orthogonal gather: `num_chunks` keys (back to back, with
/// `num_chunks + 1` offsets), their chunk shapes (`ndim` values each, each a shape of the
/// array's grid), and per chunk and axis a `(start, count)` pair into `pool`.
pub fn parse_orthogonal<'a>(
    shapes: &ChunkShapes,
    num_chunks: usize,
    keys: (&str, &[u64]),
    chunk_shapes: &[u64],
    pairs: &[u64],
    pool: &PickPool<'a>,
) -> FfiResult<Vec<GatherJob<'a>>> {
    let ndim = shapes.ndim();
    check_len(chunk_shapes, num_chunks, ndim, "chunk_shapes")?;
    check_len(pairs, num_chunks, 2 * ndim, "picks")?;
    (0..num_chunks)
        .map(|i| {
            let (key, chunk_shape) = chunk_of(shapes, keys, chunk_shapes, i)?;
            let axes = pool.axes(&pairs[i * 2 * ndim..(i + 1) * 2 * ndim], &key)?;
            Ok(GatherJob { key, chunk_shape, picks: Picks::Orthogonal(axes) })
        })
        .collect()
}

/// Parse the C description of a point gather: keys and chunk shapes as for
/// [`parse_orthogonal`], and per chunk a count of the points that follow, in order, in
/// `coords` (`ndim` values each) and `offsets`.
pub fn parse_points<'a>(
    shapes: &ChunkShapes,
    num_chunks: usize,
    keys: (&str, &[u64]),
    chunk_shapes: &[u64],
    counts: &[u64],
    coords: &'a [u64],
    offsets: &'a [u64],
) -> FfiResult<Vec<GatherJob<'a>>> {
    let ndim = shapes.ndim();
    check_len(chunk_shapes, num_chunks, ndim, "chunk_shapes")?;
    check_len(counts, num_chunks, 1, "counts")?;
    let total = counts
        .iter()
        .try_fold(0u64, |sum, &n| sum.checked_add(n))
        .filter(|&total| total == offsets.len() as u64)
        .ok_or_else(|| FfiError::invalid(format!("`counts` do not add up to the {} points given", offsets.len())))?;
    if Some(coords.len()) != (total as usize).checked_mul(ndim) {
        return Err(FfiError::invalid(format!(
            "`coords` has {} values; {total} points of {ndim} dimensions need {}",
            coords.len(),
            (total as usize).saturating_mul(ndim)
        )));
    }
    let mut first = 0usize;
    (0..num_chunks)
        .map(|i| {
            let (key, chunk_shape) = chunk_of(shapes, keys, chunk_shapes, i)?;
            // The counts add up to `offsets.len()` (checked above), so these stay in range.
            let n = counts[i] as usize;
            let picks = Picks::Points { coords: &coords[first * ndim..(first + n) * ndim], offsets: &offsets[first..first + n] };
            first += n;
            Ok(GatherJob { key, chunk_shape, picks })
        })
        .collect()
}

fn out_of_source(len: usize) -> FfiError {
    FfiError::invalid(format!("a pick lies outside the {len} decoded bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> StoreKey {
        StoreKey::new("c/0/0").unwrap()
    }

    fn job<'a>(shape: &[u64], picks: Picks<'a>) -> GatherJob<'a> {
        GatherJob { key: key(), chunk_shape: shape.iter().map(|&n| NonZeroU64::new(n).unwrap()).collect(), picks }
    }

    fn axis(indices: &[u64], positions: &[u64]) -> AxisPicks<'static> {
        AxisPicks { indices: Cow::Owned(indices.to_vec()), positions: Cow::Owned(positions.to_vec()) }
    }

    #[test]
    fn orthogonal_picks_land_where_numpy_would_put_them() {
        // A 4 x 5 chunk of u16 whose element (r, c) is 10 r + c, into a 3 x 6 output.
        let chunk: Vec<u8> = (0..4u16).flat_map(|r| (0..5u16).map(move |c| 10 * r + c)).flat_map(u16::to_ne_bytes).collect();
        let mut out = vec![0xffu8; 3 * 6 * 2];
        let target = GatherTarget::new(&mut out, &[3, 6], 2, "out").unwrap();
        // Rows 3, 0 (unsorted) to output rows 2, 0; columns 1..4 to 2..5 (one run) and 0 to 0.
        let axes = vec![axis(&[3, 0], &[2, 0]), axis(&[1, 2, 3, 0], &[2, 3, 4, 0])];
        let j = job(&[4, 5], Picks::Orthogonal(axes));
        target.check(&j).unwrap();
        target.copy(&j.picks, &chunk, &[4, 5], &[0, 0]).unwrap();
        let values: Vec<u16> = out.chunks_exact(2).map(|b| u16::from_ne_bytes([b[0], b[1]])).collect();
        let u = 0xffff;
        assert_eq!(values, [0, u, 1, 2, 3, u, u, u, u, u, u, u, 30, u, 31, 32, 33, u]);
        // From a region of the chunk starting at (3, 1) holding the picks of row 3 only.
        let mut out = vec![0u8; 3 * 6 * 2];
        let target = GatherTarget::new(&mut out, &[3, 6], 2, "out").unwrap();
        let region: Vec<u8> = (1..5u16).map(|c| 30 + c).flat_map(u16::to_ne_bytes).collect();
        target.copy_orthogonal(&region, &[1, 4], &[3, 1], &[axis(&[3], &[1]), axis(&[4, 2], &[0, 5])]).unwrap();
        // A pick outside the region is an error, not a read past it.
        assert!(target.copy_orthogonal(&region, &[1, 4], &[3, 1], &[axis(&[2], &[0]), axis(&[1], &[0])]).is_err());
        let values: Vec<u16> = out.chunks_exact(2).map(|b| u16::from_ne_bytes([b[0], b[1]])).collect();
        assert_eq!(values[6..12], [34, 0, 0, 0, 0, 32]);
    }

    #[test]
    fn points_and_fills() {
        let chunk: Vec<u8> = (0..12u8).collect();
        let mut out = vec![0u8; 4];
        let target = GatherTarget::new(&mut out, &[4], 1, "out").unwrap();
        let coords = [2, 3, 0, 0, 1, 1];
        let j = job(&[3, 4], Picks::Points { coords: &coords, offsets: &[3, 0, 1] });
        target.check(&j).unwrap();
        target.copy(&j.picks, &chunk, &[3, 4], &[0, 0]).unwrap();
        target.fill_points(&[99], &[0, 1, 2, 3], Some(&[2]));
        assert_eq!(out, [0, 5, 99, 11]);
    }

    #[test]
    fn checks_name_what_is_wrong() {
        let mut out = vec![0u8; 8];
        let target = GatherTarget::new(&mut out, &[2, 4], 1, "out").unwrap();
        let cases: Vec<(Picks, &str)> = vec![
            (Picks::Orthogonal(vec![axis(&[0], &[0])]), "axes"),
            (Picks::Orthogonal(vec![axis(&[0], &[0]), axis(&[], &[])]), "picks nothing"),
            (Picks::Orthogonal(vec![axis(&[0, 1], &[0]), axis(&[0], &[0])]), "positions"),
            (Picks::Orthogonal(vec![axis(&[3], &[0]), axis(&[0], &[0])]), "index 3 on axis 0"),
            (Picks::Orthogonal(vec![axis(&[0], &[2]), axis(&[0], &[0])]), "position 2 on axis 0"),
            (Picks::Points { coords: &[0, 0], offsets: &[8] }, "output offset 8"),
            (Picks::Points { coords: &[0, 4], offsets: &[0] }, "point 0"),
            (Picks::Points { coords: &[0], offsets: &[0] }, "coordinates"),
            (Picks::Points { coords: &[], offsets: &[] }, "no points"),
        ];
        for (picks, mention) in cases {
            let message = target.check(&job(&[3, 4], picks)).unwrap_err().message;
            assert!(message.contains(mention), "{message:?} does not mention {mention:?}");
        }
    }
}

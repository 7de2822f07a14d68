//! Views of caller buffers: the buffer a batch decodes into ([`Destination`]) and the values
//! a write encodes from ([`Source`]).
//!
//! Every region is checked against its buffer here, before a kernel touches it.

use std::borrow::Cow;

use unsafe_cell_slice::UnsafeCellSlice;
use zarrs::array::ArrayBytesFixedDisjointView;
use zarrs::storage::StoreKey;

use super::kernels::{copy_region, copy_region_uninit, fill_elements, fill_region, for_each_run};
use super::ChunkJob;
use crate::args;
use crate::error::{FfiError, FfiResult};
use crate::memory;

/// A caller buffer that jobs decode into, each into its own region.
pub struct Destination<'a> {
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
    pub fn copy_at(
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
    pub fn fill_at(&self, buffer_start: &[u64], shape: &[u64], element: &[u8], key: &StoreKey) -> FfiResult<()> {
        let origin = vec![0; shape.len()];
        self.runs(shape, &origin, buffer_start, shape, key, |_, target| {
            fill_elements(target, element);
        })
    }

    /// Copy `job.subset` of `chunk` (a whole decoded chunk) into the job's region.
    pub fn place(&self, job: &ChunkJob, chunk: &[u8]) -> FfiResult<()> {
        self.copy_at(chunk, &job.chunk_shape_u64(), job.subset.start(), &job.buffer_start, job.subset.shape(), &job.key)
    }

    /// Set every element of the job's region to `element`.
    pub fn fill(&self, job: &ChunkJob, element: &[u8]) -> FfiResult<()> {
        self.fill_at(&job.buffer_start, job.subset.shape(), element, &job.key)
    }

    /// The region `job` decodes into as one slice of the buffer, when it is one run of it
    /// (past its first dimension longer than one, the region spans the buffer's whole
    /// extent); None otherwise. Mutable through a shared reference, as every job of a batch
    /// writes its own disjoint region of the one buffer.
    #[allow(clippy::mut_from_ref)]
    pub fn contiguous(&self, job: &ChunkJob) -> Option<&mut [u8]> {
        let shape = job.subset.shape();
        let region = args::region(&job.buffer_start, shape, "buffer region").ok()?;
        if !region.inbounds_shape(self.shape) {
            return None;
        }
        let first = shape.iter().position(|&n| n != 1).unwrap_or(shape.len());
        if shape.iter().zip(self.shape).skip(first + 1).any(|(n, whole)| n != whole) {
            return None;
        }
        let mut start = 0u64;
        for (d, &at) in job.buffer_start.iter().enumerate() {
            start = start * self.shape[d] + at;
        }
        let (start, len) = (usize::try_from(start).ok()? * self.element_size, args::num_elements(shape).ok()? as usize * self.element_size);
        // SAFETY: the region lies in the buffer (checked above) and is one run of it, so
        // `start..start + len` is inside the buffer. Regions of one batch are disjoint (a
        // documented precondition of every batch call), so no other job touches these bytes.
        Some(unsafe { self.cells.index_mut(start..start + len) })
    }

    /// A view of the region `job` decodes into.
    pub fn view(&self, job: &ChunkJob) -> FfiResult<ArrayBytesFixedDisjointView<'a>> {
        // SAFETY: the view only writes inside `region`, which the constructor checks lies in
        // the buffer. Regions of one batch must not overlap; that is a documented
        // precondition of every batch call (zarr's indexers produce disjoint regions).
        Ok(unsafe {
            ArrayBytesFixedDisjointView::new(self.cells, self.element_size, self.shape, job.buffer_region()?)?
        })
    }
}

/// A source of values for writes: a C-order array, or one element broadcast everywhere.
pub enum Source<'a> {
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

    pub fn check(&self, job: &ChunkJob) -> FfiResult<()> {
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

    /// The values of a whole chunk that `job` covers entirely: the source's own bytes when
    /// it is that chunk, else where they sit in the source, copied only when encoded.
    pub fn whole_chunk(&self, job: &ChunkJob, element_size: usize) -> FfiResult<ChunkValues<'a>> {
        let chunk_shape = job.chunk_shape_u64();
        let len = args::byte_size(&chunk_shape, element_size)?;
        match self {
            Source::Scalar(element) => {
                let what = format_args!("chunk {} filled with the written value", job.key);
                Ok(ChunkValues::Bytes(Cow::Owned(memory::repeat(element, len / element_size, what)?)))
            }
            Source::Array { bytes, shape } if *shape == chunk_shape => Ok(ChunkValues::Bytes(Cow::Borrowed(bytes))),
            Source::Array { bytes, shape } => Ok(ChunkValues::Region {
                bytes,
                shape: shape.clone(),
                start: job.buffer_start.clone(),
            }),
        }
    }

    /// Copy this job's values into `chunk` (a whole decoded chunk) at the job's subset.
    pub fn write_into(&self, job: &ChunkJob, chunk: &mut [u8], element_size: usize) {
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

/// The values of one whole chunk on their way to its encoder.
pub enum ChunkValues<'a> {
    /// The chunk's bytes, C order.
    Bytes(Cow<'a, [u8]>),
    /// The chunk is the region at `start` of a larger C-order array of `shape`: its bytes
    /// are copied out only where an encoder needs them (an inner chunk of a shard straight
    /// into its place, a chunk into a reused buffer), never into a buffer of their own.
    Region { bytes: &'a [u8], shape: Vec<u64>, start: Vec<u64> },
}

impl ChunkValues<'_> {
    /// Copy the part of the chunk (of `chunk_shape`) at `origin` with the shape of
    /// `target_shape` into `target`, whose every byte is written.
    ///
    /// # Panics
    /// If the part is outside the chunk, or the chunk outside its source (callers plan
    /// regions from checked jobs).
    pub fn copy_part(&self, chunk_shape: &[u64], origin: &[u64], target: &mut [u8], target_shape: &[u64], element_size: usize) {
        let zeros = vec![0; target_shape.len()];
        match self {
            ChunkValues::Bytes(bytes) => {
                copy_region(bytes, chunk_shape, origin, target, target_shape, &zeros, target_shape, element_size);
            }
            ChunkValues::Region { bytes, shape, start } => {
                let from: Vec<u64> = start.iter().zip(origin).map(|(s, o)| s + o).collect();
                copy_region(bytes, shape, &from, target, target_shape, &zeros, target_shape, element_size);
            }
        }
    }

    /// Run `f` on the chunk's bytes (C order, `chunk_shape`): its own bytes, or a copy in
    /// this thread's reused buffer, which is never zeroed first: every byte is copied in.
    pub fn with_bytes<R>(&self, chunk_shape: &[u64], element_size: usize, f: impl FnOnce(&[u8]) -> R) -> FfiResult<R> {
        let (bytes, shape, start) = match self {
            ChunkValues::Bytes(bytes) => return Ok(f(bytes)),
            ChunkValues::Region { bytes, shape, start } => (bytes, shape, start),
        };
        let len = args::byte_size(chunk_shape, element_size)?;
        let mut buffer = CHUNK_BUFFER.take();
        buffer.clear();
        memory::reserve(&mut buffer, len, format_args!("a chunk of shape {chunk_shape:?} copied out of the written values"))?;
        let zeros = vec![0; chunk_shape.len()];
        copy_region_uninit(bytes, shape, start, &mut buffer.spare_capacity_mut()[..len], chunk_shape, &zeros, chunk_shape, element_size);
        // SAFETY: the region copied is the whole of a chunk of `chunk_shape`, `len` bytes,
        // so `copy_region_uninit` initialised each of the first `len` bytes.
        unsafe { buffer.set_len(len) };
        let result = f(&buffer);
        if buffer.capacity() <= KEEP_CHUNK_BUFFER {
            CHUNK_BUFFER.set(buffer);
        }
        Ok(result)
    }
}

/// The largest chunk buffer a thread keeps for the next chunk: a pool thread that once
/// wrote a huge chunk should not hold its memory for the life of the process.
const KEEP_CHUNK_BUFFER: usize = 16 << 20;

thread_local! {
    /// This thread's buffer for a chunk copied out of a write's source (taken out while in
    /// use, so a nested use on the same thread gets a fresh one instead of sharing it).
    static CHUNK_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU64;

    use zarrs::array::ArraySubset;

    use super::*;

    fn job(chunk: &[u64], at: &[u64]) -> ChunkJob {
        ChunkJob {
            key: StoreKey::new("c/0").unwrap(),
            chunk_shape: chunk.iter().map(|&n| NonZeroU64::new(n).unwrap()).collect(),
            subset: ArraySubset::new_with_shape(chunk.to_vec()),
            buffer_start: at.to_vec(),
        }
    }

    #[test]
    fn a_region_is_contiguous_when_it_spans_the_buffer_past_its_first_long_dimension() {
        let shape = [4u64, 6, 8];
        let mut buffer = vec![0u8; 4 * 6 * 8 * 2];
        let base = buffer.as_ptr() as usize;
        let destination = Destination::new(&mut buffer, &shape, 2, "out").unwrap();
        let at = |job: &ChunkJob| destination.contiguous(job).map(|s| (s.as_ptr() as usize - base, s.len()));
        assert_eq!(at(&job(&[4, 6, 8], &[0, 0, 0])), Some((0, 384)));
        assert_eq!(at(&job(&[2, 6, 8], &[2, 0, 0])), Some((192, 192)));
        assert_eq!(at(&job(&[1, 3, 8], &[1, 3, 0])), Some((144, 48)));
        assert_eq!(at(&job(&[1, 1, 4], &[3, 5, 4])), Some((376, 8)));
        assert_eq!(at(&job(&[2, 3, 8], &[0, 0, 0])), None, "rows of two planes");
        assert_eq!(at(&job(&[1, 2, 4], &[0, 0, 0])), None, "two partial rows");
        assert_eq!(at(&job(&[2, 6, 8], &[3, 0, 0])), None, "outside the buffer");
    }
}

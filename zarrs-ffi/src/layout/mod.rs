//! Chunk jobs and their layout: which part of which chunk goes where in a caller's buffer.
//!
//! A batch is a list of [`ChunkJob`]s: a store key, the chunk's shape, the region of the
//! chunk wanted (`subset`), and where that region sits in the caller's buffer
//! (`buffer_start`; the region there has the subset's shape). Keys rather than chunk indices
//! describe chunks because that is what zarr-python hands a codec pipeline; it also makes the
//! calls indifferent to chunk key encodings and irregular chunk grids.
//!
//! This layer holds geometry, buffer views and copy kernels. It must not know about codecs,
//! stores or handles.

mod gather;
mod grid;
mod kernels;
mod presence;
mod view;

use std::num::NonZeroU64;

use zarrs::array::ArraySubset;
use zarrs::storage::StoreKey;

pub use gather::{parse_orthogonal, parse_points, AxisPicks, GatherJob, GatherTarget, PickBytes, PickPool, Picks};
pub use grid::ChunkShapes;
pub use presence::PresenceTracker;
pub use view::{ChunkValues, Destination, Source};

use crate::args;
use crate::error::{FfiError, FfiResult};

/// One chunk of a batch.
#[derive(Clone)]
pub struct ChunkJob {
    pub key: StoreKey,
    pub chunk_shape: Vec<NonZeroU64>,
    /// The region of the chunk, in chunk coordinates.
    pub subset: ArraySubset,
    /// Where the region starts in the caller's buffer.
    pub buffer_start: Vec<u64>,
}

impl ChunkJob {
    /// The job for a whole chunk of `shape`, placed at the origin of a buffer of that shape.
    pub fn whole(key: StoreKey, shape: Vec<NonZeroU64>) -> Self {
        let shape_u64: Vec<u64> = shape.iter().map(|d| d.get()).collect();
        let ndim = shape.len();
        Self {
            key,
            chunk_shape: shape,
            subset: ArraySubset::new_with_shape(shape_u64),
            buffer_start: vec![0; ndim],
        }
    }

    pub fn chunk_shape_u64(&self) -> Vec<u64> {
        self.chunk_shape.iter().map(|d| d.get()).collect()
    }

    pub fn is_whole_chunk(&self) -> bool {
        self.subset.start().iter().all(|&s| s == 0)
            && self.subset.shape().iter().zip(&self.chunk_shape).all(|(&a, b)| a == b.get())
    }

    pub fn buffer_region(&self) -> FfiResult<ArraySubset> {
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
/// the array's chunk grid has ([`ChunkShapes::check`]): the shape decides how much is
/// allocated and filled for the chunk, so it is never taken on trust.
pub fn parse_jobs(
    shapes: &ChunkShapes,
    num_chunks: usize,
    keys: Option<(&str, &[u64])>,
    geometry: &[u64],
) -> FfiResult<Vec<ChunkJob>> {
    let ndim = shapes.ndim();
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
            let key = job_key(i, keys)?;
            parse_job(shapes, key, &geometry[i * 4 * ndim..(i + 1) * 4 * ndim])
        })
        .collect()
}

/// The key of chunk `i` of a batch (see [`parse_jobs`]).
fn job_key(i: usize, keys: Option<(&str, &[u64])>) -> FfiResult<StoreKey> {
    let Some((keys, offsets)) = keys else {
        // Only named in messages; never used to reach the store.
        return StoreKey::new(format!("chunk-{i}")).map_err(|e| FfiError::invalid(e.to_string()));
    };
    args::key_at(keys, offsets, i)
}

/// One job from its four runs of `ndim` geometry values.
fn parse_job(shapes: &ChunkShapes, key: StoreKey, geometry: &[u64]) -> FfiResult<ChunkJob> {
    let ndim = shapes.ndim();
    let (chunk_shape, rest) = geometry.split_at(ndim);
    let (subset_start, rest) = rest.split_at(ndim);
    let (subset_shape, buffer_start) = rest.split_at(ndim);
    let chunk_shape = args::nonzero_shape(chunk_shape, &format!("chunk {key}: chunk shape"))?;
    shapes.check(&chunk_shape, &key)?;
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
}

//! The chunk shapes an array's grid has, against which caller-given shapes are checked.

use std::num::NonZeroU64;

use zarrs::array::Array;
use zarrs::plugin::{ExtensionName, ZarrVersion};
use zarrs::storage::{ReadableWritableListableStorageTraits, StoreKey};

use crate::error::{FfiError, FfiResult, ZarrsResult};

/// The most elements a caller may give a chunk of a rectilinear grid that is not one of the
/// grid's shapes when the handle was opened (the grid grows when zarr resizes the array).
const IRREGULAR_CHUNK_ELEMENTS: u64 = 1 << 27;

/// Past this many chunks on an axis of an irregular grid only both ends are probed, which is
/// where a bounded regular grid's chunks differ.
const PROBED_CHUNKS: u64 = 1 << 16;

/// Per dimension, every extent a chunk of an array's grid has along it (sorted).
pub struct ChunkShapes {
    extents: Vec<Vec<u64>>,
    /// Whether the grid is regular. A rectilinear grid changes when zarr resizes the array
    /// (its edges grow), while a handle keeps the metadata it was opened with, so its chunk
    /// shapes are bounded rather than matched.
    regular: bool,
}

impl ChunkShapes {
    /// The extents chunks of `array`'s grid have along each dimension. A regular grid has one
    /// per dimension. Other grids (rectilinear, regular-bounded) are probed along each axis.
    pub fn of(array: &Array<dyn ReadableWritableListableStorageTraits>) -> FfiResult<Self> {
        let grid = array.chunk_grid();
        let grid_shape = array.chunk_grid_shape();
        let ndim = grid_shape.len();
        let regular = grid.name(ZarrVersion::V3).as_deref() == Some("regular");
        let probe = |d: usize, i: u64| -> FfiResult<Option<u64>> {
            let mut indices = vec![0; ndim];
            indices[d] = i;
            let shape = grid.chunk_shape(&indices).map_err(|e| FfiError::new(ZarrsResult::ZARRS_ERROR_INVALID_METADATA, e.to_string()))?;
            Ok(shape.map(|shape| shape[d].get()))
        };
        let extents = (0..ndim)
            .map(|d| {
                let n = grid_shape[d];
                let indices: Box<dyn Iterator<Item = u64>> = if regular || n == 0 {
                    Box::new(0..1)
                } else if n <= PROBED_CHUNKS {
                    Box::new(0..n)
                } else {
                    Box::new((0..PROBED_CHUNKS / 2).chain(n - PROBED_CHUNKS / 2..n))
                };
                let mut extents = indices.map(|i| probe(d, i)).filter_map(Result::transpose).collect::<FfiResult<Vec<u64>>>()?;
                extents.sort_unstable();
                extents.dedup();
                Ok(extents)
            })
            .collect::<FfiResult<_>>()?;
        Ok(Self { extents, regular })
    }

    pub fn ndim(&self) -> usize {
        self.extents.len()
    }

    /// The largest extent along each dimension: the shape of the largest chunk.
    pub fn largest(&self) -> Vec<u64> {
        self.extents.iter().map(|e| e.last().copied().unwrap_or(1)).collect()
    }

    /// Fail unless `shape` is the shape of a chunk of this grid (every extent one the grid
    /// has along its dimension).
    pub fn check(&self, shape: &[NonZeroU64], key: &StoreKey) -> FfiResult<()> {
        if shape.len() == self.extents.len()
            && shape.iter().zip(&self.extents).all(|(n, extents)| extents.binary_search(&n.get()).is_ok())
        {
            return Ok(());
        }
        if !self.regular && shape.len() == self.extents.len() {
            // Rectilinear: the grid may have grown since this handle was opened. Bound the
            // chunk instead: no larger than the largest chunk the grid had, or 2^27 elements.
            let largest = self.largest().into_iter().try_fold(1u64, u64::checked_mul).unwrap_or(u64::MAX);
            let elements = shape.iter().try_fold(1u64, |n, d| n.checked_mul(d.get()));
            if elements.is_some_and(|n| n <= largest.max(IRREGULAR_CHUNK_ELEMENTS)) {
                return Ok(());
            }
        }
        let shape: Vec<u64> = shape.iter().map(|n| n.get()).collect();
        Err(FfiError::invalid(format!(
            "chunk {key}: chunk shape {shape:?} is not a chunk shape of the array's grid (extents per dimension: {:?})",
            self.extents
        )))
    }
}

//! Array handles: open, create, describe, and read or write regions and single chunks.
//!
//! Region and chunk calls are planned into the same chunk jobs as the batch calls in
//! `batch.rs`, so every data call shares one implementation of the chunk I/O.

use std::ffi::c_char;
use std::num::NonZeroU64;

use zarrs::array::{Array, ArrayMetadata, ArrayMetadataOptions, ArraySubset};
use zarrs::plugin::{ExtensionName, ZarrVersion};
use zarrs::storage::{ReadableWritableListableStorage, ReadableWritableListableStorageTraits, StoreKey};

use crate::args;
use crate::batch::{ChunkJob, Destination, Source};
use crate::bounds::BoundedChain;
use crate::error::{FfiError, FfiResult, ZarrsResult};
use crate::options::ZarrsOptions;
use crate::panic::boundary;
use crate::shard::{ShardLayout, ZarrsSubchunkOrder};
use crate::storage::ZarrsStorage;

/// An open array. Create with [`zarrs_array_open`], [`zarrs_array_open_with_metadata`] or
/// [`zarrs_array_create`]; free with [`zarrs_array_free`]. It keeps its storage alive.
///
/// Thread safety: every call taking a `const ZarrsArray*` may run concurrently.
pub struct ZarrsArray {
    pub(crate) array: Array<dyn ReadableWritableListableStorageTraits>,
    pub(crate) storage: ReadableWritableListableStorage,
    /// The storage is remote: batch calls fetch and store concurrently through it.
    pub(crate) remote: Option<std::sync::Arc<crate::remote::RemoteStore>>,
    /// A checksum codec sits inside a sharding codec. zarrs' partial decoding of inner chunks
    /// strips such checksums without verifying them, so partial reads must decode whole
    /// shards while checksums are validated.
    pub(crate) inner_checksums: bool,
    /// The array-to-bytes codec is sharding.
    pub(crate) sharded: bool,
    /// The sharding layout, when the codecs are exactly one sharding codec: such shards are
    /// read and written by `shard.rs` rather than zarrs' sharding codec.
    pub(crate) shard: Option<ShardLayout>,
    /// Per dimension, every extent a chunk of the grid has along it (sorted). Caller-given
    /// chunk shapes are checked against these before anything is allocated for them.
    chunk_extents: Vec<Vec<u64>>,
    /// Whether the grid is regular. A rectilinear grid changes when zarr resizes the array
    /// (its edges grow), while this handle keeps the metadata it was opened with, so its
    /// chunk shapes are bounded rather than matched.
    regular_grid: bool,
    /// The array's codecs, decoding within the bounds the metadata sets.
    pub(crate) codecs: BoundedChain,
    /// The store and the array's path in it, for error messages.
    pub(crate) name: String,
}

/// The most inner chunks one shard may have: its index (16 bytes each) is read whole, so
/// this bounds that read at 1 GiB. Zarr writers stay far below (a 10^4 x 10^4 shard of
/// 10 x 10 chunks has 10^6).
const MAX_INNER_CHUNKS: u64 = 1 << 26;

fn invalid_metadata(message: String) -> FfiError {
    FfiError::new(ZarrsResult::ZARRS_ERROR_INVALID_METADATA, message)
}

/// Refuse metadata whose chunks could never be held in memory, or whose shards have an
/// index too large to read: such arrays would fail (or abort) on their first read, after
/// allocating on the stored bytes' say-so.
fn check_chunk_sizes(array: &Array<dyn ReadableWritableListableStorageTraits>, extents: &[Vec<u64>], codecs: &serde_json::Value) -> FfiResult<()> {
    let largest: Vec<u64> = extents.iter().map(|e| e.last().copied().unwrap_or(1)).collect();
    let elements = largest
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .ok_or_else(|| invalid_metadata(format!("chunk shape {largest:?}: the number of elements overflows")))?;
    // Fixed-size elements, or at least an 8-byte offset each for variable-length ones.
    let element_size = array.data_type().fixed_size().unwrap_or(8) as u64;
    if elements.checked_mul(element_size).is_none_or(|bytes| isize::try_from(bytes).is_err()) {
        return Err(invalid_metadata(format!(
            "chunk shape {largest:?} has {elements} elements of {element_size} bytes, more than fits in memory"
        )));
    }
    for codec in codecs.as_array().into_iter().flatten() {
        if codec["name"] != "sharding_indexed" {
            continue;
        }
        let inner: Option<Vec<u64>> = codec["configuration"]["chunk_shape"]
            .as_array()
            .and_then(|inner| inner.iter().map(serde_json::Value::as_u64).collect());
        let Some(inner) = inner.filter(|inner| inner.len() == largest.len() && !inner.contains(&0)) else {
            continue; // zarrs has validated the configuration; nothing to bound here
        };
        let count = largest.iter().zip(&inner).try_fold(1u64, |n, (&s, &i)| n.checked_mul(s.div_ceil(i)));
        if count.is_none_or(|count| count > MAX_INNER_CHUNKS) {
            return Err(invalid_metadata(format!(
                "shards of shape {largest:?} with inner chunk shape {inner:?} have {} inner chunks, more than the {MAX_INNER_CHUNKS} a shard index may describe",
                count.map_or_else(|| "too many".to_string(), |c| c.to_string())
            )));
        }
    }
    Ok(())
}

/// The extents chunks of `array`'s grid have along each dimension. A regular grid has one
/// per dimension. Other grids (rectilinear, regular-bounded) are probed along each axis;
/// past [`PROBED_CHUNKS`] chunks on an axis only both ends are probed, which is where a
/// bounded regular grid's chunks differ.
/// The most elements a caller may give a chunk of a rectilinear grid that is not one of the
/// grid's shapes when the handle was opened (the grid grows when zarr resizes the array).
const IRREGULAR_CHUNK_ELEMENTS: u64 = 1 << 27;

fn chunk_extents(array: &Array<dyn ReadableWritableListableStorageTraits>) -> FfiResult<Vec<Vec<u64>>> {
    const PROBED_CHUNKS: u64 = 1 << 16;
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
    (0..ndim)
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
        .collect()
}

/// Whether any codec nested inside a sharding codec of `codecs` (Zarr v3 metadata) is a
/// checksum codec.
fn has_inner_checksums(codecs: &serde_json::Value) -> bool {
    fn walk(codecs: &serde_json::Value, inside_shard: bool) -> bool {
        codecs.as_array().is_some_and(|codecs| {
            codecs.iter().any(|codec| match codec.get("name").and_then(serde_json::Value::as_str) {
                Some("crc32c") => inside_shard,
                Some("sharding_indexed") => codec
                    .get("configuration")
                    .and_then(|c| c.get("codecs"))
                    .is_some_and(|inner| walk(inner, true)),
                _ => false,
            })
        })
    }
    walk(codecs, false)
}

impl ZarrsArray {
    fn new(storage: &ZarrsStorage, array: Array<dyn ReadableWritableListableStorageTraits>) -> FfiResult<Self> {
        let metadata = serde_json::to_value(array.metadata()).unwrap_or_default();
        let inner_checksums = has_inner_checksums(&metadata["codecs"]);
        let sharded = metadata["codecs"]
            .as_array()
            .is_some_and(|codecs| codecs.iter().any(|c| c["name"] == "sharding_indexed"));
        let shard = ShardLayout::from_codecs_metadata(&metadata["codecs"]);
        let chunk_extents = chunk_extents(&array)?;
        let regular_grid = array.chunk_grid().name(ZarrVersion::V3).as_deref() == Some("regular");
        check_chunk_sizes(&array, &chunk_extents, &metadata["codecs"])?;
        let codecs = BoundedChain::new(array.codecs());
        let path = array.path().as_str();
        let name = if path == "/" { storage.name.clone() } else { format!("{}{path}", storage.name.trim_end_matches('/')) };
        Ok(Self {
            codecs,
            name,
            array,
            storage: storage.store.clone(),
            remote: storage.remote.clone(),
            inner_checksums,
            sharded,
            shard,
            chunk_extents,
            regular_grid,
        })
    }

    /// Name the chunk and the array in a failure to read or write the chunk at `key`, as
    /// `c/0/3 in data.zarr: ...`. Caller errors (invalid arguments) are left as they are.
    pub(crate) fn in_chunk(&self, key: &StoreKey, mut err: FfiError) -> FfiError {
        use ZarrsResult::*;
        if matches!(err.code, ZARRS_ERROR_CODEC | ZARRS_ERROR_CHECKSUM | ZARRS_ERROR_STORAGE | ZARRS_ERROR_UNSUPPORTED)
            && !err.message.starts_with(key.as_str())
        {
            err.message = format!("{key} in {}: {}", self.name, err.message);
        }
        err
    }

    /// Fail unless `shape` is the shape of a chunk of this array's grid (every extent one
    /// the grid has along its dimension).
    pub(crate) fn check_chunk_shape(&self, shape: &[NonZeroU64], key: &StoreKey) -> FfiResult<()> {
        if shape.len() == self.chunk_extents.len()
            && shape.iter().zip(&self.chunk_extents).all(|(n, extents)| extents.binary_search(&n.get()).is_ok())
        {
            return Ok(());
        }
        if !self.regular_grid && shape.len() == self.chunk_extents.len() {
            // Rectilinear: the grid may have grown since this handle was opened. Bound the
            // chunk instead: no larger than the largest chunk the grid had, or 2^27 elements.
            let largest = self
                .chunk_extents
                .iter()
                .map(|extents| extents.last().copied().unwrap_or(1))
                .try_fold(1u64, u64::checked_mul)
                .unwrap_or(u64::MAX);
            let elements = shape.iter().try_fold(1u64, |n, d| n.checked_mul(d.get()));
            if elements.is_some_and(|n| n <= largest.max(IRREGULAR_CHUNK_ELEMENTS)) {
                return Ok(());
            }
        }
        let shape: Vec<u64> = shape.iter().map(|n| n.get()).collect();
        Err(FfiError::invalid(format!(
            "chunk {key}: chunk shape {shape:?} is not a chunk shape of the array's grid (extents per dimension: {:?})",
            self.chunk_extents
        )))
    }

    pub(crate) fn element_size(&self) -> FfiResult<usize> {
        self.array.data_type().fixed_size().ok_or_else(|| {
            FfiError::new(
                ZarrsResult::ZARRS_ERROR_UNSUPPORTED,
                format!(
                    "data type {} has variable-length elements; buffer calls need fixed-size elements",
                    self.array.data_type()
                ),
            )
        })
    }

    fn check_ndim(&self, ndim: usize, name: &str) -> FfiResult<()> {
        let expected = self.array.dimensionality();
        if ndim == expected {
            Ok(())
        } else {
            Err(FfiError::invalid(format!("`{name}` has {ndim} dimensions; the array has {expected}")))
        }
    }

    /// The job for one whole chunk by grid indices.
    fn chunk_job(&self, chunk_indices: &[u64]) -> FfiResult<ChunkJob> {
        // zarrs' regular grid returns a chunk shape for any indices, so the bounds are checked
        // here: a chunk outside the grid would read as the fill value and write a stray key.
        let grid_shape = self.array.chunk_grid_shape();
        if chunk_indices.len() != grid_shape.len()
            || chunk_indices.iter().zip(grid_shape.iter()).any(|(&i, &n)| i >= n)
        {
            return Err(FfiError::invalid(format!(
                "chunk {chunk_indices:?} is outside the chunk grid of shape {grid_shape:?}"
            )));
        }
        let shape = self
            .array
            .chunk_grid()
            .chunk_shape(chunk_indices)
            .map_err(|e| FfiError::invalid(e.to_string()))?
            .ok_or_else(|| FfiError::invalid(format!("chunk {chunk_indices:?} is outside the chunk grid")))?;
        let shape_u64: Vec<u64> = shape.iter().map(|d| d.get()).collect();
        let ndim = shape.len();
        Ok(ChunkJob {
            key: self.array.chunk_key(chunk_indices),
            chunk_shape: shape,
            subset: ArraySubset::new_with_shape(shape_u64),
            buffer_start: vec![0; ndim],
        })
    }

    /// The jobs covering an array region: one per chunk it touches.
    fn region_jobs(&self, region: &ArraySubset) -> FfiResult<Vec<ChunkJob>> {
        if !region.inbounds_shape(self.array.shape()) {
            return Err(FfiError::invalid(format!(
                "region {region} is outside the array shape {:?}",
                self.array.shape()
            )));
        }
        let Some(chunks) = self
            .array
            .chunks_in_array_subset(region)
            .map_err(|e| FfiError::invalid(e.to_string()))?
        else {
            return Err(FfiError::invalid(format!("region {region} does not map onto the chunk grid")));
        };
        chunks
            .indices()
            .into_iter()
            .map(|indices| {
                let chunk_region = self.array.chunk_subset(&indices)?;
                let overlap = chunk_region.overlap(region)?;
                let mut job = self.chunk_job(&indices)?;
                job.subset = overlap.relative_to(chunk_region.start())?;
                job.buffer_start = overlap.relative_to(region.start())?.start().to_vec();
                Ok(job)
            })
            .collect()
    }
}

fn parse_metadata(json: &str) -> FfiResult<ArrayMetadata> {
    // Parse the version first: the untagged V2/V3 enum would otherwise report only "did
    // not match any variant" and lose the real reason.
    let invalid = |e: serde_json::Error| FfiError::new(ZarrsResult::ZARRS_ERROR_INVALID_METADATA, format!("invalid array metadata: {e}"));
    let value: serde_json::Value = serde_json::from_str(json).map_err(invalid)?;
    match value.get("zarr_format").and_then(serde_json::Value::as_u64) {
        Some(3) => Ok(ArrayMetadata::V3(serde_json::from_value(value).map_err(invalid)?)),
        Some(2) => Ok(ArrayMetadata::V2(serde_json::from_value(value).map_err(invalid)?)),
        _ => Err(FfiError::new(
            ZarrsResult::ZARRS_ERROR_INVALID_METADATA,
            "invalid array metadata: `zarr_format` must be 2 or 3",
        )),
    }
}

/// Shared body of the three constructors.
///
/// # Safety
/// Pointer arguments must address their stated lengths for the duration of the call.
unsafe fn open_impl(
    storage: *const ZarrsStorage,
    path: *const c_char,
    path_len: usize,
    metadata: Option<(*const c_char, usize)>,
    store_metadata: bool,
    array_out: *mut *mut ZarrsArray,
) -> FfiResult<()> {
    args::require_out(array_out, "array_out")?;
    // SAFETY: forwarded contract.
    let storage = unsafe { args::handle(storage, "storage")? };
    // SAFETY: forwarded contract.
    let path = unsafe { args::str(path, path_len, "path")? };
    let array = match metadata {
        None => Array::open(storage.store.clone(), path)?,
        Some((json, json_len)) => {
            // SAFETY: forwarded contract.
            let json = unsafe { args::str(json, json_len, "metadata")? };
            Array::new_with_metadata(storage.store.clone(), path, parse_metadata(json)?)?
        }
    };
    if store_metadata {
        // Store the document as given: zarrs would otherwise add a `_zarrs` attribute.
        array.store_metadata_opt(&ArrayMetadataOptions::default().with_include_zarrs_metadata(false))?;
    }
    let array = ZarrsArray::new(storage, array)?;
    // SAFETY: checked non-NULL above.
    unsafe { args::write_out(array_out, Box::into_raw(Box::new(array))) }
}

/// Open the array at `path` (`"/"` or `""` for the root) in `storage`, reading its metadata
/// (`zarr.json`, or `.zarray` for Zarr v2) from the store.
///
/// `array_out` receives a new handle on success; free it with [`zarrs_array_free`].
/// Unknown codecs or data types fail with `ZARRS_ERROR_UNSUPPORTED`.
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn zarrs_array_open(
    storage: *const ZarrsStorage,
    path: *const c_char,
    path_len: usize,
    array_out: *mut *mut ZarrsArray,
) -> ZarrsResult {
    // SAFETY: pointer arguments follow this function's documented contract.
    boundary(|| unsafe { open_impl(storage, path, path_len, None, false, array_out) })
}

/// Open the array at `path` in `storage` from metadata the caller already has: `metadata`
/// is the JSON document (Zarr v3 `zarr.json`, or v2 `.zarray` with `attributes` inline),
/// `metadata_len` bytes of UTF-8. Nothing is read from or written to the store.
///
/// `array_out` receives a new handle on success; free it with [`zarrs_array_free`].
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn zarrs_array_open_with_metadata(
    storage: *const ZarrsStorage,
    path: *const c_char,
    path_len: usize,
    metadata: *const c_char,
    metadata_len: usize,
    array_out: *mut *mut ZarrsArray,
) -> ZarrsResult {
    // SAFETY: pointer arguments follow this function's documented contract.
    boundary(|| unsafe { open_impl(storage, path, path_len, Some((metadata, metadata_len)), false, array_out) })
}

/// Create an array: as [`zarrs_array_open_with_metadata`], then write the metadata document
/// to the store (replacing any there).
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn zarrs_array_create(
    storage: *const ZarrsStorage,
    path: *const c_char,
    path_len: usize,
    metadata: *const c_char,
    metadata_len: usize,
    array_out: *mut *mut ZarrsArray,
) -> ZarrsResult {
    // SAFETY: pointer arguments follow this function's documented contract.
    boundary(|| unsafe { open_impl(storage, path, path_len, Some((metadata, metadata_len)), true, array_out) })
}

/// Free an array handle. NULL is a no-op.
///
/// Thread safety: the handle must not be in use by another thread.
#[no_mangle]
pub extern "C" fn zarrs_array_free(array: *mut ZarrsArray) -> ZarrsResult {
    boundary(|| {
        if !array.is_null() {
            // SAFETY: non-NULL handles come from Box::into_raw in an open function and the
            // caller frees each exactly once.
            drop(unsafe { Box::from_raw(array) });
        }
        Ok(())
    })
}

/// Write the array's dimensionality to `ndim_out`.
#[no_mangle]
pub extern "C" fn zarrs_array_dimensionality(array: *const ZarrsArray, ndim_out: *mut usize) -> ZarrsResult {
    boundary(|| {
        // SAFETY: live handle and writable out-parameter per the contract.
        let array = unsafe { args::handle(array, "array")? };
        unsafe { args::write_out(ndim_out, array.array.dimensionality()) }
    })
}

/// Copy a list of `u64` into a caller array of exactly `ndim` values.
///
/// # Safety
/// `out` must address `ndim` writable values.
unsafe fn write_dims(values: &[u64], out: *mut u64, ndim: usize, name: &str) -> FfiResult<()> {
    args::require_out(out, name)?;
    if ndim != values.len() {
        return Err(FfiError::buffer_size(name, ndim, values.len()));
    }
    // SAFETY: non-NULL (checked above) and `ndim == values.len()` writable values per the
    // forwarded contract.
    unsafe { args::write_values(out, values) };
    Ok(())
}

/// Write the array shape to `shape_out`, which holds `ndim` values (the dimensionality).
#[no_mangle]
pub extern "C" fn zarrs_array_shape(array: *const ZarrsArray, shape_out: *mut u64, ndim: usize) -> ZarrsResult {
    boundary(|| {
        // SAFETY: live handle; `shape_out` holds `ndim` values per the contract.
        let array = unsafe { args::handle(array, "array")? };
        unsafe { write_dims(array.array.shape(), shape_out, ndim, "shape_out") }
    })
}

/// Write the number of chunks along each dimension to `grid_shape_out` (`ndim` values).
#[no_mangle]
pub extern "C" fn zarrs_array_chunk_grid_shape(
    array: *const ZarrsArray,
    grid_shape_out: *mut u64,
    ndim: usize,
) -> ZarrsResult {
    boundary(|| {
        // SAFETY: live handle; `grid_shape_out` holds `ndim` values per the contract.
        let array = unsafe { args::handle(array, "array")? };
        unsafe { write_dims(array.array.chunk_grid_shape(), grid_shape_out, ndim, "grid_shape_out") }
    })
}

/// Write the shape of the chunk at `chunk_indices` (`ndim` values) to `chunk_shape_out`
/// (`ndim` values). For sharded arrays this is the shard shape.
#[no_mangle]
pub extern "C" fn zarrs_array_chunk_shape(
    array: *const ZarrsArray,
    chunk_indices: *const u64,
    ndim: usize,
    chunk_shape_out: *mut u64,
) -> ZarrsResult {
    boundary(|| {
        // SAFETY: live handle; both arrays hold `ndim` values per the contract.
        let array = unsafe { args::handle(array, "array")? };
        array.check_ndim(ndim, "chunk_indices")?;
        let indices = unsafe { args::values(chunk_indices, ndim, "chunk_indices")? };
        let job = array.chunk_job(&indices)?;
        unsafe { write_dims(&job.chunk_shape_u64(), chunk_shape_out, ndim, "chunk_shape_out") }
    })
}

/// Write the size in bytes of one element to `size_out`. Variable-length data types fail
/// with `ZARRS_ERROR_UNSUPPORTED`.
#[no_mangle]
pub extern "C" fn zarrs_array_element_size(array: *const ZarrsArray, size_out: *mut usize) -> ZarrsResult {
    boundary(|| {
        // SAFETY: live handle and writable out-parameter per the contract.
        let array = unsafe { args::handle(array, "array")? };
        let size = array.element_size()?;
        unsafe { args::write_out(size_out, size) }
    })
}

/// Copy a string into a caller buffer. `len_out` always receives the full length in bytes
/// (no NUL terminator is written); if `buf_len` is too small the call fails with
/// `ZARRS_ERROR_BUFFER_SIZE` and nothing is copied, so callers can size the buffer with a
/// first call passing `buf_len == 0`.
///
/// # Safety
/// `buf` must address `buf_len` writable bytes; `len_out` must be writable.
unsafe fn write_string(text: &str, buf: *mut c_char, buf_len: usize, len_out: *mut usize) -> FfiResult<()> {
    // SAFETY: forwarded contract.
    unsafe { args::write_out(len_out, text.len())? };
    if buf_len < text.len() {
        return Err(FfiError::buffer_size("buf", buf_len, text.len()));
    }
    // SAFETY: forwarded contract.
    let buf = unsafe { args::slice_mut(buf.cast::<u8>(), buf_len, "buf")? };
    buf[..text.len()].copy_from_slice(text.as_bytes());
    Ok(())
}

/// Copy the data type's Zarr v3 name (e.g. `uint16`, `float64`) into `buf`. See the buffer
/// convention on [`zarrs_array_metadata`].
#[no_mangle]
pub extern "C" fn zarrs_array_data_type(
    array: *const ZarrsArray,
    buf: *mut c_char,
    buf_len: usize,
    len_out: *mut usize,
) -> ZarrsResult {
    boundary(|| {
        // SAFETY: live handle; buffers per the contract.
        let array = unsafe { args::handle(array, "array")? };
        let data_type = array.array.data_type();
        // The Zarr v3 name (zarrs' Display joins the v3 and v2 names, e.g. "uint16 / <u2").
        let name = data_type
            .name(ZarrVersion::V3)
            .map_or_else(|| data_type.to_string(), |name| name.into_owned());
        unsafe { write_string(&name, buf, buf_len, len_out) }
    })
}

/// Copy the array's metadata as JSON into `buf` (`buf_len` bytes, no NUL terminator).
///
/// `len_out` always receives the length the JSON needs, also when the call fails with
/// `ZARRS_ERROR_BUFFER_SIZE` because `buf` is too small: call once with `buf_len == 0` to
/// size the buffer.
#[no_mangle]
pub extern "C" fn zarrs_array_metadata(
    array: *const ZarrsArray,
    buf: *mut c_char,
    buf_len: usize,
    len_out: *mut usize,
) -> ZarrsResult {
    boundary(|| {
        // SAFETY: live handle; buffers per the contract.
        let array = unsafe { args::handle(array, "array")? };
        let json = serde_json::to_string(array.array.metadata())
            .map_err(|e| FfiError::new(ZarrsResult::ZARRS_ERROR_INVALID_METADATA, e.to_string()))?;
        unsafe { write_string(&json, buf, buf_len, len_out) }
    })
}

/// Copy the store key of the chunk at `chunk_indices` (`ndim` values) into `buf`. See the
/// buffer convention on [`zarrs_array_metadata`].
#[no_mangle]
pub extern "C" fn zarrs_array_chunk_key(
    array: *const ZarrsArray,
    chunk_indices: *const u64,
    ndim: usize,
    buf: *mut c_char,
    buf_len: usize,
    len_out: *mut usize,
) -> ZarrsResult {
    boundary(|| {
        // SAFETY: live handle; buffers per the contract.
        let array = unsafe { args::handle(array, "array")? };
        array.check_ndim(ndim, "chunk_indices")?;
        let indices = unsafe { args::values(chunk_indices, ndim, "chunk_indices")? };
        let job = array.chunk_job(&indices)?;
        unsafe { write_string(job.key.as_str(), buf, buf_len, len_out) }
    })
}

/// Parse a region given as start and shape (`ndim` values each).
///
/// # Safety
/// Both pointers must address `ndim` values.
unsafe fn region(array: &ZarrsArray, start: *const u64, shape: *const u64, ndim: usize) -> FfiResult<ArraySubset> {
    array.check_ndim(ndim, "start")?;
    // SAFETY: forwarded contract.
    let start = unsafe { args::values(start, ndim, "start")? };
    // SAFETY: forwarded contract.
    let shape = unsafe { args::values(shape, ndim, "shape")? };
    args::region(&start, &shape, "region")
}

/// Read the region `start`/`shape` (`ndim` values each) into `out`, a C-order buffer of
/// exactly that shape (`out_len` bytes). Missing chunks read as the fill value.
///
/// Thread safety: safe to call concurrently on the same array.
#[no_mangle]
pub extern "C" fn zarrs_array_retrieve_subset(
    array: *const ZarrsArray,
    options: *const ZarrsOptions,
    start: *const u64,
    shape: *const u64,
    ndim: usize,
    out: *mut u8,
    out_len: usize,
) -> ZarrsResult {
    boundary(|| {
        // SAFETY: every pointer addresses its stated length per the contract.
        let array = unsafe { args::handle(array, "array")? };
        let options = unsafe { ZarrsOptions::from_ptr(options) };
        let region = unsafe { region(array, start, shape, ndim)? };
        let out = unsafe { args::slice_mut(out, out_len, "out")? };
        let destination = Destination::new(out, region.shape(), array.element_size()?, "out")?;
        array.read_jobs(&options, array.region_jobs(&region)?, &destination)?;
        Ok(())
    })
}

/// Write `data`, a C-order buffer of shape `shape` (`data_len` bytes), to the region
/// `start`/`shape` (`ndim` values each). Chunks covered in part are read, merged and
/// rewritten; each chunk is replaced atomically.
///
/// Thread safety: concurrent writes must not touch the same chunks.
#[no_mangle]
pub extern "C" fn zarrs_array_store_subset(
    array: *const ZarrsArray,
    options: *const ZarrsOptions,
    start: *const u64,
    shape: *const u64,
    ndim: usize,
    data: *const u8,
    data_len: usize,
) -> ZarrsResult {
    boundary(|| {
        // SAFETY: every pointer addresses its stated length per the contract.
        let array = unsafe { args::handle(array, "array")? };
        let options = unsafe { ZarrsOptions::from_ptr(options) };
        let region = unsafe { region(array, start, shape, ndim)? };
        let data = unsafe { args::slice(data, data_len, "data")? };
        let source = Source::new(data, region.shape(), array.element_size()?)?;
        array.write_jobs(&options, array.region_jobs(&region)?, &source)
    })
}

/// Read and decode the whole chunk at `chunk_indices` (`ndim` values) into `out`, a C-order
/// buffer of the chunk shape (`out_len` bytes). If `present_out` is not NULL it receives 1
/// if the chunk was stored and 0 if not (`out` then holds the fill value).
///
/// Thread safety: safe to call concurrently on the same array.
#[no_mangle]
pub extern "C" fn zarrs_array_retrieve_chunk(
    array: *const ZarrsArray,
    options: *const ZarrsOptions,
    chunk_indices: *const u64,
    ndim: usize,
    out: *mut u8,
    out_len: usize,
    present_out: *mut u8,
) -> ZarrsResult {
    boundary(|| {
        // SAFETY: every pointer addresses its stated length per the contract.
        let array = unsafe { args::handle(array, "array")? };
        let options = unsafe { ZarrsOptions::from_ptr(options) };
        array.check_ndim(ndim, "chunk_indices")?;
        let indices = unsafe { args::values(chunk_indices, ndim, "chunk_indices")? };
        let job = array.chunk_job(&indices)?;
        let shape = job.chunk_shape_u64();
        let out = unsafe { args::slice_mut(out, out_len, "out")? };
        let destination = Destination::new(out, &shape, array.element_size()?, "out")?;
        let present = array.read_jobs(&options, vec![job], &destination)?;
        if !present_out.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { args::write_out(present_out, u8::from(present[0]))? };
        }
        Ok(())
    })
}

/// Encode and store the whole chunk at `chunk_indices` (`ndim` values) from `data`, a
/// C-order buffer of the chunk shape (`data_len` bytes). A chunk that is entirely the fill
/// value is erased unless `options->store_empty_chunks`.
///
/// Thread safety: concurrent writes must not touch the same chunk.
#[no_mangle]
pub extern "C" fn zarrs_array_store_chunk(
    array: *const ZarrsArray,
    options: *const ZarrsOptions,
    chunk_indices: *const u64,
    ndim: usize,
    data: *const u8,
    data_len: usize,
) -> ZarrsResult {
    boundary(|| {
        // SAFETY: every pointer addresses its stated length per the contract.
        let array = unsafe { args::handle(array, "array")? };
        let options = unsafe { ZarrsOptions::from_ptr(options) };
        array.check_ndim(ndim, "chunk_indices")?;
        let indices = unsafe { args::values(chunk_indices, ndim, "chunk_indices")? };
        let job = array.chunk_job(&indices)?;
        let shape = job.chunk_shape_u64();
        let data = unsafe { args::slice(data, data_len, "data")? };
        let source = Source::new(data, &shape, array.element_size()?)?;
        array.write_jobs(&options, vec![job], &source)
    })
}

/// Erase the chunk at `chunk_indices` (`ndim` values); it then reads as the fill value.
/// Erasing a missing chunk succeeds.
///
/// Thread safety: concurrent writes must not touch the same chunk.
#[no_mangle]
pub extern "C" fn zarrs_array_erase_chunk(
    array: *const ZarrsArray,
    chunk_indices: *const u64,
    ndim: usize,
) -> ZarrsResult {
    boundary(|| {
        // SAFETY: every pointer addresses its stated length per the contract.
        let array = unsafe { args::handle(array, "array")? };
        array.check_ndim(ndim, "chunk_indices")?;
        let indices = unsafe { args::values(chunk_indices, ndim, "chunk_indices")? };
        let job = array.chunk_job(&indices)?;
        array.storage.erase(&job.key)?;
        Ok(())
    })
}

/// Choose how the inner chunks of a shard are ordered in the bytes of shards this array
/// writes from now on (default `ZARRS_SUBCHUNK_ORDER_MORTON`, as zarr-python 3.4). Reads
/// accept any order. `order` is a `ZarrsSubchunkOrder` value; others fail with
/// `ZARRS_ERROR_INVALID_ARGUMENT`. Arrays whose codecs are not exactly one sharding codec
/// write in zarrs' own order, and for them this call only validates `order`.
///
/// Thread safety: safe to call while other calls use the array; writes already running
/// may use either order.
#[no_mangle]
pub extern "C" fn zarrs_array_set_subchunk_write_order(array: *const ZarrsArray, order: i32) -> ZarrsResult {
    boundary(|| {
        // SAFETY: a live handle per the contract.
        let array = unsafe { args::handle(array, "array")? };
        let order = match order {
            0 => ZarrsSubchunkOrder::ZARRS_SUBCHUNK_ORDER_MORTON,
            1 => ZarrsSubchunkOrder::ZARRS_SUBCHUNK_ORDER_LEXICOGRAPHIC,
            2 => ZarrsSubchunkOrder::ZARRS_SUBCHUNK_ORDER_COLEXICOGRAPHIC,
            _ => return Err(FfiError::invalid(format!("{order} is not a ZarrsSubchunkOrder"))),
        };
        if let Some(shard) = &array.shard {
            shard.set_write_order(order);
        }
        Ok(())
    })
}

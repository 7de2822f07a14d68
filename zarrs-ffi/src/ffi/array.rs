//! The `extern "C"` calls on array handles: open, create, describe, and read or write
//! regions and single chunks.

use std::borrow::Cow;
use std::ffi::c_char;

use zarrs::array::ArraySubset;

use crate::args;
use crate::engine::ZarrsSubchunkOrder;
use crate::error::{FfiError, FfiResult, ZarrsResult};
use crate::handles::{ZarrsArray, ZarrsStorage};
use crate::layout::{Destination, Source};
use crate::options::ZarrsOptions;
use crate::panic::boundary;
use crate::registry;
use zarrs::plugin::{ExtensionName, ZarrVersion};

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
    // SAFETY: forwarded contract: a live storage handle, and `path_len` and `metadata.1`
    // readable bytes at `path` and `metadata.0`.
    let (storage, path, metadata) = unsafe {
        let storage = args::handle(storage, "storage")?;
        let path = args::str(path, path_len, "path")?;
        let metadata = match metadata {
            None => None,
            Some((json, json_len)) => Some(args::str(json, json_len, "metadata")?),
        };
        (storage, path, metadata)
    };
    let array = ZarrsArray::open(storage, path, metadata, store_metadata)?;
    // SAFETY: checked non-NULL above; a writable pointer slot per the contract.
    unsafe { args::write_out(array_out, registry::issue(array)) }
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

/// Free an array handle. NULL is a no-op. A handle freed already, of
/// another kind, or not from this library is `ZARRS_ERROR_INVALID_ARGUMENT` and nothing is
/// freed.
///
/// Thread safety: the handle must not be in use by another thread.
#[no_mangle]
pub extern "C" fn zarrs_array_free(array: *mut ZarrsArray) -> ZarrsResult {
    boundary(|| {
        drop(registry::retire(array, "array")?);
        Ok(())
    })
}

/// Write the array's dimensionality to `ndim_out`.
#[no_mangle]
pub extern "C" fn zarrs_array_dimensionality(array: *const ZarrsArray, ndim_out: *mut usize) -> ZarrsResult {
    boundary(|| {
        // SAFETY: a live handle per the contract.
        let array = unsafe { args::handle(array, "array")? };
        // SAFETY: a writable out-parameter per the contract (NULL is an error).
        unsafe { args::write_out(ndim_out, array.array().dimensionality()) }
    })
}

/// Write the array shape to `shape_out`, which holds `ndim` values (the dimensionality).
#[no_mangle]
pub extern "C" fn zarrs_array_shape(array: *const ZarrsArray, shape_out: *mut u64, ndim: usize) -> ZarrsResult {
    boundary(|| {
        // SAFETY: a live handle per the contract.
        let array = unsafe { args::handle(array, "array")? };
        // SAFETY: `shape_out` holds `ndim` writable values per the contract.
        unsafe { args::write_dims(array.array().shape(), shape_out, ndim, "shape_out") }
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
        // SAFETY: a live handle per the contract.
        let array = unsafe { args::handle(array, "array")? };
        // SAFETY: `grid_shape_out` holds `ndim` writable values per the contract.
        unsafe { args::write_dims(array.array().chunk_grid_shape(), grid_shape_out, ndim, "grid_shape_out") }
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
        // SAFETY: a live handle and `ndim` values at `chunk_indices` per the contract.
        let (array, indices) = unsafe {
            let array = args::handle(array, "array")?;
            (array, checked_indices(array, chunk_indices, ndim)?)
        };
        let job = array.chunk_job(&indices)?;
        // SAFETY: `chunk_shape_out` holds `ndim` writable values per the contract.
        unsafe { args::write_dims(&job.chunk_shape_u64(), chunk_shape_out, ndim, "chunk_shape_out") }
    })
}

/// Write the size in bytes of one element to `size_out`. Variable-length data types fail
/// with `ZARRS_ERROR_UNSUPPORTED`.
#[no_mangle]
pub extern "C" fn zarrs_array_element_size(array: *const ZarrsArray, size_out: *mut usize) -> ZarrsResult {
    boundary(|| {
        // SAFETY: a live handle per the contract.
        let array = unsafe { args::handle(array, "array")? };
        let size = array.element_size()?;
        // SAFETY: a writable out-parameter per the contract (NULL is an error).
        unsafe { args::write_out(size_out, size) }
    })
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
        // SAFETY: a live handle per the contract.
        let array = unsafe { args::handle(array, "array")? };
        let data_type = array.array().data_type();
        // The Zarr v3 name (zarrs' Display joins the v3 and v2 names, e.g. "uint16 / <u2").
        let name = data_type
            .name(ZarrVersion::V3)
            .map_or_else(|| data_type.to_string(), |name| name.into_owned());
        // SAFETY: `buf_len` writable bytes at `buf` and a writable `len_out` per the contract.
        unsafe { args::write_string(&name, buf, buf_len, len_out) }
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
        // SAFETY: a live handle per the contract.
        let array = unsafe { args::handle(array, "array")? };
        let json = serde_json::to_string(array.array().metadata())
            .map_err(|e| FfiError::new(ZarrsResult::ZARRS_ERROR_INVALID_METADATA, e.to_string()))?;
        // SAFETY: `buf_len` writable bytes at `buf` and a writable `len_out` per the contract.
        unsafe { args::write_string(&json, buf, buf_len, len_out) }
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
        // SAFETY: a live handle and `ndim` values at `chunk_indices` per the contract.
        let (array, indices) = unsafe {
            let array = args::handle(array, "array")?;
            (array, checked_indices(array, chunk_indices, ndim)?)
        };
        let job = array.chunk_job(&indices)?;
        // SAFETY: `buf_len` writable bytes at `buf` and a writable `len_out` per the contract.
        unsafe { args::write_string(job.key.as_str(), buf, buf_len, len_out) }
    })
}

/// Read chunk indices (`ndim` values), failing first if `ndim` is not the array's.
///
/// # Safety
/// `chunk_indices` must address `ndim` values.
unsafe fn checked_indices<'a>(array: &ZarrsArray, chunk_indices: *const u64, ndim: usize) -> FfiResult<Cow<'a, [u64]>> {
    array.check_ndim(ndim, "chunk_indices")?;
    // SAFETY: forwarded contract.
    unsafe { args::values(chunk_indices, ndim, "chunk_indices") }
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
        // SAFETY: a live handle, NULL or valid options, `ndim` values at `start` and `shape`
        // and `out_len` writable bytes at `out`, per the contract.
        let (array, options, region, out) = unsafe {
            let array = args::handle(array, "array")?;
            let options = ZarrsOptions::from_ptr(options);
            let region = region(array, start, shape, ndim)?;
            (array, options, region, args::slice_mut(out, out_len, "out")?)
        };
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
        // SAFETY: a live handle, NULL or valid options, `ndim` values at `start` and `shape`
        // and `data_len` readable bytes at `data`, per the contract.
        let (array, options, region, data) = unsafe {
            let array = args::handle(array, "array")?;
            let options = ZarrsOptions::from_ptr(options);
            let region = region(array, start, shape, ndim)?;
            (array, options, region, args::slice(data, data_len, "data")?)
        };
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
        // SAFETY: a live handle, NULL or valid options, `ndim` values at `chunk_indices` and
        // `out_len` writable bytes at `out`, per the contract.
        let (array, options, job, out) = unsafe {
            let array = args::handle(array, "array")?;
            let options = ZarrsOptions::from_ptr(options);
            let job = array.chunk_job(&checked_indices(array, chunk_indices, ndim)?)?;
            (array, options, job, args::slice_mut(out, out_len, "out")?)
        };
        let shape = job.chunk_shape_u64();
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
        // SAFETY: a live handle, NULL or valid options, `ndim` values at `chunk_indices` and
        // `data_len` readable bytes at `data`, per the contract.
        let (array, options, job, data) = unsafe {
            let array = args::handle(array, "array")?;
            let options = ZarrsOptions::from_ptr(options);
            let job = array.chunk_job(&checked_indices(array, chunk_indices, ndim)?)?;
            (array, options, job, args::slice(data, data_len, "data")?)
        };
        let shape = job.chunk_shape_u64();
        let source = Source::new(data, &shape, array.element_size()?)?;
        array.write_jobs(&options, vec![job], &source)
    })
}

/// Erase the chunk at `chunk_indices` (`ndim` values); it then reads as the fill value.
/// Erasing a missing chunk succeeds. With `options->fsync` and a filesystem storage, the
/// chunk's directory is synced after the file is removed, so the erase survives a power
/// loss once this returns. `options` may be NULL (defaults).
///
/// Thread safety: concurrent writes must not touch the same chunk.
#[no_mangle]
pub extern "C" fn zarrs_array_erase_chunk(
    array: *const ZarrsArray,
    options: *const ZarrsOptions,
    chunk_indices: *const u64,
    ndim: usize,
) -> ZarrsResult {
    boundary(|| {
        // SAFETY: a live handle, NULL or valid options and `ndim` values at `chunk_indices`
        // per the contract.
        let (array, options, indices) = unsafe {
            let array = args::handle(array, "array")?;
            let options = ZarrsOptions::from_ptr(options);
            (array, options, checked_indices(array, chunk_indices, ndim)?)
        };
        array.erase_chunk(&options, &indices)
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
        array.set_subchunk_write_order(order);
        Ok(())
    })
}

/// Keep at most `max_bytes` of shard indexes in this array's shard-index cache (0: keep
/// none; default 32 MiB). Reads of part of a shard from remote storage keep the shard's
/// index there, so the next read of that shard asks only for its inner chunks, on the
/// condition that the shard is unchanged (`If-Match` its ETag): a shard rewritten since, by
/// anyone, is read with its new index, and a store that gives no strong ETag is not cached.
/// Writes through this handle drop the indexes of what they write. Local storage and
/// arrays without sharding keep no indexes; for them this call does nothing.
///
/// Thread safety: safe to call while other calls use the array.
#[no_mangle]
pub extern "C" fn zarrs_array_set_shard_index_cache(array: *const ZarrsArray, max_bytes: u64) -> ZarrsResult {
    boundary(|| {
        // SAFETY: a live handle per the contract.
        let array = unsafe { args::handle(array, "array")? };
        array.set_index_cache_budget(max_bytes);
        Ok(())
    })
}

/// Write the number of shard indexes this array's shard-index cache holds to `entries_out`,
/// and the bytes they count against its budget (their bytes, keys and bookkeeping) to
/// `bytes_out`.
///
/// Thread safety: safe from any thread; concurrent reads may change the figures.
#[no_mangle]
pub extern "C" fn zarrs_array_shard_index_cache_usage(array: *const ZarrsArray, entries_out: *mut u64, bytes_out: *mut u64) -> ZarrsResult {
    boundary(|| {
        args::require_out(entries_out, "entries_out")?;
        args::require_out(bytes_out, "bytes_out")?;
        // SAFETY: a live handle per the contract.
        let array = unsafe { args::handle(array, "array")? };
        let (entries, bytes) = array.index_cache_usage();
        // SAFETY: both checked non-NULL above; writable slots per the contract.
        unsafe {
            args::write_out(entries_out, entries)?;
            args::write_out(bytes_out, bytes)
        }
    })
}

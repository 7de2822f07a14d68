//! The `extern "C"` batch calls: many chunks read into, or written from, one caller buffer.
//!
//! Chunks are named by store keys and placed by geometry (`layout::parse_jobs`); the array
//! handle runs the jobs in parallel, with chunk versus codec concurrency planned by
//! [`ZarrsOptions::plan`].

use std::ffi::c_char;

use crate::args;
use crate::error::{FfiError, FfiResult, ZarrsResult};
use crate::handles::ZarrsArray;
use crate::layout::{ChunkJob, Destination};
use crate::options::ZarrsOptions;
use crate::panic::boundary;
use crate::process::warm::Burst;

/// Parse keys and geometry straight from C arguments.
///
/// # Safety
/// The pointers must address the stated lengths for the duration of the call.
pub(super) unsafe fn jobs_from_raw(
    array: &ZarrsArray,
    num_chunks: usize,
    keys: *const c_char,
    keys_len: usize,
    key_offsets: *const u64,
    geometry: *const u64,
    geometry_len: usize,
) -> FfiResult<Vec<ChunkJob>> {
    // SAFETY: forwarded contract of the exported function.
    let keys = unsafe { args::str(keys, keys_len, "keys")? };
    // SAFETY: as above; `key_offsets` holds `num_chunks + 1` values by contract.
    let key_offsets = unsafe { args::values(key_offsets, args::offsets_len(num_chunks)?, "key_offsets")? };
    // SAFETY: as above.
    let geometry = unsafe { args::values(geometry, geometry_len, "geometry")? };
    array.parse_jobs(num_chunks, Some((keys, &key_offsets)), &geometry)
}

/// Check the output arguments of a batch read ([`zarrs_array_read_chunks`] and its
/// asynchronous twin `zarrs_array_read_chunks_start`): `out_shape` (the array's
/// dimensionality) and `present_out` (one byte per chunk). Returns the shape and `out`,
/// which the caller checks holds that shape by making it a `Destination`.
///
/// # Safety
/// `out_shape` must address the array's dimensionality values and `out` `out_len` writable
/// bytes, for `'a`.
pub(super) unsafe fn read_outputs<'a>(
    array: &ZarrsArray,
    num_chunks: usize,
    out: *mut u8,
    out_len: usize,
    out_shape: *const u64,
    present_out: *mut u8,
    present_len: usize,
) -> FfiResult<(Vec<u64>, &'a mut [u8])> {
    // SAFETY: forwarded contract of this function.
    let (out_shape, out) = unsafe {
        let out_shape = args::values(out_shape, array.array().dimensionality(), "out_shape")?.into_owned();
        (out_shape, args::slice_mut(out, out_len, "out")?)
    };
    if present_len != num_chunks {
        return Err(FfiError::buffer_size("present_out", present_len, num_chunks));
    }
    args::require_out(present_out, "present_out")?;
    Ok((out_shape, out))
}

/// Read a batch of chunks into one caller buffer, in parallel.
///
/// - `array`, `options` (NULL: defaults).
/// - `num_chunks`; `keys`/`keys_len`: the store keys back to back (UTF-8);
///   `key_offsets`: `num_chunks + 1` byte offsets into `keys` (key `i` is
///   `keys[key_offsets[i]..key_offsets[i+1]]`).
/// - `geometry`/`geometry_len` (a count of `uint64_t`, `num_chunks * 4 * ndim`): per chunk,
///   `ndim` values each of chunk shape, subset start, subset shape (the region of the chunk
///   to read, in chunk coordinates) and buffer start (where that region goes in `out`).
/// - `out`/`out_len` (bytes): a C-order buffer of shape `out_shape` (`ndim` values, the
///   array's dimensionality) and the array's element size.
/// - `present_out`/`present_len` (`num_chunks` bytes): set to 1 where the chunk was stored
///   and 0 where it was missing and its region was filled with the fill value.
///
/// Precondition: the regions in `out` do not overlap. `out` is written only inside them.
/// On failure the regions of `out` may be partly written and `present_out` is untouched.
///
/// Thread safety: safe to call concurrently on the same array.
#[no_mangle]
pub extern "C" fn zarrs_array_read_chunks(
    array: *const ZarrsArray,
    options: *const ZarrsOptions,
    num_chunks: usize,
    keys: *const c_char,
    keys_len: usize,
    key_offsets: *const u64,
    geometry: *const u64,
    geometry_len: usize,
    out: *mut u8,
    out_len: usize,
    out_shape: *const u64,
    present_out: *mut u8,
    present_len: usize,
) -> ZarrsResult {
    boundary(|| {
        let _burst = Burst::begin();
        // SAFETY: every pointer below addresses the length stated beside it, per this
        // function's contract, for the duration of the call.
        let (array, options, jobs, out_shape, out) = unsafe {
            let array = args::handle(array, "array")?;
            let options = ZarrsOptions::from_ptr(options);
            let jobs = jobs_from_raw(array, num_chunks, keys, keys_len, key_offsets, geometry, geometry_len)?;
            let (out_shape, out) = read_outputs(array, num_chunks, out, out_len, out_shape, present_out, present_len)?;
            (array, options, jobs, out_shape, out)
        };
        let destination = Destination::new(out, &out_shape, array.element_size()?, "out")?;
        let present = array.read_jobs(&options, jobs, &destination)?;
        // SAFETY: non-NULL (checked above) and `present_len` writable bytes per the contract.
        let present_out = unsafe { args::slice_mut(present_out, present_len, "present_out")? };
        for (slot, found) in present_out.iter_mut().zip(present) {
            *slot = u8::from(found);
        }
        Ok(())
    })
}

/// Write a batch of chunks from one caller buffer, in parallel.
///
/// Arguments as for [`zarrs_array_read_chunks`], except that the buffer start of each chunk
/// says where its values are in `value`, a C-order buffer of `value_ndim` dimensions
/// `value_shape`. With `value_ndim == 0` the value is one element broadcast to every region.
/// Chunks written only in part are read, merged and rewritten. Chunks that end up entirely
/// the fill value are erased unless `options->store_empty_chunks`.
///
/// Each chunk is replaced atomically: on failure, every chunk holds its old or its new
/// value. Precondition: no two chunks of one call share a key.
///
/// Thread safety: safe to call concurrently on the same array for disjoint sets of chunks.
#[no_mangle]
pub extern "C" fn zarrs_array_write_chunks(
    array: *const ZarrsArray,
    options: *const ZarrsOptions,
    num_chunks: usize,
    keys: *const c_char,
    keys_len: usize,
    key_offsets: *const u64,
    geometry: *const u64,
    geometry_len: usize,
    value: *const u8,
    value_len: usize,
    value_shape: *const u64,
    value_ndim: usize,
) -> ZarrsResult {
    boundary(|| {
        let _burst = Burst::begin();
        // SAFETY: every pointer below addresses the length stated beside it, per this
        // function's contract, for the duration of the call.
        let (array, options, jobs, source) = unsafe {
            let array = args::handle(array, "array")?;
            let options = ZarrsOptions::from_ptr(options);
            let jobs = jobs_from_raw(array, num_chunks, keys, keys_len, key_offsets, geometry, geometry_len)?;
            (array, options, jobs, super::source(array, value, value_len, value_shape, value_ndim)?)
        };
        array.write_jobs(&options, jobs, &source)
    })
}

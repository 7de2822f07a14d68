//! The `extern "C"` gathers: picked elements of many chunks decoded straight into one
//! caller buffer, without the caller decoding bounding boxes and indexing them itself.
//!
//! Chunks are named by store keys (as in the batch calls) with their chunk shapes; each
//! chunk is read and decoded once, only as far as its picks need (a shard: its index and the
//! inner chunks holding picks), in parallel across chunks.

use std::ffi::c_char;

use crate::args;
use crate::error::{FfiError, FfiResult, ZarrsResult};
use crate::handles::ZarrsArray;
use crate::layout::{GatherJob, GatherTarget, PickPool};
use crate::options::ZarrsOptions;
use crate::panic::boundary;
use crate::process::warm::Burst;

/// Write `present` (one flag per chunk) to the caller's `present_out`.
///
/// # Safety
/// `present_out` must address `present.len()` writable bytes (checked non-NULL before).
unsafe fn write_present(present_out: *mut u8, present: &[bool]) -> FfiResult<()> {
    // SAFETY: forwarded contract.
    let out = unsafe { args::slice_mut(present_out, present.len(), "present_out")? };
    for (slot, &found) in out.iter_mut().zip(present) {
        *slot = u8::from(found);
    }
    Ok(())
}

/// Check the `present_out` arguments before any work: `num_chunks` bytes, not NULL.
fn check_present(present_out: *mut u8, present_len: usize, num_chunks: usize) -> FfiResult<()> {
    if present_len != num_chunks {
        return Err(FfiError::buffer_size("present_out", present_len, num_chunks));
    }
    args::require_out(present_out, "present_out")
}

/// Run a parsed gather and report presence.
///
/// # Safety
/// `present_out` must address `present_len` writable bytes.
unsafe fn run(
    array: &ZarrsArray,
    options: &ZarrsOptions,
    jobs: Vec<GatherJob>,
    target: &GatherTarget,
    present_out: *mut u8,
) -> FfiResult<()> {
    let present = array.gather_jobs(options, jobs, target)?;
    // SAFETY: forwarded contract; `present_len == num_chunks == present.len()` was checked.
    unsafe { write_present(present_out, &present) }
}

/// Gather an orthogonal selection of a batch of chunks into one caller buffer, in parallel:
/// per chunk and axis, a list of indices into the chunk and the matching positions along the
/// same axis of `out`; the chunk's picks are the outer product of its axes' lists (what
/// zarr's orthogonal indexing hands a codec pipeline: integer arrays in any order, slices
/// with steps, masks as indices, single integers).
///
/// - `array`, `options` (NULL: defaults).
/// - `num_chunks`; `keys`/`keys_len`/`key_offsets`: the store keys as for
///   [`zarrs_array_read_chunks`].
/// - `chunk_shapes`/`chunk_shapes_len` (a count of `uint64_t`, `num_chunks * ndim`): each
///   chunk's shape, one of the array's grid.
/// - `picks`/`picks_len` (`num_chunks * ndim * 2`): per chunk and axis, a `(start, count)`
///   pair: the axis' picks are `indices[start..start + count]` of the chunk going to
///   `positions[start..start + count]` of `out` (chunks with the same picks along an axis may
///   share them). Every count is at least 1.
/// - `indices`, `positions`: `pool_len` values each.
/// - `out`/`out_len` (bytes): a C-order buffer of shape `out_shape` (`ndim` values) and the
///   array's element size.
/// - `present_out`/`present_len` (`num_chunks` bytes): 1 where the chunk is stored, 0 where
///   it is missing and its picks were set to the fill value.
///
/// Every index is checked against its chunk's shape and every position against
/// `out_shape` before anything is read. Precondition: no element of `out` is picked twice
/// (by two chunks, or twice by one). `out` is written only where picked. On failure `out`
/// may be partly written and `present_out` is untouched.
///
/// Thread safety: safe to call concurrently on the same array.
#[no_mangle]
pub extern "C" fn zarrs_array_gather_orthogonal(
    array: *const ZarrsArray,
    options: *const ZarrsOptions,
    num_chunks: usize,
    keys: *const c_char,
    keys_len: usize,
    key_offsets: *const u64,
    chunk_shapes: *const u64,
    chunk_shapes_len: usize,
    picks: *const u64,
    picks_len: usize,
    indices: *const u64,
    positions: *const u64,
    pool_len: usize,
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
        let (array, options, keys, key_offsets, chunk_shapes, picks, indices, positions, out_shape, out) = unsafe {
            let array = args::handle(array, "array")?;
            let ndim = array.array().dimensionality();
            (
                array,
                ZarrsOptions::from_ptr(options),
                args::str(keys, keys_len, "keys")?,
                args::values(key_offsets, args::offsets_len(num_chunks)?, "key_offsets")?,
                args::values(chunk_shapes, chunk_shapes_len, "chunk_shapes")?,
                args::values(picks, picks_len, "picks")?,
                args::values(indices, pool_len, "indices")?,
                args::values(positions, pool_len, "positions")?,
                args::values(out_shape, ndim, "out_shape")?,
                args::slice_mut(out, out_len, "out")?,
            )
        };
        check_present(present_out, present_len, num_chunks)?;
        let pool = PickPool { indices: &indices, positions: &positions };
        let jobs = array.parse_orthogonal(num_chunks, (keys, &key_offsets), &chunk_shapes, &picks, &pool)?;
        let target = GatherTarget::new(out, &out_shape, array.element_size()?, "out")?;
        // SAFETY: `present_out` is non-NULL with `present_len == num_chunks` bytes (checked).
        unsafe { run(array, &options, jobs, &target, present_out) }
    })
}

/// Gather points of a batch of chunks into one caller buffer, in parallel: per chunk, a
/// list of coordinates in the chunk, each with the element of `out` it goes to (what zarr's
/// coordinate and mask indexing hands a codec pipeline).
///
/// - `array`, `options` (NULL: defaults); `num_chunks`, `keys`/`keys_len`/`key_offsets`,
///   `chunk_shapes`/`chunk_shapes_len`: as for [`zarrs_array_gather_orthogonal`].
/// - `counts` (`num_chunks` values): how many of the points belong to each chunk, in order;
///   every count is at least 1 and they add up to `num_points`.
/// - `coords`/`coords_len` (`num_points * ndim`): each point's coordinates in its chunk.
/// - `offsets` (`num_points` values): each point's element offset in `out`.
/// - `out`/`out_len` (bytes): a buffer of elements of the array's element size, addressed by
///   element offset.
/// - `present_out`/`present_len`: as for [`zarrs_array_gather_orthogonal`].
///
/// Every coordinate is checked against its chunk's shape and every offset against `out`
/// before anything is read. Precondition: no two points have the same offset. On failure
/// `out` may be partly written and `present_out` is untouched.
///
/// Thread safety: safe to call concurrently on the same array.
#[no_mangle]
pub extern "C" fn zarrs_array_gather_points(
    array: *const ZarrsArray,
    options: *const ZarrsOptions,
    num_chunks: usize,
    keys: *const c_char,
    keys_len: usize,
    key_offsets: *const u64,
    chunk_shapes: *const u64,
    chunk_shapes_len: usize,
    counts: *const u64,
    coords: *const u64,
    coords_len: usize,
    offsets: *const u64,
    num_points: usize,
    out: *mut u8,
    out_len: usize,
    present_out: *mut u8,
    present_len: usize,
) -> ZarrsResult {
    boundary(|| {
        let _burst = Burst::begin();
        // SAFETY: every pointer below addresses the length stated beside it, per this
        // function's contract, for the duration of the call.
        let (array, options, keys, key_offsets, chunk_shapes, counts, coords, offsets, out) = unsafe {
            (
                args::handle(array, "array")?,
                ZarrsOptions::from_ptr(options),
                args::str(keys, keys_len, "keys")?,
                args::values(key_offsets, args::offsets_len(num_chunks)?, "key_offsets")?,
                args::values(chunk_shapes, chunk_shapes_len, "chunk_shapes")?,
                args::values(counts, num_chunks, "counts")?,
                args::values(coords, coords_len, "coords")?,
                args::values(offsets, num_points, "offsets")?,
                args::slice_mut(out, out_len, "out")?,
            )
        };
        check_present(present_out, present_len, num_chunks)?;
        let element_size = array.element_size()?;
        if out.len() % element_size != 0 {
            return Err(FfiError::invalid(format!(
                "`out_len` {} is not a multiple of the element size {element_size}",
                out.len()
            )));
        }
        let elements = (out.len() / element_size) as u64;
        let jobs = array.parse_points(num_chunks, (keys, &key_offsets), &chunk_shapes, &counts, &coords, &offsets)?;
        let target = GatherTarget::new(out, &[elements], element_size, "out")?;
        // SAFETY: `present_out` is non-NULL with `present_len == num_chunks` bytes (checked).
        unsafe { run(array, &options, jobs, &target, present_out) }
    })
}

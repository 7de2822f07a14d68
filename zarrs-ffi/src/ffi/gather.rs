//! The `extern "C"` gathers: picked elements of many chunks decoded straight into one
//! caller buffer, without the caller decoding bounding boxes and indexing them itself.
//!
//! Chunks are named by store keys (as in the batch calls) with their chunk shapes; each
//! chunk is read and decoded once, only as far as its picks need (a shard: its index and the
//! inner chunks holding picks), in parallel across chunks.

use std::borrow::Cow;
use std::ffi::c_char;

use super::completion::{start_on, Caller, ZarrsCompletionQueue};
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

/// What a gather picks, per chunk, as its call passed it.
enum Picked<'a> {
    /// `(start, count)` pairs per chunk and axis into `indices` and `positions`.
    Orthogonal { pairs: Cow<'a, [u64]>, indices: Cow<'a, [u64]>, positions: Cow<'a, [u64]> },
    /// `counts[i]` points of chunk `i`: coordinates in the chunk, element offsets in `out`.
    Points { counts: Cow<'a, [u64]>, coords: Cow<'a, [u64]>, offsets: Cow<'a, [u64]> },
}

/// A gather's arguments, read from the caller's pointers (borrowed for a blocking call,
/// copied by [`Gather::into_owned`] for a started one), everything but the buffers.
struct Gather<'a> {
    num_chunks: usize,
    keys: Cow<'a, str>,
    key_offsets: Cow<'a, [u64]>,
    chunk_shapes: Cow<'a, [u64]>,
    picked: Picked<'a>,
    /// The shape `out` is viewed as: the output's for an orthogonal gather, its number of
    /// elements for points.
    out_shape: Vec<u64>,
}

impl Gather<'_> {
    /// The arguments, copied: valid after the call that passed them has returned.
    fn into_owned(self) -> Gather<'static> {
        let own = |values: Cow<'_, [u64]>| Cow::Owned(values.into_owned());
        Gather {
            num_chunks: self.num_chunks,
            keys: Cow::Owned(self.keys.into_owned()),
            key_offsets: own(self.key_offsets),
            chunk_shapes: own(self.chunk_shapes),
            picked: match self.picked {
                Picked::Orthogonal { pairs, indices, positions } => {
                    Picked::Orthogonal { pairs: own(pairs), indices: own(indices), positions: own(positions) }
                }
                Picked::Points { counts, coords, offsets } => Picked::Points { counts: own(counts), coords: own(coords), offsets: own(offsets) },
            },
            out_shape: self.out_shape,
        }
    }

    /// Every chunk's job (checked against a target by [`ZarrsArray::gather_jobs`]).
    fn jobs(&self, array: &ZarrsArray) -> FfiResult<Vec<GatherJob<'_>>> {
        let keys = (&*self.keys, &*self.key_offsets);
        Ok(match &self.picked {
            Picked::Orthogonal { pairs, indices, positions } => {
                let pool = PickPool { indices, positions };
                array.parse_orthogonal(self.num_chunks, keys, &self.chunk_shapes, pairs, &pool)?
            }
            Picked::Points { counts, coords, offsets } => array.parse_points(self.num_chunks, keys, &self.chunk_shapes, counts, coords, offsets)?,
        })
    }

    /// `out` as the gather's target.
    fn target<'o>(&self, array: &ZarrsArray, out: &'o mut [u8]) -> FfiResult<GatherTarget<'o>> {
        GatherTarget::new(out, &self.out_shape, array.element_size()?, "out")
    }

    /// Gather into `out`; which chunks are stored.
    fn run(&self, array: &ZarrsArray, options: &ZarrsOptions, out: &mut [u8]) -> FfiResult<Vec<bool>> {
        let target = self.target(array, out)?;
        array.gather_jobs(options, self.jobs(array)?, &target)
    }
}

/// The arguments of [`zarrs_array_gather_orthogonal`] after `options`, checked and parsed.
///
/// # Safety
/// Every pointer addresses the length stated beside it (or in the function's contract) for
/// `'a`; `out` is `out_len` writable bytes.
#[allow(clippy::too_many_arguments)]
unsafe fn orthogonal_args<'a>(
    array: &ZarrsArray,
    num_chunks: usize,
    (keys, keys_len, key_offsets): (*const c_char, usize, *const u64),
    (chunk_shapes, chunk_shapes_len): (*const u64, usize),
    (picks, picks_len): (*const u64, usize),
    (indices, positions, pool_len): (*const u64, *const u64, usize),
    (out, out_len, out_shape): (*mut u8, usize, *const u64),
    (present_out, present_len): (*mut u8, usize),
) -> FfiResult<(Gather<'a>, &'a mut [u8])> {
    let ndim = array.array().dimensionality();
    // SAFETY: forwarded contract.
    let (gather, out) = unsafe {
        let gather = Gather {
            num_chunks,
            keys: Cow::Borrowed(args::str(keys, keys_len, "keys")?),
            key_offsets: args::values(key_offsets, args::offsets_len(num_chunks)?, "key_offsets")?,
            chunk_shapes: args::values(chunk_shapes, chunk_shapes_len, "chunk_shapes")?,
            picked: Picked::Orthogonal {
                pairs: args::values(picks, picks_len, "picks")?,
                indices: args::values(indices, pool_len, "indices")?,
                positions: args::values(positions, pool_len, "positions")?,
            },
            out_shape: args::values(out_shape, ndim, "out_shape")?.into_owned(),
        };
        (gather, args::slice_mut(out, out_len, "out")?)
    };
    check_present(present_out, present_len, num_chunks)?;
    Ok((gather, out))
}

/// The arguments of [`zarrs_array_gather_points`] after `options`, checked and parsed.
///
/// # Safety
/// As for [`orthogonal_args`].
unsafe fn points_args<'a>(
    array: &ZarrsArray,
    num_chunks: usize,
    (keys, keys_len, key_offsets): (*const c_char, usize, *const u64),
    (chunk_shapes, chunk_shapes_len): (*const u64, usize),
    (counts, coords, coords_len, offsets, num_points): (*const u64, *const u64, usize, *const u64, usize),
    (out, out_len): (*mut u8, usize),
    (present_out, present_len): (*mut u8, usize),
) -> FfiResult<(Gather<'a>, &'a mut [u8])> {
    // SAFETY: forwarded contract.
    let (keys, key_offsets, chunk_shapes, picked, out) = unsafe {
        (
            args::str(keys, keys_len, "keys")?,
            args::values(key_offsets, args::offsets_len(num_chunks)?, "key_offsets")?,
            args::values(chunk_shapes, chunk_shapes_len, "chunk_shapes")?,
            Picked::Points {
                counts: args::values(counts, num_chunks, "counts")?,
                coords: args::values(coords, coords_len, "coords")?,
                offsets: args::values(offsets, num_points, "offsets")?,
            },
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
    let out_shape = vec![(out.len() / element_size) as u64];
    Ok((Gather { num_chunks, keys: Cow::Borrowed(keys), key_offsets, chunk_shapes, picked, out_shape }, out))
}

/// A gather started on a completion queue: its arguments copied, the handle and the
/// buffers the caller's until the token completes.
struct Started {
    array: Caller<ZarrsArray>,
    options: ZarrsOptions,
    gather: Gather<'static>,
    out: Caller<u8>,
    out_len: usize,
    present: Caller<u8>,
    present_len: usize,
}

impl Started {
    /// Check everything a gather checks before it reads (so that an argument error is the
    /// start call's), then queue the gather as `token`.
    fn start(self, queue: &ZarrsCompletionQueue, token: u64) -> FfiResult<()> {
        {
            // SAFETY: the start call's contract: the handle is live and `out` is `out_len`
            // writable bytes for the call (both checked by the argument parsing).
            let (array, out) = unsafe { (args::handle(self.array.0.cast_const(), "array")?, args::slice_mut(self.out.0, self.out_len, "out")?) };
            let target = self.gather.target(array, out)?;
            for job in &self.gather.jobs(array)? {
                target.check(job)?;
            }
        }
        start_on(queue, token, move || self.run())
    }

    fn run(self) -> FfiResult<()> {
        let _burst = Burst::begin();
        // SAFETY: the start call's contract keeps the handle alive and the buffers valid,
        // written by nothing else, until this token completes; all were checked there.
        let (array, out, present_out) = unsafe {
            (
                args::handle(self.array.0.cast_const(), "array")?,
                args::slice_mut(self.out.0, self.out_len, "out")?,
                args::slice_mut(self.present.0, self.present_len, "present_out")?,
            )
        };
        let present = self.gather.run(array, &self.options, out)?;
        for (slot, found) in present_out.iter_mut().zip(present) {
            *slot = u8::from(found);
        }
        Ok(())
    }
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
        let (array, options, (gather, out)) = unsafe {
            let array = args::handle(array, "array")?;
            let parsed = orthogonal_args(
                array,
                num_chunks,
                (keys, keys_len, key_offsets),
                (chunk_shapes, chunk_shapes_len),
                (picks, picks_len),
                (indices, positions, pool_len),
                (out, out_len, out_shape),
                (present_out, present_len),
            )?;
            (array, ZarrsOptions::from_ptr(options), parsed)
        };
        let present = gather.run(array, &options, out)?;
        // SAFETY: `present_out` is non-NULL with `present_len == num_chunks` bytes (checked).
        unsafe { write_present(present_out, &present) }
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
        let (array, options, (gather, out)) = unsafe {
            let array = args::handle(array, "array")?;
            let parsed = points_args(
                array,
                num_chunks,
                (keys, keys_len, key_offsets),
                (chunk_shapes, chunk_shapes_len),
                (counts, coords, coords_len, offsets, num_points),
                (out, out_len),
                (present_out, present_len),
            )?;
            (array, ZarrsOptions::from_ptr(options), parsed)
        };
        let present = gather.run(array, &options, out)?;
        // SAFETY: `present_out` is non-NULL with `present_len == num_chunks` bytes (checked).
        unsafe { write_present(present_out, &present) }
    })
}

/// Start an orthogonal gather; its outcome arrives as `token` on `queue`.
///
/// Arguments after `token` are those of [`zarrs_array_gather_orthogonal`], checked and
/// parsed before this returns (every index against its chunk, every position against
/// `out_shape`): an argument error is returned at once and nothing is started. Keys, key
/// offsets, chunk shapes, picks, indices, positions, `options` and `out_shape` are copied:
/// the caller may free them on return. Storage and codec errors arrive with the token.
///
/// Ownership: `array`, `out` (`out_len` bytes) and `present_out` (`present_len` bytes)
/// must stay valid, and `out` and `present_out` unread and unwritten by the caller, until
/// `token` has been drained from `queue` (even if the caller no longer wants the result).
/// Then they hold what [`zarrs_array_gather_orthogonal`] writes, if the token's code is
/// success. Tokens are the caller's: keep them distinct among the calls in flight on one
/// queue.
///
/// Thread safety: safe to call concurrently, on the same queue and the same array.
#[no_mangle]
pub extern "C" fn zarrs_array_gather_orthogonal_start(
    queue: *const ZarrsCompletionQueue,
    token: u64,
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
        // function's contract, for the duration of the call (and `array`, `out` and
        // `present_out` beyond it, until the token completes).
        let (queue, options, gather) = unsafe {
            let queue = args::handle(queue, "queue")?;
            let handle = args::handle(array, "array")?;
            let (gather, _) = orthogonal_args(
                handle,
                num_chunks,
                (keys, keys_len, key_offsets),
                (chunk_shapes, chunk_shapes_len),
                (picks, picks_len),
                (indices, positions, pool_len),
                (out, out_len, out_shape),
                (present_out, present_len),
            )?;
            (queue, ZarrsOptions::from_ptr(options), gather.into_owned())
        };
        let started = Started {
            array: Caller(array.cast_mut()),
            options,
            gather,
            out: Caller(out),
            out_len,
            present: Caller(present_out),
            present_len,
        };
        started.start(queue, token)
    })
}

/// Start a point gather; its outcome arrives as `token` on `queue`.
///
/// Arguments after `token` are those of [`zarrs_array_gather_points`], checked and parsed
/// before this returns (every coordinate against its chunk, every offset against `out`):
/// an argument error is returned at once and nothing is started. Keys, key offsets, chunk
/// shapes, counts, coordinates, offsets and `options` are copied: the caller may free them
/// on return. Storage and codec errors arrive with the token.
///
/// Ownership: as for [`zarrs_array_gather_orthogonal_start`].
///
/// Thread safety: safe to call concurrently, on the same queue and the same array.
#[no_mangle]
pub extern "C" fn zarrs_array_gather_points_start(
    queue: *const ZarrsCompletionQueue,
    token: u64,
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
        // SAFETY: as in `zarrs_array_gather_orthogonal_start`.
        let (queue, options, gather) = unsafe {
            let queue = args::handle(queue, "queue")?;
            let handle = args::handle(array, "array")?;
            let (gather, _) = points_args(
                handle,
                num_chunks,
                (keys, keys_len, key_offsets),
                (chunk_shapes, chunk_shapes_len),
                (counts, coords, coords_len, offsets, num_points),
                (out, out_len),
                (present_out, present_len),
            )?;
            (queue, ZarrsOptions::from_ptr(options), gather.into_owned())
        };
        let started = Started {
            array: Caller(array.cast_mut()),
            options,
            gather,
            out: Caller(out),
            out_len,
            present: Caller(present_out),
            present_len,
        };
        started.start(queue, token)
    })
}

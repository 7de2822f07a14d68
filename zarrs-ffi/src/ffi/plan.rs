//! The read-plan calls (`zarrs_array_read_plan_create` and the `zarrs_read_plan_*` calls on
//! the plan it returns; see `handles/plan.rs`), and the two questions a caller doing its own
//! I/O asks: whether the chunks are shards, and which chunks need their old bytes.

use std::ffi::c_char;

use crate::args;
use crate::args::EncodedInputs;
use crate::error::{FfiError, ZarrsResult};
use crate::layout::Destination;
use crate::handles::{ZarrsArray, ZarrsByteRequest, ZarrsReadPlan};
use crate::options::ZarrsOptions;
use crate::panic::boundary;
use crate::registry;
use crate::process::warm::Burst;

/// Plan a read of a batch of chunks whose bytes the caller fetches itself.
///
/// - `array`, `options` (NULL: defaults). The plan keeps a pointer to `array`, which must
///   outlive the plan.
/// - `num_chunks`, `keys`, `keys_len`, `key_offsets`, `geometry`, `geometry_len`: the chunk
///   jobs, exactly as for `zarrs_array_read_chunks`. `keys` only name chunks in requests'
///   errors (the caller maps each request's `job` to its own key); with `key_offsets` NULL
///   (and `keys_len` 0) chunks are named `chunk-<i>`.
/// - `max_gap_bytes`, `max_coalesced_bytes`: inner chunk ranges of one shard at most
///   `max_gap_bytes` apart are fetched as one range of at most `max_coalesced_bytes`
///   (zarr's `sharding_coalesce_max_gap_bytes` and `sharding_coalesce_max_bytes`);
///   `max_coalesced_bytes == 0` merges nothing.
/// - `plan_out`: receives the new plan, whose first round of requests is ready.
///
/// Whole chunks are requested whole; a subset of a shard (sharding codec with a fixed-size
/// index) requests the shard's index, then only the inner chunks the subset needs.
///
/// Thread safety: safe to call concurrently on the same array.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn zarrs_array_read_plan_create(
    array: *const ZarrsArray,
    options: *const ZarrsOptions,
    num_chunks: usize,
    keys: *const c_char,
    keys_len: usize,
    key_offsets: *const u64,
    geometry: *const u64,
    geometry_len: usize,
    max_gap_bytes: u64,
    max_coalesced_bytes: u64,
    plan_out: *mut *mut ZarrsReadPlan,
) -> ZarrsResult {
    boundary(|| {
        args::require_out(plan_out, "plan_out")?;
        // SAFETY: every pointer addresses the length stated beside it, per this function's
        // contract, for the duration of the call.
        let array_ref = unsafe { args::handle(array, "array")? };
        // SAFETY: as above.
        let options = unsafe { ZarrsOptions::from_ptr(options) };
        array_ref.element_size()?;
        let jobs = if key_offsets.is_null() && keys_len == 0 {
            // SAFETY: as above.
            let geometry = unsafe { args::values(geometry, geometry_len, "geometry")? };
            array_ref.parse_jobs(num_chunks, None, &geometry)?
        } else {
            // SAFETY: as above; `key_offsets` holds `num_chunks + 1` values by contract.
            unsafe { super::batch::jobs_from_raw(array_ref, num_chunks, keys, keys_len, key_offsets, geometry, geometry_len)? }
        };
        let (_, codec_options) = array_ref.plan(&options, &jobs)?;
        let plan = ZarrsReadPlan::new(array, jobs, codec_options, options, max_gap_bytes, max_coalesced_bytes)?;
        // SAFETY: checked non-NULL above.
        unsafe { args::write_out(plan_out, registry::issue(plan)) }
    })
}

/// Borrow the current round's requests: `requests_out` receives a pointer to `count_out`
/// requests, valid until the next call on the plan. A count of 0 means every byte is in:
/// call [`zarrs_read_plan_finish`].
#[no_mangle]
pub extern "C" fn zarrs_read_plan_requests(
    plan: *const ZarrsReadPlan,
    requests_out: *mut *const ZarrsByteRequest,
    count_out: *mut usize,
) -> ZarrsResult {
    boundary(|| {
        args::require_out(requests_out, "requests_out")?;
        args::require_out(count_out, "count_out")?;
        // SAFETY: a live plan, per the contract.
        let plan = unsafe { args::handle(plan, "plan")? };
        plan.check_live()?;
        // SAFETY: both checked non-NULL above and writable per the contract.
        unsafe {
            args::write_out(requests_out, plan.requests.as_ptr())?;
            args::write_out(count_out, plan.requests.len())
        }
    })
}

/// Answer the current round's requests, in their order: `responses[i]` points to
/// `response_lens[i]` bytes answering request `i` (NULL: the value does not exist).
/// `num_responses` must equal the request count. The bytes are copied; the caller may
/// free them on return. The next round's requests are then ready.
///
/// A response of the wrong length, or an index that is corrupt, fails with
/// `ZARRS_ERROR_CODEC` (`ZARRS_ERROR_CHECKSUM` for a checksum mismatch) naming the chunk
/// key; the plan then can only be freed.
#[no_mangle]
pub extern "C" fn zarrs_read_plan_supply(
    plan: *mut ZarrsReadPlan,
    num_responses: usize,
    responses: *const *const u8,
    response_lens: *const usize,
) -> ZarrsResult {
    boundary(|| {
        // SAFETY: a live plan used by one thread at a time, per the contract.
        let plan = unsafe { args::handle_mut(plan, "plan")? };
        plan.check_live()?;
        if num_responses != plan.requests.len() {
            return Err(FfiError::invalid(format!(
                "{num_responses} responses for {} requests",
                plan.requests.len()
            )));
        }
        // SAFETY: `num_responses` pointers and lengths, each non-NULL pointer addressing
        // its length, per the contract.
        let inputs = unsafe { EncodedInputs::from_raw(num_responses, responses, response_lens, "responses")? };
        plan.supply(&inputs).inspect_err(|_| plan.spent = Some("failed"))
    })
}

/// Decode every job into `out` once no requests remain.
///
/// `out`, `out_len`, `out_shape`, `present_out`, `present_len`: as for
/// `zarrs_array_read_chunks`. A plan finishes once; then it can only be freed.
#[no_mangle]
pub extern "C" fn zarrs_read_plan_finish(
    plan: *mut ZarrsReadPlan,
    out: *mut u8,
    out_len: usize,
    out_shape: *const u64,
    present_out: *mut u8,
    present_len: usize,
) -> ZarrsResult {
    boundary(|| {
        let _burst = Burst::begin();
        args::require_out(present_out, "present_out")?;
        // SAFETY: a live plan used by one thread at a time, per the contract.
        let plan = unsafe { args::handle_mut(plan, "plan")? };
        plan.check_live()?;
        if !plan.requests.is_empty() {
            return Err(FfiError::invalid(format!("{} requests are still unanswered", plan.requests.len())));
        }
        if present_len != plan.jobs.len() {
            return Err(FfiError::buffer_size("present_out", present_len, plan.jobs.len()));
        }
        let array = plan.array();
        let ndim = array.array().dimensionality();
        // SAFETY: `out_shape` holds the array's dimensionality in values, `out` `out_len`
        // writable bytes, per the contract.
        let out_shape = unsafe { args::values(out_shape, ndim, "out_shape")? };
        // SAFETY: as above.
        let out = unsafe { args::slice_mut(out, out_len, "out")? };
        let destination = Destination::new(out, &out_shape, array.element_size()?, "out")?;
        plan.spent = Some("has finished");
        let present = plan.finish(&destination)?;
        // SAFETY: `present_len` writable bytes (checked non-NULL above).
        let present_out = unsafe { args::slice_mut(present_out, present_len, "present_out")? };
        for (slot, found) in present_out.iter_mut().zip(present) {
            *slot = u8::from(found);
        }
        Ok(())
    })
}

/// Free a read plan. NULL is a no-op. A handle freed already, of
/// another kind, or not from this library is `ZARRS_ERROR_INVALID_ARGUMENT` and nothing is
/// freed.
///
/// Thread safety: the plan must not be in use by another thread.
#[no_mangle]
pub extern "C" fn zarrs_read_plan_free(plan: *mut ZarrsReadPlan) -> ZarrsResult {
    boundary(|| {
        drop(registry::retire(plan, "plan")?);
        Ok(())
    })
}

/// Write 1 to `sharded_out` if the array's chunks are shards (its array-to-bytes codec is
/// `sharding_indexed`), else 0.
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn zarrs_array_is_sharded(array: *const ZarrsArray, sharded_out: *mut u8) -> ZarrsResult {
    boundary(|| {
        // SAFETY: a live array, per the contract.
        let array = unsafe { args::handle(array, "array")? };
        // SAFETY: writable per the contract (NULL is an error).
        unsafe { args::write_out(sharded_out, u8::from(array.sharded())) }
    })
}

/// Which chunks of a write must have their stored bytes fetched before
/// `zarrs_array_encode_chunks` merges into them.
///
/// - `num_chunks`, `geometry`, `geometry_len`: the chunk jobs of the write, as for
///   `zarrs_array_encode_chunks`.
/// - `complete`, `complete_len` (`num_chunks` bytes): nonzero where the caller's selection
///   covers all of the chunk that lies inside the array (zarr's `is_complete_chunk`), so the
///   elements beyond the array's edge need not be kept.
/// - `needs_old_out`, `needs_old_len` (`num_chunks` bytes): set to 1 for chunks written in
///   part whose old values must be kept, else 0. A chunk written whole needs nothing; an
///   edge chunk written completely needs nothing either, unless the chunks are shards
///   (their inner chunks beyond the array's shape are kept).
///
/// Thread safety: safe to call concurrently on the same array.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn zarrs_array_needs_old(
    array: *const ZarrsArray,
    num_chunks: usize,
    geometry: *const u64,
    geometry_len: usize,
    complete: *const u8,
    complete_len: usize,
    needs_old_out: *mut u8,
    needs_old_len: usize,
) -> ZarrsResult {
    boundary(|| {
        args::require_out(needs_old_out, "needs_old_out")?;
        // SAFETY: every pointer addresses the length stated beside it, per the contract.
        let array = unsafe { args::handle(array, "array")? };
        // SAFETY: as above.
        let geometry = unsafe { args::values(geometry, geometry_len, "geometry")? };
        let jobs = array.parse_jobs(num_chunks, None, &geometry)?;
        if complete_len != num_chunks {
            return Err(FfiError::buffer_size("complete", complete_len, num_chunks));
        }
        if needs_old_len != num_chunks {
            return Err(FfiError::buffer_size("needs_old_out", needs_old_len, num_chunks));
        }
        // SAFETY: as above.
        let complete = unsafe { args::slice(complete, complete_len, "complete")? };
        let needs: Vec<u8> = jobs
            .iter()
            .zip(complete)
            .map(|(job, &complete)| u8::from(!job.is_whole_chunk() && (complete == 0 || array.sharded())))
            .collect();
        // SAFETY: `needs_old_len` writable bytes, non-NULL (checked above).
        let out = unsafe { args::slice_mut(needs_old_out, needs_old_len, "needs_old_out")? };
        out.copy_from_slice(&needs);
        Ok(())
    })
}

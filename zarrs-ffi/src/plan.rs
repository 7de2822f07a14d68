//! Sans-I/O reads: the library says which bytes to fetch, the caller fetches them.
//!
//! For storage only the caller can reach (a Python store, a C, Julia or Go program's own
//! I/O), a [`ZarrsReadPlan`] turns the same chunk jobs `zarrs_array_read_chunks` takes into
//! rounds of byte-range requests: round 1 asks for whole chunks, or for the index of each
//! shard read in part; round 2 asks for the inner chunks those indexes locate, coalesced
//! with the caller's gap and size limits. The caller answers each round in order, then
//! `finish` decodes everything into its buffer. The shard index format (its size, its
//! missing-chunk marker) is known here only, in `shard.rs`; callers never parse it.
//!
//! Everything fetched is hostile: responses of the wrong length, index entries that
//! overflow or exceed what an inner chunk can encode to, and ranges past a shard's end are
//! `ZARRS_ERROR_CODEC` errors naming the chunk key. A request never asks for more than
//! the metadata allows an inner chunk (or a coalesced group of them) to take.
//!
//! Also here: the questions a caller doing its own I/O asks before a write (which chunks
//! need their old bytes) and whether the chunks are shards.

use std::borrow::Cow;
use std::ffi::c_char;

use rayon::iter::{IntoParallelIterator, ParallelIterator};
use zarrs::array::CodecOptions;

use crate::args;
use crate::array::ZarrsArray;
use crate::batch::{offsets_len, parse_jobs, ChunkJob, Destination};
use crate::codec::EncodedInputs;
use crate::error::{FfiError, FfiResult, ZarrsResult};
use crate::options::ZarrsOptions;
use crate::panic::boundary;
use crate::shard::ShardLayout;

/// What a [`ZarrsByteRequest`] asks for.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum ZarrsByteRequestKind {
    /// The whole value at the chunk's key (`offset` and `length` are 0).
    ZARRS_BYTE_REQUEST_WHOLE = 0,
    /// `length` bytes from `offset`.
    ZARRS_BYTE_REQUEST_RANGE = 1,
    /// The last `length` bytes (`offset` is 0).
    ZARRS_BYTE_REQUEST_SUFFIX = 2,
}

/// One request of a read plan: bytes of the value stored at the key of chunk job `job`
/// (its position in the batch given to [`zarrs_array_read_plan_create`]).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZarrsByteRequest {
    /// The chunk job whose key is read.
    pub job: u64,
    /// Whole value, range or suffix.
    pub kind: ZarrsByteRequestKind,
    /// The first byte of a range.
    pub offset: u64,
    /// The length of a range or suffix.
    pub length: u64,
}

/// What one request's response is for.
enum Pending {
    /// The whole chunk of job `.0`.
    Whole(usize),
    /// The shard index of job `.0`.
    Index(usize),
    /// Inner chunks of job `job`, each `(inner chunk, offset, size)`, in one coalesced range
    /// starting at `start`.
    Inner { job: usize, start: u64, members: Vec<(usize, u64, u64)> },
}

/// What has arrived for one job.
enum Fetched {
    /// Not asked for yet, or not arrived.
    Waiting,
    /// The whole chunk (None: missing).
    Whole(Option<Vec<u8>>),
    /// A shard read in part: every inner chunk the subset meets with its bytes (None: not
    /// stored, filled with the fill value).
    Inner(Vec<(usize, Option<Vec<u8>>)>),
    /// The shard is missing (no index, or gone before its inner chunks were read).
    Missing,
}

/// A read of a batch of chunks whose bytes the caller fetches. Create with
/// [`zarrs_array_read_plan_create`]; read its requests with [`zarrs_read_plan_requests`],
/// answer them with [`zarrs_read_plan_supply`] until there are none, then decode with
/// [`zarrs_read_plan_finish`]; free with [`zarrs_read_plan_free`].
///
/// The plan refers to its array, which must outlive it.
///
/// Thread safety: a plan may move between threads but must not be used by two at once.
pub struct ZarrsReadPlan {
    array: *const ZarrsArray,
    jobs: Vec<ChunkJob>,
    fetched: Vec<Fetched>,
    /// The current round's requests and what each answers.
    requests: Vec<ZarrsByteRequest>,
    pending: Vec<Pending>,
    codec_options: CodecOptions,
    options: ZarrsOptions,
    max_gap: u64,
    max_coalesced: u64,
    /// Set once a call failed or finished: the plan can only be freed.
    spent: Option<&'static str>,
}

/// An inner chunk's position in its shard, offset and size.
type InnerRange = (usize, u64, u64);
/// A coalesced range: start, end, and the inner chunks in it.
type Group = (u64, u64, Vec<InnerRange>);

fn codec_error(message: String) -> FfiError {
    FfiError::new(ZarrsResult::ZARRS_ERROR_CODEC, message)
}

/// Group `ranges` (inner chunk, offset, size) as zarr's `coalesce_ranges` does: sorted by
/// offset, a range joins the group before it when the gap is at most `max_gap` and the
/// group then spans at most `max_coalesced` bytes. A `max_coalesced` of 0 merges nothing.
fn coalesce(mut ranges: Vec<InnerRange>, max_gap: u64, max_coalesced: u64) -> Vec<Group> {
    ranges.sort_by_key(|&(_, offset, _)| offset);
    let mut groups: Vec<Group> = Vec::new();
    for (i, offset, size) in ranges {
        // Entries are checked before this: offset + size does not overflow.
        let end = offset + size;
        if let Some((start, group_end, members)) = groups.last_mut().filter(|_| max_coalesced > 0) {
            if offset.saturating_sub(*group_end) <= max_gap {
                let merged_end = (*group_end).max(end);
                if merged_end - *start <= max_coalesced {
                    *group_end = merged_end;
                    members.push((i, offset, size));
                    continue;
                }
            }
        }
        groups.push((offset, end, vec![(i, offset, size)]));
    }
    groups
}

impl ZarrsReadPlan {
    fn array(&self) -> &ZarrsArray {
        // SAFETY: the array outlives the plan, per the documented contract of
        // `zarrs_array_read_plan_create`.
        unsafe { &*self.array }
    }

    /// The sharding layout, if job `j` reads part of a shard through its index.
    fn ranged<'a>(array: &'a ZarrsArray, job: &ChunkJob) -> Option<&'a ShardLayout> {
        let shard = array.shard.as_ref()?;
        if job.is_whole_chunk() {
            return None;
        }
        // An index without a fixed size cannot be asked for by range: read the whole shard.
        let grid = shard.grid(&job.chunk_shape).ok()?;
        shard.index_size(&grid).ok().map(|_| shard)
    }

    /// Round 1: whole chunks, and the index of each shard read in part.
    fn first_round(&mut self) -> FfiResult<()> {
        let array = self.array();
        let mut requests = Vec::with_capacity(self.jobs.len());
        let mut pending = Vec::with_capacity(self.jobs.len());
        for (j, job) in self.jobs.iter().enumerate() {
            let request = match Self::ranged(array, job) {
                Some(shard) => {
                    let size = shard.index_size(&shard.grid(&job.chunk_shape)?)? as u64;
                    pending.push(Pending::Index(j));
                    if shard.index_at_end {
                        (ZarrsByteRequestKind::ZARRS_BYTE_REQUEST_SUFFIX, 0, size)
                    } else {
                        (ZarrsByteRequestKind::ZARRS_BYTE_REQUEST_RANGE, 0, size)
                    }
                }
                None => {
                    pending.push(Pending::Whole(j));
                    (ZarrsByteRequestKind::ZARRS_BYTE_REQUEST_WHOLE, 0, 0)
                }
            };
            requests.push(ZarrsByteRequest { job: j as u64, kind: request.0, offset: request.1, length: request.2 });
        }
        self.requests = requests;
        self.pending = pending;
        Ok(())
    }

    /// Decode job `j`'s shard index and list the inner chunks its subset needs: those not
    /// stored go straight into `fetched`, the rest become coalesced range requests.
    fn plan_inner(&mut self, j: usize, index_bytes: &[u8], next: &mut Vec<(ZarrsByteRequest, Pending)>) -> FfiResult<()> {
        // SAFETY: as in `array()`; borrowed apart from `self` so `fetched` can be updated.
        let array: &ZarrsArray = unsafe { &*self.array };
        let job = &self.jobs[j];
        let shard = array.shard.as_ref().expect("index requests are made for shards only");
        let grid = shard.grid(&job.chunk_shape)?;
        let index_size = shard.index_size(&grid)?;
        if index_bytes.len() != index_size {
            return Err(codec_error(format!(
                "the index of shard {} came back with {} bytes, expected {index_size}: the shard is truncated",
                job.key,
                index_bytes.len()
            )));
        }
        let index = shard.decode_index(index_bytes, &grid, &self.codec_options)?;
        let (data_type, fill_value) = (array.array.data_type(), array.array.fill_value());
        let max_inner = shard.inner_codecs.max_encoded_size(&shard.inner_shape, data_type, fill_value)?;
        let mut stored = Vec::new();
        let mut inner = Vec::new();
        for i in (0..grid.count).filter(|&i| shard.overlap(&grid, job, i).is_some()) {
            // The shard's length is unknown here: every entry must fit in a u64 range, and
            // none may exceed what an inner chunk can encode to. Entries past the shard's
            // end show as short responses in the next round.
            match ShardLayout::inner_range(&index, i, u64::MAX, &job.key)? {
                None => inner.push((i, None)),
                Some((_, size)) if max_inner.is_some_and(|max| size > max) => {
                    return Err(codec_error(format!(
                        "the index of shard {} gives inner chunk {i} {size} bytes, more than the {} an inner chunk can take: the shard is corrupt",
                        job.key,
                        max_inner.unwrap_or_default()
                    )));
                }
                Some((offset, size)) => stored.push((i, offset, size)),
            }
        }
        for (start, end, members) in coalesce(stored, self.max_gap, self.max_coalesced) {
            let request = ZarrsByteRequest {
                job: j as u64,
                kind: ZarrsByteRequestKind::ZARRS_BYTE_REQUEST_RANGE,
                offset: start,
                length: end - start,
            };
            next.push((request, Pending::Inner { job: j, start, members }));
        }
        self.fetched[j] = Fetched::Inner(inner);
        Ok(())
    }

    fn supply(&mut self, responses: &EncodedInputs<'_>) -> FfiResult<()> {
        let pending = std::mem::take(&mut self.pending);
        self.requests.clear();
        let mut next = Vec::new();
        for (r, what) in pending.into_iter().enumerate() {
            let response = responses.get(r);
            match what {
                Pending::Whole(j) => self.fetched[j] = Fetched::Whole(response.map(<[u8]>::to_vec)),
                Pending::Index(j) => match response {
                    None => self.fetched[j] = Fetched::Missing,
                    Some(bytes) => {
                        let key = self.jobs[j].key.clone();
                        self.plan_inner(j, bytes, &mut next).map_err(|e| self.array().in_chunk(&key, e))?;
                    }
                },
                Pending::Inner { job: j, start, members } => {
                    let Some(bytes) = response else {
                        // Deleted since its index was read: the shard reads as missing.
                        self.fetched[j] = Fetched::Missing;
                        continue;
                    };
                    let end = members.iter().map(|&(_, o, n)| o + n).max().unwrap_or(start);
                    if bytes.len() as u64 != end - start {
                        return Err(codec_error(format!(
                            "{} in {}: the index of shard {} references bytes {start}..{end}, but {} came back: the index points past the shard's end",
                            self.jobs[j].key,
                            self.array().name,
                            self.jobs[j].key,
                            bytes.len()
                        )));
                    }
                    if let Fetched::Inner(inner) = &mut self.fetched[j] {
                        for (i, offset, size) in members {
                            let from = (offset - start) as usize;
                            inner.push((i, Some(bytes[from..from + size as usize].to_vec())));
                        }
                    }
                }
            }
        }
        for (request, what) in next {
            self.requests.push(request);
            self.pending.push(what);
        }
        Ok(())
    }

    fn finish(&mut self, destination: &Destination) -> FfiResult<Vec<bool>> {
        let array = self.array();
        let (data_type, fill_value) = (array.array.data_type(), array.array.fill_value());
        let codec_options = &self.codec_options;
        // One unit per whole chunk and per inner chunk, all in parallel: a few shards read
        // in part still spread their inner chunks over every thread.
        let mut units: Vec<(&ChunkJob, &Fetched, Option<usize>)> = Vec::new();
        for (job, fetched) in self.jobs.iter().zip(&self.fetched) {
            match fetched {
                Fetched::Inner(inner) => units.extend((0..inner.len()).map(|k| (job, fetched, Some(k)))),
                _ => units.push((job, fetched, None)),
            }
        }
        self.options.install(|| {
            units.into_par_iter().try_for_each(|(job, fetched, k)| {
                let run = || -> FfiResult<()> {
                    match (fetched, k) {
                        (Fetched::Waiting, _) => Err(FfiError::invalid(format!("chunk {}: its bytes were never supplied", job.key))),
                        (Fetched::Whole(bytes), _) => {
                            array.decode_job(job, bytes.as_deref().map(Cow::Borrowed), destination, codec_options).map(|_| ())
                        }
                        (Fetched::Missing, _) => array.decode_job(job, None, destination, codec_options).map(|_| ()),
                        (Fetched::Inner(inner), k) => {
                            let shard = array.shard.as_ref().expect("inner chunks are planned for shards only");
                            let grid = shard.grid(&job.chunk_shape)?;
                            let (i, bytes) = &inner[k.expect("inner units carry their position")];
                            shard.place_inner(&grid, job, *i, bytes.as_deref(), destination, data_type, fill_value, codec_options)
                        }
                    }
                };
                run().map_err(|e| array.in_chunk(&job.key, e))
            })
        })??;
        Ok(self
            .fetched
            .iter()
            .map(|fetched| match fetched {
                Fetched::Whole(bytes) => bytes.is_some(),
                Fetched::Inner(_) => true,
                Fetched::Waiting | Fetched::Missing => false,
            })
            .collect())
    }

    fn check_live(&self) -> FfiResult<()> {
        match self.spent {
            Some(why) => Err(FfiError::invalid(format!("the read plan {why}; it can only be freed"))),
            None => Ok(()),
        }
    }
}

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
        // SAFETY: as above.
        let geometry = unsafe { args::values(geometry, geometry_len, "geometry")? };
        let jobs = if key_offsets.is_null() && keys_len == 0 {
            parse_jobs(array_ref, num_chunks, None, &geometry)?
        } else {
            // SAFETY: as above.
            let keys = unsafe { args::str(keys, keys_len, "keys")? };
            // SAFETY: as above; `key_offsets` holds `num_chunks + 1` values by contract.
            let key_offsets = unsafe { args::values(key_offsets, offsets_len(num_chunks)?, "key_offsets")? };
            parse_jobs(array_ref, num_chunks, Some((keys, &key_offsets)), &geometry)?
        };
        let (_, codec_options) = array_ref.plan(&options, &jobs)?;
        let mut plan = ZarrsReadPlan {
            array,
            fetched: jobs.iter().map(|_| Fetched::Waiting).collect(),
            jobs,
            requests: Vec::new(),
            pending: Vec::new(),
            codec_options,
            options,
            max_gap: max_gap_bytes,
            max_coalesced: max_coalesced_bytes,
            spent: None,
        };
        plan.first_round()?;
        // SAFETY: checked non-NULL above.
        unsafe { args::write_out(plan_out, Box::into_raw(Box::new(plan))) }
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
        let plan = unsafe { plan.as_mut() }.ok_or_else(|| FfiError::null("plan"))?;
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
        args::require_out(present_out, "present_out")?;
        // SAFETY: a live plan used by one thread at a time, per the contract.
        let plan = unsafe { plan.as_mut() }.ok_or_else(|| FfiError::null("plan"))?;
        plan.check_live()?;
        if !plan.requests.is_empty() {
            return Err(FfiError::invalid(format!("{} requests are still unanswered", plan.requests.len())));
        }
        if present_len != plan.jobs.len() {
            return Err(FfiError::buffer_size("present_out", present_len, plan.jobs.len()));
        }
        let array = plan.array();
        let ndim = array.array.dimensionality();
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

/// Free a read plan. NULL is a no-op.
///
/// Thread safety: the plan must not be in use by another thread.
#[no_mangle]
pub extern "C" fn zarrs_read_plan_free(plan: *mut ZarrsReadPlan) -> ZarrsResult {
    boundary(|| {
        if !plan.is_null() {
            // SAFETY: non-NULL plans come from Box::into_raw in zarrs_array_read_plan_create
            // and the caller frees each exactly once.
            drop(unsafe { Box::from_raw(plan) });
        }
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
        unsafe { args::write_out(sharded_out, u8::from(array.sharded)) }
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
        let jobs = parse_jobs(array, num_chunks, None, &geometry)?;
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
            .map(|(job, &complete)| u8::from(!job.is_whole_chunk() && (complete == 0 || array.sharded)))
            .collect();
        // SAFETY: `needs_old_len` writable bytes, non-NULL (checked above).
        let out = unsafe { args::slice_mut(needs_old_out, needs_old_len, "needs_old_out")? };
        out.copy_from_slice(&needs);
        Ok(())
    })
}

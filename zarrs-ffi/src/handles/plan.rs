//! Sans-I/O reads: the library says which bytes to fetch, the caller fetches them.
//!
//! For storage only the caller can reach (a Python store, a C, Julia or Go program's own
//! I/O), a [`ZarrsReadPlan`] turns the same chunk jobs `zarrs_array_read_chunks` takes into
//! rounds of byte-range requests: round 1 asks for whole chunks, or for the index of each
//! shard read in part; round 2 asks for the inner chunks those indexes locate, coalesced
//! with the caller's gap and size limits. The caller answers each round in order, then
//! `finish` decodes everything into its buffer. The shard index format (its size, its
//! missing-chunk marker) is known here only, in `engine/shard/index.rs`; callers never parse it.
//!
//! Everything fetched is hostile: responses of the wrong length, index entries that
//! overflow or exceed what an inner chunk can encode to, and ranges past a shard's end are
//! `ZARRS_ERROR_CODEC` errors naming the chunk key. A request never asks for more than
//! the metadata allows an inner chunk (or a coalesced group of them) to take.
//!
//! Also here: the questions a caller doing its own I/O asks before a write (which chunks
//! need their old bytes) and whether the chunks are shards.

use std::borrow::Cow;

use rayon::iter::{IntoParallelIterator, ParallelIterator};
use zarrs::array::CodecOptions;

use crate::handles::ZarrsArray;
use crate::layout::{ChunkJob, Destination};
use crate::args::EncodedInputs;
use crate::error::{FfiError, FfiResult, ZarrsResult};
use crate::options::ZarrsOptions;
use crate::engine::ShardLayout;

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
pub(crate) enum Pending {
    /// The whole chunk of job `.0`.
    Whole(usize),
    /// The shard index of job `.0`.
    Index(usize),
    /// Inner chunks of job `job`, each `(inner chunk, offset, size)`, in one coalesced range
    /// starting at `start`.
    Inner { job: usize, start: u64, members: Vec<(usize, u64, u64)> },
}

/// What has arrived for one job.
pub(crate) enum Fetched {
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
    pub(crate) array: *const ZarrsArray,
    pub(crate) jobs: Vec<ChunkJob>,
    pub(crate) fetched: Vec<Fetched>,
    /// The current round's requests and what each answers.
    pub(crate) requests: Vec<ZarrsByteRequest>,
    pub(crate) pending: Vec<Pending>,
    pub(crate) codec_options: CodecOptions,
    pub(crate) options: ZarrsOptions,
    pub(crate) max_gap: u64,
    pub(crate) max_coalesced: u64,
    /// Set once a call failed or finished: the plan can only be freed.
    pub(crate) spent: Option<&'static str>,
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
    /// A plan for `jobs` of `array` (which must outlive it), with its first round of
    /// requests made.
    pub(crate) fn new(
        array: *const ZarrsArray,
        jobs: Vec<ChunkJob>,
        codec_options: CodecOptions,
        options: ZarrsOptions,
        max_gap: u64,
        max_coalesced: u64,
    ) -> FfiResult<Self> {
        let mut plan = Self {
            array,
            fetched: jobs.iter().map(|_| Fetched::Waiting).collect(),
            jobs,
            requests: Vec::new(),
            pending: Vec::new(),
            codec_options,
            options,
            max_gap,
            max_coalesced,
            spent: None,
        };
        plan.first_round()?;
        Ok(plan)
    }

    pub(crate) fn array(&self) -> &ZarrsArray {
        // SAFETY: the array outlives the plan, per the documented contract of
        // `zarrs_array_read_plan_create`.
        unsafe { &*self.array }
    }

    /// The sharding layout, if job `j` reads part of a shard through its index.
    pub(crate) fn ranged<'a>(array: &'a ZarrsArray, job: &ChunkJob) -> Option<&'a ShardLayout> {
        let shard = array.shard()?;
        if job.is_whole_chunk() {
            return None;
        }
        // An index without a fixed size cannot be asked for by range: read the whole shard.
        let grid = shard.grid(&job.chunk_shape).ok()?;
        shard.index_size(&grid).ok().map(|_| shard)
    }

    /// Round 1: whole chunks, and the index of each shard read in part.
    pub(crate) fn first_round(&mut self) -> FfiResult<()> {
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
    pub(crate) fn plan_inner(&mut self, j: usize, index_bytes: &[u8], next: &mut Vec<(ZarrsByteRequest, Pending)>) -> FfiResult<()> {
        // SAFETY: as in `array()`; borrowed apart from `self` so `fetched` can be updated.
        let array: &ZarrsArray = unsafe { &*self.array };
        let job = &self.jobs[j];
        let shard = array.shard().expect("index requests are made for shards only");
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
        let (data_type, fill_value) = (array.array().data_type(), array.array().fill_value());
        let max_inner = shard.inner_codecs.max_encoded_size(&shard.inner_shape, data_type, fill_value)?;
        let bytes = shard.value_bytes(&grid)?;
        let mut stored = Vec::new();
        let mut inner = Vec::new();
        for i in (0..grid.count).filter(|&i| shard.overlap(&grid, job, i).is_some()) {
            // The shard's length is unknown here: every entry must fit in a u64 range, and
            // none may exceed what an inner chunk can encode to. Entries past the shard's
            // end show as short responses in the next round.
            match ShardLayout::inner_range(&index, i, &bytes, &job.key)? {
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

    pub(crate) fn supply(&mut self, responses: &EncodedInputs<'_>) -> FfiResult<()> {
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
                            self.array().name(),
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

    pub(crate) fn finish(&mut self, destination: &Destination) -> FfiResult<Vec<bool>> {
        let array = self.array();
        let (data_type, fill_value) = (array.array().data_type(), array.array().fill_value());
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
                            let shard = array.shard().expect("inner chunks are planned for shards only");
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

    pub(crate) fn check_live(&self) -> FfiResult<()> {
        match self.spent {
            Some(why) => Err(FfiError::invalid(format!("the read plan {why}; it can only be freed"))),
            None => Ok(()),
        }
    }
}

impl crate::registry::Handle for ZarrsReadPlan {
    const NAME: &'static str = "ZarrsReadPlan";
}

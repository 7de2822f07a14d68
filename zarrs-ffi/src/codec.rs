//! Codec-only calls: decode and encode chunk bytes the caller moves itself.
//!
//! For stores only the caller can reach (an in-memory dict, a zip file, a Python store
//! wrapper), the caller fetches the encoded bytes, these calls decode a whole batch in
//! parallel straight into the caller's buffer, and encoding hands back bytes for the caller
//! to store. The array handle supplies codecs, data type and fill value; its storage is not
//! touched.

use std::borrow::Cow;

use rayon::iter::{IntoParallelIterator, ParallelIterator};
use rayon_iter_concurrent_limit::iter_concurrent_limit;

use crate::args;
use crate::array::ZarrsArray;
use crate::batch::{parse_jobs, ChunkJob, Destination, Source};
use crate::error::{FfiError, FfiResult, ZarrsResult};
use crate::options::ZarrsOptions;
use crate::panic::boundary;

/// Encoded chunks produced by [`zarrs_array_encode_chunks`]. Read with
/// [`zarrs_encoded_chunks_get`]; free with [`zarrs_encoded_chunks_free`].
///
/// Thread safety: read-only after creation; may be read from many threads.
pub struct ZarrsEncodedChunks {
    pub(crate) chunks: Vec<Option<Vec<u8>>>,
}

/// Per-chunk encoded inputs, borrowed from the caller: a pointer and a length per chunk, a
/// NULL pointer marking a missing chunk.
pub(crate) struct EncodedInputs<'a> {
    chunks: Vec<Option<&'a [u8]>>,
}

impl<'a> EncodedInputs<'a> {
    /// # Safety
    /// `pointers` and `lengths` must address `num_chunks` values each, and every non-NULL
    /// pointer its length in bytes, for the duration of the call.
    pub(crate) unsafe fn from_raw(
        num_chunks: usize,
        pointers: *const *const u8,
        lengths: *const usize,
        name: &str,
    ) -> FfiResult<Self> {
        // SAFETY: forwarded contract: `num_chunks` pointers and lengths.
        let pointers = unsafe { args::values(pointers, num_chunks, name)? };
        // SAFETY: as above.
        let lengths = unsafe { args::values(lengths, num_chunks, &format!("{name}_lens"))? };
        let chunks = pointers
            .iter()
            .zip(lengths.iter())
            .enumerate()
            .map(|(i, (&pointer, &length))| {
                if pointer.is_null() {
                    Ok(None)
                } else {
                    // SAFETY: forwarded contract: a non-NULL pointer addresses `length` bytes.
                    unsafe { args::slice(pointer, length, &format!("{name}[{i}]")) }.map(Some)
                }
            })
            .collect::<FfiResult<_>>()?;
        Ok(Self { chunks })
    }

    /// The encoded bytes of chunk `i`, or None if it is missing.
    pub(crate) fn get(&self, i: usize) -> Option<&'a [u8]> {
        self.chunks[i]
    }
}

/// Decode a batch of encoded chunks into one caller buffer, in parallel.
///
/// - `encoded`, `encoded_lens` (`num_chunks` each): a pointer to each chunk's encoded bytes
///   and their length; a NULL pointer marks a missing chunk, whose region is filled with the
///   fill value. The bytes are read in place, never copied.
/// - `geometry`, `out`, `out_len`, `out_shape`: as for `zarrs_array_read_chunks`. A subset
///   smaller than the chunk decodes only what it needs where the codecs allow (sharding).
///
/// Corrupt or truncated bytes fail with `ZARRS_ERROR_CODEC` (or `ZARRS_ERROR_CHECKSUM`).
///
/// Thread safety: safe to call concurrently on the same array.
#[no_mangle]
pub extern "C" fn zarrs_array_decode_chunks(
    array: *const ZarrsArray,
    options: *const ZarrsOptions,
    num_chunks: usize,
    encoded: *const *const u8,
    encoded_lens: *const usize,
    geometry: *const u64,
    geometry_len: usize,
    out: *mut u8,
    out_len: usize,
    out_shape: *const u64,
) -> ZarrsResult {
    boundary(|| {
        // SAFETY: every pointer addresses its stated length per the contract.
        let array = unsafe { args::handle(array, "array")? };
        let options = unsafe { ZarrsOptions::from_ptr(options) };
        let ndim = array.array.dimensionality();
        let inputs = unsafe { EncodedInputs::from_raw(num_chunks, encoded, encoded_lens, "encoded")? };
        let geometry = unsafe { args::values(geometry, geometry_len, "geometry")? };
        let jobs = parse_jobs(array, num_chunks, None, &geometry)?;
        let out_shape = unsafe { args::values(out_shape, ndim, "out_shape")? };
        let out = unsafe { args::slice_mut(out, out_len, "out")? };
        let destination = Destination::new(out, &out_shape, array.element_size()?, "out")?;

        let (limit, codec_options) = array.plan(&options, &jobs)?;
        let indexed: Vec<(usize, ChunkJob)> = jobs.into_iter().enumerate().collect();
        options.install(|| {
            iter_concurrent_limit!(limit, indexed, try_for_each, |(i, job): (usize, ChunkJob)| {
                array
                    .decode_job(&job, inputs.get(i).map(Cow::Borrowed), &destination, &codec_options)
                    .map(|_| ())
                    .map_err(|e| array.in_chunk(&job.key, e))
            })
        })?
    })
}

/// Encode a batch of chunks from one caller buffer, in parallel.
///
/// - `geometry`, `value`, `value_len`, `value_shape`, `value_ndim`: as for
///   `zarrs_array_write_chunks` (`value_ndim == 0` broadcasts one element).
/// - `existing`, `existing_lens` (`num_chunks` each): the current encoded bytes of each
///   chunk, as for [`zarrs_array_decode_chunks`] (NULL: missing). They are only read for
///   chunks written in part, which are decoded, merged and re-encoded; pass NULL entries
///   when every chunk is written whole.
/// - `encoded_out`: receives a new [`ZarrsEncodedChunks`] with one entry per chunk; an entry
///   with no bytes means the chunk is entirely the fill value and, unless
///   `options->store_empty_chunks`, should be deleted rather than stored.
///
/// Thread safety: safe to call concurrently on the same array.
#[no_mangle]
pub extern "C" fn zarrs_array_encode_chunks(
    array: *const ZarrsArray,
    options: *const ZarrsOptions,
    num_chunks: usize,
    geometry: *const u64,
    geometry_len: usize,
    value: *const u8,
    value_len: usize,
    value_shape: *const u64,
    value_ndim: usize,
    existing: *const *const u8,
    existing_lens: *const usize,
    encoded_out: *mut *mut ZarrsEncodedChunks,
) -> ZarrsResult {
    boundary(|| {
        args::require_out(encoded_out, "encoded_out")?;
        // SAFETY: every pointer addresses its stated length per the contract.
        let array = unsafe { args::handle(array, "array")? };
        let options = unsafe { ZarrsOptions::from_ptr(options) };
        let geometry = unsafe { args::values(geometry, geometry_len, "geometry")? };
        let jobs = parse_jobs(array, num_chunks, None, &geometry)?;
        let source = unsafe { Source::from_raw(array, value, value_len, value_shape, value_ndim)? };
        let existing = unsafe { EncodedInputs::from_raw(num_chunks, existing, existing_lens, "existing")? };

        let (limit, codec_options) = array.plan(&options, &jobs)?;
        let indexed: Vec<(usize, ChunkJob)> = jobs.into_iter().enumerate().collect();
        let chunks = options.install(|| {
            iter_concurrent_limit!(limit, indexed, map, |(i, job): (usize, ChunkJob)| {
                let encode = || {
                    let chunk: Cow<[u8]> = array.merge_job(&job, &source, || Ok(existing.get(i).map(Cow::Borrowed)), &codec_options)?;
                    array.encode_chunk(&job.chunk_shape, chunk, &codec_options)
                };
                encode().map_err(|e| array.in_chunk(&job.key, e))
            })
            .collect::<FfiResult<Vec<_>>>()
        })??;
        let encoded = Box::new(ZarrsEncodedChunks { chunks });
        // SAFETY: checked non-NULL above.
        unsafe { args::write_out(encoded_out, Box::into_raw(encoded)) }
    })
}

/// Write the number of chunks held to `count_out`.
#[no_mangle]
pub extern "C" fn zarrs_encoded_chunks_count(encoded: *const ZarrsEncodedChunks, count_out: *mut usize) -> ZarrsResult {
    boundary(|| {
        // SAFETY: live handle and writable out-parameter per the contract.
        let encoded = unsafe { args::handle(encoded, "encoded")? };
        unsafe { args::write_out(count_out, encoded.chunks.len()) }
    })
}

/// Borrow the encoded bytes of chunk `index`: `data_out` and `len_out` receive a pointer and
/// length that stay valid until the handle is freed. `data_out` receives NULL (and
/// `len_out` 0) for a chunk that is entirely the fill value and should be deleted.
#[no_mangle]
pub extern "C" fn zarrs_encoded_chunks_get(
    encoded: *const ZarrsEncodedChunks,
    index: usize,
    data_out: *mut *const u8,
    len_out: *mut usize,
) -> ZarrsResult {
    boundary(|| {
        args::require_out(data_out, "data_out")?;
        args::require_out(len_out, "len_out")?;
        // SAFETY: live handle per the contract.
        let encoded = unsafe { args::handle(encoded, "encoded")? };
        let chunk = encoded.chunks.get(index).ok_or_else(|| {
            FfiError::new(
                ZarrsResult::ZARRS_ERROR_INVALID_ARGUMENT,
                format!("index {index} is out of range for {} chunks", encoded.chunks.len()),
            )
        })?;
        let (ptr, len) = chunk.as_ref().map_or((std::ptr::null(), 0), |c| (c.as_ptr(), c.len()));
        // SAFETY: both checked non-NULL above and writable per the contract.
        unsafe {
            args::write_out(data_out, ptr)?;
            args::write_out(len_out, len)
        }
    })
}

/// Free encoded chunks. NULL is a no-op.
///
/// Thread safety: the handle must not be in use by another thread.
#[no_mangle]
pub extern "C" fn zarrs_encoded_chunks_free(encoded: *mut ZarrsEncodedChunks) -> ZarrsResult {
    boundary(|| {
        if !encoded.is_null() {
            // SAFETY: non-NULL handles come from Box::into_raw in zarrs_array_encode_chunks
            // and the caller frees each exactly once.
            drop(unsafe { Box::from_raw(encoded) });
        }
        Ok(())
    })
}

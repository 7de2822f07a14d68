//! The `extern "C"` codec-only calls: decode and encode chunk bytes the caller moves itself.
//!
//! For stores only the caller can reach (an in-memory dict, a zip file, a Python store
//! wrapper), the caller fetches the encoded bytes, these calls decode a whole batch in
//! parallel straight into the caller's buffer, and encoding hands back bytes for the caller
//! to store. The array handle supplies codecs, data type and fill value; its storage is not
//! touched.

use crate::args::{self, EncodedInputs};
use crate::handles::{ZarrsArray, ZarrsEncodedChunks};
use crate::layout::Destination;
use crate::options::ZarrsOptions;
use crate::panic::boundary;
use crate::registry;
use crate::error::ZarrsResult;
use crate::process::warm::Burst;

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
        let _burst = Burst::begin();
        // SAFETY: every pointer addresses its stated length per the contract.
        let (array, options, inputs, jobs, out_shape, out) = unsafe {
            let array = args::handle(array, "array")?;
            let options = ZarrsOptions::from_ptr(options);
            let inputs = EncodedInputs::from_raw(num_chunks, encoded, encoded_lens, "encoded")?;
            let geometry = args::values(geometry, geometry_len, "geometry")?;
            let jobs = array.parse_jobs(num_chunks, None, &geometry)?;
            let out_shape = args::values(out_shape, array.array().dimensionality(), "out_shape")?;
            (array, options, inputs, jobs, out_shape, args::slice_mut(out, out_len, "out")?)
        };
        let destination = Destination::new(out, &out_shape, array.element_size()?, "out")?;
        array.decode_chunks(&options, jobs, &inputs, &destination)
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
        let _burst = Burst::begin();
        args::require_out(encoded_out, "encoded_out")?;
        // SAFETY: every pointer addresses its stated length per the contract.
        let (array, options, jobs, source, existing) = unsafe {
            let array = args::handle(array, "array")?;
            let options = ZarrsOptions::from_ptr(options);
            let geometry = args::values(geometry, geometry_len, "geometry")?;
            let jobs = array.parse_jobs(num_chunks, None, &geometry)?;
            let source = super::source(array, value, value_len, value_shape, value_ndim)?;
            (array, options, jobs, source, EncodedInputs::from_raw(num_chunks, existing, existing_lens, "existing")?)
        };
        let chunks = array.encode_chunks(&options, jobs, &source, &existing)?;
        let encoded = Box::new(ZarrsEncodedChunks::new(chunks));
        // SAFETY: checked non-NULL above; a writable pointer slot per the contract.
        unsafe { args::write_out(encoded_out, registry::issue_boxed(encoded)) }
    })
}

/// Write the number of chunks held to `count_out`.
#[no_mangle]
pub extern "C" fn zarrs_encoded_chunks_count(encoded: *const ZarrsEncodedChunks, count_out: *mut usize) -> ZarrsResult {
    boundary(|| {
        // SAFETY: a live handle per the contract.
        let encoded = unsafe { args::handle(encoded, "encoded")? };
        // SAFETY: a writable out-parameter per the contract (NULL is an error).
        unsafe { args::write_out(count_out, encoded.count()) }
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
        let chunk = encoded.get(index)?;
        let (ptr, len) = chunk.map_or((std::ptr::null(), 0), |c| (c.as_ptr(), c.len()));
        // SAFETY: both checked non-NULL above and writable per the contract.
        unsafe {
            args::write_out(data_out, ptr)?;
            args::write_out(len_out, len)
        }
    })
}

/// Free encoded chunks. NULL is a no-op. A handle freed already, of
/// another kind, or not from this library is `ZARRS_ERROR_INVALID_ARGUMENT` and nothing is
/// freed.
///
/// Thread safety: the handle must not be in use by another thread.
#[no_mangle]
pub extern "C" fn zarrs_encoded_chunks_free(encoded: *mut ZarrsEncodedChunks) -> ZarrsResult {
    boundary(|| {
        drop(registry::retire(encoded, "encoded")?);
        Ok(())
    })
}

//! The `extern "C"` codec-only calls for variable-length data types (`string`, `bytes`).
//!
//! Elements of these types have no fixed size, so they cannot be decoded into a caller's
//! strided buffer. Whole chunks are decoded into element bytes plus element offsets, which
//! the caller turns into its own objects, and encoded from the same layout. Chunk bytes are
//! fetched and stored by the caller, as for the codec-only calls of `codec.rs`.

use crate::args::{self, EncodedInputs};
use crate::handles::{ZarrsArray, ZarrsEncodedChunks, ZarrsVariableChunks};
use crate::options::ZarrsOptions;
use crate::panic::boundary;
use crate::registry;
use crate::error::ZarrsResult;
use crate::process::warm::Burst;

/// Decode whole chunks of a variable-length data type, in parallel.
///
/// - `encoded`, `encoded_lens` (`num_chunks` each): a pointer to each chunk's encoded bytes
///   and their length, as for `zarrs_array_decode_chunks`; every chunk must be present (the
///   caller fills missing chunks with the fill value itself).
/// - `chunk_shapes` (`num_chunks * ndim` values, `chunk_shapes_len`): each chunk's shape.
/// - `decoded_out`: receives a new [`ZarrsVariableChunks`] with, per chunk, the elements'
///   bytes back to back and `elements + 1` byte offsets, in C order.
///
/// Fixed-size data types fail with `ZARRS_ERROR_UNSUPPORTED`; corrupt bytes with
/// `ZARRS_ERROR_CODEC`.
///
/// Thread safety: safe to call concurrently on the same array.
#[no_mangle]
pub extern "C" fn zarrs_array_decode_variable_chunks(
    array: *const ZarrsArray,
    options: *const ZarrsOptions,
    num_chunks: usize,
    encoded: *const *const u8,
    encoded_lens: *const usize,
    chunk_shapes: *const u64,
    chunk_shapes_len: usize,
    decoded_out: *mut *mut ZarrsVariableChunks,
) -> ZarrsResult {
    boundary(|| {
        let _burst = Burst::begin();
        args::require_out(decoded_out, "decoded_out")?;
        // SAFETY: every pointer addresses its stated length per the contract.
        let (array, options, inputs, shapes) = unsafe {
            let array = args::handle(array, "array")?;
            array.require_variable()?;
            let options = ZarrsOptions::from_ptr(options);
            let inputs = EncodedInputs::from_raw(num_chunks, encoded, encoded_lens, "encoded")?;
            (array, options, inputs, args::values(chunk_shapes, chunk_shapes_len, "chunk_shapes")?)
        };
        let chunks = array.decode_variable_chunks(&options, &inputs, &shapes, num_chunks)?;
        let decoded = Box::new(ZarrsVariableChunks::new(chunks));
        // SAFETY: checked non-NULL above; a writable pointer slot per the contract.
        unsafe { args::write_out(decoded_out, registry::issue_boxed(decoded)) }
    })
}

/// Borrow chunk `index` of decoded variable-length chunks: its element bytes (`data_out`,
/// `data_len_out`) and `elements + 1` offsets into them (`offsets_out`, `offsets_len_out`).
/// The pointers stay valid until the handle is freed.
#[no_mangle]
pub extern "C" fn zarrs_variable_chunks_get(
    chunks: *const ZarrsVariableChunks,
    index: usize,
    data_out: *mut *const u8,
    data_len_out: *mut usize,
    offsets_out: *mut *const u64,
    offsets_len_out: *mut usize,
) -> ZarrsResult {
    boundary(|| {
        args::require_out(data_out, "data_out")?;
        args::require_out(data_len_out, "data_len_out")?;
        args::require_out(offsets_out, "offsets_out")?;
        args::require_out(offsets_len_out, "offsets_len_out")?;
        // SAFETY: a live handle per the contract.
        let chunks = unsafe { args::handle(chunks, "chunks")? };
        let (bytes, offsets) = chunks.get(index)?;
        // SAFETY: all four checked non-NULL above and writable per the contract.
        unsafe {
            args::write_out(data_out, bytes.as_ptr())?;
            args::write_out(data_len_out, bytes.len())?;
            args::write_out(offsets_out, offsets.as_ptr())?;
            args::write_out(offsets_len_out, offsets.len())
        }
    })
}

/// Free decoded variable-length chunks. NULL is a no-op. A handle freed already, of
/// another kind, or not from this library is `ZARRS_ERROR_INVALID_ARGUMENT` and nothing is
/// freed.
///
/// Thread safety: the handle must not be in use by another thread.
#[no_mangle]
pub extern "C" fn zarrs_variable_chunks_free(chunks: *mut ZarrsVariableChunks) -> ZarrsResult {
    boundary(|| {
        drop(registry::retire(chunks, "chunks")?);
        Ok(())
    })
}

/// Encode whole chunks of a variable-length data type, in parallel.
///
/// - `chunk_shapes` (`num_chunks * ndim` values, `chunk_shapes_len`): each chunk's shape.
/// - `data`, `data_len`: the elements of every chunk back to back (chunk by chunk, C order).
/// - `element_offsets` (`element_offsets_len` = total elements + 1): byte offsets of the
///   elements in `data`, monotonically increasing.
/// - `encoded_out`: receives a new [`ZarrsEncodedChunks`] with one entry per chunk. Every
///   entry has bytes: deciding that a chunk is all fill value is left to the caller.
///
/// Thread safety: safe to call concurrently on the same array.
#[no_mangle]
pub extern "C" fn zarrs_array_encode_variable_chunks(
    array: *const ZarrsArray,
    options: *const ZarrsOptions,
    num_chunks: usize,
    chunk_shapes: *const u64,
    chunk_shapes_len: usize,
    data: *const u8,
    data_len: usize,
    element_offsets: *const u64,
    element_offsets_len: usize,
    encoded_out: *mut *mut ZarrsEncodedChunks,
) -> ZarrsResult {
    boundary(|| {
        let _burst = Burst::begin();
        args::require_out(encoded_out, "encoded_out")?;
        // SAFETY: every pointer addresses its stated length per the contract.
        let (array, options, shapes, data, offsets) = unsafe {
            let array = args::handle(array, "array")?;
            array.require_variable()?;
            let options = ZarrsOptions::from_ptr(options);
            let shapes = args::values(chunk_shapes, chunk_shapes_len, "chunk_shapes")?;
            let data = args::slice(data, data_len, "data")?;
            (array, options, shapes, data, args::values(element_offsets, element_offsets_len, "element_offsets")?)
        };
        let chunks = array.encode_variable_chunks(&options, &shapes, num_chunks, data, &offsets)?;
        let encoded = Box::new(ZarrsEncodedChunks::new(chunks));
        // SAFETY: checked non-NULL above; a writable pointer slot per the contract.
        unsafe { args::write_out(encoded_out, registry::issue_boxed(encoded)) }
    })
}

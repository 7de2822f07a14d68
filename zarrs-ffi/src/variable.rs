//! Codec-only calls for variable-length data types (`string`, `bytes`).
//!
//! Elements of these types have no fixed size, so they cannot be decoded into a caller's
//! strided buffer. Whole chunks are decoded into element bytes plus element offsets, which
//! the caller turns into its own objects, and encoded from the same layout. Chunk bytes are
//! fetched and stored by the caller, as for [`crate::codec`].

use std::borrow::Cow;
use std::num::NonZeroU64;

use rayon::iter::{IntoParallelIterator, ParallelIterator};
use rayon_iter_concurrent_limit::iter_concurrent_limit;
use zarrs::array::{ArrayBytes, ArrayBytesOffsets, ArrayToBytesCodecTraits, CodecError};
use zarrs::storage::StoreKey;

use crate::args;
use crate::array::ZarrsArray;
use crate::codec::{EncodedInputs, ZarrsEncodedChunks};
use crate::error::{FfiError, FfiResult, ZarrsResult};
use crate::options::ZarrsOptions;
use crate::panic::boundary;

/// Decoded variable-length chunks from [`zarrs_array_decode_variable_chunks`]. Read with
/// [`zarrs_variable_chunks_get`]; free with [`zarrs_variable_chunks_free`].
///
/// Thread safety: read-only after creation; may be read from many threads.
pub struct ZarrsVariableChunks {
    chunks: Vec<(Vec<u8>, Vec<u64>)>,
}

impl ZarrsArray {
    fn require_variable(&self) -> FfiResult<()> {
        if self.array.data_type().fixed_size().is_some() {
            return Err(FfiError::new(
                ZarrsResult::ZARRS_ERROR_UNSUPPORTED,
                format!("data type {} has fixed-size elements; use the buffer calls", self.array.data_type()),
            ));
        }
        Ok(())
    }

    /// The chunk shapes of a call: `num_chunks` rows of `ndim` values.
    fn chunk_shapes(&self, shapes: &[u64], num_chunks: usize) -> FfiResult<Vec<Vec<NonZeroU64>>> {
        let ndim = self.array.dimensionality();
        if Some(shapes.len()) != num_chunks.checked_mul(ndim) {
            return Err(FfiError::invalid(format!(
                "`chunk_shapes` has {} values; {num_chunks} chunks of {ndim} dimensions need {}",
                shapes.len(),
                num_chunks.saturating_mul(ndim)
            )));
        }
        if ndim == 0 {
            return Ok(vec![Vec::new(); num_chunks]);
        }
        shapes
            .chunks(ndim)
            .enumerate()
            .map(|(i, shape)| {
                let name = StoreKey::new(format!("chunk-{i}")).map_err(|e| FfiError::invalid(e.to_string()))?;
                let shape = args::nonzero_shape(shape, &format!("chunk {name}: chunk shape"))?;
                self.check_chunk_shape(&shape, &name)?;
                Ok(shape)
            })
            .collect()
    }
}

fn elements(shape: &[NonZeroU64]) -> FfiResult<usize> {
    let shape: Vec<u64> = shape.iter().map(|d| d.get()).collect();
    usize::try_from(args::num_elements(&shape)?).map_err(|_| FfiError::invalid("chunk has too many elements"))
}

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
        args::require_out(decoded_out, "decoded_out")?;
        // SAFETY: every pointer addresses its stated length per the contract.
        let array = unsafe { args::handle(array, "array")? };
        array.require_variable()?;
        let options = unsafe { ZarrsOptions::from_ptr(options) };
        let inputs = unsafe { EncodedInputs::from_raw(num_chunks, encoded, encoded_lens, "encoded")? };
        let shapes = unsafe { args::values(chunk_shapes, chunk_shapes_len, "chunk_shapes")? };
        let shapes = array.chunk_shapes(&shapes, num_chunks)?;
        let codec_options = options.single_chunk();
        let cap = options.max_variable_chunk_bytes();
        let (data_type, fill_value) = (array.array.data_type(), array.array.fill_value());
        let indexed: Vec<usize> = (0..num_chunks).collect();
        let limit = std::cmp::max(1, num_chunks);
        let chunks = options.install(|| {
            iter_concurrent_limit!(limit, indexed, map, |i: usize| {
                let bytes = inputs.get(i).ok_or_else(|| FfiError::invalid(format!("chunk {i} has no bytes (NULL)")))?;
                let shape = &shapes[i];
                let in_chunk = |e: FfiError| {
                    let key = StoreKey::new(format!("chunk-{i}")).expect("a valid key");
                    array.in_chunk(&key, e)
                };
                let (bytes, offsets): (Cow<'_, [u8]>, Cow<'_, [usize]>) = if let Some(shard) = &array.shard {
                    // Our shard reader, not zarrs' sharding codec: inner chunks decode
                    // within bounds and their layouts are checked.
                    let (bytes, offsets) = shard
                        .decode_variable(bytes, shape, data_type, fill_value, cap, &codec_options)
                        .map_err(in_chunk)?;
                    (Cow::Owned(bytes), Cow::Owned(offsets))
                } else {
                    let decoded = array
                        .codecs
                        .decode(Cow::Borrowed(bytes), shape, data_type, fill_value, cap, &codec_options)
                        .map_err(in_chunk)?
                        .into_variable()
                        .map_err(CodecError::from)?;
                    let (bytes, offsets) = decoded.into_parts();
                    (bytes, Cow::Owned(offsets.to_vec()))
                };
                if offsets.len() != elements(shape)? + 1 {
                    return Err(FfiError::new(
                        ZarrsResult::ZARRS_ERROR_CODEC,
                        format!("chunk {i} decoded to {} elements, expected {}", offsets.len() - 1, elements(shape)?),
                    ));
                }
                Ok((bytes.into_owned(), offsets.iter().map(|&o| o as u64).collect()))
            })
            .collect::<FfiResult<Vec<_>>>()
        })??;
        let decoded = Box::new(ZarrsVariableChunks { chunks });
        // SAFETY: checked non-NULL above.
        unsafe { args::write_out(decoded_out, Box::into_raw(decoded)) }
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
        let (bytes, offsets) = chunks.chunks.get(index).ok_or_else(|| {
            FfiError::invalid(format!("index {index} is out of range for {} chunks", chunks.chunks.len()))
        })?;
        // SAFETY: all four checked non-NULL above and writable per the contract.
        unsafe {
            args::write_out(data_out, bytes.as_ptr())?;
            args::write_out(data_len_out, bytes.len())?;
            args::write_out(offsets_out, offsets.as_ptr())?;
            args::write_out(offsets_len_out, offsets.len())
        }
    })
}

/// Free decoded variable-length chunks. NULL is a no-op.
///
/// Thread safety: the handle must not be in use by another thread.
#[no_mangle]
pub extern "C" fn zarrs_variable_chunks_free(chunks: *mut ZarrsVariableChunks) -> ZarrsResult {
    boundary(|| {
        if !chunks.is_null() {
            // SAFETY: non-NULL handles come from Box::into_raw in
            // zarrs_array_decode_variable_chunks and the caller frees each exactly once.
            drop(unsafe { Box::from_raw(chunks) });
        }
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
        args::require_out(encoded_out, "encoded_out")?;
        // SAFETY: every pointer addresses its stated length per the contract.
        let array = unsafe { args::handle(array, "array")? };
        array.require_variable()?;
        let options = unsafe { ZarrsOptions::from_ptr(options) };
        let shapes = unsafe { args::values(chunk_shapes, chunk_shapes_len, "chunk_shapes")? };
        let shapes = array.chunk_shapes(&shapes, num_chunks)?;
        let data = unsafe { args::slice(data, data_len, "data")? };
        let offsets = unsafe { args::values(element_offsets, element_offsets_len, "element_offsets")? };
        let counts = shapes.iter().map(|s| elements(s)).collect::<FfiResult<Vec<usize>>>()?;
        // Checked: chunk shapes come from the caller, and a wrapped sum would pass the
        // length check below with far too few offsets.
        let total = counts
            .iter()
            .try_fold(0usize, |sum, &n| sum.checked_add(n))
            .and_then(|total| total.checked_add(1).map(|plus_one| (total, plus_one)))
            .ok_or_else(|| FfiError::invalid("the chunk shapes' element counts overflow"))?;
        let (total, needed) = total;
        if offsets.len() != needed {
            return Err(FfiError::invalid(format!(
                "`element_offsets` has {} values; {total} elements need {needed}",
                offsets.len(),
            )));
        }
        if offsets.windows(2).any(|w| w[1] < w[0]) || offsets.last().is_some_and(|&last| last > data.len() as u64) {
            return Err(FfiError::invalid("`element_offsets` must increase and stay within `data`"));
        }
        let mut starts = Vec::with_capacity(num_chunks);
        let mut first = 0usize;
        for &count in &counts {
            starts.push(first);
            first += count;
        }
        let codec_options = options.single_chunk();
        let (data_type, fill_value) = (array.array.data_type(), array.array.fill_value());
        let indexed: Vec<usize> = (0..num_chunks).collect();
        let limit = std::cmp::max(1, num_chunks);
        let chunks = options.install(|| {
            iter_concurrent_limit!(limit, indexed, map, |i: usize| {
                let window = &offsets[starts[i]..=starts[i] + counts[i]];
                // Checked above: increasing and within `data`, so these fit in usize.
                let base = window[0] as usize;
                let bytes = &data[base..window[window.len() - 1] as usize];
                let local: Vec<usize> = window.iter().map(|&o| o as usize - base).collect();
                let offsets = ArrayBytesOffsets::new(local).map_err(|e| FfiError::invalid(e.to_string()))?;
                let chunk = ArrayBytes::new_vlen(bytes, offsets).map_err(|e| FfiError::invalid(e.to_string()))?;
                let encoded = array.array.codecs().encode(chunk, &shapes[i], data_type, fill_value, &codec_options)?;
                Ok(Some(encoded.into_owned()))
            })
            .collect::<FfiResult<Vec<_>>>()
        })??;
        let encoded = Box::new(ZarrsEncodedChunks { chunks });
        // SAFETY: checked non-NULL above.
        unsafe { args::write_out(encoded_out, Box::into_raw(encoded)) }
    })
}

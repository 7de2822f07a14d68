//! Encoded chunks moved by the library's own storage, without decoding.
//!
//! A read-modify-write that decodes, edits and re-encodes chunks outside `write_chunks`
//! (a gathered selection: decode the bounding boxes, scatter, encode) fetches each chunk's
//! bytes once with [`zarrs_array_fetch_encoded`], hands them to `decode_chunks` and
//! `encode_chunks` (as `existing`), and stores the result with
//! [`zarrs_array_store_encoded`], instead of `read_chunks` and `write_chunks` each fetching
//! them. Both calls run concurrently: remote storage asks for every key at once, local
//! storage reads and writes in parallel; stores replace each value atomically, as
//! `write_chunks` does.

use std::collections::HashSet;
use std::ffi::c_char;

use zarrs::storage::StoreKey;

use crate::args;
use crate::handles::ZarrsArray;
use crate::args::offsets_len;
use crate::args::EncodedInputs;
use crate::handles::ZarrsEncodedChunks;
use crate::error::{FfiError, FfiResult, ZarrsResult};
use crate::options::ZarrsOptions;
use crate::panic::boundary;
use crate::registry;
use crate::process::warm::Burst;

/// Parse `num_chunks` keys given back to back with `num_chunks + 1` offsets, each confined
/// to the store.
///
/// # Safety
/// `keys` must address `keys_len` bytes and `key_offsets` `num_chunks + 1` values for the
/// duration of the call.
unsafe fn parse_keys(num_chunks: usize, keys: *const c_char, keys_len: usize, key_offsets: *const u64) -> FfiResult<Vec<StoreKey>> {
    // SAFETY: forwarded contract.
    let keys = unsafe { args::str(keys, keys_len, "keys")? };
    // SAFETY: forwarded contract.
    let offsets = unsafe { args::values(key_offsets, offsets_len(num_chunks)?, "key_offsets")? };
    (0..num_chunks).map(|i| args::key_at(keys, &offsets, i)).collect()
}


/// Fetch the stored (encoded) bytes of a batch of chunks through the array's storage,
/// concurrently, without decoding them.
///
/// - `array`, `options` (NULL: defaults; its thread count bounds local reads).
/// - `num_chunks`, `keys`, `keys_len`, `key_offsets`: the store keys, as for
///   `zarrs_array_read_chunks`.
/// - `encoded_out`: receives a new `ZarrsEncodedChunks` with one entry per key, read with
///   `zarrs_encoded_chunks_get` (NULL data: the key holds no value) and freed with
///   `zarrs_encoded_chunks_free`. Its entries can be passed straight to
///   `zarrs_array_decode_chunks` and, as `existing`, to `zarrs_array_encode_chunks`.
///
/// Thread safety: safe to call concurrently on the same array.
#[no_mangle]
pub extern "C" fn zarrs_array_fetch_encoded(
    array: *const ZarrsArray,
    options: *const ZarrsOptions,
    num_chunks: usize,
    keys: *const c_char,
    keys_len: usize,
    key_offsets: *const u64,
    encoded_out: *mut *mut ZarrsEncodedChunks,
) -> ZarrsResult {
    boundary(|| {
        let _burst = Burst::begin();
        args::require_out(encoded_out, "encoded_out")?;
        // SAFETY: every pointer addresses the length stated beside it, per the contract.
        let array = unsafe { args::handle(array, "array")? };
        // SAFETY: as above.
        let options = unsafe { ZarrsOptions::from_ptr(options) };
        // SAFETY: as above.
        let keys = unsafe { parse_keys(num_chunks, keys, keys_len, key_offsets)? };
        let chunks = array.fetch_encoded(&options, keys)?;
        let encoded = Box::new(ZarrsEncodedChunks::new(chunks));
        // SAFETY: checked non-NULL above.
        unsafe { args::write_out(encoded_out, registry::issue_boxed(encoded)) }
    })
}

/// Store encoded chunks through the array's storage, concurrently: `encoded[i]` points to
/// `encoded_lens[i]` bytes stored at key `i`; a NULL pointer erases the key (a chunk
/// `zarrs_array_encode_chunks` found entirely the fill value).
///
/// - `keys`, `keys_len`, `key_offsets`: as for `zarrs_array_write_chunks`; no key may
///   appear twice.
///
/// Each value is replaced atomically, as `zarrs_array_write_chunks` does: on failure every
/// key holds its old or its new value.
///
/// Thread safety: safe to call concurrently on the same array for disjoint sets of keys.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn zarrs_array_store_encoded(
    array: *const ZarrsArray,
    options: *const ZarrsOptions,
    num_chunks: usize,
    keys: *const c_char,
    keys_len: usize,
    key_offsets: *const u64,
    encoded: *const *const u8,
    encoded_lens: *const usize,
) -> ZarrsResult {
    boundary(|| {
        let _burst = Burst::begin();
        // SAFETY: every pointer addresses the length stated beside it, per the contract.
        let array = unsafe { args::handle(array, "array")? };
        // SAFETY: as above.
        let options = unsafe { ZarrsOptions::from_ptr(options) };
        // SAFETY: as above.
        let keys = unsafe { parse_keys(num_chunks, keys, keys_len, key_offsets)? };
        // SAFETY: as above: `num_chunks` pointers and lengths.
        let inputs = unsafe { EncodedInputs::from_raw(num_chunks, encoded, encoded_lens, "encoded")? };
        let mut seen = HashSet::with_capacity(keys.len());
        if let Some(key) = keys.iter().find(|key| !seen.insert(key.as_str())) {
            return Err(FfiError::invalid(format!("key {key} appears more than once")));
        }
        let values = keys.into_iter().enumerate().map(|(i, key)| (key, inputs.get(i))).collect();
        array.store_encoded(&options, values)
    })
}


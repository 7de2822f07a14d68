//! Handles misused as a C caller can misuse them: freed twice, used after being freed,
//! passed where another kind is expected, or never issued by the library. Each is
//! `ZARRS_ERROR_INVALID_ARGUMENT` naming the argument, and nothing is freed or touched.

use std::ptr::{null, null_mut};

use zarrs_ffi::ZarrsResult::{self, *};
use zarrs_ffi::*;

mod common;
use common::{check, expect_err};

#[track_caller]
fn refused(code: ZarrsResult, mentions: &[&str]) {
    expect_err(code, ZARRS_ERROR_INVALID_ARGUMENT, mentions);
}

fn memory_storage() -> *mut ZarrsStorage {
    let mut storage = null_mut();
    check(zarrs_storage_open_memory(&mut storage));
    storage
}

const METADATA: &str = r#"{"zarr_format": 3, "node_type": "array", "shape": [8], "data_type": "uint16",
    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4]}},
    "chunk_key_encoding": {"name": "default"}, "fill_value": 7,
    "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}]}"#;

fn array_on(storage: *const ZarrsStorage) -> *mut ZarrsArray {
    let mut array = null_mut();
    check(zarrs_array_create(storage, c"/a".as_ptr(), 2, METADATA.as_ptr().cast(), METADATA.len(), &mut array));
    array
}

fn ndim(array: *const ZarrsArray) -> ZarrsResult {
    let mut ndim = 0usize;
    zarrs_array_dimensionality(array, &mut ndim)
}

#[test]
fn double_free_is_refused_for_every_kind() {
    let storage = memory_storage();
    let array = array_on(storage);
    let mut queue = null_mut();
    let mut fd = -1;
    check(zarrs_completion_queue_new(&mut queue, &mut fd));
    let mut encoded = null_mut();
    check(zarrs_array_fetch_encoded(array, null(), 1, c"a/c/0".as_ptr(), 5, [0u64, 5].as_ptr(), &mut encoded));

    check(zarrs_encoded_chunks_free(encoded));
    refused(zarrs_encoded_chunks_free(encoded), &["`encoded`", "not a live ZarrsEncodedChunks handle"]);
    check(zarrs_completion_queue_free(queue));
    refused(zarrs_completion_queue_free(queue), &["`queue`", "freed already"]);
    check(zarrs_array_free(array));
    refused(zarrs_array_free(array), &["`array`", "freed already"]);
    check(zarrs_storage_free(storage));
    refused(zarrs_storage_free(storage), &["`storage`", "freed already"]);
}

#[test]
fn use_after_free_is_refused() {
    let storage = memory_storage();
    let array = array_on(storage);
    check(ndim(array));
    check(zarrs_array_free(array));
    refused(ndim(array), &["`array`", "not a live ZarrsArray handle"]);
    let mut out = [0u16; 4];
    let code = zarrs_array_retrieve_subset(array, null(), [0u64].as_ptr(), [4u64].as_ptr(), 1, out.as_mut_ptr().cast(), 8);
    refused(code, &["`array`"]);
    // The storage it was opened on is still live and usable.
    let other = array_on(storage);
    check(ndim(other));
    check(zarrs_array_free(other));
    check(zarrs_storage_free(storage));
    let mut again = null_mut();
    refused(zarrs_array_open(storage, c"/a".as_ptr(), 2, &mut again), &["`storage`", "not a live ZarrsStorage handle"]);
    assert!(again.is_null(), "out-parameters are written only on success");
}

#[test]
fn a_handle_of_another_kind_is_refused() {
    let storage = memory_storage();
    let array = array_on(storage);
    // A storage where an array is expected, and the other way round.
    refused(ndim(storage.cast()), &["`array` is a ZarrsStorage handle, not a ZarrsArray"]);
    let mut opened = null_mut();
    refused(
        zarrs_array_open(array.cast(), c"/a".as_ptr(), 2, &mut opened),
        &["`storage` is a ZarrsArray handle, not a ZarrsStorage"],
    );
    // Freeing through the wrong function frees nothing: both still work.
    refused(zarrs_storage_free(array.cast()), &["is a ZarrsArray handle"]);
    refused(zarrs_array_free(storage.cast()), &["is a ZarrsStorage handle"]);
    check(ndim(array));
    check(zarrs_array_free(array));
    check(zarrs_storage_free(storage));
}

#[test]
fn a_pointer_the_library_never_issued_is_refused() {
    let mut not_a_handle = [0u64; 16];
    let bogus = not_a_handle.as_mut_ptr().cast::<ZarrsArray>();
    refused(ndim(bogus), &["did not come from this library"]);
    refused(zarrs_array_free(bogus), &["did not come from this library"]);
    refused(zarrs_read_plan_free(bogus.cast()), &["not a live ZarrsReadPlan handle"]);
    refused(zarrs_variable_chunks_free(bogus.cast()), &["not a live ZarrsVariableChunks handle"]);
    assert_eq!(not_a_handle, [0; 16], "nothing was written through it");
}

//! Creating, opening and describing arrays.

use super::*;

#[test]
fn create_and_query() {
    let f = Fixture::zstd("query");
    let a = f.array.ptr();

    let mut ndim = 0usize;
    check(zarrs_array_dimensionality(a, &mut ndim));
    assert_eq!(ndim, 2);

    let mut shape = [0u64; 2];
    check(zarrs_array_shape(a, shape.as_mut_ptr(), 2));
    assert_eq!(shape, [64, 48]);

    let mut grid_shape = [0u64; 2];
    check(zarrs_array_chunk_grid_shape(a, grid_shape.as_mut_ptr(), 2));
    assert_eq!(grid_shape, [4, 3]);

    let mut chunk_shape = [0u64; 2];
    check(zarrs_array_chunk_shape(a, [3, 2].as_ptr(), 2, chunk_shape.as_mut_ptr()));
    assert_eq!(chunk_shape, [16, 16]);

    let mut size = 0usize;
    check(zarrs_array_element_size(a, &mut size));
    assert_eq!(size, 2);

    // Local arrays keep no shard indexes: setting a budget is accepted and changes nothing.
    check(zarrs_array_set_shard_index_cache(a, 1 << 20));
    let (mut entries, mut bytes) = (u64::MAX, u64::MAX);
    check(zarrs_array_shard_index_cache_usage(a, &mut entries, &mut bytes));
    assert_eq!((entries, bytes), (0, 0));

    let data_type = f
        .array
        .query_string(|buf, buf_len, len_out| zarrs_array_data_type(a, buf, buf_len, len_out));
    assert_eq!(data_type, "uint16");

    assert_eq!(f.array.chunk_key(&[1, 2]), "arr/c/1/2");
    assert_eq!(f.array.chunk_key(&[0, 0]), "arr/c/0/0");

    // Metadata: the size probe reports the exact length; the JSON is the stored document.
    let json = f.array.metadata_json();
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let on_disk: serde_json::Value = serde_json::from_slice(&std::fs::read(f.file("zarr.json")).unwrap()).unwrap();
    // The stored document is the one given: no `_zarrs` attribute added by zarrs.
    assert!(on_disk["attributes"].get("_zarrs").is_none(), "{on_disk}");
    assert_eq!(parsed, on_disk);
    assert_eq!(parsed["shape"], serde_json::json!([64, 48]));
    assert_eq!(parsed["data_type"], "uint16");
    assert_eq!(parsed["fill_value"], FILL);
    assert_eq!(parsed["attributes"]["note"], "abi test");

    // A buffer one byte short fails, reports the needed length and is left untouched.
    let mut small = vec![b'#'; json.len() - 1];
    let mut len = 0usize;
    expect_err(
        zarrs_array_metadata(a, small.as_mut_ptr().cast(), small.len(), &mut len),
        ZARRS_ERROR_BUFFER_SIZE,
        "required",
    );
    assert_eq!(len, json.len());
    assert!(small.iter().all(|&b| b == b'#'));

    // A larger buffer succeeds; only the first `len` bytes are written, with no terminator.
    let mut big = vec![b'#'; json.len() + 8];
    check(zarrs_array_metadata(a, big.as_mut_ptr().cast(), big.len(), &mut len));
    assert_eq!(len, json.len());
    assert_eq!(&big[..len], json.as_bytes());
    assert!(big[len..].iter().all(|&b| b == b'#'));

    // Reopening from the store gives the same array.
    let reopened = Array::open(&f.storage, "/arr");
    let reopened: serde_json::Value = serde_json::from_str(&reopened.metadata_json()).unwrap();
    assert_eq!(reopened, parsed);
}

#[test]
fn query_bad_arguments() {
    let f = Fixture::zstd("query-bad");
    let a = f.array.ptr();
    let mut dims = [SENTINEL as u64; 3];

    expect_err(zarrs_array_chunk_shape(a, [0, 0, 0].as_ptr(), 3, dims.as_mut_ptr()), ZARRS_ERROR_INVALID_ARGUMENT, "dimensions");
    // The grid is 4 x 3 chunks: indices past it name no chunk.
    expect_err(zarrs_array_chunk_shape(a, [4, 0].as_ptr(), 2, dims.as_mut_ptr()), ZARRS_ERROR_INVALID_ARGUMENT, "grid");
    expect_err(zarrs_array_chunk_shape(a, [0, 3].as_ptr(), 2, dims.as_mut_ptr()), ZARRS_ERROR_INVALID_ARGUMENT, "grid");
    assert_eq!(dims, [SENTINEL as u64; 3]);

    let mut buf = [0u8; 64];
    let mut len = usize::MAX;
    expect_err(
        zarrs_array_chunk_key(a, [4, 0].as_ptr(), 2, buf.as_mut_ptr().cast(), buf.len(), &mut len),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "grid",
    );
    expect_err(
        zarrs_array_chunk_key(a, [0, 0].as_ptr(), 1, buf.as_mut_ptr().cast(), buf.len(), &mut len),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "dimensions",
    );
    assert_eq!(len, usize::MAX, "out-parameters are written only on success");
}

#[test]
fn create_and_open_bad_arguments() {
    let dir = TempDir::new("create-bad");
    let storage = Storage::open(&dir.0, false);
    let s = storage.0;
    let good = metadata([8, 8], [4, 4], &codecs_zstd());
    let mut array = null_mut();

    let try_create = |path: &[u8], json: &str, out: *mut *mut ZarrsArray| {
        zarrs_array_create(s, path.as_ptr().cast(), path.len(), json.as_ptr().cast(), json.len(), out)
    };

    expect_err(try_create(b"/\xc3\x28", &good, &mut array), ZARRS_ERROR_INVALID_ARGUMENT, "UTF-8");
    expect_err(try_create(b"/a", "{ not json", &mut array), ZARRS_ERROR_INVALID_METADATA, "invalid array metadata");
    expect_err(
        try_create(b"/a", r#"{"shape":[8,8]}"#, &mut array),
        ZARRS_ERROR_INVALID_METADATA,
        "zarr_format",
    );
    // Valid JSON, zarr_format 3, but required fields missing.
    expect_err(
        try_create(b"/a", r#"{"zarr_format":3,"node_type":"array","shape":[8,8]}"#, &mut array),
        ZARRS_ERROR_INVALID_METADATA,
        "invalid array metadata",
    );
    let bad_utf8_json = b"{\"zarr_format\":3,\xff}";
    expect_err(
        zarrs_array_create(s, b"/a".as_ptr().cast(), 2, bad_utf8_json.as_ptr().cast(), bad_utf8_json.len(), &mut array),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "UTF-8",
    );
    // Unknown codec and data type names: unsupported, not invalid.
    let unknown_codec = metadata([8, 8], [4, 4], &format!(r#"[{BYTES},{{"name":"no_such_codec"}}]"#));
    expect_err(try_create(b"/a", &unknown_codec, &mut array), ZARRS_ERROR_UNSUPPORTED, "no_such_codec");
    let unknown_type = good.replace(r#""data_type":"uint16""#, r#""data_type":"uint13""#);
    expect_err(try_create(b"/a", &unknown_type, &mut array), ZARRS_ERROR_UNSUPPORTED, "uint13");
    assert!(array.is_null(), "out-parameters are written only on success");
    assert!(!dir.0.join("a").exists(), "nothing is stored by a failed create");

    // Opening an array that does not exist.
    let mut array = null_mut();
    expect_err(
        zarrs_array_open(s, b"/nothing".as_ptr().cast(), 8, &mut array),
        ZARRS_ERROR_INVALID_METADATA,
        "missing",
    );
    // A zarr.json that is not valid metadata.
    std::fs::create_dir_all(dir.0.join("broken")).unwrap();
    std::fs::write(dir.0.join("broken/zarr.json"), b"{ truncated").unwrap();
    expect_err(
        zarrs_array_open(s, b"/broken".as_ptr().cast(), 7, &mut array),
        ZARRS_ERROR_INVALID_METADATA,
        "broken",
    );
    assert!(array.is_null());
}

#[test]
fn open_with_metadata_does_not_touch_the_store() {
    let dir = TempDir::new("open-with-metadata");
    let storage = Storage::open(&dir.0, false);
    let json = metadata([8, 8], [4, 4], &codecs_zstd());
    let mut handle = null_mut();
    check(zarrs_array_open_with_metadata(
        storage.0,
        b"/m".as_ptr().cast(),
        2,
        json.as_ptr().cast(),
        json.len(),
        &mut handle,
    ));
    let array = Array(handle);
    assert!(!dir.0.join("m").exists(), "open_with_metadata writes nothing");
    let data = grid([8, 8], value);
    array.store(&[0, 0], &[8, 8], &data);
    assert_eq!(array.retrieve(&[0, 0], &[8, 8]), data);
    assert!(dir.0.join("m/c/1/1").is_file());
    assert!(!dir.0.join("m/zarr.json").exists());
}

#[test]
fn zarr_v2_metadata() {
    let dir = TempDir::new("v2");
    let storage = Storage::open(&dir.0, false);
    let json = r#"{"zarr_format":2,"shape":[10],"chunks":[4],"dtype":"<u2","compressor":null,"fill_value":7,"order":"C","filters":null,"attributes":{}}"#;
    let array = Array::create(&storage, "/v2", json);
    assert!(dir.0.join("v2/.zarray").is_file());
    let data: Vec<u16> = (0..10).map(|i| 300 + i).collect();
    array.store(&[0], &[10], &data);
    assert_eq!(array.retrieve(&[0], &[10]), data);
    assert_eq!(array.chunk_key(&[2]), "v2/2");
    // The last chunk is 4 elements although only 2 are inside the array.
    let (chunk, present) = array.retrieve_chunk(&[2], 4);
    assert!(present);
    assert_eq!(chunk, [308, 309, FILL, FILL]);
    // Uncompressed v2 chunks are the raw little-endian elements.
    assert_eq!(std::fs::read(dir.0.join("v2/0")).unwrap(), [44, 1, 45, 1, 46, 1, 47, 1]);
}

#[test]
fn absurd_metadata_is_refused_at_open() {
    let mut storage = null_mut();
    check(zarrs_storage_open_memory(&mut storage));
    let storage = Storage(storage);
    let open = |shape: [u64; 2], chunk: [u64; 2], codecs: &str| {
        let json = metadata(shape, chunk, codecs);
        let mut handle = null_mut();
        let code = zarrs_array_open_with_metadata(storage.0, b"/".as_ptr().cast(), 1, json.as_ptr().cast(), json.len(), &mut handle);
        if !handle.is_null() {
            zarrs_array_free(handle);
        }
        code
    };
    let huge = [1 << 62, 1 << 62];
    expect_err(open(huge, huge, &format!("[{BYTES}]")), ZARRS_ERROR_INVALID_METADATA, "overflows");
    expect_err(open(huge, [1 << 31, 1 << 31], &format!("[{BYTES}]")), ZARRS_ERROR_INVALID_METADATA, "memory");
    expect_err(open(huge, [1 << 40, 1], &codecs_sharded([1, 1])), ZARRS_ERROR_INVALID_METADATA, "inner chunks");
    // Large but possible chunks and shards open (nothing is allocated until data is read).
    check(open(huge, [1 << 20, 1 << 20], &format!("[{BYTES}]")));
    check(open(huge, [1 << 12, 1 << 12], &codecs_sharded([1, 1])));
}

//! Variable-length (string) chunks.

use super::*;

#[test]
fn variable_length_round_trip_and_bad_arguments() {
    use zarrs_ffi::*;

    let mut storage = null_mut();
    check(zarrs_storage_open_memory(&mut storage));
    let storage = Storage(storage);
    let json = r#"{"zarr_format":3,"node_type":"array","shape":[6],"data_type":"string",
        "chunk_grid":{"name":"regular","configuration":{"chunk_shape":[3]}},
        "chunk_key_encoding":{"name":"default"},"fill_value":"",
        "codecs":[{"name":"vlen-utf8"},{"name":"zstd","configuration":{"level":1,"checksum":false}}]}"#;
    let mut handle = null_mut();
    check(zarrs_array_open_with_metadata(storage.0, b"/".as_ptr().cast(), 1, json.as_ptr().cast(), json.len(), &mut handle));
    let array = Array(handle);

    // Two chunks of three strings each, elements back to back.
    let words = ["", "zarr", "é€", "a", "bb", "ccc"];
    let data: Vec<u8> = words.concat().into_bytes();
    let mut offsets = vec![0u64];
    for w in words {
        offsets.push(offsets.last().unwrap() + w.len() as u64);
    }
    let shapes = [3u64, 3];
    let mut encoded = null_mut();
    check(zarrs_array_encode_variable_chunks(
        array.ptr(), null(), 2, shapes.as_ptr(), 2, data.as_ptr(), data.len(), offsets.as_ptr(), offsets.len(), &mut encoded,
    ));
    let chunks: Vec<Vec<u8>> = (0..2)
        .map(|i| {
            let (mut ptr, mut len) = (null(), 0usize);
            check(zarrs_encoded_chunks_get(encoded, i, &mut ptr, &mut len));
            // SAFETY: valid until the handle is freed, below.
            unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec()
        })
        .collect();
    check(zarrs_encoded_chunks_free(encoded));

    let both = Encoded::new(&[Some(&chunks[0]), Some(&chunks[1])]);
    let mut decoded = null_mut();
    check(zarrs_array_decode_variable_chunks(
        array.ptr(), null(), 2, both.pointers.as_ptr(), both.lens.as_ptr(), shapes.as_ptr(), 2, &mut decoded,
    ));
    for (i, expected) in words.chunks(3).enumerate() {
        let (mut bytes, mut len, mut offs, mut offs_len) = (null(), 0usize, null(), 0usize);
        check(zarrs_variable_chunks_get(decoded, i, &mut bytes, &mut len, &mut offs, &mut offs_len));
        // SAFETY: valid until the handle is freed, below.
        let (bytes, offs) = unsafe { (std::slice::from_raw_parts(bytes, len), std::slice::from_raw_parts(offs, offs_len)) };
        let got: Vec<&str> = offs.windows(2).map(|w| std::str::from_utf8(&bytes[w[0] as usize..w[1] as usize]).unwrap()).collect();
        assert_eq!(got, expected);
    }
    expect_err(
        zarrs_variable_chunks_get(decoded, 2, &mut null(), &mut 0, &mut null(), &mut 0),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "out of range",
    );
    check(zarrs_variable_chunks_free(decoded));
    check(zarrs_variable_chunks_free(null_mut()));

    // Corrupt bytes, wrong shapes and offsets, NULLs: errors, never a crash.
    let garbage = Encoded::new(&[Some(b"not zstd at all")]);
    expect_err(
        zarrs_array_decode_variable_chunks(array.ptr(), null(), 1, garbage.pointers.as_ptr(), garbage.lens.as_ptr(), shapes.as_ptr(), 1, &mut decoded),
        ZARRS_ERROR_CODEC,
        "",
    );
    expect_err(
        zarrs_array_decode_variable_chunks(array.ptr(), null(), 2, both.pointers.as_ptr(), both.lens.as_ptr(), shapes.as_ptr(), 1, &mut decoded),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "chunk_shapes",
    );
    let backwards = [0u64, 5, 3, 6, 7, 9, 12];
    expect_err(
        zarrs_array_encode_variable_chunks(array.ptr(), null(), 2, shapes.as_ptr(), 2, data.as_ptr(), data.len(), backwards.as_ptr(), 7, &mut encoded),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "element_offsets",
    );
    // A fixed-size array refuses the variable-length calls.
    let f = Fixture::zstd("variable-on-fixed");
    expect_err(
        zarrs_array_decode_variable_chunks(f.array.ptr(), null(), 1, both.pointers.as_ptr(), both.lens.as_ptr(), WHOLE.as_ptr(), 2, &mut decoded),
        ZARRS_ERROR_UNSUPPORTED,
        "fixed-size",
    );
}

/// Decode one variable-length chunk of `len` elements: its strings, or the error code.
fn decode_strings(array: &Array, chunk: &[u8], len: u64) -> Result<Vec<String>, ZarrsResult> {
    use zarrs_ffi::*;
    let encoded = Encoded::new(&[Some(chunk)]);
    let mut decoded = null_mut();
    let code = zarrs_array_decode_variable_chunks(array.ptr(), null(), 1, encoded.pointers.as_ptr(), encoded.lens.as_ptr(), [len].as_ptr(), 1, &mut decoded);
    if code != ZARRS_SUCCESS {
        return Err(code);
    }
    let (mut bytes, mut n, mut offs, mut offs_len) = (null(), 0usize, null(), 0usize);
    check(zarrs_variable_chunks_get(decoded, 0, &mut bytes, &mut n, &mut offs, &mut offs_len));
    // SAFETY: valid until the handle is freed, below.
    let (bytes, offs) = unsafe { (std::slice::from_raw_parts(bytes, n), std::slice::from_raw_parts(offs, offs_len)) };
    let strings = offs.windows(2).map(|w| String::from_utf8(bytes[w[0] as usize..w[1] as usize].to_vec()).unwrap()).collect();
    check(zarrs_variable_chunks_free(decoded));
    Ok(strings)
}

/// The numcodecs VLen layout: element count, then per element its length and bytes.
fn vlen(count: u32, elements: &[(u32, &[u8])]) -> Vec<u8> {
    let mut out = count.to_le_bytes().to_vec();
    for (len, bytes) in elements {
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

#[test]
fn corrupt_variable_length_chunks_are_codec_errors() {
    let mut storage = null_mut();
    check(zarrs_storage_open_memory(&mut storage));
    let storage = Storage(storage);
    let array = open_string_array(&storage, 3, r#"[{"name":"vlen-utf8"}]"#);
    let good = vlen(3, &[(1, b"a"), (0, b""), (2, b"bc")]);
    assert_eq!(decode_strings(&array, &good, 3).unwrap(), ["a", "", "bc"]);
    // Element lengths past the end (zarrs sliced by them and panicked), a wrong count, a
    // chunk too short for its lengths: codec errors naming the chunk.
    for (bytes, mentions) in [
        (vlen(3, &[(1, b"a"), (u32::MAX, b""), (0, b"")]), "element 1 of 3 declares 4294967295 bytes"),
        (vlen(3, &[(1, b"a"), (0, b""), (3, b"bc")]), "element 2 of 3 declares 3 bytes, 2 remain"),
        (vlen(2, &[(1, b"a"), (0, b"")]), "declares 2 elements, the chunk holds 3"),
        (vlen(3, &[(1, b"a")]), "ends before the length of element 1"),
        (vec![1, 0], "too short"),
    ] {
        assert_eq!(decode_strings(&array, &bytes, 3), Err(ZARRS_ERROR_CODEC), "{mentions}");
        let message = last_error();
        assert!(message.contains(mentions) && message.contains("chunk-0"), "{message:?} does not mention {mentions:?}");
    }
}

#[test]
fn variable_length_shards_decode_within_bounds() {
    use zarrs_ffi::*;
    let mut storage = null_mut();
    check(zarrs_storage_open_memory(&mut storage));
    let storage = Storage(storage);
    // Shards of 4 strings, inner chunks of 2, an unprotected index at the end.
    let codecs = r#"[{"name":"sharding_indexed","configuration":{"chunk_shape":[2],
        "codecs":[{"name":"vlen-utf8"},{"name":"zstd","configuration":{"level":1,"checksum":false}}],
        "index_codecs":[{"name":"bytes","configuration":{"endian":"little"}}],"index_location":"end"}}]"#;
    let array = open_string_array(&storage, 4, codecs);

    let words = ["x", "", "zarr", "é€"];
    let data = words.concat().into_bytes();
    let mut offsets = vec![0u64];
    for w in words {
        offsets.push(offsets.last().unwrap() + w.len() as u64);
    }
    let mut encoded = null_mut();
    check(zarrs_array_encode_variable_chunks(array.ptr(), null(), 1, [4u64].as_ptr(), 1, data.as_ptr(), data.len(), offsets.as_ptr(), offsets.len(), &mut encoded));
    let (mut ptr, mut len) = (null(), 0usize);
    check(zarrs_encoded_chunks_get(encoded, 0, &mut ptr, &mut len));
    // SAFETY: valid until the handle is freed, below.
    let shard = unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec();
    check(zarrs_encoded_chunks_free(encoded));
    assert_eq!(decode_strings(&array, &shard, 4).unwrap(), words);

    let shard_of = |inner: &[u8], index: [u64; 4]| {
        let mut out = inner.to_vec();
        for v in index {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    };
    // A missing second inner chunk reads as the fill value.
    let first = vlen(2, &[(1, b"a"), (2, b"bc")]);
    let zstd_first = zstd::bulk::compress(&first, 1).unwrap();
    let partial = shard_of(&zstd_first, [0, zstd_first.len() as u64, u64::MAX, u64::MAX]);
    assert_eq!(decode_strings(&array, &partial, 4).unwrap(), ["a", "bc", "", ""]);

    // An inner zstd frame declaring 2^46 bytes (zarrs' sharding codec allocated them and
    // aborted the process): single segment, 8-byte content size, one empty raw last block.
    let mut bomb = vec![0x28, 0xB5, 0x2F, 0xFD, 0xE0];
    bomb.extend_from_slice(&(1u64 << 46).to_le_bytes());
    bomb.extend_from_slice(&[0x01, 0x00, 0x00]);
    let shard = shard_of(&bomb, [0, bomb.len() as u64, u64::MAX, u64::MAX]);
    assert_eq!(decode_strings(&array, &shard, 4), Err(ZARRS_ERROR_CODEC));
    assert!(last_error().contains("declares 70368744177664 bytes"), "{}", last_error());

    // An inner chunk whose element length runs past its end (zarrs panicked).
    let long = zstd::bulk::compress(&vlen(2, &[(1, b"a"), (9, b"bc")]), 1).unwrap();
    let shard = shard_of(&long, [0, long.len() as u64, u64::MAX, u64::MAX]);
    assert_eq!(decode_strings(&array, &shard, 4), Err(ZARRS_ERROR_CODEC));
    assert!(last_error().contains("element 1 of 2 declares 9 bytes"), "{}", last_error());

    // Index entries with the missing marker in one field only, or wrapping: codec errors
    // (zarrs' sharding codec overflowed: "capacity overflow").
    for index in [
        [u64::MAX, zstd_first.len() as u64, u64::MAX, u64::MAX],
        [0, u64::MAX, u64::MAX, u64::MAX],
        [2, u64::MAX - 1, u64::MAX, u64::MAX],
    ] {
        let shard = shard_of(&zstd_first, index);
        assert_eq!(decode_strings(&array, &shard, 4), Err(ZARRS_ERROR_CODEC), "{index:?}");
        assert!(last_error().contains("outside its"), "{}", last_error());
    }
}

#[test]
fn variable_length_shapes_use_checked_arithmetic() {
    use zarrs_ffi::*;

    let mut storage = null_mut();
    check(zarrs_storage_open_memory(&mut storage));
    let storage = Storage(storage);
    let json = r#"{"zarr_format":3,"node_type":"array","shape":[6],"data_type":"string",
        "chunk_grid":{"name":"regular","configuration":{"chunk_shape":[3]}},
        "chunk_key_encoding":{"name":"default"},"fill_value":"","codecs":[{"name":"vlen-utf8"}]}"#;
    let mut handle = null_mut();
    check(zarrs_array_open_with_metadata(storage.0, b"/".as_ptr().cast(), 1, json.as_ptr().cast(), json.len(), &mut handle));
    let array = Array(handle);
    // Two chunks of 2^63 elements: their sum wraps to 0, which one offset would match.
    let shapes = [1u64 << 63, 1 << 63];
    let offsets = [0u64];
    let mut encoded = null_mut();
    expect_err(
        zarrs_array_encode_variable_chunks(array.ptr(), null(), 2, shapes.as_ptr(), 2, null(), 0, offsets.as_ptr(), 1, &mut encoded),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "chunk shape",
    );
    let inputs = Encoded::new(&[Some(b"x"), Some(b"y")]);
    let mut decoded = null_mut();
    expect_err(
        zarrs_array_decode_variable_chunks(array.ptr(), null(), 2, inputs.pointers.as_ptr(), inputs.lens.as_ptr(), shapes.as_ptr(), 2, &mut decoded),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "chunk shape",
    );
    assert!(encoded.is_null() && decoded.is_null());
}

#[test]
fn variable_length_chunks_decode_within_the_configured_cap() {
    use zarrs_ffi::*;

    let mut storage = null_mut();
    check(zarrs_storage_open_memory(&mut storage));
    let storage = Storage(storage);
    let json = r#"{"zarr_format":3,"node_type":"array","shape":[4],"data_type":"string",
        "chunk_grid":{"name":"regular","configuration":{"chunk_shape":[4]}},
        "chunk_key_encoding":{"name":"default"},"fill_value":"",
        "codecs":[{"name":"vlen-utf8"},{"name":"zstd","configuration":{"level":1,"checksum":false}}]}"#;
    let mut handle = null_mut();
    check(zarrs_array_open_with_metadata(storage.0, b"/".as_ptr().cast(), 1, json.as_ptr().cast(), json.len(), &mut handle));
    let array = Array(handle);
    let data = vec![b'x'; 4000];
    let offsets = [0u64, 1000, 2000, 3000, 4000];
    let mut encoded = null_mut();
    check(zarrs_array_encode_variable_chunks(array.ptr(), null(), 1, [4u64].as_ptr(), 1, data.as_ptr(), data.len(), offsets.as_ptr(), 5, &mut encoded));
    let (mut ptr, mut len) = (null(), 0usize);
    check(zarrs_encoded_chunks_get(encoded, 0, &mut ptr, &mut len));
    // SAFETY: valid until the handle is freed, below.
    let chunk = unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec();
    check(zarrs_encoded_chunks_free(encoded));
    let inputs = Encoded::new(&[Some(&chunk)]);
    let decode = |cap: u64| {
        let mut options = default_options();
        options.max_variable_chunk_bytes = cap;
        let mut decoded = null_mut();
        let code = zarrs_array_decode_variable_chunks(array.ptr(), &options, 1, inputs.pointers.as_ptr(), inputs.lens.as_ptr(), [4u64].as_ptr(), 1, &mut decoded);
        if !decoded.is_null() {
            // Only on success: freeing clears this thread's last error.
            zarrs_variable_chunks_free(decoded);
        }
        code
    };
    check(decode(0));
    check(decode(1 << 20));
    // The stored form (4 lengths + 4000 bytes) no longer fits in 1000 bytes.
    expect_err(decode(1000), ZARRS_ERROR_CODEC, "zstd frame declares");
}

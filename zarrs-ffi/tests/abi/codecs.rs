//! Codec-only calls, sharding, and damaged chunks.

use super::*;

#[test]
fn encode_decode_round_trip() {
    let f = Fixture::zstd("codec");
    let a = &f.array;
    let v = |i: u64, j: u64| u16::try_from(1000 + i * 32 + j).unwrap();
    let value_buf = grid([16, 32], v);

    // Two whole chunks from the two halves of a 16 x 32 value.
    let halves = Batch::new()
        .chunk("", WHOLE, [0, 0], [16, 16], [0, 0])
        .chunk("", WHOLE, [0, 0], [16, 16], [0, 16]);
    let encoded = encode(a, None, &halves, &value_buf, &[16, 32], &no_existing(2));
    let (e0, e1) = (encoded[0].clone().unwrap(), encoded[1].clone().unwrap());
    assert!(!e0.is_empty() && !e1.is_empty());

    // The bytes are exactly what the store-backed path writes for the same chunk.
    a.store_chunk(&[0, 0], &grid(WHOLE, v));
    assert_eq!(std::fs::read(f.file("c/0/0")).unwrap(), e0);

    // Decode them back with the halves swapped in the output buffer.
    let both = Encoded::new(&[Some(&e0), Some(&e1)]);
    let swapped = Batch::new()
        .chunk("", WHOLE, [0, 0], [16, 16], [0, 16])
        .chunk("", WHOLE, [0, 0], [16, 16], [0, 0]);
    let mut out = vec![SENTINEL; 16 * 32];
    check(decode(a, None, &both, &swapped, &mut out, [16, 32]));
    assert_eq!(out, grid([16, 32], |i, j| if j < 16 { v(i, j + 16) } else { v(i, j - 16) }));

    // A partial subset of a present chunk, and a missing chunk (fill value).
    let partial = Encoded::new(&[Some(&e0), None]);
    let geometry = Batch::new()
        .chunk("", WHOLE, [4, 4], [8, 8], [0, 0])
        .chunk("", WHOLE, [0, 0], [8, 8], [0, 8]);
    let mut out = vec![SENTINEL; 8 * 16];
    check(decode(a, None, &partial, &geometry, &mut out, [8, 16]));
    assert_eq!(out, grid([8, 16], |i, j| if j < 8 { v(4 + i, 4 + j) } else { FILL }));

    // Encoding part of a chunk merges with its existing bytes...
    let corner = Batch::new().chunk("", WHOLE, [0, 0], [4, 4], [0, 0]);
    let merged = encode(a, None, &corner, &[9], &[], &Encoded::new(&[Some(&e0)]));
    let mut out = vec![SENTINEL; 256];
    let whole = Batch::new().chunk("", WHOLE, [0, 0], [16, 16], [0, 0]);
    check(decode(a, None, &Encoded::new(&[merged[0].as_deref()]), &whole, &mut out, WHOLE));
    assert_eq!(out, grid(WHOLE, |i, j| if i < 4 && j < 4 { 9 } else { v(i, j) }));
    // ... or with the fill value when the chunk is missing.
    let fresh = encode(a, None, &corner, &[9], &[], &no_existing(1));
    check(decode(a, None, &Encoded::new(&[fresh[0].as_deref()]), &whole, &mut out, WHOLE));
    assert_eq!(out, grid(WHOLE, |i, j| if i < 4 && j < 4 { 9 } else { FILL }));

    // A chunk entirely the fill value has no bytes, unless empty chunks are stored.
    assert_eq!(encode(a, None, &whole, &[FILL], &[], &no_existing(1)), [None]);
    let mut keep = default_options();
    keep.store_empty_chunks = 1;
    let kept = encode(a, Some(&keep), &whole, &[FILL], &[], &no_existing(1));
    check(decode(a, None, &Encoded::new(&[kept[0].as_deref()]), &whole, &mut out, WHOLE));
    assert_eq!(out, vec![FILL; 256]);
}

#[test]
fn memory_storage_serves_codec_only_calls() {
    // Bytes encoded by a filesystem-backed array decode through an array on memory storage
    // opened from the same metadata, and encode back to the same bytes.
    let f = Fixture::zstd("codec-memory");
    let data = grid(WHOLE, value);
    f.array.store_chunk(&[0, 0], &data);
    let stored = std::fs::read(f.file("c/0/0")).unwrap();

    let mut storage = null_mut();
    check(zarrs_storage_open_memory(&mut storage));
    let storage = Storage(storage);
    let json = metadata([64, 48], WHOLE, &codecs_zstd());
    let mut handle = null_mut();
    check(zarrs_array_open_with_metadata(storage.0, b"/".as_ptr().cast(), 1, json.as_ptr().cast(), json.len(), &mut handle));
    let array = Array(handle);
    let whole = Batch::new().chunk("", WHOLE, [0, 0], [16, 16], [0, 0]);
    let mut out = vec![SENTINEL; 256];
    check(decode(&array, None, &Encoded::new(&[Some(&stored)]), &whole, &mut out, WHOLE));
    assert_eq!(out, data);
    assert_eq!(encode(&array, None, &whole, &data, &[16, 16], &no_existing(1)), [Some(stored)]);
}

#[test]
fn codec_calls_bad_arguments() {
    let f = Fixture::zstd("codec-bad");
    let a = &f.array;
    let whole = Batch::new().chunk("", WHOLE, [0, 0], [16, 16], [0, 0]);
    let e0 = encode(a, None, &whole, &grid(WHOLE, value), &WHOLE, &no_existing(1))[0].clone().unwrap();
    let mut out = vec![SENTINEL; 256];

    // Corrupt and truncated bytes.
    let garbage = b"this is not a zstd frame".to_vec();
    expect_err(decode(a, None, &Encoded::new(&[Some(&garbage)]), &whole, &mut out, WHOLE), ZARRS_ERROR_CODEC, "");
    assert!(!last_error().is_empty());
    let truncated = &e0[..e0.len() / 2];
    expect_err(decode(a, None, &Encoded::new(&[Some(truncated)]), &whole, &mut out, WHOLE), ZARRS_ERROR_CODEC, "");
    assert!(!last_error().is_empty());

    // Geometry of the wrong length.
    let mut short = whole.clone();
    short.geometry.push(0);
    let good = Encoded::new(&[Some(&e0)]);
    expect_err(decode(a, None, &good, &short, &mut out, WHOLE), ZARRS_ERROR_INVALID_ARGUMENT, "geometry");
    // A region outside the output buffer, including one whose end wraps around u64.
    for buffer_start in [[0, 1], [u64::MAX, 0]] {
        let outside = Batch::new().chunk("", WHOLE, [0, 0], [2, 16], buffer_start);
        let code = decode(a, None, &Encoded::new(&[None]), &outside, &mut out, WHOLE);
        assert_eq!(code, ZARRS_ERROR_INVALID_ARGUMENT, "{}", last_error());
    }
    assert_eq!(out, vec![SENTINEL; 256]);

    // Reading encoded chunks past their count.
    let existing = no_existing(1);
    let value_buf = grid(WHOLE, value);
    let mut handle = null_mut();
    check(zarrs_array_encode_chunks(
        a.ptr(),
        null(),
        1,
        whole.geometry.as_ptr(),
        whole.geometry.len(),
        value_buf.as_ptr().cast(),
        512,
        WHOLE.as_ptr(),
        2,
        existing.pointers.as_ptr(),
        existing.lens.as_ptr(),
        &mut handle,
    ));
    let (mut data, mut len) = (null(), 0usize);
    expect_err(zarrs_encoded_chunks_get(handle, 1, &mut data, &mut len), ZARRS_ERROR_INVALID_ARGUMENT, "out of range");
    assert!(data.is_null() && len == 0);
    check(zarrs_encoded_chunks_free(handle));

    // A partial encode whose existing bytes are corrupt fails with CODEC.
    let corner = Batch::new().chunk("", WHOLE, [0, 0], [4, 4], [0, 0]);
    let corrupt = Encoded::new(&[Some(&garbage)]);
    let mut handle = null_mut();
    expect_err(
        zarrs_array_encode_chunks(
            a.ptr(),
            null(),
            1,
            corner.geometry.as_ptr(),
            corner.geometry.len(),
            [9u16].as_ptr().cast(),
            2,
            null(),
            0,
            corrupt.pointers.as_ptr(),
            corrupt.lens.as_ptr(),
            &mut handle,
        ),
        ZARRS_ERROR_CODEC,
        "",
    );
    assert!(handle.is_null());
}

#[test]
fn sharded_array() {
    let f = Fixture::new("sharded", &metadata([64, 48], [32, 24], &codecs_sharded([8, 8])));
    let a = &f.array;
    let mut dims = [0u64; 2];
    check(zarrs_array_chunk_grid_shape(a.ptr(), dims.as_mut_ptr(), 2));
    assert_eq!(dims, [2, 2]);
    check(zarrs_array_chunk_shape(a.ptr(), [1, 1].as_ptr(), 2, dims.as_mut_ptr()));
    assert_eq!(dims, [32, 24], "the chunk shape of a sharded array is the shard shape");
    assert_eq!(a.chunk_key(&[1, 1]), "arr/c/1/1");

    f.write_all();
    assert_eq!(f.stored_chunks(), ["c/0/0", "c/0/1", "c/1/0", "c/1/1"]);
    assert_eq!(a.retrieve(&[0, 0], &[64, 48]), grid([64, 48], value));
    assert_eq!(a.retrieve(&[10, 5], &[30, 30]), grid([30, 30], |i, j| value(10 + i, 5 + j)));
    let (shard, present) = a.retrieve_chunk(&[1, 0], 32 * 24);
    assert!(present);
    assert_eq!(shard, grid([32, 24], |i, j| value(32 + i, j)));

    // Partial reads of shards by key (through the shard index), and a missing shard.
    check(zarrs_array_erase_chunk(a.ptr(), null(), [1, 1].as_ptr(), 2));
    let batch = Batch::new()
        .chunk("arr/c/1/0", [32, 24], [3, 5], [10, 9], [0, 0])
        .chunk("arr/c/0/1", [32, 24], [0, 0], [32, 24], [10, 0])
        .chunk("arr/c/1/1", [32, 24], [30, 20], [2, 4], [0, 20]);
    let mut out = vec![SENTINEL; 42 * 24];
    let mut present = [9u8; 3];
    check(batch.read(a, &mut out, [42, 24], &mut present));
    assert_eq!(present, [1, 1, 0]);
    let expected = grid([42, 24], |i, j| {
        if i >= 10 {
            value(i - 10, 24 + j)
        } else if i < 10 && j < 9 {
            value(32 + 3 + i, 5 + j)
        } else if i < 2 && j >= 20 {
            FILL
        } else {
            SENTINEL
        }
    });
    assert_eq!(out, expected);

    // A partial write to a missing shard creates it holding just that region.
    a.store(&[40, 30], &[4, 4], &[77; 16]);
    assert!(f.file("c/1/1").is_file());
    assert_eq!(
        a.retrieve(&[32, 24], &[32, 24]),
        grid([32, 24], |i, j| if (8..12).contains(&i) && (6..10).contains(&j) { 77 } else { FILL })
    );

    // Decode a shard's bytes for just a subset, without the store.
    let shard_bytes = std::fs::read(f.file("c/0/0")).unwrap();
    let subset = Batch::new().chunk("", [32, 24], [9, 9], [5, 5], [0, 0]);
    let mut out = vec![SENTINEL; 25];
    check(decode(a, None, &Encoded::new(&[Some(&shard_bytes)]), &subset, &mut out, [5, 5]));
    assert_eq!(out, grid([5, 5], |i, j| value(9 + i, 9 + j)));

    // Flip the last byte of a shard: its index checksum no longer matches.
    let path = f.file("c/0/0");
    let mut bytes = std::fs::read(&path).unwrap();
    *bytes.last_mut().unwrap() ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(a.try_retrieve(None, &[0, 0], &[8, 8]), Err(ZARRS_ERROR_CHECKSUM), "{}", last_error());
    assert!(last_error().to_lowercase().contains("checksum"), "{}", last_error());
    assert_eq!(a.try_retrieve_chunk(None, &[0, 0], 32 * 24), Err(ZARRS_ERROR_CHECKSUM));
    // Only the checksum itself was damaged, so without validation the values are intact.
    let mut lax = default_options();
    lax.validate_checksums = 0;
    assert_eq!(a.try_retrieve(Some(&lax), &[0, 0], &[32, 24]), Ok(grid([32, 24], value)));
}

#[test]
fn corrupt_and_truncated_chunks() {
    let f = Fixture::zstd("corrupt");
    f.write_all();

    std::fs::write(f.file("c/0/0"), b"definitely not a zstd frame").unwrap();
    assert_eq!(f.array.try_retrieve_chunk(None, &[0, 0], 256), Err(ZARRS_ERROR_CODEC));
    assert!(!last_error().is_empty());
    assert_eq!(f.array.try_retrieve(None, &[0, 0], &[64, 48]), Err(ZARRS_ERROR_CODEC));
    // A partial read of the chunk.
    assert_eq!(f.array.try_retrieve(None, &[3, 3], &[2, 2]), Err(ZARRS_ERROR_CODEC));
    // A batch read: present_out is untouched on failure.
    let batch = Batch::new()
        .chunk("arr/c/0/1", WHOLE, [0, 0], [16, 16], [0, 0])
        .chunk("arr/c/0/0", WHOLE, [0, 0], [16, 16], [16, 0]);
    let mut out = vec![SENTINEL; 512];
    let mut present = [9u8; 2];
    assert_eq!(batch.read(&f.array, &mut out, [32, 16], &mut present), ZARRS_ERROR_CODEC);
    assert_eq!(present, [9, 9]);
    // A partial write needs the old chunk, so it fails too and leaves the file as it was.
    assert_eq!(f.array.store_with(None, &[0, 0], &[1, 1], &[1]), ZARRS_ERROR_CODEC);
    assert_eq!(std::fs::read(f.file("c/0/0")).unwrap(), b"definitely not a zstd frame");
    // Writing the whole chunk does not read it, and repairs it.
    f.array.store_chunk(&[0, 0], &grid(WHOLE, value));
    assert_eq!(f.array.retrieve(&[0, 0], &[16, 16]), grid(WHOLE, value));

    // Truncated to half, and to nothing.
    let path = f.file("c/1/1");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(f.array.try_retrieve_chunk(None, &[1, 1], 256), Err(ZARRS_ERROR_CODEC), "{}", last_error());
    std::fs::write(&path, b"").unwrap();
    assert_eq!(f.array.try_retrieve_chunk(None, &[1, 1], 256), Err(ZARRS_ERROR_CODEC), "{}", last_error());
    // Other chunks still read.
    assert_eq!(f.array.retrieve(&[32, 0], &[32, 48]), grid([32, 48], |i, j| value(32 + i, j)));
}

#[test]
fn crc32c_checksum_mismatch() {
    let f = Fixture::new("crc32c", &metadata([64, 48], [16, 16], &codecs_crc32c()));
    let data = grid(WHOLE, value);
    f.array.store_chunk(&[0, 0], &data);
    let path = f.file("c/0/0");
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 256 * 2 + 4, "little-endian elements then a 4-byte checksum");

    // Flip the low byte of element 0.
    bytes[0] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(f.array.try_retrieve_chunk(None, &[0, 0], 256), Err(ZARRS_ERROR_CHECKSUM));
    assert!(last_error().to_lowercase().contains("checksum"), "{}", last_error());
    assert_eq!(f.array.try_retrieve(None, &[2, 2], &[3, 3]), Err(ZARRS_ERROR_CHECKSUM));
    let whole = Batch::new().chunk("", WHOLE, [0, 0], [16, 16], [0, 0]);
    let mut out = vec![SENTINEL; 256];
    assert_eq!(decode(&f.array, None, &Encoded::new(&[Some(&bytes)]), &whole, &mut out, WHOLE), ZARRS_ERROR_CHECKSUM);

    // Without validation the damaged value is returned as stored.
    let mut lax = default_options();
    lax.validate_checksums = 0;
    let mut expected = data.clone();
    expected[0] ^= 0x00FF;
    assert_eq!(f.array.try_retrieve_chunk(Some(&lax), &[0, 0], 256), Ok((expected.clone(), true)));
    assert_eq!(f.array.try_retrieve(Some(&lax), &[0, 0], &[2, 2]).unwrap(), [expected[0], expected[1], expected[16], expected[17]]);
    check(decode(&f.array, Some(&lax), &Encoded::new(&[Some(&bytes)]), &whole, &mut out, WHOLE));
    assert_eq!(out, expected);
}

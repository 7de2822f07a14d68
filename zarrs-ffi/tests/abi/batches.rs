//! Batches of chunks by key.

use super::*;

#[test]
fn read_chunks_batch() {
    let f = Fixture::zstd("read-chunks");
    f.write_all();
    check(zarrs_array_erase_chunk(f.array.ptr(), null(), [3, 0].as_ptr(), 2));

    // Out buffer 28 x 24: a whole chunk at [0,0], part of chunk (1,2) at [16,16], part of the
    // missing chunk (3,0) at [16,0]; rows 0..16 of columns 16..24 belong to no chunk.
    let batch = Batch::new()
        .chunk("arr/c/0/0", WHOLE, [0, 0], [16, 16], [0, 0])
        .chunk("arr/c/1/2", WHOLE, [4, 8], [12, 8], [16, 16])
        .chunk("arr/c/3/0", WHOLE, [0, 0], [12, 16], [16, 0]);
    let mut out = vec![SENTINEL; 28 * 24];
    let mut present = [9u8; 3];
    check(batch.read(&f.array, &mut out, [28, 24], &mut present));
    assert_eq!(present, [1, 1, 0]);
    let expected = grid([28, 24], |i, j| match (i < 16, j < 16) {
        (true, true) => value(i, j),
        (false, false) => value(16 + 4 + (i - 16), 32 + 8 + (j - 16)),
        (false, true) => FILL,
        (true, false) => SENTINEL,
    });
    assert_eq!(out, expected);

    // An empty batch is fine.
    let empty = Batch::new();
    check(empty.read(&f.array, &mut [], [0, 0], &mut []));
}

#[test]
fn write_chunks_batch() {
    let f = Fixture::zstd("write-chunks");
    f.write_all();

    // A 20 x 20 value: part of it into a part of chunk (2,0), a 16 x 16 window of it over
    // the whole chunk (2,1).
    let v = |i: u64, j: u64| u16::try_from(50_000 + i * 20 + j).unwrap();
    let value_buf = grid([20, 20], v);
    let batch = Batch::new()
        .chunk("arr/c/2/0", WHOLE, [2, 3], [10, 10], [0, 0])
        .chunk("arr/c/2/1", WHOLE, [0, 0], [16, 16], [4, 4]);
    check(batch.write(&f.array, None, &value_buf, &[20, 20]));

    let (chunk, present) = f.array.retrieve_chunk(&[2, 0], 256);
    assert!(present);
    let expected = grid(WHOLE, |a, b| {
        if (2..12).contains(&a) && (3..13).contains(&b) {
            v(a - 2, b - 3)
        } else {
            value(32 + a, b)
        }
    });
    assert_eq!(chunk, expected);
    assert_eq!(f.array.retrieve_chunk(&[2, 1], 256).0, grid(WHOLE, |a, b| v(4 + a, 4 + b)));
    // Chunks not in the batch are unchanged.
    assert_eq!(f.array.retrieve(&[0, 0], &[32, 48]), grid([32, 48], value));

    // A scalar broadcast (value_ndim 0): part of chunk (0,1) and all of chunk (3,2).
    let scalar = Batch::new()
        .chunk("arr/c/0/1", WHOLE, [0, 0], [5, 16], [0, 0])
        .chunk("arr/c/3/2", WHOLE, [0, 0], [16, 16], [0, 0]);
    check(scalar.write(&f.array, None, &[4242], &[]));
    let expected = grid(WHOLE, |a, b| if a < 5 { 4242 } else { value(a, 16 + b) });
    assert_eq!(f.array.retrieve_chunk(&[0, 1], 256).0, expected);
    assert_eq!(f.array.retrieve_chunk(&[3, 2], 256).0, vec![4242; 256]);

    // Writing to a missing chunk in part merges with the fill value.
    check(zarrs_array_erase_chunk(f.array.ptr(), null(), [0, 0].as_ptr(), 2));
    let partial = Batch::new().chunk("arr/c/0/0", WHOLE, [15, 15], [1, 1], [0, 0]);
    check(partial.write(&f.array, None, &[1234], &[]));
    assert_eq!(
        f.array.retrieve_chunk(&[0, 0], 256),
        (grid(WHOLE, |a, b| if (a, b) == (15, 15) { 1234 } else { FILL }), true)
    );
}

#[test]
fn batch_calls_bad_arguments() {
    let f = Fixture::zstd("batch-bad");
    f.write_all();
    let good = Batch::new().chunk("arr/c/0/0", WHOLE, [0, 0], [16, 16], [0, 0]);
    let mut out = vec![SENTINEL; 256];
    let mut present = [9u8];

    // Geometry shorter than num_chunks * 4 * ndim.
    let mut short = good.clone();
    short.geometry.pop();
    expect_err(short.read(&f.array, &mut out, WHOLE, &mut present), ZARRS_ERROR_INVALID_ARGUMENT, "geometry");
    expect_err(short.write(&f.array, None, &[1], &[]), ZARRS_ERROR_INVALID_ARGUMENT, "geometry");

    // Key offsets past the end of the keys, decreasing, or splitting a character.
    for offsets in [vec![0, 10], vec![3, 1], vec![u64::MAX, 5]] {
        let mut bad = good.clone();
        bad.offsets = offsets;
        expect_err(bad.read(&f.array, &mut out, WHOLE, &mut present), ZARRS_ERROR_INVALID_ARGUMENT, "key 0");
        expect_err(bad.write(&f.array, None, &[1], &[]), ZARRS_ERROR_INVALID_ARGUMENT, "key 0");
    }
    let mut split = Batch::new().chunk("é", WHOLE, [0, 0], [16, 16], [0, 0]);
    split.offsets = vec![0, 1];
    expect_err(split.read(&f.array, &mut out, WHOLE, &mut present), ZARRS_ERROR_INVALID_ARGUMENT, "character boundary");
    let bytes = b"c/\xff/0";
    expect_err(
        zarrs_array_read_chunks(
            f.array.ptr(),
            null(),
            1,
            bytes.as_ptr().cast(),
            bytes.len(),
            [0u64, 5].as_ptr(),
            good.geometry.as_ptr(),
            good.geometry.len(),
            out.as_mut_ptr().cast(),
            512,
            WHOLE.as_ptr(),
            present.as_mut_ptr(),
            1,
        ),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "UTF-8",
    );

    // Subsets outside the chunk, regions outside the buffer, zero chunk shapes, and starts
    // whose end wraps around u64.
    let cases = [
        Batch::new().chunk("arr/c/0/0", WHOLE, [8, 0], [9, 16], [0, 0]),
        Batch::new().chunk("arr/c/0/0", WHOLE, [u64::MAX, 0], [2, 16], [0, 0]),
        Batch::new().chunk("arr/c/0/0", [0, 16], [0, 0], [0, 16], [0, 0]),
    ];
    for bad in &cases {
        expect_err(bad.read(&f.array, &mut out, WHOLE, &mut present), ZARRS_ERROR_INVALID_ARGUMENT, "chunk");
        expect_err(bad.write(&f.array, None, &[1], &[]), ZARRS_ERROR_INVALID_ARGUMENT, "chunk");
    }
    let outside_out = [
        Batch::new().chunk("arr/c/0/0", WHOLE, [0, 0], [16, 16], [1, 0]),
        Batch::new().chunk("arr/c/0/0", WHOLE, [0, 0], [2, 16], [u64::MAX, 0]),
    ];
    for bad in &outside_out {
        let code = bad.read(&f.array, &mut out, WHOLE, &mut present);
        assert_eq!(code, ZARRS_ERROR_INVALID_ARGUMENT, "{}", last_error());
        assert!(!last_error().is_empty());
        let code = bad.write(&f.array, None, &out, &WHOLE);
        assert_eq!(code, ZARRS_ERROR_INVALID_ARGUMENT, "{}", last_error());
    }
    assert_eq!(out, vec![SENTINEL; 256], "failed argument checks write nothing");
    assert_eq!(present, [9], "present_out is written only on success");

    // value_ndim must be 0 or the array's dimensionality.
    expect_err(good.write(&f.array, None, &out, &[256]), ZARRS_ERROR_INVALID_ARGUMENT, "value_ndim");
    // Nothing was changed by any of the failed writes.
    assert_eq!(f.array.retrieve(&[0, 0], &[64, 48]), grid([64, 48], value));
}

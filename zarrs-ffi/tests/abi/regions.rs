//! Regions and single chunks: the store-backed calls, empty chunks and read-only storage.

use super::*;

#[test]
fn subset_round_trip_and_fill_value() {
    let f = Fixture::zstd("subset");
    let region = grid([30, 20], |i, j| value(5 + i, 7 + j));
    f.array.store(&[5, 7], &[30, 20], &region);

    // Read back exactly the region written.
    assert_eq!(f.array.retrieve(&[5, 7], &[30, 20]), region);
    // The whole array: the region, and the fill value everywhere else.
    let whole = f.array.retrieve(&[0, 0], &[64, 48]);
    let expected = grid([64, 48], |r, c| {
        if (5..35).contains(&r) && (7..27).contains(&c) {
            value(r, c)
        } else {
            FILL
        }
    });
    assert_eq!(whole, expected);
    // Rows 5..35 and columns 7..27 touch chunk rows 0..=2 and chunk columns 0..=1.
    assert_eq!(f.stored_chunks(), ["c/0/0", "c/0/1", "c/1/0", "c/1/1", "c/2/0", "c/2/1"]);

    // A region never written: the fill value, read from missing chunks.
    assert_eq!(f.array.retrieve(&[48, 32], &[16, 16]), vec![FILL; 256]);

    // Explicit options with their own thread pool read the same values.
    let mut options = default_options();
    options.num_threads = 3;
    options.chunk_concurrent_maximum = 2;
    assert_eq!(f.array.try_retrieve(Some(&options), &[0, 0], &[64, 48]).unwrap(), expected);

    // A zero-sized region reads nothing, with no buffer at all.
    check(zarrs_array_retrieve_subset(f.array.ptr(), null(), [3, 3].as_ptr(), [0, 5].as_ptr(), 2, null_mut(), 0));
}

#[test]
fn edge_chunks_of_a_shape_not_multiple_of_the_chunks() {
    let f = Fixture::new("edge", &metadata([50, 40], [16, 16], &codecs_zstd()));
    let mut grid_shape = [0u64; 2];
    check(zarrs_array_chunk_grid_shape(f.array.ptr(), grid_shape.as_mut_ptr(), 2));
    assert_eq!(grid_shape, [4, 3]);
    let data = grid([50, 40], value);
    f.array.store(&[0, 0], &[50, 40], &data);
    assert_eq!(f.array.retrieve(&[0, 0], &[50, 40]), data);
    assert_eq!(f.array.retrieve(&[45, 30], &[5, 10]), grid([5, 10], |i, j| value(45 + i, 30 + j)));
    // The corner chunk holds rows 48..50 and columns 32..40; the rest of it is fill value.
    let (chunk, present) = f.array.retrieve_chunk(&[3, 2], 256);
    assert!(present);
    assert_eq!(chunk, grid([16, 16], |i, j| if i < 2 && j < 8 { value(48 + i, 32 + j) } else { FILL }));
    // Reading past the array edge is out of bounds even though it is inside the chunk.
    assert_eq!(f.array.try_retrieve(None, &[48, 32], &[16, 16]), Err(ZARRS_ERROR_INVALID_ARGUMENT));
}

#[test]
fn chunk_store_retrieve_erase() {
    let f = Fixture::zstd("chunk");
    let indices = [1u64, 2];
    let data = grid(WHOLE, |i, j| value(16 + i, 32 + j));

    let (before, present) = f.array.retrieve_chunk(&indices, 256);
    assert!(!present);
    assert_eq!(before, vec![FILL; 256]);

    f.array.store_chunk(&indices, &data);
    assert!(f.file("c/1/2").is_file());
    let (after, present) = f.array.retrieve_chunk(&indices, 256);
    assert!(present);
    assert_eq!(after, data);
    // The chunk is where the array region says it is.
    assert_eq!(f.array.retrieve(&[16, 32], &[16, 16]), data);

    // present_out is optional.
    let mut out = vec![0u16; 256];
    check(zarrs_array_retrieve_chunk(f.array.ptr(), null(), indices.as_ptr(), 2, out.as_mut_ptr().cast(), 512, null_mut()));
    assert_eq!(out, data);

    check(zarrs_array_erase_chunk(f.array.ptr(), null(), indices.as_ptr(), 2));
    assert!(!f.file("c/1/2").exists());
    let (erased, present) = f.array.retrieve_chunk(&indices, 256);
    assert!(!present);
    assert_eq!(erased, vec![FILL; 256]);
    // Erasing a missing chunk succeeds.
    check(zarrs_array_erase_chunk(f.array.ptr(), null(), indices.as_ptr(), 2));
}

#[test]
fn chunk_calls_bad_arguments() {
    let f = Fixture::zstd("chunk-bad");
    let a = f.array.ptr();
    let data = vec![value(0, 0); 256];
    let mut out = vec![SENTINEL; 256];
    let mut present = 1u8;

    expect_err(f.array.store_chunk_with(None, &[0, 0, 0], &data), ZARRS_ERROR_INVALID_ARGUMENT, "dimensions");
    // Outside the 4 x 3 grid: no chunk file may appear there.
    expect_err(f.array.store_chunk_with(None, &[4, 0], &data), ZARRS_ERROR_INVALID_ARGUMENT, "grid");
    expect_err(f.array.store_chunk_with(None, &[0, u64::MAX], &data), ZARRS_ERROR_INVALID_ARGUMENT, "grid");
    assert!(f.stored_chunks().is_empty(), "{:?}", f.stored_chunks());

    expect_err(
        zarrs_array_retrieve_chunk(a, null(), [4, 0].as_ptr(), 2, out.as_mut_ptr().cast(), 512, &mut present),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "grid",
    );
    assert_eq!(present, 1, "present_out is written only on success");
    assert_eq!(out, vec![SENTINEL; 256], "out is untouched by argument errors");

    expect_err(zarrs_array_erase_chunk(a, null(), [0, 0].as_ptr(), 3), ZARRS_ERROR_INVALID_ARGUMENT, "dimensions");
    expect_err(zarrs_array_erase_chunk(a, null(), [9, 9].as_ptr(), 2), ZARRS_ERROR_INVALID_ARGUMENT, "grid");
}

#[test]
fn subset_calls_bad_arguments() {
    let f = Fixture::zstd("subset-bad");
    let a = f.array.ptr();
    let data = vec![value(1, 1); 64];
    let mut out = vec![SENTINEL; 64];

    let retrieve = |start: &[u64], shape: &[u64], ndim: usize, out: &mut [u16], out_len: usize| {
        zarrs_array_retrieve_subset(a, null(), start.as_ptr(), shape.as_ptr(), ndim, out.as_mut_ptr().cast(), out_len)
    };
    expect_err(retrieve(&[0, 0, 0], &[8, 8, 1], 3, &mut out, 128), ZARRS_ERROR_INVALID_ARGUMENT, "dimensions");
    expect_err(retrieve(&[60, 0], &[8, 8], 2, &mut out, 128), ZARRS_ERROR_INVALID_ARGUMENT, "outside");
    expect_err(retrieve(&[0, 41], &[8, 8], 2, &mut out, 128), ZARRS_ERROR_INVALID_ARGUMENT, "outside");
    // start + shape wraps around u64: still out of bounds, never a wild read or write.
    expect_err(retrieve(&[u64::MAX, 0], &[2, 32], 2, &mut out, 128), ZARRS_ERROR_INVALID_ARGUMENT, "outside");
    expect_err(retrieve(&[0, u64::MAX - 6], &[8, 8], 2, &mut out, 128), ZARRS_ERROR_INVALID_ARGUMENT, "outside");
    assert_eq!(out, vec![SENTINEL; 64]);

    expect_err(f.array.store_with(None, &[60, 0], &[8, 8], &data), ZARRS_ERROR_INVALID_ARGUMENT, "outside");
    expect_err(f.array.store_with(None, &[u64::MAX, 0], &[2, 32], &data), ZARRS_ERROR_INVALID_ARGUMENT, "outside");
    expect_err(
        zarrs_array_store_subset(a, null(), [0, 0].as_ptr(), [8, 8].as_ptr(), 1, data.as_ptr().cast(), 128),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "dimensions",
    );
    assert!(f.stored_chunks().is_empty(), "{:?}", f.stored_chunks());
}

#[test]
fn chunks_of_fill_value_are_erased_unless_stored() {
    let f = Fixture::zstd("empty-chunks");
    let data = grid(WHOLE, value);
    let fill = vec![FILL; 256];
    let mut keep = default_options();
    keep.store_empty_chunks = 1;

    // store_chunk: an all-fill chunk erases the stored one by default...
    f.array.store_chunk(&[0, 0], &data);
    assert!(f.file("c/0/0").is_file());
    f.array.store_chunk(&[0, 0], &fill);
    assert!(!f.file("c/0/0").exists());
    assert_eq!(f.array.retrieve_chunk(&[0, 0], 256), (fill.clone(), false));
    // ... and is written with store_empty_chunks.
    check(f.array.store_chunk_with(Some(&keep), &[0, 0], &fill));
    assert!(f.file("c/0/0").is_file());
    assert_eq!(f.array.retrieve_chunk(&[0, 0], 256), (fill.clone(), true));

    // store_subset over a whole chunk.
    f.array.store(&[16, 0], &[16, 16], &fill);
    assert!(!f.file("c/1/0").exists());
    check(f.array.store_with(Some(&keep), &[16, 0], &[16, 16], &fill));
    assert!(f.file("c/1/0").is_file());
    f.array.store(&[16, 0], &[16, 16], &fill);
    assert!(!f.file("c/1/0").exists(), "a stored empty chunk is erased by a default write");

    // write_chunks: a partial write that leaves the chunk all fill value erases it.
    let corner = Batch::new().chunk("arr/c/1/1", WHOLE, [0, 0], [2, 2], [0, 0]);
    check(corner.write(&f.array, None, &[55], &[]));
    assert!(f.file("c/1/1").is_file());
    check(corner.write(&f.array, None, &[FILL], &[]));
    assert!(!f.file("c/1/1").exists());
    check(corner.write(&f.array, Some(&keep), &[FILL], &[]));
    assert!(f.file("c/1/1").is_file());
}

#[test]
fn read_only_storage_rejects_writes() {
    let f = Fixture::zstd("read-only");
    f.write_all();
    let before = f.stored_chunks();
    let chunk_bytes = std::fs::read(f.file("c/0/0")).unwrap();

    let storage = Storage::open(&f.dir.0, true);
    let array = Array::open(&storage, "/arr");
    assert_eq!(array.retrieve(&[0, 0], &[64, 48]), grid([64, 48], value));

    let other = grid(WHOLE, |_, _| 1);
    expect_err(array.store_chunk_with(None, &[0, 0], &other), ZARRS_ERROR_READ_ONLY, "read");
    expect_err(array.store_chunk_with(None, &[0, 0], &vec![FILL; 256]), ZARRS_ERROR_READ_ONLY, "read");
    expect_err(array.store_with(None, &[0, 0], &[2, 2], &[1, 2, 3, 4]), ZARRS_ERROR_READ_ONLY, "read");
    expect_err(zarrs_array_erase_chunk(array.ptr(), null(), [0, 0].as_ptr(), 2), ZARRS_ERROR_READ_ONLY, "read");
    let batch = Batch::new().chunk("arr/c/0/0", WHOLE, [0, 0], [16, 16], [0, 0]);
    expect_err(batch.write(&array, None, &[1], &[]), ZARRS_ERROR_READ_ONLY, "read");
    let json = metadata([8, 8], [4, 4], &codecs_zstd());
    let mut handle = null_mut();
    expect_err(
        zarrs_array_create(storage.0, b"/new".as_ptr().cast(), 4, json.as_ptr().cast(), json.len(), &mut handle),
        ZARRS_ERROR_READ_ONLY,
        "read",
    );
    assert!(handle.is_null());

    assert_eq!(f.stored_chunks(), before);
    assert_eq!(std::fs::read(f.file("c/0/0")).unwrap(), chunk_bytes);
    assert!(!f.dir.0.join("new").exists());
}

//! Confinement: what a caller passes can never reach outside the store or the array's grid,
//! and packed (misaligned) `uint64_t` arrays are read as they are.

use super::*;

/// A store rooted one level below a scratch directory, so a key that escapes the root lands
/// in the scratch directory, where the test can see it.
struct Confined {
    f: Fixture,
    outside: PathBuf,
}

impl Confined {
    fn new(name: &str) -> Self {
        let dir = TempDir::new(name);
        let root = dir.0.join("root");
        let storage = Storage::open(&root, false);
        let array = Array::create(&storage, "/arr", &metadata([64, 48], [16, 16], &codecs_zstd()));
        let outside = dir.0.clone();
        Self {
            f: Fixture { array, storage, dir },
            outside,
        }
    }

    /// Every file under the scratch directory but outside the store root.
    fn escaped(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.outside)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n != "root"))
            .collect()
    }
}

#[test]
fn store_keys_cannot_escape_the_store_root() {
    let c = Confined::new("keys");
    let bad_keys = [
        "../escaped",
        "arr/../../escaped",
        "/escaped",
        "",
        ".",
        "./arr/c/0/0",
        "arr/c/./0/0",
        "arr/c/0/..",
        "..\\escaped",
        "arr\\..\\..\\escaped",
        "\\escaped",
        "arr/c/0/0\0",
        "arr//c/0/0",
        "arr/c/0/0/",
    ];
    let mut out = vec![SENTINEL; 256];
    let mut present = [9u8];
    for key in bad_keys {
        let batch = Batch::new().chunk(key, WHOLE, [0, 0], [16, 16], [0, 0]);
        let code = batch.write(&c.f.array, None, &[1234], &[]);
        assert_eq!(code, ZARRS_ERROR_INVALID_ARGUMENT, "write to {key:?}: {}", last_error());
        assert!(last_error().contains(&format!("{key:?}")), "the message names the key {key:?}: {}", last_error());
        let code = batch.read(&c.f.array, &mut out, WHOLE, &mut present);
        assert_eq!(code, ZARRS_ERROR_INVALID_ARGUMENT, "read of {key:?}: {}", last_error());
    }
    assert_eq!(c.escaped(), Vec::<PathBuf>::new(), "nothing is written outside the store root");
    assert_eq!(present, [9]);
    // Ordinary keys still work.
    let batch = Batch::new().chunk("arr/c/0/0", WHOLE, [0, 0], [16, 16], [0, 0]);
    check(batch.write(&c.f.array, None, &[1234], &[]));
    check(batch.read(&c.f.array, &mut out, WHOLE, &mut present));
    assert_eq!((out[0], present), (1234, [1]));
}

#[test]
fn batch_chunk_shapes_must_be_the_grids() {
    let f = Fixture::zstd("geometry");
    f.write_all();
    let mut out = vec![SENTINEL; 256];
    let mut present = [9u8];
    // A huge chunk shape written in part: the merge would allocate and fill 2^48 elements.
    let huge = Batch::new().chunk("arr/c/9/9", [1 << 24, 1 << 24], [0, 0], [1, 1], [0, 0]);
    expect_err(huge.write(&f.array, None, &[1], &[]), ZARRS_ERROR_INVALID_ARGUMENT, "not a chunk shape");
    expect_err(huge.read(&f.array, &mut out, [1, 1], &mut present), ZARRS_ERROR_INVALID_ARGUMENT, "not a chunk shape");
    // Smaller or transposed shapes than the grid's are as wrong: they would misplace values.
    for shape in [[8, 16], [16, 8], [16, 32]] {
        let bad = Batch::new().chunk("arr/c/0/0", shape, [0, 0], [8, 8], [0, 0]);
        expect_err(bad.write(&f.array, None, &[1], &[]), ZARRS_ERROR_INVALID_ARGUMENT, "arr/c/0/0");
        expect_err(bad.read(&f.array, &mut out, [16, 16], &mut present), ZARRS_ERROR_INVALID_ARGUMENT, "grid");
        let no_existing = no_existing(1);
        let mut handle = null_mut();
        expect_err(
            zarrs_array_encode_chunks(
                f.array.ptr(), null(), 1, bad.geometry.as_ptr(), bad.geometry.len(), [1u16].as_ptr().cast(), 2, null(), 0,
                no_existing.pointers.as_ptr(), no_existing.lens.as_ptr(), &mut handle,
            ),
            ZARRS_ERROR_INVALID_ARGUMENT,
            "grid",
        );
        assert!(handle.is_null());
        expect_err(decode(&f.array, None, &Encoded::new(&[None]), &bad, &mut out, [16, 16]), ZARRS_ERROR_INVALID_ARGUMENT, "grid");
    }
    assert_eq!(out, vec![SENTINEL; 256]);
    assert_eq!(f.array.retrieve(&[0, 0], &[64, 48]), grid([64, 48], value), "nothing was written");
    assert!(!f.file("c/9/9").exists());
}

#[test]
fn misaligned_u64_arrays_are_read_without_alignment() {
    let f = Fixture::zstd("misaligned");
    f.write_all();
    // Region calls.
    let (_start_buf, start) = misaligned(&[3, 5]);
    let (_shape_buf, shape) = misaligned(&[20, 30]);
    let mut out = vec![SENTINEL; 600];
    check(zarrs_array_retrieve_subset(f.array.ptr(), null(), start, shape, 2, out.as_mut_ptr().cast(), 1200));
    assert_eq!(out, grid([20, 30], |i, j| value(3 + i, 5 + j)));
    // Batch calls: key offsets and geometry, and the output shape.
    let batch = Batch::new().chunk("arr/c/1/2", WHOLE, [4, 8], [12, 8], [0, 0]);
    let (_offsets_buf, offsets) = misaligned(&batch.offsets);
    let (_geometry_buf, geometry) = misaligned(&batch.geometry);
    let (_out_shape_buf, out_shape) = misaligned(&[12, 8]);
    let mut out = vec![SENTINEL; 96];
    let mut present = [9u8];
    check(zarrs_array_read_chunks(
        f.array.ptr(), null(), 1, batch.keys.as_ptr().cast(), batch.keys.len(), offsets, geometry, batch.geometry.len(),
        out.as_mut_ptr().cast(), 192, out_shape, present.as_mut_ptr(), 1,
    ));
    assert_eq!((out, present), (grid([12, 8], |i, j| value(16 + 4 + i, 32 + 8 + j)), [1]));
    // Out-parameters of u64 arrays may be misaligned too.
    let mut shape_out = [0u8; 17];
    let ptr = shape_out[1..].as_mut_ptr().cast::<u64>();
    check(zarrs_array_shape(f.array.ptr(), ptr, 2));
    let got: Vec<u64> = shape_out[1..].chunks(8).map(|b| u64::from_ne_bytes(b.try_into().unwrap())).collect();
    assert_eq!(got, [64, 48]);
    // And the options struct.
    let mut options_buf = vec![0u8; std::mem::size_of::<ZarrsOptions>() + 1];
    let options = options_buf[1..].as_mut_ptr().cast::<ZarrsOptions>();
    check(zarrs_options_default(options));
    let mut out = vec![SENTINEL; 600];
    check(zarrs_array_retrieve_subset(f.array.ptr(), options, start, shape, 2, out.as_mut_ptr().cast(), 1200));
    assert_eq!(out, grid([20, 30], |i, j| value(3 + i, 5 + j)));
}

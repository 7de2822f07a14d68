//! Gathers: picked elements of many chunks straight into one buffer.

use super::*;

#[test]
fn gathers_pick_from_every_kind_of_chunk() {
    // Whole-chunk codecs (zstd), our shards (index, then the inner chunks holding picks),
    // and codecs read in part (bytes alone: the picks' bounding box).
    let fixtures = [
        (Fixture::zstd("gather-zstd"), [16u64, 16u64]),
        (Fixture::new("gather-sharded", &metadata([64, 48], [32, 24], &codecs_sharded([8, 8]))), [32, 24]),
        (Fixture::new("gather-bytes", &metadata([64, 48], [16, 16], &format!("[{BYTES}]"))), [16, 16]),
    ];
    for (f, chunk) in &fixtures {
        f.write_all();
        let a = &f.array;
        let [ch, cw] = *chunk;
        // The last chunk row is missing: its picks get the fill value.
        let last = format!("arr/c/{}/0", 64 / ch - 1);
        let key = |i: u64, j: u64| format!("arr/c/{i}/{j}");
        check(zarrs_array_erase_chunk(a.ptr(), std::ptr::null(), [64 / ch - 1, 0].as_ptr(), 2));

        // Rows 1, 9 (unsorted, to output rows 2, 0) and columns 3, 4, 5, 0 of chunk (0,0) and
        // of chunk (0,1); row 2 and column 1 of the missing chunk, into output (1, 6).
        let out_shape = [3u64, 9];
        let ortho = Ortho::new()
            .chunk(&key(0, 0), *chunk, [(&[9, 1], &[0, 2]), (&[3, 4, 5, 0], &[0, 1, 2, 3])])
            .chunk(&key(0, 1), *chunk, [(&[9, 1], &[0, 2]), (&[3, 4], &[4, 5])])
            .chunk(&last, *chunk, [(&[2], &[1]), (&[1], &[6])]);
        let mut out = vec![SENTINEL; 27];
        let mut present = [9u8; 3];
        check(ortho.read(a, &mut out, out_shape, &mut present));
        assert_eq!(present, [1, 1, 0]);
        let row = |r: u64| -> Vec<u16> {
            let mut v = vec![value(r, 3), value(r, 4), value(r, 5), value(r, 0), value(r, cw + 3), value(r, cw + 4)];
            v.extend([SENTINEL; 3]);
            v
        };
        let mut expected = row(9);
        let mut middle = vec![SENTINEL; 9];
        middle[6] = FILL;
        expected.extend(middle);
        expected.extend(row(1));
        assert_eq!(out, expected, "orthogonal gather from {chunk:?} chunks");

        // Points: three in chunk (0,1) (one at its last element), one in the missing chunk.
        let points = Points::new()
            .chunk(&key(0, 1), *chunk, &[([0, 0], 3), ([ch - 1, cw - 1], 0), ([5, 2], 2)])
            .chunk(&last, *chunk, &[([3, 3], 1)]);
        let mut out = vec![SENTINEL; 5];
        let mut present = [9u8; 2];
        check(points.read(a, &mut out, &mut present));
        assert_eq!(present, [1, 0]);
        assert_eq!(out, [value(ch - 1, 2 * cw - 1), FILL, value(5, cw + 2), value(0, cw), SENTINEL]);

        // An empty gather is fine.
        check(Ortho::new().read(a, &mut [], [0, 0], &mut []));
        check(Points::new().read(a, &mut [], &mut []));
    }
}

#[test]
fn gather_bad_arguments() {
    let f = Fixture::zstd("gather-bad");
    f.write_all();
    let a = &f.array;
    let good = Ortho::new().chunk("arr/c/0/0", WHOLE, [(&[0, 1], &[0, 1]), (&[2], &[0])]);
    let mut out = vec![SENTINEL; 2];
    let mut present = [9u8];
    check(good.read(a, &mut out, [2, 1], &mut present));
    assert_eq!(out, [value(0, 2), value(1, 2)]);
    present = [9];

    let bad = |edit: &dyn Fn(&mut Ortho), mention: &str| {
        let mut o = good.clone();
        edit(&mut o);
        let mut out = vec![SENTINEL; 2];
        let mut present = [9u8];
        expect_err(o.read(a, &mut out, [2, 1], &mut present), ZARRS_ERROR_INVALID_ARGUMENT, mention);
        assert_eq!(out, [SENTINEL; 2], "failed argument checks write nothing");
        assert_eq!(present, [9], "present_out is written only on success");
    };
    bad(&|o| o.indices[0] = 16, "index 16 on axis 0");
    bad(&|o| o.indices[2] = u64::MAX, "outside the chunk shape");
    bad(&|o| o.positions[1] = 2, "position 2 on axis 0");
    bad(&|o| o.positions[2] = 1, "position 1 on axis 1");
    bad(&|o| o.picks[3] = 5, "run past");
    bad(&|o| o.picks[2] = u64::MAX, "run past");
    bad(&|o| o.picks[3] = 0, "picks nothing");
    bad(&|o| o.picks.truncate(3), "picks");
    bad(&|o| o.shapes = vec![16, 17], "not a chunk shape");
    bad(&|o| o.shapes = vec![0, 16], "zero extent");
    bad(&|o| o.batch.offsets = vec![0, 99], "key 0");
    bad(&|o| o.batch.keys = "../x/c/0/0".into(), "..");

    // Misaligned uint64_t arrays are read correctly.
    let (_bytes, packed) = misaligned(&good.indices);
    let mut out2 = [SENTINEL; 2];
    let mut present2 = [9u8];
    check(zarrs_array_gather_orthogonal(
            a.ptr(),
            null(),
            1,
            good.batch.keys.as_ptr().cast(),
            good.batch.keys.len(),
            good.batch.offsets.as_ptr(),
            good.shapes.as_ptr(),
            2,
            good.picks.as_ptr(),
            4,
            packed,
            good.positions.as_ptr(),
            3,
            out2.as_mut_ptr().cast(),
            4,
            [2u64, 1].as_ptr(),
            present2.as_mut_ptr(),
            1,
        ));
    assert_eq!(out2, [value(0, 2), value(1, 2)]);
    assert_eq!(present2, [1]);

    // Points: coordinates outside the chunk, offsets outside out, counts that do not add up.
    let points = Points::new().chunk("arr/c/0/1", WHOLE, &[([1, 2], 0), ([15, 15], 1)]);
    let mut pout = vec![SENTINEL; 2];
    check(points.read(a, &mut pout, &mut present));
    assert_eq!(pout, [value(1, 18), value(15, 31)]);
    let bad_points = |edit: &dyn Fn(&mut Points), out_len: usize, mention: &str| {
        let mut p = points.clone();
        edit(&mut p);
        let mut out = vec![SENTINEL; out_len];
        let mut present = [9u8];
        expect_err(p.read(a, &mut out, &mut present), ZARRS_ERROR_INVALID_ARGUMENT, mention);
        assert_eq!(out, vec![SENTINEL; out_len]);
        assert_eq!(present, [9]);
    };
    bad_points(&|p| p.coords[1] = 16, 2, "point 0");
    bad_points(&|p| p.offsets[1] = 2, 2, "output offset 2");
    bad_points(&|p| p.counts[0] = 3, 2, "add up");
    bad_points(&|p| p.counts[0] = u64::MAX, 2, "add up");
    bad_points(&|p| p.coords.pop().map(drop).unwrap_or(()), 2, "coords");
    bad_points(&|p| p.shapes.push(16), 2, "chunk_shapes");
    // An output whose length is not a whole number of elements.
    let code = zarrs_array_gather_points(
        a.ptr(),
        null(),
        1,
        points.batch.keys.as_ptr().cast(),
        points.batch.keys.len(),
        points.batch.offsets.as_ptr(),
        points.shapes.as_ptr(),
        2,
        points.counts.as_ptr(),
        points.coords.as_ptr(),
        4,
        points.offsets.as_ptr(),
        2,
        pout.as_mut_ptr().cast(),
        3,
        present.as_mut_ptr(),
        1,
    );
    expect_err(code, ZARRS_ERROR_INVALID_ARGUMENT, "element size");
    expect_err(
        zarrs_array_gather_points(null(), null(), 0, null(), 0, [0u64].as_ptr(), null(), 0, null(), null(), 0, null(), 0, null_mut(), 0, null_mut(), 0),
        ZARRS_ERROR_NULL_POINTER,
        "array",
    );
}

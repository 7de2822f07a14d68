//! Reads started on a completion queue.

use super::*;

/// Drain `queue` until `n` tokens have arrived: (token, code) pairs.
fn drain_tokens(queue: *const ZarrsCompletionQueue, n: usize) -> Vec<(u64, i32)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut all = Vec::new();
    let (mut tokens, mut codes, mut count) = ([0u64; 2], [0i32; 2], 0usize);
    while all.len() < n {
        assert!(std::time::Instant::now() < deadline, "only {} of {n} tokens arrived", all.len());
        check(zarrs_completion_queue_drain(queue, tokens.as_mut_ptr(), codes.as_mut_ptr(), 2, &mut count));
        all.extend(tokens.iter().copied().zip(codes).take(count));
        if count == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    all
}

#[test]
fn read_chunks_start_completes_through_the_queue() {
    let f = Fixture::zstd("read-start");
    f.write_all();
    check(zarrs_array_erase_chunk(f.array.ptr(), null(), [1, 1].as_ptr(), 2));
    let mut queue = null_mut();
    let mut fd = -1;
    check(zarrs_completion_queue_new(&mut queue, &mut fd));
    assert!(fd >= 0);

    let batch = Batch::new()
        .chunk("arr/c/0/0", WHOLE, [0, 0], [16, 16], [0, 0])
        .chunk("arr/c/1/1", WHOLE, [0, 0], [16, 16], [16, 0]);
    let start_on = |array: *const ZarrsArray, token: u64, out: &mut [u16], present: &mut [u8]| {
        zarrs_array_read_chunks_start(
            queue, token, array, null(), batch.len(), batch.keys.as_ptr().cast(), batch.keys.len(),
            batch.offsets.as_ptr(), batch.geometry.as_ptr(), batch.geometry.len(),
            out.as_mut_ptr().cast(), out.len() * ES, [32u64, 16].as_ptr(), present.as_mut_ptr(), present.len(),
        )
    };
    let start = |token: u64, out: &mut [u16], present: &mut [u8]| start_on(f.array.ptr(), token, out, present);
    let mut out = vec![SENTINEL; 512];
    let mut present = [9u8; 2];

    check(start(2, &mut out, &mut present));
    assert_eq!(drain_tokens(queue, 1), vec![(2, ZARRS_SUCCESS as i32)]);
    let mut expected = grid([16, 16], value);
    expected.extend(vec![FILL; 256]);
    assert_eq!(out, expected);
    assert_eq!(present, [1, 0]);
    expect_err(zarrs_completion_queue_take_error(queue, 2), ZARRS_ERROR_INVALID_ARGUMENT, "token 2");

    // A corrupt chunk fails its token, and the message names its key.
    std::fs::write(f.file("c/0/0"), b"not zstd").unwrap();
    check(start(3, &mut out, &mut present));
    assert_eq!(drain_tokens(queue, 1), vec![(3, ZARRS_ERROR_CODEC as i32)]);
    expect_err(zarrs_completion_queue_take_error(queue, 3), ZARRS_ERROR_CODEC, "arr/c/0/0 in ");

    // Freed while a read is in flight: the queue lives on until the read has finished. The
    // array and the buffers must stay valid until then: they are leaked past the test.
    let array = Box::leak(Box::new(Array::open(&f.storage, "/arr")));
    let out = Box::leak(vec![SENTINEL; 512].into_boxed_slice());
    let present = Box::leak(Box::new([0u8; 2]));
    check(start_on(array.ptr(), 4, out, present));
    check(zarrs_completion_queue_free(queue));
    check(zarrs_completion_queue_free(null_mut()));
}

#[test]
fn gathers_started_complete_through_the_queue_as_the_blocking_gathers_do() {
    let f = Fixture::zstd("gather-start");
    f.write_all();
    check(zarrs_array_erase_chunk(f.array.ptr(), null(), [3, 0].as_ptr(), 2));
    let a = &f.array;
    let mut queue = null_mut();
    check(zarrs_completion_queue_new(&mut queue, &mut -1));
    let queue = queue.cast_const();

    // Rows 9, 1 and columns 3, 4 of chunk (0,0); row 2 and column 1 of the missing chunk.
    let ortho = Ortho::new()
        .chunk("arr/c/0/0", WHOLE, [(&[9, 1], &[0, 2]), (&[3, 4], &[0, 1])])
        .chunk("arr/c/3/0", WHOLE, [(&[2], &[1]), (&[1], &[2])]);
    let points = Points::new()
        .chunk("arr/c/0/1", WHOLE, &[([0, 0], 2), ([15, 15], 0)])
        .chunk("arr/c/3/0", WHOLE, &[([3, 3], 1)]);
    let (mut ortho_expected, mut ortho_present) = (vec![SENTINEL; 9], [9u8; 2]);
    check(ortho.read(a, &mut ortho_expected, [3, 3], &mut ortho_present));
    let (mut points_expected, mut points_present) = (vec![SENTINEL; 4], [9u8; 2]);
    check(points.read(a, &mut points_expected, &mut points_present));
    assert_eq!(points_expected, [value(15, 31), FILL, value(0, 16), SENTINEL]);

    // Many in flight at once, both kinds, each into its own buffers.
    let n = 40u64;
    let mut outs: Vec<Vec<u16>> = (0..n).map(|i| vec![SENTINEL; if i % 2 == 0 { 9 } else { 4 }]).collect();
    let mut presents = vec![[9u8; 2]; n as usize];
    for (i, (out, present)) in outs.iter_mut().zip(&mut presents).enumerate() {
        let token = 100 + i as u64;
        if i % 2 == 0 {
            check(ortho.start(queue, token, a, out, [3, 3], present));
        } else {
            check(points.start(queue, token, a, out, present));
        }
    }
    let mut done = drain_tokens(queue, n as usize);
    done.sort_unstable();
    assert_eq!(done, (0..n).map(|i| (100 + i, ZARRS_SUCCESS as i32)).collect::<Vec<_>>());
    for (i, (out, present)) in outs.iter().zip(&presents).enumerate() {
        if i % 2 == 0 {
            assert_eq!((out, present), (&ortho_expected, &ortho_present), "orthogonal gather {i}");
        } else {
            assert_eq!((out, present), (&points_expected, &points_present), "point gather {i}");
        }
    }

    // Argument errors are the start call's, before anything is started or written.
    let (mut out, mut present) = (vec![SENTINEL; 9], [9u8; 2]);
    let mut bad = ortho.clone();
    bad.indices[0] = 16;
    expect_err(bad.start(queue, 1, a, &mut out, [3, 3], &mut present), ZARRS_ERROR_INVALID_ARGUMENT, "index 16 on axis 0");
    expect_err(ortho.start(queue, 1, a, &mut out, [3, 2], &mut present), ZARRS_ERROR_BUFFER_SIZE, "`out` holds 18 bytes");
    expect_err(ortho.start(queue, 1, a, &mut out, [3, 3], &mut present[..1]), ZARRS_ERROR_BUFFER_SIZE, "`present_out` holds 1 bytes");
    let mut bad = points.clone();
    bad.offsets[1] = 9;
    let mut short = vec![SENTINEL; 4];
    expect_err(bad.start(queue, 1, a, &mut short, &mut present), ZARRS_ERROR_INVALID_ARGUMENT, "output offset 9");
    bad = points.clone();
    bad.coords[2] = 16;
    expect_err(bad.start(queue, 1, a, &mut short, &mut present), ZARRS_ERROR_INVALID_ARGUMENT, "point 1 at [16, 15]");
    assert_eq!((&out, &short, present), (&vec![SENTINEL; 9], &vec![SENTINEL; 4], [9, 9]), "an argument error writes nothing");
    assert_nothing_started(queue);

    // A corrupt chunk fails its token, and the message names its key.
    std::fs::write(f.file("c/0/1"), b"not zstd").unwrap();
    check(points.start(queue, 7, a, &mut short, &mut present));
    assert_eq!(drain_tokens(queue, 1), vec![(7, ZARRS_ERROR_CODEC as i32)]);
    expect_err(zarrs_completion_queue_take_error(queue, 7), ZARRS_ERROR_CODEC, "arr/c/0/1 in ");
    assert_eq!(present, [9, 9], "present_out is written only on success");

    // The caller's pick arrays are copied: freed right after the start, the gather still
    // reads what they said.
    let copy = ortho.clone();
    let mut out = vec![SENTINEL; 9];
    check(copy.start(queue, 8, a, &mut out, [3, 3], &mut present));
    drop(copy);
    assert_eq!(drain_tokens(queue, 1), vec![(8, ZARRS_SUCCESS as i32)]);
    assert_eq!(out, ortho_expected);

    // Freed while gathers are in flight: they finish first. The array and the buffers must
    // stay valid until then: they are leaked past the test.
    let array = Box::leak(Box::new(Array::open(&f.storage, "/arr")));
    let out = Box::leak(vec![SENTINEL; 9].into_boxed_slice());
    let present = Box::leak(Box::new([0u8; 2]));
    check(ortho.start(queue, 9, array, out, [3, 3], present));
    check(zarrs_completion_queue_free(queue.cast_mut()));
}

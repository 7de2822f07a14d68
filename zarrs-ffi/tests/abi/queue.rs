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

//! Buffers of the wrong length: for every call that takes a buffer and its length, lengths one
//! element short, one byte over, or of the wrong count. Each is `ZARRS_ERROR_BUFFER_SIZE` with
//! a last error naming the buffer, the length given and the length required, and nothing is
//! read or written.
//!
//! A row names the function, the buffer and the two lengths; one loop checks every row.

use super::*;

/// One wrongly sized call: `argument` holds `got` bytes (or values) where `required` are.
struct Row<'a> {
    function: &'static str,
    argument: &'static str,
    got: usize,
    required: usize,
    call: Box<dyn Fn() -> ZarrsResult + 'a>,
}

fn row<'a>(function: &'static str, argument: &'static str, got: usize, required: usize, call: impl Fn() -> ZarrsResult + 'a) -> Row<'a> {
    Row {
        function,
        argument,
        got,
        required,
        call: Box::new(call),
    }
}

/// The one loop. Every failure is collected, then reported together.
#[track_caller]
fn check_rows(rows: &[Row]) {
    let mut failures = Vec::new();
    for row in rows {
        let code = (row.call)();
        let message = last_error();
        let expected = format!("`{}` holds {} bytes but {} bytes are required", row.argument, row.got, row.required);
        if code != ZARRS_ERROR_BUFFER_SIZE {
            failures.push(format!("{} with `{}` of {}: {code:?}, last error {message:?}", row.function, row.argument, row.got));
        } else if !message.contains(&expected) {
            failures.push(format!("{}: last error {message:?} does not say {expected:?}", row.function));
        }
    }
    assert!(failures.is_empty(), "{} buffer-size checks failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn wrongly_sized_buffers_are_refused_naming_the_buffer() {
    let f = Fixture::zstd("buffer-sizes");
    let a = f.array.ptr();
    let data = vec![value(0, 0); 256];
    let good = Batch::new().chunk("arr/c/0/0", WHOLE, [0, 0], [16, 16], [0, 0]);
    let two = Batch::new()
        .chunk("arr/c/0/0", WHOLE, [0, 0], [16, 16], [0, 0])
        .chunk("arr/c/1/1", WHOLE, [0, 0], [16, 16], [16, 0]);
    let existing = no_existing(1);
    let gather = Ortho::new().chunk("arr/c/0/0", WHOLE, [(&[0, 1], &[0, 1]), (&[2], &[0])]);
    let mut queue = null_mut();
    check(zarrs_completion_queue_new(&mut queue, &mut -1));
    let queue = queue.cast_const();

    // A wrong ndim is a wrongly sized output buffer, and nothing is written.
    let shape = |ndim: usize| {
        let mut dims = [SENTINEL as u64; 3];
        let code = zarrs_array_shape(a, dims.as_mut_ptr(), ndim);
        assert_eq!(dims, [SENTINEL as u64; 3]);
        code
    };
    let retrieve_chunk = |out_len: usize| {
        let mut out = vec![SENTINEL; 256];
        let mut present = 1u8;
        let code = zarrs_array_retrieve_chunk(a, null(), [0, 0].as_ptr(), 2, out.as_mut_ptr().cast(), out_len, &mut present);
        assert_eq!(present, 1, "present_out is written only on success");
        assert_eq!(out, vec![SENTINEL; 256], "out is untouched by argument errors");
        code
    };
    let retrieve_subset = |out_len: usize| {
        let mut out = vec![SENTINEL; 65];
        let code = zarrs_array_retrieve_subset(a, null(), [0, 0].as_ptr(), [8, 8].as_ptr(), 2, out.as_mut_ptr().cast(), out_len);
        assert_eq!(out, vec![SENTINEL; 65]);
        code
    };
    let read = |batch: &Batch, out_len: usize, present_len: usize| {
        let mut out = vec![SENTINEL; 256];
        let mut present = [9u8];
        let code = batch.read(&f.array, &mut out[..out_len], WHOLE, &mut present[..present_len]);
        assert_eq!(out, vec![SENTINEL; 256], "failed argument checks write nothing");
        assert_eq!(present, [9], "present_out is written only on success");
        code
    };
    let encode = |value_len: usize| {
        let mut handle = null_mut();
        let code = zarrs_array_encode_chunks(
            a, null(), 1, good.geometry.as_ptr(), good.geometry.len(), data.as_ptr().cast(), value_len, WHOLE.as_ptr(), 2,
            existing.pointers.as_ptr(), existing.lens.as_ptr(), &mut handle,
        );
        assert!(handle.is_null());
        code
    };
    let gather = |out_len: usize, present_len: usize| {
        let mut out = vec![SENTINEL; 2];
        let mut present = [9u8];
        let code = gather.read(&f.array, &mut out[..out_len], [2, 1], &mut present[..present_len]);
        assert_eq!((out, present), (vec![SENTINEL; 2], [9]));
        code
    };
    // Argument errors of a started read are returned at once and start nothing.
    let start = |out_len: usize, present_len: usize| {
        let mut out = vec![SENTINEL; 512];
        let mut present = [9u8; 2];
        let code = zarrs_array_read_chunks_start(
            queue, 1, a, null(), two.len(), two.keys.as_ptr().cast(), two.keys.len(), two.offsets.as_ptr(),
            two.geometry.as_ptr(), two.geometry.len(), out.as_mut_ptr().cast(), out_len * ES, [32u64, 16].as_ptr(),
            present.as_mut_ptr(), present_len,
        );
        assert_eq!((out, present), (vec![SENTINEL; 512], [9; 2]));
        code
    };

    check_rows(&[
        row("zarrs_array_shape", "shape_out", 3, 2, || shape(3)),
        row("zarrs_array_shape", "shape_out", 1, 2, || shape(1)),
        row("zarrs_array_chunk_grid_shape", "grid_shape_out", 3, 2, || {
            let mut dims = [SENTINEL as u64; 3];
            let code = zarrs_array_chunk_grid_shape(a, dims.as_mut_ptr(), 3);
            assert_eq!(dims, [SENTINEL as u64; 3]);
            code
        }),
        // The stored buffer (the C argument `data`) is called `value`, as in the batch calls.
        row("zarrs_array_store_chunk", "value", 510, 512, || f.array.store_chunk_with(None, &[0, 0], &data[..255])),
        row("zarrs_array_retrieve_chunk", "out", 511, 512, || retrieve_chunk(511)),
        row("zarrs_array_retrieve_subset", "out", 127, 128, || retrieve_subset(127)),
        row("zarrs_array_retrieve_subset", "out", 129, 128, || retrieve_subset(129)),
        row("zarrs_array_store_subset", "value", 126, 128, || f.array.store_with(None, &[0, 0], &[8, 8], &data[..63])),
        row("zarrs_array_read_chunks", "out", 510, 512, || read(&good, 255, 1)),
        row("zarrs_array_read_chunks", "present_out", 0, 1, || read(&good, 256, 0)),
        row("zarrs_array_write_chunks", "value", 510, 512, || good.write(&f.array, None, &data[..255], &WHOLE)),
        // A broadcast value is exactly one element.
        row("zarrs_array_write_chunks", "value", 4, 2, || good.write(&f.array, None, &[1, 2], &[])),
        row("zarrs_array_decode_chunks", "out", 400, 512, || {
            let mut out = vec![SENTINEL; 256];
            let code = decode(&f.array, None, &Encoded::new(&[None]), &good, &mut out[..200], WHOLE);
            assert_eq!(out, vec![SENTINEL; 256]);
            code
        }),
        row("zarrs_array_encode_chunks", "value", 510, 512, || encode(510)),
        row("zarrs_array_gather_orthogonal", "out", 2, 4, || gather(1, 1)),
        row("zarrs_array_gather_orthogonal", "present_out", 0, 1, || gather(2, 0)),
        row("zarrs_array_read_chunks_start", "present_out", 1, 2, || start(512, 1)),
        row("zarrs_array_read_chunks_start", "out", 200, 1024, || start(100, 2)),
    ]);
    assert_nothing_started(queue);
    check(zarrs_completion_queue_free(queue.cast_mut()));
    assert!(f.stored_chunks().is_empty(), "{:?}", f.stored_chunks());
}

//! The NULL matrix: for every exported function, each pointer argument that must not be NULL,
//! passed as NULL while every other argument is valid. Each such call is
//! `ZARRS_ERROR_NULL_POINTER` with a last error naming the argument, and writes nothing.
//!
//! A row names the function and its non-NULL arguments; its call passes each argument through
//! [`Nulls`], which swaps in NULL for the one argument under test. One loop checks every row.

use std::cell::Cell;

use super::*;

/// Which argument of a call is replaced by NULL, and whether the call passed it at all (a row
/// naming an argument its call never passes would otherwise check nothing).
struct Nulls {
    target: &'static str,
    passed: Cell<bool>,
}

impl Nulls {
    /// `p`, or NULL when `name` is the argument under test.
    fn c<T>(&self, name: &str, p: *const T) -> *const T {
        if name == self.target {
            self.passed.set(true);
            null()
        } else {
            p
        }
    }

    /// `p`, or NULL when `name` is the argument under test.
    fn m<T>(&self, name: &str, p: *mut T) -> *mut T {
        if name == self.target {
            self.passed.set(true);
            null_mut()
        } else {
            p
        }
    }
}

/// One exported function: the pointer arguments that must not be NULL, and a call that passes
/// each of them through [`Nulls`]. The call may assert afterwards that nothing was written.
struct Row<'a> {
    function: &'static str,
    non_null: &'static [&'static str],
    call: Box<dyn Fn(&Nulls) -> ZarrsResult + 'a>,
}

fn row<'a>(function: &'static str, non_null: &'static [&'static str], call: impl Fn(&Nulls) -> ZarrsResult + 'a) -> Row<'a> {
    Row {
        function,
        non_null,
        call: Box::new(call),
    }
}

/// Out-parameters the library reports as "`out-parameter` must not be NULL" instead of by
/// name. Listed so that naming them makes this test fail until the entry is removed.
const UNNAMED: &[(&str, &str)] = &[
    ("zarrs_keep_warm", "microseconds_out"),
    ("zarrs_options_default", "options_out"),
    ("zarrs_array_dimensionality", "ndim_out"),
    ("zarrs_array_element_size", "size_out"),
    ("zarrs_array_is_sharded", "sharded_out"),
    ("zarrs_array_metadata", "len_out"),
    ("zarrs_array_data_type", "len_out"),
    ("zarrs_array_chunk_key", "len_out"),
    ("zarrs_encoded_chunks_count", "count_out"),
];

/// The one loop: each named argument NULL in turn. Every failure is collected, then reported
/// together.
#[track_caller]
fn check_rows(rows: &[Row]) {
    let mut failures = Vec::new();
    for row in rows {
        for &argument in row.non_null {
            let nulls = Nulls {
                target: argument,
                passed: Cell::new(false),
            };
            let code = (row.call)(&nulls);
            let message = last_error();
            let function = row.function;
            let named = if UNNAMED.contains(&(function, argument)) { "out-parameter" } else { argument };
            if !nulls.passed.get() {
                failures.push(format!("the {function} row never passes `{argument}`"));
            } else if code != ZARRS_ERROR_NULL_POINTER {
                failures.push(format!("{function} with `{argument}` NULL: {code:?}, last error {message:?}"));
            } else if !(message.contains(&format!("`{named}`")) && message.contains("NULL")) {
                // "`name` must not be NULL": names the argument and says NULL.
                failures.push(format!("{function} with `{argument}` NULL: last error {message:?} does not name `{named}`"));
            }
        }
    }
    assert!(failures.is_empty(), "{} NULL checks failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn null_arguments_of_the_calls_without_an_array_are_refused() {
    let dir = TempDir::new("null-storage");
    let path = path_str(&dir.0);
    let s3 = s3_config("bucket", Some("k"), Some("s"));
    let gcs = gcs_config("bucket", None, None, Some("t"));
    let azure = azure_config("container", None, None, Some("t"));
    let (url, url_len) = text("http://127.0.0.1:9/data");
    let message = "never raised";
    check_rows(&[
        row("zarrs_keep_warm", &["microseconds_out"], |n| {
            let mut window = u64::MAX;
            zarrs_keep_warm(n.m("microseconds_out", &mut window))
        }),
        row("zarrs_options_default", &["options_out"], |n| {
            let mut options = default_options();
            zarrs_options_default(n.m("options_out", &mut options))
        }),
        row("zarrs_storage_open_filesystem", &["path", "storage_out"], |n| {
            let mut storage = null_mut();
            let code = zarrs_storage_open_filesystem(n.c("path", path.as_ptr().cast()), path.len(), 0, 0, n.m("storage_out", &mut storage));
            assert!(storage.is_null(), "out-parameters are written only on success");
            code
        }),
        row("zarrs_storage_open_memory", &["storage_out"], |n| zarrs_storage_open_memory(n.m("storage_out", &mut null_mut()))),
        row("zarrs_storage_open_s3", &["config", "storage_out"], |n| {
            let mut storage = null_mut();
            let code = zarrs_storage_open_s3(n.c("config", &s3), n.m("storage_out", &mut storage));
            assert!(storage.is_null(), "no handle on failure");
            code
        }),
        row("zarrs_storage_open_gcs", &["config", "storage_out"], |n| {
            let mut storage = null_mut();
            let code = zarrs_storage_open_gcs(n.c("config", &gcs), n.m("storage_out", &mut storage));
            assert!(storage.is_null(), "no handle on failure");
            code
        }),
        row("zarrs_storage_open_azure", &["config", "storage_out"], |n| {
            let mut storage = null_mut();
            let code = zarrs_storage_open_azure(n.c("config", &azure), n.m("storage_out", &mut storage));
            assert!(storage.is_null(), "no handle on failure");
            code
        }),
        row("zarrs_storage_open_http", &["url", "storage_out"], |n| {
            let mut storage = null_mut();
            let code = zarrs_storage_open_http(n.c("url", url), url_len, n.m("storage_out", &mut storage));
            assert!(storage.is_null(), "no handle on failure");
            code
        }),
        row("zarrs_completion_queue_new", &["queue_out", "fd_out"], |n| {
            let (mut queue, mut fd) = (null_mut(), -1);
            let code = zarrs_completion_queue_new(n.m("queue_out", &mut queue), n.m("fd_out", &mut fd));
            assert!(queue.is_null() && fd == -1, "out-parameters are written only on success");
            code
        }),
        // A bad argument before the panic is reported as such.
        row("zarrs_test_panic", &["message"], |n| zarrs_test_panic(n.c("message", message.as_ptr().cast()), message.len())),
    ]);
    assert!(!dir.0.join("a").exists());
}

#[test]
fn null_arguments_of_the_array_calls_are_refused() {
    let f = Fixture::zstd("null-arrays");
    f.write_all();
    let a = f.array.ptr();
    let s = f.storage.0;
    let good = metadata([8, 8], [4, 4], &codecs_zstd());
    let data = vec![value(0, 0); 256];
    let indices = [0u64, 0];
    check_rows(&[
        row("zarrs_array_create", &["storage", "path", "metadata", "array_out"], |n| {
            let mut array = null_mut();
            let code = zarrs_array_create(
                n.c("storage", s),
                n.c("path", b"/a".as_ptr().cast()),
                2,
                n.c("metadata", good.as_ptr().cast()),
                good.len(),
                n.m("array_out", &mut array),
            );
            // Reported before anything is written to the store.
            assert!(!f.dir.0.join("a").exists());
            assert!(array.is_null(), "out-parameters are written only on success");
            code
        }),
        row("zarrs_array_open", &["storage", "path", "array_out"], |n| {
            let mut array = null_mut();
            let code = zarrs_array_open(n.c("storage", s), n.c("path", b"/nothing".as_ptr().cast()), 8, n.m("array_out", &mut array));
            assert!(array.is_null());
            code
        }),
        row("zarrs_array_open_with_metadata", &["storage", "path", "metadata", "array_out"], |n| {
            let mut array = null_mut();
            let code = zarrs_array_open_with_metadata(
                n.c("storage", s),
                n.c("path", b"/m".as_ptr().cast()),
                2,
                n.c("metadata", good.as_ptr().cast()),
                good.len(),
                n.m("array_out", &mut array),
            );
            assert!(array.is_null());
            code
        }),
        row("zarrs_array_dimensionality", &["array", "ndim_out"], |n| {
            zarrs_array_dimensionality(n.c("array", a), n.m("ndim_out", &mut 0))
        }),
        row("zarrs_array_element_size", &["array", "size_out"], |n| {
            zarrs_array_element_size(n.c("array", a), n.m("size_out", &mut 0))
        }),
        row("zarrs_array_is_sharded", &["array", "sharded_out"], |n| {
            zarrs_array_is_sharded(n.c("array", a), n.m("sharded_out", &mut 0))
        }),
        row("zarrs_array_set_shard_index_cache", &["array"], |n| zarrs_array_set_shard_index_cache(n.c("array", a), 1 << 20)),
        row("zarrs_array_shard_index_cache_usage", &["array", "entries_out", "bytes_out"], |n| {
            let (mut entries, mut bytes) = (SENTINEL as u64, SENTINEL as u64);
            let result = zarrs_array_shard_index_cache_usage(n.c("array", a), n.m("entries_out", &mut entries), n.m("bytes_out", &mut bytes));
            assert_eq!((entries, bytes), (SENTINEL as u64, SENTINEL as u64), "nothing is written on failure");
            result
        }),
        row("zarrs_array_shape", &["array", "shape_out"], |n| {
            let mut dims = [SENTINEL as u64; 2];
            let code = zarrs_array_shape(n.c("array", a), n.m("shape_out", dims.as_mut_ptr()), 2);
            assert_eq!(dims, [SENTINEL as u64; 2]);
            code
        }),
        row("zarrs_array_chunk_grid_shape", &["array", "grid_shape_out"], |n| {
            let mut dims = [SENTINEL as u64; 2];
            let code = zarrs_array_chunk_grid_shape(n.c("array", a), n.m("grid_shape_out", dims.as_mut_ptr()), 2);
            assert_eq!(dims, [SENTINEL as u64; 2]);
            code
        }),
        row("zarrs_array_chunk_shape", &["array", "chunk_indices", "chunk_shape_out"], |n| {
            let mut dims = [SENTINEL as u64; 2];
            let code = zarrs_array_chunk_shape(n.c("array", a), n.c("chunk_indices", indices.as_ptr()), 2, n.m("chunk_shape_out", dims.as_mut_ptr()));
            assert_eq!(dims, [SENTINEL as u64; 2]);
            code
        }),
        // A NULL buffer with a nonzero length is an error, not a write through NULL.
        row("zarrs_array_metadata", &["array", "buf", "len_out"], |n| {
            let (mut buf, mut len) = ([0u8; 4096], usize::MAX);
            zarrs_array_metadata(n.c("array", a), n.m("buf", buf.as_mut_ptr().cast()), buf.len(), n.m("len_out", &mut len))
        }),
        row("zarrs_array_data_type", &["array", "buf", "len_out"], |n| {
            let (mut buf, mut len) = ([0u8; 64], usize::MAX);
            zarrs_array_data_type(n.c("array", a), n.m("buf", buf.as_mut_ptr().cast()), buf.len(), n.m("len_out", &mut len))
        }),
        row("zarrs_array_chunk_key", &["array", "chunk_indices", "buf", "len_out"], |n| {
            let (mut buf, mut len) = ([0u8; 64], usize::MAX);
            zarrs_array_chunk_key(
                n.c("array", a),
                n.c("chunk_indices", indices.as_ptr()),
                2,
                n.m("buf", buf.as_mut_ptr().cast()),
                buf.len(),
                n.m("len_out", &mut len),
            )
        }),
    ]);
    assert!(!f.dir.0.join("m").exists());

    // Regions and single chunks.
    check_rows(&[
        row("zarrs_array_store_chunk", &["array", "chunk_indices", "data"], |n| {
            zarrs_array_store_chunk(n.c("array", a), null(), n.c("chunk_indices", indices.as_ptr()), 2, n.c("data", data.as_ptr().cast()), 512)
        }),
        row("zarrs_array_retrieve_chunk", &["array", "chunk_indices", "out"], |n| {
            let mut out = vec![SENTINEL; 256];
            let mut present = 1u8;
            let code = zarrs_array_retrieve_chunk(
                n.c("array", a),
                null(),
                n.c("chunk_indices", indices.as_ptr()),
                2,
                n.m("out", out.as_mut_ptr().cast()),
                512,
                &mut present,
            );
            assert_eq!(present, 1, "present_out is written only on success");
            assert_eq!(out, vec![SENTINEL; 256], "out is untouched by argument errors");
            code
        }),
        row("zarrs_array_erase_chunk", &["array", "chunk_indices"], |n| {
            zarrs_array_erase_chunk(n.c("array", a), null(), n.c("chunk_indices", indices.as_ptr()), 2)
        }),
        row("zarrs_array_retrieve_subset", &["array", "start", "shape", "out"], |n| {
            let mut out = vec![SENTINEL; 64];
            let code = zarrs_array_retrieve_subset(
                n.c("array", a),
                null(),
                n.c("start", [0u64, 0].as_ptr()),
                n.c("shape", [8u64, 8].as_ptr()),
                2,
                n.m("out", out.as_mut_ptr().cast()),
                128,
            );
            assert_eq!(out, vec![SENTINEL; 64]);
            code
        }),
        row("zarrs_array_store_subset", &["array", "start", "shape", "data"], |n| {
            zarrs_array_store_subset(
                n.c("array", a),
                null(),
                n.c("start", [0u64, 0].as_ptr()),
                n.c("shape", [8u64, 8].as_ptr()),
                2,
                n.c("data", data.as_ptr().cast()),
                128,
            )
        }),
    ]);

    // Batches by key, and the codec-only calls.
    let batch = Batch::new().chunk("arr/c/0/0", WHOLE, [0, 0], [16, 16], [0, 0]);
    let encoded_chunk = encode(&f.array, None, &batch, &data, &WHOLE, &no_existing(1));
    let encoded = Encoded::new(&[encoded_chunk[0].as_deref()]);
    let existing = no_existing(1);
    let mut handle = null_mut();
    check(zarrs_array_encode_chunks(
        a, null(), 1, batch.geometry.as_ptr(), batch.geometry.len(), data.as_ptr().cast(), 512, WHOLE.as_ptr(), 2,
        existing.pointers.as_ptr(), existing.lens.as_ptr(), &mut handle,
    ));
    let handle = handle.cast_const();
    let mut queue = null_mut();
    check(zarrs_completion_queue_new(&mut queue, &mut -1));
    let queue = queue.cast_const();
    check_rows(&[
        row("zarrs_array_read_chunks", &["array", "keys", "key_offsets", "geometry", "out", "out_shape", "present_out"], |n| {
            let mut out = vec![SENTINEL; 256];
            let mut present = [9u8];
            let code = zarrs_array_read_chunks(
                n.c("array", a),
                null(),
                1,
                n.c("keys", batch.keys.as_ptr().cast()),
                batch.keys.len(),
                n.c("key_offsets", batch.offsets.as_ptr()),
                n.c("geometry", batch.geometry.as_ptr()),
                batch.geometry.len(),
                n.m("out", out.as_mut_ptr().cast()),
                512,
                n.c("out_shape", WHOLE.as_ptr()),
                n.m("present_out", present.as_mut_ptr()),
                1,
            );
            assert_eq!(out, vec![SENTINEL; 256], "failed argument checks write nothing");
            assert_eq!(present, [9], "present_out is written only on success");
            code
        }),
        row("zarrs_array_read_chunks_start", &["queue", "array", "keys", "key_offsets", "geometry", "out", "out_shape", "present_out"], |n| {
            let mut out = vec![SENTINEL; 256];
            let mut present = [9u8];
            let code = zarrs_array_read_chunks_start(
                n.c("queue", queue),
                1,
                n.c("array", a),
                null(),
                1,
                n.c("keys", batch.keys.as_ptr().cast()),
                batch.keys.len(),
                n.c("key_offsets", batch.offsets.as_ptr()),
                n.c("geometry", batch.geometry.as_ptr()),
                batch.geometry.len(),
                n.m("out", out.as_mut_ptr().cast()),
                512,
                n.c("out_shape", WHOLE.as_ptr()),
                n.m("present_out", present.as_mut_ptr()),
                1,
            );
            assert_eq!((out, present), (vec![SENTINEL; 256], [9]), "an argument error starts nothing");
            code
        }),
        row("zarrs_array_write_chunks", &["array", "keys", "key_offsets", "geometry", "value"], |n| {
            zarrs_array_write_chunks(
                n.c("array", a),
                null(),
                1,
                n.c("keys", batch.keys.as_ptr().cast()),
                batch.keys.len(),
                n.c("key_offsets", batch.offsets.as_ptr()),
                n.c("geometry", batch.geometry.as_ptr()),
                batch.geometry.len(),
                n.c("value", [1u16].as_ptr().cast()),
                2,
                null(),
                0,
            )
        }),
        row("zarrs_array_fetch_encoded", &["array", "keys", "key_offsets", "encoded_out"], |n| {
            let mut fetched = null_mut();
            let code = zarrs_array_fetch_encoded(
                n.c("array", a),
                null(),
                1,
                n.c("keys", batch.keys.as_ptr().cast()),
                batch.keys.len(),
                n.c("key_offsets", batch.offsets.as_ptr()),
                n.m("encoded_out", &mut fetched),
            );
            assert!(fetched.is_null());
            code
        }),
        row("zarrs_array_decode_chunks", &["array", "encoded", "encoded_lens", "geometry", "out", "out_shape"], |n| {
            let mut out = vec![SENTINEL; 256];
            let code = zarrs_array_decode_chunks(
                n.c("array", a),
                null(),
                1,
                n.c("encoded", encoded.pointers.as_ptr()),
                n.c("encoded_lens", encoded.lens.as_ptr()),
                n.c("geometry", batch.geometry.as_ptr()),
                batch.geometry.len(),
                n.m("out", out.as_mut_ptr().cast()),
                512,
                n.c("out_shape", WHOLE.as_ptr()),
            );
            assert_eq!(out, vec![SENTINEL; 256]);
            code
        }),
        row("zarrs_array_encode_chunks", &["array", "geometry", "value", "encoded_out"], |n| {
            let mut out = null_mut();
            let code = zarrs_array_encode_chunks(
                n.c("array", a),
                null(),
                1,
                n.c("geometry", batch.geometry.as_ptr()),
                batch.geometry.len(),
                n.c("value", data.as_ptr().cast()),
                512,
                WHOLE.as_ptr(),
                2,
                existing.pointers.as_ptr(),
                existing.lens.as_ptr(),
                n.m("encoded_out", &mut out),
            );
            assert!(out.is_null());
            code
        }),
        row("zarrs_encoded_chunks_count", &["encoded", "count_out"], |n| {
            zarrs_encoded_chunks_count(n.c("encoded", handle), n.m("count_out", &mut 0))
        }),
        row("zarrs_encoded_chunks_get", &["encoded", "data_out", "len_out"], |n| {
            let (mut data, mut len) = (null(), 0usize);
            let code = zarrs_encoded_chunks_get(n.c("encoded", handle), 0, n.m("data_out", &mut data), n.m("len_out", &mut len));
            assert!(data.is_null() && len == 0);
            code
        }),
        row("zarrs_completion_queue_drain", &["queue", "tokens_out", "codes_out", "count_out"], |n| {
            let (mut tokens, mut codes, mut count) = ([0u64; 2], [0i32; 2], usize::MAX);
            let code = zarrs_completion_queue_drain(
                n.c("queue", queue),
                n.m("tokens_out", tokens.as_mut_ptr()),
                n.m("codes_out", codes.as_mut_ptr()),
                2,
                n.m("count_out", &mut count),
            );
            assert_eq!(count, usize::MAX);
            code
        }),
    ]);
    check(zarrs_encoded_chunks_free(handle.cast_mut()));
    assert_nothing_started(queue);
    check(zarrs_completion_queue_free(queue.cast_mut()));
    // Nothing was changed by any of the failed writes.
    assert_eq!(f.array.retrieve(&[0, 0], &[64, 48]), grid([64, 48], value));
    assert_eq!(f.stored_chunks().len(), 12);
}

#[test]
fn null_arguments_of_the_gathers_are_refused() {
    let f = Fixture::zstd("null-gathers");
    f.write_all();
    let a = f.array.ptr();
    let ortho = Ortho::new().chunk("arr/c/0/0", WHOLE, [(&[0, 1], &[0, 1]), (&[2], &[0])]);
    let points = Points::new().chunk("arr/c/0/1", WHOLE, &[([1, 2], 0), ([15, 15], 1)]);
    let mut queue = null_mut();
    check(zarrs_completion_queue_new(&mut queue, &mut -1));
    let queue = queue.cast_const();
    check_rows(&[
        row(
            "zarrs_array_gather_orthogonal",
            &["array", "keys", "key_offsets", "chunk_shapes", "picks", "indices", "positions", "out", "out_shape", "present_out"],
            |n| {
                let mut out = [SENTINEL; 2];
                let mut present = [9u8];
                let code = zarrs_array_gather_orthogonal(
                    n.c("array", a),
                    null(),
                    1,
                    n.c("keys", ortho.batch.keys.as_ptr().cast()),
                    ortho.batch.keys.len(),
                    n.c("key_offsets", ortho.batch.offsets.as_ptr()),
                    n.c("chunk_shapes", ortho.shapes.as_ptr()),
                    2,
                    n.c("picks", ortho.picks.as_ptr()),
                    4,
                    n.c("indices", ortho.indices.as_ptr()),
                    n.c("positions", ortho.positions.as_ptr()),
                    3,
                    n.m("out", out.as_mut_ptr().cast()),
                    4,
                    n.c("out_shape", [2u64, 1].as_ptr()),
                    n.m("present_out", present.as_mut_ptr()),
                    1,
                );
                assert_eq!((out, present), ([SENTINEL; 2], [9]));
                code
            },
        ),
        row(
            "zarrs_array_gather_points",
            &["array", "keys", "key_offsets", "chunk_shapes", "counts", "coords", "offsets", "out", "present_out"],
            |n| {
                let mut out = [SENTINEL; 2];
                let mut present = [9u8];
                let code = zarrs_array_gather_points(
                    n.c("array", a),
                    null(),
                    1,
                    n.c("keys", points.batch.keys.as_ptr().cast()),
                    points.batch.keys.len(),
                    n.c("key_offsets", points.batch.offsets.as_ptr()),
                    n.c("chunk_shapes", points.shapes.as_ptr()),
                    2,
                    n.c("counts", points.counts.as_ptr()),
                    n.c("coords", points.coords.as_ptr()),
                    4,
                    n.c("offsets", points.offsets.as_ptr()),
                    2,
                    n.m("out", out.as_mut_ptr().cast()),
                    4,
                    n.m("present_out", present.as_mut_ptr()),
                    1,
                );
                assert_eq!((out, present), ([SENTINEL; 2], [9]));
                code
            },
        ),
        row(
            "zarrs_array_gather_orthogonal_start",
            &["queue", "array", "keys", "key_offsets", "chunk_shapes", "picks", "indices", "positions", "out", "out_shape", "present_out"],
            |n| {
                let mut out = [SENTINEL; 2];
                let mut present = [9u8];
                let code = zarrs_array_gather_orthogonal_start(
                    n.c("queue", queue),
                    1,
                    n.c("array", a),
                    null(),
                    1,
                    n.c("keys", ortho.batch.keys.as_ptr().cast()),
                    ortho.batch.keys.len(),
                    n.c("key_offsets", ortho.batch.offsets.as_ptr()),
                    n.c("chunk_shapes", ortho.shapes.as_ptr()),
                    2,
                    n.c("picks", ortho.picks.as_ptr()),
                    4,
                    n.c("indices", ortho.indices.as_ptr()),
                    n.c("positions", ortho.positions.as_ptr()),
                    3,
                    n.m("out", out.as_mut_ptr().cast()),
                    4,
                    n.c("out_shape", [2u64, 1].as_ptr()),
                    n.m("present_out", present.as_mut_ptr()),
                    1,
                );
                assert_eq!((out, present), ([SENTINEL; 2], [9]), "an argument error starts nothing");
                code
            },
        ),
        row(
            "zarrs_array_gather_points_start",
            &["queue", "array", "keys", "key_offsets", "chunk_shapes", "counts", "coords", "offsets", "out", "present_out"],
            |n| {
                let mut out = [SENTINEL; 2];
                let mut present = [9u8];
                let code = zarrs_array_gather_points_start(
                    n.c("queue", queue),
                    1,
                    n.c("array", a),
                    null(),
                    1,
                    n.c("keys", points.batch.keys.as_ptr().cast()),
                    points.batch.keys.len(),
                    n.c("key_offsets", points.batch.offsets.as_ptr()),
                    n.c("chunk_shapes", points.shapes.as_ptr()),
                    2,
                    n.c("counts", points.counts.as_ptr()),
                    n.c("coords", points.coords.as_ptr()),
                    4,
                    n.c("offsets", points.offsets.as_ptr()),
                    2,
                    n.m("out", out.as_mut_ptr().cast()),
                    4,
                    n.m("present_out", present.as_mut_ptr()),
                    1,
                );
                assert_eq!((out, present), ([SENTINEL; 2], [9]), "an argument error starts nothing");
                code
            },
        ),
    ]);
    assert_nothing_started(queue);
    check(zarrs_completion_queue_free(queue.cast_mut()));
}

#[test]
fn null_arguments_of_the_variable_length_calls_are_refused() {
    let mut storage = null_mut();
    check(zarrs_storage_open_memory(&mut storage));
    let storage = Storage(storage);
    let array = open_string_array(&storage, 3, r#"[{"name":"vlen-utf8"}]"#);
    let a = array.ptr();
    let data = b"abc";
    let offsets = [0u64, 1, 2, 3];
    let mut encoded = null_mut();
    check(zarrs_array_encode_variable_chunks(a, null(), 1, [3u64].as_ptr(), 1, data.as_ptr(), 3, offsets.as_ptr(), 4, &mut encoded));
    let (mut ptr, mut len) = (null(), 0usize);
    check(zarrs_encoded_chunks_get(encoded, 0, &mut ptr, &mut len));
    // SAFETY: valid until the handle is freed, below.
    let chunk = unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec();
    check(zarrs_encoded_chunks_free(encoded));
    let inputs = Encoded::new(&[Some(&chunk)]);
    let mut decoded = null_mut();
    check(zarrs_array_decode_variable_chunks(a, null(), 1, inputs.pointers.as_ptr(), inputs.lens.as_ptr(), [3u64].as_ptr(), 1, &mut decoded));
    let decoded = decoded.cast_const();
    check_rows(&[
        row("zarrs_array_encode_variable_chunks", &["array", "chunk_shapes", "data", "element_offsets", "encoded_out"], |n| {
            let mut out = null_mut();
            let code = zarrs_array_encode_variable_chunks(
                n.c("array", a),
                null(),
                1,
                n.c("chunk_shapes", [3u64].as_ptr()),
                1,
                n.c("data", data.as_ptr()),
                3,
                n.c("element_offsets", offsets.as_ptr()),
                4,
                n.m("encoded_out", &mut out),
            );
            assert!(out.is_null());
            code
        }),
        row("zarrs_array_decode_variable_chunks", &["array", "encoded", "encoded_lens", "chunk_shapes", "decoded_out"], |n| {
            let mut out = null_mut();
            let code = zarrs_array_decode_variable_chunks(
                n.c("array", a),
                null(),
                1,
                n.c("encoded", inputs.pointers.as_ptr()),
                n.c("encoded_lens", inputs.lens.as_ptr()),
                n.c("chunk_shapes", [3u64].as_ptr()),
                1,
                n.m("decoded_out", &mut out),
            );
            assert!(out.is_null());
            code
        }),
        row("zarrs_variable_chunks_get", &["chunks", "data_out", "data_len_out", "offsets_out", "offsets_len_out"], |n| {
            let (mut bytes, mut n_bytes, mut offs, mut n_offs) = (null(), 0usize, null(), 0usize);
            let code = zarrs_variable_chunks_get(
                n.c("chunks", decoded),
                0,
                n.m("data_out", &mut bytes),
                n.m("data_len_out", &mut n_bytes),
                n.m("offsets_out", &mut offs),
                n.m("offsets_len_out", &mut n_offs),
            );
            assert!(bytes.is_null() && offs.is_null() && n_bytes == 0 && n_offs == 0);
            code
        }),
    ]);
    check(zarrs_variable_chunks_free(decoded.cast_mut()));
}

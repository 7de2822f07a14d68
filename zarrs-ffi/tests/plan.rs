//! The sans-I/O read plan, write planning and native encoded I/O (`src/plan.rs`,
//! `src/encoded_io.rs`), called exactly as a C program would: raw pointers, explicit
//! lengths, result codes. The tests play the caller that does its own I/O, reading the
//! store's files from disk as each request says.

use std::path::{Path, PathBuf};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};

use zarrs_ffi::ZarrsResult::{self, *};
use zarrs_ffi::*;

mod common;
use common::{check, expect_err};

const FILL: u16 = 7;
const SENTINEL: u16 = 0xBEEF;

fn value(r: u64, c: u64) -> u16 {
    u16::try_from(100 + r * 1000 + c).unwrap()
}


struct Fixture {
    array: *mut ZarrsArray,
    storage: *mut ZarrsStorage,
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        zarrs_array_free(self.array);
        zarrs_storage_free(self.storage);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const BYTES: &str = r#"{"name":"bytes","configuration":{"endian":"little"}}"#;
const ZSTD: &str = r#"{"name":"zstd","configuration":{"level":3,"checksum":false}}"#;
const CRC32C: &str = r#"{"name":"crc32c"}"#;

/// Shards of 8x8 inner chunks (bytes + zstd), index at `location`, index codecs `index`.
fn sharded(index: &str, location: &str) -> String {
    format!(
        r#"[{{"name":"sharding_indexed","configuration":{{"chunk_shape":[8,8],"codecs":[{BYTES},{ZSTD}],"index_codecs":{index},"index_location":"{location}"}}}}]"#
    )
}

impl Fixture {
    /// A `uint16` array of shape [64, 48], chunks [32, 24], at `arr` in a fresh directory,
    /// every element written as [`value`].
    fn new(name: &str, codecs: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("zarrs-ffi-plan-{}-{unique}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.to_str().unwrap();
        let mut storage = null_mut();
        check(zarrs_storage_open_filesystem(path.as_ptr().cast(), path.len(), 0, 0, &mut storage));
        let metadata = format!(
            r#"{{"zarr_format":3,"node_type":"array","shape":[64,48],"data_type":"uint16","chunk_grid":{{"name":"regular","configuration":{{"chunk_shape":[32,24]}}}},"chunk_key_encoding":{{"name":"default","configuration":{{"separator":"/"}}}},"fill_value":{FILL},"codecs":{codecs}}}"#
        );
        let mut array = null_mut();
        check(zarrs_array_create(storage, "/arr".as_ptr().cast(), 4, metadata.as_ptr().cast(), metadata.len(), &mut array));
        let data: Vec<u16> = (0..64).flat_map(|r| (0..48).map(move |c| value(r, c))).collect();
        check(zarrs_array_store_subset(array, null(), [0, 0].as_ptr(), [64, 48].as_ptr(), 2, data.as_ptr().cast(), data.len() * 2));
        Self { array, storage, dir }
    }

    fn file(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    fn retrieve(&self, start: [u64; 2], shape: [u64; 2]) -> Vec<u16> {
        let mut out = vec![SENTINEL; (shape[0] * shape[1]) as usize];
        check(zarrs_array_retrieve_subset(self.array, null(), start.as_ptr(), shape.as_ptr(), 2, out.as_mut_ptr().cast(), out.len() * 2));
        out
    }
}

#[derive(Default)]
struct Batch {
    keys: String,
    offsets: Vec<u64>,
    geometry: Vec<u64>,
}

impl Batch {
    fn new() -> Self {
        Self { offsets: vec![0], ..Self::default() }
    }

    fn chunk(mut self, key: &str, start: [u64; 2], shape: [u64; 2], buffer_start: [u64; 2]) -> Self {
        self.keys.push_str(key);
        self.offsets.push(self.keys.len() as u64);
        for part in [[32, 24], start, shape, buffer_start] {
            self.geometry.extend_from_slice(&part);
        }
        self
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn key(&self, i: usize) -> &str {
        &self.keys[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    fn plan(&self, f: &Fixture, gap: u64, max: u64) -> Plan {
        let mut plan = null_mut();
        check(zarrs_array_read_plan_create(
            f.array,
            null(),
            self.len(),
            self.keys.as_ptr().cast(),
            self.keys.len(),
            self.offsets.as_ptr(),
            self.geometry.as_ptr(),
            self.geometry.len(),
            gap,
            max,
            &mut plan,
        ));
        assert!(!plan.is_null());
        Plan(plan)
    }
}

struct Plan(*mut ZarrsReadPlan);

impl Drop for Plan {
    fn drop(&mut self) {
        check(zarrs_read_plan_free(self.0));
    }
}

impl Plan {
    fn requests(&self) -> Vec<ZarrsByteRequest> {
        let (mut ptr, mut count) = (null(), usize::MAX);
        check(zarrs_read_plan_requests(self.0, &mut ptr, &mut count));
        if count == 0 {
            return Vec::new();
        }
        // SAFETY: the plan hands out `count` requests, valid until the next call on it.
        unsafe { std::slice::from_raw_parts(ptr, count) }.to_vec()
    }

    fn supply(&self, responses: &[Option<Vec<u8>>]) -> ZarrsResult {
        let pointers: Vec<*const u8> = responses.iter().map(|r| r.as_ref().map_or(null(), |r| r.as_ptr())).collect();
        let lens: Vec<usize> = responses.iter().map(|r| r.as_ref().map_or(0, Vec::len)).collect();
        zarrs_read_plan_supply(self.0, responses.len(), pointers.as_ptr(), lens.as_ptr())
    }

    fn finish(&self, out: &mut [u16], out_shape: [u64; 2], present: &mut [u8]) -> ZarrsResult {
        zarrs_read_plan_finish(self.0, out.as_mut_ptr().cast(), out.len() * 2, out_shape.as_ptr(), present.as_mut_ptr(), present.len())
    }
}

/// What a caller's store answers: the file's bytes, as the request asks (None: no file).
/// A range past the end comes back short, as stores return it.
fn answer(dir: &Path, key: &str, request: &ZarrsByteRequest) -> Option<Vec<u8>> {
    let bytes = std::fs::read(dir.join(key)).ok()?;
    let len = bytes.len() as u64;
    Some(match request.kind {
        ZarrsByteRequestKind::ZARRS_BYTE_REQUEST_WHOLE => bytes,
        ZarrsByteRequestKind::ZARRS_BYTE_REQUEST_SUFFIX => bytes[(len - request.length.min(len)) as usize..].to_vec(),
        ZarrsByteRequestKind::ZARRS_BYTE_REQUEST_RANGE => {
            let from = request.offset.min(len) as usize;
            let to = request.offset.saturating_add(request.length).min(len) as usize;
            bytes[from..to].to_vec()
        }
    })
}

/// Run a plan to the end against the files, returning the rounds of requests made.
fn drive(f: &Fixture, batch: &Batch, plan: &Plan) -> Vec<Vec<ZarrsByteRequest>> {
    let mut rounds = Vec::new();
    loop {
        let requests = plan.requests();
        if requests.is_empty() {
            return rounds;
        }
        let responses: Vec<_> = requests.iter().map(|r| answer(&f.dir, batch.key(r.job as usize), r)).collect();
        check(plan.supply(&responses));
        rounds.push(requests);
    }
}

fn expected(shape: [u64; 2], f: impl Fn(u64, u64) -> u16) -> Vec<u16> {
    (0..shape[0]).flat_map(|i| (0..shape[1]).map(move |j| (i, j))).map(|(i, j)| f(i, j)).collect()
}

#[test]
fn plan_reads_parts_of_shards_through_their_index() {
    for location in ["end", "start"] {
        let f = Fixture::new("parts", &sharded(&format!("[{BYTES},{CRC32C}]"), location));
        check(zarrs_array_erase_chunk(f.array, null(), [1, 1].as_ptr(), 2));
        // Part of shard (1, 0), all of shard (0, 1), part of the missing shard (1, 1).
        let batch = Batch::new()
            .chunk("arr/c/1/0", [3, 5], [10, 9], [0, 0])
            .chunk("arr/c/0/1", [0, 0], [32, 24], [10, 0])
            .chunk("arr/c/1/1", [30, 20], [2, 4], [0, 20]);
        let plan = batch.plan(&f, 0, 1 << 20);
        let rounds = drive(&f, &batch, &plan);
        assert_eq!(rounds.len(), 2, "index and whole chunks first, then inner chunks");
        let index_size = 16 * 12 + 4;
        let first: Vec<_> = rounds[0].iter().map(|r| (r.job, r.kind, r.offset, r.length)).collect();
        let index_request = if location == "end" {
            (ZarrsByteRequestKind::ZARRS_BYTE_REQUEST_SUFFIX, 0)
        } else {
            (ZarrsByteRequestKind::ZARRS_BYTE_REQUEST_RANGE, 0)
        };
        assert_eq!(
            first,
            [
                (0, index_request.0, index_request.1, index_size),
                (1, ZarrsByteRequestKind::ZARRS_BYTE_REQUEST_WHOLE, 0, 0),
                (2, index_request.0, index_request.1, index_size),
            ]
        );
        // Rows 3..13 and columns 5..14 of the shard meet inner chunks rows 0..1, cols 0..1:
        // four inner chunks, of the missing shard nothing.
        assert!(rounds[1].iter().all(|r| r.job == 0 && r.kind == ZarrsByteRequestKind::ZARRS_BYTE_REQUEST_RANGE));
        assert!((1..=4).contains(&rounds[1].len()), "{:?}", rounds[1]);
        let fetched: u64 = rounds[1].iter().map(|r| r.length).sum();
        let shard_len = std::fs::metadata(f.file("arr/c/1/0")).unwrap().len();
        assert!(fetched < shard_len / 2, "only the inner chunks needed: {fetched} of {shard_len} bytes");

        let mut out = vec![SENTINEL; 42 * 24];
        let mut present = [9u8; 3];
        check(plan.finish(&mut out, [42, 24], &mut present));
        assert_eq!(present, [1, 1, 0]);
        let want = expected([42, 24], |i, j| {
            if i >= 10 {
                value(i - 10, 24 + j)
            } else if j < 9 {
                value(32 + 3 + i, 5 + j)
            } else if i < 2 && j >= 20 {
                FILL
            } else {
                SENTINEL
            }
        });
        assert_eq!(out, want);
        // A finished plan can only be freed.
        expect_err(plan.finish(&mut out, [42, 24], &mut present), ZARRS_ERROR_INVALID_ARGUMENT, &["finished"]);
    }
}

#[test]
fn plan_coalesces_inner_ranges_within_the_limits() {
    let f = Fixture::new("coalesce", &sharded(&format!("[{BYTES},{CRC32C}]"), "end"));
    // All of the shard but one row: every inner chunk, 12 of them, by range.
    let batch = Batch::new().chunk("arr/c/0/0", [0, 0], [31, 24], [0, 0]);
    let count = |gap: u64, max: u64| {
        let plan = batch.plan(&f, gap, max);
        let rounds = drive(&f, &batch, &plan);
        let mut out = vec![SENTINEL; 31 * 24];
        let mut present = [0u8];
        check(plan.finish(&mut out, [31, 24], &mut present));
        assert_eq!(out, f.retrieve([0, 0], [31, 24]));
        rounds[1].len()
    };
    assert_eq!(count(1 << 20, 16 << 20), 1, "adjacent inner chunks merge into one range");
    assert_eq!(count(0, 0), 12, "a zero size limit merges nothing");
    let third = std::fs::metadata(f.file("arr/c/0/0")).unwrap().len() / 3;
    let merged = count(0, third);
    assert!(merged > 1 && merged < 12, "a small size limit splits the range: {merged}");
}

#[test]
fn plan_reads_whole_chunks_of_other_chains() {
    let f = Fixture::new("whole", &format!("[{BYTES},{ZSTD}]"));
    check(zarrs_array_erase_chunk(f.array, null(), [1, 1].as_ptr(), 2));
    let batch = Batch::new().chunk("arr/c/0/0", [1, 2], [3, 4], [0, 0]).chunk("arr/c/1/1", [0, 0], [3, 4], [3, 0]);
    let plan = batch.plan(&f, 0, 0);
    let rounds = drive(&f, &batch, &plan);
    assert_eq!(rounds.len(), 1);
    assert!(rounds[0].iter().all(|r| r.kind == ZarrsByteRequestKind::ZARRS_BYTE_REQUEST_WHOLE));
    let mut out = vec![SENTINEL; 6 * 4];
    let mut present = [9u8; 2];
    check(plan.finish(&mut out, [6, 4], &mut present));
    assert_eq!(present, [1, 0]);
    assert_eq!(out, expected([6, 4], |i, j| if i < 3 { value(1 + i, 2 + j) } else { FILL }));
}

/// A shard of the index-without-checksum layout with inner chunk 0's entry replaced.
fn forge(f: &Fixture, key: &str, offset: u64, size: u64) {
    let path = f.file(key);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 16 * 12;
    bytes[at..at + 8].copy_from_slice(&offset.to_le_bytes());
    bytes[at + 8..at + 16].copy_from_slice(&size.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
}

#[test]
fn plan_refuses_hostile_responses_naming_the_chunk() {
    let f = Fixture::new("hostile", &sharded(&format!("[{BYTES}]"), "end"));
    let batch = Batch::new().chunk("arr/c/0/0", [0, 0], [4, 4], [0, 0]);
    let mut out = vec![SENTINEL; 16];
    let mut present = [0u8];

    // An index response of the wrong length.
    let plan = batch.plan(&f, 0, 0);
    expect_err(plan.supply(&[Some(vec![0; 16 * 12 + 1])]), ZARRS_ERROR_CODEC, &["arr/c/0/0", "expected 192"]);
    expect_err(plan.supply(&[None]), ZARRS_ERROR_INVALID_ARGUMENT, &["failed"]);

    // Wrong number of responses, finishing early, NULL arguments.
    let plan = batch.plan(&f, 0, 0);
    expect_err(plan.supply(&[None, None]), ZARRS_ERROR_INVALID_ARGUMENT, &["2 responses for 1 requests"]);
    expect_err(plan.finish(&mut out, [4, 4], &mut present), ZARRS_ERROR_INVALID_ARGUMENT, &["unanswered"]);
    expect_err(zarrs_read_plan_supply(null_mut(), 0, null(), null()), ZARRS_ERROR_NULL_POINTER, &["plan"]);
    expect_err(zarrs_read_plan_requests(plan.0, null_mut(), null_mut()), ZARRS_ERROR_NULL_POINTER, &["requests_out"]);
    check(zarrs_read_plan_free(null_mut()));

    // An entry whose offset + size overflows.
    forge(&f, "arr/c/0/0", u64::MAX - 4, 10);
    let plan = batch.plan(&f, 0, 0);
    expect_err(plan.supply(&[answer(&f.dir, "arr/c/0/0", &plan.requests()[0])]), ZARRS_ERROR_CODEC, &["arr/c/0/0", "corrupt"]);

    // An entry larger than any inner chunk can encode to: never asked for.
    forge(&f, "arr/c/0/0", 0, 1 << 40);
    let plan = batch.plan(&f, 0, 0);
    expect_err(plan.supply(&[answer(&f.dir, "arr/c/0/0", &plan.requests()[0])]), ZARRS_ERROR_CODEC, &["arr/c/0/0", "more than"]);

    // An entry past the shard's end: the range comes back short.
    let len = std::fs::metadata(f.file("arr/c/0/0")).unwrap().len();
    forge(&f, "arr/c/0/0", len - 5, 50);
    let plan = batch.plan(&f, 0, 0);
    check(plan.supply(&[answer(&f.dir, "arr/c/0/0", &plan.requests()[0])]));
    let range = plan.requests();
    assert_eq!((range[0].offset, range[0].length), (len - 5, 50));
    expect_err(plan.supply(&[answer(&f.dir, "arr/c/0/0", &range[0])]), ZARRS_ERROR_CODEC, &["arr/c/0/0", "past the shard's end"]);

    // A shard deleted between its index and its inner chunks reads as missing.
    let f = Fixture::new("gone", &sharded(&format!("[{BYTES}]"), "end"));
    let plan = batch.plan(&f, 0, 0);
    check(plan.supply(&[answer(&f.dir, "arr/c/0/0", &plan.requests()[0])]));
    let n = plan.requests().len();
    check(plan.supply(&vec![None; n]));
    check(plan.finish(&mut out, [4, 4], &mut present));
    assert_eq!((present[0], out[0]), (0, FILL));
}

#[test]
fn plan_create_bad_arguments() {
    let f = Fixture::new("args", &sharded(&format!("[{BYTES}]"), "end"));
    let batch = Batch::new().chunk("../escape", [0, 0], [4, 4], [0, 0]);
    let mut plan = null_mut();
    let code = zarrs_array_read_plan_create(
        f.array, null(), 1, batch.keys.as_ptr().cast(), batch.keys.len(), batch.offsets.as_ptr(),
        batch.geometry.as_ptr(), batch.geometry.len(), 0, 0, &mut plan,
    );
    expect_err(code, ZARRS_ERROR_INVALID_ARGUMENT, &[".."]);
    assert!(plan.is_null(), "out-parameters are written only on success");
    let code = zarrs_array_read_plan_create(
        f.array, null(), 1, null(), 0, null(), batch.geometry.as_ptr(), batch.geometry.len() - 1, 0, 0, &mut plan,
    );
    expect_err(code, ZARRS_ERROR_INVALID_ARGUMENT, &["geometry"]);
    let code = zarrs_array_read_plan_create(f.array, null(), 0, null(), 0, null(), null(), 0, 0, 0, null_mut());
    expect_err(code, ZARRS_ERROR_NULL_POINTER, &["plan_out"]);
    // Without keys, chunks are named by position.
    let good = Batch::new().chunk("x", [0, 0], [4, 4], [0, 0]);
    check(zarrs_array_read_plan_create(
        f.array, null(), 1, null(), 0, null(), good.geometry.as_ptr(), good.geometry.len(), 0, 0, &mut plan,
    ));
    let plan = Plan(plan);
    expect_err(plan.supply(&[Some(vec![1, 2, 3])]), ZARRS_ERROR_CODEC, &["chunk-0"]);
}

#[test]
fn sharded_flag_and_which_chunks_need_old_bytes() {
    let plain = Fixture::new("plain", &format!("[{BYTES}]"));
    let shards = Fixture::new("shards", &sharded(&format!("[{BYTES}]"), "end"));
    let mut flag = 9u8;
    check(zarrs_array_is_sharded(plain.array, &mut flag));
    assert_eq!(flag, 0);
    check(zarrs_array_is_sharded(shards.array, &mut flag));
    assert_eq!(flag, 1);
    expect_err(zarrs_array_is_sharded(shards.array, null_mut()), ZARRS_ERROR_NULL_POINTER, &[]);

    // Whole; part, not complete; part, complete (an edge chunk covered inside the array).
    let batch = Batch::new().chunk("", [0, 0], [32, 24], [0, 0]).chunk("", [0, 0], [4, 4], [0, 0]).chunk("", [0, 0], [16, 24], [0, 0]);
    let complete = [1u8, 0, 1];
    for (f, want) in [(&plain, [0u8, 1, 0]), (&shards, [0, 1, 1])] {
        let mut needs = [9u8; 3];
        check(zarrs_array_needs_old(f.array, 3, batch.geometry.as_ptr(), batch.geometry.len(), complete.as_ptr(), 3, needs.as_mut_ptr(), 3));
        assert_eq!(needs, want);
    }
    let mut needs = [9u8; 2];
    let code = zarrs_array_needs_old(plain.array, 3, batch.geometry.as_ptr(), batch.geometry.len(), complete.as_ptr(), 3, needs.as_mut_ptr(), 2);
    expect_err(code, ZARRS_ERROR_BUFFER_SIZE, &["needs_old_out"]);
    assert_eq!(needs, [9, 9], "nothing written on failure");
}

#[test]
fn fetch_and_store_encoded_chunks() {
    let f = Fixture::new("encoded", &format!("[{BYTES},{ZSTD}]"));
    check(zarrs_array_erase_chunk(f.array, null(), [1, 1].as_ptr(), 2));
    let keys = "arr/c/0/0arr/c/1/1";
    let offsets = [0u64, 9, 18];
    let mut handle = null_mut();
    check(zarrs_array_fetch_encoded(f.array, null(), 2, keys.as_ptr().cast(), keys.len(), offsets.as_ptr(), &mut handle));
    let get = |i: usize| {
        let (mut data, mut len) = (null(), 0usize);
        check(zarrs_encoded_chunks_get(handle, i, &mut data, &mut len));
        // SAFETY: valid until the handle is freed.
        (!data.is_null()).then(|| unsafe { std::slice::from_raw_parts(data, len) }.to_vec())
    };
    let (first, second) = (get(0), get(1));
    check(zarrs_encoded_chunks_free(handle));
    assert_eq!(first.as_deref(), Some(std::fs::read(f.file("arr/c/0/0")).unwrap().as_slice()));
    assert_eq!(second, None, "a missing chunk is a NULL entry");

    // Store chunk (0, 0)'s bytes at (1, 1), and erase (0, 0).
    let swapped = "arr/c/1/1arr/c/0/0";
    let pointers = [first.as_ref().unwrap().as_ptr(), null()];
    let lens = [first.as_ref().unwrap().len(), 0];
    check(zarrs_array_store_encoded(f.array, null(), 2, swapped.as_ptr().cast(), swapped.len(), offsets.as_ptr(), pointers.as_ptr(), lens.as_ptr()));
    assert!(!f.file("arr/c/0/0").exists());
    assert_eq!(f.retrieve([32, 24], [32, 24]), expected([32, 24], value));
    assert_eq!(f.retrieve([0, 0], [2, 2]), vec![FILL; 4]);

    // Twice the same key, keys leaving the store, NULL out-parameters.
    let twice = "arr/c/0/0arr/c/0/0";
    let code = zarrs_array_store_encoded(f.array, null(), 2, twice.as_ptr().cast(), twice.len(), offsets.as_ptr(), pointers.as_ptr(), lens.as_ptr());
    expect_err(code, ZARRS_ERROR_INVALID_ARGUMENT, &["more than once"]);
    let escape = "../x";
    let code = zarrs_array_fetch_encoded(f.array, null(), 1, escape.as_ptr().cast(), 4, [0u64, 4].as_ptr(), &mut handle);
    expect_err(code, ZARRS_ERROR_INVALID_ARGUMENT, &[".."]);
    let code = zarrs_array_fetch_encoded(f.array, null(), 1, keys.as_ptr().cast(), 9, [0u64, 9].as_ptr(), null_mut());
    expect_err(code, ZARRS_ERROR_NULL_POINTER, &["encoded_out"]);
}

//! The C ABI exercised exactly as a C program uses it: every call goes through the exported
//! `extern "C"` functions with raw pointers, explicit lengths and NULLs, and every result code
//! is checked against the contract in `include/zarrs_ffi.h`.
//!
//! Conventions used throughout: arrays are `uint16` with a fill value of [`FILL`] (not 0, so a
//! zeroed buffer can never pass for the fill value), output buffers start filled with
//! [`SENTINEL`] (so "not written" is visible), and stored values follow [`value`], which never
//! equals either.

use std::ffi::{c_char, CStr};
use std::path::{Path, PathBuf};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;

use zarrs_ffi::*;
use zarrs_ffi::ZarrsResult::{self, *};

const FILL: u16 = 7;
const SENTINEL: u16 = 0xBEEF;
/// Size in bytes of one `uint16` element.
const ES: usize = 2;

/// The value stored at array element (r, c) in most tests: unique per element for arrays of
/// up to 64 rows and 48 columns, and never [`FILL`] or [`SENTINEL`].
fn value(r: u64, c: u64) -> u16 {
    u16::try_from(100 + r * 1000 + c).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Helpers: what a C caller would write around the API.

/// This thread's last error message.
fn last_error() -> String {
    // SAFETY: the library returns a valid NUL-terminated string, valid until the next call.
    unsafe { CStr::from_ptr(zarrs_last_error()) }.to_str().unwrap().to_owned()
}

#[track_caller]
fn check(code: ZarrsResult) {
    assert_eq!(code, ZARRS_SUCCESS, "call failed: {}", last_error());
    assert_eq!(last_error(), "", "a successful call must clear the last error");
}

/// Assert a call failed with `expected` and left a message containing `mentions`
/// (case-insensitive).
#[track_caller]
fn expect_err(code: ZarrsResult, expected: ZarrsResult, mentions: &str) {
    let message = last_error();
    assert_eq!(code, expected, "unexpected result; last error: {message:?}");
    assert!(
        message.to_lowercase().contains(&mentions.to_lowercase()),
        "last error {message:?} does not mention {mentions:?}"
    );
}

/// A directory under the system temp dir, unique per test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("zarrs-ffi-abi-{}-{unique}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn path_str(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

/// An owned storage handle, freed on drop.
struct Storage(*mut ZarrsStorage);

impl Storage {
    fn open(dir: &Path, read_only: bool) -> Self {
        let path = path_str(dir);
        let mut storage = null_mut();
        check(zarrs_storage_open_filesystem(path.as_ptr().cast(), path.len(), 0, u8::from(read_only), &mut storage));
        assert!(!storage.is_null());
        Self(storage)
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        zarrs_storage_free(self.0);
    }
}

/// An owned array handle, freed on drop, with helpers for the common calls.
struct Array(*mut ZarrsArray);

impl Drop for Array {
    fn drop(&mut self) {
        zarrs_array_free(self.0);
    }
}

fn options_ptr(options: Option<&ZarrsOptions>) -> *const ZarrsOptions {
    options.map_or(null(), |o| o as *const ZarrsOptions)
}

fn default_options() -> ZarrsOptions {
    let mut options = ZarrsOptions {
        num_threads: 0,
        chunk_concurrent_minimum: 0,
        chunk_concurrent_maximum: 0,
        validate_checksums: 0,
        store_empty_chunks: 0,
        max_variable_chunk_bytes: 0,
        fsync: 0,
    };
    check(zarrs_options_default(&mut options));
    options
}

impl Array {
    fn create(storage: &Storage, path: &str, metadata: &str) -> Self {
        let mut array = null_mut();
        check(zarrs_array_create(
            storage.0,
            path.as_ptr().cast(),
            path.len(),
            metadata.as_ptr().cast(),
            metadata.len(),
            &mut array,
        ));
        assert!(!array.is_null());
        Self(array)
    }

    fn open(storage: &Storage, path: &str) -> Self {
        let mut array = null_mut();
        check(zarrs_array_open(storage.0, path.as_ptr().cast(), path.len(), &mut array));
        assert!(!array.is_null());
        Self(array)
    }

    fn ptr(&self) -> *const ZarrsArray {
        self.0
    }

    fn try_retrieve(&self, options: Option<&ZarrsOptions>, start: &[u64], shape: &[u64]) -> Result<Vec<u16>, ZarrsResult> {
        let mut out = vec![SENTINEL; shape.iter().product::<u64>() as usize];
        let code = zarrs_array_retrieve_subset(
            self.ptr(),
            options_ptr(options),
            start.as_ptr(),
            shape.as_ptr(),
            start.len(),
            out.as_mut_ptr().cast(),
            out.len() * ES,
        );
        if code == ZARRS_SUCCESS {
            Ok(out)
        } else {
            Err(code)
        }
    }

    #[track_caller]
    fn retrieve(&self, start: &[u64], shape: &[u64]) -> Vec<u16> {
        self.try_retrieve(None, start, shape)
            .unwrap_or_else(|code| panic!("retrieve_subset failed with {code:?}: {}", last_error()))
    }

    fn store_with(&self, options: Option<&ZarrsOptions>, start: &[u64], shape: &[u64], data: &[u16]) -> ZarrsResult {
        zarrs_array_store_subset(
            self.ptr(),
            options_ptr(options),
            start.as_ptr(),
            shape.as_ptr(),
            start.len(),
            data.as_ptr().cast(),
            data.len() * ES,
        )
    }

    #[track_caller]
    fn store(&self, start: &[u64], shape: &[u64], data: &[u16]) {
        check(self.store_with(None, start, shape, data));
    }

    fn try_retrieve_chunk(&self, options: Option<&ZarrsOptions>, indices: &[u64], len: usize) -> Result<(Vec<u16>, bool), ZarrsResult> {
        let mut out = vec![SENTINEL; len];
        // Starts as the opposite of what a missing chunk reports, so a write is visible.
        let mut present = 1u8;
        let code = zarrs_array_retrieve_chunk(
            self.ptr(),
            options_ptr(options),
            indices.as_ptr(),
            indices.len(),
            out.as_mut_ptr().cast(),
            out.len() * ES,
            &mut present,
        );
        if code == ZARRS_SUCCESS {
            assert!(present <= 1, "present_out is 0 or 1");
            Ok((out, present == 1))
        } else {
            Err(code)
        }
    }

    #[track_caller]
    fn retrieve_chunk(&self, indices: &[u64], len: usize) -> (Vec<u16>, bool) {
        self.try_retrieve_chunk(None, indices, len)
            .unwrap_or_else(|code| panic!("retrieve_chunk failed with {code:?}: {}", last_error()))
    }

    fn store_chunk_with(&self, options: Option<&ZarrsOptions>, indices: &[u64], data: &[u16]) -> ZarrsResult {
        zarrs_array_store_chunk(
            self.ptr(),
            options_ptr(options),
            indices.as_ptr(),
            indices.len(),
            data.as_ptr().cast(),
            data.len() * ES,
        )
    }

    #[track_caller]
    fn store_chunk(&self, indices: &[u64], data: &[u16]) {
        check(self.store_chunk_with(None, indices, data));
    }

    /// A string query following the size-probe convention: probe with `buf_len == 0`, then
    /// fetch with a buffer of exactly the reported size.
    #[track_caller]
    fn query_string(&self, call: impl Fn(*mut c_char, usize, *mut usize) -> ZarrsResult) -> String {
        let mut len = usize::MAX;
        let code = call(null_mut(), 0, &mut len);
        assert_eq!(code, ZARRS_ERROR_BUFFER_SIZE, "the size probe must report BUFFER_SIZE: {}", last_error());
        assert!(len > 0 && len < usize::MAX);
        let mut buf = vec![0u8; len];
        let mut len2 = 0usize;
        check(call(buf.as_mut_ptr().cast(), buf.len(), &mut len2));
        assert_eq!(len2, len);
        String::from_utf8(buf).unwrap()
    }

    fn chunk_key(&self, indices: &[u64]) -> String {
        self.query_string(|buf, buf_len, len_out| {
            zarrs_array_chunk_key(self.ptr(), indices.as_ptr(), indices.len(), buf, buf_len, len_out)
        })
    }

    fn metadata_json(&self) -> String {
        self.query_string(|buf, buf_len, len_out| zarrs_array_metadata(self.ptr(), buf, buf_len, len_out))
    }
}

/// A 2D `uint16` region of shape `shape` with element (i, j) = `f(i, j)`, C order.
fn grid(shape: [u64; 2], f: impl Fn(u64, u64) -> u16) -> Vec<u16> {
    (0..shape[0]).flat_map(|i| (0..shape[1]).map(move |j| (i, j))).map(|(i, j)| f(i, j)).collect()
}

const BYTES: &str = r#"{"name":"bytes","configuration":{"endian":"little"}}"#;
const ZSTD: &str = r#"{"name":"zstd","configuration":{"level":3,"checksum":false}}"#;
const CRC32C: &str = r#"{"name":"crc32c"}"#;

fn codecs_zstd() -> String {
    format!("[{BYTES},{ZSTD}]")
}

fn codecs_crc32c() -> String {
    format!("[{BYTES},{CRC32C}]")
}

/// Shards of inner chunks `inner` (bytes + zstd) with a crc32c-protected index.
fn codecs_sharded(inner: [u64; 2]) -> String {
    format!(
        r#"[{{"name":"sharding_indexed","configuration":{{"chunk_shape":{inner:?},"codecs":[{BYTES},{ZSTD}],"index_codecs":[{BYTES},{CRC32C}],"index_location":"end"}}}}]"#
    )
}

/// Zarr v3 metadata for a `uint16` array with a regular grid and fill value [`FILL`].
fn metadata(shape: [u64; 2], chunk: [u64; 2], codecs: &str) -> String {
    format!(
        r#"{{"zarr_format":3,"node_type":"array","shape":{shape:?},"data_type":"uint16","chunk_grid":{{"name":"regular","configuration":{{"chunk_shape":{chunk:?}}}}},"chunk_key_encoding":{{"name":"default","configuration":{{"separator":"/"}}}},"fill_value":{FILL},"codecs":{codecs},"attributes":{{"note":"abi test"}}}}"#
    )
}

/// A fresh directory with an array created at `/arr` in it. Fields drop in order: the array,
/// the storage, then the directory.
struct Fixture {
    array: Array,
    storage: Storage,
    dir: TempDir,
}

impl Fixture {
    fn new(name: &str, metadata: &str) -> Self {
        let dir = TempDir::new(name);
        let storage = Storage::open(&dir.0, false);
        let array = Array::create(&storage, "/arr", metadata);
        Self { array, storage, dir }
    }

    /// The standard test array: shape [64, 48], chunks [16, 16], bytes + zstd.
    fn zstd(name: &str) -> Self {
        Self::new(name, &metadata([64, 48], [16, 16], &codecs_zstd()))
    }

    fn file(&self, key: &str) -> PathBuf {
        self.dir.0.join("arr").join(key)
    }

    /// Every chunk key stored on disk, sorted.
    fn stored_chunks(&self) -> Vec<String> {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else {
                    out.push(path.strip_prefix(root).unwrap().to_str().unwrap().to_owned());
                }
            }
        }
        let mut keys = Vec::new();
        walk(&self.dir.0.join("arr/c"), &self.dir.0.join("arr"), &mut keys);
        keys.sort();
        keys
    }

    fn write_all(&self) {
        self.array.store(&[0, 0], &[64, 48], &grid([64, 48], value));
    }
}

/// A batch description for the batch calls: keys back to back with offsets, and the geometry
/// (chunk shape, subset start, subset shape, buffer start) of each chunk.
#[derive(Default, Clone)]
struct Batch {
    keys: String,
    offsets: Vec<u64>,
    geometry: Vec<u64>,
}

impl Batch {
    fn new() -> Self {
        Self {
            offsets: vec![0],
            ..Self::default()
        }
    }

    fn chunk(mut self, key: &str, chunk_shape: [u64; 2], start: [u64; 2], shape: [u64; 2], buffer_start: [u64; 2]) -> Self {
        self.keys.push_str(key);
        self.offsets.push(self.keys.len() as u64);
        for part in [chunk_shape, start, shape, buffer_start] {
            self.geometry.extend_from_slice(&part);
        }
        self
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn read(&self, array: &Array, out: &mut [u16], out_shape: [u64; 2], present: &mut [u8]) -> ZarrsResult {
        zarrs_array_read_chunks(
            array.ptr(),
            null(),
            self.len(),
            self.keys.as_ptr().cast(),
            self.keys.len(),
            self.offsets.as_ptr(),
            self.geometry.as_ptr(),
            self.geometry.len(),
            out.as_mut_ptr().cast(),
            out.len() * ES,
            out_shape.as_ptr(),
            present.as_mut_ptr(),
            present.len(),
        )
    }

    /// Write from `value` of shape `value_shape`; an empty shape broadcasts one element.
    fn write(&self, array: &Array, options: Option<&ZarrsOptions>, value: &[u16], value_shape: &[u64]) -> ZarrsResult {
        zarrs_array_write_chunks(
            array.ptr(),
            options_ptr(options),
            self.len(),
            self.keys.as_ptr().cast(),
            self.keys.len(),
            self.offsets.as_ptr(),
            self.geometry.as_ptr(),
            self.geometry.len(),
            value.as_ptr().cast(),
            value.len() * ES,
            if value_shape.is_empty() { null() } else { value_shape.as_ptr() },
            value_shape.len(),
        )
    }
}

/// Encoded inputs for decode/encode: a pointer and length per chunk (NULL: missing). The
/// bytes are owned here so the pointers stay valid.
struct Encoded {
    chunks: Vec<Option<Vec<u8>>>,
    pointers: Vec<*const u8>,
    lens: Vec<usize>,
}

impl Encoded {
    fn new(chunks: &[Option<&[u8]>]) -> Self {
        let chunks: Vec<Option<Vec<u8>>> = chunks.iter().map(|c| c.map(<[u8]>::to_vec)).collect();
        let pointers = chunks.iter().map(|c| c.as_ref().map_or(null(), |c| c.as_ptr())).collect();
        let lens = chunks.iter().map(|c| c.as_ref().map_or(0, Vec::len)).collect();
        Self { chunks, pointers, lens }
    }

    fn len(&self) -> usize {
        self.chunks.len()
    }
}

fn decode(array: &Array, options: Option<&ZarrsOptions>, encoded: &Encoded, batch: &Batch, out: &mut [u16], out_shape: [u64; 2]) -> ZarrsResult {
    zarrs_array_decode_chunks(
        array.ptr(),
        options_ptr(options),
        encoded.len(),
        encoded.pointers.as_ptr(),
        encoded.lens.as_ptr(),
        batch.geometry.as_ptr(),
        batch.geometry.len(),
        out.as_mut_ptr().cast(),
        out.len() * ES,
        out_shape.as_ptr(),
    )
}

/// Encode `batch` (geometry only; keys are ignored) from `value`, returning each chunk's
/// bytes (None: entirely the fill value).
#[track_caller]
fn encode(
    array: &Array,
    options: Option<&ZarrsOptions>,
    batch: &Batch,
    value: &[u16],
    value_shape: &[u64],
    existing: &Encoded,
) -> Vec<Option<Vec<u8>>> {
    let mut handle = null_mut();
    check(zarrs_array_encode_chunks(
        array.ptr(),
        options_ptr(options),
        batch.len(),
        batch.geometry.as_ptr(),
        batch.geometry.len(),
        value.as_ptr().cast(),
        value.len() * ES,
        if value_shape.is_empty() { null() } else { value_shape.as_ptr() },
        value_shape.len(),
        existing.pointers.as_ptr(),
        existing.lens.as_ptr(),
        &mut handle,
    ));
    assert!(!handle.is_null());
    let mut count = 0usize;
    check(zarrs_encoded_chunks_count(handle, &mut count));
    assert_eq!(count, batch.len());
    let chunks = (0..count)
        .map(|i| {
            let (mut data, mut len) = (null(), usize::MAX);
            check(zarrs_encoded_chunks_get(handle, i, &mut data, &mut len));
            if data.is_null() {
                assert_eq!(len, 0, "a NULL entry has length 0");
                None
            } else {
                // SAFETY: the library hands out `len` bytes valid until the handle is freed.
                Some(unsafe { std::slice::from_raw_parts(data, len) }.to_vec())
            }
        })
        .collect();
    check(zarrs_encoded_chunks_free(handle));
    chunks
}

/// No existing chunk bytes: every chunk is written whole.
fn no_existing(n: usize) -> Encoded {
    Encoded::new(&vec![None; n])
}

const WHOLE: [u64; 2] = [16, 16];

// ---------------------------------------------------------------------------------------------
// Version, options, storage.

#[test]
fn version_is_the_crate_version() {
    // SAFETY: a static NUL-terminated string.
    let version = unsafe { CStr::from_ptr(zarrs_ffi_version()) };
    assert_eq!(version.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    assert_eq!(zarrs_ffi_version(), zarrs_ffi_version(), "the string is static");
}

#[test]
fn keep_warm_is_set_read_back_bounded_and_checked() {
    let mut window = u64::MAX;
    check(zarrs_set_keep_warm(5_000));
    check(zarrs_keep_warm(&mut window));
    assert_eq!(window, if cfg!(target_os = "linux") { 5_000 } else { 0 });
    check(zarrs_set_keep_warm(u64::MAX));
    check(zarrs_keep_warm(&mut window));
    assert_eq!(window, if cfg!(target_os = "linux") { 1_000_000 } else { 0 }, "at most one second");
    check(zarrs_set_keep_warm(0));
    check(zarrs_keep_warm(&mut window));
    assert_eq!(window, 0);
    expect_err(zarrs_keep_warm(null_mut()), ZARRS_ERROR_NULL_POINTER, "NULL");
}

#[test]
fn options_default_values() {
    let mut options = ZarrsOptions {
        num_threads: 99,
        chunk_concurrent_minimum: 99,
        chunk_concurrent_maximum: 99,
        validate_checksums: 0,
        store_empty_chunks: 1,
        max_variable_chunk_bytes: 7,
        fsync: 1,
    };
    check(zarrs_options_default(&mut options));
    assert_eq!(
        options,
        ZarrsOptions {
            num_threads: 0,
            chunk_concurrent_minimum: 0,
            chunk_concurrent_maximum: 0,
            validate_checksums: 1,
            store_empty_chunks: 0,
            max_variable_chunk_bytes: 1 << 30,
            fsync: 0,
        }
    );
    expect_err(zarrs_options_default(null_mut()), ZARRS_ERROR_NULL_POINTER, "NULL");
}

#[test]
fn storage_open_arguments() {
    let dir = TempDir::new("storage");
    // The directory need not exist yet.
    let missing = dir.0.join("not/yet/there");
    let storage = Storage::open(&missing, false);
    drop(storage);

    let path = path_str(&dir.0);
    let mut storage = null_mut();
    expect_err(
        zarrs_storage_open_filesystem(path.as_ptr().cast(), path.len(), 0, 0, null_mut()),
        ZARRS_ERROR_NULL_POINTER,
        "storage_out",
    );
    expect_err(zarrs_storage_open_filesystem(null(), 5, 0, 0, &mut storage), ZARRS_ERROR_NULL_POINTER, "path");
    expect_err(zarrs_storage_open_filesystem(null(), 0, 0, 0, &mut storage), ZARRS_ERROR_INVALID_ARGUMENT, "empty");
    let bad = b"/tmp/zarrs-\xff\xfe";
    expect_err(
        zarrs_storage_open_filesystem(bad.as_ptr().cast(), bad.len(), 0, 0, &mut storage),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "UTF-8",
    );
    assert!(storage.is_null(), "out-parameters are written only on success");

    // The path is taken by length, not NUL-terminated: trailing bytes beyond it are ignored.
    let padded = format!("{path}GARBAGE");
    check(zarrs_storage_open_filesystem(padded.as_ptr().cast(), path.len(), 0, 0, &mut storage));
    let storage = Storage(storage);
    let array = Array::create(&storage, "/a", &metadata([4, 4], [2, 2], &codecs_zstd()));
    drop(array);
    assert!(dir.0.join("a/zarr.json").is_file());
}

#[test]
fn free_null_is_a_no_op() {
    check(zarrs_storage_free(null_mut()));
    check(zarrs_array_free(null_mut()));
    check(zarrs_encoded_chunks_free(null_mut()));
}

// ---------------------------------------------------------------------------------------------
// Creating, opening and describing arrays.

#[test]
fn create_and_query() {
    let f = Fixture::zstd("query");
    let a = f.array.ptr();

    let mut ndim = 0usize;
    check(zarrs_array_dimensionality(a, &mut ndim));
    assert_eq!(ndim, 2);

    let mut shape = [0u64; 2];
    check(zarrs_array_shape(a, shape.as_mut_ptr(), 2));
    assert_eq!(shape, [64, 48]);

    let mut grid_shape = [0u64; 2];
    check(zarrs_array_chunk_grid_shape(a, grid_shape.as_mut_ptr(), 2));
    assert_eq!(grid_shape, [4, 3]);

    let mut chunk_shape = [0u64; 2];
    check(zarrs_array_chunk_shape(a, [3, 2].as_ptr(), 2, chunk_shape.as_mut_ptr()));
    assert_eq!(chunk_shape, [16, 16]);

    let mut size = 0usize;
    check(zarrs_array_element_size(a, &mut size));
    assert_eq!(size, 2);

    let data_type = f
        .array
        .query_string(|buf, buf_len, len_out| zarrs_array_data_type(a, buf, buf_len, len_out));
    assert_eq!(data_type, "uint16");

    assert_eq!(f.array.chunk_key(&[1, 2]), "arr/c/1/2");
    assert_eq!(f.array.chunk_key(&[0, 0]), "arr/c/0/0");

    // Metadata: the size probe reports the exact length; the JSON is the stored document.
    let json = f.array.metadata_json();
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let on_disk: serde_json::Value = serde_json::from_slice(&std::fs::read(f.file("zarr.json")).unwrap()).unwrap();
    // The stored document is the one given: no `_zarrs` attribute added by zarrs.
    assert!(on_disk["attributes"].get("_zarrs").is_none(), "{on_disk}");
    assert_eq!(parsed, on_disk);
    assert_eq!(parsed["shape"], serde_json::json!([64, 48]));
    assert_eq!(parsed["data_type"], "uint16");
    assert_eq!(parsed["fill_value"], FILL);
    assert_eq!(parsed["attributes"]["note"], "abi test");

    // A buffer one byte short fails, reports the needed length and is left untouched.
    let mut small = vec![b'#'; json.len() - 1];
    let mut len = 0usize;
    expect_err(
        zarrs_array_metadata(a, small.as_mut_ptr().cast(), small.len(), &mut len),
        ZARRS_ERROR_BUFFER_SIZE,
        "required",
    );
    assert_eq!(len, json.len());
    assert!(small.iter().all(|&b| b == b'#'));

    // A larger buffer succeeds; only the first `len` bytes are written, with no terminator.
    let mut big = vec![b'#'; json.len() + 8];
    check(zarrs_array_metadata(a, big.as_mut_ptr().cast(), big.len(), &mut len));
    assert_eq!(len, json.len());
    assert_eq!(&big[..len], json.as_bytes());
    assert!(big[len..].iter().all(|&b| b == b'#'));

    // Reopening from the store gives the same array.
    let reopened = Array::open(&f.storage, "/arr");
    let reopened: serde_json::Value = serde_json::from_str(&reopened.metadata_json()).unwrap();
    assert_eq!(reopened, parsed);
}

#[test]
fn query_bad_arguments() {
    let f = Fixture::zstd("query-bad");
    let a = f.array.ptr();
    let mut ndim = 0usize;
    let mut size = 0usize;
    let mut dims = [SENTINEL as u64; 3];

    expect_err(zarrs_array_dimensionality(null(), &mut ndim), ZARRS_ERROR_NULL_POINTER, "array");
    expect_err(zarrs_array_dimensionality(a, null_mut()), ZARRS_ERROR_NULL_POINTER, "NULL");
    expect_err(zarrs_array_element_size(null(), &mut size), ZARRS_ERROR_NULL_POINTER, "array");
    expect_err(zarrs_array_element_size(a, null_mut()), ZARRS_ERROR_NULL_POINTER, "NULL");
    expect_err(zarrs_array_shape(null(), dims.as_mut_ptr(), 2), ZARRS_ERROR_NULL_POINTER, "array");
    expect_err(zarrs_array_shape(a, null_mut(), 2), ZARRS_ERROR_NULL_POINTER, "shape_out");
    // A wrong ndim is a wrongly sized output buffer, and nothing is written.
    expect_err(zarrs_array_shape(a, dims.as_mut_ptr(), 3), ZARRS_ERROR_BUFFER_SIZE, "shape_out");
    expect_err(zarrs_array_shape(a, dims.as_mut_ptr(), 1), ZARRS_ERROR_BUFFER_SIZE, "shape_out");
    expect_err(zarrs_array_chunk_grid_shape(a, dims.as_mut_ptr(), 3), ZARRS_ERROR_BUFFER_SIZE, "grid_shape_out");
    assert_eq!(dims, [SENTINEL as u64; 3]);

    expect_err(zarrs_array_chunk_shape(a, [0, 0, 0].as_ptr(), 3, dims.as_mut_ptr()), ZARRS_ERROR_INVALID_ARGUMENT, "dimensions");
    expect_err(zarrs_array_chunk_shape(a, null(), 2, dims.as_mut_ptr()), ZARRS_ERROR_NULL_POINTER, "chunk_indices");
    expect_err(zarrs_array_chunk_shape(a, [0, 0].as_ptr(), 2, null_mut()), ZARRS_ERROR_NULL_POINTER, "chunk_shape_out");
    // The grid is 4 x 3 chunks: indices past it name no chunk.
    expect_err(zarrs_array_chunk_shape(a, [4, 0].as_ptr(), 2, dims.as_mut_ptr()), ZARRS_ERROR_INVALID_ARGUMENT, "grid");
    expect_err(zarrs_array_chunk_shape(a, [0, 3].as_ptr(), 2, dims.as_mut_ptr()), ZARRS_ERROR_INVALID_ARGUMENT, "grid");
    assert_eq!(dims, [SENTINEL as u64; 3]);

    let mut buf = [0u8; 64];
    let mut len = usize::MAX;
    expect_err(
        zarrs_array_chunk_key(a, [4, 0].as_ptr(), 2, buf.as_mut_ptr().cast(), buf.len(), &mut len),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "grid",
    );
    expect_err(
        zarrs_array_chunk_key(a, [0, 0].as_ptr(), 1, buf.as_mut_ptr().cast(), buf.len(), &mut len),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "dimensions",
    );
    assert_eq!(len, usize::MAX, "out-parameters are written only on success");
    // A NULL buffer with a nonzero length is an error, not a write through NULL.
    expect_err(zarrs_array_metadata(a, null_mut(), 4096, &mut len), ZARRS_ERROR_NULL_POINTER, "buf");
    expect_err(zarrs_array_metadata(a, buf.as_mut_ptr().cast(), buf.len(), null_mut()), ZARRS_ERROR_NULL_POINTER, "NULL");
    expect_err(zarrs_array_metadata(null(), buf.as_mut_ptr().cast(), buf.len(), &mut len), ZARRS_ERROR_NULL_POINTER, "array");
    expect_err(zarrs_array_data_type(null(), buf.as_mut_ptr().cast(), buf.len(), &mut len), ZARRS_ERROR_NULL_POINTER, "array");
}

#[test]
fn create_and_open_bad_arguments() {
    let dir = TempDir::new("create-bad");
    let storage = Storage::open(&dir.0, false);
    let s = storage.0;
    let good = metadata([8, 8], [4, 4], &codecs_zstd());
    let mut array = null_mut();

    let try_create = |path: &[u8], json: &str, out: *mut *mut ZarrsArray| {
        zarrs_array_create(s, path.as_ptr().cast(), path.len(), json.as_ptr().cast(), json.len(), out)
    };

    // NULL out-parameter: reported before anything is written to the store.
    expect_err(try_create(b"/a", &good, null_mut()), ZARRS_ERROR_NULL_POINTER, "array_out");
    assert!(!dir.0.join("a").exists());
    expect_err(
        zarrs_array_create(null(), b"/a".as_ptr().cast(), 2, good.as_ptr().cast(), good.len(), &mut array),
        ZARRS_ERROR_NULL_POINTER,
        "storage",
    );
    expect_err(
        zarrs_array_create(s, b"/a".as_ptr().cast(), 2, null(), good.len(), &mut array),
        ZARRS_ERROR_NULL_POINTER,
        "metadata",
    );
    expect_err(try_create(b"/\xc3\x28", &good, &mut array), ZARRS_ERROR_INVALID_ARGUMENT, "UTF-8");
    expect_err(try_create(b"/a", "{ not json", &mut array), ZARRS_ERROR_INVALID_METADATA, "invalid array metadata");
    expect_err(
        try_create(b"/a", r#"{"shape":[8,8]}"#, &mut array),
        ZARRS_ERROR_INVALID_METADATA,
        "zarr_format",
    );
    // Valid JSON, zarr_format 3, but required fields missing.
    expect_err(
        try_create(b"/a", r#"{"zarr_format":3,"node_type":"array","shape":[8,8]}"#, &mut array),
        ZARRS_ERROR_INVALID_METADATA,
        "invalid array metadata",
    );
    let bad_utf8_json = b"{\"zarr_format\":3,\xff}";
    expect_err(
        zarrs_array_create(s, b"/a".as_ptr().cast(), 2, bad_utf8_json.as_ptr().cast(), bad_utf8_json.len(), &mut array),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "UTF-8",
    );
    // Unknown codec and data type names: unsupported, not invalid.
    let unknown_codec = metadata([8, 8], [4, 4], &format!(r#"[{BYTES},{{"name":"no_such_codec"}}]"#));
    expect_err(try_create(b"/a", &unknown_codec, &mut array), ZARRS_ERROR_UNSUPPORTED, "no_such_codec");
    let unknown_type = good.replace(r#""data_type":"uint16""#, r#""data_type":"uint13""#);
    expect_err(try_create(b"/a", &unknown_type, &mut array), ZARRS_ERROR_UNSUPPORTED, "uint13");
    assert!(array.is_null(), "out-parameters are written only on success");
    assert!(!dir.0.join("a").exists(), "nothing is stored by a failed create");

    // Opening an array that does not exist.
    let mut array = null_mut();
    expect_err(
        zarrs_array_open(s, b"/nothing".as_ptr().cast(), 8, &mut array),
        ZARRS_ERROR_INVALID_METADATA,
        "missing",
    );
    expect_err(zarrs_array_open(s, b"/nothing".as_ptr().cast(), 8, null_mut()), ZARRS_ERROR_NULL_POINTER, "array_out");
    expect_err(zarrs_array_open(null(), b"/a".as_ptr().cast(), 2, &mut array), ZARRS_ERROR_NULL_POINTER, "storage");
    // A zarr.json that is not valid metadata.
    std::fs::create_dir_all(dir.0.join("broken")).unwrap();
    std::fs::write(dir.0.join("broken/zarr.json"), b"{ truncated").unwrap();
    expect_err(
        zarrs_array_open(s, b"/broken".as_ptr().cast(), 7, &mut array),
        ZARRS_ERROR_INVALID_METADATA,
        "broken",
    );
    assert!(array.is_null());
}

#[test]
fn open_with_metadata_does_not_touch_the_store() {
    let dir = TempDir::new("open-with-metadata");
    let storage = Storage::open(&dir.0, false);
    let json = metadata([8, 8], [4, 4], &codecs_zstd());
    let mut handle = null_mut();
    check(zarrs_array_open_with_metadata(
        storage.0,
        b"/m".as_ptr().cast(),
        2,
        json.as_ptr().cast(),
        json.len(),
        &mut handle,
    ));
    let array = Array(handle);
    assert!(!dir.0.join("m").exists(), "open_with_metadata writes nothing");
    let data = grid([8, 8], value);
    array.store(&[0, 0], &[8, 8], &data);
    assert_eq!(array.retrieve(&[0, 0], &[8, 8]), data);
    assert!(dir.0.join("m/c/1/1").is_file());
    assert!(!dir.0.join("m/zarr.json").exists());
}

#[test]
fn zarr_v2_metadata() {
    let dir = TempDir::new("v2");
    let storage = Storage::open(&dir.0, false);
    let json = r#"{"zarr_format":2,"shape":[10],"chunks":[4],"dtype":"<u2","compressor":null,"fill_value":7,"order":"C","filters":null,"attributes":{}}"#;
    let array = Array::create(&storage, "/v2", json);
    assert!(dir.0.join("v2/.zarray").is_file());
    let data: Vec<u16> = (0..10).map(|i| 300 + i).collect();
    array.store(&[0], &[10], &data);
    assert_eq!(array.retrieve(&[0], &[10]), data);
    assert_eq!(array.chunk_key(&[2]), "v2/2");
    // The last chunk is 4 elements although only 2 are inside the array.
    let (chunk, present) = array.retrieve_chunk(&[2], 4);
    assert!(present);
    assert_eq!(chunk, [308, 309, FILL, FILL]);
    // Uncompressed v2 chunks are the raw little-endian elements.
    assert_eq!(std::fs::read(dir.0.join("v2/0")).unwrap(), [44, 1, 45, 1, 46, 1, 47, 1]);
}

// ---------------------------------------------------------------------------------------------
// Regions and single chunks.

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

    expect_err(f.array.store_chunk_with(None, &[0, 0], &data[..255]), ZARRS_ERROR_BUFFER_SIZE, "510");
    expect_err(
        zarrs_array_store_chunk(a, null(), [0, 0].as_ptr(), 2, null(), 512),
        ZARRS_ERROR_NULL_POINTER,
        "data",
    );
    expect_err(
        zarrs_array_store_chunk(null(), null(), [0, 0].as_ptr(), 2, data.as_ptr().cast(), 512),
        ZARRS_ERROR_NULL_POINTER,
        "array",
    );
    expect_err(f.array.store_chunk_with(None, &[0, 0, 0], &data), ZARRS_ERROR_INVALID_ARGUMENT, "dimensions");
    // Outside the 4 x 3 grid: no chunk file may appear there.
    expect_err(f.array.store_chunk_with(None, &[4, 0], &data), ZARRS_ERROR_INVALID_ARGUMENT, "grid");
    expect_err(f.array.store_chunk_with(None, &[0, u64::MAX], &data), ZARRS_ERROR_INVALID_ARGUMENT, "grid");
    assert!(f.stored_chunks().is_empty(), "{:?}", f.stored_chunks());

    expect_err(
        zarrs_array_retrieve_chunk(a, null(), [0, 0].as_ptr(), 2, out.as_mut_ptr().cast(), 511, &mut present),
        ZARRS_ERROR_BUFFER_SIZE,
        "512",
    );
    expect_err(
        zarrs_array_retrieve_chunk(a, null(), [0, 0].as_ptr(), 2, null_mut(), 512, &mut present),
        ZARRS_ERROR_NULL_POINTER,
        "out",
    );
    expect_err(
        zarrs_array_retrieve_chunk(a, null(), [4, 0].as_ptr(), 2, out.as_mut_ptr().cast(), 512, &mut present),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "grid",
    );
    expect_err(
        zarrs_array_retrieve_chunk(a, null(), null(), 2, out.as_mut_ptr().cast(), 512, &mut present),
        ZARRS_ERROR_NULL_POINTER,
        "chunk_indices",
    );
    assert_eq!(present, 1, "present_out is written only on success");
    assert_eq!(out, vec![SENTINEL; 256], "out is untouched by argument errors");

    expect_err(zarrs_array_erase_chunk(a, null(), [0, 0].as_ptr(), 3), ZARRS_ERROR_INVALID_ARGUMENT, "dimensions");
    expect_err(zarrs_array_erase_chunk(a, null(), [9, 9].as_ptr(), 2), ZARRS_ERROR_INVALID_ARGUMENT, "grid");
    expect_err(zarrs_array_erase_chunk(null(), null(), [0, 0].as_ptr(), 2), ZARRS_ERROR_NULL_POINTER, "array");
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
    expect_err(retrieve(&[0, 0], &[8, 8], 2, &mut out, 127), ZARRS_ERROR_BUFFER_SIZE, "128");
    expect_err(retrieve(&[0, 0], &[8, 8], 2, &mut out, 129), ZARRS_ERROR_BUFFER_SIZE, "128");
    expect_err(retrieve(&[0, 0, 0], &[8, 8, 1], 3, &mut out, 128), ZARRS_ERROR_INVALID_ARGUMENT, "dimensions");
    expect_err(retrieve(&[60, 0], &[8, 8], 2, &mut out, 128), ZARRS_ERROR_INVALID_ARGUMENT, "outside");
    expect_err(retrieve(&[0, 41], &[8, 8], 2, &mut out, 128), ZARRS_ERROR_INVALID_ARGUMENT, "outside");
    // start + shape wraps around u64: still out of bounds, never a wild read or write.
    expect_err(retrieve(&[u64::MAX, 0], &[2, 32], 2, &mut out, 128), ZARRS_ERROR_INVALID_ARGUMENT, "outside");
    expect_err(retrieve(&[0, u64::MAX - 6], &[8, 8], 2, &mut out, 128), ZARRS_ERROR_INVALID_ARGUMENT, "outside");
    expect_err(
        zarrs_array_retrieve_subset(a, null(), null(), [8, 8].as_ptr(), 2, out.as_mut_ptr().cast(), 128),
        ZARRS_ERROR_NULL_POINTER,
        "start",
    );
    expect_err(
        zarrs_array_retrieve_subset(a, null(), [0, 0].as_ptr(), null(), 2, out.as_mut_ptr().cast(), 128),
        ZARRS_ERROR_NULL_POINTER,
        "shape",
    );
    expect_err(
        zarrs_array_retrieve_subset(a, null(), [0, 0].as_ptr(), [8, 8].as_ptr(), 2, null_mut(), 128),
        ZARRS_ERROR_NULL_POINTER,
        "out",
    );
    expect_err(
        zarrs_array_retrieve_subset(null(), null(), [0, 0].as_ptr(), [8, 8].as_ptr(), 2, out.as_mut_ptr().cast(), 128),
        ZARRS_ERROR_NULL_POINTER,
        "array",
    );
    assert_eq!(out, vec![SENTINEL; 64]);

    expect_err(f.array.store_with(None, &[0, 0], &[8, 8], &data[..63]), ZARRS_ERROR_BUFFER_SIZE, "128");
    expect_err(f.array.store_with(None, &[60, 0], &[8, 8], &data), ZARRS_ERROR_INVALID_ARGUMENT, "outside");
    expect_err(f.array.store_with(None, &[u64::MAX, 0], &[2, 32], &data), ZARRS_ERROR_INVALID_ARGUMENT, "outside");
    expect_err(
        zarrs_array_store_subset(a, null(), [0, 0].as_ptr(), [8, 8].as_ptr(), 2, null(), 128),
        ZARRS_ERROR_NULL_POINTER,
        "data",
    );
    expect_err(
        zarrs_array_store_subset(a, null(), [0, 0].as_ptr(), [8, 8].as_ptr(), 1, data.as_ptr().cast(), 128),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "dimensions",
    );
    assert!(f.stored_chunks().is_empty(), "{:?}", f.stored_chunks());
}

// ---------------------------------------------------------------------------------------------
// Batches of chunks by key.

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

    // Buffer sizes.
    expect_err(good.read(&f.array, &mut out[..255], WHOLE, &mut present), ZARRS_ERROR_BUFFER_SIZE, "512");
    expect_err(good.read(&f.array, &mut out, WHOLE, &mut []), ZARRS_ERROR_BUFFER_SIZE, "present_out");
    expect_err(good.write(&f.array, None, &out[..255], &WHOLE), ZARRS_ERROR_BUFFER_SIZE, "512");
    expect_err(good.write(&f.array, None, &[1, 2], &[]), ZARRS_ERROR_BUFFER_SIZE, "value");
    // value_ndim must be 0 or the array's dimensionality.
    expect_err(good.write(&f.array, None, &out, &[256]), ZARRS_ERROR_INVALID_ARGUMENT, "value_ndim");
    // NULL pointers with nonzero lengths.
    expect_err(
        zarrs_array_read_chunks(
            f.array.ptr(),
            null(),
            1,
            null(),
            5,
            good.offsets.as_ptr(),
            good.geometry.as_ptr(),
            good.geometry.len(),
            out.as_mut_ptr().cast(),
            512,
            WHOLE.as_ptr(),
            present.as_mut_ptr(),
            1,
        ),
        ZARRS_ERROR_NULL_POINTER,
        "keys",
    );
    expect_err(
        zarrs_array_read_chunks(
            f.array.ptr(),
            null(),
            1,
            good.keys.as_ptr().cast(),
            good.keys.len(),
            null(),
            good.geometry.as_ptr(),
            good.geometry.len(),
            out.as_mut_ptr().cast(),
            512,
            WHOLE.as_ptr(),
            present.as_mut_ptr(),
            1,
        ),
        ZARRS_ERROR_NULL_POINTER,
        "key_offsets",
    );
    expect_err(
        zarrs_array_read_chunks(
            f.array.ptr(),
            null(),
            1,
            good.keys.as_ptr().cast(),
            good.keys.len(),
            good.offsets.as_ptr(),
            good.geometry.as_ptr(),
            good.geometry.len(),
            out.as_mut_ptr().cast(),
            512,
            WHOLE.as_ptr(),
            null_mut(),
            1,
        ),
        ZARRS_ERROR_NULL_POINTER,
        "present_out",
    );
    expect_err(
        zarrs_array_write_chunks(
            f.array.ptr(),
            null(),
            1,
            good.keys.as_ptr().cast(),
            good.keys.len(),
            good.offsets.as_ptr(),
            good.geometry.as_ptr(),
            good.geometry.len(),
            null(),
            2,
            null(),
            0,
        ),
        ZARRS_ERROR_NULL_POINTER,
        "value",
    );
    expect_err(good.write(&Array(null_mut()), None, &[1], &[]), ZARRS_ERROR_NULL_POINTER, "array");
    // Nothing was changed by any of the failed writes.
    assert_eq!(f.array.retrieve(&[0, 0], &[64, 48]), grid([64, 48], value));
}

// ---------------------------------------------------------------------------------------------
// Codec-only calls.

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
    expect_err(zarrs_storage_open_memory(null_mut()), ZARRS_ERROR_NULL_POINTER, "storage_out");
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

    // A NULL length array.
    let bad = Encoded::new(&[Some(&e0)]);
    expect_err(
        zarrs_array_decode_chunks(a.ptr(), null(), 1, bad.pointers.as_ptr(), null(), whole.geometry.as_ptr(), 8, out.as_mut_ptr().cast(), 512, WHOLE.as_ptr()),
        ZARRS_ERROR_NULL_POINTER,
        "encoded_lens",
    );
    // Geometry of the wrong length, and an output buffer of the wrong size.
    let mut short = whole.clone();
    short.geometry.push(0);
    let good = Encoded::new(&[Some(&e0)]);
    expect_err(decode(a, None, &good, &short, &mut out, WHOLE), ZARRS_ERROR_INVALID_ARGUMENT, "geometry");
    expect_err(decode(a, None, &good, &whole, &mut out[..200], WHOLE), ZARRS_ERROR_BUFFER_SIZE, "512");
    expect_err(
        zarrs_array_decode_chunks(a.ptr(), null(), 1, null(), good.lens.as_ptr(), whole.geometry.as_ptr(), 8, out.as_mut_ptr().cast(), 512, WHOLE.as_ptr()),
        ZARRS_ERROR_NULL_POINTER,
        "encoded",
    );
    // A region outside the output buffer, including one whose end wraps around u64.
    for buffer_start in [[0, 1], [u64::MAX, 0]] {
        let outside = Batch::new().chunk("", WHOLE, [0, 0], [2, 16], buffer_start);
        let code = decode(a, None, &Encoded::new(&[None]), &outside, &mut out, WHOLE);
        assert_eq!(code, ZARRS_ERROR_INVALID_ARGUMENT, "{}", last_error());
    }
    assert_eq!(out, vec![SENTINEL; 256]);

    // Encode: NULL out-parameter, wrong value size, and reading encoded chunks wrongly.
    let existing = no_existing(1);
    let value_buf = grid(WHOLE, value);
    let encode_raw = |value: &[u16], value_len: usize, out: *mut *mut ZarrsEncodedChunks| {
        zarrs_array_encode_chunks(
            a.ptr(),
            null(),
            1,
            whole.geometry.as_ptr(),
            whole.geometry.len(),
            value.as_ptr().cast(),
            value_len,
            WHOLE.as_ptr(),
            2,
            existing.pointers.as_ptr(),
            existing.lens.as_ptr(),
            out,
        )
    };
    let mut handle = null_mut();
    expect_err(encode_raw(&value_buf, 512, null_mut()), ZARRS_ERROR_NULL_POINTER, "encoded_out");
    expect_err(encode_raw(&value_buf, 510, &mut handle), ZARRS_ERROR_BUFFER_SIZE, "512");
    assert!(handle.is_null());
    check(encode_raw(&value_buf, 512, &mut handle));
    let (mut data, mut len) = (null(), 0usize);
    expect_err(zarrs_encoded_chunks_get(handle, 1, &mut data, &mut len), ZARRS_ERROR_INVALID_ARGUMENT, "out of range");
    expect_err(zarrs_encoded_chunks_get(handle, 0, null_mut(), &mut len), ZARRS_ERROR_NULL_POINTER, "data_out");
    expect_err(zarrs_encoded_chunks_get(handle, 0, &mut data, null_mut()), ZARRS_ERROR_NULL_POINTER, "len_out");
    expect_err(zarrs_encoded_chunks_get(null(), 0, &mut data, &mut len), ZARRS_ERROR_NULL_POINTER, "encoded");
    expect_err(zarrs_encoded_chunks_count(handle, null_mut()), ZARRS_ERROR_NULL_POINTER, "NULL");
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

// ---------------------------------------------------------------------------------------------
// Empty chunks.

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

// ---------------------------------------------------------------------------------------------
// Sharding.

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

// ---------------------------------------------------------------------------------------------
// Damaged chunks on disk.

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

// ---------------------------------------------------------------------------------------------
// Read-only storage.

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

// ---------------------------------------------------------------------------------------------
// The last error, and threads.

#[test]
fn last_error_is_set_cleared_and_per_thread() {
    let mut size = 0usize;
    expect_err(zarrs_array_element_size(null(), &mut size), ZARRS_ERROR_NULL_POINTER, "array");
    let main_message = last_error();
    assert!(!main_message.is_empty());

    // Another thread sees none of it, and its own failure does not show here.
    std::thread::spawn(|| {
        assert_eq!(last_error(), "");
        let mut storage = null_mut();
        expect_err(zarrs_storage_open_filesystem(null(), 0, 0, 0, &mut storage), ZARRS_ERROR_INVALID_ARGUMENT, "empty");
    })
    .join()
    .unwrap();
    assert_eq!(last_error(), main_message);

    // Two threads failing at the same time each keep their own message.
    let barrier = Barrier::new(2);
    std::thread::scope(|scope| {
        let a = scope.spawn(|| {
            expect_err(zarrs_options_default(null_mut()), ZARRS_ERROR_NULL_POINTER, "NULL");
            barrier.wait();
            barrier.wait();
            last_error()
        });
        let b = scope.spawn(|| {
            barrier.wait();
            let bad = b"\xff";
            let mut storage = null_mut();
            expect_err(zarrs_storage_open_filesystem(bad.as_ptr().cast(), 1, 0, 0, &mut storage), ZARRS_ERROR_INVALID_ARGUMENT, "UTF-8");
            barrier.wait();
            last_error()
        });
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert!(a.contains("NULL") && !a.contains("UTF-8"), "{a}");
        assert!(b.contains("UTF-8"), "{b}");
    });

    // A success on this thread clears its message.
    let mut options = default_options();
    check(zarrs_options_default(&mut options));
    assert_eq!(last_error(), "");
}

/// An array handle shared with other threads, as a C program would share the pointer.
#[derive(Clone, Copy)]
struct Shared(*const ZarrsArray);
// SAFETY: the header documents that calls taking a `const ZarrsArray*` may run concurrently.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

#[test]
fn concurrent_calls_on_one_array() {
    let f = Fixture::zstd("concurrent");
    let shared = Shared(f.array.ptr());
    // Each thread writes and reads back its own row of chunks (disjoint chunks).
    std::thread::scope(|scope| {
        for row in 0..4u64 {
            scope.spawn(move || {
                let shared = shared;
                let start = [row * 16, 0];
                let data = grid([16, 48], |i, j| value(row * 16 + i, j));
                for _ in 0..5 {
                    check(zarrs_array_store_subset(shared.0, null(), start.as_ptr(), [16, 48].as_ptr(), 2, data.as_ptr().cast(), data.len() * ES));
                    let mut out = vec![SENTINEL; data.len()];
                    check(zarrs_array_retrieve_subset(shared.0, null(), start.as_ptr(), [16, 48].as_ptr(), 2, out.as_mut_ptr().cast(), out.len() * ES));
                    assert_eq!(out, data);
                }
            });
        }
    });
    assert_eq!(f.array.retrieve(&[0, 0], &[64, 48]), grid([64, 48], value));
}

#[test]
fn variable_length_round_trip_and_bad_arguments() {
    use zarrs_ffi::*;

    let mut storage = null_mut();
    check(zarrs_storage_open_memory(&mut storage));
    let storage = Storage(storage);
    let json = r#"{"zarr_format":3,"node_type":"array","shape":[6],"data_type":"string",
        "chunk_grid":{"name":"regular","configuration":{"chunk_shape":[3]}},
        "chunk_key_encoding":{"name":"default"},"fill_value":"",
        "codecs":[{"name":"vlen-utf8"},{"name":"zstd","configuration":{"level":1,"checksum":false}}]}"#;
    let mut handle = null_mut();
    check(zarrs_array_open_with_metadata(storage.0, b"/".as_ptr().cast(), 1, json.as_ptr().cast(), json.len(), &mut handle));
    let array = Array(handle);

    // Two chunks of three strings each, elements back to back.
    let words = ["", "zarr", "é€", "a", "bb", "ccc"];
    let data: Vec<u8> = words.concat().into_bytes();
    let mut offsets = vec![0u64];
    for w in words {
        offsets.push(offsets.last().unwrap() + w.len() as u64);
    }
    let shapes = [3u64, 3];
    let mut encoded = null_mut();
    check(zarrs_array_encode_variable_chunks(
        array.ptr(), null(), 2, shapes.as_ptr(), 2, data.as_ptr(), data.len(), offsets.as_ptr(), offsets.len(), &mut encoded,
    ));
    let chunks: Vec<Vec<u8>> = (0..2)
        .map(|i| {
            let (mut ptr, mut len) = (null(), 0usize);
            check(zarrs_encoded_chunks_get(encoded, i, &mut ptr, &mut len));
            // SAFETY: valid until the handle is freed, below.
            unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec()
        })
        .collect();
    check(zarrs_encoded_chunks_free(encoded));

    let both = Encoded::new(&[Some(&chunks[0]), Some(&chunks[1])]);
    let mut decoded = null_mut();
    check(zarrs_array_decode_variable_chunks(
        array.ptr(), null(), 2, both.pointers.as_ptr(), both.lens.as_ptr(), shapes.as_ptr(), 2, &mut decoded,
    ));
    for (i, expected) in words.chunks(3).enumerate() {
        let (mut bytes, mut len, mut offs, mut offs_len) = (null(), 0usize, null(), 0usize);
        check(zarrs_variable_chunks_get(decoded, i, &mut bytes, &mut len, &mut offs, &mut offs_len));
        // SAFETY: valid until the handle is freed, below.
        let (bytes, offs) = unsafe { (std::slice::from_raw_parts(bytes, len), std::slice::from_raw_parts(offs, offs_len)) };
        let got: Vec<&str> = offs.windows(2).map(|w| std::str::from_utf8(&bytes[w[0] as usize..w[1] as usize]).unwrap()).collect();
        assert_eq!(got, expected);
    }
    expect_err(
        zarrs_variable_chunks_get(decoded, 2, &mut null(), &mut 0, &mut null(), &mut 0),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "out of range",
    );
    check(zarrs_variable_chunks_free(decoded));
    check(zarrs_variable_chunks_free(null_mut()));

    // Corrupt bytes, wrong shapes and offsets, NULLs: errors, never a crash.
    let garbage = Encoded::new(&[Some(b"not zstd at all")]);
    expect_err(
        zarrs_array_decode_variable_chunks(array.ptr(), null(), 1, garbage.pointers.as_ptr(), garbage.lens.as_ptr(), shapes.as_ptr(), 1, &mut decoded),
        ZARRS_ERROR_CODEC,
        "",
    );
    expect_err(
        zarrs_array_decode_variable_chunks(array.ptr(), null(), 2, both.pointers.as_ptr(), both.lens.as_ptr(), shapes.as_ptr(), 1, &mut decoded),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "chunk_shapes",
    );
    let backwards = [0u64, 5, 3, 6, 7, 9, 12];
    expect_err(
        zarrs_array_encode_variable_chunks(array.ptr(), null(), 2, shapes.as_ptr(), 2, data.as_ptr(), data.len(), backwards.as_ptr(), 7, &mut encoded),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "element_offsets",
    );
    expect_err(
        zarrs_array_encode_variable_chunks(array.ptr(), null(), 2, shapes.as_ptr(), 2, data.as_ptr(), data.len(), offsets.as_ptr(), 7, null_mut()),
        ZARRS_ERROR_NULL_POINTER,
        "encoded_out",
    );
    // A fixed-size array refuses the variable-length calls.
    let f = Fixture::zstd("variable-on-fixed");
    expect_err(
        zarrs_array_decode_variable_chunks(f.array.ptr(), null(), 1, both.pointers.as_ptr(), both.lens.as_ptr(), WHOLE.as_ptr(), 2, &mut decoded),
        ZARRS_ERROR_UNSUPPORTED,
        "fixed-size",
    );
}

/// Open a one-dimensional `string` array of `len` elements with chunks of `len` in memory.
fn open_string_array(storage: &Storage, len: u64, codecs: &str) -> Array {
    let json = format!(
        r#"{{"zarr_format":3,"node_type":"array","shape":[{len}],"data_type":"string",
        "chunk_grid":{{"name":"regular","configuration":{{"chunk_shape":[{len}]}}}},
        "chunk_key_encoding":{{"name":"default"}},"fill_value":"","codecs":{codecs}}}"#
    );
    let mut handle = null_mut();
    check(zarrs_array_open_with_metadata(storage.0, b"/".as_ptr().cast(), 1, json.as_ptr().cast(), json.len(), &mut handle));
    Array(handle)
}

/// Decode one variable-length chunk of `len` elements: its strings, or the error code.
fn decode_strings(array: &Array, chunk: &[u8], len: u64) -> Result<Vec<String>, ZarrsResult> {
    use zarrs_ffi::*;
    let encoded = Encoded::new(&[Some(chunk)]);
    let mut decoded = null_mut();
    let code = zarrs_array_decode_variable_chunks(array.ptr(), null(), 1, encoded.pointers.as_ptr(), encoded.lens.as_ptr(), [len].as_ptr(), 1, &mut decoded);
    if code != ZARRS_SUCCESS {
        return Err(code);
    }
    let (mut bytes, mut n, mut offs, mut offs_len) = (null(), 0usize, null(), 0usize);
    check(zarrs_variable_chunks_get(decoded, 0, &mut bytes, &mut n, &mut offs, &mut offs_len));
    // SAFETY: valid until the handle is freed, below.
    let (bytes, offs) = unsafe { (std::slice::from_raw_parts(bytes, n), std::slice::from_raw_parts(offs, offs_len)) };
    let strings = offs.windows(2).map(|w| String::from_utf8(bytes[w[0] as usize..w[1] as usize].to_vec()).unwrap()).collect();
    check(zarrs_variable_chunks_free(decoded));
    Ok(strings)
}

/// The numcodecs VLen layout: element count, then per element its length and bytes.
fn vlen(count: u32, elements: &[(u32, &[u8])]) -> Vec<u8> {
    let mut out = count.to_le_bytes().to_vec();
    for (len, bytes) in elements {
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

#[test]
fn corrupt_variable_length_chunks_are_codec_errors() {
    let mut storage = null_mut();
    check(zarrs_storage_open_memory(&mut storage));
    let storage = Storage(storage);
    let array = open_string_array(&storage, 3, r#"[{"name":"vlen-utf8"}]"#);
    let good = vlen(3, &[(1, b"a"), (0, b""), (2, b"bc")]);
    assert_eq!(decode_strings(&array, &good, 3).unwrap(), ["a", "", "bc"]);
    // Element lengths past the end (zarrs sliced by them and panicked), a wrong count, a
    // chunk too short for its lengths: codec errors naming the chunk.
    for (bytes, mentions) in [
        (vlen(3, &[(1, b"a"), (u32::MAX, b""), (0, b"")]), "element 1 of 3 declares 4294967295 bytes"),
        (vlen(3, &[(1, b"a"), (0, b""), (3, b"bc")]), "element 2 of 3 declares 3 bytes, 2 remain"),
        (vlen(2, &[(1, b"a"), (0, b"")]), "declares 2 elements, the chunk holds 3"),
        (vlen(3, &[(1, b"a")]), "ends before the length of element 1"),
        (vec![1, 0], "too short"),
    ] {
        assert_eq!(decode_strings(&array, &bytes, 3), Err(ZARRS_ERROR_CODEC), "{mentions}");
        let message = last_error();
        assert!(message.contains(mentions) && message.contains("chunk-0"), "{message:?} does not mention {mentions:?}");
    }
}

#[test]
fn variable_length_shards_decode_within_bounds() {
    use zarrs_ffi::*;
    let mut storage = null_mut();
    check(zarrs_storage_open_memory(&mut storage));
    let storage = Storage(storage);
    // Shards of 4 strings, inner chunks of 2, an unprotected index at the end.
    let codecs = r#"[{"name":"sharding_indexed","configuration":{"chunk_shape":[2],
        "codecs":[{"name":"vlen-utf8"},{"name":"zstd","configuration":{"level":1,"checksum":false}}],
        "index_codecs":[{"name":"bytes","configuration":{"endian":"little"}}],"index_location":"end"}}]"#;
    let array = open_string_array(&storage, 4, codecs);

    let words = ["x", "", "zarr", "é€"];
    let data = words.concat().into_bytes();
    let mut offsets = vec![0u64];
    for w in words {
        offsets.push(offsets.last().unwrap() + w.len() as u64);
    }
    let mut encoded = null_mut();
    check(zarrs_array_encode_variable_chunks(array.ptr(), null(), 1, [4u64].as_ptr(), 1, data.as_ptr(), data.len(), offsets.as_ptr(), offsets.len(), &mut encoded));
    let (mut ptr, mut len) = (null(), 0usize);
    check(zarrs_encoded_chunks_get(encoded, 0, &mut ptr, &mut len));
    // SAFETY: valid until the handle is freed, below.
    let shard = unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec();
    check(zarrs_encoded_chunks_free(encoded));
    assert_eq!(decode_strings(&array, &shard, 4).unwrap(), words);

    let shard_of = |inner: &[u8], index: [u64; 4]| {
        let mut out = inner.to_vec();
        for v in index {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    };
    // A missing second inner chunk reads as the fill value.
    let first = vlen(2, &[(1, b"a"), (2, b"bc")]);
    let zstd_first = zstd::bulk::compress(&first, 1).unwrap();
    let partial = shard_of(&zstd_first, [0, zstd_first.len() as u64, u64::MAX, u64::MAX]);
    assert_eq!(decode_strings(&array, &partial, 4).unwrap(), ["a", "bc", "", ""]);

    // An inner zstd frame declaring 2^46 bytes (zarrs' sharding codec allocated them and
    // aborted the process): single segment, 8-byte content size, one empty raw last block.
    let mut bomb = vec![0x28, 0xB5, 0x2F, 0xFD, 0xE0];
    bomb.extend_from_slice(&(1u64 << 46).to_le_bytes());
    bomb.extend_from_slice(&[0x01, 0x00, 0x00]);
    let shard = shard_of(&bomb, [0, bomb.len() as u64, u64::MAX, u64::MAX]);
    assert_eq!(decode_strings(&array, &shard, 4), Err(ZARRS_ERROR_CODEC));
    assert!(last_error().contains("declares 70368744177664 bytes"), "{}", last_error());

    // An inner chunk whose element length runs past its end (zarrs panicked).
    let long = zstd::bulk::compress(&vlen(2, &[(1, b"a"), (9, b"bc")]), 1).unwrap();
    let shard = shard_of(&long, [0, long.len() as u64, u64::MAX, u64::MAX]);
    assert_eq!(decode_strings(&array, &shard, 4), Err(ZARRS_ERROR_CODEC));
    assert!(last_error().contains("element 1 of 2 declares 9 bytes"), "{}", last_error());

    // Index entries with the missing marker in one field only, or wrapping: codec errors
    // (zarrs' sharding codec overflowed: "capacity overflow").
    for index in [
        [u64::MAX, zstd_first.len() as u64, u64::MAX, u64::MAX],
        [0, u64::MAX, u64::MAX, u64::MAX],
        [2, u64::MAX - 1, u64::MAX, u64::MAX],
    ] {
        let shard = shard_of(&zstd_first, index);
        assert_eq!(decode_strings(&array, &shard, 4), Err(ZARRS_ERROR_CODEC), "{index:?}");
        assert!(last_error().contains("outside its"), "{}", last_error());
    }
}

#[test]
fn remote_storage_bad_arguments() {
    use zarrs_ffi::{zarrs_storage_open_http, zarrs_storage_open_s3, ZarrsS3Config};

    let text = |s: &'static str| (s.as_ptr().cast::<c_char>(), s.len());
    let config = |bucket: &'static str, key: Option<&'static str>, secret: Option<&'static str>| {
        let (bucket, bucket_len) = text(bucket);
        let (key, key_len) = key.map_or((null(), 0), text);
        let (secret, secret_len) = secret.map_or((null(), 0), text);
        let (endpoint, endpoint_len) = text("http://127.0.0.1:9");
        ZarrsS3Config {
            bucket,
            bucket_len,
            prefix: null(),
            prefix_len: 0,
            endpoint,
            endpoint_len,
            region: null(),
            region_len: 0,
            access_key_id: key,
            access_key_id_len: key_len,
            secret_access_key: secret,
            secret_access_key_len: secret_len,
            session_token: null(),
            session_token_len: 0,
            anonymous: 0,
            path_style: 1,
            read_only: 0,
        }
    };
    let mut storage = null_mut();
    expect_err(zarrs_storage_open_s3(null(), &mut storage), ZARRS_ERROR_NULL_POINTER, "config");
    let good = config("bucket", Some("k"), Some("s"));
    expect_err(zarrs_storage_open_s3(&good, null_mut()), ZARRS_ERROR_NULL_POINTER, "storage_out");
    expect_err(zarrs_storage_open_s3(&config("", Some("k"), Some("s")), &mut storage), ZARRS_ERROR_INVALID_ARGUMENT, "bucket");
    expect_err(zarrs_storage_open_s3(&config("b", Some("k"), None), &mut storage), ZARRS_ERROR_INVALID_ARGUMENT, "credentials");
    assert!(storage.is_null(), "no handle on failure");

    // Opening does no I/O: a store on an address where nothing listens opens, and its first
    // read fails with a storage error within the bounded retries rather than hanging.
    check(zarrs_storage_open_s3(&good, &mut storage));
    let storage = Storage(storage);
    let json = metadata([4, 4], [4, 4], &codecs_zstd());
    let mut handle = null_mut();
    check(zarrs_array_open_with_metadata(storage.0, b"/a".as_ptr().cast(), 2, json.as_ptr().cast(), json.len(), &mut handle));
    let array = Array(handle);
    let started = std::time::Instant::now();
    assert_eq!(array.try_retrieve(None, &[0, 0], &[4, 4]), Err(ZARRS_ERROR_STORAGE));
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "took {:?}", started.elapsed());
    // Writes to a read-only HTTP store are refused before any request.
    let (url, url_len) = text("http://127.0.0.1:9/data");
    let mut http = null_mut();
    check(zarrs_storage_open_http(url, url_len, &mut http));
    let http = Storage(http);
    let mut handle = null_mut();
    check(zarrs_array_open_with_metadata(http.0, b"/".as_ptr().cast(), 1, json.as_ptr().cast(), json.len(), &mut handle));
    let array = Array(handle);
    let code = zarrs_array_store_subset(array.ptr(), null(), [0u64, 0].as_ptr(), [4u64, 4].as_ptr(), 2, [0u16; 16].as_ptr().cast(), 32);
    expect_err(code, ZARRS_ERROR_READ_ONLY, "read");
    let mut unused = null_mut();
    expect_err(zarrs_storage_open_http(null(), 3, &mut unused), ZARRS_ERROR_NULL_POINTER, "url");
}

// ---------------------------------------------------------------------------------------------
// Confinement: what a caller passes can never reach outside the store or the array's grid.

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
fn variable_length_shapes_use_checked_arithmetic() {
    use zarrs_ffi::*;

    let mut storage = null_mut();
    check(zarrs_storage_open_memory(&mut storage));
    let storage = Storage(storage);
    let json = r#"{"zarr_format":3,"node_type":"array","shape":[6],"data_type":"string",
        "chunk_grid":{"name":"regular","configuration":{"chunk_shape":[3]}},
        "chunk_key_encoding":{"name":"default"},"fill_value":"","codecs":[{"name":"vlen-utf8"}]}"#;
    let mut handle = null_mut();
    check(zarrs_array_open_with_metadata(storage.0, b"/".as_ptr().cast(), 1, json.as_ptr().cast(), json.len(), &mut handle));
    let array = Array(handle);
    // Two chunks of 2^63 elements: their sum wraps to 0, which one offset would match.
    let shapes = [1u64 << 63, 1 << 63];
    let offsets = [0u64];
    let mut encoded = null_mut();
    expect_err(
        zarrs_array_encode_variable_chunks(array.ptr(), null(), 2, shapes.as_ptr(), 2, null(), 0, offsets.as_ptr(), 1, &mut encoded),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "chunk shape",
    );
    let inputs = Encoded::new(&[Some(b"x"), Some(b"y")]);
    let mut decoded = null_mut();
    expect_err(
        zarrs_array_decode_variable_chunks(array.ptr(), null(), 2, inputs.pointers.as_ptr(), inputs.lens.as_ptr(), shapes.as_ptr(), 2, &mut decoded),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "chunk shape",
    );
    assert!(encoded.is_null() && decoded.is_null());
}

/// `n` values of `uint64_t` placed at an odd address, as a C caller with a packed buffer may
/// pass them. The returned buffer owns the bytes; the pointer is at offset 1.
fn misaligned(values: &[u64]) -> (Vec<u8>, *const u64) {
    let mut bytes = vec![0u8; values.len() * 8 + 1];
    for (i, v) in values.iter().enumerate() {
        bytes[1 + i * 8..1 + (i + 1) * 8].copy_from_slice(&v.to_ne_bytes());
    }
    // The pointer is only ever read through the library's unaligned reads.
    let ptr = bytes[1..].as_ptr().cast::<u64>();
    assert!(!ptr.is_aligned());
    (bytes, ptr)
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

#[test]
fn last_error_during_thread_teardown_does_not_abort() {
    use std::sync::atomic::AtomicBool;
    static RAN: AtomicBool = AtomicBool::new(false);

    struct CallsOnDrop;
    impl Drop for CallsOnDrop {
        fn drop(&mut self) {
            // Runs while the thread's locals are destroyed; the library's last-error slot,
            // registered after this one, is already gone.
            let code = zarrs_options_default(null_mut());
            assert_eq!(code, ZARRS_ERROR_NULL_POINTER);
            // SAFETY: the library returns a valid NUL-terminated string.
            let _ = unsafe { CStr::from_ptr(zarrs_last_error()) };
            RAN.store(true, Ordering::SeqCst);
        }
    }
    thread_local! {
        static GUARD: CallsOnDrop = const { CallsOnDrop };
    }
    std::thread::spawn(|| {
        GUARD.with(|_| {});
        // Touch the library's slot after ours, so it is destroyed first.
        expect_err(zarrs_options_default(null_mut()), ZARRS_ERROR_NULL_POINTER, "NULL");
    })
    .join()
    .unwrap();
    assert!(RAN.load(Ordering::SeqCst));
}

// ---------------------------------------------------------------------------------------------
// The panic boundary.

#[test]
fn a_panic_inside_an_export_becomes_zarrs_error_panic() {
    use zarrs_ffi::zarrs_test_panic;

    let message = "deliberate test panic: ümlaut";
    let code = zarrs_test_panic(message.as_ptr().cast(), message.len());
    expect_err(code, ZARRS_ERROR_PANIC, "internal panic in zarrs-ffi");
    assert!(last_error().ends_with(message), "the payload is kept: {}", last_error());
    // The thread is still usable, and its last error is its own.
    let other = std::thread::spawn(|| {
        expect_err(zarrs_test_panic(b"elsewhere".as_ptr().cast(), 9), ZARRS_ERROR_PANIC, "elsewhere");
        last_error()
    })
    .join()
    .unwrap();
    assert!(other.ends_with("elsewhere"));
    assert!(last_error().ends_with(message), "another thread's panic is not seen here");
    check(zarrs_options_default(&mut default_options()));
    // A String payload (formatted panic) and a bad argument before the panic are both handled.
    expect_err(zarrs_test_panic(null(), 3), ZARRS_ERROR_NULL_POINTER, "message");
}

#[test]
fn variable_length_chunks_decode_within_the_configured_cap() {
    use zarrs_ffi::*;

    let mut storage = null_mut();
    check(zarrs_storage_open_memory(&mut storage));
    let storage = Storage(storage);
    let json = r#"{"zarr_format":3,"node_type":"array","shape":[4],"data_type":"string",
        "chunk_grid":{"name":"regular","configuration":{"chunk_shape":[4]}},
        "chunk_key_encoding":{"name":"default"},"fill_value":"",
        "codecs":[{"name":"vlen-utf8"},{"name":"zstd","configuration":{"level":1,"checksum":false}}]}"#;
    let mut handle = null_mut();
    check(zarrs_array_open_with_metadata(storage.0, b"/".as_ptr().cast(), 1, json.as_ptr().cast(), json.len(), &mut handle));
    let array = Array(handle);
    let data = vec![b'x'; 4000];
    let offsets = [0u64, 1000, 2000, 3000, 4000];
    let mut encoded = null_mut();
    check(zarrs_array_encode_variable_chunks(array.ptr(), null(), 1, [4u64].as_ptr(), 1, data.as_ptr(), data.len(), offsets.as_ptr(), 5, &mut encoded));
    let (mut ptr, mut len) = (null(), 0usize);
    check(zarrs_encoded_chunks_get(encoded, 0, &mut ptr, &mut len));
    // SAFETY: valid until the handle is freed, below.
    let chunk = unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec();
    check(zarrs_encoded_chunks_free(encoded));
    let inputs = Encoded::new(&[Some(&chunk)]);
    let decode = |cap: u64| {
        let mut options = default_options();
        options.max_variable_chunk_bytes = cap;
        let mut decoded = null_mut();
        let code = zarrs_array_decode_variable_chunks(array.ptr(), &options, 1, inputs.pointers.as_ptr(), inputs.lens.as_ptr(), [4u64].as_ptr(), 1, &mut decoded);
        if !decoded.is_null() {
            // Only on success: freeing clears this thread's last error.
            zarrs_variable_chunks_free(decoded);
        }
        code
    };
    check(decode(0));
    check(decode(1 << 20));
    // The stored form (4 lengths + 4000 bytes) no longer fits in 1000 bytes.
    expect_err(decode(1000), ZARRS_ERROR_CODEC, "zstd frame declares");
}

#[test]
fn absurd_metadata_is_refused_at_open() {
    let mut storage = null_mut();
    check(zarrs_storage_open_memory(&mut storage));
    let storage = Storage(storage);
    let open = |shape: [u64; 2], chunk: [u64; 2], codecs: &str| {
        let json = metadata(shape, chunk, codecs);
        let mut handle = null_mut();
        let code = zarrs_array_open_with_metadata(storage.0, b"/".as_ptr().cast(), 1, json.as_ptr().cast(), json.len(), &mut handle);
        if !handle.is_null() {
            zarrs_array_free(handle);
        }
        code
    };
    let huge = [1 << 62, 1 << 62];
    expect_err(open(huge, huge, &format!("[{BYTES}]")), ZARRS_ERROR_INVALID_METADATA, "overflows");
    expect_err(open(huge, [1 << 31, 1 << 31], &format!("[{BYTES}]")), ZARRS_ERROR_INVALID_METADATA, "memory");
    expect_err(open(huge, [1 << 40, 1], &codecs_sharded([1, 1])), ZARRS_ERROR_INVALID_METADATA, "inner chunks");
    // Large but possible chunks and shards open (nothing is allocated until data is read).
    check(open(huge, [1 << 20, 1 << 20], &format!("[{BYTES}]")));
    check(open(huge, [1 << 12, 1 << 12], &codecs_sharded([1, 1])));
}

// ---------------------------------------------------------------------------------------------
// Gathers: picked elements of many chunks straight into one buffer.

/// An orthogonal gather: per chunk its key, chunk shape and per axis `(start, count)` into a
/// shared pool of indices and positions.
#[derive(Clone, Default)]
struct Ortho {
    batch: Batch,
    shapes: Vec<u64>,
    picks: Vec<u64>,
    indices: Vec<u64>,
    positions: Vec<u64>,
}

impl Ortho {
    fn new() -> Self {
        Self { batch: Batch::new(), ..Self::default() }
    }

    /// Chunk `key` of `shape`; per axis, picks `indices` going to `positions`.
    fn chunk(mut self, key: &str, shape: [u64; 2], axes: [(&[u64], &[u64]); 2]) -> Self {
        self.batch.keys.push_str(key);
        self.batch.offsets.push(self.batch.keys.len() as u64);
        self.shapes.extend_from_slice(&shape);
        for (indices, positions) in axes {
            self.picks.extend_from_slice(&[self.indices.len() as u64, indices.len() as u64]);
            self.indices.extend_from_slice(indices);
            self.positions.extend_from_slice(positions);
        }
        self
    }

    fn read(&self, array: &Array, out: &mut [u16], out_shape: [u64; 2], present: &mut [u8]) -> ZarrsResult {
        zarrs_array_gather_orthogonal(
            array.ptr(),
            null(),
            self.batch.len(),
            self.batch.keys.as_ptr().cast(),
            self.batch.keys.len(),
            self.batch.offsets.as_ptr(),
            self.shapes.as_ptr(),
            self.shapes.len(),
            self.picks.as_ptr(),
            self.picks.len(),
            self.indices.as_ptr(),
            self.positions.as_ptr(),
            self.indices.len(),
            out.as_mut_ptr().cast(),
            out.len() * ES,
            out_shape.as_ptr(),
            present.as_mut_ptr(),
            present.len(),
        )
    }
}

/// A point gather: per chunk its key, chunk shape and points (coordinates, output offset).
#[derive(Clone, Default)]
struct Points {
    batch: Batch,
    shapes: Vec<u64>,
    counts: Vec<u64>,
    coords: Vec<u64>,
    offsets: Vec<u64>,
}

impl Points {
    fn new() -> Self {
        Self { batch: Batch::new(), ..Self::default() }
    }

    fn chunk(mut self, key: &str, shape: [u64; 2], points: &[([u64; 2], u64)]) -> Self {
        self.batch.keys.push_str(key);
        self.batch.offsets.push(self.batch.keys.len() as u64);
        self.shapes.extend_from_slice(&shape);
        self.counts.push(points.len() as u64);
        for (coords, offset) in points {
            self.coords.extend_from_slice(coords);
            self.offsets.push(*offset);
        }
        self
    }

    fn read(&self, array: &Array, out: &mut [u16], present: &mut [u8]) -> ZarrsResult {
        zarrs_array_gather_points(
            array.ptr(),
            null(),
            self.batch.len(),
            self.batch.keys.as_ptr().cast(),
            self.batch.keys.len(),
            self.batch.offsets.as_ptr(),
            self.shapes.as_ptr(),
            self.shapes.len(),
            self.counts.as_ptr(),
            self.coords.as_ptr(),
            self.coords.len(),
            self.offsets.as_ptr(),
            self.offsets.len(),
            out.as_mut_ptr().cast(),
            out.len() * ES,
            present.as_mut_ptr(),
            present.len(),
        )
    }
}

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
    out = vec![SENTINEL; 2];
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

    // Buffer sizes and NULL pointers.
    expect_err(good.read(a, &mut out[..1], [2, 1], &mut present), ZARRS_ERROR_BUFFER_SIZE, "out");
    expect_err(good.read(a, &mut out, [2, 1], &mut []), ZARRS_ERROR_BUFFER_SIZE, "present_out");
    let call = |keys: *const c_char, indices: *const u64, out_ptr: *mut u8, present_ptr: *mut u8| {
        zarrs_array_gather_orthogonal(
            a.ptr(),
            null(),
            1,
            keys,
            good.batch.keys.len(),
            good.batch.offsets.as_ptr(),
            good.shapes.as_ptr(),
            2,
            good.picks.as_ptr(),
            4,
            indices,
            good.positions.as_ptr(),
            3,
            out_ptr,
            4,
            [2u64, 1].as_ptr(),
            present_ptr,
            1,
        )
    };
    let mut out2 = [SENTINEL; 2];
    let mut present2 = [9u8];
    let (keys, indices) = (good.batch.keys.as_ptr().cast(), good.indices.as_ptr());
    expect_err(call(null(), indices, out2.as_mut_ptr().cast(), present2.as_mut_ptr()), ZARRS_ERROR_NULL_POINTER, "keys");
    expect_err(call(keys, null(), out2.as_mut_ptr().cast(), present2.as_mut_ptr()), ZARRS_ERROR_NULL_POINTER, "indices");
    expect_err(call(keys, indices, null_mut(), present2.as_mut_ptr()), ZARRS_ERROR_NULL_POINTER, "out");
    expect_err(call(keys, indices, out2.as_mut_ptr().cast(), null_mut()), ZARRS_ERROR_NULL_POINTER, "present_out");

    // Misaligned uint64_t arrays are read correctly.
    let mut bytes = vec![0u8; 1 + 8 * good.indices.len()];
    for (k, v) in good.indices.iter().enumerate() {
        bytes[1 + 8 * k..9 + 8 * k].copy_from_slice(&v.to_ne_bytes());
    }
    let misaligned = bytes[1..].as_ptr().cast::<u64>();
    check(call(keys, misaligned, out2.as_mut_ptr().cast(), present2.as_mut_ptr()));
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
    expect_err(zarrs_completion_queue_new(null_mut(), &mut fd), ZARRS_ERROR_NULL_POINTER, "queue_out");
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
    // Argument errors are returned at once and start nothing.
    let mut out = vec![SENTINEL; 512];
    let mut present = [9u8; 2];
    expect_err(start(1, &mut out, &mut present[..1]), ZARRS_ERROR_BUFFER_SIZE, "present_out");
    expect_err(start(1, &mut out[..100], &mut present), ZARRS_ERROR_BUFFER_SIZE, "out");

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

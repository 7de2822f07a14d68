//! The C ABI exercised exactly as a C program uses it: every call goes through the exported
//! `extern "C"` functions with raw pointers, explicit lengths and NULLs, and every result code
//! is checked against the contract in `include/zarrs_ffi.h`.
//!
//! Conventions used throughout: arrays are `uint16` with a fill value of [`FILL`] (not 0, so a
//! zeroed buffer can never pass for the fill value), output buffers start filled with
//! [`SENTINEL`] (so "not written" is visible), and stored values follow [`value`], which never
//! equals either.
//!
//! This file holds those helpers; each module tests one C group. The rules every call shares
//! are stated once, as tables: [`null_arguments`] (every pointer argument that must not be
//! NULL) and [`buffer_sizes`] (every buffer of the wrong length).

use std::ffi::{c_char, CStr};
use std::path::{Path, PathBuf};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;

use zarrs_ffi::*;
use zarrs_ffi::ZarrsResult::{self, *};

mod arrays;
mod basics;
mod batches;
mod buffer_sizes;
mod codecs;
mod confinement;
mod gathers;
mod null_arguments;
mod queue;
mod regions;
mod threads;
mod variable;

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

/// `s` as a C string argument: pointer and length.
fn text(s: &'static str) -> (*const c_char, usize) {
    (s.as_ptr().cast::<c_char>(), s.len())
}

/// An S3 configuration for a bucket on an address where nothing listens.
fn s3_config(bucket: &'static str, key: Option<&'static str>, secret: Option<&'static str>) -> ZarrsS3Config {
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
}

/// `s` as an optional C string argument: NULL for None.
fn maybe_text(s: Option<&'static str>) -> (*const c_char, usize) {
    s.map_or((null(), 0), text)
}

/// A GCS configuration for a bucket on an address where nothing listens, with the given
/// credentials (service account key, service account path, bearer token).
fn gcs_config(bucket: &'static str, key: Option<&'static str>, path: Option<&'static str>, token: Option<&'static str>) -> ZarrsGcsConfig {
    let (bucket, bucket_len) = text(bucket);
    let (base_url, base_url_len) = text("http://127.0.0.1:9");
    let (service_account_key, service_account_key_len) = maybe_text(key);
    let (service_account_path, service_account_path_len) = maybe_text(path);
    let (bearer_token, bearer_token_len) = maybe_text(token);
    ZarrsGcsConfig {
        bucket,
        bucket_len,
        prefix: null(),
        prefix_len: 0,
        base_url,
        base_url_len,
        service_account_key,
        service_account_key_len,
        service_account_path,
        service_account_path_len,
        bearer_token,
        bearer_token_len,
        anonymous: 0,
        read_only: 0,
    }
}

/// An Azure configuration for a container on an address where nothing listens, with the
/// given credentials (access key, SAS token, bearer token).
fn azure_config(container: &'static str, key: Option<&'static str>, sas: Option<&'static str>, token: Option<&'static str>) -> ZarrsAzureConfig {
    let (account, account_len) = text("devstoreaccount1");
    let (container, container_len) = text(container);
    let (endpoint, endpoint_len) = text("http://127.0.0.1:9/devstoreaccount1");
    let (access_key, access_key_len) = maybe_text(key);
    let (sas_token, sas_token_len) = maybe_text(sas);
    let (bearer_token, bearer_token_len) = maybe_text(token);
    ZarrsAzureConfig {
        account,
        account_len,
        container,
        container_len,
        prefix: null(),
        prefix_len: 0,
        endpoint,
        endpoint_len,
        access_key,
        access_key_len,
        sas_token,
        sas_token_len,
        bearer_token,
        bearer_token_len,
        anonymous: 0,
        read_only: 0,
    }
}

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

    /// [`Ortho::read`] started on `queue` as `token` (the buffers must outlive the token).
    fn start(&self, queue: *const ZarrsCompletionQueue, token: u64, array: &Array, out: &mut [u16], out_shape: [u64; 2], present: &mut [u8]) -> ZarrsResult {
        zarrs_array_gather_orthogonal_start(
            queue,
            token,
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

    /// [`Points::read`] started on `queue` as `token` (the buffers must outlive the token).
    fn start(&self, queue: *const ZarrsCompletionQueue, token: u64, array: &Array, out: &mut [u16], present: &mut [u8]) -> ZarrsResult {
        zarrs_array_gather_points_start(
            queue,
            token,
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

/// Assert that nothing was started on `queue`: no token is waiting.
#[track_caller]
fn assert_nothing_started(queue: *const ZarrsCompletionQueue) {
    let (mut tokens, mut codes, mut count) = ([0u64; 2], [0i32; 2], usize::MAX);
    check(zarrs_completion_queue_drain(queue, tokens.as_mut_ptr(), codes.as_mut_ptr(), 2, &mut count));
    assert_eq!(count, 0, "argument errors start nothing");
}

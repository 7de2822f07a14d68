//! Remote storage: S3-compatible object stores and read-only HTTP, through `object_store`.
//!
//! Requests run on one tokio runtime owned by the library (one per process, so a forked
//! child starts its own), never a runtime per call. Batch calls fetch every chunk of a batch
//! concurrently on it, decode and encode on the rayon pool, and store concurrently again
//! (`batch.rs`); other calls go through zarrs' async-to-sync adapter.
//!
//! Requests time out and are retried a bounded number of times, so an unreachable or dying
//! server surfaces as `ZARRS_ERROR_STORAGE` within seconds instead of hanging.

use std::collections::HashMap;
use std::ffi::c_char;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};
use zarrs::storage::byte_range::{ByteRange, ByteRangeIterator};
use zarrs::storage::storage_adapter::async_to_sync::{AsyncToSyncBlockOn, AsyncToSyncStorageAdapter};
use zarrs::storage::{
    AsyncReadableWritableListableStorageTraits, Bytes, ListableStorageTraits, MaybeBytes, MaybeBytesIterator,
    OffsetBytesIterator, ReadableStorageTraits, StorageError, StoreKey, StoreKeys, StoreKeysPrefixes, StorePrefix,
    WritableStorageTraits,
};
use zarrs_object_store::object_store::{self, BackoffConfig, ClientOptions, GetRange, ObjectStore, RetryConfig};
use zarrs_object_store::AsyncObjectStore;

use crate::args;
use crate::error::{FfiError, FfiResult, ZarrsResult};
use crate::panic::boundary;
use crate::storage::ZarrsStorage;

/// How many requests of one batch call are in flight at once.
const CONCURRENT_REQUESTS: usize = 64;

/// The library's runtime for this process.
fn runtime() -> FfiResult<tokio::runtime::Handle> {
    static RUNTIMES: OnceLock<Mutex<HashMap<u32, tokio::runtime::Runtime>>> = OnceLock::new();
    let runtimes = RUNTIMES.get_or_init(Mutex::default);
    let lock = || runtimes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let pid = std::process::id();
    if let Some(runtime) = lock().get(&pid) {
        return Ok(runtime.handle().clone());
    }
    // Built outside the lock: building spawns threads, and a `fork` while the lock is held
    // would leave it held forever in the child.
    let built = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("zarrs-ffi-io")
        .enable_all()
        .build()
        .map_err(|e| FfiError::new(ZarrsResult::ZARRS_ERROR_STORAGE, format!("cannot start the I/O runtime: {e}")))?;
    let mut runtimes = lock();
    if let Some(runtime) = runtimes.get(&pid) {
        // Another thread won the race; ours has run nothing yet.
        built.shutdown_background();
        return Ok(runtime.handle().clone());
    }
    // A parent's runtime is kept (not dropped) in a forked child: its threads do not exist
    // there, and dropping it would wait for them.
    let handle = built.handle().clone();
    runtimes.insert(pid, built);
    Ok(handle)
}

struct BlockOn(tokio::runtime::Handle);

impl AsyncToSyncBlockOn for BlockOn {
    fn block_on<F: core::future::Future>(&self, future: F) -> F::Output {
        self.0.block_on(future)
    }
}

type AsyncStore = dyn AsyncReadableWritableListableStorageTraits;

/// Builds the object-store client from the settings given at open.
type Connect = dyn Fn() -> FfiResult<Arc<dyn ObjectStore>> + Send + Sync;

/// What a remote store uses in one process: the runtime, the client (its connection pool
/// lives on that runtime) and the async and blocking views of it.
struct ProcessClient {
    /// The object store itself, for byte-range reads without a size request first.
    object: Arc<dyn ObjectStore>,
    store: Arc<AsyncStore>,
    blocking: AsyncToSyncStorageAdapter<AsyncStore, BlockOn>,
    runtime: tokio::runtime::Handle,
}

/// A remote store: the async store for batch calls, a blocking view of it for the rest.
///
/// Fork-safe: a forked child (multiprocessing, data-loader workers) inherits the parent's
/// client, whose runtime threads and connections did not survive the fork; using it would
/// hang. So the client is per process: the first call in a new process builds its own from
/// the settings, and the parent's is leaked there, never dropped or used.
pub(crate) struct RemoteStore {
    connect: Box<Connect>,
    client: Mutex<Option<(u32, Arc<ProcessClient>)>>,
    read_only: bool,
}

impl RemoteStore {
    fn new(connect: Box<Connect>, read_only: bool) -> FfiResult<Self> {
        let store = Self { connect, client: Mutex::new(None), read_only };
        // Build now, so bad settings fail at open.
        store.client()?;
        Ok(store)
    }

    /// This process's client, built on first use in each process.
    fn client(&self) -> FfiResult<Arc<ProcessClient>> {
        let lock = || self.client.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let pid = std::process::id();
        if let Some((owner, client)) = &*lock() {
            if *owner == pid {
                return Ok(client.clone());
            }
        }
        // Built outside the lock (building may spawn threads; see `runtime`).
        let runtime = runtime()?;
        let object = (self.connect)()?;
        let store: Arc<AsyncStore> = Arc::new(AsyncObjectStore::new(object.clone()));
        let client = Arc::new(ProcessClient {
            object,
            blocking: AsyncToSyncStorageAdapter::new(store.clone(), BlockOn(runtime.clone())),
            store,
            runtime,
        });
        let mut slot = lock();
        if let Some((owner, existing)) = &*slot {
            if *owner == pid {
                return Ok(existing.clone());
            }
        }
        if let Some((_, inherited)) = slot.take() {
            // The parent's client in a forked child: dropping it could touch connections and
            // a runtime whose threads do not exist here.
            std::mem::forget(inherited);
        }
        *slot = Some((pid, client.clone()));
        Ok(client)
    }

    /// [`Self::client`] for the storage traits.
    fn storage_client(&self) -> Result<Arc<ProcessClient>, StorageError> {
        self.client().map_err(|e| StorageError::Other(e.message))
    }

    fn check_writable(&self) -> Result<(), StorageError> {
        if self.read_only {
            Err(StorageError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// Fetch whole values concurrently (None: missing), in the order of `keys`.
    pub(crate) fn get_many(&self, keys: Vec<StoreKey>) -> Result<Vec<MaybeBytes>, StorageError> {
        let client = self.storage_client()?;
        let store = &client.store;
        client.runtime.block_on(
            stream::iter(keys)
                .map(|key| async move { store.get(&key).await })
                .buffered(CONCURRENT_REQUESTS)
                .try_collect(),
        )
    }

    /// Store (Some) or erase (None) values concurrently. Each value is replaced whole.
    pub(crate) fn set_many(&self, values: Vec<(StoreKey, Option<Vec<u8>>)>) -> Result<(), StorageError> {
        self.check_writable()?;
        let client = self.storage_client()?;
        let store = &client.store;
        client.runtime.block_on(
            stream::iter(values)
                .map(|(key, value)| async move {
                    match value {
                        Some(bytes) => store.set(&key, Bytes::from(bytes)).await,
                        None => store.erase(&key).await,
                    }
                })
                .buffer_unordered(CONCURRENT_REQUESTS)
                .try_collect::<Vec<()>>(),
        )?;
        Ok(())
    }
}

impl ReadableStorageTraits for RemoteStore {
    fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        self.storage_client()?.blocking.get(key)
    }

    /// Byte ranges straight from the object store: bounded ranges in one coalesced
    /// `get_ranges`, suffixes and open ends one ranged GET each. (The generic adapter asks
    /// for the value's size first: one more round trip per call.)
    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, StorageError> {
        let path = object_store::path::Path::from(key.as_str());
        let ranges: Vec<ByteRange> = byte_ranges.collect();
        let client = self.storage_client()?;
        let object = &client.object;
        let fetched = client.runtime.block_on(async {
            let bounded: Option<Vec<std::ops::Range<u64>>> = ranges
                .iter()
                .map(|range| match range {
                    ByteRange::FromStart(offset, Some(length)) => Some(*offset..offset + length),
                    _ => None,
                })
                .collect();
            if let Some(bounded) = bounded {
                return object.get_ranges(&path, &bounded).await;
            }
            let mut out = Vec::with_capacity(ranges.len());
            for range in &ranges {
                let range = match *range {
                    ByteRange::FromStart(offset, Some(length)) => GetRange::Bounded(offset..offset + length),
                    ByteRange::FromStart(offset, None) => GetRange::Offset(offset),
                    ByteRange::Suffix(length) => GetRange::Suffix(length),
                };
                let options = object_store::GetOptions::new().with_range(Some(range));
                out.push(object.get_opts(&path, options).await?.bytes().await?);
            }
            Ok(out)
        });
        match fetched {
            Ok(values) => Ok(Some(Box::new(values.into_iter().map(Ok)))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(StorageError::Other(err.to_string())),
        }
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        self.storage_client()?.blocking.size_key(key)
    }

    fn supports_get_partial(&self) -> bool {
        true
    }
}

impl ListableStorageTraits for RemoteStore {
    fn list(&self) -> Result<StoreKeys, StorageError> {
        self.storage_client()?.blocking.list()
    }

    fn list_prefix(&self, prefix: &StorePrefix) -> Result<StoreKeys, StorageError> {
        self.storage_client()?.blocking.list_prefix(prefix)
    }

    fn list_dir(&self, prefix: &StorePrefix) -> Result<StoreKeysPrefixes, StorageError> {
        self.storage_client()?.blocking.list_dir(prefix)
    }

    fn size_prefix(&self, prefix: &StorePrefix) -> Result<u64, StorageError> {
        self.storage_client()?.blocking.size_prefix(prefix)
    }
}

impl WritableStorageTraits for RemoteStore {
    fn set(&self, key: &StoreKey, value: Bytes) -> Result<(), StorageError> {
        self.check_writable()?;
        self.storage_client()?.blocking.set(key, value)
    }

    fn set_partial_many(&self, _key: &StoreKey, _offset_values: OffsetBytesIterator) -> Result<(), StorageError> {
        Err(StorageError::Unsupported("object stores replace whole values".into()))
    }

    fn erase(&self, key: &StoreKey) -> Result<(), StorageError> {
        self.check_writable()?;
        self.storage_client()?.blocking.erase(key)
    }

    fn erase_prefix(&self, prefix: &StorePrefix) -> Result<(), StorageError> {
        self.check_writable()?;
        self.storage_client()?.blocking.erase_prefix(prefix)
    }

    fn supports_set_partial(&self) -> bool {
        false
    }
}

/// Client settings shared by every remote store: bounded timeouts and retries.
fn client_options(allow_http: bool) -> (ClientOptions, RetryConfig) {
    let options = ClientOptions::new()
        .with_allow_http(allow_http)
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(60));
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 3,
        retry_timeout: Duration::from_secs(15),
    };
    (options, retry)
}

fn into_storage(store: RemoteStore, name: String, storage_out: *mut *mut ZarrsStorage) -> FfiResult<()> {
    let store = Arc::new(store);
    let storage = ZarrsStorage {
        store: store.clone(),
        remote: Some(store),
        name,
    };
    // SAFETY: checked non-NULL by the caller; the caller provides a writable pointer slot.
    unsafe { args::write_out(storage_out, Box::into_raw(Box::new(storage))) }
}

fn builder_error(e: object_store::Error) -> FfiError {
    FfiError::invalid(format!("invalid remote store settings: {e}"))
}

/// An optional UTF-8 string argument: NULL means absent.
///
/// # Safety
/// If non-NULL, `ptr` must address `len` readable bytes for the call.
unsafe fn optional_str<'a>(ptr: *const c_char, len: usize, name: &str) -> FfiResult<Option<&'a str>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { args::str(ptr, len, name) }.map(Some)
    }
}

/// Settings of an S3-compatible object store. Every string is UTF-8 with its length in
/// bytes; a NULL pointer leaves a setting unset. Flags are `uint8_t`: 0 is false, any
/// other value true. The library copies what it needs; the caller keeps ownership of the
/// struct and its strings, which need only live for the call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ZarrsS3Config {
    /// The bucket (required).
    pub bucket: *const c_char,
    pub bucket_len: usize,
    /// Key prefix inside the bucket ("" or NULL: the bucket root).
    pub prefix: *const c_char,
    pub prefix_len: usize,
    /// Endpoint URL of an S3-compatible server (NULL: AWS for `region`).
    pub endpoint: *const c_char,
    pub endpoint_len: usize,
    /// Region (NULL: `us-east-1`).
    pub region: *const c_char,
    pub region_len: usize,
    pub access_key_id: *const c_char,
    pub access_key_id_len: usize,
    pub secret_access_key: *const c_char,
    pub secret_access_key_len: usize,
    pub session_token: *const c_char,
    pub session_token_len: usize,
    /// Nonzero: send unsigned requests (public buckets); credentials are then ignored.
    pub anonymous: u8,
    /// Nonzero: address buckets as `endpoint/bucket` (as most S3-compatible servers want)
    /// rather than `bucket.endpoint`.
    pub path_style: u8,
    /// Nonzero: writes and erases fail with `ZARRS_ERROR_READ_ONLY`.
    pub read_only: u8,
}

/// Open an S3-compatible object store. Keys are stored under `prefix` in the bucket.
/// Credentials are used exactly as given (none are read from the environment). Plain
/// `http://` endpoints are allowed.
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn zarrs_storage_open_s3(config: *const ZarrsS3Config, storage_out: *mut *mut ZarrsStorage) -> ZarrsResult {
    boundary(|| {
        args::require_out(storage_out, "storage_out")?;
        // SAFETY: a valid config per the contract; each string addresses its length.
        let config = unsafe { args::read(config, "config")? };
        let bucket = unsafe { args::str(config.bucket, config.bucket_len, "bucket")? };
        let prefix = unsafe { optional_str(config.prefix, config.prefix_len, "prefix")? }.unwrap_or("");
        let endpoint = unsafe { optional_str(config.endpoint, config.endpoint_len, "endpoint")? };
        let region = unsafe { optional_str(config.region, config.region_len, "region")? };
        let key = unsafe { optional_str(config.access_key_id, config.access_key_id_len, "access_key_id")? };
        let secret = unsafe { optional_str(config.secret_access_key, config.secret_access_key_len, "secret_access_key")? };
        let token = unsafe { optional_str(config.session_token, config.session_token_len, "session_token")? };
        if bucket.is_empty() {
            return Err(FfiError::invalid("`bucket` must not be empty"));
        }
        let (options, retry) = client_options(true);
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(region.unwrap_or("us-east-1"))
            .with_virtual_hosted_style_request(config.path_style == 0)
            .with_client_options(options)
            .with_retry(retry)
            .with_skip_signature(config.anonymous != 0);
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if config.anonymous == 0 {
            if let (Some(key), Some(secret)) = (key, secret) {
                builder = builder.with_access_key_id(key).with_secret_access_key(secret);
            } else {
                return Err(FfiError::invalid("S3 credentials need both `access_key_id` and `secret_access_key`, or `anonymous`"));
            }
            if let Some(token) = token {
                builder = builder.with_token(token);
            }
        }
        let prefix = prefix.trim_matches('/').to_string();
        let name = format!("s3://{bucket}/{prefix}");
        let connect = move || -> FfiResult<Arc<dyn ObjectStore>> {
            let store = builder.clone().build().map_err(builder_error)?;
            Ok(if prefix.is_empty() {
                Arc::new(store)
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(store, prefix.as_str()))
            })
        };
        into_storage(RemoteStore::new(Box::new(connect), config.read_only != 0)?, name, storage_out)
    })
}

/// Open a read-only HTTP(S) store: keys are fetched from `url/key` (byte ranges for partial
/// reads). Every write or erase fails with `ZARRS_ERROR_READ_ONLY`.
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn zarrs_storage_open_http(url: *const c_char, url_len: usize, storage_out: *mut *mut ZarrsStorage) -> ZarrsResult {
    boundary(|| {
        args::require_out(storage_out, "storage_out")?;
        // SAFETY: `url_len` readable bytes at `url` per the contract.
        let url = unsafe { args::str(url, url_len, "url")? };
        let (options, retry) = client_options(true);
        let builder = object_store::http::HttpBuilder::new()
            .with_url(url.trim_end_matches('/'))
            .with_client_options(options)
            .with_retry(retry);
        let connect = move || -> FfiResult<Arc<dyn ObjectStore>> {
            Ok(Arc::new(builder.clone().build().map_err(builder_error)?))
        };
        into_storage(RemoteStore::new(Box::new(connect), true)?, url.to_string(), storage_out)
    })
}

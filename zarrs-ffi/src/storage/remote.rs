//! Remote storage: S3-compatible object stores, Google Cloud Storage, Azure Blob Storage and
//! read-only HTTP, through `object_store`.
//!
//! Requests run on the library's tokio runtime (one per process: `process.rs`), never a
//! runtime per call. Batch calls fetch every chunk of a batch concurrently on it
//! ([`RemoteStore::get_many`]), decode and encode on the rayon pool, and store concurrently
//! again ([`RemoteStore::set_many`]); other calls go through zarrs' async-to-sync adapter.
//!
//! Requests time out and are retried a bounded number of times, so an unreachable or dying
//! server surfaces as `ZARRS_ERROR_STORAGE` within seconds instead of hanging.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};
use zarrs::storage::byte_range::{ByteRange, ByteRangeIterator};
use zarrs::storage::storage_adapter::async_to_sync::{AsyncToSyncBlockOn, AsyncToSyncStorageAdapter};
use zarrs::storage::{
    AsyncReadableWritableListableStorageTraits, Bytes, ListableStorageTraits, MaybeBytes, MaybeBytesIterator,
    OffsetBytesIterator, ReadableStorageTraits, StorageError, StoreKey, StoreKeys, StoreKeysPrefixes, StorePrefix,
    WritableStorageTraits,
};
use zarrs_object_store::object_store::{self, BackoffConfig, ClientOptions, GetRange, ObjectStore, ObjectStoreExt, RetryConfig};
use zarrs_object_store::AsyncObjectStore;

use super::check_writable;
use super::index_cache::strong;
use super::rounds::{Fetched, Found, Miss};
use crate::error::{FfiError, FfiResult};
use crate::process::{self, PerProcess};

/// How many requests of one batch call are in flight at once.
const CONCURRENT_REQUESTS: usize = 64;

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
/// hang. So the client is per process ([`PerProcess`]): the first call in a new process
/// builds its own from the settings, and the parent's is leaked there, never dropped or used.
pub struct RemoteStore {
    connect: Box<Connect>,
    client: PerProcess<(), ProcessClient>,
    read_only: bool,
    /// Whether the service answers suffix ranges (`bytes=-n`). Azure does not: a suffix
    /// (a shard index) is read there as a bounded range once a HEAD has told the size.
    suffix_ranges: bool,
}

impl RemoteStore {
    fn new(connect: Box<Connect>, read_only: bool) -> FfiResult<Self> {
        let store = Self { connect, client: PerProcess::new(1), read_only, suffix_ranges: true };
        // Build now, so bad settings fail at open.
        store.client()?;
        Ok(store)
    }

    /// This process's client, built on first use in each process.
    fn client(&self) -> FfiResult<Arc<ProcessClient>> {
        self.client.get_or_build((), || {
            let runtime = process::io_runtime()?;
            let object = (self.connect)()?;
            let store: Arc<AsyncStore> = Arc::new(AsyncObjectStore::new(object.clone()));
            Ok(ProcessClient {
                object,
                blocking: AsyncToSyncStorageAdapter::new(store.clone(), BlockOn(runtime.clone())),
                store,
                runtime,
            })
        })
    }

    /// [`Self::client`] for the storage traits.
    fn storage_client(&self) -> Result<Arc<ProcessClient>, StorageError> {
        self.client().map_err(|e| StorageError::Other(e.message))
    }

    /// Fetch whole values concurrently (None: missing), in the order of `keys`.
    pub fn get_many(&self, keys: Vec<StoreKey>) -> Result<Vec<MaybeBytes>, StorageError> {
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
    pub fn set_many(&self, values: Vec<(StoreKey, Option<Vec<u8>>)>) -> Result<(), StorageError> {
        check_writable(self.read_only)?;
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

impl RemoteStore {
    /// Fetch every value's misses of one round ([`rounds`](super::rounds)) into `fetched`,
    /// all values concurrently: a whole value in one GET; a value's bounded ranges coalesced
    /// (as `get_ranges` does); a suffix or open-ended range one ranged GET each (its response
    /// gives the value's length); a size alone in one HEAD. A value already read at a version
    /// is asked for on the condition it is unchanged (`If-Match`). Returns the values found
    /// changed: their bytes are dropped from `fetched`, and jobs that read them must run again.
    pub fn fetch_round(&self, fetched: &Fetched, misses: Vec<(StoreKey, Vec<Miss>)>) -> Result<Vec<StoreKey>, StorageError> {
        let client = self.storage_client()?;
        let object = &client.object;
        let found: Vec<(StoreKey, Found)> = client.runtime.block_on(
            stream::iter(misses)
                .map(|(key, misses)| {
                    let version = fetched.version(&key);
                    async move {
                        match fetch_value(object.as_ref(), &key, &misses, version, self.suffix_ranges).await {
                            Ok(found) => Ok((key, found)),
                            Err(object_store::Error::NotFound { .. }) => Ok((key, Found::Missing)),
                            Err(object_store::Error::Precondition { .. }) => Ok((key, Found::Changed)),
                            Err(err) => Err(StorageError::Other(format!("{key}: {err}"))),
                        }
                    }
                })
                .buffer_unordered(CONCURRENT_REQUESTS)
                .try_collect(),
        )?;
        Ok(found.into_iter().filter_map(|(key, found)| (!fetched.add(key.clone(), found)).then_some(key)).collect())
    }

    /// Ask whether each value is still at its version (a HEAD with `If-Match`), all at once:
    /// the values that are not (changed or gone).
    pub fn confirm(&self, versions: Vec<(StoreKey, String)>) -> Result<Vec<StoreKey>, StorageError> {
        let client = self.storage_client()?;
        let object = &client.object;
        let checked: Vec<(StoreKey, bool)> = client.runtime.block_on(
            stream::iter(versions)
                .map(|(key, version)| async move {
                    let path = object_store::path::Path::from(key.as_str());
                    let options = object_store::GetOptions { head: true, if_match: Some(version.clone()), ..Default::default() };
                    match object.get_opts(&path, options).await {
                        Ok(result) => {
                            let same = strong(result.meta.e_tag.clone()).as_deref() == Some(version.as_str());
                            Ok((key, same))
                        }
                        Err(object_store::Error::NotFound { .. } | object_store::Error::Precondition { .. }) => Ok((key, false)),
                        Err(err) => Err(StorageError::Other(format!("{key}: {err}"))),
                    }
                })
                .buffer_unordered(CONCURRENT_REQUESTS)
                .try_collect(),
        )?;
        Ok(checked.into_iter().filter_map(|(key, same)| (!same).then_some(key)).collect())
    }
}

/// `range` as the service can answer it: a suffix becomes a bounded range, after a HEAD for
/// the value's size, where suffix ranges are not served. None: the suffix of an empty value
/// (which no bounded range can ask for).
async fn servable(object: &dyn ObjectStore, path: &object_store::path::Path, range: GetRange, suffix_ranges: bool) -> Result<Option<GetRange>, object_store::Error> {
    match range {
        GetRange::Suffix(length) if !suffix_ranges => {
            let size = object.head(path).await?.size;
            Ok((size > 0).then(|| GetRange::Bounded(size.saturating_sub(length)..size)))
        }
        range => Ok(Some(range)),
    }
}

/// What [`RemoteStore::fetch_round`] fetches for one value, every request conditional on
/// `version` when given. Every response must give the same strong ETag (or none, from a
/// store that gives none), `version` if given: else the value changed between requests (or
/// since), whatever a server that ignores `If-Match` answered. Where the service serves no
/// suffix ranges, a suffix is a bounded range after a HEAD (conditional too) for the size.
async fn fetch_value(object: &dyn ObjectStore, key: &StoreKey, misses: &[Miss], version: Option<String>, suffix_ranges: bool) -> Result<Found, object_store::Error> {
    let path = object_store::path::Path::from(key.as_str());
    let conditional = |range: Option<GetRange>| object_store::GetOptions { range, if_match: version.clone(), ..Default::default() };
    // The ETag of every response, as one: Err when they disagree.
    let seen = Mutex::new(Ok(version.clone()));
    let saw = |etag: Option<String>| {
        let mut seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let tag = strong(etag);
        *seen = match &*seen {
            Ok(None) if version.is_none() => Ok(tag),
            Ok(Some(held)) if tag.as_ref() == Some(held) => Ok(tag),
            _ => Err(()),
        };
    };
    let found = |size: Option<u64>, parts: Vec<(u64, Bytes)>| {
        match seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone() {
            Ok(version) => Found::Parts { size, parts, version },
            Err(()) => Found::Changed,
        }
    };
    if misses.contains(&Miss::Whole) {
        let result = object.get_opts(&path, conditional(None)).await?;
        saw(result.meta.e_tag.clone());
        let bytes = result.bytes().await?;
        return Ok(found(Some(bytes.len() as u64), vec![(0, bytes)]));
    }
    let mut size = None;
    let mut parts = Vec::new();
    let bounded: Vec<std::ops::Range<u64>> = misses
        .iter()
        .filter_map(|miss| match miss {
            Miss::Range(ByteRange::FromStart(offset, Some(length))) => Some(*offset..offset.saturating_add(*length)),
            _ => None,
        })
        .collect();
    if !bounded.is_empty() {
        let fetch = |range: std::ops::Range<u64>| {
            let (path, options, saw) = (&path, conditional(Some(GetRange::Bounded(range))), &saw);
            async move {
                let result = object.get_opts(path, options).await?;
                saw(result.meta.e_tag.clone());
                result.bytes().await
            }
        };
        let fetched = object_store::coalesce_ranges(&bounded, fetch, object_store::OBJECT_STORE_COALESCE_DEFAULT).await?;
        parts.extend(bounded.iter().map(|r| r.start).zip(fetched));
    }
    for miss in misses {
        let range = match *miss {
            Miss::Range(ByteRange::FromStart(offset, None)) => GetRange::Offset(offset),
            Miss::Range(ByteRange::Suffix(length)) => GetRange::Suffix(length),
            _ => continue,
        };
        let range = match range {
            GetRange::Suffix(length) if !suffix_ranges => {
                let head = object.get_opts(&path, object_store::GetOptions { head: true, ..conditional(None) }).await?;
                saw(head.meta.e_tag.clone());
                let total = head.meta.size;
                if total == 0 {
                    size = Some(0);
                    parts.push((0, Bytes::new()));
                    continue;
                }
                GetRange::Bounded(total.saturating_sub(length)..total)
            }
            range => range,
        };
        let result = object.get_opts(&path, conditional(Some(range))).await?;
        saw(result.meta.e_tag.clone());
        let (start, total) = (result.range.start, result.meta.size);
        size = Some(total);
        parts.push((start, result.bytes().await?));
    }
    if size.is_none() && misses.contains(&Miss::Size) {
        let result = object.get_opts(&path, object_store::GetOptions { head: true, ..conditional(None) }).await?;
        saw(result.meta.e_tag.clone());
        size = Some(result.meta.size);
    }
    Ok(found(size, parts))
}

impl ReadableStorageTraits for RemoteStore {
    /// One GET. (The blocking adapter's `get` is a read of the range `0..`, which the async
    /// store answers with a HEAD for the size first: a round trip more for every metadata
    /// document and whole chunk read outside a batch.)
    fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        let client = self.storage_client()?;
        client.runtime.block_on(client.store.get(key))
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
                let Some(range) = servable(object.as_ref(), &path, range, self.suffix_ranges).await? else {
                    out.push(Bytes::new());
                    continue;
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
        check_writable(self.read_only)?;
        self.storage_client()?.blocking.set(key, value)
    }

    fn set_partial_many(&self, _key: &StoreKey, _offset_values: OffsetBytesIterator) -> Result<(), StorageError> {
        Err(StorageError::Unsupported("object stores replace whole values".into()))
    }

    fn erase(&self, key: &StoreKey) -> Result<(), StorageError> {
        check_writable(self.read_only)?;
        self.storage_client()?.blocking.erase(key)
    }

    fn erase_prefix(&self, prefix: &StorePrefix) -> Result<(), StorageError> {
        check_writable(self.read_only)?;
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

fn builder_error(e: object_store::Error) -> FfiError {
    FfiError::invalid(format!("invalid remote store settings: {e}"))
}


/// Settings of an S3-compatible object store (see `ZarrsS3Config`); absent strings are None.
pub struct S3Settings<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub endpoint: Option<&'a str>,
    pub region: Option<&'a str>,
    pub access_key_id: Option<&'a str>,
    pub secret_access_key: Option<&'a str>,
    pub session_token: Option<&'a str>,
    pub anonymous: bool,
    pub path_style: bool,
    pub read_only: bool,
}

impl RemoteStore {
    /// Open an S3-compatible object store; returns it with its name for messages
    /// (`s3://bucket/prefix`). Credentials are used exactly as given.
    pub fn s3(settings: &S3Settings) -> FfiResult<(Self, String)> {
        let S3Settings { bucket, prefix, endpoint, region, .. } = *settings;
        if bucket.is_empty() {
            return Err(FfiError::invalid("`bucket` must not be empty"));
        }
        let (options, retry) = client_options(true);
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(region.unwrap_or("us-east-1"))
            .with_virtual_hosted_style_request(!settings.path_style)
            .with_client_options(options)
            .with_retry(retry)
            .with_skip_signature(settings.anonymous);
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if !settings.anonymous {
            let (Some(key), Some(secret)) = (settings.access_key_id, settings.secret_access_key) else {
                return Err(FfiError::invalid("S3 credentials need both `access_key_id` and `secret_access_key`, or `anonymous`"));
            };
            builder = builder.with_access_key_id(key).with_secret_access_key(secret);
            if let Some(token) = settings.session_token {
                builder = builder.with_token(token);
            }
        }
        let name = format!("s3://{bucket}/{}", prefix.trim_matches('/'));
        let connect = connect_with(builder, object_store::aws::AmazonS3Builder::build, prefix);
        Ok((Self::new(connect, settings.read_only)?, name))
    }

    /// Open a read-only HTTP(S) store: keys are fetched from `url/key`.
    pub fn http(url: &str) -> FfiResult<Self> {
        let (options, retry) = client_options(true);
        let builder = object_store::http::HttpBuilder::new()
            .with_url(url.trim_end_matches('/'))
            .with_client_options(options)
            .with_retry(retry);
        let connect = move || -> FfiResult<Arc<dyn ObjectStore>> {
            Ok(Arc::new(builder.clone().build().map_err(builder_error)?))
        };
        Self::new(Box::new(connect), true)
    }
}

/// A client builder, kept to build a client again in each process ([`RemoteStore`] is fork-safe).
fn connect_with<B, S>(builder: B, build: fn(B) -> object_store::Result<S>, prefix: &str) -> Box<Connect>
where
    B: Clone + Send + Sync + 'static,
    S: ObjectStore,
{
    let prefix = prefix.trim_matches('/').to_string();
    Box::new(move || -> FfiResult<Arc<dyn ObjectStore>> {
        let store = build(builder.clone()).map_err(builder_error)?;
        Ok(if prefix.is_empty() {
            Arc::new(store)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(store, prefix.as_str()))
        })
    })
}

/// The one credential source given, by name, or an error naming them all when none or more
/// than one is: the library never picks between credentials or looks for more.
fn one_credential<T>(service: &str, sources: [(&'static str, Option<T>); 3]) -> FfiResult<(&'static str, T)> {
    let given: Vec<&'static str> = sources.iter().filter(|(_, v)| v.is_some()).map(|(name, _)| *name).collect();
    let names = sources.iter().map(|(name, _)| format!("`{name}`")).collect::<Vec<_>>().join(", ");
    if given.len() > 1 {
        return Err(FfiError::invalid(format!(
            "{service} credentials: give one of {names} or `anonymous`, not {}",
            given.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(" and ")
        )));
    }
    sources
        .into_iter()
        .find_map(|(name, value)| value.map(|value| (name, value)))
        .ok_or_else(|| FfiError::invalid(format!("{service} credentials need one of {names}, or `anonymous`")))
}

/// Settings of a Google Cloud Storage bucket (see `ZarrsGcsConfig`); absent strings are None.
pub struct GcsSettings<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub base_url: Option<&'a str>,
    pub service_account_key: Option<&'a str>,
    pub service_account_path: Option<&'a str>,
    pub bearer_token: Option<&'a str>,
    pub anonymous: bool,
    pub read_only: bool,
}

impl RemoteStore {
    /// Open a Google Cloud Storage bucket; returns it with its name for messages
    /// (`gs://bucket/prefix`). Exactly one credential source, used as given: application
    /// default credentials, the metadata server and the environment are never consulted.
    pub fn gcs(settings: &GcsSettings) -> FfiResult<(Self, String)> {
        use object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder};

        let GcsSettings { bucket, prefix, base_url, .. } = *settings;
        if bucket.is_empty() {
            return Err(FfiError::invalid("`bucket` must not be empty"));
        }
        let (options, retry) = client_options(true);
        let mut builder = GoogleCloudStorageBuilder::new()
            .with_bucket_name(bucket)
            .with_client_options(options)
            .with_retry(retry)
            .with_skip_signature(settings.anonymous);
        if let Some(base_url) = base_url {
            builder = builder.with_base_url(base_url.trim_end_matches('/'));
        }
        let static_token = |bearer: &str| Arc::new(object_store::StaticCredentialProvider::new(GcpCredential { bearer: bearer.to_string() }));
        if settings.anonymous {
            // Unsigned requests; a credential is still set so that the builder does not go
            // looking for application default credentials it would never use.
            builder = builder.with_credentials(static_token(""));
        } else {
            let sources = [
                ("service_account_key", settings.service_account_key),
                ("service_account_path", settings.service_account_path),
                ("bearer_token", settings.bearer_token),
            ];
            builder = match one_credential("GCS", sources)? {
                ("service_account_key", key) => builder.with_service_account_key(key),
                ("service_account_path", path) => builder.with_service_account_path(path),
                (_, token) => builder.with_credentials(static_token(token)),
            };
        }
        let name = format!("gs://{bucket}/{}", prefix.trim_matches('/'));
        let connect = connect_with(builder, GoogleCloudStorageBuilder::build, prefix);
        Ok((Self::new(connect, settings.read_only)?, name))
    }
}

/// Settings of an Azure Blob Storage container (see `ZarrsAzureConfig`); absent strings are None.
pub struct AzureSettings<'a> {
    pub account: &'a str,
    pub container: &'a str,
    pub prefix: &'a str,
    pub endpoint: Option<&'a str>,
    pub access_key: Option<&'a str>,
    pub sas_token: Option<&'a str>,
    pub bearer_token: Option<&'a str>,
    pub anonymous: bool,
    pub read_only: bool,
}

impl RemoteStore {
    /// Open an Azure Blob Storage container; returns it with its name for messages
    /// (`az://account/container/prefix`). Exactly one credential source, used as given:
    /// managed identity, the Azure CLI and the environment are never consulted.
    pub fn azure(settings: &AzureSettings) -> FfiResult<(Self, String)> {
        use object_store::azure::{AzureConfigKey, AzureCredential, MicrosoftAzureBuilder};

        let AzureSettings { account, container, prefix, endpoint, .. } = *settings;
        if account.is_empty() {
            return Err(FfiError::invalid("`account` must not be empty"));
        }
        if container.is_empty() {
            return Err(FfiError::invalid("`container` must not be empty"));
        }
        let (options, retry) = client_options(true);
        let mut builder = MicrosoftAzureBuilder::new()
            .with_account(account)
            .with_container_name(container)
            .with_client_options(options)
            .with_retry(retry)
            .with_skip_signature(settings.anonymous);
        if let Some(endpoint) = endpoint {
            // The account's blob URL, as `https://{account}.blob.core.windows.net` is on Azure;
            // an emulator's includes the account (`http://127.0.0.1:10000/devstoreaccount1`).
            builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
        }
        if settings.anonymous {
            // A credential is still set so that the builder does not set up managed identity.
            let none = AzureCredential::BearerToken(String::new());
            builder = builder.with_credentials(Arc::new(object_store::StaticCredentialProvider::new(none)));
        } else {
            let sources = [
                ("access_key", settings.access_key),
                ("sas_token", settings.sas_token),
                ("bearer_token", settings.bearer_token),
            ];
            builder = match one_credential("Azure", sources)? {
                ("access_key", key) => builder.with_access_key(key),
                ("sas_token", sas) => builder.with_config(AzureConfigKey::SasKey, sas.trim_start_matches('?')),
                (_, token) => builder.with_bearer_token_authorization(token),
            };
        }
        let name = format!("az://{account}/{container}/{}", prefix.trim_matches('/'));
        let connect = connect_with(builder, MicrosoftAzureBuilder::build, prefix);
        let mut store = Self::new(connect, settings.read_only)?;
        store.suffix_ranges = false;
        Ok((store, name))
    }
}

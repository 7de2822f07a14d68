//! The storage handle.

use std::sync::Arc;

use zarrs::storage::store::MemoryStore;
use zarrs::storage::ReadableWritableListableStorage;

use crate::error::{FfiError, FfiResult};
use crate::storage::{AzureSettings, GcsSettings, LocalStore, RemoteStore, S3Settings};

/// An open storage. Create with a `zarrs_storage_open_*` function, free with
/// [`zarrs_storage_free`]. Arrays opened on it keep it alive, so it may be freed before them.
///
/// Thread safety: a storage may be used from many threads at once.
pub struct ZarrsStorage {
    pub(crate) store: ReadableWritableListableStorage,
    /// Set for remote stores, whose batch calls fetch and store concurrently.
    pub(crate) remote: Option<Arc<RemoteStore>>,
    /// Set for directories, whose writes can be asked to fsync.
    pub(crate) local: Option<Arc<LocalStore>>,
    /// Where the store is (a directory, a URL), for error messages.
    pub(crate) name: String,
}

impl ZarrsStorage {
    /// A directory (see [`LocalStore::open`]).
    pub fn filesystem(path: &str, direct_io: bool, read_only: bool) -> FfiResult<Self> {
        if path.is_empty() {
            return Err(FfiError::invalid("`path` must not be empty"));
        }
        let store = Arc::new(LocalStore::open(path, direct_io, read_only)?);
        Ok(Self {
            store: store.clone(),
            remote: None,
            local: Some(store),
            name: path.to_string(),
        })
    }

    /// An empty in-memory store.
    pub fn memory() -> Self {
        Self {
            store: Arc::new(MemoryStore::new()),
            remote: None,
            local: None,
            name: "memory".to_string(),
        }
    }

    /// An S3-compatible object store.
    pub fn s3(settings: &S3Settings) -> FfiResult<Self> {
        let (store, name) = RemoteStore::s3(settings)?;
        Ok(Self::remote(store, name))
    }

    /// A Google Cloud Storage bucket.
    pub fn gcs(settings: &GcsSettings) -> FfiResult<Self> {
        let (store, name) = RemoteStore::gcs(settings)?;
        Ok(Self::remote(store, name))
    }

    /// An Azure Blob Storage container.
    pub fn azure(settings: &AzureSettings) -> FfiResult<Self> {
        let (store, name) = RemoteStore::azure(settings)?;
        Ok(Self::remote(store, name))
    }

    /// A read-only HTTP(S) store.
    pub fn http(url: &str) -> FfiResult<Self> {
        Ok(Self::remote(RemoteStore::http(url)?, url.to_string()))
    }

    fn remote(store: RemoteStore, name: String) -> Self {
        let store = Arc::new(store);
        Self {
            store: store.clone(),
            remote: Some(store),
            local: None,
            name,
        }
    }
}

impl crate::registry::Handle for ZarrsStorage {
    const NAME: &'static str = "ZarrsStorage";
}

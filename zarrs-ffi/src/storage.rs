//! Storage handles: where chunk bytes live.
//!
//! The filesystem store reads through zarrs' `FilesystemStore` (with its optional direct
//! I/O) but writes atomically, the way zarr-python's `LocalStore` does: each value goes to a
//! temporary file beside its destination and is renamed over it. A write that fails or is
//! interrupted therefore leaves the old value or the new one, never a torn chunk, and no
//! per-chunk fsync is paid (zarrs' own `set` syncs every file).

use std::ffi::c_char;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use zarrs::filesystem::{FilesystemStore, FilesystemStoreOptions};
use zarrs::storage::byte_range::ByteRangeIterator;
use zarrs::storage::store::MemoryStore;
use zarrs::storage::{
    Bytes, ListableStorageTraits, MaybeBytes, MaybeBytesIterator, OffsetBytesIterator,
    ReadableStorageTraits, ReadableWritableListableStorage, StorageError, StoreKey, StoreKeys,
    StoreKeysPrefixes, StorePrefix, WritableStorageTraits,
};

use crate::args;
use crate::error::{FfiError, ZarrsResult};
use crate::panic::boundary;

/// An open storage. Create with a `zarrs_storage_open_*` function, free with
/// [`zarrs_storage_free`]. Arrays opened on it keep it alive, so it may be freed before them.
///
/// Thread safety: a storage may be used from many threads at once.
pub struct ZarrsStorage {
    pub(crate) store: ReadableWritableListableStorage,
    /// Set for remote stores, whose batch calls fetch and store concurrently.
    pub(crate) remote: Option<Arc<crate::remote::RemoteStore>>,
    /// Where the store is (a directory, a URL), for error messages.
    pub(crate) name: String,
}

fn io_error(err: std::io::Error) -> StorageError {
    StorageError::IOError(Arc::new(err))
}

/// A local directory: zarrs' filesystem store for reads, atomic rename for writes.
#[derive(Debug)]
struct LocalStore {
    inner: FilesystemStore,
    read_only: bool,
}

impl LocalStore {
    fn check_writable(&self) -> Result<(), StorageError> {
        if self.read_only {
            Err(StorageError::ReadOnly)
        } else {
            Ok(())
        }
    }

    fn temporary_path(path: &Path) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{}-{unique}.partial", std::process::id()));
        path.with_file_name(name)
    }
}

impl ReadableStorageTraits for LocalStore {
    fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        self.inner.get(key)
    }

    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, StorageError> {
        self.inner.get_partial_many(key, byte_ranges)
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        self.inner.size_key(key)
    }

    fn supports_get_partial(&self) -> bool {
        self.inner.supports_get_partial()
    }
}

impl ListableStorageTraits for LocalStore {
    fn list(&self) -> Result<StoreKeys, StorageError> {
        self.inner.list()
    }

    fn list_prefix(&self, prefix: &StorePrefix) -> Result<StoreKeys, StorageError> {
        self.inner.list_prefix(prefix)
    }

    fn list_dir(&self, prefix: &StorePrefix) -> Result<StoreKeysPrefixes, StorageError> {
        self.inner.list_dir(prefix)
    }

    fn size_prefix(&self, prefix: &StorePrefix) -> Result<u64, StorageError> {
        self.inner.size_prefix(prefix)
    }
}

impl WritableStorageTraits for LocalStore {
    fn set(&self, key: &StoreKey, value: Bytes) -> Result<(), StorageError> {
        self.check_writable()?;
        let path = self.inner.key_to_fspath(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        let temporary = Self::temporary_path(&path);
        let written = std::fs::File::create(&temporary)
            .and_then(|mut file| file.write_all(&value))
            .and_then(|()| std::fs::rename(&temporary, &path));
        if let Err(err) = written {
            // Best effort: the temporary may not exist if creating it failed.
            let _ = std::fs::remove_file(&temporary);
            return Err(io_error(err));
        }
        Ok(())
    }

    fn set_partial_many(
        &self,
        _key: &StoreKey,
        _offset_values: OffsetBytesIterator,
    ) -> Result<(), StorageError> {
        // In-place partial writes cannot be atomic; `supports_set_partial` is false so
        // zarrs never asks for them.
        Err(StorageError::Unsupported(
            "partial writes are disabled: every write replaces a whole value atomically".into(),
        ))
    }

    fn erase(&self, key: &StoreKey) -> Result<(), StorageError> {
        self.check_writable()?;
        self.inner.erase(key)
    }

    fn erase_prefix(&self, prefix: &StorePrefix) -> Result<(), StorageError> {
        self.check_writable()?;
        self.inner.erase_prefix(prefix)
    }

    fn supports_set_partial(&self) -> bool {
        false
    }
}

/// Open a directory as storage. Keys map to paths below `path`; the directory need not
/// exist yet (it is created on the first write).
///
/// - `path`, `path_len`: the directory, UTF-8, not NUL-terminated.
/// - `direct_io`: nonzero to read with `O_DIRECT` (Linux; the filesystem must support it).
/// - `read_only`: nonzero to make every write or erase fail with `ZARRS_ERROR_READ_ONLY`.
/// - `storage_out`: receives a new handle on success; free it with [`zarrs_storage_free`].
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn zarrs_storage_open_filesystem(
    path: *const c_char,
    path_len: usize,
    direct_io: u8,
    read_only: u8,
    storage_out: *mut *mut ZarrsStorage,
) -> ZarrsResult {
    boundary(|| {
        args::require_out(storage_out, "storage_out")?;
        // SAFETY: the caller passes `path_len` readable bytes at `path` for this call.
        let path = unsafe { args::str(path, path_len, "path")? };
        if path.is_empty() {
            return Err(FfiError::invalid("`path` must not be empty"));
        }
        let mut options = FilesystemStoreOptions::default();
        options.direct_io(direct_io != 0);
        let inner = FilesystemStore::new_with_options(path, options)
            .map_err(|e| FfiError::new(ZarrsResult::ZARRS_ERROR_STORAGE, e.to_string()))?;
        let storage = ZarrsStorage {
            store: Arc::new(LocalStore { inner, read_only: read_only != 0 }),
            remote: None,
            name: path.to_string(),
        };
        // SAFETY: checked non-NULL above; the caller provides a writable pointer slot.
        unsafe { args::write_out(storage_out, Box::into_raw(Box::new(storage))) }
    })
}

/// Open an empty in-memory storage. Arrays opened on it serve the codec-only calls
/// (`zarrs_array_decode_chunks`, `zarrs_array_encode_chunks`) for callers that move chunk
/// bytes themselves; data written to it lives until the last handle using it is freed.
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn zarrs_storage_open_memory(storage_out: *mut *mut ZarrsStorage) -> ZarrsResult {
    boundary(|| {
        args::require_out(storage_out, "storage_out")?;
        let storage = ZarrsStorage {
            store: Arc::new(MemoryStore::new()),
            remote: None,
            name: "memory".to_string(),
        };
        // SAFETY: checked non-NULL above; the caller provides a writable pointer slot.
        unsafe { args::write_out(storage_out, Box::into_raw(Box::new(storage))) }
    })
}

/// Free a storage handle. NULL is a no-op. Arrays opened on the storage stay usable.
///
/// Thread safety: the handle must not be in use by another thread.
#[no_mangle]
pub extern "C" fn zarrs_storage_free(storage: *mut ZarrsStorage) -> ZarrsResult {
    boundary(|| {
        if !storage.is_null() {
            // SAFETY: non-NULL handles come from Box::into_raw in an open function and the
            // caller frees each exactly once.
            drop(unsafe { Box::from_raw(storage) });
        }
        Ok(())
    })
}

//! A local directory: zarrs' filesystem store for reads, atomic replacement for writes.
//!
//! Writes go the way zarr-python's `LocalStore` does: each value goes to a temporary file
//! beside its destination and is renamed over it. A write that fails or is interrupted
//! therefore leaves the old value or the new one, never a torn chunk, and no per-chunk fsync
//! is paid (zarrs' own `set` syncs every file).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use zarrs::filesystem::{FilesystemStore, FilesystemStoreOptions};
use zarrs::storage::byte_range::ByteRangeIterator;
use zarrs::storage::{
    Bytes, ListableStorageTraits, MaybeBytes, MaybeBytesIterator, OffsetBytesIterator, ReadableStorageTraits,
    StorageError, StoreKey, StoreKeys, StoreKeysPrefixes, StorePrefix, WritableStorageTraits,
};

use super::{check_writable, io_error};
use crate::error::{FfiError, FfiResult, ZarrsResult};

/// A local directory: zarrs' filesystem store for reads, atomic rename for writes.
#[derive(Debug)]
pub struct LocalStore {
    inner: FilesystemStore,
    read_only: bool,
}

impl LocalStore {
    /// Open the directory at `path` (created on the first write); `direct_io` reads with
    /// `O_DIRECT`, `read_only` refuses every write and erase.
    pub fn open(path: &str, direct_io: bool, read_only: bool) -> FfiResult<Self> {
        let mut options = FilesystemStoreOptions::default();
        options.direct_io(direct_io);
        let inner = FilesystemStore::new_with_options(path, options)
            .map_err(|e| FfiError::new(ZarrsResult::ZARRS_ERROR_STORAGE, e.to_string()))?;
        Ok(Self { inner, read_only })
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
        check_writable(self.read_only)?;
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
        check_writable(self.read_only)?;
        self.inner.erase(key)
    }

    fn erase_prefix(&self, prefix: &StorePrefix) -> Result<(), StorageError> {
        check_writable(self.read_only)?;
        self.inner.erase_prefix(prefix)
    }

    fn supports_set_partial(&self) -> bool {
        false
    }
}

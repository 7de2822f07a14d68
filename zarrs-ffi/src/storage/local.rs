//! A local directory: zarrs' filesystem store for reads, atomic replacement for writes.
//!
//! Each value is written whole to a file without a name (Linux `O_TMPFILE`, in the
//! destination's directory), which is then linked to the destination's name if it has no
//! value yet, else to a unique hidden name renamed over the destination. A write that fails
//! or a process that dies therefore leaves the old value or the new one, never a torn chunk,
//! and a killed writer leaves a temporary name behind only if it dies between those two calls. Where `O_TMPFILE` is not supported the file is created
//! under the hidden name instead (zarr-python's `LocalStore` way), which a killed writer can
//! leave behind. Temporary names are never reused, so a leftover never breaks a later write.
//!
//! No fsync is paid unless a call asks for it ([`LocalStore::write`]): "old or new" then
//! holds across a power loss too, not only across a process's death.

use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

use zarrs::filesystem::{FilesystemStore, FilesystemStoreOptions};
use zarrs::storage::byte_range::{ByteRange, ByteRangeIterator, InvalidByteRangeError};
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
    /// Reads use `O_DIRECT` (zarrs' aligned reader): [`LocalStore::open_value`] declines.
    direct_io: bool,
    /// Directories this handle has created or written to, each swept of stale temporaries
    /// once. Writes into them skip creating the directory (two system calls per chunk);
    /// one removed since is created again when a write finds it missing.
    known: Mutex<HashSet<PathBuf>>,
}

impl LocalStore {
    /// Open the directory at `path` (created on the first write); `direct_io` reads with
    /// `O_DIRECT`, `read_only` refuses every write and erase.
    pub fn open(path: &str, direct_io: bool, read_only: bool) -> FfiResult<Self> {
        let mut options = FilesystemStoreOptions::default();
        options.direct_io(direct_io);
        let inner = FilesystemStore::new_with_options(path, options)
            .map_err(|e| FfiError::new(ZarrsResult::ZARRS_ERROR_STORAGE, e.to_string()))?;
        Ok(Self { inner, read_only, direct_io, known: Mutex::default() })
    }

    /// Replace the value at `key` whole (see the module docs). With `fsync`, the file is
    /// synced before it takes the key's name and the directory after, so the new value also
    /// survives a power loss once this returns.
    pub fn write(&self, key: &StoreKey, value: &[u8], fsync: bool) -> Result<(), StorageError> {
        check_writable(self.read_only)?;
        let path = self.inner.key_to_fspath(key);
        let parent = path.parent().unwrap_or(Path::new("."));
        let known = self.is_known(parent);
        if !known {
            self.prepare(parent).map_err(io_error)?;
        }
        let written = match replace(parent, &path, value, fsync) {
            // A directory known to exist was removed behind our back: create it again.
            Err(err) if known && err.kind() == io::ErrorKind::NotFound => {
                self.prepare(parent).map_err(io_error)?;
                replace(parent, &path, value, fsync)
            }
            written => written,
        };
        written.map_err(io_error)?;
        if fsync {
            sync_directory(parent).map_err(io_error)?;
        }
        Ok(())
    }

    /// Whether this handle has created or written to `dir` before.
    fn is_known(&self, dir: &Path) -> bool {
        self.known.lock().unwrap_or_else(PoisonError::into_inner).contains(dir)
    }

    /// Create `dir` (and its parents) if missing and, the first time through this handle,
    /// remove the temporaries that writers killed between naming a file and renaming it
    /// left there ([`sweep`]).
    fn prepare(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let first = self.known.lock().unwrap_or_else(PoisonError::into_inner).insert(dir.to_path_buf());
        if first {
            sweep(dir);
        }
        Ok(())
    }

    /// Erase the value at `key`; with `fsync`, the directory is synced after.
    pub fn remove(&self, key: &StoreKey, fsync: bool) -> Result<(), StorageError> {
        check_writable(self.read_only)?;
        self.inner.erase(key)?;
        if fsync {
            let path = self.inner.key_to_fspath(key);
            match path.parent().map(sync_directory) {
                // The directory may never have existed: nothing was erased.
                Some(Err(err)) if err.kind() != io::ErrorKind::NotFound => return Err(io_error(err)),
                _ => {}
            }
        }
        Ok(())
    }
}

impl LocalStore {
    /// The value at `key` opened once for several byte-range reads (a shard's index, then
    /// its inner chunks), or None when reads use `O_DIRECT` (zarrs' aligned reader serves
    /// them). Through zarrs' store each partial read opens and closes the file again.
    ///
    /// Every range comes from the one file opened here: a write that replaces the value
    /// meanwhile (writes rename a new file over the name) is not seen half-way, so an index
    /// and the inner chunks it locates are always of the same version.
    pub fn open_value(&self, key: &StoreKey) -> Result<Option<OpenValue>, StorageError> {
        if self.direct_io {
            return Ok(None);
        }
        let file = match File::open(self.inner.key_to_fspath(key)) {
            Ok(file) => Some(file),
            // Missing: reads as missing, as through zarrs' store.
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(err) => return Err(io_error(err)),
        };
        Ok(Some(OpenValue { key: key.clone(), file, len: OnceLock::new() }))
    }
}

/// One stored value opened for reading ([`LocalStore::open_value`]): a storage of that one
/// key, read with `pread` on one file descriptor. A missing value reads as missing.
#[derive(Debug)]
pub struct OpenValue {
    key: StoreKey,
    file: Option<File>,
    /// The file's length, asked once (`fstat`) and only by a range that needs it.
    len: OnceLock<u64>,
}

impl OpenValue {
    fn check_key(&self, key: &StoreKey) -> Result<(), StorageError> {
        if *key == self.key {
            Ok(())
        } else {
            Err(StorageError::Other(format!("{key} read through the open value of {}", self.key)))
        }
    }

    fn len(&self, file: &File) -> Result<u64, StorageError> {
        if let Some(&len) = self.len.get() {
            return Ok(len);
        }
        let len = file.metadata().map_err(io_error)?.len();
        Ok(*self.len.get_or_init(|| len))
    }

    /// The bytes of `range`. A suffix longer than the value is the whole value (as object
    /// stores answer), so a caller comparing lengths can name a truncated value; a range
    /// reaching past the end fails.
    fn read(&self, file: &File, range: ByteRange) -> Result<Bytes, StorageError> {
        let (offset, length) = match range {
            ByteRange::FromStart(offset, Some(length)) => (offset, length),
            ByteRange::FromStart(offset, None) => {
                let len = self.len(file)?;
                let length = len
                    .checked_sub(offset)
                    .ok_or_else(|| StorageError::from(InvalidByteRangeError::new(range, len)))?;
                (offset, length)
            }
            ByteRange::Suffix(length) => {
                let len = self.len(file)?;
                (len.saturating_sub(length), length.min(len))
            }
        };
        let length = usize::try_from(length).map_err(|_| StorageError::from(InvalidByteRangeError::new(range, u64::MAX)))?;
        let mut buffer = vec![0u8; length];
        read_exact_at(file, &mut buffer, offset).map_err(io_error)?;
        Ok(Bytes::from(buffer))
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buffer, offset)
}

#[cfg(not(unix))]
fn read_exact_at(mut file: &File, buffer: &mut [u8], offset: u64) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buffer)
}

impl ReadableStorageTraits for OpenValue {
    fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        self.get_partial(key, ByteRange::FromStart(0, None))
    }

    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, StorageError> {
        self.check_key(key)?;
        let Some(file) = &self.file else {
            return Ok(None);
        };
        let values: Vec<Result<Bytes, StorageError>> = byte_ranges.map(|range| self.read(file, range)).collect();
        Ok(Some(Box::new(values.into_iter())))
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        self.check_key(key)?;
        self.file.as_ref().map(|file| self.len(file)).transpose()
    }

    fn supports_get_partial(&self) -> bool {
        true
    }
}

const TEMPORARY_SUFFIX: &str = ".partial";

/// Who writes: this host's boot and pid namespace, hashed (0 if unknown, e.g. without
/// `/proc`). Only a writer of the same host and namespace can tell whether a pid is alive.
fn namespace() -> u32 {
    static NAMESPACE: OnceLock<u32> = OnceLock::new();
    *NAMESPACE.get_or_init(|| {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id");
        let pids = std::fs::read_link("/proc/self/ns/pid");
        match (boot, pids) {
            (Ok(boot), Ok(pids)) => {
                // A fixed hash, the same in every process (RandomState is seeded per process).
                let text = format!("{}{}", boot.trim(), pids.display());
                text.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193)).max(1)
            }
            _ => 0,
        }
    })
}

/// A hidden name beside `path` that no process has used: this process's id and namespace,
/// a random number drawn once per process (a pid comes back after a restart) and a counter:
/// `.<name>.<pid>-<namespace>-<random>-<n>.partial`.
fn temporary_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static NONCE: OnceLock<u32> = OnceLock::new();
    let nonce = *NONCE.get_or_init(|| RandomState::new().hash_one(std::process::id()) as u32);
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}-{:08x}-{nonce:08x}-{unique}{TEMPORARY_SUFFIX}", std::process::id(), namespace()));
    path.with_file_name(name)
}

/// The writer of a temporary name: its pid and namespace.
fn temporary_writer(name: &str) -> Option<(u32, u32)> {
    let stem = name.strip_prefix('.')?.strip_suffix(TEMPORARY_SUFFIX)?;
    let (_, tail) = stem.rsplit_once('.')?;
    let mut parts = tail.split('-');
    let pid = parts.next()?.parse().ok()?;
    let namespace = u32::from_str_radix(parts.next()?, 16).ok()?;
    Some((pid, namespace))
}

/// Remove the temporaries in `dir` whose writer is dead: one of this host and pid namespace
/// whose pid no longer exists. Another writer's file in flight is never removed: a live pid
/// (even one reused) or another namespace or host keeps it. Best effort: errors are ignored.
fn sweep(dir: &Path) {
    let ours = namespace();
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((pid, namespace)) = name.to_str().and_then(temporary_writer) else { continue };
        if ours != 0 && namespace == ours && !process_alive(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return true };
    if pid <= 0 {
        return true;
    }
    // SAFETY: signal 0 sends nothing; it only asks whether `pid` exists.
    let sent = unsafe { libc::kill(pid, 0) };
    sent == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true
}

/// Replace the value at `path` in `dir` (an existing directory) whole: an unnamed file
/// where the filesystem has them, else a named temporary.
fn replace(dir: &Path, path: &Path, value: &[u8], fsync: bool) -> io::Result<()> {
    if !write_unnamed(dir, path, value, fsync)? {
        write_named(path, value, fsync)?;
    }
    Ok(())
}

/// Rename `temporary` over `path`, removing `temporary` if that fails.
fn rename_over(temporary: &Path, path: &Path) -> io::Result<()> {
    std::fs::rename(temporary, path).inspect_err(|_| {
        // Best effort: the error that matters is the rename's.
        let _ = std::fs::remove_file(temporary);
    })
}

/// The fallback: create the file under a temporary name, write, (sync,) rename.
fn write_named(path: &Path, value: &[u8], fsync: bool) -> io::Result<()> {
    let temporary = temporary_path(path);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(value)?;
            if fsync {
                file.sync_all()?;
            }
            Ok(())
        });
    if let Err(err) = written {
        // Best effort: the temporary may not exist if creating it failed.
        let _ = std::fs::remove_file(&temporary);
        return Err(err);
    }
    rename_over(&temporary, path)
}

/// Write `value` to an unnamed file in `dir`, (sync,) link it to a temporary name and rename
/// that over `path`. `Ok(false)`: unnamed files are not available here, nothing was done.
#[cfg(target_os = "linux")]
fn write_unnamed(dir: &Path, path: &Path, value: &[u8], fsync: bool) -> io::Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;

    let mut file = match OpenOptions::new().write(true).custom_flags(libc::O_TMPFILE).open(dir) {
        Ok(file) => file,
        // EOPNOTSUPP: this filesystem has no O_TMPFILE; EISDIR: the kernel predates it (3.11).
        Err(err) if matches!(err.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => {
            return Ok(false)
        }
        Err(err) => return Err(err),
    };
    file.write_all(value)?;
    if fsync {
        file.sync_all()?;
    }
    // A new key (every chunk of a first write) takes its name straight away: the name
    // appears with the whole value behind it, and no rename is needed. An existing one
    // fails here (EEXIST, one lookup) and is replaced through a temporary name below.
    match link_unnamed(&file, path) {
        Ok(true) => return Ok(true),
        Ok(false) => return Ok(false),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err),
    }
    // Another process (a pid reused after a crash, another host) can hold a name only if
    // the nonce collides too; even so, take the next name rather than fail.
    for _ in 0..8 {
        let temporary = temporary_path(path);
        match link_unnamed(&file, &temporary) {
            Ok(true) => return rename_over(&temporary, path).map(|()| true),
            Ok(false) => return Ok(false),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("no free temporary name beside {}", path.display())))
}

#[cfg(not(target_os = "linux"))]
fn write_unnamed(_dir: &Path, _path: &Path, _value: &[u8], _fsync: bool) -> io::Result<bool> {
    Ok(false)
}

/// Give the unnamed `file` the name `to`. `Ok(false)`: neither way of naming it works in
/// this process (no `CAP_DAC_READ_SEARCH` for `AT_EMPTY_PATH` before Linux 6.10, and no
/// `/proc`).
#[cfg(target_os = "linux")]
fn link_unnamed(file: &File, to: &Path) -> io::Result<bool> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::io::AsRawFd;

    // Which way worked first in this process, tried first from then on.
    const EMPTY_PATH: u8 = 0;
    const PROC_FD: u8 = 1;
    static WAY: AtomicU8 = AtomicU8::new(EMPTY_PATH);

    let to = CString::new(to.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let fd = file.as_raw_fd();
    let empty_path = || {
        // SAFETY: `fd` is open for the duration of the call (`file` is borrowed), and both
        // paths are NUL-terminated strings that outlive it.
        unsafe { libc::linkat(fd, c"".as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_EMPTY_PATH) }
    };
    let proc_fd = || {
        let from = CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL in a formatted number");
        // SAFETY: both paths are NUL-terminated strings that outlive the call.
        unsafe { libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW) }
    };
    // Either way, a missing capability or /proc shows as ENOENT or EPERM: try the other.
    let order = if WAY.load(Ordering::Relaxed) == PROC_FD { [PROC_FD, EMPTY_PATH] } else { [EMPTY_PATH, PROC_FD] };
    for way in order {
        let linked = if way == EMPTY_PATH { empty_path() } else { proc_fd() };
        if linked == 0 {
            WAY.store(way, Ordering::Relaxed);
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        if !matches!(err.raw_os_error(), Some(libc::ENOENT | libc::EPERM)) {
            return Err(err);
        }
    }
    Ok(false)
}

/// Sync a directory, so the names created or removed in it survive a power loss.
fn sync_directory(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
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
        self.write(key, &value, false)
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
        self.remove(key, false)
    }

    fn erase_prefix(&self, prefix: &StorePrefix) -> Result<(), StorageError> {
        check_writable(self.read_only)?;
        self.inner.erase_prefix(prefix)
    }

    fn supports_set_partial(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("zarrs-ffi-local-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn writes_into_a_directory_removed_behind_our_back() {
        let dir = scratch("removed");
        let store = LocalStore::open(dir.to_str().unwrap(), false, false).unwrap();
        let key = |k: &str| StoreKey::new(k).unwrap();
        store.write(&key("c/0/0"), b"one", false).unwrap();
        assert!(store.is_known(&dir.join("c/0")));
        // Another process removes the array's chunks: the directory this handle created is
        // gone, yet a write there creates it again (and once more with fsync).
        std::fs::remove_dir_all(dir.join("c")).unwrap();
        store.write(&key("c/0/1"), b"two", false).unwrap();
        std::fs::remove_dir_all(dir.join("c")).unwrap();
        store.write(&key("c/0/2"), b"three", true).unwrap();
        assert_eq!(std::fs::read(dir.join("c/0/1")).ok(), None);
        assert_eq!(std::fs::read(dir.join("c/0/2")).unwrap(), b"three");
        store.write(&key("c/0/1"), b"two", false).unwrap();
        assert_eq!(std::fs::read(dir.join("c/0/1")).unwrap(), b"two");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_where_a_directory_should_be_fails_with_its_error() {
        let dir = scratch("blocked");
        let store = LocalStore::open(dir.to_str().unwrap(), false, false).unwrap();
        let key = |k: &str| StoreKey::new(k).unwrap();
        store.write(&key("c/0/0"), b"one", false).unwrap();
        std::fs::remove_dir_all(dir.join("c/0")).unwrap();
        std::fs::write(dir.join("c/0"), b"not a directory").unwrap();
        assert!(store.write(&key("c/0/1"), b"two", false).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

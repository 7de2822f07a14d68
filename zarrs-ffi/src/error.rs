//! Result codes and the thread-local last-error message.
//!
//! Every exported function returns a [`ZarrsResult`]. The code says what kind of failure it
//! was (stable numbers: never renumber, only append); the full message, with shapes, keys and
//! causes, is kept per thread and read with `zarrs_last_error`, so concurrent callers never
//! see each other's errors.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

use zarrs::array::{ArrayCreateError, ArrayError, CodecError};
use zarrs::plugin::PluginCreateError;
use zarrs::storage::StorageError;

/// The result of every exported function. The values are part of the ABI and never change.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZarrsResult {
    /// The call succeeded.
    ZARRS_SUCCESS = 0,
    /// A required pointer argument was NULL.
    ZARRS_ERROR_NULL_POINTER = 1,
    /// An argument was invalid: bad UTF-8, inconsistent lengths, a zero dimension, an
    /// out-of-bounds region, a dimensionality that does not match the array.
    ZARRS_ERROR_INVALID_ARGUMENT = 2,
    /// A caller-provided buffer has the wrong size for the data it must hold.
    ZARRS_ERROR_BUFFER_SIZE = 3,
    /// The storage failed (I/O error, permission denied, missing directory).
    ZARRS_ERROR_STORAGE = 4,
    /// The array metadata is missing or invalid JSON or not valid Zarr metadata.
    ZARRS_ERROR_INVALID_METADATA = 5,
    /// Encoding or decoding a chunk failed (corrupt or truncated chunk bytes).
    ZARRS_ERROR_CODEC = 6,
    /// A checksum (e.g. crc32c) did not match: the chunk is corrupt.
    ZARRS_ERROR_CHECKSUM = 7,
    /// The array uses a codec, data type or feature this build of zarrs cannot handle.
    /// Callers such as the Python pipeline treat this as "use another implementation".
    ZARRS_ERROR_UNSUPPORTED = 8,
    /// The storage is read-only.
    ZARRS_ERROR_READ_ONLY = 9,
    /// A panic was caught at the boundary; it is a bug in zarrs-ffi or zarrs.
    ZARRS_ERROR_PANIC = 10,
    /// Memory for a buffer the call needs (a chunk, a shard, a decoded stream, sized by the
    /// metadata or the stored bytes) could not be allocated. The library stays usable.
    ZARRS_ERROR_OUT_OF_MEMORY = 11,
}

/// An error on its way to the boundary: a code and the message stored for the caller.
#[derive(Debug)]
pub struct FfiError {
    pub code: ZarrsResult,
    pub message: String,
}

impl FfiError {
    pub fn new(code: ZarrsResult, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ZarrsResult::ZARRS_ERROR_INVALID_ARGUMENT, message)
    }

    pub fn null(name: &str) -> Self {
        Self::new(
            ZarrsResult::ZARRS_ERROR_NULL_POINTER,
            format!("`{name}` must not be NULL"),
        )
    }

    pub fn buffer_size(name: &str, got: usize, expected: usize) -> Self {
        Self::new(
            ZarrsResult::ZARRS_ERROR_BUFFER_SIZE,
            format!("`{name}` holds {got} bytes but {expected} bytes are required"),
        )
    }
}

pub type FfiResult<T> = Result<T, FfiError>;

fn storage_code(err: &StorageError) -> ZarrsResult {
    match err {
        StorageError::ReadOnly => ZarrsResult::ZARRS_ERROR_READ_ONLY,
        StorageError::InvalidMetadata(..) | StorageError::MissingMetadata(..) => {
            ZarrsResult::ZARRS_ERROR_INVALID_METADATA
        }
        StorageError::Unsupported(..) => ZarrsResult::ZARRS_ERROR_UNSUPPORTED,
        StorageError::InvalidStoreKey(..) | StorageError::StorePrefixError(..) => {
            ZarrsResult::ZARRS_ERROR_INVALID_ARGUMENT
        }
        _ => ZarrsResult::ZARRS_ERROR_STORAGE,
    }
}

fn codec_code(err: &CodecError) -> ZarrsResult {
    match err {
        CodecError::InvalidChecksum => ZarrsResult::ZARRS_ERROR_CHECKSUM,
        CodecError::StorageError(e) => storage_code(e),
        // Not the store: zarrs' compressors (zstd, gzip, ...) report corrupt or truncated
        // input as I/O errors. Failures of the store itself arrive as `StorageError`.
        CodecError::IOError(_) => ZarrsResult::ZARRS_ERROR_CODEC,
        CodecError::UnsupportedDataType(..) | CodecError::UnsupportedDataTypeCodec(..) => {
            ZarrsResult::ZARRS_ERROR_UNSUPPORTED
        }
        _ => ZarrsResult::ZARRS_ERROR_CODEC,
    }
}

fn plugin_code(err: &PluginCreateError) -> ZarrsResult {
    match err {
        PluginCreateError::Unsupported(_) => ZarrsResult::ZARRS_ERROR_UNSUPPORTED,
        _ => ZarrsResult::ZARRS_ERROR_INVALID_METADATA,
    }
}

impl From<StorageError> for FfiError {
    fn from(err: StorageError) -> Self {
        Self::new(storage_code(&err), err.to_string())
    }
}

impl From<CodecError> for FfiError {
    fn from(err: CodecError) -> Self {
        Self::new(codec_code(&err), err.to_string())
    }
}

impl From<ArrayError> for FfiError {
    fn from(err: ArrayError) -> Self {
        let code = match &err {
            ArrayError::StorageError(e) => storage_code(e),
            ArrayError::CodecError(e) => codec_code(e),
            ArrayError::UnsupportedMethod(_) => ZarrsResult::ZARRS_ERROR_UNSUPPORTED,
            _ => ZarrsResult::ZARRS_ERROR_INVALID_ARGUMENT,
        };
        Self::new(code, err.to_string())
    }
}

impl From<ArrayCreateError> for FfiError {
    fn from(err: ArrayCreateError) -> Self {
        let code = match &err {
            ArrayCreateError::StorageError(e) => storage_code(e),
            ArrayCreateError::DataTypeCreateError(e)
            | ArrayCreateError::CodecsCreateError(e)
            | ArrayCreateError::StorageTransformersCreateError(e)
            | ArrayCreateError::ChunkGridCreateError(e)
            | ArrayCreateError::ChunkKeyEncodingCreateError(e) => plugin_code(e),
            ArrayCreateError::AdditionalFieldUnsupportedError(_) => {
                ZarrsResult::ZARRS_ERROR_UNSUPPORTED
            }
            _ => ZarrsResult::ZARRS_ERROR_INVALID_METADATA,
        };
        Self::new(code, err.to_string())
    }
}

impl From<zarrs::array::ArrayBytesFixedDisjointViewCreateError> for FfiError {
    fn from(err: zarrs::array::ArrayBytesFixedDisjointViewCreateError) -> Self {
        Self::invalid(err.to_string())
    }
}

impl From<zarrs::array::ArraySubsetError> for FfiError {
    fn from(err: zarrs::array::ArraySubsetError) -> Self {
        Self::invalid(err.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Store `message` as this thread's last error. Interior NUL bytes are replaced so the
/// message is never silently truncated to nothing.
///
/// The slot is reached with `try_with`: during thread teardown, after the thread-local has
/// been destroyed, a call (from another thread-local's destructor, say) must not abort the
/// process, so the message is dropped instead. A `RefCell` already borrowed (impossible
/// unless a call re-enters the library while reading the slot) likewise drops it.
pub fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', "\u{FFFD}")).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = c;
        }
    });
}

pub fn clear_last_error() {
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = CString::default();
        }
    });
}

/// This thread's last error as a NUL-terminated string (the empty string after a success,
/// or during thread teardown). Valid until the next call into the library on this thread.
pub fn last_error_ptr() -> *const c_char {
    // A thread-local's address is stable for the thread's life and the CString is only
    // replaced by a later call on this same thread, which the contract above allows.
    LAST_ERROR
        .try_with(|slot| slot.try_borrow().map(|s| s.as_ptr()).ok())
        .ok()
        .flatten()
        .unwrap_or(c"".as_ptr())
}

//! The `extern "C"` call for the thread-local last error (kept in `error.rs`).

use std::ffi::c_char;

use crate::error;

/// The message of the last failed call made on this thread, as a NUL-terminated UTF-8 string.
///
/// Ownership: the string belongs to the library. It stays valid until the next call into the
/// library on this same thread; copy it if you need it longer. Never NULL: the empty string
/// means the last call on this thread succeeded.
///
/// Thread safety: each thread has its own last error. During thread teardown (after the
/// thread's storage is gone) the empty string is returned.
#[no_mangle]
pub extern "C" fn zarrs_last_error() -> *const c_char {
    error::last_error_ptr()
}

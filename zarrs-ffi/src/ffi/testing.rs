//! Exports that exist only for this crate's tests (cargo feature `testing`).
//!
//! The shipped library has no way to panic on purpose; the tests need one to prove that a
//! panic inside an export becomes `ZARRS_ERROR_PANIC` with a message, instead of unwinding
//! into C and aborting the caller. Not in the generated header.

use std::ffi::c_char;

use crate::args;
use crate::error::ZarrsResult;
use crate::panic::boundary;

/// Panic inside the boundary with `message` (`message_len` bytes of UTF-8) as the payload.
///
/// Test builds only. Ownership: `message` is borrowed for the call. Thread safety: any
/// thread; the message lands in that thread's last error.
#[no_mangle]
pub extern "C" fn zarrs_test_panic(message: *const c_char, message_len: usize) -> ZarrsResult {
    boundary(|| {
        // SAFETY: `message_len` readable bytes at `message` per the contract.
        let message = unsafe { args::str(message, message_len, "message")? };
        panic!("{message}");
    })
}

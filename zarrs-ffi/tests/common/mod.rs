//! Helpers every C-ABI test file uses: what a C caller writes around each call.

use std::ffi::CStr;

use zarrs_ffi::ZarrsResult::{self, *};
use zarrs_ffi::*;

/// This thread's last error message.
pub fn last_error() -> String {
    // SAFETY: the library returns a valid NUL-terminated string, valid until the next call.
    unsafe { CStr::from_ptr(zarrs_last_error()) }.to_str().unwrap().to_owned()
}

/// Assert the call succeeded.
#[track_caller]
pub fn check(code: ZarrsResult) {
    assert_eq!(code, ZARRS_SUCCESS, "call failed: {}", last_error());
}

/// Assert a call failed with `expected` and a message mentioning each of `mentions`.
#[track_caller]
pub fn expect_err(code: ZarrsResult, expected: ZarrsResult, mentions: &[&str]) {
    let message = last_error();
    assert_eq!(code, expected, "unexpected result; last error: {message:?}");
    for m in mentions {
        assert!(message.contains(m), "last error {message:?} does not mention {m:?}");
    }
}

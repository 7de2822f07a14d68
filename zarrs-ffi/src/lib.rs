//! A hardened C ABI over the [zarrs](https://docs.rs/zarrs) crate.
//!
//! Conventions, for every exported function:
//! - it returns a [`ZarrsResult`]; on failure [`zarrs_last_error`] gives this thread's message;
//! - no panic crosses the boundary (it becomes `ZARRS_ERROR_PANIC`);
//! - arguments are handle, inputs, then out-parameters named `*_out`, written only on success;
//! - every buffer is followed by its length; NULL, wrong lengths and bad UTF-8 are errors;
//! - handles come from `*_open`/`*_create` and are released by a NULL-safe `*_free`.
//!
//! The header `include/zarrs_ffi.h` is generated from these sources by cbindgen.

#![deny(unsafe_op_in_unsafe_fn)]
#![allow(non_camel_case_types)]
// Exported functions take raw pointers from C and cannot be `unsafe fn` for their callers;
// every dereference goes through `args`, and each export documents the pointer contract.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod args;
pub mod array;
pub mod batch;
mod bounds;
pub mod codec;
pub mod encoded_io;
pub mod error;
pub mod options;
mod panic;
pub mod plan;
pub mod remote;
mod shard;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;
pub mod variable;

pub use error::{zarrs_last_error, ZarrsResult};

use std::ffi::c_char;

/// The library version (the crate version, e.g. `0.1.0`) as a static NUL-terminated string.
/// The Python package refuses to load a library whose version differs from its own.
///
/// Thread safety: safe from any thread; the string lives for the whole process.
#[no_mangle]
pub extern "C" fn zarrs_ffi_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

//! A hardened C ABI over the [zarrs](https://docs.rs/zarrs) crate.
//!
//! Conventions, for every exported function:
//! - it returns a [`ZarrsResult`]; on failure [`zarrs_last_error`] gives this thread's message;
//! - no panic crosses the boundary (it becomes `ZARRS_ERROR_PANIC`);
//! - arguments are handle, inputs, then out-parameters named `*_out`, written only on success;
//! - every buffer is followed by its length; NULL, wrong lengths and bad UTF-8 are errors;
//! - handles come from `*_open`/`*_create` and are released by a NULL-safe `*_free`; every
//!   handle argument is checked against the live handles (`registry`), so a handle freed
//!   already, passed where another kind is expected, or not from this library is
//!   `ZARRS_ERROR_INVALID_ARGUMENT`. Not detectable: a freed handle whose address a newer
//!   handle of the same kind has taken, and a handle freed while another thread uses it.
//!
//! The header `include/zarrs_ffi.h` is generated from these sources by cbindgen.
//!
//! # Layers
//!
//! The modules form layers; a module uses only modules of its own layer or lower ones, and
//! none uses another that uses it back (`tests/layers.rs` checks both). Lowest first:
//!
//! error → panic → args + memory + registry → process → layout → bounds + engine → options → storage → handles → ffi
//!
//! - `error`: result codes, `FfiError`, the thread-local last error.
//! - `panic`: the boundary every export runs inside.
//! - `args`: reading caller pointers and lengths, checked arithmetic, key validation.
//! - `memory`: fallible allocation of buffers sized by metadata or stored bytes.
//! - `registry`: the live handles, so a freed, foreign or wrong-kind handle is an error.
//! - `process`: per-process state, fork-safe: thread pools, the I/O runtime, remote clients,
//!   the keep-warm thread.
//! - `layout`: chunk jobs, chunk-grid shapes, buffer views, copy kernels, presence.
//! - `bounds` + `engine`: decoding bounded by the metadata; decode, merge and encode one
//!   chunk job (our sharding included). No handles.
//! - `options`: the per-call options (above the engine because their defaults come from
//!   `bounds`; nothing below needs them).
//! - `storage`: local atomic files and remote object stores.
//! - `handles`: `ZarrsArray`, `ZarrsStorage` and the result handles, each in one place.
//! - `ffi`: the `extern "C"` functions.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![allow(non_camel_case_types)]
// Exported functions take raw pointers from C and cannot be `unsafe fn` for their callers;
// every dereference goes through `args`, and each export documents the pointer contract.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod args;
mod bounds;
mod engine;
mod error;
mod ffi;
mod handles;
mod layout;
mod memory;
mod options;
mod panic;
mod process;
mod registry;
mod storage;

pub use engine::ZarrsSubchunkOrder;
pub use error::ZarrsResult;
pub use ffi::*;
pub use handles::{
    ZarrsArray, ZarrsByteRequest, ZarrsByteRequestKind, ZarrsEncodedChunks, ZarrsReadPlan, ZarrsStorage, ZarrsVariableChunks,
};
pub use options::ZarrsOptions;

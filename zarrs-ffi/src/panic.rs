//! The boundary every exported function runs inside.
//!
//! A panic unwinding into C is undefined behaviour and, from Python, aborts the interpreter.
//! [`boundary`] catches it, turns every outcome into a [`ZarrsResult`], and records the
//! message in the thread-local last error.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{clear_last_error, set_last_error, FfiError, FfiResult, ZarrsResult};

/// Run `body`, mapping `Ok` to success, `Err` to its code, and a panic to
/// `ZARRS_ERROR_PANIC`. The last error is cleared on success.
pub fn boundary(body: impl FnOnce() -> FfiResult<()>) -> ZarrsResult {
    // AssertUnwindSafe: on a panic we return an error and never look at state the body
    // may have left half-updated; handles are only mutated through `&mut` inside the body
    // and are never touched again by this function.
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            clear_last_error();
            ZarrsResult::ZARRS_SUCCESS
        }
        Ok(Err(err)) => {
            set_last_error(&err.message);
            err.code
        }
        Err(payload) => {
            set_last_error(&caught(payload).message);
            ZarrsResult::ZARRS_ERROR_PANIC
        }
    }
}

/// The error a caught panic becomes (`ZARRS_ERROR_PANIC`, with the panic's message): at
/// [`boundary`], and where a job runs off the caller's thread (`ffi/completion.rs`).
pub fn caught(payload: Box<dyn Any + Send>) -> FfiError {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_string());
    // A payload whose destructor panics would abort the process if dropped here, outside
    // any `catch_unwind`: leak it (a panic is already a bug to report).
    std::mem::forget(payload);
    FfiError::new(ZarrsResult::ZARRS_ERROR_PANIC, format!("internal panic in zarrs-ffi (please report): {what}"))
}

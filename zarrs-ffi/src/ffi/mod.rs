//! The `extern "C"` functions: the C ABI, on top of every other layer.
//!
//! Each export runs inside `panic::boundary`, reads its pointer arguments in one
//! `// SAFETY:`-commented block through `args`, calls the handle it acts on, and writes its
//! out-parameters only on success. The order of the modules below is the order of the
//! functions in the generated header.

mod array;
mod batch;
mod codec;
mod completion;
mod encoded_io;
mod gather;
mod last_error;
mod options;
mod plan;
mod storage;
#[cfg(feature = "testing")]
mod testing;
mod variable;

pub use array::*;
pub use batch::*;
pub use codec::*;
pub use completion::*;
pub use encoded_io::*;
pub use gather::*;
pub use last_error::*;
pub use options::*;
pub use plan::*;
pub use storage::*;
#[cfg(feature = "testing")]
pub use testing::*;
pub use variable::*;

use std::ffi::c_char;

use crate::args;
use crate::error::{FfiError, FfiResult};
use crate::handles::ZarrsArray;
use crate::layout::Source;

/// The library version (the crate version, e.g. `0.1.0`) as a static NUL-terminated string.
/// The Python package refuses to load a library whose version differs from its own.
///
/// Thread safety: safe from any thread; the string lives for the whole process.
#[no_mangle]
pub extern "C" fn zarrs_ffi_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The value arguments of the write and encode calls: `value_ndim` is 0 (one element,
/// broadcast) or the array's dimensionality.
///
/// # Safety
/// `value` must address `value_len` bytes and `value_shape` `value_ndim` values for the
/// duration of the call.
unsafe fn source<'a>(
    array: &ZarrsArray,
    value: *const u8,
    value_len: usize,
    value_shape: *const u64,
    value_ndim: usize,
) -> FfiResult<Source<'a>> {
    let ndim = array.array().dimensionality();
    if value_ndim != 0 && value_ndim != ndim {
        return Err(FfiError::invalid(format!(
            "`value_ndim` is {value_ndim}; it must be 0 (a broadcast scalar) or the array's {ndim}"
        )));
    }
    // SAFETY: forwarded contract.
    let value_shape = unsafe { args::values(value_shape, value_ndim, "value_shape")? };
    // SAFETY: forwarded contract.
    let value = unsafe { args::slice(value, value_len, "value")? };
    Source::new(value, &value_shape, array.element_size()?)
}

//! Checked conversions from C arguments to Rust values.
//!
//! All raw-pointer reads in the crate go through these helpers, so the NULL, length and
//! UTF-8 checks are written once. The remaining obligation of the caller (that a non-NULL
//! pointer really addresses `len` valid elements for the duration of the call) is part of
//! every exported function's documented contract and cannot be checked from here.

use std::num::NonZeroU64;

use zarrs::array::ArraySubset;

use crate::error::{FfiError, FfiResult};

/// Borrow `len` elements at `ptr`. NULL is accepted only for an empty slice.
///
/// # Safety
/// If `ptr` is not NULL it must point to `len` initialised `T`s that stay valid and are not
/// written by anyone else for the lifetime `'a` chosen by the caller (one FFI call).
pub unsafe fn slice<'a, T>(ptr: *const T, len: usize, name: &str) -> FfiResult<&'a [T]> {
    if ptr.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(FfiError::null(name))
        };
    }
    // SAFETY: non-NULL, and the caller guarantees `len` valid elements for `'a`.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Mutably borrow `len` elements at `ptr`. NULL is accepted only for an empty slice.
///
/// # Safety
/// If `ptr` is not NULL it must point to `len` writable `T`s that nothing else reads or
/// writes for the lifetime `'a` chosen by the caller (one FFI call).
pub unsafe fn slice_mut<'a, T>(ptr: *mut T, len: usize, name: &str) -> FfiResult<&'a mut [T]> {
    if ptr.is_null() {
        return if len == 0 {
            Ok(&mut [])
        } else {
            Err(FfiError::null(name))
        };
    }
    // SAFETY: non-NULL, and the caller guarantees `len` exclusive elements for `'a`.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// Borrow a UTF-8 string given as pointer and byte length (no NUL terminator needed).
///
/// # Safety
/// As for [`slice`].
pub unsafe fn str<'a>(ptr: *const std::ffi::c_char, len: usize, name: &str) -> FfiResult<&'a str> {
    // SAFETY: forwarded contract.
    let bytes = unsafe { slice(ptr.cast::<u8>(), len, name)? };
    std::str::from_utf8(bytes).map_err(|e| FfiError::invalid(format!("`{name}` is not UTF-8: {e}")))
}

/// Borrow a handle, failing on NULL.
///
/// # Safety
/// If non-NULL, `ptr` must come from this library's matching `*_open`/`*_create` and not have
/// been freed.
pub unsafe fn handle<'a, T>(ptr: *const T, name: &str) -> FfiResult<&'a T> {
    // SAFETY: the caller guarantees a live handle when non-NULL.
    unsafe { ptr.as_ref() }.ok_or_else(|| FfiError::null(name))
}

/// Write `value` through an out-parameter, failing on NULL. Called only once the whole call
/// has succeeded, so out-parameters are never written on failure.
///
/// # Safety
/// If non-NULL, `ptr` must be valid for a write of `T`.
pub unsafe fn write_out<T>(ptr: *mut T, value: T) -> FfiResult<()> {
    if ptr.is_null() {
        return Err(FfiError::null("out-parameter"));
    }
    // SAFETY: non-NULL and writable per the caller's contract.
    unsafe { ptr.write(value) };
    Ok(())
}

/// Check an out-parameter is present before doing any work, so a NULL out pointer is
/// reported before side effects (such as writing a chunk) happen.
pub fn require_out<T>(ptr: *mut T, name: &str) -> FfiResult<()> {
    if ptr.is_null() {
        Err(FfiError::null(name))
    } else {
        Ok(())
    }
}

/// A shape with no zero extents, as zarrs wants for chunk shapes.
pub fn nonzero_shape(shape: &[u64], what: &str) -> FfiResult<Vec<NonZeroU64>> {
    shape
        .iter()
        .map(|&d| {
            NonZeroU64::new(d).ok_or_else(|| FfiError::invalid(format!("{what} {shape:?} has a zero extent")))
        })
        .collect()
}

/// The number of elements of `shape`, failing on overflow instead of wrapping.
pub fn num_elements(shape: &[u64]) -> FfiResult<u64> {
    shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| FfiError::invalid(format!("shape {shape:?} overflows")))
}

/// The byte size of `shape` elements of `element_size` bytes, failing on overflow.
pub fn byte_size(shape: &[u64], element_size: usize) -> FfiResult<usize> {
    num_elements(shape)?
        .checked_mul(element_size as u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| FfiError::invalid(format!("shape {shape:?} is too large for memory")))
}

/// A region given by `start` and `shape`, failing if its end (`start + shape`) does not fit in
/// a `u64`. zarrs computes region ends with unchecked additions, which wrap in release builds
/// and would let a region far outside an array or buffer pass its bounds checks.
pub fn region(start: &[u64], shape: &[u64], what: &str) -> FfiResult<ArraySubset> {
    if start.iter().zip(shape).any(|(&s, &n)| s.checked_add(n).is_none()) {
        return Err(FfiError::invalid(format!(
            "{what} with start {start:?} and shape {shape:?} ends outside the 64-bit index range"
        )));
    }
    Ok(ArraySubset::new_with_start_shape(start.to_vec(), shape.to_vec())?)
}

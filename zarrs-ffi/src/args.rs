//! Checked conversions from C arguments to Rust values.
//!
//! All raw-pointer reads in the crate go through these helpers, so the NULL, length and
//! UTF-8 checks are written once. The remaining obligation of the caller (that a non-NULL
//! pointer really addresses `len` valid elements for the duration of the call) is part of
//! every exported function's documented contract and cannot be checked from here.

use std::num::NonZeroU64;

use std::borrow::Cow;

use zarrs::array::ArraySubset;
use zarrs::storage::StoreKey;

use crate::error::{FfiError, FfiResult};

/// Borrow `len` bytes at `ptr`. NULL is accepted only for an empty slice.
///
/// Bytes only: a `&[T]` needs `T`'s alignment, which C callers do not promise for
/// `uint64_t` or `size_t` arrays (a pointer into a packed buffer is legal C to pass).
/// Wider elements are read with [`values`].
///
/// # Safety
/// If `ptr` is not NULL it must point to `len` initialised bytes that stay valid and are not
/// written by anyone else for the lifetime `'a` chosen by the caller (one FFI call).
pub unsafe fn slice<'a>(ptr: *const u8, len: usize, name: &str) -> FfiResult<&'a [u8]> {
    if ptr.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(FfiError::null(name))
        };
    }
    check_extent::<u8>(len, name)?;
    // SAFETY: non-NULL, `u8` has alignment 1, and the caller guarantees `len` valid bytes
    // for `'a`.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Mutably borrow `len` bytes at `ptr`. NULL is accepted only for an empty slice.
///
/// # Safety
/// If `ptr` is not NULL it must point to `len` writable bytes that nothing else reads or
/// writes for the lifetime `'a` chosen by the caller (one FFI call).
pub unsafe fn slice_mut<'a>(ptr: *mut u8, len: usize, name: &str) -> FfiResult<&'a mut [u8]> {
    if ptr.is_null() {
        return if len == 0 {
            Ok(&mut [])
        } else {
            Err(FfiError::null(name))
        };
    }
    check_extent::<u8>(len, name)?;
    // SAFETY: non-NULL, `u8` has alignment 1, and the caller guarantees `len` exclusive
    // bytes for `'a`.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// A length no real allocation can have is a caller error, not something to form a slice
/// from (`from_raw_parts` requires `len * size_of::<T>() <= isize::MAX`).
fn check_extent<T>(len: usize, name: &str) -> FfiResult<()> {
    match len.checked_mul(std::mem::size_of::<T>()) {
        Some(bytes) if isize::try_from(bytes).is_ok() => Ok(()),
        _ => Err(FfiError::invalid(format!("`{name}` has an impossible length {len}"))),
    }
}

/// Read `len` values of a plain-data type (`uint64_t`, `size_t`, pointers) at `ptr`,
/// which need not be aligned: an aligned array is borrowed, a misaligned one copied out
/// with unaligned reads. NULL is accepted only for an empty array.
///
/// # Safety
/// If `ptr` is not NULL it must point to `len` initialised values (`len * size_of::<T>()`
/// readable bytes) that stay valid and unwritten for the lifetime `'a` (one FFI call).
pub unsafe fn values<'a, T: Copy>(ptr: *const T, len: usize, name: &str) -> FfiResult<Cow<'a, [T]>> {
    if ptr.is_null() {
        return if len == 0 {
            Ok(Cow::Borrowed(&[]))
        } else {
            Err(FfiError::null(name))
        };
    }
    check_extent::<T>(len, name)?;
    if ptr.is_aligned() {
        // SAFETY: non-NULL, aligned, and the caller guarantees `len` valid values for `'a`.
        return Ok(Cow::Borrowed(unsafe { std::slice::from_raw_parts(ptr, len) }));
    }
    // SAFETY: the caller guarantees `len` readable values; `read_unaligned` has no
    // alignment requirement, and `add(i)` stays inside that allocation.
    Ok(Cow::Owned((0..len).map(|i| unsafe { ptr.add(i).read_unaligned() }).collect()))
}

/// Write `values` to a caller array of exactly `values.len()` elements at `ptr`, which need
/// not be aligned.
///
/// # Safety
/// `ptr` must be non-NULL and valid for writes of `values.len()` values.
pub unsafe fn write_values<T: Copy>(ptr: *mut T, values: &[T]) {
    for (i, &value) in values.iter().enumerate() {
        // SAFETY: the caller guarantees room for `values.len()` values; `write_unaligned`
        // has no alignment requirement.
        unsafe { ptr.add(i).write_unaligned(value) };
    }
}

/// A store key given by a caller, confined to the store: no empty key, no key naming the
/// root (`.`), no absolute path, no `.` or `..` segment and no empty segment, with `/` or
/// `\` as separators (a backslash separates on Windows), and no NUL byte. Such keys are
/// never produced by Zarr's chunk key encodings; accepted, they would let a caller read or
/// write outside the store's directory.
pub fn store_key(key: &str, what: &str) -> FfiResult<StoreKey> {
    let reason = if key.is_empty() {
        Some("is empty")
    } else if key.contains('\0') {
        Some("contains a NUL byte")
    } else if key.starts_with(['/', '\\']) {
        Some("is an absolute path")
    } else if key.contains(':') && cfg!(windows) {
        Some("names a drive")
    } else {
        key.split(['/', '\\']).find_map(|segment| match segment {
            "" => Some("has an empty segment"),
            "." => Some("has a `.` segment"),
            ".." => Some("has a `..` segment, which would leave the store"),
            _ => None,
        })
    };
    match reason {
        Some(reason) => Err(FfiError::invalid(format!("{what} {key:?} {reason}: keys are relative paths inside the store"))),
        None => StoreKey::new(key).map_err(|e| FfiError::invalid(format!("{what} {key:?}: {e}"))),
    }
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

/// Copy a caller's plain-data struct (`ZarrsS3Config`), failing on NULL. The pointer need not
/// be aligned.
///
/// # Safety
/// If non-NULL, `ptr` must address a `T` whose every byte is initialised.
pub unsafe fn read<T: Copy>(ptr: *const T, name: &str) -> FfiResult<T> {
    if ptr.is_null() {
        return Err(FfiError::null(name));
    }
    // SAFETY: non-NULL and readable per the caller's contract; `read_unaligned` makes no
    // alignment assumption, and `T` holds only integers and raw pointers, valid for any bits.
    Ok(unsafe { ptr.read_unaligned() })
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
    // SAFETY: non-NULL and writable per the caller's contract; out-parameters need not be
    // aligned, so the write makes no alignment assumption.
    unsafe { ptr.write_unaligned(value) };
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

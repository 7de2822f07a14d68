//! Checked conversions from C arguments to Rust values, and checked arithmetic on them.
//!
//! All raw-pointer reads and writes in the crate go through these helpers, so the NULL,
//! length and UTF-8 checks are written once. Keys and regions given by callers are validated
//! here too. This module must not know about arrays, codecs or stores. The remaining obligation of the caller (that a non-NULL
//! pointer really addresses `len` valid elements for the duration of the call) is part of
//! every exported function's documented contract and cannot be checked from here.

use std::borrow::Cow;
use std::ffi::c_char;
use std::num::NonZeroU64;

use zarrs::array::ArraySubset;
use zarrs::storage::StoreKey;

use crate::error::{FfiError, FfiResult};
use crate::registry::{self, Handle};

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
pub unsafe fn str<'a>(ptr: *const c_char, len: usize, name: &str) -> FfiResult<&'a str> {
    // SAFETY: forwarded contract.
    let bytes = unsafe { slice(ptr.cast::<u8>(), len, name)? };
    std::str::from_utf8(bytes).map_err(|e| FfiError::invalid(format!("`{name}` is not UTF-8: {e}")))
}

/// An optional UTF-8 string argument: NULL means absent.
///
/// # Safety
/// If non-NULL, `ptr` must address `len` readable bytes for the call.
pub unsafe fn optional_str<'a>(ptr: *const c_char, len: usize, name: &str) -> FfiResult<Option<&'a str>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        // SAFETY: non-NULL, and the caller guarantees `len` readable bytes.
        unsafe { str(ptr, len, name) }.map(Some)
    }
}

/// Borrow a handle, failing on NULL and on a pointer that is not a live handle of type `T`
/// (freed, of another kind, never issued: see `registry`).
///
/// # Safety
/// No other thread may free the handle during the lifetime `'a` (one FFI call).
pub unsafe fn handle<'a, T: Handle>(ptr: *const T, name: &str) -> FfiResult<&'a T> {
    registry::check(ptr, name)?;
    // SAFETY: `ptr` is a live box of `T` issued by `registry` (checked above), which stays
    // allocated for the call since the caller does not free it meanwhile.
    Ok(unsafe { &*ptr })
}

/// [`handle`], borrowed mutably.
///
/// # Safety
/// As for [`handle`], and no other thread may use the handle during `'a`.
pub unsafe fn handle_mut<'a, T: Handle>(ptr: *mut T, name: &str) -> FfiResult<&'a mut T> {
    registry::check(ptr, name)?;
    // SAFETY: as in `handle`; the caller guarantees exclusive use for the call.
    Ok(unsafe { &mut *ptr })
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

/// The length of an offsets array for `num_chunks` items.
pub fn offsets_len(num_chunks: usize) -> FfiResult<usize> {
    num_chunks
        .checked_add(1)
        .ok_or_else(|| FfiError::invalid("`num_chunks` overflows"))
}

/// Copy a list of `u64` into a caller array of exactly `ndim` values.
///
/// # Safety
/// If non-NULL, `out` must address `ndim` writable values.
pub unsafe fn write_dims(values: &[u64], out: *mut u64, ndim: usize, name: &str) -> FfiResult<()> {
    require_out(out, name)?;
    if ndim != values.len() {
        return Err(FfiError::buffer_size(name, ndim, values.len()));
    }
    // SAFETY: non-NULL (checked above) and `ndim == values.len()` writable values per the
    // forwarded contract.
    unsafe { write_values(out, values) };
    Ok(())
}

/// Copy a string into a caller buffer. `len_out` always receives the full length in bytes
/// (no NUL terminator is written); if `buf_len` is too small the call fails with
/// `ZARRS_ERROR_BUFFER_SIZE` and nothing is copied, so callers can size the buffer with a
/// first call passing `buf_len == 0`.
///
/// # Safety
/// `buf` must address `buf_len` writable bytes; `len_out` must be writable.
pub unsafe fn write_string(text: &str, buf: *mut c_char, buf_len: usize, len_out: *mut usize) -> FfiResult<()> {
    // SAFETY: forwarded contract: `len_out` is writable if non-NULL (NULL is an error).
    unsafe { write_out(len_out, text.len())? };
    if buf_len < text.len() {
        return Err(FfiError::buffer_size("buf", buf_len, text.len()));
    }
    // SAFETY: forwarded contract: `buf_len` writable bytes at `buf`.
    let buf = unsafe { slice_mut(buf.cast::<u8>(), buf_len, "buf")? };
    buf[..text.len()].copy_from_slice(text.as_bytes());
    Ok(())
}

/// Per-chunk encoded inputs, borrowed from the caller: a pointer and a length per chunk, a
/// NULL pointer marking a missing chunk.
pub struct EncodedInputs<'a> {
    chunks: Vec<Option<&'a [u8]>>,
}

impl<'a> EncodedInputs<'a> {
    /// # Safety
    /// `pointers` and `lengths` must address `num_chunks` values each, and every non-NULL
    /// pointer its length in bytes, for the duration of the call.
    pub unsafe fn from_raw(num_chunks: usize, pointers: *const *const u8, lengths: *const usize, name: &str) -> FfiResult<Self> {
        // SAFETY: forwarded contract: `num_chunks` pointers and lengths.
        let pointers = unsafe { values(pointers, num_chunks, name)? };
        // SAFETY: as above.
        let lengths = unsafe { values(lengths, num_chunks, &format!("{name}_lens"))? };
        let chunks = pointers
            .iter()
            .zip(lengths.iter())
            .enumerate()
            .map(|(i, (&pointer, &length))| {
                if pointer.is_null() {
                    Ok(None)
                } else {
                    // SAFETY: forwarded contract: a non-NULL pointer addresses `length` bytes.
                    unsafe { slice(pointer, length, &format!("{name}[{i}]")) }.map(Some)
                }
            })
            .collect::<FfiResult<_>>()?;
        Ok(Self { chunks })
    }

    /// The encoded bytes of chunk `i`, or None if it is missing.
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        self.chunks[i]
    }
}

/// Key `i` of keys given back to back (`keys`) with `len + 1` byte `offsets`, confined to the
/// store ([`store_key`]). `offsets` must hold at least `i + 2` values (callers read them with
/// [`offsets_len`]).
pub fn key_at(keys: &str, offsets: &[u64], i: usize) -> FfiResult<StoreKey> {
    let (from, to) = (offsets[i], offsets[i + 1]);
    let key = usize::try_from(from)
        .ok()
        .zip(usize::try_from(to).ok())
        .and_then(|(from, to)| keys.get(from..to))
        .ok_or_else(|| {
            FfiError::invalid(format!(
                "key {i} spans bytes {from}..{to}, outside the {} key bytes or not on a character boundary",
                keys.len()
            ))
        })?;
    store_key(key, &format!("key {i}"))
}

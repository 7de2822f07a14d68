//! Allocations whose size comes from metadata or stored bytes, made fallibly.
//!
//! Rust aborts the process when an allocation fails, and from Python that kills the
//! interpreter. A chunk's size is set by its metadata (a `[2^18, 2^18]` uint8 chunk is 64 GiB,
//! which fits the address space but not memory), so every buffer sized by a chunk, a shard or
//! a decoded stream is reserved here instead: a failure is `ZARRS_ERROR_OUT_OF_MEMORY` naming
//! the size and what it was for (the chunk's key is added by the array handle), as zarr raises
//! `MemoryError`, and the process stays usable.
//!
//! Buffers that zarrs allocates itself (its codecs' outputs) cannot be reserved here; for
//! those, [`probe`] first asks the allocator for the same size and gives it back, so a size
//! the allocator refuses outright (more than memory and swap, or an address-space limit) is
//! an error before zarrs tries. Small sizes are not probed: they cost more to probe than the
//! chance that they fail.
//!
//! This module must not know about arrays, codecs or stores.

use std::fmt::Display;

use crate::error::{FfiError, FfiResult, ZarrsResult};

/// Allocations of at least this many bytes made by zarrs are probed first ([`probe`]).
pub const PROBE_FROM: usize = 64 << 20;

/// The error for `bytes` that could not be allocated for `what`.
pub fn out_of_memory(bytes: usize, what: impl Display) -> FfiError {
    FfiError::new(
        ZarrsResult::ZARRS_ERROR_OUT_OF_MEMORY,
        format!("cannot allocate {bytes} bytes ({}) for {what}: out of memory", human(bytes)),
    )
}

fn human(bytes: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// An empty vector with room for `capacity` elements.
pub fn with_capacity<T>(capacity: usize, what: impl Display) -> FfiResult<Vec<T>> {
    let mut vec = Vec::new();
    reserve(&mut vec, capacity, what)?;
    Ok(vec)
}

/// Make room in `vec` for `additional` more elements.
pub fn reserve<T>(vec: &mut Vec<T>, additional: usize, what: impl Display) -> FfiResult<()> {
    vec.try_reserve_exact(additional)
        .map_err(|_| out_of_memory(additional.saturating_mul(std::mem::size_of::<T>()), what))
}

/// `len` zero bytes. Zeroed by the allocator (fresh pages are zero already), as `vec![0; n]` is.
pub fn zeroed(len: usize, what: impl Display) -> FfiResult<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u8>(len).map_err(|_| out_of_memory(len, &what))?;
    // SAFETY: `layout` has a non-zero size (checked above).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    if ptr.is_null() {
        return Err(out_of_memory(len, what));
    }
    // SAFETY: `ptr` was allocated by the global allocator with the layout `Vec<u8>` uses for
    // a capacity of `len` (`Layout::array::<u8>(len)`), and all `len` bytes are initialised
    // (zeroed); ownership passes to the vector, which frees it with that same layout.
    Ok(unsafe { Vec::from_raw_parts(ptr, len, len) })
}

/// `vec` resized to `len`, new elements set to `value`.
pub fn resize<T: Clone>(vec: &mut Vec<T>, len: usize, value: T, what: impl Display) -> FfiResult<()> {
    if let Some(additional) = len.checked_sub(vec.len()) {
        reserve(vec, additional, what)?;
    }
    vec.resize(len, value);
    Ok(())
}

/// `count` elements of `value`.
pub fn filled<T: Clone>(count: usize, value: T, what: impl Display) -> FfiResult<Vec<T>> {
    let mut vec = with_capacity(count, what)?;
    vec.resize(count, value);
    Ok(vec)
}

/// `element` repeated `count` times.
pub fn repeat(element: &[u8], count: usize, what: impl Display) -> FfiResult<Vec<u8>> {
    let len = element.len().checked_mul(count).ok_or_else(|| out_of_memory(usize::MAX, &what))?;
    let mut vec = with_capacity(len, what)?;
    for _ in 0..count {
        vec.extend_from_slice(element);
    }
    Ok(vec)
}

/// Fail unless the allocator can give `bytes` now, for a buffer zarrs is about to allocate
/// itself (which would abort on failure). Sizes below [`PROBE_FROM`] are not probed.
pub fn probe(bytes: u64, what: impl Display) -> FfiResult<()> {
    let Ok(bytes) = usize::try_from(bytes) else {
        return Err(out_of_memory(usize::MAX, what));
    };
    if bytes < PROBE_FROM {
        return Ok(());
    }
    // Reserved and given back untouched: the pages are never faulted in. The pointer escapes
    // through `black_box`, else the optimiser may remove an allocation that nothing uses (and
    // with it the probe).
    let reserved = with_capacity::<u8>(bytes, what)?;
    std::hint::black_box(reserved.as_ptr());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_no_allocator_can_give_are_errors() {
        let huge = 1usize << 62;
        for err in [
            with_capacity::<u8>(huge, "a test").unwrap_err(),
            zeroed(huge, "a test").unwrap_err(),
            filled(huge, 0u8, "a test").unwrap_err(),
            repeat(&[1, 2], huge, "a test").unwrap_err(),
            repeat(&[1, 2], usize::MAX, "a test").unwrap_err(),
            probe(1 << 62, "a test").unwrap_err(),
            probe(u64::MAX, "a test").unwrap_err(),
        ] {
            assert_eq!(err.code, ZarrsResult::ZARRS_ERROR_OUT_OF_MEMORY);
            assert!(err.message.contains("for a test: out of memory"), "{}", err.message);
        }
        let mut vec = vec![1u8; 3];
        assert!(resize(&mut vec, huge, 0, "a test").is_err());
        assert_eq!(vec, [1, 1, 1]);
    }

    #[test]
    fn sizes_that_fit_are_given() {
        assert_eq!(zeroed(5, "x").unwrap(), [0; 5]);
        assert!(zeroed(0, "x").unwrap().is_empty());
        assert_eq!(repeat(&[1, 2], 3, "x").unwrap(), [1, 2, 1, 2, 1, 2]);
        assert_eq!(filled(2, 7u16, "x").unwrap(), [7, 7]);
        let mut vec = vec![1u8];
        resize(&mut vec, 3, 9, "x").unwrap();
        assert_eq!(vec, [1, 9, 9]);
        resize(&mut vec, 1, 9, "x").unwrap();
        assert_eq!(vec, [1]);
        probe(PROBE_FROM as u64, "x").unwrap();
        assert!(out_of_memory(3 << 30, "y").message.contains("3.0 GiB"));
    }
}

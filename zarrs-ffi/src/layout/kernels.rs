//! Copy kernels: contiguous runs of C-order regions, copied or filled.
//!
//! The hot loops of every read and write. Pure functions over byte slices: no arrays, no
//! codecs, no stores, and no bounds policy (callers check regions before calling).

use std::mem::MaybeUninit;

fn strides(shape: &[u64]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1] as usize;
    }
    strides
}

/// The contiguous runs of a C-order region in two arrays `a` and `b`: every run has `run`
/// elements; the first starts at `a_base` and `b_base`; the outer dimensions (outermost
/// first) step by their strides, `count` times each.
struct Runs {
    run: usize,
    a_base: usize,
    b_base: usize,
    /// Per outer dimension: (count, stride in `a`, stride in `b`), in elements.
    outer: Vec<(usize, usize, usize)>,
}

impl Runs {
    /// None: the region is empty. Trailing dimensions that span both arrays whole are
    /// merged into one run.
    fn new(a_shape: &[u64], a_start: &[u64], b_shape: &[u64], b_start: &[u64], region: &[u64]) -> Option<Self> {
        let ndim = region.len();
        if region.contains(&0) {
            return None;
        }
        let (a_strides, b_strides) = (strides(a_shape), strides(b_shape));
        let base = |start: &[u64], strides: &[usize]| -> usize {
            start.iter().zip(strides).map(|(&s, &st)| s as usize * st).sum()
        };
        let (a_base, b_base) = (base(a_start, &a_strides), base(b_start, &b_strides));
        if ndim == 0 {
            return Some(Self { run: 1, a_base, b_base, outer: Vec::new() });
        }
        let mut inner = ndim - 1;
        let mut run = region[inner] as usize;
        while inner > 0 && region[inner] == a_shape[inner] && region[inner] == b_shape[inner] {
            inner -= 1;
            run *= region[inner] as usize;
        }
        let outer = (0..inner).map(|d| (region[d] as usize, a_strides[d], b_strides[d])).collect();
        Some(Self { run, a_base, b_base, outer })
    }

    /// The largest offsets (exclusive) a run reaches in `a` and in `b`.
    fn ends(&self) -> (usize, usize) {
        let (mut a, mut b) = (self.a_base + self.run, self.b_base + self.run);
        for &(count, a_stride, b_stride) in &self.outer {
            a += (count - 1) * a_stride;
            b += (count - 1) * b_stride;
        }
        (a, b)
    }

    /// Call `f(a offset, b offset)` for every run, in C order. Offsets advance by adding
    /// strides, so a run costs a few additions rather than a dot product.
    #[inline(always)]
    fn visit(&self, mut f: impl FnMut(usize, usize)) {
        match *self.outer.as_slice() {
            [] => f(self.a_base, self.b_base),
            [(n0, a0, b0)] => {
                let (mut a, mut b) = (self.a_base, self.b_base);
                for _ in 0..n0 {
                    f(a, b);
                    a += a0;
                    b += b0;
                }
            }
            // Three dimensions: the common case, as plain nested loops.
            [(n0, a0, b0), (n1, a1, b1)] => {
                let (mut a_row, mut b_row) = (self.a_base, self.b_base);
                for _ in 0..n0 {
                    let (mut a, mut b) = (a_row, b_row);
                    for _ in 0..n1 {
                        f(a, b);
                        a += a1;
                        b += b1;
                    }
                    a_row += a0;
                    b_row += b0;
                }
            }
            _ => self.visit_odometer(f),
        }
    }

    /// [`Runs::visit`] for any number of outer dimensions.
    fn visit_odometer(&self, mut f: impl FnMut(usize, usize)) {
        let outer = &self.outer;
        let mut index = vec![0usize; outer.len()];
        let (mut a, mut b) = (self.a_base, self.b_base);
        loop {
            f(a, b);
            let mut d = outer.len();
            loop {
                if d == 0 {
                    return;
                }
                d -= 1;
                let (count, a_stride, b_stride) = outer[d];
                index[d] += 1;
                a += a_stride;
                b += b_stride;
                if index[d] < count {
                    break;
                }
                index[d] = 0;
                a -= count * a_stride;
                b -= count * b_stride;
            }
        }
    }
}

/// Visit the contiguous runs of a C-order region: for each, the element offsets in the two
/// arrays and the run length in elements. Trailing dimensions that span both arrays whole
/// are merged into one run.
pub fn for_each_run(
    a_shape: &[u64],
    a_start: &[u64],
    b_shape: &[u64],
    b_start: &[u64],
    region: &[u64],
    mut f: impl FnMut(usize, usize, usize),
) {
    if let Some(runs) = Runs::new(a_shape, a_start, b_shape, b_start, region) {
        let run = runs.run;
        runs.visit(|a, b| f(a, b, run));
    }
}

/// Copy a region between two C-order arrays of the same element size.
///
/// # Panics
/// If the region does not lie inside both arrays (callers check regions first).
#[allow(clippy::too_many_arguments)]
pub fn copy_region(
    src: &[u8],
    src_shape: &[u64],
    src_start: &[u64],
    dst: &mut [u8],
    dst_shape: &[u64],
    dst_start: &[u64],
    region: &[u64],
    element_size: usize,
) {
    // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and the copy below only
    // stores initialised bytes, so `dst` stays initialised.
    let dst = unsafe { &mut *(std::ptr::from_mut::<[u8]>(dst) as *mut [MaybeUninit<u8>]) };
    copy_region_uninit(src, src_shape, src_start, dst, dst_shape, dst_start, region, element_size);
}

/// [`copy_region`] into a buffer that may be uninitialised: every byte of the region in
/// `dst` is initialised once this returns, and no other byte is touched.
///
/// # Panics
/// If the region does not lie inside both arrays (callers check regions first).
#[allow(clippy::too_many_arguments)]
pub fn copy_region_uninit(
    src: &[u8],
    src_shape: &[u64],
    src_start: &[u64],
    dst: &mut [MaybeUninit<u8>],
    dst_shape: &[u64],
    dst_start: &[u64],
    region: &[u64],
    element_size: usize,
) {
    let Some(runs) = Runs::new(src_shape, src_start, dst_shape, dst_start, region) else {
        return;
    };
    let (src_end, dst_end) = runs.ends();
    // Checked once, here, rather than per run: every run lies below these ends.
    assert!(
        src_end * element_size <= src.len() && dst_end * element_size <= dst.len(),
        "copy_region: region outside its arrays"
    );
    let run = runs.run * element_size;
    // Runs of a few cache lines (an inner chunk row of 32 uint16 is 64 bytes) copy with a
    // fixed length, which compiles to a few vector moves instead of a call to memcpy.
    match run {
        16 => copy_runs::<16>(&runs, src, dst, element_size),
        32 => copy_runs::<32>(&runs, src, dst, element_size),
        64 => copy_runs::<64>(&runs, src, dst, element_size),
        128 => copy_runs::<128>(&runs, src, dst, element_size),
        256 => copy_runs::<256>(&runs, src, dst, element_size),
        _ => runs.visit(|s, d| {
            let (s, d) = (s * element_size, d * element_size);
            copy_bytes(&src[s..s + run], &mut dst[d..d + run]);
        }),
    }
}

/// Copy every run of `runs` of exactly `N` bytes.
///
/// (Prefetching the source rows ahead, e.g. the same row of the next plane, made a 32^3
/// chunk copy from a 512^3 source slower, not faster: see `copy_speed`.)
#[inline(always)]
fn copy_runs<const N: usize>(runs: &Runs, src: &[u8], dst: &mut [MaybeUninit<u8>], element_size: usize) {
    runs.visit(|s, d| {
        let (s, d) = (s * element_size, d * element_size);
        copy_bytes(&src[s..s + N], &mut dst[d..d + N]);
    });
}

/// `dst.copy_from_slice(src)` for a destination that may be uninitialised.
#[inline(always)]
fn copy_bytes(src: &[u8], dst: &mut [MaybeUninit<u8>]) {
    assert_eq!(src.len(), dst.len());
    // SAFETY: both slices have `src.len()` bytes (asserted), `src` is initialised, and the
    // two cannot overlap: `dst` is borrowed mutably while `src` is borrowed.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<u8>(), src.len()) };
}

/// Set every element of a region of a C-order array to `element`.
pub fn fill_region(dst: &mut [u8], dst_shape: &[u64], dst_start: &[u64], region: &[u64], element: &[u8]) {
    let size = element.len();
    for_each_run(dst_shape, dst_start, dst_shape, dst_start, region, |_, d, n| {
        fill_elements(&mut dst[d * size..(d + n) * size], element);
    });
}

/// Set `target` (a whole number of elements) to `element` repeated. A `copy_from_slice` per
/// element is a `memcpy` call per element (its length is only known at run time): a 100k
/// element bool chunk took ~0.5 ms that way. Here an element of one repeated byte (zero,
/// `false`, any 1-byte value) is a `memset`, and any other is copied once and then doubled
/// with `copy_within`, so the calls grow with the log of the length.
pub fn fill_elements(target: &mut [u8], element: &[u8]) {
    let size = element.len();
    debug_assert!(size > 0 && target.len().is_multiple_of(size));
    let Some((&first, rest)) = element.split_first() else { return };
    if rest.iter().all(|&byte| byte == first) {
        target.fill(first);
        return;
    }
    if target.len() < size {
        return;
    }
    target[..size].copy_from_slice(element);
    let mut filled = size;
    while filled < target.len() {
        let n = filled.min(target.len() - filled);
        target.copy_within(..n, filled);
        filled += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_elements_repeats_any_element_over_any_length() {
        let elements: [&[u8]; 6] = [&[0], &[7], &[0, 0, 0, 0], &[1, 2], &[9, 9, 9, 8], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]];
        for element in elements {
            for count in [0usize, 1, 2, 3, 7, 8, 100, 1023] {
                let mut target = vec![0xAA; count * element.len()];
                fill_elements(&mut target, element);
                let expected: Vec<u8> = element.iter().copied().cycle().take(count * element.len()).collect();
                assert_eq!(target, expected, "element {element:?}, count {count}");
            }
        }
    }

    /// The region copied element by element: the reference every kernel must match.
    #[allow(clippy::too_many_arguments)]
    fn copy_naive(
        src: &[u8],
        src_shape: &[u64],
        src_start: &[u64],
        dst: &mut [u8],
        dst_shape: &[u64],
        dst_start: &[u64],
        region: &[u64],
        element_size: usize,
    ) {
        let n: u64 = region.iter().product();
        let (ss, ds) = (strides(src_shape), strides(dst_shape));
        for flat in 0..n {
            let mut rest = flat;
            let (mut s, mut d) = (0usize, 0usize);
            for dim in (0..region.len()).rev() {
                let i = rest % region[dim];
                rest /= region[dim];
                s += (src_start[dim] + i) as usize * ss[dim];
                d += (dst_start[dim] + i) as usize * ds[dim];
            }
            let (s, d) = (s * element_size, d * element_size);
            dst[d..d + element_size].copy_from_slice(&src[s..s + element_size]);
        }
    }

    #[test]
    fn copies_match_an_element_by_element_copy() {
        // Dimensions 0 to 5, element sizes 1 to 8, runs of every fixed length and others,
        // regions that merge trailing dimensions and regions that do not.
        // Per case: source shape and start, destination shape and start, region.
        type Case<'a> = (&'a [u64], &'a [u64], &'a [u64], &'a [u64], &'a [u64]);
        let cases: &[Case] = &[
            (&[], &[], &[], &[], &[]),
            (&[10], &[3], &[7], &[1], &[5]),
            (&[4, 64], &[1, 0], &[3, 64], &[0, 0], &[2, 64]),
            (&[8, 8, 40], &[1, 2, 4], &[4, 4, 32], &[0, 0, 0], &[4, 4, 32]),
            (&[6, 9, 16], &[2, 1, 0], &[3, 8, 16], &[1, 0, 0], &[2, 8, 16]),
            (&[5, 5, 5], &[1, 1, 1], &[5, 5, 5], &[0, 2, 1], &[3, 3, 4]),
            (&[3, 4, 5, 130], &[1, 0, 2, 1], &[2, 4, 3, 128], &[0, 0, 0, 0], &[2, 4, 3, 128]),
            (&[2, 3, 2, 3, 17], &[0, 1, 0, 1, 3], &[2, 2, 2, 2, 16], &[0, 0, 0, 0, 2], &[2, 2, 2, 2, 14]),
            (&[4, 0, 3], &[0, 0, 0], &[4, 0, 3], &[0, 0, 0], &[4, 0, 3]),
        ];
        for element_size in [1usize, 2, 4, 8] {
            for &(src_shape, src_start, dst_shape, dst_start, region) in cases {
                let src_len = src_shape.iter().product::<u64>() as usize * element_size;
                let dst_len = dst_shape.iter().product::<u64>() as usize * element_size;
                let src: Vec<u8> = (0..src_len).map(|i| (i * 7 + 3) as u8).collect();
                let (mut ours, mut naive) = (vec![0xAAu8; dst_len], vec![0xAAu8; dst_len]);
                copy_region(&src, src_shape, src_start, &mut ours, dst_shape, dst_start, region, element_size);
                copy_naive(&src, src_shape, src_start, &mut naive, dst_shape, dst_start, region, element_size);
                assert_eq!(ours, naive, "{src_shape:?} {src_start:?} -> {dst_shape:?} {dst_start:?}, region {region:?}, {element_size} B");
            }
        }
    }

    /// Time copying every 32^3 chunk of a 512^3 `uint16` source (the benchmark's write):
    /// `cargo test --release --lib copy_speed -- --ignored --nocapture`. On the project's
    /// machine about 1.8x a contiguous copy of the same bytes: the source rows are 64 bytes
    /// from planes 512 KiB apart, which is memory-bound. (Prefetching the row 8 runs ahead
    /// was 5-15% slower.)
    #[test]
    #[ignore = "a timing, not a test"]
    fn copy_speed() {
        let (side, chunk) = (512u64, 32u64);
        let source: Vec<u8> = (0..side * side * side * 2).map(|i| (i * 31 % 251) as u8).collect();
        let mut target = vec![MaybeUninit::new(0u8); (chunk * chunk * chunk * 2) as usize];
        let shape = [side; 3];
        let (chunk_shape, zeros) = ([chunk; 3], [0u64; 3]);
        for _ in 0..3 {
            let start = std::time::Instant::now();
            for i in 0..side / chunk {
                for j in 0..side / chunk {
                    for k in 0..side / chunk {
                        let from = [i * chunk, j * chunk, k * chunk];
                        copy_region_uninit(&source, &shape, &from, &mut target, &chunk_shape, &zeros, &chunk_shape, 2);
                    }
                }
            }
            println!("copy 256 MiB in 32^3 chunks: {:.4} s", start.elapsed().as_secs_f64());
        }
        // For scale: the same bytes copied contiguously, 64 KiB at a time.
        let start = std::time::Instant::now();
        for piece in source.chunks_exact(target.len()) {
            copy_bytes(piece, &mut target);
        }
        println!("copy 256 MiB contiguously: {:.4} s", start.elapsed().as_secs_f64());
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn a_region_outside_an_array_panics_before_copying() {
        let src = vec![0u8; 16];
        let mut dst = vec![0u8; 16];
        copy_region(&src, &[4, 4], &[1, 0], &mut dst, &[4, 4], &[0, 0], &[4, 4], 1);
    }
}

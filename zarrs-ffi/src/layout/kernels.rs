//! Copy kernels: contiguous runs of C-order regions, copied or filled.
//!
//! The hot loops of every read and write. Pure functions over byte slices: no arrays, no
//! codecs, no stores, and no bounds policy (callers check regions before calling).

fn strides(shape: &[u64]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1] as usize;
    }
    strides
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
    let ndim = region.len();
    if region.contains(&0) {
        return;
    }
    if ndim == 0 {
        f(0, 0, 1);
        return;
    }
    let mut inner = ndim - 1;
    let mut run = region[inner] as usize;
    while inner > 0 && region[inner] == a_shape[inner] && region[inner] == b_shape[inner] {
        inner -= 1;
        run *= region[inner] as usize;
    }
    let (a_strides, b_strides) = (strides(a_shape), strides(b_shape));
    let base = |start: &[u64], strides: &[usize]| -> usize {
        start.iter().zip(strides).map(|(&s, &st)| s as usize * st).sum()
    };
    let (a_base, b_base) = (base(a_start, &a_strides), base(b_start, &b_strides));
    // Odometer over the outer dimensions 0..inner.
    let mut index = vec![0u64; inner];
    loop {
        let a_off = a_base + index.iter().zip(&a_strides).map(|(&i, &st)| i as usize * st).sum::<usize>();
        let b_off = b_base + index.iter().zip(&b_strides).map(|(&i, &st)| i as usize * st).sum::<usize>();
        f(a_off, b_off, run);
        let mut d = inner;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            index[d] += 1;
            if index[d] < region[d] {
                break;
            }
            index[d] = 0;
        }
    }
}

/// Copy a region between two C-order arrays of the same element size.
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
    for_each_run(src_shape, src_start, dst_shape, dst_start, region, |s, d, n| {
        let (s, d, n) = (s * element_size, d * element_size, n * element_size);
        dst[d..d + n].copy_from_slice(&src[s..s + n]);
    });
}

/// Set every element of a region of a C-order array to `element`.
pub fn fill_region(dst: &mut [u8], dst_shape: &[u64], dst_start: &[u64], region: &[u64], element: &[u8]) {
    let size = element.len();
    for_each_run(dst_shape, dst_start, dst_shape, dst_start, region, |_, d, n| {
        for chunk in dst[d * size..(d + n) * size].chunks_exact_mut(size) {
            chunk.copy_from_slice(element);
        }
    });
}

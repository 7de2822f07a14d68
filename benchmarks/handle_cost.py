"""What the C handle checks cost per call: one library build against another, same process kind.

Loads the native library at LIB (instead of the package's), then times a call that does
nothing but check its handle (``zarrs_array_dimensionality``, through cffi) and a small read
through the direct API (one 32^3 zstd chunk of a 256^3 uint16 array, ``Array.read`` into a
buffer), medians. Run it alternately with two builds, e.g. before and after a change:

    python benchmarks/handle_cost.py --dir /dev/shm LIB_BEFORE.so
    python benchmarks/handle_cost.py --dir /dev/shm LIB_AFTER.so
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lib", help="the native library to load")
    parser.add_argument("--dir", default="/tmp", help="where the array goes (kept between runs)")
    args = parser.parse_args()
    import zarrs_cffi._bindings.library as ffi_module

    ffi_module.library_path = lambda: Path(args.lib).resolve()  # type: ignore[assignment]
    import zarr
    from zarr.codecs import ZstdCodec

    from zarrs_cffi import Array

    path = Path(args.dir) / "handle-cost.zarr"
    if not path.exists():
        with zarr.config.set({"codec_pipeline.path": "zarr.core.codec_pipeline.BatchedCodecPipeline"}):
            z = zarr.create_array(path, shape=(256,) * 3, chunks=(32,) * 3, dtype="uint16", compressors=[ZstdCodec()])
            z[:] = np.random.default_rng(0).integers(0, 1000, z.shape, dtype="uint16")
    array = Array.open(path)
    lib, ffi = ffi_module.lib(), ffi_module.ffi
    handle = array._native._handle
    ndim = ffi.new("size_t *")
    out = np.empty((32,) * 3, dtype="uint16")
    region = (slice(32, 64),) * 3
    for _ in range(200):
        array.read(region, out=out)
    start = time.perf_counter_ns()
    for _ in range(100_000):
        lib.zarrs_array_dimensionality(handle, ndim)
    call_ns = (time.perf_counter_ns() - start) / 100_000
    reads = []
    for _ in range(300):
        start = time.perf_counter_ns()
        array.read(region, out=out)
        reads.append(time.perf_counter_ns() - start)
    print(f"{args.lib}: handle-only call {call_ns:.0f} ns, small direct read {statistics.median(reads) / 1000:.1f} us (median of 300)")


if __name__ == "__main__":
    main()

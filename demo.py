"""Demo: write and read a real Zarr array through zarr with ZarrsCodecPipeline.

Writes a 256^3 uint16 array (32 MiB, zstd, 32^3 chunks) to a temporary directory with
zarr's own BatchedCodecPipeline and with ours, reads both back, checks every value, and
prints the timings and what went native.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

import zarrs_cffi

PIPELINES = {
    "zarr BatchedCodecPipeline": "zarr.core.codec_pipeline.BatchedCodecPipeline",
    "zarrs_cffi ZarrsCodecPipeline": "zarrs_cffi.ZarrsCodecPipeline",
}


def run(root: Path, size: int, data: np.ndarray) -> dict[str, tuple[float, float]]:
    timings = {}
    for label, path in PIPELINES.items():
        with zarr.config.set({"codec_pipeline.path": path}):
            store = zarr.storage.LocalStore(root / label.split()[0])
            array = zarr.create_array(
                store, shape=data.shape, chunks=(32, 32, 32), dtype=data.dtype, compressors=ZstdCodec(level=1)
            )
            start = time.perf_counter()
            array[:] = data
            write = time.perf_counter() - start
            start = time.perf_counter()
            back = zarr.open_array(store, mode="r")[:]
            read = time.perf_counter() - start
            if not np.array_equal(back, data):
                raise SystemExit(f"{label}: the array read back differs from what was written")
            timings[label] = (write, read)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256, help="edge length of the cube (default 256)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n = args.size
    data = (np.arange(n**3, dtype=np.uint32).reshape(n, n, n) % 4096).astype(np.uint16)
    data += rng.integers(0, 16, size=data.shape, dtype=np.uint16)
    mib = data.nbytes / 2**20

    root = Path(tempfile.mkdtemp(prefix="zarrs-cffi-demo-"))
    try:
        zarrs_cffi.reset_stats()
        timings = run(root, n, data)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"array: {data.shape} uint16 ({mib:.0f} MiB), 32^3 chunks, zstd level 1, LocalStore")
    print(f"{'pipeline':32} {'write':>9} {'read':>9} {'write MiB/s':>12} {'read MiB/s':>11}")
    for label, (write, read) in timings.items():
        print(f"{label:32} {write:8.3f}s {read:8.3f}s {mib / write:12.0f} {mib / read:11.0f}")
    (bw, br), (ow, orr) = timings.values()
    print(f"speed-up: write {bw / ow:.1f}x, read {br / orr:.1f}x (values checked equal)")
    s = zarrs_cffi.stats()
    print(
        f"zarrs_cffi: {s.native_writes} chunks written and {s.native_reads} read natively, "
        f"{s.fallbacks} fell back{': ' + str(dict(s.fallback_reasons)) if s.fallbacks else ''}"
    )


if __name__ == "__main__":
    main()

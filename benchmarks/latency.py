"""Reads over a network's latency: an HTTP server on 127.0.0.1 that answers every request
after a fixed delay (20 ms by default), our pipeline reading natively through obstore's
HTTPStore. Per op: best time of 3, requests made, most requests in flight at once, and
the floor (rounds of requests x delay).

    python benchmarks/latency.py --dir /dev/shm [--delay 0.02] [--lib LIB.so]

``--lib`` loads another build of the native library (an A/B of two builds, run one after
the other). A start of the object-storage benchmark: peers, S3 and writes are not here yet.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds before each request is answered")
    parser.add_argument("--lib", default=None, help="the native library to load instead of the package's")
    args = parser.parse_args()
    if args.lib:
        import zarrs_cffi._bindings.library as ffi_module

        ffi_module.library_path = lambda: Path(args.lib).resolve()  # type: ignore[assignment]
    import zarr
    from obstore.store import HTTPStore
    from servers import http_server
    from zarr.codecs import ZstdCodec
    from zarr.storage import ObjectStore

    zarr.config.set({"codec_pipeline.path": "zarrs_cffi.ZarrsCodecPipeline"})
    data = np.random.default_rng(0).integers(0, 1000, (256, 256, 256), dtype="uint16")
    rows = np.sort(np.random.default_rng(1).choice(256, 16, replace=False))
    ops = {
        "one inner chunk": (lambda a: a[0:32, 0:32, 0:32], 2),
        "box 60^3 (8 shards)": (lambda a: a[100:160, 100:160, 100:160], 2),
        "oindex 16 rows x all x 1": (lambda a: a.oindex[rows, :, 5], 2),
        "vindex 16 points": (lambda a: a.vindex[rows, rows, rows], 2),
        "read all": (lambda a: a[:], 1),
    }
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        with zarr.config.set({"codec_pipeline.path": "zarr.core.codec_pipeline.BatchedCodecPipeline"}):
            zarr.create_array(f"{tmp}/s.zarr", shape=data.shape, chunks=(32,) * 3, shards=(128,) * 3,
                              dtype="uint16", compressors=[ZstdCodec()])[:] = data
        with http_server(tmp, delay=args.delay) as url:
            store = ObjectStore(HTTPStore.from_url(f"{url}/s.zarr", client_options={"allow_http": True}), read_only=True)
            array = zarr.open_array(store, mode="r")
            print(f"256^3 uint16, 32^3 zstd chunks in 128^3 shards, HTTP, {args.delay * 1000:.0f} ms per request, best of 3:\n")
            print("| op | time (ms) | requests | most in flight | floor: rounds x delay (ms) |")
            print("|---|---|---|---|---|")
            for name, (op, rounds) in ops.items():
                op(array)
                best = float("inf")
                for _ in range(3):
                    url.requests.clear()
                    url.in_flight[1] = 0
                    start = time.perf_counter()
                    op(array)
                    best = min(best, time.perf_counter() - start)
                print(f"| {name} | {best * 1000:.0f} | {len(url.requests)} | {url.in_flight[1]} | {rounds * args.delay * 1000:.0f} |")


if __name__ == "__main__":
    main()

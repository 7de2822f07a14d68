"""What the direct API adds per call over the native call itself.

One small read (a 1 x 16 region of an uncompressed (4096, 256) float32 array, 64-row chunks,
so the native work is a few copies) made five ways, interleaved round by round, median of
the rounds' per-call means:

- ``C call``: ``zarrs_array_retrieve_subset`` through cffi with every argument prepared once
  (the floor: what any caller of the C ABI from Python pays);
- ``bindings``: ``ArrayHandle.retrieve_subset`` (argument checks, conversions);
- ``Array.read(out=)``: the direct API into a caller's buffer;
- ``Array[...]``: the direct API allocating its result;
- ``tensorstore``: ``ts[...].read().result()`` on the same array, when installed.

Our overhead per call is each direct-API row minus the C call. ``--calls`` per round,
``--rounds`` rounds; CPU time (all threads) beside wall.

    python benchmarks/direct_overhead.py --dir /dev/shm
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(rows: dict[str, Callable[[], object]], calls: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Median over ``rounds`` of each row's wall and CPU microseconds per call, rows
    interleaved round by round."""
    for call in rows.values():
        for _ in range(min(calls, 200)):
            call()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
    for _ in range(rounds):
        for name, call in rows.items():
            cpu, start = _cpu(), time.perf_counter()
            for _ in range(calls):
                call()
            wall = (time.perf_counter() - start) / calls * 1e6
            samples[name].append((wall, (_cpu() - cpu) / calls * 1e6))
    return {
        name: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
        for name, runs in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    import zarr

    import zarrs_cffi._bindings.library as library
    from zarrs_cffi import Array

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "a.zarr"
        with zarr.config.set({"codec_pipeline.path": "zarr.core.codec_pipeline.BatchedCodecPipeline"}):
            z = zarr.create_array(path, shape=(4096, 256), chunks=(64, 256), dtype="float32", compressors=None)
            z[:] = np.random.default_rng(0).random(z.shape, dtype="float32")
        array = Array.open(path)
        native, options = array._native, array.options
        region = (slice(100, 101), slice(32, 48))
        out = np.empty((1, 16), dtype="float32")
        lib, ffi = library.lib(), library.ffi
        start, shape = ffi.new("uint64_t[]", [100, 32]), ffi.new("uint64_t[]", [1, 16])
        buffer, handle, cdata = ffi.from_buffer(out), native._handle, options._cdata()

        def c_call() -> object:
            return lib.zarrs_array_retrieve_subset(handle, cdata, start, shape, 2, buffer, out.nbytes)

        rows: dict[str, Callable[[], object]] = {
            "C call": c_call,
            "bindings": lambda: native.retrieve_subset(options, (100, 32), out),
            "Array.read(out=)": lambda: array.read(region, out=out),
            "Array[...]": lambda: array[region],
        }
        try:
            import tensorstore as ts

            store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}).result()
            rows["tensorstore"] = lambda: store[100:101, 32:48].read().result()
        except ImportError:
            pass
        assert np.array_equal(array[region], z[region])
        results = measure(rows, args.calls, args.rounds)
    floor = results["C call"][0]
    print(f"1 x 16 float32 read, uncompressed; median of {args.rounds} rounds of {args.calls} calls; µs per call\n")
    print("| call | wall µs | CPU µs | over the C call (µs) |")
    print("|---|---|---|---|")
    for name, (wall, cpu) in results.items():
        over = "" if name in ("C call", "tensorstore") else f"{wall - floor:+.1f}"
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {over} |")


if __name__ == "__main__":
    main()

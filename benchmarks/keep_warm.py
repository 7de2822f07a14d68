"""What the keep-warm window saves and costs: small reads with it off and on, interleaved.

For each layout, rounds of random 16^3 box reads alternate between the window off
(``zarrs_cffi.keep_warm(0)``) and on (the library's default on this machine, or
``--warm-us``), through zarr's API with our pipeline and through our direct API
(``zarrs_cffi.Array``, whose calls do not start the window: its rows show that they are not
slowed by it). Each round is followed by a pause longer than the window, so every round starts
from idle CPUs. Reported per read: the median and best wall time over the rounds, and the
median CPU time (user + system, all threads, getrusage; the window after the last read
included).

Usage::

    python benchmarks/keep_warm.py --dir /dev/shm [--size 256] [--rounds 9] [--reads 200] [--warm-us US]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

import zarrs_cffi

BOX = 16
PAUSE = 0.05
LAYOUTS: dict[str, dict[str, Any]] = {
    "zstd": {"chunks": (32,) * 3, "compressors": ZstdCodec(level=1)},
    "zstd-sharded": {"chunks": (32,) * 3, "shards": (128,) * 3, "compressors": ZstdCodec(level=1)},
    "blosc-lz4": {"chunks": (32,) * 3, "compressors": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")},
    "raw-sharded": {"chunks": (32,) * 3, "shards": (128,) * 3, "compressors": None},
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(path: Path, data: np.ndarray, boxes: list[tuple[slice, ...]], rounds: int, warm_us: int) -> list[str]:
    with zarr.config.set({"codec_pipeline.path": "zarrs_cffi.ZarrsCodecPipeline"}):
        through_zarr = zarr.open_array(path, mode="r")
    direct = zarrs_cffi.Array.open(str(path))
    readers = {"zarr": through_zarr, "direct": direct}
    for reader in readers.values():
        assert np.array_equal(reader[boxes[0]], data[boxes[0]])
    times: dict[tuple[str, int], list[tuple[float, float]]] = {}
    with zarr.config.set({"codec_pipeline.path": "zarrs_cffi.ZarrsCodecPipeline"}):
        for _ in range(rounds):
            for api, reader in readers.items():
                for window in (0, warm_us):
                    zarrs_cffi.keep_warm(window)
                    cpu = _cpu()
                    start = time.perf_counter()
                    for box in boxes:
                        reader[box]
                    wall = time.perf_counter() - start
                    zarrs_cffi.keep_warm(0)
                    time.sleep(PAUSE)
                    times.setdefault((api, window), []).append((wall, _cpu() - cpu))
    rows = []
    for (api, window), samples in times.items():
        walls = np.array([s[0] for s in samples]) / len(boxes) * 1e6
        cpus = np.array([s[1] for s in samples]) / len(boxes) * 1e6
        rows.append((api, window, float(np.median(walls)), float(walls.min()), float(np.median(cpus))))
    lines = []
    for api in readers:
        off = next(r for r in rows if r[0] == api and r[1] == 0)
        on = next(r for r in rows if r[0] == api and r[1] == warm_us)
        for row in (off, on):
            lines.append(f"| {path.stem} | {row[0]} | {row[1]} | {row[2]:.0f} | {row[3]:.0f} | {row[4]:.0f} |")
        lines.append(f"| {path.stem} | {api} | on / off | {on[2] / off[2]:.2f}x | {on[3] / off[3]:.2f}x | {on[4] / off[4]:.2f}x |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="where the arrays go (default: the system temp dir)")
    parser.add_argument("--size", type=int, default=256, help="edge of the cubic uint16 array (default 256)")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    parser.add_argument("--reads", type=int, default=200, help="reads per round (default 200)")
    parser.add_argument("--layout", nargs="*", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--warm-us", type=int, default=None, help="the window when on, µs (default: the library's)")
    args = parser.parse_args()
    default = zarrs_cffi.keep_warm()
    warm_us = args.warm_us if args.warm_us is not None else (default or 1000)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 1000, size=(args.size,) * 3, dtype=np.uint16)
    starts = rng.integers(0, args.size - BOX, size=(args.reads, 3))
    boxes = [tuple(slice(s, s + BOX) for s in start) for start in starts]
    lines = [
        f"Per small read (µs; {args.rounds} interleaved rounds of {args.reads} random {BOX}^3 boxes of a "
        f"{args.size}^3 uint16 array; window off = 0, on = {warm_us} µs; this machine's default {default} µs):",
        "",
        "| layout | API | window (µs) | wall, median | wall, best | CPU, median |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for layout in args.layout:
            path = Path(tmp) / f"{layout}.zarr"
            with zarr.config.set({"codec_pipeline.path": "zarr.core.codec_pipeline.BatchedCodecPipeline"}):
                zarr.create_array(path, shape=data.shape, dtype=data.dtype, **LAYOUTS[layout])[...] = data
            lines += measure(path, data, boxes, args.rounds, warm_us)
    zarrs_cffi.keep_warm(default)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

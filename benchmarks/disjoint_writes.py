"""What the per-key write locks cost writers that never share a key.

Threads of one process writing into one chunk or shard are serialised per stored key
(``zarrs_cffi/keylocks.py``); writers of disjoint keys must not wait for each other, nor
pay much for the table. Here ``--threads`` threads (8 by default), released together by a
barrier, each write their own chunks or shards, ``--writes`` times per round; rounds
alternate between the locks on and off (``zarrs_cffi._core.keylocks._ENABLED``, a switch for
this measurement only), through zarr with our pipeline and through the direct API.

Layouts (every write is disjoint from every other thread's):

- ``chunk``: each write is one whole 64x64 uint16 zstd chunk (a key per call: the locks'
  largest share of a call);
- ``shard-part``: each thread owns a shard of 4x4 inner chunks and each write replaces one
  inner chunk (a read-modify-write of the thread's own shard);
- ``many-chunks``: each write covers 256 chunks of 16x16 (hundreds of keys per call).

Reported per layout and API: the median and best wall time of a round, its median CPU time
(user + system, all threads, getrusage), and on / off ratios.

Usage::

    python benchmarks/disjoint_writes.py --dir /dev/shm [--rounds 9] [--writes 20] [--threads 8]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

import zarrs_cffi
from zarrs_cffi._core import keylocks

# layout -> (array keyword arguments, each thread's band of rows, one write's region in it)
LAYOUTS: dict[str, tuple[dict[str, Any], int, tuple[int, int]]] = {
    "chunk": ({"chunks": (64, 64), "compressors": ZstdCodec(level=1)}, 64, (64, 64)),
    "shard-part": ({"chunks": (64, 64), "shards": (256, 256), "compressors": ZstdCodec(level=1)}, 256, (64, 64)),
    "many-chunks": ({"chunks": (16, 16), "compressors": ZstdCodec(level=1)}, 256, (256, 256)),
}
WIDTH = 256


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _round(write: Any, threads: int, writes: int) -> tuple[float, float]:
    """One round: ``threads`` threads released together, each making ``writes`` writes."""
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def writer(band: int) -> None:
        barrier.wait()
        try:
            for i in range(writes):
                write(band, i)
        except BaseException as exc:  # noqa: BLE001 - raised below
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(band,)) for band in range(threads)]
    for worker in workers:
        worker.start()
    cpu = _cpu()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return wall, _cpu() - cpu


def measure(root: Path, layout: str, threads: int, writes: int, rounds: int) -> list[str]:
    kwargs, band_rows, (rows, cols) = LAYOUTS[layout]
    shape = (threads * band_rows, WIDTH)
    path = root / f"{layout}.zarr"
    with zarr.config.set({"codec_pipeline.path": "zarrs_cffi.ZarrsCodecPipeline"}):
        through_zarr = zarr.create_array(path, shape=shape, dtype="uint16", fill_value=0, **kwargs)
    direct = zarrs_cffi.Array.open(str(path))
    rng = np.random.default_rng(0)
    blocks = [rng.integers(0, 1000, (rows, cols), dtype="uint16") for _ in range(4)]
    per_band = (band_rows // rows) * (WIDTH // cols)

    def region(band: int, i: int) -> tuple[slice, slice]:
        # The i-th write of a band cycles over the band's write regions.
        at = i % per_band
        r, c = divmod(at, WIDTH // cols)
        top = band * band_rows + r * rows
        return slice(top, top + rows), slice(c * cols, (c + 1) * cols)

    def zarr_write(band: int, i: int) -> None:
        through_zarr[region(band, i)] = blocks[i % 4]

    def direct_write(band: int, i: int) -> None:
        direct[region(band, i)] = blocks[i % 4]

    apis = {"zarr": zarr_write, "direct": direct_write}
    samples: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    try:
        for api, write in apis.items():  # warm up: metadata opened, pools started
            _round(write, threads, 1)
        for _ in range(rounds):
            for api, write in apis.items():
                for enabled in (True, False):
                    keylocks._ENABLED = enabled
                    samples.setdefault((api, enabled), []).append(_round(write, threads, writes))
    finally:
        keylocks._ENABLED = True
    # Each band's last write is there: nothing was lost, or mixed between threads.
    data = direct[:]
    for band in range(threads):
        last = (writes - 1) % per_band
        expected = blocks[(writes - 1) % 4]
        assert np.array_equal(data[region(band, last)], expected), (layout, band)
    lines = []
    for api in apis:
        row = {}
        for enabled in (True, False):
            walls = np.array([s[0] for s in samples[(api, enabled)]]) * 1e3
            cpus = np.array([s[1] for s in samples[(api, enabled)]]) * 1e3
            row[enabled] = (float(np.median(walls)), float(walls.min()), float(np.median(cpus)))
            name = "on" if enabled else "off"
            median, best, cpu = row[enabled]
            lines.append(f"| {layout} | {api} | {name} | {median:.1f} | {best:.1f} | {cpu:.1f} |")
        on, off = row[True], row[False]
        lines.append(
            f"| {layout} | {api} | on / off | {on[0] / off[0]:.2f}x | {on[1] / off[1]:.2f}x | {on[2] / off[2]:.2f}x |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=None, help="where the arrays go (a tmpfs such as /dev/shm)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--writes", type=int, default=20, help="writes per thread per round")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--layout", nargs="+", choices=list(LAYOUTS), default=list(LAYOUTS))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="zarrs-cffi-disjoint-", dir=args.dir))
    try:
        print(f"{args.threads} threads x {args.writes} writes per round, {args.rounds} rounds interleaved "
              "(locks on, off; zarr, direct)")
        print()
        print("| layout | api | locks | median ms per round | best ms | CPU ms (median) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for layout in args.layout:
            for line in measure(root, layout, args.threads, args.writes, args.rounds):
                print(line, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""CPU time of a whole-array write, ours against tensorstore: what bounds write_all.

On a 2-core machine a write that keeps both cores busy cannot take less wall time than half
its CPU time. This script writes the benchmark array (``bench.py``'s data and layouts) with
our pipeline through zarr, with our direct ``Array`` API and with tensorstore, and reports
for the fastest of ``--repeat`` writes the wall time, the process CPU time (user + system,
every thread, from ``getrusage``), the system part (file creation, writes and renames) and
CPU / cores: the wall time that CPU would take with every core busy from start to end.

Usage::

    python benchmarks/write_cpu.py --dir /dev/shm [--layout zstd zstd-sharded] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zarr

import zarrs_cffi
from bench import LAYOUTS, make_data

try:
    import tensorstore as ts
except ImportError:  # an optional peer (benchmarks/requirements.txt): its rows are left out
    ts = None


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_stime


def best_of(repeat: int, write: Callable[[], None]) -> tuple[float, float, float]:
    """(wall, cpu, system) of the fastest of ``repeat`` writes."""
    best = (float("inf"), 0.0, 0.0)
    for _ in range(repeat):
        cpu0, sys0 = _cpu()
        start = time.perf_counter()
        write()
        wall = time.perf_counter() - start
        cpu1, sys1 = _cpu()
        if wall < best[0]:
            best = (wall, cpu1 - cpu0, sys1 - sys0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="where the arrays go (tmpfs: /dev/shm)")
    parser.add_argument("--size", type=int, default=512, help="side of the cube (default 512)")
    parser.add_argument("--repeat", type=int, default=3, help="writes per implementation; fastest kept")
    parser.add_argument("--layout", nargs="*", default=list(LAYOUTS), choices=list(LAYOUTS))
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    data = make_data(args.size)
    print(f"# write_all CPU ({args.size}^3 uint16, fastest of {args.repeat}, {cores} cores, seconds)\n")
    print("| layout | implementation | wall | CPU | of which system | CPU / cores |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for name in args.layout:
            path = Path(tmp) / name
            with zarr.config.set({"codec_pipeline.path": "zarrs_cffi.ZarrsCodecPipeline"}):
                array = zarr.create_array(path, shape=data.shape, dtype=data.dtype, **LAYOUTS[name].create_kwargs())

                def through_zarr() -> None:
                    array[...] = data

                rows = {"ours (zarr)": best_of(args.repeat, through_zarr)}
            direct = zarrs_cffi.Array.open(str(path))
            rows["ours (direct)"] = best_of(args.repeat, lambda: direct.write((), data))
            assert np.array_equal(direct[...], data)
            ts_path = Path(tmp) / f"{name}-ts"
            if ts is not None:
                shutil.copytree(path, ts_path, ignore=shutil.ignore_patterns("c"))  # zarr.json only
                store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(ts_path)}}).result()
                rows["tensorstore"] = best_of(args.repeat, lambda: store.write(data).result())
                assert np.array_equal(zarrs_cffi.Array.open(str(ts_path))[...], data)
            for impl, (wall, cpu, system) in rows.items():
                print(f"| {name} | {impl} | {wall:.3f} | {cpu:.3f} | {system:.3f} | {cpu / cores:.3f} |", flush=True)
            shutil.rmtree(path)
            shutil.rmtree(ts_path, ignore_errors=True)
    if ts is None:
        print("\ntensorstore: unavailable (not installed; see benchmarks/requirements.txt)")


if __name__ == "__main__":
    main()

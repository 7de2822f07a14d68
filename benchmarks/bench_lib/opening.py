"""The open section: opening many small arrays one after another (metadata only)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from . import stores
from .cells import Cell, guarded, log_cell
from .impls import Impl, RustImpl, ZarrPipelineImpl
from .settings import REFERENCE_CONFIG


def open_one(impl: Impl, path: Path) -> tuple[int, ...]:
    """Open the array at `path` (metadata only) and return its shape."""
    if isinstance(impl, ZarrPipelineImpl):
        return zarr.open_array(stores.STORE.reader(path), mode="r").shape
    assert not isinstance(impl, RustImpl)  # opens in the binary
    return tuple(impl.open(path).shape)


def bench_open(impls: list[Impl], count: int, repeat: int, workdir: Path) -> dict[str, Cell]:
    """Seconds to open `count` small arrays, best of `repeat`; every shape checked."""
    root = workdir / "open-arrays"
    paths = [root / f"{i:04d}" for i in range(count)]
    shapes = [(64 + i % 7, 64) for i in range(count)]
    with zarr.config.set(REFERENCE_CONFIG):
        for path, shape in zip(paths, shapes):
            array = zarr.create_array(stores.STORE.writer(path), shape=shape, chunks=(16, 16), dtype=np.float32, compressors=(ZstdCodec(level=1),))
            stores.STORE.finish(array.store)
    results: dict[str, Cell] = {}
    for impl in impls:

        def measure(impl: Impl = impl) -> Cell:
            best, opened = math.inf, []
            if isinstance(impl, RustImpl):
                report = impl.run({"mode": "open", "open_paths": [str(p) for p in paths], "repeat": repeat}, workdir)
                best, opened = report["seconds"], [tuple(shape) for shape in report["shapes"]]
            else:
                with impl.session():
                    for _ in range(repeat):
                        start = time.perf_counter()
                        opened = [open_one(impl, path) for path in paths]
                        best = min(best, time.perf_counter() - start)
            bad = sum(tuple(got) != want for got, want in zip(opened, shapes)) + abs(len(opened) - len(shapes))
            if bad:
                return Cell("MISMATCH", detail=f"{bad} of {count} opened arrays have the wrong shape")
            return Cell("ok", best)

        results[impl.key] = guarded(measure)
        log_cell("open", f"{count} arrays", impl, results[impl.key])
    for path in paths:
        stores.STORE.remove(path)
    return results

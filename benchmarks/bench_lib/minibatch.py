"""The mini-batch section: a training-style loader reading batches of sorted random rows
(``oindex``) of a 2-D float32 array, by one reader and by several threads."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from . import stores
from .cells import Cell, guarded, log_cell
from .data import same
from .impls import Impl, RustImpl, row_block
from .settings import REFERENCE_CONFIG, SEED, log


@dataclass(frozen=True)
class MiniBatch:
    """Sizes of the mini-batch rows (--mb-* flags)."""

    rows: int
    cols: int
    batch: int
    batches: int
    readers: int
    chunk_rows: int
    shard_rows: int


MINIBATCH_LAYOUTS: dict[str, Callable[[MiniBatch], dict[str, Any]]] = {
    "zstd": lambda mb: {"chunks": (mb.chunk_rows, mb.cols), "shards": None, "compressors": (ZstdCodec(level=1),)},
    "zstd-sharded": lambda mb: {
        "chunks": (mb.chunk_rows, mb.cols),
        "shards": (mb.shard_rows, mb.cols),
        "compressors": (ZstdCodec(level=1),),
    },
}


def make_minibatch_data(rows: int, cols: int) -> np.ndarray:
    """float32 features: a ramp plus 2 bits of seeded noise (compressible, not constant)."""
    rng = np.random.default_rng(SEED + 3)
    data = np.empty((rows, cols), dtype=np.float32)
    col = np.arange(cols, dtype=np.int64)
    step = 8192
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        ramp = (np.arange(start, stop, dtype=np.int64)[:, None] * 3 + col) % 4096
        data[start:stop] = ramp * 0.25 + rng.integers(0, 4, size=(stop - start, cols))
    return data


def minibatch_indices(mb: MiniBatch) -> list[np.ndarray]:
    rng = np.random.default_rng(SEED + 4)
    return [np.sort(rng.choice(mb.rows, size=mb.batch, replace=False)) for _ in range(mb.batches)]


def measure_minibatch(impl: Impl, path: Path, data: np.ndarray, batches: list[np.ndarray], readers: int, block: int, workdir: Path) -> Cell:
    """Seconds per batch, reading every batch with `readers` threads (each takes the next
    batch); after one untimed batch. Every batch is checked against the source."""
    expected = [data[rows] for rows in batches]
    if isinstance(impl, RustImpl):
        outputs = workdir / "zarrs-rust-out"
        outputs.mkdir(exist_ok=True)
        report = impl.run(
            {
                "mode": "minibatch",
                "reference": str(path),
                "batches": [rows.tolist() for rows in batches],
                "row_block": block,
                "readers": readers,
                "outputs": str(outputs),
            },
            workdir,
        )
        flat = np.fromfile(outputs / "minibatch.bin", dtype=data.dtype)
        (outputs / "minibatch.bin").unlink()
        results = np.split(flat, len(batches)) if flat.size == len(batches) * expected[0].size else []
        results = [r.reshape(e.shape) for r, e in zip(results, expected)]
        seconds = report["seconds"]
    else:
        with contextlib.ExitStack() as stack:
            stack.enter_context(impl.session())
            if impl.key == "zarrs-python":  # as for oindex: its users get the fallback
                stack.enter_context(zarr.config.set({"codec_pipeline.strict": False}))
            array = impl.open(path)
            read = partial(impl.read_oindex, array)
            read(batches[0])
            start = time.perf_counter()
            if readers == 1:
                results = [read(rows) for rows in batches]
            else:
                with ThreadPoolExecutor(readers) as pool:
                    results = list(pool.map(read, batches))
            seconds = time.perf_counter() - start
    bad = len(batches) - sum(same(r, e) for r, e in zip(results, expected)) if len(results) == len(batches) else len(batches)
    if bad:
        return Cell("MISMATCH", detail=f"{bad} of {len(batches)} batches differ from source")
    return Cell("ok", seconds / len(batches))


def bench_minibatch(impls: list[Impl], mb: MiniBatch, workdir: Path) -> dict[tuple[str, str, str], Cell]:
    """Keys are (layout, "1 reader" / "N readers", impl key)."""
    log.info("mini-batch: generating (%d, %d) float32 ...", mb.rows, mb.cols)
    data = make_minibatch_data(mb.rows, mb.cols)
    batches = minibatch_indices(mb)
    results: dict[tuple[str, str, str], Cell] = {}
    for name, kwargs in MINIBATCH_LAYOUTS.items():
        path = workdir / f"minibatch-{name}"
        with zarr.config.set(REFERENCE_CONFIG):
            reference = zarr.create_array(stores.STORE.writer(path), shape=data.shape, dtype=np.float32, fill_value=0, **kwargs(mb))
            reference[:] = data
            stores.STORE.finish(reference.store)
            del reference
        block = row_block(stores.STORE.metadata(path))
        for readers in sorted({1, mb.readers}):
            threads = f"{readers} reader" + ("s" if readers > 1 else "")
            for impl in impls:
                cell = guarded(partial(measure_minibatch, impl, path, data, batches, readers, block, workdir))
                results[name, threads, impl.key] = cell
                log_cell(f"mb-{name}", threads, impl, cell)
        stores.STORE.remove(path)
    return results

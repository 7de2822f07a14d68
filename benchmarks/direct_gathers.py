"""Mini-batch reads as an ML loader makes them: the direct API against zarr and tensorstore.

A (rows, 256) float32 array, chunks of 1024 rows (zstd), and the same sharded (shards of
16 chunks, uncompressed inner chunks). Each round reads, through every implementation in
turn (interleaved, so drift hits all alike):

- ``oindex``: 256 random rows, every column (a shuffled mini-batch);
- ``vindex``: 256 random (row, column) points;
- ``chunk``: one aligned chunk of 1024 rows (the common case beside the favourable ones).

Implementations: ``direct`` (``zarrs_cffi.Array``), zarr with ``ours``
(``ZarrsCodecPipeline``), zarr with its own ``batched`` pipeline, zarr with ``zarrs-python``
(when installed), ``tensorstore`` (when installed). Every result is checked against the
source data. Reported: the median wall time per read over the rounds, the median CPU time
(process time, all threads) beside it, and each implementation's ratio to tensorstore's
(lower is faster).

Usage: ``python benchmarks/direct_gathers.py --dir /dev/shm [--rows 1048576] [--rounds 9]
[--quick]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

import zarrs_cffi

OURS = "zarrs_cffi.ZarrsCodecPipeline"
BATCHED = "zarr.core.codec_pipeline.BatchedCodecPipeline"
ZARRS_PYTHON = "zarrs.ZarrsCodecPipeline"
COLUMNS = 256
CHUNK_ROWS = 1024
BATCH = 256
LAYOUTS: dict[str, dict[str, Any]] = {
    "zstd": {"chunks": (CHUNK_ROWS, COLUMNS), "compressors": ZstdCodec(level=1)},
    "sharded": {"chunks": (CHUNK_ROWS, COLUMNS), "shards": (16 * CHUNK_ROWS, COLUMNS), "compressors": None},
}

Reader = Callable[[str, Any], Any]


def _zarr_reader(path: Path, pipeline: str) -> Reader:
    with zarr.config.set({"codec_pipeline.path": pipeline}):
        arr = zarr.open_array(path, mode="r")

    def read(op: str, sel: Any) -> Any:
        with zarr.config.set({"codec_pipeline.path": pipeline}):
            if op == "oindex":
                return arr.oindex[sel]
            if op == "vindex":
                return arr.vindex[sel]
            return arr[sel]

    return read


def _direct_reader(path: Path) -> Reader:
    arr = zarrs_cffi.Array.open(path, read_only=True)

    def read(op: str, sel: Any) -> Any:
        if op == "oindex":
            return arr.oindex[sel]
        if op == "vindex":
            return arr.vindex[sel]
        return arr[sel]

    return read


def _tensorstore_reader(path: Path) -> Reader:
    import tensorstore as ts

    store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}, read=True).result()

    def read(op: str, sel: Any) -> Any:
        if op == "oindex":
            return store.oindex[sel].read().result()
        if op == "vindex":
            return store.vindex[sel].read().result()
        return store[sel].read().result()

    return read


def readers(path: Path) -> dict[str, Reader]:
    found = {"direct": _direct_reader(path), "ours": _zarr_reader(path, OURS), "batched": _zarr_reader(path, BATCHED)}
    if importlib.util.find_spec("zarrs") is not None:
        import zarrs  # noqa: F401  (registers its pipeline)

        found["zarrs-python"] = _zarr_reader(path, ZARRS_PYTHON)
    if importlib.util.find_spec("tensorstore") is not None:
        found["tensorstore"] = _tensorstore_reader(path)
    return found


def selections(rng: np.random.Generator, rows: int) -> dict[str, Any]:
    chunk = int(rng.integers(0, rows // CHUNK_ROWS))
    return {
        "oindex": (rng.choice(rows, BATCH, replace=False), slice(None)),
        "vindex": (rng.integers(0, rows, BATCH), rng.integers(0, COLUMNS, BATCH)),
        "chunk": (slice(chunk * CHUNK_ROWS, (chunk + 1) * CHUNK_ROWS), slice(None)),
    }


def expected(data: np.ndarray[Any, Any], op: str, sel: Any) -> np.ndarray[Any, Any]:
    return data[np.ix_(sel[0], np.arange(COLUMNS))] if op == "oindex" else data[sel]


def measure(path: Path, data: np.ndarray[Any, Any], rounds: int, reads: int) -> dict[tuple[str, str], tuple[float, float]]:
    """Median (wall, CPU) seconds per read, per (operation, implementation)."""
    impls = readers(path)
    rng = np.random.default_rng(0)
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(rounds):
        batch = [selections(rng, len(data)) for _ in range(reads)]
        for op in ("oindex", "vindex", "chunk"):
            for name, read in impls.items():
                for sels in batch[:1]:  # checked once per round, outside the timing
                    got = np.asarray(read(op, sels[op]))
                    if not np.array_equal(got, expected(data, op, sels[op])):
                        raise SystemExit(f"{name} {op}: wrong values")
                cpu, start = time.process_time(), time.perf_counter()
                for sels in batch:
                    read(op, sels[op])
                wall = (time.perf_counter() - start) / reads
                samples.setdefault((op, name), []).append((wall, (time.process_time() - cpu) / reads))
    return {
        key: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
        for key, values in samples.items()
    }


def report(layout: str, results: dict[tuple[str, str], tuple[float, float]]) -> None:
    names = sorted({name for _, name in results}, key=["direct", "ours", "zarrs-python", "batched", "tensorstore"].index)
    print(f"\n### {layout}: median per read, wall ms (CPU ms); ratio to tensorstore (lower is faster)\n")
    print("| op | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for op in ("oindex", "vindex", "chunk"):
        base = results.get((op, "tensorstore"))
        cells = []
        for name in names:
            wall, cpu = results[op, name]
            ratio = f", **{wall / base[0]:.2f}x**" if base else ""
            cells.append(f"{wall * 1e3:.2f} ({cpu * 1e3:.2f}){ratio}")
        print(f"| {op} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the arrays are written (tmpfs: /dev/shm)")
    parser.add_argument("--rows", type=int, default=1 << 20)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--reads", type=int, default=20, help="reads per implementation per round")
    parser.add_argument("--quick", action="store_true", help="a small array, 2 rounds of 2 reads (a smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.rounds, args.reads = 16 * CHUNK_ROWS, 2, 2
    root = Path(tempfile.mkdtemp(prefix="direct-gathers-", dir=args.dir))
    try:
        data = np.random.default_rng(1).standard_normal((args.rows, COLUMNS), dtype=np.float32)
        print(f"{args.rows} x {COLUMNS} float32, {args.rounds} interleaved rounds of {args.reads} reads, in {args.dir}")
        for layout, settings in LAYOUTS.items():
            path = root / layout
            with zarr.config.set({"codec_pipeline.path": OURS}):
                zarr.create_array(path, shape=data.shape, dtype="float32", **settings)[...] = data
            report(layout, measure(path, data, args.rounds, args.reads))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()

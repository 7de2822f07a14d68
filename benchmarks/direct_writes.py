"""Scattered writes as a loader's writer or a label-editing tool makes them: the direct API
against zarr (with our pipeline and with its own) and tensorstore.

A (rows, 256) float32 array, chunks of 1024 rows (zstd), and the same sharded (shards of 16
chunks, uncompressed inner chunks). Each round writes, through every implementation in turn
(interleaved, so drift hits all alike), into its own copy of the array:

- ``oindex``: 256 random rows, every column;
- ``vindex``: 256 random (row, column) points;
- ``chunk``: one aligned chunk of 1024 rows (a region, the common case beside them).

After the rounds every copy must hold what numpy holds after the same writes (a mismatch
stops the run). Reported: the median wall time per write over the rounds, the median CPU
time (process time, all threads) beside it, and each implementation's ratio to
tensorstore's (lower is faster).

Usage: ``python benchmarks/direct_writes.py --dir /dev/shm [--rows 65536] [--rounds 7]
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
COLUMNS = 256
CHUNK_ROWS = 1024
BATCH = 256
LAYOUTS: dict[str, dict[str, Any]] = {
    "zstd": {"chunks": (CHUNK_ROWS, COLUMNS), "compressors": ZstdCodec(level=1)},
    "sharded": {"chunks": (CHUNK_ROWS, COLUMNS), "shards": (16 * CHUNK_ROWS, COLUMNS), "compressors": None},
}
OPS = ("oindex", "vindex", "chunk")

Writer = Callable[[str, Any, Any], None]
Reader = Callable[[], Any]


def _zarr(path: Path, pipeline: str) -> tuple[Writer, Reader]:
    with zarr.config.set({"codec_pipeline.path": pipeline}):
        arr = zarr.open_array(path, mode="r+")

    def write(op: str, sel: Any, value: Any) -> None:
        with zarr.config.set({"codec_pipeline.path": pipeline}):
            {"oindex": arr.oindex, "vindex": arr.vindex, "chunk": arr}[op][sel] = value

    def read() -> Any:
        with zarr.config.set({"codec_pipeline.path": pipeline}):
            return arr[...]

    return write, read


def _direct(path: Path) -> tuple[Writer, Reader]:
    arr = zarrs_cffi.Array.open(path)

    def write(op: str, sel: Any, value: Any) -> None:
        {"oindex": arr.oindex, "vindex": arr.vindex, "chunk": arr}[op][sel] = value

    return write, lambda: arr[...]


def _tensorstore(path: Path) -> tuple[Writer, Reader]:
    import tensorstore as ts

    store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}, read=True, write=True).result()

    def write(op: str, sel: Any, value: Any) -> None:
        {"oindex": store.oindex, "vindex": store.vindex, "chunk": store}[op][sel].write(value).result()

    return write, lambda: store.read().result()


def selections(rng: np.random.Generator, rows: int) -> dict[str, Any]:
    chunk = int(rng.integers(0, rows // CHUNK_ROWS))
    return {
        "oindex": (rng.choice(rows, BATCH, replace=False), slice(None)),
        "vindex": (rng.choice(rows, BATCH, replace=False), rng.integers(0, COLUMNS, BATCH)),
        "chunk": (slice(chunk * CHUNK_ROWS, (chunk + 1) * CHUNK_ROWS), slice(None)),
    }


def apply(data: np.ndarray[Any, Any], op: str, sel: Any, value: Any) -> None:
    if op == "oindex":
        data[np.ix_(sel[0], np.arange(COLUMNS))] = value
    else:
        data[sel] = value


def measure(root: Path, layout: str, data: np.ndarray[Any, Any], rounds: int, writes: int) -> dict[tuple[str, str], tuple[float, float]]:
    """Median (wall, CPU) seconds per write, per (operation, implementation)."""
    makers: dict[str, Callable[[Path], tuple[Writer, Reader]]] = {
        "direct": _direct, "ours": lambda p: _zarr(p, OURS), "batched": lambda p: _zarr(p, BATCHED)
    }
    if importlib.util.find_spec("tensorstore") is not None:
        makers["tensorstore"] = _tensorstore
    impls = {}
    for name, make in makers.items():
        path = root / f"{layout}-{name}"
        with zarr.config.set({"codec_pipeline.path": OURS}):
            zarr.create_array(path, shape=data.shape, dtype="float32", **LAYOUTS[layout])[...] = data
        impls[name] = make(path)
    expected = data.copy()
    rng = np.random.default_rng(0)
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in range(rounds):
        batch = [selections(rng, len(data)) for _ in range(writes)]
        for op in OPS:
            values = [rng.standard_normal(np.broadcast_shapes(np.shape(sels[op][0]), (BATCH,)) if op == "vindex" else (
                (BATCH if op == "oindex" else CHUNK_ROWS), COLUMNS)).astype(np.float32) for sels in batch]
            for sels, value in zip(batch, values, strict=True):
                apply(expected, op, sels[op], value)
            for name, (write, _) in impls.items():
                cpu, start = time.process_time(), time.perf_counter()
                for sels, value in zip(batch, values, strict=True):
                    write(op, sels[op], value)
                wall = (time.perf_counter() - start) / writes
                samples.setdefault((op, name), []).append((wall, (time.process_time() - cpu) / writes))
    for name, (_, read) in impls.items():
        if not np.array_equal(np.asarray(read()), expected):
            raise SystemExit(f"{layout} {name}: wrong values after the writes")
    return {
        key: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
        for key, values in samples.items()
    }


def report(layout: str, results: dict[tuple[str, str], tuple[float, float]]) -> None:
    names = sorted({name for _, name in results}, key=["direct", "ours", "batched", "tensorstore"].index)
    print(f"\n### {layout}: median per write, wall ms (CPU ms); ratio to tensorstore (lower is faster)\n")
    print("| op | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for op in OPS:
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
    parser.add_argument("--rows", type=int, default=1 << 16)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--writes", type=int, default=5, help="writes per implementation per round")
    parser.add_argument("--quick", action="store_true", help="a small array, 2 rounds of 2 writes (a smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.rounds, args.writes = 16 * CHUNK_ROWS, 2, 2
    root = Path(tempfile.mkdtemp(prefix="direct-writes-", dir=args.dir))
    try:
        data = np.random.default_rng(1).standard_normal((args.rows, COLUMNS), dtype=np.float32)
        print(f"{args.rows} x {COLUMNS} float32, {args.rounds} interleaved rounds of {args.writes} writes, in {args.dir}")
        for layout in LAYOUTS:
            report(layout, measure(root, layout, data, args.rounds, args.writes))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()

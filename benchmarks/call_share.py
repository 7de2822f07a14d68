"""Where the time of one small read through zarr's API goes, per pipeline.

Issue 11 asks for our share of a small read (planning, hand-off, native call) to be
measured apart from zarr's. This script times, for each layout, 200 random 16^3 box reads
through ``zarr.Array.__getitem__`` and splits each read into:

* **zarr**: everything outside the codec pipeline's ``read`` (indexing, the sync
  hand-off to zarr's event loop, building the batch, allocating the output);
* **pipeline**: inside ``read``; for ours further split into the hop, planning and the
  native call (fetch, decode and copy). Ours runs twice per round: **ours** as configured
  (reads one after another take the worker path: the whole read on a Python worker thread,
  ``_workers.run``; the hop is to the worker and back, planning is on the worker) and
  **ours (async)** with ``ASYNC_READ_ALONE = True`` (each read planned on the event loop
  and started natively, ``_completion``: its hop is submit-to-resume, from the native
  start call to the coroutine resuming, minus the native call). The native call is timed
  (``read_chunks``) only on the worker path, where Python can see it; the asynchronous row
  uses that figure, the same batches read by the same native code on a thread outside the
  pool, to split its await; **ours (keep-warm on)** as configured but with
  ``zarrs_cffi.keep_warm(1000)`` (a thread keeps a CPU awake for 1 ms after each native
  call; off by default), to show what that opt-in window saves and costs;

**CPU** is the process's user + system time per read over all threads (getrusage, the
least of the rounds), the keep-warm window after the last read included. And, for
comparison, the same boxes through our direct API (``zarrs_cffi.Array``, no zarr)
and through zarrs-python (its ``read``, which includes its native call). Implementations
are interleaved round by round in one process; each figure is the best round.

Usage::

    python benchmarks/call_share.py --dir /dev/shm [--size 256] [--rounds 7] [--reads 200] [--warm-us US]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, ShardingCodec, ZstdCodec

import zarrs_cffi
import zarrs_cffi._bindings as bindings
import zarrs_cffi._pipeline.completion as completion_module
import zarrs_cffi._pipeline.routes.base as route_base
import zarrs_cffi._pipeline.routes.storage as routes
import zarrs_cffi._pipeline.codec_pipeline as pipeline

#: The window of the keep-warm on row, µs.
WARM_ON_US = 1000

PIPELINES = {
    "ours": "zarrs_cffi.ZarrsCodecPipeline",
    "ours (async)": "zarrs_cffi.ZarrsCodecPipeline",
    "zarrs-python": "zarrs.ZarrsCodecPipeline",
    "zarr Batched": "zarr.core.codec_pipeline.BatchedCodecPipeline",
    # Ours with the opt-in keep-warm window turned on (1 ms).
    "ours (keep-warm on)": "zarrs_cffi.ZarrsCodecPipeline",
}
# Between two implementations' rounds: every round starts from CPUs equally idle.
PAUSE = 0.05
N_READS = 200
BOX = 16

clock: dict[str, float] = {}
# The pipeline being timed: ours runs under two names, each key is recorded under this one.
current = [""]


def _add(key: str, seconds: float) -> None:
    key = f"{current[0]}: {key}"
    clock[key] = clock.get(key, 0.0) + seconds


def _timed(key: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            _add(key, time.perf_counter() - start)

    return timed


def _timed_submit(submit: Callable[..., Any]) -> Callable[..., Any]:
    """``_completion.submit``, its future awaited through a coroutine that times submit to
    resume (the native start call, the read, and the loop's wake-up)."""

    def timed(*args: Any) -> Any:
        # From the native start on: the reading thread may take the loop thread's CPU as
        # soon as it is woken, inside the start call.
        start = time.perf_counter()
        future = submit(*args)
        if future is None:
            return None

        async def awaited() -> Any:
            try:
                return await future
            finally:
                _add("await", time.perf_counter() - start)

        return awaited()

    return timed


def _timed_async(key: str, function: Callable[..., Any]) -> Callable[..., Any]:
    # zarr's sharding codec reads inner chunks through a nested pipeline's ``read``: only
    # the outermost call is timed.
    depth = [0]

    async def timed(*args: Any, **kwargs: Any) -> Any:
        depth[0] += 1
        start = time.perf_counter()
        try:
            return await function(*args, **kwargs)
        finally:
            depth[0] -= 1
            if not depth[0]:
                _add(key, time.perf_counter() - start)

    return timed


def instrument() -> list[str]:
    """Wrap each pipeline's ``read`` (and our worker and native calls); the pipelines found."""
    found = []
    wrapped = set()
    for name, path in PIPELINES.items():
        module, _, cls_name = path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), cls_name)
        except ImportError:
            continue
        if cls not in wrapped:
            cls.read = _timed_async("read", cls.read)
            wrapped.add(cls)
        found.append(name)
    route_base.BlockingRoute._read = _timed("worker", route_base.BlockingRoute._read)  # type: ignore[method-assign]
    native = next(c for _, c in inspect.getmembers(bindings, inspect.isclass) if hasattr(c, "read_chunks"))
    native.read_chunks = _timed("native", native.read_chunks)
    completion_module.submit = _timed_submit(completion_module.submit)
    assert pipeline.ZarrsCodecPipeline.read is not None
    return found


LAYOUTS: dict[str, dict[str, Any]] = {
    "zstd": {"chunks": (32,) * 3, "compressors": ZstdCodec(level=1)},
    "zstd-sharded": {"chunks": (32,) * 3, "shards": (128,) * 3, "compressors": ZstdCodec(level=1)},
    "blosc-lz4": {"chunks": (32,) * 3, "compressors": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")},
    "raw-sharded": {"chunks": (32,) * 3, "shards": (128,) * 3, "compressors": None},
    # Sharding nested in sharding: 128^3 shards of 64^3 inner shards of 32^3 zstd chunks.
    "zstd-nested": {
        "chunks": (128,) * 3,
        "serializer": ShardingCodec(
            chunk_shape=(64,) * 3, codecs=[ShardingCodec(chunk_shape=(32,) * 3, codecs=[BytesCodec(), ZstdCodec(level=1)])]
        ),
        "compressors": None,
    },
}


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(
    path: Path, data: np.ndarray, boxes: list[tuple[slice, ...]], names: list[str], rounds: int, warm_us: int
) -> dict[str, float]:
    direct = zarrs_cffi.Array.open(str(path))
    arrays = {}
    for name in names:
        with zarr.config.set({"codec_pipeline.path": PIPELINES[name]}):
            arrays[name] = zarr.open_array(path, mode="r")
            assert np.array_equal(arrays[name][boxes[0]], data[boxes[0]]), name
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, array in arrays.items():
            alone = getattr(routes, "ASYNC_READ_ALONE", None)
            if name == "ours (async)" and alone is not None:
                routes.ASYNC_READ_ALONE = True
            if name == "ours (keep-warm on)":
                zarrs_cffi.keep_warm(WARM_ON_US)
            with zarr.config.set({"codec_pipeline.path": PIPELINES[name]}):
                clock.clear()
                current[0] = name
                cpu = _cpu_seconds()
                start = time.perf_counter()
                for box in boxes:
                    array[box]
                total = time.perf_counter() - start
            if alone is not None:
                routes.ASYNC_READ_ALONE = alone
            zarrs_cffi.keep_warm(warm_us)
            # Longer than the default keep-warm window, so the next round starts cold; the
            # CPU time is taken after it, so it includes the window after the last read.
            time.sleep(PAUSE)
            cpu = _cpu_seconds() - cpu
            parts = {f"{name}: total": total, f"{name}: cpu": cpu, **{k: v for k, v in clock.items() if k.startswith(name)}}
            for key, value in parts.items():
                best[key] = min(best.get(key, np.inf), value)
        start = time.perf_counter()
        for box in boxes:
            direct[box]
        best["ours (direct)"] = min(best.get("ours (direct)", np.inf), time.perf_counter() - start)
        time.sleep(PAUSE)
    return {key: value / len(boxes) * 1e6 for key, value in best.items()}


def report(layout: str, us: dict[str, float], names: list[str]) -> list[str]:
    rows = []
    for name in names:
        total, inside = us[f"{name}: total"], us[f"{name}: read"]
        cells = [layout, name, f"{total:.0f}", f"{total - inside:.0f}", f"{inside:.0f}"]
        native = us.get("ours: native")
        if name.startswith("ours") and f"{name}: await" in us and native is not None:
            # The asynchronous path: planning and the native start on the loop, then the
            # await (the native call, timed on the worker path, and the hop).
            waited = us[f"{name}: await"]
            cells += [f"{waited - native:.0f}", f"{inside - waited:.0f}", f"{native:.0f}"]
        elif name.startswith("ours") and f"{name}: worker" in us and f"{name}: native" in us:
            worker, native = us[f"{name}: worker"], us[f"{name}: native"]
            cells += [f"{inside - worker:.0f}", f"{worker - native:.0f}", f"{native:.0f}"]
        else:
            cells += ["", "", ""]
        cells.append(f"{us[f'{name}: cpu']:.0f}")
        rows.append("| " + " | ".join(cells) + " |")
    rows.append(f"| {layout} | ours (direct) | {us['ours (direct)']:.0f} | | | | | | |")
    zarrs_python = us.get("zarrs-python: total")
    if zarrs_python:
        for name in names:
            if name.startswith("ours"):
                rows.append(f"| {layout} | {name} / zarrs-python | {us[f'{name}: total'] / zarrs_python:.2f}x | | | | | | |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="where the arrays go (default: the system temp dir)")
    parser.add_argument("--size", type=int, default=256, help="edge of the cubic uint16 array (default 256)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; the best is kept (default 7)")
    parser.add_argument("--reads", type=int, default=N_READS, help=f"reads per round (default {N_READS})")
    parser.add_argument("--layout", nargs="*", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--warm-us", type=int, default=None, help="keep-warm window of our other rows, µs (default: the library's)")
    args = parser.parse_args()
    warm_us = zarrs_cffi.keep_warm(args.warm_us)
    names = instrument()
    rng = np.random.default_rng(0)
    data = rng.integers(0, 1000, size=(args.size,) * 3, dtype=np.uint16)
    starts = rng.integers(0, args.size - BOX, size=(args.reads, 3))
    boxes = [tuple(slice(s, s + BOX) for s in start) for start in starts]
    lines = [
        f"Per small read (µs, best of {args.rounds} interleaved rounds of {args.reads} random {BOX}^3 boxes "
        f"of a {args.size}^3 uint16 array, 32^3 chunks, 128^3 shards; keep-warm window {warm_us} µs "
        f"except in the keep-warm on row, {WARM_ON_US} µs):",
        "",
        "| layout | pipeline | total | zarr (outside read) | pipeline read | our hop | our planning | native call | CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for layout in args.layout:
            path = Path(tmp) / f"{layout}.zarr"
            with zarr.config.set({"codec_pipeline.path": PIPELINES["zarr Batched"]}):
                array = zarr.create_array(path, shape=data.shape, dtype=data.dtype, **LAYOUTS[layout])
                array[...] = data
            lines += report(layout, measure(path, data, boxes, names, args.rounds, warm_us), names)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

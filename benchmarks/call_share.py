"""Where the time of one small read through zarr's API goes, per pipeline, wall and CPU.

For each layout, two reads users make through ``zarr.Array.__getitem__``, one call at a
time (zarr's synchronous API):

* **chunk**: one aligned chunk (32^3), at random chunk positions;
* **box**: unaligned 16^3 boxes anywhere (each touches 1 to 8 chunks).

Each is read through:

* **ours** and **ours (keep-warm on)**: our pipeline, with the keep-warm window off (the
  default) and on (``zarrs_cffi.keep_warm(1000)``: a thread spins for 1 ms after each call);
  a lone small read runs on zarr's event loop itself (``codec_pipeline.loop_read_bytes``);
* the alternatives for a lone read, keep-warm off: **ours (worker)**, every read handed to
  a Python worker thread and back (``loop_read_bytes`` 0); **ours (completion)**, every
  read started natively from the loop and completed through a descriptor the loop watches
  (``routes.storage.ASYNC_READ_ALONE``);
* **zarrs-python**: ``zarrs.ZarrsCodecPipeline``, when installed;
* **zarr Batched**: zarr's own ``BatchedCodecPipeline``;
* **zarr floor**: a pipeline whose ``read`` only fills ``out`` (no I/O, no decoding): what
  zarr itself costs around any pipeline (indexing, the hand-off to its event loop and
  back, the batch, the output). No pipeline can be faster than this.

Per call: **wall** and **CPU** (user + system time of the whole process, every thread,
getrusage; the pause after each round included, so a keep-warm window's spin after the last
call is counted), **zarr** (wall outside the pipeline's ``read``), **read** (inside it), and
for ours the **native** call (``ArrayHandle.read_chunks``, timed where it is made, whatever
thread that is; the completion row's native read runs where Python cannot time it, so its
figure is the same batch's on the other rows), **read - native** (our Python layer and its
hand-offs inside ``read``) and **our share**: our wall minus the floor's minus the native
call's, i.e. what our Python layer and its thread hand-offs add to what zarr and the native
read must cost (the floor's rounds are others than ours: on a busy machine this difference
is noisier than read - native). Implementations are interleaved round by round in one process, with a pause between
them so each starts from CPUs equally idle; every figure is the **median** over the rounds
of the round's mean per call (never the best round). Ratios are of medians.

Usage::

    python benchmarks/call_share.py --dir /dev/shm [--size 256] [--rounds 9] [--reads 200]
"""

from __future__ import annotations

import argparse
import importlib
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.abc.codec import GetResult
from zarr.codecs import BloscCodec, BytesCodec, ShardingCodec, ZstdCodec
from zarr.core.codec_pipeline import BatchedCodecPipeline
from zarr.registry import register_pipeline

import zarrs_cffi
import zarrs_cffi._bindings as bindings
import zarrs_cffi._pipeline.routes.storage as storage_route

#: The window of the keep-warm on row, µs.
WARM_ON_US = 1000
# Between two implementations' rounds: longer than the keep-warm window, so every round
# starts from CPUs equally idle.
PAUSE = 0.05
N_READS = 200
BOX = 16
CHUNK = 32


class FloorPipeline(BatchedCodecPipeline):
    """zarr's floor: a read that only fills ``out`` (with zeros), as cheaply as numpy can."""

    async def read(self, batch_info: Iterable[tuple[Any, ...]], out: Any, drop_axes: tuple[int, ...] = ()) -> Any:
        array = out.as_ndarray_like()
        batch = list(batch_info)
        for entry in batch:
            array[entry[3]] = 0
        return tuple(GetResult(status="present") for _ in batch)


register_pipeline(FloorPipeline)

#: name -> (zarr's codec_pipeline.path, keep-warm window in µs for ours, else None)
PIPELINES: dict[str, tuple[str, int | None]] = {
    "ours": ("zarrs_cffi.ZarrsCodecPipeline", 0),
    "ours (keep-warm on)": ("zarrs_cffi.ZarrsCodecPipeline", WARM_ON_US),
    "ours (worker)": ("zarrs_cffi.ZarrsCodecPipeline", 0),
    "ours (completion)": ("zarrs_cffi.ZarrsCodecPipeline", 0),
    "zarrs-python": ("zarrs.ZarrsCodecPipeline", None),
    "zarr Batched": ("zarr.core.codec_pipeline.BatchedCodecPipeline", None),
    "zarr floor": (f"{FloorPipeline.__module__}.{FloorPipeline.__qualname__}", None),
}
#: Extra zarr config an implementation's arrays are opened (and first read) under.
OPENED_UNDER: dict[str, dict[str, Any]] = {"ours (worker)": {"codec_pipeline.loop_read_bytes": 0}}

LAYOUTS: dict[str, dict[str, Any]] = {
    "zstd": {"chunks": (CHUNK,) * 3, "compressors": ZstdCodec(level=1)},
    "zstd-sharded": {"chunks": (CHUNK,) * 3, "shards": (128,) * 3, "compressors": ZstdCodec(level=1)},
    "blosc-lz4": {"chunks": (CHUNK,) * 3, "compressors": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")},
    "raw-sharded": {"chunks": (CHUNK,) * 3, "shards": (128,) * 3, "compressors": None},
    # Sharding nested in sharding: 128^3 shards of 64^3 inner shards of 32^3 zstd chunks.
    "zstd-nested": {
        "chunks": (128,) * 3,
        "serializer": ShardingCodec(
            chunk_shape=(64,) * 3, codecs=[ShardingCodec(chunk_shape=(32,) * 3, codecs=[BytesCodec(), ZstdCodec(level=1)])]
        ),
        "compressors": None,
    },
}
DEFAULT_LAYOUTS = ["zstd", "zstd-sharded", "blosc-lz4", "raw-sharded"]

# Seconds spent in each timed part during the current round, by part.
clock: dict[str, float] = {}


def _timed(key: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            clock[key] = clock.get(key, 0.0) + time.perf_counter() - start

    return timed


def _timed_async(function: Callable[..., Any]) -> Callable[..., Any]:
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
                clock["read"] = clock.get("read", 0.0) + time.perf_counter() - start

    return timed


def instrument() -> list[str]:
    """Wrap each pipeline's ``read`` and our native read; the pipelines installed."""
    found, wrapped = [], set()
    for name, (path, _) in PIPELINES.items():
        module, _, cls_name = path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), cls_name)
        except ImportError:
            continue
        if cls not in wrapped:
            cls.read = _timed_async(cls.read)
            wrapped.add(cls)
        found.append(name)
    handle = bindings.ArrayHandle
    handle.read_chunks = _timed("native", handle.read_chunks)  # type: ignore[method-assign]
    return found


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def selections(size: int, reads: int, seed: int = 0) -> dict[str, list[tuple[slice, ...]]]:
    """The reads of each kind: aligned chunks, and unaligned boxes."""
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, size // CHUNK, size=(reads, 3))
    starts = rng.integers(0, size - BOX, size=(reads, 3))
    return {
        "chunk": [tuple(slice(int(c) * CHUNK, (int(c) + 1) * CHUNK) for c in cell) for cell in grid],
        "box": [tuple(slice(int(s), int(s) + BOX) for s in start) for start in starts],
    }


def measure(
    path: Path, data: np.ndarray[Any, Any], reads: list[tuple[slice, ...]], names: list[str], rounds: int
) -> dict[str, dict[str, float]]:
    """Per implementation, the median per call (µs) of each part over the rounds."""
    arrays = {}
    for name in names:
        with zarr.config.set({"codec_pipeline.path": PIPELINES[name][0], **OPENED_UNDER.get(name, {})}):
            arrays[name] = zarr.open_array(path, mode="r")
            got = arrays[name][reads[0]]
            if name != "zarr floor":
                assert np.array_equal(got, data[reads[0]]), name
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    for _ in range(rounds):
        for name, array in arrays.items():
            warm = PIPELINES[name][1]
            if warm is not None:
                zarrs_cffi.keep_warm(warm)
            storage_route.ASYNC_READ_ALONE = name == "ours (completion)"
            with zarr.config.set({"codec_pipeline.path": PIPELINES[name][0]}):
                clock.clear()
                cpu = _cpu_seconds()
                start = time.perf_counter()
                for selection in reads:
                    array[selection]
                wall = time.perf_counter() - start
            zarrs_cffi.keep_warm(0)
            storage_route.ASYNC_READ_ALONE = False
            # The CPU time is taken after the pause, so it includes a keep-warm window after
            # the last read.
            time.sleep(PAUSE)
            cpu = _cpu_seconds() - cpu
            parts = {"wall": wall, "cpu": cpu, "read": clock.get("read", 0.0)}
            if "native" in clock:
                parts["native"] = clock["native"]
            for key, seconds in parts.items():
                samples[name].setdefault(key, []).append(seconds / len(reads) * 1e6)
    return {name: {key: statistics.median(values) for key, values in parts.items()} for name, parts in samples.items()}


def report(layout: str, kind: str, us: dict[str, dict[str, float]], names: list[str]) -> list[str]:
    rows = []
    floor = us.get("zarr floor", {}).get("wall")
    peer = us.get("zarrs-python")
    for name in names:
        figures = us[name]
        wall, cpu, inside = figures["wall"], figures["cpu"], figures["read"]
        cells = [layout, kind, name, f"{wall:.0f}", f"{cpu:.0f}", f"{wall - inside:.0f}", f"{inside:.0f}"]
        native = figures.get("native")
        if native is None and name.startswith("ours"):
            # Read on the library's own threads: the same batches' native call elsewhere.
            native = us.get("ours (worker)", us["ours"]).get("native")
        if native is not None and floor is not None:
            cells += [f"{native:.0f}", f"{inside - native:.0f}", f"{wall - floor - native:.0f}"]
        else:
            cells += ["", "", ""]
        if peer and name.startswith("ours"):
            cells += [f"{wall / peer['wall']:.2f}x", f"{cpu / peer['cpu']:.2f}x"]
        else:
            cells += ["", ""]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="where the arrays go (default: the system temp dir)")
    parser.add_argument("--size", type=int, default=256, help="edge of the cubic uint16 array (default 256)")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds; the median is kept (default 9)")
    parser.add_argument("--reads", type=int, default=N_READS, help=f"reads per round (default {N_READS})")
    parser.add_argument("--layout", nargs="*", default=DEFAULT_LAYOUTS, choices=list(LAYOUTS))
    parser.add_argument("--kind", nargs="*", default=["chunk", "box"], choices=["chunk", "box"])
    args = parser.parse_args()
    if args.size < 2 * CHUNK:
        parser.error(f"--size must be at least {2 * CHUNK}, not {args.size}")
    names = instrument()
    data = np.random.default_rng(0).integers(0, 1000, size=(args.size,) * 3, dtype=np.uint16)
    reads = selections(args.size, args.reads)
    lines = [
        f"Per call (µs; median over {args.rounds} interleaved rounds of {args.reads} reads; {args.size}^3 uint16, "
        f"32^3 chunks, 128^3 shards; chunk: one aligned 32^3 chunk, box: an unaligned {BOX}^3 box; "
        f"keep-warm {WARM_ON_US} µs in its row, off in the others):",
        "",
        "| layout | read | pipeline | wall | CPU | zarr (outside read) | read | native call | read - native | "
        "our share | wall / zarrs-python | CPU / zarrs-python |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for layout in args.layout:
            path = Path(tmp) / f"{layout}.zarr"
            with zarr.config.set({"codec_pipeline.path": PIPELINES["zarr Batched"][0]}):
                array = zarr.create_array(path, shape=data.shape, dtype=data.dtype, **LAYOUTS[layout])
                array[...] = data
            for kind in args.kind:
                lines += report(layout, kind, measure(path, data, reads[kind], names, args.rounds), names)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

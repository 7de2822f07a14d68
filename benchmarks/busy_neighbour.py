"""Small reads beside busy neighbours: what a pipeline's reads cost the work around them.

A library's speed includes the CPU it takes from its user's other work (a dask task, a
training step). Here, while small reads run one after another through zarr's API, two
neighbours do fixed CPU-bound work without pause: a thread in the same process and a
process beside it, each hashing 64 KiB blocks (``hashlib`` releases the GIL, so the thread
competes for CPUs, not for the GIL). Reported per implementation:

* the reads' **wall** and **CPU** per call (CPU: getrusage of the whole process, every
  thread, minus the neighbour thread's own CPU time);
* each neighbour's **progress** (blocks hashed per second while the reads run) and its
  **loss** against a stretch with no reads at all (the same neighbours, as long as the
  reads took) taken right after each implementation's reads: each loss is of one such pair,
  so a change in the machine's other load between rounds moves both sides.

Implementations: ours with the keep-warm window off and on (``zarrs_cffi.keep_warm``), and
zarrs-python when installed. Each figure is the median over the rounds.

Usage::

    python benchmarks/busy_neighbour.py --dir /dev/shm [--size 256] [--rounds 7] [--reads 200]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import multiprocessing as mp
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

import zarrs_cffi

WARM_ON_US = 1000
BLOCK = bytes(64 << 10)
BOX = 16
CHUNK = 32
# Between rounds, so the next starts from CPUs equally idle (longer than a keep-warm window).
PAUSE = 0.05

PIPELINES: dict[str, tuple[str, int | None]] = {
    "ours": ("zarrs_cffi.ZarrsCodecPipeline", 0),
    "ours (keep-warm on)": ("zarrs_cffi.ZarrsCodecPipeline", WARM_ON_US),
    "zarrs-python": ("zarrs.ZarrsCodecPipeline", None),
}
LAYOUTS: dict[str, dict[str, Any]] = {
    "zstd": {"chunks": (CHUNK,) * 3, "compressors": ZstdCodec(level=1)},
    "zstd-sharded": {"chunks": (CHUNK,) * 3, "shards": (128,) * 3, "compressors": ZstdCodec(level=1)},
    "blosc-lz4": {"chunks": (CHUNK,) * 3, "compressors": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")},
    "raw-sharded": {"chunks": (CHUNK,) * 3, "shards": (128,) * 3, "compressors": None},
}


def hash_forever(count: Any, stop: Any) -> None:
    """The neighbour process: hash blocks until told to stop, counting them."""
    while not stop.is_set():
        for _ in range(16):
            hashlib.sha256(BLOCK).digest()
        count.value += 16


class NeighbourThread:
    """The neighbour thread: hashes blocks while ``running``; its count and CPU time."""

    def __init__(self) -> None:
        self.count = 0
        self.cpu = 0.0
        self.running = threading.Event()
        self.stop = False
        self.thread = threading.Thread(target=self._work, name="neighbour", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while not self.stop:
            if not self.running.wait(0.01):
                continue
            hashlib.sha256(BLOCK).digest()
            self.count += 1
            self.cpu = time.thread_time()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one_round(
    work: Any, neighbour: NeighbourThread, process_count: Any, seconds: float | None
) -> dict[str, float]:
    """Run ``work`` (or sleep ``seconds`` when it is None) beside both neighbours busy."""
    thread_start, process_start, neighbour_cpu = neighbour.count, process_count.value, neighbour.cpu
    cpu = _cpu_seconds()
    start = time.perf_counter()
    neighbour.running.set()
    if work is None:
        time.sleep(seconds or 0.0)
    else:
        work()
    neighbour.running.clear()
    elapsed = time.perf_counter() - start
    return {
        "elapsed": elapsed,
        "cpu": _cpu_seconds() - cpu - (neighbour.cpu - neighbour_cpu),
        "thread": (neighbour.count - thread_start) / elapsed,
        "process": (process_count.value - process_start) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="where the array goes (default: the system temp dir)")
    parser.add_argument("--size", type=int, default=256, help="edge of the cubic uint16 array (default 256)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; medians are kept (default 7)")
    parser.add_argument("--reads", type=int, default=200, help="reads per round (default 200)")
    parser.add_argument("--layout", nargs="*", default=["zstd", "raw-sharded"], choices=list(LAYOUTS))
    parser.add_argument("--kind", nargs="*", default=["chunk", "box"], choices=["chunk", "box"])
    args = parser.parse_args()
    if args.size < 2 * CHUNK:
        parser.error(f"--size must be at least {2 * CHUNK}, not {args.size}")
    names = [n for n, (path, _) in PIPELINES.items() if importlib.util.find_spec(path.split(".")[0]) is not None]
    rng = np.random.default_rng(0)
    data = rng.integers(0, 1000, size=(args.size,) * 3, dtype=np.uint16)
    grid = rng.integers(0, args.size // CHUNK, size=(args.reads, 3))
    starts = rng.integers(0, args.size - BOX, size=(args.reads, 3))
    reads = {
        "chunk": [tuple(slice(int(c) * CHUNK, (int(c) + 1) * CHUNK) for c in cell) for cell in grid],
        "box": [tuple(slice(int(s), int(s) + BOX) for s in start) for start in starts],
    }
    context = mp.get_context("spawn")
    process_count, stop = context.Value("q", 0, lock=False), context.Event()
    process = context.Process(target=hash_forever, args=(process_count, stop), daemon=True)
    process.start()
    neighbour = NeighbourThread()
    deadline = time.monotonic() + 60
    while not process_count.value:  # the process imports this module first
        if time.monotonic() > deadline or not process.is_alive():
            raise SystemExit("the neighbour process did not start")
        time.sleep(0.05)
    lines = [
        f"Small reads beside a busy thread and a busy process (median of {args.rounds} interleaved rounds of "
        f"{args.reads} reads; {args.size}^3 uint16, 32^3 chunks, 128^3 shards; {CPU_NOTE}):",
        "",
        "| layout | read | pipeline | wall µs/call | CPU µs/call | thread blocks/s | process blocks/s "
        "| thread loss | process loss |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    try:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            for layout in args.layout:
                path = Path(tmp) / f"{layout}.zarr"
                array = zarr.create_array(path, shape=data.shape, dtype=data.dtype, **LAYOUTS[layout])
                array[...] = data
                arrays = {}
                for name in names:
                    with zarr.config.set({"codec_pipeline.path": PIPELINES[name][0]}):
                        arrays[name] = zarr.open_array(path, mode="r")
                        assert np.array_equal(arrays[name][reads["box"][0]], data[reads["box"][0]]), name
                for kind in args.kind:
                    lines += _measure(layout, kind, arrays, reads[kind], neighbour, process_count, args.rounds)
    finally:
        stop.set()
        neighbour.stop = True
        process.join(10)
    print("\n".join(lines))


CPU_NOTE = "CPU: the whole process minus the neighbour thread; loss: against the same neighbours with no reads, right after"


def _measure(
    layout: str, kind: str, arrays: dict[str, Any], reads: list[Any], neighbour: NeighbourThread,
    process_count: Any, rounds: int,
) -> list[str]:
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in ["no reads", *arrays]}
    for _ in range(rounds):
        for name, array in arrays.items():
            warm = PIPELINES[name][1]
            if warm is not None:
                zarrs_cffi.keep_warm(warm)

            def work(array: Any = array) -> None:
                for selection in reads:
                    array[selection]

            result = one_round(work, neighbour, process_count, None)
            zarrs_cffi.keep_warm(0)
            # The neighbours alone, right after and as long: this pair's baseline.
            alone = one_round(None, neighbour, process_count, result["elapsed"])
            for who in ("thread", "process"):
                # No block finished alone (a very short round): no loss to tell.
                result[f"{who} loss"] = 1 - result[who] / alone[who] if alone[who] else float("nan")
            samples[name].append(result)
            samples["no reads"].append(alone)
            time.sleep(PAUSE)
    medians = {
        name: {key: statistics.median(r[key] for r in results) for key in results[0]} for name, results in samples.items()
    }
    rows = []
    for name, figures in medians.items():
        if name == "no reads":
            cells = [layout, kind, name, "", "", f"{figures['thread']:.0f}", f"{figures['process']:.0f}", "", ""]
        else:
            cells = [
                layout, kind, name, f"{figures['elapsed'] / len(reads) * 1e6:.0f}",
                f"{figures['cpu'] / len(reads) * 1e6:.0f}", f"{figures['thread']:.0f}", f"{figures['process']:.0f}",
                f"{figures['thread loss']:.0%}", f"{figures['process loss']:.0%}",
            ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


if __name__ == "__main__":
    main()

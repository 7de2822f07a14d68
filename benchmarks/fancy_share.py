"""How much of an ``oindex`` or ``vindex`` read through zarr's API is zarr's, and how much ours.

Issue 11 asks for oindex and vindex at or below tensorstore. Through zarr, part of every such
read is zarr's own Python before the codec pipeline is called at all: its indexer, and then a
per-chunk loop building the batch (a store path, a chunk spec and a selection per chunk;
10,000 random points meet ~3,700 of the 4,096 chunks of the benchmark array). That part is the
same whatever the pipeline, and tensorstore does not have it. This script splits each read,
on the arrays and selections of ``bench.py``, into:

* **outside**: the whole call minus the time inside ``codec_pipeline.read`` (zarr's part);
* **inside**: our pipeline's ``read`` (planning, the native gather, decoding, copying);

for our pipeline and for zarr's BatchedCodecPipeline (whose "outside" shows zarr's part does
not depend on us), next to tensorstore's whole read of the same selection. Implementations
are interleaved round by round in one process; each figure is the best round (the outside
and inside of the best round, not the best of each).

Usage::

    python benchmarks/fancy_share.py --dir /dev/shm [--size 512] [--rounds 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.core.codec_pipeline import BatchedCodecPipeline

import zarrs_cffi
from bench import LAYOUTS, fancy_selections, make_data

try:
    import tensorstore as ts
except ImportError:  # an optional peer (benchmarks/requirements.txt): its cells read "-"
    ts = None

PIPELINES = {
    "ours": "zarrs_cffi.ZarrsCodecPipeline",
    "zarr Batched": "zarr.core.codec_pipeline.BatchedCodecPipeline",
}

inside = [0.0]


def _time_inside(cls: Any) -> None:
    original = cls.read
    depth = [0]  # zarr's sharding codec reads through a nested pipeline: time the outermost

    async def read(self: Any, *args: Any, **kwargs: Any) -> Any:
        depth[0] += 1
        start = time.perf_counter()
        try:
            return await original(self, *args, **kwargs)
        finally:
            depth[0] -= 1
            if not depth[0]:
                inside[0] += time.perf_counter() - start

    cls.read = read


def _select(array: Any, kind: str, rows: np.ndarray, points: tuple[np.ndarray, ...]) -> Any:
    if kind == "oindex":
        return array.oindex[(rows,) + (slice(None),) * (array.ndim - 1)]
    return array.vindex[points]


def measure(path: Path, data: np.ndarray, rounds: int, batched: bool) -> list[dict[str, Any]]:
    rows, points = fancy_selections(data.shape[0])
    expected = {"oindex": data[rows], "vindex": data[points]}
    store = None if ts is None else ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}).result()
    arrays = {}
    for name, pipeline in PIPELINES.items():
        if name != "ours" and not batched:
            continue
        with zarr.config.set({"codec_pipeline.path": pipeline}):
            arrays[name] = zarr.open_array(path, mode="r")
    best: dict[tuple[str, str], tuple[float, float]] = {}
    for kind in ("oindex", "vindex"):
        for name, array in arrays.items():
            assert np.array_equal(_select(array, kind, rows, points), expected[kind]), (name, kind)
        if store is not None:
            tensor = store.oindex[rows] if kind == "oindex" else store.vindex[points]
            assert np.array_equal(tensor.read().result(), expected[kind])
        for _ in range(rounds):
            for name, array in arrays.items():
                inside[0] = 0.0
                start = time.perf_counter()
                _select(array, kind, rows, points)
                total = time.perf_counter() - start
                key = (kind, name)
                if key not in best or total < best[key][0]:
                    best[key] = (total, inside[0])
            if store is None:
                continue
            start = time.perf_counter()
            (store.oindex[rows] if kind == "oindex" else store.vindex[points]).read().result()
            total = time.perf_counter() - start
            if (kind, "tensorstore") not in best or total < best[(kind, "tensorstore")][0]:
                best[(kind, "tensorstore")] = (total, total)
    out = []
    for kind in ("oindex", "vindex"):
        ours_total, ours_inside = best[(kind, "ours")]
        ts_total = best[(kind, "tensorstore")][0] if store is not None else None
        row = {
            "kind": kind,
            "ours": ours_total,
            "ours outside": ours_total - ours_inside,
            "ours inside": ours_inside,
            "tensorstore": ts_total,
        }
        if (kind, "zarr Batched") in best:
            b_total, b_inside = best[(kind, "zarr Batched")]
            row["Batched outside"] = b_total - b_inside
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="where the arrays go (tmpfs: /dev/shm)")
    parser.add_argument("--size", type=int, default=512, help="side of the cube (default 512)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; best kept (default 5)")
    parser.add_argument("--layout", nargs="*", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--no-batched", action="store_true", help="skip zarr's BatchedCodecPipeline (slow on vindex)")
    args = parser.parse_args()
    _time_inside(zarrs_cffi.ZarrsCodecPipeline)
    _time_inside(BatchedCodecPipeline)
    data = make_data(args.size)
    print(f"# oindex / vindex: zarr's share and ours ({args.size}^3 uint16, best of {args.rounds}, ms)\n")
    print("| layout | op | ours | zarr's part (ours) | zarr's part (Batched) | our pipeline.read | tensorstore | ours / ts | our read / ts |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for name in args.layout:
            path = Path(tmp) / name
            with zarr.config.set({"codec_pipeline.path": PIPELINES["ours"]}):
                array = zarr.create_array(path, shape=data.shape, dtype=data.dtype, **LAYOUTS[name].create_kwargs())
                array[...] = data
            for row in measure(path, data, args.rounds, not args.no_batched):
                batched = f"{row['Batched outside'] * 1e3:.1f}" if "Batched outside" in row else "-"
                tensorstore = row["tensorstore"]
                if tensorstore is None:
                    peer = "- | - | -"
                else:
                    peer = f"{tensorstore * 1e3:.1f} | {row['ours'] / tensorstore:.2f} | {row['ours inside'] / tensorstore:.2f}"
                print(
                    f"| {name} | {row['kind']} | {row['ours'] * 1e3:.1f} | {row['ours outside'] * 1e3:.1f} | "
                    f"{batched} | {row['ours inside'] * 1e3:.1f} | {peer} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()

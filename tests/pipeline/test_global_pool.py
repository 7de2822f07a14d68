"""Nothing runs on rayon's global thread pool.

The library runs its parallel work on per-process pools (``process.rs``), rebuilt in a forked
child; rayon's global pool is not, so work landing there would hang a forked child. Reads
decode on the calling thread too (``process::share``), which belongs to no pool: a rayon
call made there (a parallel iterator, zarrs' sharding codec) would land on the global pool.

zarrs still asks rayon how many threads it has (its default codec options), which starts the
global pool from any thread outside our pools; the library gives it one thread, named
``zarrs-ffi-idle``, before that happens. A fresh process reads every layout, small and large,
contiguous and gathered, through each route and the direct API, then checks its threads:
nothing but Python's threads and ours exists, and the idle thread never woke up (its count of
scheduler time slices, from ``/proc``, did not move).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = r"""
import json, os, sys, tempfile, threading, time

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, ShardingCodec, ZstdCodec
from zarr.storage import LocalStore, MemoryStore

import zarrs_cffi


def threads():
    found = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                slices = int(f.read().split()[2])
        except OSError:
            continue
        found[int(tid)] = (name, slices)
    return found


baseline = set(threads())
zarr.config.set({"codec_pipeline.path": "zarrs_cffi.ZarrsCodecPipeline", "codec_pipeline.strict": True})
rng = np.random.default_rng(0)
data = rng.integers(0, 1000, size=(64, 64, 64), dtype=np.uint16)
inner = (16, 16, 16)
LAYOUTS = {
    "zstd": {"chunks": inner, "compressors": ZstdCodec(level=1)},
    "blosc": {"chunks": inner, "compressors": BloscCodec(cname="lz4")},
    "raw": {"chunks": inner, "compressors": None},
    "zstd-sharded": {"chunks": inner, "shards": (32, 32, 32), "compressors": ZstdCodec(level=1)},
    "raw-sharded": {"chunks": inner, "shards": (32, 32, 32), "compressors": None},
    "sharded-then-zstd": {"chunks": (32, 32, 32), "serializer": ShardingCodec(chunk_shape=inner), "compressors": ZstdCodec(level=1)},
    "nested-sharding": {
        "chunks": (64, 64, 64),
        "serializer": ShardingCodec(chunk_shape=(32, 32, 32), codecs=[ShardingCodec(chunk_shape=inner, codecs=[BytesCodec()])]),
        "compressors": None,
    },
    "nested-sharding-then-zstd": {
        "chunks": (64, 64, 64),
        "serializer": ShardingCodec(chunk_shape=(32, 32, 32), codecs=[ShardingCodec(chunk_shape=inner, codecs=[BytesCodec()])]),
        "compressors": ZstdCodec(level=1),
    },
}
root = tempfile.mkdtemp(dir=sys.argv[1])
arrays = []
for name, layout in LAYOUTS.items():
    for kind in ("local", "memory"):
        store = LocalStore(os.path.join(root, name)) if kind == "local" else MemoryStore()
        array = zarr.create_array(store, shape=data.shape, dtype=data.dtype, **layout)
        array[...] = data
        arrays.append((f"{name}/{kind}", array, os.path.join(root, name) if kind == "local" else None))

time.sleep(0.2)  # every pool thread started by the writes is asleep now
before = threads()
checked = 0
for label, array, path in arrays:
    direct = zarrs_cffi.Array.open(path) if path else None
    for start in rng.integers(0, 56, size=(12, 3)):
        box = tuple(slice(s, s + 8) for s in start)
        assert np.array_equal(array[box], data[box]), label
        if direct is not None:
            assert np.array_equal(direct[box], data[box]), label
        checked += 1
    assert np.array_equal(array[...], data), label
    if direct is not None:
        assert np.array_equal(direct[...], data), label
    rows = np.sort(rng.choice(64, size=9, replace=False))
    assert np.array_equal(array.oindex[rows, :, 3:40], data[rows, :, 3:40]), label
    points = tuple(rng.integers(0, 64, size=(3, 50)))
    assert np.array_equal(array.vindex[points], data[points]), label
stats = zarrs_cffi.stats()
assert stats.fallbacks == 0, stats
after = threads()
python = {t.native_id for t in threading.enumerate()}
print(json.dumps({
    "checked": checked,
    "native_reads": stats.native_reads,
    "new": [[name, before.get(tid, (name, None))[1], slices] for tid, (name, slices) in after.items()
            if tid not in baseline and tid not in python],
}))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="Linux only")
def test_nothing_runs_on_rayons_global_pool(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["checked"] == 16 * 12 and result["native_reads"] > 0
    names = [name for name, _, _ in result["new"]]
    # Only our threads were started: pool threads, the idle global one (no I/O runtime: local
    # and in-memory stores only).
    assert all(name.startswith("zarrs-ffi-") for name in names), result["new"]
    assert names.count("zarrs-ffi-idle") == 1, result["new"]
    # It slept through every read: no job woke it.
    [(_, slices_before, slices_after)] = [entry for entry in result["new"] if entry[0] == "zarrs-ffi-idle"]
    assert slices_before is not None and slices_after == slices_before, result["new"]

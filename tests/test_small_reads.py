"""Small reads through zarr on local files: what a read of a few chunks costs the system.

A 16^3 box read through zarr decodes one to eight 32^3 chunks (or inner chunks of one
shard). Two costs of such a read are counted here, not timed:

- a shard read in part opens its file once, for its index and its inner chunks alike
  (``LocalStore::open_value``); through zarrs' filesystem store every partial read opened
  the file again;
- a read that decompresses little (``INLINE_BYTES`` in ``handles/array.rs``: one 64 KiB
  chunk) runs on the calling thread alone and wakes no thread of the native pool, while a large one still runs there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import assert_read_route, assert_same, make_data
from zarr.codecs import BytesCodec, ShardingCodec, ZstdCodec
from zarr.storage import LocalStore

import zarrs_cffi

PIPELINE = {"codec_pipeline.path": "zarrs_cffi.ZarrsCodecPipeline"}


def _shard_opens(root: Path, script: str) -> list[str]:
    """The ``openat`` calls of every thread of a child running ``script`` (``arr``: the
    array at ``root``, opened through zarr with our pipeline, and read whole once before
    the count starts), as strace prints them, that name a file under ``root/c``."""
    log = root.parent / "strace.log"
    marker = root.parent / "start-counting"
    program = textwrap.dedent(f"""
        import os, zarr, zarrs_cffi
        from zarr.storage import LocalStore
        zarr.config.set({PIPELINE!r})
        arr = zarr.open_array(LocalStore({str(root)!r}), mode="r")
        arr[...]
        os.stat({str(marker)!r})  # where the count starts (a stat, not an open)
    """) + textwrap.dedent(script)
    marker.touch()
    subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=openat,stat,newfstatat,statx", "-o", str(log), sys.executable, "-c", program],
        check=True, timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    lines = log.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if str(marker) in line)
    return [line for line in lines[start:] if "openat(" in line and f"{root}/c/" in line]


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (scripts/test installs it)")
@pytest.mark.parametrize("compressors", [None, [ZstdCodec(level=1)]], ids=["raw", "zstd"])
def test_a_shard_read_in_part_opens_its_file_once(tmp_path: Path, compressors: object) -> None:
    root = tmp_path / "a.zarr"
    data = make_data("uint16", (64, 64, 64), seed=3)
    with zarr.config.set(PIPELINE):
        arr = zarr.create_array(
            LocalStore(root), shape=data.shape, chunks=(8, 8, 8), shards=(32, 32, 32), dtype="uint16",
            compressors=compressors,
        )
        arr[...] = data
    # A box across 2x2x2 inner chunks of shard c/0/1/0: its index and eight inner chunks.
    opens = _shard_opens(root, """
        box = arr[4:12, 36:44, 2:10]
        assert box.sum() == {expected}, box.sum()
    """.format(expected=int(data[4:12, 36:44, 2:10].sum())))
    assert len(opens) == 1, opens
    assert "/c/0/1/0" in opens[0], opens
    # A box across two shards opens each once.
    opens = _shard_opens(root, "arr[30:34, 0:4, 0:4]")
    assert sorted(re.search(r"/c/(\d/\d/\d)", line).group(1) for line in opens) == ["0/0/0", "1/0/0"], opens
    # And reads as zarr's own pipeline does.
    assert_same(zarr.open_array(LocalStore(root), mode="r")[4:12, 36:44, 2:10], data[4:12, 36:44, 2:10])


def _pool_switches() -> dict[str, int]:
    """Per thread of the native pool (named zarrs-ffi-<n>): how often it has stopped
    running (context switches: each wake-up for work ends in one when it sleeps again)."""
    counts = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/status") as f:
                status = f.read()
        except OSError:
            continue
        name = re.search(r"^Name:\s*(.*)$", status, re.M)
        if name is None or not re.fullmatch(r"zarrs-ffi-\d+", name.group(1)):
            continue
        switches = re.findall(r"^(?:non)?voluntary_ctxt_switches:\s*(\d+)$", status, re.M)
        counts[tid] = sum(map(int, switches))
    return counts


# Chunks of 32^3, zstd-compressed: alone, inner chunks of 64^3 shards, or inner chunks of
# 64^3 inner shards of one 128^3 shard (nested sharding: a small read decodes as little as
# the others, although it reads a whole inner shard).
LAYOUTS = {
    "chunks": {"chunks": (32, 32, 32), "compressors": [ZstdCodec(level=1)]},
    "shards": {"chunks": (32, 32, 32), "shards": (64, 64, 64), "compressors": [ZstdCodec(level=1)]},
    "nested": {
        "chunks": (128, 128, 128),
        "serializer": ShardingCodec(
            chunk_shape=(64, 64, 64), codecs=[ShardingCodec(chunk_shape=(32, 32, 32), codecs=[BytesCodec(), ZstdCodec(level=1)])]
        ),
        "compressors": None,
    },
}


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="Linux only")
@pytest.mark.parametrize("layout", LAYOUTS)
def test_small_reads_leave_the_pool_asleep_and_large_ones_use_it(tmp_path: Path, zarrs_pipeline: None, layout: str) -> None:
    data = make_data("uint16", (128, 128, 128), seed=4)
    arr = zarr.create_array(LocalStore(tmp_path), shape=data.shape, dtype="uint16", **LAYOUTS[layout])
    arr[...] = data
    zarrs_cffi.reset_stats()
    assert_same(arr[...], data)  # 64 chunks: the pool exists and has worked
    assert _pool_switches(), "no native pool thread after a whole-array read"
    rng = np.random.default_rng(5)
    for attempt in range(3):
        time.sleep(0.05)  # let the pool's threads finish spinning and sleep
        before = _pool_switches()
        # 16^3 boxes inside one chunk (or inner chunk): 64 KiB decompressed, so on the
        # calling thread alone.
        for chunk, offset in zip(rng.integers(0, 4, size=(40, 3)), rng.integers(0, 17, size=(40, 3)), strict=True):
            box = tuple(slice(int(c) * 32 + int(o), int(c) * 32 + int(o) + 16) for c, o in zip(chunk, offset, strict=True))
            assert_same(arr[box], data[box])
        woken = {tid: n - before.get(tid, 0) for tid, n in _pool_switches().items() if n != before.get(tid, 0)}
        if not woken:
            break
    assert not woken, f"small reads woke native pool threads: {woken}"
    # A large read still runs on the pool (and the count sees it).
    time.sleep(0.05)
    before = _pool_switches()
    assert_same(arr[...], data)
    assert any(n != before.get(tid, 0) for tid, n in _pool_switches().items()), "a whole-array read left the pool asleep"
    assert_read_route(zarrs_cffi.stats(), native_io=True)

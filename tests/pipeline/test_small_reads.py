"""Small reads through zarr on local files: what a read of a few chunks costs the system.

A 16^3 box read through zarr decodes one to eight 32^3 chunks (or inner chunks of one
shard). Two costs of such a read are counted here, not timed:

- a shard read in part opens its file once, for its index and its inner chunks alike
  (``LocalStore::open_value``); through zarrs' filesystem store every partial read opened
  the file again;
- a read that decompresses little (``INLINE_BYTES`` in ``handles/array.rs``: one 64 KiB
  chunk) runs on the calling thread alone and wakes no thread of the native pool, while a large one still runs there;
- a part of a shard of inner shards (sharding nested in sharding) fetches the outer index,
  the indexes of the inner shards it meets and only the inner chunks it needs, never a
  whole inner shard (counted over HTTP, where the server sees every byte), and reads as
  zarr's pipeline does, with either index location and missing inner shards and chunks.
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
from conftest import ZARR_PIPELINE, assert_read_route, assert_same, make_data, native_only, python_io_reason
from servers import http_server
from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec
from zarr.storage import FsspecStore, LocalStore

import zarrs_cffi
from zarrs_cffi import Array

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
# 64^3 inner shards of one 128^3 shard (nested sharding: a small read fetches and decodes
# as little as the others).
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


def _ours_and_direct(path: Path) -> tuple[zarr.Array, Array]:
    """The array at ``path`` through zarr with our pipeline, and through our direct API."""
    with zarr.config.set(PIPELINE):
        ours = zarr.open_array(LocalStore(path), mode="r")
    return ours, Array.open(path, read_only=True)


def _random_boxes(seed: int, starts: tuple[int, int], longest: int, count: int) -> list[tuple[slice, ...]]:
    """``count`` random 2-D boxes starting below ``starts``, each side 1 to ``longest - 1``."""
    rng = np.random.default_rng(seed)
    return [
        tuple(slice(int(lo), int(lo + n)) for lo, n in zip(rng.integers(0, starts), rng.integers(1, longest, 2), strict=True))
        for _ in range(count)
    ]


def _nested(outer: str = "end", inner: str = "end", crc32c: bool = True) -> ShardingCodec:
    """Shards of 40x50 in inner shards of 20x25 in zstd chunks of 10x5, each index where
    asked, with or without its crc32c."""
    index_codecs = [BytesCodec(), Crc32cCodec()] if crc32c else [BytesCodec()]
    chunks = ShardingCodec(
        chunk_shape=(10, 5), codecs=[BytesCodec(), ZstdCodec(level=1)], index_codecs=index_codecs, index_location=inner
    )
    return ShardingCodec(chunk_shape=(20, 25), codecs=[chunks], index_codecs=index_codecs, index_location=outer)


@pytest.mark.parametrize(
    ("outer", "inner", "crc32c"),
    [("end", "end", True), ("start", "end", False), ("end", "start", True), ("start", "start", False)],
)
def test_small_reads_of_nested_shards_match_zarr(tmp_path: Path, outer: str, inner: str, crc32c: bool) -> None:
    # 90x100 in 40x50 shards (the last ones partial), written by zarr's own pipeline, with
    # one inner shard and some inner chunks all fill value: zarr stores neither, so the
    # outer and inner indexes mark them missing.
    data = make_data("uint16", (90, 100), seed=8)
    data[data == 3] = 4
    data[40:60, 25:50] = 3  # inner shard 2 of shard c/1/0
    data[10:20, 5:10] = 3  # an inner chunk of inner shard 0 of shard c/0/0
    data[60:70, 60:75] = 3  # three inner chunks of shard c/1/1
    data[80:90, 0:50] = 3  # every inner chunk of a partial shard's stored row
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        theirs = zarr.create_array(
            LocalStore(tmp_path), shape=data.shape, chunks=(40, 50), serializer=_nested(outer, inner, crc32c),
            compressors=None, dtype="uint16", fill_value=3,
        )
        theirs[...] = data
        assert_same(theirs[...], data)
    assert type(theirs.async_array.codec_pipeline).__name__ == "BatchedCodecPipeline"
    ours, direct = _ours_and_direct(tmp_path)
    boxes = _random_boxes(9, (88, 98), 24, 150)
    boxes += [(slice(45, 55), slice(30, 40)), (slice(12, 18), slice(6, 9)), (slice(0, 90), slice(0, 100)), (slice(89, 90), slice(99, 100))]
    zarrs_cffi.reset_stats()
    with native_only(reads=True):
        for box in boxes:
            expected = theirs[box]  # zarr's own pipeline, which the array was opened with
            assert_same(expected, data[box])
            assert_same(ours[box], expected)
            assert_same(direct[box], expected)
    assert_read_route(zarrs_cffi.stats(), native_io=True)


@pytest.mark.parametrize("compressed", [False, True], ids=["in-part", "middle-compressed"])
def test_small_reads_of_three_level_shards_match_zarr(tmp_path: Path, compressed: bool) -> None:
    # Shards of 32x40 in inner shards of 16x20 in inner shards of 8x10 in chunks of 4x5:
    # read in part at every level, or with zstd around the middle inner shards (those are
    # then fetched whole and read from memory, the rest in part).
    data = make_data("int32", (70, 90), seed=11)
    data[data == 0] = 1
    data[32:48, 40:60] = 0  # a missing inner shard of the first level
    data[0:8, 10:20] = 0  # a missing inner shard of the second level
    data[20:24, 25:30] = 0  # a missing chunk
    chunks = ShardingCodec(chunk_shape=(4, 5), codecs=[BytesCodec(), ZstdCodec(level=1)], index_location="start")
    middle = ShardingCodec(chunk_shape=(8, 10), codecs=[chunks, ZstdCodec(level=1)] if compressed else [chunks])
    serializer = ShardingCodec(chunk_shape=(16, 20), codecs=[middle], index_location="start")
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        theirs = zarr.create_array(
            LocalStore(tmp_path), shape=data.shape, chunks=(32, 40), serializer=serializer, compressors=None, dtype="int32",
        )
        theirs[...] = data
    ours, direct = _ours_and_direct(tmp_path)
    boxes = _random_boxes(12, (68, 88), 20, 100)
    with native_only(reads=True):
        for box in boxes:
            expected = theirs[box]
            assert_same(expected, data[box])
            assert_same(ours[box], expected)
            assert_same(direct[box], expected)


def _range_length(header: str | None) -> int:
    """The bytes a ``Range`` header asks for (``bytes=a-b`` or ``bytes=-n``)."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header or "")
    assert match is not None, header
    first, last = match.groups()
    return int(last) if first == "" else int(last) - int(first) + 1


def test_a_small_read_of_a_nested_shard_fetches_only_what_it_needs(tmp_path: Path) -> None:
    # One 64^3 shard of 32^3 inner shards of 8^3 zstd chunks (barely compressible: each
    # inner shard holds about 64 KiB, each inner chunk 1 KiB). A box inside one inner chunk
    # fetches the outer index, one inner shard's index and that chunk: three ranged GETs
    # of about 2 KiB, not the inner shard.
    data = make_data("uint16", (64, 64, 64), seed=10)
    serializer = ShardingCodec(
        chunk_shape=(32, 32, 32), codecs=[ShardingCodec(chunk_shape=(8, 8, 8), codecs=[BytesCodec(), ZstdCodec(level=1)])]
    )
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        zarr.create_array(
            LocalStore(tmp_path / "data"), shape=data.shape, chunks=(64, 64, 64), serializer=serializer, compressors=None,
            dtype="uint16",
        )[...] = data
    inner_shard_bytes = (tmp_path / "data" / "c" / "0" / "0" / "0").stat().st_size / 8
    with http_server(tmp_path / "data") as url, zarr.config.set(PIPELINE):
        arr = zarr.open_array(FsspecStore.from_url(url, read_only=True), mode="r")
        assert python_io_reason(arr) is None  # the library fetches the bytes itself
        for box in [(slice(10, 14), slice(40, 44), slice(3, 7)), (slice(63, 64), slice(0, 8), slice(56, 64))]:
            url.requests.clear()
            zarrs_cffi.reset_stats()
            assert_same(arr[box], data[box])
            assert_read_route(zarrs_cffi.stats(), native_io=True)
            gets = [(method, byte_range) for method, path, byte_range in url.requests if path.endswith("/c/0/0/0")]
            assert len(gets) == 3 and all(method == "GET" for method, _ in gets), url.requests
            fetched = sum(_range_length(byte_range) for _, byte_range in gets)
            assert fetched < inner_shard_bytes / 16, (fetched, inner_shard_bytes, gets)

"""The native side's say over I/O done elsewhere: read plans (``ArrayHandle.read_plan``,
driven by ``shards.py`` for Python stores), which chunks a write needs the old bytes of
(``ArrayHandle.needs_old``), whether chunks are shards (``ArrayHandle.sharded``), and
fetch-once read-modify-writes on native storage (``fetch_encoded`` / ``store_encoded``)."""

from __future__ import annotations

import ctypes
import os
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore, MemoryStore

import zarrs_cffi
from zarrs_cffi._bindings import REQUEST_RANGE, REQUEST_SUFFIX, REQUEST_WHOLE, ChunkBatch, ArrayHandle, Options, Storage
from zarrs_cffi.errors import ZarrsCodecError, ZarrsValueError

ZARRS_PIPELINE = "zarrs_cffi.ZarrsCodecPipeline"
OPTIONS = Options()


def _metadata(sharded: bool, index_codecs: list[Any] | None = None) -> dict[str, Any]:
    bytes_codec = {"name": "bytes", "configuration": {"endian": "little"}}
    zstd = {"name": "zstd", "configuration": {"level": 1, "checksum": False}}
    codecs: list[Any] = [bytes_codec, zstd]
    if sharded:
        codecs = [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": [4, 4],
                    "codecs": [bytes_codec, zstd],
                    "index_codecs": index_codecs or [bytes_codec, {"name": "crc32c"}],
                    "index_location": "end",
                },
            }
        ]
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [32, 32],
        "data_type": "int32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [16, 16]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": -1,
        "codecs": codecs,
    }


DATA = np.arange(32 * 32, dtype=np.int32).reshape(32, 32)


def _native(tmp_path: Path, sharded: bool, **kwargs: Any) -> ArrayHandle:
    storage = Storage.filesystem(str(tmp_path))
    array = ArrayHandle.open_with_metadata(storage, _metadata(sharded, **kwargs), "/arr", create=True)
    array.store_subset(OPTIONS, (0, 0), DATA)
    return array


def _geometry(rows: list[tuple[tuple[int, int], tuple[int, int], tuple[int, int]]]) -> np.ndarray[Any, Any]:
    """Per chunk (16x16): subset start, subset shape, buffer start."""
    return np.array([[(16, 16), start, shape, at] for start, shape, at in rows], dtype=np.uint64)


def _answer(root: Path, key: str, request: Any) -> bytes | None:
    """What a caller's store gives for one request: a missing file is None, a range past
    the end comes back short."""
    try:
        data = (root / key).read_bytes()
    except FileNotFoundError:
        return None
    kind, offset, length = int(request["kind"]), int(request["offset"]), int(request["length"])
    if kind == REQUEST_WHOLE:
        return data
    if kind == REQUEST_SUFFIX:
        return data[len(data) - min(length, len(data)) :]
    return data[offset : offset + length]


def _drive(root: Path, keys: list[str], plan: Any) -> list[Any]:
    rounds = []
    while len(requests := plan.requests()):
        plan.supply([_answer(root, keys[int(r["job"])], r) for r in requests])
        rounds.append(requests)
    return rounds


def test_read_plan_reads_like_read_chunks(tmp_path):
    array = _native(tmp_path, sharded=True)
    (tmp_path / "arr/c/1/1").unlink()
    keys = ["arr/c/0/0", "arr/c/0/1", "arr/c/1/1"]
    geometry = _geometry([((1, 2), (5, 6), (0, 0)), ((0, 0), (16, 16), (5, 0)), ((3, 3), (2, 2), (0, 10))])
    batch = ChunkBatch.build(keys, geometry)
    plan = array.read_plan(OPTIONS, batch)
    rounds = _drive(tmp_path, keys, plan)
    out = np.full((21, 16), 99, dtype=np.int32)
    present = plan.finish(out)
    expected = np.full((21, 16), 99, dtype=np.int32)
    assert array.read_chunks(OPTIONS, batch, expected).tolist() == [True, True, False]
    assert present.tolist() == [True, True, False]
    np.testing.assert_array_equal(out, expected)
    # Round 1: the index of each shard read in part, the whole shard read whole.
    assert [(int(r["job"]), int(r["kind"])) for r in rounds[0]] == [(0, REQUEST_SUFFIX), (1, REQUEST_WHOLE), (2, REQUEST_SUFFIX)]
    assert int(rounds[0][0]["length"]) == 16 * 16 + 4  # what the native side knows, not Python
    # Round 2: only shard 0's inner chunks (rows 1..6, cols 2..8: four of them), one range.
    assert [(int(r["job"]), int(r["kind"])) for r in rounds[1]] == [(0, REQUEST_RANGE)]


def test_read_plan_errors_name_the_chunk(tmp_path):
    array = _native(tmp_path, sharded=True)
    plan = array.read_plan(OPTIONS, ChunkBatch.build(["arr/c/0/0"], _geometry([((0, 0), (2, 2), (0, 0))])))
    with pytest.raises(ZarrsCodecError, match="arr/c/0/0.*truncated"):
        plan.supply([b"\0" * 7])
    plan = array.read_plan(OPTIONS, ChunkBatch.build(["arr/c/0/0"], _geometry([((0, 0), (2, 2), (0, 0))])))
    with pytest.raises(ZarrsValueError, match="2 responses for 1 requests"):
        plan.supply([None, None])
    with pytest.raises(ZarrsValueError, match="max_gap_bytes"):
        array.read_plan(OPTIONS, ChunkBatch.build(["arr/c/0/0"], _geometry([((0, 0), (2, 2), (0, 0))])), -1)


def test_sharded_comes_from_the_native_side(tmp_path):
    assert _native(tmp_path / "a", sharded=True).sharded is True
    assert _native(tmp_path / "b", sharded=False).sharded is False


@pytest.mark.parametrize("sharded", [False, True])
def test_needs_old_is_the_pipeline_rule(tmp_path, sharded):
    array = _native(tmp_path, sharded=sharded)
    # Whole; part and not complete; part and complete (an edge chunk covered inside).
    geometry = _geometry([((0, 0), (16, 16), (0, 0)), ((0, 0), (4, 4), (0, 0)), ((0, 0), (8, 16), (0, 0))])
    complete = [True, False, True]
    needs = array.needs_old(ChunkBatch.build(None, geometry), complete)
    partial = (geometry[:, 2, :] != geometry[:, 0, :]).any(axis=1)
    rule = partial & ~np.array([c and not sharded for c in complete])  # pipeline._needs_old today
    assert needs.tolist() == rule.tolist() == [False, True, sharded]
    with pytest.raises(ZarrsValueError, match="complete flags"):
        array.needs_old(ChunkBatch.build(None, geometry), [True])


class _Opens:
    """Counts files opened under a directory tree (inotify), by relative path: native
    reads happen in Rust, out of Python's sight. Writes go to a temporary name and are
    renamed, so opens of a chunk's own name are reads."""

    IN_OPEN = 0x20

    def __init__(self, root: Path) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK)
        assert self.fd >= 0
        self.dirs: dict[int, Path] = {}
        for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            wd = self.libc.inotify_add_watch(self.fd, str(directory).encode(), self.IN_OPEN)
            assert wd >= 0
            self.dirs[wd] = directory.relative_to(root)

    def take(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return counts
            at = 0
            while at < len(data):
                wd, _mask, _cookie, size = struct.unpack_from("iIII", data, at)
                name = data[at + 16 : at + 16 + size].rstrip(b"\0").decode()
                at += 16 + size
                if name:
                    counts[str(self.dirs[wd] / name)] += 1

    def close(self) -> None:
        os.close(self.fd)


@pytest.mark.parametrize("sharded", [False, True])
def test_gathered_write_fetches_each_chunk_once(tmp_path, sharded):
    """The bindings-level fetch-once read-modify-write on native storage: fetch encoded ->
    decode_chunks -> scatter -> encode_chunks(existing) -> store_encoded reads each chunk
    once; read_chunks + write_chunks (today's route) reads each twice."""
    keys = ["arr/c/0/0", "arr/c/0/1", "arr/c/1/1"]
    geometry = _geometry([((2, 2), (4, 5), (0, 0)), ((1, 0), (4, 5), (4, 0)), ((0, 3), (4, 5), (8, 0))])
    batch = ChunkBatch.build(keys, geometry)
    mask = np.zeros((12, 5), dtype=bool)
    mask[::2, ::3] = True  # a gathered selection: every other row, every third column

    def scatter(scratch: np.ndarray[Any, Any]) -> None:
        scratch[mask] = -7

    results = {}
    for route in ("twice", "once"):
        array = _native(tmp_path / route, sharded=sharded)
        opens = _Opens(tmp_path / route)
        scratch = np.empty((12, 5), dtype=np.int32)
        if route == "twice":
            array.read_chunks(OPTIONS, batch, scratch)
            scatter(scratch)
            array.write_chunks(OPTIONS, batch, scratch)
        else:
            existing = array.fetch_encoded(OPTIONS, keys)
            array.decode_chunks(OPTIONS, batch, existing, scratch)
            scatter(scratch)
            needs = array.needs_old(batch, [False] * 3)
            assert needs.all()
            encoded = array.encode_chunks(OPTIONS, batch, scratch, existing)
            array.store_encoded(OPTIONS, keys, encoded)
        reads = opens.take()
        opens.close()
        results[route] = (reads, np.array(_read_all(array)))
    twice, once = results["twice"][0], results["once"][0]
    # inotify merges an open event identical to the one still unread before it, so a chunk
    # opened twice in a row by one thread (a shard's index, then its inner chunks) can count
    # once: the old route's count is a floor. The new route's single open cannot merge away.
    assert all(twice[k] >= 2 for k in keys), twice
    assert {k: once[k] for k in keys} == dict.fromkeys(keys, 1), once
    np.testing.assert_array_equal(results["once"][1], results["twice"][1])
    expected = DATA.copy()
    assert (results["once"][1] == -7).sum() == mask.sum()
    assert (results["once"][1] != expected).sum() == mask.sum()


def _read_all(array: ArrayHandle) -> np.ndarray[Any, Any]:
    out = np.empty((32, 32), dtype=np.int32)
    array.retrieve_subset(OPTIONS, (0, 0), out)
    return out


def test_store_encoded_erases_and_refuses_duplicates(tmp_path):
    array = _native(tmp_path, sharded=False)
    array.store_encoded(OPTIONS, ["arr/c/0/0"], [None])
    assert not (tmp_path / "arr/c/0/0").exists()
    assert array.fetch_encoded(OPTIONS, ["arr/c/0/0", "arr/c/0/1"])[0] is None
    with pytest.raises(ZarrsValueError, match="more than once"):
        array.store_encoded(OPTIONS, ["arr/c/0/1", "arr/c/0/1"], [b"x", b"y"])
    with pytest.raises(ZarrsValueError, match="keys"):
        array.store_encoded(OPTIONS, ["arr/c/0/1"], [])


class _CountingStore(MemoryStore):
    """A Python-only store (a subclass: the async route) that counts its ``get`` calls."""

    def __init__(self) -> None:
        super().__init__()
        self.gets: list[tuple[str, Any]] = []

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        self.gets.append((key, byte_range))
        return await super().get(key, prototype, byte_range)


def test_partial_shard_read_through_a_python_store():
    store = _CountingStore()
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.create_array(store, shape=(32, 32), chunks=(4, 4), shards=(16, 16), dtype="int32", fill_value=-1)
        arr[...] = DATA
        store.gets.clear()
        zarrs_cffi.reset_stats()
        np.testing.assert_array_equal(arr[5:7, 18:20], DATA[5:7, 18:20])
    shard = [g for g in store.gets if g[0].endswith("c/0/1")]
    # The index (a suffix), then the one inner chunk (a range): never the whole shard.
    assert len(shard) == 2, store.gets
    assert all(byte_range is not None for _, byte_range in shard), shard
    assert zarrs_cffi.stats().fallback_reads == 0


@pytest.mark.parametrize("sharded", [False, True])
def test_zarr_fancy_write_on_native_storage_reads_each_chunk_once(tmp_path, sharded):
    """Through zarr's API with our pipeline on a LocalStore (the native route): an
    orthogonal-index write, which is a read-modify-write of each chunk's bounding box,
    opens each stored chunk once (the scatter's decode and the merge share one fetch), and
    the values are those numpy gives."""
    root = tmp_path / "fancy.zarr"
    expected = np.arange(64 * 64, dtype="int32").reshape(64, 64)
    with zarr.config.set({"codec_pipeline.path": "zarrs_cffi.ZarrsCodecPipeline", "codec_pipeline.strict": True}):
        kwargs = {"shards": (32, 32)} if sharded else {}
        array = zarr.create_array(str(root), shape=(64, 64), chunks=(16, 16), dtype="int32", **kwargs)
        array[...] = expected
        rows, cols = [1, 7, 40], [3, 33, 60]
        opens = _Opens(root)
        before = zarrs_cffi.stats()
        array.oindex[rows, cols] = -5
        reads = opens.take()
        opens.close()
        after = zarrs_cffi.stats()
        expected[np.ix_(rows, cols)] = -5
        np.testing.assert_array_equal(array[...], expected)
    assert after.fallback_writes == before.fallback_writes
    assert after.native_writes > before.native_writes
    chunk_reads = {k: n for k, n in reads.items() if "/c/" in k or k.startswith("c/")}
    assert chunk_reads and set(chunk_reads.values()) == {1}, chunk_reads

"""Every zarr store works with the pipeline, and its routing is the one promised.

- native I/O: the native library reaches the bytes itself (LocalStore, FsspecStore over
  the local filesystem);
- Python I/O + native codecs: the store's own async API moves the bytes and zarrs encodes
  and decodes them (MemoryStore, ZipStore, wrappers, LocalStore subclasses, fsspec
  filesystems without a native mapping).

Each store is written and read through our pipeline and through zarr's default pipeline on
a store of the same kind: same values and same stored keys. The stats counters prove the
route; nothing may fall back.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import zarr
from conftest import (
    ZARR_PIPELINE,
    ZARRS_PIPELINE,
    CountingStore,
    assert_read_route,
    assert_route,
    assert_same,
    make_data,
    native_only,
    python_io_reason,
)
from zarr.storage import LocalStore, LoggingStore, MemoryStore, ZipStore

import zarrs_cffi

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

fsspec = pytest.importorskip("fsspec")


class SubclassedLocalStore(LocalStore):
    """A LocalStore subclass that records the keys it stores."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stored: list[str] = []

    async def set(self, key: str, value: Any) -> None:
        self.stored.append(key)
        await super().set(key, value)


def _fsspec_store(url: str) -> Any:
    from zarr.storage import FsspecStore

    options = {"auto_mkdir": True} if url.startswith("file://") else {}
    return FsspecStore.from_url(url, read_only=False, storage_options=options)


def _obstore_local(path: Path) -> Any:
    from obstore.store import LocalStore as ObstoreLocal
    from zarr.storage import ObjectStore

    path.mkdir(parents=True, exist_ok=True)
    return ObjectStore(ObstoreLocal(path))


def _obstore_memory() -> Any:
    from obstore.store import MemoryStore as ObstoreMemory
    from zarr.storage import ObjectStore

    return ObjectStore(ObstoreMemory())


# name -> (factory(tmp_path, tag), whether the native library does the I/O itself)
STORES: dict[str, tuple[Callable[[Path, str], Any], bool]] = {
    "local": (lambda p, tag: LocalStore(p / tag), True),
    "fsspec-local": (lambda p, tag: _fsspec_store(f"file://{p / tag}"), True),
    "memory": (lambda p, tag: MemoryStore(), False),
    "zip": (lambda p, tag: ZipStore(p / f"{tag}.zip", mode="w"), False),
    "logging": (lambda p, tag: LoggingStore(LocalStore(p / tag)), False),
    "local-subclass": (lambda p, tag: SubclassedLocalStore(p / tag), False),
    "fsspec-memory": (lambda p, tag: _fsspec_store(f"memory://zarrs-cffi-tests/{p.name}/{tag}"), False),
    "obstore-local": (lambda p, tag: _obstore_local(p / tag), True),
    "obstore-memory": (lambda p, tag: _obstore_memory(), False),
}

SHAPE = (30, 40)


def _keys(store: Any) -> set[str]:
    async def collect() -> set[str]:
        return {key async for key in store.list()}

    return asyncio.run(collect())


def _exercise(store: Any, pipeline: str, data: np.ndarray[Any, Any], **kwargs: Any) -> dict[str, Any]:
    """Write whole, part and scalar regions, then read several back."""
    settings: dict[str, Any] = {"codec_pipeline.path": pipeline}
    if not store.supports_deletes:
        # zarr's pipeline raises deleting from such a store (ZipStore); ours stores the
        # fill-value chunk instead, as zarr does with write_empty_chunks.
        settings["array.write_empty_chunks"] = pipeline == ZARR_PIPELINE
    with zarr.config.set(settings):
        arr = zarr.create_array(store, name="g/arr", shape=SHAPE, dtype=data.dtype, fill_value=0, **kwargs)
        arr[:] = data
        arr[3:17, 5:9] = -data[3:17, 5:9]
        arr[20:, :10] = 0  # whole chunks become the fill value: erased
        arr[25, 33] = 7
        reads = {
            "all": arr[:],
            "part": arr[2:29, 11:38],
            "row": arr[25, :],
            "point": arr[25, 33],
        }
    return reads


# Rewriting a chunk in a zip file appends a second entry; zipfile warns (with either pipeline).
@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")
@pytest.mark.parametrize("sharded", [False, True], ids=["chunked", "sharded"])
@pytest.mark.parametrize("name", list(STORES))
def test_store_round_trip_matches_zarr(tmp_path, name, sharded):
    factory, native_io = STORES[name]
    kwargs: dict[str, Any] = {"chunks": (5, 10)}
    if sharded:
        kwargs = {"chunks": (5, 5), "shards": (10, 20)}
    data = make_data("int32", SHAPE, seed=40)
    expected = data.copy()
    expected[3:17, 5:9] = -data[3:17, 5:9]
    expected[20:, :10] = 0
    expected[25, 33] = 7

    ours_store = factory(tmp_path, "ours")
    zarrs_cffi.reset_stats()
    ours = _exercise(ours_store, ZARRS_PIPELINE, data, **kwargs)
    s = zarrs_cffi.stats()
    theirs_store = factory(tmp_path, "theirs")
    theirs = _exercise(theirs_store, ZARR_PIPELINE, data, **kwargs)

    assert_same(ours["all"], expected)
    for key in ours:
        assert_same(ours[key], theirs[key])
    assert _keys(ours_store) == _keys(theirs_store)

    # The route: all native, bytes through Python exactly for the stores we cannot reach.
    assert_route(s, native_io=native_io)
    if name == "local-subclass":
        # The subclass's own `set` stored every chunk.
        assert any("/c/" in key for key in ours_store.stored)


def _read_only_write_error(tmp_path: Path, name: str, pipeline: str) -> tuple[BaseException, zarrs_cffi.PipelineStats]:
    """The error a write through a read-only ``name`` store raises under ``pipeline``, and
    the stats of reading that store afterwards (stats reset first)."""
    factory, _ = STORES[name]
    tag = f"ro-{pipeline.rsplit('.', 1)[-1]}"
    store = factory(tmp_path, tag)
    with zarr.config.set({"codec_pipeline.path": pipeline}):
        arr = zarr.create_array(store, name="a", shape=(8, 8), chunks=(4, 4), dtype="uint8")
        arr[:] = 5
        if isinstance(store, ZipStore):
            store.close()
            read_only = ZipStore(tmp_path / f"{tag}.zip", mode="r", read_only=True)
        else:
            read_only = store.with_read_only(True)
        ro = zarr.open_array(read_only, path="a", mode="r")
        zarrs_cffi.reset_stats()
        with pytest.raises(ValueError) as info:
            ro[:4, :4] = 1
        assert_same(ro[:], np.full((8, 8), 5, dtype="uint8"))
    return info.value, zarrs_cffi.stats()


@pytest.mark.parametrize("name", ["memory", "zip", "logging"])
def test_read_only_store_raises_zarrs_own_error(tmp_path, name):
    # README: "Read-only stores raise zarr's own error on write": the same type and message.
    ours, s = _read_only_write_error(tmp_path, name, ZARRS_PIPELINE)
    theirs, _ = _read_only_write_error(tmp_path, name, ZARR_PIPELINE)
    assert (type(ours), str(ours)) == (type(theirs), str(theirs))
    assert "read-only" in str(ours)
    # The refused write stored nothing and fell back nowhere; the read that followed was
    # native, its bytes through the store's Python API.
    assert s.native_writes == 0, s
    assert_read_route(s, native_io=False)


def test_wrapper_sees_every_chunk_request(tmp_path, caplog):
    # LoggingStore logs each call it wraps: the chunk traffic goes through the wrapper, and
    # the codecs still run natively (zarr's pipeline would make the same calls).
    store = LoggingStore(MemoryStore(), log_level="INFO")
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}), caplog.at_level("INFO"):
        arr = zarr.create_array(store, shape=(8, 8), chunks=(4, 4), dtype="uint8")
        assert python_io_reason(arr) == "LoggingStore has no native storage"
        store.counter.clear()
        zarrs_cffi.reset_stats()
        arr[:] = 1
        assert_same(arr[:], np.ones((8, 8), dtype="uint8"))
    assert_route(zarrs_cffi.stats(), native_io=False)
    assert zarrs_cffi.stats().native_writes == 4 and zarrs_cffi.stats().native_reads == 4
    # One set and one get per chunk, each logged by the wrapper.
    assert (store.counter["set"], store.counter["get"]) == (4, 4), store.counter
    for chunk in ("c/0/0", "c/0/1", "c/1/0", "c/1/1"):
        for call in ("set", "get"):
            assert f"Calling MemoryStore.{call}({chunk})" in caplog.text, caplog.text[-2000:]


def test_missing_chunks_report_missing_and_fill(tmp_path):
    store = MemoryStore()
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.create_array(store, shape=(8, 8), chunks=(4, 4), dtype="float32", fill_value=np.nan)
        assert python_io_reason(arr) is not None  # MemoryStore: bytes through its own API
        zarrs_cffi.reset_stats()
        arr[:4, :4] = 1.5
        got = arr[:]
    expected = np.full((8, 8), np.nan, dtype="float32")
    expected[:4, :4] = 1.5
    assert_same(got, expected)
    assert _keys(store) == {"zarr.json", "c/0/0"}
    s = zarrs_cffi.stats()
    assert_route(s, native_io=False)
    assert (s.native_writes, s.native_reads) == (1, 4), s  # the 3 missing chunks too


def test_corrupt_chunk_in_memory_store_raises(tmp_path):
    store = MemoryStore()
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.create_array(store, shape=(8,), chunks=(4,), dtype="int64", compressors=zarr.codecs.ZstdCodec())
        assert python_io_reason(arr) is not None
        with native_only(writes=True):
            arr[:] = np.arange(8)
        store._store_dict["c/1"] = store._store_dict["c/1"][:5]
        # Our codec error (zarr's pipeline raises a different one): the native decoder ran.
        with pytest.raises(zarrs_cffi.ZarrsCodecError, match="incomplete frame"):
            arr[:]
        zarrs_cffi.reset_stats()
        assert_same(arr[:4], np.arange(4, dtype="int64"))
    assert_read_route(zarrs_cffi.stats(), native_io=False)


@pytest.mark.parametrize("name", ["local", "memory"])
def test_shrunk_shard_keeps_cells_beyond_the_shape(tmp_path, name):
    # A write covering a shard's part inside a shrunk array keeps the inner chunks beyond
    # the shape, as zarr does: they come back when the array grows again.
    store = STORES[name][0](tmp_path, "shrunk")
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.create_array(store, shape=(4,), chunks=(2,), shards=(4,), dtype="int16", fill_value=0)
        arr[:] = [1, 2, 3, 4]
        arr.resize((2,))
        zarrs_cffi.reset_stats()
        arr[:] = [9, 9]
        s = zarrs_cffi.stats()
        assert (s.native_writes, s.fallbacks) == (1, 0), s
        arr.resize((4,))
        assert_same(arr[:], np.array([9, 9, 3, 4], dtype="int16"))
    assert_route(zarrs_cffi.stats(), native_io=STORES[name][1])


@pytest.mark.parametrize("dtype", ["int64", "str"])
@pytest.mark.parametrize("name", ["local", "memory", "logging"])
def test_codec_error_names_the_chunk_key(tmp_path, zarrs_pipeline, name, dtype):
    # Python-I/O routes (memory, a wrapped store) decode with the codec-only calls, which
    # take no keys: the error must still name the store key, not the chunk's position.
    store = STORES[name][0](tmp_path, "named")
    arr = zarr.create_array(store, shape=(8,), chunks=(4,), dtype=dtype, compressors=zarr.codecs.ZstdCodec())
    arr[:] = np.arange(8) if dtype == "int64" else [str(i) * 3 for i in range(8)]
    if name == "memory":
        store._store_dict["c/1"] = store._store_dict["c/1"][:5]
    else:
        path = tmp_path / "named" / "c" / "1"
        path.write_bytes(path.read_bytes()[:5])
    with pytest.raises(zarrs_cffi.ZarrsCodecError, match=r"^c/1 in ") as raised:
        arr[:]
    assert "chunk-" not in str(raised.value)
    assert zarrs_cffi.stats().fallbacks == 0


def _read_with_shard_deleted_mid_read(pipeline: str, read_missing_chunks: bool) -> tuple[Any, list[Any]]:
    """Read parts of two shards through a Python store that deletes shard c/0/0 just as
    its first inner-chunk range is requested (after its index was read): the values read,
    or the exception raised, and the requests made."""
    from zarr.abc.store import RangeByteRequest

    store = CountingStore()
    settings = {"codec_pipeline.path": pipeline, "array.read_missing_chunks": read_missing_chunks}
    with zarr.config.set(settings):
        arr = zarr.create_array(store, shape=(8, 16), chunks=(2, 2), shards=(8, 8), dtype="int32", fill_value=-1)
        arr[:] = np.arange(128, dtype="int32").reshape(8, 16)

        async def delete_on_range(key: str, byte_range: Any) -> None:
            if key == "c/0/0" and isinstance(byte_range, RangeByteRequest):
                store.on_get = None
                await store.delete(key)

        store.reset_counts()
        store.on_get = delete_on_range
        zarrs_cffi.reset_stats()
        try:
            result: Any = arr[1:5, 2:14]  # a part of shard c/0/0 and of c/0/1
        except Exception as exc:  # noqa: BLE001 - compared with zarr's below
            result = exc
    assert store.on_get is None, "the shard was never deleted: no ranged request was made"
    return result, list(store.gets)


@pytest.mark.parametrize("read_missing_chunks", [True, False])
def test_shard_deleted_between_index_and_ranges_matches_zarr(read_missing_chunks):
    # zarr's sharding codec reads such a shard as missing: the fill value, or, with
    # read_missing_chunks=False, ChunkNotFoundError naming it. Ours does the same.
    ours, requests = _read_with_shard_deleted_mid_read(ZARRS_PIPELINE, read_missing_chunks)
    s = zarrs_cffi.stats()
    theirs, _ = _read_with_shard_deleted_mid_read(ZARR_PIPELINE, read_missing_chunks)
    # Our pipeline fetched each shard's index, then byte ranges (never a whole shard).
    assert all(byte_range is not None for _, byte_range in requests), requests
    if read_missing_chunks:
        expected = np.arange(128, dtype="int32").reshape(8, 16)[1:5, 2:14].copy()
        expected[:, :6] = -1  # the part in the deleted shard
        assert_same(ours, expected)
        assert_same(theirs, expected)
        assert (s.native_reads, s.python_io_reads, s.fallbacks) == (2, 2, 0), s
    else:
        from zarr.errors import ChunkNotFoundError

        assert isinstance(ours, ChunkNotFoundError), repr(ours)
        assert type(ours) is type(theirs)
        assert "'c/0/0'" in str(ours) and "'c/0/1'" not in str(ours), str(ours)
        assert re.sub(r"memory://\d+", "", str(ours)) == re.sub(r"memory://\d+", "", str(theirs))
        assert s.fallbacks == 0, s

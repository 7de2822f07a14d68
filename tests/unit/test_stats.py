"""zarrs_cffi.stats(): one count per chunk, snapshots, reset, and exact under threads."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import zarr
from conftest import assert_same, fallback_array, make_data
from zarr.storage import LocalStore, MemoryStore

import zarrs_cffi
from zarrs_cffi import PipelineStats


def _array(path) -> zarr.Array:
    # A 3 x 3 chunk grid.
    return zarr.create_array(LocalStore(path), shape=(12, 15), chunks=(4, 5), dtype="int32", fill_value=0)


def test_counts_one_per_chunk(tmp_path, zarrs_pipeline):
    arr = _array(tmp_path)
    assert zarrs_cffi.stats() == PipelineStats()
    arr[:] = 1
    assert zarrs_cffi.stats() == PipelineStats(native_writes=9)
    arr[0:4, 3:7]  # two chunks
    arr[5]  # three chunks
    arr[5, 5]  # one chunk
    assert zarrs_cffi.stats() == PipelineStats(native_reads=6, native_writes=9)
    arr[::2]  # every chunk, gathered natively
    assert zarrs_cffi.stats() == PipelineStats(native_reads=15, native_writes=9)
    other = fallback_array(tmp_path / "other")
    other[:]  # every chunk, through zarr's pipeline
    s = zarrs_cffi.stats()
    assert (s.native_reads, s.fallback_reads, s.fallback_writes, s.fallbacks) == (15, 9, 0, 9)
    assert list(s.fallback_reasons.values()) == [9]
    assert next(iter(s.fallback_reasons)).startswith("zarrs cannot open this array")


def test_reset(tmp_path, zarrs_pipeline):
    arr = _array(tmp_path)
    arr[:] = 1
    fallback_array(tmp_path / "other")[:] = 2
    assert zarrs_cffi.stats().native_writes and zarrs_cffi.stats().fallback_writes
    zarrs_cffi.reset_stats()
    assert zarrs_cffi.stats() == PipelineStats()
    assert dict(zarrs_cffi.stats().fallback_reasons) == {}


def test_snapshot_is_immutable_and_detached(tmp_path, zarrs_pipeline):
    arr = fallback_array(tmp_path)
    arr[:4, :5] = 1  # one chunk, through zarr's pipeline
    snapshot = zarrs_cffi.stats()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.native_reads = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        snapshot.fallback_reasons["x"] = 1  # type: ignore[index]
    arr[:4, :5]
    assert snapshot.fallback_reads == 0
    assert snapshot.fallback_writes == 1
    assert zarrs_cffi.stats().fallback_reads == 1
    assert sum(snapshot.fallback_reasons.values()) == 1


def test_python_io_counts(zarrs_pipeline):
    # MemoryStore: bytes through the store's Python API, codecs native.
    arr = zarr.create_array(MemoryStore(), shape=(8,), chunks=(4,), dtype="int8")
    arr[:] = 1
    arr[2:3]
    assert zarrs_cffi.stats() == PipelineStats(native_reads=1, native_writes=2, python_io_reads=1, python_io_writes=2)


def test_counts_are_exact_under_threads(tmp_path, zarrs_pipeline):
    arr = zarr.create_array(LocalStore(tmp_path), shape=(64, 64), chunks=(8, 8), dtype="float64")
    data = make_data("float64", (64, 64), seed=70)

    def write_block(i: int) -> None:
        # Each thread owns one row of chunks.
        arr[i * 8 : (i + 1) * 8] = data[i * 8 : (i + 1) * 8]

    def read_all(_: int) -> np.ndarray:
        return arr[:]

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write_block, range(8)))
        results = list(pool.map(read_all, range(16)))
    for got in results:
        assert_same(got, data)
    assert zarrs_cffi.stats() == PipelineStats(native_reads=16 * 64, native_writes=64)


def test_stats_pickle(zarrs_pipeline) -> None:
    # multiprocessing, concurrent.futures and dask return stats from workers by pickling.
    import pickle

    from zarrs_cffi.stats import record_fallback, record_native

    record_fallback("reads", 3, "a reason")
    record_native("writes", 2, python_io=True)
    s = zarrs_cffi.stats()
    back = pickle.loads(pickle.dumps(s))
    assert back == s
    assert dict(back.fallback_reasons) == {"a reason": 3}
    assert (back.native_writes, back.python_io_writes, back.fallback_reads) == (2, 2, 3)

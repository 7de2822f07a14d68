"""What the pipeline cannot handle natively goes to zarr's own pipeline: correctly,
counted in ``zarrs_cffi.stats()`` with a reason, logged once, or refused under strict."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr
from conftest import assert_no_fallback, assert_same, fallback_array, make_data, native_only
from zarr.storage import LocalStore, LoggingStore, MemoryStore, ZipStore

import zarrs_cffi

SHAPE = (10, 12)
CHUNKS = (4, 5)
N_CHUNKS = 3 * 3


def _local(path: Any, dtype: Any = "int32", **kwargs: Any) -> zarr.Array:
    return zarr.create_array(LocalStore(path), shape=SHAPE, chunks=CHUNKS, dtype=dtype, **kwargs)


def _fell_back(*, reads: int = 0, writes: int = 0) -> dict[str, int]:
    """Assert exactly these fallbacks (and no native chunk), and return the reasons."""
    s = zarrs_cffi.stats()
    assert (s.fallback_reads, s.fallback_writes) == (reads, writes), s
    assert (s.native_reads, s.native_writes) == (0, 0), s
    assert sum(s.fallback_reasons.values()) == reads + writes
    return dict(s.fallback_reasons)


# --- stores (the per-store routing is in test_stores.py) -----------------------------------


@pytest.mark.parametrize("how", ["str", "pathlib", "file-url"])
def test_local_paths_are_native(tmp_path, zarrs_pipeline, how):
    path = {"str": str(tmp_path / "a.zarr"), "pathlib": tmp_path / "a.zarr", "file-url": f"file://{tmp_path}/a.zarr"}[how]
    arr = zarr.create_array(path, shape=SHAPE, chunks=CHUNKS, dtype="int8")
    assert isinstance(arr.store, LocalStore)
    assert arr.async_array.codec_pipeline.native.python_io is None
    with native_only(writes=True, reads=True):
        arr[:] = 3
        assert_same(zarr.open_array(path, mode="r")[:], np.full(SHAPE, 3, dtype="int8"))
    s = zarrs_cffi.stats()
    assert (s.python_io_reads, s.python_io_writes) == (0, 0), s  # the library did the I/O


def test_sharded_fallback_counts_shards_once(tmp_path, zarrs_pipeline, caplog):
    # zarr's sharding codec builds its inner pipeline with the configured pipeline class
    # (ours, from codecs alone); inner chunks are part of the shard that already fell back.
    from zarr.codecs.numcodecs import LZ4

    data = make_data("int32", (16, 16), seed=35)
    with caplog.at_level(logging.WARNING, logger="zarrs_cffi"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numcodecs.zarr3 codecs have no stable specification
        arr = zarr.create_array(
            LocalStore(tmp_path), shape=(16, 16), chunks=(2, 2), shards=(8, 8), dtype="int32", compressors=[LZ4()]
        )
        arr[:] = data
        assert_same(arr[::2], data[::2])
    reason = arr.async_array.codec_pipeline.reason
    assert _fell_back(reads=4, writes=4) == {reason: 8}
    messages = [r.getMessage() for r in caplog.records if r.name == "zarrs_cffi"]
    assert len(messages) == 1, messages


# --- codecs --------------------------------------------------------------------------------


def _unsupported_codec_array(path: Any, name: str) -> zarr.Array:
    if name == "v2-delta":
        return zarr.create_array(
            LocalStore(path), shape=SHAPE, chunks=CHUNKS, dtype="int32", zarr_format=2,
            filters=[numcodecs.Delta(dtype="<i4")], compressors=None,
        )
    from zarr.codecs.numcodecs import LZ4

    with warnings.catch_warnings():
        # numcodecs.zarr3 codecs warn that their specification is unstable.
        warnings.simplefilter("ignore")
        return _local(path, compressors=[LZ4()])


@pytest.mark.parametrize("name", ["v2-delta", "numcodecs-lz4"])
def test_codec_zarrs_cannot_open_falls_back(tmp_path, zarrs_pipeline, name):
    arr = _unsupported_codec_array(tmp_path, name)
    pipeline = arr.async_array.codec_pipeline
    assert pipeline.native is None
    assert pipeline.reason.startswith("zarrs cannot open this array")
    data = make_data("int32", SHAPE, seed=34)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr[:] = data
        assert_same(arr[:], data)
    assert list(_fell_back(reads=N_CHUNKS, writes=N_CHUNKS)) == [pipeline.reason]


# --- strict mode ---------------------------------------------------------------------------


def test_strict_mode_raises_instead_of_falling_back(tmp_path, zarrs_pipeline):
    with zarr.config.set({"codec_pipeline.strict": True}):
        arr = _local(tmp_path / "native")
        # Native work is unaffected, fancy selections and Python-reached stores included.
        with native_only(writes=True, reads=True):
            arr[:] = 1
            assert_same(arr[2:9, 1], np.ones(7, dtype="int32"))
            assert_same(arr.oindex[[0, 3], ::2], np.ones((2, 6), dtype="int32"))
            memory = zarr.create_array(MemoryStore(), shape=SHAPE, chunks=CHUNKS, dtype="int32")
            memory[:] = 1
            assert_same(memory[:], np.ones(SHAPE, dtype="int32"))
        other = fallback_array(tmp_path / "other", fill_value=0)
        with pytest.raises(zarrs_cffi.ZarrsUnsupportedError, match="zarrs cannot open this array"):
            other[:] = 5
        with pytest.raises(zarrs_cffi.ZarrsUnsupportedError, match="zarrs cannot open this array"):
            other[::2]
    # Nothing fell back, and nothing was written by the refused calls.
    assert_no_fallback()
    assert_same(other[:], np.zeros(SHAPE, dtype="int32"))


def test_strict_mode_is_read_per_call(tmp_path, zarrs_pipeline):
    arr = fallback_array(tmp_path, fill_value=0)
    with zarr.config.set({"codec_pipeline.strict": True}), pytest.raises(zarrs_cffi.ZarrsUnsupportedError):
        arr[::3]
    assert_same(arr[::3], np.zeros((4, 12), dtype="int32"))
    assert zarrs_cffi.stats().fallback_reads > 0


# --- logging -------------------------------------------------------------------------------


def test_fallback_is_logged_once_per_pipeline_and_reason(tmp_path, zarrs_pipeline, caplog):
    arr = fallback_array(tmp_path / "a", fill_value=0)
    with caplog.at_level(logging.WARNING, logger="zarrs_cffi"):
        arr[::2]
        arr[::3]
        arr[1:9:2] = 1
        arr.oindex[[0, 1]]
        other = fallback_array(tmp_path / "b", fill_value=0)
        other[::2]
    records = [r for r in caplog.records if r.name == "zarrs_cffi"]
    messages = [r.getMessage() for r in records]
    assert all(r.levelno == logging.WARNING for r in records)
    # One per (pipeline, reason): the reads and writes of each array share their reason.
    assert len(messages) == 2, messages
    assert all("zarrs cannot open this array" in m for m in messages), messages


def test_native_work_logs_nothing(tmp_path, zarrs_pipeline, caplog):
    with caplog.at_level(logging.DEBUG, logger="zarrs_cffi"):
        arr = _local(tmp_path)
        arr[:] = 3
        arr[1:4]
    assert [r for r in caplog.records if r.name == "zarrs_cffi"] == []
    assert_no_fallback()


def test_localstore_subclass_keeps_its_python_io(tmp_path):
    # A subclass may override get/set; native I/O would bypass it, so its bytes move through
    # its own Python methods and only the codecs run natively.
    calls = []

    class CountingStore(LocalStore):
        async def set(self, key, value):
            calls.append(key)
            await super().set(key, value)

    with zarr.config.set({"codec_pipeline.path": "zarrs_cffi.ZarrsCodecPipeline"}):
        zarrs_cffi.reset_stats()
        arr = zarr.create_array(CountingStore(tmp_path), shape=(8,), chunks=(4,), dtype="int8")
        arr[:] = 3
        assert sorted(key for key in calls if key.startswith("c/")) == ["c/0", "c/1"]
        s = zarrs_cffi.stats()
        assert (s.native_writes, s.python_io_writes, s.fallback_writes) == (2, 2, 0)
        assert "subclasses LocalStore" in arr.async_array.codec_pipeline.native.python_io

"""Process-level behaviour: a process forked after native calls (multiprocessing's "fork", data-loader workers) must
still read and write natively, not hang on thread pools it inherited without their threads."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import zarr
from zarr.storage import LocalStore

import zarrs_cffi

PIPELINE = {"codec_pipeline.path": "zarrs_cffi.ZarrsCodecPipeline"}


def _child_reads_and_writes(path: str) -> tuple[int, int, int]:
    with zarr.config.set(PIPELINE):
        zarrs_cffi.reset_stats()
        arr = zarr.open_array(LocalStore(path))
        total = int(arr[:].sum())
        arr[0:8, 0:8] = 1
        s = zarrs_cffi.stats()
        return total, s.native_reads, s.fallbacks


def test_forked_child_uses_native_code(tmp_path: Path) -> None:
    with zarr.config.set(PIPELINE):
        arr = zarr.create_array(LocalStore(tmp_path), shape=(64, 64), chunks=(8, 8), dtype="int32")
        arr[:] = 2  # the parent has now run parallel native calls
        assert int(arr[:].sum()) == 2 * 64 * 64
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        # A timeout turns a hang into a failure.
        total, native_reads, fallbacks = pool.apply_async(_child_reads_and_writes, (str(tmp_path),)).get(timeout=60)
    assert total == 2 * 64 * 64
    assert native_reads == 64
    assert fallbacks == 0
    with zarr.config.set(PIPELINE):
        result = zarr.open_array(LocalStore(tmp_path))[:]
    expected = np.full((64, 64), 2, dtype="int32")
    expected[0:8, 0:8] = 1
    np.testing.assert_array_equal(result, expected)


def test_pipelines_from_the_same_source_are_equal(tmp_path: Path) -> None:
    # zarr compares arrays by value (e.g. an unpickled array with the original).
    import pickle

    with zarr.config.set(PIPELINE):
        arr = zarr.create_array(LocalStore(tmp_path), shape=(4,), chunks=(2,), dtype="int8")
        again = zarr.open_array(LocalStore(tmp_path))
        assert again.async_array.codec_pipeline == arr.async_array.codec_pipeline
        assert hash(again.async_array.codec_pipeline) == hash(arr.async_array.codec_pipeline)
        assert pickle.loads(pickle.dumps(arr.async_array)) == arr.async_array
        other = zarr.create_array(LocalStore(tmp_path / "other"), shape=(4,), chunks=(2,), dtype="int16")
        assert other.async_array.codec_pipeline != arr.async_array.codec_pipeline

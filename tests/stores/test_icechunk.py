"""icechunk, a transactional store, with our pipeline.

icechunk's ``IcechunkStore`` is a zarr ``Store`` implemented in Rust behind a Python API the
native library cannot reach, so chunk bytes move through that Python API and zarrs does
the codecs (route ``pipeline.native.python_io``). Written, committed, reopened read-only
(and at an older snapshot), read back: zero fallbacks, the same values and the same chunk
bytes as zarr's own pipeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

import zarrs_cffi

icechunk = pytest.importorskip("icechunk")

if TYPE_CHECKING:
    from pathlib import Path

ZARRS = "zarrs_cffi.ZarrsCodecPipeline"
ZARR = "zarr.core.codec_pipeline.BatchedCodecPipeline"
ROUTE = "IcechunkStore has no native storage"
VALUES = np.arange(64 * 64, dtype="float32").reshape(64, 64) / 7


def repository(path: Path) -> Any:
    return icechunk.Repository.create(icechunk.local_filesystem_storage(str(path)))


def write_arrays(store: Any) -> None:
    """A plain chunked array and a sharded one, the sharded one partly rewritten."""
    plain = zarr.create_array(store, name="plain", shape=(64, 64), chunks=(16, 16), dtype="float32")
    plain[:] = VALUES
    sharded = zarr.create_array(store, name="sharded", shape=(64, 64), chunks=(8, 8), shards=(32, 32), dtype="int32")
    sharded[:] = 7
    sharded[3:40, 5:9] = np.arange(37 * 4).reshape(37, 4)


def expected_sharded() -> np.ndarray[Any, Any]:
    out = np.full((64, 64), 7, dtype="int32")
    out[3:40, 5:9] = np.arange(37 * 4).reshape(37, 4)
    return out


def pipeline(array: zarr.Array[Any]) -> zarrs_cffi.ZarrsCodecPipeline:
    p = array._async_array.codec_pipeline
    assert isinstance(p, zarrs_cffi.ZarrsCodecPipeline) and p.native is not None, p
    return p


async def _contents(store: Any) -> dict[str, bytes]:
    prototype = default_buffer_prototype()
    keys = sorted([key async for key in store.list()])
    contents = {}
    for key in keys:
        buffer = await store.get(key, prototype)
        contents[key] = buffer.to_bytes()
    return contents


def test_write_commit_reopen_read_only(tmp_path: Path, zarrs_pipeline: None) -> None:
    repo = repository(tmp_path / "repo")
    session = repo.writable_session("main")
    write_arrays(session.store)
    group = zarr.open_group(session.store, mode="r")
    assert {pipeline(a).native.python_io for _, a in group.arrays()} == {ROUTE}  # type: ignore[union-attr]
    written = zarrs_cffi.stats()
    assert written.fallbacks == 0, written.fallback_reasons
    # 16 chunks, then 4 shards, then the 2 shards the partial write touches.
    assert (written.native_writes, written.python_io_writes) == (16 + 4 + 2, 16 + 4 + 2)
    first = session.commit("plain and sharded")

    second = repo.writable_session("main")
    zarr.open_array(second.store, path="plain", mode="r+")[:16] = -1
    second.commit("first row of chunks to -1")

    zarrs_cffi.reset_stats()
    latest = repo.readonly_session(branch="main").store
    plain, sharded = (zarr.open_array(latest, path=name, mode="r") for name in ("plain", "sharded"))
    after = VALUES.copy()
    after[:16] = -1
    np.testing.assert_array_equal(plain[:], after)
    np.testing.assert_array_equal(sharded[:], expected_sharded())
    np.testing.assert_array_equal(sharded[2:5, 4:10], expected_sharded()[2:5, 4:10])
    older = zarr.open_array(repo.readonly_session(snapshot_id=first).store, path="plain", mode="r")
    np.testing.assert_array_equal(older[:], VALUES)
    assert pipeline(older).native.python_io == ROUTE  # type: ignore[union-attr]
    s = zarrs_cffi.stats()
    assert s.fallbacks == 0, s.fallback_reasons
    # plain twice (16 chunks each), sharded whole (4 shards) and in part (1 shard).
    assert (s.native_reads, s.python_io_reads) == (16 + 4 + 1 + 16, 16 + 4 + 1 + 16)


def test_read_only_session_refuses_writes_as_under_zarr_pipeline(tmp_path: Path) -> None:
    repo = repository(tmp_path / "repo")
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="a", shape=(4,), chunks=(2,), dtype="int32")
    session.commit("empty array")
    errors = []
    for path in (ZARR, ZARRS):
        with zarr.config.set({"codec_pipeline.path": path}):
            array = zarr.open_array(repo.readonly_session(branch="main").store, path="a", mode="r")
            with pytest.raises(Exception) as info:
                array[:] = 1
            errors.append(type(info.value))
    assert errors[0] is icechunk.ReadOnlyError
    assert errors[1] is errors[0]


def test_chunk_bytes_identical_to_zarr_pipeline(tmp_path: Path) -> None:
    stores = {}
    for path in (ZARRS, ZARR):
        with zarr.config.set({"codec_pipeline.path": path}):
            zarrs_cffi.reset_stats()
            session = repository(tmp_path / path).writable_session("main")
            write_arrays(session.store)
            session.commit("arrays")
            stores[path] = sync(_contents(session.store))
    ours, theirs = stores[ZARRS], stores[ZARR]
    assert sorted(ours) == sorted(theirs)
    assert [key for key in ours if ours[key] != theirs[key]] == []
    assert "sharded/c/0/0" in ours and "plain/c/3/3" in ours


def test_xarray_on_icechunk(tmp_path: Path, zarrs_pipeline: None) -> None:
    xr = pytest.importorskip("xarray")
    pd = pytest.importorskip("pandas")
    ds = xr.Dataset(
        {"temp": (("time", "x"), np.linspace(-5, 30, 12 * 40).reshape(12, 40))},
        coords={"time": pd.date_range("2024-01-01", periods=12, freq="D"), "x": np.arange(40)},
    )
    ds["temp"].encoding = {"dtype": "int16", "scale_factor": 0.1, "_FillValue": -9999, "chunks": (4, 20)}
    repo = repository(tmp_path / "repo")
    session = repo.writable_session("main")
    ds.to_zarr(session.store, zarr_format=3, consolidated=False)
    session.commit("dataset")
    back = xr.open_zarr(repo.readonly_session(branch="main").store, consolidated=False).load()
    xr.testing.assert_allclose(back, ds, atol=0.05)
    s = zarrs_cffi.stats()
    assert s.fallbacks == 0, s.fallback_reasons
    assert s.native_reads == s.python_io_reads > 0 and s.native_writes == s.python_io_writes > 0

"""The direct API on every store the native library reaches: ``Array.open`` of a directory,
a ``file://``, ``s3://`` (moto's server on 127.0.0.1) or ``http://`` URL, and
``Array.from_zarr`` of a zarr array, reading (and where the store allows, writing) what zarr
wrote, with zarr's values: numeric, variable-length, datetime and raw-bits data types, every
selection kind, sync, async and as futures."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import zarr
from conftest import ZARR_PIPELINE, make_data
from servers import http_server, moto_s3
from zarr.storage import FsspecStore, LocalStore, MemoryStore

import zarrs_cffi
from zarrs_cffi import Array
from zarrs_cffi._core import keylocks

BUCKET = "direct"
SHAPE = (40, 30)


def _write(store: Any) -> np.ndarray[Any, Any]:
    data = make_data("float32", SHAPE, seed=81)
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        arr = zarr.create_array(store, name="grp/arr", shape=SHAPE, chunks=(8, 10), shards=(16, 30), dtype="float32")
        arr[...] = data
    return data


def _reads_like_zarr(direct: Array, data: np.ndarray[Any, Any]) -> None:
    rows = np.array([39, 0, 17, 17])
    np.testing.assert_array_equal(direct[:], data)
    np.testing.assert_array_equal(direct[3:20, ::4], data[3:20, ::4])
    np.testing.assert_array_equal(direct.oindex[rows, [1, 29]], data[np.ix_(rows, [1, 29])])
    np.testing.assert_array_equal(direct.vindex[rows, rows % 30], data[rows, rows % 30])


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.mark.parametrize("spelling", ["path", "file-url"])
def test_open_a_directory_by_path_or_file_url(tmp_path, spelling):
    data = _write(LocalStore(tmp_path))
    location = str(tmp_path) if spelling == "path" else f"file://{tmp_path}"
    direct = Array.open(location, "grp/arr")
    _reads_like_zarr(direct, data)
    direct[0:8, 0:10] = 5
    np.testing.assert_array_equal(zarr.open_array(LocalStore(tmp_path), path="grp/arr", mode="r")[0:8, 0:10], 5)


def test_open_an_s3_url_with_storage_options(s3):
    options = s3.s3fs_options()
    data = _write(FsspecStore.from_url(f"s3://{BUCKET}/one", storage_options=options))
    direct = Array.open(f"s3://{BUCKET}/one", "grp/arr", storage_options=options)
    _reads_like_zarr(direct, data)
    direct[8:16, :] = -1
    data[8:16, :] = -1
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        theirs = zarr.open_array(FsspecStore.from_url(f"s3://{BUCKET}/one", storage_options=options), path="grp/arr", mode="r")
        np.testing.assert_array_equal(theirs[:], data)


def test_an_s3_url_the_library_cannot_reach_says_why(s3):
    # No explicit credentials: only the Python library knows which it would resolve.
    options = {k: v for k, v in s3.s3fs_options().items() if k not in ("key", "secret")}
    with pytest.raises(zarrs_cffi.ZarrsUnsupportedError, match="cannot reach .* credentials"):
        Array.open(f"s3://{BUCKET}/one", "grp/arr", storage_options=options)


def test_open_an_http_url_reads_and_refuses_writes(tmp_path):
    data = _write(LocalStore(tmp_path / "served"))
    with http_server(tmp_path / "served") as url:
        direct = Array.open(url, "grp/arr")
        _reads_like_zarr(direct, data)
        with pytest.raises(zarrs_cffi.ZarrsReadOnlyError):
            direct[0:8, 0:10] = 1


def test_from_zarr_shares_the_store_and_the_write_locks(tmp_path):
    data = _write(LocalStore(tmp_path))
    theirs = zarr.open_array(LocalStore(tmp_path), path="grp/arr", mode="r+")
    direct = Array.from_zarr(theirs)
    _reads_like_zarr(direct, data)
    assert direct.shape == theirs.shape and direct.dtype == theirs.dtype
    # Both name chunk c/0/0 of the array alike in the lock table.
    key = keylocks.store_prefix(theirs.store) + "grp/arr/c/0/0"
    assert direct._chunks.holding([0, 0], [1, 1])._keys == [key]
    assert Array.from_zarr(theirs.async_array).shape == SHAPE


def test_from_zarr_of_a_store_only_python_reaches_says_why():
    store = MemoryStore()
    _write(store)
    with pytest.raises(zarrs_cffi.ZarrsUnsupportedError, match="cannot reach MemoryStore natively: MemoryStore has no native storage"):
        Array.from_zarr(zarr.open_array(store, path="grp/arr", mode="r"))


def _child_reads(direct: Array, queue: Any) -> None:
    queue.put(direct.oindex[[3, 1], :].tolist())


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("where", ["directory", "s3", "from_zarr"])
def test_an_array_reads_in_a_forked_or_spawned_worker(tmp_path, s3, method, where):
    # A DataLoader or dask worker: forked with the parent's array, or sent it pickled.
    import multiprocessing

    if where == "s3":
        options = s3.s3fs_options()
        data = _write(FsspecStore.from_url(f"s3://{BUCKET}/workers-{method}", storage_options=options))
        direct = Array.open(f"s3://{BUCKET}/workers-{method}", "grp/arr", storage_options=options, options=zarrs_cffi.Options(num_threads=1))
    else:
        data = _write(LocalStore(tmp_path))
        if where == "directory":
            direct = Array.open(tmp_path, "grp/arr", read_only=True, options=zarrs_cffi.Options(num_threads=1))
        else:
            direct = Array.from_zarr(zarr.open_array(LocalStore(tmp_path), path="grp/arr", mode="r"))
    direct[0:1, 0:1]  # used in the parent first, as a loader's main process does
    context = multiprocessing.get_context(method)
    queue = context.Queue()
    child = context.Process(target=_child_reads, args=(direct, queue))
    child.start()
    try:
        assert queue.get(timeout=60) == data[[3, 1], :].tolist()
    finally:
        child.join(60)
    assert child.exitcode == 0


def test_a_pickled_array_opens_again_with_its_settings(tmp_path):
    import pickle

    data = _write(LocalStore(tmp_path))
    direct = Array.open(f"file://{tmp_path}", "grp/arr", read_only=True, options=zarrs_cffi.Options(num_threads=1))
    direct.options = zarrs_cffi.Options(num_threads=2)
    again = pickle.loads(pickle.dumps(direct))
    assert again.options == zarrs_cffi.Options(num_threads=2)
    np.testing.assert_array_equal(again[:], data)
    with pytest.raises(zarrs_cffi.ZarrsReadOnlyError):
        again[0, 0] = 1
    created = Array.create(tmp_path / "new", {
        "zarr_format": 3, "node_type": "array", "shape": [4], "data_type": "int8",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2]}},
        "chunk_key_encoding": {"name": "default"}, "fill_value": 3, "codecs": [{"name": "bytes"}],
    })
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(created))[:], [3, 3, 3, 3])
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Array(direct._native))


# Data types beyond the numeric ones, on every remote route: variable-length strings
# (whole chunks fetched natively), a datetime zarrs has, fixed-width bytes zarrs lacks (raw
# bits); with every selection kind read sync, async and as futures, and written where the
# store allows.
REMOTE_DTYPES: dict[str, Any] = {
    "string": np.array([["", "a", "ünï", "€€", "zarr"][(i * 7 + j) % 5] * (i % 3) for i in range(40) for j in range(30)], dtype=np.dtypes.StringDType()).reshape(SHAPE),
    "datetime64[ms]": (np.arange(1200, dtype="int64") * 86_400_000).astype("datetime64[ms]").reshape(SHAPE),
    "S5": np.array([b"abcde"[: (i % 6)] for i in range(1200)], dtype="S5").reshape(SHAPE),
}


def _write_typed(store: Any, name: str) -> np.ndarray[Any, Any]:
    import warnings

    data = REMOTE_DTYPES[name]
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr: no Zarr v3 specification for S5
        arr = zarr.create_array(store, name="grp/arr", shape=SHAPE, chunks=(8, 10), shards=(16, 30), dtype=str if name == "string" else name)
        arr[...] = data
    return data


def _all_reads_like_numpy(direct: Array, data: np.ndarray[Any, Any]) -> None:
    import asyncio

    rows = np.array([39, 0, 17, 5])
    keys = [(), np.s_[3:20, ::4], np.s_[7, :], (rows, slice(1, 29, 9))]
    for key in keys:
        np.testing.assert_array_equal(direct[key], data[key])
        np.testing.assert_array_equal(direct.read_future(key).result(timeout=60), data[key])
    np.testing.assert_array_equal(direct.oindex[rows, [1, 29]], data[np.ix_(rows, [1, 29])])
    np.testing.assert_array_equal(direct.vindex[rows, rows % 30], data[rows, rows % 30])
    np.testing.assert_array_equal(direct.blocks[1, 0], data[16:32, :])  # a sharded array's blocks are its shards, as in zarr

    async def gathered() -> list[Any]:
        return await asyncio.gather(*(direct.read_async(key) for key in keys))

    for key, got in zip(keys, asyncio.run(gathered()), strict=True):
        np.testing.assert_array_equal(got, data[key])


def _all_writes_like_numpy(direct: Array, data: np.ndarray[Any, Any], reopen: Any) -> None:
    import asyncio

    rows = np.array([39, 0, 17])
    data = data.copy()
    for key, value in [(np.s_[0:3, 0:4], data[10:13, 0:4]), (np.s_[::7, 5], data[0:6, 6])]:
        direct[key] = value
        data[key] = value
    direct.oindex[rows, [2, 3]] = data[0:3, 0:2]
    data[np.ix_(rows, [2, 3])] = data[0:3, 0:2]
    direct.vindex[rows, rows % 30] = data[5, 0:3]
    data[rows, rows % 30] = data[5, 0:3]
    direct.blocks[2, 0] = data[0:8, :]
    data[32:40, :] = data[0:8, :]
    asyncio.run(direct.write_async(np.s_[20:22, 20:22], data[0:2, 0:2]))
    data[20:22, 20:22] = data[0:2, 0:2]
    np.testing.assert_array_equal(direct[...], data)
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        np.testing.assert_array_equal(np.asarray(reopen()[...]), data)


@pytest.mark.parametrize("name", list(REMOTE_DTYPES))
def test_every_dtype_and_selection_over_s3(s3, name):
    options = s3.s3fs_options()
    url = f"s3://{BUCKET}/typed-{name.replace('[', '').replace(']', '')}"
    data = _write_typed(FsspecStore.from_url(url, storage_options=options), name)
    direct = Array.open(url, "grp/arr", storage_options=options)
    _all_reads_like_numpy(direct, data)
    _all_writes_like_numpy(
        direct, data, lambda: zarr.open_array(FsspecStore.from_url(url, storage_options=options), path="grp/arr", mode="r")
    )


@pytest.mark.parametrize("name", list(REMOTE_DTYPES))
def test_every_dtype_and_selection_over_http(tmp_path, name):
    data = _write_typed(LocalStore(tmp_path / "served"), name)
    with http_server(tmp_path / "served") as url:
        direct = Array.open(url, "grp/arr")
        _all_reads_like_numpy(direct, data)
        with pytest.raises(zarrs_cffi.ZarrsReadOnlyError):
            direct.oindex[[0, 1], 0] = data[0, 0]


@pytest.mark.parametrize("name", list(REMOTE_DTYPES))
def test_every_dtype_and_selection_locally_and_through_from_zarr(tmp_path, name):
    data = _write_typed(LocalStore(tmp_path), name)
    _all_reads_like_numpy(Array.open(f"file://{tmp_path}", "grp/arr"), data)
    theirs = zarr.open_array(LocalStore(tmp_path), path="grp/arr", mode="r+")
    _all_writes_like_numpy(Array.from_zarr(theirs), data, lambda: zarr.open_array(LocalStore(tmp_path), path="grp/arr", mode="r"))

"""Process-level behaviour: a process forked after native calls (multiprocessing's "fork", data-loader workers) must
still read and write natively, not hang on thread pools it inherited without their threads."""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.pool
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
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


# Remote routes across fork and spawn: moto's S3 server and an HTTP file server on 127.0.0.1
# (tests/servers.py). A child that hangs must fail the test, not CI: every child runs under
# a timeout, and the pool is terminated on the way out.

BUCKET = "zarrs-cffi-fork"
SHAPE = (64, 64)
# Four chunks: tests/servers.py's HTTP server listens with a backlog of 5 connections, and
# the native client requests every chunk of a read at once.
CHUNKS = (16, 64)
# Reading a few small chunks takes well under a second; a hung child is a failure after this.
FORK_TIMEOUT = 20
SPAWN_TIMEOUT = 120  # a spawned child imports numpy, zarr and the library first

# Before the native remote store became per process (zarrs-ffi/src/remote.rs), a forked
# child reading a remote array its parent opened hung: it used the parent's tokio runtime
# handle and HTTP client, whose threads do not exist in the child. The tests below timed out.

# Arrays the parent opened and a forked child inherits as memory, as a data-loader worker
# inherits its dataset (nothing is pickled).
_INHERITED: dict[str, zarr.Array] = {}


def _data() -> np.ndarray:
    return np.arange(SHAPE[0] * SHAPE[1], dtype="int32").reshape(SHAPE)


def _stats_tuple() -> tuple[int, int, int]:
    s = zarrs_cffi.stats()
    return s.native_reads, s.python_io_reads, s.fallbacks


def _read_inherited(name: str, rows: tuple[int, int] | None = None) -> tuple[int, tuple[int, int, int]]:
    zarrs_cffi.reset_stats()
    arr = _INHERITED[name]
    values = arr[:] if rows is None else arr[rows[0] : rows[1]]
    return int(values.sum()), _stats_tuple()


def _open_and_read(store: object, rows: tuple[int, int] | None = None) -> tuple[int, tuple[int, int, int]]:
    """Open the array in this process (a forked, spawned or pool child) and read it."""
    with zarr.config.set(PIPELINE):
        zarrs_cffi.reset_stats()
        arr = zarr.open_array(store, mode="r")
        values = arr[:] if rows is None else arr[rows[0] : rows[1]]
        return int(values.sum()), _stats_tuple()


def _read_passed(arr: zarr.Array) -> tuple[int, tuple[int, int, int]]:
    """Read an array the parent pickled to this child (its pipeline is rebuilt here)."""
    zarrs_cffi.reset_stats()
    return int(arr[:].sum()), _stats_tuple()


def _child_main(connection: Any, function: Any, pickled_args: bytes) -> None:
    try:
        connection.send(("ok", function(*pickle.loads(pickled_args))))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        connection.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        connection.close()


def _in_child(method: str, function: object, *args: object) -> object:
    """``function(*args)`` in a child process (forked or spawned), the arguments pickled as
    multiprocessing's pools pass them (a forked child rebuilds its stores and arrays from
    them; anything inherited as memory is reached through module globals). A child that
    does not answer in time fails the test (multiprocessing.TimeoutError) and is killed and
    reaped, so it holds nothing open (such as a connection the test servers' shutdown
    waits for)."""
    timeout = FORK_TIMEOUT if method == "fork" else SPAWN_TIMEOUT
    context = multiprocessing.get_context(method)
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(sender, function, pickle.dumps(args)), daemon=True)
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            raise multiprocessing.TimeoutError(f"the {method}ed child did not answer within {timeout} s")
        kind, value = receiver.recv()
    finally:
        if process.is_alive():
            process.kill()
        process.join(10)
        receiver.close()
    if kind != "ok":
        raise AssertionError(f"the {method}ed child raised {value}")
    return value


@contextlib.contextmanager
def _fork_pool(workers: int) -> Iterator[multiprocessing.pool.Pool]:
    """A pool of forked workers, terminated on exit (hung workers included: SIGTERM, then
    SIGKILL for any still alive) before the test servers shut down."""
    pool = multiprocessing.get_context("fork").Pool(workers)
    try:
        yield pool
    finally:
        pool.terminate()
        for process in pool._pool:  # type: ignore[attr-defined]
            if process.is_alive():
                process.kill()
            process.join(10)


@pytest.fixture(scope="module")
def s3() -> object:
    pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    from servers import moto_s3

    with moto_s3() as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture
def s3_store(s3: object, request: pytest.FixtureRequest) -> object:
    """A fresh S3 prefix (FsspecStore over s3fs with explicit settings: native S3 I/O)
    holding SHAPE int32 values, written and read in this (parent) process."""
    from zarr.storage import FsspecStore

    prefix = request.node.name.replace("[", "-").replace("]", "")
    store = FsspecStore.from_url(f"s3://{BUCKET}/{prefix}", storage_options=s3.s3fs_options())  # type: ignore[attr-defined]
    with zarr.config.set(PIPELINE):
        arr = zarr.create_array(store, shape=SHAPE, chunks=CHUNKS, dtype="int32")
        arr[:] = _data()
        assert arr.async_array.codec_pipeline.native.python_io is None  # native S3 I/O
        # Opened for reading too, as the children do: the parent has cached native storage
        # for that location, and its I/O runtime has run.
        assert int(zarr.open_array(store, mode="r")[:].sum()) == int(_data().sum())
    return store


@pytest.fixture
def http_store(tmp_path: Path) -> object:
    """A read-only FsspecStore over HTTP (native HTTP I/O) serving SHAPE int32 values,
    read in this (parent) process."""
    pytest.importorskip("aiohttp")
    from servers import http_server
    from zarr.storage import FsspecStore

    with zarr.config.set(PIPELINE):
        zarr.create_array(LocalStore(tmp_path / "data"), shape=SHAPE, chunks=CHUNKS, dtype="int32")[:] = _data()
    with http_server(tmp_path / "data") as url:
        store = FsspecStore.from_url(url, read_only=True)
        with zarr.config.set(PIPELINE):
            arr = zarr.open_array(store, mode="r")
            assert arr.async_array.codec_pipeline.native.python_io is None  # native HTTP I/O
            assert int(arr[:].sum()) == int(_data().sum())
        yield store


def _expect_native(result: object, rows: tuple[int, int] | None = None) -> None:
    total, (native_reads, python_io_reads, fallbacks) = result  # type: ignore[misc]
    expected = _data() if rows is None else _data()[rows[0] : rows[1]]
    assert total == int(expected.sum())
    assert native_reads == expected.size // (CHUNKS[0] * CHUNKS[1])
    assert python_io_reads == 0
    assert fallbacks == 0


@pytest.mark.parametrize("remote", ["s3", "http"])
def test_forked_child_reads_remote_array_its_parent_opened(remote: str, request: pytest.FixtureRequest) -> None:
    store = request.getfixturevalue(f"{remote}_store")
    with zarr.config.set(PIPELINE):
        _INHERITED[remote] = zarr.open_array(store, mode="r")
    assert int(_INHERITED[remote][:].sum()) == int(_data().sum())
    try:
        _expect_native(_in_child("fork", _read_inherited, remote))
    finally:
        del _INHERITED[remote]


@pytest.mark.parametrize("remote", ["s3", "http"])
def test_forked_child_opens_and_reads_remote_array(remote: str, request: pytest.FixtureRequest) -> None:
    # The parent has opened (and cached) native storage for the same location and run its
    # I/O runtime: the child must open its own, not reuse the parent's.
    store = request.getfixturevalue(f"{remote}_store")
    _expect_native(_in_child("fork", _open_and_read, store))


@pytest.mark.parametrize("remote", ["s3", "http"])
def test_forked_child_reads_remote_array_passed_to_it(remote: str, request: pytest.FixtureRequest) -> None:
    # Pickled to the child: the pipeline is rebuilt there, from the same cached location.
    store = request.getfixturevalue(f"{remote}_store")
    with zarr.config.set(PIPELINE):
        arr = zarr.open_array(store, mode="r")
    _expect_native(_in_child("fork", _read_passed, arr))


@pytest.mark.parametrize("remote", ["s3", "http"])
def test_spawned_child_reads_remote_array(remote: str, request: pytest.FixtureRequest) -> None:
    store = request.getfixturevalue(f"{remote}_store")
    with zarr.config.set(PIPELINE):
        arr = zarr.open_array(store, mode="r")
    _expect_native(_in_child("spawn", _read_passed, arr))
    _expect_native(_in_child("spawn", _open_and_read, store))


def _blocks() -> list[tuple[int, int]]:
    return [(r, r + CHUNKS[0]) for r in range(0, SHAPE[0], CHUNKS[0])]


def test_dataloader_style_fork_pool_over_s3(s3_store: object) -> None:
    """Two forked workers read batches of an S3 array the parent opened and read, as a
    PyTorch DataLoader with num_workers=2 does with a dataset holding a zarr array."""
    with zarr.config.set(PIPELINE):
        _INHERITED["loader"] = zarr.open_array(s3_store, mode="r")
    assert int(_INHERITED["loader"][:].sum()) == int(_data().sum())
    try:
        with _fork_pool(2) as pool:
            results = pool.starmap_async(_read_inherited, [("loader", rows) for rows in _blocks()]).get(
                timeout=FORK_TIMEOUT
            )
    finally:
        del _INHERITED["loader"]
    for rows, result in zip(_blocks(), results, strict=True):
        _expect_native(result, rows)


def test_fork_pool_workers_open_s3_arrays(s3_store: object) -> None:
    """Two forked workers, each opening the S3 array itself (after the parent did)."""
    with _fork_pool(2) as pool:
        results = pool.starmap_async(_open_and_read, [(s3_store, rows) for rows in _blocks()]).get(timeout=FORK_TIMEOUT)
    for rows, result in zip(_blocks(), results, strict=True):
        _expect_native(result, rows)


def test_python_state_is_per_process_after_fork(tmp_path: Path) -> None:
    """The worker pool and the native storage cache of a forked child are its own."""
    from zarrs_cffi._core import workers as _workers
    from zarrs_cffi._pipeline import stores

    with zarr.config.set(PIPELINE):
        arr = zarr.create_array(LocalStore(tmp_path), shape=(16,), chunks=(4,), dtype="int8")
        arr[:] = 1  # the parent's worker pool and a cached storage now exist
    assert _workers._pool is not None and stores._cache
    assert _in_child("fork", _child_state, str(tmp_path)) == (True, True, 16)


def _child_state(path: str) -> tuple[bool, bool, int]:
    import os

    from zarrs_cffi._core import workers as _workers

    from zarrs_cffi._pipeline import stores

    parent_pool = _workers._pool
    fresh_cache = not stores._cache  # the parent's storages were set aside at the fork
    with zarr.config.set(PIPELINE):
        total = int(zarr.open_array(LocalStore(path))[:].sum())
    return _workers._pool is not parent_pool and _workers._pool.pid == os.getpid(), fresh_cache, total

"""Remote stores against real servers on 127.0.0.1: S3 (moto's server) through
FsspecStore/s3fs and ObjectStore/obstore, and HTTP through FsspecStore.

Each is written and read through our pipeline and through zarr's default pipeline: same
values, same keys, nothing falls back. With explicit settings the native library talks to
the server itself (native I/O); with settings it does not map, the bytes move through the
store's own Python API and zarrs only encodes and decodes. Missing buckets, read-only HTTP
and a server that dies mid-read give exceptions, not hangs.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import numpy as np
import pytest
import zarr
from conftest import ZARR_PIPELINE, ZARRS_PIPELINE, assert_route, assert_same, make_data
from servers import http_server, moto_s3
from zarr.storage import FsspecStore, LocalStore

import zarrs_cffi

pytest.importorskip("s3fs")
pytest.importorskip("obstore")
pytest.importorskip("moto")

BUCKET = "zarrs-cffi"
SHAPE = (40, 50)


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as server:
        server.create_bucket(BUCKET)
        yield server


def _s3fs_store(server: Any, prefix: str, **options: Any) -> FsspecStore:
    return FsspecStore.from_url(f"s3://{BUCKET}/{prefix}", storage_options=server.s3fs_options(**options))


def _obstore_store(server: Any, prefix: str) -> Any:
    from zarr.storage import ObjectStore

    return ObjectStore(server.obstore(BUCKET, prefix=prefix))


def _keys(store: Any) -> set[str]:
    async def collect() -> set[str]:
        return {key async for key in store.list()}

    return zarr.core.sync.sync(collect())


def _exercise(store: Any, pipeline: str, data: np.ndarray[Any, Any], **kwargs: Any) -> tuple[Any, ...]:
    with zarr.config.set({"codec_pipeline.path": pipeline}):
        arr = zarr.create_array(store, shape=SHAPE, dtype=data.dtype, fill_value=0, **kwargs)
        arr[:] = data
        arr[5:33, 7:9] = 1
        arr[30:, :20] = 0  # whole chunks back to the fill value: deleted
        arr.vindex[[0, 39], [0, 49]] = 5
        return arr[:], arr[3:21, 10:45], arr.oindex[[39, 2], ::3]


# s3fs settings the native store does not map: the bytes go through s3fs.
_UNMAPPED = {"config_kwargs": {"retries": {"max_attempts": 2}}}

STORES = {
    "s3fs": (lambda server, prefix: _s3fs_store(server, prefix), True),
    "obstore": (_obstore_store, True),
    "s3fs-python-io": (lambda server, prefix: _s3fs_store(server, prefix, **_UNMAPPED), False),
}


@pytest.mark.parametrize("sharded", [False, True], ids=["chunked", "sharded"])
@pytest.mark.parametrize("kind", list(STORES))
def test_s3_matches_zarr(s3, kind, sharded):
    make, native_io = STORES[kind]
    kwargs: dict[str, Any] = {"chunks": (10, 10)} if not sharded else {"chunks": (5, 5), "shards": (10, 25)}
    data = make_data("float32", SHAPE, seed=50)
    run = uuid.uuid4().hex
    ours_store = make(s3, f"{run}/ours")
    zarrs_cffi.reset_stats()
    ours = _exercise(ours_store, ZARRS_PIPELINE, data, **kwargs)
    s = zarrs_cffi.stats()
    theirs_store = make(s3, f"{run}/theirs")
    theirs = _exercise(theirs_store, ZARR_PIPELINE, data, **kwargs)
    for got, expected in zip(ours, theirs, strict=True):
        assert_same(got, expected)
    assert _keys(ours_store) == _keys(theirs_store)
    assert_route(s, native_io=native_io)


def test_s3_missing_bucket_raises(s3):
    store = FsspecStore.from_url("s3://no-such-bucket/a", storage_options=s3.s3fs_options())
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}), pytest.raises(Exception) as info:
        zarr.create_array(store, shape=(4,), chunks=(2,), dtype="int8")[:] = 1
    assert "bucket" in str(info.value).lower() or isinstance(info.value, (FileNotFoundError, OSError))


@pytest.mark.parametrize("kind", ["s3fs", "obstore"])
def test_s3_wrong_or_revoked_credentials_raise(kind):
    data = make_data("uint8", SHAPE, seed=54)
    with moto_s3(authenticate=True) as server:
        server.create_credentials()
        server.create_bucket(BUCKET)
        make = _s3fs_store if kind == "s3fs" else _obstore_store
        with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
            arr = zarr.create_array(make(server, "auth"), shape=SHAPE, chunks=(10, 10), dtype="uint8")
            arr[:] = data
            assert arr.async_array.codec_pipeline.native.python_io is None  # native I/O
            assert_same(arr[:], data)
            # Wrong credentials: the native store is refused by the server.
            from zarrs_cffi._bindings import NativeArray, Storage
            from zarrs_cffi.pipeline import _metadata_json

            storage = Storage.s3(
                BUCKET, prefix="auth", endpoint=server.endpoint, region="us-east-1",
                access_key_id="wrong", secret_access_key="wrong",
            )
            native = NativeArray.open_with_metadata(storage, _metadata_json(arr.metadata))
            out = np.empty(SHAPE, dtype="uint8")
            with pytest.raises(zarrs_cffi.ZarrsStorageError, match="(?i)403|forbidden|access key|denied"):
                native.retrieve_subset(zarrs_cffi.Options(), (0, 0), out)
            # Credentials revoked while the array is open: reads and writes raise OSError.
            server.revoke_credentials()
            with pytest.raises(OSError, match="(?i)403|forbidden|access key|denied"):
                arr[:]
            with pytest.raises(OSError, match="(?i)403|forbidden|access key|denied"):
                arr[:] = 0


@pytest.mark.parametrize("route", ["native", "python-io"])
def test_s3_server_dying_mid_read_raises_instead_of_hanging(route):
    data = make_data("int16", SHAPE, seed=51)
    with moto_s3() as server:
        server.create_bucket(BUCKET)
        if route == "native":
            # The native store bounds its own timeouts and retries.
            store = _s3fs_store(server, "dying")
        else:
            # Few retries, short timeouts, so s3fs gives up quickly too.
            options = {"config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2, "read_timeout": 2}}
            store = _s3fs_store(server, "dying", **options)
        with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
            arr = zarr.create_array(store, shape=SHAPE, chunks=(10, 10), dtype="int16")
            arr[:] = data
            assert_same(arr[:], data)
            assert (arr.async_array.codec_pipeline.native.python_io is None) == (route == "native")
            server.stop()
            outcome: list[BaseException | None] = []

            def read() -> None:
                try:
                    arr[:]
                    outcome.append(None)
                except BaseException as exc:  # noqa: BLE001 - the exception is the result
                    outcome.append(exc)

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            reader.join(120)
    assert not reader.is_alive(), "the read hung after the server died"
    assert outcome and outcome[0] is not None, "reading from a dead server returned data"


@pytest.fixture
def served(tmp_path):
    """An array written to a directory, and that directory served over HTTP."""
    data = make_data("uint16", SHAPE, seed=52)
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        arr = zarr.create_array(LocalStore(tmp_path / "data"), shape=SHAPE, chunks=(5, 5), shards=(10, 25), dtype="uint16")
        arr[:] = data
        arr[30:, :25] = 0  # a missing shard
        data[30:, :25] = 0
    with http_server(tmp_path / "data") as url:
        yield url, data


def test_http_reads_match_zarr_and_writes_are_refused(served):
    url, data = served
    results = {}
    for pipeline in (ZARRS_PIPELINE, ZARR_PIPELINE):
        zarrs_cffi.reset_stats()
        with zarr.config.set({"codec_pipeline.path": pipeline}):
            store = FsspecStore.from_url(url, read_only=True)
            arr = zarr.open_array(store, mode="r")
            results[pipeline] = (arr[:], arr[3:27, 11:40], arr.vindex[[0, 39, 20], [0, 49, 7]])
        if pipeline == ZARRS_PIPELINE:
            s = zarrs_cffi.stats()
            # Native HTTP: the library fetches the chunks itself.
            assert s.fallbacks == 0 and s.native_reads > 0 and s.python_io_reads == 0, s
    for got, expected in zip(*results.values(), strict=True):
        assert_same(got, expected)
    assert_same(results[ZARRS_PIPELINE][0], data)
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.open_array(FsspecStore.from_url(url, read_only=True), mode="r")
        with pytest.raises(ValueError, match="read-only"):
            arr[0, 0] = 1


def test_http_partial_shard_read_uses_byte_ranges(served):
    # Reading one inner chunk fetches the shard index and that chunk, never the whole shard.
    url, data = served
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.open_array(FsspecStore.from_url(url, read_only=True), mode="r")
        url.requests.clear()
        assert_same(arr[0:5, 0:5], data[0:5, 0:5])
    shard_requests = [r for r in url.requests if r[1].endswith("/c/0/0")]
    # The index, then the one inner chunk: two ranged GETs, no size request, no whole shard.
    assert len(shard_requests) == 2, url.requests
    assert all(method == "GET" and byte_range is not None for method, _, byte_range in shard_requests), url.requests


def test_python_io_partial_shard_read_uses_byte_ranges(served):
    # The same through the store's Python API (a LoggingStore wrapper keeps it in Python).
    from zarr.storage import LoggingStore

    url, data = served
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        store = LoggingStore(FsspecStore.from_url(url, read_only=True))
        arr = zarr.open_array(store, mode="r")
        assert arr.async_array.codec_pipeline.native.python_io is not None
        url.requests.clear()
        assert_same(arr[0:5, 0:5], data[0:5, 0:5])
    shard_gets = [r for r in url.requests if r[0] == "GET" and r[1].endswith("/c/0/0")]
    assert len(shard_gets) == 2, url.requests  # the index, then the one inner chunk
    assert all(byte_range is not None for _, _, byte_range in shard_gets), url.requests


def test_event_loop_is_not_blocked_by_remote_reads(s3):
    # zarr's async API stays usable: two reads run concurrently on one loop.
    data = make_data("int32", SHAPE, seed=53)
    store = _s3fs_store(s3, uuid.uuid4().hex)
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        zarr.create_array(store, shape=SHAPE, chunks=(10, 10), dtype="int32")[:] = data

        async def both() -> list[Any]:
            arr = await zarr.api.asynchronous.open_array(store=store, mode="r")
            return list(await asyncio.gather(arr.getitem(slice(0, 20)), arr.getitem(slice(20, 40))))

        top, bottom = zarr.core.sync.sync(both())
    assert_same(np.concatenate([top, bottom]), data)

"""Remote stores against real servers on 127.0.0.1: S3 (moto's server) through
FsspecStore/s3fs and ObjectStore/obstore, and HTTP(S) through FsspecStore and obstore's
HTTPStore.

Each is written and read through our pipeline and through zarr's default pipeline: same
values, same keys, nothing falls back. With explicit settings the native library talks to
the server itself (native I/O); with settings it does not map (headers, TLS settings,
client options), the bytes move through the store's own Python API and zarrs only encodes
and decodes: every test asserts which. Anonymous, session-token and read-only S3 are
native too. Missing buckets, refused credentials, read-only stores, a server that dies
mid-read and one that never answers give the errors the README promises, not hangs.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import numpy as np
import pytest
import zarr
from conftest import (
    ZARR_PIPELINE,
    ZARRS_PIPELINE,
    assert_read_route,
    assert_route,
    assert_same,
    make_data,
    python_io_reason,
)
from servers import REGION, http_server, make_certificates, moto_s3
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
    # Creating the array writes its metadata through s3fs: s3fs's own error.
    store = FsspecStore.from_url("s3://no-such-bucket/a", storage_options=s3.s3fs_options())
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}), pytest.raises(FileNotFoundError, match="(?i)bucket"):
        zarr.create_array(store, shape=(4,), chunks=(2,), dtype="int8")


@pytest.mark.parametrize("kind", ["s3fs", "obstore"])
def test_s3_bucket_deleted_under_an_open_array(s3, kind):
    # The chunks go through the native client: writing to a bucket that no longer exists is
    # our storage error (an OSError); reading finds no chunk, as zarr's pipeline does.
    import boto3

    bucket = f"gone-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(bucket)
    client = boto3.client(
        "s3", endpoint_url=s3.endpoint, aws_access_key_id=s3.key, aws_secret_access_key=s3.secret, region_name=REGION
    )
    if kind == "s3fs":
        store = FsspecStore.from_url(f"s3://{bucket}/a", storage_options=s3.s3fs_options())
    else:
        from zarr.storage import ObjectStore

        store = ObjectStore(s3.obstore(bucket, prefix="a"))
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.create_array(store, shape=(4,), chunks=(2,), dtype="int8", fill_value=-1)
        assert python_io_reason(arr) is None
        client.delete_object(Bucket=bucket, Key="a/zarr.json")
        client.delete_bucket(Bucket=bucket)
        zarrs_cffi.reset_stats()
        with pytest.raises(zarrs_cffi.ZarrsStorageError, match="(?i)bucket|404|not found"):
            arr[:] = 1
        assert_same(arr[:], np.full(4, -1, dtype="int8"))
    s = zarrs_cffi.stats()
    assert (s.native_reads, s.python_io_reads, s.fallbacks) == (2, 0, 0), s


@pytest.mark.parametrize("kind", ["s3fs", "obstore"])
def test_s3_wrong_or_revoked_credentials_raise(kind):
    data = make_data("uint8", SHAPE, seed=54)
    with moto_s3(authenticate=True) as server:
        server.create_credentials()
        server.create_bucket(BUCKET)
        make = _s3fs_store if kind == "s3fs" else _obstore_store
        with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
            arr = zarr.create_array(make(server, "auth"), shape=SHAPE, chunks=(10, 10), dtype="uint8")
            assert python_io_reason(arr) is None  # native I/O
            zarrs_cffi.reset_stats()
            arr[:] = data
            assert_same(arr[:], data)
            assert_route(zarrs_cffi.stats(), native_io=True)
            # Wrong credentials: the native store is refused by the server.
            from zarrs_cffi._bindings import ArrayHandle, Storage
            from zarrs_cffi._core.metadata import metadata_json

            storage = Storage.s3(
                BUCKET, prefix="auth", endpoint=server.endpoint, region="us-east-1",
                access_key_id="wrong", secret_access_key="wrong",
            )
            native = ArrayHandle.open_with_metadata(storage, metadata_json(arr.metadata))
            out = np.empty(SHAPE, dtype="uint8")
            with pytest.raises(zarrs_cffi.ZarrsStorageError, match="(?i)403|forbidden|access key|denied"):
                native.retrieve_subset(zarrs_cffi.Options(), (0, 0), out)
            # Credentials revoked while the array is open: reads and writes raise our storage
            # error (an OSError), from the native client.
            server.revoke_credentials()
            with pytest.raises(zarrs_cffi.ZarrsStorageError, match="(?i)403|forbidden|access key|denied") as info:
                arr[:]
            assert isinstance(info.value, OSError)
            with pytest.raises(zarrs_cffi.ZarrsStorageError, match="(?i)403|forbidden|access key|denied"):
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
            zarrs_cffi.reset_stats()
            arr[:] = data
            assert_same(arr[:], data)
            assert_route(zarrs_cffi.stats(), native_io=route == "native")
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
    if route == "native":
        # The README's promise: a dead server is our storage error, an OSError.
        assert isinstance(outcome[0], zarrs_cffi.ZarrsStorageError), repr(outcome[0])
        assert isinstance(outcome[0], OSError)
    else:
        # The store's own error reaches the caller unchanged (botocore's, through s3fs).
        assert not isinstance(outcome[0], zarrs_cffi.ZarrsError), repr(outcome[0])
        assert "connect" in str(outcome[0]).lower(), repr(outcome[0])


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


def _http_store(url: str, kind: str, **options: Any) -> Any:
    """A read-only store on ``url``: fsspec's HTTP filesystem or obstore's HTTPStore."""
    if kind == "fsspec":
        return FsspecStore.from_url(url, read_only=True, storage_options=options or None)
    from obstore.store import HTTPStore
    from zarr.storage import ObjectStore

    return ObjectStore(HTTPStore.from_url(url, client_options={"allow_http": True}), read_only=True)


def _read_only_error(store: Any, pipeline: str) -> BaseException:
    with zarr.config.set({"codec_pipeline.path": pipeline}):
        arr = zarr.open_array(store, mode="r")
        with pytest.raises(ValueError) as info:
            arr[0, 0] = 1
    return info.value


@pytest.mark.parametrize("kind", ["fsspec", "obstore"])
def test_http_reads_match_zarr_and_writes_are_refused(served, kind):
    url, data = served
    results = {}
    for pipeline in (ZARRS_PIPELINE, ZARR_PIPELINE):
        zarrs_cffi.reset_stats()
        with zarr.config.set({"codec_pipeline.path": pipeline}):
            arr = zarr.open_array(_http_store(url, kind), mode="r")
            if pipeline == ZARRS_PIPELINE:
                assert python_io_reason(arr) is None  # the library fetches the chunks itself
            results[pipeline] = (arr[:], arr[3:27, 11:40], arr.vindex[[0, 39, 20], [0, 49, 7]])
        if pipeline == ZARRS_PIPELINE:
            assert_read_route(zarrs_cffi.stats(), native_io=True)
    for got, expected in zip(*results.values(), strict=True):
        assert_same(got, expected)
    assert_same(results[ZARRS_PIPELINE][0], data)
    # Writes: zarr's own read-only error, as zarr's pipeline raises it.
    zarrs_cffi.reset_stats()
    ours = _read_only_error(_http_store(url, kind), ZARRS_PIPELINE)
    theirs = _read_only_error(_http_store(url, kind), ZARR_PIPELINE)
    assert (type(ours), str(ours)) == (type(theirs), str(theirs))
    assert "read-only" in str(ours)
    assert zarrs_cffi.stats().native_writes == 0


def _shard_requests(url: Any, key: str = "/c/0/0") -> list[tuple[str, str, str | None]]:
    return [r for r in url.requests if r[1].endswith(key)]


@pytest.mark.parametrize("kind", ["fsspec", "obstore"])
def test_http_partial_shard_read_uses_byte_ranges(served, kind):
    # Reading one inner chunk fetches the shard index and that chunk, never the whole
    # shard, and the native library does it (zarr's own sharding would make the same two
    # requests, so the route is asserted as well).
    url, data = served
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.open_array(_http_store(url, kind), mode="r")
        assert python_io_reason(arr) is None
        url.requests.clear()
        zarrs_cffi.reset_stats()
        assert_same(arr[0:5, 0:5], data[0:5, 0:5])
    s = zarrs_cffi.stats()
    assert (s.native_reads, s.python_io_reads, s.fallbacks) == (1, 0, 0), s
    shard_requests = _shard_requests(url)
    # The index, then the one inner chunk: two ranged GETs, no size request, no whole shard.
    assert len(shard_requests) == 2, url.requests
    assert all(method == "GET" and byte_range is not None for method, _, byte_range in shard_requests), url.requests


@pytest.mark.parametrize("selection", ["box", "oindex", "vindex"])
def test_http_sharded_reads_keep_every_shard_in_flight(tmp_path, selection):
    # Over a network each request costs its latency: the shard indexes a read needs are
    # fetched in one round, all at once, then the inner chunks they locate in another, not a
    # shard at a time per thread (2 in flight on two cores, each waiting for its index).
    # The server answers each request after 250 ms, so requests of one round overlap even
    # on a loaded machine (at 50 ms, a busy CI neighbour staggered them).
    data = make_data("uint16", (64, 64), seed=7)
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        zarr.create_array(LocalStore(tmp_path / "data"), shape=data.shape, chunks=(8, 8), shards=(16, 16), dtype="uint16")[:] = data
    rows = np.array([1, 17, 33, 49])
    read = {
        "box": (lambda a: a[4:60, 4:60], data[4:60, 4:60]),
        "oindex": (lambda a: a.oindex[rows, rows + 2], data[np.ix_(rows, rows + 2)]),
        "vindex": (lambda a: a.vindex[rows, rows[::-1]], data[rows, rows[::-1]]),
    }[selection]
    # The box covers its 4 middle shards whole (one request each, in the first round).
    requests, in_flight = {"box": (12 * 2 + 4, 16), "oindex": (16 * 2, 16), "vindex": (4 * 2, 4)}[selection]
    with http_server(tmp_path / "data", delay=0.25) as url, zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.open_array(_http_store(url, "obstore"), mode="r")
        assert python_io_reason(arr) is None
        url.requests.clear()
        url.in_flight[1] = 0
        assert_same(read[0](arr), read[1])
        shard_requests = [r for r in url.requests if "/c/" in r[1]]
    # One index request and one coalesced inner-chunk request per shard read in part, each
    # round's all in flight together.
    assert len(shard_requests) == requests, url.requests
    assert url.in_flight[1] == in_flight, url.in_flight


def test_python_io_partial_shard_read_uses_byte_ranges(served):
    # The same through the store's Python API (a LoggingStore wrapper keeps it in Python):
    # our pipeline fetches the index and the inner chunk itself, zarrs decodes.
    from zarr.storage import LoggingStore

    url, data = served
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        store = LoggingStore(FsspecStore.from_url(url, read_only=True))
        arr = zarr.open_array(store, mode="r")
        assert python_io_reason(arr) == "LoggingStore has no native storage"
        url.requests.clear()
        zarrs_cffi.reset_stats()
        assert_same(arr[0:5, 0:5], data[0:5, 0:5])
    s = zarrs_cffi.stats()
    assert (s.native_reads, s.python_io_reads, s.fallbacks) == (1, 1, 0), s
    shard_gets = [r for r in _shard_requests(url) if r[0] == "GET"]
    assert len(shard_gets) == 2, url.requests  # the index, then the one inner chunk
    assert all(byte_range is not None for _, _, byte_range in shard_gets), url.requests


def test_http_with_headers_goes_through_python(served):
    # Headers are client settings the native client does not take: the bytes move through
    # fsspec (which sends the headers with every request, ranged ones included), zarrs decodes.
    url, data = served
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.open_array(_http_store(url, "fsspec", headers={"X-Zarrs-Test": "yes"}), mode="r")
        assert python_io_reason(arr) == "FsspecStore over HTTP with client settings (headers, auth)"
        zarrs_cffi.reset_stats()
        url.requests.clear()
        url.headers.clear()
        assert_same(arr[:], data)
        assert_same(arr[0:5, 0:5], data[0:5, 0:5])  # a partial shard read: byte ranges
    assert_read_route(zarrs_cffi.stats(), native_io=False)
    chunk_requests = [i for i, r in enumerate(url.requests) if "/c/" in r[1]]
    assert chunk_requests, url.requests
    assert all(url.headers[i].get("X-Zarrs-Test") == "yes" for i in chunk_requests), url.headers
    assert any(url.requests[i][2] is not None for i in chunk_requests), url.requests


@pytest.fixture
def served_tls(tmp_path, monkeypatch):
    """The ``served`` array over HTTPS with a certificate from a throw-away authority, which
    aiohttp (fsspec's client, for the metadata) trusts; the native client trusts what
    ``SSL_CERT_FILE`` names, so each test decides."""
    import ssl

    import aiohttp.connector

    data = make_data("uint16", SHAPE, seed=55)
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        arr = zarr.create_array(LocalStore(tmp_path / "data"), shape=SHAPE, chunks=(5, 5), shards=(10, 25), dtype="uint16")
        arr[:] = data
    (tmp_path / "tls").mkdir()
    ca, cert, key = make_certificates(tmp_path / "tls")
    context = ssl.create_default_context(cafile=ca)
    monkeypatch.setattr(aiohttp.connector, "_SSL_CONTEXT_VERIFIED", context)
    with http_server(tmp_path / "data", tls=(cert, key)) as url:
        yield url, data, ca


def test_https_is_native(served_tls, monkeypatch):
    url, data, ca = served_tls
    assert url.startswith("https://")
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        # Trusting the authority (the native client reads SSL_CERT_FILE when it is built):
        # the library fetches the chunks over TLS itself.
        monkeypatch.setenv("SSL_CERT_FILE", ca)
        arr = zarr.open_array(FsspecStore.from_url(url, read_only=True), mode="r")
        assert python_io_reason(arr) is None
        zarrs_cffi.reset_stats()
        url.requests.clear()
        assert_same(arr[:], data)
        assert_same(arr[0:5, 0:5], data[0:5, 0:5])
        assert_read_route(zarrs_cffi.stats(), native_io=True)
        assert any("/c/" in r[1] for r in url.requests), url.requests


def test_https_native_client_refuses_an_untrusted_certificate(served_tls, monkeypatch):
    # The native client verifies the server: with the authority not trusted (only aiohttp,
    # for the metadata, trusts it here) a chunk read is our storage error, not data.
    url, _, _ = served_tls
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent")
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.open_array(FsspecStore.from_url(url, read_only=True), mode="r")
        assert python_io_reason(arr) is None
        with pytest.raises(zarrs_cffi.ZarrsStorageError, match="(?i)certificate|tls|ssl|error sending request"):
            arr[:]


def test_https_with_tls_settings_goes_through_python(served_tls):
    # An SSL context for fsspec's requests is a client setting: bytes through fsspec.
    import ssl

    url, data, ca = served_tls
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        store = _http_store(url, "fsspec", ssl=ssl.create_default_context(cafile=ca))
        arr = zarr.open_array(store, mode="r")
        assert python_io_reason(arr) == "FsspecStore over HTTP with client settings (headers, auth)"
        zarrs_cffi.reset_stats()
        assert_same(arr[:], data)
        assert_same(arr[0:5, 0:5], data[0:5, 0:5])
    assert_read_route(zarrs_cffi.stats(), native_io=False)


def test_obstore_http_store_opened_for_writing_goes_through_python(served):
    # obstore's HTTPStore as a writable zarr store: the native HTTP store is read-only, so the
    # bytes go through obstore (reads work the same).
    from obstore.store import HTTPStore
    from zarr.storage import ObjectStore

    url, data = served
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        store = ObjectStore(HTTPStore.from_url(url, client_options={"allow_http": True}))
        arr = zarr.open_array(store, mode="r+")  # mode "r" would make zarr open it read-only
        assert python_io_reason(arr) == "obstore HTTPStore opened for writing"
        zarrs_cffi.reset_stats()
        assert_same(arr[:], data)
        assert_same(arr[3:27, 11:40], data[3:27, 11:40])
    assert_read_route(zarrs_cffi.stats(), native_io=False)


def test_http_server_that_never_answers_times_out(tmp_path):
    # The server accepts the chunk request and never answers. The native client gives up
    # after its request timeout (60 s) with our storage error instead of hanging.
    data = np.arange(20, dtype="int32")
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        zarr.create_array(LocalStore(tmp_path), shape=(20,), chunks=(20,), dtype="int32")[:] = data
    with http_server(tmp_path, hang=lambda path: "/c/" in path) as url:
        with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
            arr = zarr.open_array(FsspecStore.from_url(url, read_only=True), mode="r")
            assert python_io_reason(arr) is None
            outcome: list[BaseException | None] = []

            def read() -> None:
                try:
                    arr[:]
                    outcome.append(None)
                except BaseException as exc:  # noqa: BLE001 - the exception is the result
                    outcome.append(exc)

            started = time.monotonic()
            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            reader.join(90)
            elapsed = time.monotonic() - started
        assert not reader.is_alive(), "the read hung on a server that never answers"
        assert any("/c/" in r[1] for r in url.requests), url.requests
    assert outcome and isinstance(outcome[0], zarrs_cffi.ZarrsStorageError), outcome
    assert 55 < elapsed < 85, elapsed  # the request timeout, not a connection failure


# --- S3 settings that stay native: anonymous, session tokens, read-only --------------------


def _s3fs_read_store(server: Any, prefix: str, **options: Any) -> FsspecStore:
    settings = {"endpoint_url": server.endpoint, "client_kwargs": {"region_name": REGION}, **options}
    return FsspecStore.from_url(f"s3://{BUCKET}/{prefix}", read_only=True, storage_options=settings)


def _write_reference(server: Any, prefix: str, data: np.ndarray[Any, Any]) -> None:
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        store = _s3fs_store(server, prefix)
        zarr.create_array(store, shape=data.shape, chunks=(10, 10), dtype=data.dtype)[:] = data


PUBLIC_BUCKET = "zarrs-cffi-public"


@pytest.fixture(scope="module")
def public_bucket(s3):
    """A bucket anyone may read (by bucket policy): unsigned requests are allowed there."""
    s3.create_bucket(PUBLIC_BUCKET)
    s3.make_public(PUBLIC_BUCKET)
    return PUBLIC_BUCKET


@pytest.mark.parametrize("kind", ["s3fs", "obstore"])
def test_anonymous_s3_reads_are_native(s3, public_bucket, kind):
    from obstore.store import S3Store
    from zarr.storage import ObjectStore

    data = make_data("int32", SHAPE, seed=56)
    prefix = uuid.uuid4().hex
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        writer = FsspecStore.from_url(f"s3://{public_bucket}/{prefix}", storage_options=s3.s3fs_options())
        zarr.create_array(writer, shape=SHAPE, chunks=(10, 10), dtype="int32")[:] = data
    if kind == "s3fs":
        store = FsspecStore.from_url(
            f"s3://{public_bucket}/{prefix}", read_only=True,
            storage_options={"anon": True, "endpoint_url": s3.endpoint, "client_kwargs": {"region_name": REGION}},
        )
    else:
        inner = S3Store(
            public_bucket, prefix=prefix, endpoint=s3.endpoint, region=REGION, skip_signature=True,
            client_options={"allow_http": True},
        )
        store = ObjectStore(inner, read_only=True)
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.open_array(store, mode="r")
        assert python_io_reason(arr) is None
        zarrs_cffi.reset_stats()
        assert_same(arr[:], data)
        assert_same(arr[7:33, 1:49], data[7:33, 1:49])
    assert_read_route(zarrs_cffi.stats(), native_io=True)


def test_anonymous_s3_is_refused_on_a_private_bucket(s3):
    # Unsigned native requests really are unsigned: the same read on a private bucket is
    # refused (the bucket policy above is what lets them through).
    from zarrs_cffi._bindings import ArrayHandle, Storage
    from zarrs_cffi._core.metadata import metadata_json

    prefix = uuid.uuid4().hex
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.create_array(_s3fs_store(s3, prefix), shape=(8,), chunks=(4,), dtype="int8")
        assert python_io_reason(arr) is None
        zarrs_cffi.reset_stats()
        arr[:] = 3
        assert_same(arr[:], np.full(8, 3, dtype="int8"))  # signed native requests are allowed
    assert_route(zarrs_cffi.stats(), native_io=True)
    storage = Storage.s3(BUCKET, prefix=prefix, endpoint=s3.endpoint, region=REGION, anonymous=True)
    native = ArrayHandle.open_with_metadata(storage, metadata_json(arr.metadata))
    with pytest.raises(zarrs_cffi.ZarrsStorageError, match="(?i)403|forbidden|privileges"):
        native.retrieve_subset(zarrs_cffi.Options(), (0,), np.empty(8, dtype="int8"))


@pytest.mark.parametrize("kind", ["s3fs", "obstore"])
def test_s3_session_token_is_native_and_sent(kind):
    # Temporary credentials: the server checks the session token with the key, so a native
    # read succeeding, and failing with a wrong token, shows the token reached the server.
    from zarr.storage import ObjectStore

    data = make_data("float64", SHAPE, seed=57)
    with moto_s3(authenticate=True) as server:
        server.create_credentials()
        server.create_bucket(BUCKET)
        key, secret, token = server.session_credentials()

        def store(session_token: str) -> Any:
            if kind == "s3fs":
                return _s3fs_read_store(server, "tok", key=key, secret=secret, token=session_token)
            from obstore.store import S3Store

            inner = S3Store(
                BUCKET, prefix="tok", endpoint=server.endpoint, region=REGION, access_key_id=key,
                secret_access_key=secret, session_token=session_token, client_options={"allow_http": True},
            )
            return ObjectStore(inner, read_only=True)

        with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
            zarr.create_array(_s3fs_store(server, "tok"), shape=SHAPE, chunks=(10, 10), dtype="float64")[:] = data
            arr = zarr.open_array(store(token), mode="r")
            assert python_io_reason(arr) is None
            zarrs_cffi.reset_stats()
            assert_same(arr[:], data)
            assert_read_route(zarrs_cffi.stats(), native_io=True)
        # The same key with a wrong token: the native request is refused.
        from zarrs_cffi._bindings import ArrayHandle, Storage
        from zarrs_cffi._core.metadata import metadata_json

        storage = Storage.s3(
            BUCKET, prefix="tok", endpoint=server.endpoint, region=REGION, access_key_id=key,
            secret_access_key=secret, session_token=token[:-4] + "AAAA",
        )
        native = ArrayHandle.open_with_metadata(storage, metadata_json(arr.metadata))
        with pytest.raises(zarrs_cffi.ZarrsStorageError, match="(?i)400|403|token|bad request"):
            native.retrieve_subset(zarrs_cffi.Options(), (0, 0), np.empty(SHAPE, dtype="float64"))


@pytest.mark.parametrize("kind", ["s3fs", "obstore"])
def test_read_only_s3_reads_natively_and_refuses_writes(s3, kind):
    from zarr.storage import ObjectStore

    data = make_data("uint16", SHAPE, seed=58)
    prefix = uuid.uuid4().hex
    _write_reference(s3, prefix, data)

    def store() -> Any:
        if kind == "s3fs":
            return _s3fs_read_store(s3, prefix, key=s3.key, secret=s3.secret)
        return ObjectStore(s3.obstore(BUCKET, prefix=prefix), read_only=True)

    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.open_array(store(), mode="r")
        assert python_io_reason(arr) is None
        zarrs_cffi.reset_stats()
        assert_same(arr[:], data)
    assert_read_route(zarrs_cffi.stats(), native_io=True)
    # A write raises zarr's own read-only error, exactly as zarr's pipeline does.
    zarrs_cffi.reset_stats()
    ours = _read_only_error(store(), ZARRS_PIPELINE)
    theirs = _read_only_error(store(), ZARR_PIPELINE)
    assert (type(ours), str(ours)) == (type(theirs), str(theirs))
    assert zarrs_cffi.stats().native_writes == 0
    # The native storage itself is read-only too.
    from zarrs_cffi._bindings import ArrayHandle
    from zarrs_cffi._core.metadata import metadata_json

    storage = arr.async_array.codec_pipeline.native.array.storage
    native = ArrayHandle.open_with_metadata(storage, metadata_json(arr.metadata))
    with pytest.raises(zarrs_cffi.ZarrsReadOnlyError):
        native.store_subset(zarrs_cffi.Options(), (0, 0), np.zeros((10, 10), dtype="uint16"))
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        assert_same(zarr.open_array(store(), mode="r")[:], data)


def test_event_loop_is_not_blocked_by_remote_reads(s3):
    # zarr's async API stays usable while native S3 reads wait on the network: small
    # one-chunk reads (the size that once ran inline on the loop) leave a ticker coroutine
    # ticking, and two reads run concurrently on one loop.
    data = make_data("int32", SHAPE, seed=53)
    store = _s3fs_store(s3, uuid.uuid4().hex)
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        zarr.create_array(store, shape=SHAPE, chunks=(10, 10), dtype="int32")[:] = data
        zarrs_cffi.reset_stats()

        async def run() -> tuple[list[Any], list[Any], int]:
            arr = await zarr.api.asynchronous.open_array(store=store, mode="r")
            ticks = 0
            done = False

            async def ticker() -> None:
                nonlocal ticks
                while not done:
                    await asyncio.sleep(0)
                    ticks += 1

            task = asyncio.ensure_future(ticker())
            await asyncio.sleep(0)
            start = ticks
            small = [await arr.getitem((slice(i, i + 2), slice(0, 2))) for i in range(0, 20, 2)]
            during = ticks - start
            done = True
            await task
            both = list(await asyncio.gather(arr.getitem(slice(0, 20)), arr.getitem(slice(20, 40))))
            return small, both, during

        small, (top, bottom), ticks = zarr.core.sync.sync(run())
    assert ticks >= 10, f"the loop ran only {ticks} times during 10 remote reads: they blocked it"
    assert_same(np.concatenate([top, bottom]), data)
    assert_same(np.concatenate(small), data[0:20, 0:2])
    s = zarrs_cffi.stats()
    assert s.native_reads >= 12 and s.python_io_reads == 0 and s.fallbacks == 0, s

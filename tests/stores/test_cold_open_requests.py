"""The requests of a cold open and one inner-chunk read, on every remote store the library
reaches (HTTP, S3, GCS, Azure), counted by the latency proxy (`tests/proxy.py`): the array's
metadata in one GET, then the shard's index, then the inner chunk; no size request first
where the service answers a suffix range (Azure does not: a HEAD tells the size there), no
metadata probes. As tensorstore reads it, and one round trip fewer than the blocking
adapter's `get` made (a HEAD before every metadata GET)."""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import numpy as np
import pytest
import zarr
from conftest import ZARR_PIPELINE, ZARRS_PIPELINE, make_data, python_io_reason
from proxy import latency_proxy
from servers import azure_blob_server, gcs_emulator, http_server, moto_s3
from zarr.storage import LocalStore, ObjectStore

from zarrs_cffi import Array

if TYPE_CHECKING:
    from collections.abc import Iterator

    from proxy import ProxyStats

# gcsfs would first ask GCS's control plane (gRPC, TLS) what kind of bucket it has.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

BUCKET = "cold"
TOKEN = "cold-token"
SHAPE = (16, 16)
INNER = (slice(4, 8), slice(4, 8))  # inner chunk (1, 1) of shard (0, 0)


def _write(store: Any) -> np.ndarray[Any, Any]:
    data = make_data("uint16", SHAPE, seed=90)
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        zarr.create_array(store, shape=SHAPE, chunks=(4, 4), shards=(8, 8), dtype="uint16")[...] = data
    return data


class Backend:
    """An array written on a server, and the proxy in front of it: how the direct API
    (``url``, ``options``) and zarr (``zarr_store()``) reach it through the proxy."""

    name: str
    url: str
    options: dict[str, Any] | None
    zarr_store: Any
    data: np.ndarray[Any, Any]
    proxy: Any


@contextlib.contextmanager
def _backend(name: str, tmp_path: Any) -> Iterator[Backend]:
    from obstore.store import AzureStore, GCSStore, S3Store

    prefix = f"{uuid.uuid4().hex}/a.zarr"
    backend = Backend()
    backend.name = name
    with contextlib.ExitStack() as stack:
        if name == "http":
            backend.data = _write(LocalStore(tmp_path / prefix))
            upstream = stack.enter_context(http_server(tmp_path, etags=True))
            proxy = stack.enter_context(latency_proxy(upstream, delay=0.005))
            backend.url, backend.options = f"{proxy.url}/{prefix}", None
            from obstore.store import HTTPStore

            backend.zarr_store = lambda: ObjectStore(
                HTTPStore.from_url(backend.url, client_options={"allow_http": True}), read_only=True)
        elif name == "s3":
            server = stack.enter_context(moto_s3())
            server.create_bucket(BUCKET)
            backend.data = _write(ObjectStore(server.obstore(BUCKET, prefix)))
            proxy = stack.enter_context(latency_proxy(server.endpoint, delay=0.005))
            backend.url = f"s3://{BUCKET}/{prefix}"
            backend.options = {**server.s3fs_options(), "endpoint_url": proxy.url}
            backend.zarr_store = lambda: ObjectStore(S3Store(
                BUCKET, prefix=prefix, endpoint=proxy.url, access_key_id=server.key,
                secret_access_key=server.secret, region="us-east-1", client_options={"allow_http": True},
            ), read_only=True)
        elif name == "gcs":
            server = stack.enter_context(gcs_emulator(tokens=(TOKEN,)))
            server.create_bucket(BUCKET)
            backend.data = _write(ObjectStore(server.obstore(BUCKET, prefix)))
            proxy = stack.enter_context(latency_proxy(server.endpoint, delay=0.005))
            from google.oauth2.credentials import Credentials

            backend.url = f"gs://{BUCKET}/{prefix}"
            backend.options = {"endpoint_url": proxy.url, "token": Credentials(token=TOKEN)}
            backend.zarr_store = lambda: ObjectStore(GCSStore(
                BUCKET, prefix=prefix, base_url=proxy.url, bearer_token=TOKEN, client_options={"allow_http": True},
            ), read_only=True)
        else:
            server = stack.enter_context(azure_blob_server())
            server.create_container(BUCKET)
            backend.data = _write(ObjectStore(server.obstore(BUCKET, prefix)))
            root, account = server.endpoint.rsplit("/", 1)
            proxy = stack.enter_context(latency_proxy(root, delay=0.005))
            connection = (f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={server.key};"
                          f"BlobEndpoint={proxy.url}/{account};")
            backend.url, backend.options = f"az://{BUCKET}/{prefix}", {"connection_string": connection}
            backend.zarr_store = lambda: ObjectStore(AzureStore(
                BUCKET, prefix=prefix, account_name=account, account_key=server.key,
                endpoint=f"{proxy.url}/{account}", client_options={"allow_http": True},
            ), read_only=True)
        backend.proxy = proxy
        yield backend


def _requests(stats: ProxyStats) -> list[tuple[str, str, str]]:
    """(method, key inside the array, range kind: "" for none, "suffix" or "bounded")."""
    out = []
    for request in stats.requests:
        key = unquote(request.target.split("?")[0]).split("a.zarr/", 1)[1]
        kind = "" if request.range is None else "suffix" if request.range.startswith("bytes=-") else "bounded"
        out.append((request.method, key, kind))
    return out


#: What a cold open and one inner chunk take: the metadata, the shard's index, the chunk.
EXPECTED = [("GET", "zarr.json", ""), ("GET", "c/0/0", "suffix"), ("GET", "c/0/0", "bounded")]
#: Azure serves no suffix ranges: the index is a bounded range once a HEAD has told the size.
EXPECTED_AZURE = [("GET", "zarr.json", ""), ("HEAD", "c/0/0", ""), ("GET", "c/0/0", "bounded"),
                  ("GET", "c/0/0", "bounded")]


@pytest.fixture(params=["http", "s3", "gcs", "azure"])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Backend]:
    if request.param == "gcs":
        pytest.importorskip("gcp_storage_emulator")
    with _backend(request.param, tmp_path) as made:
        yield made


def test_direct_cold_open_and_inner_chunk_take_one_request_a_round(backend: Backend) -> None:
    backend.proxy.reset()
    direct = Array.open(backend.url, read_only=True, storage_options=backend.options)
    np.testing.assert_array_equal(direct[INNER], backend.data[INNER])
    stats = backend.proxy.reset()
    expected = EXPECTED_AZURE if backend.name == "azure" else EXPECTED
    assert _requests(stats) == expected, stats.log()
    assert stats.rounds == len(expected), stats.log()


def test_zarr_cold_open_and_inner_chunk_through_our_pipeline(backend: Backend) -> None:
    backend.proxy.reset()
    # A fresh process's state: no shard index cached from an earlier open.
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE, "codec_pipeline.shard_index_cache_bytes": 0}):
        # zarr_format given: else zarr probes for v2 documents too (its requests, not ours).
        arr = zarr.open_array(backend.zarr_store(), mode="r", zarr_format=3)
        np.testing.assert_array_equal(arr[INNER], backend.data[INNER])
        assert python_io_reason(arr) is None
    stats = backend.proxy.reset()
    expected = EXPECTED_AZURE if backend.name == "azure" else EXPECTED
    assert _requests(stats) == expected, stats.log()
    assert stats.rounds == len(expected), stats.log()


def test_the_proxy_log_names_each_request(tmp_path: Any) -> None:
    # The log the tests above print when they fail: method, target, range, status, times.
    with _backend("http", tmp_path) as made:
        made.proxy.reset()
        Array.open(made.url, read_only=True)[INNER]
        lines = made.proxy.reset().log()
    assert len(lines) == 3 and lines[0].rstrip().endswith("zarr.json -> 200"), lines
    assert "[bytes=-" in lines[1] and lines[1].endswith("-> 206"), lines

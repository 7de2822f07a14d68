"""The shard-index cache: a remote sharded array keeps the indexes of shards it has read, so
the next read of part of one costs one round trip (its inner chunks, ``If-Match`` the ETag
the index was read at). It is never stale: a shard rewritten behind it, by another client
or process, through a server that honours ``If-Match`` or one that ignores it, is read with
its new index; a store without ETags is not cached; writes through the same array drop
what they replace; its memory stays within ``codec_pipeline.shard_index_cache_bytes``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from conftest import ZARR_PIPELINE, ZARRS_PIPELINE, assert_same, make_data, python_io_reason
from servers import http_server, moto_s3
from zarr.storage import LocalStore

pytest.importorskip("obstore")

SHAPE = (64, 64)
CHUNKS = (8, 8)
SHARDS = (32, 32)


def _write(path: Path, data: np.ndarray[Any, Any]) -> None:
    """Write ``data`` with zarr's own pipeline: another client than the reader."""
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        if (path / "zarr.json").exists():
            arr = zarr.open_array(LocalStore(path), mode="r+")
        else:
            arr = zarr.create_array(LocalStore(path), shape=data.shape, chunks=CHUNKS, shards=SHARDS, dtype=data.dtype)
        arr[:] = data


def _http_array(url: str) -> zarr.Array:
    from obstore.store import HTTPStore
    from zarr.storage import ObjectStore

    store = ObjectStore(HTTPStore.from_url(url, client_options={"allow_http": True}), read_only=True)
    arr = zarr.open_array(store, mode="r")
    assert python_io_reason(arr) is None
    return arr


def _shard_gets(url: Any) -> list[tuple[str, str, str | None]]:
    return [r for r in url.requests if "/c/" in r[1]]


def _native(arr: zarr.Array) -> Any:
    return arr.async_array.codec_pipeline.native.array


@pytest.mark.parametrize("if_match", [True, False], ids=["honours-if-match", "ignores-if-match"])
def test_a_warm_read_is_one_request_and_a_rewritten_shard_is_read_anew(tmp_path, if_match):
    data = make_data("uint16", SHAPE, seed=3)
    _write(tmp_path / "a", data)
    with http_server(tmp_path / "a", etags=True, if_match=if_match) as url, zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = _http_array(url)
        assert_same(arr[0:8, 0:8], data[0:8, 0:8])
        assert len(_shard_gets(url)) == 2, url.requests  # its index, then the inner chunk
        url.requests.clear()
        url.headers.clear()
        assert_same(arr[8:16, 0:8], data[8:16, 0:8])
        # Warm: the inner chunk alone, on the condition the shard is the one indexed.
        assert len(_shard_gets(url)) == 1, url.requests
        assert url.headers[-1].get("if-match", "").startswith('"'), url.headers[-1]
        # The shard is rewritten by another client: never read with its old index.
        new = data + 1
        new[16:24, 0:8] = 0  # an inner chunk that was stored is now the fill value: not stored
        _write(tmp_path / "a", new)
        url.requests.clear()
        assert_same(arr[8:24, 0:8], new[8:24, 0:8])
        assert_same(arr[:], new)
        assert _native(arr).shard_index_cache_usage()[0] == 4


def test_a_read_needing_only_missing_chunks_confirms_the_index(tmp_path):
    # Every inner chunk the read needs is not stored by the cached index, so the read asks
    # nothing else of the shard: it confirms the index's ETag (a HEAD) before answering.
    data = make_data("uint16", SHAPE, seed=4)
    data[0:8, 0:8] = 0
    _write(tmp_path / "a", data)
    with http_server(tmp_path / "a", etags=True) as url, zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = _http_array(url)
        assert_same(arr[8:16, 0:8], data[8:16, 0:8])
        url.requests.clear()
        assert_same(arr[0:8, 0:8], data[0:8, 0:8])
        assert [r[0] for r in _shard_gets(url)] == ["HEAD"], url.requests
        new = data.copy()
        new[0:8, 0:8] = 9
        _write(tmp_path / "a", new)
        assert_same(arr[0:8, 0:8], new[0:8, 0:8])


def test_a_store_without_etags_is_not_cached(tmp_path):
    data = make_data("uint16", SHAPE, seed=5)
    _write(tmp_path / "a", data)
    with http_server(tmp_path / "a") as url, zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = _http_array(url)
        assert_same(arr[0:8, 0:8], data[0:8, 0:8])
        url.requests.clear()
        assert_same(arr[8:16, 0:8], data[8:16, 0:8])
        assert len(_shard_gets(url)) == 2, url.requests
        assert _native(arr).shard_index_cache_usage() == (0, 0)
        new = data * 2
        _write(tmp_path / "a", new)
        assert_same(arr[8:16, 0:8], new[8:16, 0:8])


def test_the_cache_stays_within_its_budget(tmp_path):
    data = make_data("uint16", (128, 128), seed=6)
    _write(tmp_path / "a", data)
    # Room for two 16-chunk indexes (16 x 16 bytes, a 4-byte checksum) and their bookkeeping.
    budget = 2 * (16 * 16 + 4 + 300)
    with http_server(tmp_path / "a", etags=True) as url, zarr.config.set(
        {"codec_pipeline.path": ZARRS_PIPELINE, "codec_pipeline.shard_index_cache_bytes": budget}
    ):
        arr = _http_array(url)
        for i in range(4):
            for j in range(4):
                assert_same(arr[i * 32:i * 32 + 8, j * 32:j * 32 + 8], data[i * 32:i * 32 + 8, j * 32:j * 32 + 8])
        entries, used = _native(arr).shard_index_cache_usage()
        assert 1 <= entries <= 2 and used <= budget, (entries, used)
    with http_server(tmp_path / "a", etags=True) as url, zarr.config.set(
        {"codec_pipeline.path": ZARRS_PIPELINE, "codec_pipeline.shard_index_cache_bytes": 0}
    ):
        arr = _http_array(url)
        assert_same(arr[0:8, 0:8], data[0:8, 0:8])
        url.requests.clear()
        assert_same(arr[8:16, 0:8], data[8:16, 0:8])
        assert len(_shard_gets(url)) == 2, url.requests
        assert _native(arr).shard_index_cache_usage() == (0, 0)
        # Opened again with the key unset: the default budget again, not the last open's 0.
        with zarr.config.set({"codec_pipeline.shard_index_cache_bytes": None}):
            again = _http_array(url)
            assert _native(again) is _native(arr)
            assert_same(again[0:8, 0:8], data[0:8, 0:8])
            url.requests.clear()
            assert_same(again[8:16, 0:8], data[8:16, 0:8])
            assert len(_shard_gets(url)) == 1, url.requests


def test_a_wrong_budget_is_refused():
    from zarrs_cffi.errors import ZarrsValueError

    with zarr.config.set({"codec_pipeline.shard_index_cache_bytes": -1}), pytest.raises(ZarrsValueError, match="shard_index_cache_bytes"):
        from zarrs_cffi._core import config

        config.shard_index_cache_bytes()


_REWRITE = """
import sys, numpy as np, zarr
endpoint, bucket, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
from zarr.storage import FsspecStore
store = FsspecStore.from_url(f"s3://{bucket}/a", storage_options={
    "key": "testing", "secret": "testing", "endpoint_url": endpoint, "client_kwargs": {"region_name": "us-east-1"}})
arr = zarr.open_array(store, mode="a")
arr[:] = np.full(arr.shape, seed, dtype=arr.dtype)
"""


def test_s3_shards_rewritten_by_another_process_or_this_array_are_read_anew(tmp_path):
    pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    from zarr.storage import ObjectStore

    data = make_data("uint16", SHAPE, seed=7)
    with moto_s3() as server:
        server.create_bucket("cache")
        with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
            store = ObjectStore(server.obstore("cache", prefix="a"))
            arr = zarr.create_array(store, shape=SHAPE, chunks=CHUNKS, shards=SHARDS, dtype="uint16")
            arr[:] = data
            assert python_io_reason(arr) is None
            assert_same(arr[0:8, 0:8], data[0:8, 0:8])
            assert _native(arr).shard_index_cache_usage()[0] == 1
            # Another process rewrites every shard (zarr's pipeline, through s3fs).
            subprocess.run([sys.executable, "-c", _REWRITE, server.endpoint, "cache", "11"], check=True)
            assert_same(arr[8:16, 0:8], np.full((8, 8), 11, dtype="uint16"))
            # This array rewrites part of a shard: its cached index is dropped, not reused.
            arr[0:8, 0:8] = 5
            expected = np.full(SHAPE, 11, dtype="uint16")
            expected[0:8, 0:8] = 5
            assert_same(arr[0:16, 0:8], expected[0:16, 0:8])
            assert_same(arr[:], expected)

"""Arrays written by one pipeline read identically through the other.

zarr's own BatchedCodecPipeline is the reference: whatever it writes, ZarrsCodecPipeline
reads (natively), and the reverse; the same writes leave the same keys in the store.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr
from conftest import ZARR_PIPELINE, ZARRS_PIPELINE, native_only, assert_same, make_data, stored_keys
from zarr.codecs import (
    BloscCodec, BytesCodec, Crc32cCodec, GzipCodec, ShardingCodec, TransposeCodec, VLenUTF8Codec, ZstdCodec,
)
from zarr.storage import LocalStore

import zarrs_cffi

# name -> zarr.create_array keyword arguments, for 2-D arrays with 4 x 4 chunks.
KINDS: dict[str, dict[str, Any]] = {
    "v3-bytes": {"compressors": None},
    "v3-big-endian": {"serializer": BytesCodec(endian="big"), "compressors": None},
    "v3-transpose": {"filters": [TransposeCodec(order=(1, 0))], "compressors": None},
    "v3-blosc": {"compressors": [BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle")]},
    "v3-gzip": {"compressors": [GzipCodec(level=1)]},
    "v3-zstd": {"compressors": [ZstdCodec(level=1)]},
    "v3-crc32c": {"compressors": [Crc32cCodec()]},
    "v3-sharding": {"shards": (8, 8), "compressors": [ZstdCodec(level=1)]},
    "v3-sharding-bytes": {"shards": (8, 4), "compressors": None},
    "v2-none": {"zarr_format": 2, "compressors": None},
    "v2-zstd": {"zarr_format": 2, "compressors": numcodecs.Zstd(level=1)},
    "v2-blosc": {"zarr_format": 2, "compressors": numcodecs.Blosc(cname="lz4", shuffle=numcodecs.Blosc.SHUFFLE)},
    "v2-gzip": {"zarr_format": 2, "compressors": numcodecs.GZip(level=1)},
}
# Encodings with no compression: both pipelines must produce the very same bytes.
UNCOMPRESSED = ["v3-bytes", "v3-big-endian", "v3-transpose", "v3-crc32c", "v2-none"]

SHAPE = (13, 10)
CHUNKS = (4, 4)


def _pipeline(name: str) -> Any:
    return zarr.config.set({"codec_pipeline.path": name})


@contextlib.contextmanager
def _native_if_ours(pipeline: str, *, reads: bool = False, writes: bool = False) -> Any:
    """Under our pipeline the block must be native, its bytes moved by the library itself
    (every array here is on a LocalStore; stats reset first); under zarr's, anything."""
    if pipeline != ZARRS_PIPELINE:
        yield
        return
    zarrs_cffi.reset_stats()
    with native_only(reads=reads, writes=writes):
        yield
    s = zarrs_cffi.stats()
    assert (s.python_io_reads, s.python_io_writes) == (0, 0), s


def _create(path: Path, kind: str, dtype: str, fill: Any = 0, **kwargs: Any) -> zarr.Array:
    return zarr.create_array(
        LocalStore(path), shape=SHAPE, chunks=CHUNKS, dtype=dtype, fill_value=fill, **KINDS[kind], **kwargs
    )


def _write_sequence(arr: zarr.Array, dtype: str, fill: Any) -> np.ndarray[Any, Any]:
    """Full, partial, scalar and fill-value writes; returns the expected contents."""
    expected = make_data(dtype, SHAPE, seed=20)
    arr[:] = expected
    patch = make_data(dtype, (4, 7), seed=21)
    arr[9:, 2:9] = patch
    expected[9:, 2:9] = patch
    arr[5, 5] = expected[0, 0]
    expected[5, 5] = expected[0, 0]
    arr[0:4, 0:4] = fill  # exactly one chunk, now all fill value
    expected[0:4, 0:4] = fill
    arr[4:8, 8:10] = fill  # the stored part of a partial edge chunk
    expected[4:8, 8:10] = fill
    arr[10:12, 0:3] = fill  # part of a chunk only
    expected[10:12, 0:3] = fill
    arr[3] = expected[12]
    expected[3] = expected[12]
    return expected


def _read_with(pipeline: str, path: Path, expected: np.ndarray[Any, Any]) -> None:
    with _pipeline(pipeline):
        arr = zarr.open_array(LocalStore(path), mode="r")
        with _native_if_ours(pipeline, reads=True):
            assert_same(arr[:], expected)
            assert_same(arr[3:11, 1:9], expected[3:11, 1:9])
            assert_same(arr[7], expected[7])


@pytest.mark.parametrize("dtype", ["uint16", "float64", "complex64"])
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize(
    ("writer", "reader"), [(ZARR_PIPELINE, ZARRS_PIPELINE), (ZARRS_PIPELINE, ZARR_PIPELINE)], ids=["zarr-to-zarrs", "zarrs-to-zarr"]
)
def test_written_by_one_read_by_the_other(tmp_path, kind, dtype, writer, reader):
    data = make_data(dtype, SHAPE, seed=22)
    with _pipeline(writer):
        arr = _create(tmp_path, kind, dtype)
        with _native_if_ours(writer, writes=True):
            arr[:] = data
            arr[2:7, 3:9] = data[7:12, 1:7]
    data[2:7, 3:9] = data[7:12, 1:7].copy()
    _read_with(reader, tmp_path, data)


@pytest.mark.parametrize("write_empty_chunks", [False, True])
@pytest.mark.parametrize("kind", list(KINDS))
def test_same_writes_give_same_keys_and_values(tmp_path, kind, write_empty_chunks):
    dtype = "int32"
    results = {}
    for pipeline in (ZARR_PIPELINE, ZARRS_PIPELINE):
        path = tmp_path / pipeline.rsplit(".", 1)[-1]
        with _pipeline(pipeline):
            arr = _create(path, kind, dtype, fill=0, config={"write_empty_chunks": write_empty_chunks})
            with _native_if_ours(pipeline, writes=True):
                expected = _write_sequence(arr, dtype, 0)
        results[pipeline] = (path, expected)
    (zarr_path, expected), (zarrs_path, _) = results[ZARR_PIPELINE], results[ZARRS_PIPELINE]
    assert stored_keys(zarrs_path) == stored_keys(zarr_path)
    for path in (zarr_path, zarrs_path):
        for pipeline in (ZARR_PIPELINE, ZARRS_PIPELINE):
            _read_with(pipeline, path, expected)


@pytest.mark.parametrize("fill", [0.0, np.nan])
@pytest.mark.parametrize("kind", ["v3-zstd", "v3-sharding", "v2-zstd"])
def test_same_keys_with_float_fill_values(tmp_path, kind, fill):
    results = {}
    for pipeline in (ZARR_PIPELINE, ZARRS_PIPELINE):
        path = tmp_path / pipeline.rsplit(".", 1)[-1]
        with _pipeline(pipeline):
            arr = _create(path, kind, "float32", fill=fill)
            with _native_if_ours(pipeline, writes=True):
                expected = _write_sequence(arr, "float32", fill)
        results[pipeline] = (path, expected)
    (zarr_path, expected), (zarrs_path, _) = results[ZARR_PIPELINE], results[ZARRS_PIPELINE]
    assert stored_keys(zarrs_path) == stored_keys(zarr_path)
    _read_with(ZARR_PIPELINE, zarrs_path, expected)
    _read_with(ZARRS_PIPELINE, zarr_path, expected)


@pytest.mark.parametrize("kind", UNCOMPRESSED)
def test_uncompressed_chunks_are_byte_identical(tmp_path, kind):
    paths = {}
    for pipeline in (ZARR_PIPELINE, ZARRS_PIPELINE):
        path = tmp_path / pipeline.rsplit(".", 1)[-1]
        with _pipeline(pipeline):
            arr = _create(path, kind, "float32", fill=0.0)
            with _native_if_ours(pipeline, writes=True):
                _write_sequence(arr, "float32", 0.0)
        paths[pipeline] = path
    keys = stored_keys(paths[ZARR_PIPELINE])
    assert stored_keys(paths[ZARRS_PIPELINE]) == keys
    for key in keys:
        if key.endswith(("zarr.json", ".zarray", ".zattrs")):
            continue
        ours = (paths[ZARRS_PIPELINE] / key).read_bytes()
        theirs = (paths[ZARR_PIPELINE] / key).read_bytes()
        assert ours == theirs, key


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("compressor", [None, numcodecs.Zstd(level=1)], ids=["none", "zstd"])
def test_v2_memory_order(tmp_path, order, compressor):
    # zarr v2 arrays record a memory order; "F" stores each chunk in Fortran order.
    data = make_data("int16", SHAPE, seed=23)
    for writer, reader in ((ZARR_PIPELINE, ZARRS_PIPELINE), (ZARRS_PIPELINE, ZARR_PIPELINE)):
        path = tmp_path / writer.rsplit(".", 1)[-1]
        with _pipeline(writer):
            arr = zarr.create_array(
                LocalStore(path), shape=SHAPE, chunks=CHUNKS, dtype="int16", fill_value=0,
                zarr_format=2, order=order, compressors=compressor,
            )
            with _native_if_ours(writer, writes=True):
                arr[:] = data
        _read_with(reader, path, data)


@pytest.mark.parametrize("index_location", ["start", "end"])
def test_shard_index_location(tmp_path, index_location):
    # zarr writes, we read whole and in part, we overwrite part, zarr reads it all back.
    data = make_data("uint16", (40, 30), seed=5)
    serializer = ShardingCodec(
        chunk_shape=(5, 5), codecs=[BytesCodec(), ZstdCodec(level=1)], index_location=index_location
    )
    with _pipeline(ZARR_PIPELINE):
        arr = zarr.create_array(LocalStore(tmp_path), shape=(40, 30), chunks=(20, 15), dtype="uint16", serializer=serializer)
        arr[:] = data
    with _pipeline(ZARRS_PIPELINE), native_only(reads=True, writes=True):
        ours = zarr.open_array(LocalStore(tmp_path))
        assert_same(ours[:], data)
        assert_same(ours[3:17, 4:9], data[3:17, 4:9])
        assert_same(ours[7, 2:28], data[7, 2:28])
        ours[12:33, 1:6] = 9
        data[12:33, 1:6] = 9
    with _pipeline(ZARR_PIPELINE):
        assert_same(zarr.open_array(LocalStore(tmp_path))[:], data)


@pytest.mark.parametrize("compressors", [None, "auto"], ids=["sharding", "sharding+zstd"])
@pytest.mark.parametrize(("outer", "inner"), [("end", "end"), ("start", "end"), ("end", "start")])
@pytest.mark.parametrize("dtype", ["uint16", "str"])
def test_nested_sharding_both_ways(tmp_path, dtype, outer, inner, compressors):
    # Sharding nested in sharding: our shard reader reads the inner shards, zarrs' sharding
    # codec encodes them. Each pipeline reads what the other wrote, whole, in part and
    # gathered, and a partial write of ours reads back through zarr's.
    if dtype == "str":
        data = np.array([f"v{i % 97}" * (i % 3) for i in range(40 * 30)], dtype=object).reshape(40, 30)
    else:
        data = make_data(dtype, (40, 30), seed=6)
    serializer = ShardingCodec(
        chunk_shape=(10, 5),
        codecs=[ShardingCodec(chunk_shape=(5, 5), codecs=[VLenUTF8Codec() if dtype == "str" else BytesCodec()], index_location=inner)],
        index_location=outer,
    )
    kwargs: dict[str, Any] = {"shape": (40, 30), "chunks": (20, 15), "serializer": serializer, "compressors": compressors}
    kwargs["dtype"] = str if dtype == "str" else dtype

    def same(got: Any, want: Any) -> None:
        if dtype == "str":  # zarr returns numpy's StringDType or objects, by version and route
            assert np.asarray(got).tolist() == np.asarray(want).tolist()
        else:
            assert_same(got, want)

    def native_if_ours(pipeline: str, **kinds: bool) -> Any:
        # Strings move through Python I/O by design (variable.py): native decoding is the point.
        return native_only(**kinds) if pipeline == ZARRS_PIPELINE else contextlib.nullcontext()

    for writer, reader in ((ZARR_PIPELINE, ZARRS_PIPELINE), (ZARRS_PIPELINE, ZARR_PIPELINE)):
        path = tmp_path / writer.rsplit(".", 1)[-1]
        with _pipeline(writer):
            arr = zarr.create_array(LocalStore(path), **kwargs)
            with native_if_ours(writer, writes=True):
                arr[:] = data
        with _pipeline(reader):
            arr = zarr.open_array(LocalStore(path))
            with native_if_ours(reader, reads=True):
                same(arr[:], data)
                same(arr[3:17, 4:9], data[3:17, 4:9])
                same(arr.oindex[[1, 22, 39], [0, 14, 29]], data[np.ix_([1, 22, 39], [0, 14, 29])])
    # Ours writes part of zarr's array; zarr reads it all back.
    path = tmp_path / "BatchedCodecPipeline"
    with _pipeline(ZARRS_PIPELINE), native_only(reads=True, writes=True):
        ours = zarr.open_array(LocalStore(path))
        ours[12:33, 1:6] = data[0:21, 10:15]
        data[12:33, 1:6] = data[0:21, 10:15].copy()
        same(ours[10:35, 0:8], data[10:35, 0:8])
    with _pipeline(ZARR_PIPELINE):
        same(zarr.open_array(LocalStore(path))[:], data)

"""Every fixed-size data type zarr 3.4 has runs natively, Zarr v2 and v3, and stores
exactly the bytes zarr's own pipeline stores.

zarrs decodes numbers, datetimes and fixed-length UTF-32 itself (converting byte order
where the array is big-endian); types zarrs lacks (null-terminated bytes, raw bytes,
structured, Zarr v2 datetimes) run as raw bits of the same size.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import zarr
from conftest import ZARR_PIPELINE, ZARRS_PIPELINE, assert_route
from zarr.storage import MemoryStore

import zarrs_cffi

N = 23


def _values(dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(7)
    if dtype.fields is not None:
        out = np.zeros(N, dtype=dtype)
        for name in dtype.names:
            out[name] = _values(dtype.fields[name][0])
        return out
    if dtype.kind in "mM":
        ints = rng.integers(-(10**12), 10**12, N)
        out = ints.astype(dtype.newbyteorder("=")).astype(dtype)
        out[3] = np.array("NaT", dtype=dtype)
        return out
    if dtype.kind == "U":
        words = ["", "a", "zarr", "é€😀", "xyz"]
        return np.array([words[i % len(words)][: dtype.itemsize // 4] for i in range(N)], dtype=dtype)
    if dtype.kind == "S":
        return np.array([bytes([65 + i % 26]) * (i % (dtype.itemsize + 1)) for i in range(N)], dtype=dtype)
    if dtype.kind == "V":
        return np.frombuffer(rng.bytes(N * dtype.itemsize), dtype=dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, N).astype(dtype)
    if dtype.kind in "iu":
        native = dtype.newbyteorder("=")
        info = np.iinfo(native)
        return rng.integers(info.min, info.max, N, endpoint=True, dtype=native).astype(dtype)
    if dtype.kind == "f":
        out = (rng.standard_normal(N) * 100).astype(dtype)
        out[:3] = [np.nan, -0.0, np.inf]
        return out
    if dtype.kind == "c":
        return (rng.standard_normal(N) + 1j * rng.standard_normal(N)).astype(dtype)
    raise AssertionError(dtype)


DTYPES = [
    "bool", "int8", "<i2", ">i2", "<u4", ">u8", "<f2", ">f4", "<f8", ">c8", "<c16",
    "<M8[ns]", ">M8[s]", "<m8[ms]", "<M8[D]",
    "<U1", "<U5", ">U3",
    "S1", "S7", "V3", "V16",
    [("x", "<i4"), ("y", "<f8")],
    [("x", ">i2"), ("name", "S3"), ("when", "<u8")],
]


def _ids(dtype: Any) -> str:
    return str(np.dtype(dtype)).replace(" ", "")


def _run(pipeline: str, dtype: np.dtype[Any], zarr_format: int, data: np.ndarray[Any, Any], **kwargs: Any):
    with zarr.config.set({"codec_pipeline.path": pipeline}), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some types have no stable v3 specification
        store = MemoryStore()
        arr = zarr.create_array(store, shape=(N,), chunks=(5,), dtype=dtype, zarr_format=zarr_format, **kwargs)
        arr[:] = data
        arr[7:12] = data[:5]  # partial chunks: read-modify-write
        arr[::4] = data[1]  # stepped: gathered around the chunk's box
        arr[20:] = arr.fill_value  # a chunk back to the fill value
        reads = (arr[:], arr[3:17], arr.oindex[[22, 0, 5]])
    return reads, {k: v.to_bytes() for k, v in store._store_dict.items()}


@pytest.mark.parametrize("zarr_format", [3, 2])
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_dtype_is_native_and_byte_identical(dtype, zarr_format):
    dtype = np.dtype(dtype)
    data = _values(dtype)
    kwargs: dict[str, Any] = {}
    zarrs_cffi.reset_stats()
    ours, ours_stored = _run(ZARRS_PIPELINE, dtype, zarr_format, data, **kwargs)
    assert_route(zarrs_cffi.stats(), native_io=False)  # MemoryStore: bytes through its API
    theirs, theirs_stored = _run(ZARR_PIPELINE, dtype, zarr_format, data, **kwargs)
    for got, expected in zip(ours, theirs, strict=True):
        assert got.dtype == expected.dtype
        assert got.tobytes() == expected.tobytes()
    assert ours_stored == theirs_stored


@pytest.mark.parametrize("dtype", ["<M8[ns]", ">i4", "S5", [("a", ">i4"), ("b", "<f4")]], ids=_ids)
def test_dtype_with_compression_and_sharding(dtype):
    dtype = np.dtype(dtype)
    data = _values(dtype)
    kwargs = {"compressors": zarr.codecs.ZstdCodec(level=3), "shards": (10,)}
    zarrs_cffi.reset_stats()
    ours, ours_stored = _run(ZARRS_PIPELINE, dtype, 3, data, **kwargs)
    assert_route(zarrs_cffi.stats(), native_io=False)
    theirs, theirs_stored = _run(ZARR_PIPELINE, dtype, 3, data, **kwargs)
    for got, expected in zip(ours, theirs, strict=True):
        assert got.tobytes() == expected.tobytes()
    assert ours_stored == theirs_stored


def test_v2_structured_with_datetime_field_goes_beyond_zarr():
    # zarr's own pipeline cannot encode this (numcodecs refuses datetime fields in a
    # buffer); as raw bits it round-trips natively.
    dtype = np.dtype([("x", ">i2"), ("when", "<M8[s]")])
    data = _values(dtype)
    with pytest.raises(ValueError, match="cannot include dtype"):
        _run(ZARR_PIPELINE, dtype, 2, data)
    zarrs_cffi.reset_stats()
    (everything, middle, picked), _ = _run(ZARRS_PIPELINE, dtype, 2, data)
    assert_route(zarrs_cffi.stats(), native_io=False)
    expected = data.copy()
    expected[7:12] = data[:5]
    expected[::4] = data[1]
    expected[20:] = np.zeros((), dtype=dtype)
    assert everything.tobytes() == expected.tobytes()
    assert middle.tobytes() == expected[3:17].tobytes()
    assert picked.tobytes() == expected[[22, 0, 5]].tobytes()


@pytest.mark.parametrize("dtype", ["V4", [("a", "<i2"), ("b", "S2")]], ids=_ids)
def test_v2_null_fill_value_reads_like_zarr(dtype):
    # Zarr v2 allows a null fill value; zarr reads missing chunks as the type's default.
    dtype = np.dtype(dtype)
    results = []
    for pipeline in (ZARRS_PIPELINE, ZARR_PIPELINE):
        zarrs_cffi.reset_stats()
        with zarr.config.set({"codec_pipeline.path": pipeline}):
            arr = zarr.create_array(MemoryStore(), shape=(6,), chunks=(3,), dtype=dtype, fill_value=None, zarr_format=2)
            arr[:3] = _values(dtype)[:3]
            results.append(arr[:])
        if pipeline == ZARRS_PIPELINE:
            assert_route(zarrs_cffi.stats(), native_io=False)
    assert results[0].tobytes() == results[1].tobytes()


# --- variable-length types -----------------------------------------------------------------

TEXT = ["", "a", "zarr", "é€😀", "x" * 40, "tab\there", "NUL\x00inside"]


def _vlen(kind: str, n: int) -> np.ndarray[Any, Any]:
    if kind == "string":
        return np.array([TEXT[i % len(TEXT)] + str(i) * (i % 3) for i in range(n)], dtype=np.dtypes.StringDType())
    out = np.empty(n, dtype=object)
    out[:] = [bytes(range(i % 7)) + b"\xff" * (i % 4) for i in range(n)]
    return out


def _run_vlen(pipeline: str, kind: str, zarr_format: int, store: Any, data: np.ndarray[Any, Any], **kwargs: Any):
    dtype = "str" if kind == "string" else "bytes"
    with zarr.config.set({"codec_pipeline.path": pipeline}), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = zarr.create_array(store, shape=data.shape, chunks=(3, 4), dtype=dtype, zarr_format=zarr_format, **kwargs)
        arr[:] = data
        arr[1:5, 2:7] = data[:4, :5]  # partial chunks: old chunks decoded natively
        arr[::3, 1] = data[0, 0]  # stepped, one value
        arr.vindex[[0, 7], [0, 9]] = data[1, 1:3]
        arr[6:, 8:] = arr.fill_value  # a whole chunk back to the fill value: deleted
        return arr[:], arr[2:7, 3:9], arr.oindex[[7, 0, 2], ::2], arr.vindex[[1, 6], [9, 0]], arr[4, 5]


# zarr 3.4 cannot create Zarr v2 arrays of variable-length bytes ("length must be >= 1").
@pytest.mark.parametrize(("kind", "zarr_format"), [("string", 3), ("string", 2), ("bytes", 3)])
@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "zstd"])
def test_variable_length_types_are_native_and_byte_identical(kind, zarr_format, compressed):
    data = _vlen(kind, 8 * 10).reshape(8, 10)
    kwargs: dict[str, Any] = {}
    if compressed:
        kwargs["compressors"] = zarr.codecs.ZstdCodec(level=2) if zarr_format == 3 else numcodecs_zstd()
    stores = (MemoryStore(), MemoryStore())
    zarrs_cffi.reset_stats()
    ours = _run_vlen(ZARRS_PIPELINE, kind, zarr_format, stores[0], data, **kwargs)
    assert_route(zarrs_cffi.stats(), native_io=False)
    theirs = _run_vlen(ZARR_PIPELINE, kind, zarr_format, stores[1], data, **kwargs)
    for got, expected in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(got, expected)
        assert np.asarray(got).dtype == np.asarray(expected).dtype
    assert {k: v.to_bytes() for k, v in stores[0]._store_dict.items()} == {
        k: v.to_bytes() for k, v in stores[1]._store_dict.items()
    }


def numcodecs_zstd() -> Any:
    import numcodecs

    return numcodecs.Zstd(level=2)


def test_variable_length_strings_on_a_local_sharded_array(tmp_path):
    from zarr.storage import LocalStore

    data = _vlen("string", 12 * 10).reshape(12, 10)
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        zarrs_cffi.reset_stats()
        arr = zarr.create_array(LocalStore(tmp_path), shape=data.shape, chunks=(2, 5), shards=(4, 10), dtype="str")
        arr[:] = data
        arr[5, 3:8] = "changed"
        data[5, 3:8] = "changed"
        np.testing.assert_array_equal(arr[:], data)
        np.testing.assert_array_equal(arr.oindex[[11, 0], [9, 0]], data[np.ix_([11, 0], [9, 0])])
        # Variable-length chunks always move through the store's Python API.
        assert arr.async_array.codec_pipeline.native.python_io == "variable-length data type"
        assert_route(zarrs_cffi.stats(), native_io=False)
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        np.testing.assert_array_equal(zarr.open_array(LocalStore(tmp_path), mode="r")[:], data)

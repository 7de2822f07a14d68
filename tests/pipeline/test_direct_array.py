"""The direct API, ``zarrs_cffi.Array``, on arrays written by zarr and read back by zarr."""

from __future__ import annotations

import warnings

import json
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr
from conftest import NATIVE_DTYPES, assert_same, chunk_keys, make_data
from zarr.codecs import ZstdCodec
from zarr.storage import LocalStore

import zarrs_cffi
from zarrs_cffi import Array
from zarrs_cffi._bindings import Options

SHAPE = (10, 12)
CHUNKS = (4, 5)

LAYOUTS: dict[str, dict[str, Any]] = {
    "v3": {"compressors": [ZstdCodec(level=1)]},
    "v3-sharding": {"shards": (8, 10), "compressors": None},
    "v2": {"zarr_format": 2, "compressors": numcodecs.Zstd(level=1)},
}


# The arrays in these tests are written and checked with zarr's own pipeline.
pytestmark = pytest.mark.usefixtures("zarr_pipeline")


def _zarr_array(path: Any, dtype: Any = "int32", layout: str = "v3", shape: tuple[int, ...] = SHAPE, **kwargs: Any) -> tuple[zarr.Array, np.ndarray[Any, Any]]:
    data = make_data(dtype, shape, seed=60)
    arr = zarr.create_array(LocalStore(path), shape=shape, chunks=CHUNKS[: len(shape)], dtype=dtype, **LAYOUTS[layout], **kwargs)
    arr[...] = data
    return arr, data


# --- opening and properties ----------------------------------------------------------------


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_properties(tmp_path, layout):
    _zarr_array(tmp_path, "float64", layout)
    arr = Array.open(tmp_path)
    assert arr.shape == SHAPE
    assert arr.ndim == 2
    assert arr.dtype == np.dtype("float64")
    # With sharding, the chunks of the grid are the shards.
    assert arr.chunks == ((8, 10) if layout == "v3-sharding" else CHUNKS)
    assert arr.chunk_grid_shape == ((2, 2) if layout == "v3-sharding" else (3, 3))
    assert repr(arr) == f"<zarrs_cffi.Array shape={SHAPE} dtype=float64 chunks={arr.chunks}>"


@pytest.mark.parametrize("dtype", NATIVE_DTYPES)
def test_every_dtype_reads_like_zarr(tmp_path, dtype):
    zarr_arr, data = _zarr_array(tmp_path, dtype)
    arr = Array.open(tmp_path)
    assert arr.dtype == np.dtype(dtype)
    assert_same(arr[:], data)
    assert_same(arr.read(), zarr_arr[:])


def test_metadata(tmp_path):
    _zarr_array(tmp_path, "float32", attributes={"answer": 42})
    stored = json.loads((tmp_path / "zarr.json").read_text())
    metadata = Array.open(tmp_path).metadata
    for key in ("zarr_format", "node_type", "shape", "data_type", "chunk_grid", "chunk_key_encoding", "fill_value", "attributes"):
        assert metadata[key] == stored[key], key
    assert [c["name"] for c in metadata["codecs"]] == [c["name"] for c in stored["codecs"]]


def test_metadata_v2(tmp_path):
    _zarr_array(tmp_path, "int16", "v2")
    stored = json.loads((tmp_path / ".zarray").read_text())
    metadata = Array.open(tmp_path).metadata
    for key in ("zarr_format", "shape", "chunks", "dtype", "fill_value", "order", "compressor"):
        assert metadata[key] == stored[key], key


@pytest.mark.parametrize(
    ("layout", "kwargs", "expected"),
    [
        ("v3", {}, "c/1/2"),
        ("v3", {"chunk_key_encoding": {"name": "default", "separator": "."}}, "c.1.2"),
        ("v3", {"chunk_key_encoding": {"name": "v2", "separator": "."}}, "1.2"),
        ("v2", {}, "1.2"),
        ("v2", {"chunk_key_encoding": {"name": "v2", "separator": "/"}}, "1/2"),
    ],
    ids=["v3-default", "v3-dot", "v3-v2-encoding", "v2", "v2-slash"],
)
def test_chunk_key(tmp_path, layout, kwargs, expected):
    zarr_arr, _ = _zarr_array(tmp_path, "int32", layout, **kwargs)
    arr = Array.open(tmp_path)
    assert arr.chunk_key((1, 2)) == expected
    assert expected in chunk_keys(tmp_path)
    assert zarr_arr.metadata.encode_chunk_key((1, 2)) == expected


def test_open_an_array_inside_a_group(tmp_path):
    group = zarr.open_group(LocalStore(tmp_path), mode="w")
    sub = group.create_array("inner/data", shape=(6,), chunks=(4,), dtype="uint8")
    sub[:] = np.arange(6, dtype="uint8")
    # zarrs node paths are absolute.
    assert_same(Array.open(tmp_path, "/inner/data")[:], np.arange(6, dtype="uint8"))


def test_open_with_options(tmp_path):
    _, data = _zarr_array(tmp_path, "int64")
    options = Options(num_threads=1, chunk_concurrent_maximum=1)
    arr = Array.open(tmp_path, options=options)
    assert arr.options is options
    assert_same(arr[:], data)


# --- reads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize(
    "key",
    [
        (),
        (Ellipsis,),
        (slice(None),),
        (slice(3, 9),),
        (slice(3, 9), slice(1, 11)),
        (slice(-4, None), slice(None, -3)),
        (3,),
        (-1,),
        (3, slice(5, 9)),
        (slice(2, 10), 7),
        (3, 5),
        (-1, -1),
        (Ellipsis, 4),
        (slice(5, 5),),
        (slice(8, 100),),  # clipped, like numpy
    ],
    ids=repr,
)
def test_read_regions_like_numpy(tmp_path, layout, key):
    _, data = _zarr_array(tmp_path, "float32", layout)
    arr = Array.open(tmp_path)
    expected = data[key] if key else data
    got = arr[key] if key else arr.read()
    assert isinstance(got, np.ndarray)
    assert_same(got, np.asarray(expected))


@pytest.mark.parametrize(
    ("key", "shape"),
    [((), SHAPE), ((slice(3, 9), slice(1, 11)), (6, 10)), ((3,), (12,)), ((3, 5), ()), ((slice(2, 10), 7), (8,))],
    ids=repr,
)
def test_read_into_out(tmp_path, key, shape):
    _, data = _zarr_array(tmp_path, "uint16")
    arr = Array.open(tmp_path)
    out = np.zeros(shape, dtype="uint16")
    assert arr.read(key, out=out) is out
    assert_same(out, np.asarray(data[key] if key else data))


def test_read_into_out_views_only_its_region(tmp_path):
    _, data = _zarr_array(tmp_path, "int32")
    arr = Array.open(tmp_path)
    big = np.full((5, 12), -1, dtype="int32")
    # A C-contiguous view: whole rows of a larger buffer.
    view = big[1:3]
    assert view.flags.c_contiguous and view.base is big
    assert arr.read((slice(2, 4),), out=view) is view
    assert_same(big[1:3], data[2:4])
    assert (big[0] == -1).all() and (big[3:] == -1).all()


def test_read_unwritten_array_gives_fill_value(tmp_path):
    zarr.create_array(LocalStore(tmp_path), shape=SHAPE, chunks=CHUNKS, dtype="float32", fill_value=np.nan)
    arr = Array.open(tmp_path)
    assert_same(arr[:], np.full(SHAPE, np.nan, dtype="float32"))


# --- writes --------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_writes_are_read_by_zarr(tmp_path, layout):
    zarr_arr, data = _zarr_array(tmp_path, "int64", layout)
    arr = Array.open(tmp_path)
    patch = make_data("int64", (6, 9), seed=61)
    arr[2:8, 1:10] = patch
    data[2:8, 1:10] = patch
    arr.write((slice(0, 1), slice(None)), np.arange(12))
    data[0:1, :] = np.arange(12)
    arr[9] = -5  # a scalar over a row
    data[9] = -5
    arr[4, 11] = 123  # one element
    data[4, 11] = 123
    arr[:, 0] = np.arange(10) * 2  # an integer-indexed column
    data[:, 0] = np.arange(10) * 2
    arr[5] = np.arange(12) + 1000  # a whole row through an integer index
    data[5] = np.arange(12) + 1000
    assert_same(zarr_arr[:], data)
    assert_same(arr[:], data)


def test_write_empty_regions_is_a_no_op(tmp_path):
    zarr_arr, data = _zarr_array(tmp_path, "int32")
    arr = Array.open(tmp_path)
    arr[5:5] = 1
    arr[:, 3:3] = np.zeros((10, 0), dtype="int32")
    assert_same(zarr_arr[:], data)


def test_v2_fortran_order(tmp_path):
    # Chunks stored in Fortran order; the direct API reads and writes C-order numpy arrays.
    zarr_arr = zarr.create_array(
        LocalStore(tmp_path), shape=SHAPE, chunks=CHUNKS, dtype="int32", fill_value=0,
        zarr_format=2, order="F", compressors=numcodecs.Zstd(level=1),
    )
    data = make_data("int32", SHAPE, seed=64)
    zarr_arr[:] = data
    arr = Array.open(tmp_path)
    assert_same(arr[:], data)
    assert_same(arr[2:7, 3:11], data[2:7, 3:11])
    assert_same(arr.read_chunk((1, 1)), data[4:8, 5:10])
    arr[1:3, 2:9] = -1
    data[1:3, 2:9] = -1
    assert_same(zarr_arr[:], data)


def test_write_converts_values(tmp_path):
    zarr_arr, data = _zarr_array(tmp_path, "float32")
    arr = Array.open(tmp_path)
    arr[0:2, 0:3] = [[1, 2, 3], [4, 5, 6]]  # a nested list of ints
    data[0:2, 0:3] = [[1, 2, 3], [4, 5, 6]]
    arr[3:5] = np.arange(12, dtype="float64")  # float64, broadcast over two rows
    data[3:5] = np.arange(12)
    assert_same(zarr_arr[:], data)


def test_zero_dimensional(tmp_path):
    zarr_arr = zarr.create_array(LocalStore(tmp_path), shape=(), dtype="int8", fill_value=3)
    arr = Array.open(tmp_path)
    assert (arr.shape, arr.ndim, arr.chunks, arr.chunk_key(())) == ((), 0, (), "c")
    assert_same(arr[()], np.array(3, dtype="int8"))
    arr[()] = 5
    assert zarr_arr[()] == 5
    arr.write((), -7)
    assert_same(arr.read(), np.array(-7, dtype="int8"))
    assert zarr_arr[()] == -7


# --- whole chunks --------------------------------------------------------------------------


def test_read_write_erase_chunk(tmp_path):
    zarr_arr, data = _zarr_array(tmp_path, "int32", fill_value=-1)
    arr = Array.open(tmp_path)
    assert_same(arr.read_chunk((1, 1)), data[4:8, 5:10])
    # An edge chunk is decoded whole: the part beyond the array is padding.
    edge = arr.read_chunk((2, 2))
    assert edge.shape == CHUNKS
    assert_same(edge[:2, :2], data[8:10, 10:12])
    out = np.empty(CHUNKS, dtype="int32")
    assert arr.read_chunk((0, 1), out=out) is out
    assert_same(out, data[0:4, 5:10])

    new = np.arange(20, dtype="int32").reshape(CHUNKS)
    arr.write_chunk((1, 1), new)
    data[4:8, 5:10] = new
    assert_same(zarr_arr[:], data)

    assert "c/2/0" in chunk_keys(tmp_path)
    arr.erase_chunk((2, 0))
    assert "c/2/0" not in chunk_keys(tmp_path)
    data[8:10, 0:5] = -1
    assert_same(zarr_arr[:], data)
    assert_same(arr.read_chunk((2, 0)), np.full(CHUNKS, -1, dtype="int32"))
    arr.erase_chunk((2, 0))  # erasing a missing chunk is fine


def test_write_chunk_of_fill_value_erases_it(tmp_path):
    _zarr_array(tmp_path, "int32", fill_value=0)
    arr = Array.open(tmp_path)
    arr.write_chunk((0, 0), np.zeros(CHUNKS, dtype="int32"))
    assert "c/0/0" not in chunk_keys(tmp_path)
    stored = Array.open(tmp_path, options=Options(store_empty_chunks=True))
    stored.write_chunk((0, 0), np.zeros(CHUNKS, dtype="int32"))
    assert "c/0/0" in chunk_keys(tmp_path)


def test_sharded_chunks_are_shards(tmp_path):
    zarr_arr, data = _zarr_array(tmp_path, "uint8", "v3-sharding")
    arr = Array.open(tmp_path)
    assert_same(arr.read_chunk((0, 0)), data[0:8, 0:10])
    arr.write_chunk((0, 1), np.full((8, 10), 9, dtype="uint8"))
    data[0:8, 10:] = 9
    assert_same(zarr_arr[:], data)
    assert arr.chunk_key((1, 1)) == "c/1/1"


# --- creating arrays -----------------------------------------------------------------------


def _v3_metadata(**overrides: Any) -> dict[str, Any]:
    metadata = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [9, 7],
        "data_type": "float64",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4, 3]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 1.5,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "gzip", "configuration": {"level": 1}}],
        "attributes": {"made_by": "zarrs_cffi"},
    }
    metadata.update(overrides)
    return metadata


@pytest.mark.parametrize("as_text", [False, True], ids=["dict", "json"])
def test_create_then_zarr_reads(tmp_path, as_text):
    metadata = _v3_metadata()
    arr = Array.create(tmp_path, json.dumps(metadata) if as_text else metadata)
    assert (arr.shape, arr.chunks, arr.dtype) == ((9, 7), (4, 3), np.dtype("float64"))
    data = make_data("float64", (9, 7), seed=62)
    arr[:] = data
    arr[0:2, 0:2] = 1.5  # the fill value: chunk c/0/0 still has other values
    data[0:2, 0:2] = 1.5
    zarr_arr = zarr.open_array(LocalStore(tmp_path), mode="r")
    assert zarr_arr.shape == (9, 7)
    assert zarr_arr.fill_value == 1.5
    assert zarr_arr.attrs["made_by"] == "zarrs_cffi"
    assert_same(zarr_arr[:], data)
    assert (tmp_path / "zarr.json").exists()


def test_create_v2(tmp_path):
    metadata = {
        "zarr_format": 2,
        "shape": [9, 7],
        "chunks": [4, 3],
        "dtype": "<i2",
        "compressor": {"id": "zstd", "level": 1},
        "fill_value": 0,
        "order": "C",
        "filters": None,
    }
    arr = Array.create(tmp_path, metadata)
    data = make_data("int16", (9, 7), seed=63)
    arr[:] = data
    assert_same(zarr.open_array(LocalStore(tmp_path), mode="r")[:], data)
    assert "0.0" in chunk_keys(tmp_path)


def test_create_at_a_path(tmp_path):
    arr = Array.create(tmp_path, _v3_metadata(), "/nested/array")
    arr[:] = 2.0
    zarr_arr = zarr.open_array(LocalStore(tmp_path), path="nested/array", mode="r")
    assert_same(zarr_arr[:], np.full((9, 7), 2.0))
    assert_same(Array.open(tmp_path, "/nested/array")[:], np.full((9, 7), 2.0))


def test_create_unwritten_reads_fill(tmp_path):
    Array.create(tmp_path, _v3_metadata())
    assert_same(zarr.open_array(LocalStore(tmp_path), mode="r")[:], np.full((9, 7), 1.5))
    assert chunk_keys(tmp_path) == set()


def test_create_rejects_invalid_metadata(tmp_path):
    with pytest.raises(zarrs_cffi.ZarrsError):
        Array.create(tmp_path, _v3_metadata(shape="nine by seven"))
    with pytest.raises(zarrs_cffi.ZarrsError):
        Array.create(tmp_path, "{ not json")


def test_a_data_type_it_cannot_take_is_refused_at_open_naming_it(tmp_path):
    # Null-terminated bytes: zarrs lacks the type, and a transpose depends on the element
    # type, so the chunks cannot be read as raw bits either.
    from zarr.codecs import TransposeCodec

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr: no Zarr v3 specification for this type
        zarr.create_array(LocalStore(tmp_path), shape=(4, 2), chunks=(2, 2), dtype="S4", filters=[TransposeCodec(order=(1, 0))])
    with pytest.raises(zarrs_cffi.ZarrsUnsupportedError, match="data type .*S4"):
        Array.open(tmp_path)


@pytest.mark.parametrize("array_path", ["inner/data", "/inner/data", "inner/data/"])
def test_open_accepts_relative_and_absolute_node_paths(tmp_path: Path, array_path: str) -> None:
    group = zarr.open_group(zarr.storage.LocalStore(tmp_path), mode="w")
    written = group.create_array("inner/data", shape=(5,), chunks=(2,), dtype="int32")
    written[:] = np.arange(5, dtype="int32")
    np.testing.assert_array_equal(Array.open(tmp_path, array_path)[:], np.arange(5, dtype="int32"))


def test_options_are_public_and_apply(tmp_path: Path) -> None:
    written = zarr.create_array(zarr.storage.LocalStore(tmp_path), shape=(8,), chunks=(4,), dtype="uint8")
    written[:] = np.arange(8, dtype="uint8")
    array = Array.open(tmp_path, options=zarrs_cffi.Options(num_threads=1))
    assert array.options.num_threads == 1
    np.testing.assert_array_equal(array[:], np.arange(8, dtype="uint8"))


# --- buffers handed to the native side ------------------------------------------------------


def test_out_rejects_object_arrays_and_other_dtypes(tmp_path: Path) -> None:
    # int64: 8-byte elements, the size of a PyObject pointer, so only the dtype can tell.
    _, data = _zarr_array(tmp_path, "int64")
    arr = Array.open(tmp_path)
    for out in (np.empty(CHUNKS, dtype=object), np.empty(CHUNKS, dtype="float64"), np.empty(CHUNKS, dtype="uint64")):
        with pytest.raises(zarrs_cffi.ZarrsValueError, match="out has dtype"):
            arr.read_chunk((0, 0), out=out)
        with pytest.raises(zarrs_cffi.ZarrsValueError, match="out has dtype"):
            arr.read((slice(0, 4), slice(0, 5)), out=out)
    with pytest.raises(zarrs_cffi.ZarrsValueError, match="out has shape"):
        arr.read_chunk((0, 0), out=np.empty((5, 4), dtype="int64"))
    with pytest.raises(TypeError, match="numpy array"):
        arr.read_chunk((0, 0), out=[0] * 20)  # type: ignore[arg-type]
    # Object values are converted element by element, never passed on as pointers.
    values = np.arange(20).reshape(CHUNKS).astype(object)
    arr.write_chunk((1, 1), values)
    arr[0:4, 0:5] = values
    assert_same(arr.read_chunk((1, 1)), np.arange(20, dtype="int64").reshape(CHUNKS))
    assert_same(arr[0:4, 0:5], np.arange(20, dtype="int64").reshape(CHUNKS))
    with pytest.raises(zarrs_cffi.ZarrsValueError, match="value cannot be converted"):
        arr.write_chunk((1, 1), np.full(CHUNKS, object()))
    del data


def test_bindings_reject_object_buffers(tmp_path: Path) -> None:
    from zarrs_cffi._bindings import ChunkBatch, ArrayHandle, Storage

    _zarr_array(tmp_path, "int64")
    native = ArrayHandle.open(Storage.filesystem(str(tmp_path)))
    options = Options()
    objects = np.empty(CHUNKS, dtype=object)
    geometry = np.array([[CHUNKS, (0, 0), CHUNKS, (0, 0)]], dtype=np.uint64)
    batch = ChunkBatch.build(["c/0/0"], geometry)
    calls = {
        "retrieve_chunk": lambda: native.retrieve_chunk(options, (0, 0), objects),
        "store_chunk": lambda: native.store_chunk(options, (0, 0), objects),
        "retrieve_subset": lambda: native.retrieve_subset(options, (0, 0), objects),
        "store_subset": lambda: native.store_subset(options, (0, 0), objects),
        "read_chunks": lambda: native.read_chunks(options, batch, objects),
        "write_chunks": lambda: native.write_chunks(options, batch, objects),
        "decode_chunks": lambda: native.decode_chunks(options, batch, [None], objects),
        "encode_chunks": lambda: native.encode_chunks(options, batch, objects),
    }
    for name, call in calls.items():
        with pytest.raises(zarrs_cffi.ZarrsValueError, match="holds Python objects"):
            call()
        assert objects[0, 0] is None, name


def test_region_calls_refuse_coordinates_of_another_dimensionality(tmp_path):
    # The C calls read ``ndim`` start and shape values: fewer given must never reach them.
    _zarr_array(tmp_path / "a.zarr")
    native, options = Array.open(tmp_path / "a.zarr")._native, Options()
    assert native.ndim == 2
    flat = np.zeros(4, dtype="int32")
    square = np.zeros((2, 2), dtype="int32")
    for call in (native.retrieve_subset, native.store_subset):
        with pytest.raises(zarrs_cffi.ZarrsValueError, match="needs 2 start values"):
            call(options, (0,), square)
        with pytest.raises(zarrs_cffi.ZarrsValueError, match="2-dimensional buffer"):
            call(options, (0, 0), flat)
        with pytest.raises(zarrs_cffi.ZarrsValueError, match="integers from 0"):
            call(options, (-1, 0), square)

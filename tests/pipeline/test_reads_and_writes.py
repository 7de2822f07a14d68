"""ZarrsCodecPipeline reads and writes natively, with results identical to numpy.

Every test here claims native handling: it asserts that chunks went through the native
library (``expect_native``) and that nothing fell back to zarr's own pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import numpy as np
import pytest
import zarr
from conftest import (
    NATIVE_DTYPES,
    ZARR_PIPELINE,
    ZARRS_PIPELINE,
    assert_no_fallback,
    assert_same,
    chunk_keys,
    make_data,
    native_only,
)
from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec, TransposeCodec, ZstdCodec
from zarr.errors import ChunkNotFoundError
from zarr.storage import LocalStore

import zarrs_cffi


@pytest.fixture
def expect_native(zarrs_pipeline: None) -> Any:
    """conftest's ``expect_native``, and more: every array here is on a LocalStore, so the
    library moves the bytes itself (no chunk through the store's Python API)."""

    @contextlib.contextmanager
    def native_io(*, reads: bool = False, writes: bool = False) -> Any:
        before = zarrs_cffi.stats()
        with native_only(reads=reads, writes=writes):
            yield
        after = zarrs_cffi.stats()
        moved = (after.python_io_reads - before.python_io_reads, after.python_io_writes - before.python_io_writes)
        assert moved == (0, 0), after

    return native_io


def codec_kwargs(codec: str, chunks: tuple[int, ...]) -> dict[str, Any]:
    """``zarr.create_array`` keyword arguments selecting one codec configuration."""
    ndim = len(chunks)
    if codec == "bytes":
        return {"filters": None, "compressors": None}
    if codec == "transpose":
        # Reverse the axes: the on-disk chunk layout differs from the in-memory one.
        return {"filters": [TransposeCodec(order=tuple(reversed(range(ndim))))], "compressors": None}
    if codec == "blosc":
        return {"compressors": [BloscCodec(cname="lz4", clevel=3, shuffle="shuffle")]}
    if codec == "gzip":
        return {"compressors": [GzipCodec(level=1)]}
    if codec == "zstd":
        return {"compressors": [ZstdCodec(level=1)]}
    if codec == "crc32c":
        return {"compressors": [Crc32cCodec()]}
    if codec == "sharding":
        # Two inner chunks per shard along each axis, with zstd inside.
        return {"shards": tuple(2 * c for c in chunks), "compressors": [ZstdCodec(level=1)]}
    raise ValueError(codec)


CODECS = ["bytes", "transpose", "blosc", "gzip", "zstd", "crc32c", "sharding"]


def create(path: Any, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: Any, codec: str = "bytes", **kwargs: Any) -> zarr.Array:
    return zarr.create_array(
        LocalStore(path), shape=shape, chunks=chunks, dtype=dtype, **codec_kwargs(codec, chunks), **kwargs
    )


# --- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("dtype", NATIVE_DTYPES)
def test_round_trip_every_dtype_and_codec(tmp_path, expect_native, dtype, codec):
    # 13 x 7 with 4 x 3 chunks: the last chunk along each axis is partial.
    data = make_data(dtype, (13, 7), seed=1)
    arr = create(tmp_path, data.shape, (4, 3), dtype, codec)
    with expect_native(writes=True):
        arr[:] = data
    with expect_native(reads=True):
        assert_same(arr[:], data)
        assert_same(arr[2:11, 1:6], data[2:11, 1:6])
        assert_same(arr[12:, 6:], data[12:, 6:])


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize(
    ("shape", "chunks"),
    [
        ((50,), (7,)),
        ((3,), (10,)),  # one chunk larger than the array
        ((9, 10, 11), (4, 3, 5)),
        ((5, 1, 6), (2, 1, 4)),
    ],
    ids=["1d", "1d-big-chunk", "3d", "3d-unit-axis"],
)
def test_round_trip_dimensions(tmp_path, expect_native, codec, shape, chunks):
    data = make_data("float32", shape, seed=2)
    arr = create(tmp_path, shape, chunks, "float32", codec)
    with expect_native(writes=True):
        arr[...] = data
    region = tuple(slice(n // 3, n - n // 4) for n in shape)
    with expect_native(reads=True):
        assert_same(arr[...], data)
        assert_same(arr[region], data[region])


@pytest.mark.parametrize("codec", ["bytes", "zstd", "crc32c"])
@pytest.mark.parametrize("dtype", ["int64", "float64", "complex64", "bool"])
def test_zero_dimensional(tmp_path, expect_native, codec, dtype):
    value = make_data(dtype, (), seed=3)
    fill = np.zeros((), dtype=dtype)
    arr = zarr.create_array(LocalStore(tmp_path), shape=(), dtype=dtype, fill_value=fill[()], **codec_kwargs(codec, ()))
    with expect_native(reads=True):
        assert_same(arr[...], fill)
        assert_same(arr[()], fill)
    with expect_native(writes=True):
        arr[()] = value
    with expect_native(reads=True):
        assert_same(arr[()], value)
        assert_same(arr[...], value)
    assert chunk_keys(tmp_path) == {"c"}


# --- partial and scalar writes -----------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_partial_write_keeps_rest_of_each_chunk(tmp_path, expect_native, codec):
    data = make_data("int32", (20, 20), seed=4)
    arr = create(tmp_path, data.shape, (6, 6), "int32", codec, fill_value=0)
    with expect_native(writes=True):
        arr[:] = data
    # Touches 3 x 3 chunks, each only in part.
    region = (slice(3, 14), slice(5, 17))
    patch = make_data("int32", (11, 12), seed=5)
    with expect_native(writes=True):
        arr[region] = patch
    expected = data.copy()
    expected[region] = patch
    with expect_native(reads=True):
        assert_same(arr[:], expected)


@pytest.mark.parametrize("codec", ["bytes", "zstd", "sharding"])
def test_partial_write_into_unwritten_chunks_fills_the_rest(tmp_path, expect_native, codec):
    arr = create(tmp_path, (20, 20), (6, 6), "int16", codec, fill_value=-3)
    patch = make_data("int16", (11, 12), seed=6)
    with expect_native(writes=True):
        arr[3:14, 5:17] = patch
    expected = np.full((20, 20), -3, dtype="int16")
    expected[3:14, 5:17] = patch
    with expect_native(reads=True):
        assert_same(arr[:], expected)


@pytest.mark.parametrize("codec", ["bytes", "transpose", "sharding"])
def test_scalar_writes(tmp_path, expect_native, codec):
    arr = create(tmp_path, (10, 12), (4, 5), "float64", codec, fill_value=0.0)
    expected = np.zeros((10, 12))
    with expect_native(writes=True):
        arr[2, 3] = 9.5
        expected[2, 3] = 9.5
        arr[1:7, 2:11] = -4.25  # a scalar broadcast over several chunks
        expected[1:7, 2:11] = -4.25
        arr[5] = np.inf  # a whole row
        expected[5] = np.inf
        arr[:, 11] = np.nan
        expected[:, 11] = np.nan
    with expect_native(reads=True):
        assert_same(arr[:], expected)
        assert arr[2, 3] == expected[2, 3]
    with expect_native(writes=True):
        arr[...] = 1.0
    with expect_native(reads=True):
        assert_same(arr[...], np.ones((10, 12)))


# --- integer indexing --------------------------------------------------------------------


def test_integer_indexing_reads_2d(tmp_path, expect_native):
    data = make_data("uint32", (10, 12), seed=7)
    arr = create(tmp_path, data.shape, (4, 5), "uint32", "zstd")
    arr[:] = data
    with expect_native(reads=True):
        assert_same(arr[3], data[3])
        assert_same(arr[3, 5:9], data[3, 5:9])
        assert_same(arr[-1], data[-1])
        assert_same(arr[:, 7], data[:, 7])
        assert_same(arr[2:9, -2], data[2:9, -2])
        assert arr[3, 5] == data[3, 5]
        assert_same(np.asarray(arr[-1, -1]), np.asarray(data[-1, -1]))


def test_integer_indexing_reads_3d(tmp_path, expect_native):
    data = make_data("int8", (6, 7, 8), seed=8)
    arr = create(tmp_path, data.shape, (4, 3, 5), "int8", "sharding")
    arr[:] = data
    with expect_native(reads=True):
        assert_same(arr[1], data[1])
        assert_same(arr[1, :, 2], data[1, :, 2])
        assert_same(arr[:, 5, 1:7], data[:, 5, 1:7])
        assert_same(arr[5, 6], data[5, 6])
        assert arr[1, 2, 3] == data[1, 2, 3]


@pytest.mark.parametrize("codec", ["bytes", "transpose", "sharding"])
def test_integer_indexing_writes(tmp_path, expect_native, codec):
    arr = create(tmp_path, (10, 12), (4, 5), "int64", codec, fill_value=0)
    expected = np.zeros((10, 12), dtype="int64")
    row = np.arange(12, dtype="int64") + 100
    part = np.array([-1, -2, -3, -4], dtype="int64")
    col = np.arange(10, dtype="int64") * 7
    with expect_native(writes=True):
        arr[3] = row
        expected[3] = row
        arr[3, 5:9] = part
        expected[3, 5:9] = part
        arr[:, 2] = col
        expected[:, 2] = col
        arr[-1, 4:] = 42
        expected[-1, 4:] = 42
    with expect_native(reads=True):
        assert_same(arr[:], expected)


# --- fill values and missing chunks ------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "fill"),
    [
        ("int32", 0),
        ("int32", -7),
        ("uint8", 255),
        ("uint64", 2**64 - 1),
        ("float64", 2.5),
        ("float32", np.nan),
        ("float64", np.nan),
        ("float16", -np.inf),
        ("bool", True),
        ("complex64", 1 - 2j),
    ],
)
@pytest.mark.parametrize("codec", ["bytes", "zstd", "sharding"])
def test_unwritten_chunks_read_as_fill_value(tmp_path, expect_native, dtype, fill, codec):
    arr = create(tmp_path, (10, 9), (4, 4), dtype, codec, fill_value=fill)
    expected = np.full((10, 9), fill, dtype=dtype)
    with expect_native(reads=True):
        assert_same(arr[:], expected)
        assert_same(arr[5:, 2], expected[5:, 2])
    # Write one chunk; the others are still missing.
    patch = make_data(dtype, (4, 4), seed=9)
    with expect_native(writes=True):
        arr[4:8, 4:8] = patch
    expected[4:8, 4:8] = patch
    with expect_native(reads=True):
        assert_same(arr[:], expected)


def _all_chunk_keys(grid: tuple[int, int]) -> set[str]:
    return {f"c/{i}/{j}" for i in range(grid[0]) for j in range(grid[1])}


@pytest.mark.parametrize("codec", ["bytes", "zstd", "sharding"])
@pytest.mark.parametrize("fill", [0.0, np.nan])
def test_write_empty_chunks_true_stores_fill_chunks(tmp_path, expect_native, codec, fill):
    arr = create(tmp_path, (8, 8), (4, 4), "float32", codec, fill_value=fill, config={"write_empty_chunks": True})
    grid = (1, 1) if codec == "sharding" else (2, 2)
    with expect_native(writes=True):
        arr[:] = fill
    assert chunk_keys(tmp_path) == _all_chunk_keys(grid)
    # Writing data then the fill value again keeps the chunks stored.
    with expect_native(writes=True):
        arr[:] = 1.0
        arr[:] = fill
    assert chunk_keys(tmp_path) == _all_chunk_keys(grid)
    with expect_native(reads=True):
        assert_same(arr[:], np.full((8, 8), fill, dtype="float32"))


@pytest.mark.parametrize("codec", ["bytes", "zstd", "sharding"])
@pytest.mark.parametrize("fill", [0.0, np.nan])
def test_write_empty_chunks_false_removes_fill_chunks(tmp_path, expect_native, codec, fill):
    arr = create(tmp_path, (8, 8), (4, 4), "float32", codec, fill_value=fill, config={"write_empty_chunks": False})
    with expect_native(writes=True):
        arr[:] = fill
    assert chunk_keys(tmp_path) == set()
    data = make_data("float32", (8, 8), seed=10)
    data[np.isnan(data)] = 1.0  # no chunk may be all fill value by accident
    with expect_native(writes=True):
        arr[:] = data
    if codec == "sharding":
        assert chunk_keys(tmp_path) == {"c/0/0"}
        # Emptying one inner chunk keeps the shard; emptying all of them removes it.
        with expect_native(writes=True):
            arr[0:4, 0:4] = fill
        assert chunk_keys(tmp_path) == {"c/0/0"}
    else:
        assert chunk_keys(tmp_path) == _all_chunk_keys((2, 2))
        with expect_native(writes=True):
            arr[0:4, 0:4] = fill  # exactly chunk c/0/0
        assert chunk_keys(tmp_path) == _all_chunk_keys((2, 2)) - {"c/0/0"}
        # A partial write that leaves a chunk entirely fill value removes it too.
        with expect_native(writes=True):
            arr[4:8, 0:2] = fill
            arr[4:8, 2:4] = fill
        assert chunk_keys(tmp_path) == {"c/0/1", "c/1/1"}
    with expect_native(writes=True):
        arr[:] = fill
    assert chunk_keys(tmp_path) == set()
    with expect_native(reads=True):
        assert_same(arr[:], np.full((8, 8), fill, dtype="float32"))


def _missing_config(use_global: bool) -> Any:
    return zarr.config.set({"array.read_missing_chunks": False}) if use_global else contextlib.nullcontext()


@pytest.mark.parametrize("how", ["global-config", "array-config"])
@pytest.mark.parametrize("codec", ["bytes", "zstd"])
def test_read_missing_chunks_false_raises_for_missing_chunks(tmp_path, expect_native, how, codec):
    kwargs = {"config": {"read_missing_chunks": False}} if how == "array-config" else {}
    with _missing_config(how == "global-config"):
        arr = create(tmp_path, (8, 12), (4, 4), "int32", codec, fill_value=0, **kwargs)
        assert arr.async_array.config.read_missing_chunks is False
        with expect_native(writes=True):
            arr[0:4, 0:8] = 5  # chunks c/0/0 and c/0/1 only
        with expect_native(reads=True):
            assert_same(arr[0:4, 0:8], np.full((4, 8), 5, dtype="int32"))
            assert_same(arr[1, 2:7], np.full(5, 5, dtype="int32"))
        before = zarrs_cffi.stats().native_reads
        with pytest.raises(ChunkNotFoundError) as info:
            arr[:]
        # Exactly the four chunks that were never written, found natively.
        message = str(info.value)
        assert "4 chunk(s) not found" in message
        for key in ("c/0/2", "c/1/0", "c/1/1", "c/1/2"):
            assert f"'{key}'" in message
        for key in ("c/0/0", "c/0/1"):
            assert f"'{key}'" not in message
        assert zarrs_cffi.stats().native_reads > before
        with pytest.raises(ChunkNotFoundError):
            arr[5, 5]
    assert_no_fallback()


def test_read_missing_chunks_false_with_sharding_matches_zarr(tmp_path, zarrs_pipeline):
    # A missing shard is a missing chunk; a missing inner chunk of a stored shard is not.
    errors = {}
    for name, pipeline in (("zarrs", ZARRS_PIPELINE), ("zarr", ZARR_PIPELINE)):
        with zarr.config.set({"codec_pipeline.path": pipeline, "array.read_missing_chunks": False}):
            arr = create(tmp_path / name, (16, 16), (2, 2), "int32", "sharding", fill_value=0)  # shards 4 x 4
            arr[0:2, 0:2] = 1  # one inner chunk of shard c/0/0
            zarrs_cffi.reset_stats()
            assert_same(arr[0:4, 0:4], np.pad(np.ones((2, 2), dtype="int32"), ((0, 2), (0, 2))))
            with pytest.raises(ChunkNotFoundError) as info:
                arr[0:4, 0:8]
            errors[name] = str(info.value).replace(str(tmp_path / name), "<path>")
            if pipeline == ZARRS_PIPELINE:
                s = zarrs_cffi.stats()
                assert (s.fallbacks, s.native_reads) == (0, 3), s
    assert errors["zarrs"] == errors["zarr"]
    assert "'c/0/1'" in errors["zarrs"]


def test_read_missing_chunks_true_is_the_default(tmp_path, expect_native):
    arr = create(tmp_path, (8, 8), (4, 4), "int32", fill_value=3)
    assert arr.async_array.config.read_missing_chunks is True
    with expect_native(reads=True):
        assert_same(arr[:], np.full((8, 8), 3, dtype="int32"))


# --- larger batches ----------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["zstd", "sharding"])
def test_many_chunks_take_the_threaded_path(tmp_path, expect_native, codec):
    # Well above the inline thresholds of the pipeline (2 chunks, 256 KiB).
    data = make_data("float64", (300, 400), seed=11)
    arr = create(tmp_path, data.shape, (32, 50), "float64", codec)
    with expect_native(writes=True):
        arr[:] = data
    with expect_native(reads=True):
        assert_same(arr[:], data)
        assert_same(arr[17:290, 3:333], data[17:290, 3:333])
    # One count per stored chunk (per shard with sharding).
    assert zarrs_cffi.stats().native_writes == (20 if codec == "sharding" else 80)


# --- memory order, value conversion, resizing ----------------------------------------------


@pytest.mark.parametrize("codec", ["bytes", "transpose", "sharding"])
def test_fortran_order_output(tmp_path, expect_native, codec):
    # zarr allocates F-ordered output buffers for order "F"; the pipeline decodes into a
    # C-ordered buffer and copies.
    data = make_data("float64", (5, 6, 7), seed=12)
    arr = create(tmp_path, data.shape, (2, 4, 3), "float64", codec, config={"order": "F"})
    assert arr.async_array.config.order == "F"
    with expect_native(writes=True):
        arr[:] = np.asfortranarray(data)
        arr[1:4, 2:5, 1:6] = -data[1:4, 2:5, 1:6]
    data[1:4, 2:5, 1:6] *= -1
    with expect_native(reads=True):
        got = arr[:]
        assert got.flags.f_contiguous
        assert_same(got, data)
        assert_same(arr[1:4, 2, 1:6], data[1:4, 2, 1:6])
        assert_same(arr[3], data[3])


def test_values_are_converted_and_broadcast_like_numpy(tmp_path, expect_native):
    arr = create(tmp_path, (10, 12), (4, 5), "int32", "zstd", fill_value=0)
    expected = np.zeros((10, 12), dtype="int32")
    with expect_native(writes=True):
        arr[0:4] = np.arange(48, dtype="float64").reshape(4, 12)  # float64 into int32
        expected[0:4] = np.arange(48).reshape(4, 12)
        arr[4:6] = [[7] * 12] * 2  # nested lists
        expected[4:6] = 7
        arr[6:10, 0:10] = np.arange(10)  # a row broadcast over rows
        expected[6:10, 0:10] = np.arange(10)
        arr[6:10, 10:12] = np.array([[1], [2], [3], [4]])  # a column broadcast over columns
        expected[6:10, 10:12] = [[1], [2], [3], [4]]
        arr[5, 3:5] = np.uint8(200)  # a numpy scalar of another type
        expected[5, 3:5] = 200
    with expect_native(reads=True):
        assert_same(arr[:], expected)


@pytest.mark.parametrize("codec", ["bytes", "sharding"])
def test_resize_and_append(tmp_path, expect_native, codec):
    arr = create(tmp_path, (10,), (4,), "int32", codec, fill_value=-1)
    with expect_native(writes=True):
        arr[:] = np.arange(10)
    arr.resize((20,))
    expected = np.concatenate([np.arange(10), np.full(10, -1)]).astype("int32")
    with expect_native(reads=True):
        assert_same(arr[:], expected)
    with expect_native(writes=True):
        arr[12:18] = 5
    expected[12:18] = 5
    arr.append(np.arange(100, 105, dtype="int32"))
    expected = np.concatenate([expected, np.arange(100, 105, dtype="int32")])
    with expect_native(reads=True):
        assert arr.shape == (25,)
        assert_same(arr[:], expected)
    arr.resize((6,))
    with expect_native(reads=True):
        assert_same(arr[:], expected[:6])
    arr.resize((9,))
    # zarr deletes only the chunks entirely outside a shrunk array, so growing it again
    # shows what the surviving partial chunk still holds: read it as zarr's pipeline does.
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        reference = zarr.open_array(LocalStore(tmp_path), mode="r")[:]
    with expect_native(reads=True):
        assert_same(arr[:], reference)
        assert_same(arr[:6], expected[:6])


# --- caller buffers and concurrency --------------------------------------------------------


def test_read_into_strided_out_buffer(tmp_path, expect_native):
    from zarr.core.buffer.cpu import NDBuffer

    data = make_data("int32", (10, 12), seed=13)
    arr = create(tmp_path, data.shape, (4, 5), "int32", "zstd")
    arr[:] = data
    big = np.full((10, 24), -1, dtype="int32")
    view = big[:, ::2]  # not contiguous: the pipeline decodes elsewhere and copies
    with expect_native(reads=True):
        arr.get_basic_selection((slice(None), slice(None)), out=NDBuffer.from_numpy_array(view))
    assert_same(view, data)
    assert (big[:, 1::2] == -1).all()


def test_concurrent_async_reads_and_writes(tmp_path, expect_native):
    data = make_data("float32", (16, 12), seed=14)
    arr = create(tmp_path, data.shape, (4, 5), "float32", "zstd")
    arr[:] = data

    async def main() -> tuple[list[Any], Any]:
        async_arr = await zarr.api.asynchronous.open_array(store=LocalStore(tmp_path))
        reads = await asyncio.gather(*(async_arr.getitem((slice(i, i + 5),)) for i in range(12)))
        # Each write owns one row of chunks: concurrent writes to one chunk are not safe
        # in zarr either.
        await asyncio.gather(
            *(async_arr.setitem((slice(4 * i, 4 * i + 4),), np.full((4, 12), i, dtype="float32")) for i in range(4))
        )
        return reads, await async_arr.getitem(())

    with expect_native(reads=True, writes=True):
        reads, final = asyncio.run(main())
    for i, got in enumerate(reads):
        assert_same(got, data[i : i + 5])
    assert_same(final, np.repeat(np.arange(4, dtype="float32"), 4)[:, None].repeat(12, axis=1))


def test_rectilinear_grid_grown_by_resize_and_append(tmp_path, zarrs_pipeline) -> None:
    # zarr keeps an array's pipeline when it resizes it: chunks of the grown rectilinear grid
    # (here along an axis that started empty) must still be accepted (zarr's property test
    # test_rectilinear_zero_length_axis_round_trip found this).
    with zarr.config.set({"array.rectilinear_chunks": True}):
        arr = zarr.create_array(tmp_path / "r", shape=(0, 3), chunks=[[1], [1, 2]], dtype="int16", fill_value=-1)
        values = np.arange(12, dtype="int16").reshape(4, 3)
        arr.resize((4, 3))
        arr[...] = values
        np.testing.assert_array_equal(arr[...], values)
        more = np.arange(6, dtype="int16").reshape(2, 3) + 100
        arr.append(more, axis=0)
        np.testing.assert_array_equal(arr[...], np.concatenate([values, more]))
    s = zarrs_cffi.stats()
    assert s.fallbacks == 0 and s.native_reads > 0 and s.native_writes > 0, s


def test_attributes_zarrs_cannot_parse_do_not_cause_a_fallback(tmp_path, zarrs_pipeline) -> None:
    # A lone surrogate in a user attribute is valid for Python's json, not for serde_json;
    # attributes never reach the codecs, so the array stays native.
    arr = zarr.create_array(tmp_path / "a", shape=(4,), chunks=(2,), dtype="int32", attributes={"note": "\ud800"})
    arr[:] = np.arange(4)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "a", mode="r")[:], np.arange(4))
    s = zarrs_cffi.stats()
    assert s.fallbacks == 0 and s.native_reads > 0, s.fallback_reasons

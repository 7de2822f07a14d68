"""Every data type the pipeline handles natively, through the direct API: fixed-size numeric
types, datetimes and timedeltas (native in zarrs), fixed-width bytes and unicode and
structured types (native, or opened as raw bits of their size where zarrs lacks them),
big-endian storage, and variable-length strings and bytes (whole chunks decoded and encoded
natively). Each is read with every selection kind and written with each kind of selection,
against zarr's own pipeline reading and writing a twin array; Zarr v2 and v3."""

from __future__ import annotations

import asyncio

import warnings
from typing import Any

import numpy as np
import pytest
import zarr
from conftest import NATIVE_DTYPES, chunk_keys, make_data
from zarr.storage import LocalStore

from zarrs_cffi import Array

pytestmark = [pytest.mark.usefixtures("zarr_pipeline"), pytest.mark.filterwarnings("ignore::UserWarning")]

SHAPE = (23, 7)
CHUNKS = (5, 3)
STRUCTURED = np.dtype([("a", "<i4"), ("b", "<f8"), ("c", "S3")])


def values(dtype: Any, shape: tuple[int, ...], seed: int) -> np.ndarray[Any, Any]:
    """Values of ``dtype`` (zarr's spelling), edge cases included: NaT, empty and non-ASCII
    strings, NUL bytes inside variable-length bytes."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    if dtype in ("string", "bytes"):
        words = ["", "a", "zarr", "ünïcødé", "€" * 5, "x" * 40, "tab\tnew\nline"]
        picked = [words[i] for i in rng.integers(0, len(words), size)]
        if dtype == "string":
            return np.array(picked, dtype=np.dtypes.StringDType()).reshape(shape)
        return np.array([w.encode() + (b"\x00z" if i % 5 == 0 else b"") for i, w in enumerate(picked)], dtype=object).reshape(shape)
    dt = np.dtype(dtype)
    if dt.kind in "mM":
        flat = rng.integers(-(2**40), 2**40, size).astype(dt)
        flat[::7] = np.array("NaT", dtype=dt)
        return flat.reshape(shape)
    if dt.kind == "S":
        letters = np.frombuffer(b"abcdefghij", dtype="S1")
        return np.array([b"".join(rng.choice(letters, rng.integers(0, dt.itemsize + 1))) for _ in range(size)], dtype=dt).reshape(shape)
    if dt.kind == "U":
        chars = list("aé€ßz")
        return np.array(["".join(rng.choice(chars, rng.integers(0, dt.itemsize // 4 + 1))) for _ in range(size)], dtype=dt).reshape(shape)
    if dt.kind == "V":
        out = np.zeros(size, dtype=dt)
        out["a"] = rng.integers(-1000, 1000, size)
        out["b"] = rng.standard_normal(size)
        out["c"] = values("S3", (size,), seed + 1)
        return out.reshape(shape)
    return make_data(dt.newbyteorder("="), shape, seed).astype(dt)


def zarr_dtype(dtype: Any) -> Any:
    return {"string": str, "bytes": zarr.dtype.VariableLengthBytes()}.get(dtype, dtype)


DTYPES = [
    *NATIVE_DTYPES,
    "datetime64[ns]",
    "datetime64[D]",
    "timedelta64[s]",
    "S6",
    "U4",
    STRUCTURED,
    ">i4",
    ">f8",
    "string",
    "bytes",
]


def _ids(dtype: Any) -> str:
    return "structured" if isinstance(dtype, np.dtype) else str(dtype)


def _twins(path: Any, dtype: Any, zarr_format: int) -> tuple[Array, zarr.Array, np.ndarray[Any, Any]]:
    data = values(dtype, SHAPE, seed=3)
    for name in ("ours", "theirs"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = zarr.create_array(LocalStore(path / name), shape=SHAPE, chunks=CHUNKS, dtype=zarr_dtype(dtype), zarr_format=zarr_format)
            arr[...] = data
            arr[10:15, :] = arr.fill_value  # chunks of only the fill value: not stored
    return Array.open(path / "ours"), zarr.open_array(LocalStore(path / "theirs")), data


def _same(got: Any, expected: Any) -> None:
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    if expected.dtype.kind in "fc":
        np.testing.assert_array_equal(got.view(np.uint8), expected.view(np.uint8))  # NaNs bit for bit
    elif expected.dtype.kind == "V":
        assert got.tobytes() == expected.tobytes()
    else:
        np.testing.assert_array_equal(got, expected)


ROWS = np.array([22, 0, 13, -3])
COLS = np.array([6, 1])


def _reads(arr: Any) -> list[Any]:
    return [
        arr[...],
        arr[2:19, 1:6],
        arr[3, :],
        arr[::4, ::3],
        arr.oindex[ROWS, COLS],
        arr.oindex[ROWS, 4],
        arr.vindex[ROWS, ROWS % 7],
        arr.vindex[np.arange(161).reshape(SHAPE) % 4 == 0],
        arr.blocks[1:3, -1],
    ]


def _same_started(ours: Array, theirs: Any) -> None:
    """Scattered reads started (``read_future``, ``read_async``) read as zarr does."""
    for key in [(ROWS, slice(None)), (ROWS, ROWS % 7), np.s_[::4, 3]]:
        _same(ours.read_future(key).result(timeout=30), theirs[key])
        _same(asyncio.run(ours.read_async(key)), theirs[key])


@pytest.mark.parametrize("zarr_format", [3, 2])
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_every_dtype_reads_and_writes_as_zarr_does(tmp_path, dtype, zarr_format):
    ours, theirs, _ = _twins(tmp_path, dtype, zarr_format)
    assert ours.dtype == theirs.dtype
    for got, expected in zip(_reads(ours), _reads(theirs), strict=True):
        _same(got, expected)
    _same_started(ours, theirs)
    new = values(dtype, SHAPE, seed=9)
    writes = [
        ("region", (slice(1, 9), slice(2, 7))),
        ("item", (slice(None, None, 3), 1)),
        ("oindex", (ROWS, COLS)),
        ("vindex", (ROWS, ROWS % 7)),
        ("blocks", (0, 0)),
    ]
    for kind, sel in writes:
        for arr in (ours, theirs):
            target = {"region": arr, "item": arr, "oindex": arr.oindex, "vindex": arr.vindex, "blocks": arr.blocks}[kind]
            shape = np.asarray(target[sel]).shape
            target[sel] = new[: shape[0]].reshape(-1)[: int(np.prod(shape))].reshape(shape) if shape else new[0, 0]
    # Read back by zarr's pipeline: our writes are what zarr writes, for zarr and for us.
    mine = zarr.open_array(LocalStore(tmp_path / "ours"), mode="r")
    _same(mine[...], theirs[...])
    _same(ours[...], theirs[...])
    assert chunk_keys(tmp_path / "ours") == chunk_keys(tmp_path / "theirs")


@pytest.mark.parametrize("dtype", ["datetime64[ns]", STRUCTURED, "string"], ids=_ids)
def test_from_zarr_takes_the_same_dtypes(tmp_path, dtype):
    _, theirs, data = _twins(tmp_path, dtype, 3)
    direct = Array.from_zarr(theirs)
    _same(direct.oindex[ROWS, COLS], theirs.oindex[ROWS, COLS])
    direct[0, :] = data[1, :]
    _same(theirs[0, :], data[1, :])


def test_a_type_stored_big_endian_as_raw_bits_reads_and_writes_in_native_order(tmp_path):
    # A structured type (zarrs lacks it) whose bytes codec stores big-endian: zarrs moves
    # the stored bytes; numpy converts them for reads and writes of every kind.
    from zarr.codecs import BytesCodec

    data = values(STRUCTURED, SHAPE, seed=4)
    twins = []
    for name in ("ours", "theirs"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = zarr.create_array(LocalStore(tmp_path / name), shape=SHAPE, chunks=CHUNKS, dtype=STRUCTURED, serializer=BytesCodec(endian="big"))
        arr[...] = data
        twins.append(arr)
    theirs = twins[1]
    ours = Array.open(tmp_path / "ours")
    assert ours.dtype == theirs.dtype == STRUCTURED
    for got, expected in zip(_reads(ours), _reads(theirs), strict=True):
        _same(got, expected)
    _same_started(ours, theirs)
    out = np.empty((4, 7), dtype=ours.dtype)
    assert ours.read(np.s_[0:4], out=out) is out
    _same(out, theirs[0:4])
    out = np.empty((4, 2), dtype=ours.dtype)
    assert ours.oindex.read((ROWS, COLS), out=out) is out
    _same(out, theirs.oindex[ROWS, COLS])
    for arr in (ours, theirs):
        arr.oindex[ROWS, COLS] = data[0:4, 0:2]
        arr[5:7, :] = data[0:2, :]
    _same(zarr.open_array(LocalStore(tmp_path / "ours"), mode="r")[...], theirs[...])
    assert (tmp_path / "ours" / "c/1/0").read_bytes() == (tmp_path / "theirs" / "c/1/0").read_bytes()

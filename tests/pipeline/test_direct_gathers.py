"""The direct API's scattered reads (``Array.oindex``, ``Array.vindex``, stepped slices and
fancy keys in ``Array[...]``), gathered natively: the same values and shapes as zarr's own
``oindex``/``vindex``/``__getitem__`` for every selection kind, layout and data type, chunks
never written included (zarr's pipeline reads every reference array here)."""

from __future__ import annotations

from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr
from conftest import NATIVE_DTYPES, make_data
from zarr.codecs import ZstdCodec
from zarr.storage import LocalStore

import zarrs_cffi
from zarrs_cffi import Array

pytestmark = pytest.mark.usefixtures("zarr_pipeline")

SHAPE = (37, 23, 5)
LAYOUTS: dict[str, dict[str, Any]] = {
    "v3": {"chunks": (8, 5, 5), "compressors": [ZstdCodec(level=1)]},
    "v3-sharded": {"chunks": (4, 5, 5), "shards": (8, 10, 5), "compressors": None},
    "v2": {"chunks": (8, 5, 5), "zarr_format": 2, "compressors": numcodecs.Zstd(level=1)},
    "v3-rectilinear": {"chunks": [[10, 20, 7], [3, 20], [5]]},
}


@pytest.fixture(autouse=True)
def _rectilinear_grids():
    # zarr reads and writes rectilinear chunk grids only when asked to (experimental).
    with zarr.config.set({"array.rectilinear_chunks": True}):
        yield


def _arrays(path: Any, layout: str, dtype: str = "int32") -> tuple[Array, zarr.Array]:
    data = make_data(dtype, SHAPE, seed=71)
    arr = zarr.create_array(LocalStore(path), shape=SHAPE, dtype=dtype, fill_value=0, **LAYOUTS[layout])
    arr[...] = data
    arr[16:24, :, :] = 0  # chunks of only the fill value: not stored, read as the fill value
    return Array.open(path), zarr.open_array(LocalStore(path), mode="r")


def _selections(rng: np.random.Generator) -> list[tuple[str, Any]]:
    rows = rng.integers(-SHAPE[0], SHAPE[0], 9)
    cols = rng.integers(0, SHAPE[1], 4)
    return [
        ("oindex", (rows, cols, slice(None))),
        ("oindex", (rows, 3, slice(1, 4))),
        ("oindex", (slice(None, None, 5), slice(2, 20, 3), [4, 0, 4])),
        ("oindex", (rng.random(SHAPE[0]) > 0.7, slice(None), rng.random(SHAPE[2]) > 0.5)),
        ("oindex", (np.sort(rng.choice(SHAPE[0], 12, replace=False)), cols[:1], 2)),
        ("oindex", (-1, -1, -1)),
        ("oindex", (np.array([], dtype=np.int64), slice(None), slice(None))),
        ("vindex", (rows, rng.integers(0, SHAPE[1], 9), rng.integers(0, SHAPE[2], 9))),
        ("vindex", (rows.reshape(3, 3), rng.integers(0, SHAPE[1], (3, 1)), np.array([[0, 4, 2]]))),
        ("vindex", rng.random(SHAPE) > 0.9),
        ("item", (slice(None, None, 4), slice(1, None, 7), 2)),
        ("item", (rows,)),
        ("item", (rows, cols[:1].repeat(9), np.arange(9) % 5)),
    ]


def _ours(arr: Array, kind: str, sel: Any) -> np.ndarray[Any, Any]:
    return {"oindex": arr.oindex, "vindex": arr.vindex, "item": arr}[kind][sel]


def _zarrs(arr: zarr.Array, kind: str, sel: Any) -> np.ndarray[Any, Any]:
    return np.asarray({"oindex": arr.oindex, "vindex": arr.vindex, "item": arr}[kind][sel])


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_selection_kind_reads_as_zarr_reads_it(tmp_path, layout):
    ours, theirs = _arrays(tmp_path, layout)
    rng = np.random.default_rng(5)
    for _ in range(4):
        for kind, sel in _selections(rng):
            got, expected = _ours(ours, kind, sel), _zarrs(theirs, kind, sel)
            assert got.shape == expected.shape, (kind, sel)
            np.testing.assert_array_equal(got, expected, err_msg=f"{kind} {sel}")


@pytest.mark.parametrize("dtype", NATIVE_DTYPES)
def test_every_dtype_gathers_as_zarr_reads_it(tmp_path, dtype):
    ours, theirs = _arrays(tmp_path, "v3-sharded", dtype)
    rows, cols = np.array([36, 0, 17, 0, 9]), np.array([22, 1, 1])
    for kind, sel in [("oindex", (rows, cols, 4)), ("vindex", (rows, rows % 23, rows % 5))]:
        got, expected = _ours(ours, kind, sel), _zarrs(theirs, kind, sel)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_a_mini_batch_of_rows_reads_each_chunk_once(tmp_path, monkeypatch):
    # 64 random rows of a chunked 2-d array: one native gather, its chunks distinct.
    data = make_data("float32", (4096, 16), seed=3)
    zarr.create_array(LocalStore(tmp_path), shape=data.shape, chunks=(128, 16), dtype="float32")[...] = data
    arr = Array.open(tmp_path)
    calls: list[int] = []
    gather = type(arr._native).gather_orthogonal

    def counted(self: Any, options: Any, keys: bytes, key_offsets: Any, *args: Any) -> Any:
        calls.append(len(key_offsets) - 1)
        assert len(set(keys[a:b] for a, b in zip(key_offsets[:-1], key_offsets[1:]))) == calls[-1]
        return gather(self, options, keys, key_offsets, *args)

    monkeypatch.setattr(type(arr._native), "gather_orthogonal", counted)
    rows = np.random.default_rng(9).choice(4096, 64, replace=False)
    np.testing.assert_array_equal(arr.oindex[rows, :], data[rows])
    assert calls == [len(np.unique(rows // 128))]


def test_reads_into_out(tmp_path):
    ours, theirs = _arrays(tmp_path, "v3")
    rows = np.array([3, 1, 30])
    out = np.full((3, 23, 5), -5, dtype="int32")
    assert ours.oindex.read((rows, slice(None), slice(None)), out=out) is out
    np.testing.assert_array_equal(out, theirs.oindex[rows, :, :])
    points = np.empty(3, dtype="int32")
    assert ours.vindex.read((rows, rows % 23, rows % 5), out=points) is points
    np.testing.assert_array_equal(points, theirs.vindex[rows, rows % 23, rows % 5])
    for bad in (np.empty(3, dtype="int64"), np.empty(4, dtype="int32"), np.empty(6, dtype="int32")[::2]):
        with pytest.raises(zarrs_cffi.ZarrsValueError, match="out must be"):
            ours.vindex.read((rows, rows % 23, rows % 5), out=bad)


@pytest.mark.parametrize(
    ("kind", "sel"),
    [
        ("oindex", ([37], slice(None), slice(None))),
        ("oindex", ([-38], slice(None), slice(None))),
        ("oindex", (np.ones(36, dtype=bool), slice(None), slice(None))),
        ("oindex", ([0.5], slice(None), slice(None))),
        ("oindex", (slice(None, None, -1),)),
        ("oindex", (0, 0, 0, 0)),
        ("vindex", ([1, 2], [3, 4, 5], [0, 0])),
        ("vindex", ([1, 2], [3, 4])),
        ("vindex", ([1, 40], [3, 4], [0, 0])),
    ],
    ids=str,
)
def test_selections_zarr_refuses_are_refused_alike(tmp_path, kind, sel):
    # The same builtin class as zarr's error: IndexError, or ValueError for arrays that do
    # not broadcast.
    ours, theirs = _arrays(tmp_path, "v3")
    with pytest.raises((IndexError, ValueError)) as zarrs_error:
        _zarrs(theirs, kind, sel)
    expected = IndexError if isinstance(zarrs_error.value, IndexError) else ValueError
    with pytest.raises(expected):
        _ours(ours, kind, sel)
    # The array is still usable.
    np.testing.assert_array_equal(ours.oindex[[0], 0, 0], theirs.oindex[[0], 0, 0])

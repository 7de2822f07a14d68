"""Writes through the direct API of every selection its reads take (``oindex``, ``vindex``,
masks, stepped slices, fancy keys in ``Array[...] =``, ``blocks``): the same values and the
same stored chunks as zarr's own pipeline writing the same selection into a twin array,
read back by zarr's pipeline; and the write locks held around each read-modify-write."""

from __future__ import annotations

import threading
from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr
from conftest import chunk_keys, make_data
from zarr.codecs import ZstdCodec
from zarr.storage import LocalStore

import zarrs_cffi
from zarrs_cffi import Array
from zarrs_cffi._core import keylocks

pytestmark = pytest.mark.usefixtures("zarr_pipeline")

SHAPE = (37, 23, 5)
LAYOUTS: dict[str, dict[str, Any]] = {
    "v3": {"chunks": (8, 5, 5), "compressors": [ZstdCodec(level=1)]},
    "v3-raw": {"chunks": (8, 5, 5), "compressors": None},
    "v3-sharded": {"chunks": (4, 5, 5), "shards": (8, 10, 5), "compressors": None},
    "v2": {"chunks": (8, 5, 5), "zarr_format": 2, "compressors": numcodecs.Zstd(level=1)},
    "v2-raw": {"chunks": (8, 5, 5), "zarr_format": 2, "compressors": None},
    "v3-rectilinear": {"chunks": [[10, 20, 7], [3, 20], [5]], "compressors": None},
}
# Layouts whose encoded bytes do not depend on the encoder (no compressor): the chunk files
# themselves must be identical.
SAME_BYTES = {"v3-raw", "v2-raw", "v3-rectilinear"}


@pytest.fixture(autouse=True)
def _rectilinear_grids():
    # zarr reads and writes rectilinear chunk grids only when asked to (experimental).
    with zarr.config.set({"array.rectilinear_chunks": True}):
        yield


def _twins(path: Any, layout: str, dtype: str = "int32") -> tuple[Array, zarr.Array]:
    data = make_data(dtype, SHAPE, seed=17)
    for name in ("ours", "theirs"):
        arr = zarr.create_array(LocalStore(path / name), shape=SHAPE, dtype=dtype, fill_value=0, **LAYOUTS[layout])
        arr[...] = data
        arr[16:24, :, :] = 0  # chunks of only the fill value: not stored
    return Array.open(path / "ours"), zarr.open_array(LocalStore(path / "theirs"))


def _writes(rng: np.random.Generator) -> list[tuple[str, Any]]:
    # Indices without repeats: which of two writes to one element lands is not zarr's contract.
    rows = rng.choice(np.arange(-SHAPE[0], 0), 9, replace=False)
    cols = rng.choice(SHAPE[1], 4, replace=False)
    flat = rng.choice(int(np.prod(SHAPE)), 11, replace=False)
    points = np.unravel_index(flat, SHAPE)
    return [
        ("oindex", (rows, cols, slice(None))),
        ("oindex", (rows, 3, slice(1, 4))),
        ("oindex", (slice(None, None, 5), slice(2, 20, 3), [4, 0])),
        ("oindex", (rng.random(SHAPE[0]) > 0.7, slice(None), rng.random(SHAPE[2]) > 0.5)),
        ("oindex", (-1, -1, -1)),
        ("oindex", (np.array([], dtype=np.int64), slice(None), slice(None))),
        ("vindex", points),
        ("vindex", (points[0].reshape(11, 1), points[1].reshape(11, 1), points[2].reshape(11, 1))),
        ("vindex", rng.random(SHAPE) > 0.9),
        ("item", (slice(None, None, 4), slice(1, None, 7), 2)),
        ("item", (slice(30, 2, -1),)),
        ("item", (np.sort(rows),)),
        ("item", (slice(3, 30), slice(None), 1)),
        ("blocks", (slice(1, 3), 0, slice(None))),
        ("blocks", (-1, ..., 0)),
    ]


def _indexer(arr: Any, kind: str) -> Any:
    return {"oindex": arr.oindex, "vindex": arr.vindex, "item": arr, "blocks": arr.blocks}[kind]


def _assert_twins(ours: Array, theirs: zarr.Array, path: Any, layout: str) -> None:
    mine = zarr.open_array(LocalStore(path / "ours"), mode="r")
    np.testing.assert_array_equal(mine[...], theirs[...])
    np.testing.assert_array_equal(ours[...], theirs[...])
    assert chunk_keys(path / "ours") == chunk_keys(path / "theirs")
    if layout in SAME_BYTES:
        for key in chunk_keys(path / "theirs"):
            assert (path / "ours" / key).read_bytes() == (path / "theirs" / key).read_bytes(), key


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_selection_kind_writes_as_zarr_writes_it(tmp_path, layout):
    ours, theirs = _twins(tmp_path, layout)
    rng = np.random.default_rng(23)
    for round_ in range(2):
        for kind, sel in _writes(rng):
            if kind == "item" and isinstance(sel[0], slice) and (sel[0].step or 1) < 0:
                # zarr refuses negative steps; so do we, naming the same builtin class.
                with pytest.raises(IndexError):
                    _indexer(theirs, kind)[sel] = 1
                with pytest.raises(IndexError):
                    _indexer(ours, kind)[sel] = 1
                continue
            shape = np.asarray(_indexer(theirs, kind)[sel]).shape
            value = make_data("int32", shape, seed=round_ * 100 + len(shape)) if round_ == 0 else 7
            _indexer(ours, kind)[sel] = value
            _indexer(theirs, kind)[sel] = value
            _assert_twins(ours, theirs, tmp_path, layout)
            # Reads of the same selection agree too.
            np.testing.assert_array_equal(_indexer(ours, kind)[sel], np.asarray(_indexer(theirs, kind)[sel]), err_msg=f"{kind} {sel}")


def test_writing_the_fill_value_everywhere_in_a_chunk_erases_it(tmp_path):
    ours, theirs = _twins(tmp_path, "v3")
    rows = np.arange(0, 8)
    for arr in (ours, theirs):
        arr.oindex[rows, :, :] = 0
        arr.vindex[np.array([36]), np.array([22]), np.array([4])] = 5
    _assert_twins(ours, theirs, tmp_path, "v3")
    assert not any(key.startswith("c/0/") for key in chunk_keys(tmp_path / "ours"))


def test_a_value_that_does_not_fit_the_selection_is_refused_and_nothing_is_written(tmp_path):
    ours, theirs = _twins(tmp_path, "v3")
    before = ours[...]
    with pytest.raises(ValueError, match="shape"):
        ours.oindex[[0, 1], :, :] = np.zeros((3, 23, 5))
    with pytest.raises(ValueError):
        ours.vindex[[0, 1], [0, 1], [0, 1]] = [1, 2, 3]
    with pytest.raises(IndexError):
        ours.oindex[[40], :, :] = 1
    with pytest.raises(IndexError):
        ours.blocks[::2] = 1
    np.testing.assert_array_equal(ours[...], before)


def test_read_only_arrays_refuse_scattered_writes(tmp_path):
    _twins(tmp_path, "v3")
    arr = Array.open(tmp_path / "ours", read_only=True)
    with pytest.raises(zarrs_cffi.ZarrsReadOnlyError):
        arr.oindex[[0, 9], 0, 0] = 1


def test_a_scattered_write_holds_the_locks_of_the_chunks_it_touches(tmp_path, monkeypatch):
    ours, _ = _twins(tmp_path, "v3")
    held: list[list[str]] = []
    real = keylocks.holding

    def spy(prefix: str, keys: Any) -> Any:
        keys = list(keys)
        held.append(sorted(keys))
        return real(prefix, keys)

    monkeypatch.setattr(keylocks, "holding", spy)
    ours.oindex[[0, 9], 0, 0] = 1
    assert held == [["c/0/0/0", "c/1/0/0"]]


def test_scattered_writers_of_one_chunk_never_lose_each_others_updates(tmp_path):
    # 8 threads, each writing its own elements of the same chunks through oindex and vindex:
    # every read-modify-write holds the chunks' locks, so all of them land.
    arr = Array.create(tmp_path, {
        "zarr_format": 3, "node_type": "array", "shape": [64, 8], "data_type": "int32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [64, 8]}},
        "chunk_key_encoding": {"name": "default"}, "fill_value": 0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
    })
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            write(t)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    def write(t: int) -> None:
        for r in range(8):
            row = t * 8 + r
            if r % 2:
                arr.oindex[[row], :] = t + 1
            else:
                arr.vindex[np.full(8, row), np.arange(8)] = t + 1

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    np.testing.assert_array_equal(arr[...], np.repeat(np.arange(1, 9), 8)[:, None].repeat(8, axis=1))

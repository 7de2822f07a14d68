"""Every kind of zarr selection runs natively, reads and writes, and matches numpy.

Stepped slices, orthogonal integer arrays (unsorted, repeated, with integers and slices
mixed in), boolean masks on one axis, coordinate ``vindex``, full masks, block selections
and negative slices; on a store the native library reaches itself (LocalStore) and on one
it reaches through Python (MemoryStore); chunked and sharded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import zarr
from conftest import ZARR_PIPELINE, ZARRS_PIPELINE, assert_route, assert_same, make_data, native_only
from zarr.storage import LocalStore, MemoryStore

import zarrs_cffi

SHAPE = (10, 12)
MASK = np.arange(120).reshape(SHAPE) % 7 == 0
ROWS = np.arange(10) % 3 == 1

# name -> (zarr read, numpy read)
READS: dict[str, tuple[Any, Any]] = {
    "stepped": (lambda a: a[::2], lambda d: d[::2]),
    "stepped-offset": (lambda a: a[1:9:3, 2::5], lambda d: d[1:9:3, 2::5]),
    "stepped-with-int": (lambda a: a[1:9:3, 2], lambda d: d[1:9:3, 2]),
    "oindex": (lambda a: a.oindex[[0, 3]], lambda d: d[[0, 3]]),
    "oindex-unsorted-repeated": (lambda a: a.oindex[[9, 0, 3, 3, 1]], lambda d: d[[9, 0, 3, 3, 1]]),
    "oindex-slice": (lambda a: a.oindex[[0, 3, 9], 1:4], lambda d: d[[0, 3, 9], 1:4]),
    "oindex-two-arrays": (lambda a: a.oindex[[7, 0, 3], [11, 1, 5, 5]], lambda d: d[np.ix_([7, 0, 3], [11, 1, 5, 5])]),
    "oindex-int": (lambda a: a.oindex[[0, 3], 2], lambda d: d[[0, 3], 2]),
    "oindex-int-first": (lambda a: a.oindex[4, [11, 0, 6]], lambda d: d[4, [11, 0, 6]]),
    "oindex-mask-axis": (lambda a: a.oindex[ROWS, 2:11:4], lambda d: d[ROWS, 2:11:4]),
    "vindex": (lambda a: a.vindex[[0, 3, 9], [1, 2, 11]], lambda d: d[[0, 3, 9], [1, 2, 11]]),
    "vindex-2d-points": (
        lambda a: a.vindex[np.array([[0, 9], [5, 5]]), np.array([[1, 11], [3, 3]])],
        lambda d: d[np.array([[0, 9], [5, 5]]), np.array([[1, 11], [3, 3]])],
    ),
    "mask": (lambda a: a.vindex[MASK], lambda d: d[MASK]),
    "coordinates": (lambda a: a.get_coordinate_selection(([1, 9], [2, 11])), lambda d: d[[1, 9], [2, 11]]),
    "blocks": (lambda a: a.blocks[1], lambda d: d[4:8]),
    "negative": (lambda a: a[-3:, -5:-1], lambda d: d[-3:, -5:-1]),
    "negative-index-array": (lambda a: a.oindex[[-1, 0]], lambda d: d[[-1, 0]]),
}


class _NumpyOindex:
    def __init__(self, array: np.ndarray[Any, Any]) -> None:
        self.array = array

    def __setitem__(self, key: Any, value: Any) -> None:
        key = key if isinstance(key, tuple) else (key,)
        axes = [np.arange(n)[k] if not isinstance(k, int) else [k] for k, n in zip(key, self.array.shape)]
        axes += [np.arange(n) for n in self.array.shape[len(axes) :]]
        self.array[np.ix_(*axes)] = np.reshape(value, [len(a) for a in axes]) if np.ndim(value) else value


def _oindex(target: Any) -> Any:
    return target.oindex if isinstance(target, zarr.Array) else _NumpyOindex(target)


def _vindex(target: Any) -> Any:
    return target.vindex if isinstance(target, zarr.Array) else target


# name -> write(target, value) applied to the zarr array and to the numpy copy alike
WRITES: dict[str, Any] = {
    "stepped": lambda t, v: t.__setitem__((slice(None, None, 2),), v),
    "stepped-2d-array": lambda t, v: t.__setitem__(
        (slice(1, None, 3), slice(0, None, 5)), np.arange(9).reshape(3, 3) * v
    ),
    "oindex": lambda t, v: _oindex(t).__setitem__(([0, 3, 9],), v),
    "oindex-unsorted-array": lambda t, v: _oindex(t).__setitem__(
        ([9, 2, 5], [3, 0]), np.array([[1, 2], [3, 4], [5, 6]]) * v
    ),
    "oindex-int": lambda t, v: _oindex(t).__setitem__(([4, 0], 7), np.array([1, 2]) * v),
    "oindex-mask-axis": lambda t, v: _oindex(t).__setitem__((ROWS, slice(2, 9)), v),
    "vindex": lambda t, v: _vindex(t).__setitem__(([0, 3, 9], [1, 2, 11]), v),
    "vindex-values": lambda t, v: _vindex(t).__setitem__(([0, 3, 9, 4], [1, 2, 11, 4]), np.arange(4) * v),
    "mask": lambda t, v: _vindex(t).__setitem__((MASK,), v),
}


def _array(kind: str, store_kind: str, tmp_path: Any) -> zarr.Array:
    store = LocalStore(tmp_path) if store_kind == "local" else MemoryStore()
    kwargs: dict[str, Any] = {"chunks": (4, 5)} if kind == "chunked" else {"chunks": (2, 3), "shards": (4, 6)}
    return zarr.create_array(store, shape=SHAPE, dtype="int32", fill_value=-1, **kwargs)


@pytest.mark.parametrize("store_kind", ["local", "memory"])
@pytest.mark.parametrize("kind", ["chunked", "sharded"])
@pytest.mark.parametrize("name", list(READS))
def test_selection_reads_are_native(tmp_path, zarrs_pipeline, name, kind, store_kind):
    read, expected = READS[name]
    data = make_data("int32", SHAPE, seed=31)
    arr = _array(kind, store_kind, tmp_path)
    arr[:] = data
    arr[8:, 10:] = -1  # a missing chunk reads as the fill value
    data[8:, 10:] = -1
    with native_only(reads=True):
        got = read(arr)
    assert_same(got, expected(data))
    # MemoryStore's bytes move through its Python API; LocalStore's through the library.
    assert_route(zarrs_cffi.stats(), native_io=store_kind == "local")


@pytest.mark.parametrize("store_kind", ["local", "memory"])
@pytest.mark.parametrize("kind", ["chunked", "sharded"])
@pytest.mark.parametrize("name", list(WRITES))
def test_selection_writes_are_native(tmp_path, zarrs_pipeline, name, kind, store_kind):
    data = make_data("int32", SHAPE, seed=32)
    arr = _array(kind, store_kind, tmp_path)
    arr[:8] = data[:8]  # the last row of chunks is missing before the write
    data[8:] = -1
    write = WRITES[name]
    with native_only(writes=True):
        write(arr, 77)
    write(data, 77)
    with native_only(reads=True):
        assert_same(arr[:], data)
    assert_route(zarrs_cffi.stats(), native_io=store_kind == "local")


def test_fancy_writes_keep_the_rest_of_the_chunk_and_match_zarr(tmp_path):
    # The same writes through zarr's pipeline give the same stored keys and values.
    results = {}
    for pipeline in (ZARRS_PIPELINE, ZARR_PIPELINE):
        zarrs_cffi.reset_stats()
        with zarr.config.set({"codec_pipeline.path": pipeline}):
            store = MemoryStore()
            arr = zarr.create_array(store, shape=SHAPE, chunks=(4, 5), dtype="float64", fill_value=0.0)
            arr.vindex[[0, 9], [0, 11]] = 1.5
            arr.oindex[[5], ::4] = 2.5
            arr[1::7, 3] = 0.0
            results[pipeline] = (arr[:], sorted(store._store_dict))
        if pipeline == ZARRS_PIPELINE:
            assert_route(zarrs_cffi.stats(), native_io=False)
    (ours, ours_keys), (theirs, theirs_keys) = results.values()
    assert_same(ours, theirs)
    assert ours_keys == theirs_keys


def test_large_gather_spans_several_scratch_groups(tmp_path, zarrs_pipeline, monkeypatch):
    # Scratch buffers are cut into groups; a tiny limit forces one group per chunk.
    from zarrs_cffi import _selection
    from zarrs_cffi._selection import boxes

    monkeypatch.setattr(boxes, "SCRATCH_BYTES", 64)
    data = make_data("uint16", (40, 50), seed=33)
    arr = zarr.create_array(LocalStore(tmp_path), shape=(40, 50), chunks=(8, 10), dtype="uint16")
    arr[:] = data
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 40, 300), rng.integers(0, 50, 300)
    groups = boxes.plan_boxes(
        [_selection.ChunkRequest(type("G", (), {"path": "c/0/0"}), type("S", (), {"shape": (8, 10)}), (slice(0, 8, 2), slice(0, 10)), None, False)] * 3,
        2,
        2,
    )
    assert len(groups) == 3
    with native_only(reads=True, writes=True):
        assert_same(arr.vindex[rows, cols], data[rows, cols])
        arr.vindex[rows, cols] = 9
    data[rows, cols] = 9
    assert_same(arr[:], data)


def _request(chunk_selection: Any, out_selection: Any, shape: tuple[int, ...]) -> Any:
    from zarrs_cffi import _selection

    return _selection.ChunkRequest(
        type("G", (), {"path": "c/0/0"}), type("S", (), {"shape": shape}), chunk_selection, out_selection, False
    )


def test_split_inner_cuts_sorted_index_arrays_at_inner_chunk_boundaries():
    from zarrs_cffi._selection.boxes import split_inner

    rows = np.array([1, 2, 9, 30, 31])
    pieces = split_inner(_request((rows, slice(0, 6, 1)), (slice(3, 8), slice(0, 6)), (40, 6)), (8, 6), ())
    assert [p.chunk_selection[0].tolist() for p in pieces] == [[1, 2], [9], [30, 31]]
    assert [p.out_selection for p in pieces] == [
        (slice(3, 5), slice(0, 6)), (slice(5, 6), slice(0, 6)), (slice(6, 8), slice(0, 6))
    ]
    # np.ix_ form on two axes: one piece per pair of runs, each keeping its broadcast shape.
    ix = (np.array([[0], [9]]), np.array([[1, 5]]))
    pieces = split_inner(_request(ix, (slice(0, 2), slice(2, 4)), (16, 8)), (8, 4), ())
    assert [(p.chunk_selection[0].tolist(), p.chunk_selection[1].tolist()) for p in pieces] == [
        ([[0]], [[1]]), ([[0]], [[5]]), ([[9]], [[1]]), ([[9]], [[5]])
    ]
    assert pieces[3].out_selection == (slice(1, 2), slice(3, 4))
    # Left whole: unsorted indices, coordinate points (vindex), and runs in one inner chunk.
    for request in (
        _request((np.array([9, 1]), slice(0, 6, 1)), (slice(0, 2), slice(0, 6)), (40, 6)),
        _request((np.array([1, 9]), np.array([0, 3])), slice(0, 2), (40, 6)),
        _request((np.array([1, 7]), slice(0, 6, 1)), (slice(0, 2), slice(0, 6)), (40, 6)),
    ):
        assert split_inner(request, (8, 6), ()) == [request]


def _corrupt_inner_chunk(shard: bytes, inner_count: int, i: int) -> bytes:
    # The shard index (at the end): an (offset, nbytes) uint64 pair per inner chunk, then a crc32c.
    index = np.frombuffer(shard[len(shard) - 16 * inner_count - 4 : -4], dtype="<u8").reshape(inner_count, 2)
    offset, size = (int(v) for v in index[i])
    return shard[:offset] + b"\xff" * size + shard[offset + size :]


@pytest.mark.parametrize("store_kind", ["local", "memory"])
def test_sharded_oindex_decodes_only_the_inner_chunks_holding_selected_rows(tmp_path, zarrs_pipeline, store_kind):
    # Rows 1, 2 and 37 lie in inner chunks 0 and 9 of a 10-chunk shard; their bounding box
    # spans all ten. Inner chunk 5 is corrupt: a read that decoded the bounding box fails.
    data = make_data("int32", (40, 6), seed=34)
    store = LocalStore(tmp_path) if store_kind == "local" else MemoryStore()
    arr = zarr.create_array(store, shape=(40, 6), chunks=(4, 6), shards=(40, 6), dtype="int32")
    arr[:] = data
    if store_kind == "local":
        path = tmp_path / "c" / "0" / "0"
        path.write_bytes(_corrupt_inner_chunk(path.read_bytes(), 10, 5))
    else:
        shard = store._store_dict["c/0/0"]
        store._store_dict["c/0/0"] = type(shard).from_bytes(_corrupt_inner_chunk(shard.to_bytes(), 10, 5))
    with pytest.raises(zarrs_cffi.ZarrsError):
        arr[21]
    rows = np.array([1, 2, 37])
    with native_only(reads=True):
        assert_same(arr.oindex[rows, 1:5], data[rows, 1:5])
        assert_same(arr.oindex[rows, [0, 5]], data[np.ix_(rows, [0, 5])])


@pytest.mark.parametrize("store_kind", ["local", "memory"])
@pytest.mark.parametrize("kind", ["chunked", "sharded"])
def test_point_reads_are_planned_for_the_whole_batch(tmp_path, zarrs_pipeline, monkeypatch, kind, store_kind):
    # vindex points and masks are planned by plan_point_boxes (numpy over the batch), never
    # by the per-chunk loop of plan_boxes; a tiny scratch limit cuts them into many groups.
    from zarrs_cffi._selection import boxes

    data = make_data("int32", SHAPE, seed=35)
    arr = _array(kind, store_kind, tmp_path)
    arr[:] = data
    arr[8:, 10:] = -1  # a missing chunk reads as the fill value
    data[8:, 10:] = -1

    def per_chunk(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("points planned chunk by chunk")

    monkeypatch.setattr(boxes, "plan_boxes", per_chunk)
    monkeypatch.setattr(boxes, "SCRATCH_BYTES", 64)
    rng = np.random.default_rng(1)
    rows, cols = rng.integers(0, SHAPE[0], 200), rng.integers(0, SHAPE[1], 200)
    with native_only(reads=True):
        assert_same(arr.vindex[rows, cols], data[rows, cols])
        assert_same(arr.vindex[MASK], data[MASK])
        assert_same(arr.vindex[np.array([[9, 0], [5, 5]]), np.array([[11, 1], [3, 3]])], data[[[9, 0], [5, 5]], [[11, 1], [3, 3]]])


def test_plan_points_groups_and_flat_indices():
    from zarrs_cffi._selection.boxes import plan_point_boxes as plan_points

    first = _request((np.array([5, 1]), np.array([2, 0])), np.array([3, 0]), (8, 4))
    second = _request((np.array([0]), np.array([3])), slice(1, 2), (8, 4))
    (group,) = plan_points([first, second], 2, 4, scratch_bytes=1 << 20)
    # Boxes: rows 1..5 x cols 0..2 of the first chunk, then row 0 x col 3 of the second.
    assert group.scratch_shape == (6, 3)
    assert group.batch.geometry[:, 1:].tolist() == [[[1, 0], [5, 3], [0, 0]], [[0, 3], [1, 1], [5, 0]]]
    flat, where = group.points
    assert flat.tolist() == [4 * 3 + 2, 0, 5 * 3] and where.tolist() == [3, 0, 1]
    # One chunk per group when the limit is below a box; other forms are not points.
    assert len(plan_points([first, second], 2, 4, scratch_bytes=1)) == 2
    assert plan_points([_request((np.array([1]), slice(0, 4, 1)), (slice(0, 1), slice(0, 4)), (8, 4))], 2, 4) is None

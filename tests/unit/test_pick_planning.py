"""Planning scattered reads over the whole batch (``picks.plan_point_picks``,
``plan_points``, ``plan_orthogonal_picks``): no Python work per chunk, and the same picks as
the per-chunk forms.

Reads through zarr must equal numpy's for random points (unsorted, repeated, negative, on
edge chunks, sorted by chunk so that zarr hands over slices), masks, and the orthogonal forms
the batch-wide planner takes, in C and F order, chunked and sharded, on the native gather
(local files) and on the scratch route (a memory store). The planners themselves are checked
against a direct computation on batches zarr's own indexers build, and on hand-made batches
for the forms zarr never produces (mixed output forms, strided arrays, bad lengths).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
import pytest
import zarr
from conftest import ZARRS_PIPELINE, assert_same, make_data, native_only
from zarr.codecs import ZstdCodec
from zarr.core.array_spec import ArrayConfig, ArraySpec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.indexing import CoordinateIndexer, MaskIndexer, OrthogonalIndexer
from zarr.storage import LocalStore, MemoryStore

from zarrs_cffi import _bindings, _selection
from zarrs_cffi._selection import boxes
from zarrs_cffi._selection import picks as pick_plans
from zarrs_cffi._selection import ChunkRequest

SHAPE = (37, 41, 23)
CHUNKS = (8, 10, 6)  # partial edge chunks on every axis
RNG = np.random.default_rng(7)


UNSORTED = tuple(RNG.integers(0, size, 500) for size in SHAPE)
# The last 3 indices of every axis: the edge chunks, and many repeated points.
REPEATED = tuple(RNG.integers(size - 3, size, 300) for size in SHAPE)
NEGATIVE = tuple(RNG.integers(-size, 0, 200) for size in SHAPE)
# Sorted by chunk: zarr hands every chunk a slice of the output rather than indices.
BY_CHUNK = tuple(np.repeat(np.arange(0, size, c), 2) for size, c in zip((8 * 4, 10 * 4, 6 * 4), CHUNKS, strict=True))
MASK = RNG.random(SHAPE) < 0.02
ROWS = np.array([36, 0, 0, 17, 9, 30])
AXIS_MASK = RNG.random(SHAPE[1]) < 0.3

VINDEX: dict[str, Any] = {
    "unsorted": UNSORTED,
    "repeated": REPEATED,
    "negative": NEGATIVE,
    "by-chunk": BY_CHUNK,
    "one-chunk": (np.array([1, 2, 1]), np.array([3, 3, 0]), np.array([5, 0, 5])),
    "2d": tuple(p[:60].reshape(6, 10) for p in UNSORTED),
    "mask": MASK,
}
OINDEX: dict[str, Any] = {
    "rows": (ROWS,),
    "rows-and-slices": (ROWS, slice(3, 40, 4), slice(None)),
    "mask-axis": (slice(None), AXIS_MASK, slice(2, 21)),
    "stepped": (slice(1, None, 3), slice(None, None, 7), slice(2, 21, 4)),
}


def _numpy_vindex(data: np.ndarray[Any, Any], sel: Any) -> np.ndarray[Any, Any]:
    return data[sel]


def _numpy_oindex(data: np.ndarray[Any, Any], sel: tuple[Any, ...]) -> np.ndarray[Any, Any]:
    for axis, s in enumerate(sel):
        data = data[(slice(None),) * axis + (s,)]
    return data


def _array(tmp_path: Any, store_kind: str, sharded: bool) -> tuple[zarr.Array, np.ndarray[Any, Any]]:
    store = LocalStore(tmp_path / "a") if store_kind == "local" else MemoryStore()
    kwargs: dict[str, Any] = {"shards": (16, 20, 12)} if sharded else {}
    data = make_data("int32", SHAPE, seed=3)
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.create_array(
            store, shape=SHAPE, chunks=CHUNKS, dtype="int32", compressors=ZstdCodec(level=1), fill_value=-5, **kwargs
        )
        arr[:] = data
        arr[24:, 30:, :] = -5  # all fill value: missing chunks (inner chunks) read as the fill value
    data[24:, 30:, :] = -5
    return arr, data


@pytest.mark.parametrize("store_kind", ["local", "memory"])
@pytest.mark.parametrize("sharded", [False, True], ids=["chunked", "sharded"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_scattered_reads_equal_numpy_and_are_planned_for_the_whole_batch(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, store_kind: str, sharded: bool, order: str
) -> None:
    arr, data = _array(tmp_path, store_kind, sharded)

    def per_chunk(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("planned chunk by chunk")

    calls = {"points": 0, "orthogonal": 0}
    for name, key in (("gather_points", "points"), ("gather_orthogonal", "orthogonal")):
        original = getattr(_bindings.ArrayHandle, name)

        def counted(*args: Any, _original: Any = original, _key: str = key, **kwargs: Any) -> Any:
            calls[_key] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(_bindings.ArrayHandle, name, counted)
    native = store_kind == "local"
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE, "codec_pipeline.strict": True}):
        # F order: zarr's output is not C-contiguous; the native gather fills a copy.
        arr = zarr.open_array(arr.store, mode="r", config={"order": order})
        with monkeypatch.context() as m:
            # Points never go through the per-chunk planners.
            m.setattr(boxes, "plan_boxes", per_chunk)
            for name, sel in VINDEX.items():
                before = calls["points"]
                with native_only(reads=True):
                    assert_same(arr.vindex[sel], _numpy_vindex(data, sel))
                assert calls["points"] == before + native, name
        with monkeypatch.context() as m:
            # The orthogonal forms here are planned axis by axis on the native gather.
            m.setattr(pick_plans, "_orthogonal_by_chunk", per_chunk)
            for name, sel in OINDEX.items():
                before = calls["orthogonal"]
                with native_only(reads=True):
                    assert_same(arr.oindex[sel], _numpy_oindex(data, sel))
                assert calls["orthogonal"] == before + native, name
    # Forms the batch-wide planner leaves to the per-chunk loop still read right.
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE, "codec_pipeline.strict": True}), native_only(reads=True):
        assert_same(arr.oindex[ROWS, 13, 1:20:3], data[ROWS, 13, 1:20:3])
        assert_same(arr.oindex[ROWS, [40, 0, 11], 5], data[np.ix_(ROWS, [40, 0, 11], [5])][:, :, 0])


# The planners against a direct computation, on batches zarr's own indexers build.

_SPEC = ArraySpec(
    shape=CHUNKS, dtype=zarr.dtype.Int32(), fill_value=0, config=ArrayConfig.from_dict({}), prototype=default_buffer_prototype()
)


class _Key:
    """A byte getter with a store key, as zarr's ``StorePath``."""

    def __init__(self, path: str) -> None:
        self.path = path


def _batch(indexer: Any, spec: Any = _SPEC) -> list[ChunkRequest]:
    """zarr's read batch for ``indexer``, as ``_get_selection`` builds it (one spec for a
    regular grid)."""
    return [
        ChunkRequest(_Key("c/" + "/".join(map(str, p.chunk_coords))), spec, p.chunk_selection, p.out_selection, p.is_complete_chunk)
        for p in indexer
    ]


def _grid() -> Any:
    return zarr.create_array({}, shape=SHAPE, chunks=CHUNKS, dtype="int32").async_array._chunk_grid


def _expected_points(batch: list[ChunkRequest]) -> tuple[list[tuple[int, ...]], list[int], list[int]]:
    """Per point: its coordinates in its chunk and its output index; and points per chunk."""
    coords: list[tuple[int, ...]] = []
    outs: list[int] = []
    counts: list[int] = []
    for request in batch:
        columns = [np.asarray(s).reshape(-1) for s in request.chunk_selection]
        out = request.out_selection
        where = np.arange(out.start or 0, out.stop) if isinstance(out, slice) else np.asarray(out).reshape(-1)
        coords += list(zip(*(c.tolist() for c in columns), strict=True))
        outs += where.tolist()
        counts.append(len(where))
    return coords, outs, counts


def _check_point_picks(batch: list[ChunkRequest]) -> None:
    picks = pick_plans.plan_point_picks(batch, len(SHAPE))
    assert picks is not None
    coords, outs, counts = _expected_points(batch)
    assert picks.coords.dtype == np.uint64 and picks.coords.shape == (len(coords), len(SHAPE))
    assert [tuple(p) for p in picks.coords.tolist()] == coords
    assert picks.offsets.tolist() == outs
    assert picks.counts.tolist() == counts
    assert picks.chunk_shapes.tolist() == [list(CHUNKS)] * len(batch)
    keys = [r.byte_getter.path for r in batch]
    offsets = picks.key_offsets.tolist()
    assert [picks.keys[a:b].decode() for a, b in zip(offsets[:-1], offsets[1:], strict=True)] == keys


@pytest.mark.parametrize("name", ["unsorted", "repeated", "negative", "by-chunk", "one-chunk", "2d", "mask"])
def test_point_picks_match_zarrs_batch(name: str) -> None:
    sel = VINDEX[name]
    indexer = MaskIndexer(sel, SHAPE, _grid()) if name == "mask" else CoordinateIndexer(sel, SHAPE, _grid())
    batch = _batch(indexer)
    _check_point_picks(batch)
    # The scratch planner (stores reached through Python) takes the same collected points.
    assert boxes.plan_point_boxes(batch, len(SHAPE), 4) is not None


def test_point_picks_of_forms_zarr_never_hands_over() -> None:
    a = ChunkRequest(_Key("c/0/0/0"), _SPEC, (np.array([5, 1]), np.array([2, 0]), np.array([0, 4])), np.array([3, 0]), False)
    b = ChunkRequest(_Key("c/0/1/0"), _SPEC, (np.array([0]), np.array([3]), np.array([1])), slice(1, 2), False)
    c = ChunkRequest(_Key("c/1/0/0"), _SPEC, (np.array([7, 7]), np.array([9, 9]), np.array([5, 5])), slice(5, 7), False)
    # Output slices that are not back to back, and a mix of slices and index arrays.
    _check_point_picks([b, c])
    _check_point_picks([a, b, c])
    # Strided arrays (numpy copies what bytes.join refuses), other integer types, lists.
    strided = np.arange(12)[::3]  # [0, 3, 6, 9]
    d = ChunkRequest(_Key("c/0/0/0"), _SPEC, (strided % 8, strided, strided % 6), np.arange(4)[::-1], False)
    _check_point_picks([d])
    e = ChunkRequest(_Key("c/0/0/0"), _SPEC, tuple(np.array([1, 2], dtype=np.uint8) for _ in range(3)), slice(0, 2), False)
    _check_point_picks([e])
    f = ChunkRequest(_Key("c/0/0/0"), _SPEC, [np.array([1]), np.array([2]), np.array([3])], slice(0, 1), False)
    _check_point_picks([f])
    mixed = (np.array([1, 2], dtype=np.int32), np.array([0, 1], dtype=np.uint16), np.array([0, 5]))
    _check_point_picks([e, ChunkRequest(_Key("c/0/0/1"), _SPEC, mixed, np.array([2, 3], dtype=np.int32), False)])
    # A non-ASCII key.
    g = ChunkRequest(_Key("dé/c/0/0/0"), _SPEC, a.chunk_selection, a.out_selection, False)
    _check_point_picks([g, b])


@pytest.mark.parametrize(
    ("why", "chunk_selection", "out_selection"),
    [
        ("negative coordinate", (np.array([-1, 2]), np.array([0, 0]), np.array([0, 0])), slice(0, 2)),
        ("axes of different lengths", (np.array([1, 2]), np.array([0]), np.array([0, 0])), slice(0, 2)),
        ("output of another size", (np.array([1, 2]), np.array([0, 1]), np.array([0, 0])), slice(0, 3)),
        ("output index array of another size", (np.array([1, 2]), np.array([0, 1]), np.array([0, 0])), np.array([4])),
        ("negative output", (np.array([1, 2]), np.array([0, 1]), np.array([0, 0])), np.array([-1, 0])),
        ("stepped output", (np.array([1, 2]), np.array([0, 1]), np.array([0, 0])), slice(0, 4, 2)),
        ("float coordinates", (np.array([1.0, 2.0]), np.array([0, 1]), np.array([0, 0])), slice(0, 2)),
        ("a mask", (np.array([True, False]), np.array([0]), np.array([0])), slice(0, 1)),
        ("an integer", (1, np.array([0]), np.array([0])), slice(0, 1)),
        ("a slice", (slice(0, 2), np.array([0, 1]), np.array([0, 0])), slice(0, 2)),
        ("too few axes", (np.array([1]), np.array([0])), slice(0, 1)),
        ("no points", (np.array([], dtype=np.intp),) * 3, slice(0, 0)),
        ("an output tuple", (np.array([1]), np.array([0]), np.array([0])), (slice(0, 1),)),
    ],
)
def test_point_picks_refuse_other_forms(why: str, chunk_selection: Any, out_selection: Any) -> None:
    good = ChunkRequest(_Key("c/0/0/0"), _SPEC, (np.array([1]), np.array([2]), np.array([3])), slice(10, 11), False)
    bad = ChunkRequest(_Key("c/0/1/0"), _SPEC, chunk_selection, out_selection, False)
    # Where a bad chunk sits must not matter, nor may a good neighbour's lengths make up for it.
    assert pick_plans.plan_point_picks([good, bad], 3) is None, why
    assert pick_plans.plan_point_picks([bad, good], 3) is None, why


def test_point_picks_read_each_chunks_shape_on_an_irregular_batch() -> None:
    other = ArraySpec(shape=(4, 10, 6), dtype=_SPEC.dtype, fill_value=0, config=_SPEC.config, prototype=_SPEC.prototype)
    a = ChunkRequest(_Key("c/0/0/0"), _SPEC, (np.array([1]), np.array([2]), np.array([3])), slice(0, 1), False)
    b = ChunkRequest(_Key("c/1/0/0"), other, (np.array([3]), np.array([2]), np.array([1])), slice(1, 2), False)
    picks = pick_plans.plan_point_picks([a, b], 3)
    assert picks is not None and picks.chunk_shapes.tolist() == [list(CHUNKS), [4, 10, 6]]
    ragged = ArraySpec(shape=(4, 10), dtype=_SPEC.dtype, fill_value=0, config=_SPEC.config, prototype=_SPEC.prototype)
    assert pick_plans.plan_point_picks([a, b._replace(spec=ragged)], 3) is None


def _per_chunk_picks(picks: _selection.OrthogonalPicks) -> list[list[tuple[list[int], list[int]]]]:
    """Per chunk and axis: the indices picked in the chunk and their output positions."""
    result = []
    for pairs in picks.picks.tolist():
        result.append([
            (picks.indices[s : s + c].tolist(), picks.positions[s : s + c].tolist()) for s, c in pairs
        ])
    return result


@pytest.mark.parametrize("name", list(OINDEX))
def test_orthogonal_by_axis_equals_by_chunk(name: str) -> None:
    sel = OINDEX[name]
    full = sel + (slice(None),) * (len(SHAPE) - len(sel))
    batch = _batch(OrthogonalIndexer(full, SHAPE, _grid()))
    by_axis = pick_plans._orthogonal_by_axis(batch, 3)
    by_chunk = pick_plans._orthogonal_by_chunk(batch, 3, ())
    assert by_axis is not None and by_chunk is not None
    assert _per_chunk_picks(by_axis) == _per_chunk_picks(by_chunk)
    assert by_axis.keys == by_chunk.keys and by_axis.key_offsets.tolist() == by_chunk.key_offsets.tolist()
    assert by_axis.chunk_shapes.tolist() == by_chunk.chunk_shapes.tolist()
    assert by_axis.inserted_axes == by_chunk.inserted_axes == ()
    # Each distinct (selection, output selection) pair of an axis is planned once.
    distinct = sum(len({(id(r.chunk_selection[d]), id(r.out_selection[d])) for r in batch}) for d in range(3))
    assert by_axis.indices.size == sum(
        len(np.asarray(by_axis.indices[s : s + c])) for s, c in {tuple(p) for p in by_axis.picks.reshape(-1, 2).tolist()}
    )
    assert len({tuple(p) for p in by_axis.picks.reshape(-1, 2).tolist()}) == distinct


def _lines_run(function: Any, *args: Any) -> int:
    """How many lines of the ``_selection`` package run in ``function(*args)``."""
    count = 0

    def trace(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        if not frame.f_code.co_filename.startswith(os.path.dirname(_selection.__file__)):
            return None
        if event == "line":
            count += 1
        return trace

    sys.settrace(trace)
    try:
        function(*args)
    finally:
        sys.settrace(None)
    return count


def test_point_planning_runs_no_python_per_chunk() -> None:
    # The same lines run for a batch of 8 chunks as for one of 400: every per-chunk step is
    # a C-level pass (map, join, numpy).
    shape, chunks = (200, 200, 40), (10, 10, 10)
    grid = zarr.create_array({}, shape=shape, chunks=chunks, dtype="int32").async_array._chunk_grid
    spec = ArraySpec(shape=chunks, dtype=_SPEC.dtype, fill_value=0, config=_SPEC.config, prototype=_SPEC.prototype)
    rng = np.random.default_rng(5)
    lines = []
    for extent, at_least in ((20, 8), (200, 400)):
        sel = tuple(rng.integers(0, n, 4000) for n in (extent, extent, 40))
        batch = _batch(CoordinateIndexer(sel, shape, grid), spec)
        assert len(batch) >= at_least
        lines.append(_lines_run(pick_plans.plan_picks, batch, 3, ()))
    assert lines[0] == lines[1]


def test_orthogonal_planning_runs_python_per_distinct_selection_not_per_chunk() -> None:
    # Python runs once per distinct selection of an axis (a row of chunks shares one), not
    # once per chunk: 16 chunks, then 640 chunks of 24 more distinct selections.
    shape, chunks = (400, 400, 40), (10, 10, 10)
    grid = zarr.create_array({}, shape=shape, chunks=chunks, dtype="int32").async_array._chunk_grid
    spec = ArraySpec(shape=chunks, dtype=_SPEC.dtype, fill_value=0, config=_SPEC.config, prototype=_SPEC.prototype)
    runs = []
    for rows, cols in ((np.array([3, 15]), slice(0, 20)), (np.arange(3, 80, 10), slice(0, 200))):
        batch = _batch(OrthogonalIndexer((rows, cols, slice(None)), shape, grid), spec)
        distinct = sum(len({(id(r.chunk_selection[d]), id(r.out_selection[d])) for r in batch}) for d in range(3))
        runs.append((len(batch), distinct, _lines_run(pick_plans.plan_picks, batch, 3, ())))
    (chunks_small, distinct_small, lines_small), (chunks_big, distinct_big, lines_big) = runs
    assert (chunks_small, chunks_big) == (16, 640) and distinct_big - distinct_small == 24
    assert lines_big - lines_small <= 40 * (distinct_big - distinct_small)

"""Scattered selections the native side gathers itself (``ArrayHandle.gather_orthogonal`` /
``gather_points``): per chunk and axis the indices picked in the chunk and their positions
in the output, or per chunk its points and their offsets in the output. Each chunk is
decoded once, only as far as its picks need, and the picked elements land straight in
zarr's output: no scratch buffer, no numpy indexing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .points import collect_points
from .requests import _as_int, _keys, _out_of, _selection_of, _shared, _spec_of

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .requests import ChunkRequest

__all__ = ["OrthogonalPicks", "PointPicks", "plan_picks"]


@dataclass(frozen=True)
class OrthogonalPicks:
    """An orthogonal selection the native side gathers itself (``gather_orthogonal``).

    Attributes
    ----------
    keys, key_offsets
        The store keys back to back, and their byte offsets.
    chunk_shapes
        ``(len, ndim)``.
    picks
        ``(len, ndim, 2)``: per chunk and axis, ``(start, count)`` into ``indices`` and
        ``positions`` (chunks with the same picks along an axis share them).
    indices, positions
        Indices in the chunk and positions along the same axis of the native output.
    inserted_axes
        Axes the native output has (length 1) where zarr's output has none: integers, and
        zarr's dropped axes (``np.expand_dims`` of the output is a view).
    """

    keys: bytes
    key_offsets: np.ndarray[Any, Any]
    chunk_shapes: np.ndarray[Any, Any]
    picks: np.ndarray[Any, Any]
    indices: np.ndarray[Any, Any]
    positions: np.ndarray[Any, Any]
    inserted_axes: tuple[int, ...]


@dataclass(frozen=True)
class PointPicks:
    """Coordinate points the native side gathers itself (``gather_points``) into zarr's 1-D
    output.

    Attributes
    ----------
    keys, key_offsets, chunk_shapes
        As for ``OrthogonalPicks``.
    counts
        Points per chunk, in order.
    coords
        ``(points, ndim)``: each point's coordinates in its chunk.
    offsets
        Each point's index in the output.
    """

    keys: bytes
    key_offsets: np.ndarray[Any, Any]
    chunk_shapes: np.ndarray[Any, Any]
    counts: np.ndarray[Any, Any]
    coords: np.ndarray[Any, Any]
    offsets: np.ndarray[Any, Any]


def _axis_indices(sel: Any, length: int) -> np.ndarray[Any, Any] | None:
    """The indices one axis of a chunk selection picks, in order; None for a form the native
    gather does not take (or an empty or negative one)."""
    if isinstance(sel, slice):
        start, stop, step = sel.indices(length)
        if step < 1:
            return None
        indices = np.arange(start, stop, step)
    elif isinstance(sel, np.ndarray) and sel.dtype == np.bool_:
        if sel.ndim != 1:
            return None
        indices = np.flatnonzero(sel)
    elif isinstance(sel, np.ndarray) and sel.dtype.kind in "iu":
        indices = sel.reshape(-1)
        if indices.dtype.kind == "i" and indices.size and indices.min() < 0:
            return None
    else:
        return None
    return indices if indices.size else None


def _axis_positions(out: Any, n: int) -> np.ndarray[Any, Any] | None:
    """The ``n`` output positions of one axis of zarr's output selection, in order."""
    if isinstance(out, slice):
        start = out.start or 0
        if out.step not in (None, 1) or start < 0 or (out.stop is not None and out.stop - start != n):
            return None
        return np.arange(start, start + n)
    if isinstance(out, np.ndarray) and out.dtype.kind in "iu":
        positions = out.reshape(-1)
        if positions.size != n or (positions.dtype.kind == "i" and positions.min() < 0):
            return None
        return positions
    return None


def _axis_pick(sel: Any, out: Any, length: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None:
    """One axis of a chunk's orthogonal selection: its in-chunk indices and their output
    positions, or None when either cannot be gathered natively."""
    picked = _axis_indices(sel, length)
    if picked is None:
        return None
    placed = _axis_positions(out, picked.size)
    if placed is None:
        return None
    return picked, placed


def _as_u64(arrays: list[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
    """Non-negative integer arrays concatenated as ``uint64``."""
    if not arrays:
        return np.zeros(0, dtype=np.uint64)
    return np.concatenate(arrays, dtype=np.uint64, casting="unsafe")


def _identities(values: Sequence[Any]) -> np.ndarray[Any, Any]:
    """Each value's number among the distinct objects of ``values`` (by identity), from 0
    up to at most ``len(values) - 1``."""
    ids = np.fromiter(map(id, values), dtype=np.uint64, count=len(values))
    return np.unique(ids, return_inverse=True)[1].astype(np.int64)


def _orthogonal_by_axis(batch: Sequence[ChunkRequest], ndim: int) -> OrthogonalPicks | None:
    """``plan_orthogonal_picks`` for batches whose every chunk selection and output
    selection holds a slice or an array per axis and whose chunks share one spec (what
    zarr's orthogonal indexer hands over for slices, integer arrays and masks); None for
    anything else, which the per-chunk loop then plans.

    No Python code runs per chunk: per axis, each chunk's (selection, output selection) pair
    is keyed by the objects' identities (zarr hands every chunk of a row of chunks the same
    objects; the batch keeps them alive meanwhile) in a C-level pass, the distinct pairs
    are planned once each, and the chunks' ``(start, count)`` pairs are gathered by numpy."""
    n = len(batch)
    if not n or ndim == 0:
        return None
    selections = list(map(_selection_of, batch))
    outs = list(map(_out_of, batch))
    if set(map(type, selections)) != {tuple} or set(map(type, outs)) != {tuple}:
        return None
    if set(map(len, selections)) != {ndim} or set(map(len, outs)) != {ndim}:
        return None
    specs = list(map(_spec_of, batch))
    if not _shared(specs):
        return None
    chunk_shape = tuple(specs[0].shape)
    if len(chunk_shape) != ndim:
        return None
    indices: list[np.ndarray[Any, Any]] = []
    positions: list[np.ndarray[Any, Any]] = []
    size = 0
    pairs = np.empty((n, ndim, 2), dtype=np.uint64)
    for d, (column, out_column) in enumerate(zip(zip(*selections), zip(*outs), strict=True)):
        # The distinct (selection, output selection) pairs of this axis, by identity: the
        # first chunk holding each, and every chunk's pair number.
        pair_ids = _identities(column) * (n + 1) + _identities(out_column)
        _, holders, which = np.unique(pair_ids, return_index=True, return_inverse=True)
        starts = np.empty(holders.size, dtype=np.uint64)
        counts = np.empty(holders.size, dtype=np.uint64)
        for j, holder in enumerate(holders.tolist()):
            sel, out = column[holder], out_column[holder]
            if type(sel) is not slice and type(sel) is not np.ndarray:
                return None
            pick = _axis_pick(sel, out, chunk_shape[d])
            if pick is None:
                return None
            picked, placed = pick
            starts[j], counts[j] = size, picked.size
            indices.append(picked)
            positions.append(placed)
            size += picked.size
        pairs[:, d, 0] = starts[which]
        pairs[:, d, 1] = counts[which]
    keys_data, key_offsets = _keys(batch)
    shapes = np.broadcast_to(np.array(chunk_shape, dtype=np.uint64), (n, ndim))
    return OrthogonalPicks(keys_data, key_offsets, shapes, pairs, _as_u64(indices), _as_u64(positions), ())


def plan_orthogonal_picks(batch: Sequence[ChunkRequest], ndim: int, drop_axes: tuple[int, ...]) -> OrthogonalPicks | None:
    """Plan zarr's orthogonal selections (a tuple per chunk: integers, slices, integer
    arrays, masks, zarr's ``np.ix_`` form) as per-axis picks; None for any other form.

    The common form (a slice or an array on every axis, nothing dropped, one chunk spec) is
    planned axis by axis over the whole batch (``_orthogonal_by_axis``); integers, dropped
    axes and irregular grids chunk by chunk (``_orthogonal_by_chunk``)."""
    if not drop_axes:
        by_axis = _orthogonal_by_axis(batch, ndim)
        if by_axis is not None:
            return by_axis
    return _orthogonal_by_chunk(batch, ndim, drop_axes)


class _Pool:
    """Every axis' picks of a batch back to back, each distinct one once."""

    def __init__(self) -> None:
        self.indices: list[np.ndarray[Any, Any]] = []
        self.positions: list[np.ndarray[Any, Any]] = []
        self.size = 0
        self.shared: dict[tuple[Any, ...], tuple[int, int]] = {}

    def add(self, picked: np.ndarray[Any, Any], placed: np.ndarray[Any, Any]) -> tuple[int, int]:
        entry = (self.size, picked.size)
        self.indices.append(picked)
        self.positions.append(placed)
        self.size += picked.size
        return entry


def _chunk_picks(
    request: ChunkRequest, ndim: int, drop_axes: tuple[int, ...], pool: _Pool, pairs: list[int]
) -> tuple[int, ...] | None:
    """One chunk of ``_orthogonal_by_chunk``: appends its ``(start, count)`` per axis to
    ``pairs``; the axes it indexes by an integer, or None for a form it cannot pick."""
    chunk_selection, out_selection = request[2], request[3]
    if type(chunk_selection) is not tuple or len(chunk_selection) != ndim or type(out_selection) is not tuple:
        return None
    chunk_shape = request[1].shape
    shared, ndarray = pool.shared, np.ndarray
    ints: list[int] = []
    k = 0
    for d in range(ndim):
        sel = chunk_selection[d]
        kind = type(sel)
        out = value = None
        if (kind is slice or kind is ndarray) and d not in drop_axes:
            if k >= len(out_selection):
                return None
            out = out_selection[k]
            k += 1
            key: tuple[Any, ...] = (sel if kind is slice else id(sel), out if type(out) is slice else id(out), chunk_shape[d])
        else:
            value = _as_int(sel)
            if value is None:
                # An integer on an axis zarr drops, in zarr's ``np.ix_`` form: one element.
                if not (kind is ndarray and d in drop_axes and sel.size == 1 and sel.dtype.kind in "iu"):
                    return None
                value = int(sel.reshape(-1)[0])
            if value < 0:
                return None
            ints.append(d)
            key = (None, value)
        entry = shared.get(key)
        if entry is None:
            pick = (np.array([value]), np.zeros(1, dtype=np.intp)) if value is not None else _axis_pick(sel, out, chunk_shape[d])
            if pick is None:
                return None
            entry = shared[key] = pool.add(*pick)
        pairs += entry
    return tuple(ints) if k == len(out_selection) else None


def _orthogonal_by_chunk(batch: Sequence[ChunkRequest], ndim: int, drop_axes: tuple[int, ...]) -> OrthogonalPicks | None:
    """``plan_orthogonal_picks`` for any orthogonal form, a loop over the chunks.

    zarr hands every chunk of a row of chunks the same index array and most chunks the same
    slices: each axis' picks are computed once per distinct (selection, output selection,
    extent), keyed by the slices themselves (hashable) and by the arrays' identity (the
    batch keeps them alive meanwhile), and shared in the pool."""
    pool = _Pool()
    pairs: list[int] = []
    shapes: list[int] = []
    inserted: tuple[int, ...] | None = None
    for request in batch:
        ints = _chunk_picks(request, ndim, drop_axes, pool, pairs)
        if ints is None or (inserted is not None and ints != inserted):
            return None
        inserted = ints
        shapes += request[1].shape
    if inserted is None:
        return None
    keys, key_offsets = _keys(batch)
    return OrthogonalPicks(
        keys, key_offsets, np.array(shapes, dtype=np.uint64).reshape(len(batch), ndim),
        np.array(pairs, dtype=np.uint64).reshape(len(batch), ndim, 2), _as_u64(pool.indices), _as_u64(pool.positions),
        inserted,
    )


def plan_point_picks(batch: Sequence[ChunkRequest], ndim: int) -> PointPicks | None:
    """Plan coordinate points (``vindex``, masks) over the whole batch as per-chunk points;
    None when the batch is not of that form (``collect_points``)."""
    collected = collect_points(batch, ndim)
    if collected is None:
        return None
    coords, out_all, counts, chunk_shapes = collected
    keys, key_offsets = _keys(batch)
    return PointPicks(
        keys, key_offsets, chunk_shapes.astype(np.uint64), counts.astype(np.uint64),
        coords.astype(np.uint64), out_all.astype(np.uint64, copy=False),
    )


def plan_picks(batch: Sequence[ChunkRequest], ndim: int, drop_axes: tuple[int, ...]) -> OrthogonalPicks | PointPicks | None:
    """Plan a read the native side gathers itself: coordinate points, else orthogonal picks;
    None when the batch has neither form (``plan_boxes`` then plans it)."""
    if not batch:
        return None
    if not drop_axes and not isinstance(batch[0].out_selection, tuple):
        return plan_point_picks(batch, ndim)
    return plan_orthogonal_picks(batch, ndim, drop_axes)

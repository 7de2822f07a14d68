"""zarr's orthogonal and coordinate selections of a whole array, planned for the native
gathers without zarr's indexers (the direct API's ``oindex``, ``vindex`` and stepped
slices).

zarr's indexers build a Python object per chunk before any pipeline sees the selection;
here each axis' indices are grouped by chunk with numpy (one sort per axis, or one for all
points), and the result is the same ``OrthogonalPicks`` / ``PointPicks`` the pipeline
hands to ``ArrayHandle.gather_orthogonal`` / ``gather_points``. The semantics are zarr's
(``Array.get_orthogonal_selection``, ``get_coordinate_selection``, ``get_mask_selection``):
negative indices count from the end, integer arrays may be unsorted and repeat, a boolean
mask selects where it is true, and an index out of bounds is an ``IndexError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import index as as_index
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ZarrsValueError
from .picks import OrthogonalPicks, PointPicks

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["Grid", "basic_region", "plan_coordinates", "plan_mask", "plan_orthogonal"]

Ints = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Grid:
    """An array's chunk grid as the gathers need it.

    Attributes
    ----------
    shape
        The array's shape.
    edges
        Per axis, the chunks' boundaries: 0, then the end of each chunk (a regular grid's
        last chunk ends past the array, at a whole chunk).
    key_of
        The store key of the chunk at a grid index.
    """

    shape: tuple[int, ...]
    edges: tuple[Ints, ...]
    key_of: Callable[[tuple[int, ...]], str]

    @classmethod
    def regular(cls, shape: Sequence[int], chunks: Sequence[int], key_of: Callable[[tuple[int, ...]], str]) -> Grid:
        edges = tuple(np.arange(0, -(-n // c) + 1, dtype=np.int64) * c for n, c in zip(shape, chunks, strict=True))
        return cls(tuple(shape), edges, key_of)


def _axis_indices(sel: Any, length: int, axis: int) -> tuple[Ints, bool]:
    """One axis of an orthogonal selection as indices in the array (in output order), and
    whether the axis is dropped (an integer)."""
    if isinstance(sel, slice):
        start, stop, step = sel.indices(length)
        if step < 1:
            raise IndexError("only slices with step >= 1 are supported")
        return np.arange(start, stop, step, dtype=np.int64), False
    if isinstance(sel, (int, np.integer)) and not isinstance(sel, (bool, np.bool_)):
        return _in_bounds(np.array([as_index(sel)], dtype=np.int64), length, axis), True
    array = np.asarray(sel)
    if array.dtype == np.bool_:
        if array.shape != (length,):
            raise IndexError(f"a boolean selection of axis {axis} needs {length} elements, not shape {array.shape}")
        return np.flatnonzero(array).astype(np.int64), False
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise IndexError(f"unsupported selection of axis {axis}: {sel!r} (ints, slices, 1-d integer or boolean arrays)")
    return _in_bounds(array.astype(np.int64), length, axis), False


def _in_bounds(indices: Ints, length: int, axis: int) -> Ints:
    """Negative indices counted from the end; an ``IndexError`` naming the first index out
    of bounds."""
    indices = np.where(indices < 0, indices + length, indices)
    bad = (indices < 0) | (indices >= length)
    if bad.any():
        first = int(indices[np.argmax(bad)])
        raise IndexError(f"index {first - length if first < 0 else first} is out of bounds for axis {axis} with size {length}")
    return indices


def _full(selection: Any, ndim: int) -> tuple[Any, ...]:
    """A selection as one entry per axis (an Ellipsis filled in, missing axes whole)."""
    entries = selection if isinstance(selection, tuple) else (selection,)
    if sum(entry is Ellipsis for entry in entries) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if any(entry is Ellipsis for entry in entries):
        at = next(i for i, entry in enumerate(entries) if entry is Ellipsis)
        entries = entries[:at] + (slice(None),) * (ndim - len(entries) + 1) + entries[at + 1 :]
    if len(entries) > ndim:
        raise IndexError(f"too many indices for an array of {ndim} dimensions: {len(entries)}")
    return entries + (slice(None),) * (ndim - len(entries))


def _keys(grid: Grid, chunks: Ints) -> tuple[bytes, Ints]:
    """The store keys of the chunks at grid indices ``chunks`` (``(n, ndim)``) back to
    back, and their ``n + 1`` byte offsets."""
    encoded = [grid.key_of(tuple(index)).encode("utf-8") for index in chunks.tolist()]
    offsets = np.zeros(len(encoded) + 1, dtype=np.uint64)
    np.cumsum([len(key) for key in encoded], out=offsets[1:])
    return b"".join(encoded), offsets


def _shapes(grid: Grid, chunks: Ints) -> Ints:
    """Each chunk's shape (``(n, ndim)``) from the grid's edges."""
    columns = [edges[chunks[:, d] + 1] - edges[chunks[:, d]] for d, edges in enumerate(grid.edges)]
    return np.stack(columns, axis=1).astype(np.uint64) if columns else np.zeros((len(chunks), 0), dtype=np.uint64)


def plan_orthogonal(grid: Grid, selection: Any) -> tuple[OrthogonalPicks | None, tuple[int, ...]]:
    """An orthogonal selection (``oindex``; basic indexing with steps) as native picks (None
    when it selects nothing), and the shape of zarr's result."""
    ndim = len(grid.shape)
    per_axis = [_axis_indices(sel, n, d) for d, (sel, n) in enumerate(zip(_full(selection, ndim), grid.shape, strict=True))]
    out_shape = tuple(len(indices) for indices, dropped in per_axis if not dropped)
    if any(len(indices) == 0 for indices, _ in per_axis):
        return None, out_shape
    pool_indices: list[Ints] = []
    pool_positions: list[Ints] = []
    groups: list[tuple[Ints, Ints, Ints]] = []  # per axis: chunk numbers, pick starts, pick counts
    size = 0
    for d, (indices, _) in enumerate(per_axis):
        edges = grid.edges[d]
        chunk_of = np.searchsorted(edges, indices, side="right") - 1
        order = np.argsort(chunk_of, kind="stable")
        chunks, starts, counts = np.unique(chunk_of[order], return_index=True, return_counts=True)
        pool_indices.append(indices[order] - edges[chunk_of[order]])
        pool_positions.append(order)
        groups.append((chunks, starts + size, counts))
        size += len(indices)
    # Every combination of one chunk per axis, in C order of the grid.
    mesh = np.meshgrid(*[np.arange(len(g[0])) for g in groups], indexing="ij")
    which = np.stack([m.reshape(-1) for m in mesh], axis=1) if mesh else np.zeros((1, 0), dtype=np.int64)
    chunks = np.stack([groups[d][0][which[:, d]] for d in range(ndim)], axis=1)
    picks = np.stack(
        [np.stack([groups[d][1][which[:, d]], groups[d][2][which[:, d]]], axis=1) for d in range(ndim)], axis=1
    )
    keys, key_offsets = _keys(grid, chunks)
    inserted = tuple(d for d, (_, dropped) in enumerate(per_axis) if dropped)
    return (
        OrthogonalPicks(
            keys, key_offsets, _shapes(grid, chunks), picks.astype(np.uint64),
            np.concatenate(pool_indices).astype(np.uint64), np.concatenate(pool_positions).astype(np.uint64), inserted,
        ),
        out_shape,
    )


def plan_coordinates(grid: Grid, selection: Any) -> tuple[PointPicks | None, tuple[int, ...]]:
    """A coordinate selection (``vindex`` with integer arrays, broadcast together) as native
    points (None when it selects nothing), and the shape of zarr's result."""
    ndim = len(grid.shape)
    entries = selection if isinstance(selection, tuple) else (selection,)
    if len(entries) != ndim:
        raise IndexError(f"a coordinate selection needs one integer array per axis ({ndim}), not {len(entries)}")
    arrays = []
    for d, entry in enumerate(entries):
        array = np.asarray(entry)
        if array.size and array.dtype.kind not in "iu":
            raise IndexError(f"unsupported coordinate selection of axis {d}: {entry!r} (integer arrays)")
        arrays.append(array.astype(np.int64))
    try:
        broadcast = np.broadcast_arrays(*arrays)
    except ValueError as exc:
        raise ZarrsValueError(f"coordinate arrays of shapes {[a.shape for a in arrays]} do not broadcast: {exc}") from None
    out_shape = broadcast[0].shape if broadcast else ()
    coords = np.stack([_in_bounds(a.reshape(-1), n, d) for d, (a, n) in enumerate(zip(broadcast, grid.shape, strict=True))], axis=1)
    return _points(grid, coords), out_shape


def plan_mask(grid: Grid, mask: Any) -> tuple[PointPicks | None, tuple[int, ...]]:
    """A boolean mask of the array's shape (``vindex[mask]``) as native points (None when
    no element is true), and the shape of zarr's result (the number of true elements)."""
    array = np.asarray(mask)
    if array.dtype != np.bool_ or array.shape != grid.shape:
        raise IndexError(f"a mask selection needs a boolean array of shape {grid.shape}, not {array.dtype} {array.shape}")
    coords = np.argwhere(array).astype(np.int64)
    return _points(grid, coords), (len(coords),)


def _points(grid: Grid, coords: Ints) -> PointPicks | None:
    """Points (``(points, ndim)``, in output order) grouped by chunk."""
    if not len(coords):
        return None
    ndim = len(grid.shape)
    chunk_of = np.stack([np.searchsorted(grid.edges[d], coords[:, d], side="right") - 1 for d in range(ndim)], axis=1)
    flat = np.ravel_multi_index(tuple(chunk_of.T), tuple(len(edges) - 1 for edges in grid.edges))
    order = np.argsort(flat, kind="stable")
    _, first, counts = np.unique(flat[order], return_index=True, return_counts=True)
    chunks = chunk_of[order][first]
    starts = np.stack([grid.edges[d][chunk_of[order, d]] for d in range(ndim)], axis=1)
    keys, key_offsets = _keys(grid, chunks)
    return PointPicks(
        keys, key_offsets, _shapes(grid, chunks), counts.astype(np.uint64),
        (coords[order] - starts).astype(np.uint64), order.astype(np.uint64),
    )


def basic_region(key: Any, shape: tuple[int, ...]) -> tuple[list[int], list[int], tuple[int, ...]]:
    """Start, shape and the axes dropped by integer indices, for a basic index ``key`` of
    step-1 slices and integers; ``ZarrsValueError`` for anything else."""
    if not isinstance(key, tuple):
        key = (key,)
    if len(key) != len(shape):
        key = _whole_key(key, len(shape))
    start, extent, dropped = [], [], []
    for axis, k in enumerate(key):
        n = shape[axis]
        if type(k) is slice:
            lo, hi, step = k.indices(n)
            if step != 1:
                raise ZarrsValueError("the direct API takes step-1 slices only; use zarr for strides")
            start.append(lo)
            extent.append(hi - lo if hi > lo else 0)
        elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            index = int(k) + n if k < 0 else int(k)
            if not 0 <= index < n:
                raise IndexError(f"index {k} is out of bounds for axis {axis} of size {n}")
            start.append(index)
            extent.append(1)
            dropped.append(axis)
        elif k is Ellipsis:
            return basic_region(_whole_key(key, len(shape)), shape)
        else:
            raise ZarrsValueError(f"unsupported index {k!r}: use slices and integers")
    return start, extent, tuple(dropped)


def _whole_key(key: tuple[Any, ...], ndim: int) -> tuple[Any, ...]:
    """``key`` with its Ellipsis filled in and missing trailing axes made whole."""
    ellipses = [i for i, k in enumerate(key) if k is Ellipsis]
    if len(ellipses) > 1:
        raise ZarrsValueError("an index can only have a single ellipsis ('...')")
    if ellipses:
        at = ellipses[0]
        fill = (slice(None),) * (ndim - len(key) + 1)
        key = key[:at] + fill + key[at + 1 :]
    if len(key) > ndim:
        raise ZarrsValueError(f"too many indices ({len(key)}) for an array of {ndim} dimensions")
    return key + (slice(None),) * (ndim - len(key))

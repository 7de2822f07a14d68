"""Contiguous selections: step-1 slices and integers become a subset of each chunk and a
start in the output buffer, which the native side decodes into directly."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate
from typing import TYPE_CHECKING

import numpy as np

from .._bindings import ChunkBatch
from .requests import _as_int

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .requests import ChunkRequest

__all__ = ["ChunkPlan", "plan_contiguous"]


@dataclass(frozen=True)
class ChunkPlan:
    """A batch ready for the native calls.

    Attributes
    ----------
    batch
        Keys and geometry.
    inserted_axes
        Axes of the array indexed by an integer: zarr's output has no axis there, the native
        buffer has one of length 1 (``np.expand_dims`` of the output is a view).
    buffer_shape
        The shape of the selection in the native buffer's dimensions.
    """

    batch: ChunkBatch
    inserted_axes: tuple[int, ...]
    buffer_shape: tuple[int, ...]


_UNIT_STEPS = {None, 1}


def _plan_slices(batch: Sequence[ChunkRequest], ndim: int) -> ChunkPlan | None:
    """``plan_contiguous`` for zarr's boxes: every chunk and output selection a tuple of one
    step-1 slice per axis (what zarr's basic indexer hands over); None for anything else,
    which the general loop then plans.

    A small read pays for every bytecode here: one tight loop with exact type checks, and
    one numpy call for the geometry and the key offsets together."""
    flat: list[int] = []
    paths: list[str] = []
    extent = [0] * ndim
    axes = range(ndim)
    unit = _UNIT_STEPS
    for request in batch:
        selection, out_selection = request[2], request[3]
        if type(selection) is not tuple or type(out_selection) is not tuple:
            return None
        if len(selection) != ndim or len(out_selection) != ndim:
            return None
        shape = request[1].shape
        starts: list[int] = []
        sizes: list[int] = []
        outs: list[int] = []
        for d in axes:
            sel, out = selection[d], out_selection[d]
            if type(sel) is not slice or type(out) is not slice or out.step not in unit:
                return None
            start, stop, step = sel.indices(shape[d])
            at = out.start or 0
            size = stop - start
            if step != 1 or size < 0 or at < 0:
                return None
            starts.append(start)
            sizes.append(size)
            outs.append(at)
            if at + size > extent[d]:
                extent[d] = at + size
        flat += shape
        flat += starts
        flat += sizes
        flat += outs
        paths.append(request[0].path)
    n = len(paths)
    if not n:
        return None
    joined = "".join(paths)
    keys = joined.encode("utf-8")
    if len(keys) == len(joined):  # ASCII: a character is a byte
        lengths = list(map(len, paths))
    else:
        encoded = [path.encode("utf-8") for path in paths]
        keys, lengths = b"".join(encoded), list(map(len, encoded))
    # The geometry (ChunkBatch's layout) and the key offsets, views of one array.
    flat.append(0)
    flat += accumulate(lengths)
    values = np.array(flat, dtype=np.uint64)
    split = n * 4 * ndim
    batch_ = ChunkBatch(keys, values[split:], values[:split].reshape(n, 4, ndim))
    return ChunkPlan(batch_, (), tuple(extent))


def plan_contiguous(batch: Sequence[ChunkRequest], ndim: int, drop_axes: tuple[int, ...]) -> ChunkPlan | None:
    """Plan ``batch`` as contiguous regions decoded straight into the output, or None when a
    selection is not contiguous (``boxes.plan_boxes`` handles it)."""
    if drop_axes:
        return None
    boxes = _plan_slices(batch, ndim)
    if boxes is not None:
        return boxes
    # Geometry is collected in a flat list and converted once: per-element numpy
    # assignment costs more than the rest of this loop.
    flat: list[int] = []
    keys: list[str] = []
    inserted: tuple[int, ...] | None = None
    extent = [0] * ndim
    for request in batch:
        placed = _place(request, ndim, extent)
        if placed is None:
            return None
        ints, geometry = placed
        if inserted is None:
            inserted = ints
        elif inserted != ints:
            return None
        flat.extend(geometry)
        keys.append(request.byte_getter.path)
    rows = np.array(flat, dtype=np.uint64).reshape(len(keys), 4, ndim)
    # ChunkBatch.build's layout, assembled directly: a small read pays for every numpy call.
    encoded = [key.encode("utf-8") for key in keys]
    offsets = np.array([0, *accumulate(map(len, encoded))], dtype=np.uint64)
    return ChunkPlan(ChunkBatch(b"".join(encoded), offsets, rows), inserted or (), tuple(extent))


def _place(request: ChunkRequest, ndim: int, extent: list[int]) -> tuple[tuple[int, ...], list[int]] | None:
    """One chunk of ``plan_contiguous``: the axes it indexes by an integer, and its geometry
    row (chunk shape, subset start, subset shape, buffer start); grows ``extent`` to the
    buffer it reaches. None when its selection is not contiguous."""
    chunk_selection, out_selection = request.chunk_selection, request.out_selection
    if not isinstance(chunk_selection, tuple) or len(chunk_selection) != ndim or not isinstance(out_selection, tuple):
        return None
    chunk_shape = request.spec.shape
    starts: list[int] = []
    shapes: list[int] = []
    buffer_starts: list[int] = []
    ints: list[int] = []
    k = 0
    for d in range(ndim):
        sel = chunk_selection[d]
        if not isinstance(sel, slice):
            index = _as_int(sel)
            if index is None:
                return None
            starts.append(index)
            shapes.append(1)
            buffer_starts.append(0)
            ints.append(d)
            extent[d] = 1
            continue
        if k >= len(out_selection):
            return None
        start, stop, step = sel.indices(chunk_shape[d])
        out_sel = out_selection[k]
        k += 1
        if step != 1 or not isinstance(out_sel, slice) or out_sel.step not in (None, 1):
            return None
        out_start = out_sel.start or 0
        starts.append(start)
        shapes.append(stop - start)
        buffer_starts.append(out_start)
        extent[d] = max(extent[d], out_start + stop - start)
    if k != len(out_selection):
        return None
    return tuple(ints), [*chunk_shape, *starts, *shapes, *buffer_starts]

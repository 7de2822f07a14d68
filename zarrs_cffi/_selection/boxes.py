"""Any selection zarr's indexers produce, as bounding boxes decoded natively into a scratch
buffer, and numpy's copies between the boxes and zarr's output or value.

Stepped slices, integer arrays in any order with repeats, zarr's ``np.ix_`` form for
orthogonal indexing, coordinate and mask ``vindex`` points, integers under ``drop_axes``:
each chunk's bounding box is decoded natively into a scratch buffer (boxes stacked along
the first axis), and numpy copies out of it (reads) or into it (writes) with the chunk
selection shifted to the box. Writes then store the boxes back natively, merged with the
rest of each chunk.

A read of a shard whose native decoder fetches only the inner chunks a box touches can pass
the inner chunk shape: an integer-array axis is then split at inner chunk boundaries into
one box per run (``split_inner``), so a few scattered rows decode the inner chunks that
hold them rather than every inner chunk of their bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING, Any

import numpy as np

from .._bindings import ChunkBatch
from .._core.fallback import fall_back
from .points import collect_points
from .requests import _as_int

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from .requests import ChunkRequest

__all__ = ["BoxGroup", "copy_from_boxes", "copy_into_boxes", "plan_boxes", "plan_point_boxes", "scratch_buffers", "split_inner"]


# Scratch buffers of box reads and writes are cut into groups of at most this
# many bytes (a group always holds at least one chunk).
SCRATCH_BYTES = 8 << 20


@dataclass(frozen=True)
class BoxGroup:
    """Chunks whose bounding boxes are decoded into one scratch buffer.

    Attributes
    ----------
    indices
        Positions of the chunks in zarr's batch (a chunk split into several boxes appears
        once per box).
    batch
        Keys and geometry: each chunk's bounding box, placed in the scratch buffer.
    scratch_shape
        Shape of the scratch buffer (the boxes stacked along axis 0).
    items
        Per chunk: the box's region of the scratch buffer, the chunk selection shifted to
        the box, and zarr's output selection.
    points
        For a read of coordinate points (``plan_point_boxes``, which leaves ``items`` empty):
        every point's flat index in the scratch buffer and its index in zarr's 1-D output.
    """

    indices: list[int]
    batch: ChunkBatch
    scratch_shape: tuple[int, ...]
    items: list[tuple[tuple[slice, ...], tuple[Any, ...], Any]]
    points: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None = None


def _box(sel: Any, length: int) -> tuple[int, int, Any]:
    """The bounding range of one axis of a chunk selection, and the selection shifted to it;
    falls back for a selection it cannot bound."""
    index = _as_int(sel)
    if index is not None:
        return index, index + 1, 0
    if isinstance(sel, slice):
        start, stop, step = sel.indices(length)
        if step < 1:
            fall_back("selection", "negative slice steps")
        n = len(range(start, stop, step))
        if n == 0:
            fall_back("selection", "empty selection")
        return start, start + (n - 1) * step + 1, slice(0, (n - 1) * step + 1, step)
    if isinstance(sel, np.ndarray):
        if sel.size == 0:
            fall_back("selection", "empty selection")
        if sel.dtype == np.bool_:
            if sel.ndim != 1:
                fall_back("selection", "multidimensional mask in a chunk selection")
            hits = np.flatnonzero(sel)
            if hits.size == 0:
                fall_back("selection", "empty selection")
            lo, hi = int(hits[0]), int(hits[-1]) + 1
            return lo, hi, sel[lo:hi]
        if sel.dtype.kind in "iu":
            if sel.size <= 64:
                # A few points (vindex hands each chunk a handful): Python's min and max over
                # a list cost less than two numpy reductions.
                values = sel.ravel().tolist()
                lo, hi = min(values), max(values) + 1
            else:
                lo, hi = int(sel.min()), int(sel.max()) + 1
            if lo < 0:
                fall_back("selection", "negative indices in a chunk selection")
            return lo, hi, sel - lo if lo else sel
    fall_back("selection", f"selection of type {type(sel).__name__}")


def _runs(sel: np.ndarray[Any, Any], inner: int) -> list[tuple[int, int]] | None:
    """Where a non-decreasing 1-D index array changes inner chunk (``[start, stop)``
    position ranges, one per inner chunk); None when it is not sorted or needs no split."""
    if sel.size < 2:
        return None
    block = sel // inner
    if block[0] == block[-1]:
        return None
    steps = np.diff(block)
    if (steps < 0).any():
        return None
    cuts = (np.flatnonzero(steps) + 1).tolist()
    bounds = [0, *cuts, int(sel.size)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def split_inner(request: ChunkRequest, inner: Sequence[int], drop_axes: tuple[int, ...]) -> list[ChunkRequest]:
    """``request`` as one request per inner chunk run of its sorted integer-array axes, each
    with its share of zarr's output selection; ``[request]`` when there is nothing to split.

    Only orthogonal selections split (zarr's output selection is then a tuple with one step-1
    slice per kept axis); coordinate (``vindex``) points keep one box per chunk."""
    chunk_selection, out_selection = request.chunk_selection, request.out_selection
    if not isinstance(chunk_selection, tuple) or not isinstance(out_selection, tuple) or len(inner) != len(chunk_selection):
        return [request]
    # zarr's output axes: the chunk's axes less integers and dropped axes, in order.
    kept = [
        d for d, sel in enumerate(chunk_selection)
        if d not in drop_axes and _as_int(sel) is None
    ]
    if len(kept) != len(out_selection):
        return [request]
    axes: list[tuple[int, int, list[tuple[int, int]]]] = []  # (axis, output axis, runs)
    for k, d in enumerate(kept):
        sel = chunk_selection[d]
        if not isinstance(sel, np.ndarray) or sel.dtype.kind not in "iu" or sel.size < 2:
            continue
        if sum(n > 1 for n in sel.shape) > 1:
            return [request]
        out = out_selection[k]
        if not isinstance(out, slice) or out.step not in (None, 1):
            continue
        runs = _runs(sel.reshape(-1), inner[d])
        if runs is not None:
            axes.append((d, k, runs))
    if not axes:
        return [request]
    pieces = [(list(chunk_selection), list(out_selection))]
    for d, k, runs in axes:
        sel = chunk_selection[d]
        flat = sel.reshape(-1)
        shape = tuple(-1 if n > 1 else 1 for n in sel.shape) if sel.ndim > 1 else (-1,)
        start = int(out_selection[k].start or 0)
        split = []
        for chunk_sel, out_sel in pieces:
            for lo, hi in runs:
                c, o = list(chunk_sel), list(out_sel)
                c[d] = flat[lo:hi].reshape(shape)
                o[k] = slice(start + lo, start + hi)
                split.append((c, o))
        pieces = split
    return [request._replace(chunk_selection=tuple(c), out_selection=tuple(o)) for c, o in pieces]


class _Groups:
    """Boxes stacked into scratch buffers of at most ``scratch_bytes`` each (a group always
    holds at least one box)."""

    def __init__(self, ndim: int, itemsize: int, scratch_bytes: int) -> None:
        self.ndim, self.itemsize, self.scratch_bytes = ndim, itemsize, scratch_bytes
        self.groups: list[BoxGroup] = []
        self._start()

    def _start(self) -> None:
        self.rows: list[list[int]] = []
        self.keys: list[str] = []
        self.items: list[tuple[tuple[slice, ...], tuple[Any, ...], Any]] = []
        self.indices: list[int] = []
        self.extent = [0] * self.ndim
        self.offset = 0

    def add(self, position: int, request: ChunkRequest, starts: list[int], shapes: list[int], shifted: list[Any]) -> None:
        """Stack one box below the current group's, first closing the group when the box
        would grow it past the limit."""
        ndim, itemsize = self.ndim, self.itemsize
        box_bytes = prod(shapes) * itemsize
        if self.indices:
            grown = [max(e, s) for e, s in zip(self.extent, shapes, strict=True)]
            grown_bytes = (self.offset + shapes[0]) * prod(grown[1:]) * itemsize
            if grown_bytes > self.scratch_bytes and grown_bytes > box_bytes:
                self.close()
        offset = self.offset
        view = (slice(offset, offset + shapes[0]), *(slice(0, n) for n in shapes[1:]))
        self.rows.append([*request.spec.shape, *starts, *shapes, offset, *([0] * (ndim - 1))])
        self.keys.append(request.byte_getter.path)
        self.items.append((view, tuple(shifted), request.out_selection))
        self.indices.append(position)
        self.offset += shapes[0]
        for d in range(1, ndim):
            self.extent[d] = max(self.extent[d], shapes[d])

    def close(self) -> None:
        if not self.indices:
            return
        geometry = np.array(self.rows, dtype=np.uint64).reshape(len(self.indices), 4, self.ndim)
        shape = (self.offset, *self.extent[1:])
        self.groups.append(BoxGroup(self.indices, ChunkBatch.build(self.keys, geometry), shape, self.items))
        self._start()


def _bound(
    request: ChunkRequest, ndim: int, bounded: dict[tuple[Any, ...], tuple[int, int, Any]]
) -> tuple[list[int], list[int], list[Any]]:
    """One chunk's bounding box (starts and shape) and its selection shifted to the box;
    falls back for a selection it cannot bound. ``bounded`` keeps each axis'
    bounds by selection: zarr's orthogonal indexer hands every chunk of a row of chunks the
    same index array, and most chunks the same slices (arrays are keyed by identity; the
    batch keeps them alive meanwhile)."""
    chunk_selection = request.chunk_selection
    if not isinstance(chunk_selection, tuple) or len(chunk_selection) != ndim:
        fall_back("selection", "chunk selection without one entry per axis")
    chunk_shape = request.spec.shape
    starts: list[int] = []
    shapes: list[int] = []
    shifted: list[Any] = []
    for d in range(ndim):
        entry = chunk_selection[d]
        if isinstance(entry, slice):
            key: tuple[Any, ...] = (entry.start, entry.stop, entry.step, chunk_shape[d])
        elif isinstance(entry, np.ndarray):
            key = (id(entry), chunk_shape[d])
        else:
            key = (type(entry), entry, chunk_shape[d])
        box = bounded.get(key)
        if box is None:
            box = bounded[key] = _box(entry, chunk_shape[d])
        lo, hi, sel = box
        if hi > chunk_shape[d]:
            fall_back("selection", "chunk selection outside the chunk")
        starts.append(lo)
        shapes.append(hi - lo)
        shifted.append(sel)
    return starts, shapes, shifted


def plan_boxes(
    batch: Sequence[ChunkRequest],
    ndim: int,
    itemsize: int,
    scratch_bytes: int | None = None,
    *,
    inner: Sequence[int] | None = None,
    drop_axes: tuple[int, ...] = (),
) -> list[BoxGroup]:
    """Plan any of zarr's selections as bounding boxes plus numpy copies; raises
    ``Fallback`` with the reason for one it cannot plan.

    ``inner``: for reads only, the inner chunk shape of shards that are decoded in part
    (``split_inner``); ``drop_axes`` is then zarr's, to map output axes."""
    groups = _Groups(ndim, itemsize, SCRATCH_BYTES if scratch_bytes is None else scratch_bytes)
    bounded: dict[tuple[Any, ...], tuple[int, int, Any]] = {}
    if inner is not None:
        expanded = [(position, piece) for position, request in enumerate(batch) for piece in split_inner(request, inner, drop_axes)]
    else:
        expanded = list(enumerate(batch))
    for position, request in expanded:
        groups.add(position, request, *_bound(request, ndim, bounded))
    groups.close()
    return groups.groups


def plan_point_boxes(batch: Sequence[ChunkRequest], ndim: int, itemsize: int, scratch_bytes: int | None = None) -> list[BoxGroup] | None:
    """Plan a read of coordinate points (``vindex``, masks) with numpy over the whole batch
    rather than a loop per chunk: each chunk's bounding box of its points, and every point's
    flat index in the scratch buffer. None when a request is not of that form
    (``collect_points``); ``plan_boxes`` then plans it."""
    if scratch_bytes is None:
        scratch_bytes = SCRATCH_BYTES
    collected = collect_points(batch, ndim)
    if collected is None:
        return None
    points, out_all, counts, chunk_shapes = collected
    coords = list(points.T)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    lo = np.stack([np.minimum.reduceat(c, starts) for c in coords], axis=1)
    hi = np.stack([np.maximum.reduceat(c, starts) for c in coords], axis=1) + 1
    if (hi > chunk_shapes).any():
        return None
    box = hi - lo
    # Groups: consecutive chunks while their boxes, stacked along axis 0 and padded to the
    # largest chunk on the other axes, fit the scratch limit (a group holds at least one).
    row_bytes = int(np.prod(chunk_shapes[:, 1:].max(axis=0))) * itemsize
    ends = np.cumsum(box[:, 0]) * row_bytes
    point_chunk = np.repeat(np.arange(len(batch)), counts)
    keys = [request.byte_getter.path for request in batch]
    groups: list[BoxGroup] = []
    first = 0
    while first < len(batch):
        base = ends[first - 1] if first else 0
        last = max(first + 1, int(np.searchsorted(ends, base + scratch_bytes, side="right")))
        offsets = np.concatenate(([0], np.cumsum(box[first:last, 0])))
        extent = box[first:last].max(axis=0)
        scratch_shape = (int(offsets[-1]), *(int(e) for e in extent[1:]))
        buffer_start = np.zeros((last - first, ndim), dtype=np.int64)
        buffer_start[:, 0] = offsets[:-1]
        geometry = np.stack([chunk_shapes[first:last], lo[first:last], box[first:last], buffer_start], axis=1)
        p0, p1 = int(starts[first]), int(starts[last - 1] + counts[last - 1])
        chunk_of = point_chunk[p0:p1]
        flat = coords[0][p0:p1] - lo[chunk_of, 0] + buffer_start[chunk_of - first, 0]
        for d in range(1, ndim):
            flat = flat * scratch_shape[d] + (coords[d][p0:p1] - lo[chunk_of, d])
        groups.append(
            BoxGroup(
                list(range(first, last)), ChunkBatch.build(keys[first:last], geometry.astype(np.uint64)),
                scratch_shape, [], (flat, out_all[p0:p1]),
            )
        )
        first = last
    return groups


# numpy's part: run on worker threads.


def scratch_buffers(groups: Sequence[BoxGroup], dtype: np.dtype[Any]) -> Iterator[tuple[BoxGroup, np.ndarray[Any, Any]]]:
    """Each group with its scratch buffer, all views of one allocation: the groups of a
    read are decoded and copied out one after the other, and a buffer whose pages are
    already mapped is cheaper to decode into than a fresh one (page faults)."""
    if not groups:
        return
    flat = np.empty(max(prod(group.scratch_shape) for group in groups), dtype=dtype)
    for group in groups:
        yield group, flat[: prod(group.scratch_shape)].reshape(group.scratch_shape)


def copy_from_boxes(group: BoxGroup, scratch: np.ndarray[Any, Any], out: np.ndarray[Any, Any], drop_axes: tuple[int, ...]) -> None:
    """Copy zarr's selections from the decoded bounding boxes into ``out``."""
    if group.points is not None:
        flat, where = group.points
        out[where] = scratch.reshape(-1)[flat]
        return
    for view, selection, out_selection in group.items:
        values = scratch[view][selection]
        if drop_axes:
            values = values.squeeze(axis=drop_axes)
        out[out_selection] = values


def copy_into_boxes(group: BoxGroup, scratch: np.ndarray[Any, Any], value: np.ndarray[Any, Any], drop_axes: tuple[int, ...]) -> None:
    """Copy zarr's selections of ``value`` into the decoded bounding boxes."""
    expand = tuple(None if d in drop_axes else slice(None) for d in range(scratch.ndim))
    for view, selection, out_selection in group.items:
        if value.ndim == 0:
            scratch[view][selection] = value
            continue
        values = value[out_selection]
        if drop_axes:
            values = values[expand]
        scratch[view][selection] = values

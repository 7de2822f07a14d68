"""Turn zarr's per-chunk selections into native chunk batches, in pure Python.

zarr's indexers hand a codec pipeline, per chunk, a selection inside the chunk and a
selection inside the output. Two plans come out of them; neither does I/O or touches
native handles.

- ``plan_batch``: contiguous selections (step-1 slices and integers) become a subset of the
  chunk and a start in the output buffer, which the native side decodes into directly.
- ``plan_picks``: for a native storage, selections the native side gathers itself
  (``ArrayHandle.gather_orthogonal`` / ``gather_points``): per chunk and axis the indices
  picked in the chunk and their positions in the output, or per chunk its points and their
  offsets in the output. Each chunk is decoded once, only as far as its picks need, and
  the picked elements land straight in zarr's output: no scratch buffer, no numpy
  indexing.
- ``plan_gather``: everything else zarr's indexers produce (stepped slices, integer arrays
  in any order with repeats, zarr's ``np.ix_`` form for orthogonal indexing, coordinate
  and mask ``vindex`` points, integers under ``drop_axes``). Each chunk's bounding box is
  decoded natively into a scratch buffer (boxes stacked along the first axis), and numpy
  gathers from (or, for writes, scatters into) it with the chunk selection shifted to the
  box. Writes then store the boxes back natively, merged with the rest of each chunk.

  A read of a shard whose native decoder fetches only the inner chunks a box touches can
  pass the inner chunk shape: an integer-array axis is then split at inner chunk boundaries
  into one box per run (``split_inner``), so a few scattered rows decode the inner chunks
  that hold them rather than every inner chunk of their bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from itertools import accumulate, chain
from math import prod
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .._bindings import ChunkBatch
from .._core.fallback import Fallback

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from zarr.core.array_spec import ArraySpec

__all__ = [
    "ChunkPlan", "ChunkRequest", "GatherGroup", "OrthogonalPicks", "PointPicks", "plan", "plan_batch", "plan_gather",
    "plan_picks", "plan_points", "requests", "split_inner",
]


class ChunkRequest(NamedTuple):
    """One entry of zarr's ``read``/``write`` batch, by name.

    Attributes
    ----------
    byte_getter
        zarr's handle on the stored chunk (a ``StorePath``): its ``path`` is the key.
    spec
        The chunk's ``ArraySpec`` (shape, fill value, config, buffer prototype).
    chunk_selection
        What to read or write inside the chunk.
    out_selection
        Where that lands in zarr's output (or comes from in its value).
    is_complete
        zarr's verdict that the selection covers the whole chunk inside the array.
    """

    byte_getter: Any
    spec: ArraySpec
    chunk_selection: Any
    out_selection: Any
    is_complete: bool


# zarr's tuples as ChunkRequests without a Python-level call per chunk (a third of
# ``ChunkRequest._make``'s cost: a whole-array read hands over thousands).
_as_request = partial(tuple.__new__, ChunkRequest)


def requests(batch_info: Iterable[tuple[Any, ...]]) -> list[ChunkRequest]:
    """zarr's ``read``/``write`` batch as named requests."""
    return list(map(_as_request, batch_info))

# Scratch buffers of gathered reads and scattered writes are cut into groups of at most this
# many bytes (a group always holds at least one chunk).
SCRATCH_BYTES = 8 << 20


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


def _as_int(value: Any) -> int | None:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return None


_UNIT_STEPS = {None, 1}


def _plan_boxes(batch: Sequence[ChunkRequest], ndim: int) -> ChunkPlan | None:
    """``plan_batch`` for zarr's boxes: every chunk and output selection a tuple of one
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


def plan_batch(batch: Sequence[ChunkRequest], ndim: int, drop_axes: tuple[int, ...]) -> ChunkPlan | None:
    """Plan ``batch`` as contiguous regions decoded straight into the output, or None when a
    selection is not contiguous (``plan_gather`` handles it)."""
    if drop_axes:
        return None
    boxes = _plan_boxes(batch, ndim)
    if boxes is not None:
        return boxes
    # Geometry is collected in a flat list and converted once: per-element numpy
    # assignment costs more than the rest of this loop.
    flat: list[int] = []
    keys: list[str] = []
    inserted: tuple[int, ...] | None = None
    extent = [0] * ndim
    for request in batch:
        chunk_selection, out_selection = request.chunk_selection, request.out_selection
        if not isinstance(chunk_selection, tuple) or len(chunk_selection) != ndim:
            return None
        if not isinstance(out_selection, tuple):
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
            if out_start + stop - start > extent[d]:
                extent[d] = out_start + stop - start
        if k != len(out_selection):
            return None
        if inserted is None:
            inserted = tuple(ints)
        elif inserted != tuple(ints):
            return None
        flat.extend(chunk_shape)
        flat.extend(starts)
        flat.extend(shapes)
        flat.extend(buffer_starts)
        keys.append(request.byte_getter.path)
    geometry = np.array(flat, dtype=np.uint64).reshape(len(keys), 4, ndim)
    # ChunkBatch.build's layout, assembled directly: a small read pays for every numpy call.
    encoded = [key.encode("utf-8") for key in keys]
    offsets = np.array([0, *accumulate(map(len, encoded))], dtype=np.uint64)
    return ChunkPlan(ChunkBatch(b"".join(encoded), offsets, geometry), inserted or (), tuple(extent))


@dataclass(frozen=True)
class GatherGroup:
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
        For a read of coordinate points (``plan_points``, which leaves ``items`` empty):
        every point's flat index in the scratch buffer and its index in zarr's 1-D output.
    """

    indices: list[int]
    batch: ChunkBatch
    scratch_shape: tuple[int, ...]
    items: list[tuple[tuple[slice, ...], tuple[Any, ...], Any]]
    points: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None = None


def _box(sel: Any, length: int) -> tuple[int, int, Any]:
    """The bounding range of one axis of a chunk selection, and the selection shifted to it;
    raises ``Fallback`` for a selection it cannot bound."""
    index = _as_int(sel)
    if index is not None:
        return index, index + 1, 0
    if isinstance(sel, slice):
        start, stop, step = sel.indices(length)
        if step < 1:
            raise Fallback("negative slice steps")
        n = len(range(start, stop, step))
        if n == 0:
            raise Fallback("empty selection")
        return start, start + (n - 1) * step + 1, slice(0, (n - 1) * step + 1, step)
    if isinstance(sel, np.ndarray):
        if sel.size == 0:
            raise Fallback("empty selection")
        if sel.dtype == np.bool_:
            if sel.ndim != 1:
                raise Fallback("multidimensional mask in a chunk selection")
            hits = np.flatnonzero(sel)
            if hits.size == 0:
                raise Fallback("empty selection")
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
                raise Fallback("negative indices in a chunk selection")
            return lo, hi, sel - lo if lo else sel
    raise Fallback(f"selection of type {type(sel).__name__}")


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


def plan_gather(
    batch: Sequence[ChunkRequest],
    ndim: int,
    itemsize: int,
    scratch_bytes: int | None = None,
    *,
    inner: Sequence[int] | None = None,
    drop_axes: tuple[int, ...] = (),
) -> list[GatherGroup]:
    """Plan any of zarr's selections as bounding boxes plus numpy gathers; raises
    ``Fallback`` with the reason for one it cannot plan.

    ``inner``: for reads only, the inner chunk shape of shards that are decoded in part
    (``split_inner``); ``drop_axes`` is then zarr's, to map output axes."""
    if scratch_bytes is None:
        scratch_bytes = SCRATCH_BYTES
    groups: list[GatherGroup] = []
    rows: list[list[int]] = []
    keys: list[str] = []
    items: list[tuple[tuple[slice, ...], tuple[Any, ...], Any]] = []
    indices: list[int] = []
    extent = [0] * ndim
    offset = 0

    def flush() -> None:
        nonlocal rows, keys, items, indices, extent, offset
        if not indices:
            return
        geometry = np.array(rows, dtype=np.uint64).reshape(len(indices), 4, ndim)
        shape = (offset, *extent[1:])
        groups.append(GatherGroup(indices, ChunkBatch.build(keys, geometry), shape, items))
        rows, keys, items, indices, extent, offset = [], [], [], [], [0] * ndim, 0

    # zarr's orthogonal indexer hands every chunk of a row of chunks the same index array,
    # and most chunks the same slices: each is bounded once (arrays keyed by identity; the
    # batch keeps them alive meanwhile).
    bounded: dict[tuple[Any, ...], tuple[int, int, Any]] = {}
    if inner is not None:
        expanded = [(position, piece) for position, request in enumerate(batch) for piece in split_inner(request, inner, drop_axes)]
    else:
        expanded = list(enumerate(batch))
    for position, request in expanded:
        chunk_selection = request.chunk_selection
        if not isinstance(chunk_selection, tuple) or len(chunk_selection) != ndim:
            raise Fallback("chunk selection without one entry per axis")
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
                raise Fallback("chunk selection outside the chunk")
            starts.append(lo)
            shapes.append(hi - lo)
            shifted.append(sel)
        box_bytes = prod(shapes) * itemsize
        if indices:
            grown = [max(e, s) for e, s in zip(extent, shapes, strict=True)]
            grown_bytes = (offset + shapes[0]) * prod(grown[1:]) * itemsize
            if grown_bytes > scratch_bytes and grown_bytes > box_bytes:
                flush()
        view = (slice(offset, offset + shapes[0]), *(slice(0, n) for n in shapes[1:]))
        rows.append([*chunk_shape, *starts, *shapes, offset, *([0] * (ndim - 1))])
        keys.append(request.byte_getter.path)
        items.append((view, tuple(shifted), request.out_selection))
        indices.append(position)
        offset += shapes[0]
        for d in range(1, ndim):
            extent[d] = max(extent[d], shapes[d])
    flush()
    return groups


def _out_indices(out_selection: Any, n: int) -> np.ndarray[Any, Any] | None:
    """zarr's 1-D output selection of ``n`` points (-1: any number) as indices, or None for
    another form."""
    if isinstance(out_selection, slice):
        start, stop, step = out_selection.start or 0, out_selection.stop, out_selection.step or 1
        if stop is None or step != 1 or start < 0 or (n >= 0 and stop - start != n):
            return None
        return np.arange(start, stop, dtype=np.intp)
    if isinstance(out_selection, np.ndarray) and out_selection.ndim == 1 and out_selection.dtype.kind in "iu":
        return out_selection if out_selection.size == n and (n == 0 or out_selection.min() >= 0) else None
    return None


# zarr's batch entries and their parts, read by C-level ``map`` rather than a Python loop per
# chunk: a vindex read hands over thousands of chunks of a few points each.
_getter_of = itemgetter(0)
_spec_of = itemgetter(1)
_selection_of = itemgetter(2)
_out_of = itemgetter(3)
_path_of = attrgetter("path")
_dtype_of = attrgetter("dtype")
_start_of = attrgetter("start")
_stop_of = attrgetter("stop")
_step_of = attrgetter("step")


def _lengths(values: Iterable[Any], n: int) -> np.ndarray[Any, Any]:
    """``len`` of each of ``n`` values (raises ``TypeError`` for one without a length)."""
    return np.fromiter(map(len, values), dtype=np.intp, count=n)


def _shared(values: list[Any]) -> bool:
    """Whether every value equals the first one. ``list.count`` compares by identity first:
    for zarr's one spec object per regular grid this is a C loop of pointer compares."""
    return values.count(values[0]) == len(values)


def _chunk_shapes(batch: Sequence[ChunkRequest], ndim: int) -> np.ndarray[Any, Any] | None:
    """Every chunk's shape, ``(len, ndim)`` ``int64``; None when one has another number of
    axes. A regular grid's chunks share one spec (zarr builds it once): its shape is read
    once and broadcast."""
    specs = list(map(_spec_of, batch))
    if _shared(specs):
        shape = np.array(specs[0].shape, dtype=np.int64)
        return np.broadcast_to(shape, (len(batch), ndim)) if shape.shape == (ndim,) else None
    try:
        shapes = np.array([spec.shape for spec in specs], dtype=np.int64)
    except ValueError:  # ragged
        return None
    return shapes if shapes.shape == (len(batch), ndim) else None


def _point_outputs(outs: list[Any], counts: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | None:
    """Every point's index in zarr's 1-D output, from the per-chunk output selections: all
    slices (points sorted by chunk: zarr's runs) or all integer arrays (``sel_sort``'s
    pieces); None for any other form, a size that is not the chunk's count, or a negative
    index."""
    n = len(outs)
    kinds = set(map(type, outs))
    try:
        if kinds == {slice}:
            stops = list(map(_stop_of, outs))
            if None in stops or not set(map(_step_of, outs)) <= {None, 1}:
                return None
            starts = list(map(_start_of, outs))
            if None in starts:
                starts = [0 if start is None else start for start in starts]
            lo = np.array(starts, dtype=np.int64)
            hi = np.array(stops, dtype=np.int64)
            if (hi - lo != counts).any() or lo.min() < 0:
                return None
            if n == 1 or (lo[1:] == hi[:-1]).all():
                return np.arange(lo[0], hi[-1])
            # Runs that are not back to back: each point its run's start plus its rank.
            ends = np.cumsum(counts)
            ranked: np.ndarray[Any, Any] = np.arange(int(ends[-1])) + np.repeat(lo - (ends - counts), counts)
            return ranked
        if kinds != {np.ndarray}:
            if not kinds <= {slice, np.ndarray}:
                return None
            # A mix (zarr hands over one form per batch): each slice as its indices.
            converted = [_out_indices(out, -1) if type(out) is slice else out for out in outs]
            if any(out is None for out in converted):
                return None
            outs = converted
        lengths = _lengths(outs, n)
        if not np.array_equal(lengths, counts):
            return None
        out_all = _joined(outs, lengths)
    except (AttributeError, TypeError, ValueError):  # not integers, or 0-d arrays
        return None
    if out_all is None or (out_all.dtype.kind == "i" and out_all.min() < 0):
        return None
    return out_all


def _joined(arrays: Sequence[Any], lengths: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | None:
    """Integer arrays back to back, as one array; None for any other values, or when
    ``lengths`` (their ``len``) is not how many elements they hold.

    ``bytes.join`` copies each array through the buffer protocol: per array it costs about
    half of what ``np.concatenate`` does, and a vindex batch holds thousands of arrays of a
    few elements. It refuses an array that is not contiguous, which numpy then copies; the
    element count catches arrays of more than one dimension (``len`` counts rows)."""
    dtypes = set(map(_dtype_of, arrays))  # AttributeError: not an array
    if any(dtype.kind not in "iu" for dtype in dtypes):
        return None
    values: np.ndarray[Any, Any]
    if len(dtypes) > 1:  # zarr's are all ``intp``; numpy would promote a mix to float
        values = np.concatenate([np.ravel(a).astype(np.int64) for a in arrays])
    else:
        try:
            values = np.frombuffer(b"".join(arrays), dtype=dtypes.pop())
        except TypeError:  # a strided array (zarr's per-chunk arrays never are)
            values = np.concatenate([np.ravel(a) for a in arrays])
    return values if values.size == int(lengths.sum()) else None


def _collect_points(
    batch: Sequence[ChunkRequest], ndim: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]] | None:
    """A batch of coordinate points (one 1-D integer array per axis per chunk, zarr's output
    selection a slice or index array into a 1-D output) as whole-batch arrays: each point's
    coordinates in its chunk (``(points, ndim)``, ``int64``), every point's index in the
    output, the points per chunk and the chunk shapes; None when a request is not of that
    form or an index is negative.

    A vindex read hands over thousands of chunks of a few points each: nothing here runs
    Python code per chunk. Each check is a C-level pass over the batch (``map`` of a type,
    a length, a dtype) or a numpy check of the joined arrays."""
    n = len(batch)
    if not n or ndim == 0:
        return None
    selections = list(map(_selection_of, batch))
    try:
        if set(map(len, selections)) != {ndim}:
            return None
        # Chunk by chunk, axis by axis: chunk i's arrays are entries i * ndim .. (i + 1) * ndim
        # (zarr's tuples; any sequence of one array per axis means the same points).
        arrays = list(chain.from_iterable(selections))
        lengths = _lengths(arrays, n * ndim).reshape(n, ndim)
        flat = _joined(arrays, lengths)
    except (AttributeError, TypeError, ValueError):  # not arrays
        return None
    counts = lengths[:, 0]
    if flat is None or counts.min() == 0 or (lengths != counts[:, None]).any():
        return None
    if flat.min() < 0 or flat.max() > np.iinfo(np.int64).max:
        return None
    # Point k of chunk i (its j-th; chunk i's points start at ``first[i]``) has its axis d
    # coordinate at ``ndim * first[i] + d * counts[i] + j`` of ``flat``.
    first = np.cumsum(counts) - counts
    total = int(first[-1] + counts[-1])
    dim0 = np.arange(total) + np.repeat((ndim - 1) * first, counts)
    where = dim0[:, None] + np.repeat(counts, counts)[:, None] * np.arange(ndim)
    coords = flat[where].astype(np.int64, copy=False)
    out_all = _point_outputs(list(map(_out_of, batch)), counts)
    if out_all is None:
        return None
    chunk_shapes = _chunk_shapes(batch, ndim)
    if chunk_shapes is None:
        return None
    return coords, out_all, counts, chunk_shapes


def plan_points(batch: Sequence[ChunkRequest], ndim: int, itemsize: int, scratch_bytes: int | None = None) -> list[GatherGroup] | None:
    """Plan a read of coordinate points (``vindex``, masks) with numpy over the whole batch
    rather than a loop per chunk: each chunk's bounding box of its points, and every point's
    flat index in the scratch buffer. None when a request is not of that form
    (``_collect_points``); ``plan_gather`` then plans it."""
    if scratch_bytes is None:
        scratch_bytes = SCRATCH_BYTES
    collected = _collect_points(batch, ndim)
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
    groups: list[GatherGroup] = []
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
            GatherGroup(
                list(range(first, last)), ChunkBatch.build(keys[first:last], geometry.astype(np.uint64)),
                scratch_shape, [], (flat, out_all[p0:p1]),
            )
        )
        first = last
    return groups


def _keys(batch: Sequence[ChunkRequest]) -> tuple[bytes, np.ndarray[Any, Any]]:
    """The batch's store keys back to back, and their ``len + 1`` byte offsets.

    Keys are nearly always ASCII (zarr's chunk keys under an ASCII path): one ``join`` and
    one ``encode`` for the batch, not one ``encode`` per chunk."""
    paths = list(map(_path_of, map(_getter_of, batch)))
    joined = "".join(paths)
    if joined.isascii():
        data = joined.encode("ascii")
        lengths = _lengths(paths, len(paths))
    else:
        encoded = [path.encode("utf-8") for path in paths]
        data = b"".join(encoded)
        lengths = _lengths(encoded, len(encoded))
    offsets = np.zeros(len(paths) + 1, dtype=np.uint64)
    np.cumsum(lengths, out=offsets[1:], dtype=np.uint64)
    return data, offsets


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


def _orthogonal_by_chunk(batch: Sequence[ChunkRequest], ndim: int, drop_axes: tuple[int, ...]) -> OrthogonalPicks | None:
    """``plan_orthogonal_picks`` for any orthogonal form, a loop over the chunks.

    zarr hands every chunk of a row of chunks the same index array and most chunks the same
    slices: each axis' picks are computed once per distinct (selection, output selection,
    extent), keyed by the slices themselves (hashable) and by the arrays' identity (the
    batch keeps them alive meanwhile), and shared in the pool."""
    indices: list[np.ndarray[Any, Any]] = []
    positions: list[np.ndarray[Any, Any]] = []
    size = 0
    pairs: list[int] = []
    shapes: list[int] = []
    shared: dict[tuple[Any, ...], tuple[int, int]] = {}
    get = shared.get
    inserted: tuple[int, ...] | None = None
    ndarray = np.ndarray
    for request in batch:
        chunk_selection, out_selection = request[2], request[3]
        if type(chunk_selection) is not tuple or len(chunk_selection) != ndim or type(out_selection) is not tuple:
            return None
        chunk_shape = request[1].shape
        ints: list[int] = []
        k = 0
        for d in range(ndim):
            sel = chunk_selection[d]
            kind = type(sel)
            value = None
            if (kind is slice or kind is ndarray) and d not in drop_axes:
                if k >= len(out_selection):
                    return None
                out = out_selection[k]
                k += 1
                key: tuple[Any, ...] = (
                    sel if kind is slice else id(sel), out if type(out) is slice else id(out), chunk_shape[d]
                )
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
            entry = get(key)
            if entry is None:
                if value is not None:
                    picked, placed = np.array([value]), np.zeros(1, dtype=np.intp)
                else:
                    pick = _axis_pick(sel, out, chunk_shape[d])
                    if pick is None:
                        return None
                    picked, placed = pick
                entry = shared[key] = (size, picked.size)
                indices.append(picked)
                positions.append(placed)
                size += picked.size
            pairs += entry
        if k != len(out_selection):
            return None
        if inserted is None:
            inserted = tuple(ints)
        elif len(ints) != len(inserted) or inserted != tuple(ints):
            return None
        shapes += chunk_shape
    if inserted is None:
        return None
    keys, key_offsets = _keys(batch)
    return OrthogonalPicks(
        keys, key_offsets, np.array(shapes, dtype=np.uint64).reshape(len(batch), ndim),
        np.array(pairs, dtype=np.uint64).reshape(len(batch), ndim, 2), _as_u64(indices), _as_u64(positions), inserted,
    )


def plan_point_picks(batch: Sequence[ChunkRequest], ndim: int) -> PointPicks | None:
    """Plan coordinate points (``vindex``, masks) over the whole batch as per-chunk points;
    None when the batch is not of that form (``_collect_points``)."""
    collected = _collect_points(batch, ndim)
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
    None when the batch has neither form (``plan_gather`` then plans it)."""
    if not batch:
        return None
    if not drop_axes and not isinstance(batch[0].out_selection, tuple):
        return plan_point_picks(batch, ndim)
    return plan_orthogonal_picks(batch, ndim, drop_axes)


def plan(
    batch: Sequence[ChunkRequest],
    ndim: int,
    drop_axes: tuple[int, ...],
    itemsize: int,
    inner: Sequence[int] | None = None,
    read: bool = False,
    picks: bool = False,
) -> ChunkPlan | OrthogonalPicks | PointPicks | list[GatherGroup]:
    """A contiguous plan, else (``picks``: for a read the native side gathers) picks, else
    gather groups; raises ``Fallback`` when none applies. ``inner``: see ``plan_gather``;
    ``read``: the plan is for a read, whose coordinate points may be planned by
    ``plan_points``."""
    contiguous = plan_batch(batch, ndim, drop_axes)
    if contiguous is not None:
        return contiguous
    if picks:
        picked = plan_picks(batch, ndim, drop_axes)
        if picked is not None:
            return picked
    if read and not drop_axes:
        points = plan_points(batch, ndim, itemsize)
        if points is not None:
            return points
    return plan_gather(batch, ndim, itemsize, inner=inner, drop_axes=drop_axes)

"""Coordinate points (``vindex``, masks) of a whole batch as numpy arrays, for both ways of
reading them: the native gather (``picks.py``) and bounding boxes (``boxes.py``)."""

from __future__ import annotations

from itertools import chain
from typing import TYPE_CHECKING, Any

import numpy as np

from .requests import _chunk_shapes, _dtype_of, _lengths, _out_of, _selection_of, _start_of, _step_of, _stop_of

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .requests import ChunkRequest

__all__ = ["collect_points"]


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


def collect_points(
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

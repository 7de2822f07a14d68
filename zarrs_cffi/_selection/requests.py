"""zarr's read and write batches as named requests, and whole-batch accessors of them.

zarr hands a codec pipeline, per chunk, the stored chunk's handle, its spec, a selection
inside the chunk, a selection inside the output and whether the selection covers the whole
chunk. A scattered read hands over thousands of chunks: the accessors here read every
entry with C-level ``map`` rather than a Python loop per chunk.
"""

from __future__ import annotations

from functools import partial
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from zarr.core.array_spec import ArraySpec

__all__ = ["ChunkRequest", "requests"]


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

def _as_int(value: Any) -> int | None:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
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

"""Turn zarr's per-chunk selections into native chunk batches, in pure Python.

zarr's indexers hand a codec pipeline, per chunk, a selection inside the chunk and a
selection inside the output. Contiguous ones (step-1 slices and integers) become a subset
of the chunk and a start in the output buffer, which the native side decodes into directly.
Anything else is reported with a reason, and the pipeline falls back. This module does no
I/O and never touches native handles.

Not native yet (the plan for the selections issue): stepped slices, integer arrays (in
zarr's ``np.ix_`` form when several axes are arrays), masks (zarr hands them over as integer
arrays) and integers under ``drop_axes`` are all per-axis index maps from chunk positions to
output positions; ``vindex`` is a list of points with flat output positions. Passing those
maps (a range triple per axis where possible, an index list otherwise) lets the native side
decode each chunk into a thread-local buffer and gather straight into ``out``, and scatter
for writes, with no per-chunk Python and no array-sized temporary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._bindings import ChunkBatch

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["ChunkPlan", "plan_batch"]


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


def plan_batch(
    batch_info: Sequence[tuple[Any, Any, Any, Any, Any]], ndim: int, drop_axes: tuple[int, ...]
) -> ChunkPlan | str:
    """Plan ``batch_info`` (zarr's read/write argument) for the native side, or say why not."""
    if drop_axes:
        return "selections that drop axes (orthogonal integer-array indexing)"
    # Geometry is collected in a flat list and converted once: per-element numpy
    # assignment costs more than the rest of this loop.
    flat: list[int] = []
    keys: list[str] = []
    inserted: tuple[int, ...] | None = None
    extent = [0] * ndim
    for byte_getter, chunk_spec, chunk_selection, out_selection, _ in batch_info:
        if not isinstance(chunk_selection, tuple) or len(chunk_selection) != ndim:
            return "non-basic chunk selection"
        if not isinstance(out_selection, tuple):
            return "non-basic output selection"
        chunk_shape = chunk_spec.shape
        starts: list[int] = []
        shapes: list[int] = []
        buffer_starts: list[int] = []
        ints: list[int] = []
        k = 0
        for d in range(ndim):
            sel = chunk_selection[d]
            index = _as_int(sel)
            if index is not None:
                starts.append(index)
                shapes.append(1)
                buffer_starts.append(0)
                ints.append(d)
                extent[d] = 1
                continue
            if not isinstance(sel, slice) or k >= len(out_selection):
                return f"selection of type {type(sel).__name__}"
            start, stop, step = sel.indices(chunk_shape[d])
            out_sel = out_selection[k]
            k += 1
            if step != 1 or not isinstance(out_sel, slice) or out_sel.step not in (None, 1):
                return "stepped slices"
            out_start = out_sel.start or 0
            starts.append(start)
            shapes.append(stop - start)
            buffer_starts.append(out_start)
            if out_start + stop - start > extent[d]:
                extent[d] = out_start + stop - start
        if k != len(out_selection):
            return "output selection does not match the chunk selection"
        if inserted is None:
            inserted = tuple(ints)
        elif inserted != tuple(ints):
            return "integer-indexed axes differ between chunks"
        flat.extend(chunk_shape)
        flat.extend(starts)
        flat.extend(shapes)
        flat.extend(buffer_starts)
        keys.append(byte_getter.path)
    geometry = np.array(flat, dtype=np.uint64).reshape(len(keys), 4, ndim)
    return ChunkPlan(ChunkBatch.build(keys, geometry), inserted or (), tuple(extent))
